//! Object checksums (`x-amz-checksum-*`): computed while bytes stream through, compared with what
//! the client declared in a header or an aws-chunked trailer, stored with the version.

use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::Checksum;
use s3s::{S3Error, S3ErrorCode, S3Result};

use base64::Engine as _;

pub const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

pub enum Hasher {
    Crc32(Crc32),
    Crc32c(Crc32c),
    Crc64(Crc64Nvme),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    pub fn new(algorithm: &str) -> S3Result<Self> {
        Ok(match algorithm.to_ascii_uppercase().as_str() {
            "CRC32" => Hasher::Crc32(Crc32::new()),
            "CRC32C" => Hasher::Crc32c(Crc32c::new()),
            "CRC64NVME" => Hasher::Crc64(Crc64Nvme::new()),
            "SHA1" => Hasher::Sha1(Sha1::new()),
            "SHA256" => Hasher::Sha256(Sha256::new()),
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!("Checksum algorithm {other:?} is not supported"),
                ));
            }
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(h) => h.update(data),
            Hasher::Crc64(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// Base64 of the digest, as S3 headers carry it.
    pub fn finalize(self) -> String {
        let b = base64::engine::general_purpose::STANDARD;
        match self {
            Hasher::Crc32(h) => b.encode(h.finalize()),
            Hasher::Crc32c(h) => b.encode(h.finalize()),
            Hasher::Crc64(h) => b.encode(h.finalize()),
            Hasher::Sha1(h) => b.encode(h.finalize()),
            Hasher::Sha256(h) => b.encode(h.finalize()),
        }
    }
}

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

/// Decodes a base64 digest, mapping bad input to InvalidDigest / InvalidRequest.
pub fn decode_b64(v: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
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
