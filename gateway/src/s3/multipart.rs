//! Multipart uploads: create, upload part (and part copy), list, complete, abort.

use base64::Engine as _;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_metadata::{
    BucketRecord, DataLayout, ListUploadsParams, PartRecord, PartSummary, UploadRecord,
    VersionRecord, VersioningState,
};

use super::StrataS3;
use super::common::*;
use super::object::{checksum_plan, lock_request, write_precondition};
use crate::checksum;
use crate::context::now_ms;
use crate::datapath::{self, BodyChecks};
use crate::errors;

/// Largest object assembled from parts: 5 TiB.
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Largest part: 5 GiB.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

fn check_part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PARTS as i32).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// The multipart ETag: MD5 of the concatenated binary part MD5s, then `-N`.
pub fn multipart_etag(part_etags: &[&str]) -> S3Result<String> {
    let mut h = Md5::new();
    for e in part_etags {
        let raw =
            hex::decode(e).map_err(|_| s3_error!(InvalidPart, "Part ETag is not a valid MD5"))?;
        h.update(&raw);
    }
    Ok(format!(
        "{}-{}",
        hex::encode(h.finalize()),
        part_etags.len()
    ))
}

fn crc_algorithm(alg: &str) -> Option<(crc_fast::CrcAlgorithm, usize)> {
    match alg {
        "CRC32" => Some((crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4)),
        "CRC32C" => Some((crc_fast::CrcAlgorithm::Crc32Iscsi, 4)),
        "CRC64NVME" => Some((crc_fast::CrcAlgorithm::Crc64Nvme, 8)),
        _ => None,
    }
}

