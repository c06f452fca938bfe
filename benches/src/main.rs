//! strata-bench: an S3 load generator for any S3 endpoint (SigV4, path-style, plain HTTP).
//! See benches/README.md for the standard suite.

mod cpu;
mod payload;
mod s3;
mod sigv4;
mod spec;
mod stats;
mod workload;

use anyhow::{Context, Result, bail};
use clap::Parser;
use s3::{PayloadMode, S3Client};
use spec::{Mix, OpKind, SizeDist, format_size, parse_duration, parse_size};
use stats::Stats;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use workload::{Bounds, Plan, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "strata-bench",
    version,
    about = "S3 load generator: runs against any S3 endpoint"
)]
struct Args {
    /// S3 endpoint, http://HOST:PORT (path-style addressing).
    #[arg(
        long,
        env = "STRATA_BENCH_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    endpoint: String,
    #[arg(long, env = "STRATA_BENCH_ACCESS_KEY")]
    access_key: String,
    #[arg(long, env = "STRATA_BENCH_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "strata-bench")]
    bucket: String,
    /// Create the bucket first (an existing bucket you own is fine).
    #[arg(long)]
    create_bucket: bool,
    /// put | get | mixed | list | delete | multipart
    #[arg(long, default_value = "put")]
    op: String,
    /// Object size: 4KiB, 1MiB, a range 1KiB..1MiB, log:1KiB..64MiB, or weights 4KiB=90,1MiB=10.
    #[arg(long, default_value = "4KiB")]
    size: String,
    /// Objects written before a get, list, delete or mixed phase.
    #[arg(long, default_value_t = 1000)]
    objects: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long the measured phase runs (30s, 2m). Default 30s unless --count is given.
    #[arg(long)]
    duration: Option<String>,
    /// Stop after this many operations (the duration, if given, still caps the run).
    #[arg(long)]
    count: Option<u64>,
    /// Weights for --op mixed.
    #[arg(long, default_value = "get=70,put=20,list=5,delete=5")]
    mix: String,
    /// Key prefix; each run adds its own run id below it.
    #[arg(long, default_value = "strata-bench/")]
    prefix: String,
    /// Unmeasured load before the measured phase (e.g. 5s).
    #[arg(long, default_value = "0s")]
    warmup: String,
    /// How the body is signed: signed (SHA-256), unsigned (UNSIGNED-PAYLOAD), streaming (aws-chunked).
    #[arg(long, value_enum, default_value = "signed")]
    payload: PayloadMode,
    /// Multipart part size (a multiple of 64KiB; S3 wants at least 5MiB except for the last part).
    #[arg(long, default_value = "8MiB")]
    part_size: String,
    /// Keys per LIST page.
    #[arg(long, default_value_t = 1000)]
    list_max_keys: u32,
    /// Seed of payload bytes, sizes and op choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per-operation time limit.
    #[arg(long, default_value = "120s")]
    op_timeout: String,
    /// Delete every object of this run afterwards (and the bucket, if this run created it).
    #[arg(long)]
    cleanup: bool,
    /// Print a JSON line with every figure after the table.
    #[arg(long)]
    json: bool,
    /// Allow an endpoint outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    allow_remote: bool,
    /// PID of the server under test (same machine): report its CPU time per operation over the
    /// measured phase, from /proc/PID/stat.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("strata-bench: {error:#}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<i32> {
    let (plan, op_name) = match args.op.as_str() {
        "mixed" => (Plan::Mixed(args.mix.parse::<Mix>()?), "mixed".to_owned()),
        other => {
            let op: OpKind = other.parse()?;
            (Plan::Only(op), op.name().to_owned())
        }
    };
    let sizes: SizeDist = args.size.parse()?;
    let part_size = parse_size(&args.part_size)?;
    if part_size == 0 || !part_size.is_multiple_of(payload::BLOCK) {
        bail!("--part-size must be a positive multiple of 64KiB");
    }
    if args.concurrency == 0 || args.concurrency > 4096 {
        bail!("--concurrency must be between 1 and 4096");
    }
    let duration = match (&args.duration, args.count) {
        (Some(text), _) => parse_duration(text)?,
        (None, None) => Duration::from_secs(30),
        // Counted runs still stop by themselves.
        (None, Some(_)) => Duration::from_secs(3600),
    };
    let warmup = parse_duration(&args.warmup)?;
    let op_timeout = parse_duration(&args.op_timeout)?;
    let base_url = check_endpoint(&args.endpoint, args.allow_remote).await?;

