//! Object Lock on versions: Get/PutObjectRetention and Get/PutObjectLegalHold.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_metadata::{LockMode, Retention};

use super::StrataS3;
use super::bucket::{mode_str, parse_mode};
use super::common::*;
use strata_engine::now_ms;

impl StrataS3 {
    pub(crate) async fn op_put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let who = self.caller(&req.credentials).await?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket).await?;
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
                        mode: parse_mode(m.as_str())?,
                        retain_until: until,
                    })
                }
                _ => return Err(s3_error!(MalformedXML)),
            },
        };
        let now = now_ms();
        self.update_version(&bucket, &input.key, &input.version_id, move |v| {
            check_retention_change(v.retention.as_ref(), wanted.as_ref(), now, bypass)?;
            v.retention = wanted.clone();
            Ok(())
        })
        .await?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, "object retention set");
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(crate) async fn op_get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let who = self.caller(&req.credentials).await?;
        let bucket = self.owned_bucket(&who, &req.input.bucket).await?;
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
        let who = self.caller(&req.credentials).await?;
        let input = req.input;
        let bucket = self.owned_bucket(&who, &input.bucket).await?;
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
        self.update_version(&bucket, &input.key, &input.version_id, move |v| {
            v.legal_hold = on;
            Ok(())
        })
        .await?;
        tracing::info!(bucket = %bucket.name, key = %input.key, user = %who.user, on, "legal hold set");
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(crate) async fn op_get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let who = self.caller(&req.credentials).await?;
        let bucket = self.owned_bucket(&who, &req.input.bucket).await?;
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

/// Object Lock's rules for changing a version's retention: COMPLIANCE can only be extended (by
/// anyone, never shortened, removed or weakened); GOVERNANCE can be shortened, removed or changed
/// only with the bypass header; extending is always allowed. An expired retention imposes nothing.
pub(crate) fn check_retention_change(
    current: Option<&Retention>,
    wanted: Option<&Retention>,
    now: i64,
    bypass: bool,
) -> S3Result<()> {
    let Some(cur) = current.filter(|c| c.retain_until > now) else {
        return Ok(());
    };
    let extends = |w: &Retention| w.mode == cur.mode && w.retain_until >= cur.retain_until;
    let upgrade = |w: &Retention| {
        cur.mode == LockMode::Governance
            && w.mode == LockMode::Compliance
            && w.retain_until >= cur.retain_until
    };
    match wanted {
        Some(w) if extends(w) || upgrade(w) => Ok(()),
        _ if cur.mode == LockMode::Governance && bypass => Ok(()),
        _ => Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            if cur.mode == LockMode::Compliance {
                "Access Denied because object protected by object lock (COMPLIANCE mode can only be extended)."
            } else {
                "Access Denied because object protected by object lock (GOVERNANCE requires x-amz-bypass-governance-retention)."
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: LockMode, until: i64) -> Retention {
        Retention {
            mode,
            retain_until: until,
        }
    }

    #[test]
    fn compliance_can_only_be_extended() {
        let cur = r(LockMode::Compliance, 1000);
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Compliance, 2000)), 10, false)
                .is_ok()
        );
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Compliance, 500)), 10, true)
                .is_err()
        );
        assert!(check_retention_change(Some(&cur), None, 10, true).is_err());
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Governance, 5000)), 10, true)
                .is_err()
        );
        // Once expired, anything goes.
        assert!(check_retention_change(Some(&cur), None, 2000, false).is_ok());
    }

    #[test]
    fn governance_needs_bypass_to_shorten() {
        let cur = r(LockMode::Governance, 1000);
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Governance, 500)), 10, false)
                .is_err()
        );
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Governance, 500)), 10, true)
                .is_ok()
        );
        assert!(check_retention_change(Some(&cur), None, 10, false).is_err());
        assert!(check_retention_change(Some(&cur), None, 10, true).is_ok());
        assert!(
            check_retention_change(Some(&cur), Some(&r(LockMode::Compliance, 1000)), 10, false)
                .is_ok()
        );
    }
}
