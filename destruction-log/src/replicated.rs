//! The cluster's destruction log replicated on every key-service node (docs/cluster.md, "The
//! cluster's destruction log"), so losing one node stops neither GC nor exports.
//!
//! - **One order.** The metadata tier sequences the log ([`Sequencer`]): a record gets its index
//!   there (exactly once per operation id) and is kept there until every replica holds it; a
//!   checkpoint of `n` records is registered there only while `n` records are sequenced, so
//!   every replica applies records and checkpoints in the same order.
//! - **Identical bytes.** A replica appends a record only at its index (`AppendAt`) and signs a
//!   checkpoint only of exactly its size at the sequenced time (`CheckpointAt`); with the same
//!   signing key on every replica (Ed25519 signatures are deterministic) the files are the same.
//!   A replica whose public key is not the majority's is never used.
//! - **Acknowledged on a majority.** An append returns once the record is fsync'd on a majority
//!   of the replicas (2 of 3): one node lost keeps every acknowledged record, and the record is
//!   in the metadata tier (quorum-replicated) until all replicas hold it.
//! - **Catch-up before serving.** A replica that missed records (it was down) gets them (from
//!   the metadata tier, or from a replica that has them once they were pruned there) before it
//!   answers a read; the `destruction-log-replicas` worker does it every second.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use crate::service::{
    LogPage, MAX_RECORDS, RemoteLog, ReplicaStatus, Request, Response, unexpected,
};
use crate::{DestructionRecord, ExportSummary, LogError, SignedCheckpoint};

/// Where the log's order is decided (the metadata tier, in a cluster).
pub trait Sequencer: Send + Sync {
    /// Records sequenced so far; `None` before first use.
    fn next(&self) -> Result<Option<u64>, String>;
    /// Starts the sequence at `floor` (the most records a replica holds) if it is not started.
    fn init(&self, floor: u64) -> Result<(), String>;
    /// The index `op_id` was given, while the metadata tier still knows it.
    fn lookup(&self, op_id: &str) -> Result<Option<u64>, String>;
    /// Gives `op_id` the next index, storing `record` (JSON) under it; the existing index if
    /// `op_id` has one.
    fn assign(&self, op_id: &str, record: &[u8]) -> Result<u64, String>;
    /// Stored records from index `from`, at most `limit`, in order.
    fn records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, String>;
    /// Registers the checkpoint of `tree_size` records at `timestamp_ms` if `tree_size` records
    /// are sequenced now; returns its time (the first registration's). `None`: the sequence has
    /// moved on (register at the new size).
    fn checkpoint(&self, tree_size: u64, timestamp_ms: i64) -> Result<Option<i64>, String>;
    /// Registered checkpoints (size, time) with sizes in `from..=to`.
    fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<(u64, i64)>, String>;
    /// Forgets records below `records` and checkpoints below `checkpoint_size` (every replica
    /// holds them).
    fn prune(&self, records: u64, checkpoint_size: u64) -> Result<(), String>;
}

/// A replica: a key-service node's log.
pub struct Replica {
    pub name: String,
    pub log: RemoteLog,
}

/// What the last catch-up pass found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LogCatchUp {
    pub serving: Vec<String>,
    pub behind: Vec<String>,
    pub records: u64,
    pub copied: u64,
}

pub struct ReplicatedLog {
    replicas: Vec<Replica>,
    seq: Box<dyn Sequencer>,
    /// Round-robin start for reads.
    next_read: Mutex<usize>,
}

/// Records copied to one replica per call, at most (bounds one catch-up step).
const MAX_COPY: u64 = 100_000;

fn io(msg: impl std::fmt::Display) -> LogError {
    LogError::Io(std::io::Error::other(msg.to_string()))
}

impl ReplicatedLog {
    pub fn new(replicas: Vec<Replica>, seq: Box<dyn Sequencer>) -> Self {
        ReplicatedLog {
            replicas,
            seq,
            next_read: Mutex::new(0),
        }
    }

