//! Records stored in the metadata tier. These are the contract between the gateway and the
//! metadata crate: the gateway builds them, the metadata crate stores, orders and versions them.
//!
//! Times are Unix milliseconds (UTC). Records are stored as self-describing MessagePack maps
//! (field names included, see `docs/metadata-format.md`): a field added later must carry
//! `#[serde(default)]` so that records written before it still decode; unknown fields are
//! ignored, so an older reader skips fields it does not know.

use serde::{Deserialize, Serialize};

/// Unique id of one written byte stream (one PutObject body, one UploadPart body, one copy).
/// Chunks are addressed as (blob, index); a blob is never rewritten, so an AES-GCM nonce derived
/// from (blob, index) is never reused under one data key.
pub type BlobId = [u8; 16];

/// The version id of the `null` version (unversioned and suspended buckets).
pub const NULL_VERSION: &str = "null";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VersioningState {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    Governance,
    Compliance,
}

/// Default retention of an Object Lock enabled bucket (`ObjectLockConfiguration`). Build it
/// with [`DefaultRetention::new`], which enforces S3's bounds (see `lock.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    /// Exactly one of days (1..=36500) / years (1..=100) is set, as S3 requires.
    pub days: Option<u32>,
    pub years: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub mode: LockMode,
    /// Unix milliseconds, UTC.
    pub retain_until: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    /// Canonical id of the owner ([`UserRecord::id`]), never the name: a re-created name is a
    /// different account.
    pub owner: String,
    pub created: i64,
    pub region: String,
    pub versioning: VersioningState,
    pub object_lock_enabled: bool,
    pub default_retention: Option<DefaultRetention>,
    /// Unused (configurations written before the lifecycle engine); see `lifecycle`.
    pub lifecycle_xml: Option<String>,
    /// The bucket's lifecycle configuration, validated by the engine.
    #[serde(default)]
    pub lifecycle: Option<crate::lifecycle::LifecycleConfig>,
    pub tags: Vec<(String, String)>,
    /// The bucket's current key-encryption key: its id, and its slot in the key store
    /// (`kek_slot`), where it lives wrapped by the master key. `wrapped_kek` is always empty
    /// (before the key store, the wrapped KEK was kept here; such stores are refused at start).
    pub kek_id: String,
    #[serde(with = "serde_bytes")]
    pub wrapped_kek: Vec<u8>,
    /// Default encryption of new objects (PutBucketEncryption).
    #[serde(default)]
    pub encryption: Option<BucketEncryption>,
    /// CORS rules (PutBucketCors), in order.
    #[serde(default)]
    pub cors: Vec<CorsRule>,
    /// Server access logging (PutBucketLogging).
    #[serde(default)]
    pub logging: Option<LoggingConfig>,
    #[serde(default)]
    pub kek_slot: Option<u64>,
    /// KEKs replaced by a rotation whose DEKs are still being re-wrapped (at most one normally).
    #[serde(default)]
    pub previous_keks: Vec<KekRef>,
    /// Set while the bucket is being destroyed (bucket purge, account closure): read-only.
    #[serde(default)]
    pub closing: Option<BucketClosing>,
    /// Retention presets applied with `strata admin retention apply` (see docs/retention.md).
    #[serde(default)]
    pub retention_rules: Vec<RetentionRule>,
    /// The bucket's ACL (PutBucketAcl, CreateBucket's canned ACL or grants); `None`: `private`
    /// (the owner's FULL_CONTROL only), which every bucket had before ACLs were stored.
    #[serde(default)]
    pub acl: Option<crate::acl::Acl>,
    /// The bucket policy (PutBucketPolicy), the JSON document as put (checked then).
    #[serde(default)]
    pub policy: Option<String>,
    /// Public Access Block (PutPublicAccessBlock); `None`: none configured (all four off).
    #[serde(default)]
    pub public_access_block: Option<crate::acl::PublicAccessBlock>,
    /// Object Ownership (PutBucketOwnershipControls, CreateBucket's `x-amz-object-ownership`);
    /// `None`: no controls, which behaves as `ObjectWriter` (buckets created before them).
    #[serde(default)]
    pub ownership: Option<crate::acl::ObjectOwnership>,
}

