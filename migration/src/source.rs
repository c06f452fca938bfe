//! The client of the SOURCE endpoint: the few S3 calls a migration needs (ListObjectsV2,
//! ListObjectVersions, GetObject whole, by part or by range, HeadObject, GetObjectTagging),
//! path-style, SigV4 on every request, over HTTP/1.1 or HTTPS (rustls; Mozilla's roots plus an
//! optional CA bundle of the job). Bodies are streamed, never buffered whole: memory per copy
//! is one network chunk.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use md5::Digest as _;
use serde::Deserialize;
use zeroize::Zeroizing;

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// A listing or tagging answer is small; a larger one is a broken or hostile source.
const MAX_XML: usize = 8 << 20;
/// Time to the response headers (bodies are bounded by the copy's own progress).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed source call. `permanent`: the source refused (4xx other than throttling), so
/// retrying cannot help.
#[derive(Debug, Clone)]
pub struct SourceError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl SourceError {
    fn transport(message: impl Into<String>) -> Self {
        SourceError {
            status: None,
            code: "Transport".into(),
            message: message.into(),
        }
    }
    pub fn permanent(&self) -> bool {
        matches!(self.status, Some(s) if (400..500).contains(&s) && s != 408 && s != 429)
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "source answered {s} {}: {}", self.code, self.message),
            None => write!(f, "source unreachable: {}", self.message),
        }
    }
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub last_modified: String,
}

/// A page of ListObjectsV2.
#[derive(Debug)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub truncated: bool,
}

/// What GetObject said about the object besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
    pub version_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub storage_class: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub tag_count: u64,
    /// (algorithm as S3 names it, base64 value) of an `x-amz-checksum-*` header.
    pub checksum: Option<(String, String)>,
    pub checksum_type: Option<String>,
}

/// One version or delete marker of a ListObjectVersions answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVersion {
    pub key: String,
    /// `null` for a version written while the source bucket was unversioned.
    pub version_id: String,
    pub delete_marker: bool,
    /// The key's current version (or marker).
    pub latest: bool,
    pub size: u64,
    /// Without quotes (empty for a delete marker).
    pub etag: String,
    pub last_modified: String,
}

