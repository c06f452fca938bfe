//! Write intents owned by process instances with leases: what the sweep may take, what a commit
//! after a sweep does, and what discarding a write queues. Real RocksDB in a temp directory.

mod common;

use common::*;
use strata_metadata::*;

const NOW: i64 = 1_700_000_000_000;
const LEASE: i64 = 30_000;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&dir.path().join("meta"));
    s.set_gc_grace_ms(0);
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    (dir, s)
}

fn blobs(items: &[GcItem]) -> Vec<BlobId> {
    items
        .iter()
        .flat_map(|i| i.segments.iter().map(|s| s.blob))
        .collect()
}

#[test]
fn instances_register_renew_expire_and_retire() {
    let (_d, s) = open();
    s.register_instance("p1", LEASE, NOW).unwrap();
    assert_eq!(
        s.register_instance("p1", LEASE, NOW),
        Err(MetaError::AlreadyExists)
    );
    s.renew_instance("p1", LEASE, NOW + LEASE).unwrap();
    assert_eq!(s.list_instances().unwrap()[0].lease_until, NOW + 2 * LEASE);
    // A lease that ran out cannot be renewed: the process must stop writing.
    assert_eq!(
        s.renew_instance("p1", LEASE, NOW + 2 * LEASE + 1),
        Err(MetaError::InstanceExpired("p1".into()))
    );
    assert_eq!(
        s.renew_instance("ghost", LEASE, NOW),
        Err(MetaError::InstanceExpired("ghost".into()))
    );
    // Nor can an expired or unknown instance begin a write.
    assert_eq!(
        s.begin_write(&segment(1, 1, 1), "p1", NOW + 2 * LEASE + 1),
        Err(MetaError::InstanceExpired("p1".into()))
    );
    assert_eq!(
        s.begin_write(&segment(1, 1, 1), "ghost", NOW),
        Err(MetaError::InstanceExpired("ghost".into()))
    );
    assert_eq!(s.pending_writes().unwrap(), 0);
    s.register_instance("p2", LEASE, NOW).unwrap();
    s.register_instance("me", LEASE, NOW).unwrap();
    assert_eq!(s.expire_other_instances("me", NOW).unwrap(), 2);
    let ids: Vec<_> = s
        .list_instances()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["me"]);
    s.retire_instance("me").unwrap();
    assert!(s.list_instances().unwrap().is_empty());
}

#[test]
fn the_sweep_takes_only_intents_of_dead_instances() {
    let (_d, s) = open();
    s.register_instance("live", LEASE, NOW).unwrap();
    s.register_instance("dying", LEASE, NOW - 2 * LEASE)
        .unwrap();
    s.register_instance("retired", LEASE, NOW).unwrap();
    let live = segment(2, 1, 10);
    let dying = segment(2, 2, 10);
    let retired = segment(2, 3, 10);
    s.begin_write(&live, "live", NOW).unwrap();
    s.begin_write(&dying, "dying", NOW - 2 * LEASE).unwrap();
    s.begin_write(&retired, "retired", NOW).unwrap();
    s.retire_instance("retired").unwrap();
    assert_eq!(s.pending_writes().unwrap(), 3);

    // At NOW, "dying"'s lease (until NOW - LEASE) has run out and "retired" is gone.
    assert_eq!(s.sweep_interrupted_writes(NOW).unwrap(), 2);
    let queued = s.gc_pending(NOW, 10).unwrap();
    let mut got = blobs(&queued);
    got.sort();
    assert_eq!(got, vec![dying.blob, retired.blob]);
    assert!(queued.iter().all(|i| i.reason == "interrupted-write"));
    assert_eq!(
        s.pending_writes().unwrap(),
        1,
        "the live instance's intent survives"
    );
    assert_eq!(s.sweep_interrupted_writes(NOW).unwrap(), 0, "idempotent");
    // The full pass also dropped the expired instance record.
    let ids: Vec<_> = s
        .list_instances()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["live"]);

    // The live writer commits its blob normally.
    let id = s.new_version_id();
    s.put_version(
        "b",
        "k",
        version(id, "e", Some(live.clone())),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(s.pending_writes().unwrap(), 0);
    // Even once that instance is dead, a committed blob is never swept.
    assert_eq!(s.sweep_interrupted_writes(NOW + 10 * LEASE).unwrap(), 0);
    assert!(!blobs(&s.gc_pending(i64::MAX, 10).unwrap()).contains(&live.blob));
    assert!(s.verify().unwrap().problems.is_empty());
}

