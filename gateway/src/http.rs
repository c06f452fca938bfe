//! The HTTP front: accepts connections, gives every request an id, refuses callers who keep
//! failing authentication, passes the request to the s3s service, and finishes every error
//! response the same way (RequestId and Resource in the XML body, `x-amz-request-id` header).
//! It also writes the access log line of each request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::service::S3Service;
use tokio::net::TcpListener;

/// Failed signatures tolerated per access key or source address within `WINDOW`.
const MAX_AUTH_FAILURES: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);
/// How long a caller that crossed the limit is refused.
const LOCKOUT: Duration = Duration::from_secs(60);
/// Error bodies are small; anything bigger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Default)]
struct FailureCount {
    window_start: Option<Instant>,
    count: u32,
    locked_until: Option<Instant>,
}

/// Counts failed authentications per access key and per source address, so that secrets cannot be
/// brute-forced: past the limit the caller gets `SlowDown` (503) until the lockout ends.
#[derive(Default)]
pub struct AuthLimiter {
    by_key: Mutex<HashMap<String, FailureCount>>,
    by_addr: Mutex<HashMap<IpAddr, FailureCount>>,
}

impl AuthLimiter {
    fn locked<K: std::hash::Hash + Eq>(
        map: &Mutex<HashMap<K, FailureCount>>,
        k: &K,
        now: Instant,
    ) -> bool {
        let m = map.lock().unwrap_or_else(|e| e.into_inner());
        m.get(k)
            .and_then(|c| c.locked_until)
            .is_some_and(|t| t > now)
    }

    fn record<K: std::hash::Hash + Eq + Clone>(
        map: &Mutex<HashMap<K, FailureCount>>,
        k: &K,
        now: Instant,
    ) -> bool {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        // Bound memory: forget idle entries when the table grows large.
        if m.len() > 100_000 {
            m.retain(|_, c| {
                c.window_start
                    .is_some_and(|s| now.duration_since(s) < WINDOW)
                    || c.locked_until.is_some_and(|t| t > now)
            });
        }
        let c = m.entry(k.clone()).or_default();
        if c.window_start
            .is_none_or(|s| now.duration_since(s) >= WINDOW)
        {
            c.window_start = Some(now);
            c.count = 0;
        }
        c.count += 1;
        if c.count >= MAX_AUTH_FAILURES {
            c.locked_until = Some(now + LOCKOUT);
            return true;
        }
        false
    }

    pub fn is_locked(&self, key: Option<&str>, addr: IpAddr) -> bool {
        let now = Instant::now();
        Self::locked(&self.by_addr, &addr, now)
            || key.is_some_and(|k| Self::locked(&self.by_key, &k.to_string(), now))
    }

    pub fn record_failure(&self, key: Option<&str>, addr: IpAddr) {
        let now = Instant::now();
        if Self::record(&self.by_addr, &addr, now) {
            tracing::warn!(target: "strata::security", %addr, "too many failed signatures from this address: locked out");
        }
        if let Some(k) = key
            && Self::record(&self.by_key, &k.to_string(), now)
        {
            tracing::warn!(target: "strata::security", access_key = %k, "too many failed signatures for this access key: locked out");
        }
    }
}

/// The access key a request claims (header or presigned query), without verifying it.
pub fn claimed_access_key<B>(req: &Request<B>) -> Option<String> {
    let from_credential = |cred: &str| cred.split('/').next().map(str::to_string);
    if let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(pos) = auth.find("Credential=") {
            return from_credential(&auth[pos + "Credential=".len()..]);
        }
        // SigV2: "AWS AKID:signature"
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next().map(str::to_string);
        }
    }
    let q = req.uri().query()?;
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("X-Amz-Credential=") {
            let v = urlencoding::decode(v).ok()?;
            return from_credential(&v);
        }
        if let Some(v) = pair.strip_prefix("AWSAccessKeyId=") {
            return Some(v.to_string());
        }
    }
    None
}

/// Presigned URLs may live at most 7 days (s3s checks expiry, not this upper bound).
fn presign_too_long(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|p| {
            p.strip_prefix("X-Amz-Expires=")
                .is_some_and(|v| v.parse::<u64>().map_or(true, |n| n > 604_800))
        })
    })
}

pub fn new_request_id() -> String {
    let r: u64 = rand::random();
    format!("{r:016X}")
}

fn error_code(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let start = s.find("<Code>")? + "<Code>".len();
    let end = s[start..].find("</Code>")? + start;
    Some(s[start..end].to_string())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message S3 sends with a code, for errors raised without one.
fn default_message(code: &str) -> &'static str {
    match code {
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchBucket" => "The specified bucket does not exist.",
        "NoSuchVersion" => "The specified version does not exist.",
        "NoSuchUpload" => {
            "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."
        }
        "AccessDenied" => "Access Denied",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "BucketAlreadyExists" => {
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
        }
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "InvalidBucketName" => "The specified bucket is not valid.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "InvalidRange" => "The requested range is not satisfiable",
        "BadDigest" => "The Content-MD5 you specified did not match what we received.",
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."
        }
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        }
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "KeyTooLongError" => "Your key is too long",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InternalError" => "We encountered an internal error. Please try again.",
        _ => "The request could not be completed.",
    }
}

