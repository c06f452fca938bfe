//! `/_strata/console/`: the operator console's static files (docs/console.md). A fixed set of
//! small files compiled into the binary, served without authentication: they hold no data and
//! no secret. Everything the console shows it fetches itself through the S3 API and the admin
//! API, signed in the browser with the operator's key, so it has exactly the rights the CLI has.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from these files
//! only, requests to this origin only, no framing, no forms posted anywhere), `X-Frame-Options:
//! DENY` and `nosniff`; files are revalidated by ETag so an upgraded binary's files are used at
//! once.

use std::sync::OnceLock;

use http::{HeaderValue, Method, Response, StatusCode, header};
use sha2::{Digest, Sha256};

/// The path the console lives under.
pub const PREFIX: &str = "/_strata/console/";

/// The console's policy: nothing from anywhere else, no inline script or style, no `eval`.
/// `img-src data:` is for the favicon-less tab; `connect-src 'self'` is the S3 and admin API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        name: "sigv4.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/sigv4.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/style.css"),
    },
];

/// Strong ETags of the assets, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..32]))
            .collect()
    })
}

/// Whether `path` is the console's (the bare `/_strata/console` included).
pub fn is_console_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == PREFIX.trim_end_matches('/')
}

fn plain(status: StatusCode, text: &'static str) -> Response<s3s::Body> {
    let mut resp = Response::new(s3s::Body::from(text.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn secure_headers(resp: &mut Response<s3s::Body>) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// The answer to a request for a console path (see [`is_console_path`]). `enabled` false
/// (`--no-console`): 404 for every path, as if there were no console.
pub fn respond(
    enabled: bool,
    method: &Method,
    path: &str,
    if_none_match: Option<&HeaderValue>,
) -> Response<s3s::Body> {
    let mut resp = answer(enabled, method, path, if_none_match);
    secure_headers(&mut resp);
    resp
}

fn answer(
    enabled: bool,
    method: &Method,
    path: &str,
    if_none_match: Option<&HeaderValue>,
) -> Response<s3s::Body> {
    if !enabled {
        return plain(
            StatusCode::NOT_FOUND,
            "the console is turned off (--no-console)\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let name = match path.strip_prefix(PREFIX) {
        None => {
            let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "");
            resp.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static(PREFIX));
            return resp;
        }
        Some("") => "index.html",
        Some(n) => n,
    };
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return plain(StatusCode::NOT_FOUND, "no such console file\n");
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        plain(StatusCode::NOT_MODIFIED, "")
    } else if method == Method::HEAD {
        let mut r = Response::new(s3s::Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        r
    } else {
        Response::new(s3s::Body::from(bytes::Bytes::from_static(asset.body)))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time (cheap: a 304): a new binary's files are picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response<s3s::Body> {
        respond(true, &Method::GET, path, None)
    }

    #[test]
    fn serves_the_fixed_set_with_strict_headers() {
        for a in ASSETS {
            let r = get(&format!("{PREFIX}{}", a.name));
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(a.body.len() < 64 * 1024, "{} is not small", a.name);
        }
        let index = get(PREFIX);
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            ASSETS[0].content_type
        );
        let bare = get("/_strata/console");
        assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(bare.headers()[header::LOCATION], PREFIX);
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        for p in [
            "/_strata/console/nope.js",
            "/_strata/console/../admin",
            "/_strata/console/app.js/",
        ] {
            assert_eq!(get(p).status(), StatusCode::NOT_FOUND, "{p}");
        }
        let r = respond(true, &Method::PUT, "/_strata/console/app.js", None);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = respond(false, &Method::GET, PREFIX, None);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn revalidates_by_etag() {
        let r = get("/_strata/console/app.js");
        let tag = r.headers()[header::ETAG].clone();
        let again = respond(true, &Method::GET, "/_strata/console/app.js", Some(&tag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = HeaderValue::from_static("\"0\"");
        let r = respond(true, &Method::GET, "/_strata/console/app.js", Some(&other));
        assert_eq!(r.status(), StatusCode::OK);
    }
}
