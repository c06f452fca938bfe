//! The etcd backend itself, always against a real etcd (fails if etcd cannot start): key
//! isolation between spaces and prefixes, bounded scans both ways, the transaction mapping of
//! every condition, the limits, the snapshot checkpoint, leases and elections, and a member of
//! three killed while the store keeps serving.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_metadata::coord::{Coordinator, EtcdCoordinator};
use strata_metadata::etcd_server::EtcdCluster;
use strata_metadata::kv::{Batch, Direction, KeyRange, OrderedKv, Space};
use strata_metadata::kv_etcd::{EtcdConfig, EtcdHandle, EtcdKv, SNAPSHOT_FILE};
use strata_metadata::*;

fn kv(prefix: &str) -> EtcdKv {
    EtcdKv::connect(EtcdConfig::new(
        common::shared_etcd().endpoints(),
        prefix.as_bytes().to_vec(),
    ))
    .unwrap()
}

fn put(kv: &EtcdKv, space: Space, k: &[u8], v: &[u8]) {
    let mut b = Batch::default();
    b.put(space, k.to_vec(), v.to_vec());
    kv.commit(b).unwrap();
}

fn keys(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    rows.iter().map(|(k, _)| k.clone()).collect()
}

#[test]
fn spaces_and_prefixes_are_isolated_and_scans_are_bounded_both_ways() {
    let a = kv("iso-a/");
    let b = kv("iso-b/");
    for i in 0u8..10 {
        put(&a, Space::Heads, &[b'k', i], &[i]);
    }
    put(&a, Space::Versions, b"k\x05", b"other space");
    put(&b, Space::Heads, b"k\x05", b"other prefix");
    // The key 0xFF.. sorts last in the space: a range without end still stops at the space.
    put(&a, Space::Heads, &[0xFF, 0xFF], b"last");
    put(&a, Space::Parts, b"\x00", b"next space");

    let all = KeyRange::new(Vec::new(), None);
    let fwd = a.scan(Space::Heads, &all, Direction::Forward, 100).unwrap();
    assert_eq!(fwd.len(), 11);
    assert_eq!(fwd[5], (vec![b'k', 5], vec![5]));
    assert_eq!(fwd[10].0, vec![0xFF, 0xFF]);
    let rev = a.scan(Space::Heads, &all, Direction::Reverse, 3).unwrap();
    assert_eq!(
        keys(&rev),
        vec![vec![0xFF, 0xFF], vec![b'k', 9], vec![b'k', 8]]
    );
    // Bounded range, both directions, with a limit: [k2, k6).
    let r = KeyRange::new(vec![b'k', 2], Some(vec![b'k', 6]));
    assert_eq!(
        keys(&a.scan(Space::Heads, &r, Direction::Forward, 2).unwrap()),
        vec![vec![b'k', 2], vec![b'k', 3]]
    );
    assert_eq!(
        keys(&a.scan(Space::Heads, &r, Direction::Reverse, 2).unwrap()),
        vec![vec![b'k', 5], vec![b'k', 4]]
    );
    assert!(
        a.scan(Space::Heads, &r, Direction::Forward, 0)
            .unwrap()
            .is_empty()
    );
    let empty = KeyRange::new(vec![b'k', 6], Some(vec![b'k', 2]));
    assert!(
        a.scan(Space::Heads, &empty, Direction::Reverse, 5)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.get(Space::Versions, b"k\x05").unwrap().as_deref(),
        Some(&b"other space"[..])
    );
    assert_eq!(
        b.get(Space::Heads, b"k\x05").unwrap().as_deref(),
        Some(&b"other prefix"[..])
    );
    assert_eq!(a.get(Space::Heads, b"nope").unwrap(), None);
}

