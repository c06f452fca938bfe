//! [`LocalChunkStore`]: shard files on several local disk directories.
//!
//! Layout of one disk: `<disk>/shards/<aa>/<bb>/<blob hex>.<chunk index>.<shard index>` where `aa`
//! and `bb` are the first two bytes of the blob id in hex (fan-out keeps directories small), and
//! `<disk>/tmp/` holds files being written. Object keys never appear in paths: names are built
//! only from the random blob id and integers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use strata_erasure::{Codec, disk_for_shard};

use crate::format::{self, HEADER_LEN, ShardHeader};
use crate::pipeline::{self, SealedStripe};
use crate::{ChunkId, ChunkService, ChunkStat, DataKey, NodeError};

const SHARDS_DIR: &str = "shards";
const TMP_DIR: &str = "tmp";

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// One directory per disk. Shards of a chunk go to distinct disks, so at least k + m.
    pub disks: Vec<PathBuf>,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Writes are refused with `InsufficientStorage` when any disk's filesystem is fuller than
    /// this fraction (0.0..=1.0).
    pub high_water: f64,
    /// Largest chunk accepted by put (also bounds HTTP request bodies).
    pub max_chunk_len: usize,
    /// Rebuild bad shards in the background when a read finds them.
    pub heal_on_read: bool,
}

impl NodeConfig {
    /// Defaults: RS(4, 2), high water 0.95, chunks up to 64 MiB, heal on read.
    pub fn new(disks: Vec<PathBuf>) -> Self {
        Self {
            disks,
            data_shards: 4,
            parity_shards: 2,
            high_water: 0.95,
            max_chunk_len: 64 << 20,
            heal_on_read: true,
        }
    }

    /// `count` disks named `disk0`, `disk1`, ... under `root`.
    pub fn under(root: &Path, count: usize) -> Self {
        Self::new((0..count).map(|i| root.join(format!("disk{i}"))).collect())
    }
}

/// Why a shard could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ShardProblem {
    /// No file (or the disk directory is gone).
    Missing,
    /// The file exists but could not be read.
    Unreadable(String),
    /// Header or body failed verification (bitrot, truncation, wrong identity).
    Corrupt(String),
    /// A valid shard left over from an earlier put of the same id.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadShard {
    pub shard: usize,
    pub disk: PathBuf,
    pub problem: ShardProblem,
}

/// What a read found besides the data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    pub bad_shards: Vec<BadShard>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealReport {
    /// Shards that were missing or bad and are now rewritten and durable.
    pub rebuilt: Vec<usize>,
    /// Shards that could not be rewritten (e.g. their disk is gone), with the error.
    pub failed: Vec<(usize, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardFault {
    /// `<blob hex>/<chunk index>`
    pub chunk: String,
    pub shard: usize,
    pub disk: PathBuf,
    pub problem: ShardProblem,
}

/// Result of a scrub; serialisable for `strata admin scrub`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    pub chunks_checked: u64,
    pub shards_checked: u64,
    pub shards_healthy: u64,
    pub bytes_verified: u64,
    pub faults: Vec<ShardFault>,
    /// Chunks with fewer than k usable shards.
    pub unrecoverable: Vec<String>,
    pub shards_repaired: u64,
    pub repair_failures: Vec<ShardFault>,
    /// Files under shards/ whose names are not shard names (left alone).
    pub unknown_files: Vec<PathBuf>,
    pub unavailable_disks: Vec<PathBuf>,
}

/// The shards of one chunk after choosing a generation.
struct Selection {
    /// Usable shard bodies by index (None where missing/bad/stale).
    shards: Vec<Option<Vec<u8>>>,
    /// Header of a usable shard, None if there is none.
    header: Option<ShardHeader>,
    bad: Vec<BadShard>,
    /// How many shard files did not exist at all.
    missing: usize,
}

/// One shard as loaded from disk, verified.
struct LoadedShard {
    header: ShardHeader,
    body: Vec<u8>,
}

pub struct LocalChunkStore {
    config: NodeConfig,
    codec: Arc<Codec>,
    /// Stripe buffers handed back by finished puts, reused by the next (bounded).
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for LocalChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChunkStore")
            .field("config", &self.config)
            .finish()
    }
}

fn chunk_key(id: ChunkId) -> [u8; 20] {
    pipeline::chunk_aad(id)
}

