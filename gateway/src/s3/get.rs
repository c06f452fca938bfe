//! GetObject and HeadObject: one read path (find the version, check conditions, pick the byte
//! window), then GET streams the window from the engine.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_metadata::{BucketRecord, ContentHeaders, MetaError, VersionRecord};

use super::StrataS3;
use super::bucket::mode_str;
use super::common::*;
use crate::checksum;
use crate::errors;

/// A GET/HEAD after its checks: the version, the byte window to send, and the response headers.
pub(crate) struct ReadPlan {
    bucket: BucketRecord,
    version: VersionRecord,
    /// The SSE binding to read the version with (SSE-KMS, SSE-C).
    binding: strata_engine::sse::KeyBinding,
    window: std::ops::Range<u64>,
    partial: bool,
    out: GetObjectOutput,
}

/// Byte range of part `n` (1-based) of a version, and the part count.
fn part_range(v: &VersionRecord, n: i32) -> S3Result<(std::ops::Range<u64>, i32)> {
    if n < 1 {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    if v.parts.is_empty() {
        return if n == 1 {
            Ok((0..v.size, 1))
        } else {
            Err(invalid_part_number())
        };
    }
    let idx = (n - 1) as usize;
    if idx >= v.parts.len() {
        return Err(invalid_part_number());
    }
    let start: u64 = v.parts[..idx].iter().map(|p| p.size).sum();
    Ok((start..start + v.parts[idx].size, v.parts.len() as i32))
}

fn invalid_part_number() -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

fn invalid_range(len: u64) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::InvalidRange,
        format!("The requested range is not satisfiable (object size {len})"),
    );
    e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    e
}

fn storage_class_dto(v: &VersionRecord) -> Option<StorageClass> {
    (v.storage_class != "STANDARD").then(|| StorageClass::from(v.storage_class.clone()))
}

fn lock_fields(
    v: &VersionRecord,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    let (mode, until) = match &v.retention {
        Some(r) => (
            Some(ObjectLockMode::from(mode_str(r.mode).to_string())),
            Some(ts(r.retain_until)),
        ),
        None => (None, None),
    };
    let hold = v
        .legal_hold
        .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON));
    (mode, until, hold)
}

