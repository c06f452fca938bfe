//! Public Access Block (Put/Get/DeletePublicAccessBlock) and Object Ownership
//! (Put/Get/DeleteBucketOwnershipControls) of a bucket, and the checks they impose on the ACL a
//! request asks for (BlockPublicAcls, BucketOwnerEnforced) and on the owner a write records.
//! What they change in decisions is `strata_engine::authz::authorize`'s business.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use strata_engine::authz::{self, Acl, Action};
use strata_metadata::BucketRecord;
use strata_metadata::acl::{ObjectOwnership as Ownership, PublicAccessBlock};

use super::StrataS3;
use super::access::Who;
use crate::errors;

fn not_found(code: &str, message: &'static str) -> S3Error {
    // Custom codes have no status of their own in s3s: S3 answers 404.
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.to_string().into()), message);
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

/// `x-amz-object-ownership` / an `OwnershipControls` rule, as stored.
pub(crate) fn parse_ownership(s: &str) -> Option<Ownership> {
    match s {
        ObjectOwnership::BUCKET_OWNER_ENFORCED => Some(Ownership::BucketOwnerEnforced),
        ObjectOwnership::BUCKET_OWNER_PREFERRED => Some(Ownership::BucketOwnerPreferred),
        ObjectOwnership::OBJECT_WRITER => Some(Ownership::ObjectWriter),
        _ => None,
    }
}

fn ownership_name(o: Ownership) -> &'static str {
    match o {
        Ownership::BucketOwnerEnforced => ObjectOwnership::BUCKET_OWNER_ENFORCED,
        Ownership::BucketOwnerPreferred => ObjectOwnership::BUCKET_OWNER_PREFERRED,
        Ownership::ObjectWriter => ObjectOwnership::OBJECT_WRITER,
    }
}

pub(crate) fn enforced(bucket: &BucketRecord) -> bool {
    bucket.ownership == Some(Ownership::BucketOwnerEnforced)
}

fn acls_not_supported() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessControlListNotSupported,
        "The bucket does not allow ACLs",
    )
}

/// The ACL a request asks for on `bucket` (or one of its objects), if the bucket accepts it:
/// under BucketOwnerEnforced only an ACL that gives the bucket owner FULL_CONTROL and nothing
/// else (`400 AccessControlListNotSupported`); with BlockPublicAcls no grant to AllUsers or
/// AuthenticatedUsers (`403 AccessDenied`). Nothing is stored when it is refused.
pub(crate) fn check_requested_acl(bucket: &BucketRecord, acl: Option<&Acl>) -> S3Result<()> {
    let Some(acl) = acl else { return Ok(()) };
    if enforced(bucket) && !authz::is_owner_only_acl(acl, &bucket.owner) {
        tracing::info!(bucket = %bucket.name, "ACL refused: the bucket enforces bucket-owner ownership");
        return Err(acls_not_supported());
    }
    if bucket
        .public_access_block
        .is_some_and(|p| p.block_public_acls)
        && authz::is_public_acl(acl)
    {
        tracing::info!(bucket = %bucket.name, "public ACL refused: BlockPublicAcls");
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied",
        ));
    }
    Ok(())
}

/// Who owns what `who` writes into `bucket` with the canned ACL `canned`: the bucket owner
/// under BucketOwnerEnforced, under BucketOwnerPreferred with `bucket-owner-full-control`, and
/// for anonymous writers; the writer otherwise (ObjectWriter, no controls).
pub(crate) fn object_owner<'a>(
    who: &'a Who,
    bucket: &'a BucketRecord,
    canned: Option<&str>,
) -> &'a str {
    let to_bucket_owner = match bucket.ownership {
        Some(Ownership::BucketOwnerEnforced) => true,
        Some(Ownership::BucketOwnerPreferred) => canned == Some("bucket-owner-full-control"),
        _ => false,
    };
    if to_bucket_owner {
        &bucket.owner
    } else {
        who.writer(bucket)
    }
}

