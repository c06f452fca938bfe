//! The destruction path and the key lifecycle against real stores (RocksDB, the key store, the
//! chunk store, the destruction log): what a deleted version leaves behind (nothing that unwraps
//! its key, one record), redo after a crash at any step, keys of failed writes and aborted
//! uploads, and rotations under reads.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use strata_engine::body::BodyStream;
use strata_engine::buckets::NewBucket;
use strata_engine::gc::GcWorker;
use strata_engine::objects::{DeleteReason, DeleteRequest, ObjectAttrs};
use strata_engine::rotation::{RotationWorker, Target};
use strata_engine::workers::Worker;
use strata_engine::{Engine, EngineConfig, WriteSpec};
use strata_metadata::{BucketRecord, MetaStore, Precondition, VersionRecord};
use strata_storage_node::{ChunkService, LocalChunkStore, NodeConfig};

struct Fixture {
    engine: Engine,
    bucket: BucketRecord,
    dir: tempfile::TempDir,
}

fn open_engine(dir: &std::path::Path) -> Engine {
    let keys = strata_engine::keys::KeyRing::open_files(dir).unwrap();
    let log = Arc::new(
        strata_destruction_log::DestructionLog::open(&dir.join("destruction-log")).unwrap(),
    );
    let meta = MetaStore::open(&dir.join("meta")).unwrap();
    meta.set_gc_grace_ms(0);
    let store = LocalChunkStore::open(NodeConfig::under(&dir.join("disks"), 6)).unwrap();
    let chunks: Arc<dyn ChunkService> = Arc::new(store);
    let disks: Vec<String> = (0..6).map(|i| format!("disk{i}")).collect();
    let layout = meta
        .ensure_current_layout(&disks, 4, 2, 64 * 1024, 0)
        .unwrap();
    let instance = strata_engine::instance::new_instance_id();
    meta.register_instance(&instance, i64::MAX / 4, 0).unwrap();
    Engine::new(
        meta,
        chunks,
        keys,
        log,
        EngineConfig::default(),
        layout,
        instance,
    )
    .unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let bucket = engine
        .create_bucket(NewBucket {
            name: "b".into(),
            owner: "u".repeat(64),
            region: "r".into(),
            object_lock: false,
            acl: None,
            ownership: None,
        })
        .await
        .unwrap();
    Fixture {
        engine,
        bucket,
        dir,
    }
}

fn body(bytes: Vec<u8>) -> BodyStream {
    Box::pin(futures::stream::iter([Ok(Bytes::from(bytes))]))
}

fn spec() -> WriteSpec {
    WriteSpec {
        max_len: 1 << 30,
        ..Default::default()
    }
}

async fn put(e: &Engine, b: &BucketRecord, key: &str, bytes: Vec<u8>) -> VersionRecord {
    e.put_object(
        b,
        key,
        body(bytes),
        spec(),
        ObjectAttrs::default(),
        Precondition::None,
    )
    .await
    .unwrap()
    .version
}

async fn read(e: &Engine, b: &BucketRecord, v: &VersionRecord) -> Vec<u8> {
    let s = e.read(b, v, 0..v.size).await.unwrap();
    let parts: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
    parts.concat()
}

async fn delete(e: &Engine, b: &BucketRecord, key: &str) {
    e.delete_object(
        b,
        key,
        DeleteRequest {
            version_id: None,
            bypass_governance: false,
            actor: "u".repeat(64),
            reason: DeleteReason::UserRequest {
                request_id: Some("req-1".into()),
            },
        },
    )
    .await
    .unwrap();
}

async fn gc(e: &Engine) {
    let mut w = GcWorker::new(e.clone());
    for _ in 0..10 {
        w.work().await.unwrap();
    }
}

