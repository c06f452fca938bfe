//! GetObjectAttributes: ETag, Checksum, ObjectParts (paged), StorageClass and ObjectSize of a
//! version, without its body.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;

use super::StrataS3;
use super::common::*;
use crate::checksum;

/// Parts listed per page when `max-parts` is absent (as ListParts).
const DEFAULT_MAX_PARTS: usize = 1000;

impl StrataS3 {
    pub(crate) async fn op_get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:GetObjectAttributes"),
            )
            .await?;
        check_key(&input.key)?;
        let mut want = std::collections::BTreeSet::new();
        for a in &input.object_attributes {
            for name in a
                .as_str()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                match name {
                    "ETag" | "Checksum" | "ObjectParts" | "StorageClass" | "ObjectSize" => {
                        want.insert(name.to_string());
                    }
                    _ => {
                        return Err(s3_error!(
                            InvalidArgument,
                            "Invalid attribute name specified."
                        ));
                    }
                }
            }
        }
        if want.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
            ));
        }
        let max_parts = match input.max_parts {
            None => DEFAULT_MAX_PARTS,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-parts must be a non-negative integer"
                ));
            }
            Some(n) => (n as usize).min(DEFAULT_MAX_PARTS),
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
        let v = self
            .readable_version(&bucket, &input.key, &input.version_id)
            .await?;
        // An SSE-C object's attributes need its key too, as S3.
        let customer = self.customer_key(super::sse::CustomerHeaders {
            algorithm: &input.sse_customer_algorithm,
            key: &input.sse_customer_key,
            key_md5: &input.sse_customer_key_md5,
            secure: super::sse::is_secure(&req.extensions),
        })?;
        self.read_binding(v.content.sse.as_ref(), customer.as_ref())
            .await?;
        let mut out = GetObjectAttributesOutput {
            last_modified: Some(ts(v.last_modified)),
            version_id: shown_version_id(&bucket, &v),
            ..Default::default()
        };
        if want.contains("ETag") {
            out.e_tag = Some(etag(&v.etag));
        }
        if want.contains("ObjectSize") {
            out.object_size = Some(v.size as i64);
        }
        if want.contains("StorageClass") {
            out.storage_class = Some(StorageClass::from(v.storage_class.clone()));
        }
        if want.contains("Checksum") && v.checksum.is_some() {
            out.checksum = Some(checksum::to_dto(&v.checksum, &v.checksum_type));
        }
        if want.contains("ObjectParts") && !v.parts.is_empty() {
            let after: Vec<_> = v.parts.iter().filter(|p| p.part_number > marker).collect();
            let truncated = after.len() > max_parts;
            let page: Vec<ObjectPart> = after
                .iter()
                .take(max_parts)
                .map(|p| {
                    let c = checksum::to_dto(&p.checksum, &None);
                    ObjectPart {
                        part_number: Some(p.part_number as i32),
                        size: Some(p.size as i64),
                        checksum_crc32: c.checksum_crc32,
                        checksum_crc32c: c.checksum_crc32c,
                        checksum_crc64nvme: c.checksum_crc64nvme,
                        checksum_sha1: c.checksum_sha1,
                        checksum_sha256: c.checksum_sha256,
                    }
                })
                .collect();
            out.object_parts = Some(GetObjectAttributesParts {
                is_truncated: Some(truncated),
                max_parts: Some(max_parts as i32),
                next_part_number_marker: page.last().and_then(|p| p.part_number),
                part_number_marker: Some(marker as i32),
                total_parts_count: Some(v.parts.len() as i32),
                parts: Some(page),
            });
        }
        Ok(S3Response::new(out))
    }
}
