//! RestoreObject: the request (202 started / 200 extended / 409 in progress), and the `restore`
//! worker that performs queued restores once their tier's delay has passed and removes restored
//! copies when they expire. Both queues are in the metadata tier, so restores survive restarts:
//! a restore cut by a crash is simply done again (its half-written copy is swept by its write
//! intent), and a copy's chunks are released in the same batch that ends it.

use std::time::Duration;

use serde_json::{Value, json};
use strata_metadata::archive::{RestoreRequestOutcome, is_archive_class};
use strata_metadata::{MetaError, VersionRecord};

use crate::body::read_as_body;
use crate::error::Rejection;
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, WriteSpec, now_ms};

/// Restore days S3 accepts.
pub const MAX_RESTORE_DAYS: i64 = 2_147_483_647;

impl Engine {
    /// RestoreObject on a version (`None`: the latest). `tier`: Expedited, Standard or Bulk.
    pub async fn restore_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        days: i64,
        tier: &str,
    ) -> Result<RestoreRequestOutcome, EngineError> {
        if !(1..=MAX_RESTORE_DAYS).contains(&days) {
            return Err(Rejection::InvalidRestore("Days must be a positive integer".into()).into());
        }
        if !matches!(tier, "Expedited" | "Standard" | "Bulk") {
            return Err(Rejection::InvalidRestore(format!("invalid tier {tier:?}")).into());
        }
        let v = self.version(bucket, key, version_id).await?;
        if v.is_delete_marker {
            return Err(MetaError::IsDeleteMarker {
                version_id: v.version_id,
                last_modified: v.last_modified,
            }
            .into());
        }
        if !is_archive_class(&v.storage_class) {
            return Err(Rejection::ObjectAlreadyInActiveTier.into());
        }
        if v.storage_class == "DEEP_ARCHIVE" && tier == "Expedited" {
            return Err(Rejection::InvalidRestore(
                "Expedited retrieval is not supported for the DEEP_ARCHIVE storage class".into(),
            )
            .into());
        }
        let now = now_ms();
        let clock = self.lifecycle_clock();
        let days = days.min(u32::MAX as i64) as u32;
        let ready_at = now
            + self
                .archive_cfg()
                .restore_delays
                .delay(tier, &v.storage_class);
        let expiry = clock.after_days(now, days);
        let (b, k, id, t) = (
            bucket.to_string(),
            key.to_string(),
            v.version_id.clone(),
            tier.to_string(),
        );
        let out = self
            .meta_call(move |m| {
                m.request_restore(&b, &k, Some(&id), days, &t, ready_at, expiry, now)
            })
            .await?;
        match &out {
            RestoreRequestOutcome::Started => {
                tracing::info!(bucket = %bucket, key = %key, version = %v.version_id, tier, days, "restore requested")
            }
            RestoreRequestOutcome::Extended(e) => {
                tracing::info!(bucket = %bucket, key = %key, version = %v.version_id, expiry = e, "restored copy extended")
            }
            RestoreRequestOutcome::InProgress => {}
        }
        if out == RestoreRequestOutcome::InProgress {
            return Err(Rejection::RestoreAlreadyInProgress.into());
        }
        Ok(out)
    }
}

pub struct RestoreWorker {
    engine: Engine,
    restored: u64,
    bytes: u64,
    expired: u64,
    stale: u64,
    failed: u64,
    waiting: usize,
    copies: usize,
}

impl RestoreWorker {
    pub fn new(engine: Engine) -> Self {
        RestoreWorker {
            engine,
            restored: 0,
            bytes: 0,
            expired: 0,
            stale: 0,
            failed: 0,
            waiting: 0,
            copies: 0,
        }
    }

