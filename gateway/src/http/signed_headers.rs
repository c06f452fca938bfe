//! What the signature must cover, checked before s3s runs (no secret needed):
//!
//! - SigV2 (header `Authorization: AWS ...` or query `Signature=`) is recognised here and checked
//!   in `sigv2.rs`; its requests sign every `x-amz-*` header by construction.
//! - SigV4 (header or presigned): every `x-amz-*` header present must be in SignedHeaders, else
//!   403 AccessDenied "There were headers present in the request which were not signed" with
//!   `HeadersNotSigned`. `x-amz-content-sha256` is exempt, as on S3: in header auth its value is
//!   the last line of the canonical request (so it is covered anyway), and on a presigned URL it
//!   only adds a body check.
//!
//! Which scheme applies mirrors s3s (`ops/signature.rs`): query `X-Amz-Signature` (presigned)
//! wins over the `Authorization` header; query names are form-decoded first.

use std::borrow::Cow;

use http::HeaderMap;

/// Headers S3 lets through unsigned (see the module comment).
const EXEMPT: &[&str] = &["x-amz-content-sha256"];

/// At most this many names are listed in a HeadersNotSigned element.
const MAX_LISTED: usize = 16;

/// Form-decodes one query component like s3s's `OrderedQs` (`+` is a space, lossy UTF-8).
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let plus = s.replace('+', " ");
    let bytes = urlencoding::decode_binary(plus.as_bytes()).into_owned();
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// The decoded query parameters of a request, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k).into_owned(), form_decode(v).into_owned())
        })
        .collect()
}

fn has_param(q: &[(String, String)], name: &str) -> bool {
    q.iter().any(|(k, _)| k == name)
}

/// Every Authorization header value (lossy for non-UTF-8 ones).
fn authorizations(h: &HeaderMap) -> Vec<Cow<'_, str>> {
    h.get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect()
}

/// True for a SigV2 request (header or presigned; checked in `sigv2.rs`).
pub fn is_sigv2(headers: &HeaderMap, query: &[(String, String)]) -> bool {
    has_param(query, "Signature")
        || authorizations(headers)
            .iter()
            .any(|a| a.starts_with("AWS "))
}

/// Why the signature shape is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than one Authorization header, or one we cannot parse the way s3s does.
    BadAuthorization,
    /// These `x-amz-*` headers are present but not signed (names, sorted, deduplicated).
    NotSigned(Vec<String>),
}

/// The SignedHeaders list of a SigV4 `Authorization` header, parsed with s3s's grammar:
/// `ALGO Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=HEX`.
fn signed_headers_of(auth: &str) -> Option<Vec<&str>> {
    let ws = |c: char| c.is_ascii_whitespace();
    let (algo, rest) = auth.split_once(ws)?;
    if algo.is_empty() {
        return None;
    }
    let rest = rest.trim_start_matches(ws).strip_prefix("Credential=")?;
    // access key, date, region (may be empty), service: four '/'-terminated fields
    let mut rest = rest;
    for _ in 0..4 {
        rest = &rest[rest.find('/')? + 1..];
    }
    let rest = rest.strip_prefix("aws4_request,")?;
    let rest = rest.trim_start_matches(ws).strip_prefix("SignedHeaders=")?;
    let (list, rest) = rest.split_once(',')?;
    let rest = rest.trim_start_matches(ws).strip_prefix("Signature=")?;
    let sig_end = rest.find(ws).unwrap_or(rest.len());
    if !rest[sig_end..].trim_start_matches(ws).is_empty() {
        return None;
    }
    Some(list.split(';').collect())
}

/// Checks that a SigV4 request signs every `x-amz-*` header it carries. Requests that are not
/// SigV4 (anonymous) pass: s3s refuses them later.
pub fn check_signed_headers(
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<(), Refusal> {
    let presigned: Vec<&str>;
    let signed: &[&str] = if has_param(query, "X-Amz-Signature") {
        let mut values = query.iter().filter(|(k, _)| k == "X-Amz-SignedHeaders");
        match (values.next(), values.next()) {
            (Some((_, v)), None) => {
                presigned = v.split(';').collect();
                &presigned
            }
            // s3s refuses a presigned URL without (exactly one) X-Amz-SignedHeaders
            _ => return Ok(()),
        }
    } else {
        let auths = authorizations(headers);
        match auths.len() {
            0 => return Ok(()),
            1 => {}
            _ => return Err(Refusal::BadAuthorization),
        }
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::BadAuthorization)?;
        let list = signed_headers_of(auth).ok_or(Refusal::BadAuthorization)?;
        return unsigned(headers, &list);
    };
    unsigned(headers, signed)
}

fn unsigned(headers: &HeaderMap, signed: &[&str]) -> Result<(), Refusal> {
    let mut missing: Vec<String> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.starts_with("x-amz-") && !EXEMPT.contains(n) && !signed.contains(n))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    missing.dedup();
    Err(Refusal::NotSigned(missing))
}

