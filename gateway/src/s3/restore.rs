//! RestoreObject (`POST /key?restore`), as S3 Glacier answers it: 202 when a restore starts,
//! 200 when the object is already restored (its expiry is extended from now), 409
//! RestoreAlreadyInProgress while one runs. The job itself is the engine's `restore` worker.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_metadata::archive::RestoreRequestOutcome;

use super::StrataS3;
use super::common::*;
use crate::errors;

impl StrataS3 {
    pub(crate) async fn op_restore_object(
        &self,
        req: S3Request<RestoreObjectInput>,
    ) -> S3Result<S3Response<RestoreObjectOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:RestoreObject"),
            )
            .await?;
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        let Some(r) = input.restore_request else {
            return Err(s3_error!(MalformedXML));
        };
        if r.type_.is_some() || r.select_parameters.is_some() || r.output_location.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "S3 Select restores are not supported"
            ));
        }
        // S3 requires Days for a restore of an archived object (not for Select).
        let days = r.days.ok_or_else(|| {
            s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema")
        })?;
        let tier = r
            .glacier_job_parameters
            .as_ref()
            .map(|g| g.tier.as_str().to_string())
            .or_else(|| r.tier.as_ref().map(|t| t.as_str().to_string()))
            .unwrap_or_else(|| "Standard".to_string());
        let out = self
            .ctx
            .engine
            .restore_object(&bucket.name, &input.key, vid, days as i64, &tier)
            .await
            .map_err(|e| match e {
                strata_engine::EngineError::Meta(strata_metadata::MetaError::NoSuchVersion)
                    if vid.is_some() =>
                {
                    s3_error!(NoSuchVersion)
                }
                strata_engine::EngineError::Meta(strata_metadata::MetaError::IsDeleteMarker {
                    ..
                }) => {
                    if vid.is_some() {
                        s3_error!(MethodNotAllowed)
                    } else {
                        s3_error!(NoSuchKey)
                    }
                }
                e => errors::engine(e),
            })?;
        let mut resp = S3Response::new(RestoreObjectOutput::default());
        if out == RestoreRequestOutcome::Started {
            resp.extensions
                .insert(super::StatusOverride(http::StatusCode::ACCEPTED));
        }
        Ok(resp)
    }
}

/// The `x-amz-restore` header of an archived version: `ongoing-request="true"` while a restore
/// runs, then `ongoing-request="false", expiry-date="..."` until the copy expires.
pub(crate) fn restore_header(v: &strata_metadata::VersionRecord) -> Option<String> {
    let r = v.archive.as_ref()?.restore.as_ref()?;
    if r.ongoing {
        return Some("ongoing-request=\"true\"".into());
    }
    let expiry = r.expiry?;
    Some(format!(
        "ongoing-request=\"false\", expiry-date=\"{}\"",
        fmt_http_date(&ts(expiry))
    ))
}