/// A KEK by id and key-store slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekRef {
    pub id: String,
    pub slot: u64,
}

/// Why and since when a bucket is being destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketClosing {
    /// `BucketPurge` or `AccountClosure`.
    pub reason: DeleteReason,
    pub requested_ms: i64,
    /// Destruction starts at this time (the end of the account-closure grace period; the request
    /// time for a purge). Until then the bucket is read-only and can be restored.
    pub destroy_after_ms: i64,
    /// Who asked (user id of the admin).
    pub by: String,
}

/// A retention preset applied to a bucket: expire (destroy) what `prefix` holds after `days`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    /// Lifecycle rule id (`strata-retention-<preset>[-<n>]`).
    pub id: String,
    pub preset: String,
    pub prefix: String,
    pub days: u32,
    pub applied_ms: i64,
}

/// A run of chunks written as one blob: a whole single-part object, or one multipart part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(with = "serde_bytes")]
    pub blob: BlobId,
    /// Plaintext length of the segment in bytes.
    pub len: u64,
    /// Plaintext size of every chunk but the last.
    pub chunk_size: u32,
    /// Id of the [`LayoutRecord`] (placement geometry) the chunks were written with.
    #[serde(default)]
    pub layout: u32,
}

impl Segment {
    pub fn chunk_count(&self) -> u32 {
        if self.len == 0 || self.chunk_size == 0 {
            0
        } else {
            self.len.div_ceil(self.chunk_size as u64) as u32
        }
    }
}

/// Where a version's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataLayout {
    /// The version's data key: its id and its slot in the key store (`dek_slot`), where it
    /// lives wrapped by a KEK of the bucket. `kek_id` names the KEK current when the key was
    /// written (the slot records the one that wraps it now). No key for delete markers and
    /// empty objects (`dek_slot: None`). `wrapped_dek` is always empty (see `BucketRecord`).
    pub kek_id: String,
    pub dek_id: String,
    #[serde(with = "serde_bytes")]
    pub wrapped_dek: Vec<u8>,
    /// Segments in object order; a multipart object has one per part.
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub dek_slot: Option<u64>,
}

impl DataLayout {
    /// The data key as a key-store reference, if the version has one.
    pub fn dek_ref(&self) -> Option<KeyRef> {
        self.dek_slot.map(|slot| KeyRef {
            class: KeyClass::Dek,
            slot,
            id: self.dek_id.clone(),
        })
    }
}

/// Per-part summary kept on a completed multipart object (for `partNumber` GET/HEAD and
/// composite checksums).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSummary {
    pub part_number: u32,
    pub size: u64,
    pub etag: String,
    /// The part's own checksum (algorithm, base64), for GetObjectAttributes' ObjectParts.
    #[serde(default)]
    pub checksum: Option<(String, String)>,
}

/// What a version (or upload) answers in its headers besides its bytes: the content headers, and
/// the server-side encryption it was written with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContentHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `None`: written before the SSE API existed, shown as SSE-S3 (every object is encrypted).
    #[serde(default)]
    pub sse: Option<SseRecord>,
}

/// The server-side encryption API's modes (every version is encrypted at rest whatever the mode;
/// the mode says which keys are needed to read it, see `docs/sse.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SseMode {
    /// `AES256`: the bucket KEK's DEK alone.
    #[default]
    S3,
    /// `aws:kms`: the DEK bound to an operator-managed KMS key.
    Kms,
    /// SSE-C: the DEK bound to the customer's key, which is never stored.
    Customer,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SseRecord {
    pub mode: SseMode,
    /// Id of the [`KmsKeyRecord`] (SSE-KMS).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// The encryption context as the client sent it (base64 of a JSON object), SSE-KMS.
    #[serde(default)]
    pub kms_context: Option<String>,
    #[serde(default)]
    pub bucket_key: bool,
    /// SSE-C: random salt and HMAC-SHA256(salt, customer key) to recognise the key.
    #[serde(default, with = "serde_bytes")]
    pub customer_salt: Vec<u8>,
    #[serde(default, with = "serde_bytes")]
    pub customer_mac: Vec<u8>,
}

