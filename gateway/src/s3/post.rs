//! PostObject (HTML-form upload) as a PutObject: the form's fields become the PutObject's
//! parameters (canned ACL and grants, content headers, user metadata, tagging, storage class,
//! SSE, checksums, Object Lock), so the write takes the same path (authorize(), ACL, SSE, engine)
//! as a PUT. The form itself is read and its signature and policy checked at the edge
//! (`http::post_object`).

use std::collections::HashMap;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::StrataS3;

/// What the edge hands over: the bucket, the expanded key, the form fields before the file,
/// and the file as the body.
pub(crate) struct PostRequest {
    pub bucket: String,
    pub key: String,
    pub fields: Vec<(String, String)>,
    pub credentials: Option<s3s::auth::Credentials>,
    pub extensions: http::Extensions,
    pub body: StreamingBlob,
}

/// The form's `tagging` field (an XML `Tagging` document) as the `x-amz-tagging` header text.
pub(crate) fn tagging_header(xml: &str) -> S3Result<String> {
    let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
    let t = <Tagging as s3s::xml::Deserialize>::deserialize(&mut d).map_err(|_| {
        s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        )
    })?;
    Ok(t.tag_set
        .iter()
        .map(|tag| {
            format!(
                "{}={}",
                urlencoding::encode(tag.key.as_deref().unwrap_or_default()),
                urlencoding::encode(tag.value.as_deref().unwrap_or_default())
            )
        })
        .collect::<Vec<_>>()
        .join("&"))
}

impl StrataS3 {
    /// Writes the file of a form upload as PutObject would write it.
    pub(crate) async fn op_post_object(
        &self,
        p: PostRequest,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let get = |name: &str| -> Option<String> {
            p.fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut metadata = HashMap::new();
        for (n, v) in &p.fields {
            let lower = n.to_ascii_lowercase();
            if let Some(k) = lower.strip_prefix("x-amz-meta-") {
                metadata.insert(k.to_string(), v.clone());
            }
        }
        let tagging = match get("tagging") {
            Some(x) => Some(tagging_header(&x)?),
            None => None,
        };
        let expires = get("expires").and_then(|e| {
            Timestamp::parse(TimestampFormat::HttpDate, &e)
                .or_else(|_| Timestamp::parse(TimestampFormat::DateTime, &e))
                .ok()
        });
        let retain_until = match get("x-amz-object-lock-retain-until-date") {
            Some(d) => Some(
                Timestamp::parse(TimestampFormat::DateTime, &d)
                    .map_err(|_| s3_error!(InvalidArgument, "Invalid retain until date"))?,
            ),
            None => None,
        };
        let input = PutObjectInput {
            bucket: p.bucket.clone(),
            key: p.key.clone(),
            body: Some(p.body),
            acl: get("acl").map(ObjectCannedACL::from),
            grant_full_control: get("x-amz-grant-full-control"),
            grant_read: get("x-amz-grant-read"),
            grant_read_acp: get("x-amz-grant-read-acp"),
            grant_write_acp: get("x-amz-grant-write-acp"),
            cache_control: get("cache-control"),
            content_disposition: get("content-disposition"),
            content_encoding: get("content-encoding"),
            content_language: get("content-language"),
            content_type: get("content-type"),
            content_md5: get("content-md5"),
            expires,
            metadata: (!metadata.is_empty()).then_some(metadata),
            tagging,
            storage_class: get("x-amz-storage-class").map(StorageClass::from),
            server_side_encryption: get("x-amz-server-side-encryption")
                .map(ServerSideEncryption::from),
            ssekms_key_id: get("x-amz-server-side-encryption-aws-kms-key-id"),
            ssekms_encryption_context: get("x-amz-server-side-encryption-context"),
            bucket_key_enabled: get("x-amz-server-side-encryption-bucket-key-enabled")
                .map(|v| v.eq_ignore_ascii_case("true")),
            sse_customer_algorithm: get("x-amz-server-side-encryption-customer-algorithm"),
            sse_customer_key: get("x-amz-server-side-encryption-customer-key"),
            sse_customer_key_md5: get("x-amz-server-side-encryption-customer-key-md5"),
            checksum_algorithm: get("x-amz-checksum-algorithm").map(ChecksumAlgorithm::from),
            checksum_crc32: get("x-amz-checksum-crc32"),
            checksum_crc32c: get("x-amz-checksum-crc32c"),
            checksum_crc64nvme: get("x-amz-checksum-crc64nvme"),
            checksum_sha1: get("x-amz-checksum-sha1"),
            checksum_sha256: get("x-amz-checksum-sha256"),
            object_lock_mode: get("x-amz-object-lock-mode").map(ObjectLockMode::from),
            object_lock_retain_until_date: retain_until,
            object_lock_legal_hold_status: get("x-amz-object-lock-legal-hold")
                .map(ObjectLockLegalHoldStatus::from),
            ..Default::default()
        };
        let uri: http::Uri = format!("/{}", urlencoding::encode(&p.bucket))
            .parse()
            .unwrap_or_default();
        let req = S3Request {
            input,
            method: http::Method::POST,
            uri,
            headers: http::HeaderMap::new(),
            extensions: p.extensions,
            credentials: p.credentials,
            region: None,
            service: None,
            trailing_headers: None,
        };
        self.op_put_object(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_documents_become_tag_headers() {
        let x = "<Tagging><TagSet><Tag><Key>a b</Key><Value>1&amp;2</Value></Tag><Tag><Key>k</Key><Value></Value></Tag></TagSet></Tagging>";
        let h = tagging_header(x).unwrap();
        assert_eq!(h, "a%20b=1%262&k=");
        let tags = super::super::common::parse_tag_header(&h).unwrap();
        assert_eq!(tags[0], ("a b".to_string(), "1&2".to_string()));
        assert_eq!(
            tagging_header("not-xml").unwrap_err().code(),
            &s3s::S3ErrorCode::MalformedXML
        );
    }
}
