//! The error type of every metadata operation.

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MetaError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketAlreadyExists,
    #[error("bucket not empty")]
    BucketNotEmpty,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such version")]
    NoSuchVersion,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("part list is not in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the minimum allowed size")]
    EntityTooSmall(u32),
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("object is locked (retention or legal hold)")]
    ObjectLocked,
    #[error("no such user")]
    NoSuchUser,
    #[error("already exists")]
    AlreadyExists,
    #[error("concurrent update conflict")]
    Conflict,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;
