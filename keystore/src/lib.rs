//! The key store: every KEK and DEK Strata holds, wrapped, in fixed-size slots of one file, so
//! that destroying a key is physical and immediate: its slot is overwritten in place with a
//! destruction marker and fsync'd. The metadata tier (RocksDB) keeps only slot references
//! (slot number + key id), never key material, because RocksDB's old WAL and SST files and its
//! checkpoints keep deleted values for an unbounded time. See `docs/keys.md`.
//!
//! Files under the store directory (0700; files 0600):
//! - `slots`: a 4096-byte header (magic, format, slot size, CRC) then 128-byte slots
//!   ([`slot`] has the byte layout).
//! - `journal`: the batch a re-wrap is about to write, so a crash in the middle of overwriting
//!   live keys in place never loses one (re-applied at open, then zeroed).
//!
//! Concurrency: one process owns a store (the caller holds a lock on its data directory, as
//! `strata serve` does with RocksDB's). Within it, every write is a `pwrite` of whole slots under
//! an I/O lock (so a reader never sees half a slot), followed by a group-committed `fdatasync`:
//! concurrent writers share one flush. A write returns only when it is durable. Destroy and
//! re-wrap are read-check-write cycles serialised by the *mutation lock*; writes of new keys go
//! to slots reserved for them (never live), so they need no such lock and a backup can pause
//! destroys and re-wraps (not new keys) while it copies the file.

mod handle;
pub mod replicated;
pub mod service;
mod slot;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

pub use handle::KeyStore;
pub use slot::{Entry, KeyKind, MAX_WRAPPED, SLOT_SIZE, Slot};

const HEADER_SIZE: u64 = 4096;
const MAGIC: &[u8; 8] = b"STRATAKS";
const FORMAT: u32 = 1;
const SLOTS_FILE: &str = "slots";
const JOURNAL_FILE: &str = "journal";
/// Highest slot number a replica write may name (a 128 TiB file).
const MAX_SLOT: u64 = 1 << 40;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("key store is corrupt: {0}")]
    Corrupt(String),
    #[error("invalid key store request: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, KeyStoreError>;

/// What [`KeyStore::destroy`] found.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroyed {
    /// The key was live and is now overwritten (durably).
    Now,
    /// The slot no longer held that key (destroyed earlier, never written, or reused): nothing
    /// to do.
    AlreadyGone,
}

/// One key to re-wrap in place: only if `slot` still holds key `id` wrapped by `from`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rewrap {
    pub slot: u64,
    pub id: [u8; 16],
    pub from: [u8; 16],
    pub to: [u8; 16],
    pub wrapped: Vec<u8>,
}

/// Live keys of a range of slots, and the slot to continue from (`None`: the end).
pub type ScanPage = (Vec<(u64, Entry)>, Option<u64>);

/// Counts for inventories and metrics (never key material).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Slots in the file (live, free and reserved).
    pub slots: u64,
    pub live_keks: u64,
    pub live_deks: u64,
    pub free: u64,
    pub reserved: u64,
    pub file_bytes: u64,
    /// Live keys per wrapping key id: DEKs per KEK, KEKs per master key.
    pub by_wrapper: Vec<([u8; 16], KeyKind, u64)>,
}

#[derive(Default)]
struct Alloc {
    /// Slots that hold no live key and are not reserved.
    free: BTreeSet<u64>,
    /// Slots handed out by `reserve` and not yet written or released.
    reserved: HashSet<u64>,
    /// First slot number beyond the file's slots.
    next: u64,
    live: HashMap<([u8; 16], KeyKind), u64>,
}

#[derive(Default)]
struct SyncState {
    /// Writes issued (pwrite done) so far, and how many of them are known durable.
    issued: u64,
    synced: u64,
    syncing: bool,
    failed: Option<String>,
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// pwrite takes it exclusively, pread shared: no reader sees half a slot.
    io: RwLock<()>,
    /// Serialises destroy and re-wrap (read, check, write, flush); a backup holds it to pause them.
    mutate: Mutex<()>,
    alloc: Mutex<Alloc>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
}

