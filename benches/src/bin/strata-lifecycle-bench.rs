//! strata-lifecycle-bench: the lifecycle worker's scan rate at scale, on a real RocksDB.
//!
//! 1. writes N versions (default 1,000,000: N/2 keys with two versions each, a versioned bucket)
//!    through `MetaStore::put_version` from many threads;
//! 2. gives the bucket a configuration with current, noncurrent and transition rules that match
//!    every version but are not due (so the pass evaluates every rule on every version and acts
//!    on none: the pure scan);
//! 3. runs the real `LifecycleWorker` (pages of 256, its persisted cursor) until its pass is
//!    complete, and prints versions scanned per second and the peak resident memory.
//!
//! Build: `cargo build --release --workspace --bin strata-lifecycle-bench`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_engine::lifecycle::DayClock;
use strata_engine::lifecycle::worker::LifecycleWorker;
use strata_engine::workers::{WorkState, Worker};
use strata_engine::{Engine, EngineConfig};
use strata_metadata::lifecycle::{
    ExpirationAction, LifecycleConfig, LifecycleRule, NoncurrentExpiration, RuleFilter,
    TransitionAction,
};
use strata_metadata::*;

fn version(i: u64) -> VersionRecord {
    VersionRecord {
        version_id: String::new(),
        is_delete_marker: false,
        last_modified: strata_engine::now_ms(),
        size: 200_000 + i % 1000,
        etag: format!("{i:032x}"),
        checksum: None,
        checksum_type: None,
        content: ContentHeaders::default(),
        user_metadata: vec![],
        tags: vec![("class".into(), "logs".into())],
        storage_class: "STANDARD".into(),
        owner: "0".repeat(64),
        data: DataLayout {
            kek_id: "kek".into(),
            dek_id: format!("dek{i}"),
            wrapped_dek: vec![7; 60],
            segments: vec![],
            ..Default::default()
        },
        parts: vec![],
        retention: None,
        legal_hold: false,
        archive: None,
        acl: None,
        origin: None,
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut versions: u64 = 1_000_000;
    let mut threads: u64 = 32;
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        match f.as_str() {
            "--versions" => versions = it.next().expect("N").parse()?,
            "--threads" => threads = it.next().expect("N").parse()?,
            _ => anyhow::bail!("usage: strata-lifecycle-bench [--versions N] [--threads N]"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let meta = MetaStore::open(&dir.join("meta")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key_ring =
        strata_engine::keys::KeyRing::open_files(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let log = Arc::new(
        strata_destruction_log::DestructionLog::open(&dir.join("destruction-log"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let node_cfg = strata_storage_node::NodeConfig::under(&dir.join("disks"), 6);
    let disks = node_cfg.disk_names();
    let chunks: Arc<dyn strata_storage_node::ChunkService> =
        Arc::new(strata_storage_node::LocalChunkStore::open(node_cfg)?);
    let layout = meta
        .ensure_current_layout(&disks, 4, 2, 4 << 20, 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bucket = "bench";
    meta.create_bucket(BucketRecord {
        policy: None,
        public_access_block: None,
        ownership: None,
        name: bucket.into(),
        owner: "0".repeat(64),
        created: 0,
        region: "us-east-1".into(),
        versioning: VersioningState::Enabled,
        object_lock_enabled: false,
        default_retention: None,
        lifecycle_xml: None,
        lifecycle: None,
        tags: vec![],
        kek_id: "kek".into(),
        wrapped_kek: vec![],
        kek_slot: None,
        previous_keks: vec![],
        closing: None,
        retention_rules: vec![],
        encryption: None,
        cors: Vec::new(),
        logging: None,
        acl: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    println!("strata-lifecycle-bench: {versions} versions, {threads} writer threads");
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let keys = versions.div_ceil(2);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (meta, next) = (meta.clone(), next.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= versions {
                        break;
                    }
                    let mut v = version(i);
                    v.version_id = meta.new_version_id();
                    let key = format!("logs/{:09}", i % keys);
                    meta.put_version(bucket, &key, v, &Precondition::None)
                        .expect("put_version");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    let insert = started.elapsed();
    println!(
        "insert: {:.1} s = {:.0} versions/s",
        insert.as_secs_f64(),
        versions as f64 / insert.as_secs_f64()
    );

    // Rules that cover every version and are far from due.
    let everything = RuleFilter {
        prefix: "logs/".into(),
        ..Default::default()
    };
    let cfg = LifecycleConfig {
        rules: vec![
            LifecycleRule {
                id: "expire".into(),
                enabled: true,
                filter: everything.clone(),
                expiration: Some(ExpirationAction {
                    days: Some(3650),
                    ..Default::default()
                }),
                noncurrent_expiration: Some(NoncurrentExpiration {
                    noncurrent_days: Some(3650),
                    newer_noncurrent_versions: Some(5),
                }),
                abort_multipart_days: None,
                transitions: vec![TransitionAction {
                    days: Some(1000),
                    date: None,
                    storage_class: "GLACIER".into(),
                }],
                noncurrent_transitions: vec![],
            },
            LifecycleRule {
                id: "tagged".into(),
                enabled: true,
                filter: RuleFilter {
                    form: strata_metadata::lifecycle::FilterForm::And,
                    prefix: "logs/".into(),
                    tags: vec![("class".into(), "logs".into())],
                    size_greater_than: Some(1000),
                    size_less_than: None,
                },
                expiration: Some(ExpirationAction {
                    days: Some(2000),
                    ..Default::default()
                }),
                noncurrent_expiration: None,
                abort_multipart_days: None,
                transitions: vec![],
                noncurrent_transitions: vec![],
            },
        ],
        transition_min_size: None,
        updated: 0,
    };
    meta.update_bucket(bucket, |b| {
        b.lifecycle = Some(cfg.clone());
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rss_before = peak_rss_kib();
    rt.block_on(async {
        let engine = Engine::new(
            meta,
            chunks,
            key_ring,
            log,
            EngineConfig::default(),
            layout,
            "bench".into(),
        )?;
        let mut w = LifecycleWorker::new(engine, DayClock::real());
        let started = Instant::now();
        let mut units = 0u64;
        loop {
            units += 1;
            match w.work().await.map_err(|e| anyhow::anyhow!(e))? {
                WorkState::Busy => {}
                _ => break,
            }
        }
        let took = started.elapsed();
        let st = w.status();
        let scanned = st["versions_scanned"].as_u64().unwrap_or(0);
        println!(
            "lifecycle pass: {scanned} versions in {:.2} s = {:.0} versions/s ({units} units of <= 256 versions); actions pending {}",
            took.as_secs_f64(),
            scanned as f64 / took.as_secs_f64(),
            st["pending_actions"]
        );
        anyhow::Ok(())
    })?;
    println!(
        "peak RSS: {} MiB before the pass (after inserting), {} MiB after",
        rss_before / 1024,
        peak_rss_kib() / 1024
    );
    Ok(())
}
