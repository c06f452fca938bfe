//! The log on disk (docs/destruction-log.md, "Files"):
//!
//! - `records.log`, `checkpoints.log`: the truth, append-only frames (`frame.rs`); a record is
//!   fsync'd before `append` returns, a checkpoint before `checkpoint` returns.
//! - `index.bin` (32 bytes per record: offset, length, hashes of op id and of bucket/key) and
//!   `tree.bin` (every complete Merkle subtree, 32 bytes at its array-tree position): derived,
//!   written as records arrive, fsync'd only at sync points, then `state.json` names what is
//!   synced. Open trusts the synced prefix after cheap checks and replays only the records after
//!   it, so it never re-hashes the whole log; anything inconsistent rebuilds them from
//!   `records.log`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::marker::PhantomData;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::export::{
    self, ConsistencyLine, ExportFilter, ExportSummary, Manifest, ManifestBody, ProofLine,
};
use crate::frame::{self, CHECKPOINT_MAGIC, HEADER_LEN, MAX_PAYLOAD, RECORD_MAGIC, Tail};
use crate::keys::{LogKey, SignedCheckpoint, public_key_pem};
use crate::merkle::{self, Frontier, Hash, Nodes};
use crate::record::{DestructionRecord, LogRecord, decode_leaf, encode_leaf};

/// Where a server keeps its log: `DATA_DIR/destruction-log`.
pub const LOG_DIR_NAME: &str = "destruction-log";

const RECORDS: &str = "records.log";
const CHECKPOINTS: &str = "checkpoints.log";
const INDEX: &str = "index.bin";
const TREE: &str = "tree.bin";
const STATE: &str = "state.json";
const LOCK: &str = "LOCK";
const ENTRY_LEN: u64 = 32;
const STATE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("destruction log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("destruction log is damaged: {0}")]
    Corrupt(String),
    #[error("destruction log {0} is open in another process")]
    Locked(PathBuf),
    #[error("invalid destruction record: {0}")]
    InvalidRecord(String),
    #[error("destruction log key: {0}")]
    Key(String),
    #[error("destruction log stopped after a failed write, reopen it: {0}")]
    Poisoned(String),
    #[error("destruction log export: {0}")]
    Export(String),
}

/// Tuning; the default suits production.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Appends between two syncs of the derived files (`index.bin`, `tree.bin`, `state.json`);
    /// bounds what an open after a crash re-hashes. Every checkpoint is a sync point too.
    pub sync_every: u64,
    /// Where the signing key (`log-key.pem`) lives; `None`: the log's own directory. Logs that
    /// are parts of one larger log (the audit log's segments) share their parent's key.
    pub key_dir: Option<PathBuf>,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            sync_every: 1024,
            key_dir: None,
        }
    }
}

/// The append-only, tamper-evident destruction log.
pub type DestructionLog = Log<DestructionRecord>;

/// An append-only, tamper-evident log of records of kind `R` (the destruction log, the audit
/// log). Blocking; safe to share between threads (appends are serialised, reads of the
/// immutable prefix run beside them).
pub struct Log<R> {
    dir: PathBuf,
    key: LogKey,
    records: File,
    index: File,
    tree: File,
    checkpoints: File,
    opts: LogOptions,
    inner: Mutex<Inner>,
    // Held for the log's life: a second process (or a second open) gets `Locked`.
    _lock: File,
    _kind: PhantomData<fn() -> R>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    offset: u64,
    len: u32,
    op: u64,
    obj: u64,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_LEN as usize] {
        let mut b = [0u8; ENTRY_LEN as usize];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..20].copy_from_slice(&self.op.to_le_bytes());
        b[20..28].copy_from_slice(&self.obj.to_le_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Option<Self> {
        let crc = u32::from_le_bytes(b[28..32].try_into().unwrap());
        (crc32fast::hash(&b[..28]) == crc).then(|| Self {
            offset: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            op: u64::from_le_bytes(b[12..20].try_into().unwrap()),
            obj: u64::from_le_bytes(b[20..28].try_into().unwrap()),
        })
    }
    fn end(&self) -> u64 {
        self.offset + HEADER_LEN + self.len as u64
    }
}

