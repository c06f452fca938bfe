//! A cluster storage node's API, served only over mutual TLS (`strata node --cluster DIR`):
//! a TLS handshake without a client certificate of the cluster CA fails, so nothing below is
//! reachable by a stranger. Routes:
//!
//! - `PUT|GET|DELETE|HEAD /shards/<disk>/<blob>/<index>/<shard>`: one shard file (header + body)
//!   on one of this node's disks. PUT is create-only (409 `already-exists`), verified (header and
//!   body checksums, identity against the path: 400/422 otherwise) and fsync'd (file and
//!   directory) before its 204; GET answers the verified file (404, 422 `integrity`); HEAD
//!   answers the verified header in `x-strata-shard-header` (hex).
//! - `PUT|GET|DELETE|HEAD /chunks/<blob>/<index>`, `POST /rebuild/<blob>/<index>`: this node as
//!   the chunk's primary (headers `x-strata-layout` = the group layout, `x-strata-nodes` = the
//!   group's node addresses, `x-strata-dek` for PUT/GET). A PUT answers 204 with
//!   `x-strata-missing-shards` listing shards that are not durable (degraded write).
//! - `GET /node/info`: node id and disks (id, capacity) as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use strata_destruction_log::DestructionLog;

use crate::cluster::{
    ClusterPrimary, DiskInfo, MISSING_HEADER, NodeInfo, RETRY_HEADER, nodes_from_headers,
};
use crate::format::HEADER_LEN;
use crate::http::{dek_from_headers, error_response, layout_from_headers, parse_chunk_path};
use crate::layout::valid_word;
use crate::shards::ShardIo;
use crate::tls::ClusterTls;
use crate::{ChunkId, NodeError};

type Body = Full<Bytes>;

const DISK_ID_FILE: &str = "disk-id";
const NODE_ID_FILE: &str = "node-id";

fn respond(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

/// Reads, or creates on first use, a small identity file (create-only, fsync'd).
fn identity_file(
    path: &std::path::Path,
    fresh: impl FnOnce() -> String,
) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(s.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let value = fresh();
    let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(value.as_bytes())?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        // Another process won the race: use its value.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(std::fs::read_to_string(path)?.trim().to_owned());
        }
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(value)
}

/// The node id persisted in `data_dir/node-id`: created from `requested` (or a random `n-...`)
/// on first start; a later start with a different `requested` is refused. Blocking.
pub fn ensure_node_id(
    data_dir: &std::path::Path,
    requested: Option<&str>,
) -> Result<String, NodeError> {
    if let Some(r) = requested
        && !valid_word(r)
    {
        return Err(NodeError::Invalid(format!("bad node id {r:?}")));
    }
    std::fs::create_dir_all(data_dir)?;
    let id = identity_file(&data_dir.join(NODE_ID_FILE), || {
        requested.map_or_else(|| format!("n-{:08x}", rand::random::<u32>()), str::to_owned)
    })?;
    if let Some(r) = requested
        && r != id
    {
        return Err(NodeError::Invalid(format!(
            "this data directory belongs to node {id}, not {r}"
        )));
    }
    Ok(id)
}

/// The disk ids (`<disk>/disk-id`, created on first use) and capacities. Blocking.
pub fn disk_infos(disks: &[(String, PathBuf)]) -> Result<Vec<DiskInfo>, NodeError> {
    disks
        .iter()
        .map(|(name, dir)| {
            let disk_id = identity_file(&dir.join(DISK_ID_FILE), || {
                hex::encode(rand::random::<[u8; 16]>())
            })?;
            let (capacity_bytes, used_fraction) = capacity(dir)?;
            Ok(DiskInfo {
                name: name.clone(),
                disk_id,
                capacity_bytes,
                used_fraction,
            })
        })
        .collect()
}

/// A disk's capacity for placement: the bytes Strata may fill (used + available, as `df`'s
/// Use% counts them) and the used fraction.
fn capacity(dir: &std::path::Path) -> std::io::Result<(u64, f64)> {
    let space = crate::files::disk_space(dir)?;
    Ok((space.used() + space.available, space.used_fraction()))
}

fn parse_shard_path(rest: &str) -> Option<(String, ChunkId, usize)> {
    let (disk, rest) = rest.split_once('/')?;
    let (chunk, shard) = rest.rsplit_once('/')?;
    let id = parse_chunk_path(chunk)?;
    let shard_n: usize = shard.parse().ok()?;
    (valid_word(disk) && shard_n.to_string() == shard && shard_n < 255)
        .then(|| (disk.to_owned(), id, shard_n))
}

async fn body_bytes(request: Request<Incoming>, limit: usize) -> Result<Bytes, NodeError> {
    Ok(Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|e| NodeError::Invalid(format!("request body: {e}")))?
        .to_bytes())
}

/// What the node that hosts the cluster's key service keeps for every gateway: the key store
/// and the destruction log (so one log records every destruction, whichever gateway led).
pub struct KeyService {
    /// This node's replica of the key store (fenced until a gateway admits it).
    pub keys: strata_keystore::service::Replica,
    pub log: Arc<DestructionLog>,
    /// Where remote exports of the log are assembled (removed once sent).
    pub scratch: PathBuf,
}

