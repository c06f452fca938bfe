//! Multipart uploads: every part is its own blob under the upload's data key (so nonces never
//! repeat); completion assembles the parts' segments into one version in one metadata commit.

use std::ops::Range;

use strata_metadata::{
    BucketRecord, ContentHeaders, DataLayout, ListPartsPage, ListUploadsPage, ListUploadsParams,
    MetaError, PartRecord, PartSummary, Precondition, Retention, UploadRecord, VersionRecord,
};

use crate::body::{BodyStream, read_as_body};
use crate::checksum::{self, PartChecksum};
use crate::error::{EngineError, Rejection, Result};
use crate::objects::Written;
use crate::sse::KeyBinding;
use crate::write::{StoredBlob, WriteSpec};
use crate::{Engine, now_ms};

/// Largest object assembled from parts: 5 TiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Largest part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// What an upload's creator says about the object to be.
#[derive(Clone, Debug, Default)]
pub struct UploadAttrs {
    pub content: ContentHeaders,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub storage_class: String,
    pub owner: String,
    /// Checksum algorithm every part carries, and how the whole object's is derived
    /// (FULL_OBJECT or COMPOSITE).
    pub checksum_algorithm: Option<String>,
    pub checksum_type: Option<String>,
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    /// The completed version's ACL (`None`: `private`).
    pub acl: Option<strata_metadata::acl::Acl>,
}

/// A CompleteMultipartUpload request.
#[derive(Clone, Debug, Default)]
pub struct CompleteRequest {
    /// (part number, ETag without quotes), ascending.
    pub parts: Vec<(u32, String)>,
    /// Checksums the client lists per part (same order), which must match the stored ones.
    pub part_checksums: Vec<Option<(String, String)>>,
    /// The whole-object checksum the client asserts, if any.
    pub whole_checksum: Option<(String, String)>,
    /// The object size the client asserts, if any.
    pub object_size: Option<u64>,
    pub owner: String,
    /// A migration job's record of the source, kept on the completed version.
    pub origin: Option<strata_metadata::Origin>,
}