    let client = S3Client::new(
        &base_url,
        &args.access_key,
        &args.secret_key,
        &args.region,
        args.payload,
        args.concurrency,
    )?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let key_prefix = format!("{}{run_id}/", args.prefix);
    let workload = Arc::new(Workload::new(
        client,
        args.bucket.clone(),
        key_prefix.clone(),
        sizes.clone(),
        part_size,
        args.seed,
        args.list_max_keys,
        op_timeout,
    ));
    eprintln!(
        "strata-bench: {op_name} on {base_url}/{} prefix {key_prefix}, size {sizes}, concurrency {}, payload {}",
        args.bucket,
        args.concurrency,
        serde_json::to_value(args.payload)?.as_str().unwrap_or("?")
    );

    let mut created_bucket = false;
    if args.create_bucket {
        created_bucket = workload
            .client
            .create_bucket(&args.bucket)
            .await
            .with_context(|| format!("creating bucket {}", args.bucket))?;
    }

    let needs_objects = match &plan {
        Plan::Only(op) => matches!(op, OpKind::Get | OpKind::List | OpKind::Delete),
        Plan::Mixed(mix) => [OpKind::Get, OpKind::List, OpKind::Delete]
            .iter()
            .any(|op| mix.share(*op) > 0.0),
    };
    let mut prepare_errors = 0;
    if needs_objects && args.objects > 0 {
        let prepare_stats = Arc::new(Stats::new());
        let took = workload
            .prepare(args.objects, args.concurrency, &prepare_stats)
            .await;
        let report = prepare_stats.report(took);
        prepare_errors = report.total.errors;
        eprintln!(
            "prepared {} objects in {:.1}s ({:.0} PUT/s, {} errors)",
            workload.pool.len(),
            took.as_secs_f64(),
            report.total.ops_per_s,
            report.total.errors
        );
        if workload.pool.is_empty() {
            bail!(
                "no object could be written for the {op_name} phase: {:?}",
                report.errors
            );
        }
    }

    if !warmup.is_zero() {
        let warmup_stats = Arc::new(Stats::new());
        let bounds = Bounds {
            duration: warmup,
            count: None,
        };
        workload
            .run(&plan, args.concurrency, bounds, &warmup_stats, "warmup")
            .await;
    }

