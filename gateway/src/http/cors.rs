//! CORS at the HTTP edge (s3s does not route OPTIONS): preflight requests are answered here from
//! the bucket's rules, and actual requests that carry an `Origin` get the `Access-Control-*`
//! headers of the first rule that allows them, as S3 does. Rules are stored by PutBucketCors
//! (`s3/cors.rs`); matching follows S3: the first rule whose AllowedOrigin (one `*` wildcard),
//! AllowedMethod and every requested header (case-insensitive, one `*` wildcard) match.

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use s3s::host::S3Host;
use strata_metadata::CorsRule;

use super::error_body::error_response;

/// The bucket a request addresses (virtual-hosted style through the front's host parser, else
/// the first path segment).
pub fn request_bucket(uri: &Uri, headers: &HeaderMap, host: Option<&dyn S3Host>) -> Option<String> {
    let host_header = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    if let (Some(h), Some(hh)) = (host, host_header)
        && hh.parse::<std::net::SocketAddr>().is_err()
        && hh.parse::<std::net::IpAddr>().is_err()
        && let Ok(vh) = h.parse_host_header(hh)
        && let Some(b) = vh.bucket()
    {
        return Some(b.to_string());
    }
    let path = uri.path().strip_prefix('/')?;
    let bucket = path.split('/').next()?;
    (!bucket.is_empty() && !bucket.starts_with('_')).then(|| bucket.to_string())
}

/// `pattern` with at most one `*` against `value`.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len() && value.starts_with(pre) && value.ends_with(post)
        }
    }
}

fn header_allowed(rule: &CorsRule, header: &str) -> bool {
    let h = header.trim().to_ascii_lowercase();
    h.is_empty()
        || rule
            .allowed_headers
            .iter()
            .any(|p| wildcard_match(&p.to_ascii_lowercase(), &h))
}

/// The first rule that allows `origin`, `method` and every header in `request_headers`.
pub fn find_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    request_headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard_match(o, origin))
            && r.allowed_methods.iter().any(|m| m == method)
            && request_headers.iter().all(|h| header_allowed(r, h))
    })
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The `Access-Control-*` headers of a matching rule.
pub fn apply_rule(
    headers: &mut HeaderMap,
    rule: &CorsRule,
    origin: &str,
    allow_headers: &[String],
) {
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    if any_origin {
        set(headers, "access-control-allow-origin", "*");
    } else {
        set(headers, "access-control-allow-origin", origin);
        set(headers, "access-control-allow-credentials", "true");
    }
    set(
        headers,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !allow_headers.is_empty() {
        set(
            headers,
            "access-control-allow-headers",
            &allow_headers.join(", "),
        );
    }
    if !rule.expose_headers.is_empty() {
        set(
            headers,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(headers, "access-control-max-age", &age.to_string());
    }
    headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// The headers a preflight asks for (`Access-Control-Request-Headers`, comma separated).
pub fn requested_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .take(64)
        .collect()
}

/// S3's answer to a preflight `OPTIONS`: 200 with the rule's headers, 403 when no rule matches
/// (or the bucket has none), 400 without `Origin` / `Access-Control-Request-Method`.
pub fn preflight(
    rules: Option<&[CorsRule]>,
    headers: &HeaderMap,
    request_id: &str,
    resource: &str,
) -> http::Response<s3s::Body> {
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let method = headers
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok());
    let forbidden = |msg: &str| {
        error_response(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            msg,
            &[],
            request_id,
            resource,
        )
    };
    let Some(origin) = origin else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
            &[],
            request_id,
            resource,
        );
    };
    let Some(method) = method.filter(|m| Method::from_bytes(m.as_bytes()).is_ok()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid Access-Control-Request-Method: null",
            &[],
            request_id,
            resource,
        );
    };
    let rules = match rules {
        Some(r) if !r.is_empty() => r,
        _ => return forbidden("CORSResponse: CORS is not enabled for this bucket."),
    };
    let wanted = requested_headers(headers);
    match find_rule(rules, origin, method, &wanted) {
        None => forbidden(
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
        Some(rule) => {
            let mut resp = http::Response::new(s3s::Body::empty());
            apply_rule(resp.headers_mut(), rule, origin, &wanted);
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn rules_match_as_s3() {
        let rules = vec![
            rule(&["http://a.example"], &["GET"], &[]),
            rule(
                &["http://*.example"],
                &["PUT", "GET"],
                &["x-amz-*", "content-type"],
            ),
            rule(&["*"], &["HEAD"], &["*"]),
        ];
        assert!(find_rule(&rules, "http://a.example", "GET", &[]).is_some());
        assert!(
            find_rule(&rules, "http://a.example", "PUT", &[]).is_some(),
            "second rule"
        );
        assert!(find_rule(&rules, "http://b.example", "PUT", &["x-amz-date".into()]).is_some());
        assert!(find_rule(&rules, "http://b.example", "PUT", &["authorization".into()]).is_none());
        assert!(find_rule(&rules, "http://b.other", "GET", &[]).is_none());
        assert!(find_rule(&rules, "http://x", "HEAD", &["anything".into()]).is_some());
        assert!(find_rule(&rules, "http://x", "DELETE", &[]).is_none());
        assert!(wildcard_match("http://*:8080", "http://127.0.0.2:8080"));
        assert!(!wildcard_match("http://*.example", "http://example"));
    }

    #[test]
    fn preflight_answers() {
        let rules = vec![rule(&["http://o"], &["PUT"], &["*"])];
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("http://o"));
        h.insert(
            "access-control-request-method",
            HeaderValue::from_static("PUT"),
        );
        h.insert(
            "access-control-request-headers",
            HeaderValue::from_static("Content-Type"),
        );
        let r = preflight(Some(&rules), &h, "id", "/b/k");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["access-control-allow-origin"], "http://o");
        assert_eq!(r.headers()["access-control-allow-methods"], "PUT");
        assert_eq!(r.headers()["access-control-allow-headers"], "content-type");
        assert_eq!(
            preflight(None, &h, "id", "/b").status(),
            StatusCode::FORBIDDEN
        );
        h.insert(
            "access-control-request-method",
            HeaderValue::from_static("GET"),
        );
        assert_eq!(
            preflight(Some(&rules), &h, "id", "/b").status(),
            StatusCode::FORBIDDEN
        );
        h.remove("origin");
        assert_eq!(
            preflight(Some(&rules), &h, "id", "/b").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
