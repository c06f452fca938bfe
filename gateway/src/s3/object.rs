//! Object operations: PUT, GET, HEAD, DELETE (single and multi), COPY, tagging, retention and
//! legal hold.

use http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_metadata::{
    BucketRecord, ContentHeaders, DataLayout, MetaError, NULL_VERSION, Precondition, Retention,
    VersionRecord, VersioningState,
};

use super::StrataS3;
use super::bucket::{mode_str, parse_mode};
use super::common::*;
use crate::checksum;
use crate::context::now_ms;
use crate::datapath::{self, BodyChecks};
use crate::errors;

/// Object Lock settings requested on a write (headers), after bucket defaults are applied.
pub(crate) struct LockRequest {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

/// Reads `x-amz-object-lock-*` headers. The bucket's default retention is applied by the
/// metadata tier when the version is committed (`put_version` / `complete_upload`).
pub(crate) fn lock_request(
    bucket: &BucketRecord,
    mode: &Option<ObjectLockMode>,
    until: &Option<Timestamp>,
    legal_hold: &Option<ObjectLockLegalHoldStatus>,
) -> S3Result<LockRequest> {
    let now = now_ms();
    let explicit = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => {
            let until = ts_to_ms(u);
            if until <= now {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Some(Retention {
                mode: parse_mode(m.as_str())?,
                retain_until: until,
            })
        }
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            ));
        }
    };
    let hold = match legal_hold.as_ref().map(|h| h.as_str()) {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "Legal Hold must be either of 'ON' or 'OFF'"
            ));
        }
    };
    if (explicit.is_some() || hold) && !bucket.object_lock_enabled {
        return Err(s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ));
    }
    Ok(LockRequest {
        retention: explicit,
        legal_hold: hold,
    })
}

/// Which checksum to compute for an upload, and the value to check it against if already known.
pub(crate) fn checksum_plan(
    declared: Option<(String, String)>,
    sdk_algorithm: &Option<ChecksumAlgorithm>,
    headers: &HeaderMap,
) -> (Option<String>, Option<String>) {
    if let Some((alg, val)) = declared {
        return (Some(alg), Some(val));
    }
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .map(|a| a.to_ascii_uppercase())
        });
    if let Some(alg) = trailer {
        return (Some(alg), None);
    }
    if let Some(alg) = sdk_algorithm {
        return (Some(alg.as_str().to_ascii_uppercase()), None);
    }
    // S3 computes CRC64NVME for objects that arrive without a checksum.
    (Some("CRC64NVME".to_string()), None)
}

pub(crate) fn write_precondition(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::IfNoneMatchStar),
        (Some(ETagCondition::ETag(e)), None) => Ok(Precondition::IfMatch(e.value().to_string())),
        (Some(ETagCondition::Any), None) => Ok(Precondition::IfMatch("*".into())),
        (None, Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes supports only '*'"
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported"
        )),
    }
}

/// A delete-marker answer: 404 NoSuchKey (latest) or 405 MethodNotAllowed (by version id),
/// with the headers S3 sends.
fn delete_marker_error(bucket: &BucketRecord, v: &VersionRecord, by_version: bool) -> S3Error {
    let mut e = if by_version {
        let mut e = S3Error::with_message(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        );
        e.set_status_code(http::StatusCode::METHOD_NOT_ALLOWED);
        e
    } else {
        s3_error!(NoSuchKey)
    };
    let mut h = HeaderMap::new();
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Some(id) = shown_version_id(bucket, v)
        && let Ok(val) = http::HeaderValue::from_str(&id)
    {
        h.insert("x-amz-version-id", val);
    }
    if by_version && let Ok(val) = http::HeaderValue::from_str(&fmt_http_date(&ts(v.last_modified)))
    {
        h.insert("last-modified", val);
    }
    e.set_headers(h);
    e
}

