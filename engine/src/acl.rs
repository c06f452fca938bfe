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
