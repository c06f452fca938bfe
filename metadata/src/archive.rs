//! The archive tier's records: per-version archive and restore state (on `VersionRecord`),
//! containers and their extents, and the durable queues of the archive workers (versions
//! waiting to be repacked, restores requested, restored copies to expire). Every change of a
//! version's archive state is one batch conditioned on the exact version record it read.
//!
//! Sys-space keys (see `docs/archive-format.md`):
//! - `archive-layout` -> u32 BE: the layout archive containers are written with;
//! - `archive-kek` -> [`ArchiveKekRecord`]: the key-store slot of the KEK wrapping every
//!   container key;
//! - `archive/open` -> container id: the container the repack writer fills
//!   (`archive/open-<writer>` for other writers, e.g. compaction);
//! - `archive/container/<id 16 B>` -> [`ContainerRecord`];
//! - `archive/extent/<id 16 B><offset u64 BE>` -> [`ExtentEntry`] (format 1:
//!   `<first chunk u32 BE>`);
//! - `archive/pending/<version key>`: archive class, bytes still on the standard tier;
//! - `archive/restore/<version key>`: a restore requested and not yet done;
//! - `archive/restored/<version key>` -> [`RestoredEntry`]: a restored copy to expire.

use serde::{Deserialize, Serialize};

use crate::gc::{stage_consume_intents, stage_consume_key};
use crate::keys;
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::layouts::{LAYOUT_PREFIX, layout_key, validate};
use crate::objects::VersionExpect;
use crate::store::{decode, encode};
use crate::{BlobId, LayoutRecord, MetaError, MetaStore, Result, Segment, VersionRecord};

const ARCHIVE_LAYOUT: &[u8] = b"archive-layout";
const ARCHIVE_KEK: &[u8] = b"archive-kek";
const OPEN_CONTAINER: &[u8] = b"archive/open";
const CONTAINER_PREFIX: &[u8] = b"archive/container/";
const EXTENT_PREFIX: &[u8] = b"archive/extent/";
const PENDING_PREFIX: &[u8] = b"archive/pending/";
const RESTORE_PREFIX: &[u8] = b"archive/restore/";
const RESTORED_PREFIX: &[u8] = b"archive/restored/";

/// Storage classes whose data lives in archive containers and must be restored to be read.
pub fn is_archive_class(class: &str) -> bool {
    matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}

/// The writer that fills containers from the repack queue.
pub const WRITER_REPACK: &str = "repack";
/// The writer that compaction copies live extents into.
pub const WRITER_COMPACTION: &str = "compaction";

/// Bytes a sealed frame adds to its plaintext: a 12-byte nonce before it, a 16-byte tag after.
pub const FRAME_OVERHEAD: u64 = 12 + 16;

/// Where an archived version's bytes are.
///
/// Packed (format 2, `frame_size > 0`): the version's sealed extent is bytes
/// `offset..offset + sealed_len` of container `container`, whose chunk `i` holds bytes
/// `[i * chunk_size, i * chunk_size + its length)`; the extent is frames of `frame_size`
/// plaintext bytes (the last one shorter), each AES-256-GCM under the version's own data key.
///
/// Format 1 (`frame_size == 0`, written before packing): chunks `first_chunk..` of the container
/// are the version's own, each encrypted by the chunk store under the version's data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveExtent {
    #[serde(with = "serde_bytes")]
    pub container: BlobId,
    /// Format 1 only: the first of the version's chunks.
    #[serde(default)]
    pub first_chunk: u32,
    /// Plaintext length.
    pub len: u64,
    /// Plaintext bytes of a (full) container chunk.
    pub chunk_size: u32,
    pub layout: u32,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub sealed_len: u64,
    /// Plaintext bytes per frame; 0 marks a format-1 extent.
    #[serde(default)]
    pub frame_size: u32,
}

/// Frames of a `len`-byte extent cut in `frame_size` pieces (0 for an empty one).
pub fn frame_count(len: u64, frame_size: u32) -> u64 {
    if frame_size == 0 {
        0
    } else {
        len.div_ceil(frame_size as u64)
    }
}

/// Sealed length of a `len`-byte extent cut in `frame_size` frames.
pub fn sealed_len(len: u64, frame_size: u32) -> u64 {
    len + frame_count(len, frame_size) * FRAME_OVERHEAD
}

impl ArchiveExtent {
    /// Sealed frames in a container (format 2), not a run of chunks of its own (format 1).
    pub fn is_packed(&self) -> bool {
        self.frame_size > 0
    }

    pub fn frame_count(&self) -> u64 {
        frame_count(self.len, self.frame_size)
    }

    /// Format 1: the number of the version's own chunks.
    pub fn chunk_count(&self) -> u32 {
        if self.len == 0 || self.chunk_size == 0 {
            0
        } else {
            self.len.div_ceil(self.chunk_size as u64) as u32
        }
    }

    /// Bytes it occupies in its container.
    pub fn stored_len(&self) -> u64 {
        if self.is_packed() {
            self.sealed_len
        } else {
            self.len
        }
    }

