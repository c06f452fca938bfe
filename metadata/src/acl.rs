//! Stored access control lists (S3 ACLs) of buckets, object versions and uploads in progress.
//! Only the records live here; what they allow is `strata_engine::authz`'s business.

use serde::{Deserialize, Serialize};

/// ACL permissions, as S3 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

/// A grantee: a user by canonical id, or one of S3's groups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grantee {
    User(String),
    /// `http://acs.amazonaws.com/groups/global/AllUsers`: anyone, anonymous included.
    AllUsers,
    /// `http://acs.amazonaws.com/groups/global/AuthenticatedUsers`: any signed request.
    AuthenticatedUsers,
    /// `http://acs.amazonaws.com/groups/s3/LogDelivery`.
    LogDelivery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

/// An access control list: its owner (canonical id) and its grants (S3 keeps at most
/// [`MAX_GRANTS`]).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Acl {
    pub owner: String,
    pub grants: Vec<Grant>,
}

/// S3's limit on the grants of one ACL.
pub const MAX_GRANTS: usize = 100;

/// A bucket's Public Access Block (PutPublicAccessBlock): the four settings S3 has, each off
/// unless set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse writes of public ACLs (grants to AllUsers / AuthenticatedUsers).
    pub block_public_acls: bool,
    /// Evaluate as if public grants were not there.
    pub ignore_public_acls: bool,
    /// Refuse a public bucket policy.
    pub block_public_policy: bool,
    /// A public policy allows only the bucket owner's principals.
    pub restrict_public_buckets: bool,
}

/// S3 Object Ownership (PutBucketOwnershipControls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// ACLs are disabled: the bucket owner owns every object.
    BucketOwnerEnforced,
    /// An object written with `bucket-owner-full-control` becomes the bucket owner's.
    BucketOwnerPreferred,
    /// The writer owns what it writes (S3's behaviour before ownership controls).
    ObjectWriter,
}
