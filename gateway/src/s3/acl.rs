//! ACLs at the S3 edge: Get/PutBucketAcl, Get/PutObjectAcl, and the ACL a write asks for with a
//! canned `x-amz-acl` or `x-amz-grant-*` headers (CreateBucket, PutObject, CopyObject,
//! CreateMultipartUpload). Translates S3's three ways of saying an ACL (canned name, grant
//! headers, `AccessControlPolicy` body) into the engine's model (`strata_engine::authz`), with
//! S3's errors; the engine checks the grantees and stores it.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::{
    self, Acl, Action, Grant as AclGrant, Grantee as AclGrantee, Permission as AclPermission,
};

use super::StrataS3;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The `x-amz-grant-*` headers of a request (`write` only where S3 has it: buckets).
#[derive(Default)]
pub(crate) struct GrantHeaders<'a> {
    pub full_control: Option<&'a str>,
    pub read: Option<&'a str>,
    pub read_acp: Option<&'a str>,
    pub write: Option<&'a str>,
    pub write_acp: Option<&'a str>,
}

impl GrantHeaders<'_> {
    fn any(&self) -> bool {
        [
            self.full_control,
            self.read,
            self.read_acp,
            self.write,
            self.write_acp,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// The ACL a request's canned ACL or grant headers ask for (`None`: neither, so `private`).
/// `owner`: the owner of the bucket or version the ACL is for; `bucket_owner`: the bucket's.
pub(crate) fn requested_acl(
    canned: Option<&str>,
    grants: &GrantHeaders<'_>,
    owner: &str,
    bucket_owner: &str,
) -> S3Result<Option<Acl>> {
    if let Some(name) = canned {
        if grants.any() {
            return Err(s3_error!(
                InvalidRequest,
                "Specifying both Canned ACLs and Header Grants is not allowed"
            ));
        }
        return authz::canned_acl(name, owner, bucket_owner)
            .map(Some)
            .ok_or_else(|| {
                tracing::info!(acl = %truncated(name), "unknown canned ACL");
                s3_error!(InvalidArgument)
            });
    }
    if !grants.any() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (value, permission) in [
        (grants.read, AclPermission::Read),
        (grants.write, AclPermission::Write),
        (grants.read_acp, AclPermission::ReadAcp),
        (grants.write_acp, AclPermission::WriteAcp),
        (grants.full_control, AclPermission::FullControl),
    ] {
        if let Some(v) = value {
            for grantee in grant_header(v)? {
                out.push(AclGrant {
                    grantee,
                    permission,
                });
            }
        }
    }
    Ok(Some(Acl {
        owner: owner.to_string(),
        grants: out,
    }))
}

/// One `x-amz-grant-*` value: `id="..."`, `uri="..."` or `emailAddress="..."`, comma separated.
fn grant_header(v: &str) -> S3Result<Vec<AclGrantee>> {
    let mut out = Vec::new();
    for item in v.split(',') {
        let item = item.trim();
        let Some((kind, value)) = item.split_once('=') else {
            tracing::info!(grant = %truncated(v), "malformed grant header");
            return Err(s3_error!(InvalidArgument, "Argument format not recognized"));
        };
        let value = value.trim().trim_matches('"');
        out.push(match kind.trim() {
            "id" => AclGrantee::User(value.to_string()),
            "uri" => group(value)?,
            "emailAddress" => return Err(unresolvable_email()),
            _ => {
                tracing::info!(grant = %truncated(v), "malformed grant header");
                return Err(s3_error!(InvalidArgument, "Argument format not recognized"));
            }
        });
        if out.len() > authz::MAX_GRANTS {
            // The engine refuses the whole ACL; no need to read further.
            break;
        }
    }
    Ok(out)
}

fn group(uri: &str) -> S3Result<AclGrantee> {
    match uri {
        ALL_USERS => Ok(AclGrantee::AllUsers),
        AUTHENTICATED_USERS => Ok(AclGrantee::AuthenticatedUsers),
        LOG_DELIVERY => Ok(AclGrantee::LogDelivery),
        _ => {
            tracing::info!(uri = %truncated(uri), "unknown group uri in ACL");
            Err(s3_error!(InvalidArgument, "Invalid group uri"))
        }
    }
}

/// Grants by e-mail address: there is no e-mail directory here (and S3 retired them).
fn unresolvable_email() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::UnresolvableGrantByEmailAddress,
        "The e-mail address you provided does not match any account on record.",
    )
}

fn malformed_acl() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::MalformedACLError,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

fn truncated(s: &str) -> String {
    s.chars().take(128).collect()
}