impl Engine {
    pub async fn create_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        attrs: UploadAttrs,
    ) -> Result<UploadRecord> {
        if let Some(a) = &attrs.checksum_algorithm {
            checksum::algorithm(a)?;
        }
        self.check_writable(bucket)?;
        crate::sse::check_class(attrs.content.sse.as_ref(), &attrs.storage_class)?;
        let (dek, kek_id) = self.new_upload_key(bucket).await?;
        let rec = UploadRecord {
            upload_id: self.meta_blocking().new_upload_id(),
            key: key.to_string(),
            initiated: now_ms(),
            owner: attrs.owner,
            kek_id,
            dek_id: dek.id.clone(),
            wrapped_dek: Vec::new(),
            dek_slot: Some(dek.slot),
            content: attrs.content,
            user_metadata: attrs.user_metadata,
            tags: attrs.tags,
            storage_class: attrs.storage_class,
            checksum_algorithm: attrs.checksum_algorithm,
            checksum_type: attrs.checksum_type,
            retention: attrs.retention,
            legal_hold: attrs.legal_hold,
            acl: attrs.acl,
        };
        let (b, r) = (bucket.name.clone(), rec.clone());
        if let Err(e) = self.meta_call(move |m| m.create_upload(&b, r)).await {
            self.discard_key(dek.key_ref(), "upload-not-created").await;
            return Err(e);
        }
        Ok(rec)
    }

    pub async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.meta_call(move |m| m.get_upload(&b, &k, &u)).await
    }

    /// Stores one part (replacing a part with the same number, whose data goes to GC).
    pub async fn upload_part(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        part_number: u32,
        body: BodyStream,
        spec: WriteSpec,
    ) -> Result<PartRecord> {
        self.upload_part_bound(bucket, upload, part_number, body, spec, &KeyBinding::None)
            .await
    }

    /// [`Engine::upload_part`] for an upload whose DEK is bound (SSE-KMS, SSE-C: the binding
    /// comes from [`Engine::sse_binding`] of the upload's record).
    pub async fn upload_part_bound(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        part_number: u32,
        body: BodyStream,
        spec: WriteSpec,
        binding: &KeyBinding,
    ) -> Result<PartRecord> {
        self.check_writable(bucket)?;
        let dek = binding.apply(self.upload_key(bucket, upload).await?);
        let stored = self.write_blob(dek, body, spec).await?;
        self.commit_part(bucket, upload, part_number, stored).await
    }

    async fn upload_key(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
    ) -> Result<std::sync::Arc<strata_storage_node::DataKey>> {
        let (b, u) = (bucket.clone(), upload.clone());
        self.key_call(move |k| k.upload_key(&b, &u)).await
    }

    /// UploadPartCopy: (a range of) an existing version becomes a part, re-encrypted under the
    /// upload's data key.
    pub async fn upload_part_copy(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        part_number: u32,
        src_bucket: &BucketRecord,
        src: &VersionRecord,
        range: Range<u64>,
    ) -> Result<PartRecord> {
        let none = KeyBinding::None;
        self.upload_part_copy_bound(
            bucket,
            upload,
            part_number,
            (src_bucket, src, &none),
            range,
            &none,
        )
        .await
    }

    /// [`Engine::upload_part_copy`] with the source's and the upload's SSE bindings.
    pub async fn upload_part_copy_bound(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        part_number: u32,
        src: (&BucketRecord, &VersionRecord, &KeyBinding),
        range: Range<u64>,
        binding: &KeyBinding,
    ) -> Result<PartRecord> {
        let (src_bucket, src, src_binding) = src;
        let len = range.end - range.start;
        let src = &self.readable(src)?;
        let body = read_as_body(
            self.read_range_bound(src_bucket, src, range, src_binding)
                .await?,
        );
        let spec = WriteSpec {
            max_len: len,
            expected_len: Some(len),
            checksum_algorithm: upload.checksum_algorithm.clone(),
            ..Default::default()
        };
        let dek = binding.apply(self.upload_key(bucket, upload).await?);
        let stored = self.write_blob(dek, body, spec).await?;
        self.commit_part(bucket, upload, part_number, stored).await
    }

    async fn commit_part(
        &self,
        bucket: &BucketRecord,
        upload: &UploadRecord,
        part_number: u32,
        stored: StoredBlob,
    ) -> Result<PartRecord> {
        let part = PartRecord {
            part_number,
            etag: stored.etag(),
            size: stored.segment.len,
            last_modified: now_ms(),
            segment: stored.segment.clone(),
            checksum: stored.checksum.clone(),
        };
        let (b, k, u, p) = (
            bucket.name.clone(),
            upload.key.clone(),
            upload.upload_id.clone(),
            part.clone(),
        );
        match self.meta_call(move |m| m.put_part(&b, &k, &u, p)).await {
            Ok(()) => {
                stored.committed();
                Ok(part)
            }
            Err(e) => {
                stored.discard("rejected-part").await;
                Err(e)
            }
        }
    }

    /// Completes an upload: validates the requested parts against the stored ones, derives the
    /// ETag and checksum, and writes the version (same versioning/precondition rules as a PUT),
    /// queuing unused parts for GC and removing the upload, in one commit.
    pub async fn complete_upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        req: CompleteRequest,
        precondition: Precondition,
    ) -> Result<Written> {
        if let Some(done) = self
            .retried_completion(bucket, key, upload_id, &req.parts)
            .await?
        {
            return Ok(done);
        }
        let version_id = match bucket.versioning {
            strata_metadata::VersioningState::Enabled => self.meta_blocking().new_version_id(),
            _ => strata_metadata::NULL_VERSION.to_string(),
        };
        let (b, k, u) = (bucket.name.clone(), key.to_string(), upload_id.to_string());
        let parts_again = req.parts.clone();
        let result = self
            .meta_call(move |m| {
                let mut rejected: Option<Rejection> = None;
                let mut built: Option<VersionRecord> = None;
                let r =
                    m.complete_upload(&b, &k, &u, &req.parts, &precondition, |upload, parts| {
                        match assemble(upload, parts, &req, &version_id) {
                            Ok(v) => {
                                built = Some(v.clone());
                                Ok(v)
                            }
                            Err(e) => {
                                rejected = Some(e);
                                // Aborts the completion; the rejection below is the real answer.
                                Err(MetaError::Conflict)
                            }
                        }
                    });
                Ok((r, rejected, built))
            })
            .await?;
        match result {
            (_, Some(rejection), _) => Err(rejection.into()),
            // The upload vanished between the check above and the commit: a racing
            // completion of the same upload may have won; answer as its retry would.
            (Err(MetaError::NoSuchUpload), None, _) => {
                match self
                    .retried_completion(bucket, key, upload_id, &parts_again)
                    .await?
                {
                    Some(done) => Ok(done),
                    None => Err(MetaError::NoSuchUpload.into()),
                }
            }
            (Err(e), None, _) => Err(e.into()),
            (Ok(outcome), None, Some(mut version)) => {
                version.version_id = outcome.version_id.clone();
                tracing::info!(bucket = %bucket.name, key = %key, size = version.size, parts = version.parts.len(), "multipart upload completed");
                Ok(Written { version, outcome })
            }
            (Ok(_), None, None) => Err(EngineError::internal("completion built no version")),
        }
    }

    /// The answer to a retried completion: the upload was completed (within
    /// `COMPLETED_UPLOAD_TTL_MS`) for the same key with the same part list. `None` otherwise
    /// (the caller answers `NoSuchUpload`).
    async fn retried_completion(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Option<Written>> {
        let (b, u) = (bucket.name.clone(), upload_id.to_string());
        let Some(done) = self.meta_call(move |m| m.completed_upload(&b, &u)).await? else {
            return Ok(None);
        };
        let same_parts = done.parts.len() == parts.len()
            && done.parts.iter().zip(parts).all(|((n1, e1), (n2, e2))| {
                n1 == n2
                    && e1
                        .trim_matches('"')
                        .eq_ignore_ascii_case(e2.trim_matches('"'))
            });
        if done.key != key || !same_parts {
            return Ok(None);
        }
        tracing::info!(bucket = %bucket.name, key = %key, upload_id = %upload_id, "retried completion answered from its record");
        let mut version =
            VersionRecord::delete_marker(done.version_id.clone(), String::new(), done.completed);
        version.is_delete_marker = false;
        version.etag = done.etag;
        version.size = done.size;
        version.checksum = done.checksum;
        version.checksum_type = done.checksum_type;
        version.content.sse = done.sse;
        Ok(Some(Written {
            version,
            outcome: strata_metadata::PutOutcome {
                version_id: done.version_id,
                replaced: None,
            },
        }))
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.meta_call(move |m| m.abort_upload(&b, &k, &u)).await
    }

    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<ListPartsPage> {
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.meta_call(move |m| m.list_parts(&b, &k, &u, part_number_marker, max_parts))
            .await
    }

    pub async fn list_uploads(
        &self,
        bucket: &str,
        params: ListUploadsParams,
    ) -> Result<ListUploadsPage> {
        let b = bucket.to_string();
        self.meta_call(move |m| m.list_uploads(&b, &params)).await
    }
}

