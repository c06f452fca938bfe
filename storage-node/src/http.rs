//! The node's HTTP API (hyper 1) and [`RemoteChunkStore`], its client. Both sides go through the
//! same [`LocalChunkStore`], so the in-process and remote paths share one implementation.
//!
//! Routes (`<blob>` is 32 hex chars, `<index>` a canonical decimal u32). Every chunk route and
//! heal need header `x-strata-layout` = the chunk's layout in wire form
//! ([`Layout::to_wire`], e.g. `7:4+2:disk0,disk1,disk2,disk3,disk4,disk5`), exactly once:
//! - `PUT /chunks/<blob>/<index>` body = plaintext, header `x-strata-dek` = 64 hex -> 204
//!   (409 `already-exists` if any file of the chunk exists)
//! - `GET /chunks/<blob>/<index>` header `x-strata-dek` -> 200 body; `x-strata-bad-shards` lists
//!   shard indices that were unusable
//! - `DELETE /chunks/<blob>/<index>` -> 204
//! - `HEAD /chunks/<blob>/<index>` -> 200 with `x-strata-chunk-len`, `x-strata-healthy-shards`,
//!   `x-strata-total-shards`
//! - `POST /heal/<blob>/<index>` -> 200 JSON [`HealReport`](crate::HealReport)
//! - `POST /scrub[?repair=true|false]` body = every known layout, one wire form per line (at
//!   most [`MAX_SCRUB_LAYOUTS`], body at most 1 MiB) -> 200 JSON
//!   [`ScrubReport`](crate::ScrubReport)
//!
//! Errors: status plus `x-strata-error` (`not-found`, `already-exists`, `unrecoverable`,
//! `integrity`, `insufficient-storage`, `invalid`, `io`) and a text body. The DEK travels in a
//! header for now: bind the node to 127.0.0.1 (or put TLS in front) until node-to-node auth
//! exists.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use zeroize::Zeroizing;

use crate::{ChunkId, ChunkService, ChunkStat, DataKey, Layout, LocalChunkStore, NodeError};

pub const DEK_HEADER: &str = "x-strata-dek";
pub const LAYOUT_HEADER: &str = "x-strata-layout";
pub const ERROR_HEADER: &str = "x-strata-error";
/// Most layouts one scrub request may list.
pub const MAX_SCRUB_LAYOUTS: usize = 4096;
const MAX_SCRUB_BODY: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

type Body = Full<Bytes>;

pub(crate) fn parse_chunk_path(path: &str) -> Option<ChunkId> {
    let mut parts = path.split('/');
    let (blob_hex, index_text) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || blob_hex.len() != 32 {
        return None;
    }
    let blob: [u8; 16] = hex::decode(blob_hex).ok()?.try_into().ok()?;
    let index: u32 = index_text.parse().ok()?;
    // Canonical decimal only, so one chunk has exactly one URL.
    (index.to_string() == index_text).then_some(ChunkId { blob, index })
}

fn chunk_path(id: ChunkId) -> String {
    format!("{}/{}", hex::encode(id.blob), id.index)
}

pub(crate) fn dek_from_headers(headers: &HeaderMap) -> Result<DataKey, NodeError> {
    let value = headers
        .get(DEK_HEADER)
        .ok_or_else(|| NodeError::Invalid(format!("missing {DEK_HEADER}")))?;
    let bytes = Zeroizing::new(
        hex::decode(value.as_bytes())
            .map_err(|_| NodeError::Invalid(format!("{DEK_HEADER} is not hex")))?,
    );
    DataKey::from_bytes(&bytes).map_err(|e| NodeError::Invalid(e.to_string()))
}

/// The layout of the request: header present exactly once, strict wire form.
pub(crate) fn layout_from_headers(headers: &HeaderMap) -> Result<Layout, NodeError> {
    let mut values = headers.get_all(LAYOUT_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(NodeError::Invalid(format!(
            "exactly one {LAYOUT_HEADER} header is required"
        )));
    };
    let text = value
        .to_str()
        .map_err(|_| NodeError::Invalid(format!("{LAYOUT_HEADER} is not visible ASCII")))?;
    Layout::parse_wire(text)
}