    pub fn quorum(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    fn status(&self, i: usize) -> Result<ReplicaStatus, LogError> {
        match self.replicas[i].log.ask(&Request::Status)? {
            Response::Status(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    /// Every replica's status (None: did not answer), and the majority's public key.
    fn statuses(&self) -> (Vec<Option<ReplicaStatus>>, Option<String>) {
        let st: Vec<Option<ReplicaStatus>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..self.replicas.len())
                .map(|i| s.spawn(move || self.status(i).ok()))
                .collect();
            hs.into_iter().map(|h| h.join().ok().flatten()).collect()
        });
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for s in st.iter().flatten() {
            *votes.entry(s.public_key.as_str()).or_default() += 1;
        }
        let key = votes
            .into_iter()
            .filter(|(_, n)| *n >= self.quorum())
            .map(|(k, _)| k.to_string())
            .next();
        (st, key)
    }

    fn seq_err(e: String) -> LogError {
        io(format!(
            "the destruction log's sequence in the metadata tier: {e}"
        ))
    }

    /// Records sequenced (starting the sequence at the longest replica on first use).
    fn sequenced(&self, st: &[Option<ReplicaStatus>]) -> Result<u64, LogError> {
        if let Some(n) = self.seq.next().map_err(Self::seq_err)? {
            return Ok(n);
        }
        let floor = st.iter().flatten().map(|s| s.records).max().unwrap_or(0);
        self.seq.init(floor).map_err(Self::seq_err)?;
        Ok(self.seq.next().map_err(Self::seq_err)?.unwrap_or(floor))
    }

    /// Brings replica `i` (status `have`) to `target` records with every checkpoint registered
    /// for sizes it passes, copying from the metadata tier or from a replica in `peers` that
    /// holds them. Returns its new status.
    fn bring_up(
        &self,
        i: usize,
        mut have: ReplicaStatus,
        target: u64,
        peers: &[(usize, u64)],
    ) -> Result<(ReplicaStatus, u64), LogError> {
        let r = &self.replicas[i].log;
        let mut copied = 0u64;
        let apply_cp = |have: &mut ReplicaStatus, size: u64, ts: i64| -> Result<(), LogError> {
            if have.checkpoint_size.is_some_and(|c| c >= size) || have.records != size {
                return Ok(());
            }
            match r.ask(&Request::CheckpointAt {
                tree_size: size,
                timestamp_ms: ts,
            })? {
                Response::Checkpoint(_) => {
                    have.checkpoint_size = Some(size);
                    Ok(())
                }
                _ => Err(unexpected()),
            }
        };
        loop {
            let from = have.records;
            // Checkpoints registered at sizes from here on (the metadata tier's, and a peer's).
            let mut cps: BTreeMap<u64, i64> = self
                .seq
                .checkpoints(from, target)
                .map_err(Self::seq_err)?
                .into_iter()
                .collect();
            if from >= target {
                if let Some(ts) = cps.get(&from) {
                    apply_cp(&mut have, from, *ts)?;
                }
                return Ok((have, copied));
            }
            if copied >= MAX_COPY {
                return Err(io(format!(
                    "{} is still catching up ({copied} records copied)",
                    self.replicas[i].name
                )));
            }
            let limit = (target - from).min(MAX_RECORDS as u64) as usize;
            let mut page: Vec<(u64, DestructionRecord)> = self
                .seq
                .records(from, limit)
                .map_err(Self::seq_err)?
                .into_iter()
                .map_while(|(idx, raw)| serde_json::from_slice(&raw).ok().map(|r| (idx, r)))
                .enumerate()
                .take_while(|(k, (idx, _))| *idx == from + *k as u64)
                .map(|(_, x)| x)
                .collect();
            if page.is_empty() {
                // Pruned from the metadata tier: a replica that has them.
                let Some(&(p, _)) = peers.iter().find(|(p, n)| *p != i && *n > from) else {
                    return Err(io(format!(
                        "no replica holds destruction record {from} for {}",
                        self.replicas[i].name
                    )));
                };
                match self.replicas[p]
                    .log
                    .ask(&Request::Records { from, limit })?
                {
                    Response::Records {
                        records,
                        checkpoints,
                    } => {
                        for (size, ts) in checkpoints {
                            cps.entry(size).or_insert(ts);
                        }
                        page = (from..).zip(records).collect();
                    }
                    _ => return Err(unexpected()),
                }
                if page.is_empty() {
                    return Err(io("a replica answered no records"));
                }
            }
            for (idx, rec) in page {
                if let Some(ts) = cps.get(&idx) {
                    apply_cp(&mut have, idx, *ts)?;
                }
                match r.ask(&Request::AppendAt {
                    index: idx,
                    record: Box::new(rec),
                })? {
                    Response::Index(_) => {}
                    _ => return Err(unexpected()),
                }
                have.records = idx + 1;
                copied += 1;
            }
        }
    }

    /// Brings every replica that answers (and has the majority's key) to `target`; returns the
    /// replicas at it and the records copied.
    fn replicate(&self, target: u64) -> Result<(Vec<usize>, Vec<usize>, u64), LogError> {
        let (st, key) = self.statuses();
        let key = key.ok_or_else(|| {
            io(format!(
                "no majority of the {} destruction log replicas answers with one signing key",
                self.replicas.len()
            ))
        })?;
        let peers: Vec<(usize, u64)> = st
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| s.public_key == key)
                    .map(|s| (i, s.records))
            })
            .collect();
        let results: Vec<Option<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = st
                .iter()
                .enumerate()
                .map(|(i, have)| {
                    let have = have.clone().filter(|h| h.public_key == key);
                    let peers = &peers;
                    s.spawn(move || {
                        let have = have?;
                        match self.bring_up(i, have, target, peers) {
                            Ok((_, n)) => Some(n),
                            Err(e) => {
                                tracing::warn!(replica = %self.replicas[i].name, error = %e,
                                    "destruction log replica not caught up");
                                None
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().ok().flatten()).collect()
        });
        let (mut ok, mut behind, mut copied) = (Vec::new(), Vec::new(), 0);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Some(n) => {
                    ok.push(i);
                    copied += n;
                }
                None => behind.push(i),
            }
        }
        Ok((ok, behind, copied))
    }

    /// Appends a record once it is durable on a majority of the replicas; a record of an
    /// operation already logged returns that record's index.
    pub fn append(&self, rec: DestructionRecord) -> Result<u64, LogError> {
        if rec.op_id.is_empty() {
            return Err(LogError::InvalidRecord("empty op_id".into()));
        }
        let (st, _) = self.statuses();
        self.sequenced(&st)?;
        let idx = match self.seq.lookup(&rec.op_id).map_err(Self::seq_err)? {
            Some(i) => i,
            None => {
                // Pruned from the metadata tier once every replica held it: ask one.
                let held =
                    st.iter().enumerate().filter(|(_, s)| s.is_some()).find_map(
                        |(i, _)| match self.replicas[i].log.ask(&Request::Contains {
                            op_id: rec.op_id.clone(),
                        }) {
                            Ok(Response::Contains(found)) => found,
                            _ => None,
                        },
                    );
                match held {
                    Some(i) => return Ok(i),
                    None => {
                        let raw = serde_json::to_vec(&rec)
                            .map_err(|e| LogError::InvalidRecord(e.to_string()))?;
                        self.seq.assign(&rec.op_id, &raw).map_err(Self::seq_err)?
                    }
                }
            }
        };
        let (ok, _, _) = self.replicate(idx + 1)?;
        if ok.len() < self.quorum() {
            return Err(io(format!(
                "destruction record {idx} is durable on {} of {} log replicas ({} needed)",
                ok.len(),
                self.replicas.len(),
                self.quorum()
            )));
        }
        Ok(idx)
    }

    /// Signs the tree head on every replica (the same checkpoint everywhere), once a majority
    /// holds it.
    pub fn checkpoint(&self, now_ms: i64) -> Result<SignedCheckpoint, LogError> {
        for _ in 0..100 {
            let (st, _) = self.statuses();
            let n = self.sequenced(&st)?;
            let Some(ts) = self.seq.checkpoint(n, now_ms).map_err(Self::seq_err)? else {
                continue; // a record was sequenced meanwhile: at the new size
            };
            let _ = ts;
            let (ok, _, _) = self.replicate(n)?;
            if ok.len() < self.quorum() {
                return Err(io(format!(
                    "the checkpoint of {n} records is on {} of {} log replicas ({} needed)",
                    ok.len(),
                    self.replicas.len(),
                    self.quorum()
                )));
            }
            // Every replica at n holds the checkpoint now (the latest one, at n or later).
            for i in ok {
                if let Ok(Response::Page(p)) = self.replicas[i].log.ask(&Request::Page {
                    before: Some(0),
                    limit: 1,
                }) && let Some(cp) = p.latest_checkpoint
                    && cp.tree_size >= n
                {
                    return Ok(cp);
                }
            }
            return Err(io("no replica answered its checkpoint"));
        }
        Err(io("the destruction log kept growing while checkpointing"))
    }

    /// A replica caught up with everything sequenced (brought up first if none is), for reads.
    pub(crate) fn serving(&self) -> Result<ServingReplica<'_>, LogError> {
        let (st, key) = self.statuses();
        let key = key.ok_or_else(|| io("no majority of the destruction log replicas answers"))?;
        let target = self.sequenced(&st)?;
        let latest_cp = self
            .seq
            .checkpoints(0, target)
            .map_err(Self::seq_err)?
            .last()
            .map(|c| c.0);
        let start = {
            let mut n = self.next_read.lock().unwrap_or_else(|e| e.into_inner());
            *n = (*n + 1) % self.replicas.len().max(1);
            *n
        };
        let order: Vec<usize> = (0..self.replicas.len())
            .map(|k| (start + k) % self.replicas.len())
            .collect();
        let fits = |s: &ReplicaStatus| {
            s.public_key == key
                && s.records >= target
                && latest_cp.is_none_or(|c| s.checkpoint_size.is_some_and(|h| h >= c))
        };
        if let Some(&i) = order.iter().find(|&&i| st[i].as_ref().is_some_and(fits)) {
            return Ok(ServingReplica(&self.replicas[i].log));
        }
        let (ok, _, _) = self.replicate(target)?;
        ok.first()
            .map(|&i| ServingReplica(&self.replicas[i].log))
            .ok_or_else(|| io("no destruction log replica is caught up"))
    }

    /// One catch-up pass (the `destruction-log-replicas` worker): every replica that answers
    /// is brought up to everything sequenced; when all are, the metadata tier forgets what they
    /// all hold.
    pub fn catch_up(&self) -> Result<LogCatchUp, LogError> {
        let (st, _) = self.statuses();
        let target = self.sequenced(&st)?;
        let (ok, behind, copied) = self.replicate(target)?;
        if behind.is_empty() && ok.len() == self.replicas.len() {
            let (st, _) = self.statuses();
            if st.iter().all(|s| s.is_some()) {
                let recs = st.iter().flatten().map(|s| s.records).min().unwrap_or(0);
                let cp = st
                    .iter()
                    .flatten()
                    .map(|s| s.checkpoint_size.unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                self.seq.prune(recs, cp).map_err(Self::seq_err)?;
            }
        }
        let name = |v: &[usize]| v.iter().map(|&i| self.replicas[i].name.clone()).collect();
        Ok(LogCatchUp {
            serving: name(&ok),
            behind: name(&behind),
            records: target,
            copied,
        })
    }
}

