//! S3 semantics of the metadata store on a real RocksDB in a temp directory, or on a real etcd
//! with `STRATA_TEST_META=etcd` (see `common::open_store`).

mod common;

use common::*;
use strata_metadata::*;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("meta"));
    register(&store);
    (dir, store)
}

const NOW: i64 = 1_700_000_000_000;

#[test]
fn buckets_create_list_update_delete() {
    let (_d, s) = open();
    s.create_bucket(bucket("b2", VersioningState::Unversioned))
        .unwrap();
    s.create_bucket(bucket("b1", VersioningState::Unversioned))
        .unwrap();
    assert_eq!(
        s.create_bucket(bucket("b1", VersioningState::Enabled)),
        Err(MetaError::BucketAlreadyExists)
    );
    let names: Vec<_> = s
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["b1", "b2"]);
    let updated = s
        .update_bucket("b1", |b| {
            b.versioning = VersioningState::Enabled;
            Ok(())
        })
        .unwrap();
    assert_eq!(updated.versioning, VersioningState::Enabled);
    assert_eq!(
        s.get_bucket("b1").unwrap().unwrap().versioning,
        VersioningState::Enabled
    );
    assert_eq!(
        s.update_bucket("nope", |_| Ok(())),
        Err(MetaError::NoSuchBucket)
    );

    put(
        &s,
        "b1",
        "k",
        version(s.new_version_id(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::BucketNotEmpty));
    // A delete marker alone still keeps the bucket non-empty.
    let v = s.get_version("b1", "k", None).unwrap();
    s.delete_object("b1", "k", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::BucketNotEmpty));
    s.delete_object("b1", "k", Some(&v.version_id), "alice", NOW, false)
        .unwrap();
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::BucketNotEmpty));
    let marker = s.get_version("b1", "k", None).unwrap();
    assert!(marker.is_delete_marker);
    s.delete_object("b1", "k", Some(&marker.version_id), "alice", NOW, false)
        .unwrap();
    // Open multipart uploads do not keep it alive (as S3): they are aborted, parts to GC.
    let up = upload(&s, "mp");
    s.create_upload("b1", up.clone()).unwrap();
    put_part(
        &s,
        "b1",
        "mp",
        &up.upload_id,
        part(1, "p", 3, segment(9, 1, 3)),
    )
    .unwrap();
    for i in 0..70 {
        s.create_upload("b1", upload(&s, &format!("more{i}")))
            .unwrap();
    }
    s.delete_bucket("b1").unwrap();
    assert!(gc_blobs(&s).contains(&blob(9, 1)));
    assert_eq!(
        s.get_upload("b1", "mp", &up.upload_id),
        Err(MetaError::NoSuchBucket)
    );
    assert_eq!(s.get_bucket("b1").unwrap(), None);
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::NoSuchBucket));
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn unversioned_overwrite_replaces_null_and_queues_gc() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let out = put(
        &s,
        "b",
        "k",
        version("ignored".into(), "e1", Some(segment(1, 1, 10))),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(out.version_id, NULL_VERSION);
    assert_eq!(out.replaced, None);
    assert!(gc_blobs(&s).is_empty());
    let out = put(
        &s,
        "b",
        "k",
        version("x".into(), "e2", Some(segment(1, 2, 20))),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(out.replaced.unwrap().etag, "e1");
    assert_eq!(gc_blobs(&s), vec![blob(1, 1)]);
    let latest = s.get_version("b", "k", None).unwrap();
    assert_eq!(
        (latest.etag.as_str(), latest.version_id.as_str()),
        ("e2", "null")
    );
    assert_eq!(s.get_version("b", "k", Some("null")).unwrap().etag, "e2");
    let page = s
        .list_versions(
            "b",
            &ListVersionsParams {
                max_keys: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.entries.len(), 1, "only one null version exists");

    // Unversioned delete removes the null version and queues its data; absent key is Ok.
    let del = s
        .delete_object("b", "k", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(del.removed.unwrap().etag, "e2");
    assert!(!del.delete_marker);
    // (Queue order is due order: this delete happened at NOW, before the overwrite's clock.)
    let mut queued = gc_blobs(&s);
    queued.sort();
    assert_eq!(queued, vec![blob(1, 1), blob(1, 2)]);
    assert_eq!(s.get_version("b", "k", None), Err(MetaError::NoSuchKey));
    let del = s
        .delete_object("b", "k", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(del.removed, None);
    assert_eq!(
        s.get_version("nob", "k", None),
        Err(MetaError::NoSuchBucket)
    );
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn enabled_versions_delete_markers_and_explicit_deletes() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let v1 = s.new_version_id();
    let v2 = s.new_version_id();
    assert!(v1.len() <= 32 && v2 > v1);
    assert!(
        v1.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'~' || c == b'_')
    );
    assert!(
        !v1.starts_with('-'),
        "CLIs would read a leading '-' as an option"
    );
    put(
        &s,
        "b",
        "k",
        version(v1.clone(), "e1", Some(segment(2, 1, 1))),
        &Precondition::None,
    )
    .unwrap();
    let out = put(
        &s,
        "b",
        "k",
        version(v2.clone(), "e2", Some(segment(2, 2, 1))),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(out.version_id, v2);
    assert_eq!(out.replaced, None);
    assert!(
        gc_blobs(&s).is_empty(),
        "versioned overwrite keeps the old data"
    );
    assert_eq!(s.get_version("b", "k", None).unwrap().etag, "e2");
    assert_eq!(s.get_version("b", "k", Some(&v1)).unwrap().etag, "e1");
    assert_eq!(
        s.get_version("b", "k", Some(&s.new_version_id())),
        Err(MetaError::NoSuchVersion)
    );
    assert_eq!(
        s.get_version("b", "k", Some("garbage")),
        Err(MetaError::NoSuchVersion)
    );
    assert_eq!(
        s.get_version("b", "other", Some(&v1)),
        Err(MetaError::NoSuchKey)
    );

    let del = s.delete_object("b", "k", None, "bob", NOW, false).unwrap();
    assert!(del.delete_marker);
    let marker_id = del.version_id.unwrap();
    let latest = s.get_version("b", "k", None).unwrap();
    assert!(latest.is_delete_marker && latest.version_id == marker_id && latest.owner == "bob");
    assert_eq!(
        s.set_tags("b", "k", None, vec![]),
        Err(MetaError::NoSuchKey),
        "a latest delete marker has no tags"
    );
    let listed = s
        .list_objects(
            "b",
            &ListObjectsParams {
                max_keys: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        listed.objects.is_empty(),
        "a key whose latest is a marker is hidden"
    );
    let vers = s
        .list_versions(
            "b",
            &ListVersionsParams {
                max_keys: 10,
                ..Default::default()
            },
        )
        .unwrap();
    let ids: Vec<_> = vers
        .entries
        .iter()
        .map(|e| (e.version.version_id.clone(), e.is_latest))
        .collect();
    assert_eq!(
        ids,
        vec![
            (marker_id.clone(), true),
            (v2.clone(), false),
            (v1.clone(), false)
        ]
    );

    // Removing the marker by id makes v2 current again.
    let del = s
        .delete_object("b", "k", Some(&marker_id), "bob", NOW, false)
        .unwrap();
    assert!(del.delete_marker && del.removed.is_some());
    assert_eq!(s.get_version("b", "k", None).unwrap().etag, "e2");
    // Explicit delete of a real version queues its data.
    let del = s
        .delete_object("b", "k", Some(&v2), "bob", NOW, false)
        .unwrap();
    assert_eq!(del.removed.unwrap().etag, "e2");
    assert_eq!(gc_blobs(&s), vec![blob(2, 2)]);
    // Unknown id: Ok, nothing removed.
    let del = s
        .delete_object("b", "k", Some(&v2), "bob", NOW, false)
        .unwrap();
    assert_eq!(del.removed, None);
    s.delete_object("b", "k", Some(&v1), "bob", NOW, false)
        .unwrap();
    assert_eq!(s.get_version("b", "k", None), Err(MetaError::NoSuchKey));
    s.delete_bucket("b").unwrap();
}

#[test]
fn suspended_bucket_null_version_semantics() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let v1 = s.new_version_id();
    put(
        &s,
        "b",
        "k",
        version(v1.clone(), "e1", Some(segment(3, 1, 1))),
        &Precondition::None,
    )
    .unwrap();
    s.update_bucket("b", |b| {
        b.versioning = VersioningState::Suspended;
        Ok(())
    })
    .unwrap();
    let out = put(
        &s,
        "b",
        "k",
        version(s.new_version_id(), "n1", Some(segment(3, 2, 1))),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(out.version_id, "null");
    put(
        &s,
        "b",
        "k",
        version(s.new_version_id(), "n2", Some(segment(3, 3, 1))),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(
        gc_blobs(&s),
        vec![blob(3, 2)],
        "the replaced null version's data only"
    );
    let ids: Vec<_> = s
        .list_versions(
            "b",
            &ListVersionsParams {
                max_keys: 10,
                ..Default::default()
            },
        )
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.version.version_id)
        .collect();
    assert_eq!(
        ids,
        vec!["null".to_string(), v1.clone()],
        "null is newest, v1 kept"
    );

    // Delete without id: null version removed, a null delete marker added.
    let del = s
        .delete_object("b", "k", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(del.version_id.as_deref(), Some("null"));
    assert!(del.delete_marker);
    assert_eq!(del.removed.unwrap().etag, "n2");
    let latest = s.get_version("b", "k", None).unwrap();
    assert!(latest.is_delete_marker && latest.version_id == "null");
    assert_eq!(s.get_version("b", "k", Some(&v1)).unwrap().etag, "e1");
    // Putting again replaces the null marker.
    put(
        &s,
        "b",
        "k",
        version(String::new(), "n3", None),
        &Precondition::None,
    )
    .unwrap();
    let ids: Vec<_> = s
        .list_versions(
            "b",
            &ListVersionsParams {
                max_keys: 10,
                ..Default::default()
            },
        )
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.version.version_id, e.version.etag))
        .collect();
    assert_eq!(ids, vec![("null".into(), "n3".into()), (v1, "e1".into())]);
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn preconditions_are_checked() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let put = |etag: &str, p: Precondition| {
        put(&s, "b", "k", version(s.new_version_id(), etag, None), &p)
    };
    assert_eq!(
        put("x", Precondition::IfMatch("e1".into())),
        Err(MetaError::PreconditionFailed)
    );
    put("e1", Precondition::IfNoneMatchStar).unwrap();
    assert_eq!(
        put("e2", Precondition::IfNoneMatchStar),
        Err(MetaError::PreconditionFailed)
    );
    assert_eq!(
        put("e2", Precondition::IfMatch("zzz".into())),
        Err(MetaError::PreconditionFailed)
    );
    put("e2", Precondition::IfMatch("\"e1\"".into())).unwrap();
    assert_eq!(s.get_version("b", "k", None).unwrap().etag, "e2");
    // After a delete marker the object does not exist for If-None-Match.
    s.delete_object("b", "k", None, "alice", NOW, false)
        .unwrap();
    assert_eq!(
        put("e3", Precondition::IfMatch("e2".into())),
        Err(MetaError::PreconditionFailed)
    );
    put("e3", Precondition::IfNoneMatchStar).unwrap();
}

#[test]
fn concurrent_if_none_match_has_exactly_one_winner() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let winners: usize = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                sc.spawn(move || {
                    put(
                        &s,
                        "b",
                        "k",
                        version(s.new_version_id(), &format!("e{i}"), None),
                        &Precondition::IfNoneMatchStar,
                    )
                    .is_ok() as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
    let page = s
        .list_versions(
            "b",
            &ListVersionsParams {
                max_keys: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.entries.len(), 1);
}

fn locked_bucket(name: &str) -> BucketRecord {
    let mut b = bucket(name, VersioningState::Enabled);
    b.object_lock_enabled = true;
    b
}

fn gov(until: i64) -> Option<Retention> {
    Some(Retention {
        mode: LockMode::Governance,
        retain_until: until,
    })
}

#[test]
fn object_lock_blocks_delete_and_replace() {
    let (_d, s) = open();
    s.create_bucket(locked_bucket("b")).unwrap();
    let id = s.new_version_id();
    let mut v = version(id.clone(), "e", Some(segment(4, 1, 1)));
    v.retention = gov(NOW + 1000);
    put(&s, "b", "k", v, &Precondition::None).unwrap();
    assert_eq!(
        s.delete_object("b", "k", Some(&id), ALICE, NOW, false),
        Err(MetaError::ObjectLocked)
    );
    // A delete marker does not touch the locked version.
    s.delete_object("b", "k", None, ALICE, NOW, false).unwrap();
    s.set_legal_hold("b", "k", Some(&id), true).unwrap();
    assert_eq!(
        s.delete_object("b", "k", Some(&id), ALICE, NOW, true),
        Err(MetaError::ObjectLocked),
        "legal hold cannot be bypassed"
    );
    let v = s.set_legal_hold("b", "k", Some(&id), false).unwrap();
    assert!(!v.legal_hold && v.retention == gov(NOW + 1000));
    // Governance bypass works.
    assert!(
        s.delete_object("b", "k", Some(&id), ALICE, NOW, true)
            .unwrap()
            .removed
            .is_some()
    );
    assert!(gc_blobs(&s).contains(&blob(4, 1)));

    // Compliance: reached from governance only with the bypass (as S3), then only extended.
    let id2 = s.new_version_id();
    let mut v = version(id2.clone(), "e", None);
    v.retention = gov(NOW + 1000);
    put(&s, "b", "k2", v, &Precondition::None).unwrap();
    let compliance = |until| {
        Some(Retention {
            mode: LockMode::Compliance,
            retain_until: until,
        })
    };
    assert_eq!(
        s.set_retention("b", "k2", Some(&id2), compliance(NOW + 1000), false, NOW),
        Err(MetaError::RetentionDenied { compliance: false })
    );
    s.set_retention("b", "k2", Some(&id2), compliance(NOW + 1000), true, NOW)
        .unwrap();
    assert_eq!(
        s.delete_object("b", "k2", Some(&id2), ALICE, NOW, true),
        Err(MetaError::ObjectLocked)
    );
    let denied = Err(MetaError::RetentionDenied { compliance: true });
    assert_eq!(
        s.set_retention("b", "k2", Some(&id2), gov(NOW + 5000), true, NOW),
        denied
    );
    assert_eq!(s.set_retention("b", "k2", None, None, true, NOW), denied);
    assert_eq!(
        s.set_retention("b", "k2", None, compliance(NOW + 10), false, NOW),
        denied,
        "compliance cannot be shortened"
    );
    let v = s
        .set_retention("b", "k2", None, compliance(NOW + 2000), false, NOW)
        .unwrap();
    assert_eq!(v.retention, compliance(NOW + 2000));
    // Once expired, the retention imposes nothing.
    s.set_retention("b", "k2", None, None, false, NOW + 3000)
        .unwrap();
    assert_eq!(s.get_version("b", "k2", None).unwrap().retention, None);

    // Without Object Lock on the bucket, neither retention nor hold can be set.
    s.create_bucket(bucket("plain", VersioningState::Enabled))
        .unwrap();
    put(
        &s,
        "plain",
        "k",
        version(s.new_version_id(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    assert_eq!(
        s.set_retention("plain", "k", None, gov(NOW + 1), false, NOW),
        Err(MetaError::ObjectLockNotEnabled)
    );
    assert_eq!(
        s.set_legal_hold("plain", "k", None, true),
        Err(MetaError::ObjectLockNotEnabled)
    );

    // A locked null version cannot be replaced.
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    let mut v = version(String::new(), "e", None);
    v.legal_hold = true;
    put(&s, "u", "k", v, &Precondition::None).unwrap();
    assert_eq!(
        put(
            &s,
            "u",
            "k",
            version(String::new(), "e2", None),
            &Precondition::None
        ),
        Err(MetaError::ObjectLocked)
    );
    assert_eq!(s.get_version("u", "k", None).unwrap().etag, "e");
}

#[test]
fn set_tags_changes_only_that_version() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let id = s.new_version_id();
    put(
        &s,
        "b",
        "k",
        version(id.clone(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    let out = s
        .set_tags("b", "k", None, vec![("a".into(), "1".into())])
        .unwrap();
    assert_eq!(out.version_id, id);
    assert_eq!(
        s.get_version("b", "k", Some(&id)).unwrap().tags,
        vec![("a".to_string(), "1".to_string())]
    );
    // A delete marker addressed by id is its own error (the gateway answers MethodNotAllowed).
    let del = s.delete_object("b", "k", None, "a", NOW, false).unwrap();
    let m = del.version_id.unwrap();
    assert_eq!(
        s.set_tags("b", "k", Some(&m), vec![]),
        Err(MetaError::IsDeleteMarker {
            version_id: m.clone(),
            last_modified: NOW
        })
    );
    assert_eq!(
        s.set_tags("b", "k", Some(&s.new_version_id()), vec![]),
        Err(MetaError::NoSuchVersion)
    );
    assert_eq!(s.get_version("b", "k", Some(&id)).unwrap().tags.len(), 1);
}

#[test]
fn multipart_complete_validates_and_commits_atomically() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let up = upload(&s, "big");
    let id = up.upload_id.clone();
    s.create_upload("b", up.clone()).unwrap();
    assert_eq!(s.get_upload("b", "big", &id).unwrap(), up);
    assert_eq!(
        s.get_upload("b", "other", &id),
        Err(MetaError::NoSuchUpload)
    );
    let mib5 = MIN_PART_SIZE;
    put_part(
        &s,
        "b",
        "big",
        &id,
        part(1, "p1", mib5, segment(5, 1, mib5)),
    )
    .unwrap();
    put_part(
        &s,
        "b",
        "big",
        &id,
        part(2, "p2old", mib5, segment(5, 2, mib5)),
    )
    .unwrap();
    // Replacing part 2 queues the old data.
    put_part(
        &s,
        "b",
        "big",
        &id,
        part(2, "p2", mib5, segment(5, 3, mib5)),
    )
    .unwrap();
    assert_eq!(gc_blobs(&s), vec![blob(5, 2)]);
    put_part(&s, "b", "big", &id, part(3, "p3", 10, segment(5, 4, 10))).unwrap();
    put_part(&s, "b", "big", &id, part(4, "p4", 10, segment(5, 5, 10))).unwrap();

    let page = s.list_parts("b", "big", &id, 0, 2).unwrap();
    assert_eq!(
        page.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(page.is_truncated);
    assert_eq!(page.next_part_number_marker, Some(2));
    let page = s.list_parts("b", "big", &id, 2, 10).unwrap();
    assert_eq!(
        page.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(!page.is_truncated);
    assert_eq!(
        s.list_parts("b", "big", "nope", 0, 10),
        Err(MetaError::NoSuchUpload)
    );

    let complete = |req: &[(u32, &str)]| {
        let req: Vec<(u32, String)> = req.iter().map(|(n, e)| (*n, e.to_string())).collect();
        s.complete_upload("b", "big", &id, &req, &Precondition::None, |u, parts| {
            Ok(build_from_parts(&s, u, parts))
        })
    };
    assert_eq!(
        complete(&[(2, "p2"), (1, "p1")]),
        Err(MetaError::InvalidPartOrder)
    );
    assert_eq!(
        complete(&[(1, "p1"), (1, "p1")]),
        Err(MetaError::InvalidPartOrder)
    );
    assert!(matches!(
        complete(&[(1, "p1"), (2, "p2old")]),
        Err(MetaError::InvalidPart(_))
    ));
    assert!(matches!(
        complete(&[(1, "p1"), (9, "p9")]),
        Err(MetaError::InvalidPart(_))
    ));
    assert_eq!(
        complete(&[(1, "p1"), (3, "p3"), (4, "p4")]),
        Err(MetaError::EntityTooSmall(3))
    );
    // Failed completions changed nothing.
    assert_eq!(s.list_parts("b", "big", &id, 0, 10).unwrap().parts.len(), 4);

    let out = complete(&[(1, "\"p1\""), (2, "p2"), (3, "p3")]).unwrap();
    assert_eq!(out.version_id, "null");
    let v = s.get_version("b", "big", None).unwrap();
    assert_eq!(v.size, 2 * mib5 + 10);
    assert_eq!(
        v.data.segments.iter().map(|s| s.blob).collect::<Vec<_>>(),
        [blob(5, 1), blob(5, 3), blob(5, 4)]
    );
    assert_eq!(v.parts.len(), 3);
    // The unused part 4 is queued; the upload and its parts are gone.
    assert_eq!(gc_blobs(&s), vec![blob(5, 2), blob(5, 5)]);
    assert_eq!(s.get_upload("b", "big", &id), Err(MetaError::NoSuchUpload));
    assert_eq!(complete(&[(1, "p1")]), Err(MetaError::NoSuchUpload));
    let uploads = s
        .list_uploads(
            "b",
            &ListUploadsParams {
                max_uploads: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(uploads.uploads.is_empty());
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn multipart_abort_frees_every_part_and_single_part_may_be_small() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let up = upload(&s, "k");
    s.create_upload("b", up.clone()).unwrap();
    put_part(
        &s,
        "b",
        "k",
        &up.upload_id,
        part(1, "a", 1, segment(6, 1, 1)),
    )
    .unwrap();
    put_part(
        &s,
        "b",
        "k",
        &up.upload_id,
        part(7, "b", 1, segment(6, 2, 1)),
    )
    .unwrap();
    s.abort_upload("b", "k", &up.upload_id).unwrap();
    let mut blobs = gc_blobs(&s);
    blobs.sort();
    assert_eq!(blobs, vec![blob(6, 1), blob(6, 2)]);
    assert_eq!(
        s.abort_upload("b", "k", &up.upload_id),
        Err(MetaError::NoSuchUpload)
    );
    assert_eq!(
        put_part(
            &s,
            "b",
            "k",
            &up.upload_id,
            part(1, "a", 1, segment(6, 3, 1))
        ),
        Err(MetaError::NoSuchUpload)
    );

    let up = upload(&s, "k");
    s.create_upload("b", up.clone()).unwrap();
    put_part(
        &s,
        "b",
        "k",
        &up.upload_id,
        part(1, "only", 3, segment(6, 4, 3)),
    )
    .unwrap();
    let out = s
        .complete_upload(
            "b",
            "k",
            &up.upload_id,
            &[(1, "only".into())],
            &Precondition::IfNoneMatchStar,
            |u, p| Ok(build_from_parts(&s, u, p)),
        )
        .unwrap();
    assert_eq!(
        s.get_version("b", "k", Some(&out.version_id)).unwrap().size,
        3
    );
    // The completion is remembered (for retried requests) until it expires.
    let done = s.completed_upload("b", &up.upload_id).unwrap().unwrap();
    assert_eq!(done.key, "k");
    assert_eq!(done.parts, vec![(1, "only".to_string())]);
    assert_eq!(done.version_id, out.version_id);
    assert_eq!(done.size, 3);
    let (dropped, _) = s
        .expire_completed_uploads(done.completed, None, 10)
        .unwrap();
    assert_eq!(dropped, 0, "not expired yet");
    let later = done.expires + 1;
    // Paging with a cursor of one record at a time reaches it too.
    let (dropped, next) = s.expire_completed_uploads(later, None, 1).unwrap();
    assert_eq!(dropped, 1);
    assert!(next.is_some());
    let (dropped, next) = s
        .expire_completed_uploads(later, next.as_deref(), 1)
        .unwrap();
    assert_eq!((dropped, next), (0, None));
    assert_eq!(s.completed_upload("b", &up.upload_id).unwrap(), None);
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn list_uploads_orders_and_pages() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let mut made = Vec::new();
    for key in ["a", "dir/x", "dir/y", "a", "z"] {
        let up = upload(&s, key);
        s.create_upload("b", up.clone()).unwrap();
        made.push((key.to_string(), up.upload_id));
    }
    made.sort();
    let all = s
        .list_uploads(
            "b",
            &ListUploadsParams {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<_> = all
        .uploads
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.clone()))
        .collect();
    assert_eq!(got, made);
    // Page through two at a time.
    let mut seen = Vec::new();
    let mut p = ListUploadsParams {
        max_uploads: 2,
        ..Default::default()
    };
    for _ in 0..10 {
        let page = s.list_uploads("b", &p).unwrap();
        seen.extend(
            page.uploads
                .iter()
                .map(|u| (u.key.clone(), u.upload_id.clone())),
        );
        if !page.is_truncated {
            break;
        }
        p.key_marker = page.next_key_marker;
        p.upload_id_marker = page.next_upload_id_marker;
    }
    assert_eq!(seen, made);
    let rolled = s
        .list_uploads(
            "b",
            &ListUploadsParams {
                delimiter: Some("/".into()),
                max_uploads: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rolled.common_prefixes, ["dir/"]);
    assert_eq!(rolled.uploads.len(), 3);
}

/// Begins a write (intent) for `seg` and discards it: the simplest way to queue GC items.
fn discard(s: &MetaStore, segs: Vec<Segment>, reason: &str) {
    for seg in &segs {
        s.begin_write(seg, INSTANCE, NOW).unwrap();
    }
    s.discard_write(segs, reason).unwrap();
}

#[test]
fn gc_queue_is_ordered_by_due_time_and_acked() {
    let (d, s) = open();
    s.set_gc_grace_ms(0);
    discard(&s, vec![segment(7, 1, 1)], "failed-put");
    s.discard_write(vec![], "nothing").unwrap();
    discard(&s, vec![segment(7, 2, 1), segment(7, 3, 1)], "failed-put");
    let now = keys::now_ms();
    let items = s.gc_pending(now, 10).unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].seq < items[1].seq);
    assert_eq!(items[0].reason, "failed-put");
    assert!(items[0].enqueued <= now && items[0].due == items[0].enqueued);
    assert_eq!(s.gc_pending(now, 1).unwrap().len(), 1);
    s.gc_ack(&[items[0].seq]).unwrap();
    assert_eq!(s.gc_pending(now, 10).unwrap(), vec![items[1].clone()]);
    // Durable after a reopen; an item due later sorts after.
    drop(s);
    let s = open_store(&d.path().join("meta"));
    s.set_gc_grace_ms(0);
    std::thread::sleep(std::time::Duration::from_millis(2));
    discard(&s, vec![segment(7, 4, 1)], "x");
    let items2 = s.gc_pending(keys::now_ms(), 10).unwrap();
    assert_eq!(items2.len(), 2);
    assert_eq!(items2[0], items[1]);
    assert!(items2[1].seq > items[1].seq);
}

#[test]
fn gc_items_wait_for_the_grace_period() {
    let (_d, s) = open();
    assert_eq!(s.gc_grace_ms(), DEFAULT_GC_GRACE_MS);
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let grace = 60_000;
    s.set_gc_grace_ms(grace);
    put(
        &s,
        "b",
        "k",
        version(String::new(), "e1", Some(segment(8, 1, 1))),
        &Precondition::None,
    )
    .unwrap();
    // The delete happens at NOW: its data is due at NOW + grace, not before.
    s.delete_object("b", "k", None, ALICE, NOW, false).unwrap();
    assert!(s.gc_pending(NOW, 10).unwrap().is_empty());
    assert!(s.gc_pending(NOW + grace - 1, 10).unwrap().is_empty());
    let due = s.gc_pending(NOW + grace, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].enqueued, due[0].due), (NOW, NOW + grace));
    assert_eq!(due[0].reason, "delete");
    // A later item with a shorter grace is due first: order is due order.
    s.set_gc_grace_ms(0);
    put(
        &s,
        "b",
        "k2",
        version(String::new(), "e2", Some(segment(8, 2, 1))),
        &Precondition::None,
    )
    .unwrap();
    s.delete_object("b", "k2", None, ALICE, NOW + 10, false)
        .unwrap();
    let all = s.gc_pending(NOW + grace, 10).unwrap();
    assert_eq!(
        all.iter().map(|i| i.segments[0].blob).collect::<Vec<_>>(),
        [blob(8, 2), blob(8, 1)]
    );
    let stats = s.gc_stats(NOW + 10).unwrap();
    assert_eq!(
        stats,
        GcStats {
            queued: 2,
            due: 1,
            oldest_due: Some(NOW + 10)
        }
    );
    assert_eq!(s.gc_stats(NOW + grace).unwrap().due, 2);
    assert_eq!(s.gc_stats(0).unwrap().due, 0);
}

#[test]
fn users_have_stable_ids_and_unique_names() {
    let (_d, s) = open();
    let bob = s.create_user("bob", false, NOW).unwrap();
    let alice = s.create_user("alice", true, NOW).unwrap();
    assert_eq!(alice.id.len(), 64);
    assert!(
        alice
            .id
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    );
    assert_ne!(alice.id, bob.id);
    assert_eq!(
        s.create_user("alice", false, NOW),
        Err(MetaError::AlreadyExists)
    );
    assert_eq!(
        s.list_users()
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(s.get_user("alice").unwrap(), Some(alice.clone()));
    assert_eq!(s.get_user_by_id(&alice.id).unwrap(), Some(alice.clone()));
    for (ak, user) in [("AK1", &alice.id), ("AK2", &bob.id), ("AK3", &alice.id)] {
        s.put_access_key(AccessKeyRecord {
            access_key: ak.into(),
            user: user.clone(),
            sealed_secret: vec![1; 44],
            created: NOW,
            revoked: false,
        })
        .unwrap();
    }
    assert_eq!(s.get_access_key("AK2").unwrap().unwrap().user, bob.id);
    // alice owns a bucket; then she is removed and the name is given to a new account.
    let mut b = bucket("alices", VersioningState::Unversioned);
    b.owner = alice.id.clone();
    s.create_bucket(b).unwrap();
    s.delete_user("alice").unwrap();
    assert_eq!(s.get_user("alice").unwrap(), None);
    assert_eq!(s.get_user_by_id(&alice.id).unwrap(), None);
    let keys: Vec<_> = s
        .list_access_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.access_key)
        .collect();
    assert_eq!(keys, ["AK2"], "the removed user's keys are gone");
    assert_eq!(s.delete_user("alice"), Err(MetaError::NoSuchUser));
    let alice2 = s.create_user("alice", false, NOW).unwrap();
    assert_ne!(alice2.id, alice.id);
    let owner = s.get_bucket("alices").unwrap().unwrap().owner;
    assert_eq!(owner, alice.id, "the bucket stays with the dead id");
    assert_ne!(
        owner, alice2.id,
        "the new alice does not own the old alice's bucket"
    );
    // A key cannot be added for a removed user.
    assert_eq!(
        s.put_access_key(AccessKeyRecord {
            access_key: "AK9".into(),
            user: alice.id.clone(),
            sealed_secret: vec![1; 44],
            created: NOW,
            revoked: false,
        }),
        Err(MetaError::NoSuchUser)
    );
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let id;
    {
        let s = open_store(&path);
        register(&s);
        s.create_bucket(bucket("b", VersioningState::Enabled))
            .unwrap();
        id = s.new_version_id();
        put(
            &s,
            "b",
            "k/é",
            version(id.clone(), "e", None),
            &Precondition::None,
        )
        .unwrap();
    }
    let s = open_store(&path);
    register(&s);
    assert_eq!(s.get_version("b", "k/é", None).unwrap().version_id, id);
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn default_retention_is_applied_by_the_store_and_bounded() {
    let (_d, s) = open();
    let mut b = locked_bucket("b");
    b.default_retention = Some(DefaultRetention::new(LockMode::Governance, Some(2), None).unwrap());
    s.create_bucket(b).unwrap();
    let before = keys::now_ms();
    let out = put(
        &s,
        "b",
        "k",
        version(s.new_version_id(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    let v = s.get_version("b", "k", Some(&out.version_id)).unwrap();
    let r = v
        .retention
        .expect("the bucket default applies to a plain PUT");
    assert_eq!(r.mode, LockMode::Governance);
    let day = 24 * 3600 * 1000;
    assert!(r.retain_until >= before + 2 * day && r.retain_until <= keys::now_ms() + 2 * day);
    // An explicit retention wins over the default.
    let mut v = version(s.new_version_id(), "e", None);
    v.retention = gov(NOW + 5);
    let out = put(&s, "b", "k", v, &Precondition::None).unwrap();
    assert_eq!(
        s.get_version("b", "k", Some(&out.version_id))
            .unwrap()
            .retention,
        gov(NOW + 5)
    );
    // A completed multipart upload gets it too.
    let up = upload(&s, "mp");
    s.create_upload("b", up.clone()).unwrap();
    put_part(
        &s,
        "b",
        "mp",
        &up.upload_id,
        part(1, "p", 3, segment(11, 1, 3)),
    )
    .unwrap();
    let out = s
        .complete_upload(
            "b",
            "mp",
            &up.upload_id,
            &[(1, "p".into())],
            &Precondition::None,
            |u, p| Ok(build_from_parts(&s, u, p)),
        )
        .unwrap();
    let v = s.get_version("b", "mp", Some(&out.version_id)).unwrap();
    assert_eq!(v.retention.map(|r| r.mode), Some(LockMode::Governance));
    // A stored default out of S3's range (written before the bounds) fails the write cleanly.
    s.update_bucket("b", |rec| {
        rec.default_retention = Some(DefaultRetention {
            mode: LockMode::Compliance,
            days: None,
            years: Some(2_147_483_647),
        });
        Ok(())
    })
    .unwrap();
    assert!(matches!(
        put(
            &s,
            "b",
            "k",
            version(s.new_version_id(), "e", None),
            &Precondition::None
        ),
        Err(MetaError::InvalidRetention(_))
    ));
}

/// A legal hold racing deletes of the same version: afterwards either the version exists with
/// the hold on, or the delete won and the hold call failed. Never "hold acknowledged and the
/// version gone".
#[test]
fn legal_hold_never_lost_to_a_racing_delete() {
    let (_d, s) = open();
    s.create_bucket(locked_bucket("b")).unwrap();
    for round in 0..40 {
        let key = format!("k{round}");
        let id = s.new_version_id();
        put(
            &s,
            "b",
            &key,
            version(id.clone(), "e", None),
            &Precondition::None,
        )
        .unwrap();
        let (hold, deleted) = std::thread::scope(|sc| {
            let h = sc.spawn(|| s.set_legal_hold("b", &key, Some(&id), true));
            let d = sc.spawn(|| {
                // A few attempts, as a client retrying the delete would.
                let mut removed = false;
                for _ in 0..3 {
                    match s.delete_object("b", &key, Some(&id), ALICE, NOW, true) {
                        Ok(out) => removed |= out.removed.is_some(),
                        Err(MetaError::ObjectLocked) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                removed
            });
            (h.join().unwrap(), d.join().unwrap())
        });
        let now = s.get_version("b", &key, Some(&id));
        match hold {
            Ok(_) => {
                assert!(
                    !deleted,
                    "round {round}: hold acknowledged but the version was deleted"
                );
                assert!(now.unwrap().legal_hold, "round {round}: hold lost");
            }
            Err(MetaError::NoSuchVersion | MetaError::NoSuchKey) => {
                assert!(deleted, "round {round}: hold failed but nothing deleted");
                assert!(now.is_err());
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

#[test]
fn a_format_1_store_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    {
        let kv = kv::RocksKv::open(&path).unwrap();
        let mut b = kv::Batch::default();
        b.put(kv::Space::Sys, b"format".to_vec(), vec![1]);
        kv::OrderedKv::commit(&kv, b).unwrap();
    }
    match MetaStore::open(&path) {
        Err(MetaError::UnsupportedFormat(msg)) => {
            assert!(msg.contains("format 1"), "{msg}");
            assert!(msg.contains("move the data directory away"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a format 1 store was opened"),
    }
    // A fresh store is format 2.
    let fresh = dir.path().join("fresh");
    drop(MetaStore::open(&fresh).unwrap());
    let kv = kv::RocksKv::open(&fresh).unwrap();
    assert_eq!(
        kv::OrderedKv::get(&kv, kv::Space::Sys, b"format").unwrap(),
        Some(vec![2])
    );
}