async fn route(
    node: &ClusterPrimary,
    service: Option<&Arc<KeyService>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, NodeError> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == crate::key_client::KEYS_PATH || path == crate::key_client::DESTRUCTION_LOG_PATH {
        // The cluster's key service, on the one node that hosts it.
        let Some(service) = service.cloned() else {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"this node is not the key service"),
            ));
        };
        if method != Method::POST {
            return Ok(respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()));
        }
        let body = body_bytes(request, crate::key_client::MAX_KEYS_BODY).await?;
        let answer = if path == crate::key_client::KEYS_PATH {
            crate::store::blocking(move || {
                strata_keystore::service::handle_replica(&service.keys, &body)
            })
            .await?
        } else {
            crate::store::blocking(move || {
                strata_destruction_log::service::handle(&service.log, &service.scratch, &body)
            })
            .await?
        };
        return Ok(respond(StatusCode::OK, Bytes::from(answer)));
    }
    let max = node.local().config().max_chunk_len;
    if let Some(rest) = path.strip_prefix("/shards/") {
        let (disk, id, shard) =
            parse_shard_path(rest).ok_or_else(|| NodeError::Invalid("bad shard path".into()))?;
        let local = node.local();
        return match method {
            Method::PUT => {
                let file = body_bytes(request, max + HEADER_LEN).await?;
                local.put_shard(&disk, id, shard, file).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::GET => Ok(respond(
                StatusCode::OK,
                local.get_shard(&disk, id, shard).await?,
            )),
            Method::DELETE => {
                local.delete_shard(&disk, id, shard).await?;
                Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
            }
            Method::HEAD => {
                let h = local.stat_shard(&disk, id, shard).await?;
                let mut r = respond(StatusCode::OK, Bytes::new());
                r.headers_mut().insert(
                    "x-strata-shard-header",
                    HeaderValue::from_str(&hex::encode(h.encode())).expect("hex"),
                );
                Ok(r)
            }
            _ => Ok(respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new())),
        };
    }
    if method == Method::GET && path == "/node/info" {
        let disks = node.local().config().disks.clone();
        let info = NodeInfo {
            node_id: node.node_id().to_owned(),
            disks: crate::store::blocking(move || disk_infos(&disks)).await??,
        };
        return Ok(respond(
            StatusCode::OK,
            Bytes::from(serde_json::to_vec(&info).expect("serialisable")),
        ));
    }
    let (verb, rest) = match path.strip_prefix("/chunks/") {
        Some(rest) => ("chunks", rest),
        None => match path.strip_prefix("/rebuild/") {
            Some(rest) => ("rebuild", rest),
            None => {
                return Ok(respond(
                    StatusCode::NOT_FOUND,
                    Bytes::from_static(b"no such route"),
                ));
            }
        },
    };
    let id = parse_chunk_path(rest).ok_or_else(|| NodeError::Invalid("bad chunk path".into()))?;
    let layout = layout_from_headers(request.headers())?;
    let nodes = nodes_from_headers(request.headers())?;
    match (verb, method) {
        ("chunks", Method::PUT) => {
            let dek = dek_from_headers(request.headers())?;
            let retry = request.headers().contains_key(RETRY_HEADER);
            let body = body_bytes(request, max).await?;
            let missing = node.put(&layout, id, &dek, body, &nodes, retry).await?;
            let mut r = respond(StatusCode::NO_CONTENT, Bytes::new());
            let list: Vec<String> = missing.iter().map(usize::to_string).collect();
            r.headers_mut().insert(
                MISSING_HEADER,
                HeaderValue::from_str(&list.join(",")).expect("digits"),
            );
            Ok(r)
        }
        ("chunks", Method::GET) => {
            let dek = dek_from_headers(request.headers())?;
            let (bytes, _) = node.get(&layout, id, &dek, &nodes).await?;
            Ok(respond(StatusCode::OK, bytes))
        }
        ("chunks", Method::DELETE) => {
            node.delete(&layout, id, &nodes).await?;
            Ok(respond(StatusCode::NO_CONTENT, Bytes::new()))
        }
        ("chunks", Method::HEAD) => {
            let stat = node.stat(&layout, id, &nodes).await?;
            let mut r = respond(StatusCode::OK, Bytes::new());
            let h = r.headers_mut();
            h.insert("x-strata-chunk-len", HeaderValue::from(stat.len));
            h.insert(
                "x-strata-healthy-shards",
                HeaderValue::from(stat.healthy_shards),
            );
            h.insert(
                "x-strata-total-shards",
                HeaderValue::from(stat.total_shards),
            );
            Ok(r)
        }
        ("rebuild", Method::POST) => {
            let report = node.rebuild(&layout, id, &nodes).await?;
            Ok(respond(
                StatusCode::OK,
                Bytes::from(serde_json::to_vec(&report).expect("serialisable")),
            ))
        }
        _ => Ok(respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new())),
    }
}

async fn handle(
    node: Arc<ClusterPrimary>,
    service: Option<Arc<KeyService>>,
    request: Request<Incoming>,
) -> Response<Body> {
    match route(&node, service.as_ref(), request).await {
        Ok(r) => r,
        Err(e) => {
            if !matches!(e, NodeError::NotFound) {
                tracing::warn!(error = %e, "cluster request failed");
            }
            error_response(&e)
        }
    }
}

/// Serves the cluster node API over mutual TLS on `listener` until the task is dropped.
pub async fn serve_cluster(
    node: Arc<ClusterPrimary>,
    keys: Option<Arc<KeyService>>,
    tls: ClusterTls,
    listener: tokio::net::TcpListener,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let keys = keys.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A bounded handshake: a client that never finishes it costs one task for 10 s.
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let node = node.clone();
                let keys = keys.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(node, keys, request).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}
