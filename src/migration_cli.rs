//! `strata admin migration ...`: the client side of migration jobs (the job runs in the server).

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{Value, json};

use crate::admin_client;

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum MigrationVerb {
    /// Create a job copying SOURCE-BUCKET (under --prefix) of an S3 endpoint into --bucket; the
    /// server starts it at once.
    Start {
        name: String,
        /// The source S3 endpoint, http://HOST:PORT or https://HOST[:PORT] (path-style).
        #[arg(long)]
        source_endpoint: String,
        #[arg(long, default_value = "us-east-1")]
        source_region: String,
        #[arg(long)]
        source_access_key: String,
        /// The source's secret key (prefer the environment variable: arguments are visible to
        /// other local users). Stored sealed in the server, never shown again.
        #[arg(long, env = "STRATA_SOURCE_SECRET_KEY", hide_env_values = true)]
        source_secret_key: String,
        #[arg(long)]
        source_bucket: String,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The destination bucket (must exist).
        #[arg(long)]
        bucket: String,
        /// Every version and delete marker, oldest first, each with its source version id
        /// recorded (the destination bucket must have versioning enabled).
        #[arg(long)]
        versions: bool,
        /// Objects larger than this are copied by parts, resumable at the part (default
        /// 64MiB).
        #[arg(long)]
        part_threshold: Option<String>,
        /// Part size for single-part source objects copied by parts (5MiB-5GiB, default
        /// 64MiB); a multipart source keeps its own parts.
        #[arg(long)]
        part_size: Option<String>,
        /// PEM file of certificates to trust for an https source, besides Mozilla's roots (a
        /// private CA, a self-signed server).
        #[arg(long)]
        source_ca_bundle: Option<std::path::PathBuf>,
        /// When the destination has the key: never (skip), if-different (skip identical
        /// objects), always.
        #[arg(long, default_value = "if-different", value_parser = ["never", "if-different", "always"])]
        overwrite: String,
        /// Objects copied at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Source read limit in bytes per second, e.g. 50MiB, 1G.
        #[arg(long)]
        bandwidth: Option<String>,
        /// Keys per listing request of the source (1-1000, default 1000).
        #[arg(long)]
        list_page: Option<u32>,
    },
    /// Versions of KEY in BUCKET with the source each was copied from (job, source version
    /// id, ETag, Last-Modified), newest first.
    Origins { bucket: String, key: String },
    #[command(flatten)]
    Job(JobVerb),
}

/// The verbs of an existing job, the same for imports (`migration`) and exports (`export`).
#[derive(Subcommand)]
pub enum JobVerb {
    /// State and every counter of a job (--json: one JSON object).
    Status {
        name: String,
        /// Follow the job until it ends: a progress bar in a terminal, one line per change
        /// otherwise (or with --json); Ctrl-C stops following.
        #[arg(long)]
        watch: bool,
        /// Stop following after this many seconds (exit status 2 if the job has not ended).
        #[arg(long, requires = "watch", default_value_t = 7 * 24 * 3600)]
        watch_timeout: u64,
    },
    /// Every job (`export list`: the export jobs).
    List,
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Cancel {
        name: String,
    },
    /// Every failed and skipped object (JSON lines, the summary last; --csv: CSV).
    Report {
        name: String,
        #[arg(long)]
        csv: bool,
    },
}

/// `strata admin export ...`: data return, on the migration job machinery.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ExportVerb {
    /// Create a job writing BUCKET (under --prefix) to a directory on the server's machine
    /// (--to-dir) or to another S3 endpoint (--to-endpoint ... --to-bucket); the server starts
    /// it at once.
    Start {
        name: String,
        /// The local bucket to export.
        bucket: String,
        /// An absolute, empty (or new) directory on the machine of the server that runs the job
        /// (the leader in cluster mode), outside its data directory.
        #[arg(long, conflicts_with = "to_endpoint")]
        to_dir: Option<String>,
        /// The remote S3 endpoint, http://HOST:PORT or https://HOST[:PORT] (path-style).
        #[arg(long, requires_all = ["to_access_key", "to_bucket"])]
        to_endpoint: Option<String>,
        #[arg(long)]
        to_region: Option<String>,
        #[arg(long)]
        to_access_key: Option<String>,
        /// The remote's secret key (prefer the environment variable). Stored sealed in the
        /// server, never shown again.
        #[arg(long, env = "STRATA_TO_SECRET_KEY", hide_env_values = true)]
        to_secret_key: Option<String>,
        /// The remote bucket (must exist; versioning enabled with --versions).
        #[arg(long)]
        to_bucket: Option<String>,
        /// PEM file of certificates to trust for an https remote, besides Mozilla's roots.
        #[arg(long)]
        to_ca_bundle: Option<std::path::PathBuf>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Every version and delete marker (default: current versions only).
        #[arg(long)]
        versions: bool,
        /// Objects written at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Read limit in bytes per second, e.g. 50MiB, 1G.
        #[arg(long)]
        bandwidth: Option<String>,
    },
    /// Offline (no server): re-hash every file of an export directory against its manifest;
    /// exits non-zero on a missing, extra or altered file.
    Verify { dir: std::path::PathBuf },
    #[command(flatten)]
    Job(JobVerb),
}

