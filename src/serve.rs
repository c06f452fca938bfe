//! `strata serve`: the embedded default. One process runs the S3 gateway, the metadata tier
//! (RocksDB under `DATA/meta`) and a chunk store over several local "disks" (`DATA/disks/diskN`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use strata_engine::{Engine, EngineConfig};
use strata_gateway::admin::NodeAdmin;
use strata_gateway::{Context, GatewayConfig};
use strata_metadata::MetaStore;
use strata_storage_node::ChunkService;
use strata_storage_node::keys::MasterKey;
use strata_storage_node::{LocalChunkStore, NodeConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where everything lives: master key, metadata, disks.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on (loopback by default).
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    #[arg(long, env = "STRATA_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Base domain for virtual-hosted-style requests (`bucket.DOMAIN`); path style always works.
    #[arg(long, env = "STRATA_DOMAIN")]
    pub domain: Option<String>,
    /// Number of local disk directories.
    #[arg(long, default_value_t = 6)]
    pub disks: usize,
    #[arg(long, default_value_t = 4)]
    pub data_shards: u8,
    #[arg(long, default_value_t = 2)]
    pub parity_shards: u8,
    /// Plaintext bytes per chunk.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub chunk_size: usize,
    /// How long deleted or replaced data waits before its chunks are removed (ms), so reads
    /// (GET, copy, UploadPartCopy) that started before the change can finish.
    #[arg(long, env = "STRATA_GC_GRACE_MS", default_value_t = strata_metadata::DEFAULT_GC_GRACE_MS)]
    pub gc_grace_ms: i64,
    /// MiB of object data all requests together may hold in memory buffers.
    #[arg(long, env = "STRATA_BUFFER_MEMORY", default_value_t = 1024)]
    pub buffer_memory: usize,
    /// MiB/s the background rebalance may move from older layouts to the current one (0: off).
    #[arg(long, env = "STRATA_REBALANCE_RATE", default_value_t = 16)]
    pub rebalance_rate: u64,
    /// Server access logs (bucket logging): the longest a request's line waits before it is
    /// delivered into the target bucket (seconds).
    #[arg(long, env = "STRATA_ACCESS_LOG_DELAY_SECS", default_value_t = 300)]
    pub access_log_delay_secs: u64,
    /// Accept SSE-C (customer-provided keys) over plain HTTP. S3 refuses it because the key
    /// travels in the clear; allow it only behind a TLS-terminating proxy or on loopback.
    #[arg(long, env = "STRATA_ALLOW_SSE_C_OVER_HTTP")]
    pub allow_sse_c_over_http: bool,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

// ---- HTTP edge limits (docs/security-limits.md) -------------------------------------------------
#[derive(clap::Args)]
pub struct EdgeArgs {
    /// Connections served at once; beyond it new connections get 503 SlowDown and are closed.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also the keep-alive wait).
    #[arg(long, env = "STRATA_HEADER_TIMEOUT", default_value_t = 30)]
    pub header_timeout: u64,
    /// Seconds without any traffic, while no request is handled, after which a connection is closed.
    #[arg(long, env = "STRATA_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a request body may deliver nothing before the request fails with RequestTimeout.
    #[arg(long, env = "STRATA_BODY_TIMEOUT", default_value_t = 60)]
    pub body_timeout: u64,
    /// Largest body (bytes) of a request that is not an object upload (XML, admin JSON).
    #[arg(long, env = "STRATA_MAX_XML_BODY", default_value_t = strata_gateway::http::limits::DEFAULT_MAX_XML_BODY)]
    pub max_xml_body: u64,
}

impl EdgeArgs {
    pub fn config(&self) -> anyhow::Result<strata_gateway::http::EdgeConfig> {
        use std::time::Duration;
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.header_timeout > 0 && self.idle_timeout > 0 && self.body_timeout > 0,
            "timeouts must be at least 1 second"
        );
        Ok(strata_gateway::http::EdgeConfig {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            max_xml_body: self.max_xml_body,
        })
    }
}
// -------------------------------------------------------------------------------------------------

/// The local chunk store's operator verbs; scrub knows every layout the metadata tier records,
/// so shards of old layouts are checked (and repaired) under their own geometry.
struct LocalNodeAdmin(Arc<LocalChunkStore>, Engine);

#[async_trait::async_trait]
impl NodeAdmin for LocalNodeAdmin {
    async fn scrub(&self, repair: bool) -> anyhow::Result<serde_json::Value> {
        let layouts = self.1.layouts().node_layouts()?;
        let report = self.0.scrub(&layouts, repair).await?;
        Ok(serde_json::to_value(report)?)
    }
}

