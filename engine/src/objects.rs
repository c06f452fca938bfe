//! Object versions: write (store the bytes, then commit the version), read, copy, delete, and
//! the per-version settings (tags, retention, legal hold).

use std::ops::Range;

use strata_metadata::{
    BucketRecord, ContentHeaders, DataLayout, DeleteActor, DeleteOutcome, ListObjectsPage,
    ListObjectsParams, ListVersionsPage, ListVersionsParams, MetaError, NULL_VERSION, Precondition,
    PutOutcome, Retention, VersionExpect, VersionRecord, VersioningState,
};

use crate::body::{BodyStream, ReadStream, read_as_body};
use crate::error::Result;
use crate::sse::KeyBinding;
use crate::write::{StoredBlob, WriteSpec};
use crate::{Engine, now_ms};

/// What a writer says about a new version besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct ObjectAttrs {
    pub content: ContentHeaders,
    /// `x-amz-meta-*`-style pairs, names lower-cased.
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub storage_class: String,
    /// User id of the writer.
    pub owner: String,
    /// Explicit retention; `None` takes the bucket's default retention, if any.
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    /// The new version's ACL (`None`: `private` for its owner).
    pub acl: Option<strata_metadata::acl::Acl>,
    /// A migration job's record of the source (see `strata_metadata::Origin`).
    pub origin: Option<strata_metadata::Origin>,
}

/// A committed write: the stored record and what it replaced.
#[derive(Debug)]
pub struct Written {
    pub version: VersionRecord,
    pub outcome: PutOutcome,
}

/// Why a version (or the marker of a delete) is asked for: carried to the log and, when data is
/// really destroyed, to the destruction record (stored in the GC item, hence defined by the
/// metadata tier).
pub use strata_metadata::DeleteReason;

/// How a delete is asked for, and by whom (for the log and the destruction record).
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    pub version_id: Option<String>,
    pub bypass_governance: bool,
    /// Who asks: a user id (64 hex, from the gateway), a job name (`"lifecycle"`), or
    /// `"job:user-id"` for a job acting for a user (a purge an admin asked for).
    pub actor: String,
    pub reason: DeleteReason,
}

/// What a delete must also satisfy, and the access key that signed it (for the record).
#[derive(Clone, Debug, Default)]
pub struct DeleteConditions {
    pub access_key: Option<String>,
    /// The version a background job decided for: `Meta(Stale)` and nothing changes if the
    /// object moved on meanwhile.
    pub expect: Option<VersionExpect>,
    /// S3's conditional DeleteObject: the current version's ETag (`*`: any current version);
    /// `NoSuchKey` without a current version, `PreconditionFailed` for another ETag.
    pub if_match: Option<String>,
}

impl DeleteRequest {
    /// The actor as the destruction record names it.
    pub fn record_actor(&self, access_key: Option<String>) -> DeleteActor {
        let is_user = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match self.actor.split_once(':') {
            Some((job, user)) if is_user(user) => DeleteActor {
                user: Some(user.to_string()),
                access_key,
                engine: Some(job.to_string()),
            },
            _ if is_user(&self.actor) => DeleteActor {
                user: Some(self.actor.clone()),
                access_key,
                engine: None,
            },
            _ => DeleteActor {
                user: None,
                access_key,
                engine: Some(self.actor.clone()),
            },
        }
    }
}

impl Engine {
    /// `BucketClosing` for a bucket being destroyed (purge, account closure): it is read-only.
    /// The metadata tier checks it again atomically where a commit reads the bucket.
    pub fn check_writable(&self, bucket: &BucketRecord) -> Result<()> {
        if bucket.closing.is_some() {
            return Err(MetaError::BucketClosing.into());
        }
        Ok(())
    }

    pub(crate) async fn require_writable(&self, bucket: &str) -> Result<()> {
        match self.bucket(bucket).await? {
            Some(b) => self.check_writable(&b),
            None => Err(MetaError::NoSuchBucket.into()),
        }
    }

