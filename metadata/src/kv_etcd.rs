//! [`OrderedKv`] on etcd v3 (Debian's etcd-server 3.4, the `etcd-client` crate): the metadata
//! tier shared by every process of a cluster.
//!
//! Mapping (see docs/cluster.md):
//! - a [`Space`] is the key prefix `{root}{space name}/`; keys sort bytewise in etcd as they do
//!   in RocksDB, so ranges and paging are unchanged;
//! - `get` is a linearizable range of one key; `scan` forward is a range with a limit (served in
//!   key order by the server without sorting); `scan` reverse is a range sorted descending with a
//!   limit. etcd 3.4 reads the whole range before sorting a descending request, so reverse scans
//!   cost O(range): the MetaStore uses them only on the layout records (a handful of keys);
//! - `commit` is ONE etcd `Txn`: every [`Condition`] becomes a compare (`Equals`: value ==;
//!   `Absent`: version == 0; `Present`: version > 0; `RangeEmpty`: version == 0 over the range,
//!   which etcd evaluates for every key in it and, on an empty range, against a zero key), the
//!   ops are the success branch, and a failed compare is [`MetaError::Conflict`] with nothing
//!   applied. etcd acknowledges a txn after its raft log entry is fsynced on a quorum;
//! - `checkpoint` streams `maintenance().snapshot()` into `DIR/etcd.snapshot` (fsynced), which
//!   `etcdctl snapshot restore` turns back into a member data directory.
//!
//! Limits: a batch with more ops or compares than the members' `--max-txn-ops`, or whose encoded
//! size is over `--max-request-bytes`, fails with [`MetaError::Invalid`] before it is sent (it
//! is never split: every MetaStore batch is an atomic change). [`EtcdConfig`] must carry the
//! values the members run with (the defaults match docs/cluster.md).
//!
//! The trait is synchronous and callers are blocking-pool threads, so the client lives on a
//! small runtime of its own; a call spawns its future there and waits on a channel, which works
//! from any thread that is not a worker of that runtime (no nested `block_on`).

use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, MaintenanceClient, SortOrder,
    SortTarget, Txn, TxnOp,
};

use crate::kv::{Batch, Condition, Direction, KeyRange, Op, OrderedKv, Space, prefix_successor};
use crate::{MetaError, Result};

/// The file `checkpoint` writes into its directory.
pub const SNAPSHOT_FILE: &str = "etcd.snapshot";

/// Where the store is and what the members allow.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port` of the members' client URLs.
    pub endpoints: Vec<String>,
    /// Every key of this store starts with it (several stores can share one etcd).
    pub prefix: Vec<u8>,
    /// The members' `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// The members' `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Per-request timeout (a member down: the client moves to another within it).
    pub request_timeout: Duration,
}

/// `--max-txn-ops` our members run with (docs/cluster.md).
pub const DEFAULT_MAX_TXN_OPS: usize = 10_240;
/// `--max-request-bytes` our members run with (8 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>, prefix: impl Into<Vec<u8>>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: prefix.into(),
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (prefix default `strata/`; a prefix
    /// given without a trailing `/` gets one).
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| MetaError::Invalid(format!("not an etcd:// URL: {url:?}")))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) if !p.is_empty() => {
                let mut p = p.to_string();
                if !p.ends_with('/') {
                    p.push('/');
                }
                (h, p)
            }
            Some((h, _)) => (h, "strata/".to_string()),
            None => (rest, "strata/".to_string()),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(MetaError::Invalid(format!("no etcd endpoint in {url:?}")));
        }
        Ok(EtcdConfig::new(endpoints, prefix.into_bytes()))
    }
}

fn etcd_err(e: etcd_client::Error) -> MetaError {
    MetaError::Db(format!("etcd: {e}"))
}

/// Whether a failed call may be repeated: any transport failure of a read; for a write only a
/// failure to connect (the request never left), since a write that timed out may have applied.
fn retryable(e: &etcd_client::Error, idempotent: bool) -> bool {
    let s = e.to_string();
    let not_sent = s.contains("connect error") || s.contains("Connection refused");
    not_sent
        || (idempotent
            && (matches!(e, etcd_client::Error::TransportError(_))
                || s.contains("unavailable")
                || s.contains("Unavailable")
                || s.contains("no leader")
                || s.contains("leader changed")))
}

/// Runs `f` until it succeeds or fails for good, within `limit` (bounded: a member that died is
/// skipped by the client's balancer after a failed connect, so a retry reaches another member).
pub(crate) async fn with_retry<T, F, Fut>(
    idempotent: bool,
    limit: Duration,
    mut f: F,
) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let start = std::time::Instant::now();
    let mut n: u64 = 0;
    loop {
        match f().await {
            Err(e) if retryable(&e, idempotent) && start.elapsed() < limit && n < 200 => {
                n += 1;
                tokio::time::sleep(Duration::from_millis(10 * n.min(10))).await;
            }
            r => return r,
        }
    }
}

/// A client on its own runtime, shared by the KV and the coordination primitives.
pub struct EtcdHandle {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    cfg: EtcdConfig,
}

