//! Leadership of this process among the processes sharing the metadata tier: work that must
//! happen once (GC, the intent sweep, lifecycle, archive jobs, key rotation and purges,
//! rebalance, metadata housekeeping) runs only on the elected leader.
//!
//! The election worker holds a process lease from the metadata tier's [`Coordinator`] (keep-
//! alive every `ttl / 3`), stands as a candidate under it, and polls who leads. This process is
//! the leader while the coordinator names its lease AND the last keep-alive that succeeded was
//! sent less than `ttl - margin` ago: a leader cut off from etcd stops its singleton work before
//! its lease can expire and another process take over. A leader killed with -9 stops renewing;
//! etcd deletes its candidate key when the lease runs out (at most `ttl` after the last renewal)
//! and the next candidate's poll (every [`STANDBY_POLL`]) sees itself leading.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_metadata::coord::{Coordinator, LeaseId};

use crate::workers::{LeaderGate, WorkState, Worker};

/// The election every Strata process of one metadata tier stands in.
pub const ELECTION: &str = "singleton-workers";
/// How often a process that is not the leader checks whether it is now.
pub const STANDBY_POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
struct State {
    lease: Option<LeaseId>,
    /// Until when this process may act as leader (monotonic clock).
    leader_until: Option<Instant>,
    leader_value: Option<String>,
    /// When the last keep-alive that succeeded (or the grant) was sent.
    last_renewal: Option<Instant>,
    terms: u64,
    leases_lost: u64,
}

/// This process's view of leadership; the gate of the singleton workers.
#[derive(Clone)]
pub struct Leadership {
    state: Arc<Mutex<State>>,
    ttl: Duration,
}

impl Leadership {
    pub fn new(ttl: Duration) -> Self {
        Leadership {
            state: Arc::default(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease this process holds (None before the first grant).
    pub fn lease(&self) -> Option<LeaseId> {
        self.lock().lease
    }
}

impl LeaderGate for Leadership {
    fn is_leader(&self) -> bool {
        self.lock().leader_until.is_some_and(|t| Instant::now() < t)
    }
}

/// Keeps the process lease alive and follows the election (runs on every process).
pub struct ElectionWorker {
    coord: Arc<dyn Coordinator>,
    leadership: Leadership,
    /// Who we are, as the leader record shows it (instance id, listen address).
    me: String,
}

impl ElectionWorker {
    pub fn new(coord: Arc<dyn Coordinator>, leadership: Leadership, me: String) -> Self {
        ElectionWorker {
            coord,
            leadership,
            me,
        }
    }
}

/// One step: make sure we hold a live lease and a candidacy, then see who leads. Blocking.
fn step(coord: &dyn Coordinator, leadership: &Leadership, me: &str) -> strata_metadata::Result<()> {
    let ttl = leadership.ttl;
    let renew_every = ttl / 3;
    let lease = match leadership.lease() {
        Some(l) => l,
        None => {
            let sent = Instant::now();
            let l = coord.grant_lease(ttl.as_secs().max(1) as i64)?;
            let mut st = leadership.lock();
            st.last_renewal = Some(sent);
            st.lease = Some(l);
            l
        }
    };
    let last = leadership.lock().last_renewal;
    if last.is_none_or(|t| t.elapsed() >= renew_every) {
        let sent = Instant::now();
        if coord.keep_alive(lease)? {
            leadership.lock().last_renewal = Some(sent);
        } else {
            // Expired (we were cut off or suspended past the TTL): everything tied to it is
            // gone, and so is our candidacy. Stop leading now; a fresh lease next step.
            let mut st = leadership.lock();
            st.lease = None;
            st.leader_until = None;
            st.leases_lost += 1;
            tracing::warn!("process lease expired; leadership (if any) is lost");
            return Ok(());
        }
    }
    coord.campaign(ELECTION, lease, me.as_bytes())?;
    let leader = coord.leader(ELECTION)?;
    {
        let mut st = leadership.lock();
        st.leader_value = leader
            .as_ref()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let leading = leader.is_some_and(|(l, _)| l == lease);
        let was = st.leader_until.is_some_and(|t| Instant::now() < t);
        if leading {
            // Safe margin: stop a fifth of the TTL before the lease could run out.
            let until = st.last_renewal.unwrap_or_else(Instant::now) + ttl - ttl / 5;
            st.leader_until = Some(until);
            if !was {
                st.terms += 1;
                tracing::info!(
                    lease,
                    "this process is now the leader (singleton workers run here)"
                );
            }
        } else {
            if was {
                tracing::warn!(lease, "leadership lost; singleton workers stop");
            }
            st.leader_until = None;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Worker for ElectionWorker {
    fn name(&self) -> &'static str {
        "leader-election"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        // Coordinator calls block (they wait on etcd): off the async workers.
        let (coord, leadership, me) =
            (self.coord.clone(), self.leadership.clone(), self.me.clone());
        tokio::task::spawn_blocking(move || step(coord.as_ref(), &leadership, &me))
            .await
            .map_err(|e| format!("election task failed: {e}"))?
            .map_err(|e| format!("election step failed: {e}"))?;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        let st = self.leadership.lock();
        json!({
            "backend": self.coord.backend(),
            "leader": st.leader_until.is_some_and(|t| Instant::now() < t),
            "lease": st.lease,
            "leader_is": st.leader_value,
            "me": self.me,
            "terms": st.terms,
            "leases_lost": st.leases_lost,
            "ttl_ms": self.leadership.ttl.as_millis() as u64,
        })
    }

    fn idle_interval(&self) -> Duration {
        STANDBY_POLL
    }
}

impl Leadership {
    /// Gives up leadership and the lease (clean shutdown), so the next leader need not wait
    /// for the TTL. Blocking.
    pub fn release(&self, coord: &dyn Coordinator) {
        let lease = {
            let mut st = self.lock();
            st.leader_until = None;
            st.lease.take()
        };
        if let Some(l) = lease {
            let _ = coord.resign(ELECTION, l);
            let _ = coord.revoke_lease(l);
        }
    }
}