    /// Is this the extent an index entry of `container` describes?
    pub fn is_at(&self, container: &BlobId, entry: &ExtentEntry) -> bool {
        &self.container == container
            && match entry.offset {
                Some(o) => self.is_packed() && self.offset == o,
                None => !self.is_packed() && self.first_chunk == entry.first_chunk,
            }
    }
}

/// A restore of an archived version: requested, then done (a temporary standard-tier copy until
/// `expiry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    pub ongoing: bool,
    pub requested: i64,
    /// The restore job may finish from this time on (the tier's delay).
    pub ready_at: i64,
    pub days: u32,
    /// Expedited, Standard or Bulk.
    pub tier: String,
    /// When the restored copy goes away (set when the restore is done, or extended).
    pub expiry: Option<i64>,
    /// The restored copy, under the version's data key.
    pub segments: Vec<Segment>,
}

/// Archive state of a version in an archive class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveState {
    /// When the version entered its archive class (Unix ms).
    pub since: i64,
    /// `None` while the bytes are still in `data.segments`, waiting to be repacked.
    pub extent: Option<ArchiveExtent>,
    pub restore: Option<RestoreState>,
}

impl VersionRecord {
    /// True when GET must answer `InvalidObjectState`: an archive class without a finished
    /// restore.
    pub fn needs_restore(&self) -> bool {
        is_archive_class(&self.storage_class)
            && !self
                .archive
                .as_ref()
                .and_then(|a| a.restore.as_ref())
                .is_some_and(|r| !r.ongoing && !r.segments.is_empty())
    }
}

/// An archive container: one blob of the archive layout whose chunks hold the sealed extents of
/// many versions, back to back. Chunks are only ever added while it is open (each one written
/// once, create-only); sealed, it never changes again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    #[serde(with = "serde_bytes")]
    pub id: BlobId,
    pub layout: u32,
    pub chunk_size: u32,
    pub created: i64,
    /// Chunks reserved so far (each reserved durably before it is written; the next one
    /// written is this index).
    pub next_chunk: u32,
    /// Bytes written into its chunks, live or dead (format 1: plaintext bytes of the extents
    /// reserved).
    pub bytes: u64,
    /// Extents committed into it (format 1: reserved).
    pub extents: u64,
    pub sealed: bool,
    /// Bytes still referenced by a version, as of `audited`.
    pub live_bytes: u64,
    pub audited: Option<i64>,
    /// Being retired by compaction: its live extents are moved out, then its chunks freed.
    #[serde(default)]
    pub retiring: bool,
    /// The archive KEK that wraps `wrapped_key`; empty for a format-1 container (its chunks are
    /// under the versions' own keys).
    #[serde(default)]
    pub key_id: String,
    /// The container key (the chunk store encrypts its chunks with it), wrapped.
    #[serde(default, with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
    /// The writer filling it ([`WRITER_REPACK`], [`WRITER_COMPACTION`]).
    #[serde(default)]
    pub writer: String,
}

impl ContainerRecord {
    /// A new, empty container of `writer` (not yet recorded; see [`MetaStore::open_container`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: BlobId,
        writer: &str,
        layout: u32,
        chunk_size: u32,
        key_id: String,
        wrapped_key: Vec<u8>,
        now: i64,
    ) -> Self {
        ContainerRecord {
            id,
            layout,
            chunk_size,
            created: now,
            next_chunk: 0,
            bytes: 0,
            extents: 0,
            sealed: false,
            live_bytes: 0,
            audited: None,
            retiring: false,
            key_id,
            wrapped_key,
            writer: writer.to_string(),
        }
    }

    /// Format 2: sealed extents under a container key of its own.
    pub fn is_packed(&self) -> bool {
        !self.key_id.is_empty()
    }
}

/// The archive key-encryption key: it lives in the key store like a bucket KEK (wrapped by the
/// master key, so a master rotation re-wraps it), this record names its slot; it wraps every
/// container key. No version's data depends on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveKekRecord {
    /// Key id (hex).
    pub id: String,
    /// Key-store slot.
    pub slot: u64,
    pub created: i64,
}

impl ArchiveKekRecord {
    pub fn key_ref(&self) -> crate::KeyRef {
        crate::KeyRef {
            class: crate::KeyClass::Kek,
            slot: self.slot,
            id: self.id.clone(),
        }
    }
}

/// Which version an extent was committed for (the compaction audit checks it still is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentEntry {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    /// Format 1 only.
    #[serde(default)]
    pub first_chunk: u32,
    /// Plaintext length.
    pub len: u64,
    /// Byte offset of the sealed extent (format 2; `None`: a format-1 entry).
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub sealed_len: u64,
}

impl ExtentEntry {
    /// Bytes the extent occupies in its container.
    pub fn stored_len(&self) -> u64 {
        if self.offset.is_some() {
            self.sealed_len
        } else {
            self.len
        }
    }
}

/// A version repacked into a written extent, to commit ([`MetaStore::commit_archives`]).
#[derive(Clone, Debug)]
pub struct ArchiveCommit {
    /// The version key (as in the repack queue).
    pub vkey: Vec<u8>,
    /// The standard-tier segments the extent was copied from: the commit is conditioned on
    /// the version still holding exactly these.
    pub segments: Vec<Segment>,
    pub extent: ArchiveExtent,
}

