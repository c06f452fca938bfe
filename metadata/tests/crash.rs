//! Durability under SIGKILL: a child process (this test binary re-executed with an env var)
//! commits from several threads and prints every acknowledged commit; the parent kills it at a
//! random moment, reopens the store and checks that every acknowledged commit is there and that
//! no half-applied batch is visible. Bounded: `ROUNDS` kills, each child alive < 2 s.

mod common;

use common::*;
use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_metadata::*;

const ROUNDS: u64 = 8;
const CHILD_DIR_ENV: &str = "STRATA_META_CRASH_DIR";
const CHILD_ROUND_ENV: &str = "STRATA_META_CRASH_ROUND";
/// Blob id tags: which workload wrote the blob.
const TAG_OVERWRITE: u64 = 1;
const TAG_PART: u64 = 2;

fn ack(line: String) {
    // One write per line (shorter than PIPE_BUF), so a kill never leaves half a line.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("ACK {line} .\n").as_bytes());
    let _ = out.flush();
}

/// The child's workload. Runs only when re-executed by `crash_and_reopen_keeps_acknowledged_commits`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND_ENV).unwrap().parse().unwrap();
    let s = MetaStore::open(Path::new(&dir)).unwrap();
    register(&s);
    for (name, v) in [
        ("u", VersioningState::Unversioned),
        ("v", VersioningState::Enabled),
    ] {
        match s.create_bucket(bucket(name, v)) {
            Ok(()) | Err(MetaError::BucketAlreadyExists) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|sc| {
        // Overwrites of one unversioned key: each replaced blob must reach the GC queue.
        let s1 = s.clone();
        sc.spawn(move || {
            for i in 0..1_000_000u64 {
                if Instant::now() > deadline {
                    break;
                }
                let b = round * 1_000_000 + i;
                let v = version(String::new(), "e", Some(segment(TAG_OVERWRITE, b, 1)));
                put(&s1, "u", "hot", v, &Precondition::None).unwrap();
                ack(format!("O {b}"));
            }
        });
        // Versioned puts on a few keys, from two threads.
        for t in 0..2u64 {
            let s2 = s.clone();
            sc.spawn(move || {
                for i in 0..1_000_000u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let key = format!("k{}", (i + t) % 5);
                    let id = s2.new_version_id();
                    put(
                        &s2,
                        "v",
                        &key,
                        version(id.clone(), "e", None),
                        &Precondition::None,
                    )
                    .unwrap();
                    ack(format!("V {key} {id}"));
                }
            });
        }
        // Multipart: create, parts (one replaced, one unused), complete.
        let s3 = s.clone();
        sc.spawn(move || {
            for i in 0..1_000_000u64 {
                if Instant::now() > deadline {
                    break;
                }
                let key = format!("mp-{round}-{i}");
                let up = upload(&s3, &key);
                let id = up.upload_id.clone();
                s3.create_upload("u", up).unwrap();
                ack(format!("U {key} {id}"));
                let base = (round * 1_000_000 + i) * 4;
                let parts = [
                    part(
                        1,
                        "p1",
                        MIN_PART_SIZE,
                        segment(TAG_PART, base, MIN_PART_SIZE),
                    ),
                    part(2, "old", 1, segment(TAG_PART, base + 1, 1)),
                    part(2, "p2", 1, segment(TAG_PART, base + 2, 1)),
                    part(3, "p3", 1, segment(TAG_PART, base + 3, 1)),
                ];
                for p in parts {
                    put_part(&s3, "u", &key, &id, p).unwrap();
                }
                s3.complete_upload(
                    "u",
                    &key,
                    &id,
                    &[(1, "p1".into()), (2, "p2".into())],
                    &Precondition::None,
                    |u, p| Ok(build_from_parts(&s3, u, p)),
                )
                .unwrap();
                ack(format!("M {key} {id}"));
            }
        });
    });
}

fn blob_parts(b: &BlobId) -> (u64, u64) {
    (
        u64::from_be_bytes(b[..8].try_into().unwrap()),
        u64::from_be_bytes(b[8..].try_into().unwrap()),
    )
}

#[derive(Default)]
struct Acked {
    overwrites: BTreeSet<u64>,
    versions: Vec<(String, String)>,
    uploads: BTreeMap<String, String>,
    completed: BTreeSet<String>,
}