/// `repair=true|false|1|0`, or no query at all; anything else is refused.
fn parse_scrub_query(query: Option<&str>) -> Result<bool, NodeError> {
    match query {
        None | Some("repair=false" | "repair=0") => Ok(false),
        Some("repair=true" | "repair=1") => Ok(true),
        Some(other) => Err(NodeError::Invalid(format!(
            "bad scrub query {:?}",
            crate::truncated(other, 64)
        ))),
    }
}

/// A scrub body: one layout wire form per line (a final newline is optional).
fn parse_scrub_layouts(body: &[u8]) -> Result<Vec<Layout>, NodeError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| NodeError::Invalid("scrub body is not UTF-8".into()))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Err(NodeError::Invalid(
            "scrub needs the list of known layouts".into(),
        ));
    }
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() > MAX_SCRUB_LAYOUTS {
        return Err(NodeError::Invalid(format!(
            "more than {MAX_SCRUB_LAYOUTS} layouts"
        )));
    }
    lines.into_iter().map(Layout::parse_wire).collect()
}

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

pub(crate) fn error_response(error: &NodeError) -> Response<Body> {
    let (status, code) = match error {
        NodeError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
        NodeError::AlreadyExists => (StatusCode::CONFLICT, "already-exists"),
        NodeError::Unrecoverable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unrecoverable"),
        NodeError::Integrity => (StatusCode::UNPROCESSABLE_ENTITY, "integrity"),
        NodeError::InsufficientStorage => {
            (StatusCode::INSUFFICIENT_STORAGE, "insufficient-storage")
        }
        NodeError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        NodeError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "io"),
    };
    let mut response = respond(status, Bytes::from(error.to_string()));
    response
        .headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code));
    if let NodeError::Unrecoverable { available, needed } = error {
        response
            .headers_mut()
            .insert("x-strata-available", HeaderValue::from(*available));
        response
            .headers_mut()
            .insert("x-strata-needed", HeaderValue::from(*needed));
    }
    response
}

async fn handle(store: Arc<LocalChunkStore>, request: Request<Incoming>) -> Response<Body> {
    match route(&store, request).await {
        Ok(response) => response,
        Err(error) => {
            if !matches!(error, NodeError::NotFound) {
                tracing::warn!(%error, "chunk request failed");
            }
            error_response(&error)
        }
    }
}

async fn route(
    store: &LocalChunkStore,
    request: Request<Incoming>,
) -> Result<Response<Body>, NodeError> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if let Some(rest) = path.strip_prefix("/chunks/") {
        let id =
            parse_chunk_path(rest).ok_or_else(|| NodeError::Invalid("bad chunk path".into()))?;
        let layout = layout_from_headers(request.headers())?;
        return match method {
            Method::PUT => {
                let dek = dek_from_headers(request.headers())?;
                let declared = request
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|len| len > store.config().max_chunk_len as u64) {
                    return Err(NodeError::Invalid(format!(
                        "chunk exceeds {} bytes",
                        store.config().max_chunk_len
                    )));
                }
                // Bound the body: a chunk is at most max_chunk_len, never more is buffered.
                let body = Limited::new(request.into_body(), store.config().max_chunk_len)
                    .collect()
                    .await
                    .map_err(|e| NodeError::Invalid(format!("request body: {e}")))?
                    .to_bytes();
                store.put_chunk(&layout, id, &dek, body).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::GET => {
                let dek = dek_from_headers(request.headers())?;
                let (bytes, report) = store.get_chunk_with_report(&layout, id, &dek).await?;
                let mut response = respond(StatusCode::OK, bytes);
                if !report.bad_shards.is_empty() {
                    let list: Vec<String> = report
                        .bad_shards
                        .iter()
                        .map(|b| b.shard.to_string())
                        .collect();
                    if let Ok(v) = HeaderValue::from_str(&list.join(",")) {
                        response.headers_mut().insert("x-strata-bad-shards", v);
                    }
                }
                Ok(response)
            }
            Method::DELETE => {
                store.delete_chunk(&layout, id).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::HEAD => {
                let stat = store.stat_chunk(&layout, id).await?;
                let mut response = respond(StatusCode::OK, Bytes::new());
                let h = response.headers_mut();
                h.insert("x-strata-chunk-len", HeaderValue::from(stat.len));
                h.insert(
                    "x-strata-healthy-shards",
                    HeaderValue::from(stat.healthy_shards),
                );
                h.insert(
                    "x-strata-total-shards",
                    HeaderValue::from(stat.total_shards),
                );
                Ok(response)
            }
            _ => Ok(respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new())),
        };
    }
    if let (&Method::POST, Some(rest)) = (&method, path.strip_prefix("/heal/")) {
        let id =
            parse_chunk_path(rest).ok_or_else(|| NodeError::Invalid("bad chunk path".into()))?;
        let layout = layout_from_headers(request.headers())?;
        let report = store.heal(&layout, id).await?;
        return Ok(json_response(&report));
    }
    if method == Method::POST && path == "/scrub" {
        let repair = parse_scrub_query(request.uri().query())?;
        let body = Limited::new(request.into_body(), MAX_SCRUB_BODY)
            .collect()
            .await
            .map_err(|e| NodeError::Invalid(format!("request body: {e}")))?
            .to_bytes();
        let layouts = parse_scrub_layouts(&body)?;
        let report = store.scrub(&layouts, repair).await?;
        return Ok(json_response(&report));
    }
    Ok(respond(
        StatusCode::NOT_FOUND,
        Bytes::from_static(b"no such route"),
    ))
}