/// A live extent copied into another container, to swap in ([`MetaStore::replace_extents`]).
#[derive(Clone, Debug)]
pub struct ExtentMove {
    /// The index entry in the old container (names the version).
    pub entry: ExtentEntry,
    pub old: ArchiveExtent,
    pub new: ArchiveExtent,
}

/// A restored copy waiting for its expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredEntry {
    pub expiry: i64,
    pub segments: Vec<Segment>,
}

/// Answer of [`MetaStore::request_restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreRequestOutcome {
    /// A restore job was queued (S3: 202 Accepted).
    Started,
    /// Already restored: the expiry is now this (S3: 200 OK).
    Extended(i64),
    /// A restore is running (S3: 409 RestoreAlreadyInProgress).
    InProgress,
}

fn container_key(id: &BlobId) -> Vec<u8> {
    [CONTAINER_PREFIX, id].concat()
}

fn extent_key(id: &BlobId, entry: &ExtentEntry) -> Vec<u8> {
    match entry.offset {
        Some(o) => [EXTENT_PREFIX, id, &o.to_be_bytes()].concat(),
        None => [EXTENT_PREFIX, id, &entry.first_chunk.to_be_bytes()].concat(),
    }
}

/// The pointer to the container `writer` fills.
fn open_key(writer: &str) -> Vec<u8> {
    if writer == WRITER_REPACK || writer.is_empty() {
        OPEN_CONTAINER.to_vec()
    } else {
        [OPEN_CONTAINER, b"-", writer.as_bytes()].concat()
    }
}

/// The index entry of an extent committed for a version.
fn entry_for(bucket: &str, key: &str, version_id: &str, ext: &ArchiveExtent) -> ExtentEntry {
    ExtentEntry {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id: version_id.to_string(),
        first_chunk: ext.first_chunk,
        len: ext.len,
        offset: ext.is_packed().then_some(ext.offset),
        sealed_len: ext.sealed_len,
    }
}

fn queue_key(prefix: &[u8], vkey: &[u8]) -> Vec<u8> {
    [prefix, vkey].concat()
}

/// (bucket, key) of an encoded version key.
fn vkey_object(vkey: &[u8]) -> Result<(String, String)> {
    let blen = vkey
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| MetaError::Corrupt("version key without bucket".into()))?;
    let bucket = String::from_utf8(vkey[..blen].to_vec())
        .map_err(|_| MetaError::Corrupt("bucket name".into()))?;
    let (key, _) = keys::split_object_key(vkey, blen)?;
    Ok((bucket, key))
}

/// One entry of an archive queue: the version key, and the version if it still exists.
#[derive(Clone, Debug)]
pub struct QueuedVersion {
    pub vkey: Vec<u8>,
    pub bucket: String,
    pub key: String,
    pub version: Option<VersionRecord>,
}

impl MetaStore {
    // ----- layout -----

    /// The archive layout if it has this geometry, else a new (non-current) layout that
    /// becomes the archive layout. Containers already written keep naming theirs.
    pub fn ensure_archive_layout(
        &self,
        disks: &[String],
        data_shards: u8,
        parity_shards: u8,
        chunk_size: u32,
        now: i64,
    ) -> Result<LayoutRecord> {
        validate(disks, data_shards, parity_shards, chunk_size)?;
        self.retry(|| {
            let ptr = self.kv().get(Space::Sys, ARCHIVE_LAYOUT)?;
            if let Some(cur) = self.archive_layout()?
                && cur.disks == disks
                && cur.data_shards == data_shards
                && cur.parity_shards == parity_shards
                && cur.chunk_size == chunk_size
            {
                return Ok(cur);
            }
            let max = self
                .kv()
                .scan(
                    Space::Sys,
                    &KeyRange::prefix(LAYOUT_PREFIX),
                    Direction::Reverse,
                    1,
                )?
                .first()
                .map(|(_, v)| decode::<LayoutRecord>(v).map(|l| l.id))
                .transpose()?
                .unwrap_or(0);
            let id = max
                .checked_add(1)
                .ok_or_else(|| MetaError::Invalid("layout ids exhausted".into()))?;
            let rec = LayoutRecord {
                id,
                disks: disks.to_vec(),
                data_shards,
                parity_shards,
                chunk_size,
                created: now,
            };
            let mut b = Batch::default();
            b.unchanged(Space::Sys, ARCHIVE_LAYOUT, ptr.as_deref());
            b.absent(Space::Sys, &layout_key(id));
            b.put(Space::Sys, layout_key(id), encode(&rec));
            b.put(
                Space::Sys,
                ARCHIVE_LAYOUT.to_vec(),
                id.to_be_bytes().to_vec(),
            );
            // A new geometry: the open containers (old layout) take no more extents; each
            // writer's next `open_container` seals its old one and starts one of this layout.
            self.kv().commit(b)?;
            tracing::info!(
                layout = id,
                data_shards,
                parity_shards,
                chunk_size,
                "new archive layout"
            );
            Ok(rec)
        })
    }

    pub fn archive_layout(&self) -> Result<Option<LayoutRecord>> {
        let Some(raw) = self.kv().get(Space::Sys, ARCHIVE_LAYOUT)? else {
            return Ok(None);
        };
        let id: [u8; 4] = raw
            .as_slice()
            .try_into()
            .map_err(|_| MetaError::Corrupt("archive layout pointer".into()))?;
        self.get_layout(u32::from_be_bytes(id))
    }