/// `export verify DIR`, offline.
pub fn verify_export(dir: &std::path::Path, json_out: bool) -> anyhow::Result<()> {
    let v = strata_migration::export_dir::verify(dir)
        .map_err(|e| anyhow::anyhow!("cannot read the export {}: {e}", dir.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"ok": v.problems.is_empty(), "files": v.files, "bytes": v.bytes,
                   "delete_markers": v.delete_markers, "problems": v.problems,
                   "failed_at_export": v.summary.as_ref().map(|s| s.failed)})
        );
    } else {
        for p in &v.problems {
            println!("{p}");
        }
    }
    anyhow::ensure!(
        v.problems.is_empty(),
        "export {} does not verify: {} problem(s)",
        dir.display(),
        v.problems.len()
    );
    if !json_out {
        println!(
            "OK: {} files ({} bytes) and {} delete markers match the manifest",
            v.files, v.bytes, v.delete_markers
        );
        if let Some(s) = v.summary.as_ref().filter(|s| s.failed > 0) {
            println!(
                "note: {} objects could not be exported (see `strata admin export report {}`)",
                s.failed, s.job
            );
        }
    }
    Ok(())
}

/// `strata admin export ...` (other than verify) on the server.
pub async fn run_export(verb: ExportVerb, conn: &Conn, json_out: bool) -> anyhow::Result<()> {
    match verb {
        ExportVerb::Start {
            name,
            bucket,
            to_dir,
            to_endpoint,
            to_region,
            to_access_key,
            to_secret_key,
            to_bucket,
            to_ca_bundle,
            prefix,
            versions,
            concurrency,
            bandwidth,
        } => {
            let to_ca_pem = match to_ca_bundle {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
                    anyhow::anyhow!("cannot read the CA bundle {}: {e}", p.display())
                })?),
                None => None,
            };
            anyhow::ensure!(
                to_dir.is_some() || to_endpoint.is_some(),
                "one of --to-dir DIR and --to-endpoint URL is required"
            );
            anyhow::ensure!(
                to_endpoint.is_none() || to_secret_key.is_some(),
                "--to-endpoint needs --to-secret-key (or STRATA_TO_SECRET_KEY)"
            );
            let v = conn
                .call(
                    "export-start",
                    json!({
                        "name": name, "bucket": bucket, "to_dir": to_dir,
                        "to_endpoint": to_endpoint, "to_region": to_region,
                        "to_access_key": to_access_key, "to_secret_key": to_secret_key,
                        "to_bucket": to_bucket, "to_ca_pem": to_ca_pem, "prefix": prefix,
                        "versions": versions, "concurrency": concurrency, "bandwidth": bandwidth,
                    }),
                )
                .await?;
            print_job(&v, json_out);
            Ok(())
        }
        ExportVerb::Verify { dir } => verify_export(&dir, json_out),
        ExportVerb::Job(verb) => run_job(verb, conn, json_out, Kind::Export).await,
    }
}

pub struct Conn {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl Conn {
    async fn call(&self, verb: &str, body: Value) -> anyhow::Result<Value> {
        let out = admin_client::call(
            &self.endpoint,
            &self.access_key,
            &self.secret_key,
            &self.region,
            verb,
            &body,
        )
        .await?;
        Ok(serde_json::from_str(&out)?)
    }
}

pub async fn run(verb: MigrationVerb, conn: &Conn, json_out: bool) -> anyhow::Result<()> {
    match verb {
        MigrationVerb::Start {
            name,
            source_endpoint,
            source_region,
            source_access_key,
            source_secret_key,
            source_bucket,
            prefix,
            bucket,
            versions,
            overwrite,
            concurrency,
            bandwidth,
            part_threshold,
            part_size,
            source_ca_bundle,
            list_page,
        } => {
            let source_ca_pem = match source_ca_bundle {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
                    anyhow::anyhow!("cannot read the CA bundle {}: {e}", p.display())
                })?),
                None => None,
            };
            let v = conn
                .call(
                    "migration-start",
                    json!({
                        "name": name, "source_endpoint": source_endpoint,
                        "source_region": source_region, "source_access_key": source_access_key,
                        "source_secret_key": source_secret_key, "source_bucket": source_bucket,
                        "prefix": prefix, "bucket": bucket, "versions": versions,
                        "overwrite": overwrite, "concurrency": concurrency, "bandwidth": bandwidth,
                        "part_threshold": part_threshold, "part_size": part_size,
                        "source_ca_pem": source_ca_pem, "list_page": list_page,
                    }),
                )
                .await?;
            print_job(&v, json_out);
        }
        MigrationVerb::Origins { bucket, key } => {
            let v = conn
                .call("migration-origins", json!({"bucket": bucket, "key": key}))
                .await?;
            if json_out {
                println!("{v}");
            } else {
                for e in v["versions"].as_array().into_iter().flatten() {
                    println!("{e}");
                }
            }
        }
        MigrationVerb::Job(verb) => run_job(verb, conn, json_out, Kind::Any).await?,
    }
    Ok(())
}