/// An operator-managed KMS key (`strata admin kms create NAME`): a record that names a KEK of the
/// key store (see docs/keys.md, docs/sse.md). SSE-KMS versions bind their DEK to it; a disabled key refuses new writes
/// and reads of those versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKeyRecord {
    /// Random id (32 hex), shown as `arn:aws:kms:REGION:000000000000:key/ID`.
    pub id: String,
    /// Unique alias (`alias/NAME`).
    pub name: String,
    pub created: i64,
    pub enabled: bool,
    #[serde(default)]
    pub disabled_at: Option<i64>,
    /// The KMS key's KEK: a KEK of the key store (`kek_slot`, wrapped by the master key like a
    /// bucket's KEK and re-wrapped by a master rotation); the record holds no key material.
    pub kek_id: String,
    #[serde(default)]
    pub kek_slot: Option<u64>,
}

impl KmsKeyRecord {
    /// The key-store reference of its KEK.
    pub fn kek_ref(&self) -> Option<KeyRef> {
        self.kek_slot.map(|slot| KeyRef {
            class: KeyClass::Kek,
            slot,
            id: self.kek_id.clone(),
        })
    }
}

/// A bucket's default encryption (PutBucketEncryption), applied to writes that ask for none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BucketEncryption {
    pub mode: SseMode,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub bucket_key: bool,
}

/// One CORS rule of a bucket (PutBucketCors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// One request to a bucket with logging enabled, staged durably until the `access-log` worker
/// writes it into a log object of the target bucket (S3 server access log format). Never holds a
/// secret: the URI's signature and credential parameters are redacted before it is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccessLogEntry {
    /// The bucket the request addressed, and its owner's canonical id.
    pub bucket: String,
    pub bucket_owner: String,
    /// Where the line goes.
    pub target_bucket: String,
    pub target_prefix: String,
    /// Unix ms when the request arrived.
    pub time: i64,
    pub remote_ip: String,
    /// The access key the signature was verified with (the worker shows its user's id).
    pub access_key: Option<String>,
    pub request_id: String,
    /// `REST.GET.OBJECT`, `REST.PUT.PART`, ...
    pub operation: String,
    pub key: Option<String>,
    /// `METHOD /path?query HTTP/1.1`, redacted and cut.
    pub request_uri: String,
    pub status: u16,
    pub error_code: Option<String>,
    pub bytes_sent: Option<u64>,
    pub object_size: Option<u64>,
    pub total_ms: u64,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub version_id: Option<String>,
    /// `SigV4` when signed; `AuthHeader` / `QueryString`.
    pub signature_version: Option<String>,
    pub auth_type: Option<String>,
    pub host_header: Option<String>,
}

/// Where a bucket's server access logs go (PutBucketLogging).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoggingConfig {
    pub target_bucket: String,
    pub target_prefix: String,
}

