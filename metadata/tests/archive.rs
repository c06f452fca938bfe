//! The metadata side of lifecycle and the archive tier, on a real RocksDB: conditional deletes
//! (an action decided for one version never hits another), transitions and the repack queue,
//! container extents, and the restore state machine with its queues.

mod common;

use common::*;
use strata_metadata::archive::{
    ArchiveCommit, ArchiveExtent, ContainerRecord, ExtentMove, RestoreRequestOutcome,
    WRITER_COMPACTION, WRITER_REPACK, is_archive_class, sealed_len,
};
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
    let c = s
        .open_container(WRITER_REPACK, &container(layout.id, 4096))
        .unwrap();
    // The chunk holding the extent is reserved before it is written.
    s.reserve_chunk(&c.id, 0, 1028).unwrap();
    let ext = packed(&c, 0, 1000);
    // A commit against other segments than the record's is refused (the copy is stale).
    assert_eq!(
        s.commit_archives(
            &[ArchiveCommit {
                vkey: q[0].vkey.clone(),
                segments: vec![segment(9, 9, 1000)],
                extent: ext.clone(),
            }],
            7
        )
        .unwrap(),
        vec![false]
    );
    let commit = ArchiveCommit {
        vkey: q[0].vkey.clone(),
        segments: vec![seg.clone()],
        extent: ext.clone(),
    };
    assert_eq!(
        s.commit_archives(std::slice::from_ref(&commit), 7).unwrap(),
        vec![true]
    );
    // The same commit again changes nothing (the version is no longer pending).
    assert_eq!(s.commit_archives(&[commit], 8).unwrap(), vec![false]);
    let a = s.get_version("b", "k", None).unwrap();
    assert!(a.data.segments.is_empty());
    assert_eq!(a.archive.as_ref().unwrap().extent.as_ref(), Some(&ext));
    assert!(s.pending_archives(None, 10).unwrap().is_empty());
    assert_eq!(
        s.gc_stats(i64::MAX).unwrap().queued,
        gc_before + 1,
        "standard chunks to GC"
    );
    assert_eq!(s.get_container(&c.id).unwrap().unwrap().extents, 1);
    let entries = s.container_extents(&c.id, None, 10).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].offset, entries[0].stored_len()),
        (Some(0), 1028)
    );
    assert!(s.extent_is_live(&c.id, &entries[0]).unwrap());
    s.delete_object("b", "k", None, "user", 0, false).unwrap();
    assert!(!s.extent_is_live(&c.id, &entries[0]).unwrap());
    // A direct PUT in an archive class is queued in its own commit.
    let mut g = version(String::new(), "g", Some(segment(3, 2, 10)));
    g.storage_class = "DEEP_ARCHIVE".into();
    put(&s, "b", "direct", g, &Precondition::None).unwrap();
    assert_eq!(s.pending_archives(None, 10).unwrap().len(), 1);
}

fn container(layout: u32, chunk_size: u32) -> ContainerRecord {
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    ContainerRecord::new(id, "", layout, chunk_size, "kek".into(), vec![7; 60], 0)
}

/// A packed extent of `len` plaintext bytes (one 4 KiB frame) at `offset` of `c`.
fn packed(c: &ContainerRecord, offset: u64, len: u64) -> ArchiveExtent {
    ArchiveExtent {
        container: c.id,
        first_chunk: 0,
        len,
        chunk_size: c.chunk_size,
        layout: c.layout,
        offset,
        sealed_len: sealed_len(len, 4096),
        frame_size: 4096,
    }
}

fn glacier(s: &MetaStore, key: &str, seg: Segment) -> Vec<u8> {
    let mut v = version(String::new(), key, Some(seg));
    v.storage_class = "GLACIER".into();
    put(s, "b", key, v, &Precondition::None).unwrap();
    let q = s.pending_archives(None, 100).unwrap();
    q.into_iter().find(|q| q.key == key).unwrap().vkey
}

