//! The node's HTTP API (hyper 1) and [`RemoteChunkStore`], its client. Both sides go through the
//! same [`LocalChunkStore`], so the in-process and remote paths share one implementation.
//!
//! Routes (`<blob>` is 32 hex chars, `<index>` a decimal u32):
//! - `PUT /chunks/<blob>/<index>` body = plaintext, header `x-strata-dek` = 64 hex -> 204
//! - `GET /chunks/<blob>/<index>` header `x-strata-dek` -> 200 body; `x-strata-bad-shards` lists
//!   shard indices that were unusable
//! - `DELETE /chunks/<blob>/<index>` -> 204
//! - `HEAD /chunks/<blob>/<index>` -> 200 with `x-strata-chunk-len`, `x-strata-healthy-shards`,
//!   `x-strata-total-shards`
//! - `POST /heal/<blob>/<index>` -> 200 JSON [`HealReport`](crate::HealReport)
//! - `POST /scrub?repair=true|false` -> 200 JSON [`ScrubReport`](crate::ScrubReport)
//!
//! Errors: status plus `x-strata-error` (`not-found`, `unrecoverable`, `integrity`,
//! `insufficient-storage`, `invalid`, `io`) and a text body. The DEK travels in a header for now:
//! bind the node to 127.0.0.1 (or put TLS in front) until node-to-node auth exists.

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

use crate::{ChunkId, ChunkService, ChunkStat, DataKey, LocalChunkStore, NodeError};

pub const DEK_HEADER: &str = "x-strata-dek";
pub const ERROR_HEADER: &str = "x-strata-error";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

type Body = Full<Bytes>;

fn parse_chunk_path(path: &str) -> Option<ChunkId> {
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

fn dek_from_headers(headers: &HeaderMap) -> Result<DataKey, NodeError> {
    let value = headers
        .get(DEK_HEADER)
        .ok_or_else(|| NodeError::Invalid(format!("missing {DEK_HEADER}")))?;
    let bytes = Zeroizing::new(
        hex::decode(value.as_bytes())
            .map_err(|_| NodeError::Invalid(format!("{DEK_HEADER} is not hex")))?,
    );
    DataKey::from_bytes(&bytes).map_err(|e| NodeError::Invalid(e.to_string()))
}

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

fn error_response(error: &NodeError) -> Response<Body> {
    let (status, code) = match error {
        NodeError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
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
                store.put_chunk(id, &dek, body).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::GET => {
                let dek = dek_from_headers(request.headers())?;
                let (bytes, report) = store.get_chunk_with_report(id, &dek).await?;
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
                store.delete_chunk(id).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::HEAD => {
                let stat = store.stat_chunk(id).await?;
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
        let report = store.heal(id).await?;
        return Ok(json_response(&report));
    }
    if method == Method::POST && path == "/scrub" {
        let repair = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "repair=true" || p == "repair=1"));
        let report = store.scrub(repair).await?;
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
        dek: Option<&DataKey>,
        body: Bytes,
    ) -> Result<Response<Bytes>, NodeError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path));
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

fn error_from_response(response: &Response<Bytes>) -> NodeError {
    let message = String::from_utf8_lossy(response.body()).into_owned();
    let code = response
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match code {
        "not-found" => NodeError::NotFound,
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
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError> {
        self.call(
            Method::PUT,
            &format!("/chunks/{}", chunk_path(id)),
            Some(dek),
            plaintext,
        )
        .await
        .map(|_| ())
    }

    async fn get_chunk(&self, id: ChunkId, dek: &DataKey) -> Result<Bytes, NodeError> {
        self.call(
            Method::GET,
            &format!("/chunks/{}", chunk_path(id)),
            Some(dek),
            Bytes::new(),
        )
        .await
        .map(Response::into_body)
    }

    async fn delete_chunk(&self, id: ChunkId) -> Result<(), NodeError> {
        self.call(
            Method::DELETE,
            &format!("/chunks/{}", chunk_path(id)),
            None,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    async fn stat_chunk(&self, id: ChunkId) -> Result<ChunkStat, NodeError> {
        let response = self
            .call(
                Method::HEAD,
                &format!("/chunks/{}", chunk_path(id)),
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
}