impl StrataS3 {
    /// The owner and ACL an object write (PutObject, CopyObject, CreateMultipartUpload) records:
    /// the requested ACL checked against the bucket's ownership and Public Access Block, then
    /// by the engine. `None`: `private` for the owner.
    pub(crate) async fn object_write_acl(
        &self,
        who: &Who,
        bucket: &BucketRecord,
        canned: Option<&str>,
        grants: super::acl::GrantHeaders<'_>,
    ) -> S3Result<(String, Option<Acl>)> {
        let owner = object_owner(who, bucket, canned).to_string();
        let acl = self
            .write_acl(canned, grants, &owner, &bucket.owner)
            .await?;
        check_requested_acl(bucket, acl.as_ref())?;
        // Owned by the bucket owner with its FULL_CONTROL only: the default, nothing to store.
        let acl = acl.filter(|a| !(owner == bucket.owner && authz::is_owner_only_acl(a, &owner)));
        Ok((owner, acl))
    }

    pub(crate) async fn op_put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(
                &who,
                &input.bucket,
                Action::OwnerOnly("s3:PutBucketPublicAccessBlock"),
            )
            .await?;
        let c = input.public_access_block_configuration;
        let block = PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        self.ctx
            .engine
            .set_public_access_block(&b.name, Some(block))
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, ?block, "public access block set");
        Ok(S3Response::new(PutPublicAccessBlockOutput {}))
    }

    pub(crate) async fn op_get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketPublicAccessBlock"),
            )
            .await?;
        let Some(p) = b.public_access_block else {
            return Err(not_found(
                "NoSuchPublicAccessBlockConfiguration",
                "The public access block configuration was not found",
            ));
        };
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(p.block_public_acls),
                ignore_public_acls: Some(p.ignore_public_acls),
                block_public_policy: Some(p.block_public_policy),
                restrict_public_buckets: Some(p.restrict_public_buckets),
            }),
        }))
    }

    pub(crate) async fn op_delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        // S3 authorises the delete as s3:PutBucketPublicAccessBlock.
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketPublicAccessBlock"),
            )
            .await?;
        self.ctx
            .engine
            .set_public_access_block(&b.name, None)
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, "public access block deleted");
        Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
    }

    pub(crate) async fn op_put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(
                &who,
                &input.bucket,
                Action::OwnerOnly("s3:PutBucketOwnershipControls"),
            )
            .await?;
        let rules = &input.ownership_controls.rules;
        let ownership = match rules.as_slice() {
            [rule] => parse_ownership(rule.object_ownership.as_str()),
            _ => None,
        };
        let Some(ownership) = ownership else {
            tracing::info!(bucket = %b.name, rules = rules.len(), "malformed ownership controls");
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            ));
        };
        // S3 refuses to disable ACLs while the bucket ACL still grants someone else.
        if ownership == Ownership::BucketOwnerEnforced
            && !authz::is_owner_only_acl(&authz::bucket_acl(&b), &b.owner)
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            ));
        }
        self.ctx
            .engine
            .set_bucket_ownership(&b.name, Some(ownership))
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, ownership = ownership_name(ownership), "ownership controls set");
        Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
    }

    pub(crate) async fn op_get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketOwnershipControls"),
            )
            .await?;
        let Some(o) = b.ownership else {
            return Err(S3Error::with_message(
                S3ErrorCode::OwnershipControlsNotFoundError,
                "The bucket ownership controls were not found",
            ));
        };
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(ownership_name(o)),
                }],
            }),
        }))
    }

    pub(crate) async fn op_delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        // S3 authorises the delete as s3:PutBucketOwnershipControls.
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketOwnershipControls"),
            )
            .await?;
        self.ctx
            .engine
            .set_bucket_ownership(&b.name, None)
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, "ownership controls deleted");
        Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
    }
}
