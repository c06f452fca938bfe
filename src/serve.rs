//! `strata serve`: the embedded default. One process runs the S3 gateway, the metadata tier
//! (RocksDB under `DATA/meta`) and a chunk store over several local "disks" (`DATA/disks/diskN`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use strata_gateway::admin::NodeAdmin;
use strata_gateway::{Context, GatewayConfig};
use strata_metadata::MetaStore;
use strata_storage_node::ChunkService;
use strata_storage_node::keys::MasterKey;
use strata_storage_node::{Layout, LocalChunkStore, NodeConfig};

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
}

struct LocalNodeAdmin(Arc<LocalChunkStore>, Layout);

#[async_trait::async_trait]
impl NodeAdmin for LocalNodeAdmin {
    async fn scrub(&self, repair: bool) -> anyhow::Result<serde_json::Value> {
        // TODO(engine): scrub with every layout the metadata tier records, not only the current.
        let report = self.0.scrub(std::slice::from_ref(&self.1), repair).await?;
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
fn bootstrap_admin(
    meta: &MetaStore,
    master: &MasterKey,
) -> anyhow::Result<Option<(String, String, bool)>> {
    if meta.list_users()?.iter().any(|u| u.is_admin) {
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
    let (ak, sk) = strata_gateway::auth::create_user_with_key(meta, master, "admin", true, given)?;
    Ok(Some((ak, sk, from_env)))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    private_dir(&args.data_dir)?;
    let master = Arc::new(
        MasterKey::load_or_create(&args.data_dir.join("master.key")).context("master key")?,
    );
    let meta = MetaStore::open(&args.data_dir.join("meta"))
        .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
    let node_cfg = NodeConfig::under(&args.data_dir.join("disks"), args.disks);
    // TODO(engine): record this geometry with MetaStore::ensure_current_layout and use its id.
    let layout = Layout::new(
        0,
        node_cfg.disk_names(),
        args.data_shards,
        args.parity_shards,
    )
    .context("layout")?;
    let store = Arc::new(
        tokio::task::spawn_blocking(move || LocalChunkStore::open(node_cfg))
            .await?
            .context("chunk store")?,
    );
    let chunks: Arc<dyn ChunkService> = store.clone();

    // One process owns this store, so every write intent from before this start belongs to a
    // request that died with the previous process: its chunks go to the GC queue.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    meta.sweep_interrupted_writes(started)
        .map_err(|e| anyhow::anyhow!("sweeping interrupted writes: {e}"))?;
    let created = bootstrap_admin(&meta, &master)?;
    let ctx = Arc::new(Context {
        meta,
        chunks,
        master,
        cfg: GatewayConfig {
            region: args.region.clone(),
            chunk_size: args.chunk_size,
            domain: args.domain.clone(),
            layout: layout.clone(),
            ..Default::default()
        },
    });
    let front =
        strata_gateway::build_front(ctx.clone(), Some(Arc::new(LocalNodeAdmin(store, layout))));
    let _gc = strata_gateway::gc::spawn(ctx.clone());

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