/// One version of an object (or a delete marker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// `"null"` or a generated, time-ordered id (see `MetaStore::new_version_id`).
    pub version_id: String,
    pub is_delete_marker: bool,
    pub last_modified: i64,
    pub size: u64,
    /// Hex MD5 (single part) or `hex-N` (multipart), without quotes.
    pub etag: String,
    /// (algorithm as S3 names it, e.g. "CRC32C", base64 value).
    pub checksum: Option<(String, String)>,
    /// "FULL_OBJECT" or "COMPOSITE" when a checksum is present.
    pub checksum_type: Option<String>,
    pub content: ContentHeaders,
    /// `x-amz-meta-*` without the prefix, lower-cased names, in the order received.
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub storage_class: String,
    pub owner: String,
    pub data: DataLayout,
    pub parts: Vec<PartSummary>,
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    /// Archive-tier state of a version in an archive class (container extent, restore).
    #[serde(default)]
    pub archive: Option<crate::archive::ArchiveState>,
    /// The version's ACL (PutObjectAcl, the writer's canned ACL or grants); `None`: `private`
    /// for its owner.
    #[serde(default)]
    pub acl: Option<crate::acl::Acl>,
    /// Where a migration job copied this version from (`strata admin migration`).
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// The source of a migrated version, recorded with it: what the source said about the object
/// (its ETag, Last-Modified, version id) and which job copied it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Origin {
    pub job: String,
    /// The source's ETag, without quotes.
    pub etag: String,
    /// The source's Last-Modified as the source sent it (HTTP date or ISO 8601).
    pub last_modified: String,
    /// The source's version id (`None` for a source without versioning).
    #[serde(default)]
    pub version_id: Option<String>,
}

impl VersionRecord {
    /// A delete marker with the given version id.
    pub fn delete_marker(version_id: String, owner: String, now: i64) -> Self {
        VersionRecord {
            version_id,
            is_delete_marker: true,
            last_modified: now,
            size: 0,
            etag: String::new(),
            checksum: None,
            checksum_type: None,
            content: ContentHeaders::default(),
            user_metadata: Vec::new(),
            tags: Vec::new(),
            storage_class: "STANDARD".into(),
            owner,
            data: DataLayout::default(),
            parts: Vec::new(),
            retention: None,
            legal_hold: false,
            archive: None,
            acl: None,
            origin: None,
        }
    }
}

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub key: String,
    pub initiated: i64,
    pub owner: String,
    /// Data key shared by all parts (each part is its own blob, so nonces never repeat), in
    /// key-store slot `dek_slot` (see `DataLayout`).
    pub kek_id: String,
    pub dek_id: String,
    #[serde(with = "serde_bytes")]
    pub wrapped_dek: Vec<u8>,
    #[serde(default)]
    pub dek_slot: Option<u64>,
    pub content: ContentHeaders,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub storage_class: String,
    /// Checksum algorithm the client declared at CreateMultipartUpload, if any.
    pub checksum_algorithm: Option<String>,
    pub checksum_type: Option<String>,
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    /// The ACL CreateMultipartUpload asked for, given to the completed version.
    #[serde(default)]
    pub acl: Option<crate::acl::Acl>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    pub last_modified: i64,
    pub segment: Segment,
    pub checksum: Option<(String, String)>,
}

/// A multipart upload that was completed, remembered for a bounded time so that a retried
/// CompleteMultipartUpload (an SDK whose response was lost) gets the same answer instead of
/// `NoSuchUpload`. Written in the completion's batch; removed by the `completed-uploads` worker
/// after `expires`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedUpload {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// The part list the completion used: (part number, ETag without quotes). A retry must list
    /// the same parts.
    pub parts: Vec<(u32, String)>,
    pub version_id: String,
    pub etag: String,
    pub size: u64,
    pub checksum: Option<(String, String)>,
    pub checksum_type: Option<String>,
    pub completed: i64,
    /// Unix ms after which the record may be dropped.
    pub expires: i64,
    /// The encryption the completed version answers with.
    #[serde(default)]
    pub sse: Option<SseRecord>,
}

/// Which kind of key a [`KeyRef`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyClass {
    Kek,
    Dek,
}

/// A key in the key store: its slot and its id (hex), which the slot must still hold (a slot is
/// reused after a destruction). Never key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub class: KeyClass,
    pub slot: u64,
    pub id: String,
}

