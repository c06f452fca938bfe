//! A small S3 client: hyper 1 over plain HTTP/1.1, path-style addressing, SigV4 on every request,
//! object bodies streamed from the payload generator and GET bodies hashed as they arrive.

use crate::payload::{BLOCK, Payload, Pieces};
use crate::sigv4::{BodyHash, ChunkSigner, Signer, aws_chunked_length};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// How the request body is covered by the signature (`--payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadMode {
    /// `x-amz-content-sha256` is the SHA-256 of the body, computed before sending.
    Signed,
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// aws-chunked body with a signature per 64 KiB chunk.
    Streaming,
}

/// A failed operation, classified the way the report counts it.
#[derive(Debug, Clone)]
pub struct S3Error {
    /// The S3 error code (`NoSuchKey`, `SignatureDoesNotMatch`), or one of ours:
    /// `HTTP<status>` when the server sent no code, `Transport`, `Timeout`, `BodyMismatch`,
    /// `BadResponse`.
    pub code: String,
    pub detail: String,
}

impl S3Error {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        S3Error {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for S3Error {}

type RequestBody = UnsyncBoxBody<Bytes, Infallible>;

/// What a request carries. Lives for one request only, so the inline BLAKE3 state is fine.
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    Empty,
    Bytes(Bytes),
    /// A byte range of a generated object; `sha256` is given in signed-payload mode.
    Payload {
        payload: Payload,
        offset: u64,
        len: u64,
        sha256: Option<String>,
        hasher: blake3::Hasher,
        hashed: oneshot::Sender<blake3::Hasher>,
    },
}

pub struct S3Client {
    http: Client<HttpConnector, RequestBody>,
    base_url: String,
    host: String,
    signer: Signer,
    pub mode: PayloadMode,
}

impl S3Client {
    /// `base_url` is `http://HOST:PORT` with no path.
    pub fn new(
        base_url: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        mode: PayloadMode,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let uri: http::Uri = base_url.parse()?;
        let host = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {base_url} has no host"))?
            .to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(S3Client {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            host,
            signer: Signer::new(access_key, secret_key, region),
            mode,
        })
    }

