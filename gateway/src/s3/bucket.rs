//! Bucket operations: create/head/list/delete, location, versioning and Object Lock configuration.

use super::acl::GrantHeaders;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::EngineError;
use strata_engine::authz::Action;
use strata_engine::buckets::NewBucket;
use strata_metadata::{DefaultRetention as StoredDefault, LockMode, MetaError, VersioningState};

use super::StrataS3;
use super::common::{owner_dto, ts};
use crate::errors;

impl StrataS3 {
    pub(crate) async fn op_list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        self.signed(&who)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // S3: max-buckets 1..=10000; without it, every bucket in one answer.
        let max = match input.max_buckets {
            None => None,
            Some(n) if (1..=MAX_BUCKETS_PAGE).contains(&n) => Some(n as usize),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Argument max-buckets must be an integer between 1 and 10000"
                ));
            }
        };
        let after = match input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(t) => Some(bucket_token_decode(t)?),
        };
        let mut mine = self
            .ctx
            .engine
            .list_buckets()
            .await
            .map_err(errors::engine)?
            .into_iter()
            .filter(|b| b.owner == who.id && b.name.starts_with(&prefix))
            .filter(|b| after.as_ref().is_none_or(|a| b.name.as_str() > a.as_str()))
            .filter(|b| {
                input
                    .bucket_region
                    .as_ref()
                    .is_none_or(|r| r.as_str() == b.region)
            });
        let mut page: Vec<Bucket> = Vec::new();
        let mut truncated = false;
        for b in mine.by_ref() {
            if max.is_some_and(|m| page.len() >= m) {
                truncated = true;
                break;
            }
            page.push(Bucket {
                name: Some(b.name),
                creation_date: Some(ts(b.created)),
                bucket_region: Some(b.region),
            });
        }
        let continuation_token = truncated
            .then(|| {
                page.last()
                    .and_then(|b| b.name.as_deref())
                    .map(bucket_token_encode)
            })
            .flatten();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(page),
            owner: Some(owner_dto(&who, &who.id)),
            prefix: input.prefix,
            continuation_token,
        }))
    }

    pub(crate) async fn op_create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        self.signed(&who)?;
        let input = req.input;
        if reserved_bucket_name(&input.bucket) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket name uses a prefix or suffix that S3 reserves."
            ));
        }
        let region = &self.ctx.cfg.region;
        if let Some(lc) = input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            && lc.as_str() != region.as_str()
        {
            // A custom code has no status of its own in s3s: S3 answers 400.
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("IllegalLocationConstraintException".into()),
                format!(
                    "The {} location constraint is incompatible for the region specific endpoint this request was sent to.",
                    lc.as_str()
                ),
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            return Err(e);
        }
        if let Some(existing) = self
            .ctx
            .engine
            .bucket(&input.bucket)
            .await
            .map_err(errors::engine)?
        {
            if existing.owner != who.id {
                return Err(s3_error!(BucketAlreadyExists));
            }
            // us-east-1 keeps S3's legacy answer: re-creating your own bucket succeeds.
            if region == "us-east-1" {
                return Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{}", input.bucket)),
                }));
            }
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        let lock = input.object_lock_enabled_for_bucket.unwrap_or(false);
        // S3 since April 2023: a new bucket is BucketOwnerEnforced (ACLs disabled) unless
        // `x-amz-object-ownership` says otherwise.
        let ownership = match input.object_ownership.as_ref() {
            None => strata_metadata::acl::ObjectOwnership::BucketOwnerEnforced,
            Some(o) => super::public_access::parse_ownership(o.as_str()).ok_or_else(|| {
                tracing::info!(ownership = %o.as_str().chars().take(64).collect::<String>(), "unknown object ownership");
                s3_error!(InvalidArgument, "Invalid x-amz-object-ownership header")
            })?,
        };
        let acl = self
            .write_acl(
                input.acl.as_ref().map(|a| a.as_str()),
                GrantHeaders {
                    full_control: input.grant_full_control.as_deref(),
                    read: input.grant_read.as_deref(),
                    read_acp: input.grant_read_acp.as_deref(),
                    write: input.grant_write.as_deref(),
                    write_acp: input.grant_write_acp.as_deref(),
                },
                &who.id,
                &who.id,
            )
            .await?;
        if ownership == strata_metadata::acl::ObjectOwnership::BucketOwnerEnforced
            && acl
                .as_ref()
                .is_some_and(|a| !strata_engine::authz::is_owner_only_acl(a, &who.id))
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            ));
        }
        let created = self
            .ctx
            .engine
            .create_bucket(NewBucket {
                name: input.bucket.clone(),
                owner: who.id.clone(),
                region: region.clone(),
                object_lock: lock,
                acl,
                ownership: Some(ownership),
            })
            .await;
        match created {
            Ok(_) => {}
            Err(EngineError::Meta(MetaError::BucketAlreadyExists)) => {
                let owner = self
                    .ctx
                    .engine
                    .bucket(&input.bucket)
                    .await
                    .map_err(errors::engine)?
                    .map(|b| b.owner);
                return Err(if owner.as_deref() == Some(&who.id) {
                    s3_error!(BucketAlreadyOwnedByYou)
                } else {
                    s3_error!(BucketAlreadyExists)
                });
            }
            Err(e) => return Err(errors::engine(e)),
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        }))
    }

    pub(crate) async fn op_head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(&who, &req.input.bucket, Action::ListBucket)
            .await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(b.region),
            ..Default::default()
        }))
    }

    pub(crate) async fn op_delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        self.authorized_bucket(
            &who,
            &req.input.bucket,
            Action::OwnerOnly("s3:DeleteBucket"),
        )
        .await?;
        self.ctx
            .engine
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(crate) async fn op_get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketLocation"),
            )
            .await?;
        // S3 answers an empty LocationConstraint for us-east-1.
        let lc = if b.region == "us-east-1" {
            None
        } else {
            Some(BucketLocationConstraint::from(b.region))
        };
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: lc,
        }))
    }

    pub(crate) async fn op_put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketVersioning"),
            )
            .await?;
        if req
            .input
            .versioning_configuration
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == "Enabled")
        {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let state = match req
            .input
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some("Enabled") => VersioningState::Enabled,
            Some("Suspended") => {
                if b.object_lock_enabled {
                    return Err(s3_error!(
                        InvalidBucketState,
                        "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
                    ));
                }
                VersioningState::Suspended
            }
            _ => return Err(s3_error!(MalformedXML)),
        };
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.versioning = state;
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(crate) async fn op_get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketVersioning"),
            )
            .await?;
        let status = match b.versioning {
            VersioningState::Unversioned => None,
            VersioningState::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            VersioningState::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(crate) async fn op_put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketObjectLockConfiguration"),
            )
            .await?;
        let cfg = req
            .input
            .object_lock_configuration
            .ok_or_else(|| s3_error!(MalformedXML))?;
        if cfg.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some("Enabled") {
            return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
        }
        if !b.object_lock_enabled {
            // S3 allows enabling Object Lock on an existing bucket only when versioning is on.
            if b.versioning != VersioningState::Enabled {
                return Err(s3_error!(
                    InvalidBucketState,
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
                ));
            }
        }
        let default = match cfg.rule.and_then(|r| r.default_retention) {
            None => None,
            Some(d) => Some(parse_default_retention(&d)?),
        };
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.object_lock_enabled = true;
                rec.versioning = VersioningState::Enabled;
                rec.default_retention = default.clone();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, "object lock configuration set");
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(crate) async fn op_get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketObjectLockConfiguration"),
            )
            .await?;
        if !b.object_lock_enabled {
            return Err(s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            ));
        }
        let rule = b.default_retention.map(|d| ObjectLockRule {
            default_retention: Some(DefaultRetention {
                mode: Some(ObjectLockRetentionMode::from(mode_str(d.mode).to_string())),
                days: d.days.map(|x| x as i32),
                years: d.years.map(|x| x as i32),
            }),
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule,
            }),
        }))
    }
}