/// Adds Message, RequestId and Resource to an S3 error document that lacks them.
fn complete_error_body(body: &[u8], request_id: &str, resource: &str) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(body).ok()?;
    let end = s.rfind("</Error>")?;
    let mut extra = String::new();
    if !s.contains("<Message>") {
        let code = error_code(body).unwrap_or_default();
        extra.push_str(&format!(
            "<Message>{}</Message>",
            xml_escape(default_message(&code))
        ));
    }
    if !s.contains("<Resource>") {
        extra.push_str(&format!("<Resource>{}</Resource>", xml_escape(resource)));
    }
    if !s.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{request_id}</RequestId>"));
    }
    Some(format!("{}{}{}", &s[..end], extra, &s[end..]).into_bytes())
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
    resource: &str,
) -> Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{request_id}</RequestId></Error>",
        xml_escape(message),
        xml_escape(resource)
    );
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

pub struct Front {
    pub s3: S3Service,
    pub limiter: AuthLimiter,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Front {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<s3s::Body>, s3s::HttpError> {
        let started = Instant::now();
        let request_id = new_request_id();
        let method = req.method().clone();
        let resource = req.uri().path().to_string();
        let claimed_key = claimed_access_key(&req);

        if req.uri().path() == "/_strata/health" && method == http::Method::GET {
            let mut resp = Response::new(s3s::Body::from("ok\n".to_string()));
            resp.headers_mut().insert(
                "x-amz-request-id",
                HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("0")),
            );
            return Ok(resp);
        }
        if req.uri().path() == "/_strata/metrics" && method == http::Method::GET {
            let mut resp = Response::new(s3s::Body::from(self.metrics.render()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(resp);
        }

        let mut resp = if self.limiter.is_locked(claimed_key.as_deref(), peer.ip()) {
            tracing::warn!(target: "strata::security", addr = %peer.ip(), access_key = ?claimed_key, "request refused: authentication lockout");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
                &request_id,
                &resource,
            )
        } else if presign_too_long(req.uri()) {
            error_response(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                &request_id,
                &resource,
            )
        } else {
            let req = if crate::framing::is_aws_chunked(req.headers()) {
                crate::framing::watch(req).map(s3s::Body::http_body)
            } else {
                req.map(s3s::Body::from)
            };
            self.s3.call(req).await?
        };

        let status = resp.status();
        let mut code = None;
        if status.is_client_error() || status.is_server_error() {
            let (mut parts, body) = resp.into_parts();
            let is_xml = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("xml"));
            let small = http_body::Body::size_hint(&body)
                .upper()
                .is_some_and(|n| n as usize <= MAX_ERROR_BODY);
            let bytes = if small {
                body.collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default()
            } else {
                Bytes::new()
            };
            code = error_code(&bytes);
            let new_body = if is_xml || code.is_some() {
                complete_error_body(&bytes, &request_id, &resource)
                    .map(Bytes::from)
                    .unwrap_or(bytes)
            } else {
                bytes
            };
            if !parts.headers.contains_key(http::header::CONTENT_TYPE) && !new_body.is_empty() {
                parts.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/xml"),
                );
            }
            if method == http::Method::HEAD {
                parts.headers.remove(http::header::CONTENT_LENGTH);
                resp = Response::from_parts(parts, s3s::Body::empty());
            } else {
                parts.headers.insert(
                    http::header::CONTENT_LENGTH,
                    HeaderValue::from(new_body.len()),
                );
                resp = Response::from_parts(parts, s3s::Body::from(new_body));
            }
            if matches!(
                code.as_deref(),
                Some("SignatureDoesNotMatch" | "InvalidAccessKeyId")
            ) {
                self.limiter
                    .record_failure(claimed_key.as_deref(), peer.ip());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v.clone());
            resp.headers_mut().insert("x-amz-id-2", v);
        }
        let elapsed = started.elapsed();
        self.metrics
            .observe(method.as_str(), status.as_u16(), elapsed);
        // The access log: who, what, when, from where, result. Never a secret.
        tracing::info!(
            target: "strata::access",
            request_id = %request_id,
            remote = %peer,
            access_key = claimed_key.as_deref().unwrap_or("-"),
            method = %method,
            path = %resource,
            status = status.as_u16(),
            error = code.as_deref().unwrap_or("-"),
            millis = elapsed.as_millis() as u64,
        );
        Ok(resp)
    }
}

/// Accepts connections until the listener fails; every connection is served on its own task.
pub async fn serve(listener: TcpListener, front: Arc<Front>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| front.clone().handle(req, peer));
            let io = hyper_util::rt::TokioIo::new(stream);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_gets_request_id_and_resource() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        let out = String::from_utf8(complete_error_body(body, "ABC", "/b/k&").unwrap()).unwrap();
        assert!(
            out.contains("<Resource>/b/k&amp;</Resource><RequestId>ABC</RequestId></Error>"),
            "{out}"
        );
        assert_eq!(error_code(body).as_deref(), Some("NoSuchKey"));
    }

    #[test]
    fn claimed_key_from_header_and_query() {
        let r = Request::builder()
            .uri("/b")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x")
            .body(())
            .unwrap();
        assert_eq!(claimed_access_key(&r).as_deref(), Some("AKID"));
        let r = Request::builder()
            .uri("/b?X-Amz-Credential=AK2%2F20260101%2Fus-east-1%2Fs3%2Faws4_request")
            .body(())
            .unwrap();
        assert_eq!(claimed_access_key(&r).as_deref(), Some("AK2"));
    }

    #[test]
    fn limiter_locks_after_repeated_failures() {
        let l = AuthLimiter::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            l.record_failure(Some("K"), ip);
        }
        assert!(!l.is_locked(Some("K"), ip));
        l.record_failure(Some("K"), ip);
        assert!(l.is_locked(Some("K"), ip));
        assert!(l.is_locked(None, ip));
        assert!(!l.is_locked(Some("other"), "127.0.0.10".parse().unwrap()));
    }
}
