//! File-level building blocks of the store: names and paths, durable writes, directory fsyncs,
//! capacity. Everything here is *blocking* and runs only inside `spawn_blocking` (or at open).
//!
//! Layout of one disk (docs/on-disk-format.md):
//! `<disk>/shards/<aa>/<bb>/<blob hex>.<chunk index>.<shard index>` where `aa` and `bb` are the
//! first two bytes of the blob id in hex (fan-out keeps directories small), `<disk>/tmp/` holds
//! files being written and `<disk>/tombstones/<blob hex>.<chunk index>` marks a deletion in
//! progress. Object keys never appear in paths: names are built only from the random blob id and
//! integers, and the fan-out directory depends only on the blob, never on the layout, so every
//! file of a chunk on a disk is found by listing one directory.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ChunkId;
use crate::format::{HEADER_LEN, ShardHeader, TOMBSTONE_LEN, Tombstone};

pub(crate) const SHARDS_DIR: &str = "shards";
pub(crate) const TMP_DIR: &str = "tmp";
pub(crate) const TOMBSTONES_DIR: &str = "tombstones";

pub(crate) fn shard_file_name(id: ChunkId, shard: usize) -> String {
    format!("{}.{}.{}", hex::encode(id.blob), id.index, shard)
}

/// `shards/<aa>/<bb>`, relative to the disk.
pub(crate) fn fanout_dir(id: ChunkId) -> PathBuf {
    let blob_hex = hex::encode(id.blob);
    Path::new(SHARDS_DIR)
        .join(&blob_hex[0..2])
        .join(&blob_hex[2..4])
}

pub(crate) fn tombstone_file_name(id: ChunkId) -> String {
    format!("{}.{}", hex::encode(id.blob), id.index)
}

/// Canonical decimal only, so one file never has two names.
fn canonical_number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    let n: T = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

fn parse_chunk_name<'a>(parts: &mut impl Iterator<Item = &'a str>) -> Option<ChunkId> {
    let (blob_hex, index) = (parts.next()?, parts.next()?);
    if blob_hex.len() != 32 {
        return None;
    }
    Some(ChunkId {
        blob: hex::decode(blob_hex).ok()?.try_into().ok()?,
        index: canonical_number(index)?,
    })
}

/// Parses `<32 hex>.<index>.<shard>`; anything else is not ours.
pub(crate) fn parse_shard_file_name(name: &str) -> Option<(ChunkId, usize)> {
    let mut parts = name.split('.');
    let id = parse_chunk_name(&mut parts)?;
    let shard = canonical_number(parts.next()?)?;
    parts.next().is_none().then_some((id, shard))
}

/// Parses `<32 hex>.<index>` (a tombstone's name).
pub(crate) fn parse_tombstone_file_name(name: &str) -> Option<ChunkId> {
    let mut parts = name.split('.');
    let id = parse_chunk_name(&mut parts)?;
    parts.next().is_none().then_some(id)
}

pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Directories this process knows to be durable: it created them and fsynced their parent, or
/// fsynced their parent the first time it used them. Bounded: when full it is forgotten, which
/// only costs some repeated parent fsyncs.
static DURABLE_DIRS: std::sync::LazyLock<Mutex<HashSet<PathBuf>>> =
    std::sync::LazyLock::new(Mutex::default);
const DURABLE_DIRS_MAX: usize = 1 << 20;

fn known_durable(dir: &Path) -> bool {
    DURABLE_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(dir)
}

fn mark_durable(dir: &Path) {
    let mut set = DURABLE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if set.len() >= DURABLE_DIRS_MAX {
        set.clear();
    }
    set.insert(dir.to_path_buf());
}

