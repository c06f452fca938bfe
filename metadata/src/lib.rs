//! The metadata tier: the single source of truth for what exists.
//!
//! Layers, bottom up:
//! - [`kv`]: a narrow ordered key-value interface (get, range scan, atomic batch with
//!   compare-and-set) and its embedded RocksDB implementation.
//! - [`MetaStore`]: buckets, object versions, multipart state, listings, the GC queue and
//!   users/keys, written only against the `kv` interface.

pub mod keys;
pub mod kv;
mod listing;
mod maintenance;
pub mod types;

pub use maintenance::VerifyReport;
pub use types::*;

use keys::{Stamp, decode_id, encode_id, now_ms};
use kv::{Batch, Direction, KeyRange, OrderedKv, RocksKv, Space};
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketAlreadyExists,
    #[error("bucket not empty")]
    BucketNotEmpty,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such version")]
    NoSuchVersion,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("part list is not in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the minimum allowed size")]
    EntityTooSmall(u32),
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("object is locked (retention or legal hold)")]
    ObjectLocked,
    #[error("no such user")]
    NoSuchUser,
    #[error("already exists")]
    AlreadyExists,
    #[error("concurrent update conflict")]
    Conflict,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// Minimum size of every part but the last (S3: 5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Format of every stored record: first byte of the value (see `docs/metadata-format.md`).
const FORMAT_V1: u8 = 1;
/// Bounded retries of a read-check-commit cycle that lost a compare-and-set race.
const MAX_ATTEMPTS: usize = 64;

/// Write intents live in the Sys space under this prefix, keyed by blob id.
const INTENT_PREFIX: &[u8] = b"intent/";

fn intent_key(blob: &BlobId) -> Vec<u8> {
    let mut k = INTENT_PREFIX.to_vec();
    k.extend_from_slice(blob);
    k
}

/// The blobs are now referenced (or queued for GC): their write intents are done.
fn stage_clear_intents(b: &mut Batch, segments: &[Segment]) {
    for s in segments {
        b.delete(Space::Sys, intent_key(&s.blob));
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // postcard into a Vec cannot fail for our plain records.
    out.extend(postcard::to_stdvec(v).expect("postcard encodes plain records"));
    out
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T> {
    match raw.split_first() {
        Some((&FORMAT_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| MetaError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(MetaError::Corrupt(format!("unknown record format {v}"))),
        None => Err(MetaError::Corrupt("empty record".into())),
    }
}

/// Per-object record in `Space::Heads`: the CAS point for every change to an object's versions.
/// `tag` is fresh on every change (no ABA); `null_stamp` locates the `null` version.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Head {
    tag: Stamp,
    null_stamp: Option<Stamp>,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.tag);
        match &self.null_stamp {
            Some(s) => {
                out.push(1);
                out.extend_from_slice(s);
            }
            None => out.push(0),
        }
        out
    }
    fn decode(raw: &[u8]) -> Result<Head> {
        let corrupt = || MetaError::Corrupt("head record".into());
        if raw.first() != Some(&FORMAT_V1) || raw.len() < 18 {
            return Err(corrupt());
        }
        let tag: Stamp = raw[1..17].try_into().map_err(|_| corrupt())?;
        let null_stamp = match raw[17] {
            0 => None,
            1 => Some(
                raw.get(18..34)
                    .ok_or_else(corrupt)?
                    .try_into()
                    .map_err(|_| corrupt())?,
            ),
            _ => return Err(corrupt()),
        };
        Ok(Head { tag, null_stamp })
    }
}

/// Upload value: format byte, a change tag (fresh on every part write, so complete/abort see
/// any concurrent part), then the record.
fn encode_upload(tag: &Stamp, rec: &UploadRecord) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    out.extend_from_slice(tag);
    out.extend(postcard::to_stdvec(rec).expect("postcard encodes plain records"));
    out
}

fn decode_upload(raw: &[u8]) -> Result<UploadRecord> {
    if raw.first() != Some(&FORMAT_V1) || raw.len() < 17 {
        return Err(MetaError::Corrupt("upload record".into()));
    }
    postcard::from_bytes(&raw[17..]).map_err(|e| MetaError::Corrupt(e.to_string()))
}

/// What was read about one object before staging a change to it.
struct ObjectState {
    head_raw: Option<Vec<u8>>,
    head: Option<Head>,
    /// Latest version: (encoded key, record).
    latest: Option<(Vec<u8>, VersionRecord)>,
}

