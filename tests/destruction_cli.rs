//! The auditor's offline verbs through the real `strata` binary: `admin destruction
//! public-key` reads the key of a log that another process holds open, `admin destruction
//! verify` accepts a good export and names the record of a tampered one (exit status 1).

use std::path::Path;
use std::process::{Command, Output};

use strata_destruction_log::{Actor, DestructionLog, DestructionRecord, LOG_DIR_NAME, Reason};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_DATA_DIR")
        .output()
        .expect("strata runs")
}

fn record(i: u64) -> DestructionRecord {
    DestructionRecord {
        op_id: format!("op-{i}"),
        bucket: "invoices".into(),
        key: format!("2019/{i}.pdf"),
        version_id: format!("v{i}"),
        size: 10_000 + i,
        etag: format!("\"{i:032x}\""),
        checksum: None,
        storage_class: "STANDARD".into(),
        written_ms: 1_560_000_000_000,
        destroyed_ms: 1_720_000_000_000 + i as i64,
        reason: Reason::RetentionEnd,
        actor: Actor {
            engine: Some("lifecycle".into()),
            ..Actor::default()
        },
        key_id: format!("{i:032x}"),
        shards_removed: 6,
        verification: "read after destruction failed: data key not found".into(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_and_public_key_work_offline_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Held open for the whole test, like a running server would.
    let log = DestructionLog::open(&data.join(LOG_DIR_NAME)).unwrap();
    for i in 0..5 {
        log.append(record(i)).unwrap();
        log.checkpoint(1_720_000_100_000 + i as i64).unwrap();
    }
    let out = tmp.path().join("export");
    log.export(None, None, &out).unwrap();

    let o = strata(&["admin", "destruction", "public-key", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pem = String::from_utf8(o.stdout).unwrap();
    assert_eq!(pem, log.public_key_pem());
    let key_file = tmp.path().join("log.pub.pem");
    std::fs::write(&key_file, &pem).unwrap();
    let o = strata(&[
        "admin",
        "destruction",
        "public-key",
        "--data-dir",
        s(&data),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["public_key_pem"], pem.as_str());
    assert_eq!(v["origin"], log.origin());

    let o = strata(&[
        "admin",
        "destruction",
        "verify",
        s(&out),
        "--public-key",
        s(&key_file),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("OK: "), "{text}");
    assert!(text.contains("records: 5 (indices 0..=4)"), "{text}");
    assert!(text.contains("complete: every record"), "{text}");

    let o = strata(&[
        "admin",
        "destruction",
        "verify",
        s(&out),
        "--public-key",
        s(&key_file),
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["records"], 5);
    assert_eq!(v["report"]["tree_size"], 5);

    // One byte of record 3 changed: exit status 1, record 3 named, in text and in JSON.
    let recs = out.join("records.jsonl");
    let orig = std::fs::read_to_string(&recs).unwrap();
    let tampered = orig.replace("\"size\":10003", "\"size\":10004");
    assert_ne!(orig, tampered);
    std::fs::write(&recs, tampered).unwrap();
    let o = strata(&[
        "admin",
        "destruction",
        "verify",
        s(&out),
        "--public-key",
        s(&key_file),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("record 3 (records.jsonl line 4): altered"),
        "{text}"
    );
    let o = strata(&[
        "admin",
        "destruction",
        "verify",
        s(&out),
        "--public-key",
        s(&key_file),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "record");
    assert_eq!(v["error"]["index"], 3);
    assert_eq!(v["error"]["problem"], "altered");

    // No log there: a clear error, not a new key.
    let o = strata(&[
        "admin",
        "destruction",
        "public-key",
        "--data-dir",
        s(&tmp.path().join("nothing")),
    ]);
    assert!(!o.status.success());
    assert!(!tmp.path().join("nothing").exists());
}