fn chunk_label(id: ChunkId) -> String {
    format!("{}/{}", hex::encode(id.blob), id.index)
}

fn shard_file_name(id: ChunkId, shard: usize) -> String {
    format!("{}.{}.{}", hex::encode(id.blob), id.index, shard)
}

/// Parses `<32 hex>.<index>.<shard>`; anything else is not ours.
fn parse_shard_file_name(name: &str) -> Option<(ChunkId, usize)> {
    let mut parts = name.split('.');
    let (blob_hex, index, shard) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || blob_hex.len() != 32 {
        return None;
    }
    let blob: [u8; 16] = hex::decode(blob_hex).ok()?.try_into().ok()?;
    // Reject non-canonical numbers so one shard never has two names.
    let index_n: u32 = index.parse().ok()?;
    let shard_n: usize = shard.parse().ok()?;
    if index_n.to_string() != index || shard_n.to_string() != shard {
        return None;
    }
    Some((
        ChunkId {
            blob,
            index: index_n,
        },
        shard_n,
    ))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents up to, not including, `root`), fsyncing each parent whose
/// entries changed so the new directories survive a crash. Never creates `root` itself: a
/// missing disk must stay missing rather than be silently recreated on another filesystem.
fn ensure_dir_under(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir == root || !dir.starts_with(root) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is missing", dir.display()),
        ));
    }
    let parent = dir.parent().expect("below root");
    ensure_dir_under(root, parent)?;
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Filesystem usage of `path` as a fraction (0.0 empty .. 1.0 full), as seen by unprivileged
/// writers (blocks reserved for root count as used).
pub fn disk_usage_fraction(path: &Path) -> std::io::Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let total = stat.f_blocks as f64;
    if total == 0.0 {
        return Ok(1.0);
    }
    Ok(1.0 - stat.f_bavail as f64 / total)
}