/// Which jobs `list` shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Export,
}

/// status / list / pause / resume / cancel / report, for either kind of job.
async fn run_job(verb: JobVerb, conn: &Conn, json_out: bool, kind: Kind) -> anyhow::Result<()> {
    match verb {
        JobVerb::Status {
            name,
            watch,
            watch_timeout,
        } => {
            if watch {
                return follow(conn, &name, json_out, Duration::from_secs(watch_timeout)).await;
            }
            let v = conn.call("migration-status", json!({"name": name})).await?;
            print_job(&v, json_out);
        }
        JobVerb::List => {
            let v = conn.call("migration-list", json!({})).await?;
            let jobs: Vec<&Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| kind == Kind::Any || j["kind"] == "export")
                .collect();
            if json_out {
                println!("{}", json!(jobs));
            } else {
                for j in jobs {
                    println!("{}", one_line(j));
                }
            }
        }
        JobVerb::Pause { name } => control(conn, "migration-pause", &name, json_out).await?,
        JobVerb::Resume { name } => control(conn, "migration-resume", &name, json_out).await?,
        JobVerb::Cancel { name } => control(conn, "migration-cancel", &name, json_out).await?,
        JobVerb::Report { name, csv } => report(conn, &name, csv).await?,
    }
    Ok(())
}

async fn control(conn: &Conn, verb: &str, name: &str, json_out: bool) -> anyhow::Result<()> {
    let v = conn.call(verb, json!({"name": name})).await?;
    print_job(&v, json_out);
    Ok(())
}

