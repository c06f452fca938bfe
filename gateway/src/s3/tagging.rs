//! Object tagging: Get/Put/DeleteObjectTagging, and the read-modify-write every per-version
//! setting shares.

use std::sync::{Arc, Mutex};

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use strata_metadata::{BucketRecord, MetaError, VersionRecord};

use super::StrataS3;
use super::common::*;
use crate::errors;

impl StrataS3 {
    /// Read-modify-write of one version's sub-resource (tags, retention, legal hold). A delete
    /// marker answers as S3 does (404 NoSuchKey for the latest, 405 by version id).
    pub(crate) async fn update_version<F>(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
        mut f: F,
    ) -> S3Result<VersionRecord>
    where
        F: FnMut(&mut VersionRecord) -> S3Result<()> + Send + 'static,
    {
        check_key(key)?;
        let vid = requested_version(version_id)?.map(str::to_string);
        let inner_err: Arc<Mutex<Option<S3Error>>> = Arc::default();
        let err_slot = inner_err.clone();
        let b = bucket.clone();
        let by_version = vid.is_some();
        let r = self
            .ctx
            .engine
            .update_version(&bucket.name, key, vid.as_deref(), move |v| {
                let fail = |e: S3Error| {
                    *err_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    MetaError::Conflict
                };
                if v.is_delete_marker {
                    return Err(fail(delete_marker_error(&b, v, by_version)));
                }
                f(v).map_err(fail)
            })
            .await;
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(inner_err
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| errors::engine(e))),
        }
    }

    pub(crate) async fn op_get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let who = self.caller(&req.credentials).await?;
        let bucket = self.owned_bucket(&who, &req.input.bucket).await?;
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
        let who = self.caller(&req.credentials).await?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket).await?;
        let tags: Vec<(String, String)> = input
            .tagging
            .tag_set
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        validate_tags(&tags)?;
        let v = self
            .update_version(&bucket, &input.key, &input.version_id, move |v| {
                v.tags = tags.clone();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        }))
    }

    pub(crate) async fn op_delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let who = self.caller(&req.credentials).await?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket).await?;
        let v = self
            .update_version(&bucket, &input.key, &input.version_id, move |v| {
                v.tags.clear();
                Ok(())
            })
            .await?;
        let mut resp = S3Response::new(DeleteObjectTaggingOutput {
            version_id: shown_version_id(&bucket, &v),
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }
}
