//! Shard I/O, one shard of one chunk on one disk, behind a small trait ([`ShardIo`]) with two
//! implementations: this node's own disks ([`LocalChunkStore`]) and a disk of another node over
//! mutual TLS ([`RemoteNode`]). The cluster pipeline (`cluster.rs`) encodes and decodes once and
//! moves shard *files* (header + body, exactly the on-disk bytes) through this trait, so the same
//! integrity checks apply whichever side the disk is on.
//!
//! A shard file is checked where it is stored (header checksum, body CRC32C, identity against the
//! path it is stored under) and again where it is read (the same checks, plus the layout).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::files::{self, SHARDS_DIR, TMP_DIR};
use crate::format::{self, HEADER_LEN, ShardHeader};
use crate::store::blocking;
use crate::tls::{ClusterTls, server_name};
use crate::{ChunkId, LocalChunkStore, NodeError};

#[async_trait]
pub trait ShardIo: Send + Sync + 'static {
    /// Stores a complete shard file (header + body) of shard `shard` of `id` on `disk`:
    /// verified, create-only, file and directory fsync'd before Ok.
    async fn put_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
        file: Bytes,
    ) -> Result<(), NodeError>;
    /// The verified shard file. `NotFound` if absent, `Integrity` if it fails its checks.
    async fn get_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<Bytes, NodeError>;
    /// Removes the shard file (idempotent).
    async fn delete_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<(), NodeError>;
    /// The verified header of the shard (its body is read and checked too).
    async fn stat_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
    ) -> Result<ShardHeader, NodeError>;
}

/// Verifies an untrusted shard file and that it is shard `shard` of `id`.
pub fn check_shard_file(file: &[u8], id: ChunkId, shard: usize) -> Result<ShardHeader, NodeError> {
    let (header, _) = format::verify_shard(file).map_err(|e| {
        tracing::warn!(error = %e, "shard file failed verification");
        NodeError::Integrity
    })?;
    if header.chunk != id || usize::from(header.shard_index) != shard {
        return Err(NodeError::Invalid(
            "shard header names another shard".into(),
        ));
    }
    Ok(header)
}

impl LocalChunkStore {
    fn shard_file_path(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
    ) -> Result<(PathBuf, PathBuf), NodeError> {
        let dir = self
            .disk_dir(disk)
            .ok_or_else(|| crate::store::unknown_disk(disk))?
            .to_path_buf();
        let path = dir
            .join(files::fanout_dir(id))
            .join(files::shard_file_name(id, shard));
        Ok((dir, path))
    }

    fn read_shard_file(
        path: &std::path::Path,
        id: ChunkId,
        shard: usize,
    ) -> Result<Bytes, NodeError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NodeError::NotFound),
            Err(e) => return Err(NodeError::Io(e)),
        };
        check_shard_file(&bytes, id, shard)?;
        Ok(Bytes::from(bytes))
    }
}

#[async_trait]
impl ShardIo for LocalChunkStore {
    async fn put_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
        file: Bytes,
    ) -> Result<(), NodeError> {
        if file.len() > self.config().max_chunk_len + HEADER_LEN {
            return Err(NodeError::Invalid("shard file too large".into()));
        }
        check_shard_file(&file, id, shard)?;
        let (dir, path) = self.shard_file_path(disk, id, shard)?;
        let high_water = self.config().high_water;
        let _guard = self.inner.locks.lock(id).await;
        blocking(move || -> Result<(), NodeError> {
            if !dir.join(SHARDS_DIR).is_dir() {
                return Err(crate::store::unknown_disk("(unmounted)"));
            }
            if files::disk_usage_fraction(&dir)? > high_water {
                return Err(NodeError::InsufficientStorage);
            }
            if path.exists() {
                return Err(NodeError::AlreadyExists);
            }
            let tmp = dir.join(TMP_DIR).join(format!(
                "{}.put{:016x}",
                files::shard_file_name(id, shard),
                rand::random::<u64>()
            ));
            files::write_temp(&tmp, &file[..HEADER_LEN], &file[HEADER_LEN..])?;
            files::publish_new(&dir, &tmp, &path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    NodeError::AlreadyExists
                } else {
                    NodeError::Io(e)
                }
            })
        })
        .await?
    }

    async fn get_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<Bytes, NodeError> {
        let (_, path) = self.shard_file_path(disk, id, shard)?;
        blocking(move || Self::read_shard_file(&path, id, shard)).await?
    }

    async fn delete_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<(), NodeError> {
        let (_, path) = self.shard_file_path(disk, id, shard)?;
        let _guard = self.inner.locks.lock(id).await;
        blocking(move || files::remove_durably(&[path])).await??;
        Ok(())
    }

    async fn stat_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
    ) -> Result<ShardHeader, NodeError> {
        let (_, path) = self.shard_file_path(disk, id, shard)?;
        blocking(move || {
            let file = Self::read_shard_file(&path, id, shard)?;
            ShardHeader::parse(&file).map_err(|_| NodeError::Integrity)
        })
        .await?
    }
}