impl EtcdHandle {
    /// Connects (bounded by the request timeout); fails if no member answers.
    pub fn connect(cfg: EtcdConfig) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-etcd")
            .enable_all()
            .build()
            .map_err(|e| MetaError::Db(format!("etcd runtime: {e}")))?;
        let endpoints = cfg.endpoints.clone();
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(cfg.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        let timeout = cfg.request_timeout;
        let client = run_on(&rt, async move {
            let mut c = tokio::time::timeout(timeout, Client::connect(endpoints, Some(opts)))
                .await
                .map_err(|_| MetaError::Db("etcd: connect timed out".into()))?
                .map_err(etcd_err)?;
            // One round trip proves a member answers (connect itself is lazy).
            c.status().await.map_err(etcd_err)?;
            Ok(c)
        })?;
        Ok(EtcdHandle {
            rt: Some(rt),
            client,
            cfg,
        })
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.cfg
    }

    /// A clone of the client (cheap; shares the channel).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn kv_client(&self) -> KvClient {
        // Scans of up to 1024 version records (chunk maps) can exceed tonic's 4 MiB default.
        self.client
            .kv_client()
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(self.cfg.max_request_bytes + 64 * 1024)
    }

    pub fn maintenance_client(&self) -> MaintenanceClient {
        self.client.maintenance_client()
    }

    /// Runs `fut` on the handle's runtime and waits for it (from a non-runtime thread).
    pub fn run<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        run_on(self.rt.as_ref().expect("runtime lives until drop"), fut)
    }
}

fn run_on<T, F>(rt: &tokio::runtime::Runtime, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| MetaError::Db("etcd call was cancelled".into()))?
}

