//! A fuzzing harness for the request parsers the gateway depends on.
//!
//! The SigV4 header/query parser, the aws-chunked decoder (with trailers) and the XML request body
//! parsers live in the `s3s` crate, in private modules. [`FuzzHarness`] drives them the only way a
//! client can: it turns fuzzer bytes into one HTTP request and sends it through the real S3 service
//! built by [`strata_gateway::build_front`], over a real engine (RocksDB metadata store and local
//! chunk store in a temporary directory) with one user and one bucket.
//!
//! This crate is not part of the production build: the `strata` binary does not depend on it, so
//! the harness and its dependencies (arbitrary, tempfile, the SigV4 signer) stay out of it.
//!
//! Input layout (decoded with [`arbitrary::Unstructured`]; short inputs are padded with zeros):
//!
//! - byte 0: the mode, `byte % 3`:
//!   - [`MODE_RAW`]: arbitrary method, URI, headers and body, not correctly signed. Byte 2 picks
//!     a style: plain garbage; garbage spliced into an `Authorization: AWS4-HMAC-SHA256 ...`
//!     header, into presigned-URL query parameters or into a SigV2 `AWS ak:sig` header; or a
//!     correctly signed (header or presigned-query) request whose signature then gets a few
//!     byte edits, so the SigV4 parsers see near-valid input, not only random strings.
//!   - [`MODE_SIGNED_XML`]: byte 1 picks an operation with an XML request body ([`XML_OPS`]),
//!     byte 2 holds flags (bit 0: send a correct `Content-MD5`); the remaining bytes are the body
//!     of a correctly signed request (payload hash = SHA-256 of those bytes).
//!   - [`MODE_AWS_CHUNKED`]: a `PUT` signed with `STREAMING-UNSIGNED-PAYLOAD-TRAILER`. Byte 1
//!     holds flags (which `x-amz-decoded-content-length` to send, whether to send
//!     `x-amz-trailer`), byte 2 picks the trailer name, bytes 3..11 a little-endian `u64` decoded
//!     length (used when the flags ask for an arbitrary one); the rest is the body: chunk framing
//!     and trailers as the fuzzer wrote them.
//! - Bodies are truncated to [`MAX_BODY`] so one run stays fast.
//!
//! The response is ignored: the harness only looks for panics (and, under libFuzzer, for
//! unbounded allocation or time). [`FuzzHarness::head_bucket`] checks that the service still
//! answers a valid request.

use std::sync::Arc;

use arbitrary::Unstructured;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::BodyExt;
use md5::Md5;
use sha2::{Digest, Sha256};
use strata_engine::{Engine, EngineConfig};
use strata_gateway::{Context, GatewayConfig};
use strata_metadata::MetaStore;
use strata_storage_node::{ChunkService, LocalChunkStore, NodeConfig};

/// Mode byte (`data[0] % 3`): unsigned arbitrary request.
pub const MODE_RAW: u8 = 0;
/// Mode byte: correctly signed request with an arbitrary XML body.
pub const MODE_SIGNED_XML: u8 = 1;
/// Mode byte: signed aws-chunked upload with an arbitrary chunked body.
pub const MODE_AWS_CHUNKED: u8 = 2;

/// Largest request body a run sends.
pub const MAX_BODY: usize = 64 * 1024;

/// The bucket the harness creates (object lock enabled, so lock operations get past the checks).
pub const BUCKET: &str = "fuzz";
/// An object the harness creates in [`BUCKET`].
pub const OBJECT: &str = "obj";
const HOST: &str = "localhost";
const REGION: &str = "us-east-1";
const ACCESS_KEY: &str = "FUZZACCESSKEY0000000";
const SECRET_KEY: &str = "fuzz-secret-key-0000000000000000000000000";
const UPLOAD_PLACEHOLDER: &str = "{upload}";