/// Why a version (or the marker of a delete) is asked for: carried to the log and, when data is
/// really destroyed, to the destruction record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DeleteReason {
    /// An S3 DeleteObject/DeleteObjects request.
    UserRequest { request_id: Option<String> },
    /// A lifecycle rule fired.
    Lifecycle { rule_id: String },
    /// The version's retention period ended (retention-driven destruction): a retention
    /// preset's lifecycle rule fired.
    RetentionEnd {
        #[serde(default)]
        rule_id: String,
    },
    /// The whole bucket is being destroyed.
    BucketPurge,
    /// The owner's account was closed and its grace period ended.
    AccountClosure,
    /// An operator verb.
    Admin { request_id: Option<String> },
}

impl DeleteReason {
    /// Deletes that a closing (read-only) bucket still accepts: its own destruction.
    pub fn is_purge(&self) -> bool {
        matches!(
            self,
            DeleteReason::BucketPurge | DeleteReason::AccountClosure
        )
    }
}

/// Who asked for a deletion: a user (by id) and the access key it signed with, and/or an engine
/// job acting on its own or for that user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteActor {
    pub user: Option<String>,
    pub access_key: Option<String>,
    pub engine: Option<String>,
}

/// What the destruction record of a removed version needs, captured when the version is removed
/// (the record itself is written once the key and shards are destroyed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyedVersion {
    /// Unique id of this destruction (idempotency key of the record).
    pub op_id: String,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<(String, String)>,
    pub storage_class: String,
    pub written_ms: i64,
    /// When the version was removed from the metadata.
    pub removed_ms: i64,
    pub reason: DeleteReason,
    pub actor: DeleteActor,
    /// An archived version's sealed extent: it stays in its shared container (unreadable, the
    /// key is destroyed) until compaction rewrites the container; no chunk of its own is deleted.
    #[serde(default)]
    pub archive_extent: Option<crate::archive::ArchiveExtent>,
}

/// Data that no version references any more; the GC worker destroys its keys and deletes its
/// chunks once `due`, writes the destruction record when a version was destroyed, then acks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcItem {
    /// Queue position (opaque, ordered by `due`; see `docs/metadata-format.md`).
    pub seq: u64,
    pub segments: Vec<Segment>,
    /// Why the data became garbage: "overwrite", "delete", "abort", "part-replaced", ...
    pub reason: String,
    /// When it was queued, and when its chunks may be deleted (enqueued + the store's grace
    /// period, so reads that started before the change can finish). Unix ms.
    #[serde(default)]
    pub enqueued: i64,
    #[serde(default)]
    pub due: i64,
    /// Keys to destroy with the data (the version's DEK, an aborted upload's, a failed write's,
    /// a retired KEK).
    #[serde(default)]
    pub keys: Vec<KeyRef>,
    /// Set when a version was destroyed: the destruction record to write.
    #[serde(default)]
    pub destroyed: Option<DestroyedVersion>,
}

/// Size of the GC queue (`MetaStore::gc_stats`). Counts stop at `GC_STATS_LIMIT` entries.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GcStats {
    pub queued: u64,
    /// Items whose grace period has passed.
    pub due: u64,
    pub oldest_due: Option<i64>,
}

/// Placement geometry: which disks, how many data/parity shards, which chunk size. Never edited,
/// only superseded; every segment names the layout it was written with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    pub id: u32,
    /// Disk names as the storage node knows them (e.g. "disk0"), never paths.
    pub disks: Vec<String>,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub chunk_size: u32,
    pub created: i64,
}

/// One version of one object, as `MetaStore::scan_versions` walks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRef {
    pub bucket: String,
    pub key: String,
    pub version: VersionRecord,
}