#[derive(Default)]
struct Inner {
    records_end: u64,
    entries: Vec<Entry>,
    // op id hash -> first index with it; further ones (hash collisions) in `op_more`.
    by_op: HashMap<u64, u64>,
    op_more: HashMap<u64, Vec<u64>>,
    frontier: Frontier,
    checkpoints_end: u64,
    checkpoints: u64,
    latest: Option<SignedCheckpoint>,
    unsynced: u64,
    poisoned: Option<String>,
}

impl Inner {
    fn index_op(&mut self, op: u64, i: u64) {
        match self.by_op.entry(op) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.op_more.entry(op).or_default().push(i)
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }
    fn op_candidates(&self, op: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self.by_op.get(&op).copied().into_iter().collect();
        if let Some(more) = self.op_more.get(&op) {
            v.extend(more);
        }
        v
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    format: u32,
    records: u64,
    records_end: u64,
    root_hash: String,
    checkpoints: u64,
    checkpoints_end: u64,
    latest: Option<SignedCheckpoint>,
}

struct TreeFile<'a>(&'a File);

impl Nodes for TreeFile<'_> {
    fn node(&self, level: u32, index: u64) -> io::Result<Hash> {
        let mut h = [0u8; 32];
        self.0
            .read_exact_at(&mut h, merkle::position(level, index) * 32)?;
        Ok(h)
    }
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().unwrap())
}

fn op_hash(op_id: &str) -> u64 {
    hash64(&[op_id.as_bytes()])
}

// Bucket names cannot hold a NUL, so bucket || 0 || key is unambiguous.
fn obj_hash(bucket: &str, key: &str) -> u64 {
    hash64(&[bucket.as_bytes(), &[0], key.as_bytes()])
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(what.to_string())
}

