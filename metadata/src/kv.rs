//! The narrow ordered key-value interface the metadata tier is written against, and its
//! embedded RocksDB implementation.
//!
//! The interface is deliberately small (point get, bounded range scan in either direction, atomic
//! conditional batch, checkpoint) so that a distributed ordered KV engine can replace RocksDB
//! without touching any S3 logic: every operation here maps onto a transactional range-KV.
//!
//! Concurrency model of [`RocksKv`]: all batches go through one committer thread (group commit).
//! The committer takes every batch queued so far, checks each batch's conditions in order against
//! the database *plus* the writes of the batches accepted earlier in the same group, rejects the
//! failing ones with [`MetaError::Conflict`], and writes the accepted ones as ONE RocksDB
//! `WriteBatch` with a synced WAL. Because checks and writes are serialised in that one thread,
//! compare-and-set is linearisable without any lock, and concurrent writers share one fsync.

use crate::{MetaError, Result};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction as RocksDirection, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A key space. RocksDB maps each to a column family; another engine may map each to a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Store-wide records: format version, layouts, write intents, process instances, worker
    /// state (each under its own key prefix, see `docs/metadata-format.md`).
    Sys,
    Buckets,
    /// One small record per object key: null-version pointer + a change tag (CAS point).
    Heads,
    Versions,
    Uploads,
    Parts,
    Gc,
    Users,
    AccessKeys,
}

impl Space {
    pub const ALL: [Space; 9] = [
        Space::Sys,
        Space::Buckets,
        Space::Heads,
        Space::Versions,
        Space::Uploads,
        Space::Parts,
        Space::Gc,
        Space::Users,
        Space::AccessKeys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Space::Sys => "sys",
            Space::Buckets => "buckets",
            Space::Heads => "heads",
            Space::Versions => "versions",
            Space::Uploads => "uploads",
            Space::Parts => "parts",
            Space::Gc => "gc",
            Space::Users => "users",
            Space::AccessKeys => "access_keys",
        }
    }
}

/// Keys `start <= k < end` (`end: None` = to the end of the space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    pub fn new(start: Vec<u8>, end: Option<Vec<u8>>) -> Self {
        KeyRange { start, end }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: prefix.to_vec(),
            end: prefix_successor(prefix),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending from `range.start`.
    Forward,
    /// Descending from just below `range.end`.
    Reverse,
}

/// What must hold, at commit time, for a batch to be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key exists with exactly this value.
    Equals {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// The key does not exist.
    Absent { space: Space, key: Vec<u8> },
    /// The key exists, whatever its value (etcd: `version > 0`).
    Present { space: Space, key: Vec<u8> },
    /// No key exists in the range.
    RangeEmpty { space: Space, range: KeyRange },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
}

/// An atomic unit of change: all ops are applied, or none (when a condition fails).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub conditions: Vec<Condition>,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn equals(&mut self, space: Space, key: &[u8], value: &[u8]) {
        self.conditions.push(Condition::Equals {
            space,
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }
    pub fn absent(&mut self, space: Space, key: &[u8]) {
        self.conditions.push(Condition::Absent {
            space,
            key: key.to_vec(),
        });
    }
    pub fn present(&mut self, space: Space, key: &[u8]) {
        self.conditions.push(Condition::Present {
            space,
            key: key.to_vec(),
        });
    }
    /// `Equals` when `current` is `Some`, `Absent` otherwise: "unchanged since I read it".
    pub fn unchanged(&mut self, space: Space, key: &[u8], current: Option<&[u8]>) {
        match current {
            Some(v) => self.equals(space, key, v),
            None => self.absent(space, key),
        }
    }
    pub fn range_empty(&mut self, space: Space, range: KeyRange) {
        self.conditions.push(Condition::RangeEmpty { space, range });
    }
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { space, key, value });
    }
    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.ops.push(Op::Delete { space, key });
    }
}

/// The ordered KV interface. Implementations must make `commit` atomic and durable before it
/// returns `Ok`, and must evaluate conditions and apply ops as one linearisable step.
pub trait OrderedKv: Send + Sync {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// At most `limit` entries of `range`, in the given direction.
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies the batch atomically and durably; `Err(Conflict)` (and no change) if a condition
    /// does not hold.
    fn commit(&self, batch: Batch) -> Result<()>;
    /// A consistent, openable copy of the whole store in `dir` (which must not exist).
    fn checkpoint(&self, dir: &Path) -> Result<()>;
}

fn db_err(e: rocksdb::Error) -> MetaError {
    MetaError::Db(e.into_string())
}

/// Most batches queued behind one fsync: bounds the latency of the last batch in a group.
const MAX_GROUP: usize = 256;

struct Pending {
    batch: Batch,
    reply: SyncSender<Result<()>>,
}