/// Operations with an XML request body, as (name, method, path and query) for [`MODE_SIGNED_XML`];
/// `{upload}` is replaced by the id of a multipart upload the harness started.
pub const XML_OPS: &[(&str, &str, &str)] = &[
    (
        "CompleteMultipartUpload",
        "POST",
        "/fuzz/obj?uploadId={upload}",
    ),
    ("DeleteObjects", "POST", "/fuzz?delete"),
    ("PutObjectTagging", "PUT", "/fuzz/obj?tagging"),
    ("PutBucketVersioning", "PUT", "/fuzz?versioning"),
    ("PutObjectLockConfiguration", "PUT", "/fuzz?object-lock"),
    ("PutObjectRetention", "PUT", "/fuzz/obj?retention"),
    ("PutObjectLegalHold", "PUT", "/fuzz/obj?legal-hold"),
    ("CreateBucket", "PUT", "/fuzz-created"),
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"];
const PATHS: &[&str] = &[
    "/",
    "/fuzz",
    "/fuzz/",
    "/fuzz/obj",
    "/fuzz/obj?uploads",
    "/fuzz?delete",
    "/fuzz/obj?tagging",
    "/fuzz?versioning",
    "/fuzz?object-lock",
    "/fuzz/obj?retention",
    "/fuzz/obj?legal-hold",
    "/fuzz?list-type=2",
    "/fuzz?versions",
    "/fuzz/obj?partNumber=1&uploadId=",
];
const HEADER_NAMES: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "content-type",
    "content-length",
    "content-md5",
    "content-encoding",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-checksum-crc32",
    "x-amz-checksum-sha256",
    "x-amz-copy-source",
    "x-amz-copy-source-range",
    "range",
    "x-amz-meta-a",
    "x-amz-tagging",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-bypass-governance-retention",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "x-amz-bucket-object-lock-enabled",
    "date",
];
const HEADER_VALUES: &[&str] = &[
    "",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "UNSIGNED-PAYLOAD",
    "aws-chunked",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "20250101T000000Z",
    "bytes=0-",
    "x-amz-checksum-crc32",
    "18446744073709551615",
    "-1",
    "true",
];
const TRAILERS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-meta-unknown",
];

/// Owns a runtime, a temporary data directory and a gateway over a real [`Context`]; see the
/// module documentation.
pub struct FuzzHarness {
    rt: tokio::runtime::Runtime,
    front: Arc<strata_gateway::http::Front>,
    identity: Identity,
    upload_id: String,
    // Last: the store files are removed after everything that uses them is dropped.
    _dir: tempfile::TempDir,
}

