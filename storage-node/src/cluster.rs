//! Cluster mode: chunks erasure-coded across storage nodes.
//!
//! - A cluster layout names disks as `<node>/<disk>` (e.g. `n3/disk1`); the epoch's layout lists
//!   every disk of every node, interleaved by node, and its *placement groups* are the windows of
//!   k + m consecutive disks of that list on distinct nodes ([`placement_groups`]; distinct disks
//!   when there are fewer nodes than shards). A blob's chunks all go to the group chosen by the
//!   blob id ([`group_layout`]): a layout of exactly k + m disks.
//! - The gateway side ([`ClusterChunkClient`], a [`ChunkService`]) sends each chunk request to the
//!   group's primary node (its first live node, starting from the blob's hash), with the group
//!   layout and the addresses of the group's nodes (from the cluster map) in headers.
//! - The primary ([`ClusterPrimary`]) encrypts, erasure-codes, and sends every shard file to its
//!   disk's node in parallel through [`ShardIo`] (its own disks locally, the others over mutual
//!   TLS); reads take any k verified shards; rebuild restores missing shards from k survivors.
//!
//! Write quorum: every shard, or with some targets unreachable at least k + 1 durable shards
//! (see docs/cluster.md: a degraded chunk still survives one more loss, and the missing shards
//! are recorded so the rebuild restores them).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use strata_erasure::disk_for_shard;

use crate::format::{self, HEADER_LEN, ShardHeader};
use crate::layout::valid_word;
use crate::pipeline;
use crate::report::RebuildReport;
use crate::shards::{Peers, ShardIo, is_unreachable};
use crate::store::check_identity;
use crate::{ChunkId, ChunkService, ChunkStat, DataKey, Layout, LocalChunkStore, NodeError};

/// Header of a primary request: `<node>=<ip:port>,...` for the nodes of the group layout.
pub const NODES_HEADER: &str = "x-strata-nodes";
/// Header of a primary's put answer: shard indices that are not durable (degraded write).
pub const MISSING_HEADER: &str = "x-strata-missing-shards";
/// Header of a put sent again to another primary after the first did not answer: shards of the
/// chunk already present are this write's own (blob ids are never reused), so they are replaced.
pub const RETRY_HEADER: &str = "x-strata-retry";
/// Most nodes one request may name.
const MAX_NODES: usize = 255;

/// `<node>/<disk>` split in two, if the name is a cluster disk name.
pub fn split_disk(name: &str) -> Option<(&str, &str)> {
    let (node, disk) = name.split_once('/')?;
    (valid_word(node) && valid_word(disk)).then_some((node, disk))
}

/// Node ids of a layout, in the order of first appearance.
pub fn layout_nodes(layout: &Layout) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in &layout.disks {
        if let Some((node, _)) = split_disk(d)
            && !out.iter().any(|n| n == node)
        {
            out.push(node.to_owned());
        }
    }
    out
}

/// The placement groups of a cluster layout: windows of k + m consecutive disks (cyclic) of the
/// layout's list, keeping those whose disks are on distinct nodes (or, with fewer nodes than
/// shards, on as few repeats of a node as possible). Deterministic from the layout alone, so
/// every gateway and the rebuild compute the same groups.
pub fn placement_groups(layout: &Layout) -> Vec<Vec<String>> {
    let n = layout.total_shards();
    let len = layout.disks.len();
    let node_count = layout_nodes(layout).len().max(1);
    let max_per_node = n.div_ceil(node_count);
    let windows: Vec<Vec<String>> = (0..len)
        .map(|s| {
            (0..n)
                .map(|i| layout.disks[(s + i) % len].clone())
                .collect()
        })
        .collect();
    let spread = |w: &Vec<String>| {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for d in w {
            *count
                .entry(split_disk(d).map_or(d.as_str(), |(node, _)| node))
                .or_default() += 1;
        }
        count.values().all(|&c| c <= max_per_node)
    };
    let good: Vec<Vec<String>> = windows.iter().filter(|w| spread(w)).cloned().collect();
    if good.is_empty() { windows } else { good }
}

