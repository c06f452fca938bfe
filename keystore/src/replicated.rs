//! The key service replicated over several nodes (docs/cluster.md, "The key service"), so that
//! losing one key node stops no read or write of objects.
//!
//! - **Slots** are numbered cluster-wide by a counter in the metadata tier
//!   ([`ReplicaJournal::allocate`]), so a key has the same slot on every replica. A number is
//!   never handed out twice (a released or failed one is dropped, not reused).
//! - **Writes, destructions and re-wraps** go to every replica in parallel and return once each
//!   is fsync'd on every replica that answered. A replica that did not answer gets a journal
//!   entry in the metadata tier (slots and key ids only: never key material) before the call
//!   returns; a write also needs [`write_quorum`] replicas durable. A journal that cannot be
//!   written fails the call (a destruction is then retried by its caller).
//! - **Reads** go to any replica this process does not know to be behind; a replica refuses
//!   reads while fenced (it starts fenced: it may have missed something while it was away).
//! - **Catch-up** ([`ReplicatedKeyStore::catch_up`], a worker on every gateway): a replica with
//!   journal entries is fenced, gets every missed destruction applied and every missed write
//!   copied from a caught-up peer, and is admitted (serves reads) once its journal is empty. A
//!   destroyed slot is never written again on a replica (`LocalKeyStore::store_at`), and a
//!   destruction of a slot a replica never saw leaves a tombstone (`destroy_at`), so a copy
//!   racing a destruction cannot bring a destroyed key back.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::service::{MAX_BATCH, RESERVE_BATCH, RemoteKeyStore};
use crate::{Destroyed, Entry, KeyStoreError, Result, Rewrap, ScanPage, Slot, Stats, slot};

/// What a replica missed, as journaled for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Missed {
    /// Writes or re-wraps of these slots: copy them from a caught-up peer.
    Copy { slots: Vec<u64> },
    /// A destruction (key id in hex).
    Destroy { slot: u64, id: String },
}

/// Journal entries as read: (key in the metadata tier, entry).
pub type JournalPage = Vec<(Vec<u8>, Vec<u8>)>;

/// The metadata tier's part (implemented over the `MetaStore`, whatever its backend).
pub trait ReplicaJournal: Send + Sync {
    /// Reserves `count` slot numbers at or above `floor`; returns the first.
    fn allocate(&self, count: u64, floor: u64) -> std::result::Result<u64, String>;
    /// Appends an entry to `replica`'s journal, durably.
    fn append(&self, replica: &str, entry: &[u8]) -> std::result::Result<(), String>;
    /// Up to `limit` entries of `replica`'s journal, oldest first, with their keys.
    fn pending(&self, replica: &str, limit: usize) -> std::result::Result<JournalPage, String>;
    /// Removes applied entries.
    fn remove(&self, keys: &[Vec<u8>]) -> std::result::Result<(), String>;
}

/// One replica: its name in the journal (its address) and its client.
pub struct Replica {
    pub name: String,
    pub store: RemoteKeyStore,
}

/// Replicas a key write must reach: two (a key on one disk only would be lost by one more
/// failure before the others catch up), or all of them when there are fewer.
pub fn write_quorum(replicas: usize) -> usize {
    replicas.min(2)
}

/// What one catch-up pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// Replicas serving reads after the pass.
    pub serving: Vec<String>,
    /// Replicas unreachable or still behind.
    pub behind: Vec<String>,
    /// Journal entries applied in this pass.
    pub applied: u64,
}

fn io(msg: String) -> KeyStoreError {
    KeyStoreError::Io(std::io::Error::other(msg))
}

pub struct ReplicatedKeyStore {
    replicas: Vec<Replica>,
    journal: Box<dyn ReplicaJournal>,
    /// Replicas this process must not read from: a call to them failed, or their journal had
    /// entries, and no catch-up admitted them since.
    behind: Mutex<HashSet<usize>>,
    /// Slot numbers allocated to this process and not handed out yet.
    pool: Mutex<Vec<u64>>,
    /// The largest slot count a replica reported (the counter starts there).
    floor: AtomicU64,
    next_read: AtomicUsize,
}

impl ReplicatedKeyStore {
    /// Every replica starts as behind until [`ReplicatedKeyStore::catch_up`] has seen it.
    pub fn new(replicas: Vec<Replica>, journal: Box<dyn ReplicaJournal>) -> Self {
        let behind = (0..replicas.len()).collect();
        ReplicatedKeyStore {
            replicas,
            journal,
            behind: Mutex::new(behind),
            pool: Mutex::new(Vec::new()),
            floor: AtomicU64::new(0),
            next_read: AtomicUsize::new(0),
        }
    }

