//! Wire details where S3 and s3s differ, fixed at the edge:
//!
//! - **User metadata with non-ASCII values.** HTTP clients send header values as ISO-8859-1
//!   bytes (Python's http.client, hence boto3), which s3s refuses as non-UTF-8. S3 takes them as
//!   ISO-8859-1 text: [`fix_request_metadata`] re-encodes such values as UTF-8 before s3s sees
//!   them (the SigV4 canonical request is UTF-8 on the client side too, so the signature still
//!   matches). On the way out s3s RFC 2047-encodes every non-ASCII value; S3 returns values that
//!   are printable ISO-8859-1 as those bytes, so the client reads back what it sent
//!   ([`fix_response_metadata`]); other values (characters beyond U+00FF, control characters,
//!   which can only arrive RFC 2047-encoded: hyper refuses raw control bytes in headers) keep
//!   s3s's RFC 2047 form.
//! - **Presigned URL parameters.** S3's codes for a malformed or not-yet-valid X-Amz-Expires /
//!   X-Amz-Date ([`presign_problem`]); s3s answers InvalidRequest or RequestTimeTooSkewed.
//! - **GetObjectAttributes' ETag** is unquoted in S3's XML; s3s quotes every ETag
//!   ([`unquote_attributes_etag`]).

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode};

const META_PREFIX: &str = "x-amz-meta-";

/// Re-encodes `x-amz-meta-*` values that are not UTF-8 from ISO-8859-1 to UTF-8.
pub fn fix_request_metadata(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if !name.as_str().starts_with(META_PREFIX) || std::str::from_utf8(value.as_bytes()).is_ok()
        {
            continue;
        }
        let text: String = value.as_bytes().iter().map(|&b| b as char).collect();
        if let Ok(v) = HeaderValue::from_bytes(text.as_bytes()) {
            *value = v;
        }
    }
}

/// Decodes s3s's `=?UTF-8?B?...?=` words (space separated); `None` if `s` is not that form.
fn decode_b_words(s: &str) -> Option<String> {
    let mut out = Vec::new();
    for word in s.split(' ') {
        let b64 = word.strip_prefix("=?UTF-8?B?")?.strip_suffix("?=")?;
        out.extend(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    }
    String::from_utf8(out).ok()
}

/// A value as S3 returns it when it is printable ISO-8859-1: its bytes. `None` otherwise.
fn latin1_value(text: &str) -> Option<HeaderValue> {
    let latin1_printable = text
        .chars()
        .all(|c| matches!(c as u32, 0x20..=0x7E | 0xA0..=0xFF));
    if !latin1_printable {
        return None;
    }
    let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    HeaderValue::from_bytes(&bytes).ok()
}

/// Rewrites the `x-amz-meta-*` response headers s3s RFC 2047-encoded the way S3 sends them.
pub fn fix_response_metadata(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if !name.as_str().starts_with(META_PREFIX) {
            continue;
        }
        let Some(text) = value.to_str().ok().and_then(decode_b_words) else {
            continue;
        };
        if let Some(v) = latin1_value(&text) {
            *value = v;
        }
    }
}

/// What S3 answers for a presigned (SigV4 query) request whose parameters are malformed, whose
/// lifetime is out of bounds, or whose date lies in the future: (status, code, message).
pub fn presign_problem(
    query: &[(String, String)],
    now_unix: i64,
) -> Option<(StatusCode, &'static str, &'static str)> {
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if get("X-Amz-Algorithm").is_none() && get("X-Amz-Signature").is_none() {
        return None;
    }
    const PARAMS: &str = "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.";
    let bad = |m| {
        Some((
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            m,
        ))
    };
    let required = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
        "X-Amz-Expires",
    ];
    if required.iter().any(|n| get(n).is_none()) {
        return bad(PARAMS);
    }
    let expires = get("X-Amz-Expires").unwrap_or_default();
    match expires.parse::<i64>() {
        Err(_) => return bad("X-Amz-Expires should be a number"),
        Ok(n) if n < 0 => return bad("X-Amz-Expires must be non-negative"),
        Ok(n) if n > 604_800 => {
            return bad("X-Amz-Expires must be less than a week (in seconds) that is 604800");
        }
        Ok(_) => {}
    }
    let date = get("X-Amz-Date").unwrap_or_default();
    if !amz_date_shape(date) {
        return bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
    }
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let Ok(t) = time::PrimitiveDateTime::parse(date, &fmt) else {
        return bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
    };
    // S3 allows 15 minutes of clock skew; a URL dated later is not valid yet.
    if t.assume_utc().unix_timestamp() > now_unix + 15 * 60 {
        return Some((
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request is not valid yet",
        ));
    }
    None
}

