//! strata-meta-bench: scale benchmark of the metadata tier on a real RocksDB.
//!
//! 1. inserts N objects (default 1,000,000) into one bucket, all under the prefix `big/`, plus a
//!    handful of keys around it, as a PUT does: `MetaStore::begin_write` (the write intent) then
//!    `put_version`, from many threads (each commit WAL-synced; concurrent commits share an
//!    fsync);
//! 2. pages through every object, 1000 per ListObjects page;
//! 3. lists one page with delimiter `/` — the listing must seek past the N keys under `big/`;
//!    the number of KV entries the listing read is printed to show it did not scan them.
//!
//! Build: `cargo build --release -p strata-bench --bin strata-meta-bench`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_metadata::kv::{Batch, Direction, KeyRange, OrderedKv, RocksKv, Space};
use strata_metadata::*;

/// Counts the entries read through the KV interface, to show what a listing touched.
struct CountingKv {
    inner: RocksKv,
    rows_read: AtomicU64,
}

impl OrderedKv for CountingKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.rows_read.fetch_add(1, Ordering::Relaxed);
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        d: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let rows = self.inner.scan(space, range, d, limit)?;
        self.rows_read
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(rows)
    }
    fn commit(&self, batch: Batch) -> Result<()> {
        self.inner.commit(batch)
    }
    fn checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        self.inner.checkpoint(dir)
    }
}

struct Args {
    dir: Option<PathBuf>,
    objects: u64,
    threads: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        dir: None,
        objects: 1_000_000,
        threads: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => a.dir = Some(PathBuf::from(value())),
            "--objects" => a.objects = value().parse().expect("--objects N"),
            "--threads" => a.threads = value().parse().expect("--threads N"),
            "-h" | "--help" => {
                println!(
                    "strata-meta-bench [--dir DIR] [--objects N (1000000)] [--threads N (32)]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn version(id: String, i: u64) -> VersionRecord {
    VersionRecord {
        version_id: id,
        is_delete_marker: false,
        last_modified: 1_700_000_000_000,
        size: 4096,
        etag: format!("{:032x}", i),
        checksum: Some(("CRC32C".into(), "AAAAAA==".into())),
        checksum_type: Some("FULL_OBJECT".into()),
        content: ContentHeaders {
            content_type: Some("application/octet-stream".into()),
            ..Default::default()
        },
        user_metadata: vec![],
        tags: vec![],
        storage_class: "STANDARD".into(),
        owner: "bench".into(),
        data: DataLayout {
            kek_id: "kek".into(),
            dek_id: "dek".into(),
            wrapped_dek: vec![],
            segments: vec![Segment {
                blob: (i as u128).to_be_bytes(),
                len: 4096,
                chunk_size: 4 << 20,
                layout: 1,
            }],
            dek_slot: Some(i),
        },
        parts: vec![],
        retention: None,
        legal_hold: false,
        archive: None,
        acl: None,
        origin: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = parse_args();
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("strata-meta-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    let kv = Arc::new(CountingKv {
        inner: RocksKv::open(&dir).expect("open RocksDB"),
        rows_read: AtomicU64::new(0),
    });
    let store = MetaStore::with_kv(kv.clone()).expect("open store");
    let bucket = "bench";
    if store.get_bucket(bucket).unwrap().is_none() {
        store
            .create_bucket(BucketRecord {
                policy: None,
                public_access_block: None,
                ownership: None,
                name: bucket.into(),
                owner: "0".repeat(64),
                created: 0,
                region: "us-east-1".into(),
                versioning: VersioningState::Unversioned,
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
            .unwrap();
    }
    // Writers own their write intents through a live instance.
    let instance = format!("bench-{}", std::process::id());
    store
        .register_instance(&instance, i64::MAX / 4, 0)
        .expect("register the bench instance");
    let instance = Arc::new(instance);
    println!(
        "strata-meta-bench: {} objects, {} writer threads, db {}",
        args.objects,
        args.threads,
        dir.display()
    );

    // 1. Insert.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..args.threads)
        .map(|_| {
            let (store, next, n) = (store.clone(), next.clone(), args.objects);
            let instance = instance.clone();
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let key = format!("big/{i:09}");
                    let v = version(String::new(), i);
                    store
                        .begin_write(&v.data.segments[0], &instance, 1)
                        .unwrap();
                    store
                        .put_version(bucket, &key, v, &Precondition::None)
                        .unwrap();
                }
            })
        })
        .collect();
    let mut last_report = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if last_report.elapsed() > Duration::from_secs(10) {
            let done = next.load(Ordering::Relaxed).min(args.objects);
            println!(
                "  inserted {done} ({:.0} keys/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    for (j, key) in ["a", "b/1", "b/2", "bigger", "c", "zz/1"]
        .iter()
        .enumerate()
    {
        let v = version(String::new(), args.objects + j as u64);
        store
            .begin_write(&v.data.segments[0], &instance, 1)
            .unwrap();
        store
            .put_version(bucket, key, v, &Precondition::None)
            .unwrap();
    }
    let insert_s = started.elapsed().as_secs_f64();
    println!(
        "insert: {} objects in {insert_s:.1} s = {:.0} keys/s (each put: begin_write + put_version = 2 synced commits, group-committed)",
        args.objects,
        args.objects as f64 / insert_s
    );

    let first = kv
        .inner
        .scan(
            Space::Versions,
            &KeyRange::new(Vec::new(), None),
            Direction::Forward,
            1,
        )
        .unwrap();
    println!(
        "version record: {} bytes stored (format byte + encoded VersionRecord)",
        first[0].1.len()
    );

    // 2. Page through everything, 1000 per page; three passes (the machine is shared: the
    //    best pass is the least disturbed one).
    for pass in 1..=3 {
        let mut latencies = Vec::new();
        let mut params = ListObjectsParams {
            max_keys: 1000,
            ..Default::default()
        };
        let mut listed = 0u64;
        let started = Instant::now();
        let max_pages = args.objects / 1000 + 10;
        for _ in 0..max_pages {
            let t = Instant::now();
            let page = store.list_objects(bucket, &params).unwrap();
            latencies.push(t.elapsed());
            listed += page.objects.len() as u64;
            if !page.is_truncated {
                break;
            }
            params.start_after = page.next_marker;
        }
        let list_s = started.elapsed().as_secs_f64();
        assert_eq!(listed, args.objects + 6, "every object listed exactly once");
        latencies.sort();
        println!(
            "list all (pass {pass}): {listed} keys in {} pages, {list_s:.2} s = {:.0} keys/s; page latency p50 {:?} p99 {:?} max {:?}",
            latencies.len(),
            listed as f64 / list_s,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().unwrap()
        );
    }

    // 3. One page with a delimiter: must seek past the prefix holding every object.
    let mut latencies = Vec::new();
    let mut rows = 0;
    for _ in 0..20 {
        let before = kv.rows_read.load(Ordering::Relaxed);
        let t = Instant::now();
        let page = store
            .list_objects(
                bucket,
                &ListObjectsParams {
                    delimiter: Some("/".into()),
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .unwrap();
        latencies.push(t.elapsed());
        rows = kv.rows_read.load(Ordering::Relaxed) - before;
        let keys: Vec<_> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "bigger", "c"]);
        assert_eq!(page.common_prefixes, ["b/", "big/", "zz/"]);
    }
    latencies.sort();
    println!(
        "delimiter page over a prefix of {} keys: p50 {:?} max {:?}, {rows} KV entries read",
        args.objects,
        percentile(&latencies, 0.5),
        latencies.last().unwrap()
    );
    drop(store);
    if args.dir.is_none() {
        drop(kv);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