fn print_job(v: &Value, json_out: bool) {
    if json_out {
        println!("{v}");
    } else {
        print!("{}", render(v));
    }
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// One line per job: name, state, counters.
pub fn one_line(v: &Value) -> String {
    format!(
        "{} {} listed {} copied {} ({} bytes) skipped {} failed {}",
        v["name"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        num(v, "objects_listed"),
        num(v, "objects_copied"),
        num(v, "bytes_copied"),
        num(v, "objects_skipped"),
        num(v, "objects_failed"),
    )
}

/// `status NAME` as text.
pub fn render(v: &Value) -> String {
    let mut out = if v["kind"] == "export" {
        format!(
            "export {}: {}{}\n  bucket {}{} -> {}\n",
            v["name"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            v["error"]
                .as_str()
                .map_or(String::new(), |e| format!(" ({e})")),
            v["bucket"].as_str().unwrap_or("?"),
            v["prefix"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map_or(String::new(), |p| format!(" prefix {p:?}")),
            match v["to_dir"].as_str() {
                Some(d) => format!("directory {d}"),
                None => format!(
                    "{} bucket {}",
                    v["to_endpoint"].as_str().unwrap_or("?"),
                    v["to_bucket"].as_str().unwrap_or("?")
                ),
            },
        )
    } else {
        format!(
            "migration {}: {}{}\n  source: {} bucket {}{} -> bucket {}\n",
            v["name"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            v["error"]
                .as_str()
                .map_or(String::new(), |e| format!(" ({e})")),
            v["source_endpoint"].as_str().unwrap_or("?"),
            v["source_bucket"].as_str().unwrap_or("?"),
            v["prefix"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map_or(String::new(), |p| format!(" prefix {p:?}")),
            v["bucket"].as_str().unwrap_or("?"),
        )
    };
    out.push_str(&format!(
        "  listed: {} objects, {} bytes{}\n  copied: {} objects, {} bytes ({} found already copied on resume)\n  skipped: {} (identical {}, exists {}, locked {}, gone at source {})\n  failed: {} objects, {} bytes\n  rate: {:.1} objects/s, {:.1} MiB/s; ETA: {}\n",
        num(v, "objects_listed"),
        num(v, "bytes_listed"),
        if v["listing_done"] == true { " (listing done)" } else { "" },
        num(v, "objects_copied"),
        num(v, "bytes_copied"),
        num(v, "objects_resumed"),
        num(v, "objects_skipped"),
        num(v, "skipped_identical"),
        num(v, "skipped_exists"),
        num(v, "skipped_locked"),
        num(v, "skipped_excluded"),
        num(v, "objects_failed"),
        num(v, "bytes_failed"),
        v["objects_per_sec"].as_f64().unwrap_or(0.0),
        v["bytes_per_sec"].as_f64().unwrap_or(0.0) / 1048576.0,
        v["eta_secs"]
            .as_f64()
            .map_or("unknown".into(), |e| format!("{e:.0} s")),
    ));
    if let Some(e) = v["last_error"].as_str() {
        out.push_str(&format!("  last source error: {e}\n"));
    }
    out
}

fn is_final(state: &str) -> bool {
    matches!(state, "DONE" | "ERROR" | "CANCELLED")
}

/// How `status --watch` shows progress.
enum View {
    /// One line per change (not a terminal, or `--json`).
    Lines { json: bool, last: String },
    /// A progress bar on a terminal: the position is the objects done (copied, skipped,
    /// failed), the length the objects listed so far.
    Bar(indicatif::ProgressBar),
}

impl View {
    fn new(json_out: bool) -> Self {
        use std::io::IsTerminal as _;
        if json_out || !std::io::stdout().is_terminal() {
            return View::Lines {
                json: json_out,
                last: String::new(),
            };
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} objects {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        View::Bar(bar)
    }

    fn show(&mut self, v: &Value) {
        match self {
            View::Lines { json, last } => {
                let line = if *json { v.to_string() } else { one_line(v) };
                if line != *last {
                    println!("{line}");
                    *last = line;
                }
            }
            View::Bar(bar) => {
                let done =
                    num(v, "objects_copied") + num(v, "objects_skipped") + num(v, "objects_failed");
                bar.set_prefix(format!(
                    "{} {}",
                    v["name"].as_str().unwrap_or("?"),
                    v["state"].as_str().unwrap_or("?")
                ));
                bar.set_length(num(v, "objects_listed").max(done));
                bar.set_position(done);
                bar.set_message(format!(
                    "{}{}, {:.1} objects/s, {:.1} MiB/s, {} failed",
                    human_bytes(num(v, "bytes_copied")),
                    if v["listing_done"] == true {
                        ""
                    } else {
                        " (listing)"
                    },
                    v["objects_per_sec"].as_f64().unwrap_or(0.0),
                    v["bytes_per_sec"].as_f64().unwrap_or(0.0) / 1048576.0,
                    num(v, "objects_failed"),
                ));
            }
        }
    }

    fn end(&self, v: &Value) {
        if let View::Bar(bar) = self {
            bar.finish();
            println!("{}", one_line(v));
        }
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `status --watch`: follows the job until it ends, `timeout` passes (exit 2) or Ctrl-C.
async fn follow(conn: &Conn, name: &str, json_out: bool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut view = View::new(json_out);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let v = conn.call("migration-status", json!({"name": name})).await?;
        view.show(&v);
        if is_final(v["state"].as_str().unwrap_or("")) {
            view.end(&v);
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            view.end(&v);
            eprintln!(
                "job {name} is still {} after --watch-timeout {}s",
                v["state"].as_str().unwrap_or("?"),
                timeout.as_secs()
            );
            std::process::exit(2);
        }
        tokio::select! {
            _ = tokio::time::sleep((deadline - now).min(Duration::from_millis(500))) => {}
            _ = &mut ctrl_c => {
                view.end(&v);
                return Ok(());
            }
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Pages through the report (bounded memory: one page at a time).
async fn report(conn: &Conn, name: &str, csv: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if csv {
        writeln!(out, "seq,key,outcome,reason,size,source_etag,error")?;
    }
    let mut after: Option<u64> = None;
    let summary = loop {
        let v = conn
            .call("migration-report", json!({"name": name, "after": after}))
            .await?;
        for e in v["entries"].as_array().into_iter().flatten() {
            if csv {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{}",
                    num(e, "seq"),
                    csv_field(e["key"].as_str().unwrap_or("")),
                    csv_field(e["outcome"].as_str().unwrap_or("")),
                    csv_field(e["reason"].as_str().unwrap_or("")),
                    num(e, "size"),
                    csv_field(e["source_etag"].as_str().unwrap_or("")),
                    csv_field(e["error"].as_str().unwrap_or("")),
                )?;
            } else {
                writeln!(out, "{e}")?;
            }
        }
        match v["next"].as_u64() {
            Some(n) if Some(n) != after => after = Some(n),
            _ => break v["summary"].clone(),
        }
    };
    if csv {
        out.flush()?;
        eprint!("{}", render(&summary));
    } else {
        writeln!(out, "{}", json!({"summary": summary}))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }
}
