//! Usage accounting (`strata_metadata::usage`): stored usage follows every version change
//! exactly, request counts fold once, samples are kept and pruned. Runs on RocksDB, and on a
//! real etcd with `STRATA_TEST_META=etcd`.

mod common;

use common::*;
use strata_metadata::usage::{MINUTE_SAMPLES_MS, RequestCounts, UsageDelta, UsageTotals};
use strata_metadata::*;

const NOW: i64 = 1_700_000_000_000;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("meta"));
    register(&store);
    (dir, store)
}

fn sized(s: &MetaStore, n: u64, len: u64, class: &str) -> VersionRecord {
    let mut v = version(s.new_version_id(), "e", Some(segment(n, 7, len)));
    v.storage_class = class.into();
    v
}

fn totals(s: &MetaStore, bucket: &str) -> UsageTotals {
    s.fold_usage(10_000, keys::now_ms()).unwrap();
    s.usage_totals(100)
        .unwrap()
        .into_iter()
        .find(|t| t.bucket == bucket)
        .unwrap_or_default()
}

fn counts(t: &UsageTotals) -> (i64, i64, i64, i64) {
    (t.objects, t.versions, t.delete_markers, t.stored_bytes())
}

#[test]
fn stored_usage_follows_puts_overwrites_markers_and_deletes() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    s.create_bucket(bucket("other", VersioningState::Unversioned))
        .unwrap();
    put(
        &s,
        "b",
        "k1",
        sized(&s, 1, 100, "STANDARD"),
        &Precondition::None,
    )
    .unwrap();
    put(
        &s,
        "b",
        "k2",
        sized(&s, 2, 50, "GLACIER"),
        &Precondition::None,
    )
    .unwrap();
    put(
        &s,
        "other",
        "k",
        sized(&s, 3, 9, "STANDARD"),
        &Precondition::None,
    )
    .unwrap();
    // Unversioned overwrite: the old null version is replaced, not added.
    put(
        &s,
        "b",
        "k1",
        sized(&s, 4, 30, "STANDARD"),
        &Precondition::None,
    )
    .unwrap();
    let t = totals(&s, "b");
    assert_eq!(counts(&t), (2, 2, 0, 80));
    assert_eq!(t.bytes["STANDARD"], 30);
    assert_eq!(t.bytes["GLACIER"], 50);
    assert_eq!(t.owner, ALICE);
    assert_eq!(counts(&totals(&s, "other")), (1, 1, 0, 9));

    s.update_bucket("b", |b| {
        b.versioning = VersioningState::Enabled;
        Ok(())
    })
    .unwrap();
    put(
        &s,
        "b",
        "k1",
        sized(&s, 5, 70, "STANDARD"),
        &Precondition::None,
    )
    .unwrap();
    s.delete_object("b", "k2", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(counts(&totals(&s, "b")), (1, 3, 1, 150));
    // Removing the marker brings k2 back.
    let marker = s.get_version("b", "k2", None).unwrap();
    assert!(marker.is_delete_marker);
    s.delete_object("b", "k2", Some(&marker.version_id), "alice", NOW, false)
        .unwrap();
    assert_eq!(counts(&totals(&s, "b")), (2, 3, 0, 150));
    // Removing the latest of k1 leaves the older null version current: still two objects.
    let latest = s.get_version("b", "k1", None).unwrap();
    s.delete_object("b", "k1", Some(&latest.version_id), "alice", NOW, false)
        .unwrap();
    assert_eq!(counts(&totals(&s, "b")), (2, 2, 0, 80));
    for key in ["k1", "k2"] {
        for _ in 0..5 {
            let Ok(v) = s.get_version("b", key, None) else {
                break;
            };
            s.delete_object("b", key, Some(&v.version_id), "alice", NOW, false)
                .unwrap();
        }
    }
    let t = totals(&s, "b");
    assert_eq!(counts(&t), (0, 0, 0, 0));
    assert!(t.bytes.is_empty(), "{:?}", t.bytes);
    assert_eq!(counts(&totals(&s, "other")), (1, 1, 0, 9));
}

#[test]
fn request_counts_fold_once_into_samples_and_prune() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let reqs = |n| UsageDelta {
        bucket: "b".into(),
        requests: RequestCounts {
            read: n,
            bytes_out: 10 * n,
            ..Default::default()
        },
        ..Default::default()
    };
    s.record_usage(&[reqs(2), reqs(3)]).unwrap();
    let now = keys::now_ms();
    let r = s.fold_usage(10_000, now).unwrap();
    assert_eq!((r.deltas, r.buckets, r.more), (2, 1, false));
    let samples = s.usage_samples("b", now - 60_000, now, 10).unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(
        (samples[0].requests.read, samples[0].requests.bytes_out),
        (5, 50)
    );
    // Each delta counts once.
    assert_eq!(s.fold_usage(10_000, now).unwrap().deltas, 0);
    assert_eq!(s.usage_totals(10).unwrap()[0].requests.read, 5);
    // A fold pass stops at its limit and says so.
    s.record_usage(&[reqs(1), reqs(1), reqs(1)]).unwrap();
    assert!(s.fold_usage(2, now).unwrap().more);
    assert_eq!(s.fold_usage(2, now).unwrap().deltas, 1);
    assert_eq!(s.usage_totals(10).unwrap()[0].requests.read, 8);
    // After the bucket is deleted, requests to its name are not counted; its totals stay
    // until pruned, with their samples.
    s.delete_bucket("b").unwrap();
    s.record_usage(&[reqs(1)]).unwrap();
    s.fold_usage(10_000, now).unwrap();
    assert_eq!(s.usage_totals(10).unwrap()[0].requests.read, 8);
    let later = now + 2 * MINUTE_SAMPLES_MS;
    assert!(s.prune_usage_samples(later, 3_600_000, 100).unwrap() >= 3);
    assert!(s.usage_totals(10).unwrap().is_empty());
    assert!(s.usage_samples("b", 0, later, 10).unwrap().is_empty());
}
