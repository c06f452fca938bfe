//! The `archive` worker: versions that entered an archive class (lifecycle transition, or
//! written with `x-amz-storage-class: GLACIER|DEEP_ARCHIVE`) wait in a durable queue; each is
//! read from the standard tier, sealed into frames under its own data key, and appended to the
//! open container's current chunk. When a chunk is full (or the queue is empty and the oldest
//! extent in it has waited `archive_linger`) it is written once, and the versions whose extents
//! it completes are committed in one batch: each points at its extent, its standard-tier chunks
//! go to GC. Large versions stream through (one frame and one chunk buffered).
//!
//! Crash safety: a chunk is reserved in its container record before it is written, and the
//! commits come after the write, each conditioned on the version being unchanged. A crash
//! before the commits leaves dead bytes in the container (counted by the compaction audit) and
//! the queue entries, so those versions are repacked again into new extents; a crash after
//! them loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use serde_json::{Value, json};
use strata_metadata::archive::{ArchiveCommit, QueuedVersion, WRITER_REPACK, is_archive_class};
use strata_metadata::{LayoutRecord, Segment};

use super::frame::{FRAME_SIZE, FrameIdentity, FrameSealer};
use super::pack::ContainerWriter;
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, now_ms};

const BATCH: usize = 16;
/// Versions committed per metadata batch.
const COMMIT_BATCH: usize = 256;
/// Sealed bytes handed to the writer at a time.
const PUSH_BYTES: usize = 256 * 1024;

/// What committing one repacked version needs.
struct Item {
    vkey: Vec<u8>,
    segments: Vec<Segment>,
    bucket: String,
    key: String,
    version_id: String,
    size: u64,
}

pub struct ArchiveWorker {
    engine: Engine,
    writer: ContainerWriter<Item>,
    /// Versions placed in the writer and not yet committed (still in the queue: skipped).
    in_flight: HashSet<Vec<u8>>,
    repacked: u64,
    bytes: u64,
    stale: u64,
    failed: u64,
    queued: usize,
    /// Where the queue is read from: the pass goes on past entries in flight or failing, and
    /// starts again from the beginning at the end.
    after: Option<Vec<u8>>,
    /// The current pass found entries not in flight.
    pass_found: bool,
}

impl ArchiveWorker {
    pub fn new(engine: Engine) -> Self {
        let seal = engine.archive_cfg().container_bytes;
        ArchiveWorker {
            writer: ContainerWriter::new(engine.clone(), WRITER_REPACK, seal),
            engine,
            in_flight: HashSet::new(),
            repacked: 0,
            bytes: 0,
            stale: 0,
            failed: 0,
            queued: 0,
            after: None,
            pass_found: false,
        }
    }

    async fn repack(&mut self, q: QueuedVersion, layout: &LayoutRecord) -> Result<(), EngineError> {
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
        let chunk_size = self.engine.archive_cfg().chunk_size.max(1);
        if v.size == 0 {
            // No frames: an empty extent (an empty version has no data key either).
            self.writer.begin(layout, chunk_size).await?;
            self.in_flight.insert(vkey.clone());
        } else {
            // SSE-KMS versions: the chunks' key is the DEK bound to the KMS key (sse.rs); the
            // frames are sealed under the same key, so disabling the KMS key closes them too.
            let (dek, binding) = self.engine.server_chunk_key(&bucket, &v).await?;
            let id = FrameIdentity {
                bucket: q.bucket.clone(),
                key: q.key.clone(),
                version_id: v.version_id.clone(),
                len: v.size,
                frame_size: FRAME_SIZE,
            };
            let mut source = self
                .engine
                .read_range_bound(&bucket, &v, 0..v.size, &binding)
                .await?;
            self.writer.begin(layout, chunk_size).await?;
            self.in_flight.insert(vkey.clone());
            let mut sealer = FrameSealer::new(dek, id);
            let mut out = BytesMut::new();
            while let Some(piece) = source.next().await {
                let piece =
                    piece.map_err(|e| EngineError::internal(format!("reading source: {e}")))?;
                sealer.push(&piece, &mut out)?;
                if out.len() >= PUSH_BYTES {
                    self.writer.push(&out).await?;
                    out.clear();
                }
            }
            sealer.finish(&mut out)?;
            self.writer.push(&out).await?;
        }
        let item = Item {
            vkey,
            segments: v.data.segments.clone(),
            bucket: q.bucket,
            key: q.key,
            version_id: v.version_id.clone(),
            size: v.size,
        };
        self.writer.finish(v.size, FRAME_SIZE, item).await
    }