fn check(s: &MetaStore, acked: &Acked, rounds_done: u64) {
    let report = s.verify().unwrap();
    assert!(
        report.problems.is_empty(),
        "inconsistent store: {:?}",
        report.problems
    );
    let gc: Vec<Segment> = s
        .gc_pending(i64::MAX, 10_000_000)
        .unwrap()
        .into_iter()
        .flat_map(|i| i.segments)
        .collect();
    let mut gc_by_tag: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for seg in &gc {
        let (tag, n) = blob_parts(&seg.blob);
        gc_by_tag.entry(tag).or_default().push(n);
    }

    // Overwrites: every blob ever committed is current or queued, exactly once.
    let queued: Vec<u64> = gc_by_tag.get(&TAG_OVERWRITE).cloned().unwrap_or_default();
    let queued_set: BTreeSet<u64> = queued.iter().copied().collect();
    assert_eq!(queued.len(), queued_set.len(), "a blob queued twice");
    let current = match s.get_version("u", "hot", None) {
        Ok(v) => Some(blob_parts(&v.data.segments[0].blob).1),
        Err(MetaError::NoSuchKey) => None,
        Err(e) => panic!("{e}"),
    };
    let mut committed = queued_set.clone();
    if let Some(c) = current {
        assert!(
            !queued_set.contains(&c),
            "the current blob is queued for GC"
        );
        committed.insert(c);
    }
    for b in &acked.overwrites {
        assert!(
            committed.contains(b),
            "acknowledged overwrite {b} lost (neither current nor queued)"
        );
    }
    // At most one commit per round can have landed without its acknowledgement being printed.
    let unacked: Vec<_> = committed.difference(&acked.overwrites).collect();
    assert!(
        unacked.len() as u64 <= rounds_done,
        "more unacknowledged commits than kills: {unacked:?}"
    );
    // The chain has no holes: within a round, blobs are written in order.
    for b in &committed {
        let (round, i) = (b / 1_000_000, b % 1_000_000);
        if i > 0 {
            assert!(
                committed.contains(&(round * 1_000_000 + i - 1)),
                "blob {b} committed but its predecessor is missing"
            );
        }
    }

    for (key, id) in &acked.versions {
        let v = s
            .get_version("v", key, Some(id))
            .unwrap_or_else(|e| panic!("acked version {key} {id} lost: {e}"));
        assert_eq!(&v.version_id, id);
    }

    // Multipart: each upload is either still open with its parts, or completed with the GC
    // entries of its replaced and unused parts. Never both, never neither.
    let queued_parts: BTreeSet<u64> = gc_by_tag
        .get(&TAG_PART)
        .into_iter()
        .flatten()
        .copied()
        .collect();
    for (key, id) in &acked.uploads {
        let open = match s.get_upload("u", key, id) {
            Ok(_) => true,
            Err(MetaError::NoSuchUpload) => false,
            Err(e) => panic!("{e}"),
        };
        let object = match s.get_version("u", key, None) {
            Ok(v) => Some(v),
            Err(MetaError::NoSuchKey) => None,
            Err(e) => panic!("{e}"),
        };
        assert!(
            open != object.is_some(),
            "upload {key}: open={open} object={}",
            object.is_some()
        );
        if acked.completed.contains(key) {
            assert!(object.is_some(), "acknowledged completion of {key} lost");
        }
        if let Some(v) = object {
            let blobs: Vec<u64> = v
                .data
                .segments
                .iter()
                .map(|s| blob_parts(&s.blob).1)
                .collect();
            let base = blobs[0];
            assert_eq!(
                blobs,
                vec![base, base + 2],
                "completed from parts 1 and the new 2"
            );
            assert!(
                queued_parts.contains(&(base + 1)),
                "replaced part not queued"
            );
            assert!(queued_parts.contains(&(base + 3)), "unused part not queued");
        } else {
            let parts = s.list_parts("u", key, id, 0, 100).unwrap().parts;
            assert!(parts.len() <= 3);
        }
    }
}

#[test]
fn crash_and_reopen_keeps_acknowledged_commits() {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta");
    let exe = std::env::current_exe().unwrap();
    let mut acked = Acked::default();
    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &db)
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                // libtest writes "test crash_child ... " without a newline before the first ACK.
                .filter_map(|l| l.find("ACK ").map(|i| l[i..].to_string()))
                .filter(|l| l.ends_with(" ."))
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            !lines.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f[1] {
                "O" => {
                    acked.overwrites.insert(f[2].parse().unwrap());
                }
                "V" => acked.versions.push((f[2].into(), f[3].into())),
                "U" => {
                    acked.uploads.insert(f[2].into(), f[3].into());
                }
                "M" => {
                    acked.completed.insert(f[2].into());
                }
                other => panic!("unexpected line {other}"),
            }
        }
        let s = MetaStore::open(&db).unwrap();
        check(&s, &acked, round + 1);
    }
    eprintln!(
        "crash test: {} overwrites, {} versions, {} uploads ({} completed) acknowledged over {ROUNDS} kills",
        acked.overwrites.len(),
        acked.versions.len(),
        acked.uploads.len(),
        acked.completed.len()
    );
    assert!(!acked.completed.is_empty());
}
