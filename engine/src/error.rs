//! What can go wrong in the object engine, in the engine's own terms. The S3 gateway maps each
//! variant to an S3 error code and status at its edge (`gateway/src/errors.rs`); other callers
//! (lifecycle, importer, admin) read them directly.

use strata_metadata::MetaError;
use strata_storage_node::NodeError;
use strata_storage_node::keys::KeyError;

/// Why a body or a request's own data was refused (the client's fault, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The body's MD5 differs from the Content-MD5 the client sent.
    #[error("the body does not match its Content-MD5")]
    Md5Mismatch,
    /// The body's checksum differs from the one the client declared (header or trailer).
    #[error("the body does not match its {algorithm} checksum")]
    ChecksumMismatch { algorithm: String },
    /// A checksum algorithm we do not compute.
    #[error("checksum algorithm {0:?} is not supported")]
    UnsupportedChecksum(String),
    /// The client announced a trailing checksum (`x-amz-trailer`) and did not send it, or sent
    /// another algorithm than announced.
    #[error("the announced trailing checksum was missing or of another algorithm")]
    TrailerMismatch,
    /// The body ended before (or went on after) the length the client announced, or its framing
    /// was cut short.
    #[error("the body is shorter or longer than announced")]
    IncompleteBody,
    /// A chunk signature of a streaming body did not verify.
    #[error("a chunk signature does not match")]
    BodySignature,
    /// More bytes than the operation accepts.
    #[error("entity larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// A part listed at completion carries a checksum other than the one stored for it.
    #[error("the checksum of part {0} does not match")]
    PartChecksumMismatch(u32),
    /// The whole-object size a client asserted (e.g. MpuObjectSize) is not the real size.
    #[error("the declared object size does not match")]
    SizeMismatch,
    /// A part ETag that is not an MD5.
    #[error("part ETag is not a valid MD5")]
    BadPartEtag,
    /// FULL_OBJECT checksums need a CRC algorithm.
    #[error("FULL_OBJECT checksums need a CRC algorithm")]
    FullObjectNeedsCrc,
    /// SSE-KMS: no KMS key by this id, ARN or alias.
    #[error("KMS key {0:?} not found")]
    KmsKeyNotFound(String),
    /// SSE-KMS: the key is disabled (writes and reads of its versions are refused).
    #[error("KMS key {0} is disabled")]
    KmsKeyDisabled(String),
    /// SSE-C: the version was written with a customer key and the request carries none.
    #[error("the object is encrypted with a customer key; the request must carry it")]
    SseCustomerKeyRequired,
    /// SSE-C: the request's customer key is not the one the version was written with.
    #[error("the customer key does not match")]
    SseCustomerKeyMismatch,
    /// SSE-C with an archive storage class (GLACIER, DEEP_ARCHIVE): the archive tier repacks
    /// and restores in the background, which needs a key the server does not hold.
    #[error("SSE-C objects cannot be stored in an archive storage class")]
    SseCustomerArchiveClass,
    /// SSE-C headers for a version that was not written with a customer key.
    #[error("the object was not encrypted with a customer key")]
    SseCustomerKeyUnexpected,
    /// The version is in an archive class and not restored: its bytes cannot be read.
    #[error("the object is archived and must be restored first")]
    InvalidObjectState,
    /// RestoreObject while a restore of the version is running.
    #[error("a restore of this object is already in progress")]
    RestoreAlreadyInProgress,
    /// RestoreObject on a version that is not in an archive class.
    #[error("the object is not in an archive storage class")]
    ObjectAlreadyInActiveTier,
    /// A bad RestoreRequest (days, tier).
    #[error("invalid restore request: {0}")]
    InvalidRestore(String),
    /// A lifecycle configuration S3 would refuse: `code` is the S3 error code to answer
    /// (`InvalidArgument`, `MalformedXML`, `InvalidRequest`).
    #[error("invalid lifecycle configuration ({code}): {message}")]
    InvalidLifecycle { code: &'static str, message: String },
    /// An ACL S3 would refuse: `code` is the S3 error code to answer (`MalformedACLError`,
    /// `InvalidArgument`).
    #[error("invalid ACL ({code}): {message}")]
    InvalidAcl { code: &'static str, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// What exists, preconditions, Object Lock: the metadata tier's answer.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The chunk store failed (or is full).
    #[error(transparent)]
    Storage(#[from] NodeError),
    /// The key hierarchy could not unwrap a key (corruption or a foreign key).
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A bug or an impossible state (logged where it is raised).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn internal(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        tracing::error!(error = %msg, "engine internal error");
        EngineError::Internal(msg)
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;