/// Largest `max-buckets` S3 accepts.
const MAX_BUCKETS_PAGE: i32 = 10_000;

fn bucket_token_encode(last: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("b1:{last}"))
}

fn bucket_token_decode(token: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("b1:").map(str::to_string))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

pub fn mode_str(m: LockMode) -> &'static str {
    match m {
        LockMode::Governance => "GOVERNANCE",
        LockMode::Compliance => "COMPLIANCE",
    }
}

pub fn parse_mode(s: &str) -> S3Result<LockMode> {
    match s {
        "GOVERNANCE" => Ok(LockMode::Governance),
        "COMPLIANCE" => Ok(LockMode::Compliance),
        _ => Err(s3_error!(InvalidArgument, "Unknown wormMode directive.")),
    }
}

/// A default retention from PutObjectLockConfiguration, with S3's codes: an unknown mode or both
/// Days and Years is `MalformedXML`; a period out of range is `InvalidRetentionPeriod` (the
/// bounds are the metadata tier's, `DefaultRetention::new`).
fn parse_default_retention(d: &DefaultRetention) -> S3Result<StoredDefault> {
    let mode = parse_xml_mode(d.mode.as_ref().map(|m| m.as_str()).unwrap_or(""))?;
    let period = |n: i32| {
        u32::try_from(n).map_err(|_| {
            errors::meta(MetaError::InvalidRetentionPeriod(
                "Default retention period must be a positive integer value.".into(),
            ))
        })
    };
    let (days, years) = match (d.days, d.years) {
        (Some(_), Some(_)) | (None, None) => return Err(s3_error!(MalformedXML)),
        (Some(n), None) => (Some(period(n)?), None),
        (None, Some(n)) => (None, Some(period(n)?)),
    };
    StoredDefault::new(mode, days, years).map_err(errors::meta)
}

/// A lock mode inside an XML document (lock configuration, retention): anything else than
/// GOVERNANCE / COMPLIANCE is `MalformedXML`, as S3 answers.
pub fn parse_xml_mode(s: &str) -> S3Result<LockMode> {
    parse_mode(s).map_err(|_| s3_error!(MalformedXML))
}

/// Names S3 reserves for its own features (access point aliases, Object Lambda, multi-region
/// access points, directory and table buckets, documentation examples) beyond the character rules
/// s3s checks: CreateBucket refuses them with InvalidBucketName, as S3 does.
pub fn reserved_bucket_name(name: &str) -> bool {
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    PREFIXES.iter().any(|p| name.starts_with(p)) || SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::reserved_bucket_name;

    #[test]
    fn reserved_names() {
        for n in [
            "xn--abc",
            "sthree-x",
            "amzn-s3-demo-bucket",
            "data-s3alias",
            "data--ol-s3",
            "x.mrap",
            "data--x-s3",
            "data--table-s3",
        ] {
            assert!(reserved_bucket_name(n), "{n}");
        }
        for n in ["photos", "s3alias-data", "my-ol-s3", "xn-ok", "sthree"] {
            assert!(!reserved_bucket_name(n), "{n}");
        }
    }
}
