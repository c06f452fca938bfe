//! Object tagging: Get/Put/DeleteObjectTagging, and the error mapping every per-version setting
//! shares.

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use strata_engine::EngineError;
use strata_engine::authz::Action;
use strata_metadata::{BucketRecord, MetaError, VersionRecord};

use super::StrataS3;
use super::common::*;
use crate::errors;

impl StrataS3 {
    /// Maps the errors of a per-version change (tags, retention, legal hold): a delete marker
    /// addressed by id answers 405 MethodNotAllowed with the delete-marker headers; the latest
    /// being a delete marker is 404 NoSuchKey.
    pub(crate) fn version_change_error(
        &self,
        bucket: &BucketRecord,
        by_version: bool,
        e: EngineError,
    ) -> S3Error {
        match e {
            EngineError::Meta(MetaError::IsDeleteMarker {
                version_id,
                last_modified,
            }) => {
                let marker = VersionRecord::delete_marker(version_id, String::new(), last_modified);
                delete_marker_error(bucket, &marker, by_version)
            }
            e => errors::engine(e),
        }
    }

    pub(crate) async fn op_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let bucket = self.existing_bucket(&req.input.bucket).await?;
        let action = tagging_action(
            &req.input.version_id,
            "s3:GetObjectTagging",
            "s3:GetObjectVersionTagging",
        );
        let v = self
            .authorized_version(&who, &bucket, &req.input.key, &req.input.version_id, action)
            .await?;
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
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        who.request_tags(&tags);
        let bucket = self.existing_bucket(&input.bucket).await?;
        check_key(&input.key)?;
        let action = tagging_action(
            &input.version_id,
            "s3:PutObjectTagging",
            "s3:PutObjectVersionTagging",
        );
        // Decided with the version: s3:ExistingObjectTag/<key> are its tags before the change.
        self.authorized_version(&who, &bucket, &input.key, &input.version_id, action)
            .await?;
        validate_tags(&tags)?;
        let vid = requested_version(&input.version_id)?;
        let v = self
            .ctx
            .engine
            .set_tags(&bucket.name, &input.key, vid, tags)
            .await
            .map_err(|e| self.version_change_error(&bucket, vid.is_some(), e))?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        }))
    }

    pub(crate) async fn op_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self.existing_bucket(&input.bucket).await?;
        check_key(&input.key)?;
        let action = tagging_action(
            &input.version_id,
            "s3:DeleteObjectTagging",
            "s3:DeleteObjectVersionTagging",
        );
        self.authorized_version(&who, &bucket, &input.key, &input.version_id, action)
            .await?;
        let vid = requested_version(&input.version_id)?;
        let v = self
            .ctx
            .engine
            .set_tags(&bucket.name, &input.key, vid, Vec::new())
            .await
            .map_err(|e| self.version_change_error(&bucket, vid.is_some(), e))?;
        let mut resp = S3Response::new(DeleteObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }
}

/// The tagging operations' S3 actions: the `...VersionTagging` one when a version id is given.
fn tagging_action(
    version_id: &Option<String>,
    latest: &'static str,
    by_version: &'static str,
) -> Action {
    Action::OwnerOnly(if version_id.is_some() {
        by_version
    } else {
        latest
    })
}
