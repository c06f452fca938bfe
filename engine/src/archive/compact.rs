//! The `archive-compaction` worker. Containers are immutable once sealed, so space held by the
//! extents of destroyed (or never committed) versions comes back only by rewriting: the worker
//! audits each container (which of its extents a version still points at), and when a sealed
//! one's live fraction is below `--archive-compact-below` it marks it retiring, copies each live
//! sealed extent *verbatim* into its own open container (no data key is needed or used: the
//! frames' AAD does not name their location), swaps the copies into their versions with
//! compare-and-sets once their chunks are written, and finally frees the container's chunks
//! through the GC queue (with the grace period, so reads in flight finish). Extents of format-1
//! containers (the version's own chunks) are sealed into frames on the way, under their
//! version's key.
//!
//! Every step is idempotent: an extent already moved is no longer live in the old container, a
//! copy not swapped in is dead bytes of the new one, and a retiring container is resumed after
//! a restart from its persisted `retiring` flag.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_metadata::archive::{
    ArchiveExtent, ContainerRecord, ExtentEntry, ExtentMove, WRITER_COMPACTION,
};
use strata_metadata::{LayoutRecord, MetaError};

use super::frame::{FRAME_SIZE, FrameIdentity, FrameSealer};
use super::pack::ContainerWriter;
use crate::lifecycle::worker::pass_interval;
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, now_ms};

const STATE_KEY: &str = "archive-compaction";
const PAGE: usize = 256;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Totals {
    reclaimed_bytes: u64,
    containers_retired: u64,
    extents_moved: u64,
}

/// A move placed in the writer: the old container's index entry and the extent it describes.
type Moving = (ExtentEntry, ArchiveExtent);

pub struct CompactionWorker {
    engine: Engine,
    writer: ContainerWriter<Moving>,
    totals: Option<Totals>,
    last_round: Option<Instant>,
    containers: usize,
    live_bytes: u64,
    dead_bytes: u64,
}

impl CompactionWorker {
    pub fn new(engine: Engine) -> Self {
        let seal = engine.archive_cfg().container_bytes;
        CompactionWorker {
            writer: ContainerWriter::new(engine.clone(), WRITER_COMPACTION, seal),
            engine,
            totals: None,
            last_round: None,
            containers: 0,
            live_bytes: 0,
            dead_bytes: 0,
        }
    }

    async fn totals(&mut self) -> Result<Totals, EngineError> {
        if let Some(t) = &self.totals {
            return Ok(t.clone());
        }
        let t: Totals = self.engine.load_worker_state(STATE_KEY).await?;
        self.totals = Some(t.clone());
        Ok(t)
    }

    async fn save(&mut self, t: Totals) -> Result<(), EngineError> {
        self.engine.save_worker_state(STATE_KEY, &t).await?;
        self.totals = Some(t);
        Ok(())
    }

    /// Live bytes of a container (every extent checked against its version).
    async fn audit(&self, c: &ContainerRecord) -> Result<u64, EngineError> {
        let mut live = 0;
        let mut after: Option<ExtentEntry> = None;
        loop {
            let id = c.id;
            let a = after.clone();
            let page = self
                .engine
                .meta_call(move |m| m.container_extents(&id, a.as_ref(), PAGE))
                .await?;
            let full = page.len() == PAGE;
            after = page.last().cloned();
            for e in page {
                let id = c.id;
                let e2 = e.clone();
                if self
                    .engine
                    .meta_call(move |m| m.extent_is_live(&id, &e2))
                    .await?
                {
                    live += e.stored_len();
                }
            }
            if !full {
                return Ok(live);
            }
        }
    }

