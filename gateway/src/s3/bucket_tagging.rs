//! Bucket tagging: Put/Get/DeleteBucketTagging. The tags live on the bucket record; S3's rules
//! for them are checked here (at most 50, keys 1..=128 characters, values at most 256, keys
//! unique, no `aws:` keys).

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;

use super::StrataS3;
use crate::errors;

/// Most tags S3 accepts on a bucket.
const MAX_BUCKET_TAGS: usize = 50;

fn invalid_tag(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidTag, msg.to_string())
}

/// S3's rules for a bucket's tag set.
pub(crate) fn validate_bucket_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > MAX_BUCKET_TAGS {
        return Err(invalid_tag("Bucket tag count cannot be greater than 50"));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid_tag(
                "The TagKey or TagValue you have provided is invalid",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_tag(
                "System tags cannot be added/updated by requester",
            ));
        }
        if !seen.insert(k) {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(())
}

impl StrataS3 {
    pub(crate) async fn op_put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(
                &who,
                &input.bucket,
                Action::OwnerOnly("s3:PutBucketTagging"),
            )
            .await?;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        validate_bucket_tags(&tags)?;
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.tags = tags.clone();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        let mut resp = S3Response::new(PutBucketTaggingOutput::default());
        // S3 answers 204 (s3s's serializer would say 200).
        resp.extensions
            .insert(super::StatusOverride(http::StatusCode::NO_CONTENT));
        Ok(resp)
    }

    pub(crate) async fn op_get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketTagging"),
            )
            .await?;
        if b.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: b
                .tags
                .into_iter()
                .map(|(k, v)| Tag {
                    key: Some(k),
                    value: Some(v),
                })
                .collect(),
        }))
    }

    pub(crate) async fn op_delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketTagging"),
            )
            .await?;
        self.ctx
            .engine
            .update_bucket(&b.name, |rec| {
                rec.tags.clear();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        let mut resp = S3Response::new(DeleteBucketTaggingOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::validate_bucket_tags;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn bucket_tag_rules() {
        assert!(validate_bucket_tags(&[t("a", ""), t("b", "x")]).is_ok());
        let fifty: Vec<_> = (0..50).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(validate_bucket_tags(&fifty).is_ok());
        let many: Vec<_> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
        assert!(validate_bucket_tags(&many).is_err());
        assert!(validate_bucket_tags(&[t("", "v")]).is_err());
        assert!(validate_bucket_tags(&[t(&"k".repeat(129), "v")]).is_err());
        assert!(validate_bucket_tags(&[t("k", &"v".repeat(257))]).is_err());
        assert!(validate_bucket_tags(&[t("aws:x", "v")]).is_err());
        assert!(validate_bucket_tags(&[t("a", "1"), t("a", "2")]).is_err());
    }
}
