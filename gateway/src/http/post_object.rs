//! PostObject at the edge: an HTML-form upload (`POST /bucket`, `multipart/form-data`) is read
//! here, not by s3s (which would buffer the whole file before any check). In S3's order: the
//! form up to the file ([`post_form`], bounded), the authentication fields (SigV4
//! `x-amz-algorithm` / `-credential` / `-date` / `-signature`, SigV2 `AWSAccessKeyId` /
//! `signature`, or none: anonymous), the signature over the `policy` field as sent, the policy
//! (`crate::post_policy`: expiration, conditions, every field covered), then the write, which is
//! a PutObject (`StrataS3::op_post_object`: the same authorize(), ACL and SSE code) whose body is
//! the file part, streamed and held to `content-length-range`. The answer is S3's: 204 (or the
//! form's `success_action_status` 200 / 201 with a `PostResponse` document), or 303 to
//! `success_action_redirect`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use hmac::{KeyInit, Mac};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::S3Error;

use super::error_body::{error_response, s3_error_response, xml_escape};
use super::lockout::EdgeInfo;
use super::post_form::{self, FormError};
use super::{Called, Front, RequestId, limits};
use crate::post_policy;

/// The text S3 sends with MaxPostPreDataLengthExceeded (its spelling).
const PRE_DATA_MESSAGE: &str = "Your POST request fields preceeding the upload file was too large.";
/// After the file, what is left of the form (ignored fields, the closing boundary) is read up
/// to this much to keep the connection; more, and the connection is closed instead.
const TRAILER_LIMIT: u64 = 64 * 1024;

/// How the form authenticates.
enum Auth {
    Anonymous,
    V4 {
        access_key: String,
        date: String,
        region: String,
        signature: String,
    },
    V2 {
        access_key: String,
        signature: String,
    },
}

/// An answer given before the write, with what the lockout needs to know.
struct Refusal {
    resp: Response<s3s::Body>,
    looked_up: Option<String>,
}

fn refuse(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
    rid: &str,
    res: &str,
) -> Refusal {
    Refusal {
        resp: error_response(status, code, message, extra, rid, res),
        looked_up: None,
    }
}

fn missing_field(name: &str, rid: &str, res: &str) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        "InvalidArgument",
        &format!(
            "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
        ),
        &[("ArgumentName", name), ("ArgumentValue", "")],
        rid,
        res,
    )
}

/// Which authentication the form's fields ask for, with S3's errors for incomplete sets.
// The error is the answer itself, built at most once per request.
#[allow(clippy::result_large_err)]
fn auth_fields(
    form: &post_form::Form,
    region: &str,
    rid: &str,
    res: &str,
) -> Result<Auth, Refusal> {
    let v4 = ["x-amz-algorithm", "x-amz-credential", "x-amz-signature"]
        .iter()
        .any(|n| form.field(n).is_some());
    let v2 = form.field("awsaccesskeyid").is_some() || form.field("signature").is_some();
    if v4 {
        let need = |name: &str, shown: &str| {
            form.field(name)
                .ok_or_else(|| missing_field(shown, rid, res))
        };
        let algorithm = need("x-amz-algorithm", "X-Amz-Algorithm")?;
        let credential = need("x-amz-credential", "X-Amz-Credential")?;
        let date = need("x-amz-date", "X-Amz-Date")?;
        let signature = need("x-amz-signature", "X-Amz-Signature")?;
        need("policy", "Policy")?;
        if algorithm != "AWS4-HMAC-SHA256" {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
                &[
                    ("ArgumentName", "X-Amz-Algorithm"),
                    ("ArgumentValue", algorithm),
                ],
                rid,
                res,
            ));
        }
        let bad_credential = |m: &str| {
            refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                m,
                &[
                    ("ArgumentName", "X-Amz-Credential"),
                    ("ArgumentValue", credential),
                ],
                rid,
                res,
            )
        };
        let parts: Vec<&str> = credential.split('/').collect();
        let [ak, day, cred_region, service, terminal] = parts[..] else {
            return Err(bad_credential(
                "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            ));
        };
        if ak.is_empty() {
            return Err(bad_credential(
                "a non-empty Access Key (AKID) must be provided in the credential.",
            ));
        }
        if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_credential(&format!(
                "incorrect date format \"{day}\". This date in the credential must be in the format \"yyyyMMdd\"."
            )));
        }
        if service != "s3" || terminal != "aws4_request" {
            return Err(bad_credential(
                "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            ));
        }
        if cred_region != region {
            return Err(Refusal {
                resp: error_response(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    &format!("the region '{cred_region}' is wrong; expecting '{region}'"),
                    &[
                        ("ArgumentName", "X-Amz-Credential"),
                        ("ArgumentValue", credential),
                        ("Region", region),
                    ],
                    rid,
                    res,
                ),
                looked_up: None,
            });
        }
        let d = date.as_bytes();
        if d.len() != 16
            || d[8] != b'T'
            || d[15] != b'Z'
            || !d[..8].iter().chain(&d[9..15]).all(u8::is_ascii_digit)
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "X-Amz-Date must be formated via ISO8601 Long format",
                &[("ArgumentName", "X-Amz-Date"), ("ArgumentValue", date)],
                rid,
                res,
            ));
        }
        return Ok(Auth::V4 {
            access_key: ak.to_string(),
            date: day.to_string(),
            region: cred_region.to_string(),
            signature: signature.to_string(),
        });
    }
    if v2 {
        let ak = form
            .field("awsaccesskeyid")
            .ok_or_else(|| missing_field("AWSAccessKeyId", rid, res))?;
        let signature = form
            .field("signature")
            .ok_or_else(|| missing_field("Signature", rid, res))?;
        form.field("policy")
            .ok_or_else(|| missing_field("Policy", rid, res))?;
        return Ok(Auth::V2 {
            access_key: ak.to_string(),
            signature: signature.to_string(),
        });
    }
    Ok(Auth::Anonymous)
}

