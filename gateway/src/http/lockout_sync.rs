//! Cluster mode: the `auth-lockout` worker makes the failed-signature limits cluster-wide
//! (docs/security-limits.md). Every second it publishes the slots of this gateway's table that
//! changed (its own count per principal, under a keyed tag: never a key or an address) and
//! reads every other gateway's counts, which the table then adds to its own.
//!
//! Costs stay bounded whatever an attacker sends: at most `PUBLISH_PER_PASS` records written per
//! second (locked and high counts first), at most `MAX_PUBLISHED` records of this gateway alive
//! at once (a new principal replaces the lowest count only if it has more), at most `MAX_READ`
//! records read per pass. Records expire: a gateway deletes its own once their window and
//! lockout are over, and any gateway deletes another's that expired `STALE_GRACE_SECS` ago (a
//! gateway that died or restarted under a new instance id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::workers::{WorkState, Worker};
use strata_metadata::lockout::LockoutCount;

use super::lockout::{AuthLimiter, LOCKOUT_SECS, Remote, WINDOW_SECS, unix_now};

const PUBLISH_PER_PASS: usize = 512;
const MAX_PUBLISHED: usize = 4096;
const MAX_READ: usize = 16_384;
const STALE_GRACE_SECS: u32 = 30;
/// Another gateway's expired records deleted per pass.
const STALE_PER_PASS: usize = 256;
/// The secret the shared tags are keyed by is derived from the master key for this purpose.
pub const TAG_PURPOSE: &[u8] = b"strata/v1/auth-lockout-tags";

fn expires(c: &LockoutCount) -> u32 {
    (c.window_start.saturating_add(WINDOW_SECS)).max(c.locked_until)
}

pub struct LockoutSync {
    engine: Engine,
    limiter: Arc<AuthLimiter>,
    gateway: String,
    /// This gateway's records in the metadata tier: tag -> (expiry, count).
    published: HashMap<u64, (u32, u32)>,
    written: u64,
    deleted: u64,
    stale_removed: u64,
    remote_principals: usize,
    remote_locked: usize,
}

impl LockoutSync {
    pub fn new(engine: Engine, limiter: Arc<AuthLimiter>) -> Self {
        let gateway = engine.instance().get();
        LockoutSync {
            engine,
            limiter,
            gateway,
            published: HashMap::new(),
            written: 0,
            deleted: 0,
            stale_removed: 0,
            remote_principals: 0,
            remote_locked: 0,
        }
    }

    /// Which of `taken` to write and which of this gateway's records to delete.
    fn plan(&mut self, now: u32, taken: &[(usize, LockoutCount)]) -> (Vec<LockoutCount>, Vec<u64>) {
        let mut delete: Vec<u64> = self
            .published
            .iter()
            .filter(|(_, (exp, _))| *exp <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in &delete {
            self.published.remove(t);
        }
        let mut put = Vec::new();
        for (_, c) in taken {
            if !self.published.contains_key(&c.tag) && self.published.len() >= MAX_PUBLISHED {
                let lowest = self
                    .published
                    .iter()
                    .min_by_key(|(_, (_, n))| *n)
                    .map(|(t, (_, n))| (*t, *n));
                match lowest {
                    Some((t, n)) if n < c.count => {
                        self.published.remove(&t);
                        delete.push(t);
                    }
                    _ => continue,
                }
            }
            self.published.insert(c.tag, (expires(c), c.count));
            put.push(*c);
        }
        (put, delete)
    }
}

#[async_trait::async_trait]
impl Worker for LockoutSync {
    fn name(&self) -> &'static str {
        "auth-lockout"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let now = unix_now();
        let taken = self.limiter.take_dirty(now, PUBLISH_PER_PASS);
        let (put, delete) = self.plan(now, &taken);
        if !put.is_empty() || !delete.is_empty() {
            let (gw, p, d) = (self.gateway.clone(), put.clone(), delete.clone());
            if let Err(e) = self
                .engine
                .meta_call(move |m| m.publish_lockout_counts(&gw, &p, &d))
                .await
            {
                self.limiter.remark(&taken);
                for c in &put {
                    self.published.remove(&c.tag);
                }
                for t in delete {
                    self.published.insert(t, (0, 0)); // deleted again next pass
                }
                return Err(format!("publishing lockout counts: {e}"));
            }
            self.written += put.len() as u64;
            self.deleted += delete.len() as u64;
        }
        let recs = self
            .engine
            .meta_call(|m| m.lockout_records(MAX_READ))
            .await
            .map_err(|e| format!("reading lockout counts: {e}"))?;
        let mut remote: HashMap<u64, Remote> = HashMap::new();
        let mut stale = Vec::new();
        for r in recs {
            if r.gateway == self.gateway {
                continue;
            }
            let c = r.count;
            if expires(&c).saturating_add(STALE_GRACE_SECS) < now {
                if stale.len() < STALE_PER_PASS {
                    stale.push(r);
                }
                continue;
            }
            let e = remote.entry(c.tag).or_default();
            if now.saturating_sub(c.window_start) < WINDOW_SECS {
                e.others = e.others.saturating_add(c.count);
            }
            // A lockout never lasts longer than one LOCKOUT from now, whatever a record says.
            e.locked_until = e.locked_until.max(c.locked_until.min(now + LOCKOUT_SECS));
        }
        remote.retain(|_, r| r.others > 0 || r.locked_until > now);
        self.remote_principals = remote.len();
        self.remote_locked = remote.values().filter(|r| r.locked_until > now).count();
        self.limiter.set_remote(remote);
        if !stale.is_empty() {
            let n = stale.len() as u64;
            if self
                .engine
                .meta_call(move |m| m.remove_lockout_records(&stale))
                .await
                .map_err(|e| format!("removing expired lockout counts: {e}"))?
            {
                self.stale_removed += n;
            }
        }
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({
            "published": self.published.len(),
            "records_written": self.written,
            "records_deleted": self.deleted,
            "stale_removed": self.stale_removed,
            "other_gateways_principals": self.remote_principals,
            "other_gateways_locked": self.remote_locked,
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}