/// A caught-up replica, for one read.
pub(crate) struct ServingReplica<'a>(&'a RemoteLog);

impl ServingReplica<'_> {
    pub fn find(&self, bucket: &str, key: &str) -> Result<Vec<(u64, DestructionRecord)>, LogError> {
        self.0.find(bucket, key)
    }
    pub fn public_key_pem(&self) -> Result<String, LogError> {
        self.0.public_key_pem()
    }
    pub fn page(&self, before: Option<u64>, limit: usize) -> Result<LogPage, LogError> {
        self.0.page(before, limit)
    }
    pub fn export_at_latest(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        self.0.export_at_latest(since_ms, bucket, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DestructionLog;
    use crate::service::LogHandle;
    use crate::test_support::{Direct, record};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct MemSeq(Mutex<MemState>);
    #[derive(Default)]
    struct MemState {
        next: Option<u64>,
        recs: BTreeMap<u64, Vec<u8>>,
        ops: HashMap<String, u64>,
        cps: BTreeMap<u64, i64>,
    }

    impl Sequencer for MemSeq {
        fn next(&self) -> Result<Option<u64>, String> {
            Ok(self.0.lock().unwrap().next)
        }
        fn init(&self, floor: u64) -> Result<(), String> {
            self.0.lock().unwrap().next.get_or_insert(floor);
            Ok(())
        }
        fn lookup(&self, op_id: &str) -> Result<Option<u64>, String> {
            Ok(self.0.lock().unwrap().ops.get(op_id).copied())
        }
        fn assign(&self, op_id: &str, record: &[u8]) -> Result<u64, String> {
            let mut s = self.0.lock().unwrap();
            if let Some(i) = s.ops.get(op_id) {
                return Ok(*i);
            }
            let n = s.next.ok_or("not started")?;
            s.next = Some(n + 1);
            s.ops.insert(op_id.into(), n);
            s.recs.insert(n, record.to_vec());
            Ok(n)
        }
        fn records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
            let s = self.0.lock().unwrap();
            Ok(s.recs
                .range(from..)
                .take(limit)
                .map(|(k, v)| (*k, v.clone()))
                .collect())
        }
        fn checkpoint(&self, tree_size: u64, ts: i64) -> Result<Option<i64>, String> {
            let mut s = self.0.lock().unwrap();
            if let Some(t) = s.cps.get(&tree_size) {
                return Ok(Some(*t));
            }
            if s.next != Some(tree_size) {
                return Ok(None);
            }
            s.cps.insert(tree_size, ts);
            Ok(Some(ts))
        }
        fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<(u64, i64)>, String> {
            let s = self.0.lock().unwrap();
            Ok(s.cps.range(from..=to).map(|(k, v)| (*k, *v)).collect())
        }
        fn prune(&self, records: u64, cp: u64) -> Result<(), String> {
            let mut s = self.0.lock().unwrap();
            s.recs.retain(|k, _| *k >= records);
            let keep: Vec<u64> = s.recs.keys().copied().collect();
            s.ops.retain(|_, v| keep.contains(v));
            s.cps.retain(|k, _| *k >= cp);
            Ok(())
        }
    }

    fn files(dir: &Path) -> Vec<u8> {
        [
            std::fs::read(dir.join("records.log")).unwrap(),
            std::fs::read(dir.join("checkpoints.log")).unwrap(),
        ]
        .concat()
    }

    #[test]
    fn a_replica_that_was_down_catches_up_to_the_same_bytes() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("r{i}"))).collect();
        let first = Arc::new(DestructionLog::open(&dirs[0]).unwrap());
        for d in &dirs[1..] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::copy(dirs[0].join("log-key.pem"), d.join("log-key.pem")).unwrap();
        }
        let logs: Vec<Arc<DestructionLog>> = std::iter::once(first)
            .chain(
                dirs[1..]
                    .iter()
                    .map(|d| Arc::new(DestructionLog::open(d).unwrap())),
            )
            .collect();
        let down: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
        let replicas = (0..3)
            .map(|i| Replica {
                name: format!("r{i}"),
                log: RemoteLog::new(Box::new(Direct {
                    log: logs[i].clone(),
                    scratch: root.path().to_path_buf(),
                    down: down[i].clone(),
                })),
            })
            .collect();
        let rl = Arc::new(ReplicatedLog::new(replicas, Box::new(MemSeq::default())));
        let h = LogHandle::Replicated(rl.clone());
        assert_eq!(h.append(record("op0", "k0")).unwrap(), 0);
        assert_eq!(h.append(record("op1", "k1")).unwrap(), 1);
        h.checkpoint(10).unwrap();
        // the first replica is lost: appends and checkpoints go on, on the two others
        down[0].store(true, Ordering::SeqCst);
        assert_eq!(h.append(record("op2", "k2")).unwrap(), 2);
        assert_eq!(
            h.append(record("op2", "k2")).unwrap(),
            2,
            "once per operation"
        );
        h.checkpoint(20).unwrap();
        assert_eq!(h.append(record("op3", "k3")).unwrap(), 3);
        assert_eq!(logs[0].len().unwrap(), 2);
        // a second one lost: no majority, the append fails
        down[1].store(true, Ordering::SeqCst);
        assert!(h.append(record("op4", "k4")).is_err());
        down[1].store(false, Ordering::SeqCst);
        assert_eq!(
            h.append(record("op4", "k4")).unwrap(),
            4,
            "the retry appends it"
        );
        // reads come from a caught-up replica; an export verifies
        assert_eq!(h.find("b", "k3").unwrap()[0].0, 3);
        let pem = h.public_key_pem().unwrap();
        let out = root.path().join("export");
        h.export(None, None, &out).unwrap();
        assert_eq!(crate::verify_export(&out, &pem).unwrap().records, 5);
        // the first replica returns: caught up to the very same files
        down[0].store(false, Ordering::SeqCst);
        let report = rl.catch_up().unwrap();
        assert!(report.behind.is_empty(), "{report:?}");
        assert_eq!(logs[0].len().unwrap(), 5);
        assert_eq!(files(&dirs[0]), files(&dirs[1]));
        assert_eq!(files(&dirs[1]), files(&dirs[2]));
        assert_eq!(logs[0].checkpoints().unwrap().len(), 3);
    }
}
