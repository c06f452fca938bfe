//! The log on a real directory: durability rules at open, idempotent appends, find, checkpoints,
//! export and offline verification (happy paths and the failures an auditor must see).

mod common;

use std::fs;
use std::io::Write as _;
use std::path::Path;

use common::{read_lines, record, write_lines};
use strata_destruction_log::{
    DestructionLog, LogError, LogOptions, RecordProblem, VerifyError, public_key_pem_of,
    verify_export,
};

fn filled(dir: &Path, n: u64) -> DestructionLog {
    let log = DestructionLog::open_with_options(
        dir,
        LogOptions {
            sync_every: 4,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        let bucket = if i % 3 == 0 { "logs" } else { "photos" };
        log.append(record(
            &format!("op-{i}"),
            bucket,
            &format!("k{}", i % 5),
            1000 + i as i64,
        ))
        .unwrap();
        if i % 4 == 3 {
            log.checkpoint(10_000 + i as i64).unwrap();
        }
    }
    log
}

#[test]
fn append_is_idempotent_by_op_id_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = DestructionLog::open(dir.path()).unwrap();
    assert_eq!(log.append(record("a", "b", "k", 1)).unwrap(), 0);
    assert_eq!(log.append(record("b", "b", "k", 2)).unwrap(), 1);
    // Same op id again (a retried destruction): nothing new, the first index.
    let mut again = record("a", "b", "other-key", 3);
    again.size = 1;
    assert_eq!(log.append(again).unwrap(), 0);
    assert_eq!(log.len().unwrap(), 2);
    assert_eq!(log.contains("b").unwrap(), Some(1));
    assert_eq!(log.contains("nope").unwrap(), None);
    assert!(matches!(
        log.append(record("", "b", "k", 1)),
        Err(LogError::InvalidRecord(_))
    ));
    let mut huge = record("big", "b", "k", 1);
    huge.key = "x".repeat(70 * 1024);
    assert!(matches!(log.append(huge), Err(LogError::InvalidRecord(_))));
    // A second open of the same directory is refused while the first holds it.
    assert!(matches!(
        DestructionLog::open(dir.path()),
        Err(LogError::Locked(_))
    ));
    let pem = log.public_key_pem();
    drop(log);

    let log = DestructionLog::open(dir.path()).unwrap();
    assert_eq!(log.len().unwrap(), 2);
    assert_eq!(log.contains("a").unwrap(), Some(0));
    assert_eq!(log.append(record("a", "b", "k", 9)).unwrap(), 0);
    assert_eq!(log.append(record("c", "b", "k", 9)).unwrap(), 2);
    assert_eq!(log.public_key_pem(), pem);
    assert_eq!(public_key_pem_of(dir.path()).unwrap(), pem);
    let found = log.find("b", "k").unwrap();
    assert_eq!(
        found
            .iter()
            .map(|(i, r)| (*i, r.op_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "a"), (1, "b"), (2, "c")]
    );
    assert_eq!(found[0].1, record("a", "b", "k", 1));
    assert!(log.find("b", "other-key").unwrap().is_empty());
    assert!(log.find("bk", "").unwrap().is_empty());
}

#[test]
fn checkpoints_are_made_on_growth_with_monotonic_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = DestructionLog::open(dir.path()).unwrap();
    let c0 = log.checkpoint(500).unwrap();
    assert_eq!((c0.tree_size, c0.timestamp_ms), (0, 500));
    assert_eq!(
        c0.root_hash,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        log.checkpoint(900).unwrap(),
        c0,
        "no growth: same checkpoint"
    );
    log.append(record("x", "b", "k", 1)).unwrap();
    let c1 = log.checkpoint(100).unwrap();
    assert_eq!(
        (c1.tree_size, c1.timestamp_ms),
        (1, 500),
        "time never goes back"
    );
    assert!(c1.origin.starts_with("strata.destruction-log/"));
    drop(log);
    let log = DestructionLog::open(dir.path()).unwrap();
    assert_eq!(log.latest_checkpoint().unwrap(), Some(c1.clone()));
    assert_eq!(log.checkpoint(2000).unwrap(), c1);
}

