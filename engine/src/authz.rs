//! The one authorisation decision (issue 14, "access control evaluated in one place"): every
//! operation asks [`authorize`] with the caller, the action, the resource and the request's
//! condition keys. S3-free: the gateway maps S3 operations to [`Action`]s and answers
//! `AccessDenied` for [`Decision::Deny`].
//!
//! Evaluation order, as S3 (for the parts that exist so far: ACLs; bucket policies plug into
//! `explicit_deny` / `policy_allows`):
//! 1. an explicit Deny of a policy wins over everything, the bucket owner included;
//! 2. the bucket owner may do everything on the bucket and its configuration, and on objects it
//!    owns (an object written by another account under `ObjectWriter` ownership is the writer's
//!    unless its ACL grants the bucket owner);
//! 3. an Allow of a policy;
//! 4. an ACL grant (bucket ACL for bucket actions and object writes, object ACL for object
//!    reads and object ACL actions) to the caller, to `AuthenticatedUsers` (any signed caller),
//!    or to `AllUsers` (anyone, anonymous included);
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

/// What is asked, by S3 action name family (the ones ACLs can grant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// ListObjects(V2), ListObjectVersions, ListMultipartUploads, HeadBucket.
    ListBucket,
    /// PutObject, CopyObject (destination), multipart writes, DeleteObject(s).
    WriteObject,
    /// GetObject, HeadObject, GetObjectAttributes, CopyObject / UploadPartCopy source.
    ReadObject,
    GetBucketAcl,
    PutBucketAcl,
    GetObjectAcl,
    PutObjectAcl,
    /// Any other bucket configuration (versioning, lifecycle, CORS, policy, ...): owner only
    /// (or a policy).
    BucketConfig,
}

/// What an action is asked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    pub bucket_owner: &'a str,
    pub bucket_acl: &'a Acl,
    /// The object's ACL (and owner) for object-level actions on an existing object.
    pub object_acl: Option<&'a Acl>,
}

pub use strata_metadata::acl::{Acl, Grant, Grantee, MAX_GRANTS, Permission};

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// The request's condition keys (`aws:SourceIp`, `aws:SecureTransport`, `s3:prefix`, ...), by
/// name; bucket policies evaluate them.
pub type ConditionKeys = BTreeMap<String, Vec<String>>;

/// The policy part of a decision (bucket policies, Public Access Block): none yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyVerdict {
    pub explicit_deny: bool,
    pub allow: bool,
}

/// The decision for `who` doing `action` on `resource` (see the module comment).
pub fn authorize(
    who: &Principal,
    action: Action,
    resource: &Resource<'_>,
    _conditions: &ConditionKeys,
    policy: PolicyVerdict,
) -> Decision {
    if policy.explicit_deny {
        return Decision::Deny;
    }
    let is = |id: &str| matches!(who, Principal::User { id: me } if me == id);
    let object_level = matches!(
        action,
        Action::ReadObject | Action::GetObjectAcl | Action::PutObjectAcl
    );
    // The bucket owner: everything on the bucket, and on the objects it owns.
    if is(resource.bucket_owner) {
        let owns_object = resource
            .object_acl
            .is_none_or(|o| o.owner == resource.bucket_owner);
        if !object_level || owns_object {
            return Decision::Allow;
        }
    }
    // An object's owner controls its object.
    if object_level && resource.object_acl.is_some_and(|o| is(&o.owner)) {
        return Decision::Allow;
    }
    if policy.allow {
        return Decision::Allow;
    }
    let (acl, needed) = match action {
        Action::ListBucket => (Some(resource.bucket_acl), Permission::Read),
        Action::WriteObject => (Some(resource.bucket_acl), Permission::Write),
        Action::GetBucketAcl => (Some(resource.bucket_acl), Permission::ReadAcp),
        Action::PutBucketAcl => (Some(resource.bucket_acl), Permission::WriteAcp),
        Action::ReadObject => (resource.object_acl, Permission::Read),
        Action::GetObjectAcl => (resource.object_acl, Permission::ReadAcp),
        Action::PutObjectAcl => (resource.object_acl, Permission::WriteAcp),
        Action::BucketConfig => (None, Permission::FullControl),
    };
    match acl {
        Some(acl) if grants(acl, who, needed) => Decision::Allow,
        _ => Decision::Deny,
    }
}

/// Whether `acl` grants `needed` (or FULL_CONTROL) to `who`, directly or through a group.
pub fn grants(acl: &Acl, who: &Principal, needed: Permission) -> bool {
    acl.grants.iter().any(|g| {
        (g.permission == needed || g.permission == Permission::FullControl)
            && match (&g.grantee, who) {
                (Grantee::AllUsers, _) => true,
                (Grantee::AuthenticatedUsers, Principal::User { .. }) => true,
                (Grantee::User(id), Principal::User { id: me }) => id == me,
                _ => false,
            }
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
                bucket_owner: A,
                bucket_acl: bucket,
                object_acl: object,
            },
            &ConditionKeys::new(),
            PolicyVerdict::default(),
        )
    }

    #[test]
    fn owner_others_and_anonymous_under_private() {
        let private = canned_acl("private", A, A).unwrap();
        for action in [
            Action::ListBucket,
            Action::WriteObject,
            Action::BucketConfig,
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
            decide(&anon, Action::ReadObject, &private, Some(&obj)),
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
        assert_eq!(
            decide(&anon, Action::WriteObject, &rw, None),
            Decision::Allow
        );
        assert_eq!(
            decide(&anon, Action::BucketConfig, &rw, None),
            Decision::Deny
        );
        assert!(canned_acl("public", A, A).is_none());
        // An object B wrote into A's bucket: A reads it only if B's ACL grants A.
        let b_private = canned_acl("private", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::ReadObject, &private, Some(&b_private)),
            Decision::Deny
        );
        assert_eq!(
            decide(&user(B), Action::ReadObject, &private, Some(&b_private)),
            Decision::Allow
        );
        let b_full = canned_acl("bucket-owner-full-control", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::PutObjectAcl, &private, Some(&b_full)),
            Decision::Allow
        );
        let b_read = canned_acl("bucket-owner-read", B, A).unwrap();
        assert_eq!(
            decide(&user(A), Action::ReadObject, &private, Some(&b_read)),
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
            bucket_owner: A,
            bucket_acl: &private,
            object_acl: None,
        };
        let deny = PolicyVerdict {
            explicit_deny: true,
            allow: true,
        };
        assert_eq!(
            authorize(
                &user(A),
                Action::ListBucket,
                &r,
                &ConditionKeys::new(),
                deny
            ),
            Decision::Deny
        );
        let allow = PolicyVerdict {
            explicit_deny: false,
            allow: true,
        };
        assert_eq!(
            authorize(
                &Principal::Anonymous,
                Action::ListBucket,
                &r,
                &ConditionKeys::new(),
                allow
            ),
            Decision::Allow
        );
    }
}