/// The SigV4 signature of a POST policy: hex HMAC-SHA256 of the base64 text as sent, under the
/// signing key of the credential's day and region.
pub fn sigv4_policy_signature(secret: &[u8], day: &str, region: &str, policy_b64: &str) -> String {
    let mac = |key: &[u8], data: &[u8]| -> Vec<u8> {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let mut k = b"AWS4".to_vec();
    k.extend_from_slice(secret);
    let k = mac(&k, day.as_bytes());
    let k = mac(&k, region.as_bytes());
    let k = mac(&k, b"s3");
    let k = mac(&k, b"aws4_request");
    hex::encode(mac(&k, policy_b64.as_bytes()))
}

/// What the file body saw, read after the write.
#[derive(Default)]
struct FileFlags {
    too_large: AtomicBool,
    too_small: AtomicBool,
    malformed: AtomicBool,
    seen: AtomicU64,
}

/// The file part as a PutObject body, held to `content-length-range` as it streams: more than
/// the maximum fails at once, fewer than the minimum fails at the end (before the engine
/// commits anything).
struct FileBody {
    field: multer::Field<'static>,
    range: Option<(u64, u64)>,
    seen: u64,
    done: bool,
    flags: Arc<FileFlags>,
}

impl Stream for FileBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.field).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                this.seen += b.len() as u64;
                this.flags.seen.store(this.seen, Ordering::Relaxed);
                if this.range.is_some_and(|(_, max)| this.seen > max) {
                    this.flags.too_large.store(true, Ordering::Relaxed);
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other("file too large"))));
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                if !matches!(e, multer::Error::StreamReadFailed(_)) {
                    this.flags.malformed.store(true, Ordering::Relaxed);
                }
                this.done = true;
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            Poll::Ready(None) => {
                this.done = true;
                if this.range.is_some_and(|(min, _)| this.seen < min) {
                    this.flags.too_small.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(std::io::Error::other("file too small"))));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// An S3 error from the write path as a response.
fn s3_error_to_response(e: &S3Error, rid: &str, res: &str) -> Response<s3s::Body> {
    let code = e.code().as_str();
    let status = e.status_code().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e.message() {
        Some(m) => error_response(status, code, m, &[], rid, res),
        None => s3_error_response(status, code, rid, res),
    }
}

/// `application/x-www-form-urlencoded` text, as S3 writes the redirect's query.
fn form_encode(s: &str) -> String {
    urlencoding::encode(s).replace("%20", "+")
}

