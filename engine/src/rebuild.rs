//! Rebuild: restores full redundancy in cluster mode. Two sources of work, in this order:
//!
//! 1. **Degraded chunks**: chunks acknowledged with missing shards (a node was down during the
//!    write; `MetaStore::record_degraded`). Each is rebuilt through its primary (reconstruct from
//!    k shards, write the missing ones) and its record cleared once every shard is present and
//!    verified. A chunk deleted meanwhile clears its record too.
//! 2. **Disk rebuilds**: a disk that came back empty (new disk id) or belongs to a replaced
//!    node. The worker walks every version (resumable cursor in the worker state) and rebuilds
//!    every chunk whose placement group includes such a disk; a complete pass ends the jobs that
//!    were queued before it started.
//!
//! A node that comes back with an empty disk is found by the cluster map's check of every
//! node's disk ids (a new id queues a disk rebuild). That check runs on its own period, so
//! the degraded queue could drain (its chunks rebuilt onto the returned node) before it ran,
//! and the worker would show nothing pending while the rest of that disk was still empty. So
//! after clearing degraded records the worker runs the check itself ([`DiskCheck`]) before it
//! lists the disk rebuilds: a chunk rebuilt onto a node proves that node is up, and the check
//! that follows sees its current disk ids.
//!
//! Rate limit (bytes written per second), priority (`low`: a quarter of the rate, `high`: no
//! limit), progress, bytes done and an ETA are in `strata admin rebuild status` and the metrics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_metadata::{DegradedChunk, DiskRebuild};
use strata_storage_node::cluster::group_layout;
use strata_storage_node::{ChunkId, NodeError, RebuildReport};

use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError};

/// Worker-state key of the walk's progress.
const STATE_KEY: &str = "rebuild";
/// Degraded records / versions handled per unit.
const PAGE: usize = 64;
/// Chunks rebuilt at the same time (each reads k shards and writes the missing ones).
const PARALLEL: usize = 8;

/// Re-reads every reachable node's disks into the cluster map now, queuing a disk rebuild for
/// a disk that reports a new id (the cluster-map worker's check, on demand).
#[async_trait::async_trait]
pub trait DiskCheck: Send + Sync {
    async fn check_disks(&self) -> Result<(), String>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A quarter of the configured rate: foreground traffic first.
    Low,
    Normal,
    /// No rate limit: restore redundancy as fast as the disks allow.
    High,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            _ => Err(format!("priority must be low, normal or high, not {s:?}")),
        }
    }
}

/// The walk's durable progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    cursor: Option<Vec<u8>>,
    /// When the current pass started (jobs queued before it end when it completes).
    pass_started: Option<i64>,
}

pub struct Rebuilder {
    engine: Engine,
    rate: u64,
    priority: Priority,
    degraded_cursor: Option<Vec<u8>>,
    progress: Option<Progress>,
    started: Instant,
    // Counters since this process started.
    chunks_checked: u64,
    chunks_rebuilt: u64,
    shards_rebuilt: u64,
    bytes_done: u64,
    bytes_read: u64,
    failures: u64,
    versions_scanned: u64,
    busy: Duration,
    degraded_pending: u64,
    disks_pending: Vec<String>,
    last_error: Option<String>,
    /// Degraded records were cleared since the last disk check.
    check_disks: bool,
}

impl Rebuilder {
    pub fn new(engine: Engine, rate_bytes_per_sec: u64, priority: Priority) -> Self {
        Rebuilder {
            engine,
            rate: rate_bytes_per_sec.max(1),
            priority,
            degraded_cursor: None,
            progress: None,
            started: Instant::now(),
            chunks_checked: 0,
            chunks_rebuilt: 0,
            shards_rebuilt: 0,
            bytes_done: 0,
            bytes_read: 0,
            failures: 0,
            versions_scanned: 0,
            busy: Duration::ZERO,
            degraded_pending: 0,
            disks_pending: Vec::new(),
            last_error: None,
            check_disks: false,
        }
    }

    fn effective_rate(&self) -> Option<u64> {
        match self.priority {
            Priority::Low => Some((self.rate / 4).max(1)),
            Priority::Normal => Some(self.rate),
            Priority::High => None,
        }
    }

