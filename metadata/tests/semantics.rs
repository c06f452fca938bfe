//! S3 semantics of the metadata store on a real RocksDB in a temp directory.

mod common;

use common::*;
use strata_metadata::*;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta")).unwrap();
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

    s.put_version(
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
    // An open multipart upload keeps it non-empty too.
    let up = upload(&s, "mp");
    s.create_upload("b1", up.clone()).unwrap();
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::BucketNotEmpty));
    s.abort_upload("b1", "mp", &up.upload_id).unwrap();
    s.delete_bucket("b1").unwrap();
    assert_eq!(s.get_bucket("b1").unwrap(), None);
    assert_eq!(s.delete_bucket("b1"), Err(MetaError::NoSuchBucket));
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn unversioned_overwrite_replaces_null_and_queues_gc() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Unversioned))
        .unwrap();
    let out = s
        .put_version(
            "b",
            "k",
            version("ignored".into(), "e1", Some(segment(1, 1, 10))),
            &Precondition::None,
        )
        .unwrap();
    assert_eq!(out.version_id, NULL_VERSION);
    assert_eq!(out.replaced, None);
    assert!(gc_blobs(&s).is_empty());
    let out = s
        .put_version(
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
    assert_eq!(gc_blobs(&s), vec![blob(1, 1), blob(1, 2)]);
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
    s.put_version(
        "b",
        "k",
        version(v1.clone(), "e1", Some(segment(2, 1, 1))),
        &Precondition::None,
    )
    .unwrap();
    let out = s
        .put_version(
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
        s.update_version("b", "k", None, |_| Ok(())),
        Err(MetaError::NoSuchKey)
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
    s.put_version(
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
    let out = s
        .put_version(
            "b",
            "k",
            version(s.new_version_id(), "n1", Some(segment(3, 2, 1))),
            &Precondition::None,
        )
        .unwrap();
    assert_eq!(out.version_id, "null");
    s.put_version(
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
    s.put_version(
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
        s.put_version("b", "k", version(s.new_version_id(), etag, None), &p)
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
                    s.put_version(
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

#[test]
fn object_lock_blocks_delete_and_replace() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let id = s.new_version_id();
    let mut v = version(id.clone(), "e", Some(segment(4, 1, 1)));
    v.retention = Some(Retention {
        mode: LockMode::Governance,
        retain_until: NOW + 1000,
    });
    s.put_version("b", "k", v, &Precondition::None).unwrap();
    assert_eq!(
        s.delete_object("b", "k", Some(&id), "alice", NOW, false),
        Err(MetaError::ObjectLocked)
    );
    // A delete marker does not touch the locked version.
    s.delete_object("b", "k", None, "alice", NOW, false)
        .unwrap();
    // Governance bypass works; compliance would not.
    s.update_version("b", "k", Some(&id), |v| {
        v.retention = Some(Retention {
            mode: LockMode::Compliance,
            retain_until: NOW + 1000,
        });
        Ok(())
    })
    .unwrap();
    assert_eq!(
        s.delete_object("b", "k", Some(&id), "alice", NOW, true),
        Err(MetaError::ObjectLocked)
    );
    s.update_version("b", "k", Some(&id), |v| {
        v.retention = Some(Retention {
            mode: LockMode::Governance,
            retain_until: NOW + 1000,
        });
        v.legal_hold = true;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        s.delete_object("b", "k", Some(&id), "alice", NOW, true),
        Err(MetaError::ObjectLocked),
        "legal hold cannot be bypassed"
    );
    s.update_version("b", "k", Some(&id), |v| {
        v.legal_hold = false;
        Ok(())
    })
    .unwrap();
    assert!(
        s.delete_object("b", "k", Some(&id), "alice", NOW, true)
            .unwrap()
            .removed
            .is_some()
    );
    // Retention in the past no longer locks.
    assert!(gc_blobs(&s).contains(&blob(4, 1)));

    // A locked null version cannot be replaced.
    s.create_bucket(bucket("u", VersioningState::Unversioned))
        .unwrap();
    let mut v = version(String::new(), "e", None);
    v.legal_hold = true;
    s.put_version("u", "k", v, &Precondition::None).unwrap();
    assert_eq!(
        s.put_version(
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
fn update_version_changes_only_that_version() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let id = s.new_version_id();
    s.put_version(
        "b",
        "k",
        version(id.clone(), "e", None),
        &Precondition::None,
    )
    .unwrap();
    let out = s
        .update_version("b", "k", None, |v| {
            v.tags = vec![("a".into(), "1".into())];
            v.version_id = "hijack".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(out.version_id, id);
    assert_eq!(
        s.get_version("b", "k", Some(&id)).unwrap().tags,
        vec![("a".to_string(), "1".to_string())]
    );
    assert_eq!(
        s.update_version("b", "k", None, |_| Err(MetaError::PreconditionFailed)),
        Err(MetaError::PreconditionFailed)
    );
    // Explicit id of a delete marker is passed to the closure.
    let m = s
        .delete_object("b", "k", None, "a", NOW, false)
        .unwrap()
        .version_id
        .unwrap();
    let seen = s.update_version("b", "k", Some(&m), |v| {
        assert!(v.is_delete_marker);
        Ok(())
    });
    assert!(seen.unwrap().is_delete_marker);
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
    s.put_part("b", "big", &id, part(1, "p1", mib5, segment(5, 1, mib5)))
        .unwrap();
    s.put_part("b", "big", &id, part(2, "p2old", mib5, segment(5, 2, mib5)))
        .unwrap();
    // Replacing part 2 queues the old data.
    s.put_part("b", "big", &id, part(2, "p2", mib5, segment(5, 3, mib5)))
        .unwrap();
    assert_eq!(gc_blobs(&s), vec![blob(5, 2)]);
    s.put_part("b", "big", &id, part(3, "p3", 10, segment(5, 4, 10)))
        .unwrap();
    s.put_part("b", "big", &id, part(4, "p4", 10, segment(5, 5, 10)))
        .unwrap();

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
    s.put_part("b", "k", &up.upload_id, part(1, "a", 1, segment(6, 1, 1)))
        .unwrap();
    s.put_part("b", "k", &up.upload_id, part(7, "b", 1, segment(6, 2, 1)))
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
        s.put_part("b", "k", &up.upload_id, part(1, "a", 1, segment(6, 3, 1))),
        Err(MetaError::NoSuchUpload)
    );

    let up = upload(&s, "k");
    s.create_upload("b", up.clone()).unwrap();
    s.put_part(
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

#[test]
fn gc_queue_is_ordered_and_acked() {
    let (d, s) = open();
    s.gc_enqueue(vec![segment(7, 1, 1)], "failed-put").unwrap();
    s.gc_enqueue(vec![], "nothing").unwrap();
    s.gc_enqueue(vec![segment(7, 2, 1), segment(7, 3, 1)], "failed-put")
        .unwrap();
    let items = s.gc_pending(10).unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0].seq < items[1].seq);
    assert_eq!(items[0].reason, "failed-put");
    assert_eq!(s.gc_pending(1).unwrap().len(), 1);
    s.gc_ack(&[items[0].seq]).unwrap();
    assert_eq!(s.gc_pending(10).unwrap(), vec![items[1].clone()]);
    // Durable and still ordered after a reopen; new items sort after old ones.
    drop(s);
    let s = MetaStore::open(&d.path().join("meta")).unwrap();
    s.gc_enqueue(vec![segment(7, 4, 1)], "x").unwrap();
    let items2 = s.gc_pending(10).unwrap();
    assert_eq!(items2.len(), 2);
    assert_eq!(items2[0], items[1]);
    assert!(items2[1].seq > items[1].seq);
}

#[test]
fn users_and_access_keys() {
    let (_d, s) = open();
    for (name, admin) in [("bob", false), ("alice", true)] {
        s.put_user(UserRecord {
            name: name.into(),
            created: NOW,
            is_admin: admin,
        })
        .unwrap();
    }
    assert_eq!(
        s.list_users()
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(s.get_user("alice").unwrap().unwrap().is_admin);
    for (ak, user) in [("AK1", "alice"), ("AK2", "bob"), ("AK3", "alice")] {
        s.put_access_key(AccessKeyRecord {
            access_key: ak.into(),
            user: user.into(),
            sealed_secret: vec![1; 44],
            created: NOW,
            revoked: false,
        })
        .unwrap();
    }
    assert_eq!(s.get_access_key("AK2").unwrap().unwrap().user, "bob");
    s.delete_user("alice").unwrap();
    assert_eq!(s.get_user("alice").unwrap(), None);
    let keys: Vec<_> = s
        .list_access_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.access_key)
        .collect();
    assert_eq!(keys, ["AK2"]);
    assert_eq!(s.delete_user("alice"), Err(MetaError::NoSuchUser));
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let id;
    {
        let s = MetaStore::open(&path).unwrap();
        s.create_bucket(bucket("b", VersioningState::Enabled))
            .unwrap();
        id = s.new_version_id();
        s.put_version(
            "b",
            "k/é",
            version(id.clone(), "e", None),
            &Precondition::None,
        )
        .unwrap();
    }
    let s = MetaStore::open(&path).unwrap();
    assert_eq!(s.get_version("b", "k/é", None).unwrap().version_id, id);
    assert_eq!(s.verify().unwrap().problems, Vec::<String>::new());
}

#[test]
fn write_intents_are_cleared_by_commits_and_swept_after_a_crash() {
    let (_d, s) = open();
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    let upl = upload(&s, "mp");
    s.create_upload("b", upl.clone()).unwrap();
    // Three writes begin: a PUT that commits, a part that commits, and one whose writer dies.
    let committed = segment(7, 1, 10);
    let part_seg = segment(7, 2, 6 << 20);
    let lost = segment(7, 3, 4 << 20);
    for seg in [&committed, &part_seg, &lost] {
        s.begin_write(seg, NOW).unwrap();
    }
    assert_eq!(s.pending_writes().unwrap(), 3);
    let id = s.new_version_id();
    s.put_version(
        "b",
        "k",
        version(id, "e", Some(committed.clone())),
        &Precondition::None,
    )
    .unwrap();
    s.put_part(
        "b",
        "mp",
        &upl.upload_id,
        part(1, "p1", 6 << 20, part_seg.clone()),
    )
    .unwrap();
    assert_eq!(
        s.pending_writes().unwrap(),
        1,
        "commits clear their blobs' intents"
    );

    // An intent younger than the cutoff is left alone (its writer may still be running).
    assert_eq!(s.sweep_interrupted_writes(NOW).unwrap(), 0);
    assert!(gc_blobs(&s).is_empty());
    // Past the cutoff, the dead writer's blob goes to the GC queue, and only that blob.
    assert_eq!(s.sweep_interrupted_writes(NOW + 1).unwrap(), 1);
    assert_eq!(gc_blobs(&s), vec![lost.blob]);
    assert_eq!(s.pending_writes().unwrap(), 0);
    assert_eq!(
        s.sweep_interrupted_writes(NOW + 1).unwrap(),
        0,
        "a sweep is idempotent"
    );

    // A failed write queued for GC by its writer clears its intent in the same batch.
    let failed = segment(7, 4, 1);
    s.begin_write(&failed, NOW).unwrap();
    s.gc_enqueue(vec![failed.clone()], "failed-write").unwrap();
    assert_eq!(s.pending_writes().unwrap(), 0);
    assert!(s.verify().unwrap().problems.is_empty());
}
