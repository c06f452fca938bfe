use super::*;

fn entry(id: u8, wrapper: u8, kind: KeyKind) -> Entry {
    Entry {
        kind,
        id: [id; 16],
        wrapper: [wrapper; 16],
        created_ms: 1,
        changed_ms: 1,
        wrapped: vec![id ^ 0x5a; 61],
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn write_read_destroy_and_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(&dir.path().join("keys")).unwrap();
    let s = ks.reserve();
    let e = entry(1, 9, KeyKind::Dek);
    ks.write(s, &e).unwrap();
    assert_eq!(ks.get(s, &e.id).unwrap(), Some(e.clone()));
    assert_eq!(
        ks.get(s, &[2; 16]).unwrap(),
        None,
        "another id never resolves"
    );
    assert_eq!(ks.stats().unwrap().live_deks, 1);

    assert_eq!(ks.destroy(s, &e.id).unwrap(), Destroyed::Now);
    assert_eq!(ks.destroy(s, &e.id).unwrap(), Destroyed::AlreadyGone);
    assert_eq!(ks.get(s, &e.id).unwrap(), None);
    assert!(matches!(ks.read(s).unwrap(), Slot::Destroyed { .. }));
    // Not a byte of the wrapped key is left in the file.
    let raw = fs::read(dir.path().join("keys/slots")).unwrap();
    assert!(!contains(&raw, &e.wrapped[..16]));
    assert_eq!(ks.stats().unwrap().live_deks, 0);

    // The slot is reused; destroying the old id again leaves the new key alone.
    let s2 = ks.reserve();
    assert_eq!(s2, s);
    let e2 = entry(3, 9, KeyKind::Dek);
    ks.write(s2, &e2).unwrap();
    assert_eq!(ks.destroy(s, &e.id).unwrap(), Destroyed::AlreadyGone);
    assert_eq!(ks.get(s2, &e2.id).unwrap(), Some(e2));
}

#[test]
fn writes_need_a_reservation_and_released_slots_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    assert!(matches!(
        ks.write(5, &entry(1, 1, KeyKind::Kek)),
        Err(KeyStoreError::Invalid(_))
    ));
    let a = ks.reserve();
    let b = ks.reserve();
    assert_ne!(a, b);
    ks.release(a);
    assert_eq!(ks.reserve(), a);
}

#[test]
fn reopen_rebuilds_free_list_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u8> = (1..=10).collect();
    let mut slots = Vec::new();
    {
        let ks = LocalKeyStore::open(dir.path()).unwrap();
        for &i in &ids {
            let s = ks.reserve();
            ks.write(s, &entry(i, if i % 2 == 0 { 7 } else { 8 }, KeyKind::Dek))
                .unwrap();
            slots.push(s);
        }
        ks.destroy(slots[3], &[4; 16]).unwrap();
        // A reservation that was never written leaves nothing behind.
        let _ = ks.reserve();
    }
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    let st = ks.stats().unwrap();
    assert_eq!(st.live_deks, 9);
    assert_eq!(
        st.by_wrapper,
        vec![([7; 16], KeyKind::Dek, 4), ([8; 16], KeyKind::Dek, 5)]
    );
    assert_eq!(ks.reserve(), slots[3], "the destroyed slot is free again");
    for (i, &s) in slots.iter().enumerate() {
        let want = ids[i];
        if i == 3 {
            continue;
        }
        assert_eq!(ks.get(s, &[want; 16]).unwrap().unwrap().id, [want; 16]);
    }
    let (live, next) = ks.scan(0, 4).unwrap();
    assert_eq!(live.len(), 3);
    assert_eq!(next, Some(4));
}

#[test]
fn rewrap_changes_only_matching_keys_and_survives_an_unfinished_journal() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    let s1 = ks.reserve();
    let s2 = ks.reserve();
    ks.write(s1, &entry(1, 7, KeyKind::Kek)).unwrap();
    ks.write(s2, &entry(2, 8, KeyKind::Kek)).unwrap();
    let batch = vec![
        Rewrap {
            slot: s1,
            id: [1; 16],
            from: [7; 16],
            to: [9; 16],
            wrapped: vec![0xaa; 61],
        },
        // Wrong `from`: left alone.
        Rewrap {
            slot: s2,
            id: [2; 16],
            from: [7; 16],
            to: [9; 16],
            wrapped: vec![0xbb; 61],
        },
    ];
    assert_eq!(ks.rewrap(&batch).unwrap(), 1);
    let e1 = ks.get(s1, &[1; 16]).unwrap().unwrap();
    assert_eq!((e1.wrapper, e1.wrapped.clone()), ([9; 16], vec![0xaa; 61]));
    assert_eq!(ks.get(s2, &[2; 16]).unwrap().unwrap().wrapper, [8; 16]);
    assert_eq!(fs::metadata(dir.path().join("journal")).unwrap().len(), 0);
    // The old wrapped form is gone from the file.
    let raw = fs::read(dir.path().join("slots")).unwrap();
    assert!(!contains(&raw, &[1 ^ 0x5a; 61]));

    // A crash after the journal was written and before the slots were: reopening finishes it.
    let pending = Entry {
        wrapper: [10; 16],
        wrapped: vec![0xcc; 61],
        ..e1.clone()
    };
    ks.write_journal(&[(s1, slot::encode_live(&pending))])
        .unwrap();
    drop(ks);
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    assert_eq!(ks.get(s1, &[1; 16]).unwrap().unwrap().wrapper, [10; 16]);
    assert_eq!(fs::metadata(dir.path().join("journal")).unwrap().len(), 0);

    // A journal for a key destroyed meanwhile never revives it.
    ks.destroy(s1, &[1; 16]).unwrap();
    ks.write_journal(&[(s1, slot::encode_live(&pending))])
        .unwrap();
    drop(ks);
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    assert_eq!(ks.get(s1, &[1; 16]).unwrap(), None);

    // A torn journal is discarded.
    fs::write(dir.path().join("journal"), [1, 0, 0, 0, 9, 9]).unwrap();
    drop(ks);
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    assert_eq!(ks.get(s2, &[2; 16]).unwrap().unwrap().wrapper, [8; 16]);
}

