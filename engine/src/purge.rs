//! Destroying whole buckets and accounts.
//!
//! - Bucket purge (`strata admin bucket purge`): the bucket becomes read-only at once
//!   (`BucketRecord::closing`); the `purge` worker then removes every version (one destruction
//!   record each, reason `bucket_purge`) and every upload, leaves versions under Object Lock
//!   (retention or legal hold) until their lock ends, and when nothing is left removes the bucket
//!   and queues its KEK(s) for destruction in the same batch.
//! - Account closure (`strata admin user remove NAME --purge`): the user and each of its buckets
//!   are marked closing with a deadline (grace period, 7 days by default, in "days" of
//!   `--lifecycle-day-secs`). Until then everything stays readable and nothing can be written;
//!   `strata admin user restore` undoes it. After the deadline the worker destroys the buckets as
//!   a purge does (reason `account_closure`), then removes the user and its access keys.
//!
//! Resumable without a persisted cursor: every step is a delete of what is still there, so after
//! a restart the worker lists the bucket again; records are exactly-once by the GC items' op ids.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use strata_metadata::{
    BucketClosing, DeleteReason, ListUploadsParams, ListVersionsParams, MetaError, UserClosing,
};

use crate::objects::DeleteRequest;
use crate::workers::{WorkState, Worker};
use crate::{Engine, Result, now_ms};

/// Versions looked at per unit of work.
const PAGE: usize = 256;
/// Account-closure grace period, in days.
pub const DEFAULT_GRACE_DAYS: u32 = 7;

impl Engine {
    fn day_ms(&self) -> i64 {
        self.cfg().lifecycle_day_secs.unwrap_or(86_400).max(1) as i64 * 1000
    }

    /// Starts destroying a bucket (read-only from now on). Idempotent.
    pub async fn purge_bucket(&self, name: &str, by: &str) -> Result<Value> {
        let now = now_ms();
        let closing = BucketClosing {
            reason: DeleteReason::BucketPurge,
            requested_ms: now,
            destroy_after_ms: now,
            by: by.to_string(),
        };
        let n = name.to_string();
        let rec = self
            .meta_call(move |m| m.set_bucket_closing(&n, Some(closing)))
            .await?;
        tracing::info!(target: "strata::audit", bucket = %name, by, "bucket purge started");
        Ok(json!({"bucket": rec.name, "closing": rec.closing}))
    }

    /// Closes an account: read-only for `grace_days`, then destroyed.
    pub async fn close_account(&self, name: &str, grace_days: u32, by: &str) -> Result<Value> {
        let n = name.to_string();
        let user = self
            .meta_call(move |m| m.get_user(&n))
            .await?
            .ok_or(MetaError::NoSuchUser)?;
        if user.is_admin {
            return Err(MetaError::Invalid("the admin user cannot be removed".into()).into());
        }
        let now = now_ms();
        let deadline = now + grace_days as i64 * self.day_ms();
        let closing = UserClosing {
            requested_ms: now,
            destroy_after_ms: deadline,
            by: by.to_string(),
        };
        let n = name.to_string();
        self.meta_call(move |m| m.set_user_closing(&n, Some(closing)))
            .await?;
        let mut buckets = Vec::new();
        for b in self
            .list_buckets()
            .await?
            .into_iter()
            .filter(|b| b.owner == user.id)
        {
            if b.closing.is_some() {
                continue;
            }
            let c = BucketClosing {
                reason: DeleteReason::AccountClosure,
                requested_ms: now,
                destroy_after_ms: deadline,
                by: by.to_string(),
            };
            let bn = b.name.clone();
            self.meta_call(move |m| m.set_bucket_closing(&bn, Some(c)))
                .await?;
            buckets.push(b.name);
        }
        tracing::info!(target: "strata::audit", user = %name, by, deadline, "account closure started");
        Ok(json!({"user": name, "destroy_after_ms": deadline, "buckets": buckets}))
    }

    /// Undoes an account closure during its grace period.
    pub async fn restore_account(&self, name: &str) -> Result<Value> {
        let n = name.to_string();
        let user = self
            .meta_call(move |m| m.get_user(&n))
            .await?
            .ok_or(MetaError::NoSuchUser)?;
        let Some(closing) = user.closing else {
            return Err(MetaError::Invalid(format!("user {name} is not being removed")).into());
        };
        if closing.destroy_after_ms <= now_ms() {
            return Err(MetaError::Invalid(format!(
                "the grace period of user {name} ended: its data is being destroyed"
            ))
            .into());
        }
        let mut buckets = Vec::new();
        for b in self
            .list_buckets()
            .await?
            .into_iter()
            .filter(|b| b.owner == user.id)
        {
            if b.closing
                .as_ref()
                .is_some_and(|c| c.reason == DeleteReason::AccountClosure)
            {
                let bn = b.name.clone();
                self.meta_call(move |m| m.set_bucket_closing(&bn, None))
                    .await?;
                buckets.push(b.name);
            }
        }
        let n = name.to_string();
        self.meta_call(move |m| m.set_user_closing(&n, None))
            .await?;
        tracing::info!(target: "strata::audit", user = %name, "account closure undone");
        Ok(json!({"user": name, "restored_buckets": buckets}))
    }
}