/// The group layout (k + m disks) that blob `blob` is stored on under the epoch layout `layout`.
/// A layout of exactly k + m disks is its own single group.
pub fn group_layout(layout: &Layout, blob: &[u8; 16]) -> Result<Layout, NodeError> {
    if layout.disks.len() == layout.total_shards() {
        return Ok(layout.clone());
    }
    let groups = placement_groups(layout);
    let g = disk_for_shard(blob, 0, groups.len());
    Layout::new(
        layout.id,
        groups[g].clone(),
        layout.data_shards,
        layout.parity_shards,
    )
}

/// Node id -> address, as the gateway read it from the cluster map.
pub type NodeMap = BTreeMap<String, SocketAddr>;

pub fn nodes_to_header(nodes: &NodeMap) -> String {
    nodes
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn nodes_from_headers(headers: &HeaderMap) -> Result<NodeMap, NodeError> {
    let text = headers
        .get(NODES_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| NodeError::Invalid(format!("missing {NODES_HEADER}")))?;
    let mut out = NodeMap::new();
    for part in text.split(',') {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| NodeError::Invalid(format!("bad {NODES_HEADER}")))?;
        if !valid_word(id) || out.len() >= MAX_NODES {
            return Err(NodeError::Invalid(format!("bad {NODES_HEADER}")));
        }
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| NodeError::Invalid(format!("bad address in {NODES_HEADER}")))?;
        out.insert(id.to_owned(), addr);
    }
    Ok(out)
}

/// The primary side: this node's disks, and its peers.
#[derive(Clone)]
pub struct ClusterPrimary {
    local: LocalChunkStore,
    node_id: String,
    peers: Peers,
}

type Target = (Arc<dyn ShardIo>, String);

/// Everything a shard fetch gives back.
type Fetched = Result<(ShardHeader, Bytes), NodeError>;

impl ClusterPrimary {
    pub fn new(local: LocalChunkStore, node_id: String, peers: Peers) -> Self {
        ClusterPrimary {
            local,
            node_id,
            peers,
        }
    }

    pub fn local(&self) -> &LocalChunkStore {
        &self.local
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Where shard `shard` of `id` lives: our own disk, or a peer's.
    fn target(
        &self,
        layout: &Layout,
        id: ChunkId,
        shard: usize,
        nodes: &NodeMap,
    ) -> Result<Target, NodeError> {
        let name = layout.disk_for_shard(id, shard);
        let (node, disk) = split_disk(name)
            .ok_or_else(|| NodeError::Invalid(format!("{name} is not a <node>/<disk> name")))?;
        if node == self.node_id {
            return Ok((Arc::new(self.local.clone()), disk.to_owned()));
        }
        let addr = nodes
            .get(node)
            .ok_or_else(|| NodeError::Invalid(format!("no address for node {node}")))?;
        Ok((self.peers.get(*addr), disk.to_owned()))
    }

    fn targets(
        &self,
        layout: &Layout,
        id: ChunkId,
        nodes: &NodeMap,
    ) -> Result<Vec<Target>, NodeError> {
        (0..layout.total_shards())
            .map(|s| self.target(layout, id, s, nodes))
            .collect()
    }

    /// Encrypts, encodes and stores every shard in parallel. Ok with the shard indices that are
    /// missing (empty: full redundancy) when at least k + 1 shards are durable.
    pub async fn put(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
        nodes: &NodeMap,
        retry: bool,
    ) -> Result<Vec<usize>, NodeError> {
        layout.validate()?;
        if plaintext.len() > self.local.config().max_chunk_len {
            return Err(NodeError::Invalid("chunk too large".into()));
        }
        let codec = self.local.codec(layout)?;
        let targets = self.targets(layout, id, nodes)?;
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let seal_codec = codec.clone();
        let layout_id = layout.id;
        let files: Vec<Bytes> = crate::store::blocking(move || {
            let sealed = pipeline::seal_chunk(
                &seal_codec,
                id,
                &dek_copy,
                pipeline::new_nonce(),
                &plaintext,
                Vec::new(),
            );
            (0..seal_codec.total_shards())
                .map(|s| {
                    let mut f = BytesMut::with_capacity(HEADER_LEN + sealed.shard_len);
                    f.extend_from_slice(&sealed.header(&seal_codec, id, s, layout_id).encode());
                    f.extend_from_slice(sealed.shard(s));
                    f.freeze()
                })
                .collect()
        })
        .await?;
        let puts = targets.into_iter().zip(files).enumerate().map(
            |(shard, ((io, disk), file))| async move {
                match io.put_shard(&disk, id, shard, file.clone()).await {
                    // Left by this write's earlier attempt through a primary that died.
                    Err(NodeError::AlreadyExists) if retry => {
                        io.delete_shard(&disk, id, shard).await?;
                        io.put_shard(&disk, id, shard, file).await
                    }
                    other => other,
                }
            },
        );
        let results = futures::future::join_all(puts).await;
        let mut missing = Vec::new();
        for (shard, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => {}
                Err(NodeError::AlreadyExists) => return Err(NodeError::AlreadyExists),
                Err(NodeError::Invalid(e)) => return Err(NodeError::Invalid(e)),
                Err(e) => {
                    tracing::warn!(chunk = %crate::store::chunk_label(id), shard, error = %e, "shard not written");
                    missing.push(shard);
                }
            }
        }
        let durable = layout.total_shards() - missing.len();
        let quorum = write_quorum(layout);
        if durable < quorum {
            return Err(NodeError::Io(std::io::Error::other(format!(
                "only {durable} of {} shards durable, {quorum} needed",
                layout.total_shards()
            ))));
        }
        Ok(missing)
    }

