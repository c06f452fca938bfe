//! [`LocalChunkStore`]: shard files on several local disk directories, for any number of
//! [`Layout`]s at once. This module holds the store itself, put, get and stat; deletion is in
//! `delete.rs`, heal and scrub in `repair.rs`, the file-level helpers in `files.rs`.
//!
//! Every file operation runs in `spawn_blocking` (never on a tokio worker thread); the shards of
//! one put or read are written/read in parallel, one blocking task per disk.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use strata_erasure::Codec;

use crate::files::{self, DiskScan, SHARDS_DIR, TMP_DIR, TOMBSTONES_DIR};
use crate::format::{self, HEADER_LEN, ShardHeader};
use crate::layout::valid_word;
use crate::locks::ChunkLocks;
use crate::pipeline::{self, SealedStripe};
use crate::report::{BadShard, ReadReport, ShardProblem};
use crate::{ChunkId, ChunkService, ChunkStat, DataKey, Layout, NodeError};

/// Geometries whose codecs are kept; any further one is built per call (bounds memory against a
/// caller cycling through many (k, m) pairs).
const MAX_CACHED_CODECS: usize = 64;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The disks of this store: name (what layouts refer to) -> directory. The order is the
    /// operator's and is kept in [`disk_names`](Self::disk_names).
    pub disks: Vec<(String, PathBuf)>,
    /// Writes are refused with `InsufficientStorage` when a filesystem a put writes to is fuller
    /// than this fraction (0.0..=1.0).
    pub high_water: f64,
    /// Largest chunk accepted by put (also bounds HTTP request bodies).
    pub max_chunk_len: usize,
    /// Rebuild bad shards in the background when a read finds them.
    pub heal_on_read: bool,
}

impl NodeConfig {
    /// Defaults: high water 0.95, chunks up to 64 MiB, heal on read.
    pub fn new(disks: Vec<(String, PathBuf)>) -> Self {
        Self {
            disks,
            high_water: 0.95,
            max_chunk_len: 64 << 20,
            heal_on_read: true,
        }
    }

    /// `count` disks named `disk0`, `disk1`, ... in directories of the same names under `root`.
    pub fn under(root: &Path, count: usize) -> Self {
        Self::new(
            (0..count)
                .map(|i| (format!("disk{i}"), root.join(format!("disk{i}"))))
                .collect(),
        )
    }

    pub fn disk_names(&self) -> Vec<String> {
        self.disks.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// The shards of one chunk after choosing a generation.
pub(crate) struct Selection {
    /// Usable shard bodies by index (None where missing/bad/stale).
    pub shards: Vec<Option<Vec<u8>>>,
    /// Header of a usable shard, None if there is none.
    pub header: Option<ShardHeader>,
    pub bad: Vec<BadShard>,
    /// How many shard files did not exist at all.
    pub missing: usize,
}

/// One shard as loaded from disk, verified.
pub(crate) struct LoadedShard {
    pub header: ShardHeader,
    pub body: Vec<u8>,
}

pub(crate) struct Inner {
    pub config: NodeConfig,
    pub disks: HashMap<String, PathBuf>,
    codecs: Mutex<HashMap<(u8, u8), Arc<Codec>>>,
    /// Serialises put, delete and heal of one chunk (never reads), so a heal cannot rebuild
    /// shards a delete is removing.
    pub locks: ChunkLocks,
    /// Stripe buffers handed back by finished puts, reused by the next (bounded).
    buffers: Mutex<Vec<Vec<u8>>>,
    /// I/O errors per disk, in the order of `config.disks` (for metrics).
    io_errors: Vec<std::sync::atomic::AtomicU64>,
}

/// Cheap to clone: clones share the codecs, the chunk locks and the buffer pool.
#[derive(Clone)]
pub struct LocalChunkStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChunkStore")
            .field("config", &self.inner.config)
            .finish()
    }
}

pub(crate) fn chunk_label(id: ChunkId) -> String {
    format!("{}/{}", hex::encode(id.blob), id.index)
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(format!("blocking task failed: {e}"))))
}