    /// Sends one signed request; a non-2xx answer becomes an [`S3Error`] with the S3 code.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: Vec<(String, String)>,
        outgoing: Outgoing,
    ) -> Result<Response<Incoming>, S3Error> {
        let mut url = format!("{}{}", self.base_url, path);
        if !query.is_empty() {
            let pairs: Vec<String> = query
                .iter()
                .map(|(name, value)| {
                    if value.is_empty() {
                        encode(name, false)
                    } else {
                        format!("{}={}", encode(name, false), encode(value, false))
                    }
                })
                .collect();
            url.push('?');
            url.push_str(&pairs.join("&"));
        }
        let mut signed_headers = headers;
        signed_headers.push(("host".to_owned(), self.host.clone()));
        let now = SystemTime::now();
        let (body_hash, content_length) = match &outgoing {
            Outgoing::Empty => (BodyHash::Sha256(sha256_hex(b"")), 0),
            Outgoing::Bytes(bytes) => (BodyHash::Sha256(sha256_hex(bytes)), bytes.len() as u64),
            Outgoing::Payload { len, sha256, .. } => match (self.mode, sha256) {
                (PayloadMode::Signed, Some(hash)) => (BodyHash::Sha256(hash.clone()), *len),
                (PayloadMode::Signed, None) => {
                    return Err(S3Error::new("Client", "signed payload without its hash"));
                }
                (PayloadMode::Unsigned, _) => (BodyHash::Unsigned, *len),
                (PayloadMode::Streaming, _) => {
                    signed_headers.push(("content-encoding".to_owned(), "aws-chunked".to_owned()));
                    signed_headers
                        .push(("x-amz-decoded-content-length".to_owned(), len.to_string()));
                    (BodyHash::Streaming, aws_chunked_length(*len, BLOCK))
                }
            },
        };
        if method == Method::PUT || method == Method::POST || content_length > 0 {
            signed_headers.push(("content-length".to_owned(), content_length.to_string()));
        }
        let signed = self
            .signer
            .sign(method.as_str(), &url, &signed_headers, &body_hash, now)
            .map_err(|error| S3Error::new("Client", format!("{error:#}")))?;
        let body: RequestBody = match outgoing {
            Outgoing::Empty => http_body_util::Empty::new().boxed_unsync(),
            Outgoing::Bytes(bytes) => http_body_util::Full::new(bytes).boxed_unsync(),
            Outgoing::Payload {
                payload,
                offset,
                len,
                hasher,
                hashed,
                ..
            } => {
                let chunk_signer = matches!(body_hash, BodyHash::Streaming)
                    .then(|| self.signer.chunk_signer(now, &signed.signature));
                GeneratedBody::new(
                    payload.pieces(offset, len),
                    chunk_signer,
                    hasher,
                    hashed,
                    content_length,
                )
                .boxed_unsync()
            }
        };
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in signed_headers.iter().chain(signed.headers.iter()) {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(body)
            .map_err(|error| S3Error::new("Client", error.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|error| S3Error::new("Transport", format!("{error:#}")))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_from_response(response).await)
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<bool, S3Error> {
        let path = format!("/{}", encode(bucket, true));
        match self
            .send(Method::PUT, &path, &[], Vec::new(), Outgoing::Empty)
            .await
        {
            Ok(response) => {
                drain(response).await?;
                Ok(true)
            }
            Err(error) if error.code == "BucketAlreadyOwnedByYou" => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let path = format!("/{}", encode(bucket, true));
        let response = self
            .send(Method::DELETE, &path, &[], Vec::new(), Outgoing::Empty)
            .await?;
        drain(response).await.map(|_| ())
    }

    /// PUT of a whole object; returns the BLAKE3 digest of the bytes sent.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        payload: &Payload,
        sha256: Option<String>,
    ) -> Result<[u8; 32], S3Error> {
        let (hashed, hash_rx) = oneshot::channel();
        let outgoing = Outgoing::Payload {
            payload: payload.clone(),
            offset: 0,
            len: payload.size(),
            sha256,
            hasher: blake3::Hasher::new(),
            hashed,
        };
        let response = self
            .send(
                Method::PUT,
                &object_path(bucket, key),
                &[],
                Vec::new(),
                outgoing,
            )
            .await?;
        drain(response).await?;
        let hasher = hash_rx
            .await
            .map_err(|_| S3Error::new("Client", "the request body was not sent in full"))?;
        Ok(*hasher.finalize().as_bytes())
    }

    /// GET of a whole object, hashed as it streams in: (length, BLAKE3).
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<(u64, [u8; 32]), S3Error> {
        let response = self
            .send(
                Method::GET,
                &object_path(bucket, key),
                &[],
                Vec::new(),
                Outgoing::Empty,
            )
            .await?;
        let mut body = response.into_body();
        let mut hasher = blake3::Hasher::new();
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|error| S3Error::new("Transport", format!("reading body: {error}")))?;
            if let Some(data) = frame.data_ref() {
                length += data.len() as u64;
                hasher.update(data);
            }
        }
        Ok((length, *hasher.finalize().as_bytes()))
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let response = self
            .send(
                Method::DELETE,
                &object_path(bucket, key),
                &[],
                Vec::new(),
                Outgoing::Empty,
            )
            .await?;
        drain(response).await.map(|_| ())
    }

