//! Versioned placement layouts and the rebalance primitives (scan_versions, replace_segment).

mod common;

use common::*;
use strata_metadata::*;

const NOW: i64 = 1_700_000_000_000;

fn disks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("disk{i}")).collect()
}

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&dir.path().join("meta"));
    register(&s);
    s.set_gc_grace_ms(0);
    (dir, s)
}

#[test]
fn layouts_are_superseded_never_edited() {
    let (d, s) = open();
    assert_eq!(s.current_layout().unwrap(), None);
    let l1 = s
        .ensure_current_layout(&disks(6), 4, 2, 4 << 20, NOW)
        .unwrap();
    assert_eq!(l1.id, 1);
    assert_eq!(
        s.ensure_current_layout(&disks(6), 4, 2, 4 << 20, NOW + 1)
            .unwrap(),
        l1,
        "same geometry: the current layout"
    );
    // Restarting with another geometry makes a new current layout; the old one stays readable.
    let l2 = s
        .ensure_current_layout(&disks(8), 6, 2, 4 << 20, NOW + 2)
        .unwrap();
    assert_eq!(l2.id, 2);
    let l3 = s
        .ensure_current_layout(&disks(6), 4, 2, 4 << 20, NOW + 3)
        .unwrap();
    assert_eq!(l3.id, 3, "going back is a new layout too");
    assert_eq!(s.get_layout(1).unwrap(), Some(l1.clone()));
    assert_eq!(s.get_layout(9).unwrap(), None);
    assert_eq!(s.list_layouts().unwrap(), vec![l1, l2, l3.clone()]);
    drop(s);
    let s = open_store(&d.path().join("meta"));
    assert_eq!(s.current_layout().unwrap(), Some(l3));
    for bad in [
        s.ensure_current_layout(&disks(3), 4, 2, 1, NOW),
        s.ensure_current_layout(&["/abs/disk0".to_string()], 1, 0, 1, NOW),
        s.ensure_current_layout(&["d".into(), "d".into()], 1, 0, 1, NOW),
        s.ensure_current_layout(&disks(2), 0, 1, 1, NOW),
        s.ensure_current_layout(&disks(2), 1, 1, 0, NOW),
    ] {
        assert!(matches!(bad, Err(MetaError::Invalid(_))), "{bad:?}");
    }
}

#[test]
fn racing_processes_create_one_layout() {
    let (_d, s) = open();
    s.ensure_current_layout(&disks(6), 4, 2, 1 << 20, NOW)
        .unwrap();
    let ids: Vec<u32> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                sc.spawn(move || {
                    s.ensure_current_layout(&disks(9), 6, 3, 1 << 20, NOW)
                        .unwrap()
                        .id
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|&i| i == 2), "{ids:?}");
    assert_eq!(s.list_layouts().unwrap().len(), 2);
}

#[test]
fn scan_versions_walks_every_version_resumably() {
    let (_d, s) = open();
    s.create_bucket(bucket("a", VersioningState::Enabled))
        .unwrap();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let mut want = Vec::new();
    for key in ["x", "y/\u{0}z"] {
        let mut ids = Vec::new();
        for n in 0..3 {
            let id = s.new_version_id();
            put(
                &s,
                "a",
                key,
                version(id.clone(), &format!("{key}{n}"), None),
                &Precondition::None,
            )
            .unwrap();
            ids.push(id);
        }
        ids.reverse(); // newest first
        want.extend(
            ids.into_iter()
                .map(|id| ("a".to_string(), key.to_string(), id)),
        );
    }
    put(
        &s,
        "b",
        "k",
        version(String::new(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    want.push(("b".into(), "k".into(), "null".into()));
    let mut got = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    for _ in 0..10 {
        let (page, next) = s.scan_versions(cursor.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        got.extend(
            page.into_iter()
                .map(|r| (r.bucket, r.key, r.version.version_id)),
        );
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, want);
}

#[test]
fn replace_segment_swaps_one_segment_atomically() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let old = segment(9, 1, 100);
    let id = s.new_version_id();
    put(
        &s,
        "b",
        "k",
        version(id.clone(), "e", Some(old.clone())),
        &Precondition::None,
    )
    .unwrap();
    let mut new = segment(9, 2, 100);
    new.layout = 2;
    // Without an intent for the new blob (swept, or never begun) nothing changes.
    assert_eq!(
        s.replace_segment("b", "k", &id, &old.blob, new.clone(), NOW),
        Err(MetaError::WriteAborted)
    );
    s.begin_write(&new, INSTANCE, NOW).unwrap();
    // The wrong old blob, or a gone version: Stale.
    assert_eq!(
        s.replace_segment("b", "k", &id, &blob(9, 7), new.clone(), NOW),
        Err(MetaError::Stale)
    );
    assert_eq!(
        s.replace_segment("b", "k", &s.new_version_id(), &old.blob, new.clone(), NOW),
        Err(MetaError::Stale)
    );
    s.replace_segment("b", "k", &id, &old.blob, new.clone(), NOW)
        .unwrap();
    let v = s.get_version("b", "k", Some(&id)).unwrap();
    assert_eq!(v.data.segments, vec![new.clone()]);
    let gc = s.gc_pending(NOW, 10).unwrap();
    assert_eq!(gc.len(), 1);
    assert_eq!(
        (gc[0].segments[0].blob, gc[0].reason.as_str()),
        (old.blob, "rebalanced")
    );
    assert_eq!(s.pending_writes().unwrap(), 0);
    // A second swap from the same old blob is stale.
    assert_eq!(
        s.replace_segment("b", "k", &id, &old.blob, new, NOW),
        Err(MetaError::Stale)
    );
    assert!(s.verify().unwrap().problems.is_empty());
}
