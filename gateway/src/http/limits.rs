//! Resource limits of the HTTP edge: the settings ([`EdgeConfig`]), which requests may carry a
//! large body, which are HTML-form POSTs (read by the front itself), and the body wrapper
//! that caps non-upload bodies and times out bodies that stall. docs/security-limits.md lists
//! every limit and why it has its value.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use http_body::{Body, Frame, SizeHint};
use s3s::host::S3Host;

/// Limits and timeouts of the HTTP edge (the `strata serve` flags of the same names).
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Connections served at once; beyond it new connections get a 503 SlowDown and are closed.
    pub max_connections: usize,
    /// A client must send a request's complete header block within this time (hyper's
    /// header-read timeout). It also runs while a keep-alive connection waits for its next
    /// request.
    pub header_timeout: Duration,
    /// A connection with no bytes read or written for this long while no request is being
    /// handled is closed (keep-alive idle, a client that stopped reading a response).
    pub idle_timeout: Duration,
    /// A request body that delivers no byte for this long while the server waits for it fails
    /// with 400 RequestTimeout.
    pub body_timeout: Duration,
    /// Largest body of a request that is not an object upload (XML configurations,
    /// DeleteObjects, CompleteMultipartUpload, the admin API).
    pub max_xml_body: u64,
    /// Who may GET `/_strata/metrics`.
    pub metrics_access: super::metrics_access::MetricsAccess,
    /// Serve the operator console under `/_strata/console/` (`--no-console` turns it off).
    pub console: bool,
}

/// Default for [`EdgeConfig::max_xml_body`]: the largest valid S3 document is a DeleteObjects of
/// 1000 keys of 1024 bytes with every character escaped (~5.3 MB) or a CompleteMultipartUpload of
/// 10000 parts with every checksum (~3.5 MB).
pub const DEFAULT_MAX_XML_BODY: u64 = 8 * 1024 * 1024;

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_xml_body: DEFAULT_MAX_XML_BODY,
            metrics_access: Default::default(),
            console: true,
        }
    }
}

/// Sub-resources that turn an object PUT into an XML configuration call.
const OBJECT_XML_PUTS: &[&str] = &["acl", "legal-hold", "retention", "tagging"];

/// True when the request is an object upload (PutObject, UploadPart, and the copies, whose body
/// is empty): the only requests whose body may exceed `max_xml_body`. It mirrors how s3s routes
/// (virtual-hosted style through the same `S3Host`, path style otherwise), so a PutObject is
/// never capped; anything else is.
pub fn is_object_upload(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(String, String)],
    host: Option<&dyn S3Host>,
) -> bool {
    if method != Method::PUT
        || query
            .iter()
            .any(|(k, _)| OBJECT_XML_PUTS.contains(&k.as_str()))
    {
        return false;
    }
    let path = urlencoding::decode(uri.path()).unwrap_or_default();
    let host_header = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let vh_bucket = match (host, host_header) {
        (Some(h), Some(hh))
            if hh.parse::<std::net::SocketAddr>().is_err()
                && hh.parse::<std::net::IpAddr>().is_err() =>
        {
            match h.parse_host_header(hh) {
                Ok(vh) => vh.bucket().map(str::to_string),
                Err(_) => return false,
            }
        }
        _ => None,
    };
    let rest = path.strip_prefix('/').unwrap_or(&path);
    if vh_bucket.is_some() {
        !rest.is_empty()
    } else {
        rest.split_once('/')
            .is_some_and(|(b, k)| !b.is_empty() && !k.is_empty())
    }
}