fn decode_checksum(v: &str, width: usize) -> S3Result<u64> {
    let raw = checksum::decode_b64(v)
        .filter(|r| r.len() == width)
        .ok_or_else(|| s3_error!(InvalidPart, "Invalid part checksum"))?;
    Ok(raw.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// The whole-object checksum of a completed upload from its parts' checksums: COMPOSITE is the
/// checksum of the concatenated part checksums plus `-N`; FULL_OBJECT (CRCs only) combines the
/// part CRCs mathematically, as if the whole object had been hashed in one pass.
fn combined_checksum(alg: &str, kind: &str, parts: &[PartRecord]) -> S3Result<Option<String>> {
    let values: Option<Vec<&str>> = parts
        .iter()
        .map(|p| {
            p.checksum
                .as_ref()
                .filter(|(a, _)| a == alg)
                .map(|(_, v)| v.as_str())
        })
        .collect();
    let Some(values) = values else {
        return Ok(None);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    if kind == "FULL_OBJECT" {
        let (crc, width) = crc_algorithm(alg).ok_or_else(|| {
            s3_error!(InvalidRequest, "FULL_OBJECT checksums need a CRC algorithm")
        })?;
        let mut acc: Option<u64> = None;
        for (p, v) in parts.iter().zip(&values) {
            let c = decode_checksum(v, width)?;
            acc = Some(match acc {
                None => c,
                Some(a) => crc_fast::checksum_combine(crc, a, c, p.size),
            });
        }
        let v = acc.unwrap_or(0);
        let bytes = v.to_be_bytes();
        return Ok(Some(b64.encode(&bytes[8 - width..])));
    }
    let mut h = checksum::Hasher::new(alg)?;
    for v in &values {
        h.update(
            &checksum::decode_b64(v)
                .ok_or_else(|| s3_error!(InvalidPart, "Invalid part checksum"))?,
        );
    }
    Ok(Some(format!("{}-{}", h.finalize(), parts.len())))
}

impl StrataS3 {
    fn upload(&self, bucket: &BucketRecord, key: &str, upload_id: &str) -> S3Result<UploadRecord> {
        self.ctx
            .meta
            .get_upload(&bucket.name, key, upload_id)
            .map_err(errors::meta)
    }

    pub(crate) async fn op_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        check_key(&input.key)?;
        let lock = lock_request(
            &bucket,
            &input.object_lock_mode,
            &input.object_lock_retain_until_date,
            &input.object_lock_legal_hold_status,
        )?;
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase());
        let kind = match (
            input.checksum_type.as_ref().map(|t| t.as_str().to_string()),
            &algorithm,
        ) {
            (Some(t), Some(a)) => {
                if t == "FULL_OBJECT" && crc_algorithm(a).is_none() {
                    return Err(s3_error!(
                        InvalidRequest,
                        "The FULL_OBJECT checksum type cannot be used with the {a} checksum algorithm."
                    ));
                }
                Some(t)
            }
            (Some(_), None) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
                ));
            }
            (None, Some(a)) => Some(if a == "CRC64NVME" {
                "FULL_OBJECT".to_string()
            } else {
                "COMPOSITE".to_string()
            }),
            (None, None) => None,
        };
        if let Some(a) = &algorithm {
            checksum::Hasher::new(a)?;
        }
        let dek = self.ctx.new_data_key(&bucket)?;
        let upload_id = self.ctx.meta.new_upload_id();
        let rec = UploadRecord {
            upload_id: upload_id.clone(),
            key: input.key.clone(),
            initiated: now_ms(),
            // TODO(engine): owners are canonical user ids now (ListParts/Uploads show them as
            // DisplayName too until the engine resolves names).
            owner: who.id.clone(),
            kek_id: bucket.kek_id.clone(),
            dek_id: dek.dek_id,
            wrapped_dek: dek.wrapped,
            content: content_headers(
                &input.content_type,
                &input.content_encoding,
                &input.content_disposition,
                &input.content_language,
                &input.cache_control,
                &input.expires,
            ),
            user_metadata: user_metadata(&input.metadata)?,
            tags: match &input.tagging {
                Some(t) => parse_tag_header(t)?,
                None => Vec::new(),
            },
            storage_class: storage_class(&input.storage_class)?,
            checksum_algorithm: algorithm.clone(),
            checksum_type: kind.clone(),
            retention: lock.retention,
            legal_hold: lock.legal_hold,
        };
        self.ctx
            .meta
            .create_upload(&bucket.name, rec)
            .map_err(errors::meta)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
            checksum_type: kind.map(ChecksumType::from),
            ..Default::default()
        }))
    }

    pub(crate) async fn op_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let who = self.caller(&req.credentials)?;
        let headers = req.headers;
        let trailers = req.trailing_headers;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let part_number = check_part_number(input.part_number)?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id)?;
        if input
            .content_length
            .is_some_and(|n| n as u64 > MAX_PART_SIZE)
        {
            return Err(s3_error!(EntityTooLarge));
        }
        let declared = crate::declared_checksum!(input);
        let sdk_alg = input.checksum_algorithm.clone().or_else(|| {
            upload
                .checksum_algorithm
                .clone()
                .map(ChecksumAlgorithm::from)
        });
        let (alg, expected) = checksum_plan(declared, &sdk_alg, &headers);
        if let (Some(a), Some(u)) = (&alg, &upload.checksum_algorithm)
            && a != u
        {
            return Err(s3_error!(
                InvalidRequest,
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {a}",
                u.to_ascii_lowercase()
            ));
        }
        let dek =
            self.ctx
                .data_key(&bucket, &upload.kek_id, &upload.dek_id, &upload.wrapped_dek)?;
        let stored = datapath::store_body(
            &self.ctx,
            dek,
            input.body,
            BodyChecks {
                max_len: MAX_PART_SIZE,
                expected_len: input.content_length.map(|n| n.max(0) as u64),
                content_md5: content_md5(&input.content_md5)?,
                checksum_algorithm: alg,
                checksum_expected: expected,
                trailers,
            },
        )
        .await?;
        let etag_hex = hex::encode(stored.md5);
        let part = PartRecord {
            part_number,
            etag: etag_hex.clone(),
            size: stored.segment.len,
            last_modified: now_ms(),
            segment: stored.segment.clone(),
            checksum: stored.checksum.clone(),
        };
        if let Err(e) = self
            .ctx
            .meta
            .put_part(&bucket.name, &input.key, &input.upload_id, part)
        {
            // TODO(engine): one "commit or discard" helper for every writer. discard_write is
            // conditioned on the intent, so it queues nothing if the commit landed or was swept.
            if let Err(ge) = self
                .ctx
                .meta
                .discard_write(vec![stored.segment], "rejected-part")
            {
                tracing::error!(error = %ge, "could not queue a rejected part for GC");
            }
            return Err(errors::meta(e));
        }
        let c = checksum::to_dto(&stored.checksum, &None);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&etag_hex)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(crate) async fn op_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let part_number = check_part_number(input.part_number)?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id)?;
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
        let src = self.readable_version(&src_bucket, src_key, &src_vid)?;
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
        let range = match &input.copy_source_range {
            None => 0..src.size,
            Some(r) => parse_copy_range(r, src.size)?,
        };
        if range.end - range.start > MAX_PART_SIZE {
            return Err(s3_error!(EntityTooLarge));
        }
        let src_dek = self.ctx.layout_key(&src_bucket, &src.data)?;
        let body = datapath::read_range(&self.ctx, src_dek, &src.data.segments, range);
        let dek =
            self.ctx
                .data_key(&bucket, &upload.kek_id, &upload.dek_id, &upload.wrapped_dek)?;
        let stored = datapath::store_body(
            &self.ctx,
            dek,
            Some(body),
            BodyChecks {
                max_len: MAX_PART_SIZE,
                expected_len: None,
                content_md5: None,
                checksum_algorithm: upload.checksum_algorithm.clone(),
                checksum_expected: None,
                trailers: None,
            },
        )
        .await?;
        let etag_hex = hex::encode(stored.md5);
        let now = now_ms();
        let part = PartRecord {
            part_number,
            etag: etag_hex.clone(),
            size: stored.segment.len,
            last_modified: now,
            segment: stored.segment.clone(),
            checksum: stored.checksum.clone(),
        };
        if let Err(e) = self
            .ctx
            .meta
            .put_part(&bucket.name, &input.key, &input.upload_id, part)
        {
            // TODO(engine): one "commit or discard" helper for every writer. discard_write is
            // conditioned on the intent, so it queues nothing if the commit landed or was swept.
            if let Err(ge) = self
                .ctx
                .meta
                .discard_write(vec![stored.segment], "rejected-part")
            {
                tracing::error!(error = %ge, "could not queue a rejected part for GC");
            }
            return Err(errors::meta(e));
        }
        let c = checksum::to_dto(&stored.checksum, &None);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&etag_hex)),
                last_modified: Some(ts(now)),
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
            }),
            copy_source_version_id: shown_version_id(&src_bucket, &src),
            ..Default::default()
        }))
    }

    pub(crate) async fn op_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        check_key(&input.key)?;
        let precondition = write_precondition(&input.if_match, &input.if_none_match)?;
        self.check_if_match_target(&bucket, &input.key, &precondition)?;
        let requested_parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested_parts.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        if requested_parts.len() > MAX_PARTS as usize {
            return Err(s3_error!(MalformedXML));
        }
        let mut requested = Vec::with_capacity(requested_parts.len());
        let mut client_part_checksums = Vec::with_capacity(requested_parts.len());
        for p in &requested_parts {
            let n = p.part_number.ok_or_else(|| s3_error!(MalformedXML))?;
            let e = p.e_tag.as_ref().ok_or_else(|| s3_error!(MalformedXML))?;
            requested.push((
                check_part_number(n).map_err(|_| s3_error!(InvalidPart))?,
                e.value().trim_matches('"').to_string(),
            ));
            client_part_checksums.push(crate::declared_checksum!(p));
        }
        let declared_whole = crate::declared_checksum!(input);
        let version_id = self.new_version_id_for(&bucket);
        let owner = who.id.clone();
        let mut built: Option<VersionRecord> = None;
        let mut build_err: Option<S3Error> = None;
        let outcome = self.ctx.meta.complete_upload(
            &bucket.name,
            &input.key,
            &input.upload_id,
            &requested,
            &precondition,
            |upload, parts| {
                let build = || -> S3Result<VersionRecord> {
                    // A checksum the client lists for a part must be the one we computed for it.
                    for (p, c) in parts.iter().zip(&client_part_checksums) {
                        if let Some((alg, val)) = c
                            && p.checksum
                                .as_ref()
                                .is_some_and(|(a, v)| a == alg && v != val)
                        {
                            return Err(s3_error!(
                                InvalidPart,
                                "The checksum of part {} does not match",
                                p.part_number
                            ));
                        }
                    }
                    let etags: Vec<&str> = parts.iter().map(|p| p.etag.as_str()).collect();
                    let etag = multipart_etag(&etags)?;
                    let (checksum, checksum_type) =
                        match (&upload.checksum_algorithm, &upload.checksum_type) {
                            (Some(a), Some(k)) => match combined_checksum(a, k, parts)? {
                                Some(v) => (Some((a.clone(), v)), Some(k.clone())),
                                None => (None, None),
                            },
                            _ => (None, None),
                        };
                    if let (Some((da, dv)), Some((a, v))) = (&declared_whole, &checksum)
                        && da == a
                        && dv != v
                        && dv
                            .trim_end_matches(|c: char| c.is_ascii_digit())
                            .trim_end_matches('-')
                            != v.as_str()
                    {
                        return Err(s3_error!(
                            BadDigest,
                            "The {} you specified did not match the calculated checksum.",
                            a.to_ascii_lowercase()
                        ));
                    }
                    let size: u64 = parts.iter().map(|p| p.size).sum();
                    if size > MAX_OBJECT_SIZE {
                        return Err(s3_error!(
                            EntityTooLarge,
                            "Your proposed upload exceeds the maximum allowed object size of 5 TiB."
                        ));
                    }
                    if input.mpu_object_size.is_some_and(|n| n as u64 != size) {
                        return Err(s3_error!(
                            InvalidRequest,
                            "The provided MpuObjectSize does not match the object size"
                        ));
                    }
                    Ok(VersionRecord {
                        version_id: version_id.clone(),
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
                        owner: owner.clone(),
                        data: DataLayout {
                            kek_id: upload.kek_id.clone(),
                            dek_id: upload.dek_id.clone(),
                            wrapped_dek: upload.wrapped_dek.clone(),
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
                            })
                            .collect(),
                        retention: upload.retention.clone(),
                        legal_hold: upload.legal_hold,
                    })
                };
                match build() {
                    Ok(v) => {
                        built = Some(v.clone());
                        Ok(v)
                    }
                    Err(e) => {
                        build_err = Some(e);
                        Err(strata_metadata::MetaError::Conflict)
                    }
                }
            },
        );
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Err(build_err.take().unwrap_or_else(|| errors::meta(e))),
        };
        let v = built.ok_or_else(|| s3_error!(InternalError))?;
        tracing::info!(bucket = %bucket.name, key = %input.key, size = v.size, parts = v.parts.len(), "multipart upload completed");
        let c = checksum::to_dto(&v.checksum, &v.checksum_type);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", bucket.name, input.key)),
            e_tag: Some(etag(&v.etag)),
            version_id: (bucket.versioning != VersioningState::Unversioned)
                .then_some(outcome.version_id),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: c.checksum_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn op_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        self.ctx
            .meta
            .abort_upload(&bucket.name, &input.key, &input.upload_id)
            .map_err(errors::meta)?;
        let mut resp = S3Response::new(AbortMultipartUploadOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn op_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id)?;
        let max = match input.max_parts {
            None => 1000,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-parts must be a non-negative integer"
                ));
            }
            Some(n) => (n as usize).min(1000),
        };
        let marker = match input.part_number_marker {
            None => 0,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "part-number-marker must be a non-negative integer"
                ));
            }
            Some(n) => n as u32,
        };
        let page = self
            .ctx
            .meta
            .list_parts(&bucket.name, &input.key, &input.upload_id, marker, max)
            .map_err(errors::meta)?;
        let parts = page
            .parts
            .iter()
            .map(|p| {
                let c = checksum::to_dto(&p.checksum, &None);
                Part {
                    part_number: Some(p.part_number as i32),
                    e_tag: Some(etag(&p.etag)),
                    size: Some(p.size as i64),
                    last_modified: Some(ts(p.last_modified)),
                    checksum_crc32: c.checksum_crc32,
                    checksum_crc32c: c.checksum_crc32c,
                    checksum_crc64nvme: c.checksum_crc64nvme,
                    checksum_sha1: c.checksum_sha1,
                    checksum_sha256: c.checksum_sha256,
                }
            })
            .collect();
        let person = Some(Owner {
            display_name: Some(upload.owner.clone()),
            id: Some(upload.owner.clone()),
        });
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: page.next_part_number_marker.map(|n| n as i32),
            max_parts: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            initiator: Some(Initiator {
                display_name: Some(upload.owner.clone()),
                id: Some(upload.owner.clone()),
            }),
            owner: person,
            storage_class: Some(StorageClass::from(upload.storage_class.clone())),
            checksum_algorithm: upload
                .checksum_algorithm
                .clone()
                .map(ChecksumAlgorithm::from),
            checksum_type: upload.checksum_type.clone().map(ChecksumType::from),
            ..Default::default()
        }))
    }

    pub(crate) async fn op_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let who = self.caller(&req.credentials)?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket)?;
        let url = super::list::url_encoding(&input.encoding_type)?;
        let max = super::list::max_keys(input.max_uploads)?;
        let params = ListUploadsParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|m| !m.is_empty()),
            upload_id_marker: input.upload_id_marker.clone().filter(|m| !m.is_empty()),
            max_uploads: max,
        };
        let page = if max == 0 {
            Default::default()
        } else {
            self.ctx
                .meta
                .list_uploads(&bucket.name, &params)
                .map_err(errors::meta)?
        };
        let enc = |s: String| if url { url_encode_key(&s) } else { s };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc(u.key.clone())),
                upload_id: Some(u.upload_id.clone()),
                initiated: Some(ts(u.initiated)),
                initiator: Some(Initiator {
                    display_name: Some(u.owner.clone()),
                    id: Some(u.owner.clone()),
                }),
                owner: Some(Owner {
                    display_name: Some(u.owner.clone()),
                    id: Some(u.owner.clone()),
                }),
                storage_class: Some(StorageClass::from(u.storage_class.clone())),
                checksum_algorithm: u.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
                checksum_type: u.checksum_type.clone().map(ChecksumType::from),
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket.name.clone()),
            prefix: Some(enc(params.prefix)),
            delimiter: params.delimiter.map(enc),
            key_marker: Some(enc(input.key_marker.unwrap_or_default())),
            upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
            max_uploads: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            next_key_marker: page.next_key_marker.map(enc),
            next_upload_id_marker: page.next_upload_id_marker,
            uploads: Some(uploads),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// `x-amz-copy-source-range: bytes=first-last` (both required, inclusive, inside the source).