fn private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates the admin user on first start: with the keys from STRATA_ADMIN_ACCESS_KEY /
/// STRATA_ADMIN_SECRET_KEY if set, else fresh random ones that are printed once.
async fn bootstrap_admin(engine: &Engine) -> anyhow::Result<Option<(String, String, bool)>> {
    if engine.list_users().await?.iter().any(|u| u.is_admin) {
        return Ok(None);
    }
    let given = match (
        std::env::var("STRATA_ADMIN_ACCESS_KEY"),
        std::env::var("STRATA_ADMIN_SECRET_KEY"),
    ) {
        (Ok(a), Ok(s)) if !a.is_empty() && s.len() >= 8 => Some((a, s)),
        (Ok(_), Ok(_)) => anyhow::bail!("STRATA_ADMIN_SECRET_KEY must be at least 8 characters"),
        _ => None,
    };
    let from_env = given.is_some();
    let (ak, sk) = engine.create_user("admin", true, given).await?;
    Ok(Some((ak, sk, from_env)))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let edge = args.edge.config()?;
    private_dir(&args.data_dir)?;
    let master = Arc::new(
        MasterKey::load_or_create(&args.data_dir.join("master.key")).context("master key")?,
    );
    let meta = MetaStore::open(&args.data_dir.join("meta"))
        .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
    meta.set_gc_grace_ms(args.gc_grace_ms);
    let node_cfg = NodeConfig::under(&args.data_dir.join("disks"), args.disks);
    let disk_names = node_cfg.disk_names();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || LocalChunkStore::open(node_cfg))
            .await?
            .context("chunk store")?,
    );
    let chunks: Arc<dyn ChunkService> = store.clone();

    // The placement geometry this start writes with; a different one supersedes it, so
    // segments written before keep naming theirs.
    let now = strata_engine::now_ms();
    let layout = meta
        .ensure_current_layout(
            &disk_names,
            args.data_shards,
            args.parity_shards,
            u32::try_from(args.chunk_size).context("--chunk-size")?,
            now,
        )
        .map_err(|e| anyhow::anyhow!("placement layout: {e}"))?;

    // This process owns its write intents through an instance with a lease (renewed by the
    // engine). It holds the RocksDB lock, so every other instance is a dead earlier process:
    // expire them, then sweep their intents (requests cut short by a crash) into the GC queue.
    let instance = strata_engine::instance::new_instance_id();
    meta.register_instance(&instance, strata_engine::instance::LEASE_MS, now)
        .map_err(|e| anyhow::anyhow!("registering the instance: {e}"))?;
    meta.expire_other_instances(&instance, now)
        .map_err(|e| anyhow::anyhow!("expiring earlier instances: {e}"))?;
    meta.sweep_interrupted_writes(now)
        .map_err(|e| anyhow::anyhow!("sweeping interrupted writes: {e}"))?;
    let engine = Engine::new(
        meta,
        chunks,
        master,
        EngineConfig {
            buffer_budget: args.buffer_memory.max(1) * 1024 * 1024,
            rebalance_rate: args.rebalance_rate * 1024 * 1024,
            access_log_delay: std::time::Duration::from_secs(args.access_log_delay_secs),
            ..Default::default()
        },
        layout,
        instance,
    )
    .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    let created = bootstrap_admin(&engine).await?;
    engine.start_background();
    let ctx = Arc::new(Context {
        engine: engine.clone(),
        cfg: GatewayConfig {
            region: args.region.clone(),
            domain: args.domain.clone(),
            allow_sse_c_over_http: args.allow_sse_c_over_http,
        },
    });
    let front = strata_gateway::build_front_with(
        ctx.clone(),
        Some(Arc::new(LocalNodeAdmin(store, engine.clone()))),
        edge,
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        if let Some((ak, sk, from_env)) = created {
            if from_env {
                writeln!(
                    out,
                    "strata: admin user created with the access key from STRATA_ADMIN_ACCESS_KEY ({ak})"
                )?;
            } else {
                writeln!(
                    out,
                    "strata: admin user created; these credentials are shown only once:"
                )?;
                writeln!(out, "  access key: {ak}")?;
                writeln!(out, "  secret key: {sk}")?;
            }
        }
        writeln!(
            out,
            "strata: data in {}, region {}",
            args.data_dir.display(),
            args.region
        )?;
        writeln!(out, "strata: ready on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "serving S3");

    tokio::select! {
        r = strata_gateway::http::serve(listener, front) => r?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    engine.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