fn etag_eq(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// The metadata store. Cheap to clone (shared handle); safe to use from many threads.
#[derive(Clone)]
pub struct MetaStore {
    inner: Arc<Inner>,
}

struct Inner {
    kv: Arc<dyn OrderedKv>,
    stamps: keys::StampGen,
    /// Next GC queue position; starts above anything stored and above the clock in µs, so
    /// positions keep increasing across restarts.
    gc_seq: AtomicU64,
}

impl MetaStore {
    /// Opens (creating if needed) the store in `dir` (a RocksDB directory).
    pub fn open(dir: &Path) -> Result<Self> {
        let kv = RocksKv::open(dir)?;
        Self::with_kv(Arc::new(kv))
    }

    /// A store over any [`OrderedKv`] engine.
    pub fn with_kv(kv: Arc<dyn OrderedKv>) -> Result<Self> {
        match kv.get(Space::Sys, b"format")? {
            Some(v) if v == [FORMAT_V1] => {}
            Some(v) => {
                return Err(MetaError::Corrupt(format!(
                    "unsupported store format {v:?}"
                )));
            }
            None => {
                let mut b = Batch::default();
                b.absent(Space::Sys, b"format");
                b.put(Space::Sys, b"format".to_vec(), vec![FORMAT_V1]);
                match kv.commit(b) {
                    Ok(()) | Err(MetaError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let last = kv.scan(
            Space::Gc,
            &KeyRange::new(Vec::new(), None),
            Direction::Reverse,
            1,
        )?;
        let after_last = match last.first() {
            Some((k, _)) => {
                u64::from_be_bytes(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| MetaError::Corrupt("gc key".into()))?,
                ) + 1
            }
            None => 0,
        };
        let clock_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Ok(MetaStore {
            inner: Arc::new(Inner {
                kv,
                stamps: keys::StampGen::default(),
                gc_seq: AtomicU64::new(after_last.max(clock_us)),
            }),
        })
    }

    fn kv(&self) -> &dyn OrderedKv {
        self.inner.kv.as_ref()
    }

    /// A new unique, time-ordered version id (URL-safe, at most 32 characters).
    pub fn new_version_id(&self) -> String {
        encode_id(&self.inner.stamps.next())
    }

    /// A new unique multipart upload id (URL-safe).
    pub fn new_upload_id(&self) -> String {
        encode_id(&self.inner.stamps.next())
    }

    /// Runs a read-check-commit cycle until it does not lose a CAS race (bounded).
    fn retry<T>(&self, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
        for n in 0..MAX_ATTEMPTS {
            match attempt() {
                Err(MetaError::Conflict) => {
                    // Let the winner finish; back off a little more on each loss.
                    std::thread::sleep(std::time::Duration::from_micros(50 * n as u64));
                }
                other => return other,
            }
        }
        Err(MetaError::Conflict)
    }

    fn stage_gc(&self, b: &mut Batch, segments: Vec<Segment>, reason: &str) {
        if segments.is_empty() {
            return;
        }
        let seq = self.inner.gc_seq.fetch_add(1, Ordering::Relaxed);
        let key = seq.to_be_bytes().to_vec();
        let item = GcItem {
            seq,
            segments,
            reason: reason.to_string(),
        };
        // Absent: another process sharing the KV could pick the same position.
        b.absent(Space::Gc, &key);
        b.put(Space::Gc, key, encode(&item));
    }

    fn read_bucket(&self, name: &str) -> Result<(Vec<u8>, BucketRecord)> {
        let raw = self
            .kv()
            .get(Space::Buckets, name.as_bytes())?
            .ok_or(MetaError::NoSuchBucket)?;
        let rec = decode(&raw)?;
        Ok((raw, rec))
    }

    fn require_bucket(&self, name: &str) -> Result<()> {
        self.kv()
            .get(Space::Buckets, name.as_bytes())?
            .map(|_| ())
            .ok_or(MetaError::NoSuchBucket)
    }

    fn read_object(&self, bucket: &str, key: &str) -> Result<ObjectState> {
        let okey = keys::object_key(bucket, key);
        // Head first: if anything changes after this read, the head's tag changes and the
        // commit conditioned on it fails.
        let head_raw = self.kv().get(Space::Heads, &okey)?;
        let head = head_raw.as_deref().map(Head::decode).transpose()?;
        let latest = self
            .kv()
            .scan(
                Space::Versions,
                &KeyRange::prefix(&okey),
                Direction::Forward,
                1,
            )?
            .into_iter()
            .next()
            .map(|(k, v)| decode(&v).map(|rec| (k, rec)))
            .transpose()?;
        Ok(ObjectState {
            head_raw,
            head,
            latest,
        })
    }

    /// The stamp of version `version_id` of an object, if it can exist.
    fn stamp_of(&self, head: Option<&Head>, version_id: &str) -> Option<Stamp> {
        if version_id == NULL_VERSION {
            head.and_then(|h| h.null_stamp)
        } else {
            decode_id(version_id)
        }
    }

    /// Stages a new version of `key` into `b` following the bucket's versioning state (shared
    /// by `put_version` and `complete_upload`).
    #[allow(clippy::too_many_arguments)]
    fn stage_new_version(
        &self,
        b: &mut Batch,
        bucket: &str,
        bucket_rec: &BucketRecord,
        key: &str,
        st: &ObjectState,
        mut version: VersionRecord,
        precondition: &Precondition,
    ) -> Result<PutOutcome> {
        let current = st
            .latest
            .as_ref()
            .map(|(_, v)| v)
            .filter(|v| !v.is_delete_marker);
        match precondition {
            Precondition::None => {}
            Precondition::IfNoneMatchStar => {
                if current.is_some() {
                    return Err(MetaError::PreconditionFailed);
                }
            }
            Precondition::IfMatch(etag) => match current {
                Some(v) if etag.trim() == "*" || etag_eq(&v.etag, etag) => {}
                _ => return Err(MetaError::PreconditionFailed),
            },
        }
        let okey = keys::object_key(bucket, key);
        let mut head = Head {
            tag: self.inner.stamps.next(),
            null_stamp: st.head.as_ref().and_then(|h| h.null_stamp),
        };
        let mut replaced = None;
        let stamp = if bucket_rec.versioning == VersioningState::Enabled {
            match decode_id(&version.version_id) {
                Some(s) => s,
                None => {
                    // Not one of ours (or empty): give it a fresh id rather than fail the write.
                    let s = self.inner.stamps.next();
                    version.version_id = encode_id(&s);
                    s
                }
            }
        } else {
            version.version_id = NULL_VERSION.to_string();
            if let Some(old_stamp) = head.null_stamp {
                let old_key = keys::version_key(bucket, key, &old_stamp);
                if let Some(old_raw) = self.kv().get(Space::Versions, &old_key)? {
                    let old: VersionRecord = decode(&old_raw)?;
                    if old.is_locked(now_ms(), false) {
                        return Err(MetaError::ObjectLocked);
                    }
                    b.equals(Space::Versions, &old_key, &old_raw);
                    b.delete(Space::Versions, old_key);
                    self.stage_gc(b, old.data.segments.clone(), "overwrite");
                    replaced = Some(old);
                }
            }
            // The null version takes its place in time: it becomes the newest.
            let s = self.inner.stamps.next();
            head.null_stamp = Some(s);
            s
        };
        let vkey = keys::version_key(bucket, key, &stamp);
        b.absent(Space::Versions, &vkey);
        stage_clear_intents(b, &version.data.segments);
        let version_id = version.version_id.clone();
        b.put(Space::Versions, vkey, encode(&version));
        b.unchanged(Space::Heads, &okey, st.head_raw.as_deref());
        b.put(Space::Heads, okey, head.encode());
        Ok(PutOutcome {
            version_id,
            replaced,
        })
    }

    // ----- buckets -----

    /// `BucketAlreadyExists` if the name is taken (the gateway maps it to
    /// BucketAlreadyOwnedByYou when the caller owns it). Name validity is checked by the gateway.
    pub fn create_bucket(&self, rec: BucketRecord) -> Result<()> {
        let mut b = Batch::default();
        b.absent(Space::Buckets, rec.name.as_bytes());
        b.put(Space::Buckets, rec.name.as_bytes().to_vec(), encode(&rec));
        match self.kv().commit(b) {
            Err(MetaError::Conflict) => Err(MetaError::BucketAlreadyExists),
            other => other,
        }
    }
    pub fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        self.kv()
            .get(Space::Buckets, name.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }
    /// All buckets in name order.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.scan_all(Space::Buckets, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Read-modify-write of a bucket record, atomic (retried on conflict).
    pub fn update_bucket<F>(&self, name: &str, mut f: F) -> Result<BucketRecord>
    where
        F: FnMut(&mut BucketRecord) -> Result<()>,
    {
        self.retry(|| {
            let (raw, mut rec) = self.read_bucket(name)?;
            f(&mut rec)?;
            // The name is the key; a renamed record would be unreachable.
            rec.name = name.to_string();
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            b.put(Space::Buckets, name.as_bytes().to_vec(), encode(&rec));
            self.kv().commit(b)?;
            Ok(rec)
        })
    }
    /// `BucketNotEmpty` while any version, delete marker or multipart upload remains.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        self.retry(|| {
            let (raw, _) = self.read_bucket(name)?;
            let objects = KeyRange::prefix(&keys::bucket_prefix(name));
            for space in [Space::Heads, Space::Uploads] {
                if !self
                    .kv()
                    .scan(space, &objects, Direction::Forward, 1)?
                    .is_empty()
                {
                    return Err(MetaError::BucketNotEmpty);
                }
            }
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            // Checked again at commit: a write that raced in makes this a conflict, and the
            // retry then answers BucketNotEmpty.
            b.range_empty(Space::Heads, objects.clone());
            b.range_empty(Space::Uploads, objects);
            b.delete(Space::Buckets, name.as_bytes().to_vec());
            self.kv().commit(b)
        })
    }

    // ----- objects -----

    /// Writes a new version of `key` following the bucket's versioning state: `Enabled` adds a
    /// version with `version.version_id` (which the caller set with `new_version_id`);
    /// `Unversioned`/`Suspended` force the id to `"null"` and replace any existing null version
    /// (its data is queued for GC in the same batch). `precondition` is checked atomically.
    /// A locked null version (Object Lock) cannot be replaced: `ObjectLocked`.
    ///
    /// In an `Enabled` bucket a version id that `new_version_id` did not produce is replaced by
    /// a fresh one (returned in `PutOutcome::version_id`). Versions are ordered by their id, i.e.
    /// by the time the id was generated (S3: the request with the latest timestamp wins).
    pub fn put_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionRecord,
        precondition: &Precondition,
    ) -> Result<PutOutcome> {
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            let st = self.read_object(bucket, key)?;
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            let out = self.stage_new_version(
                &mut b,
                bucket,
                &brec,
                key,
                &st,
                version.clone(),
                precondition,
            )?;
            self.kv().commit(b)?;
            Ok(out)
        })
    }

    /// Finds a version: `None` = latest. Returns (encoded key, raw value, record).
    fn locate_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(Vec<u8>, Vec<u8>, VersionRecord)> {
        let okey = keys::object_key(bucket, key);
        match version_id {
            None => {
                let (k, raw) = self
                    .kv()
                    .scan(
                        Space::Versions,
                        &KeyRange::prefix(&okey),
                        Direction::Forward,
                        1,
                    )?
                    .into_iter()
                    .next()
                    .ok_or(MetaError::NoSuchKey)?;
                let rec = decode(&raw)?;
                Ok((k, raw, rec))
            }
            Some(id) => {
                // The null version can move between the head read and the get: retry a little.
                for _ in 0..3 {
                    let head = self
                        .kv()
                        .get(Space::Heads, &okey)?
                        .map(|r| Head::decode(&r))
                        .transpose()?;
                    let Some(head) = head else {
                        return Err(MetaError::NoSuchKey);
                    };
                    let stamp = self
                        .stamp_of(Some(&head), id)
                        .ok_or(MetaError::NoSuchVersion)?;
                    let vkey = keys::version_key(bucket, key, &stamp);
                    if let Some(raw) = self.kv().get(Space::Versions, &vkey)? {
                        let rec: VersionRecord = decode(&raw)?;
                        // A null stamp must hold the null version and an id stamp its own id.
                        if rec.version_id == id {
                            return Ok((vkey, raw, rec));
                        }
                        return Err(MetaError::NoSuchVersion);
                    }
                    if id != NULL_VERSION {
                        return Err(MetaError::NoSuchVersion);
                    }
                }
                Err(MetaError::NoSuchVersion)
            }
        }
    }

    /// The version with this id, or the latest version (possibly a delete marker) when `None`.
    /// `NoSuchBucket`, `NoSuchKey` (no versions at all / latest requested but none),
    /// `NoSuchVersion`.
    pub fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<VersionRecord> {
        self.require_bucket(bucket)?;
        self.locate_version(bucket, key, version_id)
            .map(|(_, _, rec)| rec)
    }

    /// DeleteObject semantics. Without a version id: Enabled adds a delete marker with a new id;
    /// Suspended removes the null version (if any) and adds a null delete marker; Unversioned
    /// removes the null version (success if there is none). With a version id: removes exactly
    /// that version (`NoSuchVersion` is not an error in S3: returns Ok with `removed: None`).
    /// A removed version's data goes to the GC queue in the same batch. Removing a version
    /// that `is_locked(now, bypass_governance)` fails with `ObjectLocked` and changes nothing.
    ///
    /// `removed` is the record that was removed (a real version or a delete marker); only a
    /// real version has data to queue.
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        owner: &str,
        now: i64,
        bypass_governance: bool,
    ) -> Result<DeleteOutcome> {
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            let st = self.read_object(bucket, key)?;
            let okey = keys::object_key(bucket, key);
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            b.unchanged(Space::Heads, &okey, st.head_raw.as_deref());
            let mut head = Head {
                tag: self.inner.stamps.next(),
                null_stamp: st.head.as_ref().and_then(|h| h.null_stamp),
            };
            // The version to remove, if any: (stamp, record).
            let target: Option<(Stamp, VersionRecord)> = match version_id {
                Some(id) => match self.stamp_of(st.head.as_ref(), id) {
                    Some(stamp) => self
                        .kv()
                        .get(Space::Versions, &keys::version_key(bucket, key, &stamp))?
                        .map(|raw| decode::<VersionRecord>(&raw))
                        .transpose()?
                        .filter(|v| v.version_id == id)
                        .map(|v| (stamp, v)),
                    None => None,
                },
                None if brec.versioning == VersioningState::Enabled => None,
                None => match head.null_stamp {
                    Some(stamp) => self
                        .kv()
                        .get(Space::Versions, &keys::version_key(bucket, key, &stamp))?
                        .map(|raw| decode::<VersionRecord>(&raw))
                        .transpose()?
                        .map(|v| (stamp, v)),
                    None => None,
                },
            };
            let mut removed = None;
            let mut remaining_versions = st.latest.is_some() as usize;
            if let Some((stamp, rec)) = target {
                if rec.is_locked(now, bypass_governance) {
                    return Err(MetaError::ObjectLocked);
                }
                let vkey = keys::version_key(bucket, key, &stamp);
                b.delete(Space::Versions, vkey);
                self.stage_gc(&mut b, rec.data.segments.clone(), "delete");
                if head.null_stamp == Some(stamp) {
                    head.null_stamp = None;
                }
                // Does another version remain? (Decides whether the head goes.)
                let okr = KeyRange::prefix(&okey);
                remaining_versions = self
                    .kv()
                    .scan(Space::Versions, &okr, Direction::Forward, 2)?
                    .len()
                    .saturating_sub(1);
                removed = Some(rec);
            }
            let mut outcome = DeleteOutcome {
                version_id: version_id.map(str::to_string),
                delete_marker: removed.as_ref().is_some_and(|r| r.is_delete_marker),
                removed: removed.clone(),
            };
            if version_id.is_none() && brec.versioning != VersioningState::Unversioned {
                // Enabled: a new marker id; Suspended: a null marker in the newest position.
                let stamp = self.inner.stamps.next();
                let marker_id = if brec.versioning == VersioningState::Enabled {
                    encode_id(&stamp)
                } else {
                    head.null_stamp = Some(stamp);
                    NULL_VERSION.to_string()
                };
                let marker =
                    VersionRecord::delete_marker(marker_id.clone(), owner.to_string(), now);
                let vkey = keys::version_key(bucket, key, &stamp);
                b.absent(Space::Versions, &vkey);
                b.put(Space::Versions, vkey, encode(&marker));
                remaining_versions += 1;
                outcome.version_id = Some(marker_id);
                outcome.delete_marker = true;
            }
            if b.ops.is_empty() {
                // Nothing to remove and nothing to add (unversioned, absent key, unknown id).
                return Ok(outcome);
            }
            if remaining_versions == 0 {
                b.delete(Space::Heads, okey);
            } else {
                b.put(Space::Heads, okey, head.encode());
            }
            self.kv().commit(b)?;
            Ok(outcome)
        })
    }

    /// Atomic read-modify-write of one version (tags, retention, legal hold, metadata).
    /// `None` means the latest version; a delete marker gives `NoSuchKey` (latest) or is passed to
    /// `f` (explicit id) so the caller can answer MethodNotAllowed.
    pub fn update_version<F>(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        mut f: F,
    ) -> Result<VersionRecord>
    where
        F: FnMut(&mut VersionRecord) -> Result<()>,
    {
        self.retry(|| {
            self.require_bucket(bucket)?;
            let (vkey, raw, rec) = self.locate_version(bucket, key, version_id)?;
            if version_id.is_none() && rec.is_delete_marker {
                return Err(MetaError::NoSuchKey);
            }
            let mut new = rec.clone();
            f(&mut new)?;
            // Identity is fixed by the key; the closure may not move the version.
            new.version_id = rec.version_id.clone();
            new.is_delete_marker = rec.is_delete_marker;
            let mut b = Batch::default();
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.kv().commit(b)?;
            Ok(new)
        })
    }

    // ----- multipart -----

    pub fn create_upload(&self, bucket: &str, upload: UploadRecord) -> Result<()> {
        self.retry(|| {
            let (braw, _) = self.read_bucket(bucket)?;
            let ukey = keys::upload_key(bucket, &upload.key, &upload.upload_id);
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            if self.kv().get(Space::Uploads, &ukey)?.is_some() {
                return Err(MetaError::AlreadyExists);
            }
            b.absent(Space::Uploads, &ukey);
            b.put(
                Space::Uploads,
                ukey,
                encode_upload(&self.inner.stamps.next(), &upload),
            );
            self.kv().commit(b)
        })
    }

    fn read_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(Vec<u8>, Vec<u8>, UploadRecord)> {
        self.require_bucket(bucket)?;
        let ukey = keys::upload_key(bucket, key, upload_id);
        let raw = self
            .kv()
            .get(Space::Uploads, &ukey)?
            .ok_or(MetaError::NoSuchUpload)?;
        let rec = decode_upload(&raw)?;
        Ok((ukey, raw, rec))
    }

    fn read_parts(&self, bucket: &str, upload_id: &str) -> Result<Vec<(Vec<u8>, PartRecord)>> {
        self.scan_all(Space::Parts, keys::part_prefix(bucket, upload_id))?
            .into_iter()
            .map(|(k, v)| decode(&v).map(|p| (k, p)))
            .collect()
    }

    pub fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        self.read_upload(bucket, key, upload_id)
            .map(|(_, _, rec)| rec)
    }
    /// Stores a part; a part with the same number is replaced and its data queued for GC.
    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartRecord,
    ) -> Result<()> {
        self.retry(|| {
            let (ukey, uraw, urec) = self.read_upload(bucket, key, upload_id)?;
            let pkey = keys::part_key(bucket, upload_id, part.part_number);
            let old_raw = self.kv().get(Space::Parts, &pkey)?;
            let mut b = Batch::default();
            b.equals(Space::Uploads, &ukey, &uraw);
            // A fresh tag: a completion or abort that read the parts before this one fails.
            b.put(
                Space::Uploads,
                ukey,
                encode_upload(&self.inner.stamps.next(), &urec),
            );
            b.unchanged(Space::Parts, &pkey, old_raw.as_deref());
            if let Some(old_raw) = &old_raw {
                let old: PartRecord = decode(old_raw)?;
                self.stage_gc(&mut b, vec![old.segment], "part-replaced");
            }
            stage_clear_intents(&mut b, std::slice::from_ref(&part.segment));
            b.put(Space::Parts, pkey, encode(&part));
            self.kv().commit(b)
        })
    }
    /// Parts numbered above `part_number_marker`, at most `max_parts`. `next_part_number_marker`
    /// is the last part number returned (as S3 reports it), `None` when none is returned.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<ListPartsPage> {
        self.read_upload(bucket, key, upload_id)?;
        let mut page = ListPartsPage::default();
        let Some(first) = part_number_marker.checked_add(1) else {
            return Ok(page);
        };
        let range = KeyRange::new(
            keys::part_key(bucket, upload_id, first),
            kv::prefix_successor(&keys::part_prefix(bucket, upload_id)),
        );
        let rows = self.kv().scan(
            Space::Parts,
            &range,
            Direction::Forward,
            max_parts.saturating_add(1),
        )?;
        page.is_truncated = rows.len() > max_parts;
        for (_, v) in rows.into_iter().take(max_parts) {
            page.parts.push(decode(&v)?);
        }
        page.next_part_number_marker = page.parts.last().map(|p| p.part_number);
        Ok(page)
    }
    /// CompleteMultipartUpload: checks `requested` (part number, ETag without quotes) against the
    /// stored parts (`InvalidPart`, `InvalidPartOrder`, `EntityTooSmall` for a non-last part under
    /// `MIN_PART_SIZE`), builds the version with `build(upload, chosen_parts)`, writes it like
    /// `put_version` (same versioning/precondition rules), queues unused parts for GC and removes
    /// the upload — all in one batch.
    pub fn complete_upload<F>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[(u32, String)],
        precondition: &Precondition,
        build: F,
    ) -> Result<PutOutcome>
    where
        F: FnOnce(&UploadRecord, &[PartRecord]) -> Result<VersionRecord>,
    {
        if requested.is_empty() {
            return Err(MetaError::InvalidPart("no parts given".into()));
        }
        if requested.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(MetaError::InvalidPartOrder);
        }
        // `build` is FnOnce: build once, then retry only the commit with re-validated state.
        let mut build = Some(build);
        let mut built: Option<(Vec<PartRecord>, VersionRecord)> = None;
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            let (ukey, uraw, urec) = self.read_upload(bucket, key, upload_id)?;
            let stored = self.read_parts(bucket, upload_id)?;
            let by_number: std::collections::BTreeMap<u32, &PartRecord> =
                stored.iter().map(|(_, p)| (p.part_number, p)).collect();
            let mut chosen = Vec::with_capacity(requested.len());
            for (i, (number, etag)) in requested.iter().enumerate() {
                let part = by_number
                    .get(number)
                    .filter(|p| etag_eq(&p.etag, etag))
                    .ok_or_else(|| MetaError::InvalidPart(format!("part {number}")))?;
                if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
                    return Err(MetaError::EntityTooSmall(*number));
                }
                chosen.push((*part).clone());
            }
            let version = match &built {
                // Rebuilt only if the parts changed under us (a racing put_part).
                Some((parts, v)) if *parts == chosen => v.clone(),
                _ => {
                    // A part was replaced between our reads: the client raced itself.
                    let f = build.take().ok_or_else(|| {
                        MetaError::InvalidPart("parts changed during completion".into())
                    })?;
                    let v = f(&urec, &chosen)?;
                    built = Some((chosen.clone(), v.clone()));
                    v
                }
            };
            let st = self.read_object(bucket, key)?;
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            b.equals(Space::Uploads, &ukey, &uraw);
            let out =
                self.stage_new_version(&mut b, bucket, &brec, key, &st, version, precondition)?;
            let used: std::collections::BTreeSet<u32> =
                chosen.iter().map(|p| p.part_number).collect();
            let unused: Vec<Segment> = stored
                .iter()
                .filter(|(_, p)| !used.contains(&p.part_number))
                .map(|(_, p)| p.segment.clone())
                .collect();
            self.stage_gc(&mut b, unused, "multipart-unused-part");
            for (pkey, _) in &stored {
                b.delete(Space::Parts, pkey.clone());
            }
            b.delete(Space::Uploads, ukey);
            self.kv().commit(b)?;
            Ok(out)
        })
    }
    /// Removes the upload and queues all its parts for GC.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.retry(|| {
            let (ukey, uraw, _) = self.read_upload(bucket, key, upload_id)?;
            let stored = self.read_parts(bucket, upload_id)?;
            let mut b = Batch::default();
            b.equals(Space::Uploads, &ukey, &uraw);
            let segments = stored.iter().map(|(_, p)| p.segment.clone()).collect();
            self.stage_gc(&mut b, segments, "abort");
            for (pkey, _) in stored {
                b.delete(Space::Parts, pkey);
            }
            b.delete(Space::Uploads, ukey);
            self.kv().commit(b)
        })
    }

    // ----- garbage collection queue -----

    /// Up to `limit` queued items, oldest first.
    pub fn gc_pending(&self, limit: usize) -> Result<Vec<GcItem>> {
        self.kv()
            .scan(
                Space::Gc,
                &KeyRange::new(Vec::new(), None),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Removes items whose chunks have been deleted.
    pub fn gc_ack(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        for s in seqs {
            b.delete(Space::Gc, s.to_be_bytes().to_vec());
        }
        self.kv().commit(b)
    }
    /// Records, durably, that chunks of `segment.blob` are about to be written (`segment.len` is an
    /// upper bound of the bytes). The commit that references the blob (`put_version`, `put_part`,
    /// `complete_upload`) or `gc_enqueue` removes the intent in its own batch; an intent that
    /// outlives its writer (the process died mid-request) is turned into a GC item by
    /// [`MetaStore::sweep_interrupted_writes`], so no chunk is ever left unreferenced for good.
    pub fn begin_write(&self, segment: &Segment, now: i64) -> Result<()> {
        let mut b = Batch::default();
        b.put(
            Space::Sys,
            intent_key(&segment.blob),
            encode(&(now, segment.clone())),
        );
        self.kv().commit(b)
    }

    /// Queues for GC the blobs of every write intent begun before `started_before` (Unix ms)
    /// and never committed. Safe only for intents whose writers are gone: call it at start-up with
    /// the start time (one process owns the store), or with an age far beyond any request.
    /// Returns how many intents were swept.
    pub fn sweep_interrupted_writes(&self, started_before: i64) -> Result<usize> {
        let range = KeyRange::new(INTENT_PREFIX.to_vec(), kv::prefix_successor(INTENT_PREFIX));
        let mut swept = 0;
        // Bounded: at most 1000 batches of 256 per call.
        for _ in 0..1000 {
            let page = self
                .kv()
                .scan(Space::Sys, &range, Direction::Forward, 256)?;
            let mut b = Batch::default();
            let mut stale = Vec::new();
            for (k, v) in &page {
                let (started, seg): (i64, Segment) = decode(v)?;
                if started < started_before {
                    b.equals(Space::Sys, k, v);
                    b.delete(Space::Sys, k.clone());
                    stale.push(seg);
                }
            }
            if stale.is_empty() {
                break;
            }
            swept += stale.len();
            self.stage_gc(&mut b, stale, "interrupted-write");
            self.kv().commit(b)?;
            if page.len() < 256 {
                break;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "queued the chunks of interrupted writes for GC");
        }
        Ok(swept)
    }

    /// Write intents not yet committed or swept (for tests and the consistency check).
    pub fn pending_writes(&self) -> Result<usize> {
        let range = KeyRange::new(INTENT_PREFIX.to_vec(), kv::prefix_successor(INTENT_PREFIX));
        Ok(self
            .kv()
            .scan(Space::Sys, &range, Direction::Forward, usize::MAX)?
            .len())
    }

    /// Queues segments written but never committed (e.g. a PUT that failed after writing chunks).
    pub fn gc_enqueue(&self, segments: Vec<Segment>, reason: &str) -> Result<()> {
        self.retry(|| {
            let mut b = Batch::default();
            stage_clear_intents(&mut b, &segments);
            self.stage_gc(&mut b, segments.clone(), reason);
            if b.ops.is_empty() {
                return Ok(());
            }
            self.kv().commit(b)
        })
    }

    // ----- users and access keys -----

    /// Creates or replaces the user record.
    pub fn put_user(&self, user: UserRecord) -> Result<()> {
        let mut b = Batch::default();
        b.put(Space::Users, user.name.as_bytes().to_vec(), encode(&user));
        self.kv().commit(b)
    }
    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.kv()
            .get(Space::Users, name.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.scan_all(Space::Users, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Removes the user and all its access keys (`NoSuchUser`).
    pub fn delete_user(&self, name: &str) -> Result<()> {
        self.retry(|| {
            let raw = self
                .kv()
                .get(Space::Users, name.as_bytes())?
                .ok_or(MetaError::NoSuchUser)?;
            let mut b = Batch::default();
            b.equals(Space::Users, name.as_bytes(), &raw);
            b.delete(Space::Users, name.as_bytes().to_vec());
            for (k, v) in self.scan_all(Space::AccessKeys, Vec::new())? {
                let rec: AccessKeyRecord = decode(&v)?;
                if rec.user == name {
                    b.equals(Space::AccessKeys, &k, &v);
                    b.delete(Space::AccessKeys, k);
                }
            }
            self.kv().commit(b)
        })
    }
    /// Creates or replaces the access key record (revocation is a replace with `revoked`).
    pub fn put_access_key(&self, key: AccessKeyRecord) -> Result<()> {
        let mut b = Batch::default();
        b.put(
            Space::AccessKeys,
            key.access_key.as_bytes().to_vec(),
            encode(&key),
        );
        self.kv().commit(b)
    }
    pub fn get_access_key(&self, access_key: &str) -> Result<Option<AccessKeyRecord>> {
        self.kv()
            .get(Space::AccessKeys, access_key.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }
    pub fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.scan_all(Space::AccessKeys, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Every entry whose key starts with `prefix`, read page by page.
    fn scan_all(&self, space: Space, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        const PAGE: usize = 1000;
        let end = kv::prefix_successor(&prefix);
        let mut start = prefix;
        let mut out = Vec::new();
        loop {
            let rows = self.kv().scan(
                space,
                &KeyRange::new(start, end.clone()),
                Direction::Forward,
                PAGE,
            )?;
            let full = rows.len() == PAGE;
            let Some((last, _)) = rows.last() else { break };
            start = last.clone();
            start.push(0);
            out.extend(rows);
            if !full {
                break;
            }
        }
        Ok(out)
    }
}