#[test]
fn export_verifies_offline_full_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(&dir.path().join("log"), 23);
    let pem = log.public_key_pem();

    let full = dir.path().join("full");
    let s = log.export(None, None, &full).unwrap();
    assert_eq!((s.records, s.tree_size), (23, 23));
    let r = verify_export(&full, &pem).unwrap();
    assert_eq!((r.records, r.tree_size, r.checkpoints), (23, 23, 6));
    assert!(r.complete);
    assert_eq!((r.first_index, r.last_index), (Some(0), Some(22)));
    assert_eq!(r.root_hash, s.root_hash);
    assert_eq!(read_lines(&full.join("records.jsonl")).len(), 23);

    let logs = dir.path().join("logs");
    let s = log.export(None, Some("logs"), &logs).unwrap();
    assert_eq!(s.records, 8);
    let r = verify_export(&logs, &pem).unwrap();
    assert_eq!(
        (r.records, r.bucket.as_deref(), r.complete),
        (8, Some("logs"), false)
    );
    for line in read_lines(&logs.join("records.jsonl")) {
        assert!(line.contains(r#""bucket":"logs""#), "{line}");
    }

    let since = dir.path().join("since");
    let r = {
        log.export(Some(1015), None, &since).unwrap();
        verify_export(&since, &pem).unwrap()
    };
    assert_eq!((r.records, r.first_index), (8, Some(15)));

    // Appending after an export: a new export verifies, its checkpoints extend the old ones.
    log.append(record("late", "logs", "z", 5000)).unwrap();
    let again = dir.path().join("again");
    log.export(None, None, &again).unwrap();
    let r2 = verify_export(&again, &pem).unwrap();
    assert_eq!(r2.tree_size, 24);
    let old = read_lines(&full.join("checkpoints.jsonl"));
    let new = read_lines(&again.join("checkpoints.jsonl"));
    assert_eq!(new[..old.len()], old[..]);

    // An empty filter result still verifies; a non-empty directory is refused.
    let none = dir.path().join("none");
    assert_eq!(log.export(None, Some("absent"), &none).unwrap().records, 0);
    assert_eq!(verify_export(&none, &pem).unwrap().records, 0);
    assert!(matches!(
        log.export(None, None, &again),
        Err(LogError::Export(_))
    ));

    // Another log's key, or a non-key, fails before anything else.
    let other = DestructionLog::open(&dir.path().join("other")).unwrap();
    assert!(matches!(
        verify_export(&full, &other.public_key_pem()),
        Err(VerifyError::Manifest { .. })
    ));
    assert!(matches!(
        verify_export(&full, "hello"),
        Err(VerifyError::PublicKey { .. })
    ));
}

#[test]
fn an_empty_log_exports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = DestructionLog::open(&dir.path().join("log")).unwrap();
    let out = dir.path().join("out");
    log.export(None, None, &out).unwrap();
    let r = verify_export(&out, &log.public_key_pem()).unwrap();
    assert_eq!((r.records, r.tree_size, r.checkpoints), (0, 0, 1));
    assert!(r.complete);
}

fn record_err(e: VerifyError) -> (u64, String, u64, RecordProblem) {
    match e {
        VerifyError::Record {
            index,
            file,
            line,
            problem,
            ..
        } => (index, file, line, problem),
        other => panic!("expected a record error, got {other}"),
    }
}

fn export_of(n: u64, bucket: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(&dir.path().join("log"), n);
    let out = dir.path().join("out");
    log.export(None, bucket, &out).unwrap();
    let pem = log.public_key_pem();
    (dir, out, pem)
}

