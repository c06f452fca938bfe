//! `strata`: the S3-compatible object and archive storage engine.
//!
//! - `strata serve`: gateway + metadata + chunk store in one process (the embedded default).
//! - `strata node`: a chunk store alone, serving its HTTP API; with `--cluster DIR` a cluster
//!   storage node (mutual TLS only).
//! - `strata gateway --cluster DIR --node ADDR...`: the S3 gateway of a cluster.
//! - `strata cluster init|issue`: the cluster CA and certificates.
//! - `strata admin ...`: operator verbs against a running server, and offline restore.

mod admin_client;
mod admin_keys;
mod audit_cli;
mod cluster;
mod config;
mod destruction_cli;
mod migration_cli;
mod serve;
mod tls_args;
mod usage_cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "S3-compatible object and archive storage engine"
)]
struct Cli {
    /// Log lines on stderr: `text` (default, for people) or `json` (one JSON object per line:
    /// time, level, target, message and fields, for log shippers). Secrets are never logged in
    /// either format.
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The subcommands that run a server and so take `--config FILE` (docs/config.md).
const SERVER_COMMANDS: [&str; 3] = ["serve", "gateway", "node"];

#[derive(Subcommand)]
enum Command {
    /// Run gateway, metadata and chunk store in one process.
    Serve(serve::ServeArgs),
    /// Run a chunk store alone (its HTTP API), e.g. on a storage machine; with --cluster, a
    /// cluster storage node.
    Node(NodeArgs),
    /// Run the S3 gateway of a cluster: chunks go to the storage nodes given with --node.
    Gateway(GatewayArgs),
    /// Cluster CA and certificates.
    Cluster {
        #[command(subcommand)]
        verb: cluster::ClusterVerb,
    },
    /// Operator verbs.
    Admin(AdminArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// TOML file with values for these flags (docs/config.md); flags and environment
    /// variables override it.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long, env = "STRATA_NODE_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Disk directories `disk0..` under the data dir. The geometry (k, m, which disks) comes
    /// with every request as its layout.
    #[arg(long, default_value_t = 6)]
    disks: usize,
    /// Cluster mode: this node's certificate directory (from `strata cluster issue`). The
    /// node then serves the cluster API over mutual TLS only.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// Cluster mode: the node id, persisted in the data dir on first start (default: a random
    /// one). Give the old id to a replacement node with an empty data dir.
    #[arg(long)]
    node_id: Option<String>,
    /// Cluster mode: this node also hosts the cluster's key service (the key store file in
    /// DATA/keys, docs/keys.md); gateways name it with `--key-service ADDR`.
    #[arg(long)]
    key_service: bool,
}

#[derive(Args)]
struct GatewayArgs {
    #[command(flatten)]
    serve: serve::ServeArgs,
    #[command(flatten)]
    cluster: cluster::GatewayClusterArgs,
}

#[derive(Args)]
struct AdminArgs {
    /// Endpoint of the running server.
    #[arg(
        long,
        env = "STRATA_ENDPOINT",
        default_value = "http://127.0.0.1:9000",
        global = true
    )]
    endpoint: String,
    /// Access key of an admin user.
    #[arg(long, env = "STRATA_ACCESS_KEY", global = true)]
    access_key: Option<String>,
    /// Secret key of an admin user (prefer the environment variable: arguments are visible to
    /// other local users).
    #[arg(long, env = "STRATA_SECRET_KEY", global = true, hide_env_values = true)]
    secret_key: Option<String>,
    #[arg(
        long,
        env = "STRATA_REGION",
        default_value = "us-east-1",
        global = true
    )]
    region: String,
    /// Machine-readable output (the admin API's JSON) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// CA certificates (PEM) to trust for an https:// endpoint (e.g. DATA/tls/cert.pem of
    /// `strata serve --tls-self-signed`).
    #[arg(long, env = "STRATA_CA_BUNDLE", global = true)]
    ca_bundle: Option<PathBuf>,
    #[command(subcommand)]
    verb: AdminVerb,
}

