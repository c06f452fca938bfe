//! The request facts S3's server access log records, taken at the front (the same point that
//! writes the `strata::access` tracing line) for buckets with logging enabled, and handed to the
//! engine's delivery queue (`strata_engine::access_log`). Secrets never get in: signatures,
//! credentials and security tokens are redacted from the URI, and only Referer, User-Agent and
//! Host are taken from the headers.

use http::{HeaderMap, Method, Request, Uri};
use strata_engine::access_log::LogTarget;
use strata_metadata::AccessLogEntry;

/// Longest request URI kept in a line.
const MAX_URI: usize = 1024;
/// Longest header value kept (Referer, User-Agent, Host).
const MAX_HEADER: usize = 256;
/// Query parameters whose values are never logged.
const REDACTED: [&str; 5] = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "Signature",
    "AWSAccessKeyId",
];

/// What is known of a request before it is handled.
pub struct Facts {
    pub time: i64,
    pub method: Method,
    pub uri: String,
    pub operation: String,
    pub key: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub host: Option<String>,
    pub object_size: Option<u64>,
    pub auth_type: Option<String>,
}

fn header(h: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_HEADER).collect())
}

/// `METHOD /path?query HTTP/1.1` with secret-bearing parameters redacted.
pub fn redacted_uri(method: &Method, uri: &Uri) -> String {
    let mut out = format!("{} {}", method, uri.path());
    if let Some(q) = uri.query() {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let name = urlencoding::decode(k).unwrap_or_default();
                if REDACTED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                    format!("{k}=REDACTED")
                } else if v.is_empty() && !p.contains('=') {
                    k.to_string()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out.push_str(" HTTP/1.1");
    if out.len() > MAX_URI {
        let mut cut = MAX_URI;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// S3's operation name: `REST.METHOD.RESOURCE`.
pub fn operation(method: &Method, query: Option<&str>, has_key: bool) -> String {
    let keys: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .collect();
    let has = |k: &str| keys.contains(&k);
    let resource = if has("uploadId") {
        if *method == Method::PUT {
            "PART"
        } else {
            "UPLOAD"
        }
    } else if has("uploads") {
        "UPLOADS"
    } else if has("tagging") {
        if has_key { "OBJECT_TAGGING" } else { "TAGGING" }
    } else if has("acl") {
        "ACL"
    } else if has("versioning") {
        "VERSIONING"
    } else if has("versions") {
        "BUCKETVERSIONS"
    } else if has("delete") {
        "MULTI_OBJECT_DELETE"
    } else if has("cors") {
        "CORS"
    } else if has("logging") {
        "LOGGING_STATUS"
    } else if has("encryption") {
        "ENCRYPTION"
    } else if has("location") {
        "LOCATION"
    } else if has("lifecycle") {
        "LIFECYCLE"
    } else if has("policy") {
        "POLICY"
    } else if has("retention") {
        "RETENTION"
    } else if has("legal-hold") {
        "LEGAL_HOLD"
    } else if has("object-lock") {
        "OBJECT_LOCK_CONFIGURATION"
    } else if has("attributes") {
        "OBJECT_ATTRIBUTES"
    } else if method == Method::OPTIONS {
        "PREFLIGHT"
    } else if has_key {
        "OBJECT"
    } else {
        "BUCKET"
    };
    format!("REST.{method}.{resource}")
}

impl Facts {
    /// `bucket` is the bucket the front found the request addressing.
    pub fn capture<B>(req: &Request<B>, bucket: &str, now_ms: i64) -> Facts {
        let uri = req.uri();
        let path = urlencoding::decode(uri.path()).unwrap_or_default();
        let rest = path.strip_prefix('/').unwrap_or(&path);
        // Path style: /bucket/key; virtual-hosted: /key.
        let key = match rest.split_once('/') {
            Some((b, k)) if b == bucket => Some(k.to_string()),
            None if rest == bucket => None,
            _ if !rest.is_empty() => Some(rest.to_string()),
            _ => None,
        }
        .filter(|k| !k.is_empty());
        let headers = req.headers();
        let length = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let object_size = (req.method() == Method::PUT && key.is_some())
            .then(|| length("x-amz-decoded-content-length").or(length("content-length")))
            .flatten();
        let auth_type = if headers.contains_key(http::header::AUTHORIZATION) {
            Some("AuthHeader".to_string())
        } else if uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")) {
            Some("QueryString".to_string())
        } else {
            None
        };
        Facts {
            time: now_ms,
            method: req.method().clone(),
            uri: redacted_uri(req.method(), uri),
            operation: operation(req.method(), uri.query(), key.is_some()),
            key,
            referer: header(headers, http::header::REFERER),
            user_agent: header(headers, http::header::USER_AGENT),
            host: header(headers, http::header::HOST),
            object_size,
            auth_type,
        }
    }

    /// The entry for the engine's queue, once the response is known.
    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        self,
        bucket: &str,
        target: LogTarget,
        remote_ip: String,
        access_key: Option<String>,
        request_id: &str,
        status: u16,
        error_code: Option<String>,
        response: &HeaderMap,
        total_ms: u64,
    ) -> AccessLogEntry {
        let bytes_sent = response
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0 && self.method != Method::HEAD);
        AccessLogEntry {
            bucket: bucket.to_string(),
            bucket_owner: target.bucket_owner,
            target_bucket: target.config.target_bucket,
            target_prefix: target.config.target_prefix,
            time: self.time,
            remote_ip,
            signature_version: self.auth_type.as_ref().map(|_| "SigV4".to_string()),
            access_key,
            request_id: request_id.to_string(),
            operation: self.operation,
            key: self.key,
            request_uri: self.uri,
            status,
            error_code,
            bytes_sent,
            object_size: self.object_size,
            total_ms,
            referer: self.referer,
            user_agent: self.user_agent,
            version_id: response
                .get("x-amz-version-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            auth_type: self.auth_type,
            host_header: self.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_redacted_and_operations_named() {
        let uri: Uri = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F2026&X-Amz-Signature=abc&versionId=1"
            .parse()
            .unwrap();
        let s = redacted_uri(&Method::GET, &uri);
        assert_eq!(
            s,
            "GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&versionId=1 HTTP/1.1"
        );
        assert!(!s.contains("AKID") && !s.contains("abc"));
        assert_eq!(
            operation(&Method::PUT, Some("partNumber=1&uploadId=x"), true),
            "REST.PUT.PART"
        );
        assert_eq!(
            operation(&Method::POST, Some("uploads"), true),
            "REST.POST.UPLOADS"
        );
        assert_eq!(operation(&Method::GET, None, true), "REST.GET.OBJECT");
        assert_eq!(
            operation(&Method::GET, Some("list-type=2"), false),
            "REST.GET.BUCKET"
        );
        assert_eq!(
            operation(&Method::PUT, Some("tagging"), false),
            "REST.PUT.TAGGING"
        );
        let long: Uri = format!("/b/{}", "k".repeat(3000)).parse().unwrap();
        assert!(redacted_uri(&Method::GET, &long).len() <= 1024 + 3);
    }
}
