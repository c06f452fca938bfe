//! A gateway's connection to the cluster's key service (a storage node started with
//! `--key-service`), over the same mutual TLS as shard traffic. The key store API is blocking
//! (it stands where file I/O would), so calls run on a small runtime of their own and the
//! caller waits for the answer: this works from any thread, async or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use strata_keystore::service::Transport;

use crate::shards::{RemoteNode, Timeouts};
use crate::tls::ClusterTls;

/// The node API paths of the key service: the key store, and the cluster's destruction log.
pub const KEYS_PATH: &str = "/keys";
pub const DESTRUCTION_LOG_PATH: &str = "/destruction-log";
/// Largest key service request or response (a re-wrap batch of 4096 keys is about 1.3 MB).
pub const MAX_KEYS_BODY: usize = 4 << 20;

pub struct KeyServiceClient {
    node: Arc<RemoteNode>,
    path: &'static str,
    runtime: Option<tokio::runtime::Runtime>,
    wait: Duration,
}

impl KeyServiceClient {
    /// A client of the key store.
    pub fn new(addr: SocketAddr, tls: ClusterTls) -> std::io::Result<Self> {
        // A key write is a 128-byte fsync'd write: a slow answer means a sick service.
        Self::with_path(addr, tls, KEYS_PATH, Duration::from_secs(10))
    }

    /// A client of the cluster's destruction log (an export can take a while).
    pub fn destruction_log(addr: SocketAddr, tls: ClusterTls) -> std::io::Result<Self> {
        Self::with_path(addr, tls, DESTRUCTION_LOG_PATH, Duration::from_secs(120))
    }

    fn with_path(
        addr: SocketAddr,
        tls: ClusterTls,
        path: &'static str,
        request: Duration,
    ) -> std::io::Result<Self> {
        let timeouts = Timeouts {
            request,
            down_for: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("key-service-client")
            .enable_all()
            .build()?;
        Ok(KeyServiceClient {
            node: Arc::new(RemoteNode::new(addr, tls, timeouts)),
            path,
            runtime: Some(runtime),
            wait: timeouts.connect + timeouts.request + Duration::from_secs(1),
        })
    }
}

impl Transport for KeyServiceClient {
    fn call(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        self.post(body)
    }
}

impl strata_destruction_log::service::LogTransport for KeyServiceClient {
    fn call(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        self.post(body)
    }
}

impl KeyServiceClient {
    fn post(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (node, path) = (self.node.clone(), self.path);
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("key service client is shut down")?;
        runtime.spawn(async move {
            let r = node
                .request(Method::POST, path, &[], Bytes::from(body))
                .await;
            let _ = tx.send(r);
        });
        let response = rx
            .recv_timeout(self.wait)
            .map_err(|_| format!("no answer from {} in time", self.node.addr()))?
            .map_err(|e| format!("{}: {e}", self.node.addr()))?;
        if !response.status().is_success() {
            return Err(format!(
                "{} answered {}: {}",
                self.node.addr(),
                response.status(),
                String::from_utf8_lossy(&response.body()[..response.body().len().min(200)])
            ));
        }
        Ok(response.into_body().to_vec())
    }
}

impl Drop for KeyServiceClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside another runtime: let it go.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