fn json_response<T: serde::Serialize>(value: &T) -> Response<Body> {
    let mut response = respond(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(value).expect("serialisable report")),
    );
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves the node API on `listener` until the task is dropped/aborted.
pub async fn serve_http(store: Arc<LocalChunkStore>, listener: tokio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let store = store.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(store, request).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}

/// A [`ChunkService`] that talks to a node's HTTP API.
#[derive(Clone)]
pub struct RemoteChunkStore {
    base_url: String,
    client: Client<HttpConnector, Body>,
}

impl std::fmt::Debug for RemoteChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteChunkStore")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl RemoteChunkStore {
    /// `base_url` like `http://127.0.0.1:9100` (no trailing slash needed).
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { base_url, client }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        layout: &Layout,
        dek: Option<&DataKey>,
        body: Bytes,
    ) -> Result<Response<Bytes>, NodeError> {
        layout.validate()?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header(LAYOUT_HEADER, layout.to_wire());
        if let Some(dek) = dek {
            let hex_key = Zeroizing::new(hex::encode(dek.expose()));
            let mut value = HeaderValue::from_str(&hex_key).expect("hex is a valid header value");
            value.set_sensitive(true);
            request = request.header(DEK_HEADER, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| {
                NodeError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "node request timed out",
                ))
            })?
            .map_err(|e| NodeError::Io(std::io::Error::other(e)))?;
        let (parts, body) = response.into_parts();
        let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
            .await
            .map_err(|_| {
                NodeError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "node response timed out",
                ))
            })?
            .map_err(|e| NodeError::Io(std::io::Error::other(e)))?
            .to_bytes();
        let response = Response::from_parts(parts, bytes);
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from_response(&response))
        }
    }
}

