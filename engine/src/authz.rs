//! The one authorisation decision (issue 14, "access control evaluated in one place"): every
//! operation asks [`authorize`] with the caller, the action, the resource and the request's
//! condition keys. S3-free: the gateway maps S3 operations to [`Action`]s and answers
//! `AccessDenied` for [`Decision::Deny`].
//!
//! Evaluation order, as S3 (ACLs, bucket policies, Public Access Block, Object Ownership):
//! 1. an explicit Deny of the bucket policy wins over everything, the bucket owner included
//!    (except that the owner may always get, put and delete the policy itself);
//! 2. the bucket owner may do everything on the bucket and its configuration, and on objects it
//!    owns (an object written by another account under `ObjectWriter` ownership is the writer's
//!    unless its ACL grants the bucket owner; under `BucketOwnerEnforced` every object is the
//!    bucket owner's);
//! 3. an Allow of a policy (with `RestrictPublicBuckets` and a public policy: only for the
//!    bucket owner);
//! 4. an ACL grant (bucket ACL for bucket actions and object writes, object ACL for object
//!    reads and object ACL actions) to the caller, to `AuthenticatedUsers` (any signed caller),
//!    or to `AllUsers` (anyone, anonymous included); no grant counts under
//!    `BucketOwnerEnforced`, and the two group grants do not count with `IgnorePublicAcls`;
//! 5. otherwise Deny (anonymous requests are allowed exactly where 3 or 4 allows them).
//!
//! Canned ACLs expand with [`canned_acl`] as S3 defines them.

use std::collections::BTreeMap;

/// Who asks: a user by canonical id, or an anonymous (unsigned) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User { id: String },
}

/// What is asked: an S3 action (the names of S3's policy language, `s3:GetObject`, ...). The
/// ones S3's ACLs can grant have their own variant; the others are the bucket owner's (or, later,
/// a policy's) and carry their S3 name in [`Action::OwnerOnly`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// ListObjects(V2), HeadBucket: bucket READ.
    ListBucket,
    /// ListObjectVersions: bucket READ.
    ListBucketVersions,
    /// ListMultipartUploads: bucket READ.
    ListBucketMultipartUploads,
    /// PutObject, CopyObject (destination), CreateMultipartUpload, UploadPart(Copy),
    /// CompleteMultipartUpload: bucket WRITE.
    PutObject,
    /// DeleteObject(s) without a version id: bucket WRITE.
    DeleteObject,
    /// DeleteObject(s) of a version: bucket WRITE.
    DeleteObjectVersion,
    /// AbortMultipartUpload: bucket WRITE (the writer who may upload may give up).
    AbortMultipartUpload,
    /// ListParts: bucket WRITE, as the uploads' writers need it to resume.
    ListMultipartUploadParts,
    /// GetObject, HeadObject, CopyObject / UploadPartCopy source: object READ.
    GetObject,
    /// The same by version id: object READ.
    GetObjectVersion,
    /// GetBucketAcl: bucket READ_ACP.
    GetBucketAcl,
    /// PutBucketAcl: bucket WRITE_ACP.
    PutBucketAcl,
    /// GetObjectAcl: object READ_ACP.
    GetObjectAcl,
    GetObjectVersionAcl,
    /// PutObjectAcl: object WRITE_ACP.
    PutObjectAcl,
    PutObjectVersionAcl,
    /// Everything no ACL grants (bucket configuration, tagging, retention, restore, attributes,
    /// DeleteBucket, ...), by S3 action name: the bucket owner's.
    OwnerOnly(&'static str),
}

/// Which ACL an action's grant is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AclOf {
    Bucket,
    Object,
}

