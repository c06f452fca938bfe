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
