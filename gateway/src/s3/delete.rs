//! DeleteObject and DeleteObjects. The versioning and Object Lock rules are the metadata tier's;
//! this module only shapes S3's answers.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_engine::objects::{DeleteConditions, DeleteReason, DeleteRequest};
use strata_metadata::{BucketRecord, VersioningState};

use super::StrataS3;
use super::common::*;
use crate::errors;

/// Who asks for a delete, for the destruction record.
struct Asker<'a> {
    actor: &'a str,
    request_id: Option<String>,
    access_key: Option<String>,
}

/// Keys per DeleteObjects request (S3's limit).
const MAX_KEYS_PER_DELETE: usize = 1000;

impl StrataS3 {
    /// Deletes one key (or version); returns the version id to show and whether a delete marker
    /// was involved. `if_match` (an ETag or `*`) makes it S3's conditional delete, evaluated
    /// against the current version atomically with the delete.
    #[allow(clippy::too_many_arguments)]
    async fn delete_one(
        &self,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
        bypass: bool,
        asker: Asker<'_>,
        if_match: Option<String>,
    ) -> S3Result<(Option<String>, bool)> {
        let Asker {
            actor,
            request_id,
            access_key,
        } = asker;
        check_key(key)?;
        let vid = requested_version(version_id)?;
        let out = self
            .ctx
            .engine
            .delete_object_with(
                bucket,
                key,
                DeleteRequest {
                    version_id: vid.map(str::to_string),
                    bypass_governance: bypass,
                    actor: actor.to_string(),
                    reason: DeleteReason::UserRequest { request_id },
                },
                DeleteConditions {
                    access_key,
                    if_match,
                    ..Default::default()
                },
            )
            .await
            .map_err(errors::engine)?;
        let shown = match (&out.version_id, bucket.versioning) {
            (Some(_), VersioningState::Unversioned) => None,
            (v, _) => v.clone(),
        };
        Ok((shown, out.delete_marker))
    }

    pub(crate) async fn op_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let request_id = request_id(&req.extensions);
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        let action = if input.version_id.is_some() {
            Action::DeleteObjectVersion
        } else {
            Action::DeleteObject
        };
        let bucket = self
            .authorized_key(&who, &input.bucket, Some(&input.key), action)
            .await?;
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        // x-amz-if-match-size / -last-modified-time are for directory buckets only in S3.
        if input.if_match_size.is_some() || input.if_match_last_modified_time.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "x-amz-if-match-size and x-amz-if-match-last-modified-time are supported for directory buckets only"
            ));
        }
        let if_match = input.if_match.as_ref().map(|c| match c {
            ETagCondition::Any => "*".to_string(),
            ETagCondition::ETag(e) => e.value().to_string(),
        });
        let (version_id, marker) = self
            .delete_one(
                &bucket,
                &input.key,
                &input.version_id,
                bypass,
                Asker {
                    actor: who.actor(),
                    request_id,
                    access_key,
                },
                if_match,
            )
            .await?;
        let mut resp = S3Response::new(DeleteObjectOutput {
            delete_marker: marker.then_some(true),
            version_id,
            ..Default::default()
        });
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    pub(crate) async fn op_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let request_id = request_id(&req.extensions);
        let access_key = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        // Each key is decided on its own below (S3: a refused key is an AccessDenied entry).
        let bucket = self.existing_bucket(&input.bucket).await?;
        if input.delete.objects.len() > MAX_KEYS_PER_DELETE {
            return Err(s3_error!(
                MalformedXML,
                "The request must contain no more than 1000 keys"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        let principal = who.principal();
        for obj in input.delete.objects {
            // Each key is its own DeleteObject(Version) as S3 decides it: a refusal is that key's
            // AccessDenied in the answer.
            let action = if obj.version_id.is_some() {
                Action::DeleteObjectVersion
            } else {
                Action::DeleteObject
            };
            let allowed = super::access::decide(
                &self.ctx.engine,
                &principal,
                &who.conditions,
                action,
                &bucket,
                Some(&obj.key),
                None,
            ) == strata_engine::authz::Decision::Allow;
            let done = if allowed {
                self.delete_one(
                    &bucket,
                    &obj.key,
                    &obj.version_id,
                    bypass,
                    Asker {
                        actor: who.actor(),
                        request_id: request_id.clone(),
                        access_key: access_key.clone(),
                    },
                    obj.e_tag.as_ref().map(|e| e.value().to_string()),
                )
                .await
            } else {
                Err(S3Error::with_message(
                    S3ErrorCode::AccessDenied,
                    "Access Denied",
                ))
            };
            match done {
                Ok((version_id, marker)) => {
                    if !quiet {
                        // S3: a created marker is named by DeleteMarkerVersionId only; a marker
                        // removed by id shows its id as both VersionId and DeleteMarkerVersionId.
                        let (vid, dm_vid) = match (marker, obj.version_id.is_some()) {
                            (true, false) => (None, version_id),
                            (true, true) => (version_id.clone(), version_id),
                            (false, _) => (version_id, None),
                        };
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            version_id: vid.or(obj.version_id),
                            delete_marker: marker.then_some(true),
                            delete_marker_version_id: dm_vid,
                        });
                    }
                }
                Err(e) => failed.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(obj.key),
                    version_id: obj.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!failed.is_empty()).then_some(failed),
            ..Default::default()
        }))
    }
}

/// The id the front gave this request (see `http::RequestId`).
fn request_id(ext: &http::Extensions) -> Option<String> {
    ext.get::<crate::http::RequestId>().map(|r| r.0.clone())
}
