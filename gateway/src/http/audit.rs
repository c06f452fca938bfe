//! The facts of a request for the audit log (`strata_engine::audit`), taken at the front for
//! every request: who (the user behind the verified key, the key id), what (operation, bucket,
//! key, version), from where, and the result. No URI, query, header value but User-Agent, or
//! body is kept, so no signature, secret, SSE-C key or presigned signature can get in.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, Request};
use strata_engine::Engine;
use strata_engine::audit::{AUTH_FAILURE_CODES, AuditRecord};
use strata_engine::usage::RequestClass;

use super::access_log;
use super::lockout::sanitize;

/// Longest access key id, user agent and object key kept (untrusted input, cleaned and cut).
const MAX_KEY_ID: usize = 128;
const MAX_USER_AGENT: usize = 256;
const MAX_OBJECT_KEY: usize = 1024;

/// What is known of a request before it is handled (the query is read for the operation's
/// name and the version id only, never recorded).
pub struct Facts {
    time_ms: i64,
    method: http::Method,
    path: String,
    query: Option<String>,
    user_agent: Option<String>,
    bytes_in: u64,
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k == name).then(|| urlencoding::decode(v).map(|v| v.into_owned()).ok())?
    })
}

/// Control characters replaced, cut to `max` characters (the record is JSON: the rest is safe).
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Facts {
    pub fn capture<B>(req: &Request<B>, now_ms: i64) -> Facts {
        let uri = req.uri();
        let headers = req.headers();
        let length = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        Facts {
            time_ms: now_ms,
            method: req.method().clone(),
            path: urlencoding::decode(uri.path())
                .map(|p| p.chars().take(MAX_OBJECT_KEY + 70).collect())
                .unwrap_or_default(),
            query: uri.query().map(|q| q.chars().take(8192).collect()),
            user_agent: headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| clean(v, MAX_USER_AGENT)),
            bytes_in: length("x-amz-decoded-content-length")
                .or(length("content-length"))
                .unwrap_or(0),
        }
    }

    /// (operation, object key) of a request to `bucket` (path-style `/bucket/key` or
    /// virtual-hosted `/key`).
    fn what(&self, bucket: Option<&str>) -> (String, Option<String>) {
        let query = self.query.as_deref();
        if let Some(verb) = query_value(query, crate::admin::ADMIN_QUERY) {
            return (format!("ADMIN.{}", sanitize(&verb, 64)), None);
        }
        let rest = self.path.strip_prefix('/').unwrap_or(&self.path);
        let key = match (bucket, rest.split_once('/')) {
            (None, _) => None,
            (Some(b), Some((first, k))) if first == b => Some(k),
            (Some(b), None) if rest == b => None,
            (Some(_), _) => Some(rest),
        }
        .filter(|k| !k.is_empty())
        .map(|k| clean(k, MAX_OBJECT_KEY));
        let op = access_log::operation(&self.method, query, key.is_some());
        (op, key)
    }

    /// The record, once the answer is known. `verified_key` is the key s3s checked (then its
    /// user is looked up), `claimed_key` the one the request named.
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        self,
        engine: &Engine,
        bucket: Option<&str>,
        peer: SocketAddr,
        verified_key: Option<&str>,
        claimed_key: Option<&str>,
        request_id: &str,
        status: u16,
        error_code: Option<&str>,
        auth_slowdown: bool,
        response: &HeaderMap,
        elapsed: Duration,
    ) -> AuditRecord {
        let auth_failed =
            auth_slowdown || error_code.is_some_and(|c| AUTH_FAILURE_CODES.contains(&c));
        let user = match (verified_key, claimed_key) {
            (Some(k), _) if !auth_failed => engine.caller(k).await.ok().flatten().map(|c| c.user),
            // Unsigned (no key claimed at all): the anonymous caller, as the handlers name it.
            (None, None) if !auth_failed => Some(ANONYMOUS.to_string()),
            _ => None,
        };
        let bytes_out = response
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let version_id = response
            .get("x-amz-version-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| query_value(self.query.as_deref(), "versionId"))
            .map(|v| clean(&v, MAX_OBJECT_KEY));
        let (operation, key) = self.what(bucket);
        AuditRecord {
            time_ms: self.time_ms,
            request_id: request_id.to_string(),
            user,
            access_key: verified_key
                .or(claimed_key)
                .map(|k| sanitize(k, MAX_KEY_ID)),
            operation,
            bucket: bucket.map(str::to_string),
            key,
            version_id,
            remote: peer.to_string(),
            user_agent: self.user_agent,
            status,
            error_code: error_code.map(str::to_string),
            bytes_in: self.bytes_in,
            bytes_out,
            duration_ms: elapsed.as_millis() as u64,
            auth_failed,
            link: None,
        }
    }
}

/// The `user` of an unsigned request's record.
pub const ANONYMOUS: &str = "anonymous";

/// The billing class of a request, from its operation name (`REST.METHOD.RESOURCE`): S3 bills
/// PUT, COPY, POST and LIST together, GET and the rest together, and DELETE not at all.
pub fn usage_class(operation: &str) -> RequestClass {
    let mut parts = operation.split('.').skip(1);
    let (method, resource) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, resource) {
        ("DELETE", _) | (_, "MULTI_OBJECT_DELETE") => RequestClass::Delete,
        ("PUT" | "POST" | "COPY", _) => RequestClass::WriteList,
        ("GET", "BUCKET" | "BUCKETVERSIONS" | "UPLOADS" | "UPLOAD") => RequestClass::WriteList,
        _ => RequestClass::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_as_s3_bills_them() {
        for (op, class) in [
            ("REST.PUT.OBJECT", RequestClass::WriteList),
            ("REST.POST.UPLOADS", RequestClass::WriteList),
            ("REST.GET.BUCKET", RequestClass::WriteList),
            ("REST.GET.BUCKETVERSIONS", RequestClass::WriteList),
            ("REST.GET.OBJECT", RequestClass::Read),
            ("REST.HEAD.OBJECT", RequestClass::Read),
            ("REST.GET.ACL", RequestClass::Read),
            ("REST.DELETE.OBJECT", RequestClass::Delete),
            ("REST.POST.MULTI_OBJECT_DELETE", RequestClass::Delete),
        ] {
            assert_eq!(usage_class(op), class, "{op}");
        }
    }

    #[test]
    fn presigned_and_admin_requests_keep_no_secret() {
        let r = Request::builder()
            .method("GET")
            .uri("/b/dir/k?versionId=v1&X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F2026")
            .header("user-agent", "Boto3/1.0 Python/3")
            .body(())
            .unwrap();
        let f = Facts::capture(&r, 5);
        assert_eq!(
            f.what(Some("b")),
            ("REST.GET.OBJECT".to_string(), Some("dir/k".to_string()))
        );
        assert_eq!(f.user_agent.as_deref(), Some("Boto3/1.0 Python/3"));
        // Virtual-hosted: the whole path is the key.
        assert_eq!(f.what(Some("other")).1.as_deref(), Some("b/dir/k"));
        assert_eq!(f.what(None), ("REST.GET.BUCKET".to_string(), None));
        let r = Request::builder()
            .method("POST")
            .uri("/?x-strata-admin=user-add")
            .body(())
            .unwrap();
        assert_eq!(Facts::capture(&r, 5).what(None).0, "ADMIN.user-add");
    }
}