    /// Commits every version whose extent is fully written. Committed or not, they leave the
    /// writer: a stale one's extent is dead bytes, and one whose commit failed is repacked again
    /// from the queue.
    async fn commit_ready(&mut self) -> Result<(), EngineError> {
        let ready = self.writer.take_ready();
        let mut result = Ok(());
        for batch in ready.chunks(COMMIT_BATCH) {
            if result.is_ok() {
                let commits: Vec<ArchiveCommit> = batch
                    .iter()
                    .map(|p| ArchiveCommit {
                        vkey: p.item.vkey.clone(),
                        segments: p.item.segments.clone(),
                        extent: p.extent.clone(),
                    })
                    .collect();
                match self
                    .engine
                    .meta_call(move |m| m.commit_archives(&commits, now_ms()))
                    .await
                {
                    Ok(outcome) => {
                        for (p, ok) in batch.iter().zip(outcome) {
                            if ok {
                                self.repacked += 1;
                                self.bytes += p.item.size;
                                tracing::info!(bucket = %p.item.bucket, key = %p.item.key, version = %p.item.version_id, size = p.item.size, container = %hex::encode(p.extent.container), offset = p.extent.offset, sealed_len = p.extent.sealed_len, "version repacked into an archive container");
                            } else {
                                // Changed or deleted meanwhile: the extent is dead from birth.
                                self.stale += 1;
                            }
                        }
                    }
                    Err(e) => result = Err(e),
                }
            }
            for p in batch {
                self.in_flight.remove(&p.item.vkey);
            }
        }
        result
    }

    /// After an error: what the writer had not written is forgotten (those versions start over
    /// from the queue); what it had written is committed if possible.
    async fn recover(&mut self) {
        self.writer.abort();
        self.writer.reset();
        if let Err(e) = self.commit_ready().await {
            tracing::warn!(error = %e, "archive: committing written extents failed; they will be repacked");
        }
        self.in_flight.clear();
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
        if batch.is_empty() {
            // The end of a pass: write a partly filled chunk whose oldest extent waited long
            // enough (the queue has nothing more for it).
            if self
                .writer
                .oldest_waiting()
                .is_some_and(|t| t.elapsed() >= self.engine.archive_linger())
            {
                let r = match self.writer.flush().await {
                    Ok(()) => match self.commit_ready().await {
                        Ok(()) => self.writer.seal_if_full().await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    self.recover().await;
                    return Err(format!("writing an archive chunk: {e}"));
                }
            }
            self.after = None;
            self.queued = self.in_flight.len();
            return Ok(if std::mem::take(&mut self.pass_found) {
                WorkState::Busy
            } else {
                WorkState::Idle
            });
        }
        let layout = self
            .engine
            .meta_call(|m| m.archive_layout())
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no archive layout recorded")?;
        for q in batch {
            self.after = Some(q.vkey.clone());
            if self.in_flight.contains(&q.vkey) {
                continue;
            }
            self.pass_found = true;
            let what = format!("{}/{}", q.bucket, q.key);
            let r = match self.repack(q, &layout).await {
                Ok(()) => match self.commit_ready().await {
                    Ok(()) => self.writer.seal_if_full().await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                self.failed += 1;
                self.recover().await;
                return Err(format!("repacking {what}: {e}"));
            }
        }
        self.queued = self.in_flight.len();
        Ok(WorkState::Busy)
    }

    fn status(&self) -> Value {
        json!({
            "versions_repacked": self.repacked,
            "bytes_repacked": self.bytes,
            "stale": self.stale,
            "failed": self.failed,
            "waiting_in_chunk": self.queued,
            "chunks_written": self.writer.chunks_written,
            "abandoned_bytes": self.writer.abandoned_bytes,
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
