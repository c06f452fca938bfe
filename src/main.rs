//! `strata`: the S3-compatible object and archive storage engine.
//!
//! - `strata serve`: gateway + metadata + chunk store in one process (the embedded default).
//! - `strata node`: a chunk store alone, serving its HTTP API.
//! - `strata admin ...`: operator verbs against a running server, and offline restore.

mod admin_client;
mod serve;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run gateway, metadata and chunk store in one process.
    Serve(serve::ServeArgs),
    /// Run a chunk store alone (its HTTP API), e.g. on a storage machine.
    Node(NodeArgs),
    /// Operator verbs.
    Admin(AdminArgs),
}

#[derive(Args)]
struct NodeArgs {
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[arg(long, env = "STRATA_NODE_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Disk directories `disk0..` under the data dir. The geometry (k, m, which disks) comes
    /// with every request as its layout.
    #[arg(long, default_value_t = 6)]
    disks: usize,
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
    #[command(subcommand)]
    verb: AdminVerb,
}

#[derive(Subcommand)]
enum AdminVerb {
    /// Users: add, list, remove.
    User {
        #[command(subcommand)]
        verb: UserVerb,
    },
    /// Access keys: create, revoke.
    Key {
        #[command(subcommand)]
        verb: KeyVerb,
    },
    /// Consistent online snapshot of the metadata into DIR (on the server's machine).
    Backup { dir: PathBuf },
    /// Restore a metadata snapshot into a stopped server's data directory.
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
    Add { name: String },
    List,
    Remove { name: String },
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
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off,hyper=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve::run(args)),
        Command::Node(args) => rt.block_on(run_node(args)),
        Command::Admin(args) => rt.block_on(run_admin(args)),
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
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

async fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    use serde_json::json;
    let (verb, body) = match args.verb {
        AdminVerb::Restore {
            backup_dir,
            data_dir,
        } => {
            std::fs::create_dir_all(&data_dir)?;
            let db = data_dir.join("meta");
            strata_metadata::MetaStore::restore(&backup_dir, &db)
                .map_err(|e| anyhow::anyhow!("restore failed: {e}"))?;
            println!("{}", json!({"restored": backup_dir, "into": db}));
            return Ok(());
        }
        AdminVerb::User {
            verb: UserVerb::Add { name },
        } => ("user-add", json!({"name": name})),
        AdminVerb::User {
            verb: UserVerb::List,
        } => ("user-list", json!({})),
        AdminVerb::User {
            verb: UserVerb::Remove { name },
        } => ("user-remove", json!({"name": name})),
        AdminVerb::Key {
            verb: KeyVerb::Create { user },
        } => ("key-create", json!({"user": user})),
        AdminVerb::Key {
            verb: KeyVerb::Revoke { key_id },
        } => ("key-revoke", json!({"access_key": key_id})),
        AdminVerb::Backup { dir } => {
            let dir = std::path::absolute(&dir)?;
            ("backup", json!({"dir": dir}))
        }
        AdminVerb::Scrub { repair } => ("scrub", json!({"repair": repair})),
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
    };
    let ak = args
        .access_key
        .ok_or_else(|| anyhow::anyhow!("--access-key (or STRATA_ACCESS_KEY) is required"))?;
    let sk = args
        .secret_key
        .ok_or_else(|| anyhow::anyhow!("--secret-key (or STRATA_SECRET_KEY) is required"))?;
    let out = admin_client::call(&args.endpoint, &ak, &sk, &args.region, verb, &body).await?;
    println!("{out}");
    Ok(())
}
