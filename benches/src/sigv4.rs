//! SigV4 for S3: header signing through `aws-sigv4`, and the aws-chunked streaming framing
//! (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) with its chained per-chunk signatures.

use anyhow::{Context, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};
use std::time::SystemTime;
use time::OffsetDateTime;
use time::macros::format_description;

pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const SERVICE: &str = "s3";

/// What goes into `x-amz-content-sha256`.
#[derive(Clone, Debug)]
pub enum BodyHash {
    /// SHA-256 of the body, lower-case hex.
    Sha256(String),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: the body is aws-chunked and each chunk is signed.
    Streaming,
}

pub struct Signer {
    identity: Identity,
    secret_key: String,
    region: String,
}

/// Headers to add to a request, and the signature (the seed signature of a streaming upload).
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub signature: String,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        let credentials = Credentials::new(access_key, secret_key, None, None, "strata-bench");
        Signer {
            identity: credentials.into(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
        }
    }

    /// Signs a request given as method, absolute URL (path and query already percent-encoded the
    /// way they go on the wire) and the headers that are to be signed, `host` included.
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &BodyHash,
        time: SystemTime,
    ) -> Result<Signed> {
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent: no second encoding, no dot-segment normalisation.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(SERVICE)
            .time(time)
            .settings(settings)
            .build()
            .context("SigV4 signing parameters")?
            .into();
        let signable_body = match body {
            BodyHash::Sha256(hash) => SignableBody::Precomputed(hash.clone()),
            BodyHash::Unsigned => SignableBody::UnsignedPayload,
            BodyHash::Streaming => SignableBody::Precomputed(STREAMING_PAYLOAD.to_owned()),
        };
        let request = SignableRequest::new(
            method,
            url,
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            signable_body,
        )
        .context("request cannot be signed")?;
        let (instructions, signature) = sign(request, &params)
            .context("SigV4 signing")?
            .into_parts();
        let (new_headers, _query) = instructions.into_parts();
        Ok(Signed {
            headers: new_headers
                .into_iter()
                .map(|header| (header.name().to_owned(), header.value().to_owned()))
                .collect(),
            signature,
        })
    }

    /// The chunk signer that continues from a streaming upload's seed signature.
    pub fn chunk_signer(&self, time: SystemTime, seed_signature: &str) -> ChunkSigner {
        ChunkSigner::new(&self.secret_key, &self.region, time, seed_signature)
    }
}

/// Signs aws-chunked chunks in order; each signature covers the previous one.
pub struct ChunkSigner {
    signing_key: Vec<u8>,
    amz_date: String,
    scope: String,
    previous_signature: String,
}

impl ChunkSigner {
    pub fn new(secret_key: &str, region: &str, time: SystemTime, seed_signature: &str) -> Self {
        let signing_key = v4::generate_signing_key(secret_key, time, region, SERVICE)
            .as_ref()
            .to_vec();
        let instant = OffsetDateTime::from(time);
        let amz_date = instant
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("a timestamp always formats");
        let scope = format!("{}/{region}/{SERVICE}/aws4_request", &amz_date[..8]);
        ChunkSigner {
            signing_key,
            amz_date,
            scope,
            previous_signature: seed_signature.to_owned(),
        }
    }

    /// Signature of the next chunk (the empty final chunk included).
    pub fn sign(&mut self, chunk: &[u8]) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous_signature,
            hex::encode(Sha256::digest(chunk)),
        );
        let signature = v4::calculate_signature(&self.signing_key, string_to_sign.as_bytes());
        self.previous_signature.clone_from(&signature);
        signature
    }

    /// The line that opens a chunk: `hex(len);chunk-signature=SIG\r\n`.
    pub fn chunk_header(&mut self, chunk: &[u8]) -> String {
        let signature = self.sign(chunk);
        format!("{:x};chunk-signature={signature}\r\n", chunk.len())
    }
}