impl Front {
    /// The bucket a form POST addresses (`POST /bucket` path style, `POST /` on a virtual host).
    fn post_bucket(&self, req: &Request<Incoming>) -> Result<String, StatusCode> {
        let path = urlencoding::decode(req.uri().path())
            .map(|p| p.into_owned())
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        let rest = path.strip_prefix('/').unwrap_or(&path);
        if let Some(b) = self.virtual_host_bucket(req.headers()) {
            return if rest.is_empty() {
                Ok(b)
            } else {
                Err(StatusCode::METHOD_NOT_ALLOWED)
            };
        }
        let b = rest.strip_suffix('/').unwrap_or(rest);
        if b.is_empty() || b.contains('/') {
            return Err(StatusCode::METHOD_NOT_ALLOWED);
        }
        Ok(b.to_string())
    }

    /// Serves an HTML-form POST (PostObject).
    pub(super) async fn post_object(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        rid: &str,
        res: &str,
    ) -> Called {
        let flags = Arc::new(limits::BodyFlags::default());
        let (resp, looked_up) = match self.post_inner(req, peer, rid, res, flags.clone()).await {
            Ok(r) => (r, None),
            Err(r) => (r.resp, r.looked_up),
        };
        let mut resp = resp;
        if flags.stalled.load(Ordering::Relaxed) && !resp.status().is_success() {
            self.metrics.edge(crate::metrics::EdgeEvent::BodyStalled);
            resp = s3_error_response(StatusCode::BAD_REQUEST, "RequestTimeout", rid, res);
        }
        self.metrics
            .received(flags.received.load(Ordering::Relaxed));
        Called {
            close: !flags.ended.load(Ordering::Relaxed),
            resp,
            looked_up,
        }
    }