    async fn fetch(
        &self,
        targets: &[Target],
        id: ChunkId,
        which: &[usize],
    ) -> Vec<(usize, Fetched)> {
        let gets = which.iter().map(|&shard| {
            let (io, disk) = targets[shard].clone();
            async move {
                let r = io.get_shard(&disk, id, shard).await.and_then(|file| {
                    let header = ShardHeader::parse(&file).map_err(|_| NodeError::Integrity)?;
                    Ok((header, file.slice(HEADER_LEN..)))
                });
                (shard, r)
            }
        });
        futures::future::join_all(gets).await
    }

    /// Any k verified shards of one write -> (shards by index, header). Reads the data shards,
    /// then the parity shards only if a data shard is unusable.
    async fn gather(
        &self,
        layout: &Layout,
        id: ChunkId,
        nodes: &NodeMap,
    ) -> Result<(Vec<Option<Bytes>>, ShardHeader, Vec<usize>), NodeError> {
        layout.validate()?;
        let targets = self.targets(layout, id, nodes)?;
        let (k, n) = (layout.data_shards as usize, layout.total_shards());
        let mut got = self.fetch(&targets, id, &(0..k).collect::<Vec<_>>()).await;
        let usable = |got: &Vec<(usize, Fetched)>| {
            got.iter()
                .filter(|(s, r)| {
                    r.as_ref()
                        .is_ok_and(|(h, _)| check_identity(h, layout, id, *s).is_ok())
                })
                .count()
        };
        if usable(&got) < k {
            got.extend(self.fetch(&targets, id, &(k..n).collect::<Vec<_>>()).await);
        }
        // The write (nonce) with the most valid shards wins; others are stale.
        let mut votes: BTreeMap<([u8; 12], u64), usize> = BTreeMap::new();
        for (s, r) in &got {
            if let Ok((h, _)) = r
                && check_identity(h, layout, id, *s).is_ok()
            {
                *votes.entry((h.nonce, h.plaintext_len)).or_default() += 1;
            }
        }
        let winner = votes.iter().max_by_key(|(_, c)| **c).map(|(key, _)| *key);
        let mut shards: Vec<Option<Bytes>> = vec![None; n];
        let mut header = None;
        let mut bad = Vec::new();
        let mut not_found = 0;
        for (s, r) in got {
            match r {
                Ok((h, body))
                    if check_identity(&h, layout, id, s).is_ok()
                        && Some((h.nonce, h.plaintext_len)) == winner =>
                {
                    shards[s] = Some(body);
                    header.get_or_insert(h);
                }
                Err(NodeError::NotFound) => {
                    not_found += 1;
                    bad.push(s);
                }
                _ => bad.push(s),
            }
        }
        let available = shards.iter().filter(|s| s.is_some()).count();
        let Some(header) = header else {
            return Err(if not_found == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: k,
                }
            });
        };
        if available < k {
            return Err(NodeError::Unrecoverable {
                available,
                needed: k,
            });
        }
        Ok((shards, header, bad))
    }

    /// Reads any k verified shards, decodes and decrypts. Returns the bytes and the shard
    /// indices that were unusable.
    pub async fn get(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        nodes: &NodeMap,
    ) -> Result<(Bytes, Vec<usize>), NodeError> {
        let (shards, header, bad) = self.gather(layout, id, nodes).await?;
        let codec = self.local.codec(layout)?;
        let dek_copy = DataKey::from_bytes(dek.expose()).expect("32 bytes");
        let plain = crate::store::blocking(move || {
            let shards = shards.into_iter().map(|s| s.map(|b| b.to_vec())).collect();
            pipeline::open_chunk(
                &codec,
                id,
                &dek_copy,
                header.nonce,
                shards,
                header.plaintext_len,
            )
        })
        .await??;
        if !bad.is_empty() {
            tracing::info!(chunk = %crate::store::chunk_label(id), ?bad, "degraded read");
        }
        Ok((Bytes::from(plain), bad))
    }

    /// Restores full redundancy: checks every shard, rebuilds the missing or bad ones from k
    /// survivors (ciphertext only: no key needed) and stores them durably.
    pub async fn rebuild(
        &self,
        layout: &Layout,
        id: ChunkId,
        nodes: &NodeMap,
    ) -> Result<RebuildReport, NodeError> {
        layout.validate()?;
        let targets = self.targets(layout, id, nodes)?;
        let n = layout.total_shards();
        let stats = futures::future::join_all((0..n).map(|shard| {
            let (io, disk) = targets[shard].clone();
            async move { io.stat_shard(&disk, id, shard).await }
        }))
        .await;
        let mut report = RebuildReport::default();
        let mut votes: BTreeMap<([u8; 12], u64), usize> = BTreeMap::new();
        for (s, r) in stats.iter().enumerate() {
            if let Ok(h) = r
                && check_identity(h, layout, id, s).is_ok()
            {
                *votes.entry((h.nonce, h.plaintext_len)).or_default() += 1;
            }
        }
        let winner = votes.iter().max_by_key(|(_, c)| **c).map(|(key, _)| *key);
        if winner.is_none() && stats.iter().all(|r| matches!(r, Err(NodeError::NotFound))) {
            return Err(NodeError::NotFound);
        }
        let mut to_write = Vec::new();
        for (s, r) in stats.iter().enumerate() {
            match r {
                Ok(h)
                    if check_identity(h, layout, id, s).is_ok()
                        && Some((h.nonce, h.plaintext_len)) == winner => {}
                Err(e) if is_unreachable(e) => report.unreachable.push(s),
                Err(NodeError::NotFound) => to_write.push((s, false)),
                _ => to_write.push((s, true)),
            }
        }
        if to_write.is_empty() {
            return Ok(report);
        }
        let (shards, header, _) = self.gather(layout, id, nodes).await?;
        report.bytes_read = shards.iter().flatten().map(|b| b.len() as u64).sum();
        let codec = self.local.codec(layout)?;
        let ciphertext_len = usize::try_from(header.ciphertext_len)
            .map_err(|_| NodeError::Invalid("ciphertext length".into()))?;
        let rebuilt = crate::store::blocking(move || {
            let mut shards: Vec<Option<Vec<u8>>> =
                shards.into_iter().map(|s| s.map(|b| b.to_vec())).collect();
            codec
                .reconstruct(&mut shards, ciphertext_len)
                .map(|()| shards)
                .map_err(|e| NodeError::Invalid(e.to_string()))
        })
        .await??;
        let indices: Vec<usize> = to_write.iter().map(|(s, _)| *s).collect();
        let writes = to_write.into_iter().map(|(s, replace)| {
            let (io, disk) = targets[s].clone();
            let body = rebuilt[s].clone().expect("reconstructed");
            let mut h = header.clone();
            h.shard_index = s as u8;
            h.body_crc32c = format::crc32c(&body);
            let mut file = BytesMut::with_capacity(HEADER_LEN + body.len());
            file.extend_from_slice(&h.encode());
            file.extend_from_slice(&body);
            let file = file.freeze();
            async move {
                if replace {
                    io.delete_shard(&disk, id, s).await?;
                }
                let len = file.len() as u64;
                io.put_shard(&disk, id, s, file).await.map(|()| len)
            }
        });
        let results = futures::future::join_all(writes).await;
        for (s, r) in indices.into_iter().zip(results) {
            match r {
                Ok(len) => {
                    report.bytes_written += len;
                    report.rebuilt.push(s);
                }
                Err(e) if is_unreachable(&e) => report.unreachable.push(s),
                Err(e) => report.failed.push((s, e.to_string())),
            }
        }
        if !report.rebuilt.is_empty() {
            tracing::info!(chunk = %crate::store::chunk_label(id), rebuilt = ?report.rebuilt, "shards rebuilt");
        }
        Ok(report)
    }

    /// Removes every shard (idempotent). Fails if a shard's node cannot be reached, so the
    /// caller (GC) retries and no shard is left behind.
    pub async fn delete(
        &self,
        layout: &Layout,
        id: ChunkId,
        nodes: &NodeMap,
    ) -> Result<(), NodeError> {
        layout.validate()?;
        let targets = self.targets(layout, id, nodes)?;
        let results = futures::future::join_all(
            targets
                .into_iter()
                .enumerate()
                .map(|(s, (io, disk))| async move { io.delete_shard(&disk, id, s).await }),
        )
        .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    pub async fn stat(
        &self,
        layout: &Layout,
        id: ChunkId,
        nodes: &NodeMap,
    ) -> Result<ChunkStat, NodeError> {
        layout.validate()?;
        let targets = self.targets(layout, id, nodes)?;
        let n = layout.total_shards();
        let stats = futures::future::join_all((0..n).map(|shard| {
            let (io, disk) = targets[shard].clone();
            async move { io.stat_shard(&disk, id, shard).await }
        }))
        .await;
        let good: Vec<&ShardHeader> = stats
            .iter()
            .enumerate()
            .filter_map(|(s, r)| {
                r.as_ref()
                    .ok()
                    .filter(|h| check_identity(h, layout, id, s).is_ok())
            })
            .collect();
        let Some(first) = good.first() else {
            return Err(NodeError::NotFound);
        };
        Ok(ChunkStat {
            len: first.plaintext_len,
            healthy_shards: good.iter().filter(|h| h.nonce == first.nonce).count(),
            total_shards: n,
        })
    }
}

