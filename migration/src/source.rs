//! The client of the SOURCE endpoint: the few S3 calls a migration needs (ListObjectsV2,
//! GetObject, GetObjectTagging), path-style, SigV4 on every request, over plain HTTP/1.1.
//! Bodies are streamed, never buffered whole: memory per copy is one network chunk.

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

#[derive(Clone)]
pub struct Source {
    http: Client<HttpConnector, Empty<Bytes>>,
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

impl Source {
    /// `endpoint` is `http://HOST:PORT` (no path).
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret: Zeroizing<String>,
    ) -> Result<Self, String> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("bad source endpoint: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err("the source endpoint must be http://HOST:PORT (https sources are not supported yet)".into());
        }
        let host = uri
            .authority()
            .ok_or("the source endpoint has no host")?
            .to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
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
        let url = format!("{}{}", self.base, path_query);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), EMPTY_SHA256.into()),
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
            SignableBody::Precomputed(EMPTY_SHA256.into()),
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
            .body(Empty::new())
            .map_err(|e| SourceError::transport(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| SourceError::transport("timed out"))?
            .map_err(|e| SourceError::transport(e.to_string()))?;
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

    /// GetObject with the source's checksum asked for; the body is the response's.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectHead, Incoming), SourceError> {
        let path = format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true));
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

    /// The object's tags.
    pub async fn tags(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, String)>, SourceError> {
        let path = format!(
            "/{}/{}?tagging",
            uri_encode(bucket, false),
            uri_encode(key, true)
        );
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