/// The HeadersNotSigned text: names joined by ", ", at most `MAX_LISTED` of them (header names
/// are tokens, so they need no escaping beyond XML's; they are short by hyper's limits).
pub fn not_signed_text(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| crate::http::lockout::sanitize(n, 64))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        s.push_str(", ...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=abc";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_signed_headers_like_s3s() {
        assert_eq!(
            signed_headers_of(AUTH),
            Some(vec!["host", "x-amz-content-sha256", "x-amz-date"])
        );
        // no spaces after commas (s3s allows zero or more)
        let tight = AUTH.replace(", ", ",");
        assert_eq!(signed_headers_of(&tight).map(|v| v.len()), Some(3));
        // an empty region is allowed by s3s
        let noregion = AUTH.replace("/us-east-1/", "//");
        assert!(signed_headers_of(&noregion).is_some());
        // trailing garbage, missing parts
        assert_eq!(signed_headers_of(&format!("{AUTH} x")), None);
        assert_eq!(
            signed_headers_of("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=x"),
            None
        );
        assert_eq!(signed_headers_of("AWS4-HMAC-SHA256"), None);
    }

    #[test]
    fn unsigned_amz_header_is_refused() {
        let h = headers(&[
            ("authorization", AUTH),
            ("host", "h"),
            ("x-amz-date", "d"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-bypass-governance-retention", "true"),
            ("x-amz-meta-a", "1"),
            ("x-amz-meta-a", "2"),
        ]);
        assert_eq!(
            check_signed_headers(&h, &[]),
            Err(Refusal::NotSigned(vec![
                "x-amz-bypass-governance-retention".into(),
                "x-amz-meta-a".into()
            ]))
        );
        // other headers (not x-amz-*) are not S3's concern here
        let h = headers(&[
            ("authorization", AUTH),
            ("x-amzn-trace-id", "t"),
            ("range", "bytes=0-1"),
        ]);
        assert_eq!(check_signed_headers(&h, &[]), Ok(()));
    }

    #[test]
    fn content_sha256_is_exempt_and_anonymous_passes() {
        let auth = AUTH.replace("host;x-amz-content-sha256;x-amz-date", "host;x-amz-date");
        let h = headers(&[
            ("authorization", &auth),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-date", "d"),
        ]);
        assert_eq!(check_signed_headers(&h, &[]), Ok(()));
        let h = headers(&[("x-amz-acl", "public-read")]);
        assert_eq!(check_signed_headers(&h, &[]), Ok(()));
    }

    #[test]
    fn presigned_uses_the_query_list_and_wins_over_the_header() {
        let q = query_pairs(Some(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Bx-amz-meta-ok&X-Amz-Signature=abc",
        ));
        let h = headers(&[("x-amz-meta-ok", "1")]);
        assert_eq!(check_signed_headers(&h, &q), Ok(()));
        // a decoy Authorization header that signs the extra header does not help
        let h = headers(&[
            (
                "authorization",
                &AUTH.replace("x-amz-date", "x-amz-date;x-amz-acl"),
            ),
            ("x-amz-meta-ok", "1"),
            ("x-amz-acl", "public-read"),
        ]);
        assert_eq!(
            check_signed_headers(&h, &q),
            Err(Refusal::NotSigned(vec!["x-amz-acl".into()]))
        );
        // an encoded parameter name is the same parameter for s3s
        let q = query_pairs(Some("X-Amz-%53ignature=abc&X-Amz-SignedHeaders=host"));
        let h = headers(&[("x-amz-acl", "public-read")]);
        assert!(matches!(
            check_signed_headers(&h, &q),
            Err(Refusal::NotSigned(_))
        ));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let h = headers(&[("authorization", AUTH), ("authorization", AUTH)]);
        assert_eq!(
            check_signed_headers(&h, &[]),
            Err(Refusal::BadAuthorization)
        );
        let h = headers(&[("authorization", "AWS4-HMAC-SHA256 garbage")]);
        assert_eq!(
            check_signed_headers(&h, &[]),
            Err(Refusal::BadAuthorization)
        );
    }

    #[test]
    fn sigv2_is_recognised() {
        let q = query_pairs(Some("AWSAccessKeyId=AK&Expires=1&Signature=x%2B"));
        assert!(is_sigv2(&HeaderMap::new(), &q));
        let h = headers(&[("authorization", "AWS AKID:c2ln")]);
        assert!(is_sigv2(&h, &[]));
        let h = headers(&[("authorization", AUTH)]);
        assert!(!is_sigv2(&h, &query_pairs(Some("X-Amz-Signature=x"))));
    }

    #[test]
    fn listed_names_are_bounded() {
        let names: Vec<String> = (0..40).map(|i| format!("x-amz-meta-{i}")).collect();
        let t = not_signed_text(&names);
        assert!(t.ends_with(", ...") && t.matches(", ").count() == MAX_LISTED);
    }
}
