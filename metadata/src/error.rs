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
    /// The write intent of a blob this commit references is gone (the sweep took the writer for
    /// dead and queued the chunks for GC): nothing was applied; the request has failed.
    #[error("write aborted: its write intent was swept")]
    WriteAborted,
    /// The version changed under a background job (`replace_segment`): re-read and decide again.
    #[error("stale: the version no longer holds the data the caller read")]
    Stale,
    /// The process instance's record is gone or its lease has run out: it must stop writing.
    #[error("process instance {0:?} is not registered or its lease expired")]
    InstanceExpired(String),
    #[error("the bucket has no Object Lock configuration")]
    ObjectLockNotEnabled,
    /// Object Lock rules forbid this retention change (`compliance`: the current mode).
    #[error("retention change denied by Object Lock ({})", if *compliance { "COMPLIANCE" } else { "GOVERNANCE" })]
    RetentionDenied { compliance: bool },
    #[error("invalid retention: {0}")]
    InvalidRetention(String),
    /// The addressed version (by id) is a delete marker.
    #[error("the version is a delete marker")]
    IsDeleteMarker {
        version_id: String,
        last_modified: i64,
    },
    /// The bucket is being destroyed (bucket purge, or its account is closing): read-only.
    #[error("the bucket is read-only: it is being destroyed or its account is closing")]
    BucketClosing,
    /// A caller inside the system passed something impossible (e.g. an invalid layout).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The store was written in another on-disk format; the message says what to do.
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;
