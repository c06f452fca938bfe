//! `strata serve`: the embedded default. One process runs the S3 gateway, the metadata tier
//! (RocksDB under `DATA/meta`) and a chunk store over several local "disks" (`DATA/disks/diskN`).
//! With `--meta etcd://HOST:PORT,...[/PREFIX]` the metadata tier is a shared etcd instead
//! (docs/cluster.md); the master key, key store and destruction log stay in DATA.

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
use strata_storage_node::{LocalChunkStore, NodeConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML file with values for these flags (docs/config.md); flags and environment
    /// variables override it.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where everything lives: master key, metadata, disks.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The metadata tier: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` for a shared etcd
    /// (docs/cluster.md); default: RocksDB under DATA/meta.
    #[arg(long, env = "STRATA_META")]
    pub meta: Option<String>,
    /// Seconds of the process lease that leadership of singleton work (GC, lifecycle, ...)
    /// hangs on, with a shared metadata tier: a killed leader's work moves within about this.
    #[arg(long, env = "STRATA_LEASE_TTL", default_value_t = 10)]
    pub lease_ttl: u64,
    /// Address to listen on (loopback by default); HTTPS when a certificate is configured and
    /// no `--tls-listen` is given.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
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
    /// Objects of at most this many bytes are kept in their version's metadata record, sealed
    /// under the version's key, instead of one file per shard (0: never). Default:
    /// strata_engine::DEFAULT_INLINE_THRESHOLD with the embedded RocksDB tier; 0, and nothing
    /// else accepted, with etcd or in a cluster (a shared metadata tier holds no object bytes).
    #[arg(long, env = "STRATA_INLINE_THRESHOLD")]
    pub inline_threshold: Option<u64>,
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
    /// Used fraction of the fullest local disk above which /_strata/health, the log (one WARN
    /// per crossing) and `strata_capacity_alert` raise the capacity alert (0 < x <= 1).
    #[arg(long, env = "STRATA_CAPACITY_ALERT_THRESHOLD", default_value_t = 0.70)]
    pub capacity_alert_threshold: f64,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
}

// ---- audit-log retention (docs/audit.md, "Retention") --------------------------------------------
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Days the audit log keeps records, then deletes them with a deletion record; at least
    /// 90 (authentication records are kept at least 3 months).
    #[arg(long, env = "STRATA_AUDIT_RETENTION_DAYS", default_value_t = strata_engine::audit::DEFAULT_RETENTION_DAYS,
          value_parser = parse_retention_days)]
    pub audit_retention_days: u64,
    /// Records per audit-log segment (segments are deleted whole); also sealed after a day.
    #[arg(long, env = "STRATA_AUDIT_SEGMENT_RECORDS", default_value_t = strata_engine::audit::DEFAULT_SEGMENT_RECORDS)]
    pub audit_segment_records: u64,
    /// Tests only, with --lifecycle-day-secs: one audit-retention day lasts N ms (the 90-day
    /// floor is then 90 N ms), and the retention worker looks every N ms.
    #[arg(long, env = "STRATA_AUDIT_TEST_DAY_MS")]
    pub audit_test_day_ms: Option<u64>,
}

fn parse_retention_days(s: &str) -> Result<u64, String> {
    let d: u64 = s.parse().map_err(|e| format!("{e}"))?;
    if d < strata_engine::audit::MIN_RETENTION_DAYS {
        return Err(format!(
            "{d} days is below the {} days authentication records must be kept (3 months)",
            strata_engine::audit::MIN_RETENTION_DAYS
        ));
    }
    Ok(d)
}