/// Shards that must be durable before a put is acknowledged: all k + m when every target
/// answers; otherwise at least k + 1, so an acknowledged chunk always survives the loss of one
/// more shard while the rebuild restores the rest (with m = 1 that means all of them).
pub fn write_quorum(layout: &Layout) -> usize {
    (usize::from(layout.data_shards) + 1).min(layout.total_shards())
}

// ---- the gateway side ---------------------------------------------------------------------

/// Where degraded writes are recorded (the metadata tier's degraded-chunk records). A put is
/// acknowledged only once its missing shards are recorded here.
#[async_trait]
pub trait DegradedSink: Send + Sync + 'static {
    async fn record_degraded(
        &self,
        layout_id: u32,
        id: ChunkId,
        missing: Vec<usize>,
    ) -> Result<(), String>;
}

/// What `/node/info` answers: who the node is and what it has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub disks: Vec<DiskInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiskInfo {
    pub name: String,
    /// Random id written into the disk directory when it is first used: a replaced (empty)
    /// disk has a new one, which is how the cluster map learns that it must be rebuilt.
    pub disk_id: String,
    pub capacity_bytes: u64,
    pub used_fraction: f64,
}

/// The [`ChunkService`] of a gateway in cluster mode.
pub struct ClusterChunkClient {
    peers: Peers,
    nodes: RwLock<NodeMap>,
    degraded: Arc<dyn DegradedSink>,
}

