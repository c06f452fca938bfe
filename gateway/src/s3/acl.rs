//! GetBucketAcl / GetObjectAcl: the ACL S3 shows for a bucket or object version (its owner by
//! canonical id and display name, and the grants), from the engine's ACL model
//! (`strata_engine::authz`). Every bucket and object is `private` today (owner FULL_CONTROL):
//! storing other ACLs (PutBucketAcl, PutObjectAcl, canned ACLs, `x-amz-grant-*`) is not built yet.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};
use strata_engine::authz::{self, Acl, Grantee as AclGrantee, Permission as AclPermission};

use super::StrataS3;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

impl StrataS3 {
    /// A user's display name (its user name), or the id itself for an id no user has.
    async fn display_name(&self, id: &str) -> String {
        match self.ctx.engine.user_by_id(id).await {
            Ok(Some(u)) => u.name,
            _ => id.to_string(),
        }
    }

    async fn owner_of(&self, id: &str) -> Owner {
        Owner {
            display_name: Some(self.display_name(id).await),
            id: Some(id.to_string()),
        }
    }

    async fn grants_dto(&self, acl: &Acl) -> Grants {
        let mut out = Vec::with_capacity(acl.grants.len());
        for g in &acl.grants {
            let grantee = match &g.grantee {
                AclGrantee::User(id) => Grantee {
                    display_name: Some(self.display_name(id).await),
                    email_address: None,
                    id: Some(id.clone()),
                    type_: Type::from_static(Type::CANONICAL_USER),
                    uri: None,
                },
                group => Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    uri: Some(
                        match group {
                            AclGrantee::AllUsers => ALL_USERS,
                            AclGrantee::AuthenticatedUsers => AUTHENTICATED_USERS,
                            _ => LOG_DELIVERY,
                        }
                        .to_string(),
                    ),
                },
            };
            let permission = match g.permission {
                AclPermission::Read => Permission::READ,
                AclPermission::Write => Permission::WRITE,
                AclPermission::ReadAcp => Permission::READ_ACP,
                AclPermission::WriteAcp => Permission::WRITE_ACP,
                AclPermission::FullControl => Permission::FULL_CONTROL,
            };
            out.push(Grant {
                grantee: Some(grantee),
                permission: Some(Permission::from_static(permission)),
            });
        }
        out
    }

    pub(crate) async fn op_get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let who = self.caller(&req.credentials).await?;
        let b = self.owned_bucket(&who, &req.input.bucket).await?;
        let acl = authz::canned_acl("private", &b.owner, &b.owner).unwrap_or_default();
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(self.grants_dto(&acl).await),
            owner: Some(self.owner_of(&acl.owner).await),
        }))
    }

    pub(crate) async fn op_get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let who = self.caller(&req.credentials).await?;
        let b = self.owned_bucket(&who, &req.input.bucket).await?;
        let v = self
            .readable_version(&b, &req.input.key, &req.input.version_id)
            .await?;
        // A version written before owners were recorded belongs to the bucket owner.
        let owner = if v.owner.is_empty() {
            &b.owner
        } else {
            &v.owner
        };
        let acl = authz::canned_acl("private", owner, &b.owner).unwrap_or_default();
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(self.grants_dto(&acl).await),
            owner: Some(self.owner_of(&acl.owner).await),
            request_charged: None,
        }))
    }
}