/// Creates `dir` (and missing parents up to, not including, `root`) so that it survives a power
/// cut: each parent whose entries changed is fsynced. A directory that already exists is not
/// trusted until its parent has been fsynced once by this process: another put may have just
/// created it and not yet fsynced the parent (or an earlier process crashed in between), and a
/// shard published into a directory whose entry is lost is lost with it. Never creates `root`
/// itself: a missing disk must stay missing rather than be silently recreated elsewhere.
pub(crate) fn ensure_dir_under(root: &Path, dir: &Path) -> std::io::Result<()> {
    if known_durable(dir) {
        return Ok(());
    }
    if dir == root || !dir.starts_with(root) {
        if dir.is_dir() {
            return Ok(());
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is missing", dir.display()),
        ));
    }
    let parent = dir.parent().expect("below root");
    ensure_dir_under(root, parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fsync_dir(parent)?;
    mark_durable(dir);
    Ok(())
}

/// Space of the filesystem holding `path`, in bytes. Blocking (statvfs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// Free blocks, including those reserved for root.
    pub free: u64,
    /// Free blocks an unprivileged writer may use.
    pub available: u64,
}

impl DiskSpace {
    /// Bytes in use on the filesystem.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }

    /// Used fraction as `df` computes Use%: used / (used + available). Blocks reserved for root
    /// (or for other tenants of a shared volume, as `resv_strict` quotas do) belong to neither
    /// side, so a filesystem whose unprivileged writers can still use half of what they may use
    /// reads 50 %, whatever the reservation. (Counting reserved blocks as used made a
    /// large reservation read as "full" and refuse writes with space to spare.)
    pub fn used_fraction(&self) -> f64 {
        let used = self.used() as f64;
        let usable = used + self.available as f64;
        if usable == 0.0 {
            return 1.0;
        }
        used / usable
    }
}

pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = stat.f_frsize as u64;
    Ok(DiskSpace {
        total: (stat.f_blocks as u64).saturating_mul(frsize),
        free: (stat.f_bfree as u64).saturating_mul(frsize),
        available: (stat.f_bavail as u64).saturating_mul(frsize),
    })
}

/// Filesystem usage of `path` as a fraction (0.0 empty .. 1.0 full), as `df` reports it
/// ([`DiskSpace::used_fraction`]). Blocking (statvfs).
pub fn disk_usage_fraction(path: &Path) -> std::io::Result<f64> {
    disk_space(path).map(|s| s.used_fraction())
}

