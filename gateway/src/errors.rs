//! Mapping of the storage tiers' errors onto S3 error codes. Every S3 error body also gets a
//! RequestId (added in `http/mod.rs`), so handlers only pick the code and message.

use s3s::{S3Error, S3ErrorCode, s3_error};
use strata_metadata::MetaError;
use strata_storage_node::NodeError;
use strata_storage_node::keys::KeyError;

pub fn meta(e: MetaError) -> S3Error {
    match e {
        MetaError::NoSuchBucket => s3_error!(NoSuchBucket),
        MetaError::BucketAlreadyExists => s3_error!(BucketAlreadyExists),
        MetaError::BucketNotEmpty => s3_error!(BucketNotEmpty),
        MetaError::NoSuchKey => s3_error!(NoSuchKey),
        MetaError::NoSuchVersion => s3_error!(NoSuchVersion),
        MetaError::NoSuchUpload => s3_error!(NoSuchUpload),
        MetaError::InvalidPart(m) => S3Error::with_message(S3ErrorCode::InvalidPart, m),
        MetaError::InvalidPartOrder => s3_error!(InvalidPartOrder),
        MetaError::EntityTooSmall(n) => S3Error::with_message(
            S3ErrorCode::EntityTooSmall,
            format!("Part {n} is smaller than the minimum allowed object size."),
        ),
        MetaError::PreconditionFailed => s3_error!(PreconditionFailed),
        MetaError::ObjectLocked => S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied because object protected by object lock.",
        ),
        MetaError::NoSuchUser => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "no such user")
        }
        MetaError::AlreadyExists => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "already exists")
        }
        MetaError::Conflict => s3_error!(
            OperationAborted,
            "A conflicting operation is in progress; retry."
        ),
        e @ (MetaError::Corrupt(_) | MetaError::Db(_)) => {
            tracing::error!(error = %e, "metadata failure");
            s3_error!(InternalError)
        }
    }
}

pub fn node(e: NodeError) -> S3Error {
    match e {
        NodeError::InsufficientStorage => S3Error::with_message(
            S3ErrorCode::Custom("InsufficientStorage".into()),
            "The storage is full; writes are refused until space is freed.",
        )
        .with_status(http::StatusCode::INSUFFICIENT_STORAGE),
        e => {
            tracing::error!(error = %e, "chunk store failure");
            s3_error!(InternalError)
        }
    }
}

pub fn key(e: KeyError) -> S3Error {
    tracing::error!(error = %e, "key hierarchy failure");
    s3_error!(InternalError)
}

trait WithStatus {
    fn with_status(self, s: http::StatusCode) -> Self;
}

impl WithStatus for S3Error {
    fn with_status(mut self, s: http::StatusCode) -> Self {
        self.set_status_code(s);
        self
    }
}