// Parsed once per process: the size of the largest variant (migration start) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AdminVerb {
    /// Users: add, list, remove.
    User {
        #[command(subcommand)]
        verb: UserVerb,
    },
    /// Access keys (create, revoke) and key rotation (rotate-master, rotate-bucket).
    Key {
        #[command(subcommand)]
        verb: KeyVerb,
    },
    // ---- keys, destruction, retention (docs/keys.md) ----
    /// The key inventory.
    Keys {
        #[command(subcommand)]
        verb: admin_keys::KeysVerb,
    },
    /// Bucket destruction.
    Bucket {
        #[command(subcommand)]
        verb: admin_keys::BucketVerb,
    },
    /// Retention presets (lifecycle expirations for the periods the rules name).
    Retention {
        #[command(subcommand)]
        verb: admin_keys::RetentionVerb,
    },
    // ----
    /// The server's metrics in the Prometheus text format (what /_strata/metrics serves to a
    /// scraper with the bearer token), read with this admin signature.
    Metrics,
    /// Consistent online backup into DIR (on the server's machine): the metadata snapshot and a
    /// copy of the key store.
    Backup { dir: PathBuf },
    /// Restore a backup into a stopped server's data directory (see docs/keys.md for what
    /// happens to the key store).
    Restore {
        backup_dir: PathBuf,
        #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Verify every shard's checksum; with --repair, rebuild bad shards.
    Scrub {
        #[arg(long)]
        repair: bool,
    },
    /// Background workers (GC, intent sweep, rebalance): list their status, tune them.
    Worker {
        #[command(subcommand)]
        verb: WorkerVerb,
    },
    /// KMS keys for SSE-KMS (`aws:kms`): keys of the server's own key hierarchy.
    Kms {
        #[command(subcommand)]
        verb: KmsVerb,
    },
    /// Usage per bucket: stored bytes by storage class, objects, versions, requests by class,
    /// bytes in and out (docs/usage.md).
    Usage {
        /// Only the buckets this user owns.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        bucket: Option<String>,
        /// With the samples since T (Unix ms, RFC 3339, or an age: 15m, 1h, 7d); request
        /// counts are then those since T.
        #[arg(long)]
        since: Option<String>,
    },
    /// The audit log: export, search (server); verify an export, print the public key
    /// (offline).
    Audit {
        #[command(subcommand)]
        verb: audit_cli::AuditVerb,
    },
    /// The destruction log: export, show (server); verify an export, print the public key
    /// (offline).
    Destruction {
        #[command(subcommand)]
        verb: destruction_cli::DestructionVerb,
    },
    /// Lifecycle engine: status per rule, explain one version, preview what is coming.
    Lifecycle {
        #[command(subcommand)]
        verb: LifecycleVerb,
    },
    /// Archive tier: containers (live/dead bytes), repack and restore queues.
    Archive {
        #[command(subcommand)]
        verb: ArchiveVerb,
    },
    /// Cluster rebuild job: progress, bytes done, rate, ETA, node states.
    Rebuild {
        #[command(subcommand)]
        verb: RebuildVerb,
    },
    /// Migration jobs: bulk import from any S3 endpoint, run in the server (docs/migration.md).
    Migration {
        #[command(subcommand)]
        verb: migration_cli::MigrationVerb,
    },
    /// Export jobs (data return): a bucket to a directory on the server's machine or to another
    /// S3 endpoint, run in the server; `verify DIR` offline (docs/migration.md).
    Export {
        #[command(subcommand)]
        verb: migration_cli::ExportVerb,
    },
}

#[derive(Subcommand)]
enum RebuildVerb {
    /// The rebuild job's status (add --json for the admin API's JSON).
    Status,
}

#[derive(Subcommand)]
enum KmsVerb {
    /// Creates a key; requests name it `alias/NAME`, by its id or by its ARN.
    Create { name: String },
    /// Every key: id, name, ARN, created, enabled (never key material), as JSON.
    List,
    /// Disables a key: writes with it and reads of the objects it protects are refused.
    Disable { name: String },
    /// Enables a disabled key again.
    Enable { name: String },
}