    /// The version id a new write in `bucket` gets (`null` unless versioning is enabled).
    fn new_version_id(&self, bucket: &BucketRecord) -> String {
        match bucket.versioning {
            VersioningState::Enabled => self.meta_blocking().new_version_id(),
            _ => NULL_VERSION.to_string(),
        }
    }

    /// The version with this id, or the latest (possibly a delete marker).
    pub async fn version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<VersionRecord> {
        let (b, k, v) = (
            bucket.to_string(),
            key.to_string(),
            version_id.map(str::to_string),
        );
        self.meta_call(move |m| m.get_version(&b, &k, v.as_deref()))
            .await
    }

    /// Stores `body` under a fresh data key and commits it as a new version of `key`.
    pub async fn put_object(
        &self,
        bucket: &BucketRecord,
        key: &str,
        body: BodyStream,
        spec: WriteSpec,
        attrs: ObjectAttrs,
        precondition: Precondition,
    ) -> Result<Written> {
        self.put_object_bound(
            bucket,
            key,
            body,
            spec,
            attrs,
            precondition,
            &KeyBinding::None,
        )
        .await
    }

    /// [`Engine::put_object`] with the new DEK bound to `binding` (SSE-KMS, SSE-C); the
    /// matching `SseRecord` travels in `attrs.content.sse`.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_object_bound(
        &self,
        bucket: &BucketRecord,
        key: &str,
        body: BodyStream,
        spec: WriteSpec,
        attrs: ObjectAttrs,
        precondition: Precondition,
        binding: &KeyBinding,
    ) -> Result<Written> {
        self.check_writable(bucket)?;
        crate::sse::check_class(attrs.content.sse.as_ref(), &attrs.storage_class)?;
        let mut spec = spec;
        let fresh = std::sync::Arc::new(self.fresh_dek(&bucket.name).await?);
        spec.new_key = Some(fresh.clone());
        spec.inline_max = self.cfg().inline_threshold;
        let stored = self
            .write_blob(binding.apply(fresh.key.clone()), body, spec)
            .await?;
        let skey = stored.key.clone();
        let version = VersionRecord {
            version_id: self.new_version_id(bucket),
            is_delete_marker: false,
            last_modified: now_ms(),
            size: stored.segment.len,
            etag: stored.etag(),
            checksum: stored.checksum.clone(),
            checksum_type: stored.checksum.as_ref().map(|_| "FULL_OBJECT".to_string()),
            content: attrs.content,
            user_metadata: attrs.user_metadata,
            tags: attrs.tags,
            storage_class: attrs.storage_class,
            owner: attrs.owner,
            // An empty body stored nothing, so no key was kept for it.
            data: DataLayout {
                kek_id: skey.as_ref().map(|k| k.kek_id.clone()).unwrap_or_default(),
                dek_id: skey.as_ref().map(|k| k.dek_id.clone()).unwrap_or_default(),
                wrapped_dek: Vec::new(),
                segments: stored.segments(),
                dek_slot: skey.as_ref().map(|k| k.slot),
                inline: stored.inline.clone(),
            },
            parts: Vec::new(),
            retention: attrs.retention,
            legal_hold: attrs.legal_hold,
            archive: None,
            acl: attrs.acl,
            origin: attrs.origin,
        };
        self.commit_version(bucket, key, stored, version, precondition)
            .await
    }

    /// Adds a delete marker carrying `origin` (a migration copying a source's history); the
    /// bucket must have versioning enabled, so the marker gets its own version id and removes
    /// nothing. `IfNoneMatchStar`-style preconditions do not apply to markers.
    pub async fn put_delete_marker(
        &self,
        bucket: &BucketRecord,
        key: &str,
        owner: &str,
        origin: Option<strata_metadata::Origin>,
    ) -> Result<VersionRecord> {
        self.check_writable(bucket)?;
        if bucket.versioning != VersioningState::Enabled {
            return Err(crate::EngineError::internal(
                "a delete marker with an origin needs a versioning-enabled bucket",
            ));
        }
        let mut marker =
            VersionRecord::delete_marker(self.new_version_id(bucket), owner.to_string(), now_ms());
        marker.origin = origin;
        let (b, k, v) = (bucket.name.clone(), key.to_string(), marker.clone());
        let outcome = self
            .meta_call(move |m| m.put_version(&b, &k, v, &Precondition::None))
            .await?;
        marker.version_id = outcome.version_id;
        Ok(marker)
    }

    /// Commits a version whose bytes are `stored`; if the commit fails they go to GC.
    pub(crate) async fn commit_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        stored: StoredBlob,
        version: VersionRecord,
        precondition: Precondition,
    ) -> Result<Written> {
        let (b, k, v) = (bucket.name.clone(), key.to_string(), version.clone());
        let result = self
            .meta_call(move |m| m.put_version(&b, &k, v, &precondition))
            .await;
        match result {
            Ok(outcome) => {
                stored.committed();
                let mut version = version;
                version.version_id = outcome.version_id.clone();
                Ok(Written { version, outcome })
            }
            Err(e) => {
                stored.discard("rejected-write").await;
                Err(e)
            }
        }
    }

    /// Streams `range` of a version (see [`Engine::read_range`]).
    pub async fn read(
        &self,
        bucket: &BucketRecord,
        version: &VersionRecord,
        range: Range<u64>,
    ) -> Result<ReadStream> {
        self.read_bound(bucket, version, range, &KeyBinding::None)
            .await
    }

    /// Streams `range` of a version written with an SSE binding (see [`Engine::sse_binding`]).
    pub async fn read_bound(
        &self,
        bucket: &BucketRecord,
        version: &VersionRecord,
        range: Range<u64>,
        binding: &KeyBinding,
    ) -> Result<ReadStream> {
        // Archived and not restored: InvalidObjectState; restored: the restored copy.
        let version = self.readable(version)?;
        self.read_range_bound(bucket, &version, range, binding)
            .await
    }

    /// Copies (a range of) `src` into a new version of `dst_key` in `dst_bucket`. The bytes are
    /// re-encrypted under the new version's own data key: versions never share bytes, so
    /// destroying one version's key never touches another.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object(
        &self,
        src_bucket: &BucketRecord,
        src: &VersionRecord,
        dst_bucket: &BucketRecord,
        dst_key: &str,
        attrs: ObjectAttrs,
        checksum_algorithm: Option<String>,
        precondition: Precondition,
    ) -> Result<Written> {
        let none = KeyBinding::None;
        self.copy_object_bound(
            (src_bucket, src, &none),
            dst_bucket,
            dst_key,
            attrs,
            checksum_algorithm,
            precondition,
            &none,
        )
        .await
    }

    /// [`Engine::copy_object`] reading the source with its binding and writing the copy with
    /// the destination's (SSE-KMS, SSE-C on either side).
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object_bound(
        &self,
        src: (&BucketRecord, &VersionRecord, &KeyBinding),
        dst_bucket: &BucketRecord,
        dst_key: &str,
        attrs: ObjectAttrs,
        checksum_algorithm: Option<String>,
        precondition: Precondition,
        binding: &KeyBinding,
    ) -> Result<Written> {
        let (src_bucket, src, src_binding) = src;
        let src = &self.readable(src)?;
        let body = read_as_body(
            self.read_range_bound(src_bucket, src, 0..src.size, src_binding)
                .await?,
        );
        let spec = WriteSpec {
            max_len: src.size,
            expected_len: Some(src.size),
            checksum_algorithm,
            ..Default::default()
        };
        self.put_object_bound(
            dst_bucket,
            dst_key,
            body,
            spec,
            attrs,
            precondition,
            binding,
        )
        .await
    }

    /// DeleteObject semantics (delete markers, null versions, Object Lock), decided by the
    /// metadata tier; a removed version's data goes to the GC queue in the same commit.
    pub async fn delete_object(
        &self,
        bucket: &BucketRecord,
        key: &str,
        req: DeleteRequest,
    ) -> Result<DeleteOutcome> {
        self.delete_object_with(bucket, key, req, DeleteConditions::default())
            .await
    }

    /// [`Engine::delete_object`] with the signing access key and the conditions of
    /// [`DeleteConditions`], all checked atomically with the delete.
    pub async fn delete_object_with(
        &self,
        bucket: &BucketRecord,
        key: &str,
        req: DeleteRequest,
        cond: DeleteConditions,
    ) -> Result<DeleteOutcome> {
        let (b, k) = (bucket.name.clone(), key.to_string());
        let r = req.clone();
        let actor = req.record_actor(cond.access_key);
        let (expect, if_match) = (cond.expect, cond.if_match);
        let out = self
            .meta_call(move |m| {
                let owner = actor.user.clone().unwrap_or_else(|| r.actor.clone());
                m.delete_object_for(
                    &b,
                    &k,
                    r.version_id.as_deref(),
                    &owner,
                    now_ms(),
                    r.bypass_governance,
                    &r.reason,
                    &actor,
                    expect.as_ref(),
                    if_match.as_deref(),
                )
            })
            .await?;
        if let Some(removed) = &out.removed {
            tracing::info!(bucket = %bucket.name, key = %key, version = %removed.version_id, size = removed.size, actor = %req.actor, reason = ?req.reason, "object version deleted");
        }
        Ok(out)
    }

    /// Replaces a version's tags (`None`: the latest; a delete marker is `IsDeleteMarker`).
    pub async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Result<VersionRecord> {
        self.require_writable(bucket).await?;
        let (b, k, v) = (
            bucket.to_string(),
            key.to_string(),
            version_id.map(str::to_string),
        );
        self.meta_call(move |m| m.set_tags(&b, &k, v.as_deref(), tags))
            .await
    }

    /// Sets or removes a version's retention; the Object Lock rules (COMPLIANCE only extends,
    /// GOVERNANCE needs the bypass to shorten) are the metadata tier's.
    pub async fn set_retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        wanted: Option<Retention>,
        bypass_governance: bool,
    ) -> Result<VersionRecord> {
        self.require_writable(bucket).await?;
        let (b, k, v) = (
            bucket.to_string(),
            key.to_string(),
            version_id.map(str::to_string),
        );
        self.meta_call(move |m| {
            m.set_retention(&b, &k, v.as_deref(), wanted, bypass_governance, now_ms())
        })
        .await
    }

    pub async fn set_legal_hold(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        on: bool,
    ) -> Result<VersionRecord> {
        // Lifting a hold stays possible in a closing bucket: it lets the destruction proceed.
        if on {
            self.require_writable(bucket).await?;
        }
        let (b, k, v) = (
            bucket.to_string(),
            key.to_string(),
            version_id.map(str::to_string),
        );
        self.meta_call(move |m| m.set_legal_hold(&b, &k, v.as_deref(), on))
            .await
    }

    pub async fn list_objects(
        &self,
        bucket: &str,
        params: ListObjectsParams,
    ) -> Result<ListObjectsPage> {
        let b = bucket.to_string();
        self.meta_call(move |m| m.list_objects(&b, &params)).await
    }

    pub async fn list_versions(
        &self,
        bucket: &str,
        params: ListVersionsParams,
    ) -> Result<ListVersionsPage> {
        let b = bucket.to_string();
        self.meta_call(move |m| m.list_versions(&b, &params)).await
    }

    /// `If-Match` on a write needs a current object: `NoSuchKey` when there is none (the ETag
    /// itself is compared atomically at commit).
    pub async fn require_current(&self, bucket: &str, key: &str) -> Result<()> {
        match self.version(bucket, key, None).await {
            Ok(v) if !v.is_delete_marker => Ok(()),
            Ok(_) => Err(MetaError::NoSuchKey.into()),
            Err(e) => Err(e),
        }
    }
}