pub(crate) fn unknown_disk(name: &str) -> NodeError {
    NodeError::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("disk {name} is not attached to this node"),
    ))
}

/// Does `h` describe shard `shard` of `id` under `layout`?
pub(crate) fn check_identity(
    h: &ShardHeader,
    layout: &Layout,
    id: ChunkId,
    shard: usize,
) -> Result<(), String> {
    if h.chunk != id || usize::from(h.shard_index) != shard {
        return Err("header names another shard".into());
    }
    if h.layout_id != layout.id
        || h.data_shards != layout.data_shards
        || h.parity_shards != layout.parity_shards
    {
        return Err(format!(
            "written under layout {} RS({}, {}), read as layout {} RS({}, {})",
            h.layout_id,
            h.data_shards,
            h.parity_shards,
            layout.id,
            layout.data_shards,
            layout.parity_shards
        ));
    }
    Ok(())
}

impl LocalChunkStore {
    /// Opens (creating on first use) the disk directories, and removes temporaries left by a
    /// crash: a file in `tmp/` was never published, so no acknowledged put needs it. Blocking:
    /// from async code, call it inside `spawn_blocking`.
    pub fn open(config: NodeConfig) -> Result<Self, NodeError> {
        if config.disks.is_empty() {
            return Err(NodeError::Invalid("no disks configured".into()));
        }
        if !(0.0..=1.0).contains(&config.high_water) {
            return Err(NodeError::Invalid(format!(
                "high_water {} not in 0..=1",
                config.high_water
            )));
        }
        let mut disks = HashMap::new();
        for (name, dir) in &config.disks {
            if !valid_word(name) {
                return Err(NodeError::Invalid(format!("bad disk name {name:?}")));
            }
            if disks.insert(name.clone(), dir.clone()).is_some() {
                return Err(NodeError::Invalid(format!("disk {name} listed twice")));
            }
        }
        for (name, disk) in &config.disks {
            fs::create_dir_all(disk.join(SHARDS_DIR))?;
            fs::create_dir_all(disk.join(TOMBSTONES_DIR))?;
            let tmp = disk.join(TMP_DIR);
            fs::create_dir_all(&tmp)?;
            let mut removed = 0usize;
            for entry in fs::read_dir(&tmp)? {
                let entry = entry?;
                fs::remove_file(entry.path())?;
                removed += 1;
            }
            if removed > 0 {
                files::fsync_dir(&tmp)?;
                tracing::info!(disk = %name, removed, "removed orphan temporary shard files");
            }
            if let Some(parent) = disk.parent().filter(|p| !p.as_os_str().is_empty()) {
                files::fsync_dir(parent)?;
            }
            files::fsync_dir(disk)?;
        }
        let io_errors = config.disks.iter().map(|_| Default::default()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                disks,
                codecs: Mutex::new(HashMap::new()),
                locks: ChunkLocks::new(),
                buffers: Mutex::new(Vec::new()),
                io_errors,
            }),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The RS(k, m) codec of `layout` (cached per geometry).
    pub fn codec(&self, layout: &Layout) -> Result<Arc<Codec>, NodeError> {
        let key = (layout.data_shards, layout.parity_shards);
        let mut codecs = self.inner.codecs.lock().expect("codec cache lock");
        if let Some(codec) = codecs.get(&key) {
            return Ok(codec.clone());
        }
        let codec = Arc::new(
            Codec::new(key.0.into(), key.1.into())
                .map_err(|e| NodeError::Invalid(e.to_string()))?,
        );
        if codecs.len() < MAX_CACHED_CODECS {
            codecs.insert(key, codec.clone());
        }
        Ok(codec)
    }