    /// Counts what rebuilding one chunk did; true when it is whole (or gone).
    fn account(&mut self, id: ChunkId, outcome: Result<RebuildReport, NodeError>) -> bool {
        self.chunks_checked += 1;
        match outcome {
            Ok(report) => {
                self.bytes_done += report.bytes_written;
                self.bytes_read += report.bytes_read;
                if !report.rebuilt.is_empty() {
                    self.chunks_rebuilt += 1;
                    self.shards_rebuilt += report.rebuilt.len() as u64;
                }
                if !report.complete() {
                    self.failures += 1;
                    self.last_error = Some(format!(
                        "chunk {}/{}: failed {:?}, unreachable {:?}",
                        hex::encode(id.blob),
                        id.index,
                        report.failed,
                        report.unreachable
                    ));
                }
                report.complete()
            }
            Err(NodeError::NotFound) => true,
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(e.to_string());
                false
            }
        }
    }

    /// Rebuilds `chunks` (layout id, chunk) with up to [`PARALLEL`] at a time; returns for each
    /// whether it is whole now.
    async fn rebuild_many(
        &mut self,
        chunks: Vec<(u32, ChunkId)>,
    ) -> Result<Vec<bool>, EngineError> {
        let mut layouts = std::collections::HashMap::new();
        for (l, _) in &chunks {
            if !layouts.contains_key(l) {
                layouts.insert(*l, self.engine.layout(*l).await?);
            }
        }
        let engine = self.engine.clone();
        let outcomes: Vec<_> = futures::stream::iter(chunks.into_iter().map(|(l, id)| {
            let layout = layouts[&l].node.clone();
            let engine = engine.clone();
            async move { (id, engine.chunks().rebuild_chunk(&layout, id).await) }
        }))
        .buffered(PARALLEL)
        .collect()
        .await;
        Ok(outcomes
            .into_iter()
            .map(|(id, o)| self.account(id, o))
            .collect())
    }

    async fn degraded_unit(&mut self) -> Result<bool, EngineError> {
        let after = self.degraded_cursor.clone();
        let (recs, next) = self
            .engine
            .meta_call(move |m| m.list_degraded(after.as_deref(), PAGE))
            .await?;
        // Progress = some record cleared; a page of chunks whose nodes are still down is not
        // progress, and the worker then waits its idle interval instead of spinning.
        let mut progressed = false;
        let chunks = recs
            .iter()
            .map(|r| {
                (
                    r.layout,
                    ChunkId {
                        blob: r.blob,
                        index: r.index,
                    },
                )
            })
            .collect();
        let whole = self.rebuild_many(chunks).await?;
        for (rec, whole) in recs.into_iter().zip(whole) {
            if whole {
                let r: DegradedChunk = rec;
                let cleared = self.engine.meta_call(move |m| m.clear_degraded(&r)).await?;
                progressed |= cleared;
                self.check_disks |= cleared;
            }
        }
        self.degraded_cursor = next;
        Ok(progressed || self.degraded_cursor.is_some())
    }

    async fn load(&mut self) -> Result<Progress, EngineError> {
        if let Some(p) = &self.progress {
            return Ok(p.clone());
        }
        let p: Progress = self.engine.load_worker_state(STATE_KEY).await?;
        self.progress = Some(p.clone());
        Ok(p)
    }

    async fn save(&mut self, p: Progress) -> Result<(), EngineError> {
        self.engine.save_worker_state(STATE_KEY, &p).await?;
        self.progress = Some(p);
        Ok(())
    }

    /// One page of the walk for disk rebuilds `jobs`.
    async fn walk_unit(&mut self, jobs: &[DiskRebuild]) -> Result<(), EngineError> {
        let mut p = self.load().await?;
        let now = crate::now_ms();
        let pass_started = *p.pass_started.get_or_insert(now);
        let after = p.cursor.clone();
        let (versions, next) = self
            .engine
            .meta_call(move |m| m.scan_versions(after.as_deref(), PAGE))
            .await?;
        let pending: BTreeSet<String> = jobs
            .iter()
            .filter(|j| j.since <= pass_started)
            .map(|j| format!("{}/{}", j.node, j.disk))
            .collect();
        let mut chunks = Vec::new();
        for v in &versions {
            self.versions_scanned += 1;
            for seg in &v.version.data.segments {
                let layout = self.engine.layout(seg.layout).await?;
                if !layout.node.disks.iter().any(|d| pending.contains(d)) {
                    continue;
                }
                let group = group_layout(&layout.node, &seg.blob)?;
                if !group.disks.iter().any(|d| pending.contains(d)) {
                    continue;
                }
                for index in 0..seg.chunk_count() {
                    chunks.push((
                        seg.layout,
                        ChunkId {
                            blob: seg.blob,
                            index,
                        },
                    ));
                }
            }
        }
        let complete = self.rebuild_many(chunks).await?.into_iter().all(|w| w);
        if !complete {
            // Retry this page later (a node may still be down): the cursor stays.
            return Err(EngineError::internal(
                self.last_error
                    .clone()
                    .unwrap_or_else(|| "rebuild incomplete".into()),
            ));
        }
        match next {
            Some(c) => {
                p.cursor = Some(c);
                self.save(p).await?;
            }
            None => {
                for job in jobs.iter().filter(|j| j.since <= pass_started) {
                    let j = job.clone();
                    self.engine
                        .meta_call(move |m| m.finish_disk_rebuild(&j))
                        .await?;
                    tracing::info!(node = %job.node, disk = %job.disk, "disk rebuilt: full redundancy restored");
                }
                self.save(Progress::default()).await?;
            }
        }
        Ok(())
    }

    /// Sleeps so that the bytes written by this unit stay under the rate.
    async fn throttle(&self, bytes: u64, took: Duration) {
        if let Some(rate) = self.effective_rate() {
            let want = Duration::from_secs_f64(bytes as f64 / rate as f64);
            if want > took {
                tokio::time::sleep((want - took).min(Duration::from_secs(10))).await;
            }
        }
    }

    fn measured_rate(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.bytes_done as f64 / secs
        } else {
            0.0
        }
    }
}

