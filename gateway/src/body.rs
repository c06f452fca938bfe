//! Bodies across the S3 edge: the s3s request body becomes the engine's protocol-free
//! [`BodyStream`] (with its framing errors classified), and the engine's [`ReadStream`] becomes
//! the response body.

use futures::StreamExt;
use s3s::dto::StreamingBlob;
use strata_engine::{BodyError, BodyStream, ReadStream};

fn classify(e: &s3s::StdError) -> BodyError {
    // s3s reports aws-chunked failures as AwsChunkedStreamError; the names are stable.
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        BodyError::Signature
    } else if text.contains("Incomplete") || text.contains("FormatError") {
        BodyError::Incomplete
    } else {
        BodyError::Io(text.chars().take(200).collect())
    }
}

pub fn request_body(body: Option<StreamingBlob>) -> BodyStream {
    match body {
        None => strata_engine::body::empty_body(),
        Some(b) => Box::pin(b.map(|r| r.map_err(|e| classify(&e)))),
    }
}

pub fn response_body(read: ReadStream) -> StreamingBlob {
    StreamingBlob::wrap(read)
}