impl AuditArgs {
    /// (segment options, retention in ms, how often the retention worker looks).
    fn retention(
        &self,
        lifecycle_day_secs: Option<u64>,
    ) -> anyhow::Result<(strata_engine::audit::AuditOptions, i64, std::time::Duration)> {
        use strata_engine::audit::{AuditOptions, DAY_MS};
        anyhow::ensure!(
            self.audit_segment_records >= 2,
            "--audit-segment-records must be at least 2"
        );
        let day_ms = match self.audit_test_day_ms {
            Some(_) if lifecycle_day_secs.is_none() => anyhow::bail!(
                "--audit-test-day-ms is for tests and needs --lifecycle-day-secs as well"
            ),
            Some(0) => anyhow::bail!("--audit-test-day-ms must be at least 1"),
            Some(ms) => ms as i64,
            None => DAY_MS,
        };
        let retention_ms = (self.audit_retention_days as i64).saturating_mul(day_ms);
        // Hourly in real days; every test day (at least 50 ms) in tests.
        let interval = if self.audit_test_day_ms.is_some() {
            std::time::Duration::from_millis(day_ms.max(50) as u64)
        } else {
            std::time::Duration::from_secs(3600)
        };
        Ok((
            AuditOptions {
                segment_records: self.audit_segment_records,
                // Real days: a test day scales the retention, not the segments' age.
                segment_age_ms: DAY_MS,
            },
            retention_ms,
            interval,
        ))
    }
}

// ---- lifecycle and archive tier (docs/lifecycle.md, docs/archive-format.md) ---------------------
#[derive(clap::Args)]
pub struct LifecycleArgs {
    /// One lifecycle day lasts N seconds (tests, demos; no midnight rounding); also the day of
    /// the account-closure grace period. Default: real days.
    #[arg(long, env = "STRATA_LIFECYCLE_DAY_SECS")]
    pub lifecycle_day_secs: Option<u64>,
    /// Data shards of archive containers (their own erasure geometry, on the same disks).
    #[arg(long, env = "STRATA_ARCHIVE_DATA_SHARDS", default_value_t = 4)]
    pub archive_data_shards: u8,
    /// Parity shards of archive containers.
    #[arg(long, env = "STRATA_ARCHIVE_PARITY_SHARDS", default_value_t = 2)]
    pub archive_parity_shards: u8,
    /// Plaintext bytes per archive chunk.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub archive_chunk_size: u32,
    /// A container is sealed (immutable) once its extents hold this many bytes.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub archive_container_bytes: u64,
    /// Compaction rewrites a sealed container whose live fraction is below this (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub archive_compact_below: f64,
    /// Restore delay of the Expedited tier, seconds (default 300; 1 with --lifecycle-day-secs).
    #[arg(long)]
    pub restore_expedited_secs: Option<u64>,
    /// Restore delay of the Standard tier, seconds (default 14400; 2 with --lifecycle-day-secs).
    #[arg(long)]
    pub restore_standard_secs: Option<u64>,
    /// Restore delay of the Bulk tier, seconds (default 43200; 4 with --lifecycle-day-secs).
    #[arg(long)]
    pub restore_bulk_secs: Option<u64>,
    /// DEEP_ARCHIVE restores take this many times as long (default 3; 2 with --lifecycle-day-secs).
    #[arg(long)]
    pub restore_deep_factor: Option<i64>,
}