    /// Moves every live extent out of a retiring container, then frees it. Returns the bytes
    /// it held and the bytes copied out of it (what the copies take in other containers).
    async fn retire(&mut self, c: &ContainerRecord) -> Result<(u64, u64), EngineError> {
        let layout = self
            .engine
            .meta_call(|m| m.archive_layout())
            .await?
            .ok_or_else(|| EngineError::internal("no archive layout recorded"))?;
        let mut after: Option<ExtentEntry> = None;
        let mut copied = 0;
        loop {
            let id = c.id;
            let a = after.clone();
            let page = self
                .engine
                .meta_call(move |m| m.container_extents(&id, a.as_ref(), PAGE))
                .await?;
            let full = page.len() == PAGE;
            after = page.last().cloned();
            for e in page {
                copied += self.move_extent(c, e, &layout).await?;
                self.commit_ready().await?;
                self.writer.seal_if_full().await?;
            }
            if !full {
                break;
            }
        }
        // Every copy written and swapped in before the old container goes.
        self.writer.flush().await?;
        self.commit_ready().await?;
        self.writer.seal_if_full().await?;
        let id = c.id;
        let freed = self
            .engine
            .meta_call(move |m| m.retire_container(&id, now_ms()))
            .await?;
        Ok((freed, copied))
    }

    /// Copies one extent, if its version still points at it, into the compaction container.
    /// Returns the bytes appended there (0 when there was nothing to move).
    async fn move_extent(
        &mut self,
        c: &ContainerRecord,
        e: ExtentEntry,
        layout: &LayoutRecord,
    ) -> Result<u64, EngineError> {
        let (b, k, id) = (e.bucket.clone(), e.key.clone(), e.version_id.clone());
        let v = match self.engine.version(&b, &k, Some(&id)).await {
            Ok(v) => v,
            Err(EngineError::Meta(
                MetaError::NoSuchKey | MetaError::NoSuchVersion | MetaError::NoSuchBucket,
            )) => return Ok(0),
            Err(err) => return Err(err),
        };
        let Some(old) = v
            .archive
            .as_ref()
            .and_then(|a| a.extent.clone())
            .filter(|x| x.is_at(&c.id, &e))
        else {
            return Ok(0);
        };
        let chunk_size = self.engine.archive_cfg().chunk_size.max(1);
        if old.is_packed() {
            // Verbatim: the sealed frames as they are, no data key involved.
            let mut source = self.engine.read_sealed_extent(&old).await?;
            self.writer.begin(layout, chunk_size).await?;
            while let Some(piece) = source.next().await {
                let piece =
                    piece.map_err(|e| EngineError::internal(format!("reading extent: {e}")))?;
                self.writer.push(&piece).await?;
            }
            let (len, fs, stored) = (old.len, old.frame_size, old.sealed_len);
            self.writer.finish(len, fs, (e, old)).await?;
            Ok(stored)
        } else if old.len == 0 {
            // Format 1, empty: no frames, and the version has no data key.
            self.writer.begin(layout, chunk_size).await?;
            self.writer.finish(0, FRAME_SIZE, (e, old)).await?;
            Ok(0)
        } else {
            // Format 1: its plaintext, sealed into frames under the version's key.
            let name = e.bucket.clone();
            let Some(bucket) = self.engine.meta_call(move |m| m.get_bucket(&name)).await? else {
                return Ok(0);
            };
            let (dek, binding) = self.engine.server_chunk_key(&bucket, &v).await?;
            let mut source = self
                .engine
                .read_extent(&bucket, &e.key, &v, &old, 0..old.len, &binding)
                .await?;
            let mut sealer = FrameSealer::new(
                dek,
                FrameIdentity {
                    bucket: e.bucket.clone(),
                    key: e.key.clone(),
                    version_id: v.version_id.clone(),
                    len: old.len,
                    frame_size: FRAME_SIZE,
                },
            );
            self.writer.begin(layout, chunk_size).await?;
            let mut out = BytesMut::new();
            while let Some(piece) = source.next().await {
                let piece =
                    piece.map_err(|e| EngineError::internal(format!("reading extent: {e}")))?;
                sealer.push(&piece, &mut out)?;
                self.writer.push(&out).await?;
                out.clear();
            }
            sealer.finish(&mut out)?;
            self.writer.push(&out).await?;
            let len = old.len;
            self.writer.finish(len, FRAME_SIZE, (e, old)).await?;
            Ok(strata_metadata::archive::sealed_len(len, FRAME_SIZE))
        }
    }