/// An `AccessControlPolicy` body as the engine's ACL. Its Owner must be the resource's owner.
fn policy_acl(p: &AccessControlPolicy, owner: &str) -> S3Result<Acl> {
    let Some(id) = p.owner.as_ref().and_then(|o| o.id.as_deref()) else {
        return Err(malformed_acl());
    };
    if id != owner {
        tracing::info!(owner = %truncated(id), "ACL names another owner");
        return Err(s3_error!(AccessDenied));
    }
    let list = p.grants.as_deref().unwrap_or_default();
    if list.len() > authz::MAX_GRANTS {
        return Err(malformed_acl());
    }
    let mut grants = Vec::with_capacity(list.len());
    for g in list {
        let (Some(grantee), Some(permission)) = (&g.grantee, &g.permission) else {
            return Err(malformed_acl());
        };
        let permission = match permission.as_str() {
            Permission::READ => AclPermission::Read,
            Permission::WRITE => AclPermission::Write,
            Permission::READ_ACP => AclPermission::ReadAcp,
            Permission::WRITE_ACP => AclPermission::WriteAcp,
            Permission::FULL_CONTROL => AclPermission::FullControl,
            _ => return Err(malformed_acl()),
        };
        let grantee = match grantee.type_.as_str() {
            Type::CANONICAL_USER => match grantee.id.as_deref() {
                Some(id) if !id.is_empty() => AclGrantee::User(id.to_string()),
                _ => return Err(s3_error!(InvalidArgument, "Invalid id")),
            },
            Type::GROUP => group(grantee.uri.as_deref().unwrap_or_default())?,
            Type::AMAZON_CUSTOMER_BY_EMAIL => return Err(unresolvable_email()),
            _ => return Err(malformed_acl()),
        };
        grants.push(AclGrant {
            grantee,
            permission,
        });
    }
    Ok(Acl {
        owner: owner.to_string(),
        grants,
    })
}

/// PutBucketAcl / PutObjectAcl: exactly one of a canned ACL, grant headers or a body.
fn put_acl(
    canned: Option<&str>,
    grants: &GrantHeaders<'_>,
    body: Option<&AccessControlPolicy>,
    owner: &str,
    bucket_owner: &str,
) -> S3Result<Acl> {
    let from_headers = requested_acl(canned, grants, owner, bucket_owner)?;
    match (from_headers, body) {
        (Some(_), Some(_)) => Err(s3_error!(
            UnexpectedContent,
            "This request does not support content"
        )),
        (Some(acl), None) => Ok(acl),
        (None, Some(p)) => policy_acl(p, owner),
        (None, None) => Err(s3_error!(
            MissingSecurityHeader,
            "Your request was missing a required header"
        )),
    }
}

