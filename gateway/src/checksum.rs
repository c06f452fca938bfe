//! Object checksums at the S3 edge: the `x-amz-checksum-*` fields of requests and responses,
//! and the trailing checksum of an aws-chunked upload. Computing them is the engine's job
//! (`strata_engine::checksum`).

use std::sync::Arc;

use s3s::dto::Checksum;
use strata_engine::Rejection;
use strata_engine::checksum::ALGORITHMS;
use strata_engine::write::LateChecksum;

use crate::framing::ChunkedFraming;

/// The checksum (algorithm, base64 value) a client sent as `x-amz-checksum-*` headers, if any.
pub fn declared(c: &Checksum) -> Option<(String, String)> {
    let pairs = [
        ("CRC32", &c.checksum_crc32),
        ("CRC32C", &c.checksum_crc32c),
        ("CRC64NVME", &c.checksum_crc64nvme),
        ("SHA1", &c.checksum_sha1),
        ("SHA256", &c.checksum_sha256),
    ];
    pairs
        .into_iter()
        .find_map(|(a, v)| v.as_ref().map(|v| (a.to_string(), v.clone())))
}

/// The algorithm an `x-amz-trailer: x-amz-checksum-<alg>` header announces, if any.
pub fn announced_trailer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .map(|a| a.to_ascii_uppercase())
        })
}

/// What the engine checks once an upload's body has ended: an aws-chunked body must have ended
/// with its final zero-length chunk, and if the client announced a trailing checksum
/// (`x-amz-trailer`), it must have arrived and be of that algorithm, as S3 requires.
pub fn late_checksum(
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    trailers: Option<s3s::TrailingHeaders>,
) -> Option<LateChecksum> {
    let announced = announced_trailer(headers);
    let framing = extensions.get::<Arc<ChunkedFraming>>().cloned();
    if announced.is_none() && trailers.is_none() && framing.is_none() {
        return None;
    }
    Some(Box::new(move || {
        if framing.as_ref().is_some_and(|f| !f.complete()) {
            return Err(Rejection::IncompleteBody);
        }
        let sent = trailers
            .as_ref()
            .and_then(|t| t.read(from_trailers))
            .flatten();
        match (announced, sent) {
            (Some(a), Some((b, v))) if a == b => Ok(Some((b, v))),
            (Some(_), _) => Err(Rejection::TrailerMismatch),
            (None, sent) => Ok(sent),
        }
    }))
}

/// The declared checksum from a trailer header map (`x-amz-checksum-<alg>`).
pub fn from_trailers(h: &http::HeaderMap) -> Option<(String, String)> {
    ALGORITHMS.iter().find_map(|a| {
        let name = format!("x-amz-checksum-{}", a.to_ascii_lowercase());
        h.get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| (a.to_string(), v.trim().to_string()))
    })
}

/// Fills the response checksum fields from a stored (algorithm, value).
pub fn to_dto(stored: &Option<(String, String)>, checksum_type: &Option<String>) -> Checksum {
    let mut c = Checksum::default();
    if let Some((alg, val)) = stored {
        let v = Some(val.clone());
        match alg.as_str() {
            "CRC32" => c.checksum_crc32 = v,
            "CRC32C" => c.checksum_crc32c = v,
            "CRC64NVME" => c.checksum_crc64nvme = v,
            "SHA1" => c.checksum_sha1 = v,
            "SHA256" => c.checksum_sha256 = v,
            _ => {}
        }
        c.checksum_type = checksum_type.clone().map(s3s::dto::ChecksumType::from);
    }
    c
}

/// Copies the checksum fields of a [`Checksum`] onto any S3 output that has the same field names
/// (PutObjectOutput, GetObjectOutput, CopyObjectResult, ...).
#[macro_export]
macro_rules! fill_checksums {
    ($out:expr, $c:expr) => {{
        let c: s3s::dto::Checksum = $c;
        $out.checksum_crc32 = c.checksum_crc32;
        $out.checksum_crc32c = c.checksum_crc32c;
        $out.checksum_crc64nvme = c.checksum_crc64nvme;
        $out.checksum_sha1 = c.checksum_sha1;
        $out.checksum_sha256 = c.checksum_sha256;
        $out.checksum_type = c.checksum_type;
    }};
}

/// The checksum a request declared in its five `x-amz-checksum-*` fields (any input struct that
/// has them: PutObjectInput, UploadPartInput, CompleteMultipartUploadInput, CompletedPart).
#[macro_export]
macro_rules! declared_checksum {
    ($input:expr) => {
        $crate::checksum::declared(&s3s::dto::Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            checksum_type: None,
        })
    };
}