impl FuzzHarness {
    /// Creates the data directory, the stores, the user, the bucket, one object and one
    /// multipart upload. The master key comes from `STRATA_MASTER_KEY` if set, else a key file in
    /// the temporary directory.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Its own keys, never the environment's.
        let keys = strata_engine::keys::KeyRing::open_files(dir.path())
            .map_err(|e| anyhow::anyhow!("keys: {e}"))?;
        let log = Arc::new(strata_destruction_log::DestructionLog::open(
            &dir.path().join("destruction-log"),
        )?);
        let meta = MetaStore::open(&dir.path().join("meta"))
            .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
        let store = LocalChunkStore::open(NodeConfig::under(&dir.path().join("disks"), 6))?;
        let chunks: Arc<dyn ChunkService> = Arc::new(store);
        let now = strata_engine::now_ms();
        let disks: Vec<String> = (0..6).map(|i| format!("disk{i}")).collect();
        let layout = meta
            .ensure_current_layout(&disks, 4, 2, 64 * 1024, now)
            .map_err(|e| anyhow::anyhow!("layout: {e}"))?;
        let instance = strata_engine::instance::new_instance_id();
        meta.register_instance(&instance, strata_engine::instance::LEASE_MS, now)
            .map_err(|e| anyhow::anyhow!("instance: {e}"))?;
        let engine = Engine::new(
            meta,
            chunks,
            keys,
            log,
            EngineConfig::default(),
            layout,
            instance,
        )
        .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
        rt.block_on(engine.create_user(
            "admin",
            true,
            Some((ACCESS_KEY.to_string(), SECRET_KEY.to_string())),
        ))
        .map_err(|e| anyhow::anyhow!("user: {e}"))?;
        let ctx = Arc::new(Context {
            engine,
            cfg: GatewayConfig {
                region: REGION.to_string(),
                ..Default::default()
            },
        });
        let front = rt.block_on(async { strata_gateway::build_front(ctx, None) });
        let identity: Identity =
            Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "strata-fuzz").into();
        let mut h = FuzzHarness {
            rt,
            front,
            identity,
            upload_id: String::new(),
            _dir: dir,
        };

        let lock = [("x-amz-bucket-object-lock-enabled", "true")];
        let (status, _) = h.send_signed("PUT", &format!("/{BUCKET}"), &lock, Bytes::new())?;
        anyhow::ensure!(status.is_success(), "create bucket: {status}");
        let (status, _) = h.send_signed(
            "PUT",
            &format!("/{BUCKET}/{OBJECT}"),
            &[],
            Bytes::from_static(b"hello"),
        )?;
        anyhow::ensure!(status.is_success(), "put object: {status}");
        let (status, body) = h.send_signed(
            "POST",
            &format!("/{BUCKET}/{OBJECT}?uploads"),
            &[],
            Bytes::new(),
        )?;
        anyhow::ensure!(status.is_success(), "create multipart upload: {status}");
        let text = String::from_utf8_lossy(&body);
        h.upload_id = text
            .split_once("<UploadId>")
            .and_then(|(_, rest)| rest.split_once("</UploadId>"))
            .map(|(id, _)| id.to_string())
            .ok_or_else(|| anyhow::anyhow!("no UploadId in {text}"))?;
        Ok(h)
    }

    /// The id of the multipart upload the harness started on [`OBJECT`].
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Turns `data` into one request and sends it through the S3 service, ignoring the response.
    pub fn run(&self, data: &[u8]) {
        let _ = self.run_status(data);
    }

    /// Like [`FuzzHarness::run`], but returns the response status (`None` if `data` made no valid
    /// HTTP request or the service returned an error instead of a response), to check that
    /// inputs reach the parsers rather than failing authentication.
    pub fn run_status(&self, data: &[u8]) -> Option<http::StatusCode> {
        let mut u = Unstructured::new(data);
        let mode = u.arbitrary::<u8>().unwrap_or(0) % 3;
        let req = match mode {
            MODE_RAW => self.raw_request(&mut u),
            MODE_SIGNED_XML => self.xml_request(&mut u),
            _ => self.chunked_request(&mut u),
        }?;
        self.rt.block_on(async {
            let resp = self.front.s3.call(req).await.ok()?;
            let status = resp.status();
            // Drain (bounded) so streaming response bodies are exercised too.
            let mut body = resp.into_body();
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > 4 * MAX_BODY {
                    break;
                }
            }
            Some(status)
        })
    }

    /// Sends a signed `HEAD /BUCKET` and returns the status.
    pub fn head_bucket(&self) -> anyhow::Result<http::StatusCode> {
        Ok(self
            .send_signed("HEAD", &format!("/{BUCKET}"), &[], Bytes::new())?
            .0)
    }

    /// Sends a correctly signed request (payload hash = SHA-256 of `body`) and returns the
    /// status and the response body.
    pub fn send_signed(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let hash = hex::encode(Sha256::digest(&body));
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        hs.push(("x-amz-content-sha256".into(), hash.clone()));
        let req = self.signed(method, path_and_query, hs, &hash, body)?;
        self.rt.block_on(async {
            let resp = self
                .front
                .s3
                .call(req)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_bytes();
            Ok((status, bytes))
        })
    }

    /// Builds a request signed with the harness credentials. `headers` must hold every header to
    /// sign except `host`; `payload_hash` is what the signature covers.
    fn signed(
        &self,
        method: &str,
        path_and_query: &str,
        headers: Vec<(String, String)>,
        payload_hash: &str,
        body: Bytes,
    ) -> anyhow::Result<http::Request<s3s::Body>> {
        self.signed_at(method, path_and_query, headers, payload_hash, body, false)
    }

    /// [`FuzzHarness::signed`], with the signature in the headers or (`presign`) in the query.
    fn signed_at(
        &self,
        method: &str,
        path_and_query: &str,
        mut headers: Vec<(String, String)>,
        payload_hash: &str,
        body: Bytes,
        presign: bool,
    ) -> anyhow::Result<http::Request<s3s::Body>> {
        headers.push(("host".into(), HOST.into()));
        let url = format!("http://{HOST}{path_and_query}");
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        if presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(std::time::Duration::from_secs(600));
        }
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(REGION)
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()?
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Precomputed(payload_hash.to_string()),
        )?;
        let (instructions, _sig) = sign(signable, &params)?.into_parts();
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut req = req
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(s3s::Body::from(body))?;
        instructions.apply_to_request_http1x(&mut req);
        Ok(req)
    }

    fn raw_request(&self, u: &mut Unstructured<'_>) -> Option<http::Request<s3s::Body>> {
        let method = pick_or_bytes(u, METHODS, 16);
        let method = http::Method::from_bytes(&method).unwrap_or(http::Method::GET);
        let style = u.arbitrary::<u8>().unwrap_or(0);
        if style % 6 >= 4 {
            return self.mutated_signed_request(u, method, style % 6 == 5);
        }
        let mut uri = pick_or_bytes(u, PATHS, 256);
        if uri.first() != Some(&b'/') {
            uri.insert(0, b'/');
        }
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"host".to_vec(), HOST.into())];
        match style % 6 {
            // Authorization header with garbage in its parts.
            1 => {
                let mut auth = b"AWS4-HMAC-SHA256 Credential=".to_vec();
                auth.extend(short_bytes(u, 128));
                auth.extend(b", SignedHeaders=");
                auth.extend(short_bytes(u, 128));
                auth.extend(b", Signature=");
                auth.extend(short_bytes(u, 80));
                headers.push((b"authorization".to_vec(), auth));
                headers.push((b"x-amz-date".to_vec(), short_bytes(u, 32)));
                headers.push((
                    b"x-amz-content-sha256".to_vec(),
                    pick_or_bytes(u, HEADER_VALUES, 80),
                ));
            }
            // Presigned URL with garbage query parameters.
            2 => {
                let mut sep = if uri.contains(&b'?') { b'&' } else { b'?' };
                for k in [
                    "X-Amz-Algorithm",
                    "X-Amz-Credential",
                    "X-Amz-Date",
                    "X-Amz-Expires",
                    "X-Amz-SignedHeaders",
                    "X-Amz-Signature",
                ] {
                    uri.push(sep);
                    sep = b'&';
                    uri.extend(k.as_bytes());
                    uri.push(b'=');
                    uri.extend(short_bytes(u, 96));
                }
            }
            // AWS signature version 2 header.
            3 => {
                let mut auth = b"AWS ".to_vec();
                auth.extend(short_bytes(u, 40));
                auth.push(b':');
                auth.extend(short_bytes(u, 40));
                headers.push((b"authorization".to_vec(), auth));
            }
            _ => {}
        }
        let extra = u.int_in_range(0..=12u8).unwrap_or(0);
        for _ in 0..extra {
            let name = pick_or_bytes(u, HEADER_NAMES, 40);
            let value = pick_or_bytes(u, HEADER_VALUES, 200);
            headers.push((name, value));
        }
        let body = rest(u);
        let mut req = http::Request::new(s3s::Body::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = http::Uri::try_from(uri_escape(&uri)).ok()?;
        for (k, v) in headers {
            // Invalid names or values are skipped: hyper would have rejected them anyway.
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(&k),
                http::HeaderValue::from_bytes(&v),
            ) {
                req.headers_mut().append(k, v);
            }
        }
        Some(req)
    }

    /// A correctly signed (or presigned) request whose `Authorization` header / query string then
    /// gets a few fuzzer-chosen byte edits: reaches the SigV4 parsers past their first checks.
    fn mutated_signed_request(
        &self,
        u: &mut Unstructured<'_>,
        method: http::Method,
        presign: bool,
    ) -> Option<http::Request<s3s::Body>> {
        let mut path = String::from_utf8_lossy(&pick_or_bytes(u, PATHS, 0)).into_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let edits: Vec<(u16, u8)> = (0..u.int_in_range(0..=4u8).unwrap_or(0))
            .map(|_| {
                (
                    u.arbitrary::<u16>().unwrap_or(0),
                    u.arbitrary::<u8>().unwrap_or(0),
                )
            })
            .collect();
        let body = rest(u);
        let headers = vec![(
            "x-amz-content-sha256".to_string(),
            "UNSIGNED-PAYLOAD".to_string(),
        )];
        let mut req = self
            .signed_at(
                method.as_str(),
                &path,
                headers,
                "UNSIGNED-PAYLOAD",
                body,
                presign,
            )
            .ok()?;
        let apply = |mut v: Vec<u8>| {
            for &(pos, byte) in &edits {
                if v.is_empty() {
                    break;
                }
                let i = pos as usize % v.len();
                match byte % 4 {
                    0 => {
                        v.remove(i);
                    }
                    1 => v.insert(i, byte),
                    2 => v.truncate(i),
                    _ => v[i] = byte,
                }
            }
            v
        };
        if presign {
            let uri = apply(req.uri().to_string().into_bytes());
            *req.uri_mut() = http::Uri::try_from(uri_escape(&uri)).ok()?;
        } else if let Some(auth) = req.headers().get(http::header::AUTHORIZATION) {
            let auth = apply(auth.as_bytes().to_vec());
            if let Ok(v) = http::HeaderValue::from_bytes(&auth) {
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
        }
        Some(req)
    }

    fn xml_request(&self, u: &mut Unstructured<'_>) -> Option<http::Request<s3s::Body>> {
        let op = u.arbitrary::<u8>().unwrap_or(0) as usize % XML_OPS.len();
        let flags = u.arbitrary::<u8>().unwrap_or(0);
        let (_, method, path) = XML_OPS[op];
        let path = path.replace(UPLOAD_PLACEHOLDER, &self.upload_id);
        let body = rest(u);
        let hash = hex::encode(Sha256::digest(&body));
        let mut headers = vec![
            ("x-amz-content-sha256".to_string(), hash.clone()),
            ("content-type".to_string(), "application/xml".to_string()),
        ];
        if flags & 1 != 0 {
            use base64::Engine as _;
            let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
            headers.push(("content-md5".into(), md5));
        }
        self.signed(method, &path, headers, &hash, body).ok()
    }

    fn chunked_request(&self, u: &mut Unstructured<'_>) -> Option<http::Request<s3s::Body>> {
        let flags = u.arbitrary::<u8>().unwrap_or(0);
        let trailer = TRAILERS[u.arbitrary::<u8>().unwrap_or(0) as usize % TRAILERS.len()];
        let claimed = u.arbitrary::<u64>().unwrap_or(0);
        let body = rest(u);
        let decoded_len = match flags & 3 {
            // A plausible value: the body minus typical framing.
            0 => body.len().saturating_sub(64) as u64,
            1 => claimed,
            2 => claimed % (2 * MAX_BODY as u64),
            _ => body.len() as u64,
        };
        let mut headers = vec![
            (
                "x-amz-content-sha256".to_string(),
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_string(),
            ),
            ("content-encoding".to_string(), "aws-chunked".to_string()),
        ];
        if flags & 4 == 0 {
            headers.push((
                "x-amz-decoded-content-length".into(),
                decoded_len.to_string(),
            ));
        }
        if flags & 8 == 0 {
            headers.push(("x-amz-trailer".into(), trailer.to_string()));
        }
        let path = if flags & 16 == 0 {
            format!("/{BUCKET}/chunked")
        } else {
            format!(
                "/{BUCKET}/{OBJECT}?partNumber=1&uploadId={}",
                self.upload_id
            )
        };
        self.signed(
            "PUT",
            &path,
            headers,
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            body,
        )
        .ok()
    }
}

