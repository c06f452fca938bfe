//! The metadata tier: the single source of truth for what exists.
//!
//! Layers, bottom up:
//! - [`kv`]: a narrow ordered key-value interface (get, range scan, atomic batch with
//!   compare-and-set) and its embedded RocksDB implementation.
//! - [`MetaStore`]: buckets, object versions, multipart state, listings, the GC queue and
//!   users/keys, written only against the `kv` interface.

pub mod types;

pub use types::*;

use std::path::Path;

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

/// The metadata store. Cheap to clone (shared handle); safe to use from many threads.
#[derive(Clone)]
pub struct MetaStore {}

impl MetaStore {
    /// Opens (creating if needed) the store in `dir` (a RocksDB directory).
    pub fn open(_dir: &Path) -> Result<Self> {
        todo!()
    }

    /// A new unique, time-ordered version id (URL-safe, at most 32 characters).
    pub fn new_version_id(&self) -> String {
        todo!()
    }

    /// A new unique multipart upload id (URL-safe).
    pub fn new_upload_id(&self) -> String {
        todo!()
    }

    // ----- buckets -----

    /// `BucketAlreadyExists` if the name is taken (the gateway maps it to
    /// BucketAlreadyOwnedByYou when the caller owns it). Name validity is checked by the gateway.
    pub fn create_bucket(&self, _rec: BucketRecord) -> Result<()> {
        todo!()
    }
    pub fn get_bucket(&self, _name: &str) -> Result<Option<BucketRecord>> {
        todo!()
    }
    /// All buckets in name order.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        todo!()
    }
    /// Read-modify-write of a bucket record, atomic (retried on conflict).
    pub fn update_bucket<F>(&self, _name: &str, _f: F) -> Result<BucketRecord>
    where
        F: FnMut(&mut BucketRecord) -> Result<()>,
    {
        todo!()
    }
    /// `BucketNotEmpty` while any version, delete marker or multipart upload remains.
    pub fn delete_bucket(&self, _name: &str) -> Result<()> {
        todo!()
    }

    // ----- objects -----

    /// Writes a new version of `key` following the bucket's versioning state: `Enabled` adds a
    /// version with `version.version_id` (which the caller set with `new_version_id`);
    /// `Unversioned`/`Suspended` force the id to `"null"` and replace any existing null version
    /// (its data is queued for GC in the same batch). `precondition` is checked atomically.
    /// A locked null version (Object Lock) cannot be replaced: `ObjectLocked`.
    pub fn put_version(
        &self,
        _bucket: &str,
        _key: &str,
        _version: VersionRecord,
        _precondition: &Precondition,
    ) -> Result<PutOutcome> {
        todo!()
    }

    /// The version with this id, or the latest version (possibly a delete marker) when `None`.
    /// `NoSuchBucket`, `NoSuchKey` (no versions at all / latest requested but none),
    /// `NoSuchVersion`.
    pub fn get_version(
        &self,
        _bucket: &str,
        _key: &str,
        _version_id: Option<&str>,
    ) -> Result<VersionRecord> {
        todo!()
    }

    /// DeleteObject semantics. Without a version id: Enabled adds a delete marker with a new id;
    /// Suspended removes the null version (if any) and adds a null delete marker; Unversioned
    /// removes the null version (success if there is none). With a version id: removes exactly
    /// that version (`NoSuchVersion` is not an error in S3: returns Ok with `removed: None`).
    /// A removed version's data goes to the GC queue in the same batch. Removing a version
    /// that `is_locked(now, bypass_governance)` fails with `ObjectLocked` and changes nothing.
    pub fn delete_object(
        &self,
        _bucket: &str,
        _key: &str,
        _version_id: Option<&str>,
        _owner: &str,
        _now: i64,
        _bypass_governance: bool,
    ) -> Result<DeleteOutcome> {
        todo!()
    }

    /// Atomic read-modify-write of one version (tags, retention, legal hold, metadata).
    /// `None` means the latest version; a delete marker gives `NoSuchKey` (latest) or is passed to
    /// `f` (explicit id) so the caller can answer MethodNotAllowed.
    pub fn update_version<F>(
        &self,
        _bucket: &str,
        _key: &str,
        _version_id: Option<&str>,
        _f: F,
    ) -> Result<VersionRecord>
    where
        F: FnMut(&mut VersionRecord) -> Result<()>,
    {
        todo!()
    }

    /// ListObjects (v1/v2) core: keys in UTF-8 byte order, latest versions only, delete markers
    /// skipped, common prefixes rolled up (and skipped over by seeking, not key by key).
    pub fn list_objects(&self, _bucket: &str, _p: &ListObjectsParams) -> Result<ListObjectsPage> {
        todo!()
    }

    /// ListObjectVersions core: keys in order, versions newest first, delete markers included.
    pub fn list_versions(&self, _bucket: &str, _p: &ListVersionsParams) -> Result<ListVersionsPage> {
        todo!()
    }

    // ----- multipart -----

    pub fn create_upload(&self, _bucket: &str, _upload: UploadRecord) -> Result<()> {
        todo!()
    }
    pub fn get_upload(&self, _bucket: &str, _key: &str, _upload_id: &str) -> Result<UploadRecord> {
        todo!()
    }
    /// Stores a part; a part with the same number is replaced and its data queued for GC.
    pub fn put_part(&self, _bucket: &str, _key: &str, _upload_id: &str, _part: PartRecord) -> Result<()> {
        todo!()
    }
    pub fn list_parts(
        &self,
        _bucket: &str,
        _key: &str,
        _upload_id: &str,
        _part_number_marker: u32,
        _max_parts: usize,
    ) -> Result<ListPartsPage> {
        todo!()
    }
    pub fn list_uploads(&self, _bucket: &str, _p: &ListUploadsParams) -> Result<ListUploadsPage> {
        todo!()
    }
    /// CompleteMultipartUpload: checks `requested` (part number, ETag without quotes) against the
    /// stored parts (`InvalidPart`, `InvalidPartOrder`, `EntityTooSmall` for a non-last part under
    /// `MIN_PART_SIZE`), builds the version with `build(upload, chosen_parts)`, writes it like
    /// `put_version` (same versioning/precondition rules), queues unused parts for GC and removes
    /// the upload — all in one batch.
    pub fn complete_upload<F>(
        &self,
        _bucket: &str,
        _key: &str,
        _upload_id: &str,
        _requested: &[(u32, String)],
        _precondition: &Precondition,
        _build: F,
    ) -> Result<PutOutcome>
    where
        F: FnOnce(&UploadRecord, &[PartRecord]) -> Result<VersionRecord>,
    {
        todo!()
    }
    /// Removes the upload and queues all its parts for GC.
    pub fn abort_upload(&self, _bucket: &str, _key: &str, _upload_id: &str) -> Result<()> {
        todo!()
    }

    // ----- garbage collection queue -----

    /// Up to `limit` queued items, oldest first.
    pub fn gc_pending(&self, _limit: usize) -> Result<Vec<GcItem>> {
        todo!()
    }
    /// Removes items whose chunks have been deleted.
    pub fn gc_ack(&self, _seqs: &[u64]) -> Result<()> {
        todo!()
    }
    /// Queues segments written but never committed (e.g. a PUT that failed after writing chunks).
    pub fn gc_enqueue(&self, _segments: Vec<Segment>, _reason: &str) -> Result<()> {
        todo!()
    }

    // ----- users and access keys -----

    pub fn put_user(&self, _user: UserRecord) -> Result<()> {
        todo!()
    }
    pub fn get_user(&self, _name: &str) -> Result<Option<UserRecord>> {
        todo!()
    }
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        todo!()
    }
    /// Removes the user and all its access keys (`NoSuchUser`).
    pub fn delete_user(&self, _name: &str) -> Result<()> {
        todo!()
    }
    pub fn put_access_key(&self, _key: AccessKeyRecord) -> Result<()> {
        todo!()
    }
    pub fn get_access_key(&self, _access_key: &str) -> Result<Option<AccessKeyRecord>> {
        todo!()
    }
    pub fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        todo!()
    }

    // ----- backup -----

    /// Consistent online snapshot (RocksDB checkpoint) into `dir`, which must not exist.
    pub fn backup(&self, _dir: &Path) -> Result<()> {
        todo!()
    }
    /// Replaces the store at `db_dir` with the snapshot in `backup_dir` (server stopped).
    pub fn restore(_backup_dir: &Path, _db_dir: &Path) -> Result<()> {
        todo!()
    }
}
