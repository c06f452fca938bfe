//! Online backup while writers run, then restore.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_metadata::*;

#[test]
fn backup_during_writes_is_consistent_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta");
    let s = MetaStore::open(&db).unwrap();
    register(&s);
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let key = format!("w{t}/{}", i % 50);
                    let id = s.new_version_id();
                    put(
                        &s,
                        "b",
                        &key,
                        version(id.clone(), "e", None),
                        &Precondition::None,
                    )
                    .unwrap();
                    // Overwrites too, so the backup also holds GC entries mid-stream.
                    put(
                        &s,
                        "u",
                        &key,
                        version(String::new(), "e", Some(segment(t, i, 1))),
                        &Precondition::None,
                    )
                    .unwrap();
                    acked.lock().unwrap().push((key, id));
                    i += 1;
                }
            })
        })
        .collect();
    // Let the writers get going, then snapshot what was acknowledged before the backup started.
    while acked.lock().unwrap().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: Vec<(String, String)> = acked.lock().unwrap().clone();
    let backup = dir.path().join("backup");
    s.backup(&backup).unwrap();
    assert_eq!(s.backup(&backup), Err(MetaError::AlreadyExists));
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let total = acked.lock().unwrap().len();
    assert!(
        total > before.len(),
        "writers kept running during the backup"
    );
    drop(s);

    // Restore over the live directory (server stopped): the old store is kept aside.
    MetaStore::restore(&backup, &db).unwrap();
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("meta.before-restore-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "previous store kept");
    let restored = MetaStore::open(&db).unwrap();
    let report = restored.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for (key, id) in &before {
        restored
            .get_version("b", key, Some(id))
            .unwrap_or_else(|e| {
                panic!("version {key} {id} acknowledged before the backup is missing: {e}")
            });
    }
    let restored_versions = report.versions;
    assert!(restored_versions >= before.len());
    // The backup is a point in time: it does not hold everything written after it.
    let all = acked.lock().unwrap().clone();
    let missing_later = all
        .iter()
        .filter(|(k, id)| restored.get_version("b", k, Some(id)).is_err())
        .count();
    assert!(missing_later > 0, "writes after the backup are not in it");
    // And the restored store is writable.
    put(
        &restored,
        "b",
        "after-restore",
        version(restored.new_version_id(), "e", None),
        &Precondition::None,
    )
    .unwrap();
}

#[test]
fn restore_refuses_a_non_backup() {
    let dir = tempfile::tempdir().unwrap();
    let not_backup = dir.path().join("empty");
    std::fs::create_dir(&not_backup).unwrap();
    let db = dir.path().join("db");
    assert!(MetaStore::restore(&not_backup, &db).is_err());
    assert!(!db.exists(), "nothing replaced");
}