    /// Swaps in every copy whose bytes are all written.
    async fn commit_ready(&mut self) -> Result<(), EngineError> {
        let ready = self.writer.take_ready();
        if ready.is_empty() {
            return Ok(());
        }
        let moves: Vec<ExtentMove> = ready
            .into_iter()
            .map(|p| ExtentMove {
                entry: p.item.0,
                old: p.item.1,
                new: p.extent,
            })
            .collect();
        let done = self
            .engine
            .meta_call(move |m| m.replace_extents(&moves))
            .await?;
        let moved = done.iter().filter(|ok| **ok).count() as u64;
        if let Some(t) = self.totals.as_mut() {
            t.extents_moved += moved;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Worker for CompactionWorker {
    fn name(&self) -> &'static str {
        "archive-compaction"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let interval = pass_interval(&self.engine.lifecycle_clock());
        if self.last_round.is_some_and(|t| t.elapsed() < interval) {
            return Ok(WorkState::Idle);
        }
        let mut totals = self.totals().await.map_err(|e| e.to_string())?;
        let containers = self
            .engine
            .meta_call(|m| m.list_containers())
            .await
            .map_err(|e| e.to_string())?;
        let threshold = self.engine.archive_cfg().compact_below;
        let now = now_ms();
        let (mut live_sum, mut dead_sum) = (0, 0);
        for c in &containers {
            let mut c = c.clone();
            if !c.retiring {
                let live = self.audit(&c).await.map_err(|e| e.to_string())?;
                // Only a sealed container is rewritten: the open one still takes extents.
                let retiring = c.sealed && (live as f64) < threshold * c.bytes as f64;
                let id = c.id;
                self.engine
                    .meta_call(move |m| m.set_container_audit(&id, live, retiring, now))
                    .await
                    .map_err(|e| e.to_string())?;
                c.live_bytes = live;
                c.retiring = retiring;
            }
            if c.retiring {
                let (freed, copied) = match self.retire(&c).await {
                    Ok(f) => f,
                    Err(e) => {
                        // Start over next round (the container is still retiring).
                        self.writer.abort();
                        self.writer.reset();
                        return Err(e.to_string());
                    }
                };
                let t = self.totals.clone().unwrap_or_default();
                totals.extents_moved = t.extents_moved;
                // What was copied out still takes space elsewhere; extents destroyed between
                // the audit and the move are reclaimed too.
                totals.reclaimed_bytes += freed.saturating_sub(copied);
                totals.containers_retired += 1;
                tracing::info!(container = %hex::encode(c.id), bytes = c.bytes, copied, "archive container compacted and freed");
                self.save(totals.clone()).await.map_err(|e| e.to_string())?;
                continue;
            }
            live_sum += c.live_bytes.min(c.bytes);
            dead_sum += c.bytes.saturating_sub(c.live_bytes);
        }
        self.containers = containers.len();
        self.live_bytes = live_sum;
        self.dead_bytes = dead_sum;
        self.last_round = Some(Instant::now());
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        let t = self.totals.clone().unwrap_or_default();
        json!({
            "containers": self.containers,
            "live_bytes": self.live_bytes,
            "dead_bytes": self.dead_bytes,
            "reclaimed_bytes": t.reclaimed_bytes,
            "containers_retired": t.containers_retired,
            "extents_moved": t.extents_moved,
            "compact_below": self.engine.archive_cfg().compact_below,
        })
    }

    fn idle_interval(&self) -> Duration {
        pass_interval(&self.engine.lifecycle_clock()).min(Duration::from_secs(60))
    }
}