/// Length on the wire of an aws-chunked body carrying `decoded` bytes in chunks of `chunk_size`
/// (the last data chunk may be shorter; the empty final chunk closes the body).
pub fn aws_chunked_length(decoded: u64, chunk_size: u64) -> u64 {
    const SIGNATURE_PART: u64 = ";chunk-signature=".len() as u64 + 64 + 2;
    let framed = |len: u64| format!("{len:x}").len() as u64 + SIGNATURE_PART + len + 2;
    let full_chunks = decoded / chunk_size;
    let tail = decoded % chunk_size;
    let mut total = full_chunks * framed(chunk_size) + framed(0);
    if tail > 0 {
        total += framed(tail);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // The worked example of the AWS S3 documentation, "Signature Calculations for the
    // Authorization Header: Transferring Payload in Multiple Chunks": 66560 bytes of 'a' in
    // 64 KiB chunks, PUT /examplebucket/chunkObject.txt on 2013-05-24.
    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const SEED_SIGNATURE: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const CHUNK_SIGNATURES: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];

    fn example_time() -> SystemTime {
        // 2013-05-24T00:00:00Z
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn header(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn seed_signature_matches_the_aws_streaming_example() {
        let signer = Signer::new(ACCESS_KEY, SECRET_KEY, "us-east-1");
        let headers = vec![
            header("host", "s3.amazonaws.com"),
            header("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            header("content-encoding", "aws-chunked"),
            header("x-amz-decoded-content-length", "66560"),
            header("content-length", "66824"),
        ];
        let signed = signer
            .sign(
                "PUT",
                "http://s3.amazonaws.com/examplebucket/chunkObject.txt",
                &headers,
                &BodyHash::Streaming,
                example_time(),
            )
            .unwrap();
        assert_eq!(signed.signature, SEED_SIGNATURE);
        let authorization = signed
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.as_str())
            .unwrap();
        assert!(authorization.contains(
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class"
        ), "{authorization}");
        assert!(
            signed
                .headers
                .iter()
                .any(|(name, value)| name == "x-amz-content-sha256" && value == STREAMING_PAYLOAD)
        );
    }

    #[test]
    fn chunk_signatures_match_the_aws_streaming_example() {
        let mut chunk_signer =
            ChunkSigner::new(SECRET_KEY, "us-east-1", example_time(), SEED_SIGNATURE);
        let chunks: [Vec<u8>; 3] = [vec![b'a'; 65536], vec![b'a'; 1024], Vec::new()];
        let mut body = Vec::new();
        for (chunk, expected) in chunks.iter().zip(CHUNK_SIGNATURES) {
            let header = chunk_signer.chunk_header(chunk);
            assert_eq!(
                header,
                format!("{:x};chunk-signature={expected}\r\n", chunk.len())
            );
            body.extend_from_slice(header.as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        // The example's Content-Length.
        assert_eq!(body.len(), 66824);
        assert_eq!(aws_chunked_length(66560, 65536), 66824);
    }

    #[test]
    fn chunk_signatures_depend_on_order_and_content() {
        let mut first = ChunkSigner::new(SECRET_KEY, "us-east-1", example_time(), SEED_SIGNATURE);
        let mut second = ChunkSigner::new(SECRET_KEY, "us-east-1", example_time(), SEED_SIGNATURE);
        assert_eq!(first.sign(b"abc"), second.sign(b"abc"));
        assert_ne!(first.sign(b"abc"), second.sign(b"abd"));
        // Once the chains diverged they stay different even for equal chunks.
        assert_ne!(first.sign(b""), second.sign(b""));
    }

    #[test]
    fn aws_chunked_length_counts_every_frame() {
        fn framed_body(decoded: usize, chunk_size: usize) -> usize {
            let mut signer =
                ChunkSigner::new(SECRET_KEY, "us-east-1", example_time(), SEED_SIGNATURE);
            let data = vec![7u8; decoded];
            let mut total = 0;
            for chunk in data.chunks(chunk_size).chain(std::iter::once(&[][..])) {
                total += signer.chunk_header(chunk).len() + chunk.len() + 2;
            }
            total
        }
        for (decoded, chunk_size) in [
            (0, 65536),
            (1, 65536),
            (65536, 65536),
            (200_000, 65536),
            (10, 3),
        ] {
            assert_eq!(
                aws_chunked_length(decoded as u64, chunk_size as u64),
                framed_body(decoded, chunk_size) as u64,
                "{decoded} bytes in {chunk_size}-byte chunks"
            );
        }
    }
}
