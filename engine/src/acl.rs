//! Stored ACLs: checked (grant count, grantees that exist) before a bucket or version keeps
//! them. What an ACL allows is decided in [`crate::authz`].

use strata_metadata::{BucketRecord, VersionRecord};

use crate::Engine;
use crate::authz::{Acl, Grantee, MAX_GRANTS};
use crate::error::{Rejection, Result};

impl Engine {
    /// `InvalidAcl` for more than [`MAX_GRANTS`] grants (`MalformedACLError`, as S3) or a grant
    /// to a canonical id no user has (`InvalidArgument`, as S3).
    pub async fn check_acl(&self, acl: &Acl) -> Result<()> {
        if acl.grants.len() > MAX_GRANTS {
            return Err(Rejection::InvalidAcl {
                code: "MalformedACLError",
                message: format!("An ACL may hold at most {MAX_GRANTS} grants"),
            }
            .into());
        }
        let mut seen: Vec<&str> = Vec::new();
        for g in &acl.grants {
            if let Grantee::User(id) = &g.grantee {
                if seen.contains(&id.as_str()) {
                    continue;
                }
                if self.user_by_id(id).await?.is_none() {
                    return Err(Rejection::InvalidAcl {
                        code: "InvalidArgument",
                        message: "Invalid id".into(),
                    }
                    .into());
                }
                seen.push(id);
            }
        }
        Ok(())
    }

    /// PutBucketAcl: replaces the bucket's ACL (checked first).
    pub async fn set_bucket_acl(&self, bucket: &str, acl: Acl) -> Result<BucketRecord> {
        self.check_acl(&acl).await?;
        self.require_writable(bucket).await?;
        let b = bucket.to_string();
        self.meta_call(move |m| {
            m.update_bucket(&b, |r| {
                r.acl = Some(acl.clone());
                Ok(())
            })
        })
        .await
    }

    /// PutBucketPolicy (`Some`, a document [`crate::policy::parse`] accepted) and
    /// DeleteBucketPolicy (`None`).
    pub async fn set_bucket_policy(
        &self,
        bucket: &str,
        policy: Option<String>,
    ) -> Result<BucketRecord> {
        self.require_writable(bucket).await?;
        let b = bucket.to_string();
        self.meta_call(move |m| {
            m.update_bucket(&b, |r| {
                r.policy = policy.clone();
                Ok(())
            })
        })
        .await
    }

    /// The parsed policy of `bucket` (`None` without one), parsed again only when the stored
    /// document changed (see [`crate::policy::PolicyCache`]).
    pub fn bucket_policy(
        &self,
        bucket: &BucketRecord,
    ) -> Option<std::sync::Arc<crate::policy::Policy>> {
        let doc = bucket.policy.as_deref()?;
        self.inner.policies.get(&bucket.name, doc)
    }

    /// PutPublicAccessBlock (`Some`) and DeletePublicAccessBlock (`None`).
    pub async fn set_public_access_block(
        &self,
        bucket: &str,
        block: Option<strata_metadata::acl::PublicAccessBlock>,
    ) -> Result<BucketRecord> {
        self.require_writable(bucket).await?;
        let b = bucket.to_string();
        self.meta_call(move |m| {
            m.update_bucket(&b, |r| {
                r.public_access_block = block;
                Ok(())
            })
        })
        .await
    }

    /// PutBucketOwnershipControls (`Some`) and DeleteBucketOwnershipControls (`None`). Stored
    /// ACLs are kept: under `BucketOwnerEnforced` they are not evaluated (and the gateway
    /// refuses that setting while the bucket ACL grants anyone but the owner, as S3).
    pub async fn set_bucket_ownership(
        &self,
        bucket: &str,
        ownership: Option<strata_metadata::acl::ObjectOwnership>,
    ) -> Result<BucketRecord> {
        self.require_writable(bucket).await?;
        let b = bucket.to_string();
        self.meta_call(move |m| {
            m.update_bucket(&b, |r| {
                r.ownership = ownership;
                Ok(())
            })
        })
        .await
    }

    /// PutObjectAcl: replaces a version's ACL (`None` id: the latest version).
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: Acl,
    ) -> Result<VersionRecord> {
        self.check_acl(&acl).await?;
        self.require_writable(bucket).await?;
        let (b, k, v) = (
            bucket.to_string(),
            key.to_string(),
            version_id.map(str::to_string),
        );
        self.meta_call(move |m| m.set_version_acl(&b, &k, v.as_deref(), Some(acl)))
            .await
    }
}