// ---- lifecycle and archive verbs -----------------------------------------------------------------
#[derive(Subcommand)]
enum LifecycleVerb {
    /// Per-rule counters (scanned, actions by kind, bytes, errors, lag) and the pass state.
    Status { bucket: Option<String> },
    /// Which rule applies to a version, when it is due, and why nothing happened yet.
    Explain {
        bucket: String,
        key: String,
        #[arg(long)]
        version_id: Option<String>,
    },
    /// Per-rule counters in the Prometheus text format (bucket and rule labels; the
    /// unauthenticated /_strata/metrics has only the sums).
    Metrics,
    /// What the current rules would do in the next N (lifecycle) days, without doing it.
    Preview {
        bucket: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Versions examined at most.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ArchiveVerb {
    /// Containers (live/dead bytes), repack and restore queues.
    Status,
}

/// (verb, body) of a lifecycle command.
fn lifecycle_call(v: LifecycleVerb) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    match v {
        LifecycleVerb::Status { bucket } => ("lifecycle-status", json!({"bucket": bucket})),
        LifecycleVerb::Metrics => ("lifecycle-metrics", json!({})),
        LifecycleVerb::Explain {
            bucket,
            key,
            version_id,
        } => (
            "lifecycle-explain",
            json!({"bucket": bucket, "key": key, "version_id": version_id}),
        ),
        LifecycleVerb::Preview {
            bucket,
            days,
            limit,
        } => (
            "lifecycle-preview",
            json!({"bucket": bucket, "days": days, "limit": limit}),
        ),
    }
}

/// A readable rendering of the lifecycle/archive answers (`--json` prints them as they are).
fn render_readable(verb: &str, v: &serde_json::Value) -> String {
    let mut out = String::new();
    let ms = |x: &serde_json::Value| x.as_i64().map(fmt_ms).unwrap_or_else(|| "-".into());
    match verb {
        "lifecycle-status" => {
            out += &format!(
                "passes {}  running {}  versions scanned {}  last pass end {}  pending actions {}
",
                v["passes"],
                v["pass_running"],
                v["versions_scanned"],
                ms(&v["last_pass_end"]),
                v["pending_actions"]
            );
            out += &format!(
                "{:<40} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6} {:>10}
",
                "bucket/rule",
                "scanned",
                "expired",
                "nc-exp",
                "dm-rm",
                "transit",
                "aborted",
                "locked",
                "stale",
                "errors",
                "lag"
            );
            for (k, r) in v["rules"].as_object().into_iter().flatten() {
                out += &format!(
                    "{:<40} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6} {:>9}s
",
                    k,
                    r["scanned"],
                    r["expired"],
                    r["noncurrent_expired"],
                    r["delete_markers_removed"],
                    r["transitioned"],
                    r["uploads_aborted"],
                    r["locked"],
                    r["stale"],
                    r["errors"],
                    r["lag_ms"].as_i64().unwrap_or(0) / 1000
                );
            }
        }
        "lifecycle-explain" => {
            out += &format!(
                "{}/{} version {} ({}; {}, {} bytes)
",
                v["bucket"].as_str().unwrap_or(""),
                v["key"].as_str().unwrap_or(""),
                v["version_id"].as_str().unwrap_or(""),
                if v["is_latest"].as_bool() == Some(true) {
                    "current"
                } else {
                    "noncurrent"
                },
                v["storage_class"].as_str().unwrap_or(""),
                v["size"]
            );
            for r in v["rules"].as_array().into_iter().flatten() {
                out += &format!(
                    "  rule {}: enabled {}, filter matches {}",
                    r["rule_id"], r["enabled"], r["filter_matches"]
                );
                for a in r["actions"].as_array().into_iter().flatten() {
                    out += &format!(
                        "; {} due {}{}",
                        a["action"].as_str().unwrap_or(""),
                        ms(&a["due"]),
                        if a["is_due"].as_bool() == Some(true) {
                            " (due)"
                        } else {
                            ""
                        }
                    );
                }
                for w in r["why_not"].as_array().into_iter().flatten() {
                    out += &format!("; {}", w.as_str().unwrap_or(""));
                }
                out += "
";
            }
            for b in v["blocked_by"].as_array().into_iter().flatten() {
                out += &format!(
                    "  blocked by: {}
",
                    b.as_str().unwrap_or("")
                );
            }
            out += &format!(
                "  => {}
",
                v["note"].as_str().unwrap_or("")
            );
        }
        "lifecycle-preview" => {
            out += &format!(
                "{:<50} {:<28} {:<22} {:<24} {}
",
                "key", "version", "action", "due", "rule"
            );
            for a in v["actions"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<50} {:<28} {:<22} {:<24} {}{}
",
                    a["key"].as_str().unwrap_or(""),
                    a["version_id"].as_str().unwrap_or(""),
                    a["action"].as_str().unwrap_or(""),
                    ms(&a["due"]),
                    a["rule_id"].as_str().unwrap_or(""),
                    if a["blocked_by_lock"].as_bool() == Some(true) {
                        " (locked)"
                    } else {
                        ""
                    }
                );
            }
            out += &format!(
                "{} versions examined{}
",
                v["versions_examined"],
                if v["complete"].as_bool() == Some(true) {
                    ""
                } else {
                    " (limit reached)"
                }
            );
        }
        _ => {
            out += &format!(
                "repack queue {}  restore queue {}
",
                v["repack_queue"], v["restore_queue"]
            );
            for c in v["containers"].as_array().into_iter().flatten() {
                out += &format!(
                    "container {} layout {} extents {} bytes {} live {} sealed {} retiring {}
",
                    c["id"].as_str().unwrap_or(""),
                    c["layout"],
                    c["extents"],
                    c["bytes"],
                    c["live_bytes"],
                    c["sealed"],
                    c["retiring"]
                );
            }
        }
    }
    out
}

fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
// -------------------------------------------------------------------------------------------------

#[derive(Subcommand)]
enum WorkerVerb {
    /// Every worker's state, progress counters and last error, as JSON.
    List,
    /// Sets a worker's tranquility: after a unit of work that took t, it pauses N x t.
    Set {
        name: String,
        #[arg(long)]
        tranquility: u32,
    },
}

#[derive(Subcommand)]
enum UserVerb {
    Add {
        name: String,
    },
    List,
    /// Removes a user; with --purge, closes the account: its buckets are read-only for the
    /// grace period (restorable), then destroyed with destruction records.
    Remove {
        name: String,
        #[arg(long)]
        purge: bool,
        /// Grace period in days (of --lifecycle-day-secs on the server).
        #[arg(long, default_value_t = 7)]
        grace_days: u32,
    },
    /// Undoes `remove --purge` during the grace period.
    Restore {
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyVerb {
    Create {
        user: String,
    },
    /// (named `key_id` so it cannot collide with the global `--access-key` option)
    Revoke {
        #[arg(value_name = "ACCESS_KEY")]
        key_id: String,
    },
    /// A new master key wraps every bucket key and access-key secret again, then the old one is
    /// destroyed (no object data rewritten). Resumes after a crash.
    RotateMaster {
        /// Keys re-wrapped per second at most.
        #[arg(long)]
        rate: Option<u64>,
        /// Return once queued instead of showing progress until it is done.
        #[arg(long)]
        no_wait: bool,
    },
    /// A new key for BUCKET re-wraps every data key of the bucket, then the old one is destroyed.
    RotateBucket {
        bucket: String,
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long)]
        no_wait: bool,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off,hyper=warn"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => fmt.init(),
        // Fields at the top level of each object (not under "fields"), so shippers index them.
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let (cli, loaded) = config::parse::<Cli>();
    init_tracing(cli.log_format);
    if let Some(l) = loaded {
        // Key names only: the file's values are not logged.
        tracing::info!(path = %l.path.display(), applied = ?l.applied, overridden = ?l.overridden,
            "config file loaded");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve::run(args)),
        Command::Node(args) => rt.block_on(run_node(args)),
        Command::Gateway(args) => rt.block_on(serve::run_with(args.serve, Some(args.cluster))),
        Command::Cluster { verb } => cluster::run_cluster(verb),
        Command::Admin(args) => rt.block_on(run_admin(args)),
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    if let Some(tls) = args.cluster {
        return cluster::run_cluster_node(
            args.data_dir,
            args.listen,
            args.disks,
            tls,
            args.node_id,
            args.key_service,
        )
        .await;
    }
    anyhow::ensure!(args.node_id.is_none(), "--node-id needs --cluster");
    anyhow::ensure!(!args.key_service, "--key-service needs --cluster");
    let cfg = strata_storage_node::NodeConfig::under(&args.data_dir.join("disks"), args.disks);
    let store = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || strata_storage_node::LocalChunkStore::open(cfg))
            .await??,
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("strata: node ready on http://{}", listener.local_addr()?);
    strata_storage_node::http::serve_http(store, listener).await;
    Ok(())
}

