//! Metadata housekeeping for backends that keep history (etcd): compact revisions older than a
//! retention window, and defragment members, one at a time, whose database is mostly free
//! space after compaction. A singleton worker (leader only); a no-op on RocksDB, which
//! compacts itself.
//!
//! Crash-safe and resumable: each step reads the current revision and the last compaction mark
//! (kept in etcd), so a restarted or new leader continues where the last one stopped; compaction
//! and defragmentation are idempotent. Rate-limited: one step per interval, at most one member
//! defragmented per step (a member is briefly unavailable while it rewrites its file, and the
//! others keep serving).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_metadata::coord::{Housekeeping, HousekeepingReport};

use crate::workers::{WorkState, Worker};

#[derive(Clone, Debug)]
pub struct HousekeepingConfig {
    /// Revisions of history kept behind the current one (reads at older revisions fail).
    pub keep_revisions: i64,
    /// Do not compact fewer revisions than this in one step.
    pub min_step: i64,
    /// Defragment a member whose in-use / size ratio is below this...
    pub defrag_below: f64,
    /// ...and whose file is at least this big.
    pub defrag_min_bytes: i64,
    /// Pause between steps.
    pub interval: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        HousekeepingConfig {
            keep_revisions: 100_000,
            min_step: 10_000,
            defrag_below: 0.5,
            defrag_min_bytes: 64 * 1024 * 1024,
            interval: Duration::from_secs(60),
        }
    }
}

pub struct HousekeepingWorker {
    hk: Arc<dyn Housekeeping>,
    cfg: HousekeepingConfig,
    steps: u64,
    compactions: u64,
    defrags: u64,
    last: Option<HousekeepingReport>,
}

impl HousekeepingWorker {
    pub fn new(hk: Arc<dyn Housekeeping>, cfg: HousekeepingConfig) -> Self {
        HousekeepingWorker {
            hk,
            cfg,
            steps: 0,
            compactions: 0,
            defrags: 0,
            last: None,
        }
    }
}

#[async_trait::async_trait]
impl Worker for HousekeepingWorker {
    fn name(&self) -> &'static str {
        "meta-housekeeping"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let hk = self.hk.clone();
        let c = self.cfg.clone();
        let report = tokio::task::spawn_blocking(move || {
            hk.step(
                c.keep_revisions,
                c.min_step,
                c.defrag_below,
                c.defrag_min_bytes,
            )
        })
        .await
        .map_err(|e| format!("housekeeping task failed: {e}"))?
        .map_err(|e| format!("housekeeping step failed: {e}"))?;
        self.steps += 1;
        if report.compacted_to > 0 {
            self.compactions += 1;
            tracing::info!(revision = report.compacted_to, "metadata history compacted");
        }
        for m in &report.defragmented {
            self.defrags += 1;
            tracing::info!(member = %m, "metadata member defragmented");
        }
        self.last = Some(report);
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({
            "steps": self.steps,
            "compactions": self.compactions,
            "defragmentations": self.defrags,
            "keep_revisions": self.cfg.keep_revisions,
            "defrag_below": self.cfg.defrag_below,
            "last": self.last,
        })
    }

    fn idle_interval(&self) -> Duration {
        self.cfg.interval
    }
}
