//! Object Lock on versions: Get/PutObjectRetention and Get/PutObjectLegalHold.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_metadata::Retention;

use super::StrataS3;
use super::bucket::{mode_str, parse_xml_mode};
use super::common::*;
use strata_engine::now_ms;

impl StrataS3 {
    pub(crate) async fn op_put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:PutObjectRetention"),
            )
            .await?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let bypass = input.bypass_governance_retention.unwrap_or(false);
        let wanted = match input.retention {
            None => None,
            Some(r) => match (r.mode, r.retain_until_date) {
                (None, None) => None,
                (Some(m), Some(d)) => {
                    let until = ts_to_ms(&d);
                    if until <= now_ms() {
                        return Err(s3_error!(
                            InvalidArgument,
                            "The retain until date must be in the future!"
                        ));
                    }
                    Some(Retention {
                        mode: parse_xml_mode(m.as_str())?,
                        retain_until: until,
                    })
                }
                _ => return Err(s3_error!(MalformedXML)),
            },
        };
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        // The Object Lock rules (and the bucket's Object Lock check) are the metadata tier's.
        self.ctx
            .engine
            .set_retention(&bucket.name, &input.key, vid, wanted, bypass)
            .await
            .map_err(|e| self.version_change_error(&bucket, vid.is_some(), e))?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, "object retention set");
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(crate) async fn op_get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let bucket = self
            .authorized_key(
                &who,
                &req.input.bucket,
                Some(&req.input.key),
                Action::OwnerOnly("s3:GetObjectRetention"),
            )
            .await?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let v = self
            .readable_version(&bucket, &req.input.key, &req.input.version_id)
            .await?;
        let r = v.retention.ok_or_else(|| {
            s3_error!(
                NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration"
            )
        })?;
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(mode_str(r.mode).to_string())),
                retain_until_date: Some(ts(r.retain_until)),
            }),
        }))
    }

    pub(crate) async fn op_put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let bucket = self
            .authorized_key(
                &who,
                &input.bucket,
                Some(&input.key),
                Action::OwnerOnly("s3:PutObjectLegalHold"),
            )
            .await?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let on = match input
            .legal_hold
            .and_then(|h| h.status)
            .as_ref()
            .map(|s| s.as_str().to_string())
            .as_deref()
        {
            Some("ON") => true,
            Some("OFF") => false,
            _ => return Err(s3_error!(MalformedXML)),
        };
        check_key(&input.key)?;
        let vid = requested_version(&input.version_id)?;
        self.ctx
            .engine
            .set_legal_hold(&bucket.name, &input.key, vid, on)
            .await
            .map_err(|e| self.version_change_error(&bucket, vid.is_some(), e))?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, on, "legal hold set");
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(crate) async fn op_get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let bucket = self
            .authorized_key(
                &who,
                &req.input.bucket,
                Some(&req.input.key),
                Action::OwnerOnly("s3:GetObjectLegalHold"),
            )
            .await?;
        if !bucket.object_lock_enabled {
            return Err(s3_error!(
                InvalidRequest,
                "Bucket is missing Object Lock Configuration"
            ));
        }
        let v = self
            .readable_version(&bucket, &req.input.key, &req.input.version_id)
            .await?;
        let status = if v.legal_hold {
            ObjectLockLegalHoldStatus::ON
        } else {
            ObjectLockLegalHoldStatus::OFF
        };
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(ObjectLockLegalHoldStatus::from_static(status)),
            }),
        }))
    }
}