    fn behind(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.behind.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_behind(&self, i: usize) -> bool {
        self.behind().contains(&i)
    }

    /// Runs `f` on every replica at once.
    fn fan_out<T: Send>(&self, f: impl Fn(&RemoteKeyStore) -> Result<T> + Sync) -> Vec<Result<T>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .replicas
                .iter()
                .map(|r| {
                    let f = &f;
                    s.spawn(move || f(&r.store))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io("key replica call panicked".into())))
                })
                .collect()
        })
    }

    /// Journals what replica `i` missed; it reads from no other replica until caught up.
    fn missed(&self, i: usize, what: &Missed) -> Result<()> {
        self.behind().insert(i);
        let body = serde_json::to_vec(what).expect("serialisable");
        self.journal
            .append(&self.replicas[i].name, &body)
            .map_err(|e| {
                io(format!(
                    "journaling for key replica {}: {e}",
                    self.replicas[i].name
                ))
            })
    }

    /// The first answer of a replica that is not behind, trying each in turn from a rotating
    /// start. An empty slot is not trusted alone (a replica that missed the write reads it as
    /// empty): another replica is asked, and the first non-empty answer wins.
    fn read_any<T>(
        &self,
        f: impl Fn(&RemoteKeyStore) -> Result<T>,
        empty: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let n = self.replicas.len();
        let start = self.next_read.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        let mut fallback = None;
        for k in 0..n {
            let i = (start + k) % n;
            if self.is_behind(i) {
                continue;
            }
            match f(&self.replicas[i].store) {
                Ok(v) if empty(&v) => {
                    fallback.get_or_insert(v);
                }
                Ok(v) => return Ok(v),
                Err(e @ (KeyStoreError::Invalid(_) | KeyStoreError::Corrupt(_))) => last = Some(e),
                Err(e) => {
                    // Unreachable or fenced: behind until a catch-up says otherwise.
                    self.behind().insert(i);
                    last = Some(e);
                }
            }
        }
        fallback.map(Ok).unwrap_or_else(|| {
            Err(last.unwrap_or_else(|| io("no key service replica is caught up".into())))
        })
    }

    pub fn reserve(&self) -> Result<u64> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = pool.pop() {
            return Ok(s);
        }
        let count = u64::from(RESERVE_BATCH);
        let first = self
            .journal
            .allocate(count, self.floor.load(Ordering::Relaxed))
            .map_err(|e| io(format!("allocating key slots: {e}")))?;
        pool.extend((first + 1..first + count).rev());
        Ok(first)
    }

    /// A number is never reused: a failed write may have reached a replica.
    pub fn release(&self, _slot: u64) {}

    pub fn read(&self, slot: u64) -> Result<Slot> {
        self.read_any(|r| r.read(slot), |s| matches!(s, Slot::Empty))
    }

    pub fn write(&self, slot: u64, entry: &Entry) -> Result<()> {
        let raw = slot::encode_live(entry);
        let results = self.fan_out(|r| r.store_raw(slot, &raw));
        let mut durable = 0;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(true) => durable += 1,
                Ok(false) => {
                    return Err(KeyStoreError::Invalid(format!(
                        "slot {slot} was destroyed on key replica {}",
                        self.replicas[i].name
                    )));
                }
                Err(e) => {
                    tracing::warn!(replica = %self.replicas[i].name, error = %e, "key write missed a replica; journaled");
                    self.missed(i, &Missed::Copy { slots: vec![slot] })?;
                }
            }
        }
        let need = write_quorum(self.replicas.len());
        if durable < need {
            return Err(io(format!(
                "key written on {durable} key service replicas, {need} needed"
            )));
        }
        Ok(())
    }

    pub fn destroy(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        let results = self.fan_out(|r| r.destroy_at(slot, id));
        let mut out = Destroyed::AlreadyGone;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(Destroyed::Now) => out = Destroyed::Now,
                Ok(Destroyed::AlreadyGone) => {}
                Err(e) => {
                    tracing::warn!(replica = %self.replicas[i].name, error = %e, "key destruction missed a replica; journaled");
                    self.missed(
                        i,
                        &Missed::Destroy {
                            slot,
                            id: hex::encode(id),
                        },
                    )?;
                }
            }
        }
        Ok(out)
    }

    pub fn rewrap(&self, batch: &[Rewrap]) -> Result<usize> {
        let mut done = 0;
        for part in batch.chunks(MAX_BATCH as usize) {
            let results = self.fan_out(|r| r.rewrap(part));
            let (mut ok, mut most) = (0, 0);
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(n) => {
                        ok += 1;
                        most = most.max(n);
                    }
                    Err(_) => self.missed(
                        i,
                        &Missed::Copy {
                            slots: part.iter().map(|r| r.slot).collect(),
                        },
                    )?,
                }
            }
            if ok < write_quorum(self.replicas.len()) {
                return Err(io(format!("re-wrap reached {ok} key service replicas")));
            }
            done += most;
        }
        Ok(done)
    }

    pub fn scan(&self, from: u64, limit: u64) -> Result<ScanPage> {
        self.read_any(|r| r.scan(from, limit), |_| false)
    }

    pub fn stats(&self) -> Result<Stats> {
        self.read_any(|r| r.stats(), |_| false)
    }

    /// One catch-up pass over every replica (bounded: at most 64 pages of 256 journal entries
    /// per replica). Replicas with an empty journal are admitted first, so that the others can
    /// copy missed writes from them.
    pub fn catch_up(&self) -> CatchUp {
        let mut report = CatchUp::default();
        let mut lagging = Vec::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let (serving, slots) = match r.store.status() {
                Ok(s) => s,
                Err(_) => {
                    self.behind().insert(i);
                    continue;
                }
            };
            self.floor.fetch_max(slots, Ordering::Relaxed);
            match self.journal.pending(&r.name, 1) {
                Ok(p) if p.is_empty() => {
                    if serving || r.store.admit().is_ok() {
                        self.behind().remove(&i);
                    }
                }
                Ok(_) => lagging.push((i, serving)),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the key replica journal");
                    return self.report(report);
                }
            }
        }
        for (i, serving) in lagging {
            self.behind().insert(i);
            match self.catch_up_one(i, serving) {
                Ok(n) => report.applied += n,
                Err(e) => {
                    tracing::warn!(replica = %self.replicas[i].name, error = %e, "key replica catch-up stopped; retried later")
                }
            }
        }
        self.report(report)
    }

    fn report(&self, mut report: CatchUp) -> CatchUp {
        let behind = self.behind().clone();
        for (i, r) in self.replicas.iter().enumerate() {
            if behind.contains(&i) {
                report.behind.push(r.name.clone());
            } else {
                report.serving.push(r.name.clone());
            }
        }
        report
    }

    fn catch_up_one(&self, i: usize, serving: bool) -> std::result::Result<u64, String> {
        let r = &self.replicas[i];
        if serving {
            // Up but behind (it missed a call without restarting): no reads until caught up.
            r.store.fence().map_err(|e| e.to_string())?;
        }
        let mut applied = 0;
        for _ in 0..64 {
            let page = self.journal.pending(&r.name, 256)?;
            if page.is_empty() {
                r.store.admit().map_err(|e| e.to_string())?;
                self.behind().remove(&i);
                tracing::info!(replica = %r.name, applied, "key replica caught up");
                return Ok(applied);
            }
            let mut done = Vec::new();
            for (key, body) in page {
                let what: Missed = serde_json::from_slice(&body)
                    .map_err(|e| format!("unreadable journal entry: {e}"))?;
                self.apply(i, &what)?;
                done.push(key);
                applied += 1;
            }
            self.journal.remove(&done)?;
        }
        Ok(applied)
    }

    fn apply(&self, i: usize, what: &Missed) -> std::result::Result<(), String> {
        let target = &self.replicas[i].store;
        match what {
            Missed::Destroy { slot, id } => {
                let id: [u8; 16] = hex::decode(id)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or("bad key id in journal")?;
                target.destroy_at(*slot, &id).map_err(|e| e.to_string())?;
            }
            Missed::Copy { slots } => {
                for &s in slots {
                    let raw = self
                        .read_any(
                            |p| p.read_raw(s),
                            |raw| matches!(slot::decode(raw), Slot::Empty),
                        )
                        .map_err(|e| format!("no caught-up peer to copy slot {s} from: {e}"))?;
                    // Only a live key is copied; a destroyed or never-written one needs nothing
                    // (its destruction, if any, is journaled too).
                    if matches!(slot::decode(&raw), Slot::Live(_)) {
                        target.store_raw(s, &raw).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }
}
