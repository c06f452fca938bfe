//! The archive tier's records: per-version archive and restore state (on `VersionRecord`),
//! containers and their extents, and the durable queues of the archive workers (versions
//! waiting to be repacked, restores requested, restored copies to expire). Every change of a
//! version's archive state is one batch conditioned on the exact version record it read.
//!
//! Sys-space keys (see `docs/archive-format.md`):
//! - `archive-layout` -> u32 BE: the layout archive containers are written with;
//! - `archive/open` -> container id: the container new extents go to;
//! - `archive/container/<id 16 B>` -> [`ContainerRecord`];
//! - `archive/extent/<id 16 B><first chunk u32 BE>` -> [`ExtentEntry`];
//! - `archive/pending/<version key>`: archive class, bytes still on the standard tier;
//! - `archive/restore/<version key>`: a restore requested and not yet done;
//! - `archive/restored/<version key>` -> [`RestoredEntry`]: a restored copy to expire.

use serde::{Deserialize, Serialize};

use crate::gc::stage_consume_intents;
use crate::keys;
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::layouts::{LAYOUT_PREFIX, layout_key, validate};
use crate::objects::VersionExpect;
use crate::store::{decode, encode};
use crate::{BlobId, LayoutRecord, MetaError, MetaStore, Result, Segment, VersionRecord};

const ARCHIVE_LAYOUT: &[u8] = b"archive-layout";
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

/// Where an archived version's bytes are: chunks `first_chunk..first_chunk + n` of container
/// `container`, encrypted under the version's own data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveExtent {
    #[serde(with = "serde_bytes")]
    pub container: BlobId,
    pub first_chunk: u32,
    /// Plaintext length.
    pub len: u64,
    pub chunk_size: u32,
    pub layout: u32,
}