impl Action {
    /// The S3 action name (`s3:GetObject`), as bucket policies name it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ListBucket => "s3:ListBucket",
            Action::ListBucketVersions => "s3:ListBucketVersions",
            Action::ListBucketMultipartUploads => "s3:ListBucketMultipartUploads",
            Action::PutObject => "s3:PutObject",
            Action::DeleteObject => "s3:DeleteObject",
            Action::DeleteObjectVersion => "s3:DeleteObjectVersion",
            Action::AbortMultipartUpload => "s3:AbortMultipartUpload",
            Action::ListMultipartUploadParts => "s3:ListMultipartUploadParts",
            Action::GetObject => "s3:GetObject",
            Action::GetObjectVersion => "s3:GetObjectVersion",
            Action::GetBucketAcl => "s3:GetBucketAcl",
            Action::PutBucketAcl => "s3:PutBucketAcl",
            Action::GetObjectAcl => "s3:GetObjectAcl",
            Action::GetObjectVersionAcl => "s3:GetObjectVersionAcl",
            Action::PutObjectAcl => "s3:PutObjectAcl",
            Action::PutObjectVersionAcl => "s3:PutObjectVersionAcl",
            Action::OwnerOnly(name) => name,
        }
    }

    /// The ACL permission that grants this action, and on which ACL (S3's "Mapping of ACL
    /// permissions and access policy permissions"); `None`: no ACL grants it.
    fn acl_grant(&self) -> Option<(AclOf, Permission)> {
        use Action::*;
        Some(match self {
            ListBucket | ListBucketVersions | ListBucketMultipartUploads => {
                (AclOf::Bucket, Permission::Read)
            }
            PutObject
            | DeleteObject
            | DeleteObjectVersion
            | AbortMultipartUpload
            | ListMultipartUploadParts => (AclOf::Bucket, Permission::Write),
            GetBucketAcl => (AclOf::Bucket, Permission::ReadAcp),
            PutBucketAcl => (AclOf::Bucket, Permission::WriteAcp),
            GetObject | GetObjectVersion => (AclOf::Object, Permission::Read),
            GetObjectAcl | GetObjectVersionAcl => (AclOf::Object, Permission::ReadAcp),
            PutObjectAcl | PutObjectVersionAcl => (AclOf::Object, Permission::WriteAcp),
            OwnerOnly(_) => return None,
        })
    }
}

/// What an action is asked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    pub bucket: &'a str,
    /// The object key of object-level actions (policies match `arn:aws:s3:::bucket/key`).
    pub key: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub bucket_owner: &'a str,
    pub bucket_acl: &'a Acl,
    /// The object's ACL (and owner) for object-level actions on an existing object.
    pub object_acl: Option<&'a Acl>,
    /// The bucket's Public Access Block (all off when none is configured).
    pub public_access_block: PublicAccessBlock,
    /// The bucket's Object Ownership (`None`: no controls, as `ObjectWriter`).
    pub ownership: Option<ObjectOwnership>,
}

pub use strata_metadata::acl::{
    Acl, Grant, Grantee, MAX_GRANTS, ObjectOwnership, Permission, PublicAccessBlock,
};

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// The request's condition keys (`aws:SourceIp`, `aws:SecureTransport`, `s3:prefix`, ...), by
/// name; bucket policies evaluate them.
pub type ConditionKeys = BTreeMap<String, Vec<String>>;

pub use crate::policy::{Policy, PolicyVerdict};

