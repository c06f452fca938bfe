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
        let bucket = self
            .authorized_key(
                &who,
                &req.input.bucket,
                Some(&req.input.key),
                Action::OwnerOnly("s3:GetObjectTagging"),
            )
            .await?;
        let v = self
            .readable_version(&bucket, &req.input.key, &req.input.version_id)
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
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:PutObjectTagging"),
            )
            .await?;
        validate_tags(&tags)?;
        check_key(&input.key)?;
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
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:DeleteObjectTagging"),
            )
            .await?;
        check_key(&input.key)?;
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