#[test]
fn a_commit_after_its_intent_was_swept_is_aborted_and_changes_nothing() {
    let (_d, s) = open();
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    s.register_instance("w", LEASE, NOW).unwrap();
    // A committed null version that the aborted PUT would have replaced.
    let old = segment(3, 1, 10);
    s.begin_write(&old, "w", NOW).unwrap();
    s.put_version(
        "u",
        "k",
        version(String::new(), "old", Some(old.clone())),
        &Precondition::None,
    )
    .unwrap();
    let new = segment(3, 2, 10);
    s.begin_write(&new, "w", NOW).unwrap();
    // The writer stalls past its lease; the sweep takes it for dead.
    assert_eq!(s.sweep_interrupted_writes(NOW + 2 * LEASE).unwrap(), 1);
    let before = s.gc_pending(i64::MAX, 100).unwrap();
    assert_eq!(
        s.put_version(
            "u",
            "k",
            version(String::new(), "new", Some(new.clone())),
            &Precondition::None
        ),
        Err(MetaError::WriteAborted)
    );
    assert_eq!(s.get_version("u", "k", None).unwrap().etag, "old");
    assert_eq!(
        s.gc_pending(i64::MAX, 100).unwrap(),
        before,
        "no GC item added or removed: the old version was not replaced"
    );
    // The same holds for a part and for a segment swap.
    let up = upload(&s, "mp");
    s.create_upload("u", up.clone()).unwrap();
    let part_seg = segment(3, 3, 10);
    s.register_instance("w2", LEASE, NOW).unwrap();
    s.begin_write(&part_seg, "w2", NOW).unwrap();
    s.sweep_interrupted_writes(NOW + 2 * LEASE).unwrap();
    assert_eq!(
        s.put_part("u", "mp", &up.upload_id, part(1, "p", 10, part_seg)),
        Err(MetaError::WriteAborted)
    );
    assert!(
        s.list_parts("u", "mp", &up.upload_id, 0, 10)
            .unwrap()
            .parts
            .is_empty()
    );
    // After an abort the writer's discard finds no intent and queues nothing more.
    let n = s.gc_pending(i64::MAX, 100).unwrap().len();
    s.discard_write(vec![new], "rejected-write").unwrap();
    assert_eq!(s.gc_pending(i64::MAX, 100).unwrap().len(), n);
    assert!(s.verify().unwrap().problems.is_empty());
}

#[test]
fn discard_after_a_successful_commit_queues_nothing() {
    let (_d, s) = open();
    s.register_instance("w", LEASE, NOW).unwrap();
    let committed = segment(4, 1, 10);
    let failed = segment(4, 2, 10);
    s.begin_write(&committed, "w", NOW).unwrap();
    s.begin_write(&failed, "w", NOW).unwrap();
    let id = s.new_version_id();
    s.put_version(
        "b",
        "k",
        version(id, "e", Some(committed.clone())),
        &Precondition::None,
    )
    .unwrap();
    // The caller (wrongly) thinks both failed: only the uncommitted one is queued.
    s.discard_write(vec![committed.clone(), failed.clone()], "failed-write")
        .unwrap();
    let queued = s.gc_pending(i64::MAX, 10).unwrap();
    assert_eq!(blobs(&queued), vec![failed.blob]);
    assert_eq!(queued[0].reason, "failed-write");
    // A second discard queues nothing twice.
    s.discard_write(vec![failed], "failed-write").unwrap();
    assert_eq!(s.gc_pending(i64::MAX, 10).unwrap().len(), 1);
    assert_eq!(s.pending_writes().unwrap(), 0);
    assert!(s.verify().unwrap().problems.is_empty());
}

#[test]
fn the_sweep_is_bounded_per_call_and_resumes() {
    let (_d, s) = open();
    s.register_instance("live", LEASE, NOW).unwrap();
    s.register_instance("dead", LEASE, NOW - 2 * LEASE).unwrap();
    // More live intents than one call looks at, then dead ones after them in key order.
    let per_call = 40 * 256;
    let live = per_call as u64 + 100;
    // Many writers share each fsync (group commit): quick even with 10k synced commits.
    std::thread::scope(|sc| {
        for t in 0..16u64 {
            let s = &s;
            sc.spawn(move || {
                for i in (t..live).step_by(16) {
                    let mut seg = segment(5, i, 1);
                    seg.blob[0] = 0x10; // live ones sort first
                    s.begin_write(&seg, "live", NOW).unwrap();
                }
            });
        }
    });
    for i in 0..10 {
        let mut seg = segment(6, i, 1);
        seg.blob[0] = 0xF0;
        s.begin_write(&seg, "dead", NOW - 2 * LEASE).unwrap();
    }
    assert_eq!(
        s.sweep_interrupted_writes(NOW).unwrap(),
        0,
        "first call stops in the live ones"
    );
    assert_eq!(
        s.sweep_interrupted_writes(NOW).unwrap(),
        10,
        "the next resumes and finishes"
    );
    assert_eq!(s.sweep_interrupted_writes(NOW).unwrap(), 0);
    assert_eq!(s.pending_writes().unwrap(), per_call + 100);
}

#[test]
fn worker_state_round_trips() {
    let (d, s) = open();
    assert_eq!(s.get_worker_state("rebalance").unwrap(), None);
    s.put_worker_state("rebalance", b"cursor-1").unwrap();
    s.put_worker_state("rebalance", b"cursor-2").unwrap();
    drop(s);
    let s = open_store(&d.path().join("meta"));
    assert_eq!(
        s.get_worker_state("rebalance").unwrap().as_deref(),
        Some(&b"cursor-2"[..])
    );
}

#[test]
fn conditional_worker_state_has_one_winner_and_refuses_stale_writes() {
    let (_d, s) = open();
    // Racing creators of one name (two gateways starting the same job): exactly one wins.
    let wins: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    s.put_worker_state_if("job/x", None, format!("v{i}").as_bytes())
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
    });
    assert_eq!(wins, 1);
    let read = s.get_worker_state("job/x").unwrap().unwrap();
    // A write based on what was read applies; one based on a stale read changes nothing.
    assert!(
        s.put_worker_state_if("job/x", Some(&read), b"paused")
            .unwrap()
    );
    assert!(
        !s.put_worker_state_if("job/x", Some(&read), b"cancelled")
            .unwrap()
    );
    assert!(!s.put_worker_state_if("job/x", None, b"again").unwrap());
    assert_eq!(
        s.get_worker_state("job/x").unwrap().as_deref(),
        Some(&b"paused"[..])
    );
}