    // ----- entering an archive class -----

    /// Moves a version to `class` (a lifecycle transition), conditioned on `expect`. An archive
    /// class keeps any extent the version already has (GLACIER -> DEEP_ARCHIVE is a relabel);
    /// without one the version is queued for repacking in the same batch. Other classes
    /// (STANDARD_IA, ...) are a relabel on the standard tier. `Stale` if the version changed.
    pub fn transition_version(
        &self,
        bucket: &str,
        key: &str,
        expect: &VersionExpect,
        class: &str,
        now: i64,
    ) -> Result<VersionRecord> {
        self.retry(|| {
            let st = self.read_object(bucket, key)?;
            let (vkey, raw, rec) = match self.locate_version(bucket, key, Some(&expect.version_id))
            {
                Ok(found) => found,
                Err(MetaError::NoSuchKey | MetaError::NoSuchVersion) => {
                    return Err(MetaError::Stale);
                }
                Err(e) => return Err(e),
            };
            expect.check(st.latest.as_ref().map(|(_, v)| v), Some(&rec))?;
            if rec.is_delete_marker {
                return Err(MetaError::Stale);
            }
            // SSE-C versions stay in the standard tier: repack and restore would need the
            // customer's key, which the server never holds (docs/sse.md). Counted as stale.
            if is_archive_class(class)
                && rec.content.sse.as_ref().map(|s| s.mode) == Some(crate::SseMode::Customer)
            {
                return Err(MetaError::Stale);
            }
            let mut new = rec.clone();
            new.storage_class = class.to_string();
            let mut b = Batch::default();
            let okey = keys::object_key(bucket, key);
            b.unchanged(Space::Heads, &okey, st.head_raw.as_deref());
            if is_archive_class(class) {
                let keep = rec.archive.clone();
                let extent = keep.as_ref().and_then(|a| a.extent.clone());
                if extent.is_none() {
                    b.put(Space::Sys, queue_key(PENDING_PREFIX, &vkey), Vec::new());
                }
                new.archive = Some(ArchiveState {
                    since: keep.as_ref().map(|a| a.since).unwrap_or(now),
                    extent,
                    restore: keep.and_then(|a| a.restore),
                });
            }
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.kv().commit(b)?;
            Ok(new)
        })
    }

    /// Stages the repack queue entry of a new version written directly in an archive class
    /// (PutObject, CopyObject, CompleteMultipartUpload with an archive storage class).
    pub(crate) fn stage_new_archive_version(b: &mut Batch, vkey: &[u8], v: &mut VersionRecord) {
        if is_archive_class(&v.storage_class) && !v.is_delete_marker {
            if v.archive.is_none() {
                v.archive = Some(ArchiveState {
                    since: v.last_modified,
                    extent: None,
                    restore: None,
                });
            }
            b.put(Space::Sys, queue_key(PENDING_PREFIX, vkey), Vec::new());
        }
    }

    fn queued(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<QueuedVersion>> {
        let whole = KeyRange::prefix(prefix);
        let start = match after {
            Some(a) => [prefix, a, &[0]].concat(),
            None => prefix.to_vec(),
        };
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(start, whole.end),
            Direction::Forward,
            limit,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, _) in rows {
            let vkey = k[prefix.len()..].to_vec();
            let (bucket, key) = vkey_object(&vkey)?;
            let version = self
                .kv()
                .get(Space::Versions, &vkey)?
                .map(|raw| decode::<VersionRecord>(&raw))
                .transpose()?;
            out.push(QueuedVersion {
                vkey,
                bucket,
                key,
                version,
            });
        }
        Ok(out)
    }