/// The key store in a local file. Cheap to clone. All calls block (file I/O and fsync): async
/// callers run them on a blocking pool.
#[derive(Clone)]
pub struct LocalKeyStore {
    inner: Arc<Inner>,
}

fn offset(slot: u64) -> u64 {
    HEADER_SIZE + slot * SLOT_SIZE as u64
}

fn header() -> [u8; HEADER_SIZE as usize] {
    let mut h = [0u8; HEADER_SIZE as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[12..16].copy_from_slice(&(SLOT_SIZE as u32).to_le_bytes());
    let c = crc_fast::crc32_iscsi(&h[..4092]);
    h[4092..].copy_from_slice(&c.to_le_bytes());
    h
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Creates `path` (0600) with `bytes`, durably (file and directory fsync'd).
fn create_file(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all_at(bytes, 0)?;
    f.sync_all()?;
    if let Some(d) = path.parent() {
        fsync_dir(d)?;
    }
    Ok(f)
}

impl LocalKeyStore {
    /// Opens the store in `dir`, creating it (directory 0700, files 0600) on first use. Reads
    /// every slot once to rebuild the free list and the counts (128 bytes per key: about 1 s
    /// per 10 million keys from a warm disk), and finishes an interrupted re-wrap.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            if let Some(p) = dir.parent() {
                fsync_dir(p)?;
            }
        }
        let path = dir.join(SLOTS_FILE);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_file(&path, &header())?,
            Err(e) => return Err(e.into()),
        };
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key store file is accessible to group/others; chmod 600 it");
        }
        let mut h = [0u8; HEADER_SIZE as usize];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| KeyStoreError::Corrupt(format!("header unreadable: {e}")))?;
        if h != header() {
            return Err(KeyStoreError::Corrupt(format!(
                "{} is not a key store of format {FORMAT} (bad header)",
                path.display()
            )));
        }
        let store = LocalKeyStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                file,
                io: RwLock::new(()),
                mutate: Mutex::new(()),
                alloc: Mutex::new(Alloc::default()),
                sync: Mutex::new(SyncState::default()),
                synced_cv: Condvar::new(),
            }),
        };
        store.replay_journal()?;
        store.load()?;
        Ok(store)
    }

    fn alloc(&self) -> MutexGuard<'_, Alloc> {
        self.inner.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self) -> Result<()> {
        let len = self.inner.file.metadata()?.len();
        let slots = len.saturating_sub(HEADER_SIZE) / SLOT_SIZE as u64;
        let mut a = Alloc {
            next: slots,
            ..Default::default()
        };
        const PAGE: u64 = 8192;
        let mut buf = vec![0u8; (PAGE as usize) * SLOT_SIZE];
        let mut at = 0;
        while at < slots {
            let n = PAGE.min(slots - at);
            let piece = &mut buf[..n as usize * SLOT_SIZE];
            self.inner.file.read_exact_at(piece, offset(at))?;
            for (i, raw) in piece.chunks_exact(SLOT_SIZE).enumerate() {
                match slot::decode(raw) {
                    Slot::Live(e) => *a.live.entry((e.wrapper, e.kind)).or_default() += 1,
                    Slot::Corrupt => {
                        tracing::warn!(
                            slot = at + i as u64,
                            "key store slot fails its checksum; treated as empty"
                        )
                    }
                    _ => {
                        a.free.insert(at + i as u64);
                    }
                }
            }
            at += n;
        }
        *self.alloc() = a;
        Ok(())
    }

    /// Reserves a slot for a new key (in memory only: nothing is written). Give it back with
    /// [`LocalKeyStore::release`] if the key is never written.
    pub fn reserve(&self) -> u64 {
        let mut a = self.alloc();
        let s = match a.free.pop_first() {
            Some(s) => s,
            None => {
                let s = a.next;
                a.next += 1;
                s
            }
        };
        a.reserved.insert(s);
        s
    }

    /// Returns a reservation that was never written.
    pub fn release(&self, slot: u64) {
        let mut a = self.alloc();
        if a.reserved.remove(&slot) {
            a.free.insert(slot);
        }
    }

    /// Reads a slot.
    pub fn read(&self, slot: u64) -> Result<Slot> {
        Ok(slot::decode(&self.read_raw(slot)?))
    }

    /// A slot's bytes as stored (all zero beyond the end of the file: an empty slot).
    pub fn read_raw(&self, slot: u64) -> Result<[u8; SLOT_SIZE]> {
        let mut b = [0u8; SLOT_SIZE];
        let _g = self.inner.io.read().unwrap_or_else(|e| e.into_inner());
        match self.inner.file.read_exact_at(&mut b, offset(slot)) {
            Ok(()) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok([0u8; SLOT_SIZE]),
            Err(e) => Err(e.into()),
        }
    }

    /// The live key `id` in `slot`, if the slot still holds it.
    pub fn get(&self, slot: u64, id: &[u8; 16]) -> Result<Option<Entry>> {
        Ok(match self.read(slot)? {
            Slot::Live(e) if &e.id == id => Some(e),
            _ => None,
        })
    }

    fn pwrite(&self, slot: u64, bytes: &[u8; SLOT_SIZE]) -> Result<()> {
        let _g = self.inner.io.write().unwrap_or_else(|e| e.into_inner());
        self.inner.file.write_all_at(bytes, offset(slot))?;
        Ok(())
    }

    /// Marks a write as issued and waits until a flush covers it (group commit: the first
    /// waiter flushes for everyone queued behind it).
    fn flush_issued(&self) -> Result<()> {
        let mut st = self.inner.sync.lock().unwrap_or_else(|e| e.into_inner());
        st.issued += 1;
        let mine = st.issued;
        loop {
            if let Some(e) = &st.failed {
                // After a failed fsync nothing later can be trusted to be durable (the page
                // cache may have dropped the dirty pages): refuse every write from now on.
                return Err(KeyStoreError::Io(io::Error::other(format!(
                    "an earlier key store fsync failed: {e}"
                ))));
            }
            if st.synced >= mine {
                return Ok(());
            }
            if st.syncing {
                st = self
                    .inner
                    .synced_cv
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            let upto = st.issued;
            drop(st);
            let r = self.inner.file.sync_data();
            st = self.inner.sync.lock().unwrap_or_else(|e| e.into_inner());
            st.syncing = false;
            match r {
                Ok(()) => st.synced = st.synced.max(upto),
                Err(e) => st.failed = Some(e.to_string()),
            }
            self.inner.synced_cv.notify_all();
        }
    }

    /// Writes a new key into a slot reserved for it and returns once it is durable.
    pub fn write(&self, slot: u64, entry: &Entry) -> Result<()> {
        if entry.wrapped.len() > MAX_WRAPPED {
            return Err(KeyStoreError::Invalid("wrapped key too long".into()));
        }
        if !self.alloc().reserved.contains(&slot) {
            return Err(KeyStoreError::Invalid(format!(
                "slot {slot} was not reserved for this key"
            )));
        }
        let bytes = slot::encode_live(entry);
        self.pwrite(slot, &bytes)?;
        {
            let mut a = self.alloc();
            a.reserved.remove(&slot);
            *a.live.entry((entry.wrapper, entry.kind)).or_default() += 1;
        }
        self.flush_issued()
    }

    /// A replica's write (the key service replicated over several nodes, `service`): stores
    /// `entry` in `slot`, which the cluster allocated (not this file), extending the file if it
    /// is beyond its end. Returns false, writing nothing, when the slot holds a destruction
    /// marker: a destroyed slot is never written again, so a late or repeated copy cannot bring
    /// a destroyed key back. The same key again (a copy after a re-wrap) overwrites it; another
    /// live key is refused.
    pub fn store_at(&self, slot: u64, entry: &Entry) -> Result<bool> {
        if entry.wrapped.len() > MAX_WRAPPED {
            return Err(KeyStoreError::Invalid("wrapped key too long".into()));
        }
        if slot > MAX_SLOT {
            return Err(KeyStoreError::Invalid(format!(
                "slot {slot} is out of range"
            )));
        }
        // Serialised with destroy: the check and the write are one step.
        let _m = self.mutation();
        let old = match self.read(slot)? {
            Slot::Destroyed { .. } => return Ok(false),
            Slot::Live(e) if e.id != entry.id => {
                return Err(KeyStoreError::Invalid(format!(
                    "slot {slot} holds another key"
                )));
            }
            Slot::Live(e) => Some(e),
            _ => None,
        };
        self.pwrite(slot, &slot::encode_live(entry))?;
        {
            let mut a = self.alloc();
            a.reserved.remove(&slot);
            a.free.remove(&slot);
            // Slots skipped over stay out of the free list: only the cluster allocates here.
            a.next = a.next.max(slot + 1);
            if let Some(o) = &old
                && let Some(n) = a.live.get_mut(&(o.wrapper, o.kind))
            {
                *n = n.saturating_sub(1);
            }
            *a.live.entry((entry.wrapper, entry.kind)).or_default() += 1;
        }
        self.flush_issued()?;
        Ok(true)
    }

    fn mutation(&self) -> MutexGuard<'_, ()> {
        self.inner.mutate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_gone(&self, slot: u64, e: &Entry) {
        let mut a = self.alloc();
        if let Some(n) = a.live.get_mut(&(e.wrapper, e.kind)) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                a.live.remove(&(e.wrapper, e.kind));
            }
        }
        a.free.insert(slot);
    }

    /// Destroys key `id` in `slot`: the slot is overwritten with a destruction marker (no byte
    /// of the wrapped key left) and flushed before this returns. Idempotent.
    pub fn destroy(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        let _m = self.mutation();
        let Slot::Live(e) = self.read(slot)? else {
            return Ok(Destroyed::AlreadyGone);
        };
        if &e.id != id {
            return Ok(Destroyed::AlreadyGone);
        }
        self.pwrite(slot, &slot::encode_destroyed(e.kind, id, now_ms()))?;
        self.flush_issued()?;
        // Reusable only once the marker is durable.
        self.note_gone(slot, &e);
        Ok(Destroyed::Now)
    }

    /// A replica's destruction: as [`LocalKeyStore::destroy`], and a slot that holds no key yet
    /// gets the destruction marker too (a tombstone), so that a copy of the key arriving later
    /// (a replica catching up, `store_at`) is refused.
    pub fn destroy_at(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        if slot > MAX_SLOT {
            return Err(KeyStoreError::Invalid(format!(
                "slot {slot} is out of range"
            )));
        }
        let _m = self.mutation();
        match self.read(slot)? {
            Slot::Live(e) if &e.id == id => {
                self.pwrite(slot, &slot::encode_destroyed(e.kind, id, now_ms()))?;
                self.flush_issued()?;
                self.note_gone(slot, &e);
                Ok(Destroyed::Now)
            }
            Slot::Empty | Slot::Corrupt => {
                self.pwrite(slot, &slot::encode_destroyed(KeyKind::Dek, id, now_ms()))?;
                self.flush_issued()?;
                let mut a = self.alloc();
                a.reserved.remove(&slot);
                a.next = a.next.max(slot + 1);
                Ok(Destroyed::AlreadyGone)
            }
            _ => Ok(Destroyed::AlreadyGone),
        }
    }

    /// Re-wraps keys in place (rotation), each only if its slot still holds that key under
    /// `from`. The batch is journaled first, so a crash halfway through never leaves a key
    /// half-written. Returns how many were re-wrapped.
    pub fn rewrap(&self, batch: &[Rewrap]) -> Result<usize> {
        if batch.iter().any(|r| r.wrapped.len() > MAX_WRAPPED) {
            return Err(KeyStoreError::Invalid("wrapped key too long".into()));
        }
        let _m = self.mutation();
        let mut writes = Vec::new();
        for r in batch {
            if let Slot::Live(e) = self.read(r.slot)?
                && e.id == r.id
                && e.wrapper == r.from
            {
                let new = Entry {
                    wrapper: r.to,
                    changed_ms: now_ms(),
                    wrapped: r.wrapped.clone(),
                    ..e.clone()
                };
                writes.push((r.slot, e, slot::encode_live(&new), r.to));
            }
        }
        if writes.is_empty() {
            return Ok(0);
        }
        let journal: Vec<(u64, [u8; SLOT_SIZE])> =
            writes.iter().map(|(s, _, b, _)| (*s, *b)).collect();
        self.write_journal(&journal)?;
        for (s, _, b, _) in &writes {
            self.pwrite(*s, b)?;
        }
        self.flush_issued()?;
        self.clear_journal()?;
        let mut a = self.alloc();
        for (_, old, _, to) in &writes {
            if let Some(n) = a.live.get_mut(&(old.wrapper, old.kind)) {
                *n = n.saturating_sub(1);
            }
            *a.live.entry((*to, old.kind)).or_default() += 1;
        }
        a.live.retain(|_, n| *n > 0);
        Ok(writes.len())
    }

    // ----- journal: `count u32 | (slot u64, 128 bytes)* | crc32c u32` -----

    fn journal_path(&self) -> PathBuf {
        self.inner.dir.join(JOURNAL_FILE)
    }

    fn write_journal(&self, entries: &[(u64, [u8; SLOT_SIZE])]) -> Result<()> {
        let mut buf = Vec::with_capacity(8 + entries.len() * (8 + SLOT_SIZE));
        buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (s, b) in entries {
            buf.extend_from_slice(&s.to_le_bytes());
            buf.extend_from_slice(b);
        }
        let c = crc_fast::crc32_iscsi(&buf);
        buf.extend_from_slice(&c.to_le_bytes());
        let path = self.journal_path();
        let f = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return create_file(&path, &buf).map(|_| ()).map_err(Into::into);
            }
            Err(e) => return Err(e.into()),
        };
        f.write_all_at(&buf, 0)?;
        f.sync_data()?;
        Ok(())
    }

    /// Overwrites the journal with zeros (not just truncates: the freed blocks would still hold
    /// wrapped keys), then truncates it.
    fn clear_journal(&self) -> Result<()> {
        let path = self.journal_path();
        let f = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let len = f.metadata()?.len();
        if len > 0 {
            f.write_all_at(&vec![0u8; len as usize], 0)?;
            f.sync_data()?;
            f.set_len(0)?;
            f.sync_all()?;
        }
        Ok(())
    }

    fn replay_journal(&self) -> Result<()> {
        let raw = match fs::read(self.journal_path()) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if raw.iter().all(|&b| b == 0) {
            return self.clear_journal();
        }
        let valid = raw.len() >= 8 && {
            let n = u32::from_le_bytes(raw[..4].try_into().expect("4")) as usize;
            let body = 4 + n * (8 + SLOT_SIZE);
            raw.len() >= body + 4
                && crc_fast::crc32_iscsi(&raw[..body])
                    == u32::from_le_bytes(raw[body..body + 4].try_into().expect("4"))
        };
        if valid {
            let n = u32::from_le_bytes(raw[..4].try_into().expect("4")) as usize;
            let mut applied = 0;
            for i in 0..n {
                let at = 4 + i * (8 + SLOT_SIZE);
                let s = u64::from_le_bytes(raw[at..at + 8].try_into().expect("8"));
                let bytes: [u8; SLOT_SIZE] =
                    raw[at + 8..at + 8 + SLOT_SIZE].try_into().expect("slot");
                // Only over the same live key: a journal never revives anything.
                if let (Slot::Live(new), Slot::Live(cur)) = (slot::decode(&bytes), self.read(s)?)
                    && new.id == cur.id
                {
                    self.inner.file.write_all_at(&bytes, offset(s))?;
                    applied += 1;
                }
            }
            self.inner.file.sync_data()?;
            tracing::info!(applied, "key store: finished an interrupted re-wrap");
        } else {
            // A journal torn while being written: the in-place writes had not started.
            tracing::info!("key store: discarding an incomplete re-wrap journal");
        }
        self.clear_journal()
    }

    /// Live keys in slots `from..from + limit`, and where to continue (`None`: end of file).
    pub fn scan(&self, from: u64, limit: u64) -> Result<ScanPage> {
        let end_slot = self.alloc().next;
        let to = from.saturating_add(limit).min(end_slot);
        let mut out = Vec::new();
        if to > from {
            let mut buf = vec![0u8; (to - from) as usize * SLOT_SIZE];
            {
                let _g = self.inner.io.read().unwrap_or_else(|e| e.into_inner());
                let file_slots = self
                    .inner
                    .file
                    .metadata()?
                    .len()
                    .saturating_sub(HEADER_SIZE)
                    / SLOT_SIZE as u64;
                let readable = to.min(file_slots).saturating_sub(from) as usize * SLOT_SIZE;
                self.inner
                    .file
                    .read_exact_at(&mut buf[..readable], offset(from))?;
            }
            for (i, raw) in buf.chunks_exact(SLOT_SIZE).enumerate() {
                if let Slot::Live(e) = slot::decode(raw) {
                    out.push((from + i as u64, e));
                }
            }
        }
        Ok((out, (to < end_slot).then_some(to)))
    }

    pub fn stats(&self) -> Result<Stats> {
        let file_bytes = self.inner.file.metadata()?.len();
        let a = self.alloc();
        let mut s = Stats {
            slots: a.next,
            free: a.free.len() as u64,
            reserved: a.reserved.len() as u64,
            file_bytes,
            ..Default::default()
        };
        for ((w, k), n) in &a.live {
            match k {
                KeyKind::Kek => s.live_keks += n,
                KeyKind::Dek => s.live_deks += n,
            }
            s.by_wrapper.push((*w, *k, *n));
        }
        s.by_wrapper.sort();
        Ok(s)
    }

    /// Pauses destroys and re-wraps (new keys still go to fresh slots) until the guard drops:
    /// a backup holds it while it snapshots the metadata and copies this store, so every key the
    /// snapshot references is in the copy.
    pub fn pause_overwrites(&self) -> PauseGuard<'_> {
        PauseGuard {
            store: self,
            _m: self.mutation(),
        }
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Destroys and re-wraps wait while this lives.
pub struct PauseGuard<'a> {
    store: &'a LocalKeyStore,
    _m: MutexGuard<'a, ()>,
}