fn parse_copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        let mut e = S3Error::with_message(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(e);
    }
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_s3_rule() {
        // Two parts whose MD5s are those of "a" and "b".
        let a = hex::encode(Md5::digest(b"a"));
        let b = hex::encode(Md5::digest(b"b"));
        let mut h = Md5::new();
        h.update(Md5::digest(b"a"));
        h.update(Md5::digest(b"b"));
        let want = format!("{}-2", hex::encode(h.finalize()));
        assert_eq!(multipart_etag(&[&a, &b]).unwrap(), want);
        assert!(multipart_etag(&["zz"]).is_err());
    }

    #[test]
    fn copy_range_parsing() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("bytes=5-1", 10).is_err());
        assert!(parse_copy_range("0-1", 10).is_err());
    }

    #[test]
    fn full_object_crc_combines_like_one_pass() {
        use s3s::crypto::Checksum as _;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (p1, p2) = data.split_at(6000);
        let b64 = base64::engine::general_purpose::STANDARD;
        let crc = |d: &[u8]| b64.encode(s3s::crypto::Crc32::checksum(d));
        let part = |n: u32, d: &[u8]| PartRecord {
            part_number: n,
            etag: String::new(),
            size: d.len() as u64,
            last_modified: 0,
            segment: strata_metadata::Segment {
                blob: [0; 16],
                len: d.len() as u64,
                chunk_size: 1,
                layout: 0,
            },
            checksum: Some(("CRC32".into(), crc(d))),
        };
        let got = combined_checksum("CRC32", "FULL_OBJECT", &[part(1, p1), part(2, p2)])
            .unwrap()
            .unwrap();
        assert_eq!(got, crc(&data));
    }
}