    async fn restore_one(
        &mut self,
        vkey: Vec<u8>,
        bucket: &str,
        key: &str,
        v: VersionRecord,
    ) -> Result<(), EngineError> {
        let name = bucket.to_string();
        let Some(b) = self.engine.meta_call(move |m| m.get_bucket(&name)).await? else {
            return self
                .engine
                .meta_call(move |m| m.drop_restore_request(&vkey))
                .await;
        };
        let Some(r) = v.archive.as_ref().and_then(|a| a.restore.clone()) else {
            return Ok(());
        };
        let (dek, binding) = if v.size == 0 {
            // An empty body stores no chunk and the version has no key: this one encrypts
            // nothing.
            (
                std::sync::Arc::new(strata_storage_node::keys::DataKey::generate()),
                crate::sse::KeyBinding::None,
            )
        } else {
            self.engine.server_chunk_key(&b, &v).await?
        };
        let source = self.engine.archived_bytes(&b, key, &v, &binding).await?;
        let spec = WriteSpec {
            max_len: v.size,
            expected_len: Some(v.size),
            ..Default::default()
        };
        let stored = self
            .engine
            .write_blob(dek, read_as_body(source), spec)
            .await?;
        let expiry = self.engine.lifecycle_clock().after_days(now_ms(), r.days);
        let seg = stored.segment.clone();
        match self
            .engine
            .meta_call(move |m| m.complete_restore(&vkey, seg, expiry))
            .await
        {
            Ok(()) => {
                stored.committed();
                self.restored += 1;
                self.bytes += v.size;
                tracing::info!(bucket = %bucket, version = %v.version_id, size = v.size, expiry, "restore done");
                Ok(())
            }
            Err(EngineError::Meta(MetaError::Stale)) => {
                stored.discard("restore-stale").await;
                self.stale += 1;
                Ok(())
            }
            Err(e) => {
                stored.discard("restore-failed").await;
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Worker for RestoreWorker {
    fn name(&self) -> &'static str {
        "restore"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let now = now_ms();
        let mut did = false;
        // Every waiting request is looked at (pages of 256): requests are in key order, not
        // in the order their tier delays end.
        let mut queue = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        for _ in 0..64 {
            let a = after.clone();
            let page = self
                .engine
                .meta_call(move |m| m.pending_restores(a.as_deref(), 256))
                .await
                .map_err(|e| e.to_string())?;
            let full = page.len() == 256;
            after = page.last().map(|q| q.vkey.clone());
            queue.extend(page);
            if !full {
                break;
            }
        }
        self.waiting = queue.len();
        for q in queue {
            let running = q
                .version
                .as_ref()
                .and_then(|v| v.archive.as_ref())
                .and_then(|a| a.restore.as_ref())
                .filter(|r| r.ongoing)
                .cloned();
            let Some(r) = running else {
                let vkey = q.vkey.clone();
                self.engine
                    .meta_call(move |m| m.drop_restore_request(&vkey))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            };
            if r.ready_at > now {
                continue;
            }
            let v = q.version.clone().expect("checked above");
            if let Err(e) = self.restore_one(q.vkey.clone(), &q.bucket, &q.key, v).await {
                self.failed += 1;
                return Err(format!("restoring {}/{}: {e}", q.bucket, q.key));
            }
            did = true;
        }
        // Restored copies whose time is up, or whose version is gone.
        let mut after: Option<Vec<u8>> = None;
        let mut copies = 0;
        for _ in 0..64 {
            let a = after.clone();
            let page = self
                .engine
                .meta_call(move |m| m.restored_copies(a.as_deref(), 256))
                .await
                .map_err(|e| e.to_string())?;
            let full = page.len() == 256;
            copies += page.len();
            for (q, entry) in &page {
                let gone = q.version.as_ref().is_none_or(|v| {
                    v.archive
                        .as_ref()
                        .and_then(|a| a.restore.as_ref())
                        .is_none_or(|r| r.segments != entry.segments)
                });
                if gone || entry.expiry <= now {
                    let vkey = q.vkey.clone();
                    if self
                        .engine
                        .meta_call(move |m| m.expire_restore(&vkey, now))
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        self.expired += 1;
                        did = true;
                        tracing::info!(bucket = %q.bucket, key = %q.key, "restored copy expired");
                    }
                }
            }
            after = page.last().map(|(q, _)| q.vkey.clone());
            if !full {
                break;
            }
        }
        self.copies = copies;
        Ok(if did {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }

    fn status(&self) -> Value {
        json!({
            "restores_done": self.restored,
            "bytes_restored": self.bytes,
            "copies_expired": self.expired,
            "stale": self.stale,
            "failed": self.failed,
            "requests_waiting": self.waiting,
            "restored_copies": self.copies,
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
