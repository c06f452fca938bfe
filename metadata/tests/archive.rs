//! The metadata side of lifecycle and the archive tier, on a real RocksDB: conditional deletes
//! (an action decided for one version never hits another), transitions and the repack queue,
//! container extents, and the restore state machine with its queues.

mod common;

use common::*;
use strata_metadata::archive::{RestoreRequestOutcome, is_archive_class};
use strata_metadata::*;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("meta"));
    register(&store);
    (dir, store)
}

#[test]
fn conditional_delete_never_hits_a_version_it_was_not_decided_for() {
    let (_d, s) = open();
    // Unversioned: decided for v1, the key was overwritten meanwhile.
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    put(
        &s,
        "u",
        "k",
        version(String::new(), "e1", Some(segment(1, 1, 10))),
        &Precondition::None,
    )
    .unwrap();
    let v1 = s.get_version("u", "k", None).unwrap();
    put(
        &s,
        "u",
        "k",
        version(String::new(), "e2", Some(segment(1, 2, 10))),
        &Precondition::None,
    )
    .unwrap();
    let expect = VersionExpect::of(&v1, Some(true));
    let r = s.delete_object_if(
        "u",
        "k",
        Some(NULL_VERSION),
        "lifecycle",
        0,
        false,
        Some(&expect),
    );
    assert!(matches!(r, Err(MetaError::Stale)), "{r:?}");
    assert_eq!(s.get_version("u", "k", None).unwrap().etag, "e2");
    // Still the same record: it goes.
    let v2 = s.get_version("u", "k", None).unwrap();
    let out = s
        .delete_object_if(
            "u",
            "k",
            Some(NULL_VERSION),
            "lifecycle",
            0,
            false,
            Some(&VersionExpect::of(&v2, Some(true))),
        )
        .unwrap();
    assert_eq!(out.removed.unwrap().etag, "e2");

    // Versioned: a noncurrent version that became current again is not expired as noncurrent.
    s.create_bucket(bucket("v", VersioningState::Enabled))
        .unwrap();
    let id1 = s.new_version_id();
    put(
        &s,
        "v",
        "k",
        version(id1.clone(), "e1", Some(segment(2, 1, 10))),
        &Precondition::None,
    )
    .unwrap();
    let id2 = s.new_version_id();
    put(
        &s,
        "v",
        "k",
        version(id2.clone(), "e2", Some(segment(2, 2, 10))),
        &Precondition::None,
    )
    .unwrap();
    let old = s.get_version("v", "k", Some(&id1)).unwrap();
    let noncurrent = VersionExpect::of(&old, Some(false));
    s.delete_object("v", "k", Some(&id2), "user", 0, false)
        .unwrap(); // id1 is current again
    let r = s.delete_object_if(
        "v",
        "k",
        Some(&id1),
        "lifecycle",
        0,
        false,
        Some(&noncurrent),
    );
    assert!(matches!(r, Err(MetaError::Stale)), "{r:?}");
    assert_eq!(s.get_version("v", "k", None).unwrap().version_id, id1);
    // Current-version expiration (a delete marker) only while it is still the latest.
    let cur = VersionExpect::of(&old, Some(true));
    put(
        &s,
        "v",
        "k",
        version(s.new_version_id(), "e3", Some(segment(2, 3, 10))),
        &Precondition::None,
    )
    .unwrap();
    assert!(matches!(
        s.delete_object_if("v", "k", None, "lifecycle", 0, false, Some(&cur)),
        Err(MetaError::Stale)
    ));
    let latest = s.get_version("v", "k", None).unwrap();
    assert!(!latest.is_delete_marker && latest.etag == "e3");
}