pub(crate) fn write_temp(tmp: &Path, header: &[u8], body: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(header)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Publishes a durable temporary under its final name *only if that name is free* (hard link,
/// which fails on an existing name, then unlink of the temporary), and makes it durable. This is
/// what makes a put create-only even against a writer outside this process.
pub(crate) fn publish_new(disk: &Path, tmp: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().expect("shard path has a parent");
    let linked = ensure_dir_under(disk, dir).and_then(|()| fs::hard_link(tmp, path));
    // The temporary goes either way; if this unlink is lost in a crash, open removes it.
    let _ = fs::remove_file(tmp);
    linked?;
    fsync_dir(dir)
}

/// Renames a durable temporary over its final place (replacing a bad shard) and makes the rename
/// durable. Used by heal only, which rewrites the same ciphertext.
fn publish_replace(disk: &Path, tmp: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().expect("shard path has a parent");
    ensure_dir_under(disk, dir)?;
    fs::rename(tmp, path)?;
    fsync_dir(dir)
}

/// Temp file + fsync + rename + directory fsync, for heal.
pub(crate) fn write_shard_durably(
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
    publish_replace(disk, &tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Reads a shard file's header only (for scrub, to learn which layout a chunk belongs to).
pub(crate) fn read_header(path: &Path) -> Option<ShardHeader> {
    let mut head = [0u8; HEADER_LEN];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    ShardHeader::parse(&head).ok()
}

/// What one disk holds of one chunk.
pub(crate) enum DiskScan {
    /// The disk directory (or its `shards/`) is missing or unreadable: its files cannot be seen.
    Unavailable,
    Found {
        /// Shard files of the chunk, at whatever placement.
        shards: Vec<(usize, PathBuf)>,
        tombstone: Option<PathBuf>,
    },
}

fn absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Every file of chunk `id` on `disk`: one listing of its fan-out directory (shards of any layout,
/// any shard index) and one stat for a tombstone.
pub(crate) fn scan_disk(disk: &Path, id: ChunkId) -> DiskScan {
    if !disk.join(SHARDS_DIR).is_dir() {
        return DiskScan::Unavailable;
    }
    let mut shards = Vec::new();
    let dir = disk.join(fanout_dir(id));
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let Ok(entry) = entry else {
                    return DiskScan::Unavailable;
                };
                if let Some((found, shard)) =
                    entry.file_name().to_str().and_then(parse_shard_file_name)
                    && found == id
                {
                    shards.push((shard, entry.path()));
                }
            }
        }
        Err(e) if absent(&e) => {}
        Err(_) => return DiskScan::Unavailable,
    }
    let tombstone_path = disk.join(TOMBSTONES_DIR).join(tombstone_file_name(id));
    let tombstone = match fs::symlink_metadata(&tombstone_path) {
        Ok(_) => Some(tombstone_path),
        Err(e) if absent(&e) => None,
        Err(_) => return DiskScan::Unavailable,
    };
    shards.sort();
    DiskScan::Found { shards, tombstone }
}

/// Creates the tombstone of `tombstone.chunk` on `disk` durably (file and directory fsync'd).
/// An existing tombstone is kept: what counts is that one exists.
pub(crate) fn write_tombstone(disk: &Path, tombstone: &Tombstone) -> std::io::Result<()> {
    let dir = disk.join(TOMBSTONES_DIR);
    ensure_dir_under(disk, &dir)?;
    let path = dir.join(tombstone_file_name(tombstone.chunk));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(&tombstone.encode())?;
            file.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fsync_dir(&dir)
}

/// Reads a tombstone's content; `None` if it is torn or corrupt (it still marks the deletion).
pub(crate) fn read_tombstone(path: &Path) -> Option<Tombstone> {
    let mut bytes = Vec::with_capacity(TOMBSTONE_LEN + 1);
    fs::File::open(path)
        .ok()?
        .take(TOMBSTONE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    Tombstone::parse(&bytes).ok()
}

/// Removes `paths` (a missing file is fine) and fsyncs each directory that lost an entry.
pub(crate) fn remove_durably(paths: &[PathBuf]) -> std::io::Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => dirs.push(path.parent().expect("parent")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        fsync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_fraction_is_dfs_use_percent_whatever_the_reservation() {
        const G: u64 = 1 << 30;
        // This machine's volume: 252 GiB, 193 GiB free of which only 32 GiB may be written.
        let shared = DiskSpace {
            total: 252 * G,
            free: 193 * G,
            available: 32 * G,
        };
        assert_eq!(shared.used(), 59 * G);
        let f = shared.used_fraction();
        assert!((f - 59.0 / 91.0).abs() < 1e-9, "{f}");
        // Nothing left to writers: full, even though root could still write.
        let full = DiskSpace {
            total: 10 * G,
            free: G,
            available: 0,
        };
        assert_eq!(full.used_fraction(), 1.0);
        assert_eq!(DiskSpace::default().used_fraction(), 1.0);
    }

    #[test]
    fn file_names_round_trip_and_junk_is_rejected() {
        let id = ChunkId {
            blob: [0xab; 16],
            index: 42,
        };
        assert_eq!(
            parse_shard_file_name(&shard_file_name(id, 5)),
            Some((id, 5))
        );
        assert_eq!(
            parse_tombstone_file_name(&tombstone_file_name(id)),
            Some(id)
        );
        let blob = hex::encode(id.blob);
        for junk in [
            "",
            "x",
            "abab.1.2",
            &format!("{blob}.01.2"),
            &format!("{blob}.1.2.tmp"),
            &format!("{blob}.1.+2"),
            &format!("{blob}.1.02"),
            &format!("{blob}.-1.2"),
        ] {
            assert_eq!(parse_shard_file_name(junk), None, "{junk}");
        }
        for junk in ["", &blob, &format!("{blob}.1.2"), &format!("{blob}.01")] {
            assert_eq!(parse_tombstone_file_name(junk), None, "{junk}");
        }
    }
}