impl LocalChunkStore {
    /// Opens (creating on first use) the disk directories, and removes temporaries left by a
    /// crash: a file in `tmp/` was never renamed into place, so no acknowledged put needs it.
    pub fn open(config: NodeConfig) -> Result<Self, NodeError> {
        let codec = Codec::new(config.data_shards, config.parity_shards)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        if config.disks.len() < codec.total_shards() {
            return Err(NodeError::Invalid(format!(
                "{} disks configured, RS({}, {}) needs at least {}",
                config.disks.len(),
                config.data_shards,
                config.parity_shards,
                codec.total_shards()
            )));
        }
        if !(0.0..=1.0).contains(&config.high_water) {
            return Err(NodeError::Invalid(format!(
                "high_water {} not in 0..=1",
                config.high_water
            )));
        }
        for disk in &config.disks {
            fs::create_dir_all(disk.join(SHARDS_DIR))?;
            let tmp = disk.join(TMP_DIR);
            fs::create_dir_all(&tmp)?;
            let mut removed = 0usize;
            for entry in fs::read_dir(&tmp)? {
                let entry = entry?;
                fs::remove_file(entry.path())?;
                removed += 1;
            }
            if removed > 0 {
                fsync_dir(&tmp)?;
                tracing::info!(disk = %disk.display(), removed, "removed orphan temporary shard files");
            }
            if let Some(parent) = disk.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
            fsync_dir(disk)?;
        }
        Ok(Self {
            config,
            codec: Arc::new(codec),
            buffers: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Which disk directory holds shard `shard` of `id`.
    pub fn shard_disk(&self, id: ChunkId, shard: usize) -> &Path {
        &self.config.disks[disk_for_shard(&chunk_key(id), shard, self.config.disks.len())]
    }

    /// Full path of shard `shard` of `id` (whether or not it exists).
    pub fn shard_path(&self, id: ChunkId, shard: usize) -> PathBuf {
        let blob_hex = hex::encode(id.blob);
        self.shard_disk(id, shard)
            .join(SHARDS_DIR)
            .join(&blob_hex[0..2])
            .join(&blob_hex[2..4])
            .join(shard_file_name(id, shard))
    }

    fn check_capacity(&self) -> Result<(), NodeError> {
        for disk in &self.config.disks {
            let used = disk_usage_fraction(disk)?;
            if used > self.config.high_water {
                tracing::warn!(disk = %disk.display(), used, high_water = self.config.high_water, "disk above high-water mark: refusing writes");
                return Err(NodeError::InsufficientStorage);
            }
        }
        Ok(())
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

    /// Loads shards `which` of `id` in parallel, checking that each really is that shard of that
    /// chunk with this store's geometry.
    async fn load_shards(
        &self,
        id: ChunkId,
        which: &[usize],
    ) -> Vec<(usize, Result<LoadedShard, ShardProblem>)> {
        let (k, m) = (self.codec.data_shards(), self.codec.parity_shards());
        let tasks: Vec<_> = which
            .iter()
            .map(|&shard| {
                let path = self.shard_path(id, shard);
                tokio::task::spawn_blocking(move || {
                    let loaded = Self::load_shard(&path)?;
                    let h = &loaded.header;
                    if h.chunk != id || usize::from(h.shard_index) != shard {
                        return Err(ShardProblem::Corrupt("header names another shard".into()));
                    }
                    if usize::from(h.data_shards) != k || usize::from(h.parity_shards) != m {
                        return Err(ShardProblem::Corrupt(format!(
                            "geometry RS({}, {})",
                            h.data_shards, h.parity_shards
                        )));
                    }
                    Ok(loaded)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(which.len());
        for (&shard, task) in which.iter().zip(tasks) {
            let result = task.await.unwrap_or_else(|e| {
                Err(ShardProblem::Unreadable(format!("reader task failed: {e}")))
            });
            out.push((shard, result));
        }
        out
    }

    /// Picks the put generation (write id) with the most valid shards. Shards of other
    /// generations are reported stale. Returns the chosen shards (None where unusable), the
    /// plaintext length, and the bad-shard list.
    fn select_generation(
        &self,
        id: ChunkId,
        loaded: Vec<(usize, Result<LoadedShard, ShardProblem>)>,
    ) -> Selection {
        let n = self.codec.total_shards();
        let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for (_, r) in &loaded {
            if let Ok(s) = r {
                *votes
                    .entry((s.header.write_id, s.header.plaintext_len))
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
            let disk = self.shard_disk(id, shard).to_path_buf();
            match r {
                Ok(s) if Some((s.header.write_id, s.header.plaintext_len)) == winner => {
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

    /// Opens shard file `path`, reads and checks its header (identity, geometry, file length),
    /// and leaves the file positioned at the body.
    fn open_shard(
        path: &Path,
        id: ChunkId,
        shard: usize,
        k: usize,
        m: usize,
    ) -> Option<(fs::File, ShardHeader)> {
        let mut file = fs::File::open(path).ok()?;
        let file_len = file.metadata().ok()?.len();
        let mut head = [0u8; HEADER_LEN];
        file.read_exact(&mut head).ok()?;
        let h = ShardHeader::parse(&head).ok()?;
        (file_len == HEADER_LEN as u64 + h.shard_len
            && h.chunk == id
            && usize::from(h.shard_index) == shard
            && usize::from(h.data_shards) == k
            && usize::from(h.parity_shards) == m)
            .then_some((file, h))
    }

    /// The healthy read: the k data shards, all valid and of one put, read in parallel straight
    /// into their places in one exactly-sized buffer (no per-shard buffers, no concatenation
    /// copy). `None` on any problem at all: the caller then takes the general path, which
    /// re-reads, reports the bad shards and decodes with parity.
    async fn read_data_shards(&self, id: ChunkId) -> Option<(BytesMut, ShardHeader)> {
        let (k, m) = (self.codec.data_shards(), self.codec.parity_shards());
        // Phase 1: headers, in parallel (one task per disk).
        let tasks: Vec<_> = (0..k)
            .map(|shard| {
                let path = self.shard_path(id, shard);
                tokio::task::spawn_blocking(move || Self::open_shard(&path, id, shard, k, m))
            })
            .collect();
        let mut opened = Vec::with_capacity(k);
        for task in tasks {
            opened.push(task.await.ok()??);
        }
        let first = opened[0].1.clone();
        let same_put = |h: &ShardHeader| {
            (h.write_id, h.plaintext_len, h.shard_len)
                == (first.write_id, first.plaintext_len, first.shard_len)
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
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<(Bytes, ReadReport), NodeError> {
        if let Some((mut data, header)) = self.read_data_shards(id).await {
            let codec = self.codec.clone();
            let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
            let plaintext = tokio::task::spawn_blocking(move || {
                let len = pipeline::open_data_shards(
                    &codec,
                    id,
                    &dek_copy,
                    &mut data,
                    header.plaintext_len,
                )?;
                data.truncate(len);
                Ok::<_, NodeError>(data.freeze())
            })
            .await
            .map_err(|e| NodeError::Io(std::io::Error::other(e)))??;
            return Ok((plaintext, ReadReport::default()));
        }
        let (k, n) = (self.codec.data_shards(), self.codec.total_shards());
        let mut loaded = self.load_shards(id, &(0..k).collect::<Vec<_>>()).await;
        let data_ok = loaded.iter().all(|(_, r)| r.is_ok()) && {
            let first = loaded
                .first()
                .and_then(|(_, r)| r.as_ref().ok())
                .map(|s| s.header.write_id);
            loaded
                .iter()
                .all(|(_, r)| r.as_ref().ok().map(|s| s.header.write_id) == first)
        };
        if !data_ok {
            loaded.extend(self.load_shards(id, &(k..n).collect::<Vec<_>>()).await);
        }
        let Selection {
            shards,
            header,
            bad: bad_shards,
            missing,
        } = self.select_generation(id, loaded);
        let report = ReadReport { bad_shards };
        if !report.bad_shards.is_empty() {
            tracing::warn!(chunk = %chunk_label(id), bad = ?report.bad_shards, "read found bad shards");
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
        let codec = self.codec.clone();
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let plaintext = tokio::task::spawn_blocking(move || {
            pipeline::open_chunk(&codec, id, &dek_copy, shards, header.plaintext_len)
        })
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e)))??;
        if !report.bad_shards.is_empty() && self.config.heal_on_read {
            self.spawn_heal(id);
        }
        Ok((Bytes::from(plaintext), report))
    }

    fn spawn_heal(&self, id: ChunkId) {
        // The heal needs its own handle on the store's configuration; it shares no state with
        // the read except the files, and heal is idempotent.
        let store = LocalChunkStore {
            config: self.config.clone(),
            codec: self.codec.clone(),
            buffers: Mutex::new(Vec::new()),
        };
        tokio::spawn(async move {
            match store.heal(id).await {
                Ok(report) => {
                    tracing::info!(chunk = %chunk_label(id), ?report, "background heal done")
                }
                Err(e) => {
                    tracing::warn!(chunk = %chunk_label(id), error = %e, "background heal failed")
                }
            }
        });
    }

    /// Rebuilds missing, corrupt or stale shards of `id` from the survivors and writes them
    /// durably. Needs no key: it works on ciphertext, and the survivors' checksums vouch for it.
    pub async fn heal(&self, id: ChunkId) -> Result<HealReport, NodeError> {
        let n = self.codec.total_shards();
        let loaded = self.load_shards(id, &(0..n).collect::<Vec<_>>()).await;
        let Selection {
            mut shards,
            header,
            bad,
            missing,
        } = self.select_generation(id, loaded);
        let Some(header) = header else {
            return Err(if missing == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: self.codec.data_shards(),
                }
            });
        };
        if bad.is_empty() {
            return Ok(HealReport::default());
        }
        let codec = self.codec.clone();
        let ciphertext_len = header.ciphertext_len as usize;
        shards = tokio::task::spawn_blocking(move || {
            codec
                .reconstruct(&mut shards, ciphertext_len)
                .map(|()| shards)
        })
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e)))?
        .map_err(|e| match e {
            strata_erasure::ErasureError::TooFewShards { available, needed } => {
                NodeError::Unrecoverable { available, needed }
            }
            other => NodeError::Invalid(other.to_string()),
        })?;
        let mut report = HealReport::default();
        let mut writes = Vec::new();
        for b in &bad {
            let body = shards[b.shard].take().expect("reconstructed");
            let shard_header = ShardHeader {
                shard_index: b.shard as u8,
                body_crc32c: format::crc32c(&body),
                ..header.clone()
            };
            let disk = self.shard_disk(id, b.shard).to_path_buf();
            let path = self.shard_path(id, b.shard);
            writes.push((
                b.shard,
                tokio::task::spawn_blocking(move || {
                    write_shard_durably(&disk, &path, &shard_header.encode(), &body)
                }),
            ));
        }
        for (shard, task) in writes {
            match task.await {
                Ok(Ok(())) => report.rebuilt.push(shard),
                Ok(Err(e)) => report.failed.push((shard, e.to_string())),
                Err(e) => report.failed.push((shard, e.to_string())),
            }
        }
        Ok(report)
    }

    /// Walks every shard file on every disk, verifies it, and reports; with `repair`, heals every
    /// chunk that has a bad or missing shard. Works one fan-out prefix at a time so memory stays
    /// bounded by the largest prefix, not the whole store.
    pub async fn scrub(&self, repair: bool) -> Result<ScrubReport, NodeError> {
        let mut report = ScrubReport::default();
        let mut prefixes: BTreeSet<String> = BTreeSet::new();
        for disk in &self.config.disks {
            match fs::read_dir(disk.join(SHARDS_DIR)) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        if let Some(name) = entry.file_name().to_str() {
                            prefixes.insert(name.to_owned());
                        }
                    }
                }
                Err(_) => report.unavailable_disks.push(disk.clone()),
            }
        }
        for prefix in prefixes {
            let mut chunks: BTreeSet<ChunkId> = BTreeSet::new();
            for disk in &self.config.disks {
                let top = disk.join(SHARDS_DIR).join(&prefix);
                let Ok(subdirs) = fs::read_dir(&top) else {
                    continue;
                };
                for sub in subdirs.flatten() {
                    let Ok(files) = fs::read_dir(sub.path()) else {
                        report.unknown_files.push(sub.path());
                        continue;
                    };
                    for file in files.flatten() {
                        let name = file.file_name();
                        match name.to_str().and_then(parse_shard_file_name) {
                            Some((id, shard))
                                if shard < self.codec.total_shards()
                                    && self.shard_path(id, shard) == file.path() =>
                            {
                                chunks.insert(id);
                            }
                            _ => report.unknown_files.push(file.path()),
                        }
                    }
                }
            }
            for id in chunks {
                self.scrub_chunk(id, repair, &mut report).await;
            }
        }
        tracing::info!(
            chunks = report.chunks_checked,
            faults = report.faults.len(),
            repaired = report.shards_repaired,
            "scrub finished"
        );
        Ok(report)
    }

    async fn scrub_chunk(&self, id: ChunkId, repair: bool, report: &mut ScrubReport) {
        let n = self.codec.total_shards();
        let loaded = self.load_shards(id, &(0..n).collect::<Vec<_>>()).await;
        report.chunks_checked += 1;
        report.shards_checked += n as u64;
        report.bytes_verified += loaded
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|s| s.body.len() as u64)
            .sum::<u64>();
        let Selection { shards, bad, .. } = self.select_generation(id, loaded);
        let healthy = shards.iter().filter(|s| s.is_some()).count();
        report.shards_healthy += healthy as u64;
        for b in &bad {
            report.faults.push(ShardFault {
                chunk: chunk_label(id),
                shard: b.shard,
                disk: b.disk.clone(),
                problem: b.problem.clone(),
            });
        }
        if healthy < self.codec.data_shards() {
            report.unrecoverable.push(chunk_label(id));
            return;
        }
        if repair && !bad.is_empty() {
            match self.heal(id).await {
                Ok(heal) => {
                    report.shards_repaired += heal.rebuilt.len() as u64;
                    for (shard, error) in heal.failed {
                        report.repair_failures.push(ShardFault {
                            chunk: chunk_label(id),
                            shard,
                            disk: self.shard_disk(id, shard).to_path_buf(),
                            problem: ShardProblem::Unreadable(error),
                        });
                    }
                }
                Err(e) => report
                    .unrecoverable
                    .push(format!("{}: {e}", chunk_label(id))),
            }
        }
    }

    fn take_buffer(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .expect("buffer pool lock")
            .pop()
            .unwrap_or_default()
    }

    fn return_buffer(&self, buffer: Vec<u8>) {
        let mut pool = self.buffers.lock().expect("buffer pool lock");
        // Keep a few: enough for concurrent puts, not so many that idle memory grows.
        if pool.len() < 8 {
            pool.push(buffer);
        }
    }

    async fn put_sealed(&self, id: ChunkId, sealed: Arc<SealedStripe>) -> Result<(), NodeError> {
        let n = self.codec.total_shards();
        let write_id: u64 = rand::random();
        // Phase 1: every shard to a temporary file, fsync'd. A failure here leaves any earlier
        // version of the chunk untouched.
        let mut tasks = Vec::with_capacity(n);
        for shard in 0..n {
            let disk = self.shard_disk(id, shard).to_path_buf();
            let tmp = disk
                .join(TMP_DIR)
                .join(format!("{}.{write_id:016x}", shard_file_name(id, shard)));
            let header = sealed.header(&self.codec, id, shard, write_id).encode();
            let sealed = sealed.clone();
            tasks.push((
                tmp.clone(),
                tokio::task::spawn_blocking(move || write_temp(&tmp, &header, sealed.shard(shard))),
            ));
        }
        let mut first_error: Option<std::io::Error> = None;
        let mut temps = Vec::with_capacity(n);
        for (tmp, task) in tasks {
            match task.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(()) => temps.push(tmp),
                Err(e) => {
                    tracing::error!(path = %tmp.display(), error = %e, "shard write failed; put refused");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            for tmp in temps {
                let _ = fs::remove_file(tmp);
            }
            return Err(NodeError::Io(e));
        }
        // Phase 2: rename into place and fsync the directories.
        let mut tasks = Vec::with_capacity(n);
        for (shard, tmp) in temps.into_iter().enumerate() {
            let disk = self.shard_disk(id, shard).to_path_buf();
            let path = self.shard_path(id, shard);
            tasks.push(tokio::task::spawn_blocking(move || {
                publish(&disk, &tmp, &path)
            }));
        }
        for task in tasks {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

fn write_temp(tmp: &Path, header: &[u8], body: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(header)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Renames a durable temporary into its final place and makes the rename durable.
fn publish(disk: &Path, tmp: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().expect("shard path has a parent");
    ensure_dir_under(disk, dir)?;
    fs::rename(tmp, path)?;
    fsync_dir(dir)
}

/// Temp file + fsync + rename + directory fsync, for heal.
fn write_shard_durably(
    disk: &Path,
    path: &Path,
    header: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = disk
        .join(TMP_DIR)
        .join(format!("{name}.heal{:016x}", rand::random::<u64>()));
    write_temp(&tmp, header, body)?;
    publish(disk, &tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[async_trait]
impl ChunkService for LocalChunkStore {
    async fn put_chunk(
        &self,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError> {
        if plaintext.len() > self.config.max_chunk_len {
            return Err(NodeError::Invalid(format!(
                "chunk of {} bytes exceeds {}",
                plaintext.len(),
                self.config.max_chunk_len
            )));
        }
        self.check_capacity()?;
        let codec = self.codec.clone();
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let buffer = self.take_buffer();
        let sealed = tokio::task::spawn_blocking(move || {
            pipeline::seal_chunk(&codec, id, &dek_copy, &plaintext, buffer)
        })
        .await
        .map_err(|e| NodeError::Io(std::io::Error::other(e)))?;
        let sealed = Arc::new(sealed);
        let result = self.put_sealed(id, sealed.clone()).await;
        if let Ok(sealed) = Arc::try_unwrap(sealed) {
            self.return_buffer(sealed.into_buffer());
        }
        result
    }

    async fn get_chunk(&self, id: ChunkId, dek: &DataKey) -> Result<Bytes, NodeError> {
        self.get_chunk_with_report(id, dek)
            .await
            .map(|(bytes, _)| bytes)
    }

    async fn delete_chunk(&self, id: ChunkId) -> Result<(), NodeError> {
        for shard in 0..self.codec.total_shards() {
            let path = self.shard_path(id, shard);
            match fs::remove_file(&path) {
                Ok(()) => fsync_dir(path.parent().expect("parent"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads and verifies every shard (header and body checksum).
    async fn stat_chunk(&self, id: ChunkId) -> Result<ChunkStat, NodeError> {
        let n = self.codec.total_shards();
        let loaded = self.load_shards(id, &(0..n).collect::<Vec<_>>()).await;
        let Selection {
            shards,
            header,
            missing,
            ..
        } = self.select_generation(id, loaded);
        let Some(header) = header else {
            return Err(if missing == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: self.codec.data_shards(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_file_names_round_trip_and_junk_is_rejected() {
        let id = ChunkId {
            blob: [0xab; 16],
            index: 42,
        };
        assert_eq!(
            parse_shard_file_name(&shard_file_name(id, 5)),
            Some((id, 5))
        );
        for junk in [
            "",
            "x",
            "abab.1.2",
            &format!("{}.01.2", hex::encode(id.blob)),
            &format!("{}.1.2.tmp", hex::encode(id.blob)),
            &format!("{}.1.+2", hex::encode(id.blob)),
        ] {
            assert_eq!(parse_shard_file_name(junk), None, "{junk}");
        }
    }
}