// ---- remote nodes ---------------------------------------------------------------------------

/// Timeouts of node-to-node and gateway-to-node calls.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// One request and its whole response.
    pub request: Duration,
    /// After a connection failure, the node is skipped (treated as down, costing nothing) for
    /// this long; then one request probes it again.
    pub down_for: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_millis(1000),
            request: Duration::from_secs(30),
            down_for: Duration::from_secs(3),
        }
    }
}

/// Idle connections kept per node.
const MAX_IDLE: usize = 16;

fn io_error(kind: std::io::ErrorKind, what: impl Into<String>) -> NodeError {
    NodeError::Io(std::io::Error::new(kind, what.into()))
}

/// Is this error the node being unreachable (as opposed to the node answering with an error)?
pub fn is_unreachable(e: &NodeError) -> bool {
    matches!(e, NodeError::Io(io) if matches!(io.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::NotConnected
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::HostUnreachable))
}

/// One node, over mutual TLS: a small pool of HTTP/1 connections and a health state.
pub struct RemoteNode {
    addr: SocketAddr,
    tls: ClusterTls,
    timeouts: Timeouts,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Until when the node is considered down (None: up).
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteNode")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RemoteNode {
    pub fn new(addr: SocketAddr, tls: ClusterTls, timeouts: Timeouts) -> Self {
        RemoteNode {
            addr,
            tls,
            timeouts,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// False while the node is in its back-off after a failure.
    pub fn is_up(&self) -> bool {
        let mut d = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        match *d {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *d = None;
                true
            }
            None => true,
        }
    }

    fn mark_down(&self) {
        let mut d = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if d.is_none() {
            tracing::warn!(node = %self.addr, "node unreachable; skipping it for a while");
        }
        *d = Some(Instant::now() + self.timeouts.down_for);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, NodeError> {
        let timeout = self.timeouts.connect;
        let addr = self.addr;
        let connector = tokio_rustls::TlsConnector::from(self.tls.client.clone());
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name(addr.ip()), tcp).await?;
            Ok::<_, std::io::Error>(tls)
        };
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| {
                io_error(
                    std::io::ErrorKind::TimedOut,
                    format!("connect to {addr} timed out"),
                )
            })?
            .map_err(|e| {
                // A TLS refusal (wrong CA, bad name) is reported as such, not as a dead node.
                let kind = if e.kind() == std::io::ErrorKind::InvalidData {
                    std::io::ErrorKind::PermissionDenied
                } else {
                    e.kind()
                };
                io_error(kind, format!("connect to {addr}: {e}"))
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| io_error(std::io::ErrorKind::ConnectionAborted, e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request; a dead node is marked down (and skipped until its back-off ends).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response<Bytes>, NodeError> {
        if !self.is_up() {
            return Err(io_error(
                std::io::ErrorKind::NotConnected,
                format!("node {} is down", self.addr),
            ));
        }
        let result = self.request_once(method, path, headers, body).await;
        if let Err(e) = &result
            && is_unreachable(e)
        {
            self.mark_down();
        }
        result
    }

    async fn request_once(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response<Bytes>, NodeError> {
        let pooled = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(s) = idle.pop() {
                if !s.is_closed() {
                    found = Some(s);
                    break;
                }
            }
            found
        };
        let mut sender = match pooled {
            Some(s) => s,
            None => self.connect().await?,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string());
        for (k, v) in headers {
            let mut value = http::HeaderValue::from_str(v)
                .map_err(|_| NodeError::Invalid(format!("bad header {k}")))?;
            if *k == crate::http::DEK_HEADER {
                value.set_sensitive(true);
            }
            req = req.header(*k, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| io_error(std::io::ErrorKind::ConnectionReset, e.to_string()))?;
            let response = sender
                .send_request(req)
                .await
                .map_err(|e| io_error(std::io::ErrorKind::ConnectionReset, e.to_string()))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| io_error(std::io::ErrorKind::ConnectionReset, e.to_string()))?
                .to_bytes();
            Ok::<_, NodeError>(Response::from_parts(parts, bytes))
        };
        let response = tokio::time::timeout(self.timeouts.request, exchange)
            .await
            .map_err(|_| {
                io_error(
                    std::io::ErrorKind::TimedOut,
                    format!("request to {} timed out", self.addr),
                )
            })??;
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE && !sender.is_closed() {
                idle.push(sender);
            }
        }
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(crate::http::error_from_response(&response))
        }
    }
}