/// Where a bucket's walk is (in memory: a restart lists the bucket again).
#[derive(Default, Clone)]
struct Walk {
    key_marker: Option<String>,
    version_marker: Option<String>,
    /// Versions left because of Object Lock in this pass.
    locked: u64,
}

/// The `purge` worker.
pub struct PurgeWorker {
    engine: Engine,
    walks: HashMap<String, Walk>,
    versions_removed: u64,
    uploads_aborted: u64,
    buckets_removed: u64,
    users_removed: u64,
    waiting_for_locks: u64,
}

impl PurgeWorker {
    pub fn new(engine: Engine) -> Self {
        PurgeWorker {
            engine,
            walks: HashMap::new(),
            versions_removed: 0,
            uploads_aborted: 0,
            buckets_removed: 0,
            users_removed: 0,
            waiting_for_locks: 0,
        }
    }

    /// One page of one bucket; true if it did something.
    async fn bucket_unit(&mut self, bucket: &str, closing: &BucketClosing) -> Result<bool> {
        let e = &self.engine;
        let now = now_ms();
        let walk = self.walks.entry(bucket.to_string()).or_default().clone();
        let params = ListVersionsParams {
            prefix: String::new(),
            delimiter: None,
            key_marker: walk.key_marker.clone(),
            version_id_marker: walk.version_marker.clone(),
            max_keys: PAGE,
        };
        let page = e.list_versions(bucket, params).await?;
        let Some(rec) = e.bucket(bucket).await? else {
            return Ok(false);
        };
        let job = match closing.reason {
            DeleteReason::AccountClosure => "account-closure",
            _ => "purge",
        };
        let mut locked = walk.locked;
        let mut removed = 0;
        for entry in &page.entries {
            let v = &entry.version;
            if !v.is_delete_marker && v.is_locked(now, false) {
                locked += 1;
                continue;
            }
            let req = DeleteRequest {
                version_id: Some(v.version_id.clone()),
                bypass_governance: false,
                actor: format!("{job}:{}", closing.by),
                reason: closing.reason.clone(),
            };
            match e.delete_object(&rec, &entry.key, req).await {
                Ok(_) => removed += 1,
                // Locked meanwhile (a racing retention change): left for a later pass.
                Err(crate::EngineError::Meta(MetaError::ObjectLocked)) => locked += 1,
                Err(err) => return Err(err),
            }
        }
        self.versions_removed += removed;
        if page.is_truncated {
            let w = self.walks.get_mut(bucket).expect("inserted above");
            w.key_marker = page.next_key_marker.clone();
            w.version_marker = page.next_version_id_marker.clone();
            w.locked = locked;
            return Ok(true);
        }
        // End of a pass: uploads, then the bucket itself if nothing is left.
        let uploads = e
            .list_uploads(
                bucket,
                ListUploadsParams {
                    max_uploads: PAGE,
                    ..Default::default()
                },
            )
            .await?;
        for u in &uploads.uploads {
            match e.abort_upload(bucket, &u.key, &u.upload_id).await {
                Ok(()) | Err(crate::EngineError::Meta(MetaError::NoSuchUpload)) => {
                    self.uploads_aborted += 1
                }
                Err(err) => return Err(err),
            }
        }
        self.walks.remove(bucket);
        if locked > 0 {
            self.waiting_for_locks += 1;
            return Ok(removed > 0 || !uploads.uploads.is_empty());
        }
        if removed == 0 && uploads.uploads.is_empty() {
            let n = bucket.to_string();
            match e.meta_call(move |m| m.delete_purged_bucket(&n)).await {
                Ok(()) => {
                    self.buckets_removed += 1;
                    tracing::info!(target: "strata::audit", bucket, "bucket destroyed (its KEK queued for destruction)");
                }
                // Something appeared (a racing delete marker removal...): next pass.
                Err(crate::EngineError::Meta(MetaError::BucketNotEmpty)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Worker for PurgeWorker {
    fn name(&self) -> &'static str {
        "purge"
    }

    async fn work(&mut self) -> std::result::Result<WorkState, String> {
        let now = now_ms();
        let buckets = self
            .engine
            .list_buckets()
            .await
            .map_err(|e| e.to_string())?;
        self.waiting_for_locks = 0;
        let mut busy = false;
        for b in &buckets {
            let Some(c) = &b.closing else { continue };
            if c.destroy_after_ms > now {
                continue;
            }
            busy |= self
                .bucket_unit(&b.name, c)
                .await
                .map_err(|e| format!("purging {}: {e}", b.name))?;
        }
        // Closed accounts whose buckets are all gone: remove the user and its keys.
        for u in self.engine.list_users().await.map_err(|e| e.to_string())? {
            let Some(c) = &u.closing else { continue };
            if c.destroy_after_ms > now || buckets.iter().any(|b| b.owner == u.id) {
                continue;
            }
            self.engine
                .delete_user(&u.name)
                .await
                .map_err(|e| e.to_string())?;
            self.users_removed += 1;
            tracing::info!(target: "strata::audit", user = %u.name, "closed account removed");
        }
        Ok(if busy {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }

    fn status(&self) -> Value {
        json!({
            "versions_removed": self.versions_removed,
            "uploads_aborted": self.uploads_aborted,
            "buckets_removed": self.buckets_removed,
            "users_removed": self.users_removed,
            "buckets_waiting_for_object_lock": self.waiting_for_locks,
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}