/// How an answer is printed without `--json`.
enum Shape {
    Json,
    Plain,
    Report,
    Records,
    /// A rotation: follow its progress until it is done.
    Rotation(Option<String>),
    /// Lifecycle/archive answers, rendered by `render_readable`.
    Readable,
    /// The `prometheus` field as text.
    Prometheus,
    /// `strata admin rebuild status`.
    Rebuild,
    /// `strata admin audit search`.
    AuditSearch,
    /// `strata admin usage`.
    Usage,
}

async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    use serde_json::json;
    let mut shape = Shape::Json;
    if let AdminVerb::Export {
        verb: migration_cli::ExportVerb::Verify { dir },
    } = &args.verb
    {
        return migration_cli::verify_export(dir, args.json);
    }
    if matches!(
        args.verb,
        AdminVerb::Migration { .. } | AdminVerb::Export { .. }
    ) {
        if let Some(ca) = args.ca_bundle.clone() {
            admin_client::use_ca_bundle(ca);
        }
        let conn = migration_cli::Conn {
            endpoint: args.endpoint,
            access_key: args.access_key.ok_or_else(|| {
                anyhow::anyhow!("--access-key (or STRATA_ACCESS_KEY) is required")
            })?,
            secret_key: args.secret_key.ok_or_else(|| {
                anyhow::anyhow!("--secret-key (or STRATA_SECRET_KEY) is required")
            })?,
            region: args.region,
        };
        return match args.verb {
            AdminVerb::Migration { verb } => migration_cli::run(verb, &conn, args.json).await,
            AdminVerb::Export { verb } => migration_cli::run_export(verb, &conn, args.json).await,
            _ => unreachable!("matched above"),
        };
    }
    let (verb, body) = match args.verb {
        AdminVerb::Lifecycle { verb } => {
            let (v, b) = lifecycle_call(verb);
            shape = if v == "lifecycle-metrics" {
                Shape::Prometheus
            } else {
                Shape::Readable
            };
            (v, b)
        }
        AdminVerb::Archive {
            verb: ArchiveVerb::Status,
        } => {
            shape = Shape::Readable;
            ("archive-status", json!({}))
        }
        AdminVerb::Restore {
            backup_dir,
            data_dir,
        } => {
            let out = admin_keys::restore(&backup_dir, &data_dir)?;
            println!(
                "{}",
                if args.json {
                    out.to_string()
                } else {
                    admin_keys::plain(&out)
                }
            );
            return Ok(());
        }
        AdminVerb::Usage {
            user,
            bucket,
            since,
        } => {
            shape = Shape::Usage;
            ("usage", usage_cli::request(user, bucket, since)?)
        }
        AdminVerb::Audit { verb } => match audit_cli::request(&verb)? {
            None => return audit_cli::run_offline(verb, args.json),
            Some((v, body)) => {
                shape = if v == "audit-search" {
                    Shape::AuditSearch
                } else {
                    Shape::Plain
                };
                (v, body)
            }
        },
        // Offline: no server, no credentials.
        AdminVerb::Destruction {
            verb:
                verb @ (destruction_cli::DestructionVerb::Verify { .. }
                | destruction_cli::DestructionVerb::PublicKey { .. }),
        } => return destruction_cli::run(verb, args.json),
        AdminVerb::Key {
            verb: KeyVerb::RotateMaster { rate, no_wait },
        } => {
            shape = Shape::Rotation((!no_wait).then(String::new));
            ("key-rotate-master", json!({"rate": rate}))
        }
        AdminVerb::Key {
            verb:
                KeyVerb::RotateBucket {
                    bucket,
                    rate,
                    no_wait,
                },
        } => {
            shape = Shape::Rotation((!no_wait).then(|| bucket.clone()));
            ("key-rotate-bucket", json!({"bucket": bucket, "rate": rate}))
        }
        AdminVerb::Keys {
            verb: admin_keys::KeysVerb::Report,
        } => {
            shape = Shape::Report;
            ("keys-report", json!({}))
        }
        AdminVerb::Bucket {
            verb: admin_keys::BucketVerb::Purge { bucket },
        } => {
            shape = Shape::Plain;
            ("bucket-purge", json!({"bucket": bucket}))
        }
        AdminVerb::Retention {
            verb:
                admin_keys::RetentionVerb::Apply {
                    bucket,
                    preset,
                    prefix,
                    lock,
                },
        } => {
            shape = Shape::Plain;
            (
                "retention-apply",
                json!({"bucket": bucket, "preset": preset, "prefix": prefix, "lock": lock}),
            )
        }
        AdminVerb::Retention {
            verb: admin_keys::RetentionVerb::Presets,
        } => {
            shape = Shape::Plain;
            ("retention-presets", json!({}))
        }
        AdminVerb::Destruction {
            verb: destruction_cli::DestructionVerb::Export { out, since, bucket },
        } => {
            shape = Shape::Plain;
            let out = std::path::absolute(&out)?;
            let since = since
                .as_deref()
                .map(admin_keys::parse_time_ms)
                .transpose()?;
            (
                "destruction-export",
                json!({"out": out, "since_ms": since, "bucket": bucket}),
            )
        }
        AdminVerb::Destruction {
            verb: destruction_cli::DestructionVerb::Show { bucket, key },
        } => {
            shape = Shape::Records;
            ("destruction-show", json!({"bucket": bucket, "key": key}))
        }
        AdminVerb::User {
            verb: UserVerb::Restore { name },
        } => {
            shape = Shape::Plain;
            ("user-restore", json!({"name": name}))
        }
        AdminVerb::User {
            verb: UserVerb::Add { name },
        } => ("user-add", json!({"name": name})),
        AdminVerb::User {
            verb: UserVerb::List,
        } => ("user-list", json!({})),
        AdminVerb::User {
            verb:
                UserVerb::Remove {
                    name,
                    purge,
                    grace_days,
                },
        } => {
            if purge {
                shape = Shape::Plain;
            }
            (
                "user-remove",
                json!({"name": name, "purge": purge, "grace_days": grace_days}),
            )
        }
        AdminVerb::Key {
            verb: KeyVerb::Create { user },
        } => ("key-create", json!({"user": user})),
        AdminVerb::Key {
            verb: KeyVerb::Revoke { key_id },
        } => ("key-revoke", json!({"access_key": key_id})),
        AdminVerb::Metrics => {
            shape = Shape::Prometheus;
            ("metrics", json!({}))
        }
        AdminVerb::Backup { dir } => {
            let dir = std::path::absolute(&dir)?;
            ("backup", json!({"dir": dir}))
        }
        AdminVerb::Scrub { repair } => ("scrub", json!({"repair": repair})),
        AdminVerb::Rebuild {
            verb: RebuildVerb::Status,
        } => {
            shape = Shape::Rebuild;
            ("rebuild-status", json!({}))
        }
        AdminVerb::Worker {
            verb: WorkerVerb::List,
        } => ("worker-list", json!({})),
        AdminVerb::Kms { verb } => match verb {
            KmsVerb::Create { name } => ("kms-create", json!({"name": name})),
            KmsVerb::List => ("kms-list", json!({})),
            KmsVerb::Disable { name } => ("kms-disable", json!({"name": name})),
            KmsVerb::Enable { name } => ("kms-enable", json!({"name": name})),
        },
        AdminVerb::Worker {
            verb: WorkerVerb::Set { name, tranquility },
        } => (
            "worker-set",
            json!({"name": name, "tranquility": tranquility}),
        ),
        AdminVerb::Migration { .. } | AdminVerb::Export { .. } => unreachable!("handled above"),
    };
    if let Some(ca) = args.ca_bundle.clone() {
        admin_client::use_ca_bundle(ca);
    }
    let ak = args
        .access_key
        .ok_or_else(|| anyhow::anyhow!("--access-key (or STRATA_ACCESS_KEY) is required"))?;
    let sk = args
        .secret_key
        .ok_or_else(|| anyhow::anyhow!("--secret-key (or STRATA_SECRET_KEY) is required"))?;
    let out = admin_client::call(&args.endpoint, &ak, &sk, &args.region, verb, &body).await?;
    let value: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    match shape {
        _ if args.json && !matches!(shape, Shape::Rotation(Some(_))) => println!("{out}"),
        Shape::Json => println!("{out}"),
        Shape::Plain => println!("{}", admin_keys::plain(&value)),
        Shape::Report => println!("{}", admin_keys::report_table(&value)),
        Shape::Records => println!("{}", admin_keys::records_table(&value)),
        Shape::Rotation(None) => println!("{}", admin_keys::plain(&value)),
        Shape::Rotation(Some(bucket)) => {
            follow_rotation(&args.endpoint, &ak, &sk, &args.region, &bucket, args.json).await?
        }
        Shape::Readable => print!("{}", render_readable(verb, &value)),
        Shape::Prometheus => print!("{}", value["prometheus"].as_str().unwrap_or_default()),
        Shape::Rebuild => print!("{}", render_rebuild(&value)),
        Shape::AuditSearch => print!("{}", audit_cli::render_search(&value)),
        Shape::Usage => print!("{}", usage_cli::render(&value)),
    }
    Ok(())
}