/// A page of ListObjectVersions, in the source's order (keys ascending, each key's versions
/// newest first).
#[derive(Debug, Default)]
pub struct VersionPage {
    pub entries: Vec<ListedVersion>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// Which bytes of an object a part read asks for.
#[derive(Clone, Copy, Debug)]
pub enum PartRead {
    /// Part N of a multipart object (`partNumber=N`).
    Number(u32),
    /// The byte range `start..end`.
    Range(u64, u64),
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
/// A request body: empty for reads, an object's bytes for an export's writes.
pub type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn empty() -> UpBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

#[derive(Clone)]
pub struct Source {
    http: Client<Connector, UpBody>,
    base: String,
    host: String,
    identity: Identity,
    region: String,
}

/// S3's URI encoding: unreserved characters as they are, everything else %XX; `/` kept in paths.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An error with its causes (hyper's own text hides them: "client error (Connect)" for a
/// certificate the source is not trusted with).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    // Bounded: a few levels say everything.
    for _ in 0..8 {
        let Some(c) = cur else { break };
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// Reads the object's description from GetObject's response headers.
pub fn object_head(h: &HeaderMap) -> ObjectHead {
    let mut user_metadata = Vec::new();
    let mut checksum = None;
    for (name, value) in h {
        let n = name.as_str();
        if let Some(m) = n.strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            user_metadata.push((m.to_string(), v));
        } else if let Some(alg) = n.strip_prefix("x-amz-checksum-")
            && alg != "type"
            && alg != "mode"
            && let Ok(v) = value.to_str()
        {
            checksum = Some((alg.to_ascii_uppercase(), v.to_string()));
        }
    }
    ObjectHead {
        size: header(h, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        etag: header(h, "etag").map(|e| unquote(&e)).unwrap_or_default(),
        last_modified: header(h, "last-modified").unwrap_or_default(),
        version_id: header(h, "x-amz-version-id").filter(|v| v != "null"),
        content_type: header(h, "content-type"),
        content_encoding: header(h, "content-encoding"),
        content_disposition: header(h, "content-disposition"),
        content_language: header(h, "content-language"),
        cache_control: header(h, "cache-control"),
        expires: header(h, "expires"),
        storage_class: header(h, "x-amz-storage-class"),
        user_metadata,
        tag_count: header(h, "x-amz-tagging-count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        checksum,
        checksum_type: header(h, "x-amz-checksum-type"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListXml {
    #[serde(default)]
    contents: Vec<ContentXml>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentXml {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    last_modified: String,
}

/// Every child of the root as one sequence, in document order: versions and delete markers
/// interleave, and a field between them would otherwise break the sequence.
#[derive(Deserialize)]
struct VersionsXml {
    #[serde(rename = "$value", default)]
    items: Vec<VersionItemXml>,
}

#[derive(Deserialize)]
enum VersionItemXml {
    Version(VersionXml),
    DeleteMarker(VersionXml),
    IsTruncated(String),
    EncodingType(String),
    NextKeyMarker(String),
    NextVersionIdMarker(String),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionXml {
    key: String,
    #[serde(default)]
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    #[serde(default)]
    size: u64,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    last_modified: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaggingXml {
    tag_set: TagSetXml,
}

#[derive(Deserialize, Default)]
struct TagSetXml {
    #[serde(rename = "Tag", default)]
    tags: Vec<TagXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagXml {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Parses a ListObjectsV2 answer (keys URL-decoded when the source says `EncodingType=url`).
pub fn parse_list(xml: &str) -> Result<Page, String> {
    let list: ListXml = quick_xml::de::from_str(xml).map_err(|e| format!("listing: {e}"))?;
    let url = list
        .encoding_type
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("url"));
    let mut objects = Vec::with_capacity(list.contents.len());
    for c in list.contents {
        let key = if url {
            urlencoding::decode(&c.key)
                .map_err(|e| format!("listing: bad key encoding: {e}"))?
                .into_owned()
        } else {
            c.key
        };
        objects.push(Listed {
            key,
            size: c.size,
            etag: unquote(&c.etag),
            last_modified: c.last_modified,
        });
    }
    Ok(Page {
        objects,
        truncated: list.is_truncated,
    })
}

/// Parses a ListObjectVersions answer (keys URL-decoded when the source says `EncodingType=url`).
pub fn parse_versions(xml: &str) -> Result<VersionPage, String> {
    let list: VersionsXml =
        quick_xml::de::from_str(xml).map_err(|e| format!("version listing: {e}"))?;
    let (mut truncated, mut url, mut next_key, mut next_version) = (false, false, None, None);
    for item in &list.items {
        match item {
            VersionItemXml::IsTruncated(t) => truncated = t.trim() == "true",
            VersionItemXml::EncodingType(e) => url = e.trim().eq_ignore_ascii_case("url"),
            VersionItemXml::NextKeyMarker(k) => next_key = Some(k.clone()),
            VersionItemXml::NextVersionIdMarker(v) => next_version = Some(v.clone()),
            _ => {}
        }
    }
    let decode = |k: String| -> Result<String, String> {
        if url {
            urlencoding::decode(&k)
                .map(|k| k.into_owned())
                .map_err(|e| format!("version listing: bad key encoding: {e}"))
        } else {
            Ok(k)
        }
    };
    let mut entries = Vec::with_capacity(list.items.len());
    for item in list.items {
        let (v, delete_marker) = match item {
            VersionItemXml::Version(v) => (v, false),
            VersionItemXml::DeleteMarker(v) => (v, true),
            _ => continue,
        };
        entries.push(ListedVersion {
            key: decode(v.key)?,
            version_id: if v.version_id.is_empty() {
                "null".into()
            } else {
                v.version_id
            },
            delete_marker,
            latest: v.is_latest,
            size: v.size,
            etag: unquote(&v.etag),
            last_modified: v.last_modified,
        });
    }
    Ok(VersionPage {
        entries,
        truncated,
        next_key_marker: next_key.filter(|m| !m.is_empty()).map(decode).transpose()?,
        next_version_id_marker: next_version.filter(|m| !m.is_empty()),
    })
}

/// The TLS settings of a source: Mozilla's roots, plus the certificates of `ca_pem` (a PEM
/// bundle: a private CA, or a server's self-signed certificate).
fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
        let mut n = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("the source CA bundle is not PEM: {e:?}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the source CA bundle has a bad certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("the source CA bundle holds no certificate".into());
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

impl Source {
    /// `endpoint` is `http://HOST:PORT` or `https://HOST[:PORT]` (no path); `ca_pem` adds
    /// trusted certificates for an https source.
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret: Zeroizing<String>,
        ca_pem: Option<&str>,
    ) -> Result<Self, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("bad source endpoint: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || !uri.path().trim_end_matches('/').is_empty()
            || uri.query().is_some()
        {
            return Err(
                "the source endpoint must be http://HOST:PORT or https://HOST[:PORT], without a path"
                    .into(),
            );
        }
        let host = uri
            .authority()
            .ok_or("the source endpoint has no host")?
            .to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_pem)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        let identity =
            Credentials::new(access_key, secret.as_str(), None, None, "strata-migration").into();
        Ok(Source {
            http,
            base: endpoint.trim_end_matches('/').to_string(),
            host,
            identity,
            region: region.to_string(),
        })
    }

    /// Sends a signed request with no body; `path_query` is already encoded for the wire.
    async fn send(
        &self,
        method: Method,
        path_query: &str,
        extra: &[(&str, &str)],
    ) -> Result<http::Response<Incoming>, SourceError> {
        self.send_body(method, path_query, extra, empty(), EMPTY_SHA256)
            .await
    }

    /// Sends a signed request with `body`, whose SHA-256 is `payload` (or `UNSIGNED-PAYLOAD`).
    async fn send_body(
        &self,
        method: Method,
        path_query: &str,
        extra: &[(&str, &str)],
        body: UpBody,
        payload: &str,
    ) -> Result<http::Response<Incoming>, SourceError> {
        let url = format!("{}{}", self.base, path_query);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), payload.into()),
        ];
        for (k, v) in extra {
            headers.push((k.to_string(), v.to_string()));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SourceError::transport(format!("signing: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Precomputed(payload.into()),
        )
        .map_err(|e| SourceError::transport(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| SourceError::transport(format!("signing: {e}")))?
            .into_parts();
        let mut req = http::Request::builder().method(method).uri(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut req = req
            .body(body)
            .map_err(|e| SourceError::transport(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| SourceError::transport("timed out"))?
            .map_err(|e| SourceError::transport(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = read_text(resp).await.unwrap_or_default();
        let err: ErrorXml = quick_xml::de::from_str(&text).unwrap_or_default();
        Err(SourceError {
            status: Some(status.as_u16()),
            code: if err.code.is_empty() {
                format!("HTTP{}", status.as_u16())
            } else {
                err.code
            },
            message: err.message.chars().take(300).collect(),
        })
    }

    /// Up to 1000 keys after `start_after` (all from the start when `None`) under `prefix`.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<Page, SourceError> {
        // Query parameters sorted by name, as SigV4's canonical query needs them anyway.
        let mut q = format!(
            "/{}?encoding-type=url&list-type=2",
            uri_encode(bucket, false)
        );
        q.push_str(&format!("&max-keys={max_keys}"));
        if !prefix.is_empty() {
            q.push_str(&format!("&prefix={}", uri_encode(prefix, false)));
        }
        if let Some(a) = start_after {
            q.push_str(&format!("&start-after={}", uri_encode(a, false)));
        }
        let resp = self.send(Method::GET, &q, &[]).await?;
        let text = read_text(resp).await?;
        parse_list(&text).map_err(|m| SourceError {
            status: Some(200),
            code: "BadResponse".into(),
            message: m,
        })
    }

    /// Up to `max_keys` versions and delete markers after (`key_marker`, `version_id_marker`).
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max_keys: usize,
    ) -> Result<VersionPage, SourceError> {
        let mut q = format!("/{}?encoding-type=url", uri_encode(bucket, false));
        if let Some(k) = key_marker {
            q.push_str(&format!("&key-marker={}", uri_encode(k, false)));
        }
        q.push_str(&format!("&max-keys={max_keys}"));
        if !prefix.is_empty() {
            q.push_str(&format!("&prefix={}", uri_encode(prefix, false)));
        }
        if let (Some(_), Some(v)) = (key_marker, version_id_marker) {
            q.push_str(&format!("&version-id-marker={}", uri_encode(v, false)));
        }
        q.push_str("&versions=");
        let resp = self.send(Method::GET, &q, &[]).await?;
        let text = read_text(resp).await?;
        parse_versions(&text).map_err(|m| SourceError {
            status: Some(200),
            code: "BadResponse".into(),
            message: m,
        })
    }

    fn object_path(bucket: &str, key: &str, query: &[(&str, String)]) -> String {
        let mut p = format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true));
        for (i, (k, v)) in query.iter().enumerate() {
            p.push(if i == 0 { '?' } else { '&' });
            p.push_str(&format!("{k}={}", uri_encode(v, false)));
        }
        p
    }

    /// HeadObject (of part `part_number` when given: its Content-Length is the part's size,
    /// `x-amz-mp-parts-count` the number of parts).
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        part_number: Option<u32>,
    ) -> Result<(ObjectHead, Option<u32>), SourceError> {
        let mut q = Vec::new();
        if let Some(n) = part_number {
            q.push(("partNumber", n.to_string()));
        }
        if let Some(v) = version_id {
            q.push(("versionId", v.to_string()));
        }
        let path = Self::object_path(bucket, key, &q);
        let resp = self
            .send(Method::HEAD, &path, &[("x-amz-checksum-mode", "ENABLED")])
            .await?;
        let parts = header(resp.headers(), "x-amz-mp-parts-count").and_then(|v| v.parse().ok());
        Ok((object_head(resp.headers()), parts))
    }

    /// One part (or range) of the object, only while its ETag is still `etag` (`If-Match`:
    /// parts of two different objects are never mixed). Returns the length the source
    /// announced for these bytes and the body.
    pub async fn get_part(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        read: PartRead,
        etag: &str,
    ) -> Result<(u64, Incoming), SourceError> {
        let mut q = Vec::new();
        let range;
        let if_match = format!("\"{etag}\"");
        let mut extra = vec![("if-match", if_match.as_str())];
        match read {
            PartRead::Number(n) => q.push(("partNumber", n.to_string())),
            PartRead::Range(start, end) => {
                range = format!("bytes={start}-{}", end.saturating_sub(1));
                extra.push(("range", range.as_str()));
            }
        }
        if let Some(v) = version_id {
            q.push(("versionId", v.to_string()));
        }
        let path = Self::object_path(bucket, key, &q);
        let resp = self.send(Method::GET, &path, &extra).await?;
        if !matches!(resp.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
            return Err(SourceError {
                status: Some(resp.status().as_u16()),
                code: "BadResponse".into(),
                message: "GetObject answered without the part's body".into(),
            });
        }
        let len = header(resp.headers(), "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SourceError {
                status: Some(resp.status().as_u16()),
                code: "BadResponse".into(),
                message: "GetObject answered without a Content-Length".into(),
            })?;
        if let PartRead::Range(start, end) = read
            && len != end - start
        {
            return Err(SourceError {
                status: Some(resp.status().as_u16()),
                code: "BadResponse".into(),
                message: format!("asked for {} bytes, the source sends {len}", end - start),
            });
        }
        Ok((len, resp.into_body()))
    }

    /// GetObject (of `version_id` when given) with the source's checksum asked for; the body
    /// is the response's.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectHead, Incoming), SourceError> {
        let q: Vec<(&str, String)> = version_id
            .map(|v| ("versionId", v.to_string()))
            .into_iter()
            .collect();
        let path = Self::object_path(bucket, key, &q);
        let resp = self
            .send(Method::GET, &path, &[("x-amz-checksum-mode", "ENABLED")])
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(SourceError {
                status: Some(resp.status().as_u16()),
                code: "BadResponse".into(),
                message: "GetObject answered without a whole body".into(),
            });
        }
        let head = object_head(resp.headers());
        Ok((head, resp.into_body()))
    }

    /// The object's (or the version's) tags.
    pub async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Vec<(String, String)>, SourceError> {
        let mut path = format!(
            "/{}/{}?tagging",
            uri_encode(bucket, false),
            uri_encode(key, true)
        );
        if let Some(v) = version_id {
            path.push_str(&format!("&versionId={}", uri_encode(v, false)));
        }
        let resp = self.send(Method::GET, &path, &[]).await?;
        let text = read_text(resp).await?;
        let t: TaggingXml = quick_xml::de::from_str(&text).map_err(|e| SourceError {
            status: Some(200),
            code: "BadResponse".into(),
            message: format!("tagging: {e}"),
        })?;
        Ok(t.tag_set
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }
}

impl Source {
    /// PutObject with a streamed body of `len` bytes (unsigned payload; `headers` carry the
    /// metadata and Content-MD5 when known). Returns the ETag (without quotes).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        len: u64,
        headers: &[(String, String)],
        body: UpBody,
    ) -> Result<String, SourceError> {
        let path = Self::object_path(bucket, key, &[]);
        let len = len.to_string();
        let mut extra: Vec<(&str, &str)> = vec![("content-length", len.as_str())];
        extra.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let resp = self
            .send_body(Method::PUT, &path, &extra, body, "UNSIGNED-PAYLOAD")
            .await?;
        Ok(header(resp.headers(), "etag")
            .map(|e| unquote(&e))
            .unwrap_or_default())
    }

    /// DeleteObject of the key (a delete marker in a versioned bucket).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), SourceError> {
        let path = Self::object_path(bucket, key, &[]);
        self.send(Method::DELETE, &path, &[]).await.map(|_| ())
    }
}

/// A small XML answer, read to its end (bounded).
async fn read_text(resp: http::Response<Incoming>) -> Result<String, SourceError> {
    let body = http_body_util::Limited::new(resp.into_body(), MAX_XML)
        .collect()
        .await
        .map_err(|e| SourceError::transport(format!("reading the answer: {e}")))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| SourceError::transport("answer is not UTF-8"))
}

/// The hex MD5 an ETag is, when it is one (a single-part upload's ETag).
pub fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    (etag.len() == 32 && hex::decode_to_slice(etag, &mut out).is_ok()).then_some(out)
}

/// Lower-case hex MD5 of `bytes` (tests and small bodies).
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_decodes_url_encoded_keys() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<Contents><Key>caf%C3%A9/a%20b</Key><Size>3</Size><ETag>"900150983cd24fb0d6963f7d28e17f72"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>
<Contents><Key>empty</Key><Size>0</Size><ETag>"x-2"</ETag><LastModified>t</LastModified></Contents>
</ListBucketResult>"#;
        let p = parse_list(xml).unwrap();
        assert!(p.truncated);
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "café/a b");
        assert_eq!(p.objects[0].etag, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(p.objects[1].size, 0);
    }