impl PauseGuard<'_> {
    /// Copies the slot file into `dest` (a new directory, 0700; file 0600, fsync'd). Slots are
    /// read under the I/O lock, so each is whole; a slot being written for a new key at that
    /// moment is either in the copy or not, and no metadata snapshot taken before references it.
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        fs::DirBuilder::new().mode(0o700).create(dest)?;
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest.join(SLOTS_FILE))?;
        let inner = &self.store.inner;
        let len = inner.file.metadata()?.len();
        let mut at = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            {
                let _g = inner.io.read().unwrap_or_else(|e| e.into_inner());
                inner.file.read_exact_at(&mut buf[..n], at)?;
            }
            out.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        out.sync_all()?;
        fsync_dir(dest)?;
        Ok(())
    }
}

/// Installs a copied store (from a backup) as the store in `dir`, which must not exist.
pub fn install_copy(copy: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        return Err(KeyStoreError::Invalid(format!(
            "{} already exists",
            dir.display()
        )));
    }
    let src = copy.join(SLOTS_FILE);
    let bytes = fs::read(&src)?;
    if bytes.len() < HEADER_SIZE as usize || bytes[..HEADER_SIZE as usize] != header()[..] {
        return Err(KeyStoreError::Corrupt(format!(
            "{} is not a key store copy",
            src.display()
        )));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    create_file(&dir.join(SLOTS_FILE), &bytes)?;
    if let Some(p) = dir.parent() {
        fsync_dir(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;
