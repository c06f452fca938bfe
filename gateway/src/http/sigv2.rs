//! Signature Version 2 (header `Authorization: AWS AKID:SIG` and query `AWSAccessKeyId` +
//! `Expires` + `Signature`), checked here exactly as S3 does it, before s3s sees the request:
//!
//! - header form: a `Date` or `x-amz-date` is required (`403 AccessDenied` "AWS authentication
//!   requires a valid Date or x-amz-date header") and must be within 15 minutes of our clock
//!   (`403 RequestTimeTooSkewed`);
//! - query form: `Expires` (Unix seconds) must be a number (`403 AccessDenied` "Invalid date
//!   (should be seconds since epoch)") and not past (`403 AccessDenied` "Request has expired"); any
//!   future time is accepted, as S3 does for SigV2;
//! - the signature is HMAC-SHA1 over S3's string to sign, compared in constant time
//!   (`403 SignatureDoesNotMatch`, counted by the lockout like every failed signature).
//!
//! The string to sign is s3s's (`sig_v2::create_string_to_sign`: verb, Content-MD5,
//! Content-Type, Date or Expires, canonical `x-amz-*` headers, the resource with the
//! sub-resources S3 and the SDKs sign), so s3s, which checks the signature again, always agrees;
//! it only ever compares signatures that already matched (its plain `!=` then leaks nothing).
//! SigV2 is refused on the admin API (`?x-strata-admin=VERB`): its verb is not a signed
//! sub-resource, so a captured signature could be replayed with another verb.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method, StatusCode};

/// S3's window for the header form's date.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Sub-resources in the canonical resource, in order (s3s's and botocore's list).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2 request whose shape and time are fine: what is left is the signature check.
#[derive(Debug)]
pub struct Pending {
    pub access_key: String,
    /// The signature as sent (base64).
    pub signature: String,
    pub string_to_sign: String,
    /// What s3s signs for the same request (it writes a bucket-only path-style resource without
    /// S3's trailing slash); the front re-signs for s3s when the two differ.
    pub s3s_string_to_sign: String,
    pub presigned: bool,
}

/// An S3 error for a refused SigV2 request.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

fn problem(status: StatusCode, code: &'static str, message: &'static str) -> Problem {
    Problem {
        status,
        code,
        message,
    }
}

fn unique<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut it = q.iter().filter(|(k, _)| k == name);
    match (it.next(), it.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `Date` / `x-amz-date` as Unix seconds: RFC 1123 (`Tue, 27 Mar 2007 19:36:42 GMT` or
/// `+0000`) or ISO 8601 basic (`20070327T193642Z`).
fn parse_date(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc2822;
    if crate::http::compat::amz_date_shape(s) {
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        return time::PrimitiveDateTime::parse(s, fmt)
            .ok()
            .map(|t| t.assume_utc().unix_timestamp());
    }
    time::OffsetDateTime::parse(s.trim(), &Rfc2822)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Whether the request is SigV2 at all (query `Signature`, or an `Authorization: AWS ` header).
pub fn is_sigv2(headers: &HeaderMap, query: &[(String, String)]) -> bool {
    crate::http::signed_headers::is_sigv2(headers, query)
}

/// Checks a SigV2 request's shape and time; `Ok(None)` if it is not SigV2. `vh_bucket`: the
/// bucket of a virtual-hosted request (it belongs in the canonical resource).
pub fn screen(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
    vh_bucket: Option<&str>,
    now: i64,
) -> Result<Option<Pending>, Problem> {
    if !is_sigv2(headers, query) {
        return Ok(None);
    }
    if query.iter().any(|(k, _)| k == "x-strata-admin") {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The admin API requires AWS4-HMAC-SHA256.",
        ));
    }
    let presigned = query.iter().any(|(k, _)| k == "Signature");
    let (access_key, signature) = if presigned {
        let (Some(ak), Some(sig), Some(exp)) = (
            unique(query, "AWSAccessKeyId"),
            unique(query, "Signature"),
            unique(query, "Expires"),
        ) else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            ));
        };
        let Ok(expires) = exp.parse::<i64>() else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Invalid date (should be seconds since epoch)",
            ));
        };
        if now > expires {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request has expired",
            ));
        }
        (ak.to_string(), sig.to_string())
    } else {
        let mut auths = headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(auth), None) = (auths.next(), auths.next()) else {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Only one auth mechanism allowed",
            ));
        };
        let parsed = auth
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("AWS "))
            .and_then(|a| a.rsplit_once(':'))
            .filter(|(ak, sig)| !ak.is_empty() && !sig.is_empty());
        let Some((ak, sig)) = parsed else {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            ));
        };
        let date = header(headers, "x-amz-date").or_else(|| header(headers, "date"));
        let Some(when) = date.and_then(parse_date) else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "AWS authentication requires a valid Date or x-amz-date header",
            ));
        };
        if (now - when).abs() > MAX_SKEW_SECS {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            ));
        }
        (ak.to_string(), sig.to_string())
    };
    Ok(Some(Pending {
        access_key,
        signature,
        string_to_sign: string_to_sign(method, path, headers, query, vh_bucket, presigned, true),
        s3s_string_to_sign: string_to_sign(
            method, path, headers, query, vh_bucket, presigned, false,
        ),
        presigned,
    }))
}

