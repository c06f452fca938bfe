//! Garbage collection: destroys the keys and deletes the chunks of data no version references
//! any more, from the metadata tier's durable queue (a crash only delays deletion, never loses
//! it), and writes the destruction record of every destroyed version (`destruction.rs`).
//!
//! Data waits in the queue for the grace period before it is deleted, so reads, copies and
//! UploadPartCopy already streaming it finish; blobs this process is reading right now are
//! deferred even past the grace (see `read.rs`). Deleting a chunk twice is harmless: a crash
//! between deletion and acknowledgement repeats it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use strata_metadata::{DeleteReason, GcStats};

use crate::workers::{WorkState, Worker};
use crate::{Engine, now_ms};

/// Items taken from the queue per unit of work.
const BATCH: usize = 64;

/// Items destroyed at the same time (their key-store flushes and log appends group-commit).
const PARALLEL: usize = 4;

/// How often the queue's size is measured for metrics (a bounded scan, `MetaStore::gc_stats`),
/// so scrapes read a number instead of scanning.
const BACKLOG_EVERY: Duration = Duration::from_secs(30);

/// The metrics label of a destruction's reason (a fixed set).
pub fn reason_label(r: &DeleteReason) -> &'static str {
    match r {
        DeleteReason::UserRequest { .. } => "user_request",
        DeleteReason::Lifecycle { .. } => "lifecycle",
        DeleteReason::RetentionEnd { .. } => "retention_end",
        DeleteReason::BucketPurge => "bucket_purge",
        DeleteReason::AccountClosure => "account_closure",
        DeleteReason::Admin { .. } => "admin",
    }
}

pub struct GcWorker {
    engine: Engine,
    items_done: u64,
    chunks_deleted: u64,
    bytes_deleted: u64,
    keys_destroyed: u64,
    records_written: u64,
    /// Items skipped because this process is still reading their data.
    deferred: u64,
    last_batch: usize,
    /// Destruction records written, by reason label.
    destroyed: BTreeMap<&'static str, u64>,
    /// Items whose destruction failed (each is retried).
    failures: u64,
    /// The queue's size when last measured, and when.
    backlog: Option<(GcStats, Instant)>,
}

impl GcWorker {
    pub fn new(engine: Engine) -> Self {
        GcWorker {
            engine,
            items_done: 0,
            chunks_deleted: 0,
            bytes_deleted: 0,
            keys_destroyed: 0,
            records_written: 0,
            deferred: 0,
            last_batch: 0,
            destroyed: BTreeMap::new(),
            failures: 0,
            backlog: None,
        }
    }
}

#[async_trait::async_trait]
impl Worker for GcWorker {
    fn name(&self) -> &'static str {
        "gc"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        if self
            .backlog
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= BACKLOG_EVERY)
        {
            let stats = self
                .engine
                .meta_call(|m| m.gc_stats(now_ms()))
                .await
                .map_err(|e| e.to_string())?;
            self.backlog = Some((stats, Instant::now()));
        }
        let items = self
            .engine
            .meta_call(|m| m.gc_pending(now_ms(), BATCH))
            .await
            .map_err(|e| e.to_string())?;
        self.last_batch = items.len();
        let mut ready = Vec::with_capacity(items.len());
        for item in &items {
            if item
                .segments
                .iter()
                .any(|s| self.engine.pins().is_pinned(&s.blob))
            {
                self.deferred += 1;
                continue;
            }
            ready.push(item.clone());
        }
        let engine = self.engine.clone();
        let outcomes: Vec<_> = futures::stream::iter(ready)
            .map(|item| {
                let engine = engine.clone();
                async move {
                    let r = engine.destroy_item(&item).await;
                    (item, r)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut done = Vec::with_capacity(outcomes.len());
        for (item, outcome) in outcomes {
            match outcome {
                Ok(d) => {
                    self.chunks_deleted += d.chunks_deleted;
                    self.keys_destroyed += d.keys_destroyed;
                    self.records_written += d.record.is_some() as u64;
                    if let (Some(_), Some(v)) = (d.record, &item.destroyed) {
                        *self.destroyed.entry(reason_label(&v.reason)).or_default() += 1;
                    }
                    self.bytes_deleted += item.segments.iter().map(|s| s.len).sum::<u64>();
                    done.push(item.seq);
                }
                Err(e) => {
                    self.failures += 1;
                    tracing::warn!(error = %e, seq = item.seq, "gc: destruction failed; will retry")
                }
            }
        }
        if done.is_empty() {
            return Ok(WorkState::Idle);
        }
        let n = done.len();
        self.engine
            .meta_call(move |m| m.gc_ack(&done))
            .await
            .map_err(|e| e.to_string())?;
        self.items_done += n as u64;
        tracing::debug!(count = n, "gc: deleted unreferenced data");
        Ok(if items.len() == BATCH {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }

    fn status(&self) -> Value {
        json!({
            "items_done": self.items_done,
            "chunks_deleted": self.chunks_deleted,
            "bytes_deleted": self.bytes_deleted,
            "keys_destroyed": self.keys_destroyed,
            "destruction_records": self.records_written,
            "deferred_in_use": self.deferred,
            "last_batch": self.last_batch,
            "grace_ms": self.engine.meta_blocking().gc_grace_ms(),
            "destroyed_by_reason": self.destroyed,
            "destruction_failures": self.failures,
            // The queue when last measured (every 30 s; counts stop at GC_STATS_LIMIT).
            "queued": self.backlog.as_ref().map(|b| b.0.queued),
            "due": self.backlog.as_ref().map(|b| b.0.due),
            "oldest_due_ms": self.backlog.as_ref().and_then(|b| b.0.oldest_due),
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_millis(500)
    }
}

/// Turns the write intents of dead writers (instances whose lease ran out) into GC items; never
/// those of a live instance, so it is safe with several processes sharing the metadata tier.
pub struct IntentSweeper {
    engine: Engine,
    swept: u64,
}

impl IntentSweeper {
    pub fn new(engine: Engine) -> Self {
        IntentSweeper { engine, swept: 0 }
    }
}

#[async_trait::async_trait]
impl Worker for IntentSweeper {
    fn name(&self) -> &'static str {
        "intent-sweep"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let n = self
            .engine
            .meta_call(|m| m.sweep_interrupted_writes(now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        self.swept += n as u64;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({ "swept": self.swept })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(60)
    }
}