fn header_usize(headers: &HeaderMap, name: &str) -> usize {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn error_from_response(response: &Response<Bytes>) -> NodeError {
    let message = String::from_utf8_lossy(response.body()).into_owned();
    let code = response
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match code {
        "not-found" => NodeError::NotFound,
        "already-exists" => NodeError::AlreadyExists,
        "unrecoverable" => NodeError::Unrecoverable {
            available: header_usize(response.headers(), "x-strata-available"),
            needed: header_usize(response.headers(), "x-strata-needed"),
        },
        "integrity" => NodeError::Integrity,
        "insufficient-storage" => NodeError::InsufficientStorage,
        "invalid" => NodeError::Invalid(message),
        _ if response.status() == StatusCode::NOT_FOUND => NodeError::NotFound,
        _ => NodeError::Io(std::io::Error::other(format!(
            "node answered {}: {message}",
            response.status()
        ))),
    }
}

#[async_trait]
impl ChunkService for RemoteChunkStore {
    async fn put_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError> {
        self.call(
            Method::PUT,
            &format!("/chunks/{}", chunk_path(id)),
            layout,
            Some(dek),
            plaintext,
        )
        .await
        .map(|_| ())
    }

    async fn get_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<Bytes, NodeError> {
        self.call(
            Method::GET,
            &format!("/chunks/{}", chunk_path(id)),
            layout,
            Some(dek),
            Bytes::new(),
        )
        .await
        .map(Response::into_body)
    }

    async fn delete_chunk(&self, layout: &Layout, id: ChunkId) -> Result<(), NodeError> {
        self.call(
            Method::DELETE,
            &format!("/chunks/{}", chunk_path(id)),
            layout,
            None,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    async fn stat_chunk(&self, layout: &Layout, id: ChunkId) -> Result<ChunkStat, NodeError> {
        let response = self
            .call(
                Method::HEAD,
                &format!("/chunks/{}", chunk_path(id)),
                layout,
                None,
                Bytes::new(),
            )
            .await?;
        let h = response.headers();
        let len = h
            .get("x-strata-chunk-len")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                NodeError::Io(std::io::Error::other(
                    "HEAD answer without x-strata-chunk-len",
                ))
            })?;
        Ok(ChunkStat {
            len,
            healthy_shards: header_usize(h, "x-strata-healthy-shards"),
            total_shards: header_usize(h, "x-strata-total-shards"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_paths_parse_strictly() {
        let id = ChunkId {
            blob: [0x5a; 16],
            index: 7,
        };
        assert_eq!(parse_chunk_path(&chunk_path(id)), Some(id));
        for bad in [
            "",
            "zz/1",
            "5a5a/1",
            &format!("{}/x", hex::encode(id.blob)),
            &format!("{}/1/2", hex::encode(id.blob)),
            &format!("{}/../1", hex::encode(id.blob)),
        ] {
            assert_eq!(parse_chunk_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn layout_header_must_be_there_exactly_once_and_valid() {
        let layout = Layout::new(3, (0..6).map(|i| format!("disk{i}")).collect(), 4, 2).unwrap();
        let mut headers = HeaderMap::new();
        assert!(matches!(
            layout_from_headers(&headers),
            Err(NodeError::Invalid(_))
        ));
        headers.insert(
            LAYOUT_HEADER,
            HeaderValue::from_str(&layout.to_wire()).unwrap(),
        );
        assert_eq!(layout_from_headers(&headers).unwrap(), layout);
        headers.append(
            LAYOUT_HEADER,
            HeaderValue::from_str(&layout.to_wire()).unwrap(),
        );
        assert!(layout_from_headers(&headers).is_err(), "two headers");
        for bad in [
            &b"3:4+2:disk0,disk1"[..],
            b"3:4+2:disk0,disk1,disk2,disk3,disk4,disk5\xff",
            b"",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(LAYOUT_HEADER, HeaderValue::from_bytes(bad).unwrap());
            assert!(
                matches!(layout_from_headers(&headers), Err(NodeError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scrub_query_and_body_parse_strictly() {
        assert!(!parse_scrub_query(None).unwrap());
        assert!(parse_scrub_query(Some("repair=true")).unwrap());
        assert!(parse_scrub_query(Some("repair=1")).unwrap());
        assert!(!parse_scrub_query(Some("repair=false")).unwrap());
        for bad in [
            "",
            "repair",
            "repair=yes",
            "repair=true&x=1",
            "x=1&repair=true",
        ] {
            assert!(parse_scrub_query(Some(bad)).is_err(), "{bad}");
        }
        let a = "1:4+2:d0,d1,d2,d3,d4,d5";
        let b = "2:5+2:d0,d1,d2,d3,d4,d5,d6";
        assert_eq!(
            parse_scrub_layouts(format!("{a}\n{b}\n").as_bytes())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse_scrub_layouts(format!("{a}\n{b}").as_bytes())
                .unwrap()
                .len(),
            2
        );
        for bad in [
            String::new(),
            "\n".into(),
            format!("{a}\n\n{b}"),
            format!("{a}\r\n{b}"),
            format!("{a}\n{b}\n\n"),
            format!("{a} "),
            format!("{a}\n").repeat(MAX_SCRUB_LAYOUTS + 1),
        ] {
            assert!(parse_scrub_layouts(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_scrub_layouts(b"\xff").is_err());
    }
}
