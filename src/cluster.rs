//! Cluster mode of the binary: `strata cluster init|issue` (the cluster CA), `strata node
//! --cluster DIR` (a storage node over mutual TLS), and what `strata gateway --cluster DIR`
//! adds to the gateway: node registration into the cluster map, the cluster chunk client, the
//! map watcher (health, new disks, replaced disks) and the rebuild job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_keystore::replicated::ReplicatedKeyStore;

use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::workers::{WorkState, Worker};
use strata_metadata::{ClusterDisk, MetaStore, NodeRecord, NodeState};
use strata_storage_node::cluster::{
    ClusterChunkClient, ClusterPrimary, DegradedSink, NodeInfo, NodeMap, placement_groups,
};
use strata_storage_node::shards::{Peers, Timeouts};
use strata_storage_node::tls::ClusterTls;
use strata_storage_node::{ChunkId, Layout, LocalChunkStore, NodeConfig};

#[derive(clap::Subcommand)]
pub enum ClusterVerb {
    /// Create a cluster CA in DIR (ca.pem, ca.key with mode 0600).
    Init { dir: PathBuf },
    /// Issue a node or gateway certificate signed by the cluster CA.
    Issue {
        /// The CA directory (from `strata cluster init`).
        #[arg(long)]
        ca: PathBuf,
        /// Name of the node or gateway (also a subject alternative name).
        #[arg(long)]
        name: String,
        /// Where cert.pem, key.pem (0600) and ca.pem go.
        #[arg(long)]
        out: PathBuf,
        /// More subject alternative names: the IP addresses (e.g. 127.0.0.3) or DNS names
        /// the process is reached at. Default: 127.0.0.1.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

pub fn run_cluster(verb: ClusterVerb) -> anyhow::Result<()> {
    match verb {
        ClusterVerb::Init { dir } => {
            strata_storage_node::tls::init_ca(&dir)
                .map_err(|e| anyhow::anyhow!("cluster init: {e}"))?;
            println!("strata: cluster CA created in {}", dir.display());
        }
        ClusterVerb::Issue {
            ca,
            name,
            out,
            mut sans,
        } => {
            if sans.is_empty() {
                sans.push("127.0.0.1".into());
            }
            strata_storage_node::tls::issue(&ca, &name, &sans, &out)
                .map_err(|e| anyhow::anyhow!("cluster issue: {e}"))?;
            println!(
                "strata: certificate for {name} written to {}",
                out.display()
            );
        }
    }
    Ok(())
}

/// `strata node --cluster DIR`: the mutual-TLS node API only.
pub async fn run_cluster_node(
    data_dir: PathBuf,
    listen: SocketAddr,
    disks: usize,
    tls_dir: PathBuf,
    node_id: Option<String>,
    key_service: bool,
) -> anyhow::Result<()> {
    let tls = ClusterTls::load(&tls_dir).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let dd = data_dir.clone();
    let id = tokio::task::spawn_blocking(move || {
        strata_storage_node::node_server::ensure_node_id(&dd, node_id.as_deref())
    })
    .await??;
    let cfg = NodeConfig::under(&data_dir.join("disks"), disks);
    let store = tokio::task::spawn_blocking(move || LocalChunkStore::open(cfg)).await??;
    let peers = Peers::new(tls.clone(), Timeouts::default());
    let primary = Arc::new(ClusterPrimary::new(store, id.clone(), peers));
    // The key service: the cluster's key store and its destruction log.
    let keys = if key_service {
        let dd = data_dir.clone();
        let service = tokio::task::spawn_blocking(move || {
            let keys = strata_keystore::LocalKeyStore::open(&dd.join("keys"))
                .map_err(|e| anyhow::anyhow!("key store: {e}"))?;
            let log = strata_destruction_log::DestructionLog::open(&dd.join("destruction-log"))
                .map_err(|e| anyhow::anyhow!("destruction log: {e}"))?;
            anyhow::Ok(strata_storage_node::node_server::KeyService {
                keys: strata_keystore::service::Replica::new(keys),
                log: Arc::new(log),
                scratch: dd,
            })
        })
        .await??;
        Some(Arc::new(service))
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "strata: cluster node {id} ready on https://{} (mutual TLS){}",
        listener.local_addr()?,
        if key_service { ", key service on" } else { "" }
    );
    strata_storage_node::node_server::serve_cluster(primary, keys, tls, listener).await;
    Ok(())
}

/// Degraded writes recorded in the metadata tier (durable before the put's 200).
struct MetaDegraded(MetaStore);

#[async_trait::async_trait]
impl DegradedSink for MetaDegraded {
    async fn record_degraded(
        &self,
        layout_id: u32,
        id: ChunkId,
        missing: Vec<usize>,
    ) -> Result<(), String> {
        let meta = self.0.clone();
        let missing: Vec<u8> = missing.into_iter().map(|s| s as u8).collect();
        tokio::task::spawn_blocking(move || {
            meta.record_degraded(
                layout_id,
                &id.blob,
                id.index,
                &missing,
                strata_engine::now_ms(),
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::warn!(chunk = %format!("{}/{}", hex::encode(id.blob), id.index), "degraded write recorded");
        Ok(())
    }
}

fn node_record(addr: SocketAddr, info: &NodeInfo, now: i64) -> NodeRecord {
    NodeRecord {
        id: info.node_id.clone(),
        address: addr.to_string(),
        disks: info
            .disks
            .iter()
            .map(|d| ClusterDisk {
                name: d.name.clone(),
                disk_id: d.disk_id.clone(),
                capacity_bytes: d.capacity_bytes,
            })
            .collect(),
        state: NodeState::Up,
        registered: now,
        last_seen: now,
    }
}

fn group_count(disks: &[String], k: u8, m: u8) -> u32 {
    Layout::new(0, disks.to_vec(), k, m)
        .map(|l| placement_groups(&l).len() as u32)
        .unwrap_or(0)
}

fn node_map(meta: &MetaStore) -> anyhow::Result<NodeMap> {
    let mut map = NodeMap::new();
    for n in meta.list_nodes().map_err(|e| anyhow::anyhow!("{e}"))? {
        if let Ok(a) = n.address.parse() {
            map.insert(n.id, a);
        }
    }
    Ok(map)
}

/// What the gateway needs for cluster mode.
pub struct ClusterSetup {
    pub client: Arc<ClusterChunkClient>,
    pub layout: strata_metadata::LayoutRecord,
    pub nodes: Vec<SocketAddr>,
}

/// Registers the given nodes (waiting, bounded, for each to answer), makes the current epoch,
/// and returns the cluster chunk client.
pub async fn setup_gateway(
    meta: &MetaStore,
    tls_dir: &std::path::Path,
    nodes: Vec<SocketAddr>,
    k: u8,
    m: u8,
    chunk_size: u32,
) -> anyhow::Result<ClusterSetup> {
    let tls = ClusterTls::load(tls_dir).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let peers = Peers::new(
        tls,
        Timeouts {
            connect: Duration::from_millis(500),
            ..Timeouts::default()
        },
    );
    let client = Arc::new(ClusterChunkClient::new(
        peers,
        NodeMap::new(),
        Arc::new(MetaDegraded(meta.clone())),
    ));
    let known = node_map(meta)?;
    for addr in &nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let info = loop {
            match client.node_info(*addr).await {
                Ok(i) => break Some(i),
                // A node we already know may be down: start degraded rather than not at all.
                Err(_) if known.values().any(|a| a == addr) => break None,
                Err(e) if std::time::Instant::now() > deadline => {
                    anyhow::bail!("node {addr} did not answer: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if let Some(info) = info {
            let rec = node_record(*addr, &info, strata_engine::now_ms());
            let m2 = meta.clone();
            tokio::task::spawn_blocking(move || m2.register_node(&rec, strata_engine::now_ms()))
                .await?
                .map_err(|e| anyhow::anyhow!("registering node {}: {e}", info.node_id))?;
        }
    }
    let layout = meta
        .ensure_cluster_epoch(
            k,
            m,
            chunk_size,
            |d| group_count(d, k, m),
            strata_engine::now_ms(),
        )
        .map_err(|e| anyhow::anyhow!("cluster layout epoch: {e}"))?;
    client.set_nodes(node_map(meta)?);
    Ok(ClusterSetup {
        client,
        layout,
        nodes,
    })
}

/// The rebuild's on-demand disk check (`strata_engine::rebuild::DiskCheck`): asks every node
/// of the map for its disks and registers them, which queues a rebuild for a disk that reports
/// a new id. Unreachable nodes are skipped (the map worker marks them down).
pub struct NodeDiskCheck {
    pub meta: MetaStore,
    pub client: Arc<ClusterChunkClient>,
}

#[async_trait::async_trait]
impl strata_engine::rebuild::DiskCheck for NodeDiskCheck {
    async fn check_disks(&self) -> Result<(), String> {
        let meta = self.meta.clone();
        let nodes = tokio::task::spawn_blocking(move || meta.list_nodes())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for n in nodes {
            let Ok(addr) = n.address.parse::<SocketAddr>() else {
                continue;
            };
            let Ok(info) = self.client.node_info(addr).await else {
                continue;
            };
            let now = strata_engine::now_ms();
            let rec = node_record(addr, &info, now);
            let meta = self.meta.clone();
            let change = tokio::task::spawn_blocking(move || meta.register_node(&rec, now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if !change.replaced_disks.is_empty() {
                tracing::info!(node = %info.node_id, disks = ?change.replaced_disks, "rebuild: replaced disks found");
            }
        }
        Ok(())
    }
}

/// Watches the cluster map: asks every node for its info, marks it up or down, registers new
/// disks (a new epoch, which the rebalance then moves data to) and replaced disks (queued for
/// the rebuild by `register_node`).
pub struct ClusterMapWorker {
    engine: Engine,
    meta: MetaStore,
    client: Arc<ClusterChunkClient>,
    extra: Vec<SocketAddr>,
    k: u8,
    m: u8,
    chunk_size: u32,
    up: usize,
    down: usize,
    epochs: u64,
    replaced: u64,
}

impl ClusterMapWorker {
    pub fn new(
        engine: Engine,
        meta: MetaStore,
        setup: &ClusterSetup,
        k: u8,
        m: u8,
        chunk_size: u32,
    ) -> Self {
        ClusterMapWorker {
            engine,
            meta,
            client: setup.client.clone(),
            extra: setup.nodes.clone(),
            k,
            m,
            chunk_size,
            up: 0,
            down: 0,
            epochs: 0,
            replaced: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for ClusterMapWorker {
    fn name(&self) -> &'static str {
        "cluster-map"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let meta = self.meta.clone();
        let mut targets: Vec<(Option<String>, SocketAddr)> =
            tokio::task::spawn_blocking(move || meta.list_nodes())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|n| n.address.parse().ok().map(|a| (Some(n.id), a)))
                .collect();
        for a in &self.extra {
            if !targets.iter().any(|(_, t)| t == a) {
                targets.push((None, *a));
            }
        }
        let (mut up, mut down, mut changed) = (0, 0, false);
        for (id, addr) in targets {
            let now = strata_engine::now_ms();
            match self.client.node_info(addr).await {
                Ok(info) => {
                    up += 1;
                    let rec = node_record(addr, &info, now);
                    let meta = self.meta.clone();
                    let change = tokio::task::spawn_blocking(move || meta.register_node(&rec, now))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                    self.replaced += change.replaced_disks.len() as u64;
                    changed |= change.new_node || !change.added_disks.is_empty() || change.moved;
                }
                Err(_) => {
                    down += 1;
                    if let Some(id) = id {
                        let meta = self.meta.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            meta.set_node_state(&id, NodeState::Down, now)
                        })
                        .await;
                    }
                }
            }
        }
        (self.up, self.down) = (up, down);
        if changed {
            let meta = self.meta.clone();
            let (k, m, cs) = (self.k, self.m, self.chunk_size);
            let layout = tokio::task::spawn_blocking(move || {
                meta.ensure_cluster_epoch(
                    k,
                    m,
                    cs,
                    |d| group_count(d, k, m),
                    strata_engine::now_ms(),
                )
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            if layout.id != self.engine.layouts().current().record.id {
                self.epochs += 1;
                self.engine
                    .layouts()
                    .set_current(layout)
                    .map_err(|e| e.to_string())?;
            }
            let meta = self.meta.clone();
            let map = tokio::task::spawn_blocking(move || node_map(&meta))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            self.client.set_nodes(map);
        }
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({"nodes_up": self.up, "nodes_down": self.down, "new_epochs": self.epochs,
               "replaced_disks": self.replaced})
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// `strata gateway` options beyond `strata serve`'s.
#[derive(clap::Args)]
pub struct GatewayClusterArgs {
    /// This gateway's certificate directory (cert.pem, key.pem, ca.pem from `strata cluster
    /// issue`).
    #[arg(long)]
    pub cluster: PathBuf,
    /// A storage node's address (`ip:port`), repeated for each node to register.
    #[arg(long = "node", required = true)]
    pub nodes: Vec<SocketAddr>,
    /// MiB/s the rebuild may write.
    #[arg(long, env = "STRATA_REBUILD_RATE", default_value_t = 64)]
    pub rebuild_rate: u64,
    /// low (a quarter of the rate), normal, high (no limit).
    #[arg(long, env = "STRATA_REBUILD_PRIORITY", default_value = "normal")]
    pub rebuild_priority: strata_engine::rebuild::Priority,
    /// The nodes that host the cluster's key service (`strata node --key-service`), repeated
    /// or comma-separated: every gateway keeps its keys there (replicated on every one of
    /// them), so several gateways can serve the same buckets and a key node can be lost; each
    /// also holds a replica of the cluster's destruction log. Default: the key store in this
    /// gateway's data dir (then only this gateway can read its objects).
    #[arg(long, env = "STRATA_KEY_SERVICE", value_delimiter = ',')]
    pub key_service: Vec<SocketAddr>,
}

/// The destruction log of a gateway: the cluster's, replicated on every key-service node, when
/// nodes are named (docs/cluster.md, "The cluster's destruction log"); its order is kept in the
/// metadata tier.
pub fn destruction_log(
    args: &GatewayClusterArgs,
    meta: &MetaStore,
) -> anyhow::Result<Option<Arc<strata_destruction_log::replicated::ReplicatedLog>>> {
    if args.key_service.is_empty() {
        return Ok(None);
    }
    let tls = ClusterTls::load(&args.cluster).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let mut replicas = Vec::new();
    for addr in &args.key_service {
        let client =
            strata_storage_node::key_client::KeyServiceClient::destruction_log(*addr, tls.clone())?;
        replicas.push(strata_destruction_log::replicated::Replica {
            name: addr.to_string(),
            log: strata_destruction_log::service::RemoteLog::new(Box::new(client)),
        });
    }
    Ok(Some(Arc::new(
        strata_destruction_log::replicated::ReplicatedLog::new(
            replicas,
            Box::new(MetaSequencer(meta.clone())),
        ),
    )))
}

/// The replicated destruction log's order, in the metadata tier.
struct MetaSequencer(MetaStore);

impl strata_destruction_log::replicated::Sequencer for MetaSequencer {
    fn next(&self) -> Result<Option<u64>, String> {
        self.0.dlog_next().map_err(|e| e.to_string())
    }
    fn init(&self, floor: u64) -> Result<(), String> {
        self.0.dlog_init(floor).map_err(|e| e.to_string())
    }
    fn lookup(&self, op_id: &str) -> Result<Option<u64>, String> {
        self.0.dlog_lookup(op_id).map_err(|e| e.to_string())
    }
    fn assign(&self, op_id: &str, record: &[u8]) -> Result<u64, String> {
        self.0.dlog_assign(op_id, record).map_err(|e| e.to_string())
    }
    fn records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
        self.0.dlog_records(from, limit).map_err(|e| e.to_string())
    }
    fn checkpoint(&self, tree_size: u64, timestamp_ms: i64) -> Result<Option<i64>, String> {
        self.0
            .dlog_checkpoint(tree_size, timestamp_ms)
            .map_err(|e| e.to_string())
    }
    fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<(u64, i64)>, String> {
        self.0.dlog_checkpoints(from, to).map_err(|e| e.to_string())
    }
    fn prune(&self, records: u64, checkpoint_size: u64) -> Result<(), String> {
        self.0
            .dlog_prune(records, checkpoint_size)
            .map_err(|e| e.to_string())
    }
}

/// Brings every replica of the cluster's destruction log up to everything sequenced (records and
/// checkpoints it missed while down) and lets the metadata tier forget what all of them hold.
pub struct LogReplicaWorker {
    log: Arc<strata_destruction_log::replicated::ReplicatedLog>,
    last: strata_destruction_log::replicated::LogCatchUp,
    copied: u64,
}

impl LogReplicaWorker {
    pub fn new(log: Arc<strata_destruction_log::replicated::ReplicatedLog>) -> Self {
        LogReplicaWorker {
            log,
            last: Default::default(),
            copied: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for LogReplicaWorker {
    fn name(&self) -> &'static str {
        "destruction-log-replicas"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let log = self.log.clone();
        let report = tokio::task::spawn_blocking(move || log.catch_up())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.copied += report.copied;
        self.last = report;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({"serving": self.last.serving, "behind": self.last.behind,
               "records": self.last.records, "records_copied": self.copied})
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// The key store of a gateway: the cluster's replicated key service when one is named. Every
/// replica is caught up (its journal applied) before this returns, so the gateway starts on
/// caught-up replicas; the `key-replicas` worker keeps doing it.
pub fn key_store(
    args: &GatewayClusterArgs,
    meta: &MetaStore,
) -> anyhow::Result<Option<Arc<ReplicatedKeyStore>>> {
    if args.key_service.is_empty() {
        return Ok(None);
    }
    let tls = ClusterTls::load(&args.cluster).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let mut replicas = Vec::new();
    for addr in &args.key_service {
        let client = strata_storage_node::key_client::KeyServiceClient::new(*addr, tls.clone())?;
        replicas.push(strata_keystore::replicated::Replica {
            name: addr.to_string(),
            store: strata_keystore::service::RemoteKeyStore::new(Box::new(client)),
        });
    }
    let store = Arc::new(ReplicatedKeyStore::new(
        replicas,
        Box::new(MetaJournal(meta.clone())),
    ));
    // Bounded wait for the replicas at start (they may be starting too).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = store.catch_up();
        let need = strata_keystore::replicated::write_quorum(args.key_service.len());
        if report.serving.len() >= need {
            if !report.behind.is_empty() {
                tracing::warn!(behind = ?report.behind, "key service replicas not caught up at start");
            }
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "key service: {} of {} replicas caught up ({need} needed): {:?} behind",
            report.serving.len(),
            args.key_service.len(),
            report.behind
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Some(store))
}

/// The replicated key service's slot counter and replica journals, in the metadata tier.
struct MetaJournal(MetaStore);

impl strata_keystore::replicated::ReplicaJournal for MetaJournal {
    fn allocate(&self, count: u64, floor: u64) -> Result<u64, String> {
        self.0
            .allocate_key_slots(count, floor)
            .map_err(|e| e.to_string())
    }
    fn append(&self, replica: &str, entry: &[u8]) -> Result<(), String> {
        self.0
            .append_key_journal(replica, entry)
            .map_err(|e| e.to_string())
    }
    fn pending(
        &self,
        replica: &str,
        limit: usize,
    ) -> Result<strata_keystore::replicated::JournalPage, String> {
        self.0
            .key_journal(replica, limit)
            .map_err(|e| e.to_string())
    }
    fn remove(&self, keys: &[Vec<u8>]) -> Result<(), String> {
        self.0.remove_key_journal(keys).map_err(|e| e.to_string())
    }
}

/// Catches the key service replicas up (applies each one's journal of missed writes and
/// destructions, then admits it) and refreshes which replicas this gateway reads from. Every
/// gateway runs it: a gateway learns here that a replica another gateway could not reach is
/// behind.
pub struct KeyReplicaWorker {
    store: Arc<ReplicatedKeyStore>,
    last: strata_keystore::replicated::CatchUp,
    applied: u64,
}

impl KeyReplicaWorker {
    pub fn new(store: Arc<ReplicatedKeyStore>) -> Self {
        KeyReplicaWorker {
            store,
            last: Default::default(),
            applied: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for KeyReplicaWorker {
    fn name(&self) -> &'static str {
        "key-replicas"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.catch_up())
            .await
            .map_err(|e| e.to_string())?;
        self.applied += report.applied;
        self.last = report;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({"serving": self.last.serving, "behind": self.last.behind,
               "journal_entries_applied": self.applied})
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}