/// `yyyyMMddTHHmmssZ` exactly: s3s's date parser subtracts before it checks for a digit (an
/// overflow panic in builds with overflow checks), so nothing else may reach it.
pub fn amz_date_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
}

/// A malformed `x-amz-date` header: S3 answers 403 AccessDenied (and s3s must not parse it).
pub fn bad_amz_date_header(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-amz-date")
        .iter()
        .any(|v| !v.to_str().is_ok_and(amz_date_shape))
}

/// `<ETag>"x"</ETag>` -> `<ETag>x</ETag>` in a GetObjectAttributes document.
pub fn unquote_attributes_etag(body: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(body).ok()?;
    let start = s.find("<ETag>\"")? + "<ETag>".len();
    let end = start + s[start..].find("\"</ETag>")?;
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..start]);
    out.push_str(&s[start + 1..end]);
    out.push_str(&s[end + 1..]);
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_metadata_becomes_utf8_and_goes_back_as_latin1() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-meta-a",
            HeaderValue::from_bytes(b"Hello World\xe9").unwrap(),
        );
        h.insert("x-amz-meta-b", HeaderValue::from_static("plain"));
        fix_request_metadata(&mut h);
        assert_eq!(h["x-amz-meta-a"].as_bytes(), "Hello World\u{e9}".as_bytes());
        assert_eq!(h["x-amz-meta-b"], "plain");
        // s3s's answer for it, then ours
        let b64 = base64::engine::general_purpose::STANDARD.encode("Hello World\u{e9}");
        let mut r = HeaderMap::new();
        r.insert(
            "x-amz-meta-a",
            HeaderValue::from_str(&format!("=?UTF-8?B?{b64}?=")).unwrap(),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("\u{4}mymeta");
        r.insert(
            "x-amz-meta-c",
            HeaderValue::from_str(&format!("=?UTF-8?B?{b64}?=")).unwrap(),
        );
        fix_response_metadata(&mut r);
        assert_eq!(r["x-amz-meta-a"].as_bytes(), b"Hello World\xe9");
        // not ISO-8859-1 printable: s3s's RFC 2047 word stays
        assert!(
            r["x-amz-meta-c"]
                .to_str()
                .unwrap()
                .starts_with("=?UTF-8?B?")
        );
    }

    #[test]
    fn presign_parameters() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let full = |expires: &str, date: &str| {
            q(&[
                ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                ("X-Amz-Credential", "AK/20260101/us-east-1/s3/aws4_request"),
                ("X-Amz-Date", date),
                ("X-Amz-Expires", expires),
                ("X-Amz-SignedHeaders", "host"),
                ("X-Amz-Signature", "00"),
            ])
        };
        let now = 1_767_225_600; // 2026-01-01T00:00:00Z
        assert_eq!(presign_problem(&full("60", "20260101T000000Z"), now), None);
        assert_eq!(presign_problem(&q(&[("a", "b")]), now), None);
        let code = |v: Vec<(String, String)>| presign_problem(&v, now).map(|p| (p.0, p.1));
        let aqpe = Some((StatusCode::BAD_REQUEST, "AuthorizationQueryParametersError"));
        assert_eq!(code(full("x", "20260101T000000Z")), aqpe);
        assert_eq!(code(full("-1", "20260101T000000Z")), aqpe);
        assert_eq!(code(full("604801", "20260101T000000Z")), aqpe);
        assert_eq!(code(q(&[("X-Amz-Signature", "00")])), aqpe);
        assert_eq!(code(full("60", "+2026101T000000Z")), aqpe);
        assert!(amz_date_shape("20260101T000000Z") && !amz_date_shape("2026010/T000000Z"));
        assert_eq!(
            code(full("60", "20260101T010000Z")),
            Some((StatusCode::FORBIDDEN, "AccessDenied"))
        );
    }

    #[test]
    fn attributes_etag_unquoted() {
        let b = br#"<GetObjectAttributesResponse><ETag>"abc"</ETag></GetObjectAttributesResponse>"#;
        assert_eq!(
            unquote_attributes_etag(b).unwrap(),
            b"<GetObjectAttributesResponse><ETag>abc</ETag></GetObjectAttributesResponse>"
        );
    }
}