/// RocksDB, one column family per [`Space`], every commit WAL-synced, group commit.
pub struct RocksKv {
    db: Arc<DB>,
    queue: Mutex<Option<SyncSender<Pending>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

impl RocksKv {
    pub fn open(dir: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Two background jobs: the machine is small and shared; compaction must not starve requests.
        opts.set_max_background_jobs(2);
        let cfs = Space::ALL.iter().map(|s| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            let mut table = rocksdb::BlockBasedOptions::default();
            // Point lookups (heads, buckets, versions by id) skip files without the key.
            table.set_bloom_filter(10.0, false);
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(s.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(db_err)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::sync_channel::<Pending>(4 * MAX_GROUP);
        let committer_db = db.clone();
        let handle = std::thread::Builder::new()
            .name("strata-meta-commit".into())
            .spawn(move || committer_loop(&committer_db, rx))
            .map_err(|e| MetaError::Db(format!("spawn committer: {e}")))?;
        Ok(RocksKv {
            db,
            queue: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(handle)),
        })
    }

    fn cf(&self, space: Space) -> &rocksdb::ColumnFamily {
        cf(&self.db, space)
    }
}

fn cf(db: &DB, space: Space) -> &rocksdb::ColumnFamily {
    // Every space's column family is created at open, so this cannot fail.
    db.cf_handle(space.name())
        .expect("column family created at open")
}

impl Drop for RocksKv {
    fn drop(&mut self) {
        // Closing the queue ends the committer after it has finished what is queued; joining it
        // releases its handle on the DB so the directory can be reopened at once.
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        if let Ok(mut h) = self.committer.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
    }
}

fn scan_db(
    db: &DB,
    space: Space,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(range.start.clone());
    if let Some(end) = &range.end {
        if end.as_slice() <= range.start.as_slice() {
            return Ok(out);
        }
        ro.set_iterate_upper_bound(end.clone());
    }
    let mode = match direction {
        Direction::Forward => IteratorMode::From(&range.start, RocksDirection::Forward),
        Direction::Reverse => IteratorMode::End,
    };
    for item in db.iterator_cf_opt(cf(db, space), ro, mode) {
        let (k, v) = item.map_err(db_err)?;
        out.push((k.into_vec(), v.into_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl OrderedKv for RocksKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(space), key).map_err(db_err)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan_db(&self.db, space, range, direction, limit)
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let sender = self
            .queue
            .lock()
            .map_err(|_| MetaError::Db("commit queue poisoned".into()))?
            .clone()
            .ok_or_else(|| MetaError::Db("store is closed".into()))?;
        sender
            .send(Pending {
                batch,
                reply: reply_tx,
            })
            .map_err(|_| MetaError::Db("committer stopped".into()))?;
        reply_rx
            .recv()
            .map_err(|_| MetaError::Db("committer stopped".into()))?
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(db_err)?;
        // log_size_for_flush = 0 (the default): memtables are flushed first, so every commit
        // acknowledged before this call is in the checkpoint's SST files.
        cp.create_checkpoint(dir).map_err(db_err)
    }
}

/// Writes accepted earlier in the current group: `None` = deleted.
type Overlay = BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>;

fn committer_loop(db: &DB, rx: Receiver<Pending>) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    // Ends when every sender is gone (the store was dropped) and the queue is drained.
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let mut overlay = Overlay::new();
        let mut wb = WriteBatch::default();
        let mut accepted = Vec::with_capacity(group.len());
        for p in group {
            match conditions_hold(db, &overlay, &p.batch.conditions) {
                Ok(true) => {
                    for op in p.batch.ops {
                        match op {
                            Op::Put { space, key, value } => {
                                wb.put_cf(cf(db, space), &key, &value);
                                overlay.insert((space, key), Some(value));
                            }
                            Op::Delete { space, key } => {
                                wb.delete_cf(cf(db, space), &key);
                                overlay.insert((space, key), None);
                            }
                        }
                    }
                    accepted.push(p.reply);
                }
                Ok(false) => {
                    let _ = p.reply.send(Err(MetaError::Conflict));
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }
        let result = db.write_opt(wb, &sync).map_err(db_err);
        for reply in accepted {
            let _ = reply.send(result.clone());
        }
    }
}

fn current_value(db: &DB, overlay: &Overlay, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
    if let Some(v) = overlay.get(&(space, key.to_vec())) {
        return Ok(v.clone());
    }
    db.get_cf(cf(db, space), key).map_err(db_err)
}

fn conditions_hold(db: &DB, overlay: &Overlay, conditions: &[Condition]) -> Result<bool> {
    for c in conditions {
        let ok = match c {
            Condition::Equals { space, key, value } => {
                current_value(db, overlay, *space, key)?.as_deref() == Some(value.as_slice())
            }
            Condition::Absent { space, key } => current_value(db, overlay, *space, key)?.is_none(),
            Condition::Present { space, key } => current_value(db, overlay, *space, key)?.is_some(),
            Condition::RangeEmpty { space, range } => range_empty(db, overlay, *space, range)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn range_empty(db: &DB, overlay: &Overlay, space: Space, range: &KeyRange) -> Result<bool> {
    // A put earlier in this group makes the range non-empty.
    let lo = (space, range.start.clone());
    if overlay
        .range(lo..)
        .take_while(|((s, k), _)| *s == space && range.contains(k))
        .any(|(_, v)| v.is_some())
    {
        return Ok(false);
    }
    // A stored key counts unless a delete earlier in this group removed it. The scan is bounded
    // by the number of such deletes + 1.
    let mut start = range.start.clone();
    loop {
        let r = KeyRange::new(start, range.end.clone());
        let found = scan_db(db, space, &r, Direction::Forward, 1)?;
        let Some((k, _)) = found.into_iter().next() else {
            return Ok(true);
        };
        if !matches!(overlay.get(&(space, k.clone())), Some(None)) {
            return Ok(false);
        }
        start = k;
        start.push(0);
    }
}