impl ArchiveExtent {
    pub fn chunk_count(&self) -> u32 {
        if self.len == 0 || self.chunk_size == 0 {
            0
        } else {
            self.len.div_ceil(self.chunk_size as u64) as u32
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

/// An archive container: one blob of the archive layout whose chunks hold the extents of many
/// versions. Chunks are only ever added while it is open; sealed, it never changes again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    #[serde(with = "serde_bytes")]
    pub id: BlobId,
    pub layout: u32,
    pub chunk_size: u32,
    pub created: i64,
    /// Chunks reserved so far (the next extent starts here).
    pub next_chunk: u32,
    /// Plaintext bytes reserved by extents.
    pub bytes: u64,
    pub extents: u64,
    pub sealed: bool,
    /// Plaintext bytes still referenced by a version, as of `audited`.
    pub live_bytes: u64,
    pub audited: Option<i64>,
    /// Being retired by compaction: its live extents are moved out, then its chunks freed.
    #[serde(default)]
    pub retiring: bool,
}

/// Which version an extent was reserved for (the compaction audit checks it still is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentEntry {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub first_chunk: u32,
    pub len: u64,
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

fn extent_key(id: &BlobId, first_chunk: u32) -> Vec<u8> {
    [EXTENT_PREFIX, id, &first_chunk.to_be_bytes()].concat()
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
            // A new geometry: the open container (old layout) takes no more extents.
            b.delete(Space::Sys, OPEN_CONTAINER.to_vec());
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

    // ----- containers -----

    /// The open container of `layout`, or a new one.
    pub fn open_container(
        &self,
        layout: u32,
        chunk_size: u32,
        now: i64,
    ) -> Result<ContainerRecord> {
        self.retry(|| {
            let ptr = self.kv().get(Space::Sys, OPEN_CONTAINER)?;
            if let Some(id) = &ptr
                && let Some(raw) = self
                    .kv()
                    .get(Space::Sys, &[CONTAINER_PREFIX, id].concat())?
            {
                let c: ContainerRecord = decode(&raw)?;
                if !c.sealed && c.layout == layout && c.chunk_size == chunk_size {
                    return Ok(c);
                }
            }
            let mut id = [0u8; 16];
            rand::fill(&mut id);
            let c = ContainerRecord {
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
            };
            let mut b = Batch::default();
            b.unchanged(Space::Sys, OPEN_CONTAINER, ptr.as_deref());
            b.absent(Space::Sys, &container_key(&id));
            b.put(Space::Sys, container_key(&id), encode(&c));
            b.put(Space::Sys, OPEN_CONTAINER.to_vec(), id.to_vec());
            self.kv().commit(b)?;
            Ok(c)
        })
    }

    /// Reserves the next chunks of an open container for one version's extent and records
    /// which version it is for; seals the container once it holds `seal_bytes`. Durable before
    /// any chunk is written, so a crash leaves at most a dead extent that the audit finds.
    pub fn reserve_extent(
        &self,
        container: &BlobId,
        bucket: &str,
        key: &str,
        version_id: &str,
        len: u64,
        seal_bytes: u64,
    ) -> Result<ArchiveExtent> {
        self.retry(|| {
            let ck = container_key(container);
            let raw = self
                .kv()
                .get(Space::Sys, &ck)?
                .ok_or_else(|| MetaError::Invalid("no such container".into()))?;
            let mut c: ContainerRecord = decode(&raw)?;
            if c.sealed {
                return Err(MetaError::Stale);
            }
            let ext = ArchiveExtent {
                container: c.id,
                first_chunk: c.next_chunk,
                len,
                chunk_size: c.chunk_size,
                layout: c.layout,
            };
            c.next_chunk = c
                .next_chunk
                .checked_add(ext.chunk_count())
                .ok_or_else(|| MetaError::Invalid("container chunk index overflow".into()))?;
            c.bytes += len;
            c.extents += 1;
            let mut b = Batch::default();
            if c.bytes >= seal_bytes || c.next_chunk > u32::MAX / 2 {
                c.sealed = true;
                b.delete(Space::Sys, OPEN_CONTAINER.to_vec());
            }
            b.equals(Space::Sys, &ck, &raw);
            b.put(Space::Sys, ck, encode(&c));
            let entry = ExtentEntry {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version_id: version_id.to_string(),
                first_chunk: ext.first_chunk,
                len,
            };
            b.put(
                Space::Sys,
                extent_key(&c.id, ext.first_chunk),
                encode(&entry),
            );
            self.kv().commit(b)?;
            Ok(ext)
        })
    }

    /// Points a pending version at its written extent and releases its standard-tier chunks
    /// to GC ("archived"), in one batch conditioned on the version record still being the one
    /// whose bytes were copied (`segments`). `Stale` otherwise (the extent stays dead).
    pub fn commit_archive(
        &self,
        vkey: &[u8],
        segments: &[Segment],
        extent: ArchiveExtent,
        now: i64,
    ) -> Result<()> {
        self.retry(|| {
            let Some(raw) = self.kv().get(Space::Versions, vkey)? else {
                return Err(MetaError::Stale);
            };
            let rec: VersionRecord = decode(&raw)?;
            let pending = is_archive_class(&rec.storage_class)
                && rec.archive.as_ref().is_some_and(|a| a.extent.is_none());
            if !pending || rec.data.segments != segments {
                return Err(MetaError::Stale);
            }
            let mut new = rec.clone();
            let a = new.archive.get_or_insert(ArchiveState {
                since: now,
                extent: None,
                restore: None,
            });
            a.extent = Some(extent.clone());
            new.data.segments = Vec::new();
            let mut b = Batch::default();
            b.equals(Space::Versions, vkey, &raw);
            b.put(Space::Versions, vkey.to_vec(), encode(&new));
            b.delete(Space::Sys, queue_key(PENDING_PREFIX, vkey));
            self.stage_gc(&mut b, rec.data.segments.clone(), "archived", now);
            self.kv().commit(b)
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

    /// Extents reserved in a container, in chunk order, after `after` (a first chunk).
    pub fn container_extents(
        &self,
        id: &BlobId,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Vec<ExtentEntry>> {
        let prefix = [EXTENT_PREFIX, id].concat();
        let whole = KeyRange::prefix(&prefix);
        let start = match after {
            Some(a) => [&prefix[..], &a.to_be_bytes(), &[0]].concat(),
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
                .is_some_and(|e| &e.container == container && e.first_chunk == entry.first_chunk)),
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

    /// Compaction: swaps a version's extent for its copy in another container, conditioned on
    /// the version still pointing at `old`. `Stale` otherwise.
    pub fn replace_extent(
        &self,
        entry: &ExtentEntry,
        old: &ArchiveExtent,
        new_extent: ArchiveExtent,
    ) -> Result<()> {
        self.retry(|| {
            let (vkey, raw, rec) =
                match self.locate_version(&entry.bucket, &entry.key, Some(&entry.version_id)) {
                    Ok(f) => f,
                    Err(MetaError::NoSuchKey | MetaError::NoSuchVersion) => {
                        return Err(MetaError::Stale);
                    }
                    Err(e) => return Err(e),
                };
            let mut new = rec.clone();
            match new.archive.as_mut() {
                Some(a) if a.extent.as_ref() == Some(old) => a.extent = Some(new_extent.clone()),
                _ => return Err(MetaError::Stale),
            }
            let mut b = Batch::default();
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.kv().commit(b)
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
            if self.kv().get(Space::Sys, OPEN_CONTAINER)?.as_deref() == Some(&id[..]) {
                b.delete(Space::Sys, OPEN_CONTAINER.to_vec());
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