#[test]
fn transition_queues_repack_and_commit_releases_standard_chunks() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let seg = segment(3, 1, 1000);
    put(
        &s,
        "b",
        "k",
        version(String::new(), "e", Some(seg.clone())),
        &Precondition::None,
    )
    .unwrap();
    let v = s.get_version("b", "k", None).unwrap();
    let gc_before = s.gc_stats(i64::MAX).unwrap().queued;
    let t = s
        .transition_version("b", "k", &VersionExpect::of(&v, Some(true)), "GLACIER", 5)
        .unwrap();
    assert!(is_archive_class(&t.storage_class) && t.needs_restore());
    // Same decision again: the record changed, nothing happens twice.
    assert!(matches!(
        s.transition_version("b", "k", &VersionExpect::of(&v, Some(true)), "GLACIER", 6),
        Ok(_) | Err(MetaError::Stale)
    ));
    let q = s.pending_archives(None, 10).unwrap();
    assert_eq!(q.len(), 1);
    let layout = s
        .ensure_archive_layout(&["d0".into(), "d1".into(), "d2".into()], 2, 1, 4096, 0)
        .unwrap();
    let c = s.open_container(layout.id, 4096, 0).unwrap();
    let ext = s
        .reserve_extent(&c.id, "b", "k", NULL_VERSION, 1000, 10_000)
        .unwrap();
    assert_eq!((ext.first_chunk, ext.chunk_count()), (0, 1));
    // A commit against other segments than the record's is refused (the copy is stale).
    assert!(matches!(
        s.commit_archive(&q[0].vkey, &[segment(9, 9, 1000)], ext.clone(), 7),
        Err(MetaError::Stale)
    ));
    s.commit_archive(&q[0].vkey, std::slice::from_ref(&seg), ext.clone(), 7)
        .unwrap();
    let a = s.get_version("b", "k", None).unwrap();
    assert!(a.data.segments.is_empty());
    assert_eq!(a.archive.as_ref().unwrap().extent.as_ref(), Some(&ext));
    assert!(s.pending_archives(None, 10).unwrap().is_empty());
    assert_eq!(
        s.gc_stats(i64::MAX).unwrap().queued,
        gc_before + 1,
        "standard chunks to GC"
    );
    let entries = s.container_extents(&c.id, None, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert!(s.extent_is_live(&c.id, &entries[0]).unwrap());
    s.delete_object("b", "k", None, "user", 0, false).unwrap();
    assert!(!s.extent_is_live(&c.id, &entries[0]).unwrap());
    // A direct PUT in an archive class is queued in its own commit.
    let mut g = version(String::new(), "g", Some(segment(3, 2, 10)));
    g.storage_class = "DEEP_ARCHIVE".into();
    put(&s, "b", "direct", g, &Precondition::None).unwrap();
    assert_eq!(s.pending_archives(None, 10).unwrap().len(), 1);
}

#[test]
fn restore_state_machine() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let mut v = version(String::new(), "e", Some(segment(4, 1, 100)));
    v.storage_class = "GLACIER".into();
    put(&s, "b", "k", v, &Precondition::None).unwrap();
    let r = |now| {
        s.request_restore("b", "k", None, 2, "Standard", now + 10, now + 100, now)
            .unwrap()
    };
    assert_eq!(r(0), RestoreRequestOutcome::Started);
    assert_eq!(r(1), RestoreRequestOutcome::InProgress);
    let q = s.pending_restores(None, 10).unwrap();
    assert_eq!(q.len(), 1);
    let copy = segment(4, 2, 100);
    s.begin_write(&copy, INSTANCE, 1).unwrap();
    s.complete_restore(&q[0].vkey, copy.clone(), 500).unwrap();
    assert!(s.pending_restores(None, 10).unwrap().is_empty());
    let got = s.get_version("b", "k", None).unwrap();
    assert!(!got.needs_restore());
    assert_eq!(r(2), RestoreRequestOutcome::Extended(102));
    // not expired yet
    assert!(!s.expire_restore(&q[0].vkey, 50).unwrap());
    let gc = s.gc_stats(i64::MAX).unwrap().queued;
    assert!(s.expire_restore(&q[0].vkey, 103).unwrap());
    let got = s.get_version("b", "k", None).unwrap();
    assert!(got.needs_restore() && got.archive.unwrap().restore.is_none());
    assert_eq!(
        s.gc_stats(i64::MAX).unwrap().queued,
        gc + 1,
        "the copy's chunks to GC"
    );
    // A STANDARD object is not restorable.
    put(
        &s,
        "b",
        "std",
        version(String::new(), "s", Some(segment(4, 3, 10))),
        &Precondition::None,
    )
    .unwrap();
    assert!(
        s.request_restore("b", "std", None, 1, "Standard", 0, 0, 0)
            .is_err()
    );
}