impl StrataS3 {
    /// The ACL a write asks for, checked by the engine before any byte is read (`None`:
    /// `private`).
    pub(crate) async fn write_acl(
        &self,
        canned: Option<&str>,
        grants: GrantHeaders<'_>,
        owner: &str,
        bucket_owner: &str,
    ) -> S3Result<Option<Acl>> {
        let acl = requested_acl(canned, &grants, owner, bucket_owner)?;
        if let Some(a) = &acl {
            self.ctx
                .engine
                .check_acl(a)
                .await
                .map_err(crate::errors::engine)?;
        }
        Ok(acl)
    }

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
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(&who, &req.input.bucket, Action::GetBucketAcl)
            .await?;
        // ACLs disabled: the bucket owner's FULL_CONTROL is all there is (as S3 shows it).
        let acl = if super::public_access::enforced(&b) {
            authz::canned_acl("private", &b.owner, &b.owner).unwrap_or_default()
        } else {
            authz::bucket_acl(&b)
        };
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(self.grants_dto(&acl).await),
            owner: Some(self.owner_of(&acl.owner).await),
        }))
    }

    pub(crate) async fn op_get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self.existing_bucket(&req.input.bucket).await?;
        let action = if req.input.version_id.is_some() {
            Action::GetObjectVersionAcl
        } else {
            Action::GetObjectAcl
        };
        let v = self
            .authorized_version(&who, &b, &req.input.key, &req.input.version_id, action)
            .await?;
        // ACLs disabled: every object is the bucket owner's, with its FULL_CONTROL only.
        let acl = if super::public_access::enforced(&b) {
            authz::canned_acl("private", &b.owner, &b.owner).unwrap_or_default()
        } else {
            authz::version_acl(&b, &v)
        };
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(self.grants_dto(&acl).await),
            owner: Some(self.owner_of(&acl.owner).await),
            request_charged: None,
        }))
    }

    pub(crate) async fn op_put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let i = &req.input;
        who.condition("s3:x-amz-acl", i.acl.as_ref().map(|a| a.as_str()));
        let b = self
            .authorized_bucket(&who, &i.bucket, Action::PutBucketAcl)
            .await?;
        let grants = GrantHeaders {
            full_control: i.grant_full_control.as_deref(),
            read: i.grant_read.as_deref(),
            read_acp: i.grant_read_acp.as_deref(),
            write: i.grant_write.as_deref(),
            write_acp: i.grant_write_acp.as_deref(),
        };
        let acl = put_acl(
            i.acl.as_ref().map(|a| a.as_str()),
            &grants,
            i.access_control_policy.as_ref(),
            &b.owner,
            &b.owner,
        )?;
        super::public_access::check_requested_acl(&b, Some(&acl))?;
        if super::public_access::enforced(&b) {
            // The bucket owner's FULL_CONTROL, as it already is: nothing to store.
            return Ok(S3Response::new(PutBucketAclOutput {}));
        }
        self.ctx
            .engine
            .set_bucket_acl(&b.name, acl)
            .await
            .map_err(crate::errors::engine)?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    pub(crate) async fn op_put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let i = &req.input;
        who.condition("s3:x-amz-acl", i.acl.as_ref().map(|a| a.as_str()));
        let b = self.existing_bucket(&i.bucket).await?;
        let action = if i.version_id.is_some() {
            Action::PutObjectVersionAcl
        } else {
            Action::PutObjectAcl
        };
        let v = self
            .authorized_version(&who, &b, &i.key, &i.version_id, action)
            .await?;
        let grants = GrantHeaders {
            full_control: i.grant_full_control.as_deref(),
            read: i.grant_read.as_deref(),
            read_acp: i.grant_read_acp.as_deref(),
            write: i.grant_write.as_deref(),
            write_acp: i.grant_write_acp.as_deref(),
        };
        let enforced = super::public_access::enforced(&b);
        let owner = if enforced {
            b.owner.as_str()
        } else {
            authz::version_owner(&b, &v)
        };
        let acl = put_acl(
            i.acl.as_ref().map(|a| a.as_str()),
            &grants,
            i.access_control_policy.as_ref(),
            owner,
            &b.owner,
        )?;
        super::public_access::check_requested_acl(&b, Some(&acl))?;
        if enforced {
            return Ok(S3Response::new(PutObjectAclOutput {
                request_charged: None,
            }));
        }
        // The version found above, by id: a newer version written meanwhile keeps its own ACL.
        self.ctx
            .engine
            .set_object_acl(&b.name, &i.key, Some(&v.version_id), acl)
            .await
            .map_err(crate::errors::engine)?;
        Ok(S3Response::new(PutObjectAclOutput {
            request_charged: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaa";

    fn code(r: S3Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().code().as_str().to_string()
    }

    #[test]
    fn grant_headers_parse_as_s3_writes_them() {
        let g = grant_header(&format!(
            r#"id="{A}", uri="{ALL_USERS}",uri={AUTHENTICATED_USERS}"#
        ))
        .unwrap();
        assert_eq!(
            g,
            vec![
                AclGrantee::User(A.into()),
                AclGrantee::AllUsers,
                AclGrantee::AuthenticatedUsers
            ]
        );
        assert_eq!(code(grant_header("id")), "InvalidArgument");
        assert_eq!(code(grant_header("user=x")), "InvalidArgument");
        assert_eq!(code(grant_header(r#"uri="http://x/y""#)), "InvalidArgument");
        assert_eq!(
            code(grant_header("emailAddress=a@b.c")),
            "UnresolvableGrantByEmailAddress"
        );
    }

    #[test]
    fn exactly_one_way_of_saying_an_acl() {
        let read = GrantHeaders {
            read: Some(r#"id="bbbb""#),
            ..Default::default()
        };
        let none = GrantHeaders::default();
        assert_eq!(
            code(requested_acl(Some("private"), &read, A, A)),
            "InvalidRequest"
        );
        assert_eq!(
            code(requested_acl(Some("nope"), &none, A, A)),
            "InvalidArgument"
        );
        assert_eq!(requested_acl(None, &none, A, A).unwrap(), None);
        // grant headers give exactly the grants listed
        let acl = requested_acl(None, &read, A, A).unwrap().unwrap();
        assert_eq!(acl.owner, A);
        assert_eq!(
            acl.grants,
            vec![AclGrant {
                grantee: AclGrantee::User("bbbb".into()),
                permission: AclPermission::Read
            }]
        );
        let body = AccessControlPolicy {
            grants: Some(vec![]),
            owner: Some(Owner {
                display_name: None,
                id: Some(A.into()),
            }),
        };
        assert_eq!(
            code(put_acl(Some("private"), &none, Some(&body), A, A)),
            "UnexpectedContent"
        );
        assert_eq!(
            code(put_acl(None, &none, None, A, A)),
            "MissingSecurityHeader"
        );
        assert_eq!(
            put_acl(None, &none, Some(&body), A, A).unwrap().grants,
            vec![]
        );
        assert_eq!(
            code(put_acl(None, &none, Some(&body), "other", A)),
            "AccessDenied"
        );
        let no_owner = AccessControlPolicy {
            grants: None,
            owner: None,
        };
        assert_eq!(
            code(put_acl(None, &none, Some(&no_owner), A, A)),
            "MalformedACLError"
        );
    }
}
