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
    pub data_shards: usize,
    #[arg(long, default_value_t = 2)]
    pub parity_shards: usize,
    /// Plaintext bytes per chunk.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub chunk_size: usize,
    /// How long deleted or replaced data waits before its chunks are removed (ms), so reads
    /// that started before the change can finish.
    #[arg(long, env = "STRATA_GC_GRACE_MS", default_value_t = strata_metadata::DEFAULT_GC_GRACE_MS)]
    pub gc_grace_ms: i64,
}

struct LocalNodeAdmin(Arc<LocalChunkStore>);

#[async_trait::async_trait]
impl NodeAdmin for LocalNodeAdmin {
    async fn scrub(&self, repair: bool) -> anyhow::Result<serde_json::Value> {
        let report = self.0.scrub(repair).await?;
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
    meta.set_gc_grace_ms(args.gc_grace_ms);
    let mut node_cfg = NodeConfig::under(&args.data_dir.join("disks"), args.disks);
    node_cfg.data_shards = args.data_shards;
    node_cfg.parity_shards = args.parity_shards;
    let store = Arc::new(LocalChunkStore::open(node_cfg).context("chunk store")?);
    let chunks: Arc<dyn ChunkService> = store.clone();

    // The placement geometry this start writes with; a different one supersedes it, so
    // segments written before keep naming theirs.
    let now = strata_gateway::context::now_ms();
    let disk_names: Vec<String> = (0..args.disks).map(|i| format!("disk{i}")).collect();
    let layout = meta
        .ensure_current_layout(
            &disk_names,
            u8::try_from(args.data_shards).context("--data-shards")?,
            u8::try_from(args.parity_shards).context("--parity-shards")?,
            u32::try_from(args.chunk_size).context("--chunk-size")?,
            now,
        )
        .map_err(|e| anyhow::anyhow!("placement layout: {e}"))?;

    // This process owns its write intents through an instance with a lease. It holds the
    // RocksDB lock, so every other instance is a dead earlier process: expire them, then sweep
    // their intents (requests cut short by a crash) into the GC queue.
    let instance = hex::encode(rand::random::<[u8; 16]>());
    meta.register_instance(&instance, INSTANCE_LEASE_MS, now)
        .map_err(|e| anyhow::anyhow!("registering the instance: {e}"))?;
    meta.expire_other_instances(&instance, now)
        .map_err(|e| anyhow::anyhow!("expiring earlier instances: {e}"))?;
    meta.sweep_interrupted_writes(now)
        .map_err(|e| anyhow::anyhow!("sweeping interrupted writes: {e}"))?;
    let created = bootstrap_admin(&meta, &master)?;
    let ctx = Arc::new(Context {
        meta,
        instance: instance.clone(),
        chunks,
        master,
        cfg: GatewayConfig {
            region: args.region.clone(),
            chunk_size: args.chunk_size,
            domain: args.domain.clone(),
            layout: layout.id,
            ..Default::default()
        },
    });
    let _lease = spawn_lease_renewal(ctx.clone());
    let front = strata_gateway::build_front(ctx.clone(), Some(Arc::new(LocalNodeAdmin(store))));
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
    // Clean shutdown: requests cut short now leave intents that the next start sweeps at once.
    if let Err(e) = ctx.meta.retire_instance(&ctx.instance) {
        tracing::warn!(error = %e, "could not retire the instance");
    }
    Ok(())
}

/// Lease of this process's instance record, renewed every `INSTANCE_RENEW`.
const INSTANCE_LEASE_MS: i64 = 30_000;
const INSTANCE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

/// Renews the instance lease. If the lease is lost (record gone or expired), another process
/// may already have swept this one's intents, so it must stop writing: it exits.
fn spawn_lease_renewal(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(INSTANCE_RENEW).await;
            let now = strata_gateway::context::now_ms();
            match ctx
                .meta
                .renew_instance(&ctx.instance, INSTANCE_LEASE_MS, now)
            {
                Ok(()) => {}
                Err(e @ strata_metadata::MetaError::InstanceExpired(_)) => {
                    // TODO(engine): stop accepting writes and drain instead of exiting.
                    tracing::error!(error = %e, "instance lease lost; stopping to keep other processes' GC safe");
                    std::process::exit(1);
                }
                // A transient failure: the lease (30 s) outlives a few missed renewals.
                Err(e) => tracing::warn!(error = %e, "could not renew the instance lease"),
            }
        }
    })
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
