//! Key-store references in the metadata tier: every key is referenced by exactly one of a
//! record, an intent or a GC item; a removed version's GC item carries its destruction record;
//! closing buckets are read-only except for their own destruction. Real RocksDB.

mod common;

use common::*;
use strata_metadata::*;

fn dek(slot: u64, id: u8) -> KeyRef {
    KeyRef {
        class: KeyClass::Dek,
        slot,
        id: hex::encode([id; 16]),
    }
}

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(&dir.path().join("meta"));
    s.set_gc_grace_ms(0);
    register(&s);
    (dir, s)
}

fn keyed_version(id: String, seg: Segment, slot: u64, key: u8) -> VersionRecord {
    let mut v = version(id, "e", Some(seg));
    v.data.dek_slot = Some(slot);
    v.data.dek_id = hex::encode([key; 16]);
    v
}

fn put_keyed(s: &MetaStore, b: &str, k: &str, v: VersionRecord) -> PutOutcome {
    for seg in &v.data.segments {
        s.begin_write_with_key(seg, v.data.dek_ref().as_ref(), INSTANCE, 1)
            .unwrap();
    }
    s.put_version(b, k, v, &Precondition::None).unwrap()
}

#[test]
fn removed_versions_carry_their_key_and_record_overwrites_only_their_key() {
    let (_d, s) = open();
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    put_keyed(
        &s,
        "u",
        "k",
        keyed_version("null".into(), segment(1, 1, 10), 1, 1),
    );
    put_keyed(
        &s,
        "u",
        "k",
        keyed_version("null".into(), segment(1, 2, 10), 2, 2),
    );
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].keys, vec![dek(1, 1)]);
    assert_eq!(
        items[0].destroyed, None,
        "an overwrite keeps the version (null)"
    );
    s.gc_ack(&[items[0].seq]).unwrap();

    let actor = DeleteActor {
        user: Some(ALICE.into()),
        access_key: Some("AK".into()),
        engine: None,
    };
    let reason = DeleteReason::UserRequest {
        request_id: Some("r1".into()),
    };
    s.delete_object_for("u", "k", None, ALICE, 5, false, &reason, &actor, None, None)
        .unwrap();
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    assert_eq!(items[0].keys, vec![dek(2, 2)]);
    let d = items[0]
        .destroyed
        .clone()
        .expect("a destruction record to write");
    assert_eq!(
        (d.bucket.as_str(), d.key.as_str(), d.version_id.as_str()),
        ("u", "k", "null")
    );
    assert_eq!((d.reason, d.actor, d.removed_ms), (reason, actor, 5));
    assert_eq!(d.op_id.len(), 32);
}

#[test]
fn key_only_intents_are_consumed_by_their_record_or_swept_into_gc() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let mut u = upload(&s, "k");
    u.dek_slot = Some(7);
    u.dek_id = hex::encode([7u8; 16]);
    // No intent: refused (a key nobody covers must never be referenced).
    assert_eq!(
        s.create_upload("b", u.clone()),
        Err(MetaError::WriteAborted)
    );
    s.begin_key(&dek(7, 7), INSTANCE, 1).unwrap();
    s.create_upload("b", u.clone()).unwrap();
    assert_eq!(s.pending_writes().unwrap(), 0);
    s.abort_upload("b", "k", &u.upload_id).unwrap();
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    assert_eq!(
        items[0].keys,
        vec![dek(7, 7)],
        "the upload's key goes with it"
    );

    // A writer that dies after writing a key: the sweep queues the key.
    s.register_instance("dead", 1, 0).unwrap();
    s.begin_key(&dek(9, 9), "dead", 0).unwrap();
    s.sweep_interrupted_writes(10).unwrap();
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.keys == vec![dek(9, 9)] && i.segments.is_empty())
    );
    // And one whose record is refused discards it.
    s.begin_key(&dek(11, 11), INSTANCE, 1).unwrap();
    s.discard_key(&dek(11, 11), "test").unwrap();
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    assert!(items.iter().any(|i| i.keys == vec![dek(11, 11)]));
    assert_eq!(s.pending_writes().unwrap(), 0);
    let refs = s.referenced_keys().unwrap();
    for k in [7, 9, 11] {
        assert!(refs.contains(&(k, hex::encode([k as u8; 16]))));
    }
}

#[test]
fn closing_buckets_are_read_only_but_for_their_destruction() {
    let (_d, s) = open();
    let mut b = bucket("c", VersioningState::Enabled);
    b.kek_slot = Some(3);
    b.kek_id = hex::encode([3u8; 16]);
    s.begin_key(
        &KeyRef {
            class: KeyClass::Kek,
            slot: 3,
            id: b.kek_id.clone(),
        },
        INSTANCE,
        1,
    )
    .unwrap();
    s.create_bucket(b).unwrap();
    let v = keyed_version(s.new_version_id(), segment(2, 1, 10), 4, 4);
    let vid = v.version_id.clone();
    put_keyed(&s, "c", "k", v);
    let closing = BucketClosing {
        reason: DeleteReason::BucketPurge,
        requested_ms: 1,
        destroy_after_ms: 1,
        by: ALICE.into(),
    };
    s.set_bucket_closing("c", Some(closing)).unwrap();
    let late = keyed_version(s.new_version_id(), segment(2, 2, 10), 5, 5);
    s.begin_write(&late.data.segments[0], INSTANCE, 1).unwrap();
    assert_eq!(
        s.put_version("c", "k2", late, &Precondition::None),
        Err(MetaError::BucketClosing)
    );
    assert_eq!(
        s.delete_object("c", "k", Some(&vid), ALICE, 2, true),
        Err(MetaError::BucketClosing)
    );
    assert_eq!(s.delete_bucket("c"), Err(MetaError::BucketClosing));
    let purge = DeleteReason::BucketPurge;
    s.delete_object_for(
        "c",
        "k",
        Some(&vid),
        ALICE,
        2,
        false,
        &purge,
        &DeleteActor::default(),
        None,
        None,
    )
    .unwrap();
    s.delete_purged_bucket("c").unwrap();
    let items = s.gc_pending(i64::MAX, 10).unwrap();
    let kek_item = items
        .iter()
        .find(|i| i.keys.iter().any(|k| k.class == KeyClass::Kek))
        .expect("the bucket's KEK is queued with its removal");
    assert_eq!(kek_item.keys[0].slot, 3);
    assert!(
        items
            .iter()
            .any(|i| i.destroyed.as_ref().is_some_and(|d| d.reason == purge))
    );
}