/// Shows a rotation's progress until it is no longer queued (bounded: 24 h).
async fn follow_rotation(
    endpoint: &str,
    ak: &str,
    sk: &str,
    region: &str,
    bucket: &str,
    json: bool,
) -> anyhow::Result<()> {
    let mine = |j: &serde_json::Value| {
        if bucket.is_empty() {
            j["target"]["kind"] == "master"
        } else {
            j["target"]["bucket"] == bucket
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
    let mut last = String::new();
    loop {
        let out = admin_client::call(
            endpoint,
            ak,
            sk,
            region,
            "keys-report",
            &serde_json::json!({}),
        )
        .await?;
        let r: serde_json::Value = serde_json::from_str(&out)?;
        let job = r["rotations"]["queued"]
            .as_array()
            .and_then(|a| a.iter().find(|j| mine(j)).cloned());
        match job {
            Some(j) => {
                let line = admin_keys::rotation_line(&j);
                if line != last && !json {
                    eprintln!("{line}");
                    last = line;
                }
            }
            None => {
                let done = r["rotations"]["finished"]
                    .as_array()
                    .and_then(|a| a.iter().rev().find(|j| mine(j)).cloned())
                    .unwrap_or(serde_json::Value::Null);
                if json {
                    println!("{done}");
                } else {
                    println!("rotation finished\n{}", admin_keys::plain(&done));
                }
                return Ok(());
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the rotation is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// `strata admin rebuild status` as text.
fn render_rebuild(v: &serde_json::Value) -> String {
    if v["running"] != true {
        return "rebuild: not running (not a cluster gateway)\n".into();
    }
    let s = &v["status"];
    let mut out = format!(
        "rebuild: {} (priority {}, limit {})\n",
        v["state"].as_str().unwrap_or("?"),
        s["priority"].as_str().unwrap_or("?"),
        s["rate_limit_bytes_per_sec"]
            .as_u64()
            .map_or("none".into(), |r| format!(
                "{:.1} MiB/s",
                r as f64 / 1048576.0
            )),
    );
    out.push_str(&format!(
        "  degraded chunks pending: {}\n  disks pending: {}\n  chunks checked: {}, rebuilt: {}, shards rebuilt: {}\n  bytes done: {}, read: {}\n  rate: {:.1} MiB/s, ETA: {}\n  failures: {}{}\n",
        s["degraded_chunks_pending"],
        s["disks_pending"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d.as_str()).collect::<Vec<_>>().join(", "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "none".into()),
        s["chunks_checked"],
        s["chunks_rebuilt"],
        s["shards_rebuilt"],
        s["bytes_done"],
        s["bytes_read"],
        s["rate_bytes_per_sec"].as_f64().unwrap_or(0.0) / 1048576.0,
        s["eta_secs"].as_f64().map_or("-".into(), |e| format!("{e:.0} s")),
        s["failures"],
        s["last_error"]
            .as_str()
            .map_or(String::new(), |e| format!(" (last: {e})")),
    ));
    for n in v["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  node {} {} {} ({} disks)\n",
            n["id"].as_str().unwrap_or("?"),
            n["address"].as_str().unwrap_or("?"),
            n["state"].as_str().unwrap_or("?"),
            n["disks"]
        ));
    }
    out
}