/// S3's SigV2 string to sign (see the module comment); `as_s3`: a path-style request for a
/// bucket alone (`/bucket`) is the resource `/bucket/`, as S3 and the SDKs sign it (s3s does not).
pub fn string_to_sign(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
    vh_bucket: Option<&str>,
    presigned: bool,
    as_s3: bool,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(method.as_str());
    s.push('\n');
    s.push_str(header(headers, "content-md5").unwrap_or(""));
    s.push('\n');
    s.push_str(header(headers, "content-type").unwrap_or(""));
    s.push('\n');
    if presigned {
        s.push_str(unique(query, "Expires").unwrap_or(""));
    } else if headers.get("x-amz-date").is_none() {
        // "if you include the x-amz-date header, use the empty string for the Date"
        s.push_str(header(headers, "date").unwrap_or(""));
    }
    s.push('\n');
    let mut amz: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-amz-"))
        .collect();
    amz.sort_unstable();
    amz.dedup();
    for name in amz {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .collect();
        s.push_str(name);
        s.push(':');
        s.push_str(&values.join(","));
        s.push('\n');
    }
    if let Some(b) = vh_bucket {
        s.push('/');
        s.push_str(b);
    }
    s.push_str(path);
    if as_s3 && vh_bucket.is_none() && path.len() > 1 && !path[1..].contains('/') {
        s.push('/');
    }
    let mut first = true;
    for sub in SUBRESOURCES {
        if let Some(v) = unique(query, sub) {
            s.push(if first { '?' } else { '&' });
            first = false;
            s.push_str(sub);
            if !v.is_empty() {
                s.push('=');
                s.push_str(v);
            }
        }
    }
    s
}

/// HMAC-SHA1(secret, string to sign), base64: the signature s3s will recompute.
pub fn sign(secret: &[u8], string_to_sign: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64, as sent) is HMAC-SHA1(secret, string to sign); constant time.
pub fn signature_matches(secret: &[u8], string_to_sign: &str, signature: &str) -> bool {
    let Ok(sent) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&sent).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sign_test(secret: &str, sts: &str) -> String {
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(sts.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// AWS's documented example (Object GET, virtual-hosted).
    #[test]
    fn aws_example() {
        let mut h = HeaderMap::new();
        h.insert(
            "date",
            HeaderValue::from_static("Tue, 27 Mar 2007 19:36:42 +0000"),
        );
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
        );
        let now = 1_175_024_202; // the example's Date
        let p = screen(
            &Method::GET,
            "/photos/puppy.jpg",
            &h,
            &[],
            Some("awsexamplebucket1"),
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p.string_to_sign,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        let secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert!(signature_matches(secret, &p.string_to_sign, &p.signature));
        assert!(!signature_matches(
            b"other",
            &p.string_to_sign,
            &p.signature
        ));
        assert!(!signature_matches(secret, &p.string_to_sign, "not base64!"));
    }

    #[test]
    fn clock_window_and_expiry() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("AWS AK:c2ln"));
        let err = screen(&Method::GET, "/b/k", &h, &[], None, 0).unwrap_err();
        assert_eq!(err.code, "AccessDenied");
        h.insert(
            "date",
            HeaderValue::from_static("Tue, 27 Mar 2007 19:36:42 GMT"),
        );
        let t = 1_175_024_202;
        assert!(screen(&Method::GET, "/b/k", &h, &[], None, t + MAX_SKEW_SECS).is_ok());
        let err = screen(&Method::GET, "/b/k", &h, &[], None, t + MAX_SKEW_SECS + 1).unwrap_err();
        assert_eq!(err.code, "RequestTimeTooSkewed");
        let q = |exp: &str| {
            vec![
                ("AWSAccessKeyId".to_string(), "AK".to_string()),
                ("Expires".to_string(), exp.to_string()),
                ("Signature".to_string(), "c2ln".to_string()),
                ("versionId".to_string(), "v1".to_string()),
            ]
        };
        let p = screen(
            &Method::GET,
            "/b/k",
            &HeaderMap::new(),
            &q("100"),
            None,
            100,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.string_to_sign, "GET\n\n\n100\n/b/k?versionId=v1");
        let err = screen(&Method::GET, "/b/k", &HeaderMap::new(), &q("99"), None, 100).unwrap_err();
        assert_eq!(err.message, "Request has expired");
        let err = screen(&Method::GET, "/b/k", &HeaderMap::new(), &q("x"), None, 100).unwrap_err();
        assert_eq!(err.code, "AccessDenied");
        let mut admin = q("100");
        admin.push(("x-strata-admin".into(), "user-add".into()));
        let err = screen(&Method::POST, "/", &HeaderMap::new(), &admin, None, 1).unwrap_err();
        assert_eq!(err.code, "InvalidRequest");
    }

    #[test]
    fn amz_headers_are_canonical() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-date", HeaderValue::from_static("20070327T193642Z"));
        h.insert("date", HeaderValue::from_static("ignored"));
        h.append("x-amz-meta-b", HeaderValue::from_static(" two "));
        h.append("x-amz-meta-b", HeaderValue::from_static("three"));
        h.insert("x-amz-acl", HeaderValue::from_static("public-read"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let s = string_to_sign(&Method::PUT, "/b/k", &h, &[], None, false, true);
        assert_eq!(
            s,
            "PUT\n\ntext/plain\n\nx-amz-acl:public-read\nx-amz-date:20070327T193642Z\nx-amz-meta-b:two,three\n/b/k"
        );
        assert_eq!(sign(b"s", &s), sign_test("s", &s));
        // a bucket alone, path style: S3 signs `/b/`, s3s `/b`
        let h = HeaderMap::new();
        assert!(string_to_sign(&Method::GET, "/b", &h, &[], None, false, true).ends_with("\n/b/"));
        assert!(string_to_sign(&Method::GET, "/b", &h, &[], None, false, false).ends_with("\n/b"));
        assert!(string_to_sign(&Method::GET, "/", &h, &[], None, false, true).ends_with("\n/"));
    }
}