    #[test]
    fn version_listing_keeps_the_order_of_versions_and_markers() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult><Name>b</Name><Prefix></Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>
<NextKeyMarker>caf%C3%A9</NextKeyMarker><MaxKeys>3</MaxKeys>
<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<Version><Key>a</Key><VersionId>v9</VersionId><IsLatest>true</IsLatest><LastModified>t</LastModified><ETag>"e9"</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Version>
<DeleteMarker><Key>caf%C3%A9</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><LastModified>t</LastModified></DeleteMarker>
<Version><Key>caf%C3%A9</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><LastModified>t</LastModified><ETag>"e1"</ETag><Size>0</Size></Version>
<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes><NextVersionIdMarker>v1</NextVersionIdMarker>
</ListVersionsResult>"#;
        let p = parse_versions(xml).unwrap();
        assert!(p.truncated);
        assert_eq!(p.next_key_marker.as_deref(), Some("café"));
        assert_eq!(p.next_version_id_marker.as_deref(), Some("v1"));
        let got: Vec<_> = p
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.version_id.as_str(), e.delete_marker))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "v9", false),
                ("café", "v2", true),
                ("café", "v1", false)
            ]
        );
        assert_eq!(p.entries[0].etag, "e9");
    }

    #[test]
    fn endpoints_are_http_or_https_without_a_path() {
        let s = |e: &str| Source::new(e, "r", "ak", Zeroizing::new("sk".into()), None).is_ok();
        assert!(s("http://127.0.0.1:9000"));
        assert!(s("https://s3.example.com"));
        assert!(!s("ftp://127.0.0.1:9000"));
        assert!(!s("http://127.0.0.1:9000/bucket"));
        let bad = Source::new(
            "https://h",
            "r",
            "ak",
            Zeroizing::new("sk".into()),
            Some("junk"),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn etag_md5_only_for_single_part() {
        assert!(etag_md5("900150983cd24fb0d6963f7d28e17f72").is_some());
        assert!(etag_md5("900150983cd24fb0d6963f7d28e17f72-2").is_none());
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn keys_are_encoded_like_s3() {
        assert_eq!(uri_encode("a b/c+é", true), "a%20b/c%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