    /// Counts an I/O error on disk `name` (a failed shard read or write, a failed health probe).
    pub fn record_io_error(&self, name: &str) {
        if let Some(i) = self.inner.config.disks.iter().position(|(n, _)| n == name) {
            self.inner.io_errors[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// I/O errors counted per disk since the store opened, in the configured disk order.
    pub fn disk_io_errors(&self) -> Vec<(String, u64)> {
        self.inner
            .config
            .disks
            .iter()
            .zip(&self.inner.io_errors)
            .map(|((n, _), c)| (n.clone(), c.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }

    /// The same, for the disk at directory `dir`.
    fn record_io_error_at(&self, dir: &Path) {
        if let Some(i) = self.inner.config.disks.iter().position(|(_, d)| d == dir) {
            self.inner.io_errors[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Directory of disk `name`, if this store has it.
    pub fn disk_dir(&self, name: &str) -> Option<&Path> {
        self.inner.disks.get(name).map(PathBuf::as_path)
    }

    /// Which disk directory holds shard `shard` of `id` under `layout` (None: the layout names a
    /// disk this store does not have).
    pub fn shard_disk(&self, layout: &Layout, id: ChunkId, shard: usize) -> Option<&Path> {
        self.disk_dir(layout.disk_for_shard(id, shard))
    }

    /// Full path of shard `shard` of `id` under `layout` (whether or not it exists).
    pub fn shard_path(&self, layout: &Layout, id: ChunkId, shard: usize) -> Option<PathBuf> {
        self.shard_disk(layout, id, shard).map(|disk| {
            disk.join(files::fanout_dir(id))
                .join(files::shard_file_name(id, shard))
        })
    }

    /// Where the tombstone of `id` lives on disk `disk` (whether or not it exists).
    pub fn tombstone_path(&self, disk: &str, id: ChunkId) -> Option<PathBuf> {
        self.disk_dir(disk).map(|dir| {
            dir.join(TOMBSTONES_DIR)
                .join(files::tombstone_file_name(id))
        })
    }

    /// Every disk of the store, scanned in parallel for files of `id` (any layout).
    pub(crate) async fn scan_all_disks(&self, id: ChunkId) -> Vec<(String, DiskScan)> {
        let tasks: Vec<_> = self
            .inner
            .config
            .disks
            .iter()
            .map(|(name, dir)| {
                let dir = dir.clone();
                (
                    name.clone(),
                    tokio::task::spawn_blocking(move || files::scan_disk(&dir, id)),
                )
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (name, task) in tasks {
            out.push((name, task.await.unwrap_or(DiskScan::Unavailable)));
        }
        out
    }

    /// Reads and verifies one shard file. The header is read first so a corrupt length field
    /// never makes us allocate more than the file holds.
    fn load_shard(path: &Path) -> Result<LoadedShard, ShardProblem> {
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ShardProblem::Missing);
            }
            Err(e) => return Err(ShardProblem::Unreadable(e.to_string())),
        };
        let file_len = file
            .metadata()
            .map_err(|e| ShardProblem::Unreadable(e.to_string()))?
            .len();
        let mut head = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            return Err(ShardProblem::Corrupt(format!(
                "file is {file_len} bytes, shorter than a header"
            )));
        }
        file.read_exact(&mut head)
            .map_err(|e| ShardProblem::Unreadable(e.to_string()))?;
        let header = ShardHeader::parse(&head).map_err(|e| ShardProblem::Corrupt(e.to_string()))?;
        if file_len != HEADER_LEN as u64 + header.shard_len {
            return Err(ShardProblem::Corrupt(format!(
                "file is {file_len} bytes, header says {}",
                HEADER_LEN as u64 + header.shard_len
            )));
        }
        let mut body = vec![0u8; header.shard_len as usize];
        file.read_exact(&mut body)
            .map_err(|e| ShardProblem::Unreadable(e.to_string()))?;
        format::verify_body(&header, &body).map_err(|e| ShardProblem::Corrupt(e.to_string()))?;
        Ok(LoadedShard { header, body })
    }

    /// Loads shards `which` of `id` under `layout` in parallel, checking that each really is that
    /// shard of that chunk in that layout. A disk the store lacks reads as Missing.
    pub(crate) async fn load_shards(
        &self,
        layout: &Layout,
        id: ChunkId,
        which: &[usize],
    ) -> Vec<(usize, Result<LoadedShard, ShardProblem>)> {
        let tasks: Vec<_> = which
            .iter()
            .map(|&shard| {
                let path = self.shard_path(layout, id, shard);
                let layout = layout.clone();
                tokio::task::spawn_blocking(move || {
                    let loaded = Self::load_shard(&path.ok_or(ShardProblem::Missing)?)?;
                    check_identity(&loaded.header, &layout, id, shard)
                        .map_err(ShardProblem::Corrupt)?;
                    Ok(loaded)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(which.len());
        for (&shard, task) in which.iter().zip(tasks) {
            let result = task.await.unwrap_or_else(|e| {
                Err(ShardProblem::Unreadable(format!("reader task failed: {e}")))
            });
            if matches!(result, Err(ShardProblem::Unreadable(_))) {
                self.record_io_error(layout.disk_for_shard(id, shard));
            }
            out.push((shard, result));
        }
        out
    }

    /// Picks the write (nonce) with the most valid shards. Shards of other writes are reported
    /// stale.
    pub(crate) fn select_generation(
        &self,
        layout: &Layout,
        id: ChunkId,
        loaded: Vec<(usize, Result<LoadedShard, ShardProblem>)>,
    ) -> Selection {
        let n = layout.total_shards();
        let mut votes: BTreeMap<([u8; 12], u64), usize> = BTreeMap::new();
        for (_, r) in &loaded {
            if let Ok(s) = r {
                *votes
                    .entry((s.header.nonce, s.header.plaintext_len))
                    .or_default() += 1;
            }
        }
        let winner = votes
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(key, _)| *key);
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut header = None;
        let mut bad = Vec::new();
        let mut missing = 0;
        for (shard, r) in loaded {
            let disk = layout.disk_for_shard(id, shard).to_owned();
            match r {
                Ok(s) if Some((s.header.nonce, s.header.plaintext_len)) == winner => {
                    shards[shard] = Some(s.body);
                    header.get_or_insert(s.header);
                }
                Ok(_) => bad.push(BadShard {
                    shard,
                    disk,
                    problem: ShardProblem::Stale,
                }),
                Err(problem) => {
                    if problem == ShardProblem::Missing {
                        missing += 1;
                    }
                    bad.push(BadShard {
                        shard,
                        disk,
                        problem,
                    });
                }
            }
        }
        Selection {
            shards,
            header,
            bad,
            missing,
        }
    }

    /// Opens shard file `path`, reads and checks its header (identity, layout, file length), and
    /// leaves the file positioned at the body.
    fn open_shard(
        path: &Path,
        layout: &Layout,
        id: ChunkId,
        shard: usize,
    ) -> Option<(fs::File, ShardHeader)> {
        let mut file = fs::File::open(path).ok()?;
        let file_len = file.metadata().ok()?.len();
        let mut head = [0u8; HEADER_LEN];
        file.read_exact(&mut head).ok()?;
        let h = ShardHeader::parse(&head).ok()?;
        (file_len == HEADER_LEN as u64 + h.shard_len
            && check_identity(&h, layout, id, shard).is_ok())
        .then_some((file, h))
    }

    /// The healthy read: the k data shards, all valid and of one put, read in parallel straight
    /// into their places in one exactly-sized buffer (no per-shard buffers, no concatenation
    /// copy). `None` on any problem at all: the caller then takes the general path, which
    /// re-reads, reports the bad shards and decodes with parity.
    async fn read_data_shards(
        &self,
        layout: &Layout,
        id: ChunkId,
    ) -> Option<(BytesMut, ShardHeader)> {
        let k = usize::from(layout.data_shards);
        // Phase 1: headers, in parallel (one task per disk).
        let mut tasks = Vec::with_capacity(k);
        for shard in 0..k {
            let path = self.shard_path(layout, id, shard)?;
            let layout = layout.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                Self::open_shard(&path, &layout, id, shard)
            }));
        }
        let mut opened = Vec::with_capacity(k);
        for task in tasks {
            opened.push(task.await.ok()??);
        }
        let first = opened[0].1.clone();
        let same_put = |h: &ShardHeader| {
            (h.nonce, h.plaintext_len, h.shard_len)
                == (first.nonce, first.plaintext_len, first.shard_len)
        };
        if !opened.iter().all(|(_, h)| same_put(h)) {
            return None;
        }
        // Phase 2: bodies, in parallel, each into its own disjoint piece of the one buffer.
        let shard_len = usize::try_from(first.shard_len).ok()?;
        let mut rest = BytesMut::zeroed(k.checked_mul(shard_len)?);
        let tasks: Vec<_> = opened
            .into_iter()
            .enumerate()
            .map(|(shard, (mut file, header))| {
                let mut piece = if shard + 1 < k {
                    rest.split_to(shard_len)
                } else {
                    std::mem::take(&mut rest)
                };
                tokio::task::spawn_blocking(move || {
                    file.read_exact(&mut piece).ok()?;
                    format::verify_body(&header, &piece).ok()?;
                    Some(piece)
                })
            })
            .collect();
        let mut data: Option<BytesMut> = None;
        for task in tasks {
            let piece = task.await.ok()??;
            match &mut data {
                // Contiguous pieces of one allocation: unsplit is O(1), no copy.
                Some(data) => data.unsplit(piece),
                None => data = Some(piece),
            }
        }
        Some((data?, first))
    }

    /// Reads a chunk and also says which shards were bad. Reads the k data shards first and
    /// touches parity only when one of them is unusable.
    pub async fn get_chunk_with_report(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<(Bytes, ReadReport), NodeError> {
        layout.validate()?;
        let codec = self.codec(layout)?;
        if let Some((mut data, header)) = self.read_data_shards(layout, id).await {
            let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
            let plaintext = blocking(move || {
                let len = pipeline::open_data_shards(
                    &codec,
                    id,
                    &dek_copy,
                    header.nonce,
                    &mut data,
                    header.plaintext_len,
                )?;
                data.truncate(len);
                Ok::<_, NodeError>(data.freeze())
            })
            .await??;
            return Ok((plaintext, ReadReport::default()));
        }
        let (k, n) = (codec.data_shards(), codec.total_shards());
        let mut loaded = self
            .load_shards(layout, id, &(0..k).collect::<Vec<_>>())
            .await;
        let data_ok = loaded.iter().all(|(_, r)| r.is_ok()) && {
            let first = loaded
                .first()
                .and_then(|(_, r)| r.as_ref().ok())
                .map(|s| s.header.nonce);
            loaded
                .iter()
                .all(|(_, r)| r.as_ref().ok().map(|s| s.header.nonce) == first)
        };
        if !data_ok {
            loaded.extend(
                self.load_shards(layout, id, &(k..n).collect::<Vec<_>>())
                    .await,
            );
        }
        let Selection {
            shards,
            header,
            bad: bad_shards,
            missing,
        } = self.select_generation(layout, id, loaded);
        let report = ReadReport { bad_shards };
        if !report.bad_shards.is_empty() {
            tracing::warn!(chunk = %chunk_label(id), layout = layout.id, bad = ?report.bad_shards, "read found bad shards");
        }
        let available = shards.iter().filter(|s| s.is_some()).count();
        let Some(header) = header else {
            return Err(if missing == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: k,
                }
            });
        };
        if available < k {
            return Err(NodeError::Unrecoverable {
                available,
                needed: k,
            });
        }
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let plaintext = blocking(move || {
            pipeline::open_chunk(
                &codec,
                id,
                &dek_copy,
                header.nonce,
                shards,
                header.plaintext_len,
            )
        })
        .await??;
        if !report.bad_shards.is_empty() && self.inner.config.heal_on_read {
            self.spawn_heal(layout.clone(), id);
        }
        Ok((Bytes::from(plaintext), report))
    }

    fn spawn_heal(&self, layout: Layout, id: ChunkId) {
        // A clone shares the chunk locks, so this heal is serialised with deletes of the chunk.
        let store = self.clone();
        tokio::spawn(async move {
            match store.heal(&layout, id).await {
                Ok(report) => {
                    tracing::info!(chunk = %chunk_label(id), ?report, "background heal done")
                }
                Err(e) => {
                    tracing::warn!(chunk = %chunk_label(id), error = %e, "background heal failed")
                }
            }
        });
    }

    fn take_buffer(&self) -> Vec<u8> {
        self.inner
            .buffers
            .lock()
            .expect("buffer pool lock")
            .pop()
            .unwrap_or_default()
    }

    fn return_buffer(&self, buffer: Vec<u8>) {
        let mut pool = self.inner.buffers.lock().expect("buffer pool lock");
        // Keep a few: enough for concurrent puts, not so many that idle memory grows.
        if pool.len() < 8 {
            pool.push(buffer);
        }
    }

    /// Before a put (chunk lock held): every disk it writes to is below the high-water mark, and
    /// no disk of the store holds any file of `id` (a shard of any layout, or a tombstone). One
    /// blocking task per disk, in parallel.
    async fn check_put(&self, targets: &[PathBuf], id: ChunkId) -> Result<(), NodeError> {
        let high_water = self.inner.config.high_water;
        let tasks: Vec<_> = self
            .inner
            .config
            .disks
            .iter()
            .map(|(name, dir)| {
                let (name, dir) = (name.clone(), dir.clone());
                let writes_here = targets.contains(&dir);
                tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
                    if writes_here {
                        let used = files::disk_usage_fraction(&dir)?;
                        if used > high_water {
                            tracing::warn!(disk = %name, used, high_water, "disk above high-water mark: refusing writes");
                            return Err(NodeError::InsufficientStorage);
                        }
                    }
                    match files::scan_disk(&dir, id) {
                        DiskScan::Found { shards, tombstone }
                            if !shards.is_empty() || tombstone.is_some() =>
                        {
                            Err(NodeError::AlreadyExists)
                        }
                        // A disk that is gone cannot be checked; if the put writes to it, the
                        // write fails.
                        _ => Ok(()),
                    }
                })
            })
            .collect();
        let mut first_error = None;
        for task in tasks {
            if let Err(e) = task
                .await
                .map_err(|e| NodeError::Io(std::io::Error::other(e)))
                .and_then(|r| r)
            {
                first_error.get_or_insert(e);
            }
        }
        if matches!(first_error, Some(NodeError::AlreadyExists)) {
            tracing::warn!(chunk = %chunk_label(id), "put of an existing chunk id refused");
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn put_sealed(
        &self,
        layout: &Layout,
        codec: &Codec,
        targets: &[PathBuf],
        id: ChunkId,
        sealed: Arc<SealedStripe>,
    ) -> Result<(), NodeError> {
        let n = codec.total_shards();
        let tag = hex::encode(sealed.nonce);
        // Phase 1: every shard to a temporary file, fsync'd. A failure here publishes nothing.
        let mut tasks = Vec::with_capacity(n);
        for (shard, disk) in targets.iter().enumerate() {
            let tmp = disk
                .join(TMP_DIR)
                .join(format!("{}.{tag}", files::shard_file_name(id, shard)));
            let header = sealed.header(codec, id, shard, layout.id).encode();
            let sealed = sealed.clone();
            let path = tmp.clone();
            tasks.push((
                tmp,
                tokio::task::spawn_blocking(move || {
                    files::write_temp(&path, &header, sealed.shard(shard))
                }),
            ));
        }
        let mut first_error: Option<std::io::Error> = None;
        let mut temps = Vec::with_capacity(n);
        for (shard, (tmp, task)) in tasks.into_iter().enumerate() {
            match task.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(()) => temps.push(tmp),
                Err(e) => {
                    self.record_io_error_at(&targets[shard]);
                    tracing::error!(path = %tmp.display(), error = %e, "shard write failed; put refused");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            blocking(move || {
                for tmp in temps {
                    let _ = fs::remove_file(tmp);
                }
            })
            .await?;
            return Err(NodeError::Io(e));
        }
        // Phase 2: publish each under its final name (create-only) and fsync the directories.
        // A failure or crash here leaves a partial chunk, which the caller's GC deletes.
        let tasks: Vec<_> = temps
            .into_iter()
            .enumerate()
            .map(|(shard, tmp)| {
                let disk = targets[shard].clone();
                let path = disk
                    .join(files::fanout_dir(id))
                    .join(files::shard_file_name(id, shard));
                tokio::task::spawn_blocking(move || files::publish_new(&disk, &tmp, &path))
            })
            .collect();
        let mut first_error = None;
        for (shard, task) in tasks.into_iter().enumerate() {
            if let Err(e) = task.await.map_err(std::io::Error::other).and_then(|r| r) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    self.record_io_error_at(&targets[shard]);
                }
                tracing::error!(chunk = %chunk_label(id), error = %e, "shard publish failed; chunk left partial");
                first_error.get_or_insert(if e.kind() == std::io::ErrorKind::AlreadyExists {
                    NodeError::AlreadyExists
                } else {
                    NodeError::Io(e)
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl ChunkService for LocalChunkStore {
    async fn put_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError> {
        layout.validate()?;
        if plaintext.len() > self.inner.config.max_chunk_len {
            return Err(NodeError::Invalid(format!(
                "chunk of {} bytes exceeds {}",
                plaintext.len(),
                self.inner.config.max_chunk_len
            )));
        }
        let codec = self.codec(layout)?;
        // A 200 means full redundancy: every disk of the placement must be one of ours.
        let targets = (0..codec.total_shards())
            .map(|shard| {
                let name = layout.disk_for_shard(id, shard);
                self.disk_dir(name)
                    .map(Path::to_path_buf)
                    .ok_or_else(|| unknown_disk(name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let _guard = self.inner.locks.lock(id).await;
        // Encryption (CPU) and the checks (I/O) run at the same time.
        let seal_codec = codec.clone();
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let buffer = self.take_buffer();
        let seal = tokio::task::spawn_blocking(move || {
            pipeline::seal_chunk(
                &seal_codec,
                id,
                &dek_copy,
                pipeline::new_nonce(),
                &plaintext,
                buffer,
            )
        });
        let checked = self.check_put(&targets, id).await;
        let sealed = Arc::new(
            seal.await
                .map_err(|e| NodeError::Io(std::io::Error::other(e)))?,
        );
        let result = match checked {
            Ok(()) => {
                self.put_sealed(layout, &codec, &targets, id, sealed.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Ok(sealed) = Arc::try_unwrap(sealed) {
            self.return_buffer(sealed.into_buffer());
        }
        result
    }

    async fn get_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<Bytes, NodeError> {
        self.get_chunk_with_report(layout, id, dek)
            .await
            .map(|(bytes, _)| bytes)
    }

    async fn delete_chunk(&self, layout: &Layout, id: ChunkId) -> Result<(), NodeError> {
        layout.validate()?;
        let _guard = self.inner.locks.lock(id).await;
        self.delete_locked(layout.id, Some(layout), id)
            .await
            .map(|_| ())
    }

    async fn rebuild_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
    ) -> Result<crate::RebuildReport, NodeError> {
        let heal = self.heal(layout, id).await?;
        Ok(crate::RebuildReport {
            rebuilt: heal.rebuilt,
            failed: heal.failed,
            ..Default::default()
        })
    }

    /// Reads and verifies every shard (header and body checksum).
    async fn stat_chunk(&self, layout: &Layout, id: ChunkId) -> Result<ChunkStat, NodeError> {
        layout.validate()?;
        let n = layout.total_shards();
        let loaded = self
            .load_shards(layout, id, &(0..n).collect::<Vec<_>>())
            .await;
        let Selection {
            shards,
            header,
            missing,
            ..
        } = self.select_generation(layout, id, loaded);
        let Some(header) = header else {
            return Err(if missing == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: layout.data_shards.into(),
                }
            });
        };
        Ok(ChunkStat {
            len: header.plaintext_len,
            healthy_shards: shards.iter().filter(|s| s.is_some()).count(),
            total_shards: n,
        })
    }
}