/// A GET/HEAD after its checks: the version, the byte window to send, and the response headers.
pub(crate) struct ReadPlan {
    bucket: BucketRecord,
    version: VersionRecord,
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
    pub(crate) fn readable_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
    ) -> S3Result<VersionRecord> {
        let vid = requested_version(version_id)?;
        let v = self
            .ctx
            .meta
            .get_version(&bucket.name, key, vid)
            .map_err(|e| match e {
                MetaError::NoSuchVersion | MetaError::NoSuchKey if vid.is_some() => {
                    s3_error!(NoSuchVersion)
                }
                e => errors::meta(e),
            })?;
        if v.is_delete_marker {
            return Err(delete_marker_error(bucket, &v, vid.is_some()));
        }
        Ok(v)
    }

    /// Commits a new version whose bytes are already stored; on failure the bytes go to GC.
    pub(crate) fn commit_version(
        &self,
        bucket: &BucketRecord,
        key: &str,
        v: VersionRecord,
        pre: &Precondition,
    ) -> S3Result<String> {
        let segments = v.data.segments.clone();
        match self.ctx.meta.put_version(&bucket.name, key, v, pre) {
            Ok(out) => Ok(out.version_id),
            Err(e) => {
                // TODO(engine): one "commit or discard" helper for every writer. discard_write is
                // conditioned on the intent: after WriteAborted (swept) it queues nothing.
                if !segments.is_empty()
                    && let Err(ge) = self.ctx.meta.discard_write(segments, "rejected-write")
                {
                    tracing::error!(error = %ge, "could not queue a rejected write for GC");
                }
                Err(errors::meta(e))
            }
        }
    }

    /// `If-Match` needs a current object: S3 answers NoSuchKey when there is none. (The ETag itself
    /// is compared atomically at commit.)
    pub(crate) fn check_if_match_target(
        &self,
        bucket: &BucketRecord,
        key: &str,
        pre: &Precondition,
    ) -> S3Result<()> {
        if let Precondition::IfMatch(_) = pre {
            match self.ctx.meta.get_version(&bucket.name, key, None) {
                Ok(v) if !v.is_delete_marker => {}
                Ok(_) | Err(MetaError::NoSuchKey) => return Err(s3_error!(NoSuchKey)),
                Err(e) => return Err(errors::meta(e)),
            }
        }
        Ok(())
    }

    pub(crate) fn new_version_id_for(&self, bucket: &BucketRecord) -> String {
        match bucket.versioning {
            VersioningState::Enabled => self.ctx.meta.new_version_id(),
            _ => NULL_VERSION.to_string(),
        }
    }

    pub(crate) async fn op_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let who = self.caller(&req.credentials)?;
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        check_key(&input.key)?;
        if input
            .content_length
            .is_some_and(|n| n as u64 > MAX_PUT_SIZE)
        {
            return Err(s3_error!(EntityTooLarge));
        }
        let user_metadata = user_metadata(&input.metadata)?;
        let tags = match &input.tagging {
            Some(t) => parse_tag_header(t)?,
            None => Vec::new(),
        };
        let storage_class = storage_class(&input.storage_class)?;
        let lock = lock_request(
            &bucket,
            &input.object_lock_mode,
            &input.object_lock_retain_until_date,
            &input.object_lock_legal_hold_status,
        )?;
        let precondition = write_precondition(&input.if_match, &input.if_none_match)?;
        let declared = crate::declared_checksum!(input);
        let client_sent_checksum = declared.is_some()
            || input.checksum_algorithm.is_some()
            || headers.contains_key("x-amz-trailer");
        let (checksum_algorithm, checksum_expected) =
            checksum_plan(declared, &input.checksum_algorithm, &headers);
        let content = content_headers(
            &input.content_type,
            &input.content_encoding,
            &input.content_disposition,
            &input.content_language,
            &input.cache_control,
            &input.expires,
        );

        self.check_if_match_target(&bucket, &input.key, &precondition)?;
        let dek = self.ctx.new_data_key(&bucket)?;
        let stored = datapath::store_body(
            &self.ctx,
            dek.key.clone(),
            input.body,
            BodyChecks {
                max_len: MAX_PUT_SIZE,
                expected_len: input.content_length.map(|n| n.max(0) as u64),
                content_md5: content_md5(&input.content_md5)?,
                checksum_algorithm,
                checksum_expected,
                trailers,
            },
        )
        .await?;
        let etag_hex = hex::encode(stored.md5);
        let version = VersionRecord {
            version_id: self.new_version_id_for(&bucket),
            is_delete_marker: false,
            last_modified: now_ms(),
            size: stored.segment.len,
            etag: etag_hex.clone(),
            checksum: stored.checksum.clone(),
            checksum_type: stored.checksum.as_ref().map(|_| "FULL_OBJECT".to_string()),
            content,
            user_metadata,
            tags,
            storage_class,
            owner: who.id.clone(),
            data: DataLayout {
                kek_id: bucket.kek_id.clone(),
                dek_id: dek.dek_id,
                wrapped_dek: dek.wrapped,
                segments: if stored.segment.len > 0 {
                    vec![stored.segment]
                } else {
                    Vec::new()
                },
            },
            parts: Vec::new(),
            retention: lock.retention,
            legal_hold: lock.legal_hold,
        };
        let shown = version.clone();
        let version_id = self.commit_version(&bucket, &input.key, version, &precondition)?;
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&etag_hex)),
            ..Default::default()
        };
        if bucket.versioning != VersioningState::Unversioned {
            out.version_id = Some(version_id);
        }
        if client_sent_checksum {
            let c = checksum::to_dto(&shown.checksum, &shown.checksum_type);
            crate::fill_checksums!(out, c);
        }
        Ok(S3Response::new(out))
    }

    /// What GET and HEAD share: find the version, check conditions, pick the byte window
    /// (whole object, Range, or one part) and describe it. The body is GET's business.
    fn read_object(&self, who: &crate::auth::Caller, input: &GetObjectInput) -> S3Result<ReadPlan> {
        let bucket = self.owned_bucket(who, &input.bucket)?;
        check_key(&input.key)?;
        let v = self.readable_version(&bucket, &input.key, &input.version_id)?;
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
            window,
            partial,
            out,
        })
    }

    pub(crate) async fn op_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let who = self.caller(&req.credentials)?;
        let plan = self.read_object(&who, &req.input)?;
        let dek = self.ctx.layout_key(&plan.bucket, &plan.version.data)?;
        let mut out = plan.out;
        out.body = Some(datapath::read_range(
            &self.ctx,
            dek,
            &plan.version.data.segments,
            plan.window,
        ));
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
        let who = self.caller(&req.credentials)?;
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
            ..Default::default()
        };
        let plan = self.read_object(&who, &as_get)?;
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
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        if plan.partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    fn delete_one(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
        bypass: bool,
        owner: &str,
    ) -> S3Result<(Option<String>, bool)> {
        check_key(key)?;
        let vid = requested_version(version_id)?;
        let out = self
            .ctx
            .meta
            .delete_object(&bucket.name, key, vid, owner, now_ms(), bypass)
            .map_err(errors::meta)?;
        if let Some(removed) = &out.removed {
            tracing::info!(bucket = %bucket.name, key = %key, version = %removed.version_id, size = removed.size, "object version deleted");
        }
        let shown = match (&out.version_id, bucket.versioning) {
            (Some(_), VersioningState::Unversioned) => None,
            (v, _) => v.clone(),
        };
        Ok((shown, out.delete_marker))
    }

    pub(crate) async fn op_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        if input.if_match.is_some()
            || input.if_match_size.is_some()
            || input.if_match_last_modified_time.is_some()
        {
            return Err(s3_error!(
                NotImplemented,
                "Conditional DeleteObject is not supported yet"
            ));
        }
        let (version_id, marker) =
            self.delete_one(&bucket, &input.key, &input.version_id, bypass, &who.id)?;
        let mut resp = S3Response::new(DeleteObjectOutput {
            delete_marker: marker.then_some(true),
            version_id,
            ..Default::default()
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn op_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The request must contain no more than 1000 keys"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for obj in input.delete.objects {
            match self.delete_one(&bucket, &obj.key, &obj.version_id, bypass, &who.id) {
                Ok((version_id, marker)) => {
                    if !quiet {
                        let (vid, dm_vid) = if marker && obj.version_id.is_none() {
                            (None, version_id)
                        } else {
                            (version_id, None)
                        };
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            version_id: vid.or(obj.version_id),
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: dm_vid,
                        });
                    }
                }
                Err(e) => failed.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(obj.key),
                    version_id: obj.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!failed.is_empty()).then_some(failed),
            ..Default::default()
        }))
    }

    pub(crate) async fn op_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let dst_bucket = self.owned_bucket(&who, &input.bucket)?;
        check_key(&input.key)?;
        let CopySource::Bucket {
            bucket: src_bucket_name,
            key: src_key,
            version_id: src_vid,
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Access point copy sources are not supported"
            ));
        };
        let src_bucket = self.owned_bucket(&who, src_bucket_name)?;
        let src_vid = src_vid.as_ref().map(|s| s.to_string());
        let src = match self.readable_version(&src_bucket, src_key, &src_vid) {
            Err(e) if *e.code() == S3ErrorCode::MethodNotAllowed => {
                return Err(s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                ));
            }
            r => r?,
        };
        // x-amz-copy-source-if-*: every failed condition is 412 for a copy.
        check_read_conditions(
            &src,
            &input.copy_source_if_match,
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )
        .map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed)
            } else {
                e
            }
        })?;
        if src.size > MAX_PUT_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }

        let replace_meta = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Unknown metadata directive.")),
        };
        let replace_tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Unknown tagging directive.")),
        };
        let new_class = storage_class(&input.storage_class)?;
        let same_object =
            src_bucket.name == dst_bucket.name && **src_key == *input.key && src_vid.is_none();
        if same_object
            && !replace_meta
            && new_class == src.storage_class
            && input.storage_class.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let (content, user_meta) = if replace_meta {
            (
                content_headers(
                    &input.content_type,
                    &input.content_encoding,
                    &input.content_disposition,
                    &input.content_language,
                    &input.cache_control,
                    &input.expires,
                ),
                user_metadata(&input.metadata)?,
            )
        } else {
            (src.content.clone(), src.user_metadata.clone())
        };
        let tags = if replace_tags {
            match &input.tagging {
                Some(t) => parse_tag_header(t)?,
                None => Vec::new(),
            }
        } else {
            src.tags.clone()
        };
        let lock = lock_request(
            &dst_bucket,
            &input.object_lock_mode,
            &input.object_lock_retain_until_date,
            &input.object_lock_legal_hold_status,
        )?;

        // Re-encrypt under a new data key of the destination: versions never share bytes, so
        // destroying one version's key can never affect another.
        let src_dek = self.ctx.layout_key(&src_bucket, &src.data)?;
        let body = datapath::read_range(&self.ctx, src_dek, &src.data.segments, 0..src.size);
        let dek = self.ctx.new_data_key(&dst_bucket)?;
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase())
            .or_else(|| src.checksum.as_ref().map(|c| c.0.clone()));
        let stored = datapath::store_body(
            &self.ctx,
            dek.key.clone(),
            Some(body),
            BodyChecks {
                max_len: MAX_PUT_SIZE,
                expected_len: Some(src.size),
                content_md5: None,
                checksum_algorithm: algorithm,
                checksum_expected: None,
                trailers: None,
            },
        )
        .await?;
        let etag_hex = hex::encode(stored.md5);
        let now = now_ms();
        let version = VersionRecord {
            version_id: self.new_version_id_for(&dst_bucket),
            is_delete_marker: false,
            last_modified: now,
            size: stored.segment.len,
            etag: etag_hex.clone(),
            checksum: stored.checksum.clone(),
            checksum_type: stored.checksum.as_ref().map(|_| "FULL_OBJECT".to_string()),
            content,
            user_metadata: user_meta,
            tags,
            storage_class: new_class,
            owner: who.id.clone(),
            data: DataLayout {
                kek_id: dst_bucket.kek_id.clone(),
                dek_id: dek.dek_id,
                wrapped_dek: dek.wrapped,
                segments: if stored.segment.len > 0 {
                    vec![stored.segment]
                } else {
                    Vec::new()
                },
            },
            parts: Vec::new(),
            retention: lock.retention,
            legal_hold: lock.legal_hold,
        };
        let version_id =
            self.commit_version(&dst_bucket, &input.key, version, &Precondition::None)?;
        let c = checksum::to_dto(&stored.checksum, &Some("FULL_OBJECT".into()));
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&etag_hex)),
                last_modified: Some(ts(now)),
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
                checksum_type: c.checksum_type,
            }),
            copy_source_version_id: shown_version_id(&src_bucket, &src),
            version_id: (dst_bucket.versioning != VersioningState::Unversioned)
                .then_some(version_id),
            ..Default::default()
        }))
    }

    /// Maps the errors of a per-version change (tags, retention, legal hold): a delete marker
    /// addressed by id answers 405 MethodNotAllowed with the delete-marker headers.
    fn version_change_error(&self, bucket: &BucketRecord, e: MetaError) -> S3Error {
        match e {
            MetaError::IsDeleteMarker {
                version_id,
                last_modified,
            } => {
                let marker = VersionRecord::delete_marker(version_id, String::new(), last_modified);
                delete_marker_error(bucket, &marker, true)
            }
            e => errors::meta(e),
        }
    }

    pub(crate) async fn op_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let who = self.caller(&req.credentials)?;
        let bucket = self.owned_bucket(&who, &req.input.bucket)?;
        let v = self.readable_version(&bucket, &req.input.key, &req.input.version_id)?;
        let tag_set = v
            .tags
            .iter()
            .map(|(k, val)| Tag {
                key: Some(k.clone()),
                value: Some(val.clone()),
            })
            .collect();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: shown_version_id(&bucket, &v),
        }))
    }

    pub(crate) async fn op_put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        validate_tags(&tags)?;
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        let v = self
            .ctx
            .meta
            .set_tags(&bucket.name, &input.key, vid, tags)
            .map_err(|e| self.version_change_error(&bucket, e))?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        }))
    }

    pub(crate) async fn op_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        let v = self
            .ctx
            .meta
            .set_tags(&bucket.name, &input.key, vid, Vec::new())
            .map_err(|e| self.version_change_error(&bucket, e))?;
        let mut resp = S3Response::new(DeleteObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn op_put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let wanted = match input.retention {
            None => None,
            Some(r) => match (r.mode, r.retain_until_date) {
                (None, None) => None,
                (Some(m), Some(d)) => {
                    let until = ts_to_ms(&d);
                    if until <= now_ms() {
                        return Err(s3_error!(
                            InvalidArgument,
                            "The retain until date must be in the future!"
                        ));
                    }
                    Some(Retention {
                        mode: parse_mode(m.as_str())?,
                        retain_until: until,
                    })
                }
                _ => return Err(s3_error!(MalformedXML)),
            },
        };
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        // The Object Lock rules (and the bucket's Object Lock check) are the metadata tier's.
        self.ctx
            .meta
            .set_retention(&bucket.name, &input.key, vid, wanted, bypass, now_ms())
            .map_err(|e| self.version_change_error(&bucket, e))?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, "object retention set");
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(crate) async fn op_get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let who = self.caller(&req.credentials)?;
        let bucket = self.owned_bucket(&who, &req.input.bucket)?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let v = self.readable_version(&bucket, &req.input.key, &req.input.version_id)?;
        let r = v.retention.ok_or_else(|| {
            s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            )
        })?;
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(mode_str(r.mode).to_string())),
                retain_until_date: Some(ts(r.retain_until)),
            }),
        }))
    }

    pub(crate) async fn op_put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let on = match input
            .legal_hold
            .and_then(|h| h.status)
            .as_ref()
            .map(|s| s.as_str().to_string())
            .as_deref()
        {
            Some("ON") => true,
            Some("OFF") => false,
            _ => return Err(s3_error!(MalformedXML)),
        };
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        self.ctx
            .meta
            .set_legal_hold(&bucket.name, &input.key, vid, on)
            .map_err(|e| self.version_change_error(&bucket, e))?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, on, "legal hold set");
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(crate) async fn op_get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let who = self.caller(&req.credentials)?;
        let bucket = self.owned_bucket(&who, &req.input.bucket)?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let v = self.readable_version(&bucket, &req.input.key, &req.input.version_id)?;
        let status = if v.legal_hold {
            ObjectLockLegalHoldStatus::ON
        } else {
            ObjectLockLegalHoldStatus::OFF
        };
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(ObjectLockLegalHoldStatus::from_static(status)),
            }),
        }))
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