impl LifecycleArgs {
    pub fn archive_config(&self) -> anyhow::Result<strata_engine::archive::ArchiveConfig> {
        use strata_engine::archive::{ArchiveConfig, RestoreDelays};
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.archive_compact_below),
            "--archive-compact-below must be between 0 and 1"
        );
        anyhow::ensure!(
            self.archive_chunk_size > 0,
            "--archive-chunk-size must be at least 1"
        );
        let mut d = if self.lifecycle_day_secs.is_some() {
            RestoreDelays::scaled()
        } else {
            RestoreDelays::real()
        };
        let ms = |s: u64| (s as i64).saturating_mul(1000);
        if let Some(s) = self.restore_expedited_secs {
            d.expedited_ms = ms(s);
        }
        if let Some(s) = self.restore_standard_secs {
            d.standard_ms = ms(s);
        }
        if let Some(s) = self.restore_bulk_secs {
            d.bulk_ms = ms(s);
        }
        if let Some(f) = self.restore_deep_factor {
            d.deep_factor = f.max(1);
        }
        Ok(ArchiveConfig {
            chunk_size: self.archive_chunk_size,
            container_bytes: self.archive_container_bytes.max(1),
            compact_below: self.archive_compact_below,
            restore_delays: d,
        })
    }
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
    /// File holding the bearer token a scraper must present to GET /_strata/metrics
    /// (`Authorization: Bearer TOKEN`). Without a token only `strata admin metrics` reads them.
    #[arg(
        long,
        env = "STRATA_METRICS_TOKEN_FILE",
        conflicts_with = "metrics_public"
    )]
    pub metrics_token_file: Option<PathBuf>,
    /// Serve /_strata/metrics to anyone who can reach the listener (a private network).
    #[arg(long, env = "STRATA_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Do not serve the operator console at /_strata/console/ (docs/console.md).
    #[arg(long, env = "STRATA_NO_CONSOLE")]
    pub no_console: bool,
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
        use strata_gateway::http::metrics_access::MetricsAccess;
        let metrics_access = match (&self.metrics_token_file, self.metrics_public) {
            (Some(path), _) => {
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("metrics token file {}", path.display()))?,
                );
                let token = text.trim();
                anyhow::ensure!(
                    token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic()),
                    "metrics token file {}: the token must be at least 16 printable characters",
                    path.display()
                );
                MetricsAccess::Token(zeroize::Zeroizing::new(token.as_bytes().to_vec()))
            }
            (None, true) => MetricsAccess::Public,
            (None, false) => MetricsAccess::Closed,
        };
        Ok(strata_gateway::http::EdgeConfig {
            metrics_access,
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            max_xml_body: self.max_xml_body,
            console: !self.no_console,
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

    async fn disks(&self) -> anyhow::Result<serde_json::Value> {
        let cfg = self.0.config().clone();
        tokio::task::spawn_blocking(move || {
            let disks: Vec<serde_json::Value> = cfg
                .disks
                .iter()
                .map(|(name, dir)| {
                    let used = strata_storage_node::disk_usage_fraction(dir);
                    serde_json::json!({
                        "name": name,
                        "dir": dir,
                        "ok": used.is_ok() && dir.is_dir(),
                        "used_fraction": used.as_ref().ok(),
                        "error": used.err().map(|e| e.to_string()),
                        "high_water": cfg.high_water,
                    })
                })
                .collect();
            serde_json::Value::Array(disks)
        })
        .await
        .map_err(|e| anyhow::anyhow!("disk status: {e}"))
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

/// The inline threshold for this mode. Inlining is for the embedded tier only: there the
/// metadata disk already holds the only index and the keys of every object, so small objects
/// in it add no new single point of loss; a shared etcd must not hold object bytes (its 8 GiB
/// limit), so there small objects stay erasure-coded across nodes.
fn inline_threshold(flag: Option<u64>, shared_meta: bool) -> anyhow::Result<u64> {
    match flag {
        None if shared_meta => Ok(0),
        None => Ok(strata_engine::DEFAULT_INLINE_THRESHOLD),
        Some(n) if n > 0 && shared_meta => anyhow::bail!(
            "--inline-threshold {n}: inlining is for the embedded metadata tier only (etcd and \
             clusters keep small objects erasure-coded); use 0 or leave it unset"
        ),
        Some(n) if n > strata_engine::MAX_INLINE_THRESHOLD => anyhow::bail!(
            "--inline-threshold {n}: at most {} bytes",
            strata_engine::MAX_INLINE_THRESHOLD
        ),
        Some(n) => Ok(n),
    }
}

/// The metadata store `--meta` names (RocksDB under DATA/meta by default), and with etcd an
/// exclusive lock on DATA/LOCK: the per-process state in DATA (master key, key store,
/// destruction log) must have one owner, which RocksDB's own lock guarantees otherwise.
fn open_meta(args: &ServeArgs) -> anyhow::Result<(MetaStore, Option<std::fs::File>)> {
    match args.meta.as_deref() {
        None | Some("") => {
            let meta = MetaStore::open(&args.data_dir.join("meta"))
                .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
            Ok((meta, None))
        }
        Some(url) if url.starts_with("etcd://") => {
            let path = args.data_dir.join("LOCK");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            lock.try_lock().map_err(|_| {
                anyhow::anyhow!(
                    "{} is in use by another strata process (each process needs its own data dir)",
                    args.data_dir.display()
                )
            })?;
            let meta = MetaStore::open_url(url).map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
            Ok((meta, Some(lock)))
        }
        Some(other) => anyhow::bail!(
            "--meta {other:?}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (or nothing, for \
             RocksDB under DATA/meta)"
        ),
    }
}

/// Buckets written before the key store kept their KEK wrapped in the bucket record (and DEKs in
/// the version records), where deleting never destroyed them. Pre-release: no conversion, as for
/// metadata format 1.
fn refuse_pre_keystore_records(meta: &MetaStore) -> anyhow::Result<()> {
    let buckets = meta
        .list_buckets()
        .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
    if let Some(b) = buckets.iter().find(|b| b.kek_slot.is_none()) {
        anyhow::bail!(
            "bucket {:?} was written before the key store (its key is in the metadata, where it              cannot be destroyed); this version does not convert such stores: move the data              directory away and start with an empty one",
            b.name
        );
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
    run_with(args, None).await
}

/// `strata serve`, or with `cluster` the gateway of a cluster (`strata gateway`): the same
/// process minus the local chunk store, whose place the cluster chunk client takes.
pub async fn run_with(
    args: ServeArgs,
    cluster: Option<crate::cluster::GatewayClusterArgs>,
) -> anyhow::Result<()> {
    let edge = args.edge.config()?;
    let (audit_opts, audit_retention_ms, audit_interval) =
        args.audit.retention(args.lifecycle.lifecycle_day_secs)?;
    private_dir(&args.data_dir)?;
    anyhow::ensure!(
        args.lifecycle.lifecycle_day_secs != Some(0),
        "--lifecycle-day-secs must be at least 1"
    );
    anyhow::ensure!(
        (2..=3600).contains(&args.lease_ttl),
        "--lease-ttl must be between 2 and 3600 seconds"
    );
    anyhow::ensure!(
        args.capacity_alert_threshold > 0.0 && args.capacity_alert_threshold <= 1.0,
        "--capacity-alert-threshold must be a fraction in (0, 1], e.g. 0.70"
    );
    let (meta, _data_lock) = open_meta(&args)?;
    let inline_threshold = inline_threshold(
        args.inline_threshold,
        cluster.is_some() || meta.backend() != "rocksdb",
    )?;
    // After the metadata: RocksDB's lock on DATA/meta (or, with etcd, our lock on DATA/LOCK)
    // makes this the only process using the data dir, so the key store (DATA/keys) and the
    // destruction log (DATA/destruction-log) are ours too.
    let replicated = match &cluster {
        Some(c) => crate::cluster::key_store(c, &meta)?,
        None => None,
    };
    let store = replicated
        .clone()
        .map(strata_keystore::KeyStore::Replicated);
    let keys = strata_engine::keys::KeyRing::open_with(&args.data_dir, store)
        .map_err(|e| anyhow::anyhow!("keys: {e}"))?;
    refuse_pre_keystore_records(&meta)?;
    // The cluster's destruction log, replicated on the key-service nodes, when there are some
    // (one log for every gateway), else this process's own.
    let replicated_log = match &cluster {
        Some(c) => crate::cluster::destruction_log(c, &meta)?,
        None => None,
    };
    let log: strata_destruction_log::LogHandle = match replicated_log.clone() {
        Some(r) => strata_destruction_log::LogHandle::Replicated(r),
        None => {
            strata_destruction_log::DestructionLog::open(&args.data_dir.join("destruction-log"))
                .map_err(|e| anyhow::anyhow!("destruction log: {e}"))?
                .into()
        }
    };
    // Every request and operator action (docs/audit.md).
    let audit = Arc::new(
        strata_engine::audit::AuditLog::open_with(
            &args.data_dir.join(strata_engine::audit::AUDIT_DIR_NAME),
            audit_opts,
        )
        .map_err(|e| anyhow::anyhow!("audit log: {e}"))?,
    );
    meta.set_gc_grace_ms(args.gc_grace_ms);
    let chunk_size = u32::try_from(args.chunk_size).context("--chunk-size")?;
    let now = strata_engine::now_ms();
    let (chunks, store, setup): (Arc<dyn ChunkService>, _, _) = match &cluster {
        None => {
            let node_cfg = NodeConfig::under(&args.data_dir.join("disks"), args.disks);
            let store = Arc::new(
                tokio::task::spawn_blocking(move || LocalChunkStore::open(node_cfg))
                    .await?
                    .context("chunk store")?,
            );
            (store.clone(), Some(store), None)
        }
        Some(c) => {
            let setup = crate::cluster::setup_gateway(
                &meta,
                &c.cluster,
                c.nodes.clone(),
                args.data_shards,
                args.parity_shards,
                chunk_size,
            )
            .await?;
            (setup.client.clone(), None, Some(setup))
        }
    };

    // The placement geometry this start writes with; a different one supersedes it, so
    // segments written before keep naming theirs. In cluster mode the epoch is the layout.
    let layout = match &setup {
        Some(s) => s.layout.clone(),
        None => meta
            .ensure_current_layout(
                &store.as_ref().expect("local store").config().disk_names(),
                args.data_shards,
                args.parity_shards,
                chunk_size,
                now,
            )
            .map_err(|e| anyhow::anyhow!("placement layout: {e}"))?,
    };
    let disk_names = layout.disks.clone();
    // Archive containers have their own geometry on the same disks.
    meta.ensure_archive_layout(
        &disk_names,
        args.lifecycle.archive_data_shards,
        args.lifecycle.archive_parity_shards,
        args.lifecycle.archive_chunk_size,
        now,
    )
    .map_err(|e| anyhow::anyhow!("archive layout: {e}"))?;
    let archive = args.lifecycle.archive_config()?;

    // This process owns its write intents through an instance with a lease (renewed by the
    // engine). With RocksDB it holds the lock, so every other instance is a dead earlier
    // process: expire them, then sweep their intents (requests cut short by a crash) into the GC
    // queue. With a shared store other instances may be live processes: only those whose lease
    // ran out are swept.
    let instance = strata_engine::instance::new_instance_id();
    meta.register_instance(&instance, strata_engine::instance::LEASE_MS, now)
        .map_err(|e| anyhow::anyhow!("registering the instance: {e}"))?;
    if meta.backend() == "rocksdb" {
        meta.expire_other_instances(&instance, now)
            .map_err(|e| anyhow::anyhow!("expiring earlier instances: {e}"))?;
    }
    meta.sweep_interrupted_writes(now)
        .map_err(|e| anyhow::anyhow!("sweeping interrupted writes: {e}"))?;
    let engine_meta = meta.clone();
    let engine = Engine::new(
        meta,
        chunks,
        keys,
        log,
        EngineConfig {
            buffer_budget: args.buffer_memory.max(1) * 1024 * 1024,
            rebalance_rate: args.rebalance_rate * 1024 * 1024,
            access_log_delay: std::time::Duration::from_secs(args.access_log_delay_secs),
            lifecycle_day_secs: args.lifecycle.lifecycle_day_secs,
            archive,
            rebuild: cluster
                .as_ref()
                .map(|c| (c.rebuild_rate.max(1) * 1024 * 1024, c.rebuild_priority)),
            lease_ttl: std::time::Duration::from_secs(args.lease_ttl),
            inline_threshold,
            ..Default::default()
        },
        layout,
        instance,
    )
    .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    engine.set_audit_log(audit.clone());
    // The local disks' health (metrics, health, readiness): sampled once before serving, then
    // by the disk-watch worker. Cluster nodes watch their own disks.
    if let Some(store) = &store {
        let health = Arc::new(strata_engine::disks::DiskHealth::new(
            store.clone(),
            disk_names.clone(),
            args.capacity_alert_threshold,
        ));
        let h = health.clone();
        tokio::task::spawn_blocking(move || h.sample_now()).await?;
        engine.set_disk_health(health);
    }
    if let Some(setup) = &setup {
        engine.set_disk_check(Arc::new(crate::cluster::NodeDiskCheck {
            meta: engine_meta.clone(),
            client: setup.client.clone(),
        }));
    }
    let created = bootstrap_admin(&engine).await?;
    engine.start_background();
    strata_migration::export::set_data_dir(&args.data_dir);
    strata_migration::spawn(&engine);
    // Each process trims its own audit log (not a leader singleton: the log is local).
    engine.workers().spawn(
        strata_engine::audit::AuditRetentionWorker::new(
            audit.clone(),
            audit_retention_ms,
            audit_interval,
        ),
        1,
    );
    if let (Some(setup), Some(_)) = (&setup, &cluster) {
        engine.workers().spawn(
            crate::cluster::ClusterMapWorker::new(
                engine.clone(),
                engine_meta.clone(),
                setup,
                args.data_shards,
                args.parity_shards,
                chunk_size,
            ),
            0,
        );
    }
    if let Some(r) = replicated {
        engine
            .workers()
            .spawn(crate::cluster::KeyReplicaWorker::new(r), 0);
    }
    if let Some(l) = replicated_log {
        engine
            .workers()
            .spawn(crate::cluster::LogReplicaWorker::new(l), 0);
    }
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
        store.map(|s| Arc::new(LocalNodeAdmin(s, engine.clone())) as Arc<dyn NodeAdmin>),
        edge,
    );

    let listeners = args.tls.listeners(args.listen, &args.data_dir)?;
    let bind = |a: SocketAddr| async move {
        tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("cannot listen on {a}"))
    };
    let plain = match listeners.plain {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let tls = match listeners.tls {
        Some((a, source)) => Some((bind(a).await?, source)),
        None => None,
    };
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
            "strata: data in {}, region {}, metadata on {}",
            args.data_dir.display(),
            args.region,
            engine.meta_blocking().backend()
        )?;
        if let Some(l) = &plain {
            writeln!(out, "strata: ready on http://{}", l.local_addr()?)?;
        }
        if let Some((l, _)) = &tls {
            writeln!(out, "strata: ready on https://{}", l.local_addr()?)?;
        }
        out.flush()?;
    }
    let serve_plain = async {
        match plain {
            Some(l) => {
                tracing::info!(addr = %l.local_addr()?, "serving S3 over HTTP");
                strata_gateway::http::serve(l, front.clone(), None).await
            }
            None => std::future::pending().await,
        }
    };
    let serve_tls = async {
        match tls {
            Some((l, source)) => {
                tracing::info!(addr = %l.local_addr()?, "serving S3 over HTTPS");
                crate::tls_args::reload_on_sighup(source.clone());
                strata_gateway::http::serve(l, front.clone(), Some(source)).await
            }
            None => std::future::pending().await,
        }
    };

    tokio::select! {
        r = serve_plain => r?,
        r = serve_tls => r?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    engine.shutdown().await;
    // Writes what is queued and a last signed checkpoint.
    tokio::task::spawn_blocking(move || audit.close()).await?;
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