#[test]
fn removed_reordered_inserted_and_altered_records_are_named() {
    let (_d, out, pem) = export_of(12, None);
    let recs = out.join("records.jsonl");
    let orig = read_lines(&recs);
    let restore = || write_lines(&recs, &orig);

    // Removed: line of record 5 deleted.
    let mut l = orig.clone();
    l.remove(5);
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(
        record_err(e.clone()),
        (5, "records.jsonl".into(), 6, RecordProblem::Removed),
        "{e}"
    );
    // Removed at the end.
    let mut l = orig.clone();
    l.pop();
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(record_err(e).3, RecordProblem::Removed);

    // Reordered: records 3 and 4 swapped.
    let mut l = orig.clone();
    l.swap(3, 4);
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(
        record_err(e.clone()),
        (4, "records.jsonl".into(), 4, RecordProblem::Reordered),
        "{e}"
    );
    assert!(e.to_string().contains("record 3 comes later"), "{e}");

    // Inserted: a copy of record 2 after record 7.
    let mut l = orig.clone();
    l.insert(8, orig[2].clone());
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(
        record_err(e.clone()),
        (2, "records.jsonl".into(), 9, RecordProblem::Inserted),
        "{e}"
    );

    // Altered: a field changed, the line still valid JSON.
    let mut l = orig.clone();
    l[6] = l[6].replace(r#""size":4096"#, r#""size":4095"#);
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(
        record_err(e.clone()),
        (6, "records.jsonl".into(), 7, RecordProblem::Altered),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("record 6 (records.jsonl line 7): altered"),
        "{e}"
    );

    // Altered index field (the line claims another record's place).
    let mut l = orig.clone();
    l[6] = l[6].replace(r#""index":6,"#, r#""index":9,"#);
    write_lines(&recs, &l);
    assert_eq!(record_err(verify_export(&out, &pem).unwrap_err()).0, 6);

    // A forged line inserted (not a record the log signed).
    let mut l = orig.clone();
    l.insert(0, "{}".into());
    write_lines(&recs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(record_err(e).3, RecordProblem::Inserted);
    // An extra record at the end.
    let mut l = orig.clone();
    l.push(orig[0].clone());
    write_lines(&recs, &l);
    assert!(matches!(
        verify_export(&out, &pem).unwrap_err(),
        VerifyError::File { .. }
    ));

    restore();
    verify_export(&out, &pem).unwrap();
    // A proof line removed: the record it proves is named.
    let proofs = out.join("proofs.jsonl");
    let p = read_lines(&proofs);
    let mut l = p.clone();
    l.remove(3);
    write_lines(&proofs, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(record_err(e).0, 3);
    write_lines(&proofs, &p);
    verify_export(&out, &pem).unwrap();
}

#[test]
fn a_filtered_export_cannot_lose_or_gain_a_record_silently() {
    let (_d, out, pem) = export_of(15, Some("logs"));
    let recs = out.join("records.jsonl");
    let orig = read_lines(&recs);
    assert_eq!(orig.len(), 5); // records 0, 3, 6, 9, 12
    verify_export(&out, &pem).unwrap();
    // Dropping record 6 (and its proof) leaves a consistent-looking pair of files, but the
    // signed manifest lists it.
    let proofs = out.join("proofs.jsonl");
    let p = read_lines(&proofs);
    let (mut l, mut q) = (orig.clone(), p.clone());
    l.remove(2);
    q.remove(2);
    write_lines(&recs, &l);
    write_lines(&proofs, &q);
    let e = verify_export(&out, &pem).unwrap_err();
    assert_eq!(record_err(e.clone()).0, 6, "{e}");
    // Editing the manifest to match is caught by its signature.
    let m = out.join("manifest.json");
    let text = fs::read_to_string(&m).unwrap();
    let edited = text.replace(r#""records":5"#, r#""records":4"#);
    assert_ne!(text, edited);
    fs::write(&m, edited).unwrap();
    assert!(matches!(
        verify_export(&out, &pem).unwrap_err(),
        VerifyError::Manifest { .. }
    ));
    fs::write(&m, text).unwrap();
    write_lines(&recs, &orig);
    write_lines(&proofs, &p);
    verify_export(&out, &pem).unwrap();
}

/// Every single-byte change of records.jsonl and proofs.jsonl names the record of that line;
/// every single-byte change anywhere else fails too.
#[test]
fn any_single_byte_change_fails_and_names_the_record() {
    let (_d, out, pem) = export_of(6, None);
    verify_export(&out, &pem).unwrap();
    for name in strata_destruction_log::EXPORT_FILES {
        let path = out.join(name);
        let orig = fs::read(&path).unwrap();
        // Which record each byte's line belongs to (line k holds record k: full export).
        let mut line_of = Vec::with_capacity(orig.len());
        let mut line = 0u64;
        for &b in &orig {
            line_of.push(line);
            if b == b'\n' {
                line += 1;
            }
        }
        for pos in 0..orig.len() {
            for delta in [1u8, 0x20] {
                let mut bytes = orig.clone();
                bytes[pos] ^= delta;
                fs::write(&path, &bytes).unwrap();
                let err = verify_export(&out, &pem)
                    .expect_err(&format!("{name}: byte {pos} ^ {delta:#x} verified"));
                if name == "records.jsonl" || name == "proofs.jsonl" {
                    let (index, file, _, _) = record_err(err.clone());
                    assert_eq!(index, line_of[pos], "{name} byte {pos}: {err}");
                    // A proof changed into another well-formed one fails where the record is
                    // checked against it: either file may be named, the record always is.
                    if name == "records.jsonl" {
                        assert_eq!(file, name, "{err}");
                    }
                }
            }
        }
        fs::write(&path, &orig).unwrap();
        // Truncated by one byte, or one byte longer.
        fs::write(&path, &orig[..orig.len() - 1]).unwrap();
        assert!(verify_export(&out, &pem).is_err(), "{name} truncated");
        let mut longer = orig.clone();
        longer.push(b'\n');
        fs::write(&path, &longer).unwrap();
        assert!(verify_export(&out, &pem).is_err(), "{name} extended");
        fs::write(&path, &orig).unwrap();
    }
    verify_export(&out, &pem).unwrap();
}

/// Edits that leave every JSON value the same (a space, an escaped letter) still fail: the
/// verifier accepts only the exporter's exact bytes.
#[test]
fn json_that_parses_the_same_but_is_spelled_differently_fails() {
    let (_d, out, pem) = export_of(5, None);
    for name in strata_destruction_log::EXPORT_FILES {
        let path = out.join(name);
        let orig = fs::read_to_string(&path).unwrap();
        assert!(!orig.is_empty(), "{name}");
        let first = orig.lines().next().unwrap().to_string();
        let rest = &orig[first.len()..];
        let spaced = first.replacen(":", ": ", 1);
        // The first key's first letter escaped, e.g. `"index"` -> `"\u0069ndex"`.
        let q = first.find('"').unwrap();
        let c = first[q + 1..].chars().next().unwrap();
        let escaped = format!(
            "{}\\u{:04x}{}",
            &first[..=q],
            c as u32,
            &first[q + 1 + c.len_utf8()..]
        );
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&escaped).unwrap(),
            v
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&spaced).unwrap(),
            v
        );
        for variant in [spaced, escaped] {
            fs::write(&path, format!("{variant}{rest}")).unwrap();
            assert!(verify_export(&out, &pem).is_err(), "{name}: {variant}");
        }
        fs::write(&path, &orig).unwrap();
    }
    verify_export(&out, &pem).unwrap();
}

#[test]
fn bad_or_inconsistent_checkpoints_are_named() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;

    let dir = tempfile::tempdir().unwrap();
    let log = filled(&dir.path().join("log"), 10);
    let out = dir.path().join("out");
    log.export(None, None, &out).unwrap();
    let pem = log.public_key_pem();
    let cps_path = out.join("checkpoints.jsonl");
    let orig = read_lines(&cps_path);
    assert_eq!(orig.len(), 3); // sizes 4, 8, 10

    // Time edited: the signature no longer matches.
    let mut l = orig.clone();
    let mut cp: strata_destruction_log::SignedCheckpoint = serde_json::from_str(&l[1]).unwrap();
    cp.timestamp_ms += 1;
    l[1] = serde_json::to_string(&cp).unwrap();
    write_lines(&cps_path, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Checkpoint { number: 2, reason } if reason.contains("bad signature")),
        "{e}"
    );

    // A validly signed checkpoint of a forked history (same size, other root): whoever holds
    // the key cannot rewrite the past without the consistency proofs failing.
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(
        &fs::read_to_string(dir.path().join("log/log-key.pem")).unwrap(),
    )
    .unwrap();
    let mut forked: strata_destruction_log::SignedCheckpoint =
        serde_json::from_str(&orig[1]).unwrap();
    forked.root_hash = hex::encode([0x42u8; 32]);
    let sig = key.sign(forked.signed_body().as_bytes());
    forked.signature = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    let mut l = orig.clone();
    l[1] = serde_json::to_string(&forked).unwrap();
    write_lines(&cps_path, &l);
    let e = verify_export(&out, &pem).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Checkpoint { number: 2, reason } if reason.contains("not consistent with checkpoint 1")),
        "{e}"
    );

    // A checkpoint removed: the manifest's count and the proofs no longer line up.
    let mut l = orig.clone();
    l.remove(1);
    write_lines(&cps_path, &l);
    assert!(verify_export(&out, &pem).is_err());
    write_lines(&cps_path, &orig);
    verify_export(&out, &pem).unwrap();
}