/// The version a completion produces from the chosen parts (pure: S3's rules for ETags,
/// checksums and sizes).
fn assemble(
    upload: &UploadRecord,
    parts: &[PartRecord],
    req: &CompleteRequest,
    version_id: &str,
) -> std::result::Result<VersionRecord, Rejection> {
    // A checksum the client lists for a part must be the one computed for it.
    for (p, c) in parts.iter().zip(&req.part_checksums) {
        if let Some((alg, val)) = c
            && p.checksum
                .as_ref()
                .is_some_and(|(a, v)| a == alg && v != val)
        {
            return Err(Rejection::PartChecksumMismatch(p.part_number));
        }
    }
    let etags: Vec<&str> = parts.iter().map(|p| p.etag.as_str()).collect();
    let etag = checksum::multipart_etag(&etags)?;
    let (checksum, checksum_type) = match (&upload.checksum_algorithm, &upload.checksum_type) {
        (Some(a), Some(k)) => {
            let inputs: Vec<PartChecksum> = parts
                .iter()
                .map(|p| PartChecksum {
                    part_number: p.part_number,
                    size: p.size,
                    checksum: p.checksum.as_ref(),
                })
                .collect();
            match checksum::combined(a, k, &inputs)? {
                Some(v) => (Some((a.clone(), v)), Some(k.clone())),
                None => (None, None),
            }
        }
        _ => (None, None),
    };
    if let (Some((da, dv)), Some((a, v))) = (&req.whole_checksum, &checksum)
        && da == a
        && dv != v
        && dv
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            != v.as_str()
    {
        return Err(Rejection::ChecksumMismatch {
            algorithm: a.clone(),
        });
    }
    let size: u64 = parts.iter().map(|p| p.size).sum();
    if size > MAX_OBJECT_SIZE {
        return Err(Rejection::TooLarge {
            limit: MAX_OBJECT_SIZE,
        });
    }
    if req.object_size.is_some_and(|n| n != size) {
        return Err(Rejection::SizeMismatch);
    }
    Ok(VersionRecord {
        version_id: version_id.to_string(),
        is_delete_marker: false,
        last_modified: now_ms(),
        size,
        etag,
        checksum,
        checksum_type,
        content: upload.content.clone(),
        user_metadata: upload.user_metadata.clone(),
        tags: upload.tags.clone(),
        storage_class: upload.storage_class.clone(),
        // The upload's owner (its initiator, or the bucket owner under the ownership rules
        // applied when it was created) owns the object, as its ACL says.
        owner: if upload.owner.is_empty() {
            req.owner.clone()
        } else {
            upload.owner.clone()
        },
        data: DataLayout {
            kek_id: upload.kek_id.clone(),
            dek_id: upload.dek_id.clone(),
            wrapped_dek: Vec::new(),
            dek_slot: upload.dek_slot,
            segments: parts
                .iter()
                .filter(|p| p.size > 0)
                .map(|p| p.segment.clone())
                .collect(),
        },
        parts: parts
            .iter()
            .map(|p| PartSummary {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag.clone(),
                checksum: p.checksum.clone(),
            })
            .collect(),
        retention: upload.retention.clone(),
        legal_hold: upload.legal_hold,
        archive: None,
        acl: upload.acl.clone(),
        origin: req.origin.clone(),
    })
}
