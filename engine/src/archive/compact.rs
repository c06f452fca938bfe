//! The `archive-compaction` worker. Containers are immutable once sealed, so space held by the
//! extents of destroyed (or never committed) versions comes back only by rewriting: the worker
//! audits each sealed container (which of its extents a version still points at), and when the
//! live fraction is below `--archive-compact-below` it marks the container retiring, copies each
//! live extent into the open container (same data key: the chunk store re-encrypts with fresh
//! nonces), swaps it into the version with a compare-and-set, and finally frees the container's
//! chunks through the GC queue (with the grace period, so reads in flight finish).
//!
//! Every step is idempotent: an extent already moved is no longer live in the old container, and
//! a retiring container is resumed after a restart from its persisted `retiring` flag.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_metadata::archive::ContainerRecord;
use strata_metadata::{BlobId, MetaError};

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

pub struct CompactionWorker {
    engine: Engine,
    totals: Option<Totals>,
    last_round: Option<Instant>,
    containers: usize,
    live_bytes: u64,
    dead_bytes: u64,
}

impl CompactionWorker {
    pub fn new(engine: Engine) -> Self {
        CompactionWorker {
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
        let raw = self
            .engine
            .meta_call(|m| m.get_worker_state(STATE_KEY))
            .await?;
        let t: Totals = raw
            .and_then(|r| serde_json::from_slice(&r).ok())
            .unwrap_or_default();
        self.totals = Some(t.clone());
        Ok(t)
    }

    async fn save(&mut self, t: Totals) -> Result<(), EngineError> {
        let raw = serde_json::to_vec(&t).map_err(|e| EngineError::internal(e.to_string()))?;
        self.engine
            .meta_call(move |m| m.put_worker_state(STATE_KEY, &raw))
            .await?;
        self.totals = Some(t);
        Ok(())
    }

    /// Live bytes of a container (every extent checked against its version).
    async fn audit(&self, c: &ContainerRecord) -> Result<u64, EngineError> {
        let mut live = 0;
        let mut after = None;
        loop {
            let id = c.id;
            let page = self
                .engine
                .meta_call(move |m| m.container_extents(&id, after, PAGE))
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|e| e.first_chunk);
            for e in page {
                let id = c.id;
                let e2 = e.clone();
                if self
                    .engine
                    .meta_call(move |m| m.extent_is_live(&id, &e2))
                    .await?
                {
                    live += e.len;
                }
            }
            if !full {
                return Ok(live);
            }
        }
    }

    /// Moves every live extent out of a retiring container, then frees it.
    async fn retire(&mut self, c: &ContainerRecord) -> Result<u64, EngineError> {
        let mut moved = 0;
        let mut after = None;
        loop {
            let id = c.id;
            let page = self
                .engine
                .meta_call(move |m| m.container_extents(&id, after, PAGE))
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|e| e.first_chunk);
            for e in page {
                if self.move_extent(c.id, e).await? {
                    moved += 1;
                }
            }
            if !full {
                break;
            }
        }
        if let Some(t) = self.totals.as_mut() {
            t.extents_moved += moved;
        }
        let id = c.id;
        let freed = self
            .engine
            .meta_call(move |m| m.retire_container(&id, now_ms()))
            .await?;
        Ok(freed)
    }

    async fn move_extent(
        &self,
        container: BlobId,
        e: strata_metadata::archive::ExtentEntry,
    ) -> Result<bool, EngineError> {
        let (b, k, id) = (e.bucket.clone(), e.key.clone(), e.version_id.clone());
        let v = match self.engine.version(&b, &k, Some(&id)).await {
            Ok(v) => v,
            Err(EngineError::Meta(
                MetaError::NoSuchKey | MetaError::NoSuchVersion | MetaError::NoSuchBucket,
            )) => {
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        let Some(old) = v
            .archive
            .as_ref()
            .and_then(|a| a.extent.clone())
            .filter(|x| x.container == container && x.first_chunk == e.first_chunk)
        else {
            return Ok(false);
        };
        let name = e.bucket.clone();
        let Some(bucket) = self.engine.meta_call(move |m| m.get_bucket(&name)).await? else {
            return Ok(false);
        };
        let layout = self
            .engine
            .meta_call(|m| m.archive_layout())
            .await?
            .ok_or_else(|| EngineError::internal("no archive layout recorded"))?;
        let cfg = self.engine.archive_cfg().clone();
        let cs = cfg.chunk_size.max(1);
        let open = self
            .engine
            .meta_call(move |m| m.open_container(layout.id, cs, now_ms()))
            .await?;
        if open.id == container {
            return Ok(false);
        }
        let (oid, len, seal) = (open.id, old.len, cfg.container_bytes);
        let (b2, k2, id2) = (b.clone(), k.clone(), id.clone());
        let new_extent = self
            .engine
            .meta_call(move |m| m.reserve_extent(&oid, &b2, &k2, &id2, len, seal))
            .await?;
        let (dek, _) = self.engine.server_chunk_key(&bucket, &v).await?;
        let source = self.engine.read_extent(dek.clone(), &old).await?;
        self.engine.write_extent(&dek, &new_extent, source).await?;
        let entry = e.clone();
        match self
            .engine
            .meta_call(move |m| m.replace_extent(&entry, &old, new_extent))
            .await
        {
            Ok(()) => Ok(true),
            Err(EngineError::Meta(MetaError::Stale)) => Ok(false),
            Err(err) => Err(err),
        }
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
                let freed = self.retire(&c).await.map_err(|e| e.to_string())?;
                let t = self.totals.clone().unwrap_or_default();
                totals.extents_moved = t.extents_moved;
                totals.reclaimed_bytes += freed.saturating_sub(c.live_bytes);
                totals.containers_retired += 1;
                tracing::info!(container = %hex::encode(c.id), bytes = c.bytes, live = c.live_bytes, "archive container compacted and freed");
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