impl Drop for EtcdHandle {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context (a store dropped at
        // the end of an async main); shutting it down in the background does not.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The metadata KV on etcd.
pub struct EtcdKv {
    handle: std::sync::Arc<EtcdHandle>,
    /// `prefix + space name + "/"`, by `Space::ALL` index.
    space_prefixes: Vec<Vec<u8>>,
}

impl EtcdKv {
    pub fn connect(cfg: EtcdConfig) -> Result<Self> {
        Ok(Self::over(std::sync::Arc::new(EtcdHandle::connect(cfg)?)))
    }

    /// A KV over an existing handle (shared with the coordination primitives).
    pub fn over(handle: std::sync::Arc<EtcdHandle>) -> Self {
        let space_prefixes = Space::ALL
            .iter()
            .map(|s| {
                let mut p = handle.cfg.prefix.clone();
                p.extend_from_slice(s.name().as_bytes());
                p.push(b'/');
                p
            })
            .collect();
        EtcdKv {
            handle,
            space_prefixes,
        }
    }

    pub fn handle(&self) -> &std::sync::Arc<EtcdHandle> {
        &self.handle
    }

    fn space_prefix(&self, space: Space) -> &[u8] {
        let i = Space::ALL
            .iter()
            .position(|s| *s == space)
            .expect("every space is in Space::ALL");
        &self.space_prefixes[i]
    }

    fn key(&self, space: Space, key: &[u8]) -> Vec<u8> {
        let p = self.space_prefix(space);
        let mut k = Vec::with_capacity(p.len() + key.len());
        k.extend_from_slice(p);
        k.extend_from_slice(key);
        k
    }

    /// `[start, end)` of `range` inside the space, as etcd keys.
    fn bounds(&self, space: Space, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        let start = self.key(space, &range.start);
        let end = match &range.end {
            Some(e) => self.key(space, e),
            None => prefix_successor(self.space_prefix(space))
                .expect("a space prefix ends with '/', so it has a successor"),
        };
        (start, end)
    }

    fn compare(&self, c: &Condition) -> Compare {
        match c {
            Condition::Equals { space, key, value } => {
                Compare::value(self.key(*space, key), CompareOp::Equal, value.clone())
            }
            Condition::Absent { space, key } => {
                Compare::version(self.key(*space, key), CompareOp::Equal, 0)
            }
            Condition::Present { space, key } => {
                Compare::version(self.key(*space, key), CompareOp::Greater, 0)
            }
            Condition::RangeEmpty { space, range } => {
                let (start, end) = self.bounds(*space, range);
                Compare::version(start, CompareOp::Equal, 0).with_range(end)
            }
        }
    }
}

/// Rough encoded size of a batch (keys, values, per-entry framing), to refuse a request the
/// members would reject (`--max-request-bytes`) with a clear error instead of theirs.
fn batch_bytes(batch: &Batch, prefix_len: usize) -> usize {
    const FRAME: usize = 16 + 24; // field tags, lengths, the space prefix's name part
    let cond: usize = batch
        .conditions
        .iter()
        .map(|c| {
            FRAME
                + prefix_len
                + match c {
                    Condition::Equals { key, value, .. } => key.len() + value.len(),
                    Condition::Absent { key, .. } | Condition::Present { key, .. } => key.len(),
                    Condition::RangeEmpty { range, .. } => {
                        range.start.len() + range.end.as_ref().map_or(0, Vec::len) + prefix_len
                    }
                }
        })
        .sum();
    let ops: usize = batch
        .ops
        .iter()
        .map(|o| {
            FRAME
                + prefix_len
                + match o {
                    Op::Put { key, value, .. } => key.len() + value.len(),
                    Op::Delete { key, .. } => key.len(),
                }
        })
        .sum();
    cond + ops
}

impl OrderedKv for EtcdKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = self.key(space, key);
        let kv = self.handle.kv_client();
        let limit = self.handle.cfg.request_timeout;
        self.handle.run(async move {
            let mut resp = with_retry(true, limit, || {
                let (mut kv, k) = (kv.clone(), k.clone());
                async move { kv.get(k, None).await }
            })
            .await
            .map_err(etcd_err)?;
            Ok(resp
                .take_kvs()
                .into_iter()
                .next()
                .map(|e| e.into_key_value().1))
        })
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 || range.end.as_ref().is_some_and(|e| *e <= range.start) {
            return Ok(Vec::new());
        }
        let (start, end) = self.bounds(space, range);
        let strip = self.space_prefix(space).len();
        let mut opts = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        if direction == Direction::Reverse {
            opts = opts.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        let kv = self.handle.kv_client();
        let limit = self.handle.cfg.request_timeout;
        self.handle.run(async move {
            let mut resp = with_retry(true, limit, || {
                let (mut kv, start, opts) = (kv.clone(), start.clone(), opts.clone());
                async move { kv.get(start, Some(opts)).await }
            })
            .await
            .map_err(etcd_err)?;
            Ok(resp
                .take_kvs()
                .into_iter()
                .map(|e| {
                    let (mut k, v) = e.into_key_value();
                    k.drain(..strip);
                    (k, v)
                })
                .collect())
        })
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        let max_ops = self.handle.cfg.max_txn_ops;
        let max_bytes = self.handle.cfg.max_request_bytes;
        // etcd refuses a txn that touches one key twice; the last op on a key is what a
        // sequential apply (RocksDB's WriteBatch) leaves, so keep only that one.
        let mut last: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
        for op in &batch.ops {
            match op {
                Op::Put { space, key, value } => {
                    last.insert(self.key(*space, key), Some(value.clone()));
                }
                Op::Delete { space, key } => {
                    last.insert(self.key(*space, key), None);
                }
            }
        }
        if batch.conditions.len() > max_ops || last.len() > max_ops {
            return Err(MetaError::Invalid(format!(
                "metadata batch too large for etcd: {} conditions, {} writes (members allow \
                 {max_ops} per transaction, --max-txn-ops)",
                batch.conditions.len(),
                last.len()
            )));
        }
        let bytes = batch_bytes(&batch, self.handle.cfg.prefix.len());
        if bytes > max_bytes {
            return Err(MetaError::Invalid(format!(
                "metadata batch too large for etcd: about {bytes} bytes (members allow \
                 {max_bytes}, --max-request-bytes)"
            )));
        }
        let compares: Vec<Compare> = batch.conditions.iter().map(|c| self.compare(c)).collect();
        let ops: Vec<TxnOp> = last
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect();
        if ops.is_empty() && compares.is_empty() {
            return Ok(());
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let kv = self.handle.kv_client();
        let limit = self.handle.cfg.request_timeout;
        self.handle.run(async move {
            let resp = with_retry(false, limit, || {
                let (mut kv, txn) = (kv.clone(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(etcd_err)?;
            if resp.succeeded() {
                Ok(())
            } else {
                Err(MetaError::Conflict)
            }
        })
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir(dir)
            .map_err(|e| MetaError::Db(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut file = std::fs::File::create(&path)
            .map_err(|e| MetaError::Db(format!("create {}: {e}", path.display())))?;
        let mut m = self.handle.maintenance_client();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        // The stream arrives on the runtime; the file is written here, on the caller's thread.
        let done = self.handle.rt.as_ref().expect("runtime").spawn(async move {
            let mut stream = m.snapshot().await.map_err(etcd_err)?;
            while let Some(msg) = stream.message().await.map_err(etcd_err)? {
                if tx.send(msg.blob().to_vec()).is_err() {
                    return Err(MetaError::Db("snapshot writer stopped".into()));
                }
            }
            Ok::<(), MetaError>(())
        });
        let mut written = 0u64;
        let mut write_err = None;
        for chunk in rx {
            if let Err(e) = file.write_all(&chunk) {
                write_err = Some(e);
                break;
            }
            written += chunk.len() as u64;
        }
        let streamed = self
            .handle
            .run(async move { done.await.map_err(|e| MetaError::Db(e.to_string()))? });
        if let Some(e) = write_err {
            return Err(MetaError::Db(format!("write {}: {e}", path.display())));
        }
        streamed?;
        if written == 0 {
            return Err(MetaError::Db("etcd sent an empty snapshot".into()));
        }
        file.sync_all()
            .map_err(|e| MetaError::Db(format!("fsync {}: {e}", path.display())))
    }
}
