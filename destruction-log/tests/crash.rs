//! kill -9 at random moments: a child process (this test binary again) appends records and
//! says which were acknowledged; the parent SIGKILLs it mid-stream, again and again on the same
//! log (also during open and recovery), then checks that every acknowledged op id is in the log
//! exactly once, at the index it was acknowledged with, and that the whole log verifies.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use strata_destruction_log::{DestructionLog, LogOptions, verify_export};

const CHILD_DIR: &str = "STRATA_DLOG_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "STRATA_DLOG_CRASH_ROUND";
const CHILD_REAPPEND: &str = "STRATA_DLOG_CRASH_REAPPEND";
const ROUNDS: u64 = 16;

/// The child: does nothing unless started by the test below.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    // Op ids of the previous round to append again first (acknowledged or maybe not): retries
    // after a crash must get the index of the first append, or a first one.
    let again: Vec<String> = std::env::var(CHILD_REAPPEND)
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    // Frequent sync points so kills land inside them too.
    let log = DestructionLog::open_with_options(
        Path::new(&dir),
        LogOptions {
            sync_every: 3,
            ..Default::default()
        },
    )
    .expect("the log opens after a crash");
    let mut out = std::io::stdout().lock();
    // (libtest has printed "test crash_child ... " without a newline)
    writeln!(out, "\nOPEN").unwrap();
    out.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = (0u64..).map(|n| format!("r{round}-{n}"));
    for (i, op) in again.into_iter().chain(fresh).enumerate().take(5000) {
        if Instant::now() > deadline {
            break;
        }
        writeln!(out, "SEND {op}").unwrap();
        out.flush().unwrap();
        let idx = log
            .append(common::record(&op, "b", &format!("k/{i}"), i as i64))
            .unwrap();
        writeln!(out, "ACK {op} {idx}").unwrap();
        out.flush().unwrap();
        if i % 5 == 4 {
            log.checkpoint(round as i64 * 1_000_000 + i as i64).unwrap();
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_append() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("log");
    let stderr_path = tmp.path().join("child.stderr");
    let mut rng = rand::rng();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut again: Vec<String> = Vec::new();
    let mut kills_before_open = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, &log_dir)
            .env(CHILD_ROUND, round.to_string())
            .env(CHILD_REAPPEND, again.join(","))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut round_acked: Vec<String> = Vec::new();
        let mut sent: Option<String> = None;
        let mut opened = false;
        let mut on_line = |line: &str,
                           round_acked: &mut Vec<String>,
                           sent: &mut Option<String>,
                           opened: &mut bool| {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["OPEN"] => *opened = true,
                ["SEND", op] => *sent = Some(op.to_string()),
                ["ACK", op, idx] => {
                    let idx: u64 = idx.parse().unwrap();
                    let first = *acked.entry(op.to_string()).or_insert(idx);
                    assert_eq!(first, idx, "{op} acknowledged at two indices");
                    round_acked.push(op.to_string());
                    *sent = None;
                }
                _ => {} // libtest's own lines
            }
        };
        // A third of the rounds die early (during open / recovery of the previous crash),
        // the others after a random number of acknowledged appends.
        if rng.random_range(0..3) == 0 {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..15_000)));
        } else {
            let target = rng.random_range(1..40usize);
            let deadline = Instant::now() + Duration::from_secs(60);
            while round_acked.len() < target {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => on_line(&line, &mut round_acked, &mut sent, &mut opened),
                    Err(e) => panic!(
                        "round {round}: child stopped answering ({e:?}); stderr:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    ),
                }
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines written before the kill still count: they were acknowledged.
        for line in rx.try_iter() {
            on_line(&line, &mut round_acked, &mut sent, &mut opened);
        }
        if !opened {
            kills_before_open += 1;
        }
        // Next round retries the last acknowledged ops and the one in flight at the kill.
        again = round_acked.iter().rev().take(2).cloned().collect();
        again.extend(sent);
    }
    assert!(
        acked.len() > 50,
        "only {} appends acknowledged",
        acked.len()
    );

    let log = DestructionLog::open(&log_dir).unwrap();
    for (op, idx) in &acked {
        assert_eq!(log.contains(op).unwrap(), Some(*idx), "{op}");
    }
    let out = tmp.path().join("export");
    log.export(None, None, &out).unwrap();
    let report = verify_export(&out, &log.public_key_pem()).unwrap();
    assert!(report.complete);
    // Every op id once, indices dense.
    let mut count: HashMap<String, u64> = HashMap::new();
    for (i, line) in common::read_lines(&out.join("records.jsonl"))
        .iter()
        .enumerate()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["index"], i as u64);
        *count
            .entry(v["record"]["op_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(count.values().all(|&c| c == 1), "an op id logged twice");
    for op in acked.keys() {
        assert!(
            count.contains_key(op),
            "{op} acknowledged but not in the export"
        );
    }
    eprintln!(
        "{} appends acknowledged over {ROUNDS} kills ({kills_before_open} before open finished), {} records in the log",
        acked.len(),
        report.records
    );
}