pub(crate) fn shard_route(disk: &str, id: ChunkId, shard: usize) -> String {
    format!(
        "/shards/{disk}/{}/{}/{shard}",
        hex::encode(id.blob),
        id.index
    )
}

#[async_trait]
impl ShardIo for RemoteNode {
    async fn put_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
        file: Bytes,
    ) -> Result<(), NodeError> {
        self.request(Method::PUT, &shard_route(disk, id, shard), &[], file)
            .await
            .map(|_| ())
    }

    async fn get_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<Bytes, NodeError> {
        let file = self
            .request(
                Method::GET,
                &shard_route(disk, id, shard),
                &[],
                Bytes::new(),
            )
            .await?
            .into_body();
        // Checked again on arrival: TLS protects the wire, not the sender's memory.
        check_shard_file(&file, id, shard)?;
        Ok(file)
    }

    async fn delete_shard(&self, disk: &str, id: ChunkId, shard: usize) -> Result<(), NodeError> {
        self.request(
            Method::DELETE,
            &shard_route(disk, id, shard),
            &[],
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    async fn stat_shard(
        &self,
        disk: &str,
        id: ChunkId,
        shard: usize,
    ) -> Result<ShardHeader, NodeError> {
        let response = self
            .request(
                Method::HEAD,
                &shard_route(disk, id, shard),
                &[],
                Bytes::new(),
            )
            .await?;
        let value = response
            .headers()
            .get("x-strata-shard-header")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| hex::decode(v).ok())
            .ok_or_else(|| NodeError::Io(std::io::Error::other("stat without a header")))?;
        let header = ShardHeader::parse(&value).map_err(|_| NodeError::Integrity)?;
        if header.chunk != id || usize::from(header.shard_index) != shard {
            return Err(NodeError::Integrity);
        }
        Ok(header)
    }
}

/// Every remote node this process talks to, by address (one pool and health state each).
#[derive(Clone)]
pub struct Peers {
    tls: ClusterTls,
    timeouts: Timeouts,
    nodes: Arc<Mutex<HashMap<SocketAddr, Arc<RemoteNode>>>>,
}

impl Peers {
    pub fn new(tls: ClusterTls, timeouts: Timeouts) -> Self {
        Peers {
            tls,
            timeouts,
            nodes: Arc::default(),
        }
    }

    pub fn get(&self, addr: SocketAddr) -> Arc<RemoteNode> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .entry(addr)
            .or_insert_with(|| Arc::new(RemoteNode::new(addr, self.tls.clone(), self.timeouts)))
            .clone()
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
}