#[test]
fn a_torn_tail_is_cut_at_open_and_damage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = filled(&path, 5);
    drop(log);
    let records = path.join("records.log");
    let good = fs::read(&records).unwrap();
    // The start of a frame that never completed (as a crash mid-append leaves it).
    let mut f = fs::OpenOptions::new().append(true).open(&records).unwrap();
    f.write_all(&[0xFF, b'D', b'L', 1, 200, 0, 0, 0, 1, 2, 3])
        .unwrap();
    drop(f);
    let log = DestructionLog::open(&path).unwrap();
    assert_eq!(fs::read(&records).unwrap(), good, "torn frame cut");
    assert_eq!(log.len().unwrap(), 5);
    assert_eq!(log.append(record("op-5", "b", "k", 1)).unwrap(), 5);
    let out = dir.path().join("out");
    log.export(None, None, &out).unwrap();
    verify_export(&out, &log.public_key_pem()).unwrap();
    drop(log);

    // A flipped byte inside an acknowledged record that open has to read (here all of them:
    // no state.json, a full replay) with good records after it is damage, not a torn tail:
    // open refuses instead of dropping acknowledged records.
    let bytes = fs::read(&records).unwrap();
    fs::remove_file(path.join("state.json")).unwrap();
    let mut early = bytes.clone();
    early[20] ^= 1; // inside record 0
    fs::write(&records, &early).unwrap();
    assert!(matches!(
        DestructionLog::open(&path),
        Err(LogError::Corrupt(_))
    ));
    assert_eq!(
        fs::read(&records).unwrap(),
        early,
        "a refused open cuts nothing"
    );
    fs::write(&records, &bytes).unwrap();
    let log = DestructionLog::open(&path).unwrap();
    assert_eq!(log.len().unwrap(), 6);
}

