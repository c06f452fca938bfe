//! Coordination primitives for processes sharing one metadata tier: a process lease (grant,
//! keep-alive, revoke) and leader election on a name, behind a small trait so the engine stays
//! backend-free.
//!
//! - [`LocalCoordinator`] (RocksDB): one process owns the store (RocksDB's lock), so it is
//!   always the leader and its lease never expires.
//! - [`EtcdCoordinator`]: an etcd lease, and a candidate key `{prefix}election/{name}/{lease}`
//!   put under that lease; the leader is the candidate with the lowest create revision (the
//!   oldest live campaign), as etcd's own election recipe does. A killed leader's key vanishes
//!   when its lease runs out (at most the TTL after its last keep-alive), and the next candidate
//!   is the leader.
//!
//! Callers must treat leadership as lost as soon as they cannot prove their lease alive within
//! the TTL (the engine's election worker stops singleton work `ttl` after the last successful
//! keep-alive was *sent*), so two processes never both act as leader for long; every change the
//! singleton workers make is a conditional commit anyway, so an overlap cannot corrupt state.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};

use crate::kv_etcd::EtcdHandle;
use crate::{MetaError, Result};

/// A granted lease (backend-specific id).
pub type LeaseId = i64;

pub trait Coordinator: Send + Sync {
    /// `"local"` or `"etcd"`.
    fn backend(&self) -> &'static str;
    /// A new lease that lives `ttl_secs` past its last keep-alive.
    fn grant_lease(&self, ttl_secs: i64) -> Result<LeaseId>;
    /// Renews the lease; `Ok(false)`: it has expired (everything tied to it is gone).
    fn keep_alive(&self, lease: LeaseId) -> Result<bool>;
    /// Ends the lease now (clean shutdown: the next leader need not wait for the TTL).
    fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
    /// Stands for `election` under `lease` with `value` (who we are); idempotent.
    fn campaign(&self, election: &str, lease: LeaseId, value: &[u8]) -> Result<()>;
    /// The current leader of `election`: its lease and value (`None`: no candidate).
    fn leader(&self, election: &str) -> Result<Option<(LeaseId, Vec<u8>)>>;
    /// Withdraws the candidacy of `lease` (the next candidate leads).
    fn resign(&self, election: &str, lease: LeaseId) -> Result<()>;
}

/// The embedded store's coordinator: the only process, always the leader.
#[derive(Default)]
pub struct LocalCoordinator {
    next: AtomicI64,
    value: std::sync::Mutex<Option<(LeaseId, Vec<u8>)>>,
}