    /// One ListObjectsV2 page.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: u32,
        token: Option<&str>,
    ) -> Result<ListPage, S3Error> {
        let max_keys = max_keys.to_string();
        let mut query = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("max-keys", max_keys.as_str()),
        ];
        if let Some(token) = token {
            query.push(("continuation-token", token));
        }
        query.sort();
        let path = format!("/{}", encode(bucket, true));
        let response = self
            .send(Method::GET, &path, &query, Vec::new(), Outgoing::Empty)
            .await?;
        let body = read_all(response, usize::MAX).await?;
        let parsed: ListBucketResult = parse_xml(&body)?;
        let next = if parsed.is_truncated {
            Some(parsed.next_continuation_token.ok_or_else(|| {
                S3Error::new(
                    "BadResponse",
                    "truncated listing without NextContinuationToken",
                )
            })?)
        } else {
            None
        };
        Ok(ListPage {
            keys: parsed.contents.into_iter().map(|entry| entry.key).collect(),
            next,
            body_bytes: body.len() as u64,
        })
    }

    pub async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String, S3Error> {
        let response = self
            .send(
                Method::POST,
                &object_path(bucket, key),
                &[("uploads", "")],
                Vec::new(),
                Outgoing::Empty,
            )
            .await?;
        let body = read_all(response, 1 << 20).await?;
        let parsed: InitiateResult = parse_xml(&body)?;
        Ok(parsed.upload_id)
    }

    /// Uploads one part; returns its ETag and the hasher carried on over the part's bytes.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        payload: &Payload,
        offset: u64,
        len: u64,
        sha256: Option<String>,
        hasher: blake3::Hasher,
    ) -> Result<(String, blake3::Hasher), S3Error> {
        let (hashed, hash_rx) = oneshot::channel();
        let part_number = part_number.to_string();
        let query = [
            ("partNumber", part_number.as_str()),
            ("uploadId", upload_id),
        ];
        let outgoing = Outgoing::Payload {
            payload: payload.clone(),
            offset,
            len,
            sha256,
            hasher,
            hashed,
        };
        let response = self
            .send(
                Method::PUT,
                &object_path(bucket, key),
                &query,
                Vec::new(),
                outgoing,
            )
            .await?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| S3Error::new("BadResponse", "UploadPart answer has no ETag"))?;
        drain(response).await?;
        let hasher = hash_rx
            .await
            .map_err(|_| S3Error::new("Client", "the part body was not sent in full"))?;
        Ok((etag, hasher))
    }

    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), S3Error> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (index, etag) in etags.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                index + 1,
                xml_escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let response = self
            .send(
                Method::POST,
                &object_path(bucket, key),
                &[("uploadId", upload_id)],
                Vec::new(),
                Outgoing::Bytes(Bytes::from(xml)),
            )
            .await?;
        // S3 may answer 200 and still fail: the error then comes in the body.
        let body = read_all(response, 1 << 20).await?;
        if let Some(code) = error_code(&body) {
            return Err(S3Error::new(code, "CompleteMultipartUpload failed"));
        }
        Ok(())
    }

    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        let response = self
            .send(
                Method::DELETE,
                &object_path(bucket, key),
                &[("uploadId", upload_id)],
                Vec::new(),
                Outgoing::Empty,
            )
            .await?;
        drain(response).await.map(|_| ())
    }
}

pub struct ListPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
    pub body_bytes: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<ListEntry>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListEntry {
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateResult {
    upload_id: String,
}

fn parse_xml<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, S3Error> {
    let text =
        std::str::from_utf8(body).map_err(|_| S3Error::new("BadResponse", "XML is not UTF-8"))?;
    quick_xml::de::from_str(text)
        .map_err(|error| S3Error::new("BadResponse", format!("XML: {error}")))
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode(bucket, true), encode(key, true))
}

/// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, and `/` stays in paths.
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The `<Code>` of an S3 error document.
pub fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("<Error") {
        return None;
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].trim().to_owned())
}

async fn error_from_response(response: Response<Incoming>) -> S3Error {
    let status = response.status();
    let headers: HeaderMap = response.headers().clone();
    let body = read_all(response, 64 << 10).await.unwrap_or_default();
    let code = error_code(&body).unwrap_or_else(|| format!("HTTP{}", status.as_u16()));
    let request_id = headers
        .get("x-amz-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    let excerpt: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    S3Error::new(
        code,
        format!("status {status}, request id {request_id}: {excerpt}"),
    )
}

async fn read_all(response: Response<Incoming>, limit: usize) -> Result<Vec<u8>, S3Error> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|error| S3Error::new("Transport", format!("reading body: {error}")))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(S3Error::new("BadResponse", "response body too large"));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Reads a response body to its end so the connection goes back to the pool.
async fn drain(response: Response<Incoming>) -> Result<u64, S3Error> {
    let status = response.status();
    let body = read_all(response, 1 << 20).await?;
    if status == StatusCode::OK
        && let Some(code) = error_code(&body)
    {
        return Err(S3Error::new(code, "error document in a 200 answer"));
    }
    Ok(body.len() as u64)
}

/// A request body generated block by block, optionally framed as aws-chunked with chunk
/// signatures, hashing the plain bytes (BLAKE3) on the way out.
struct GeneratedBody {
    pieces: Pieces,
    chunk_signer: Option<ChunkSigner>,
    queued: VecDeque<Bytes>,
    hasher: Option<blake3::Hasher>,
    hashed: Option<oneshot::Sender<blake3::Hasher>>,
    remaining: u64,
}