/// A bad last frame that a checkpoint covers was acknowledged: it is damage, not a torn
/// append, and open refuses without cutting anything.
#[test]
fn a_bad_last_record_under_a_checkpoint_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = DestructionLog::open_with_options(
        &path,
        LogOptions {
            sync_every: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        log.append(record(&format!("op-{i}"), "b", "k", i)).unwrap();
    }
    drop(log);
    // Sync point before the last record only: reopen, checkpoint at 3 happens now.
    let log = DestructionLog::open_with_options(
        &path,
        LogOptions {
            sync_every: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    log.checkpoint(5).unwrap();
    drop(log);
    fs::remove_file(path.join("state.json")).unwrap(); // replay everything
    let records = path.join("records.log");
    let mut b = fs::read(&records).unwrap();
    let last = b.len() - 10;
    b[last] ^= 1;
    fs::write(&records, &b).unwrap();
    assert!(matches!(
        DestructionLog::open(&path),
        Err(LogError::Corrupt(_))
    ));
    assert_eq!(fs::read(&records).unwrap(), b, "nothing cut");
}

#[test]
fn derived_files_are_rebuilt_when_missing_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = filled(&path, 9);
    let root = log.checkpoint(99_999).unwrap().root_hash;
    drop(log);
    for damage in ["index", "tree", "state", "huge", "all"] {
        match damage {
            "index" => {
                let p = path.join("index.bin");
                let mut b = fs::read(&p).unwrap();
                b[40] ^= 0xff;
                fs::write(&p, b).unwrap();
            }
            "tree" => {
                // A node on the frontier (the root of the first 8 leaves, position 7).
                let p = path.join("tree.bin");
                let mut b = fs::read(&p).unwrap();
                b[7 * 32] ^= 0xff;
                fs::write(&p, b).unwrap();
            }
            "state" => fs::write(path.join("state.json"), b"{not json").unwrap(),
            "huge" => {
                // Well-formed, but naming an absurd number of records.
                let p = path.join("state.json");
                let mut v: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                v["records"] = serde_json::json!(u64::MAX);
                fs::write(&p, v.to_string()).unwrap();
            }
            _ => {
                for f in ["index.bin", "tree.bin", "state.json"] {
                    fs::remove_file(path.join(f)).unwrap();
                }
            }
        }
        let log = DestructionLog::open(&path).unwrap();
        assert_eq!(log.len().unwrap(), 9, "{damage}");
        assert_eq!(log.checkpoint(1).unwrap().root_hash, root, "{damage}");
        assert_eq!(log.contains("op-4").unwrap(), Some(4));
        let out = dir.path().join(format!("out-{damage}"));
        log.export(None, None, &out).unwrap();
        verify_export(&out, &log.public_key_pem()).unwrap();
    }
}

/// Open trusts the synced prefix: it does not read (let alone re-hash) the records before the
/// last sync point, so its cost does not grow with the log.
#[test]
fn open_does_not_reread_the_synced_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = filled(&path, 40);
    log.checkpoint(1).unwrap(); // a sync point covering all 40
    drop(log);
    let records = path.join("records.log");
    let mut b = fs::read(&records).unwrap();
    b[20] ^= 1; // inside record 0
    fs::write(&records, &b).unwrap();
    let log = DestructionLog::open(&path).unwrap();
    assert_eq!(log.len().unwrap(), 40);
    // Reading record 0 does notice.
    assert!(matches!(
        log.export(None, None, &dir.path().join("out")),
        Err(LogError::Corrupt(_))
    ));
}

#[test]
fn concurrent_appends_from_threads_each_get_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(
        DestructionLog::open_with_options(
            dir.path(),
            LogOptions {
                sync_every: 5,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        // Every op twice (retries race with first attempts).
                        let op = format!("t{t}-{}", i / 2);
                        (op.clone(), log.append(record(&op, "b", "k", i)).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for h in handles {
        for (op, idx) in h.join().unwrap() {
            assert_eq!(*seen.entry(op).or_insert(idx), idx);
        }
    }
    assert_eq!(log.len().unwrap(), seen.len() as u64);
    let mut idx: Vec<u64> = seen.values().copied().collect();
    idx.sort();
    assert_eq!(idx, (0..seen.len() as u64).collect::<Vec<_>>());
    let out = dir.path().join("out");
    log.export(None, None, &out).unwrap();
    verify_export(&out, &log.public_key_pem()).unwrap();
}
