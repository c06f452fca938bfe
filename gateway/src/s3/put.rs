//! PutObject: validate the S3 request, hand the body to the engine, answer with the ETag,
//! version id and checksum.

use super::acl::GrantHeaders;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::WriteSpec;
use strata_engine::authz::Action;
use strata_engine::objects::ObjectAttrs;
use strata_metadata::VersioningState;

use super::StrataS3;
use super::common::*;
use super::sse::CustomerHeaders;
use super::write_args::{checksum_plan, lock_request, write_precondition};
use crate::checksum;
use crate::errors;

impl StrataS3 {
    pub(crate) async fn op_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let headers = req.headers;
        let extensions = req.extensions;
        let trailers = req.trailing_headers;
        let input = req.input;
        let if_none_match = super::access::if_none_match_value(&input.if_none_match);
        who.write_conditions(super::access::WriteHeaders {
            acl: input.acl.as_ref().map(|a| a.as_str()),
            sse: input.server_side_encryption.as_ref().map(|s| s.as_str()),
            kms_key: input.ssekms_key_id.as_deref(),
            tagging: input.tagging.as_deref(),
            if_none_match: if_none_match.as_deref(),
        });
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), Action::PutObject)
            .await?;
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
        let declared = crate::declared_checksum!(input);
        let client_sent_checksum = declared.is_some()
            || input.checksum_algorithm.is_some()
            || headers.contains_key("x-amz-trailer");
        let (checksum_algorithm, checksum_expected) =
            checksum_plan(declared, &input.checksum_algorithm, &headers);
        let mut content = content_headers(
            &input.content_type,
            &input.content_encoding,
            &input.content_disposition,
            &input.content_language,
            &input.cache_control,
            &input.expires,
        );
        let customer = self.customer_key(CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure: super::sse::is_secure(&extensions),
        })?;
        let sse_request = self.write_sse_request(
            &bucket,
            &input.server_side_encryption,
            &input.ssekms_key_id,
            &input.ssekms_encryption_context,
            input.bucket_key_enabled,
            customer.as_ref(),
        )?;
        let (sse, binding) = self.prepare_sse(sse_request).await?;
        content.sse = Some(sse.clone());
        if matches!(precondition, strata_metadata::Precondition::IfMatch(_)) {
            self.ctx
                .engine
                .require_current(&bucket.name, &input.key)
                .await
                .map_err(errors::engine)?;
        }
        let spec = WriteSpec {
            max_len: MAX_PUT_SIZE,
            expected_len: input.content_length.map(|n| n.max(0) as u64),
            content_md5: content_md5(&input.content_md5)?,
            checksum_algorithm,
            checksum_expected,
            late_checksum: checksum::late_checksum(&headers, &extensions, trailers),
            ..Default::default()
        };
        let attrs = ObjectAttrs {
            content,
            user_metadata,
            tags,
            storage_class,
            owner,
            retention: lock.retention,
            legal_hold: lock.legal_hold,
            acl,
            origin: None,
        };
        let written = self
            .ctx
            .engine
            .put_object_bound(
                &bucket,
                &input.key,
                crate::body::request_body(input.body),
                spec,
                attrs,
                precondition,
                &binding,
            )
            .await
            .map_err(errors::engine)?;
        let v = &written.version;
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&v.etag)),
            expiration: super::lifecycle::expiration_header(&bucket, &input.key, v),
            ..Default::default()
        };
        if bucket.versioning != VersioningState::Unversioned {
            out.version_id = Some(written.outcome.version_id.clone());
        }
        crate::fill_sse!(
            out,
            self.sse_out(Some(&sse), customer.as_ref().map(|c| c.key_md5.as_str())),
            c,
            ctx
        );
        if client_sent_checksum {
            let c = checksum::to_dto(&v.checksum, &v.checksum_type);
            crate::fill_checksums!(out, c);
        }
        Ok(S3Response::new(out))
    }
}
