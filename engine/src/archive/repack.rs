//! The `archive` worker: versions that entered an archive class (lifecycle transition, or
//! written with `x-amz-storage-class: GLACIER|DEEP_ARCHIVE`) wait in a durable queue; each is
//! copied into an extent of the open container (archive layout, the version's own data key),
//! then one batch points the version at the extent and hands its standard-tier chunks to GC.
//!
//! Crash safety: the extent is reserved (and recorded with its version) before any chunk is
//! written; the switch is conditioned on the version record being unchanged. A crash in between
//! leaves a dead extent, which the compaction audit counts and reclaims; the queue entry stays,
//! so the version is repacked again into a fresh extent.

use std::time::Duration;

use serde_json::{Value, json};
use strata_metadata::MetaError;
use strata_metadata::archive::{QueuedVersion, is_archive_class};

use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, now_ms};

const BATCH: usize = 16;

pub struct ArchiveWorker {
    engine: Engine,
    repacked: u64,
    bytes: u64,
    stale: u64,
    failed: u64,
    queued: usize,
    /// Where the queue is read from: past an entry that failed, so one bad version does not
    /// hold up the others (back to the start once the end is reached).
    after: Option<Vec<u8>>,
}

impl ArchiveWorker {
    pub fn new(engine: Engine) -> Self {
        ArchiveWorker {
            engine,
            repacked: 0,
            bytes: 0,
            stale: 0,
            failed: 0,
            queued: 0,
            after: None,
        }
    }

    async fn repack(&mut self, q: QueuedVersion) -> Result<(), EngineError> {
        let vkey = q.vkey.clone();
        let Some(v) = q.version.clone().filter(|v| {
            is_archive_class(&v.storage_class)
                && !v.is_delete_marker
                && v.archive.as_ref().is_none_or(|a| a.extent.is_none())
        }) else {
            return self
                .engine
                .meta_call(move |m| m.drop_pending_archive(&vkey))
                .await;
        };
        let name = q.bucket.clone();
        let Some(bucket) = self.engine.meta_call(move |m| m.get_bucket(&name)).await? else {
            return self
                .engine
                .meta_call(move |m| m.drop_pending_archive(&vkey))
                .await;
        };
        let layout = self
            .engine
            .meta_call(|m| m.archive_layout())
            .await?
            .ok_or_else(|| EngineError::internal("no archive layout recorded"))?;
        let cfg = self.engine.archive_cfg().clone();
        let chunk_size = cfg.chunk_size.max(1);
        let container = self
            .engine
            .meta_call(move |m| m.open_container(layout.id, chunk_size, now_ms()))
            .await?;
        let (b, k, id, len, seal) = (
            q.bucket.clone(),
            q.key.clone(),
            v.version_id.clone(),
            v.size,
            cfg.container_bytes,
        );
        let cid = container.id;
        let extent = match self
            .engine
            .meta_call(move |m| m.reserve_extent(&cid, &b, &k, &id, len, seal))
            .await
        {
            Ok(e) => e,
            // Sealed meanwhile: the next unit opens another.
            Err(EngineError::Meta(MetaError::Stale)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // SSE-KMS versions: the chunks' key is the DEK bound to the KMS key (sse.rs).
        let (dek, binding) = self.engine.server_chunk_key(&bucket, &v).await?;
        let source = self
            .engine
            .read_range_bound(&bucket, &v, 0..v.size, &binding)
            .await?;
        self.engine.write_extent(&dek, &extent, source).await?;
        let segments = v.data.segments.clone();
        let ext = extent.clone();
        match self
            .engine
            .meta_call(move |m| m.commit_archive(&vkey, &segments, ext, now_ms()))
            .await
        {
            Ok(()) => {
                self.repacked += 1;
                self.bytes += v.size;
                tracing::info!(bucket = %q.bucket, key = %q.key, version = %v.version_id, size = v.size, container = %hex::encode(extent.container), first_chunk = extent.first_chunk, "version repacked into an archive container");
                Ok(())
            }
            Err(EngineError::Meta(MetaError::Stale)) => {
                // Changed or deleted meanwhile: the extent is dead from birth.
                self.stale += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Worker for ArchiveWorker {
    fn name(&self) -> &'static str {
        "archive"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let after = self.after.clone();
        let batch = self
            .engine
            .meta_call(move |m| m.pending_archives(after.as_deref(), BATCH))
            .await
            .map_err(|e| e.to_string())?;
        self.queued = batch.len();
        if batch.is_empty() {
            if self.after.take().is_some() {
                return Ok(WorkState::Busy);
            }
            return Ok(WorkState::Idle);
        }
        for q in batch {
            let what = format!("{}/{}", q.bucket, q.key);
            let vkey = q.vkey.clone();
            if let Err(e) = self.repack(q).await {
                self.failed += 1;
                self.after = Some(vkey);
                return Err(format!("repacking {what}: {e}"));
            }
        }
        Ok(WorkState::Busy)
    }

    fn status(&self) -> Value {
        json!({
            "versions_repacked": self.repacked,
            "bytes_repacked": self.bytes,
            "stale": self.stale,
            "failed": self.failed,
            "queue_batch": self.queued,
        })
    }

    fn idle_interval(&self) -> Duration {
        if self.engine.lifecycle_clock().is_scaled() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        }
    }
}