/// A running process that writes chunks: its write intents are safe from the sweep while its
/// lease lasts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub registered: i64,
    /// Unix ms; after it the instance counts as dead and its intents are swept.
    pub lease_until: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable canonical id: 64 lowercase hex characters (S3 canonical user id), random, never
    /// reused. Buckets and access keys refer to it.
    pub id: String,
    /// Unique among living users; a removed user's name can be given to a new account.
    pub name: String,
    pub created: i64,
    pub is_admin: bool,
    /// Set after `strata admin user remove --purge`: the account's buckets are read-only until
    /// `destroy_after_ms`, then destroyed; `strata admin user restore` clears it before then.
    #[serde(default)]
    pub closing: Option<UserClosing>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClosing {
    pub requested_ms: i64,
    pub destroy_after_ms: i64,
    /// User id of the admin who asked.
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key: String,
    /// [`UserRecord::id`] of the key's user.
    pub user: String,
    /// The secret, sealed (AES-256-GCM) under the master key. Never stored in plain text.
    #[serde(with = "serde_bytes")]
    pub sealed_secret: Vec<u8>,
    pub created: i64,
    pub revoked: bool,
}

/// What a write of a new version must find first (conditional writes).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-None-Match: *`: fail if a current (non delete-marker) version exists.
    IfNoneMatchStar,
    /// `If-Match: etag`: fail unless the current version exists and has this ETag.
    IfMatch(String),
}

/// Result of writing a new version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    pub version_id: String,
    /// The version this write replaced (the previous `null` version), whose data went to the GC
    /// queue in the same batch.
    pub replaced: Option<VersionRecord>,
}

/// Result of a DeleteObject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Version id of the delete marker created, or of the version removed.
    pub version_id: Option<String>,
    /// True when a delete marker was created, or when the removed version was a delete marker.
    pub delete_marker: bool,
    /// The version whose data was destroyed (queued for GC), if any.
    pub removed: Option<VersionRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListObjectsParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return only keys (and common prefixes) strictly greater than this.
    pub start_after: Option<String>,
    /// 0..=1000 (the gateway clamps).
    pub max_keys: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListObjectsPage {
    /// (key, latest version); keys whose latest version is a delete marker are skipped.
    pub objects: Vec<(String, VersionRecord)>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix returned, when truncated (the next `start_after`).
    pub next_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListVersionsParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    pub key: String,
    pub is_latest: bool,
    pub version: VersionRecord,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListVersionsPage {
    pub entries: Vec<VersionEntry>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListUploadsParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListUploadsPage {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ListPartsPage {
    pub parts: Vec<PartRecord>,
    pub is_truncated: bool,
    pub next_part_number_marker: Option<u32>,
}

// ---- cluster map (metadata/src/cluster.rs, docs/cluster.md) ----------------------------------

/// Whether the cluster map last saw a node answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Up,
    Down,
}

/// One disk of a storage node as the cluster map knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDisk {
    /// The node's own name for it (`disk0`); layouts call it `<node>/<name>`.
    pub name: String,
    /// Random id the node keeps in the disk directory: a new id means an empty replacement.
    pub disk_id: String,
    #[serde(default)]
    pub capacity_bytes: u64,
}

/// A storage node: its id (persisted in its data dir), address, disks and state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    /// `ip:port` of its mutual-TLS API.
    pub address: String,
    pub disks: Vec<ClusterDisk>,
    #[serde(default)]
    pub state: NodeState,
    pub registered: i64,
    #[serde(default)]
    pub last_seen: i64,
}

/// One layout epoch of the cluster: the layout (same id) that placed every disk of these nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEpoch {
    /// The layout id of the epoch.
    pub epoch: u32,
    pub nodes: Vec<String>,
    pub disks: u32,
    /// Placement groups of k + m disks (computed from the layout by the storage node crate).
    #[serde(default)]
    pub placement_groups: u32,
    pub created: i64,
}

/// A chunk acknowledged with fewer than k + m durable shards: the rebuild restores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedChunk {
    #[serde(with = "serde_bytes")]
    pub blob: BlobId,
    pub index: u32,
    /// The (epoch) layout the chunk was written with.
    pub layout: u32,
    /// Shard indices that were not durable.
    pub missing: Vec<u8>,
    pub since: i64,
}

/// A disk that came back empty (new disk id) or whose node was replaced: every chunk with a
/// shard on it must be rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRebuild {
    pub node: String,
    pub disk: String,
    pub disk_id: String,
    pub since: i64,
}