    async fn post_inner(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        rid: &str,
        res: &str,
        flags: Arc<limits::BodyFlags>,
    ) -> Result<Response<s3s::Body>, Refusal> {
        let plain = |status, code: &str| Refusal {
            resp: s3_error_response(status, code, rid, res),
            looked_up: None,
        };
        let bucket = match self.post_bucket(&req) {
            Ok(b) => b,
            Err(StatusCode::METHOD_NOT_ALLOWED) => {
                return Err(plain(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
            }
            Err(_) => return Err(plain(StatusCode::BAD_REQUEST, "InvalidURI")),
        };
        let malformed = || {
            refuse(
                StatusCode::BAD_REQUEST,
                "MalformedPOSTRequest",
                "The body of your POST request is not well-formed multipart/form-data.",
                &[],
                rid,
                res,
            )
        };
        let boundary = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(post_form::boundary)
            .ok_or_else(malformed)?;
        let secure = req
            .extensions()
            .get::<super::Transport>()
            .is_some_and(|t| t.secure);
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let virtual_host = self.virtual_host_bucket(req.headers()).is_some();
        let mut ext = http::Extensions::new();
        ext.insert(EdgeInfo {
            peer,
            limiter: self.limiter.clone(),
        });
        ext.insert(RequestId(rid.to_string()));
        if let Some(t) = req.extensions().get::<super::Transport>() {
            ext.insert(*t);
        }

        let body =
            limits::GuardedBody::new(req.into_body(), None, self.edge.body_timeout, flags.clone())
                .into_data_stream();
        let mut form = match post_form::read_form(body, &boundary).await {
            Ok(f) => f,
            Err(FormError::PreDataTooLarge) => {
                self.metrics
                    .edge(crate::metrics::EdgeEvent::FormPostRefused);
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "MaxPostPreDataLengthExceeded",
                    PRE_DATA_MESSAGE,
                    &[(
                        "MaxPostPreDataLengthBytes",
                        &post_form::PRE_DATA_LIMIT.to_string(),
                    )],
                    rid,
                    res,
                ));
            }
            Err(FormError::NoFile) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "POST requires exactly one file upload per request.",
                    &[("ArgumentName", "file"), ("ArgumentValue", "0")],
                    rid,
                    res,
                ));
            }
            Err(FormError::Malformed) => return Err(malformed()),
            Err(FormError::Body(_)) => {
                return Err(plain(StatusCode::BAD_REQUEST, "IncompleteBody"));
            }
        };

        let region = self.region.clone();
        let auth = auth_fields(&form, &region, rid, res)?;
        // The signature covers the policy text as sent, checked before the policy is parsed.
        let policy_text = form.field("policy").map(str::to_string);
        let credentials = match &auth {
            Auth::Anonymous => None,
            Auth::V4 { access_key, .. } | Auth::V2 { access_key, .. } => {
                let Ok(Some(secret)) = self.engine.access_secret(access_key).await else {
                    return Err(refuse(
                        StatusCode::FORBIDDEN,
                        "InvalidAccessKeyId",
                        "The AWS Access Key Id you provided does not exist in our records.",
                        &[("AWSAccessKeyId", access_key)],
                        rid,
                        res,
                    ));
                };
                let policy = policy_text.as_deref().unwrap_or_default();
                let matches = match &auth {
                    Auth::V4 {
                        date,
                        region,
                        signature,
                        ..
                    } => {
                        let want = sigv4_policy_signature(&secret, date, region, policy);
                        subtle::ConstantTimeEq::ct_eq(
                            want.as_bytes(),
                            signature.to_ascii_lowercase().as_bytes(),
                        )
                        .into()
                    }
                    Auth::V2 { signature, .. } => {
                        super::sigv2::signature_matches(&secret, policy, signature)
                    }
                    Auth::Anonymous => false,
                };
                if !matches {
                    let provided = match &auth {
                        Auth::V4 { signature, .. } | Auth::V2 { signature, .. } => {
                            signature.clone()
                        }
                        Auth::Anonymous => String::new(),
                    };
                    return Err(Refusal {
                        resp: error_response(
                            StatusCode::FORBIDDEN,
                            "SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                            &[
                                ("AWSAccessKeyId", access_key),
                                ("StringToSign", policy),
                                ("SignatureProvided", &provided),
                            ],
                            rid,
                            res,
                        ),
                        looked_up: Some(access_key.clone()),
                    });
                }
                if let Err(e) = super::lockout::check_verified(&ext, Some(access_key)) {
                    return Err(Refusal {
                        resp: s3_error_to_response(&e, rid, res),
                        looked_up: Some(access_key.clone()),
                    });
                }
                // The handlers look the caller up by its key; the secret is not needed again.
                Some(s3s::auth::Credentials {
                    access_key: access_key.clone(),
                    secret_key: s3s::auth::SecretKey::from(String::new()),
                })
            }
        };

        // `${filename}` is expanded in every field before the policy is checked (S3); without a
        // `filename` parameter it stays as it is.
        if let Some(name) = form.filename.as_deref().map(post_form::base_name) {
            let name = name.to_string();
            for (n, v) in form.fields.iter_mut() {
                if !post_policy::exempt_field(&n.to_ascii_lowercase()) && v.contains("${filename}")
                {
                    *v = v.replace("${filename}", &name);
                }
            }
        }
        let policy = match &policy_text {
            Some(t) => Some(post_policy::parse(t).map_err(|m| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidPolicyDocument",
                    &m,
                    &[],
                    rid,
                    res,
                )
            })?),
            None => None,
        };
        if let Some(p) = &policy
            && let Err(v) = p.check_fields(strata_engine::now_ms(), &bucket, &form.fields)
        {
            tracing::info!(bucket = %bucket, violation = %super::lockout::sanitize(&v.message(), 256), "form POST refused by its policy");
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &v.message(),
                &[],
                rid,
                res,
            ));
        }
        let Some(key) = form.field("key").map(str::to_string) else {
            return Err(missing_field("key", rid, res));
        };

        let range = policy.as_ref().and_then(|p| p.size_range());
        let file_flags = Arc::new(FileFlags::default());
        let body = FileBody {
            field: form.file,
            range,
            seen: 0,
            done: false,
            flags: file_flags.clone(),
        };
        let fields = std::mem::take(&mut form.fields);
        let success_redirect = fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("success_action_redirect"))
            .or_else(|| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("redirect"))
            })
            .map(|(_, v)| v.clone())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
        let status_field = fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("success_action_status"))
            .map(|(_, v)| v.trim().to_string());
        let written = self
            .s3_ops
            .op_post_object(crate::s3::post::PostRequest {
                bucket: bucket.clone(),
                key: key.clone(),
                fields,
                credentials,
                extensions: ext,
                body: s3s::dto::StreamingBlob::wrap(body),
            })
            .await;
        let out = match written {
            Ok(o) => o.output,
            Err(e) => {
                let seen = file_flags.seen.load(Ordering::Relaxed).to_string();
                let size = |code: &str, message: &str, bound: (&str, u64)| {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        code,
                        message,
                        &[("ProposedSize", &seen), (bound.0, &bound.1.to_string())],
                        rid,
                        res,
                    )
                };
                return Err(if file_flags.too_large.load(Ordering::Relaxed) {
                    let max = range.map(|r| r.1).unwrap_or_default();
                    size(
                        "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed size",
                        ("MaxSizeAllowed", max),
                    )
                } else if file_flags.too_small.load(Ordering::Relaxed) {
                    let min = range.map(|r| r.0).unwrap_or_default();
                    size(
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed size",
                        ("MinSizeAllowed", min),
                    )
                } else if file_flags.malformed.load(Ordering::Relaxed) {
                    malformed()
                } else {
                    Refusal {
                        resp: s3_error_to_response(&e, rid, res),
                        looked_up: None,
                    }
                });
            }
        };

        // What follows the file is ignored; read a little of it to keep the connection.
        let consumed = form.consumed.clone();
        let at_end = consumed.load(Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while consumed.load(Ordering::Relaxed) - at_end <= TRAILER_LIMIT {
                match form.rest.next_field().await {
                    Ok(Some(mut f)) => while let Ok(Some(_)) = f.chunk().await {},
                    _ => break,
                }
            }
        })
        .await;

        let etag = out
            .e_tag
            .as_ref()
            .map(|e| format!("\"{}\"", e.value()))
            .unwrap_or_default();
        let scheme = if secure { "https" } else { "http" };
        let key_enc = urlencoding::encode(&key).into_owned();
        let location = if virtual_host {
            format!("{scheme}://{host}/{key_enc}")
        } else {
            format!("{scheme}://{host}/{bucket}/{key_enc}")
        };
        let mut resp = match (&success_redirect, status_field.as_deref()) {
            (Some(url), _) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let target = format!(
                    "{url}{sep}bucket={}&key={}&etag={}",
                    form_encode(&bucket),
                    form_encode(&key),
                    form_encode(&etag)
                );
                let mut r = Response::new(s3s::Body::empty());
                *r.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(v) = HeaderValue::from_str(&target) {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                r
            }
            (None, Some("201")) => {
                let doc = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                    xml_escape(&location),
                    xml_escape(&bucket),
                    xml_escape(&key),
                    xml_escape(&etag)
                );
                let mut r = Response::new(s3s::Body::from(doc));
                *r.status_mut() = StatusCode::CREATED;
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/xml"),
                );
                r
            }
            (None, s) => {
                let mut r = Response::new(s3s::Body::empty());
                *r.status_mut() = if s == Some("200") {
                    StatusCode::OK
                } else {
                    StatusCode::NO_CONTENT
                };
                r
            }
        };
        let h = resp.headers_mut();
        let mut set = |name: &'static str, v: Option<&str>| {
            if let Some(v) = v
                && let Ok(v) = HeaderValue::from_str(v)
            {
                h.insert(name, v);
            }
        };
        set("etag", Some(&etag));
        if success_redirect.is_none() {
            set("location", Some(&location));
        }
        set("x-amz-version-id", out.version_id.as_deref());
        set(
            "x-amz-server-side-encryption",
            out.server_side_encryption.as_ref().map(|s| s.as_str()),
        );
        set(
            "x-amz-server-side-encryption-aws-kms-key-id",
            out.ssekms_key_id.as_deref(),
        );
        set(
            "x-amz-server-side-encryption-customer-algorithm",
            out.sse_customer_algorithm.as_deref(),
        );
        set(
            "x-amz-server-side-encryption-customer-key-md5",
            out.sse_customer_key_md5.as_deref(),
        );
        set("x-amz-checksum-crc32", out.checksum_crc32.as_deref());
        set("x-amz-checksum-crc32c", out.checksum_crc32c.as_deref());
        set(
            "x-amz-checksum-crc64nvme",
            out.checksum_crc64nvme.as_deref(),
        );
        set("x-amz-checksum-sha1", out.checksum_sha1.as_deref());
        set("x-amz-checksum-sha256", out.checksum_sha256.as_deref());
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_sigv4_post_example_signature() {
        // AWS's "Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version 4)".
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        assert_eq!(
            sigv4_policy_signature(
                b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20151229",
                "us-east-1",
                policy
            ),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
        // The same document parses as a POST policy.
        let p = post_policy::parse(policy).unwrap();
        assert_eq!(p.conditions.len(), 11);
    }

    #[test]
    fn redirect_query_is_form_encoded() {
        assert_eq!(form_encode("a b/c"), "a+b%2Fc");
        assert_eq!(form_encode("\"e\""), "%22e%22");
    }
}