/// The decision for `who` doing `action` on `resource` (see the module comment).
pub fn authorize(
    who: &Principal,
    action: Action,
    resource: &Resource<'_>,
    conditions: &ConditionKeys,
    policy: Option<&Policy>,
) -> Decision {
    let is = |id: &str| matches!(who, Principal::User { id: me } if me == id);
    let policy_is_public = policy.is_some_and(Policy::is_public);
    let policy = match policy {
        Some(p) => {
            let arn = match resource.key {
                Some(k) => format!("arn:aws:s3:::{}/{k}", resource.bucket),
                None => format!("arn:aws:s3:::{}", resource.bucket),
            };
            p.evaluate(who, action.name(), &arn, conditions)
        }
        None => PolicyVerdict::default(),
    };
    // The bucket owner can always change or remove the policy (no lock-out by its own Deny),
    // as S3's root user can.
    let policy_admin = matches!(
        action,
        Action::OwnerOnly("s3:PutBucketPolicy" | "s3:DeleteBucketPolicy" | "s3:GetBucketPolicy")
    );
    if policy.explicit_deny && !(policy_admin && is(resource.bucket_owner)) {
        return Decision::Deny;
    }
    let grant = action.acl_grant();
    let object_level = matches!(grant, Some((AclOf::Object, _)));
    // ACLs disabled: the bucket owner owns every object, no grant counts.
    let enforced = resource.ownership == Some(ObjectOwnership::BucketOwnerEnforced);
    // The bucket owner: everything on the bucket, and on the objects it owns.
    if is(resource.bucket_owner) {
        let owns_object = enforced
            || resource
                .object_acl
                .is_none_or(|o| o.owner == resource.bucket_owner);
        if !object_level || owns_object {
            return Decision::Allow;
        }
    }
    // An object's owner controls its object.
    if !enforced && object_level && resource.object_acl.is_some_and(|o| is(&o.owner)) {
        return Decision::Allow;
    }
    let pab = resource.public_access_block;
    // RestrictPublicBuckets: a public policy speaks for the owner's account only (the owner
    // was allowed above; here it matters for objects others own).
    let restricted = pab.restrict_public_buckets && policy_is_public && !is(resource.bucket_owner);
    if policy.allow && !restricted {
        return Decision::Allow;
    }
    if enforced {
        return Decision::Deny;
    }
    let acl = match grant {
        Some((AclOf::Bucket, needed)) => Some((resource.bucket_acl, needed)),
        Some((AclOf::Object, needed)) => resource.object_acl.map(|a| (a, needed)),
        None => None,
    };
    match acl {
        Some((acl, needed)) if grants(acl, who, needed, pab.ignore_public_acls) => Decision::Allow,
        _ => Decision::Deny,
    }
}

/// Whether `acl` grants `needed` (or FULL_CONTROL) to `who`, directly or through a group;
/// `ignore_public`: the AllUsers and AuthenticatedUsers grants do not count (IgnorePublicAcls).
pub fn grants(acl: &Acl, who: &Principal, needed: Permission, ignore_public: bool) -> bool {
    acl.grants.iter().any(|g| {
        (g.permission == needed || g.permission == Permission::FullControl)
            && !(ignore_public && is_public_grantee(&g.grantee))
            && match (&g.grantee, who) {
                (Grantee::AllUsers, _) => true,
                (Grantee::AuthenticatedUsers, Principal::User { .. }) => true,
                (Grantee::User(id), Principal::User { id: me }) => id == me,
                _ => false,
            }
    })
}

/// S3's "public" grantees: the AllUsers and AuthenticatedUsers groups.
pub fn is_public_grantee(g: &Grantee) -> bool {
    matches!(g, Grantee::AllUsers | Grantee::AuthenticatedUsers)
}

/// Whether an ACL is public as S3 defines it (a grant to AllUsers or AuthenticatedUsers):
/// refused with BlockPublicAcls.
pub fn is_public_acl(acl: &Acl) -> bool {
    acl.grants.iter().any(|g| is_public_grantee(&g.grantee))
}

/// Whether an ACL gives nothing beyond the owner's FULL_CONTROL (`private`,
/// `bucket-owner-full-control` or the same body): the only ACL BucketOwnerEnforced accepts.
pub fn is_owner_only_acl(acl: &Acl, owner: &str) -> bool {
    acl.grants.iter().all(|g| {
        g.grantee == Grantee::User(owner.to_string()) && g.permission == Permission::FullControl
    })
}

/// S3's canned ACLs. `owner`: the owner of the bucket or object the ACL is for;
/// `bucket_owner`: the bucket's owner (for `bucket-owner-read` / `-full-control` on objects).
/// `None` for an unknown name (S3: `400 InvalidArgument`).
pub fn canned_acl(name: &str, owner: &str, bucket_owner: &str) -> Option<Acl> {
    let full = |id: &str| Grant {
        grantee: Grantee::User(id.to_string()),
        permission: Permission::FullControl,
    };
    let g = |grantee, permission| Grant {
        grantee,
        permission,
    };
    let mut grants = vec![full(owner)];
    match name {
        "private" => {}
        "public-read" => grants.push(g(Grantee::AllUsers, Permission::Read)),
        "public-read-write" => {
            grants.push(g(Grantee::AllUsers, Permission::Read));
            grants.push(g(Grantee::AllUsers, Permission::Write));
        }
        "authenticated-read" => grants.push(g(Grantee::AuthenticatedUsers, Permission::Read)),
        // EC2 gets READ on the bundle in S3; there is no EC2 here: owner only.
        "aws-exec-read" => {}
        "bucket-owner-read" => {
            if bucket_owner != owner {
                grants.push(g(Grantee::User(bucket_owner.to_string()), Permission::Read));
            }
        }
        "bucket-owner-full-control" => {
            if bucket_owner != owner {
                grants.push(full(bucket_owner));
            }
        }
        "log-delivery-write" => {
            grants.push(g(Grantee::LogDelivery, Permission::Write));
            grants.push(g(Grantee::LogDelivery, Permission::ReadAcp));
        }
        _ => return None,
    }
    Some(Acl {
        owner: owner.to_string(),
        grants,
    })
}

