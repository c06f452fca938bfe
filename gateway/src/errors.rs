//! Mapping of the engine's errors onto S3 error codes. Every S3 error body also gets a
//! RequestId (added in `http/mod.rs`), so handlers only pick the code and message.

use s3s::{S3Error, S3ErrorCode, s3_error};
use strata_engine::{EngineError, Rejection};
use strata_metadata::MetaError;
use strata_storage_node::NodeError;

pub fn engine(e: EngineError) -> S3Error {
    match e {
        EngineError::Meta(e) => meta(e),
        EngineError::Storage(e) => node(e),
        EngineError::Rejected(r) => rejection(r),
        EngineError::Key(e) => {
            tracing::error!(error = %e, "key hierarchy failure");
            s3_error!(InternalError)
        }
        EngineError::Internal(_) => s3_error!(InternalError),
    }
}

pub fn rejection(r: Rejection) -> S3Error {
    match r {
        Rejection::Md5Mismatch => s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ),
        Rejection::ChecksumMismatch { algorithm } => S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                algorithm.to_ascii_lowercase()
            ),
        ),
        Rejection::UnsupportedChecksum(a) => S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("Checksum algorithm {a:?} is not supported"),
        ),
        // S3's answer when the trailer announced in x-amz-trailer is missing or another one came.
        Rejection::TrailerMismatch => S3Error::with_message(
            S3ErrorCode::Custom("MalformedTrailerError".into()),
            "The request contained trailing data that was not well-formed or did not conform to our published schema.",
        )
        .with_status(http::StatusCode::BAD_REQUEST),
        Rejection::IncompleteBody => s3_error!(IncompleteBody),
        Rejection::BodySignature => {
            s3_error!(SignatureDoesNotMatch, "The chunk signature does not match.")
        }
        Rejection::TooLarge { limit } => S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!("Your proposed upload exceeds the maximum allowed size ({limit} bytes)."),
        ),
        Rejection::PartChecksumMismatch(n) => S3Error::with_message(
            S3ErrorCode::InvalidPart,
            format!("The checksum of part {n} does not match"),
        ),
        Rejection::SizeMismatch => s3_error!(
            InvalidRequest,
            "The provided MpuObjectSize does not match the object size"
        ),
        Rejection::BadPartEtag => s3_error!(InvalidPart, "Part ETag is not a valid MD5"),
        Rejection::FullObjectNeedsCrc => {
            s3_error!(InvalidRequest, "FULL_OBJECT checksums need a CRC algorithm")
        }
        // S3's answers for KMS keys (the KMS service's exception names, status 400).
        Rejection::KmsKeyNotFound(k) => S3Error::with_message(
            S3ErrorCode::Custom("KMS.NotFoundException".into()),
            format!("Invalid keyId '{}'", k.chars().take(256).collect::<String>()),
        )
        .with_status(http::StatusCode::BAD_REQUEST),
        Rejection::KmsKeyDisabled(id) => S3Error::with_message(
            S3ErrorCode::Custom("KMS.DisabledException".into()),
            format!("KMS key {id} is disabled."),
        )
        .with_status(http::StatusCode::BAD_REQUEST),
        Rejection::SseCustomerKeyRequired => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        ),
        Rejection::SseCustomerKeyMismatch => s3_error!(
            AccessDenied,
            "The provided customer key does not match the key used to encrypt this object."
        ),
        Rejection::SseCustomerArchiveClass => s3_error!(
            InvalidArgument,
            "Objects encrypted with customer-provided keys (SSE-C) cannot be stored in the GLACIER or DEEP_ARCHIVE storage class on this server."
        ),
        Rejection::SseCustomerKeyUnexpected => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        Rejection::InvalidObjectState => S3Error::with_message(
            S3ErrorCode::InvalidObjectState,
            "The operation is not valid for the object's storage class",
        )
        .with_status(http::StatusCode::FORBIDDEN),
        // What S3 answers a RestoreObject on a STANDARD object.
        Rejection::ObjectAlreadyInActiveTier => S3Error::with_message(
            S3ErrorCode::InvalidObjectState,
            "Restore is not allowed for the object's current storage class",
        )
        .with_status(http::StatusCode::FORBIDDEN),
        Rejection::RestoreAlreadyInProgress => S3Error::with_message(
            S3ErrorCode::RestoreAlreadyInProgress,
            "Object restore is already in progress",
        )
        .with_status(http::StatusCode::CONFLICT),
        Rejection::InvalidRestore(m) => S3Error::with_message(S3ErrorCode::InvalidArgument, m),
        Rejection::InvalidLifecycle { code, message } => {
            let code = match code {
                "MalformedXML" => S3ErrorCode::MalformedXML,
                "InvalidRequest" => S3ErrorCode::InvalidRequest,
                _ => S3ErrorCode::InvalidArgument,
            };
            S3Error::with_message(code, message).with_status(http::StatusCode::BAD_REQUEST)
        }
        Rejection::InvalidAcl { code, message } => {
            let code = match code {
                "MalformedACLError" => S3ErrorCode::MalformedACLError,
                _ => S3ErrorCode::InvalidArgument,
            };
            S3Error::with_message(code, message).with_status(http::StatusCode::BAD_REQUEST)
        }
    }
}

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
        MetaError::ObjectLockNotEnabled => s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ),
        MetaError::RetentionDenied { compliance } => S3Error::with_message(
            S3ErrorCode::AccessDenied,
            if compliance {
                "Access Denied because object protected by object lock (COMPLIANCE mode can only be extended)."
            } else {
                "Access Denied because object protected by object lock (GOVERNANCE requires x-amz-bypass-governance-retention)."
            },
        ),
        MetaError::InvalidRetention(m) => S3Error::with_message(S3ErrorCode::InvalidArgument, m),
        MetaError::InvalidRetentionPeriod(m) => {
            S3Error::with_message(S3ErrorCode::Custom("InvalidRetentionPeriod".into()), m)
                .with_status(http::StatusCode::BAD_REQUEST)
        }
        // Like an explicit deny: the bucket is being destroyed or its account is closing.
        MetaError::BucketClosing => S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "Access Denied: the bucket is read-only while it is being destroyed or its account is closing.",
        ),
        // Handlers that can meet a delete marker map it themselves (MethodNotAllowed + headers).
        MetaError::IsDeleteMarker { .. } => S3Error::with_message(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )
        .with_status(http::StatusCode::METHOD_NOT_ALLOWED),
        e @ (MetaError::Corrupt(_)
        | MetaError::Db(_)
        | MetaError::WriteAborted
        | MetaError::Stale
        | MetaError::InstanceExpired(_)
        | MetaError::Invalid(_)
        | MetaError::UnsupportedFormat(_)) => {
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

trait WithStatus {
    fn with_status(self, s: http::StatusCode) -> Self;
}

impl WithStatus for S3Error {
    fn with_status(mut self, s: http::StatusCode) -> Self {
        self.set_status_code(s);
        self
    }
}
