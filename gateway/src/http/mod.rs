//! The HTTP front: gives every request an id, refuses what must not reach s3s (checks that need
//! no secret and no body), passes the rest to the s3s service, counts failed signatures, and
//! finishes every error response the same way (RequestId and Resource in the XML body,
//! `x-amz-request-id` header). It also writes the access log line of each request.
//!
//! - [`conn`]: accepting and serving connections (connection cap, timeouts).
//! - [`limits`]: body limits, the body wrapper, [`EdgeConfig`].
//! - [`post_form`] and `post_object`: HTML-form uploads (PostObject), read here with bounded
//!   memory instead of by s3s.
//! - [`signed_headers`]: x-amz-* headers a SigV4 signature must cover; [`sigv2`]: SigV2 checked
//!   as S3 does it (clock window, Expires, constant-time signature).
//! - [`lockout`]: failed-signature accounting.
//! - [`error_body`]: S3 error documents.
//! - [`compat`]: wire details where S3 and s3s differ (metadata encoding, presign codes).
//! - [`access_log`]: the facts of S3 server access log lines (bucket logging).
//! - [`cors`]: preflight OPTIONS and `Access-Control-*` headers from the bucket's CORS rules.
//! - [`console`]: the operator console's static files under `/_strata/console/`.

pub mod access_log;
pub mod audit;
pub mod compat;
pub mod conn;
pub mod console;
pub mod cors;
pub mod error_body;
pub mod limits;
pub mod lockout;
pub mod lockout_sync;
pub mod metrics_access;
pub mod post_form;
mod post_object;
pub mod ready;
pub mod signed_headers;
pub mod sigv2;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::service::S3Service;

pub use conn::{Transport, serve};
pub use limits::EdgeConfig;
pub use lockout::AuthLimiter;

use crate::metrics::EdgeEvent;
use error_body::{complete_error_body, error_code, error_response, s3_error_response};
use lockout::{EdgeInfo, LOGGED_KEY_CHARS, Verdict, sanitize};

/// Error bodies are small; anything bigger is passed through untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Paths in access log lines are cut to this many characters.
const LOGGED_PATH_CHARS: usize = 256;

/// The access key a request claims (header or presigned query), without verifying it. Only for
/// the access log of requests s3s never looked a key up for; never counted, never trusted.
pub fn claimed_access_key<B>(req: &Request<B>) -> Option<String> {
    let from_credential = |cred: &str| cred.split('/').next().map(str::to_string);
    if let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(pos) = auth.find("Credential=")
    {
        return from_credential(&auth[pos + "Credential=".len()..]);
    }
    let q = req.uri().query()?;
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("X-Amz-Credential=") {
            let v = urlencoding::decode(v).ok()?;
            return from_credential(&v);
        }
    }
    None
}

fn has_query_key(query: Option<&str>, key: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == key)
    })
}