#[async_trait::async_trait]
impl Worker for Rebuilder {
    fn name(&self) -> &'static str {
        "rebuild"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let started = Instant::now();
        let before = self.bytes_done;
        let result = async {
            if self.check_disks
                && let Some(check) = self.engine.disk_check().cloned()
            {
                // Before the queues are read: see the module comment.
                check.check_disks().await.map_err(EngineError::internal)?;
                self.check_disks = false;
            }
            self.degraded_pending = self
                .engine
                .meta_call(|m| m.count_degraded(1_000_000))
                .await?;
            let jobs = self.engine.meta_call(|m| m.list_disk_rebuilds()).await?;
            self.disks_pending = jobs
                .iter()
                .map(|j| format!("{}/{}", j.node, j.disk))
                .collect();
            if self.degraded_pending > 0 && self.degraded_unit().await? {
                return Ok(WorkState::Busy);
            }
            if !jobs.is_empty() {
                self.walk_unit(&jobs).await?;
                return Ok(WorkState::Busy);
            }
            Ok::<_, EngineError>(WorkState::Idle)
        }
        .await
        .map_err(|e| e.to_string());
        let took = started.elapsed();
        if result == Ok(WorkState::Busy) {
            self.busy += took;
        }
        self.throttle(self.bytes_done - before, took).await;
        result
    }

    fn status(&self) -> Value {
        let rate = self.measured_rate();
        let avg_chunk = if self.chunks_rebuilt > 0 {
            self.bytes_done as f64 / self.chunks_rebuilt as f64
        } else {
            0.0
        };
        let eta = (rate > 0.0).then(|| (self.degraded_pending as f64 * avg_chunk / rate).ceil());
        json!({
            "priority": self.priority,
            "rate_limit_bytes_per_sec": self.effective_rate(),
            "degraded_chunks_pending": self.degraded_pending,
            "disks_pending": self.disks_pending,
            "walk_cursor_set": self.progress.as_ref().is_some_and(|p| p.cursor.is_some()),
            "versions_scanned": self.versions_scanned,
            "chunks_checked": self.chunks_checked,
            "chunks_rebuilt": self.chunks_rebuilt,
            "shards_rebuilt": self.shards_rebuilt,
            "bytes_done": self.bytes_done,
            "bytes_read": self.bytes_read,
            "failures": self.failures,
            "last_error": self.last_error,
            "rate_bytes_per_sec": rate.round(),
            "eta_secs": eta,
            "uptime_secs": self.started.elapsed().as_secs(),
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}