impl StrataS3 {
    /// The version a read addresses, answering S3's delete-marker errors.
    pub(crate) async fn readable_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
    ) -> S3Result<VersionRecord> {
        let vid = requested_version(version_id)?;
        let v = self
            .ctx
            .engine
            .version(&bucket.name, key, vid)
            .await
            .map_err(|e| match e {
                strata_engine::EngineError::Meta(
                    MetaError::NoSuchVersion | MetaError::NoSuchKey,
                ) if vid.is_some() => s3_error!(NoSuchVersion),
                e => errors::engine(e),
            })?;
        if v.is_delete_marker {
            return Err(delete_marker_error(bucket, &v, vid.is_some()));
        }
        Ok(v)
    }

    /// What GET and HEAD share: find the version, check conditions, pick the byte window
    /// (whole object, Range, or one part) and describe it. The body is GET's business.
    async fn read_object(
        &self,
        who: &super::access::Who,
        input: &GetObjectInput,
        secure: bool,
    ) -> S3Result<ReadPlan> {
        let bucket = self.existing_bucket(&input.bucket).await?;
        check_key(&input.key)?;
        let action = super::access::read_action(&input.version_id);
        let v = self
            .authorized_version(who, &bucket, &input.key, &input.version_id, action)
            .await?;
        // SSE-C needs the customer's key again on every read (HEAD too); SSE-KMS its key enabled.
        let customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure,
        })?;
        let binding = self
            .read_binding(v.content.sse.as_ref(), customer.as_ref())
            .await?;
        check_read_conditions(
            &v,
            &input.if_match,
            &input.if_none_match,
            &input.if_modified_since,
            &input.if_unmodified_since,
        )?;
        let (window, parts_count, partial) = match (&input.part_number, &input.range) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            (Some(n), None) => {
                let (r, count) = part_range(&v, *n)?;
                (r, Some(count), true)
            }
            // S3 answers 416 for any range of an empty object (s3s would accept `bytes=-1` as 0..0).
            (None, Some(_)) if v.size == 0 => return Err(invalid_range(0)),
            (None, Some(r)) => match r.check(v.size) {
                Ok(r) => (r, None, true),
                Err(_) => return Err(invalid_range(v.size)),
            },
            (None, None) => (0..v.size, None, false),
        };
        let (lock_mode, lock_until, hold) = lock_fields(&v);
        let mut out = GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some((window.end - window.start) as i64),
            content_range: partial.then(|| {
                format!(
                    "bytes {}-{}/{}",
                    window.start,
                    window.end.saturating_sub(1),
                    v.size
                )
            }),
            e_tag: Some(etag(&v.etag)),
            last_modified: Some(ts(v.last_modified)),
            metadata: metadata_dto(&v.user_metadata),
            version_id: shown_version_id(&bucket, &v),
            storage_class: storage_class_dto(&v),
            parts_count,
            tag_count: (!v.tags.is_empty()).then_some(v.tags.len() as i32),
            object_lock_mode: lock_mode,
            object_lock_retain_until_date: lock_until,
            object_lock_legal_hold_status: hold,
            restore: super::restore::restore_header(&v),
            // Only the current version has an expiration date (S3 sends none by version id).
            expiration: input
                .version_id
                .is_none()
                .then(|| super::lifecycle::expiration_header(&bucket, &input.key, &v))
                .flatten(),
            ..Default::default()
        };
        apply_content(
            &v.content,
            &mut out.content_type,
            &mut out.content_encoding,
            &mut out.content_disposition,
            &mut out.content_language,
            &mut out.cache_control,
            &mut out.expires,
        );
        apply_overrides(
            &mut out.content_type,
            &mut out.content_encoding,
            &mut out.content_disposition,
            &mut out.content_language,
            &mut out.cache_control,
            &mut out.expires,
            &input.response_content_type,
            &input.response_content_encoding,
            &input.response_content_disposition,
            &input.response_content_language,
            &input.response_cache_control,
            &input.response_expires,
        );
        crate::fill_sse!(
            out,
            self.sse_out(
                v.content.sse.as_ref(),
                customer.as_ref().map(|c| c.key_md5.as_str())
            ),
            c
        );
        // The stored checksum describes the whole object, so a partial read does not carry it.
        if input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == "ENABLED")
            && !partial
        {
            crate::fill_checksums!(out, checksum::to_dto(&v.checksum, &v.checksum_type));
        }
        Ok(ReadPlan {
            bucket,
            version: v,
            binding,
            window,
            partial,
            out,
        })
    }

    pub(crate) async fn op_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let plan = self
            .read_object(&who, &req.input, super::sse::is_secure(&req.extensions))
            .await?;
        let read = self
            .ctx
            .engine
            .read_bound(&plan.bucket, &plan.version, plan.window, &plan.binding)
            .await
            .map_err(errors::engine)?;
        let mut out = plan.out;
        out.body = Some(crate::body::response_body(read));
        let mut resp = S3Response::new(out);
        if plan.partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    pub(crate) async fn op_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let i = req.input;
        let as_get = GetObjectInput {
            bucket: i.bucket,
            key: i.key,
            version_id: i.version_id,
            checksum_mode: i.checksum_mode,
            if_match: i.if_match,
            if_none_match: i.if_none_match,
            if_modified_since: i.if_modified_since,
            if_unmodified_since: i.if_unmodified_since,
            part_number: i.part_number,
            range: i.range,
            response_cache_control: i.response_cache_control,
            response_content_disposition: i.response_content_disposition,
            response_content_encoding: i.response_content_encoding,
            response_content_language: i.response_content_language,
            response_content_type: i.response_content_type,
            response_expires: i.response_expires,
            sse_customer_algorithm: i.sse_customer_algorithm,
            sse_customer_key: i.sse_customer_key,
            sse_customer_key_md5: i.sse_customer_key_md5,
            ..Default::default()
        };
        let plan = self
            .read_object(&who, &as_get, super::sse::is_secure(&req.extensions))
            .await?;
        let tag_count = plan.version.tags.len();
        let o = plan.out;
        let out = HeadObjectOutput {
            accept_ranges: o.accept_ranges,
            cache_control: o.cache_control,
            checksum_crc32: o.checksum_crc32,
            checksum_crc32c: o.checksum_crc32c,
            checksum_crc64nvme: o.checksum_crc64nvme,
            checksum_sha1: o.checksum_sha1,
            checksum_sha256: o.checksum_sha256,
            checksum_type: o.checksum_type,
            content_disposition: o.content_disposition,
            content_encoding: o.content_encoding,
            content_language: o.content_language,
            content_length: o.content_length,
            content_range: o.content_range,
            content_type: o.content_type,
            e_tag: o.e_tag,
            expires: o.expires,
            last_modified: o.last_modified,
            metadata: o.metadata,
            object_lock_legal_hold_status: o.object_lock_legal_hold_status,
            object_lock_mode: o.object_lock_mode,
            object_lock_retain_until_date: o.object_lock_retain_until_date,
            parts_count: o.parts_count,
            storage_class: o.storage_class,
            version_id: o.version_id,
            server_side_encryption: o.server_side_encryption,
            ssekms_key_id: o.ssekms_key_id,
            bucket_key_enabled: o.bucket_key_enabled,
            sse_customer_algorithm: o.sse_customer_algorithm,
            sse_customer_key_md5: o.sse_customer_key_md5,
            restore: o.restore,
            expiration: o.expiration,
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        if plan.partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        // S3 sends the tag count on HEAD as on GET (the Smithy model has no field for it).
        if tag_count > 0 {
            resp.headers
                .insert("x-amz-tagging-count", http::HeaderValue::from(tag_count));
        }
        Ok(resp)
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_content(
    c: &ContentHeaders,
    content_type: &mut Option<ContentType>,
    content_encoding: &mut Option<String>,
    content_disposition: &mut Option<String>,
    content_language: &mut Option<String>,
    cache_control: &mut Option<String>,
    expires: &mut Option<Timestamp>,
) {
    *content_type = c
        .content_type
        .as_deref()
        .and_then(|t| t.parse().ok())
        .or_else(|| "binary/octet-stream".parse().ok());
    *content_encoding = c.content_encoding.clone();
    *content_disposition = c.content_disposition.clone();
    *content_language = c.content_language.clone();
    *cache_control = c.cache_control.clone();
    *expires = c.expires.as_deref().and_then(parse_http_date);
}

#[allow(clippy::too_many_arguments)]
fn apply_overrides(
    content_type: &mut Option<ContentType>,
    content_encoding: &mut Option<String>,
    content_disposition: &mut Option<String>,
    content_language: &mut Option<String>,
    cache_control: &mut Option<String>,
    expires: &mut Option<Timestamp>,
    r_type: &Option<String>,
    r_encoding: &Option<String>,
    r_disposition: &Option<String>,
    r_language: &Option<String>,
    r_cache: &Option<String>,
    r_expires: &Option<Timestamp>,
) {
    if let Some(t) = r_type.as_deref().and_then(|t| t.parse().ok()) {
        *content_type = Some(t);
    }
    if r_encoding.is_some() {
        *content_encoding = r_encoding.clone();
    }
    if r_disposition.is_some() {
        *content_disposition = r_disposition.clone();
    }
    if r_language.is_some() {
        *content_language = r_language.clone();
    }
    if r_cache.is_some() {
        *cache_control = r_cache.clone();
    }
    if r_expires.is_some() {
        *expires = r_expires.clone();
    }
}
