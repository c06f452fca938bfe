//! CopyObject: the engine re-encrypts the source's bytes under the new version's own key.

use super::access::read_action;
use super::acl::GrantHeaders;
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_engine::objects::ObjectAttrs;
use strata_metadata::{Precondition, VersioningState};

use super::StrataS3;
use super::common::*;
use super::write_args::lock_request;
use crate::checksum;
use crate::errors;

impl StrataS3 {
    pub(crate) async fn op_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        // The tags a copy sets are the request's only with the REPLACE directive.
        let replacing_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        who.write_conditions(super::access::WriteHeaders {
            acl: input.acl.as_ref().map(|a| a.as_str()),
            sse: input.server_side_encryption.as_ref().map(|s| s.as_str()),
            kms_key: input.ssekms_key_id.as_deref(),
            tagging: input.tagging.as_deref().filter(|_| replacing_tags),
            if_none_match: None,
        });
        let dst_bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
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
        let src_bucket = self.existing_bucket(src_bucket_name).await?;
        let src_vid = src_vid.as_ref().map(|s| s.to_string());
        let src = match self
            .authorized_version(&who, &src_bucket, src_key, &src_vid, read_action(&src_vid))
            .await
        {
            Err(e) if *e.code() == S3ErrorCode::MethodNotAllowed => {
                return Err(s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                ));
            }
            r => r?,
        };
        // The source's SSE-C key comes in the x-amz-copy-source-server-side-encryption-customer-*
        // headers; the copy's own encryption in the usual ones (else the bucket default).
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
        let sse_request = self.write_sse_request(
            &dst_bucket,
            &input.server_side_encryption,
            &input.ssekms_key_id,
            &input.ssekms_encryption_context,
            input.bucket_key_enabled,
            customer.as_ref(),
        )?;
        let encryption_given = input.server_side_encryption.is_some() || customer.is_some();
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
            && !encryption_given
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let (mut content, user_meta) = if replace_meta {
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
        let (owner, acl) = self
            .object_write_acl(
                &who,
                &dst_bucket,
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
        let lock = lock_request(
            &dst_bucket,
            &input.object_lock_mode,
            &input.object_lock_retain_until_date,
            &input.object_lock_legal_hold_status,
        )?;

        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase())
            .or_else(|| src.checksum.as_ref().map(|c| c.0.clone()));
        let (sse, binding) = self.prepare_sse(sse_request).await?;
        content.sse = Some(sse.clone());
        let attrs = ObjectAttrs {
            content,
            user_metadata: user_meta,
            tags,
            storage_class: new_class,
            owner,
            retention: lock.retention,
            legal_hold: lock.legal_hold,
            acl,
            origin: None,
        };
        let written = self
            .ctx
            .engine
            .copy_object_bound(
                (&src_bucket, &src, &src_binding),
                &dst_bucket,
                &input.key,
                attrs,
                algorithm,
                Precondition::None,
                &binding,
            )
            .await
            .map_err(errors::engine)?;
        let v = &written.version;
        let c = checksum::to_dto(&v.checksum, &Some("FULL_OBJECT".into()));
        let mut out = CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&v.etag)),
                last_modified: Some(ts(v.last_modified)),
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
                checksum_type: c.checksum_type,
            }),
            copy_source_version_id: shown_version_id(&src_bucket, &src),
            version_id: (dst_bucket.versioning != VersioningState::Unversioned)
                .then_some(written.outcome.version_id.clone()),
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
}