/// True for an HTML-form POST (PostObject), which s3s would read into memory before any access
/// check: the front reads it itself, bounded (`post_form`). Broader than s3s's own test (any
/// `multipart/form-data...` Content-Type, any case, any of several headers), so s3s never sees
/// one.
pub fn is_form_post(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::POST
        && headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The body length a request announces (Content-Length, and the decoded length of an aws-chunked
/// body), the larger of both; None when neither is given or one is not a number.
pub fn announced_length(headers: &HeaderMap) -> Option<u64> {
    let num = |name: &str| {
        headers.get(name).map(|v| {
            std::str::from_utf8(v.as_bytes())
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    match (num("content-length"), num("x-amz-decoded-content-length")) {
        (Some(None), _) | (_, Some(None)) => None,
        (a, b) => a.flatten().max(b.flatten()),
    }
}

/// True when the request has (or may have) a body: the front closes the connection after
/// answering such a request without reading its body.
pub fn may_have_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes().iter().any(|&b| b != b'0'))
}

/// What happened to a request body, read by the front after s3s returned.
#[derive(Default, Debug)]
pub struct BodyFlags {
    pub too_large: AtomicBool,
    pub stalled: AtomicBool,
    /// The body was read to its end.
    pub ended: AtomicBool,
    /// Body bytes read so far (metrics).
    pub received: std::sync::atomic::AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
}

/// The request body as handed to s3s: counts bytes against `limit` (non-uploads only) and fails
/// when no data arrives for `stall` while someone waits for it. Failures set [`BodyFlags`] so the
/// front answers with the right S3 error whatever s3s or a handler made of the body error.
pub struct GuardedBody<B> {
    inner: B,
    limit: Option<u64>,
    seen: u64,
    stall: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    flags: Arc<BodyFlags>,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, limit: Option<u64>, stall: Duration, flags: Arc<BodyFlags>) -> Self {
        GuardedBody {
            inner,
            limit,
            seen: 0,
            stall,
            timer: None,
            flags,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    this.flags
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Some(limit) = this.limit
                        && this.seen > limit
                    {
                        this.flags.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge(limit)))));
                    }
                }
                if this.inner.is_end_stream() {
                    this.flags.ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.flags.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The clock runs only while the server is waiting for the client.
                let stall = this.stall;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.flags.stalled.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyError::Stalled(stall)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn req(
        method: Method,
        uri: &str,
        host: &str,
    ) -> (Method, Uri, HeaderMap, Vec<(String, String)>) {
        let uri: Uri = uri.parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, host.parse().unwrap());
        let q = crate::http::signed_headers::query_pairs(uri.query());
        (method, uri, h, q)
    }

    fn upload(method: Method, uri: &str, host: &str, vh: Option<&dyn S3Host>) -> bool {
        let (m, u, h, q) = req(method, uri, host);
        is_object_upload(&m, &u, &h, &q, vh)
    }

    #[test]
    fn only_object_uploads_escape_the_xml_cap() {
        let ip = "127.0.0.1:9000";
        assert!(upload(Method::PUT, "/b/k", ip, None));
        assert!(upload(
            Method::PUT,
            "/b/dir/k?partNumber=1&uploadId=x",
            ip,
            None
        ));
        assert!(!upload(Method::PUT, "/b", ip, None), "CreateBucket");
        assert!(!upload(Method::PUT, "/b/", ip, None));
        assert!(!upload(Method::PUT, "/b/k?tagging", ip, None));
        assert!(!upload(Method::PUT, "/b/k?retention", ip, None));
        assert!(!upload(Method::POST, "/b?delete", ip, None));
        assert!(!upload(Method::POST, "/b/k?uploadId=x", ip, None));
        let vh = s3s::host::MultiDomain::new(["s3.example.com"]).unwrap();
        let vh: &dyn S3Host = &vh;
        assert!(upload(Method::PUT, "/k", "b.s3.example.com", Some(vh)));
        assert!(
            !upload(Method::PUT, "/", "b.s3.example.com", Some(vh)),
            "CreateBucket"
        );
        assert!(
            !upload(Method::PUT, "/b", "s3.example.com", Some(vh)),
            "CreateBucket"
        );
        assert!(upload(Method::PUT, "/b/k", "s3.example.com", Some(vh)));
        assert!(
            upload(Method::PUT, "/b/k", ip, Some(vh)),
            "an IP host is path style"
        );
    }

    #[test]
    fn form_posts_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            " Multipart/Form-Data; boundary=x".parse().unwrap(),
        );
        assert!(is_form_post(&Method::POST, &h));
        assert!(!is_form_post(&Method::PUT, &h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/xml".parse().unwrap(),
        );
        assert!(!is_form_post(&Method::POST, &h));
        h.append(
            http::header::CONTENT_TYPE,
            "multipart/form-data+x".parse().unwrap(),
        );
        assert!(is_form_post(&Method::POST, &h));
    }

    #[test]
    fn announced_length_takes_the_larger() {
        let mut h = HeaderMap::new();
        assert_eq!(announced_length(&h), None);
        h.insert("content-length", "10".parse().unwrap());
        assert_eq!(announced_length(&h), Some(10));
        h.insert("x-amz-decoded-content-length", "99".parse().unwrap());
        assert_eq!(announced_length(&h), Some(99));
        h.insert("content-length", "ten".parse().unwrap());
        assert_eq!(announced_length(&h), None);
    }

    #[tokio::test]
    async fn guarded_body_caps_and_flags() {
        let chunks: Vec<_> = (0..3)
            .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![0u8; 600]))))
            .collect();
        let inner = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        let flags = Arc::new(BodyFlags::default());
        let body = GuardedBody::new(inner, Some(1000), Duration::from_secs(5), flags.clone());
        assert!(body.collect().await.is_err());
        assert!(flags.too_large.load(Ordering::Relaxed));
        assert!(!flags.stalled.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn guarded_body_times_out_a_stall() {
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .unwrap();
        let flags = Arc::new(BodyFlags::default());
        let mut body = GuardedBody::new(
            http_body_util::StreamBody::new(rx),
            None,
            Duration::from_millis(300),
            flags.clone(),
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abc"
        );
        let started = tokio::time::Instant::now();
        assert!(body.frame().await.unwrap().is_err());
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(flags.stalled.load(Ordering::Relaxed));
        drop(tx);
    }
}