/// GetObjectAttributes' ETag without quotes, as S3 writes it (small XML bodies only).
async fn unquote_attributes(resp: Response<s3s::Body>) -> Response<s3s::Body> {
    let small = http_body::Body::size_hint(resp.body())
        .upper()
        .is_some_and(|n| n as usize <= MAX_ERROR_BODY);
    if !small {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let bytes = compat::unquote_attributes_etag(&bytes)
        .map(Bytes::from)
        .unwrap_or(bytes);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(parts, s3s::Body::from(bytes))
}

pub fn new_request_id() -> String {
    let r: u64 = rand::random();
    format!("{r:016X}")
}

/// The id of the request being handled (the `x-amz-request-id` it is answered with).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Replaces a verified SigV2 request's signature (header or `Signature` parameter) with `sig`.
fn resign_v2(req: &mut Request<Incoming>, p: &sigv2::Pending, sig: &str) {
    if p.presigned {
        let Some(q) = req.uri().query() else { return };
        let enc = urlencoding::encode(sig);
        let q: Vec<String> = q
            .split('&')
            .map(|kv| {
                if kv.starts_with("Signature=") {
                    format!("Signature={enc}")
                } else {
                    kv.to_string()
                }
            })
            .collect();
        let pq = format!("{}?{}", req.uri().path(), q.join("&"));
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
            parts.path_and_query = Some(pq);
            if let Ok(u) = http::Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    } else if let Ok(v) = HeaderValue::from_str(&format!("AWS {}:{sig}", p.access_key)) {
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
}

pub struct Front {
    pub s3: S3Service,
    pub limiter: Arc<AuthLimiter>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub edge: EdgeConfig,
    /// The virtual-host parser s3s uses, to tell object uploads from XML calls the same way.
    pub host: Option<s3s::host::MultiDomain>,
    /// For what the front itself answers from bucket settings (CORS).
    pub engine: strata_engine::Engine,
    /// The S3 handlers, for the form uploads the front reads itself (PostObject).
    pub s3_ops: crate::s3::StrataS3,
    /// The server's region (a form's SigV4 credential must name it).
    pub region: String,
}

/// A response the front gives without s3s, and the reason counted for it.
struct Refused {
    resp: Response<s3s::Body>,
    event: Option<EdgeEvent>,
}

/// What [`Front::call_s3`] returns.
struct Called {
    resp: Response<s3s::Body>,
    close: bool,
    looked_up: Option<String>,
}

impl Front {
    /// The CORS rules of a bucket (`None`: no such bucket, or it could not be read).
    async fn cors_rules(&self, bucket: &str) -> Option<Vec<strata_metadata::CorsRule>> {
        match self.engine.bucket(bucket).await {
            Ok(b) => b.map(|b| b.cors),
            Err(e) => {
                tracing::warn!(error = %e, "CORS rules could not be read");
                None
            }
        }
    }

    /// Checks that need neither a secret nor the body. Ok((is an object upload, a SigV2
    /// signature still to check)) = hand the request to s3s (after [`Front::check_v2`]).
    fn screen(
        &self,
        req: &Request<Incoming>,
        request_id: &str,
        resource: &str,
    ) -> Result<(bool, Option<sigv2::Pending>), Box<Refused>> {
        let headers = req.headers();
        let query = signed_headers::query_pairs(req.uri().query());
        let refused = |resp, event| {
            Err(Box::new(Refused {
                resp,
                event: Some(event),
            }))
        };
        let vh_bucket = self.virtual_host_bucket(headers);
        let v2 = match sigv2::screen(
            req.method(),
            req.uri().path(),
            headers,
            &query,
            vh_bucket.as_deref(),
            time::OffsetDateTime::now_utc().unix_timestamp(),
        ) {
            Ok(v2) => v2,
            Err(p) => {
                return refused(
                    error_response(p.status, p.code, p.message, &[], request_id, resource),
                    EdgeEvent::SigV2Refused,
                );
            }
        };
        if compat::bad_amz_date_header(headers) {
            return Err(Box::new(Refused {
                resp: error_response(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    "AWS authentication requires a valid Date or x-amz-date header",
                    &[],
                    request_id,
                    resource,
                ),
                event: None,
            }));
        }
        // Presigned URLs: S3's codes for bad parameters, a lifetime over 7 days (s3s checks
        // expiry, not this bound) and a date in the future.
        if let Some((status, code, message)) =
            compat::presign_problem(&query, time::OffsetDateTime::now_utc().unix_timestamp())
        {
            return Err(Box::new(Refused {
                resp: error_response(status, code, message, &[], request_id, resource),
                event: None,
            }));
        }
        match signed_headers::check_signed_headers(headers, &query) {
            // SigV2 signs every x-amz-* header by construction.
            _ if v2.is_some() => {}
            Ok(()) => {}
            Err(signed_headers::Refusal::BadAuthorization) => {
                return refused(
                    error_response(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequest",
                        "invalid header: authorization",
                        &[],
                        request_id,
                        resource,
                    ),
                    EdgeEvent::UnsignedHeaders,
                );
            }
            Err(signed_headers::Refusal::NotSigned(names)) => {
                tracing::warn!(target: "strata::security", headers = %signed_headers::not_signed_text(&names),
                    "request refused: x-amz-* headers not covered by the signature");
                return refused(
                    error_response(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        "There were headers present in the request which were not signed",
                        &[("HeadersNotSigned", &signed_headers::not_signed_text(&names))],
                        request_id,
                        resource,
                    ),
                    EdgeEvent::UnsignedHeaders,
                );
            }
        }
        let upload = limits::is_object_upload(
            req.method(),
            req.uri(),
            headers,
            &query,
            self.host.as_ref().map(|h| h as &dyn s3s::host::S3Host),
        );
        if !upload && limits::announced_length(headers).is_some_and(|n| n > self.edge.max_xml_body)
        {
            return refused(
                s3_error_response(
                    StatusCode::BAD_REQUEST,
                    "MaxMessageLengthExceeded",
                    request_id,
                    resource,
                ),
                EdgeEvent::BodyTooLarge,
            );
        }
        Ok((upload, v2))
    }

    /// The bucket named by the Host header of a virtual-hosted request (SigV2 signs it).
    fn virtual_host_bucket(&self, headers: &http::HeaderMap) -> Option<String> {
        let host = self.host.as_ref()?;
        let hh = headers.get(http::header::HOST)?.to_str().ok()?;
        if hh.parse::<std::net::SocketAddr>().is_ok() || hh.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let vh = s3s::host::S3Host::parse_host_header(host, hh).ok()?;
        vh.bucket().map(str::to_string)
    }

    /// The SigV2 signature check: `Some(refusal)` when it does not match (403
    /// SignatureDoesNotMatch, counted against the key like s3s's), `None` to go on. An unknown
    /// key goes on too: s3s answers InvalidAccessKeyId.
    async fn check_v2(
        &self,
        req: &mut Request<Incoming>,
        p: &sigv2::Pending,
        request_id: &str,
        resource: &str,
    ) -> Option<Called> {
        let secret = match self.engine.access_secret(&p.access_key).await {
            Ok(Some(s)) => s,
            _ => return None,
        };
        if sigv2::signature_matches(&secret, &p.string_to_sign, &p.signature) {
            if p.s3s_string_to_sign != p.string_to_sign {
                // s3s checks again with its own resource form: hand it the signature it expects.
                let sig = sigv2::sign(&secret, &p.s3s_string_to_sign);
                resign_v2(req, p, &sig);
            }
            return None;
        }
        Some(Called {
            resp: error_response(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                &[],
                request_id,
                resource,
            ),
            close: false,
            looked_up: Some(p.access_key.clone()),
        })
    }

    /// Hands the request to s3s with its body guarded, noting which key s3s looked up. A body
    /// that went over the limit or stalled gets its S3 error here, whatever s3s made of it.
    async fn call_s3(
        &self,
        req: Request<Incoming>,
        upload: bool,
        peer: SocketAddr,
        request_id: &str,
        resource: &str,
    ) -> Result<Called, s3s::HttpError> {
        let flags = Arc::new(limits::BodyFlags::default());
        let had_body = limits::may_have_body(req.headers());
        let limit = (!upload).then_some(self.edge.max_xml_body);
        let stall = self.edge.body_timeout;
        // aws-chunked bodies must end with their final zero-length chunk (see framing.rs).
        let mut req = crate::framing::watch(req).map(|b| {
            s3s::Body::http_body(limits::GuardedBody::new(b, limit, stall, flags.clone()))
        });
        req.extensions_mut().insert(EdgeInfo {
            peer,
            limiter: self.limiter.clone(),
        });
        // Handlers record it where a request's effect outlives it (e.g. destruction records).
        req.extensions_mut()
            .insert(RequestId(request_id.to_string()));
        let (result, looked_up) = lockout::track_key_lookup(self.s3.call(req)).await;
        self.metrics
            .received(flags.received.load(Ordering::Relaxed));
        let mut resp = result?;
        // An error answered before the body was read to its end (e.g. a refused PutObject):
        // close the connection instead of leaving the rest of the body in front of the next
        // request (seen: the next request's first byte lost, a HEAD parsed as "EAD").
        let mut close = had_body
            && !flags.ended.load(Ordering::Relaxed)
            && (resp.status().is_client_error() || resp.status().is_server_error());
        if flags.too_large.load(Ordering::Relaxed) {
            self.metrics.edge(EdgeEvent::BodyTooLarge);
            close = true;
            resp = s3_error_response(
                StatusCode::BAD_REQUEST,
                "MaxMessageLengthExceeded",
                request_id,
                resource,
            );
        } else if flags.stalled.load(Ordering::Relaxed) {
            self.metrics.edge(EdgeEvent::BodyStalled);
            tracing::info!(target: "strata::security", remote = %peer, "request body stalled: answered RequestTimeout");
            close = true;
            resp = s3_error_response(
                StatusCode::BAD_REQUEST,
                "RequestTimeout",
                request_id,
                resource,
            );
        }
        Ok(Called {
            resp,
            close,
            looked_up,
        })
    }

    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<s3s::Body>, s3s::HttpError> {
        compat::fix_request_metadata(req.headers_mut());
        let attributes_request =
            req.method() == http::Method::GET && has_query_key(req.uri().query(), "attributes");
        let started = Instant::now();
        let request_id = new_request_id();
        let method = req.method().clone();
        let resource = req.uri().path().to_string();

        if console::is_console_path(req.uri().path()) {
            let mut resp = console::respond(
                self.edge.console,
                &method,
                req.uri().path(),
                req.headers().get(http::header::IF_NONE_MATCH),
            );
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-amz-request-id", v);
            }
            return Ok(resp);
        }
        if req.uri().path() == "/_strata/health" && method == http::Method::GET {
            // Liveness: 200 whatever the disks say; the capacity alert shows in the body.
            let mut body = "ok\n".to_string();
            if let Some(h) = self.engine.disk_health()
                && h.alert()
                && let Some((ratio, disk)) = h.capacity()
            {
                body.push_str(&format!(
                    "capacity alert: disk {disk} is {:.1}% used, above the {:.1}% threshold\n",
                    ratio * 100.0,
                    h.threshold() * 100.0
                ));
            }
            let mut resp = Response::new(s3s::Body::from(body));
            resp.headers_mut().insert(
                "x-amz-request-id",
                HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("0")),
            );
            return Ok(resp);
        }
        if req.uri().path() == "/_strata/ready" && method == http::Method::GET {
            let (status, body) = match self.metrics.readiness.check(&self.engine).await {
                Ok(()) => (http::StatusCode::OK, "ready\n".to_string()),
                Err(why) => {
                    tracing::warn!(%why, "readiness probe failed");
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    )
                }
            };
            let mut resp = Response::new(s3s::Body::from(body));
            *resp.status_mut() = status;
            return Ok(resp);
        }
        if req.uri().path() == "/_strata/metrics" && method == http::Method::GET {
            if !self.edge.metrics_access.allows(req.headers()) {
                tracing::info!(target: "strata::security", %peer, "metrics refused: no valid bearer token");
                let mut resp = Response::new(s3s::Body::from(
                    "metrics need a bearer token (--metrics-token-file) or `strata admin metrics`\n"
                        .to_string(),
                ));
                *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"strata-metrics\""),
                );
                return Ok(resp);
            }
            // Per-bucket series name buckets: only to callers with the token (closed default).
            let named = !matches!(
                self.edge.metrics_access,
                metrics_access::MetricsAccess::Public
            );
            let text = self.metrics.render()
                + &self.metrics.render_engine().await
                + &self.metrics.render_usage(named).await;
            let mut resp = Response::new(s3s::Body::from(text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(resp);
        }

        let claimed_key = claimed_access_key(&req);
        let audit_facts = audit::Facts::capture(&req, strata_engine::now_ms());
        // CORS: the bucket addressed and the Origin of a browser request.
        let host = self.host.as_ref().map(|h| h as &dyn s3s::host::S3Host);
        let cors_bucket = cors::request_bucket(req.uri(), req.headers(), host);
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let preflight = method == http::Method::OPTIONS;
        let cors_rules = match (&cors_bucket, origin.is_some() || preflight) {
            (Some(b), true) => self.cors_rules(b).await,
            _ => None,
        };
        // Bucket logging: the request's facts, if its bucket logs (configuration cached).
        let logged = match &cors_bucket {
            Some(b) => self.engine.logging_target(b).await.map(|t| {
                let at = strata_engine::now_ms();
                (t, access_log::Facts::capture(&req, b, at))
            }),
            None => None,
        };
        let Called {
            mut resp,
            close,
            looked_up,
        } = if !preflight && limits::is_form_post(&method, req.headers()) {
            self.post_object(req, peer, &request_id, &resource).await
        } else if preflight {
            Called {
                resp: cors::preflight(cors_rules.as_deref(), req.headers(), &request_id, &resource),
                close: limits::may_have_body(req.headers()),
                looked_up: None,
            }
        } else {
            match self.screen(&req, &request_id, &resource) {
                Err(r) => {
                    if let Some(e) = r.event {
                        self.metrics.edge(e);
                    }
                    Called {
                        resp: r.resp,
                        // The body was not read: do not leave it for the next request to trip over.
                        close: limits::may_have_body(req.headers()),
                        looked_up: None,
                    }
                }
                Ok((upload, v2)) => {
                    let refused = match &v2 {
                        Some(p) => self.check_v2(&mut req, p, &request_id, &resource).await,
                        None => None,
                    };
                    match refused {
                        Some(mut r) => {
                            r.close = limits::may_have_body(req.headers());
                            r
                        }
                        None => {
                            self.call_s3(req, upload, peer, &request_id, &resource)
                                .await?
                        }
                    }
                }
            }
        };
        // An operation whose success status s3s does not carry (RestoreObject's 202,
        // PutBucketTagging's 204) sets it here.
        if let Some(o) = resp
            .extensions()
            .get::<crate::s3::StatusOverride>()
            .copied()
            && resp.status().is_success()
        {
            *resp.status_mut() = o.0;
        }
        let mut status = resp.status();
        let mut code = None;
        let mut auth_slowdown = false;
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
            let mut bytes = if small {
                body.collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default()
            } else {
                Bytes::new()
            };
            code = error_code(&bytes);
            // Failed signatures count against the key s3s checked, and may be answered SlowDown.
            let verdict = match code.as_deref() {
                Some("SignatureDoesNotMatch") => {
                    self.limiter.record_failure(looked_up.as_deref(), peer.ip())
                }
                Some("InvalidAccessKeyId") => self.limiter.record_failure(None, peer.ip()),
                _ => Verdict::Plain,
            };
            if verdict == Verdict::SlowDown {
                auth_slowdown = true;
                self.metrics.edge(EdgeEvent::AuthSlowDown);
                let (p, b) = s3_error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    &request_id,
                    &resource,
                )
                .into_parts();
                (parts, bytes) = (p, b.bytes().unwrap_or_default());
                status = parts.status;
                code = Some("SlowDown".into());
            } else if (is_xml || code.is_some())
                && let Some(b) = complete_error_body(&bytes, &request_id, &resource)
            {
                bytes = Bytes::from(b);
            }
            if !parts.headers.contains_key(http::header::CONTENT_TYPE) && !bytes.is_empty() {
                parts.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/xml"),
                );
            }
            if method == http::Method::HEAD {
                parts.headers.remove(http::header::CONTENT_LENGTH);
                resp = Response::from_parts(parts, s3s::Body::empty());
            } else {
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                resp = Response::from_parts(parts, s3s::Body::from(bytes));
            }
        }
        // Access-Control-* on the actual response of a browser request the rules allow.
        if !preflight
            && let (Some(rules), Some(o)) = (&cors_rules, &origin)
            && let Some(rule) = cors::find_rule(rules, o, method.as_str(), &[])
        {
            cors::apply_rule(resp.headers_mut(), rule, o, &[]);
        }
        if status.is_success() {
            compat::fix_response_metadata(resp.headers_mut());
            if attributes_request {
                resp = unquote_attributes(resp).await;
            }
        }
        if close {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v.clone());
            resp.headers_mut().insert("x-amz-id-2", v);
        }
        let elapsed = started.elapsed();
        self.metrics
            .observe(method.as_str(), status.as_u16(), elapsed);
        // S3 server access log (bucket logging): only the key s3s verified names the requester.
        if let (Some((target, facts)), Some(b)) = (logged, &cors_bucket) {
            self.engine.log_access(facts.entry(
                b,
                target,
                peer.ip().to_string(),
                looked_up.clone(),
                &request_id,
                status.as_u16(),
                code.clone(),
                resp.headers(),
                elapsed.as_millis() as u64,
            ));
        }
        // The audit log: the answer goes out only once its record is durable.
        let rec = audit_facts
            .record(
                &self.engine,
                cors_bucket.as_deref(),
                peer,
                looked_up.as_deref(),
                claimed_key.as_deref(),
                &request_id,
                status.as_u16(),
                code.as_deref(),
                auth_slowdown,
                resp.headers(),
                elapsed,
            )
            .await;
        self.metrics
            .observe_op(&rec.operation, status.as_u16(), code.as_deref(), elapsed);
        // Usage metering: requests of known callers, and anonymous ones that were served.
        let known_user = looked_up.is_some() && rec.user.is_some();
        if let Some(b) = rec.bucket.as_deref()
            && !rec.auth_failed
            && (known_user || rec.status < 400)
        {
            self.engine.record_request(
                b,
                audit::usage_class(&rec.operation),
                rec.bytes_in,
                rec.bytes_out,
            );
        }
        if let Err(e) = self.engine.audit(rec).await {
            tracing::error!(request_id = %request_id, error = %e, "audit record not written: request answered InternalError");
            return Ok(s3_error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &request_id,
                &resource,
            ));
        }
        // The access log: who, what, when, from where, result. Never a secret; untrusted strings
        // are cut and cleaned. `access_key` is the key s3s checked, else the (unchecked) claim.
        let who = looked_up.or(claimed_key);
        tracing::info!(
            target: "strata::access",
            request_id = %request_id,
            remote = %peer,
            access_key = %who.as_deref().map(|k| sanitize(k, LOGGED_KEY_CHARS)).unwrap_or_else(|| "-".into()),
            method = %method,
            path = %sanitize(&resource, LOGGED_PATH_CHARS),
            status = status.as_u16(),
            error = code.as_deref().unwrap_or("-"),
            millis = elapsed.as_millis() as u64,
        );
        let (parts, body) = resp.into_parts();
        let body = crate::metrics::CountingBody::wrap(body, self.metrics.sent_counter());
        Ok(Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