fn live_deks(e: &Engine) -> u64 {
    e.keys().store().stats().unwrap().live_deks
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_version_leaves_no_key_one_record_and_no_chunk() {
    let f = fixture().await;
    let e = &f.engine;
    let v = put(e, &f.bucket, "k", vec![7u8; 200_000]).await;
    let slot = v.data.dek_slot.expect("a version with data has a key slot");
    let id = strata_engine::keys::parse_key_id(&v.data.dek_id).unwrap();
    let wrapped = e.keys().store().get(slot, &id).unwrap().unwrap().wrapped;
    assert_eq!(read(e, &f.bucket, &v).await, vec![7u8; 200_000]);
    assert_eq!(live_deks(e), 1);

    delete(e, &f.bucket, "k").await;
    gc(e).await;
    assert_eq!(live_deks(e), 0);
    assert!(e.keys().version_key(&f.bucket, &v.data).is_err());
    let slots = std::fs::read(f.dir.path().join("keys/slots")).unwrap();
    assert!(
        !contains(&slots, &wrapped[13..]),
        "the wrapped key is still in the store"
    );
    let recs = e.destruction_log().find("b", "k").unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0].1;
    assert_eq!(r.key_id, format!("dek:{}", v.data.dek_id));
    assert_eq!(r.size, 200_000);
    assert_eq!(r.shards_removed, 4 * 6, "4 chunks of RS(4,2)");
    assert_eq!(
        r.reason,
        strata_destruction_log::Reason::UserRequest {
            request_id: Some("req-1".into())
        }
    );
    let shards = walk(&f.dir.path().join("disks"));
    assert_eq!(shards, 0, "shard files left");
}