impl ClusterChunkClient {
    pub fn new(peers: Peers, nodes: NodeMap, degraded: Arc<dyn DegradedSink>) -> Self {
        ClusterChunkClient {
            peers,
            nodes: RwLock::new(nodes),
            degraded,
        }
    }

    /// Replaces the node addresses (when the cluster map changes).
    pub fn set_nodes(&self, nodes: NodeMap) {
        *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = nodes;
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// `/node/info` of the node at `addr`.
    pub async fn node_info(&self, addr: SocketAddr) -> Result<NodeInfo, NodeError> {
        let r = self
            .peers
            .get(addr)
            .request(Method::GET, "/node/info", &[], Bytes::new())
            .await?;
        serde_json::from_slice(r.body()).map_err(|e| NodeError::Invalid(e.to_string()))
    }

    /// The group layout of `id`, the nodes of the group (with addresses), in primary order.
    fn plan(
        &self,
        layout: &Layout,
        id: ChunkId,
    ) -> Result<(Layout, NodeMap, Vec<SocketAddr>), NodeError> {
        let group = group_layout(layout, &id.blob)?;
        let names = layout_nodes(&group);
        if names.is_empty() {
            return Err(NodeError::Invalid(format!(
                "layout {} names no cluster disks",
                layout.id
            )));
        }
        let all = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut nodes = NodeMap::new();
        let mut order = Vec::new();
        let start = disk_for_shard(&crate::chunk_key(id), 0, names.len());
        for i in 0..names.len() {
            let name = &names[(start + i) % names.len()];
            if let Some(addr) = all.get(name) {
                nodes.insert(name.clone(), *addr);
                order.push(*addr);
            }
        }
        Ok((group, nodes, order))
    }

    /// Sends the request to the first live primary candidate; moves on only when a node is
    /// unreachable (an answer, even an error, is final).
    async fn to_primary(
        &self,
        method: Method,
        layout: &Layout,
        id: ChunkId,
        dek: Option<&DataKey>,
        route: &str,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, NodeError> {
        let (group, nodes, order) = self.plan(layout, id)?;
        let mut headers = vec![
            (crate::http::LAYOUT_HEADER, group.to_wire()),
            (NODES_HEADER, nodes_to_header(&nodes)),
        ];
        if let Some(dek) = dek {
            headers.push((crate::http::DEK_HEADER, hex::encode(dek.expose())));
        }
        let path = format!("/{route}/{}/{}", hex::encode(id.blob), id.index);
        let mut last = None;
        // Up ones first; then, if all seem down, try them anyway (their back-off may be stale).
        let (up, down): (Vec<_>, Vec<_>) = order
            .iter()
            .map(|a| self.peers.get(*a))
            .partition(|n| n.is_up());
        for (attempt, node) in up.iter().chain(down.iter()).enumerate() {
            if attempt == 1 && method == Method::PUT {
                headers.push((RETRY_HEADER, "1".into()));
            }
            match node
                .request(method.clone(), &path, &headers, body.clone())
                .await
            {
                Err(e) if is_unreachable(&e) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| NodeError::Io(std::io::Error::other("no node to ask"))))
    }

    /// Rebuilds chunk `id` of epoch layout `layout` to full redundancy (through its primary).
    pub async fn rebuild(&self, layout: &Layout, id: ChunkId) -> Result<RebuildReport, NodeError> {
        let r = self
            .to_primary(Method::POST, layout, id, None, "rebuild", Bytes::new())
            .await?;
        serde_json::from_slice(r.body()).map_err(|e| NodeError::Invalid(e.to_string()))
    }
}

#[async_trait]
impl ChunkService for ClusterChunkClient {
    async fn put_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError> {
        let r = self
            .to_primary(Method::PUT, layout, id, Some(dek), "chunks", plaintext)
            .await?;
        let missing: Vec<usize> = r
            .headers()
            .get(MISSING_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default();
        if !missing.is_empty() {
            // No silently under-protected write: the 200 waits for the record.
            self.degraded
                .record_degraded(layout.id, id, missing)
                .await
                .map_err(|e| NodeError::Io(std::io::Error::other(e)))?;
        }
        Ok(())
    }

    async fn get_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<Bytes, NodeError> {
        self.to_primary(Method::GET, layout, id, Some(dek), "chunks", Bytes::new())
            .await
            .map(http::Response::into_body)
    }

    async fn delete_chunk(&self, layout: &Layout, id: ChunkId) -> Result<(), NodeError> {
        self.to_primary(Method::DELETE, layout, id, None, "chunks", Bytes::new())
            .await
            .map(|_| ())
    }

    async fn stat_chunk(&self, layout: &Layout, id: ChunkId) -> Result<ChunkStat, NodeError> {
        let r = self
            .to_primary(Method::HEAD, layout, id, None, "chunks", Bytes::new())
            .await?;
        let h = r.headers();
        let num = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(ChunkStat {
            len: num("x-strata-chunk-len"),
            healthy_shards: num("x-strata-healthy-shards") as usize,
            total_shards: num("x-strata-total-shards") as usize,
        })
    }

    async fn rebuild_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
    ) -> Result<RebuildReport, NodeError> {
        self.rebuild(layout, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: usize, disks: usize, k: u8, m: u8) -> Layout {
        let mut names = Vec::new();
        for d in 0..disks {
            for n in 0..nodes {
                names.push(format!("n{n}/disk{d}"));
            }
        }
        Layout::new(1, names, k, m).unwrap()
    }

    #[test]
    fn groups_are_on_distinct_nodes_when_there_are_enough() {
        for (nodes, disks) in [(6, 1), (6, 2), (7, 3), (8, 1)] {
            let l = cluster(nodes, disks, 4, 2);
            let groups = placement_groups(&l);
            assert_eq!(groups.len(), nodes * disks);
            for g in &groups {
                let mut ns: Vec<&str> = g.iter().map(|d| split_disk(d).unwrap().0).collect();
                ns.sort_unstable();
                ns.dedup();
                assert_eq!(ns.len(), 6, "{g:?}");
            }
        }
    }

    #[test]
    fn fewer_nodes_than_shards_spreads_over_distinct_disks() {
        let l = cluster(3, 2, 4, 2);
        for g in placement_groups(&l) {
            let mut ds = g.clone();
            ds.sort_unstable();
            ds.dedup();
            assert_eq!(ds.len(), 6);
            for n in 0..3 {
                assert_eq!(
                    g.iter()
                        .filter(|d| d.starts_with(&format!("n{n}/")))
                        .count(),
                    2
                );
            }
        }
    }

    #[test]
    fn group_choice_is_deterministic_from_the_blob() {
        let l = cluster(6, 2, 4, 2);
        let a = group_layout(&l, &[7; 16]).unwrap();
        assert_eq!(a, group_layout(&l, &[7; 16]).unwrap());
        assert_eq!(a.disks.len(), 6);
        // Blob ids are random: spread 256 pseudo-random ones over the 12 groups.
        let mut counts: HashMap<Vec<String>, usize> = HashMap::new();
        let mut state = 0x1234_5678_9abc_def0_u64;
        for _ in 0..256 {
            let mut blob = [0u8; 16];
            for b in &mut blob {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            *counts
                .entry(group_layout(&l, &blob).unwrap().disks)
                .or_default() += 1;
        }
        assert_eq!(counts.len(), 12, "every group is used");
        assert!(counts.values().all(|&c| c >= 5), "{counts:?}");
    }

    #[test]
    fn nodes_header_round_trips_and_refuses_junk() {
        let mut m = NodeMap::new();
        m.insert("n1".into(), "127.0.0.1:9101".parse().unwrap());
        m.insert("n2".into(), "127.0.0.2:9102".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert(NODES_HEADER, nodes_to_header(&m).parse().unwrap());
        assert_eq!(nodes_from_headers(&h).unwrap(), m);
        for bad in ["", "n1", "n1=x", "n/1=127.0.0.1:1", "=127.0.0.1:1"] {
            let mut h = HeaderMap::new();
            h.insert(NODES_HEADER, bad.parse().unwrap());
            assert!(nodes_from_headers(&h).is_err(), "{bad:?}");
        }
    }
}