#[test]
fn every_condition_maps_to_a_compare_and_a_failed_one_applies_nothing() {
    let s = kv("cond/");
    put(&s, Space::Sys, b"x", b"1");
    put(&s, Space::Gc, b"r/5", b"");
    let attempt = |cond: &dyn Fn(&mut Batch)| {
        let mut b = Batch::default();
        cond(&mut b);
        b.put(Space::Sys, b"applied".to_vec(), b"yes".to_vec());
        b.delete(Space::Sys, b"x".to_vec());
        let r = s.commit(b);
        if r.is_ok() {
            // Undo for the next case.
            let mut u = Batch::default();
            u.delete(Space::Sys, b"applied".to_vec());
            u.put(Space::Sys, b"x".to_vec(), b"1".to_vec());
            s.commit(u).unwrap();
        } else {
            assert_eq!(s.get(Space::Sys, b"applied").unwrap(), None);
            assert_eq!(s.get(Space::Sys, b"x").unwrap().as_deref(), Some(&b"1"[..]));
        }
        r
    };
    assert_eq!(attempt(&|b| b.equals(Space::Sys, b"x", b"1")), Ok(()));
    assert_eq!(
        attempt(&|b| b.equals(Space::Sys, b"x", b"2")),
        Err(MetaError::Conflict)
    );
    assert_eq!(
        attempt(&|b| b.equals(Space::Sys, b"missing", b"")),
        Err(MetaError::Conflict)
    );
    assert_eq!(attempt(&|b| b.absent(Space::Sys, b"missing")), Ok(()));
    assert_eq!(
        attempt(&|b| b.absent(Space::Sys, b"x")),
        Err(MetaError::Conflict)
    );
    assert_eq!(attempt(&|b| b.present(Space::Sys, b"x")), Ok(()));
    assert_eq!(
        attempt(&|b| b.present(Space::Sys, b"missing")),
        Err(MetaError::Conflict)
    );
    // The same key in another space does not count.
    assert_eq!(attempt(&|b| b.absent(Space::Gc, b"x")), Ok(()));
    assert_eq!(
        attempt(&|b| b.range_empty(Space::Gc, KeyRange::prefix(b"r/"))),
        Err(MetaError::Conflict)
    );
    assert_eq!(
        attempt(&|b| b.range_empty(Space::Gc, KeyRange::prefix(b"q/"))),
        Ok(())
    );
    assert_eq!(
        attempt(&|b| b.range_empty(Space::Gc, KeyRange::new(b"r/6".to_vec(), None))),
        Ok(())
    );
    assert_eq!(
        attempt(&|b| b.range_empty(Space::Gc, KeyRange::new(Vec::new(), None))),
        Err(MetaError::Conflict)
    );
    // A put then a delete of one key in one batch: the last op wins, as in RocksDB.
    let mut b = Batch::default();
    b.put(Space::Sys, b"twice".to_vec(), b"a".to_vec());
    b.delete(Space::Sys, b"twice".to_vec());
    b.put(Space::Sys, b"thrice".to_vec(), b"a".to_vec());
    b.put(Space::Sys, b"thrice".to_vec(), b"b".to_vec());
    s.commit(b).unwrap();
    assert_eq!(s.get(Space::Sys, b"twice").unwrap(), None);
    assert_eq!(
        s.get(Space::Sys, b"thrice").unwrap().as_deref(),
        Some(&b"b"[..])
    );
}

#[test]
fn racing_compare_and_set_has_exactly_one_winner() {
    let s = Arc::new(kv("race/"));
    let wins: usize = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut b = Batch::default();
                b.absent(Space::Heads, b"obj");
                b.put(Space::Heads, b"obj".to_vec(), vec![i]);
                s.commit(b).is_ok() as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(wins, 1);
}

#[test]
fn a_batch_over_the_members_limits_fails_cleanly_and_changes_nothing() {
    let s = kv("limits/");
    let mut b = Batch::default();
    for i in 0..(kv_etcd::DEFAULT_MAX_TXN_OPS + 1) {
        b.put(Space::Parts, format!("p{i:05}").into_bytes(), vec![0]);
    }
    match s.commit(b) {
        Err(MetaError::Invalid(m)) => assert!(m.contains("--max-txn-ops"), "{m}"),
        other => panic!("expected a clean refusal, got {other:?}"),
    }
    let mut b = Batch::default();
    b.put(
        Space::Parts,
        b"big".to_vec(),
        vec![7; kv_etcd::DEFAULT_MAX_REQUEST_BYTES],
    );
    match s.commit(b) {
        Err(MetaError::Invalid(m)) => assert!(m.contains("--max-request-bytes"), "{m}"),
        other => panic!("expected a clean refusal, got {other:?}"),
    }
    let all = KeyRange::new(Vec::new(), None);
    assert!(
        s.scan(Space::Parts, &all, Direction::Forward, 10)
            .unwrap()
            .is_empty()
    );
    // At the limit it goes through, in one transaction.
    let mut b = Batch::default();
    for i in 0..kv_etcd::DEFAULT_MAX_TXN_OPS {
        b.put(Space::Parts, format!("p{i:05}").into_bytes(), vec![1; 16]);
    }
    s.commit(b).unwrap();
    assert_eq!(
        s.scan(Space::Parts, &all, Direction::Forward, 50_000)
            .unwrap()
            .len(),
        kv_etcd::DEFAULT_MAX_TXN_OPS
    );
}

#[test]
fn checkpoint_is_an_etcd_snapshot_file() {
    let s = MetaStore::open_etcd(EtcdConfig::new(
        common::shared_etcd().endpoints(),
        b"snap/".to_vec(),
    ))
    .unwrap();
    s.create_bucket(common::bucket("snap", VersioningState::Enabled))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    s.backup(&out).unwrap();
    let bytes = std::fs::read(out.join(SNAPSHOT_FILE)).unwrap();
    // A bbolt file: its meta page carries the magic 0xED0CDAED.
    assert!(bytes.len() > 4096, "snapshot of {} bytes", bytes.len());
    assert!(
        bytes.windows(4).any(|w| w == 0xED0CDAEDu32.to_le_bytes()),
        "not a bbolt database"
    );
    assert_eq!(s.backup(&out), Err(MetaError::AlreadyExists));
}