/// Creates `dir` (0700) if needed and takes its exclusive `LOCK` file (0600): one process per
/// log directory. The lock lasts as long as the returned file is open.
pub fn lock_dir(dir: &Path) -> Result<File, LogError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(LOCK))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(LogError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl<R: LogRecord> Log<R> {
    /// Opens (creating on first use) the log in `dir`, with its signing key.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        Self::open_with_options(dir, LogOptions::default())
    }

    pub fn open_with_options(dir: &Path, opts: LogOptions) -> Result<Self, LogError> {
        let lock = lock_dir(dir)?;
        let key = LogKey::load_or_create(opts.key_dir.as_deref().unwrap_or(dir), R::LOG_NAME)
            .map_err(LogError::Key)?;
        let rw = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join(name))
        };
        let log = Self {
            dir: dir.to_path_buf(),
            key,
            records: rw(RECORDS)?,
            index: rw(INDEX)?,
            tree: rw(TREE)?,
            checkpoints: rw(CHECKPOINTS)?,
            opts: LogOptions {
                sync_every: opts.sync_every.max(1),
                key_dir: opts.key_dir.clone(),
            },
            inner: Mutex::new(Inner::default()),
            _lock: lock,
            _kind: PhantomData,
        };
        sync_dir(dir)?; // the files just created, if any
        let mut inner = log.recover()?;
        log.sync_state(&mut inner)?;
        *log.inner.lock().expect("not shared yet") = inner;
        Ok(log)
    }

    /// Loads the synced state, replays what follows it and cuts a torn tail.
    fn recover(&self) -> Result<Inner, LogError> {
        let state: Option<State> = fs::read(self.dir.join(STATE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|s: &State| s.format == STATE_FORMAT);
        let mut inner = match state {
            Some(s) => match self.load_synced(&s)? {
                Some(inner) => inner,
                None => {
                    tracing::warn!(dir = %self.dir.display(),
                        "destruction log index/tree do not match state.json; rebuilding them from records.log");
                    Inner::default()
                }
            },
            None => Inner::default(),
        };
        // Records after the synced prefix (all of them when rebuilding).
        let start = inner.records_end;
        let (end, tail) = frame::scan(&self.records, RECORD_MAGIC, start, |offset, payload| {
            let leaf = decode_leaf::<R>(payload)
                .map_err(|e| corrupt(format!("records.log at offset {offset}: {e}")))?;
            let want = inner.entries.len() as u64;
            if leaf.index != want {
                return Err(corrupt(format!(
                    "records.log at offset {offset} holds record {} where {want} belongs",
                    leaf.index
                )));
            }
            self.add_leaf(&mut inner, offset, payload, &leaf.record)
        })?;
        inner.records_end = end;
        let n = inner.entries.len() as u64;

        let (cend, ctail) = frame::scan(
            &self.checkpoints,
            CHECKPOINT_MAGIC,
            inner.checkpoints_end,
            |offset, payload| {
                let cp: SignedCheckpoint = serde_json::from_slice(payload)
                    .map_err(|e| corrupt(format!("checkpoints.log at offset {offset}: {e}")))?;
                inner.checkpoints += 1;
                inner.latest = Some(cp);
                Ok::<(), LogError>(())
            },
        )?;
        inner.checkpoints_end = cend;
        // Everything is checked before anything is cut: a record a checkpoint covers was
        // acknowledged, so a "torn" frame under it is damage, and the files stay as they are.
        for (name, t) in [(RECORDS, &tail), (CHECKPOINTS, &ctail)] {
            if let Tail::Corrupt(at) = t {
                return Err(corrupt(format!(
                    "{name}: damaged frame at offset {at} followed by more data"
                )));
            }
        }
        if let Some(cp) = &inner.latest {
            let root = merkle::root(&TreeFile(&self.tree), cp.tree_size.min(n))?;
            if cp.tree_size > n || cp.root_bytes() != root {
                return Err(corrupt(format!(
                    "the latest checkpoint (size {}) does not match the {n} records on disk",
                    cp.tree_size
                )));
            }
        }
        self.cut_tail(&self.records, RECORDS, end, tail)?;
        self.cut_tail(&self.checkpoints, CHECKPOINTS, cend, ctail)?;
        self.index.set_len(n * ENTRY_LEN)?;
        self.tree
            .set_len(if n == 0 { 0 } else { (2 * n - 1) * 32 })?;
        Ok(inner)
    }

    fn cut_tail(&self, file: &File, name: &str, end: u64, tail: Tail) -> Result<(), LogError> {
        match tail {
            Tail::Clean => Ok(()),
            Tail::Torn(at) => {
                let len = file.metadata()?.len();
                tracing::warn!(
                    file = name,
                    offset = at,
                    bytes = len - at,
                    "destruction log: cutting an incomplete frame left by a crash"
                );
                file.set_len(end)?;
                file.sync_all()?;
                Ok(())
            }
            Tail::Corrupt(at) => Err(corrupt(format!(
                "{name}: damaged frame at offset {at} followed by more data"
            ))),
        }
    }

    /// The synced prefix named by `state.json`, if the derived files agree with it. `Err` only
    /// when the truth itself is shorter than what was synced (acknowledged data missing).
    fn load_synced(&self, s: &State) -> Result<Option<Inner>, LogError> {
        if self.records.metadata()?.len() < s.records_end {
            return Err(corrupt(format!(
                "records.log is shorter than its synced length {}",
                s.records_end
            )));
        }
        if self.checkpoints.metadata()?.len() < s.checkpoints_end {
            return Err(corrupt(format!(
                "checkpoints.log is shorter than its synced length {}",
                s.checkpoints_end
            )));
        }
        let n = s.records;
        // (checked: a damaged state.json must neither overflow nor allocate absurdly)
        let (Some(index_len), Some(tree_len)) = (
            n.checked_mul(ENTRY_LEN),
            n.checked_mul(64).map(|b| b.saturating_sub(32)),
        ) else {
            return Ok(None);
        };
        if self.index.metadata()?.len() < index_len || self.tree.metadata()?.len() < tree_len {
            return Ok(None);
        }
        let mut inner = Inner::default();
        let mut buf = vec![0u8; index_len as usize];
        self.index.read_exact_at(&mut buf, 0)?;
        let mut expect = 0u64;
        for chunk in buf.chunks_exact(ENTRY_LEN as usize) {
            let Some(e) = Entry::decode(chunk) else {
                return Ok(None);
            };
            if e.offset != expect || e.len > MAX_PAYLOAD {
                return Ok(None);
            }
            expect = e.end();
            inner.index_op(e.op, inner.entries.len() as u64);
            inner.entries.push(e);
        }
        if expect != s.records_end {
            return Ok(None);
        }
        inner.frontier = Frontier::load(&TreeFile(&self.tree), n)?;
        if hex::encode(inner.frontier.root()) != s.root_hash {
            return Ok(None);
        }
        inner.records_end = s.records_end;
        inner.checkpoints = s.checkpoints;
        inner.checkpoints_end = s.checkpoints_end;
        inner.latest = s.latest.clone();
        Ok(Some(inner))
    }

    /// Adds a durable record to the index and the tree (files written, not synced).
    fn add_leaf(
        &self,
        inner: &mut Inner,
        offset: u64,
        leaf: &[u8],
        rec: &R,
    ) -> Result<(), LogError> {
        let i = inner.entries.len() as u64;
        let (bucket, key) = rec.object();
        let e = Entry {
            offset,
            len: leaf.len() as u32,
            op: rec.op_id().map_or(0, op_hash),
            obj: obj_hash(bucket, key),
        };
        self.index.write_all_at(&e.encode(), i * ENTRY_LEN)?;
        let mut res = Ok(());
        inner
            .frontier
            .push(merkle::leaf_hash(leaf), |level, index, h| {
                if res.is_ok() {
                    res = self
                        .tree
                        .write_all_at(h, merkle::position(level, index) * 32);
                }
            });
        res?;
        if rec.op_id().is_some() {
            inner.index_op(e.op, i);
        }
        inner.entries.push(e);
        Ok(())
    }

    /// fsyncs the derived files, then records in `state.json` that they cover everything.
    fn sync_state(&self, inner: &mut Inner) -> Result<(), LogError> {
        self.index.sync_data()?;
        self.tree.sync_data()?;
        let st = State {
            format: STATE_FORMAT,
            records: inner.entries.len() as u64,
            records_end: inner.records_end,
            root_hash: hex::encode(inner.frontier.root()),
            checkpoints: inner.checkpoints,
            checkpoints_end: inner.checkpoints_end,
            latest: inner.latest.clone(),
        };
        let bytes = serde_json::to_vec(&st).expect("state serializes");
        write_atomic(&self.dir.join(STATE), &bytes, 0o600)?;
        inner.unsynced = 0;
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, LogError> {
        self.inner
            .lock()
            .map_err(|_| LogError::Poisoned("a thread panicked inside the log".into()))
    }

    fn lock_writable(&self) -> Result<MutexGuard<'_, Inner>, LogError> {
        let g = self.lock()?;
        if let Some(why) = &g.poisoned {
            return Err(LogError::Poisoned(why.clone()));
        }
        Ok(g)
    }

    fn read_leaf(&self, e: &Entry) -> Result<Vec<u8>, LogError> {
        frame::read_at(&self.records, RECORD_MAGIC, e.offset, e.len)
            .map_err(|err| corrupt(format!("records.log: {err}")))
    }

    fn read_record(&self, e: &Entry) -> Result<(Vec<u8>, R), LogError> {
        let leaf = self.read_leaf(e)?;
        let rec = decode_leaf::<R>(&leaf)
            .map_err(|err| corrupt(format!("records.log at offset {}: {err}", e.offset)))?
            .record;
        Ok((leaf, rec))
    }

    fn lookup_op(&self, inner: &Inner, op_id: &str) -> Result<Option<u64>, LogError> {
        for i in inner.op_candidates(op_hash(op_id)) {
            let (_, rec) = self.read_record(&inner.entries[i as usize])?;
            if rec.op_id() == Some(op_id) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Appends a record and returns its index once it is durable (fsync'd). Appending a record
    /// whose `op_id` is already in the log writes nothing and returns the existing index.
    pub fn append(&self, rec: R) -> Result<u64, LogError> {
        Ok(self.append_batch(vec![rec])?[0])
    }

    /// Appends records in order with one write and one fsync (group commit) and returns their
    /// indices once all are durable; a record whose `op_id` is in the log (or earlier in the
    /// batch) is not written again and gets the existing index. All or none are durable.
    pub fn append_batch(&self, recs: Vec<R>) -> Result<Vec<u64>, LogError> {
        let mut g = self.lock_writable()?;
        self.append_locked(&mut g, recs)
    }

    /// A replica's append (docs/cluster.md, "The cluster's destruction log"): `rec` must become
    /// record `index`. A record of the same operation already at `index` returns it (a
    /// repeated call); anything else that does not fit (the log is shorter: it missed records;
    /// longer, or the operation is elsewhere: it diverged) is refused and nothing is written.
    pub fn append_at(&self, index: u64, rec: R) -> Result<u64, LogError> {
        let mut g = self.lock_writable()?;
        let n = g.entries.len() as u64;
        if let Some(op) = rec.op_id()
            && let Some(i) = self.lookup_op(&g, op)?
        {
            return if i == index {
                Ok(i)
            } else {
                Err(LogError::InvalidRecord(format!(
                    "operation {op} is record {i} here, not {index}"
                )))
            };
        }
        if n != index {
            return Err(LogError::InvalidRecord(format!(
                "record {index} does not follow this log's {n} records"
            )));
        }
        Ok(self.append_locked(&mut g, vec![rec])?[0])
    }

    /// A replica's checkpoint: of exactly `tree_size` records, at `timestamp_ms` (or the
    /// previous checkpoint's time if later). Replicas holding the same records and checkpoints
    /// make the same bytes (Ed25519 signatures are deterministic, the key is shared).
    pub fn checkpoint_at(
        &self,
        tree_size: u64,
        timestamp_ms: i64,
    ) -> Result<SignedCheckpoint, LogError> {
        let mut g = self.lock_writable()?;
        if let Some(cp) = &g.latest
            && cp.tree_size >= tree_size
        {
            return if cp.tree_size == tree_size {
                Ok(cp.clone())
            } else {
                Err(LogError::InvalidRecord(format!(
                    "a checkpoint of {} records is already here, after {tree_size}",
                    cp.tree_size
                )))
            };
        }
        let n = g.entries.len() as u64;
        if n != tree_size {
            return Err(LogError::InvalidRecord(format!(
                "a checkpoint of {tree_size} records asked of a log of {n}"
            )));
        }
        self.checkpoint_locked(&mut g, timestamp_ms)
    }

    /// Every checkpoint made, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, LogError> {
        let end = self.lock()?.checkpoints_end;
        self.read_checkpoints(end)
    }

    fn append_locked(&self, g: &mut Inner, recs: Vec<R>) -> Result<Vec<u64>, LogError> {
        let mut out = Vec::with_capacity(recs.len());
        let mut bytes = Vec::new();
        // (leaf range in `bytes`, frame offset relative to the batch start, record)
        let mut new: Vec<(std::ops::Range<usize>, u64, R)> = Vec::new();
        let mut batch_ops: HashMap<String, u64> = HashMap::new();
        let base = g.entries.len() as u64;
        for rec in recs {
            if let Some(op) = rec.op_id() {
                if op.is_empty() {
                    return Err(LogError::InvalidRecord("empty op_id".into()));
                }
                if let Some(i) = self.lookup_op(g, op)? {
                    out.push(i);
                    continue;
                }
                if let Some(&i) = batch_ops.get(op) {
                    out.push(i);
                    continue;
                }
            }
            let index = base + new.len() as u64;
            let leaf = encode_leaf(index, &rec);
            if leaf.len() > MAX_PAYLOAD as usize {
                return Err(LogError::InvalidRecord(format!(
                    "record of {} bytes is above the {MAX_PAYLOAD}-byte limit",
                    leaf.len()
                )));
            }
            if let Some(op) = rec.op_id() {
                batch_ops.insert(op.to_string(), index);
            }
            let rel = bytes.len() as u64;
            bytes.extend_from_slice(&frame::encode(RECORD_MAGIC, &leaf));
            let leaf_start = bytes.len() - leaf.len();
            new.push((leaf_start..bytes.len(), rel, rec));
            out.push(index);
        }
        if new.is_empty() {
            return Ok(out);
        }
        let at = g.records_end;
        if let Err(e) = self.records.write_all_at(&bytes, at) {
            // Take back a partial write so the next append does not land after garbage.
            if let Err(e2) = self.records.set_len(at) {
                g.poisoned = Some(format!("cannot cut a failed append: {e2}"));
            }
            return Err(e.into());
        }
        if let Err(e) = self.records.sync_data() {
            // After a failed fsync the file's state is unknown: stop until reopened.
            g.poisoned = Some(format!("fsync of records.log failed: {e}"));
            return Err(e.into());
        }
        // Durable from here: the records are acknowledged even if the derived files fail (a
        // reopen rebuilds them), but then the log stops taking writes.
        g.records_end = at + bytes.len() as u64;
        for (range, rel, rec) in &new {
            if let Err(e) = self.add_leaf(g, at + rel, &bytes[range.clone()], rec) {
                g.poisoned = Some(format!("updating index/tree failed: {e}"));
                return Ok(out);
            }
        }
        g.unsynced += new.len() as u64;
        if g.unsynced >= self.opts.sync_every
            && let Err(e) = self.sync_state(g)
        {
            g.poisoned = Some(format!("syncing index/tree failed: {e}"));
        }
        Ok(out)
    }

    /// Record `i` (0-based, below `len()`).
    pub fn get(&self, i: u64) -> Result<R, LogError> {
        let e = {
            let g = self.lock()?;
            *g.entries
                .get(i as usize)
                .ok_or_else(|| LogError::InvalidRecord(format!("no record {i}")))?
        };
        Ok(self.read_record(&e)?.1)
    }

    /// The index of the record with this `op_id`, if it is in the log.
    pub fn contains(&self, op_id: &str) -> Result<Option<u64>, LogError> {
        let g = self.lock()?;
        self.lookup_op(&g, op_id)
    }

    /// Number of records in the log.
    pub fn len(&self) -> Result<u64, LogError> {
        Ok(self.lock()?.entries.len() as u64)
    }

    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }

    /// Signs the current tree head and stores it (durable before it returns). When nothing was
    /// appended since the latest checkpoint, that one is returned and nothing is written. The
    /// time is `now_ms`, never before the previous checkpoint's.
    pub fn checkpoint(&self, now_ms: i64) -> Result<SignedCheckpoint, LogError> {
        let mut g = self.lock_writable()?;
        self.checkpoint_locked(&mut g, now_ms)
    }

    fn checkpoint_locked(&self, g: &mut Inner, now_ms: i64) -> Result<SignedCheckpoint, LogError> {
        let n = g.entries.len() as u64;
        if let Some(cp) = &g.latest
            && cp.tree_size == n
        {
            return Ok(cp.clone());
        }
        let ts = g
            .latest
            .as_ref()
            .map_or(now_ms, |cp| cp.timestamp_ms.max(now_ms));
        let cp = self.key.sign(n, &g.frontier.root(), ts);
        let frame = frame::encode(
            CHECKPOINT_MAGIC,
            &serde_json::to_vec(&cp).expect("checkpoint serializes"),
        );
        let at = g.checkpoints_end;
        if let Err(e) = self.checkpoints.write_all_at(&frame, at) {
            if let Err(e2) = self.checkpoints.set_len(at) {
                g.poisoned = Some(format!("cannot cut a failed checkpoint: {e2}"));
            }
            return Err(e.into());
        }
        if let Err(e) = self.checkpoints.sync_data() {
            g.poisoned = Some(format!("fsync of checkpoints.log failed: {e}"));
            return Err(e.into());
        }
        g.checkpoints_end = at + frame.len() as u64;
        g.checkpoints += 1;
        g.latest = Some(cp.clone());
        if let Err(e) = self.sync_state(g) {
            g.poisoned = Some(format!("syncing index/tree failed: {e}"));
        }
        Ok(cp)
    }

    /// The latest checkpoint, if any was made.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, LogError> {
        Ok(self.lock()?.latest.clone())
    }

    /// Every record about one object (all its versions), oldest first.
    pub fn find(&self, bucket: &str, key: &str) -> Result<Vec<(u64, R)>, LogError> {
        let h = obj_hash(bucket, key);
        let candidates: Vec<(u64, Entry)> = {
            let g = self.lock()?;
            g.entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.obj == h)
                .map(|(i, e)| (i as u64, *e))
                .collect()
        };
        let mut out = Vec::new();
        for (i, e) in candidates {
            let (_, rec) = self.read_record(&e)?;
            if rec.object() == (bucket, key) {
                out.push((i, rec));
            }
        }
        Ok(out)
    }

    /// The log's public key (SPKI PEM), for auditors.
    pub fn public_key_pem(&self) -> String {
        public_key_pem(&self.key.verifying)
    }

    /// `strata.<log name>/<fingerprint>`: the name in every checkpoint.
    pub fn origin(&self) -> &str {
        &self.key.origin
    }

    fn entry(&self, i: u64) -> Result<Entry, LogError> {
        Ok(self.lock()?.entries[i as usize])
    }

    /// Writes the records destroyed at or after `since_ms` (all when `None`) of `bucket` (all
    /// when `None`) into the new or empty directory `out`, with every checkpoint, the
    /// consistency proofs between consecutive checkpoints and each record's inclusion proof
    /// against a checkpoint made now (format: docs/destruction-log.md). Appends go on meanwhile;
    /// the export covers the log as of that checkpoint.
    pub fn export(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        let filter = ExportFilter {
            since_ms,
            bucket: bucket.map(str::to_string),
            ..ExportFilter::default()
        };
        self.export_filtered(&filter, out)
    }

    /// [`Self::export`] with every filter: records whose time is in `[since, until)`, of the
    /// bucket, naming the user (each `None`: any).
    pub fn export_filtered(
        &self,
        filter: &ExportFilter,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        self.export_inner(filter, out, true)
    }

    /// [`Self::export_filtered`] as of the latest checkpoint, making none (a replica of the
    /// cluster's log: only the replicated checkpoint call writes checkpoints there).
    pub fn export_at_latest(
        &self,
        filter: &ExportFilter,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        self.export_inner(filter, out, false)
    }

    fn export_inner(
        &self,
        filter: &ExportFilter,
        out: &Path,
        make_checkpoint: bool,
    ) -> Result<ExportSummary, LogError> {
        prepare_out_dir(out)?;
        let (cp, checkpoints_end) = {
            let mut g = self.lock_writable()?;
            let cp = match (make_checkpoint, g.latest.clone()) {
                (false, Some(cp)) => cp,
                (false, None) => return Err(LogError::Export("no checkpoint yet".into())),
                (true, _) => self.checkpoint_locked(&mut g, now_ms())?,
            };
            (cp, g.checkpoints_end)
        };
        let n = cp.tree_size;
        let root = cp.root_bytes();
        let tree = TreeFile(&self.tree);
        let mut memo = HashMap::new();

        let cps = self.read_checkpoints(checkpoints_end)?;
        if cps.last() != Some(&cp) {
            return Err(corrupt(
                "checkpoints.log does not end with the latest checkpoint",
            ));
        }
        let mut w = Writers::create(out)?;
        for c in &cps {
            w.line(export::CHECKPOINTS, &serde_json::to_vec(c).unwrap())?;
        }
        for pair in cps.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let path = merkle::consistency_proof(&tree, a.tree_size, b.tree_size, &mut memo)?;
            merkle::verify_consistency(
                a.tree_size,
                &a.root_bytes(),
                b.tree_size,
                &b.root_bytes(),
                &path,
            )
            .map_err(|e| {
                corrupt(format!(
                    "checkpoints of size {} and {} do not verify against tree.bin ({e}); \
                     delete tree.bin, index.bin and state.json and reopen to rebuild them",
                    a.tree_size, b.tree_size
                ))
            })?;
            let line = ConsistencyLine {
                from_size: a.tree_size,
                to_size: b.tree_size,
                path: path.iter().map(hex::encode).collect(),
            };
            w.line(export::CONSISTENCY, &serde_json::to_vec(&line).unwrap())?;
        }

        let mut ranges: Vec<[u64; 2]> = Vec::new();
        for i in 0..n {
            let (leaf, rec) = self.read_record(&self.entry(i)?)?;
            let wanted = (filter.include_first && i == 0)
                || (filter.since_ms.is_none_or(|t| rec.time_ms() >= t)
                    && filter.until_ms.is_none_or(|t| rec.time_ms() < t)
                    && filter.bucket.as_deref().is_none_or(|b| rec.object().0 == b)
                    && filter.user.as_deref().is_none_or(|u| rec.user() == Some(u)));
            if !wanted {
                continue;
            }
            let path = merkle::inclusion_proof(&tree, n, i, &mut memo)?;
            merkle::verify_inclusion(&leaf, i, n, &root, &path).map_err(|e| {
                corrupt(format!(
                    "record {i} does not verify against tree.bin ({e}); delete tree.bin, \
                     index.bin and state.json and reopen to rebuild them"
                ))
            })?;
            w.line(export::RECORDS, &leaf)?;
            let line = ProofLine {
                index: i,
                tree_size: n,
                path: path.iter().map(hex::encode).collect(),
            };
            w.line(export::PROOFS, &serde_json::to_vec(&line).unwrap())?;
            match ranges.last_mut() {
                Some(r) if r[1] == i => r[1] = i + 1,
                _ => ranges.push([i, i + 1]),
            }
        }
        let records: u64 = ranges.iter().map(|r| r[1] - r[0]).sum();
        let body = ManifestBody {
            format: R::EXPORT_FORMAT.into(),
            origin: self.key.origin.clone(),
            created_ms: now_ms(),
            since_ms: filter.since_ms,
            bucket: filter.bucket.clone(),
            until_ms: filter.until_ms,
            user: filter.user.clone(),
            checkpoint: cp.clone(),
            checkpoints: cps.len() as u64,
            records,
            ranges,
        };
        let signature = self.key.sign_message(
            R::EXPORT_FORMAT,
            &serde_json::to_vec(&body).expect("manifest serializes"),
        );
        let manifest = Manifest { body, signature };
        w.line(export::MANIFEST, &serde_json::to_vec(&manifest).unwrap())?;
        w.finish(out)?;
        Ok(ExportSummary {
            dir: out.to_path_buf(),
            records,
            checkpoints: cps.len() as u64,
            tree_size: n,
            root_hash: cp.root_hash.clone(),
            checkpoint: cp,
            since_ms: filter.since_ms,
            bucket: filter.bucket.clone(),
            until_ms: filter.until_ms,
            user: filter.user.clone(),
        })
    }

    /// Every checkpoint in `checkpoints.log[..end]`, oldest first.
    fn read_checkpoints(&self, end: u64) -> Result<Vec<SignedCheckpoint>, LogError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        while offset < end {
            let mut header = [0u8; HEADER_LEN as usize];
            self.checkpoints.read_exact_at(&mut header, offset)?;
            let len = u32::from_le_bytes(header[4..8].try_into().unwrap());
            let payload = frame::read_at(&self.checkpoints, CHECKPOINT_MAGIC, offset, len)
                .map_err(|e| corrupt(format!("checkpoints.log: {e}")))?;
            out.push(
                serde_json::from_slice(&payload)
                    .map_err(|e| corrupt(format!("checkpoints.log at offset {offset}: {e}")))?,
            );
            offset += HEADER_LEN + len as u64;
        }
        Ok(out)
    }
}

fn prepare_out_dir(out: &Path) -> Result<(), LogError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(LogError::Export(format!(
                    "{} exists and is not empty",
                    out.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(fs::create_dir_all(out)?),
        Err(e) => Err(e.into()),
    }
}

/// The export's files, buffered, fsync'd (files and directory) at the end.
struct Writers {
    files: Vec<(&'static str, io::BufWriter<File>)>,
}

impl Writers {
    fn create(out: &Path) -> io::Result<Self> {
        let mut files = Vec::new();
        for name in export::FILES {
            files.push((name, io::BufWriter::new(File::create(out.join(name))?)));
        }
        Ok(Self { files })
    }
    fn line(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let w = &mut self
            .files
            .iter_mut()
            .find(|(n, _)| *n == name)
            .expect("known file")
            .1;
        w.write_all(bytes)?;
        w.write_all(b"\n")
    }
    fn finish(self, out: &Path) -> io::Result<()> {
        for (_, w) in self.files {
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        sync_dir(out)
    }
}