#[test]
fn concurrent_writers_share_flushes_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let ks = ks.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..25u8 {
                    let s = ks.reserve();
                    let mut e = entry(i, t, KeyKind::Dek);
                    e.id[0] = t;
                    e.id[1] = i;
                    ks.write(s, &e).unwrap();
                    mine.push((s, e.id));
                }
                mine
            })
        })
        .collect();
    let all: Vec<(u64, [u8; 16])> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(all.len(), 200);
    let distinct: std::collections::HashSet<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(distinct.len(), 200);
    drop(ks);
    let ks = LocalKeyStore::open(dir.path()).unwrap();
    for (s, id) in all {
        assert!(ks.get(s, &id).unwrap().is_some());
    }
}

#[test]
fn copies_are_whole_and_install_into_a_new_dir() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(&dir.path().join("live")).unwrap();
    let s = ks.reserve();
    ks.write(s, &entry(4, 4, KeyKind::Kek)).unwrap();
    {
        let g = ks.pause_overwrites();
        g.copy_to(&dir.path().join("copy")).unwrap();
    }
    install_copy(&dir.path().join("copy"), &dir.path().join("restored")).unwrap();
    let r = LocalKeyStore::open(&dir.path().join("restored")).unwrap();
    assert!(r.get(s, &[4; 16]).unwrap().is_some());
    assert!(install_copy(&dir.path().join("copy"), &dir.path().join("restored")).is_err());
    let mode = fs::metadata(dir.path().join("restored/slots"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_corrupt_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(LocalKeyStore::open(dir.path()).unwrap());
    let p = dir.path().join("slots");
    let mut raw = fs::read(&p).unwrap();
    raw[9] ^= 1;
    fs::write(&p, raw).unwrap();
    assert!(matches!(
        LocalKeyStore::open(dir.path()),
        Err(KeyStoreError::Corrupt(_))
    ));
}

/// A replica's writes land in the slot the cluster chose (beyond the file's end too), a
/// destroyed slot is never written again, and a destruction of a slot the replica never saw
/// leaves a tombstone that refuses the late copy: a replica catching up cannot bring a
/// destroyed key back, whatever the order.
#[test]
fn replica_writes_never_resurrect_a_destroyed_key() {
    let dir = tempfile::tempdir().unwrap();
    let ks = LocalKeyStore::open(&dir.path().join("keys")).unwrap();
    let a = entry(1, 9, KeyKind::Dek);
    assert!(ks.store_at(70, &a).unwrap(), "beyond the end of the file");
    assert_eq!(ks.get(70, &a.id).unwrap(), Some(a.clone()));
    assert!(ks.store_at(70, &a).unwrap(), "the same key again (a copy)");
    assert!(matches!(
        ks.store_at(70, &entry(2, 9, KeyKind::Dek)),
        Err(KeyStoreError::Invalid(_))
    ));
    assert_eq!(ks.destroy_at(70, &a.id).unwrap(), Destroyed::Now);
    assert!(
        !ks.store_at(70, &a).unwrap(),
        "a destroyed slot stays destroyed"
    );
    assert!(matches!(ks.read(70).unwrap(), Slot::Destroyed { .. }));

    // Destroyed before the write arrived: the tombstone refuses it.
    let b = entry(3, 9, KeyKind::Dek);
    assert_eq!(ks.destroy_at(5, &b.id).unwrap(), Destroyed::AlreadyGone);
    assert!(!ks.store_at(5, &b).unwrap());
    assert!(ks.get(5, &b.id).unwrap().is_none());
    assert!(ks.store_at(10_000, &b).is_ok());
    assert!(matches!(
        ks.store_at(u64::MAX, &b),
        Err(KeyStoreError::Invalid(_))
    ));

    // Reopened: the same state from the file.
    drop(ks);
    let ks = LocalKeyStore::open(&dir.path().join("keys")).unwrap();
    assert!(matches!(ks.read(70).unwrap(), Slot::Destroyed { .. }));
    assert!(matches!(ks.read(5).unwrap(), Slot::Destroyed { .. }));
    assert_eq!(ks.get(10_000, &b.id).unwrap(), Some(b));
}