#[test]
fn leases_and_elections_hand_over_when_the_leader_lease_dies() {
    let cfg = EtcdConfig::new(common::shared_etcd().endpoints(), b"elect/".to_vec());
    let c = EtcdCoordinator::new(Arc::new(EtcdHandle::connect(cfg).unwrap()));
    assert_eq!(c.leader("e").unwrap(), None);
    let l1 = c.grant_lease(2).unwrap();
    let l2 = c.grant_lease(30).unwrap();
    c.campaign("e", l1, b"one").unwrap();
    c.campaign("e", l2, b"two").unwrap();
    // Idempotent: campaigning again does not move l1 behind l2.
    c.campaign("e", l1, b"one").unwrap();
    assert_eq!(c.leader("e").unwrap(), Some((l1, b"one".to_vec())));
    assert!(c.keep_alive(l1).unwrap());
    // l1 stops renewing (a killed process): within its TTL, l2 leads.
    let t = Instant::now();
    loop {
        if c.leader("e").unwrap().map(|(l, _)| l) == Some(l2) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no hand-over");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!c.keep_alive(l1).unwrap(), "an expired lease is reported");
    // Resign: no leader; revoke is idempotent.
    c.resign("e", l2).unwrap();
    assert_eq!(c.leader("e").unwrap(), None);
    c.revoke_lease(l2).unwrap();
    c.revoke_lease(l2).unwrap();
}

#[test]
fn killing_one_of_three_members_keeps_the_store_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::start(dir.path(), 3).unwrap();
    let mut cfg = EtcdConfig::new(cluster.endpoints(), b"three/".to_vec());
    cfg.request_timeout = Duration::from_secs(5);
    let s = MetaStore::open_etcd(cfg).unwrap();
    common::register(&s);
    s.create_bucket(common::bucket("b", VersioningState::Enabled))
        .unwrap();
    common::put(
        &s,
        "b",
        "before",
        common::version(s.new_version_id(), "e1", None),
        &Precondition::None,
    )
    .unwrap();
    // Kill the member the client most likely talks to first, and one more round: every
    // member in turn, restarting the previous one (a quorum of two stays up throughout).
    for victim in 0..3 {
        cluster.members[victim].kill();
        let t = Instant::now();
        let key = format!("during-{victim}");
        // Bounded: the client fails over within its request timeout.
        let mut last = None;
        for _ in 0..20 {
            match common::put(
                &s,
                "b",
                &key,
                common::version(s.new_version_id(), "e2", None),
                &Precondition::None,
            ) {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        assert!(
            last.is_none(),
            "writes failed with member {victim} down: {last:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "fail-over took {:?}",
            t.elapsed()
        );
        assert_eq!(s.get_version("b", "before", None).unwrap().etag, "e1");
        assert_eq!(s.get_version("b", &key, None).unwrap().etag, "e2");
        cluster.members[victim].restart().unwrap();
        // Let the restarted member catch up before the next one goes.
        std::thread::sleep(Duration::from_millis(500));
    }
    let listed = s
        .list_objects(
            "b",
            &ListObjectsParams {
                max_keys: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(listed.objects.len(), 4, "{listed:?}");
}

#[test]
fn housekeeping_compacts_behind_the_window_and_defragments_one_member() {
    use strata_metadata::coord::{EtcdHousekeeping, Housekeeping};
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(dir.path(), 1).unwrap();
    let handle = Arc::new(
        EtcdHandle::connect(EtcdConfig::new(cluster.endpoints(), b"hk/".to_vec())).unwrap(),
    );
    let s = EtcdKv::over(handle.clone());
    for i in 0..60u32 {
        put(&s, Space::Sys, b"churn", &i.to_be_bytes());
    }
    let hk = EtcdHousekeeping::new(handle);
    // Window 10, any step size, defragment whatever the ratio.
    let r = hk.step(10, 1, 1.01, 0).unwrap();
    assert!(r.revision >= 60, "{r:?}");
    assert_eq!(r.compacted_to, r.revision - 10, "{r:?}");
    assert_eq!(r.defragmented, cluster.endpoints(), "{r:?}");
    // Resumable: the mark is in etcd, so a step right after (another leader) does nothing.
    let again = hk.step(10, 5, 0.0, i64::MAX).unwrap();
    assert_eq!(again.compacted_to, 0, "{again:?}");
    assert!(again.defragmented.is_empty());
    // History before the window is gone; the current value is intact.
    assert_eq!(
        s.get(Space::Sys, b"churn").unwrap(),
        Some(59u32.to_be_bytes().to_vec())
    );
}