fn walk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk(&e.path());
        } else if e.path().to_string_lossy().contains("/shards/") {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redoing_an_item_after_a_crash_at_any_step_writes_one_record() {
    let f = fixture().await;
    let e = &f.engine;
    put(e, &f.bucket, "k", vec![1u8; 100]).await;
    delete(e, &f.bucket, "k").await;
    let items = e.meta_call(|m| m.gc_pending(i64::MAX, 10)).await.unwrap();
    let item = items.into_iter().find(|i| i.destroyed.is_some()).unwrap();
    // Crash after the key was destroyed, before anything else.
    e.keys().destroy(&item.keys[0]).unwrap();
    // Crash after the record was appended, before the acknowledgement.
    e.destroy_item(&item).await.unwrap();
    assert_eq!(e.destruction_log().find("b", "k").unwrap().len(), 1);
    // The restarted worker does the item again: still one record.
    drop(f.engine);
    let e = open_engine(f.dir.path());
    gc(&e).await;
    assert_eq!(e.destruction_log().find("b", "k").unwrap().len(), 1);
    assert!(
        e.meta_call(|m| m.gc_pending(i64::MAX, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_failed_writes_aborted_uploads_and_overwrites_go_without_records() {
    let f = fixture().await;
    let e = &f.engine;
    // A body that fails after its first chunk: its key was written under the write intent.
    let bad: BodyStream = Box::pin(futures::stream::iter([
        Ok(Bytes::from(vec![0u8; 64 * 1024])),
        Err(strata_engine::BodyError::Incomplete),
    ]));
    assert!(
        e.put_object(
            &f.bucket,
            "x",
            bad,
            spec(),
            ObjectAttrs::default(),
            Precondition::None
        )
        .await
        .is_err()
    );
    // An upload with a part, aborted.
    let u = e
        .create_upload(&f.bucket, "mp", Default::default())
        .await
        .unwrap();
    e.upload_part(&f.bucket, &u, 1, body(vec![3u8; 1000]), spec())
        .await
        .unwrap();
    e.abort_upload("b", "mp", &u.upload_id).await.unwrap();
    // An overwrite of the null version.
    put(e, &f.bucket, "o", vec![1]).await;
    let newer = put(e, &f.bucket, "o", vec![2]).await;
    // An empty object has no key at all.
    let empty = put(e, &f.bucket, "empty", Vec::new()).await;
    assert_eq!(empty.data.dek_slot, None);
    assert!(read(e, &f.bucket, &empty).await.is_empty());
    gc(e).await;
    assert_eq!(live_deks(e), 1, "only the current `o` keeps a key");
    assert!(e.keys().version_key(&f.bucket, &newer.data).is_ok());
    for k in ["x", "mp", "o", "empty"] {
        assert!(e.destruction_log().find("b", k).unwrap().is_empty(), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_rewrap_without_rewriting_data_and_destroy_the_old_keys() {
    let f = fixture().await;
    let e = &f.engine;
    let mut versions = Vec::new();
    for i in 0..20u8 {
        versions.push(put(e, &f.bucket, &format!("k{i}"), vec![i; 3000]).await);
    }
    let old_master = std::fs::read(f.dir.path().join("master.key")).unwrap();
    let old_kek = f.bucket.kek_id.clone();
    e.start_rotation(Target::Bucket { bucket: "b".into() }, 7)
        .await
        .unwrap();
    e.start_rotation(Target::Master, 1000).await.unwrap();
    let mut w = RotationWorker::new(e.clone());
    for _ in 0..50 {
        // Reads keep working between every step, with the bucket record read before.
        for (i, v) in versions.iter().enumerate() {
            assert_eq!(read(e, &f.bucket, v).await, vec![i as u8; 3000]);
        }
        if w.work().await.unwrap() == strata_engine::workers::WorkState::Idle {
            break;
        }
    }
    let b = e.bucket("b").await.unwrap().unwrap();
    assert_ne!(b.kek_id, old_kek);
    assert!(b.previous_keks.is_empty());
    gc(e).await; // the retired KEK is destroyed through the GC
    let stats = e.keys().store().stats().unwrap();
    assert_eq!((stats.live_keks, stats.live_deks), (1, 20));
    let new_master = std::fs::read(f.dir.path().join("master.key")).unwrap();
    assert_ne!(new_master, old_master);
    assert!(!f.dir.path().join("master.key.next").exists());
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(read(e, &b, v).await, vec![i as u8; 3000]);
    }
    // Reopened (fresh process): everything still readable under the new keys only.
    drop(w);
    drop(f.engine);
    let e = open_engine(f.dir.path());
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(read(&e, &b, v).await, vec![i as u8; 3000]);
    }
}

/// A user id, and a job acting for that user.
const ADMIN: &str = "abababababababababababababababababababababababababababababababab";
const PURGE_FOR_ADMIN: &str =
    "purge:abababababababababababababababababababababababababababababababab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_gives_exactly_one_record_with_that_reason() {
    use strata_destruction_log::Reason;
    let f = fixture().await;
    let e = &f.engine;
    let cases = [
        (
            DeleteReason::Lifecycle {
                rule_id: "expire-logs".into(),
            },
            "lifecycle",
            Reason::Lifecycle {
                rule_id: "expire-logs".into(),
            },
        ),
        (
            DeleteReason::RetentionEnd {
                rule_id: "strata-retention-login-records".into(),
            },
            "lifecycle",
            Reason::RetentionEnd {
                rule_id: "strata-retention-login-records".into(),
            },
        ),
        (
            DeleteReason::BucketPurge,
            PURGE_FOR_ADMIN,
            Reason::BucketPurge,
        ),
        (
            DeleteReason::AccountClosure,
            "account-closure",
            Reason::AccountClosure,
        ),
        (
            DeleteReason::Admin {
                request_id: Some("adm".into()),
            },
            ADMIN,
            Reason::Admin {
                request_id: Some("adm".into()),
            },
        ),
    ];
    for (i, (reason, actor, _)) in cases.iter().enumerate() {
        let key = format!("r{i}");
        put(e, &f.bucket, &key, vec![i as u8; 10]).await;
        put(e, &f.bucket, &key, vec![i as u8; 20]).await; // an overwrite: no record
        e.delete_object(
            &f.bucket,
            &key,
            DeleteRequest {
                version_id: None,
                bypass_governance: false,
                actor: actor.to_string(),
                reason: reason.clone(),
            },
        )
        .await
        .unwrap();
    }
    gc(e).await;
    for (i, (_, actor, want)) in cases.iter().enumerate() {
        let recs = e.destruction_log().find("b", &format!("r{i}")).unwrap();
        assert_eq!(recs.len(), 1, "{want:?}");
        let r = &recs[0].1;
        assert_eq!(&r.reason, want);
        assert_eq!(r.size, 20);
        if *actor == ADMIN {
            assert_eq!(r.actor.user.as_deref(), Some(ADMIN));
            assert_eq!(r.actor.engine, None);
        } else if *actor == PURGE_FOR_ADMIN {
            assert_eq!(r.actor.user.as_deref(), Some(ADMIN));
            assert_eq!(r.actor.engine.as_deref(), Some("purge"));
        } else {
            assert!(
                r.actor.engine.is_some() && r.actor.user.is_none(),
                "{:?}",
                r.actor
            );
        }
    }
    assert_eq!(live_deks(e), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_wrong_master_key_is_refused_never_replaced() {
    let f = fixture().await;
    drop(f.engine);
    let key = f.dir.path().join("master.key");
    let good = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let err = strata_engine::keys::KeyRing::open_files(f.dir.path())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(
        !key.exists(),
        "no new master key may be created over a lost one"
    );
    std::fs::write(&key, [9u8; 32]).unwrap();
    let err = strata_engine::keys::KeyRing::open_files(f.dir.path())
        .err()
        .unwrap();
    assert!(err.to_string().contains("not the configured one"), "{err}");
    std::fs::write(&key, good).unwrap();
    assert!(strata_engine::keys::KeyRing::open_files(f.dir.path()).is_ok());
}

/// SSE-KMS and SSE-C in the key hierarchy: a KMS key is a KEK of the key store (referenced by
/// its record, never stored in RocksDB, re-wrapped by a master rotation); SSE-KMS and SSE-C
/// versions keep their DEK as every version does, and destroying it shreds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_kms_and_sse_c_versions_fit_the_key_store() {
    use strata_engine::sse::{CustomerKey, SseRequest};
    let f = fixture().await;
    let e = &f.engine;
    let kms = e.create_kms_key("app").await.unwrap();
    let kek = kms.kek_ref().expect("a KMS key names a key-store KEK");
    let entry = e
        .keys()
        .store()
        .get(
            kek.slot,
            &strata_engine::keys::parse_key_id(&kek.id).unwrap(),
        )
        .unwrap()
        .expect("the KMS key's KEK is in the key store");
    assert_eq!(entry.kind, strata_keystore::KeyKind::Kek);
    assert_eq!(e.keys().store().stats().unwrap().live_keks, 2);
    let referenced = e.meta_blocking().referenced_keys().unwrap();
    assert!(referenced.contains(&(kek.slot, kek.id.clone())));

    let bucket = &f.bucket;
    let put_sse = |key: &'static str, req: SseRequest, fill: u8| async move {
        let (rec, binding) = e.prepare_sse(req).await.unwrap();
        let mut attrs = ObjectAttrs::default();
        attrs.content.sse = Some(rec);
        let w = e
            .put_object_bound(
                bucket,
                key,
                body(vec![fill; 100_000]),
                spec(),
                attrs,
                Precondition::None,
                &binding,
            )
            .await
            .unwrap();
        (w.version, binding)
    };
    let (kv, _) = put_sse(
        "kms",
        SseRequest::Kms {
            key: Some("alias/app".into()),
            context: None,
            bucket_key: false,
        },
        1,
    )
    .await;
    let ck = CustomerKey::new([9u8; 32]);
    let (cv, _) = put_sse("ssec", SseRequest::Customer(ck.clone()), 2).await;
    let read_with = |v: VersionRecord, customer: Option<CustomerKey>| async move {
        let b = e
            .sse_binding(v.content.sse.as_ref(), customer.as_ref())
            .await?;
        let s = e.read_bound(bucket, &v, 0..v.size, &b).await?;
        let parts: Vec<_> = s.collect().await;
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(
                &p.map_err(|x| strata_engine::EngineError::internal(x.to_string()))?,
            );
        }
        Ok::<_, strata_engine::EngineError>(out)
    };
    assert_eq!(read_with(kv.clone(), None).await.unwrap(), vec![1; 100_000]);
    assert_eq!(
        read_with(cv.clone(), Some(ck.clone())).await.unwrap(),
        vec![2; 100_000]
    );
    // The DEK alone (what an SSE-S3 read uses) does not decrypt bound chunks.
    let unbound = e.read(&f.bucket, &kv, 0..kv.size).await.unwrap();
    let got: Vec<_> = unbound.collect().await;
    assert!(
        got.iter().any(|r| r.is_err()),
        "DEK alone read SSE-KMS data"
    );

    // No key material in RocksDB: the KEK's wrapped form is only in the key store.
    let mut found = false;
    let mut stack = vec![f.dir.path().join("meta")];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap() {
            let p = ent.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if contains(&std::fs::read(&p).unwrap(), &entry.wrapped[13..]) {
                found = true;
            }
        }
    }
    assert!(!found, "a wrapped KMS KEK is in the metadata files");

    // A master rotation re-wraps the KMS key's KEK with the others; SSE-KMS stays readable.
    e.start_rotation(Target::Master, 1000).await.unwrap();
    let mut w = RotationWorker::new(e.clone());
    for _ in 0..50 {
        if w.work().await.unwrap() == strata_engine::workers::WorkState::Idle {
            break;
        }
    }
    let (new_master, rotating) = e.keys().master_ids();
    assert!(rotating.is_none());
    let after = e
        .keys()
        .store()
        .get(
            kek.slot,
            &strata_engine::keys::parse_key_id(&kek.id).unwrap(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(after.wrapper, new_master, "KMS KEK not re-wrapped");
    assert_eq!(read_with(kv.clone(), None).await.unwrap(), vec![1; 100_000]);

    // Destroying the SSE-C version's stored DEK shreds it: the right customer key reads nothing.
    delete(e, &f.bucket, "ssec").await;
    gc(e).await;
    assert!(read_with(cv.clone(), Some(ck)).await.is_err());
    let recs = e.destruction_log().find("b", "ssec").unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].1.key_id, format!("dek:{}", cv.data.dek_id));
}

/// The console's view of the log (issue 16): pages newest first with a cursor, and the
/// server-side verification, which passes on the log as written and fails once a byte of
/// records.log is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_pages_newest_first_and_its_verification_catches_a_changed_byte() {
    let f = fixture().await;
    let e = &f.engine;
    for i in 0..3u8 {
        put(e, &f.bucket, &format!("k{i}"), vec![i; 1000]).await;
        delete(e, &f.bucket, &format!("k{i}")).await;
    }
    gc(e).await;
    let keys = |page: &serde_json::Value| -> Vec<String> {
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["record"]["key"].as_str().unwrap().to_string())
            .collect()
    };
    let indices = |page: &serde_json::Value| -> Vec<u64> {
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect()
    };
    let page = e.destruction_log_page(None, 2).await.unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(indices(&page), [2, 1]);
    assert_eq!(page["next_before"], 1);
    assert!(
        page["public_key_pem"]
            .as_str()
            .unwrap()
            .contains("PUBLIC KEY")
    );
    let rest = e.destruction_log_page(Some(1), 2).await.unwrap();
    assert_eq!(indices(&rest), [0]);
    assert!(rest["next_before"].is_null());
    let mut all = [keys(&page), keys(&rest)].concat();
    all.sort();
    assert_eq!(all, ["k0", "k1", "k2"]);

    let ok = e.verify_destruction_log().await.unwrap();
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["report"]["records"], 3);
    assert_eq!(ok["report"]["complete"], true);
    // the scratch export is gone
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| {
            d.file_name()
                .to_string_lossy()
                .starts_with("strata-verify-")
        })
        .count();
    assert_eq!(left, 0, "scratch directories left in the temp dir");

    let path = f.dir.path().join("destruction-log/records.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(2).rposition(|w| w == b"k1").unwrap();
    bytes[at + 1] = b'7';
    std::fs::write(&path, &bytes).unwrap();
    let bad = e.verify_destruction_log().await.unwrap();
    assert_eq!(bad["ok"], false, "{bad}");
}
