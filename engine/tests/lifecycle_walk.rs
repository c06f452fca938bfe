//! The lifecycle worker against real stores, driven unit by unit: what the walk knows about a key
//! must survive page boundaries (NewerNoncurrentVersions counted across pages) and the end of the
//! bucket (a lone delete marker last in the walk), and a pass that is interrupted and restarted
//! from the persisted state does each action once.

use std::sync::Arc;

use bytes::Bytes;
use strata_engine::buckets::NewBucket;
use strata_engine::lifecycle::rules::{
    ExpirationDraft, FilterDraft, NoncurrentDraft, RuleDraft, validate,
};
use strata_engine::lifecycle::worker::{LifecycleWorker, PAGE};
use strata_engine::objects::{DeleteReason, DeleteRequest, ObjectAttrs};
use strata_engine::workers::{WorkState, Worker};
use strata_engine::{Engine, EngineConfig, WriteSpec};
use strata_metadata::{ListVersionsParams, MetaStore, Precondition, VersioningState};
use strata_storage_node::{ChunkService, LocalChunkStore, NodeConfig};

async fn engine(dir: &std::path::Path) -> Engine {
    let keys = strata_engine::keys::KeyRing::open_files(dir).unwrap();
    let log = Arc::new(
        strata_destruction_log::DestructionLog::open(&dir.join("destruction-log")).unwrap(),
    );
    let meta = MetaStore::open(&dir.join("meta")).unwrap();
    let chunks: Arc<dyn ChunkService> =
        Arc::new(LocalChunkStore::open(NodeConfig::under(&dir.join("disks"), 6)).unwrap());
    let now = strata_engine::now_ms();
    let disks: Vec<String> = (0..6).map(|i| format!("disk{i}")).collect();
    let layout = meta
        .ensure_current_layout(&disks, 4, 2, 65536, now)
        .unwrap();
    let instance = strata_engine::instance::new_instance_id();
    meta.register_instance(&instance, strata_engine::instance::LEASE_MS, now)
        .unwrap();
    Engine::new(
        meta,
        chunks,
        keys,
        log,
        EngineConfig {
            lifecycle_day_secs: Some(1),
            ..Default::default()
        },
        layout,
        instance,
    )
    .unwrap()
}

async fn put(e: &Engine, key: &str, data: &'static [u8]) {
    let b = e.bucket("b").await.unwrap().unwrap();
    let body = Box::pin(futures::stream::iter([Ok(Bytes::from_static(data))]));
    e.put_object(
        &b,
        key,
        body,
        WriteSpec {
            max_len: 1 << 20,
            ..Default::default()
        },
        ObjectAttrs {
            storage_class: "STANDARD".into(),
            owner: "u".into(),
            ..Default::default()
        },
        Precondition::None,
    )
    .await
    .unwrap();
}

