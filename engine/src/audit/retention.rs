//! `AuditRetentionWorker`: deletes audit-log segments whose every record has outlived the
//! retention, one segment per unit of work (docs/audit.md, "Retention").
//!
//! Per process, not a leader singleton: each process keeps its own audit log in its own data
//! directory, so each must trim its own (`Workers::spawn`, not `spawn_singleton`). Its durable
//! progress is the segment list (`segments.json`, a deleting segment's state), not a cursor in
//! the metadata tier, because the log it trims is local too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{AuditLog, SegmentState};
use crate::now_ms;
use crate::workers::{WorkState, Worker};

pub struct AuditRetentionWorker {
    log: Arc<AuditLog>,
    retention_ms: i64,
    interval: Duration,
    segments_deleted: u64,
    records_deleted: u64,
    last_deleted: Option<u32>,
}

impl AuditRetentionWorker {
    /// Keeps records `retention_ms`; looks for due segments every `interval` (an hour in
    /// production).
    pub fn new(log: Arc<AuditLog>, retention_ms: i64, interval: Duration) -> Self {
        Self {
            log,
            retention_ms,
            interval,
            segments_deleted: 0,
            records_deleted: 0,
            last_deleted: None,
        }
    }
}

#[async_trait::async_trait]
impl Worker for AuditRetentionWorker {
    fn name(&self) -> &'static str {
        "audit-retention"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        match self.log.retention_step(now_ms(), self.retention_ms).await? {
            Some(d) => {
                self.segments_deleted += 1;
                self.records_deleted += d.records;
                self.last_deleted = Some(d.segment);
                Ok(WorkState::Busy)
            }
            None => Ok(WorkState::Idle),
        }
    }

    fn status(&self) -> Value {
        let segs = self.log.segments().unwrap_or_default();
        let present: Vec<_> = segs
            .iter()
            .filter(|e| matches!(e.state, SegmentState::Active | SegmentState::Sealed))
            .collect();
        json!({
            "retention_ms": self.retention_ms,
            "segments_deleted": self.segments_deleted,
            "records_deleted": self.records_deleted,
            "last_deleted_segment": self.last_deleted,
            "segments_kept": present.len(),
            "active_segment": segs.last().map(|e| e.id),
            "oldest_kept_time_ms": present.first().and_then(|e| e.first_time_ms),
        })
    }

    fn idle_interval(&self) -> Duration {
        self.interval
    }
}