impl GeneratedBody {
    fn new(
        pieces: Pieces,
        chunk_signer: Option<ChunkSigner>,
        hasher: blake3::Hasher,
        hashed: oneshot::Sender<blake3::Hasher>,
        wire_length: u64,
    ) -> Self {
        let mut body = GeneratedBody {
            pieces,
            chunk_signer,
            queued: VecDeque::new(),
            hasher: Some(hasher),
            hashed: Some(hashed),
            remaining: wire_length,
        };
        body.refill();
        body
    }

    /// Queues the next piece (framed if aws-chunked); hands the hasher back after the last one,
    /// before the last bytes go out, because the client may stop polling at Content-Length.
    fn refill(&mut self) {
        match self.pieces.next() {
            Some(piece) => {
                if let Some(hasher) = self.hasher.as_mut() {
                    hasher.update(&piece);
                }
                match self.chunk_signer.as_mut() {
                    Some(signer) => {
                        self.queued
                            .push_back(Bytes::from(signer.chunk_header(&piece)));
                        self.queued.push_back(piece);
                        self.queued.push_back(Bytes::from_static(b"\r\n"));
                    }
                    None => self.queued.push_back(piece),
                }
                if self.pieces.size_hint().0 == 0 {
                    self.finish();
                }
            }
            None => self.finish(),
        }
    }

    fn finish(&mut self) {
        if let Some(signer) = self.chunk_signer.as_mut() {
            self.queued.push_back(Bytes::from(signer.chunk_header(b"")));
            self.queued.push_back(Bytes::from_static(b"\r\n"));
            self.chunk_signer = None;
        }
        if let (Some(hasher), Some(hashed)) = (self.hasher.take(), self.hashed.take()) {
            // The receiver is gone only when the request was abandoned: nothing to report then.
            let _ = hashed.send(hasher);
        }
    }
}

impl Body for GeneratedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.queued.is_empty() && self.hashed.is_some() {
            self.refill();
        }
        match self.queued.pop_front() {
            Some(bytes) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_queries_are_encoded_for_sigv4() {
        assert_eq!(encode("dir/a b+c.txt", true), "dir/a%20b%2Bc.txt");
        assert_eq!(encode("dir/a", false), "dir%2Fa");
        assert_eq!(encode("~-_.AZaz09", false), "~-_.AZaz09");
        assert_eq!(encode("é", true), "%C3%A9");
    }

    #[test]
    fn error_codes_come_from_the_error_document() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("NoSuchKey"));
        assert_eq!(error_code(b"<CompleteMultipartUploadResult/>"), None);
    }

    #[test]
    fn list_results_parse() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/1</Key><Size>4</Size></Contents><Contents><Key>p/2</Key><Size>4</Size></Contents>
<NextContinuationToken>abc==</NextContinuationToken></ListBucketResult>"#;
        let parsed: ListBucketResult = parse_xml(xml.as_bytes()).unwrap();
        let keys: Vec<&str> = parsed
            .contents
            .iter()
            .map(|entry| entry.key.as_str())
            .collect();
        assert_eq!(keys, ["p/1", "p/2"]);
        assert!(parsed.is_truncated);
        assert_eq!(parsed.next_continuation_token.as_deref(), Some("abc=="));
        let empty: ListBucketResult =
            parse_xml(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
                .unwrap();
        assert!(empty.contents.is_empty() && !empty.is_truncated);
    }

    #[tokio::test]
    async fn generated_body_frames_aws_chunked_and_reports_the_digest() {
        let payload = Payload::new(3, "k", BLOCK + 10);
        let signer = ChunkSigner::new("secret", "us-east-1", SystemTime::now(), &"0".repeat(64));
        let (hashed, hash_rx) = oneshot::channel();
        let wire = aws_chunked_length(payload.size(), BLOCK);
        let body = GeneratedBody::new(
            payload.pieces(0, payload.size()),
            Some(signer),
            blake3::Hasher::new(),
            hashed,
            wire,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len() as u64, wire);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("10000;chunk-signature="));
        assert!(text.contains("\r\na;chunk-signature="));
        assert!(text.ends_with("\r\n\r\n") && text.contains("\r\n0;chunk-signature="));
        assert_eq!(
            *hash_rx.await.unwrap().finalize().as_bytes(),
            payload.blake3()
        );
    }
}