    let stats = Arc::new(Stats::new());
    let bounds = Bounds {
        duration,
        count: args.count,
    };
    let cpu_before = args.server_pid.map(cpu::process_cpu).transpose()?;
    let elapsed = workload
        .run(&plan, args.concurrency, bounds, &stats, &op_name)
        .await;
    let report = stats.report(elapsed);
    let server_cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let used = cpu::process_cpu(pid)?.saturating_sub(before);
            Some(cpu::ServerCpu::new(
                pid,
                used,
                report.seconds,
                report.total.ok,
                report.total.bytes,
            ))
        }
        _ => None,
    };

    // A listing of a bucket nobody else writes to must show exactly what this run wrote.
    let mut list_check = None;
    if matches!(plan, Plan::Only(OpKind::List)) {
        let listed = workload
            .count_listed()
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let expected = workload.pool.len() as u64;
        list_check = Some((listed, expected));
    }

    let mut cleanup = None;
    if args.cleanup {
        let (deleted, failed) = workload.cleanup(args.concurrency).await;
        let mut bucket_deleted = false;
        if created_bucket && failed == 0 {
            bucket_deleted = workload.client.delete_bucket(&args.bucket).await.is_ok();
        }
        eprintln!(
            "cleanup: deleted {deleted} objects, {failed} failures, bucket deleted: {bucket_deleted}"
        );
        cleanup = Some(
            serde_json::json!({"deleted": deleted, "failed": failed, "bucket_deleted": bucket_deleted}),
        );
    }

    println!(
        "strata-bench {op_name}: {} objects of {sizes}, concurrency {}, payload {}, {:.1}s",
        workload.pool.len(),
        args.concurrency,
        serde_json::to_value(args.payload)?.as_str().unwrap_or("?"),
        report.seconds
    );
    print!("{}", report.table());
    if let Some(cpu) = &server_cpu {
        print!("{}", cpu.line());
    }
    if let Some((listed, expected)) = list_check {
        println!("list check: {listed} keys listed, {expected} written");
    }
    if args.json {
        let line = serde_json::json!({
            "tool": "strata-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoint": base_url,
            "bucket": args.bucket,
            "prefix": key_prefix,
            "op": op_name,
            "mix": matches!(plan, Plan::Mixed(_)).then(|| args.mix.clone()),
            "size": sizes.to_string(),
            "max_size": format_size(sizes.max()),
            "objects_prepared": args.objects,
            "concurrency": args.concurrency,
            "payload": args.payload,
            "warmup_s": warmup.as_secs_f64(),
            "prepare_errors": prepare_errors,
            "report": report,
            "list_check": list_check.map(|(listed, expected)| serde_json::json!({"listed": listed, "expected": expected})),
            "cleanup": cleanup,
            "server_cpu": server_cpu,
        });
        println!("{line}");
    }
    let list_ok = list_check.is_none_or(|(listed, expected)| listed == expected);
    Ok(if report.total.errors == 0 && list_ok {
        0
    } else {
        1
    })
}

/// Our rule: benchmarks talk to loopback only, unless told otherwise. Returns `http://HOST:PORT`.
async fn check_endpoint(endpoint: &str, allow_remote: bool) -> Result<String> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("endpoint {endpoint:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!("https endpoints are not supported: use http://HOST:PORT"),
        _ => bail!("endpoint {endpoint:?} must start with http://"),
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        bail!(
            "endpoint {endpoint:?} must not have a path (path-style addressing adds /bucket/key)"
        );
    }
    let host = uri.host().context("endpoint has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare_host.parse::<IpAddr>() {
        Ok(address) => vec![address],
        Err(_) => tokio::net::lookup_host((bare_host, port))
            .await
            .with_context(|| format!("resolving {bare_host}"))?
            .map(|address| address.ip())
            .collect(),
    };
    if !allow_remote && (addresses.is_empty() || !addresses.iter().all(IpAddr::is_loopback)) {
        bail!(
            "endpoint {endpoint} is not a loopback address ({addresses:?}); pass --allow-remote to benchmark it"
        );
    }
    Ok(format!(
        "http://{}",
        uri.authority().context("endpoint has no host")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_endpoints_unless_allowed() {
        assert_eq!(
            check_endpoint("http://127.0.0.1:9000", false)
                .await
                .unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            check_endpoint("http://127.8.0.1:9000/", false)
                .await
                .unwrap(),
            "http://127.8.0.1:9000"
        );
        assert!(check_endpoint("http://[::1]:9000", false).await.is_ok());
        assert!(check_endpoint("http://localhost:9000", false).await.is_ok());
        let refused = check_endpoint("http://10.1.2.3:9000", false)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("--allow-remote"), "{refused}");
        assert!(check_endpoint("http://10.1.2.3:9000", true).await.is_ok());
        assert!(
            check_endpoint("https://127.0.0.1:9000", false)
                .await
                .is_err()
        );
        assert!(
            check_endpoint("http://127.0.0.1:9000/some/path", false)
                .await
                .is_err()
        );
        assert!(check_endpoint("127.0.0.1:9000", false).await.is_err());
    }
}