#[test]
fn containers_pack_many_extents_and_commits_are_conditional() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let layout = s
        .ensure_archive_layout(&["d0".into(), "d1".into(), "d2".into()], 2, 1, 4096, 0)
        .unwrap();
    // A writer resumes its open container; each writer has its own.
    let c = s
        .open_container(WRITER_REPACK, &container(layout.id, 4096))
        .unwrap();
    assert_eq!(c.writer, WRITER_REPACK);
    let again = s
        .open_container(WRITER_REPACK, &container(layout.id, 4096))
        .unwrap();
    assert_eq!(again.id, c.id);
    let cc = s
        .open_container(WRITER_COMPACTION, &container(layout.id, 4096))
        .unwrap();
    assert_ne!(cc.id, c.id);
    // Chunks are reserved in order, once.
    s.reserve_chunk(&c.id, 0, 4096).unwrap();
    assert!(matches!(
        s.reserve_chunk(&c.id, 0, 4096),
        Err(MetaError::Stale)
    ));
    assert!(matches!(
        s.reserve_chunk(&c.id, 2, 10),
        Err(MetaError::Stale)
    ));
    let rec = s.reserve_chunk(&c.id, 1, 100).unwrap();
    assert_eq!((rec.next_chunk, rec.bytes), (2, 4196));
    // Three small versions share chunk 0; a fourth changed meanwhile: one batch commits the
    // three and leaves the fourth (its extent dead).
    let keys = ["a", "b2", "c", "d"];
    let mut items = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let seg = segment(7, i as u64, 1000);
        let vkey = glacier(&s, k, seg.clone());
        items.push(ArchiveCommit {
            vkey,
            segments: vec![seg],
            extent: packed(&c, i as u64 * 1028, 1000),
        });
    }
    let mut v = version(String::new(), "d2", Some(segment(7, 9, 5)));
    v.storage_class = "GLACIER".into();
    put(&s, "b", "d", v, &Precondition::None).unwrap();
    assert_eq!(
        s.commit_archives(&items, 1).unwrap(),
        vec![true, true, true, false]
    );
    let rec = s.get_container(&c.id).unwrap().unwrap();
    assert_eq!(rec.extents, 3);
    let entries = s.container_extents(&c.id, None, 2).unwrap();
    assert_eq!(entries.len(), 2);
    let rest = s.container_extents(&c.id, entries.last(), 10).unwrap();
    assert_eq!(rest.len(), 1, "paged by offset");
    assert_eq!(rest[0].offset, Some(2056));
    // Sealing clears the writer's pointer: the next open makes a new container.
    s.seal_container(&c.id).unwrap();
    assert!(matches!(
        s.reserve_chunk(&c.id, 2, 10),
        Err(MetaError::Stale)
    ));
    let next = s
        .open_container(WRITER_REPACK, &container(layout.id, 4096))
        .unwrap();
    assert_ne!(next.id, c.id);
    // Compaction: the live extents move; a move of a version that moved on is refused.
    let entry = entries[0].clone();
    let old = items[0].extent.clone();
    let new = packed(&cc, 0, 1000);
    let moves = [
        ExtentMove {
            entry: entry.clone(),
            old: old.clone(),
            new: new.clone(),
        },
        ExtentMove {
            entry: entry.clone(),
            old: old.clone(),
            new: packed(&cc, 5000, 1000),
        },
    ];
    assert_eq!(s.replace_extents(&moves).unwrap(), vec![true, false]);
    assert!(!s.extent_is_live(&c.id, &entry).unwrap());
    let moved = s.container_extents(&cc.id, None, 10).unwrap();
    assert_eq!(moved.len(), 1);
    assert!(s.extent_is_live(&cc.id, &moved[0]).unwrap());
    // A retiring container takes no commits (a copy placed in it is dead, its version is
    // repacked again).
    s.set_container_audit(&cc.id, 0, true, 2).unwrap();
    let seg = segment(8, 1, 10);
    let vkey = glacier(&s, "late", seg.clone());
    let late = ArchiveCommit {
        vkey,
        segments: vec![seg],
        extent: packed(&cc, 9000, 10),
    };
    assert_eq!(s.commit_archives(&[late], 3).unwrap(), vec![false]);
    let waiting: Vec<String> = s
        .pending_archives(None, 10)
        .unwrap()
        .into_iter()
        .filter(|q| q.version.is_some())
        .map(|q| q.key)
        .collect();
    assert_eq!(
        waiting,
        ["d", "late"],
        "the new d and late wait for repacking"
    );
    // Retirement frees every reserved chunk and the index.
    let gc = s.gc_stats(i64::MAX).unwrap().queued;
    assert_eq!(s.retire_container(&c.id, 4).unwrap(), 4196);
    assert!(s.get_container(&c.id).unwrap().is_none());
    assert!(s.container_extents(&c.id, None, 10).unwrap().is_empty());
    assert_eq!(s.gc_stats(i64::MAX).unwrap().queued, gc + 1);
}

#[test]
fn format1_extent_records_still_decode() {
    // An extent as the first archive format wrote it (no offset, sealed length, frame size).
    #[derive(serde::Serialize)]
    struct Format1 {
        #[serde(with = "serde_bytes")]
        container: BlobId,
        first_chunk: u32,
        len: u64,
        chunk_size: u32,
        layout: u32,
    }
    let raw = rmp_serde::to_vec_named(&Format1 {
        container: [3; 16],
        first_chunk: 5,
        len: 70_000,
        chunk_size: 65_536,
        layout: 2,
    })
    .unwrap();
    let e: ArchiveExtent = rmp_serde::from_slice(&raw).unwrap();
    assert!(!e.is_packed());
    assert_eq!(
        (e.first_chunk, e.chunk_count(), e.stored_len()),
        (5, 2, 70_000)
    );
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