impl Coordinator for LocalCoordinator {
    fn backend(&self) -> &'static str {
        "local"
    }
    fn grant_lease(&self, _ttl_secs: i64) -> Result<LeaseId> {
        Ok(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn keep_alive(&self, _lease: LeaseId) -> Result<bool> {
        Ok(true)
    }
    fn revoke_lease(&self, _lease: LeaseId) -> Result<()> {
        Ok(())
    }
    fn campaign(&self, _election: &str, lease: LeaseId, value: &[u8]) -> Result<()> {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some((lease, value.to_vec()));
        Ok(())
    }
    fn leader(&self, _election: &str) -> Result<Option<(LeaseId, Vec<u8>)>> {
        Ok(self.value.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn resign(&self, _election: &str, _lease: LeaseId) -> Result<()> {
        Ok(())
    }
}

fn etcd_err(e: etcd_client::Error) -> MetaError {
    MetaError::Db(format!("etcd: {e}"))
}

/// Leases and elections on etcd, under the store's key prefix.
pub struct EtcdCoordinator {
    handle: Arc<EtcdHandle>,
}

impl EtcdCoordinator {
    pub fn new(handle: Arc<EtcdHandle>) -> Self {
        EtcdCoordinator { handle }
    }

    fn election_prefix(&self, election: &str) -> Vec<u8> {
        let mut p = self.handle.config().prefix.clone();
        p.extend_from_slice(b"election/");
        p.extend_from_slice(election.as_bytes());
        p.push(b'/');
        p
    }

    fn candidate_key(&self, election: &str, lease: LeaseId) -> Vec<u8> {
        let mut k = self.election_prefix(election);
        k.extend_from_slice(format!("{lease:016x}").as_bytes());
        k
    }
}

impl Coordinator for EtcdCoordinator {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn grant_lease(&self, ttl_secs: i64) -> Result<LeaseId> {
        let mut c = self.handle.client();
        self.handle.run(async move {
            let r = c.lease_grant(ttl_secs, None).await.map_err(etcd_err)?;
            Ok(r.id())
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<bool> {
        let mut c = self.handle.client();
        let timeout = self.handle.config().request_timeout;
        self.handle.run(async move {
            let gone = |e: &etcd_client::Error| e.to_string().contains("lease not found");
            let (mut keeper, mut stream) = match c.lease_keep_alive(lease).await {
                Ok(x) => x,
                Err(e) if gone(&e) => return Ok(false),
                Err(e) => return Err(etcd_err(e)),
            };
            keeper.keep_alive().await.map_err(etcd_err)?;
            let msg = match tokio::time::timeout(timeout, stream.message())
                .await
                .map_err(|_| MetaError::Db("etcd: lease keep-alive timed out".into()))?
            {
                Ok(m) => m,
                Err(e) if gone(&e) => return Ok(false),
                Err(e) => return Err(etcd_err(e)),
            };
            // etcd answers TTL 0 (or "lease not found") for a lease that no longer exists.
            Ok(msg.is_some_and(|m| m.ttl() > 0))
        })
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut c = self.handle.client();
        self.handle.run(async move {
            match c.lease_revoke(lease).await {
                Ok(_) => Ok(()),
                // Already expired: nothing left to revoke.
                Err(e) if e.to_string().contains("lease not found") => Ok(()),
                Err(e) => Err(etcd_err(e)),
            }
        })
    }

    fn campaign(&self, election: &str, lease: LeaseId, value: &[u8]) -> Result<()> {
        let key = self.candidate_key(election, lease);
        let value = value.to_vec();
        let mut c = self.handle.client();
        self.handle.run(async move {
            // Create once: a re-put would keep the create revision but is pointless traffic.
            let txn = Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            c.txn(txn).await.map_err(etcd_err)?;
            Ok(())
        })
    }

    fn leader(&self, election: &str) -> Result<Option<(LeaseId, Vec<u8>)>> {
        let prefix = self.election_prefix(election);
        let strip = prefix.len();
        let mut c = self.handle.client();
        self.handle.run(async move {
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            let mut r = c.get(prefix, Some(opts)).await.map_err(etcd_err)?;
            let Some(kv) = r.take_kvs().into_iter().next() else {
                return Ok(None);
            };
            let lease = kv.lease();
            let (k, v) = kv.into_key_value();
            // The lease in the key and on the key agree; prefer the one etcd attached.
            let lease = if lease != 0 {
                lease
            } else {
                std::str::from_utf8(&k[strip..])
                    .ok()
                    .and_then(|s| i64::from_str_radix(s, 16).ok())
                    .unwrap_or(0)
            };
            Ok(Some((lease, v)))
        })
    }

    fn resign(&self, election: &str, lease: LeaseId) -> Result<()> {
        let key = self.candidate_key(election, lease);
        let mut c = self.handle.client();
        self.handle.run(async move {
            c.delete(key, None).await.map_err(etcd_err)?;
            Ok(())
        })
    }
}

/// What one etcd history-maintenance step did (see [`EtcdCoordinator`]'s sibling,
/// `kv_etcd::EtcdMaintenance`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HousekeepingReport {
    pub revision: i64,
    /// Revision compacted up to in this step (0: none).
    pub compacted_to: i64,
    /// Member endpoints defragmented in this step.
    pub defragmented: Vec<String>,
    /// Per member: (endpoint, db size, db size in use).
    pub members: Vec<(String, i64, i64)>,
}

/// History compaction and defragmentation of the store's backend (etcd only).
pub trait Housekeeping: Send + Sync {
    /// Compacts history older than `keep_revisions` behind the current revision (if more than
    /// `min_step` revisions would go), then defragments at most one member whose in-use / size
    /// ratio is below `defrag_below` (and whose size is at least `defrag_min_bytes`).
    fn step(
        &self,
        keep_revisions: i64,
        min_step: i64,
        defrag_below: f64,
        defrag_min_bytes: i64,
    ) -> Result<HousekeepingReport>;
}

/// etcd's housekeeping: compaction by revision window, then defragmentation member by member.
pub struct EtcdHousekeeping {
    handle: Arc<EtcdHandle>,
}

impl EtcdHousekeeping {
    pub fn new(handle: Arc<EtcdHandle>) -> Self {
        EtcdHousekeeping { handle }
    }
}

impl Housekeeping for EtcdHousekeeping {
    fn step(
        &self,
        keep_revisions: i64,
        min_step: i64,
        defrag_below: f64,
        defrag_min_bytes: i64,
    ) -> Result<HousekeepingReport> {
        let endpoints = self.handle.config().endpoints.clone();
        let client = self.handle.client();
        let prefix = self.handle.config().prefix.clone();
        self.handle.run(async move {
            let mut report = HousekeepingReport::default();
            let mut c = client.clone();
            // The current revision, and the last one we compacted to (kept in etcd itself so a
            // restarted or new leader does not repeat a compaction: etcd refuses an old one).
            let mut mark_key = prefix.clone();
            mark_key.extend_from_slice(b"housekeeping/compacted");
            let r = c.get(mark_key.clone(), None).await.map_err(etcd_err)?;
            let revision = r.header().map_or(0, |h| h.revision());
            report.revision = revision;
            let done: i64 = r
                .kvs()
                .first()
                .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
                .unwrap_or(0);
            let target = revision - keep_revisions;
            if target > 0 && target - done >= min_step {
                match c.compact(target, None).await {
                    Ok(_) => {}
                    // Someone (an operator, another leader) compacted further already.
                    Err(e) if e.to_string().contains("compacted") => {}
                    Err(e) => return Err(etcd_err(e)),
                }
                c.put(mark_key, target.to_string(), None)
                    .await
                    .map_err(etcd_err)?;
                report.compacted_to = target;
            }
            // Defragment one member at a time: a member blocks its reads and writes while it
            // rewrites its db, and the others keep the cluster serving meanwhile.
            for ep in &endpoints {
                let url = if ep.starts_with("http") {
                    ep.clone()
                } else {
                    format!("http://{ep}")
                };
                let mut one = match etcd_client::Client::connect([url.as_str()], None).await {
                    Ok(c) => c,
                    Err(_) => continue, // a member down: the others are still checked
                };
                let Ok(st) = one.status().await else { continue };
                let (size, in_use) = (st.db_size(), st.raft_used_db_size());
                report.members.push((ep.clone(), size, in_use));
                if report.defragmented.is_empty()
                    && size >= defrag_min_bytes
                    && size > 0
                    && (in_use as f64) / (size as f64) < defrag_below
                {
                    one.defragment().await.map_err(etcd_err)?;
                    report.defragmented.push(ep.clone());
                }
            }
            Ok(report)
        })
    }
}
