//! Multipart uploads: create, upload part (and part copy), list, complete, abort. The engine
//! stores parts and assembles the object; this module translates S3's requests and answers.

use super::access::read_action;
use super::acl::GrantHeaders;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::WriteSpec;
use strata_engine::authz::Action;
use strata_engine::multipart::{CompleteRequest, MAX_PART_SIZE, UploadAttrs};
use strata_metadata::{BucketRecord, ListUploadsParams, UploadRecord, VersioningState};

use super::StrataS3;
use super::common::*;
use super::write_args::{checksum_plan, lock_request, write_precondition};
use crate::checksum;
use crate::errors;

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

impl StrataS3 {
    async fn upload(
        &self,
        bucket: &BucketRecord,
        key: &str,
        upload_id: &str,
    ) -> S3Result<UploadRecord> {
        self.ctx
            .engine
            .upload(&bucket.name, key, upload_id)
            .await
            .map_err(errors::engine)
    }

    pub(crate) async fn op_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        who.write_conditions(super::access::WriteHeaders {
            acl: input.acl.as_ref().map(|a| a.as_str()),
            sse: input.server_side_encryption.as_ref().map(|s| s.as_str()),
            kms_key: input.ssekms_key_id.as_deref(),
            tagging: input.tagging.as_deref(),
            if_none_match: None,
        });
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
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
                if t == "FULL_OBJECT" && strata_engine::checksum::crc_algorithm(a).is_none() {
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
        let customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure: super::sse::is_secure(&req.extensions),
        })?;
        let sse_request = self.write_sse_request(
            &bucket,
            &input.server_side_encryption,
            &input.ssekms_key_id,
            &input.ssekms_encryption_context,
            input.bucket_key_enabled,
            customer.as_ref(),
        )?;
        let (owner, acl) = self
            .object_write_acl(
                &who,
                &bucket,
                input.acl.as_ref().map(|a| a.as_str()),
                GrantHeaders {
                    full_control: input.grant_full_control.as_deref(),
                    read: input.grant_read.as_deref(),
                    read_acp: input.grant_read_acp.as_deref(),
                    write: None,
                    write_acp: input.grant_write_acp.as_deref(),
                },
            )
            .await?;
        // The parts are written with the binding of this record (see op_upload_part).
        let (sse, _) = self.prepare_sse(sse_request).await?;
        let mut content = content_headers(
            &input.content_type,
            &input.content_encoding,
            &input.content_disposition,
            &input.content_language,
            &input.cache_control,
            &input.expires,
        );
        content.sse = Some(sse.clone());
        let attrs = UploadAttrs {
            content,
            user_metadata: user_metadata(&input.metadata)?,
            tags: match &input.tagging {
                Some(t) => parse_tag_header(t)?,
                None => Vec::new(),
            },
            storage_class: storage_class(&input.storage_class)?,
            owner,
            checksum_algorithm: algorithm.clone(),
            checksum_type: kind.clone(),
            retention: lock.retention,
            legal_hold: lock.legal_hold,
            acl,
        };
        let upload = self
            .ctx
            .engine
            .create_upload(&bucket, &input.key, attrs)
            .await
            .map_err(errors::engine)?;
        let upload_id = upload.upload_id;
        let mut out = CreateMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
            checksum_type: kind.map(ChecksumType::from),
            ..Default::default()
        };
        crate::fill_sse!(
            out,
            self.sse_out(Some(&sse), customer.as_ref().map(|c| c.key_md5.as_str())),
            c,
            ctx
        );
        Ok(S3Response::new(out))
    }

    pub(crate) async fn op_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let headers = req.headers;
        let extensions = req.extensions;
        let trailers = req.trailing_headers;
        let input = req.input;
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
        let part_number = check_part_number(input.part_number)?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id).await?;
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
        // An SSE-C upload needs its customer key on every part; SSE-KMS its key enabled.
        let customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure: super::sse::is_secure(&extensions),
        })?;
        let binding = self
            .read_binding(upload.content.sse.as_ref(), customer.as_ref())
            .await?;
        let spec = WriteSpec {
            max_len: MAX_PART_SIZE,
            expected_len: input.content_length.map(|n| n.max(0) as u64),
            content_md5: content_md5(&input.content_md5)?,
            checksum_algorithm: alg,
            checksum_expected: expected,
            late_checksum: checksum::late_checksum(&headers, &extensions, trailers),
            ..Default::default()
        };
        let part = self
            .ctx
            .engine
            .upload_part_bound(
                &bucket,
                &upload,
                part_number,
                crate::body::request_body(input.body),
                spec,
                &binding,
            )
            .await
            .map_err(errors::engine)?;
        let c = checksum::to_dto(&part.checksum, &None);
        let sse_out = self.sse_out(
            upload.content.sse.as_ref(),
            customer.as_ref().map(|c| c.key_md5.as_str()),
        );
        let mut out = UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        };
        crate::fill_sse!(out, sse_out, c);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn op_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
        let part_number = check_part_number(input.part_number)?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id).await?;
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
        let src_bucket = self.existing_bucket(src_bucket_name).await?;
        let src_vid = src_vid.as_ref().map(|s| s.to_string());
        let src = self
            .authorized_version(&who, &src_bucket, src_key, &src_vid, read_action(&src_vid))
            .await?;
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
        let src_customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.copy_source_sse_customer_algorithm,
            key: &input.copy_source_sse_customer_key,
            key_md5: &input.copy_source_sse_customer_key_md5,
            secure: super::sse::is_secure(&req.extensions),
        })?;
        let src_binding = self
            .read_binding(src.content.sse.as_ref(), src_customer.as_ref())
            .await?;
        let customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure: super::sse::is_secure(&req.extensions),
        })?;
        let binding = self
            .read_binding(upload.content.sse.as_ref(), customer.as_ref())
            .await?;
        let range = match &input.copy_source_range {
            None => 0..src.size,
            Some(r) => parse_copy_range(r, src.size)?,
        };
        if range.end - range.start > MAX_PART_SIZE {
            return Err(s3_error!(EntityTooLarge));
        }
        let part = self
            .ctx
            .engine
            .upload_part_copy_bound(
                &bucket,
                &upload,
                part_number,
                (&src_bucket, &src, &src_binding),
                range,
                &binding,
            )
            .await
            .map_err(errors::engine)?;
        let c = checksum::to_dto(&part.checksum, &None);
        let sse_out = self.sse_out(
            upload.content.sse.as_ref(),
            customer.as_ref().map(|c| c.key_md5.as_str()),
        );
        let mut out = UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(ts(part.last_modified)),
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
            }),
            copy_source_version_id: shown_version_id(&src_bucket, &src),
            ..Default::default()
        };
        crate::fill_sse!(out, sse_out, c);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn op_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let if_none_match = super::access::if_none_match_value(&input.if_none_match);
        who.condition("s3:if-none-match", if_none_match.as_deref());
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
        check_key(&input.key)?;
        let precondition = write_precondition(&input.if_match, &input.if_none_match)?;
        if matches!(precondition, strata_metadata::Precondition::IfMatch(_)) {
            self.ctx
                .engine
                .require_current(&bucket.name, &input.key)
                .await
                .map_err(errors::engine)?;
        }
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
        let req = CompleteRequest {
            parts: requested,
            part_checksums: client_part_checksums,
            whole_checksum: crate::declared_checksum!(input),
            object_size: input.mpu_object_size.map(|n| n.max(0) as u64),
            owner: who.writer(&bucket).to_string(),
            origin: None,
        };
        let written = self
            .ctx
            .engine
            .complete_upload(&bucket, &input.key, &input.upload_id, req, precondition)
            .await
            .map_err(errors::engine)?;
        let v = &written.version;
        let c = checksum::to_dto(&v.checksum, &v.checksum_type);
        let sse_out = self.sse_out(v.content.sse.as_ref(), None);
        let mut out = CompleteMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", bucket.name, input.key)),
            e_tag: Some(etag(&v.etag)),
            version_id: (bucket.versioning != VersioningState::Unversioned)
                .then_some(written.outcome.version_id.clone()),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            checksum_type: c.checksum_type,
            ..Default::default()
        };
        crate::fill_sse!(out, sse_out);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn op_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::AbortMultipartUpload,
            )
            .await?;
        self.ctx
            .engine
            .abort_upload(&bucket.name, &input.key, &input.upload_id)
            .await
            .map_err(errors::engine)?;
        let mut resp = S3Response::new(AbortMultipartUploadOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn op_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::ListMultipartUploadParts,
            )
            .await?;
        let upload = self.upload(&bucket, &input.key, &input.upload_id).await?;
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
            .engine
            .list_parts(&bucket.name, &input.key, &input.upload_id, marker, max)
            .await
            .map_err(errors::engine)?;
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
        let person = Some(owner_dto(&who, &upload.owner));
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: page.next_part_number_marker.map(|n| n as i32),
            max_parts: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            initiator: Some(initiator_dto(&who, &upload.owner)),
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
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_bucket(&who, &input.bucket, Action::ListBucketMultipartUploads)
            .await?;
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
                .engine
                .list_uploads(&bucket.name, params.clone())
                .await
                .map_err(errors::engine)?
        };
        let enc = |s: String| if url { url_encode_key(&s) } else { s };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc(u.key.clone())),
                upload_id: Some(u.upload_id.clone()),
                initiated: Some(ts(u.initiated)),
                initiator: Some(initiator_dto(&who, &u.owner)),
                owner: Some(owner_dto(&who, &u.owner)),
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
    fn copy_range_parsing() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("bytes=5-1", 10).is_err());
        assert!(parse_copy_range("0-1", 10).is_err());
    }
}