/// The ACL a bucket has: its stored one, or `private` (owner FULL_CONTROL) when none is stored.
pub fn bucket_acl(bucket: &strata_metadata::BucketRecord) -> Acl {
    bucket.acl.clone().unwrap_or_else(|| private(&bucket.owner))
}

/// The ACL a version has: its stored one, or `private` for its owner (a version written before
/// owners were recorded belongs to the bucket owner).
pub fn version_acl(
    bucket: &strata_metadata::BucketRecord,
    v: &strata_metadata::VersionRecord,
) -> Acl {
    v.acl
        .clone()
        .unwrap_or_else(|| private(version_owner(bucket, v)))
}

/// A version's owner: its writer, or the bucket owner for versions written before writers were
/// recorded.
pub fn version_owner<'a>(
    bucket: &'a strata_metadata::BucketRecord,
    v: &'a strata_metadata::VersionRecord,
) -> &'a str {
    if v.owner.is_empty() {
        &bucket.owner
    } else {
        &v.owner
    }
}

fn private(owner: &str) -> Acl {
    Acl {
        owner: owner.to_string(),
        grants: vec![Grant {
            grantee: Grantee::User(owner.to_string()),
            permission: Permission::FullControl,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaa";
    const B: &str = "bbbb";

    fn user(id: &str) -> Principal {
        Principal::User { id: id.into() }
    }

    fn decide(who: &Principal, action: Action, bucket: &Acl, object: Option<&Acl>) -> Decision {
        authorize(
            who,
            action,
            &Resource {
                bucket: "b",
                key: None,
                version_id: None,
                bucket_owner: A,
                bucket_acl: bucket,
                object_acl: object,
                public_access_block: PublicAccessBlock::default(),
                ownership: None,
            },
            &ConditionKeys::new(),
            None,
        )
    }

    #[test]
    fn owner_others_and_anonymous_under_private() {
        let private = canned_acl("private", A, A).unwrap();
        for action in [
            Action::ListBucket,
            Action::PutObject,
            Action::OwnerOnly("s3:PutBucketVersioning"),
            Action::PutBucketAcl,
        ] {
            assert_eq!(decide(&user(A), action, &private, None), Decision::Allow);
            assert_eq!(decide(&user(B), action, &private, None), Decision::Deny);
            assert_eq!(
                decide(&Principal::Anonymous, action, &private, None),
                Decision::Deny
            );
        }
    }

    #[test]
    fn canned_acls_grant_what_s3_grants() {
        let obj = canned_acl("public-read", A, A).unwrap();
        let private = canned_acl("private", A, A).unwrap();
        let anon = Principal::Anonymous;
        assert_eq!(
            decide(&anon, Action::GetObject, &private, Some(&obj)),
            Decision::Allow
        );
        assert_eq!(
            decide(&anon, Action::GetObjectAcl, &private, Some(&obj)),
            Decision::Deny
        );
        let auth = canned_acl("authenticated-read", A, A).unwrap();
        assert_eq!(
            decide(&user(B), Action::ListBucket, &auth, None),
            Decision::Allow
        );
        assert_eq!(
            decide(&anon, Action::ListBucket, &auth, None),
            Decision::Deny
        );
        let rw = canned_acl("public-read-write", A, A).unwrap();
        assert_eq!(decide(&anon, Action::PutObject, &rw, None), Decision::Allow);
        assert_eq!(
            decide(
                &anon,
                Action::OwnerOnly("s3:PutBucketVersioning"),
                &rw,
                None
            ),
            Decision::Deny
        );
        assert!(canned_acl("public", A, A).is_none());
        // An object B wrote into A's bucket: A reads it only if B's ACL grants A.
        let b_private = canned_acl("private", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::GetObject, &private, Some(&b_private)),
            Decision::Deny
        );
        assert_eq!(
            decide(&user(B), Action::GetObject, &private, Some(&b_private)),
            Decision::Allow
        );
        let b_full = canned_acl("bucket-owner-full-control", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::PutObjectAcl, &private, Some(&b_full)),
            Decision::Allow
        );
        let b_read = canned_acl("bucket-owner-read", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::GetObject, &private, Some(&b_read)),
            Decision::Allow
        );
        assert_eq!(
            decide(&user(A), Action::PutObjectAcl, &private, Some(&b_read)),
            Decision::Deny
        );
    }

    #[test]
    fn explicit_deny_wins_even_for_the_owner_and_allow_opens() {
        let private = canned_acl("private", A, A).unwrap();
        let r = Resource {
            bucket: "b",
            key: None,
            version_id: None,
            bucket_owner: A,
            bucket_acl: &private,
            object_acl: None,
            public_access_block: PublicAccessBlock::default(),
            ownership: None,
        };
        let policy = |effect: &str| {
            crate::policy::parse(
                format!(
                    r#"{{"Statement":{{"Effect":"{effect}","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b"}}}}"#
                )
                .as_bytes(),
                "b",
            )
            .unwrap()
        };
        let deny = policy("Deny");
        let none = ConditionKeys::new();
        assert_eq!(
            authorize(&user(A), Action::ListBucket, &r, &none, Some(&deny)),
            Decision::Deny
        );
        // ... but the owner can still remove the policy that locks it out
        assert_eq!(
            authorize(
                &user(A),
                Action::OwnerOnly("s3:DeleteBucketPolicy"),
                &r,
                &none,
                Some(&deny)
            ),
            Decision::Allow
        );
        let allow = policy("Allow");
        assert_eq!(
            authorize(
                &Principal::Anonymous,
                Action::ListBucket,
                &r,
                &none,
                Some(&allow)
            ),
            Decision::Allow
        );
        // an Allow opens what no ACL can grant
        assert_eq!(
            authorize(
                &user(B),
                Action::OwnerOnly("s3:GetBucketVersioning"),
                &r,
                &none,
                Some(&allow)
            ),
            Decision::Allow
        );
    }

    #[test]
    fn acl_permissions_map_to_s3_actions() {
        let me = user(B);
        let acl_with = |p: Permission| Acl {
            owner: A.into(),
            grants: vec![Grant {
                grantee: Grantee::User(B.into()),
                permission: p,
            }],
        };
        let private = canned_acl("private", A, A).unwrap();
        let read = acl_with(Permission::Read);
        let write = acl_with(Permission::Write);
        // bucket READ: the listings, nothing else
        for a in [
            Action::ListBucket,
            Action::ListBucketVersions,
            Action::ListBucketMultipartUploads,
        ] {
            assert_eq!(decide(&me, a, &read, None), Decision::Allow, "{a:?}");
            assert_eq!(decide(&me, a, &write, None), Decision::Deny, "{a:?}");
        }
        // bucket WRITE: writes and deletes, not listing
        for a in [
            Action::PutObject,
            Action::DeleteObject,
            Action::DeleteObjectVersion,
            Action::AbortMultipartUpload,
        ] {
            assert_eq!(decide(&me, a, &write, None), Decision::Allow, "{a:?}");
            assert_eq!(decide(&me, a, &read, None), Decision::Deny, "{a:?}");
        }
        // the ACL ops need the _ACP permissions; object reads the object's ACL
        assert_eq!(
            decide(&me, Action::GetBucketAcl, &read, None),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &me,
                Action::GetBucketAcl,
                &acl_with(Permission::ReadAcp),
                None
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &me,
                Action::PutBucketAcl,
                &acl_with(Permission::WriteAcp),
                None
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(&me, Action::GetObject, &read, Some(&private)),
            Decision::Deny,
            "a bucket READ grant does not open its objects"
        );
        assert_eq!(
            decide(&me, Action::GetObjectVersion, &private, Some(&read)),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &me,
                Action::PutObjectAcl,
                &private,
                Some(&acl_with(Permission::WriteAcp))
            ),
            Decision::Allow
        );
        // FULL_CONTROL: every ACL-grantable action, but no owner-only one
        let full = acl_with(Permission::FullControl);
        for a in [
            Action::ListBucket,
            Action::PutObject,
            Action::GetBucketAcl,
            Action::PutBucketAcl,
        ] {
            assert_eq!(decide(&me, a, &full, None), Decision::Allow, "{a:?}");
        }
        assert_eq!(
            decide(&me, Action::OwnerOnly("s3:DeleteBucket"), &full, None),
            Decision::Deny
        );
        assert_eq!(
            decide(
                &user(A),
                Action::OwnerOnly("s3:DeleteBucket"),
                &private,
                None
            ),
            Decision::Allow
        );
        assert_eq!(Action::GetObject.name(), "s3:GetObject");
        assert_eq!(
            Action::OwnerOnly("s3:PutBucketCORS").name(),
            "s3:PutBucketCORS"
        );
    }

    #[test]
    fn public_access_block_and_ownership_change_what_acls_and_policies_give() {
        let public = canned_acl("public-read", A, A).unwrap();
        let b_obj = canned_acl("private", B, A).unwrap();
        let doc = br#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        let policy = crate::policy::parse(doc, "b").unwrap();
        let none = ConditionKeys::new();
        let ask = |who: &Principal,
                   object: &Acl,
                   pab: PublicAccessBlock,
                   ownership: Option<ObjectOwnership>,
                   policy: Option<&Policy>| {
            authorize(
                who,
                Action::GetObject,
                &Resource {
                    bucket: "b",
                    key: Some("k"),
                    version_id: None,
                    bucket_owner: A,
                    bucket_acl: &public,
                    object_acl: Some(object),
                    public_access_block: pab,
                    ownership,
                },
                &none,
                policy,
            )
        };
        let anon = Principal::Anonymous;
        let off = PublicAccessBlock::default();
        let ignore = PublicAccessBlock {
            ignore_public_acls: true,
            ..off
        };
        let restrict = PublicAccessBlock {
            restrict_public_buckets: true,
            ..off
        };
        assert_eq!(ask(&anon, &public, off, None, None), Decision::Allow);
        assert_eq!(ask(&anon, &public, ignore, None, None), Decision::Deny);
        assert_eq!(ask(&user(B), &public, ignore, None, None), Decision::Deny);
        // BucketOwnerEnforced: no ACL counts, the bucket owner owns B's object
        let enforced = Some(ObjectOwnership::BucketOwnerEnforced);
        assert_eq!(ask(&anon, &public, off, enforced, None), Decision::Deny);
        assert_eq!(ask(&user(A), &b_obj, off, None, None), Decision::Deny);
        assert_eq!(ask(&user(A), &b_obj, off, enforced, None), Decision::Allow);
        assert_eq!(ask(&user(B), &b_obj, off, enforced, None), Decision::Deny);
        // a policy still allows under BucketOwnerEnforced; RestrictPublicBuckets stops a
        // public one for everyone but the bucket owner
        assert_eq!(
            ask(&anon, &b_obj, off, enforced, Some(&policy)),
            Decision::Allow
        );
        assert_eq!(
            ask(&anon, &b_obj, restrict, None, Some(&policy)),
            Decision::Deny
        );
        assert_eq!(
            ask(&user(B), &b_obj, restrict, None, Some(&policy)),
            Decision::Allow,
            "B owns it"
        );
        assert_eq!(
            ask(&user(A), &b_obj, restrict, None, Some(&policy)),
            Decision::Allow,
            "the owner's account keeps what a public policy gives"
        );
        assert!(is_public_acl(&public) && !is_public_acl(&b_obj));
        assert!(is_owner_only_acl(
            &canned_acl("bucket-owner-full-control", A, A).unwrap(),
            A
        ));
        assert!(!is_owner_only_acl(
            &canned_acl("bucket-owner-full-control", B, A).unwrap(),
            A
        ));
    }
}
