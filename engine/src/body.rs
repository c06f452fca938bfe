//! Byte streams in and out of the engine, protocol-free. The gateway adapts the S3 request body
//! (and its framing errors) into a [`BodyStream`], and hands a [`ReadStream`] back as the S3
//! response body; the importer and the archive tier use the same types.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

/// Why an incoming body stream failed, as far as the engine needs to know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A per-chunk signature of a streaming upload did not verify.
    #[error("chunk signature mismatch")]
    Signature,
    /// The framing was cut short or malformed.
    #[error("incomplete body")]
    Incomplete,
    /// The connection or the source failed.
    #[error("body failed: {0}")]
    Io(String),
}

/// Bytes of an object being written.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// Bytes of an object being read. Sync because HTTP bodies must be.
pub type ReadStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

/// A read stream as a body stream (copies: the source's bytes feed a new write).
pub fn read_as_body(read: ReadStream) -> BodyStream {
    use futures::StreamExt;
    Box::pin(read.map(|r| r.map_err(|e| BodyError::Io(e.to_string()))))
}

/// An empty body.
pub fn empty_body() -> BodyStream {
    Box::pin(futures::stream::empty())
}