/// Either one of `choices` or at most `max` arbitrary bytes.
fn pick_or_bytes(u: &mut Unstructured<'_>, choices: &[&str], max: usize) -> Vec<u8> {
    let sel = u.arbitrary::<u8>().unwrap_or(0) as usize;
    if sel < 224 {
        choices[sel % choices.len()].as_bytes().to_vec()
    } else {
        short_bytes(u, max)
    }
}

/// At most `max` arbitrary bytes.
fn short_bytes(u: &mut Unstructured<'_>, max: usize) -> Vec<u8> {
    let len = u.int_in_range(0..=max).unwrap_or(0);
    u.bytes(len.min(u.len())).unwrap_or_default().to_vec()
}

/// Percent-encodes the bytes a request target may not contain, so garbage still makes a URI
/// (as it would after a client's encoding); `%`, `?`, `&` and `=` are kept to let the fuzzer
/// write its own escapes and query strings.
fn uri_escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for &b in raw {
        if b.is_ascii_alphanumeric() || b"/?&=%-._~!$'()*+,;:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The remaining bytes, at most [`MAX_BODY`].
fn rest(u: &mut Unstructured<'_>) -> Bytes {
    let n = u.len().min(MAX_BODY);
    Bytes::copy_from_slice(u.bytes(n).unwrap_or_default())
}