    /// Versions waiting to be repacked into a container (after the version key `after`).
    pub fn pending_archives(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<QueuedVersion>> {
        self.queued(PENDING_PREFIX, after, limit)
    }

    /// Number of entries in the repack queue and the restore queue (bounded count).
    pub fn archive_queue_lengths(&self) -> Result<(usize, usize)> {
        let count = |p: &[u8]| -> Result<usize> {
            Ok(self
                .kv()
                .scan(
                    Space::Sys,
                    &KeyRange::prefix(p),
                    Direction::Forward,
                    100_000,
                )?
                .len())
        };
        Ok((count(PENDING_PREFIX)?, count(RESTORE_PREFIX)?))
    }

    /// Drops a repack queue entry whose version is gone or no longer needs repacking.
    pub fn drop_pending_archive(&self, vkey: &[u8]) -> Result<()> {
        let mut b = Batch::default();
        b.delete(Space::Sys, queue_key(PENDING_PREFIX, vkey));
        self.kv().commit(b)
    }

    // ----- keys -----

    /// The archive KEK record, if one was created.
    pub fn archive_kek(&self) -> Result<Option<ArchiveKekRecord>> {
        self.kv()
            .get(Space::Sys, ARCHIVE_KEK)?
            .map(|r| decode(&r))
            .transpose()
    }

    /// Records `rec` as the archive KEK unless one exists, consuming the key-only intent its
    /// key was written under; returns the one in force (the first recorded wins a race, so every
    /// container key is wrapped by the same KEK; the loser's key is the caller's to discard).
    pub fn create_archive_kek(&self, rec: ArchiveKekRecord) -> Result<ArchiveKekRecord> {
        self.retry(|| {
            if let Some(cur) = self.archive_kek()? {
                return Ok(cur);
            }
            let mut b = Batch::default();
            b.absent(Space::Sys, ARCHIVE_KEK);
            let seg = stage_consume_key(&mut b, &rec.key_ref())?;
            b.put(Space::Sys, ARCHIVE_KEK.to_vec(), encode(&rec));
            self.commit_consuming(b, std::slice::from_ref(&seg))?;
            Ok(rec.clone())
        })
    }

    // ----- containers -----

    /// The container `writer` fills: the one its pointer names if that is still open, packed
    /// and of this layout and chunk size; otherwise `fresh` is recorded and pointed at (and a
    /// replaced container is sealed in the same batch, so compaction can take it later).
    pub fn open_container(&self, writer: &str, fresh: &ContainerRecord) -> Result<ContainerRecord> {
        let pk = open_key(writer);
        self.retry(|| {
            let ptr = self.kv().get(Space::Sys, &pk)?;
            let mut b = Batch::default();
            if let Some(id) = &ptr
                && let Some(raw) = self
                    .kv()
                    .get(Space::Sys, &[CONTAINER_PREFIX, id].concat())?
            {
                let mut c: ContainerRecord = decode(&raw)?;
                if !c.sealed
                    && !c.retiring
                    && c.is_packed()
                    && c.layout == fresh.layout
                    && c.chunk_size == fresh.chunk_size
                {
                    return Ok(c);
                }
                if !c.sealed {
                    c.sealed = true;
                    b.equals(Space::Sys, &container_key(&c.id), &raw);
                    b.put(Space::Sys, container_key(&c.id), encode(&c));
                }
            }
            let mut c = fresh.clone();
            c.writer = writer.to_string();
            b.unchanged(Space::Sys, &pk, ptr.as_deref());
            b.absent(Space::Sys, &container_key(&c.id));
            b.put(Space::Sys, container_key(&c.id), encode(&c));
            b.put(Space::Sys, pk.clone(), c.id.to_vec());
            self.kv().commit(b)?;
            Ok(c)
        })
    }

    /// Reserves chunk `index` of an open container, which is about to be written with `bytes`
    /// bytes: durable before the chunk is, so every chunk that may exist is below `next_chunk`
    /// (and freed with the container). `Stale` if the container is sealed, retiring, gone, or
    /// its next chunk is not `index` (another writer).
    pub fn reserve_chunk(&self, id: &BlobId, index: u32, bytes: u64) -> Result<ContainerRecord> {
        self.retry(|| {
            let ck = container_key(id);
            let Some(raw) = self.kv().get(Space::Sys, &ck)? else {
                return Err(MetaError::Stale);
            };
            let mut c: ContainerRecord = decode(&raw)?;
            if c.sealed || c.retiring || c.next_chunk != index {
                return Err(MetaError::Stale);
            }
            c.next_chunk = index
                .checked_add(1)
                .filter(|n| *n < u32::MAX / 2)
                .ok_or_else(|| MetaError::Invalid("container chunk index overflow".into()))?;
            c.bytes += bytes;
            let mut b = Batch::default();
            b.equals(Space::Sys, &ck, &raw);
            b.put(Space::Sys, ck, encode(&c));
            self.kv().commit(b)?;
            Ok(c)
        })
    }

    /// Seals a container (immutable from now on: no chunk is reserved in it any more) and
    /// clears its writer's pointer if it names it.
    pub fn seal_container(&self, id: &BlobId) -> Result<()> {
        self.retry(|| {
            let ck = container_key(id);
            let Some(raw) = self.kv().get(Space::Sys, &ck)? else {
                return Ok(());
            };
            let mut c: ContainerRecord = decode(&raw)?;
            let pk = open_key(&c.writer);
            let ptr = self.kv().get(Space::Sys, &pk)?;
            let mut b = Batch::default();
            if ptr.as_deref() == Some(&id[..]) {
                b.equals(Space::Sys, &pk, &id[..]);
                b.delete(Space::Sys, pk);
            }
            if c.sealed && b.ops.is_empty() {
                return Ok(());
            }
            c.sealed = true;
            b.equals(Space::Sys, &ck, &raw);
            b.put(Space::Sys, ck, encode(&c));
            self.kv().commit(b)
        })
    }

    /// Commits repacked versions in one batch: each version still pending with exactly the
    /// segments that were copied gets its extent (and the container an index entry), its
    /// standard-tier chunks go to GC ("archived") and its queue entry goes. The others (changed
    /// or deleted meanwhile, or their container retiring) are left alone: their extents are
    /// dead bytes. Returns, per item, whether it was committed.
    pub fn commit_archives(&self, items: &[ArchiveCommit], now: i64) -> Result<Vec<bool>> {
        self.retry(|| {
            let mut b = Batch::default();
            let mut done = Vec::with_capacity(items.len());
            let mut containers: Vec<(Vec<u8>, Vec<u8>, ContainerRecord)> = Vec::new();
            for it in items {
                let Some(raw) = self.kv().get(Space::Versions, &it.vkey)? else {
                    done.push(false);
                    continue;
                };
                let rec: VersionRecord = decode(&raw)?;
                let pending = is_archive_class(&rec.storage_class)
                    && !rec.is_delete_marker
                    && rec.archive.as_ref().is_some_and(|a| a.extent.is_none());
                if !pending || rec.data.segments != it.segments {
                    done.push(false);
                    continue;
                }
                let ck = container_key(&it.extent.container);
                let slot = match containers.iter().position(|(k, _, _)| *k == ck) {
                    Some(i) => Some(i),
                    None => match self.kv().get(Space::Sys, &ck)? {
                        Some(craw) => {
                            let c: ContainerRecord = decode(&craw)?;
                            containers.push((ck, craw, c));
                            Some(containers.len() - 1)
                        }
                        None => None,
                    },
                };
                let Some(slot) = slot.filter(|&i| !containers[i].2.retiring) else {
                    done.push(false);
                    continue;
                };
                containers[slot].2.extents += 1;
                let (bucket, key) = vkey_object(&it.vkey)?;
                let entry = entry_for(&bucket, &key, &rec.version_id, &it.extent);
                b.put(
                    Space::Sys,
                    extent_key(&it.extent.container, &entry),
                    encode(&entry),
                );
                let mut new = rec.clone();
                let a = new.archive.get_or_insert(ArchiveState {
                    since: now,
                    extent: None,
                    restore: None,
                });
                a.extent = Some(it.extent.clone());
                new.data.segments = Vec::new();
                // An inlined body is in the extent now too (same DEK): the record drops it.
                new.data.inline = None;
                b.equals(Space::Versions, &it.vkey, &raw);
                b.put(Space::Versions, it.vkey.clone(), encode(&new));
                b.delete(Space::Sys, queue_key(PENDING_PREFIX, &it.vkey));
                self.stage_gc(&mut b, rec.data.segments.clone(), "archived", now);
                done.push(true);
            }
            for (ck, craw, c) in &containers {
                b.equals(Space::Sys, ck, craw);
                b.put(Space::Sys, ck.clone(), encode(c));
            }
            if !b.ops.is_empty() {
                self.kv().commit(b)?;
            }
            Ok(done)
        })
    }

    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.scan_all(Space::Sys, CONTAINER_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    pub fn get_container(&self, id: &BlobId) -> Result<Option<ContainerRecord>> {
        self.kv()
            .get(Space::Sys, &container_key(id))?
            .map(|r| decode(&r))
            .transpose()
    }

    /// Extents committed into a container, in container order, after the entry `after`.
    pub fn container_extents(
        &self,
        id: &BlobId,
        after: Option<&ExtentEntry>,
        limit: usize,
    ) -> Result<Vec<ExtentEntry>> {
        let prefix = [EXTENT_PREFIX, id].concat();
        let whole = KeyRange::prefix(&prefix);
        let start = match after {
            Some(a) => [extent_key(id, a), vec![0]].concat(),
            None => prefix.clone(),
        };
        self.kv()
            .scan(
                Space::Sys,
                &KeyRange::new(start, whole.end),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Does `entry`'s version still reference this extent of `container`?
    pub fn extent_is_live(&self, container: &BlobId, entry: &ExtentEntry) -> Result<bool> {
        match self.get_version(&entry.bucket, &entry.key, Some(&entry.version_id)) {
            Ok(v) => Ok(v
                .archive
                .and_then(|a| a.extent)
                .is_some_and(|e| e.is_at(container, entry))),
            Err(MetaError::NoSuchBucket | MetaError::NoSuchKey | MetaError::NoSuchVersion) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Records an audit of a container (live bytes found), and whether to retire it.
    pub fn set_container_audit(
        &self,
        id: &BlobId,
        live_bytes: u64,
        retiring: bool,
        now: i64,
    ) -> Result<()> {
        self.retry(|| {
            let ck = container_key(id);
            let Some(raw) = self.kv().get(Space::Sys, &ck)? else {
                return Ok(());
            };
            let mut c: ContainerRecord = decode(&raw)?;
            c.live_bytes = live_bytes;
            c.audited = Some(now);
            c.retiring |= retiring;
            let mut b = Batch::default();
            b.equals(Space::Sys, &ck, &raw);
            b.put(Space::Sys, ck, encode(&c));
            self.kv().commit(b)
        })
    }

    /// Compaction: swaps versions' extents for their copies in another container, in one
    /// batch; each only if its version still points at `old` and the new container is not
    /// retiring. Returns, per item, whether it was swapped (a copy not swapped is dead bytes).
    pub fn replace_extents(&self, moves: &[ExtentMove]) -> Result<Vec<bool>> {
        self.retry(|| {
            let mut b = Batch::default();
            let mut done = Vec::with_capacity(moves.len());
            let mut containers: Vec<(Vec<u8>, Vec<u8>, ContainerRecord)> = Vec::new();
            // One version can appear once only: a second item would overwrite the first.
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for m in moves {
                let e = &m.entry;
                let (vkey, raw, rec) =
                    match self.locate_version(&e.bucket, &e.key, Some(&e.version_id)) {
                        Ok(f) => f,
                        Err(
                            MetaError::NoSuchKey
                            | MetaError::NoSuchVersion
                            | MetaError::NoSuchBucket,
                        ) => {
                            done.push(false);
                            continue;
                        }
                        Err(err) => return Err(err),
                    };
                let current = rec.archive.as_ref().and_then(|a| a.extent.as_ref());
                if current != Some(&m.old) || seen.contains(&vkey) {
                    done.push(false);
                    continue;
                }
                let ck = container_key(&m.new.container);
                let slot = match containers.iter().position(|(k, _, _)| *k == ck) {
                    Some(i) => Some(i),
                    None => match self.kv().get(Space::Sys, &ck)? {
                        Some(craw) => {
                            let c: ContainerRecord = decode(&craw)?;
                            containers.push((ck, craw, c));
                            Some(containers.len() - 1)
                        }
                        None => None,
                    },
                };
                let Some(slot) = slot.filter(|&i| !containers[i].2.retiring) else {
                    done.push(false);
                    continue;
                };
                containers[slot].2.extents += 1;
                let entry = entry_for(&e.bucket, &e.key, &e.version_id, &m.new);
                b.put(
                    Space::Sys,
                    extent_key(&m.new.container, &entry),
                    encode(&entry),
                );
                let mut new = rec.clone();
                if let Some(a) = new.archive.as_mut() {
                    a.extent = Some(m.new.clone());
                }
                b.equals(Space::Versions, &vkey, &raw);
                b.put(Space::Versions, vkey.clone(), encode(&new));
                seen.push(vkey);
                done.push(true);
            }
            for (ck, craw, c) in &containers {
                b.equals(Space::Sys, ck, craw);
                b.put(Space::Sys, ck.clone(), encode(c));
            }
            if !b.ops.is_empty() {
                self.kv().commit(b)?;
            }
            Ok(done)
        })
    }

    /// Frees a retired container: its index entries, its record, and all its chunks to GC (with
    /// the grace period, so reads that started on it finish). Returns the bytes it held.
    pub fn retire_container(&self, id: &BlobId, now: i64) -> Result<u64> {
        // Index entries first, in pages (a crash leaves a retiring container with fewer
        // entries, and the next call finishes).
        loop {
            let prefix = [EXTENT_PREFIX, id].concat();
            let rows = self.kv().scan(
                Space::Sys,
                &KeyRange::prefix(&prefix),
                Direction::Forward,
                1000,
            )?;
            if rows.is_empty() {
                break;
            }
            let mut b = Batch::default();
            for (k, _) in rows {
                b.delete(Space::Sys, k);
            }
            self.kv().commit(b)?;
        }
        self.retry(|| {
            let ck = container_key(id);
            let Some(raw) = self.kv().get(Space::Sys, &ck)? else {
                return Ok(0);
            };
            let c: ContainerRecord = decode(&raw)?;
            let mut b = Batch::default();
            b.equals(Space::Sys, &ck, &raw);
            b.delete(Space::Sys, ck);
            let pk = open_key(&c.writer);
            if self.kv().get(Space::Sys, &pk)?.as_deref() == Some(&id[..]) {
                b.equals(Space::Sys, &pk, &id[..]);
                b.delete(Space::Sys, pk);
            }
            if c.next_chunk > 0 {
                // One segment covering every chunk index ever reserved (chunks never written
                // are simply absent: deleting them is a no-op).
                let seg = Segment {
                    blob: c.id,
                    len: c.next_chunk as u64 * c.chunk_size as u64,
                    chunk_size: c.chunk_size,
                    layout: c.layout,
                };
                self.stage_gc(&mut b, vec![seg], "container-retired", now);
            }
            self.kv().commit(b)?;
            Ok(c.bytes)
        })
    }

    // ----- restore -----

    /// RestoreObject on an archived version. `expiry_from_now`: the expiry a restore done now
    /// would get (the engine computes it, with the day scale). `ObjectAlreadyInActiveTier` is
    /// the caller's check (not an archive class).
    #[allow(clippy::too_many_arguments)]
    pub fn request_restore(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        days: u32,
        tier: &str,
        ready_at: i64,
        expiry_from_now: i64,
        now: i64,
    ) -> Result<RestoreRequestOutcome> {
        self.retry(|| {
            let (vkey, raw, rec) = self.locate_version(bucket, key, version_id)?;
            if rec.is_delete_marker {
                return Err(MetaError::IsDeleteMarker {
                    version_id: rec.version_id.clone(),
                    last_modified: rec.last_modified,
                });
            }
            if !is_archive_class(&rec.storage_class) {
                return Err(MetaError::Invalid("not in an archive storage class".into()));
            }
            let mut new = rec.clone();
            let a = new.archive.get_or_insert(ArchiveState {
                since: rec.last_modified,
                extent: None,
                restore: None,
            });
            let mut b = Batch::default();
            let outcome = match &mut a.restore {
                Some(r) if r.ongoing => return Ok(RestoreRequestOutcome::InProgress),
                Some(r) if !r.segments.is_empty() => {
                    r.expiry = Some(expiry_from_now);
                    r.days = days;
                    b.put(
                        Space::Sys,
                        queue_key(RESTORED_PREFIX, &vkey),
                        encode(&RestoredEntry {
                            expiry: expiry_from_now,
                            segments: r.segments.clone(),
                        }),
                    );
                    RestoreRequestOutcome::Extended(expiry_from_now)
                }
                _ => {
                    a.restore = Some(RestoreState {
                        ongoing: true,
                        requested: now,
                        ready_at,
                        days,
                        tier: tier.to_string(),
                        expiry: None,
                        segments: Vec::new(),
                    });
                    b.put(Space::Sys, queue_key(RESTORE_PREFIX, &vkey), Vec::new());
                    RestoreRequestOutcome::Started
                }
            };
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.kv().commit(b)?;
            Ok(outcome)
        })
    }

    /// Restores requested and not yet done, after the version key `after`.
    pub fn pending_restores(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<QueuedVersion>> {
        self.queued(RESTORE_PREFIX, after, limit)
    }

    /// Drops a restore queue entry whose version is gone or has no restore running.
    pub fn drop_restore_request(&self, vkey: &[u8]) -> Result<()> {
        let mut b = Batch::default();
        b.delete(Space::Sys, queue_key(RESTORE_PREFIX, vkey));
        self.kv().commit(b)
    }

    /// Finishes a restore: the copy (`segment`, written under a write intent) becomes the
    /// version's restored copy until `expiry`, in one batch with the queue entries. `Stale` if
    /// the version changed (the caller discards the copy).
    pub fn complete_restore(&self, vkey: &[u8], segment: Segment, expiry: i64) -> Result<()> {
        self.retry(|| {
            let Some(raw) = self.kv().get(Space::Versions, vkey)? else {
                return Err(MetaError::Stale);
            };
            let rec: VersionRecord = decode(&raw)?;
            let mut new = rec.clone();
            let Some(r) = new
                .archive
                .as_mut()
                .and_then(|a| a.restore.as_mut())
                .filter(|r| r.ongoing)
            else {
                return Err(MetaError::Stale);
            };
            r.ongoing = false;
            r.expiry = Some(expiry);
            r.segments = vec![segment.clone()];
            let mut b = Batch::default();
            b.equals(Space::Versions, vkey, &raw);
            b.put(Space::Versions, vkey.to_vec(), encode(&new));
            b.delete(Space::Sys, queue_key(RESTORE_PREFIX, vkey));
            b.put(
                Space::Sys,
                queue_key(RESTORED_PREFIX, vkey),
                encode(&RestoredEntry {
                    expiry,
                    segments: vec![segment.clone()],
                }),
            );
            let consumed = std::slice::from_ref(&segment);
            stage_consume_intents(&mut b, consumed);
            self.commit_consuming(b, consumed)
        })
    }

    /// Restored copies, after the version key `after`.
    pub fn restored_copies(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(QueuedVersion, RestoredEntry)>> {
        let whole = KeyRange::prefix(RESTORED_PREFIX);
        let start = match after {
            Some(a) => [RESTORED_PREFIX, a, &[0]].concat(),
            None => RESTORED_PREFIX.to_vec(),
        };
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(start, whole.end),
            Direction::Forward,
            limit,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let vkey = k[RESTORED_PREFIX.len()..].to_vec();
            let (bucket, key) = vkey_object(&vkey)?;
            let version = self
                .kv()
                .get(Space::Versions, &vkey)?
                .map(|raw| decode::<VersionRecord>(&raw))
                .transpose()?;
            out.push((
                QueuedVersion {
                    vkey,
                    bucket,
                    key,
                    version,
                },
                decode(&v)?,
            ));
        }
        Ok(out)
    }

    /// Ends a restored copy whose expiry has passed (or whose version is gone): the version (if
    /// any) goes back to archived-only, the copy's chunks go to GC. Returns true if something
    /// was released.
    pub fn expire_restore(&self, vkey: &[u8], now: i64) -> Result<bool> {
        self.retry(|| {
            let ik = queue_key(RESTORED_PREFIX, vkey);
            let Some(iraw) = self.kv().get(Space::Sys, &ik)? else {
                return Ok(false);
            };
            let entry: RestoredEntry = decode(&iraw)?;
            let vraw = self.kv().get(Space::Versions, vkey)?;
            let mut b = Batch::default();
            b.equals(Space::Sys, &ik, &iraw);
            b.delete(Space::Sys, ik);
            if let Some(raw) = &vraw {
                let rec: VersionRecord = decode(raw)?;
                let current = rec.archive.as_ref().and_then(|a| a.restore.as_ref());
                // Another copy than this entry's (replaced by a newer restore): these segments
                // are no one's any more, and the version keeps its own.
                if let Some(r) = current
                    && r.segments == entry.segments
                {
                    if r.expiry.is_some_and(|e| e > now) {
                        return Ok(false);
                    }
                    let mut new = rec.clone();
                    if let Some(a) = new.archive.as_mut() {
                        a.restore = None;
                    }
                    b.equals(Space::Versions, vkey, raw);
                    b.put(Space::Versions, vkey.to_vec(), encode(&new));
                }
            }
            self.stage_gc(&mut b, entry.segments.clone(), "restore-expired", now);
            self.kv().commit(b)?;
            Ok(true)
        })
    }
}