async fn versions(e: &Engine, key: &str) -> Vec<(String, bool)> {
    let page = e
        .list_versions(
            "b",
            ListVersionsParams {
                prefix: key.into(),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    page.entries
        .into_iter()
        .filter(|x| x.key == key)
        .map(|x| (x.version.version_id, x.version.is_delete_marker))
        .collect()
}

/// Runs units until the pass is complete (bounded).
async fn one_pass(w: &mut LifecycleWorker) {
    for _ in 0..10_000 {
        if w.work().await.unwrap() == WorkState::Idle {
            return;
        }
    }
    panic!("the pass did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_state_crosses_pages_and_bucket_end() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    e.create_bucket(NewBucket {
        name: "b".into(),
        owner: "u".into(),
        region: "r".into(),
        object_lock: false,
        acl: None,
        ownership: None,
    })
    .await
    .unwrap();
    e.update_bucket("b", |r| {
        r.versioning = VersioningState::Enabled;
        Ok(())
    })
    .await
    .unwrap();
    // "a": more versions than one page of the walk.
    let n = PAGE + 44;
    for _ in 0..n {
        put(&e, "a", b"x").await;
    }
    // "z": a lone delete marker, the very last row of the walk.
    put(&e, "z", b"z").await;
    let b = e.bucket("b").await.unwrap().unwrap();
    let req = |v: Option<String>| DeleteRequest {
        version_id: v,
        bypass_governance: false,
        actor: "test".into(),
        reason: DeleteReason::UserRequest { request_id: None },
    };
    e.delete_object(&b, "z", req(None)).await.unwrap();
    let z_data = versions(&e, "z")
        .await
        .into_iter()
        .find(|(_, dm)| !dm)
        .unwrap()
        .0;
    e.delete_object(&b, "z", req(Some(z_data))).await.unwrap();
    assert_eq!(versions(&e, "z").await.len(), 1);

    let rules = [
        RuleDraft {
            id: Some("keep10".into()),
            status: "Enabled".into(),
            filter: Some(FilterDraft {
                prefix: Some("a".into()),
                ..Default::default()
            }),
            noncurrent_expiration: Some(NoncurrentDraft {
                noncurrent_days: Some(1),
                newer_noncurrent_versions: Some(10),
                storage_class: None,
            }),
            ..Default::default()
        },
        RuleDraft {
            id: Some("markers".into()),
            status: "Enabled".into(),
            filter: Some(FilterDraft {
                prefix: Some("z".into()),
                ..Default::default()
            }),
            expiration: Some(ExpirationDraft {
                expired_object_delete_marker: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let cfg = validate(&rules, None, 0).unwrap();
    e.update_bucket("b", move |r| {
        r.lifecycle = Some(cfg.clone());
        Ok(())
    })
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await; // one scaled day

    // A first worker does two units (the first page and its actions), then "crashes"; a new
    // one resumes from the persisted state.
    let mut w = LifecycleWorker::new(e.clone(), e.lifecycle_clock());
    assert_eq!(w.work().await.unwrap(), WorkState::Busy);
    drop(w);
    let mut w = LifecycleWorker::new(e.clone(), e.lifecycle_clock());
    one_pass(&mut w).await;
    let a = versions(&e, "a").await;
    assert_eq!(
        a.len(),
        11,
        "the current version and the 10 newest noncurrent ones remain"
    );
    assert!(
        versions(&e, "z").await.is_empty(),
        "the lone delete marker is removed"
    );
    let st = w.status();
    assert_eq!(
        st["rules"]["b/keep10"]["noncurrent_expired"],
        (n - 11) as u64
    );
    assert_eq!(st["rules"]["b/markers"]["delete_markers_removed"], 1);
    assert_eq!(st["rules"]["b/keep10"]["errors"], 0);
    // Another pass finds nothing more to do.
    one_pass(&mut w).await;
    assert_eq!(versions(&e, "a").await.len(), 11);
    assert_eq!(
        w.status()["rules"]["b/keep10"]["noncurrent_expired"],
        (n - 11) as u64
    );
}

/// A retention preset's rule fires through the lifecycle walk like any rule, and the version it
/// destroys is recorded as a retention end naming the rule, not as a user lifecycle expiration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_rule_expirations_are_retention_ends() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    e.create_bucket(NewBucket {
        name: "b".into(),
        owner: "u".into(),
        region: "r".into(),
        object_lock: false,
        acl: None,
        ownership: None,
    })
    .await
    .unwrap();
    put(&e, "auth/x", b"login").await;
    put(&e, "mine/y", b"other").await;
    // A one-day period (presets are 90 days or more; the record is what the preset writes).
    e.update_bucket("b", |b| {
        b.retention_rules = vec![strata_metadata::RetentionRule {
            id: strata_engine::retention::rule_id("login-records", "auth/"),
            preset: "login-records".into(),
            prefix: "auth/".into(),
            days: 1,
            applied_ms: 0,
        }];
        Ok(())
    })
    .await
    .unwrap();
    let mine = validate(
        &[RuleDraft {
            id: Some("mine".into()),
            status: "Enabled".into(),
            filter: Some(FilterDraft {
                prefix: Some("mine/".into()),
                ..Default::default()
            }),
            expiration: Some(ExpirationDraft {
                days: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        }],
        None,
        0,
    )
    .unwrap();
    e.set_lifecycle("b", Some(mine)).await.unwrap();
    // One lifecycle day is one second here.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let mut w = LifecycleWorker::new(e.clone(), e.lifecycle_clock());
    one_pass(&mut w).await;
    assert!(versions(&e, "auth/x").await.is_empty());
    assert!(versions(&e, "mine/y").await.is_empty());
    let reasons: Vec<(String, DeleteReason)> = e
        .meta_call(|m| m.gc_pending(i64::MAX, 100))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| i.destroyed)
        .map(|d| (d.key, d.reason))
        .collect();
    let rule = strata_engine::retention::rule_id("login-records", "auth/");
    assert!(
        reasons.contains(&(
            "auth/x".into(),
            DeleteReason::RetentionEnd { rule_id: rule }
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "mine/y".into(),
            DeleteReason::Lifecycle {
                rule_id: "mine".into()
            }
        )),
        "{reasons:?}"
    );
}
