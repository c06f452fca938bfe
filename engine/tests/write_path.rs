//! The engine's write path against real stores (RocksDB metadata, shard files in a temp dir):
//! what happens to written chunks when a write is committed, fails, or is abandoned mid-way.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use strata_engine::body::{BodyError, BodyStream};
use strata_engine::buckets::NewBucket;
use strata_engine::objects::ObjectAttrs;
use strata_engine::{Engine, EngineConfig, EngineError, Rejection, WriteSpec};
use strata_metadata::{BucketRecord, MetaStore, Precondition};
use strata_storage_node::{ChunkService, LocalChunkStore, NodeConfig};

const CHUNK: usize = 64 * 1024;

struct Fixture {
    engine: Engine,
    bucket: BucketRecord,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // Its own keys, never the environment's.
    let keys = strata_engine::keys::KeyRing::open_files(dir.path()).unwrap();
    let log = Arc::new(
        strata_destruction_log::DestructionLog::open(&dir.path().join("destruction-log")).unwrap(),
    );
    let meta = MetaStore::open(&dir.path().join("meta")).unwrap();
    let store = LocalChunkStore::open(NodeConfig::under(&dir.path().join("disks"), 6)).unwrap();
    let chunks: Arc<dyn ChunkService> = Arc::new(store);
    let now = strata_engine::now_ms();
    let disks: Vec<String> = (0..6).map(|i| format!("disk{i}")).collect();
    let layout = meta
        .ensure_current_layout(&disks, 4, 2, CHUNK as u32, now)
        .unwrap();
    let instance = strata_engine::instance::new_instance_id();
    meta.register_instance(&instance, strata_engine::instance::LEASE_MS, now)
        .unwrap();
    let engine = Engine::new(
        meta,
        chunks,
        keys,
        log,
        EngineConfig::default(),
        layout,
        instance,
    )
    .unwrap();
    let bucket = engine
        .create_bucket(NewBucket {
            name: "b".into(),
            owner: "u".into(),
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
        _dir: dir,
    }
}

/// `n` chunks' worth of bytes, then either the end, an error, or a stall that never ends.
fn body(n: usize, then: Option<BodyError>, stall: bool) -> BodyStream {
    let pieces = (0..n).map(|i| Ok(Bytes::from(vec![i as u8; CHUNK])));
    let tail: Vec<Result<Bytes, BodyError>> = then.into_iter().map(Err).collect();
    let s = futures::stream::iter(pieces.chain(tail));
    if stall {
        Box::pin(s.chain(futures::stream::pending()))
    } else {
        Box::pin(s)
    }
}

fn spec() -> WriteSpec {
    WriteSpec {
        max_len: 1 << 30,
        ..Default::default()
    }
}

/// (GC items queued, blobs' segments queued, write intents pending).
async fn gc_state(e: &Engine) -> (usize, usize) {
    let items = e.meta_call(|m| m.gc_pending(i64::MAX, 1000)).await.unwrap();
    let intents = e.meta_call(|m| m.pending_writes()).await.unwrap();
    (items.len(), intents)
}

async fn eventually(e: &Engine, want: (usize, usize)) -> (usize, usize) {
    for _ in 0..100 {
        let s = gc_state(e).await;
        if s == want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gc_state(e).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_write_leaves_nothing_to_collect() {
    let f = fixture().await;
    let w = f
        .engine
        .put_object(
            &f.bucket,
            "k",
            body(3, None, false),
            spec(),
            ObjectAttrs::default(),
            Precondition::None,
        )
        .await
        .unwrap();
    assert_eq!(w.version.size, 3 * CHUNK as u64);
    assert_eq!(gc_state(&f.engine).await, (0, 0));
    let read = f
        .engine
        .read(&f.bucket, &w.version, 0..w.version.size)
        .await
        .unwrap();
    let got: Vec<Bytes> = read.map(|r| r.unwrap()).collect().await;
    assert_eq!(got.concat().len(), 3 * CHUNK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_body_hands_its_chunks_to_gc() {
    let f = fixture().await;
    let r = f
        .engine
        .put_object(
            &f.bucket,
            "k",
            body(3, Some(BodyError::Incomplete), false),
            spec(),
            ObjectAttrs::default(),
            Precondition::None,
        )
        .await;
    assert!(matches!(
        r,
        Err(EngineError::Rejected(Rejection::IncompleteBody))
    ));
    // One GC item for the blob, and its intent cleared in the same commit.
    assert_eq!(gc_state(&f.engine).await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_write_is_discarded_without_a_restart() {
    let f = fixture().await;
    // The client sends 3 chunks and then nothing: the request future is dropped (as when the
    // connection goes away while the handler waits).
    let fut = f.engine.put_object(
        &f.bucket,
        "k",
        body(3, None, true),
        spec(),
        ObjectAttrs::default(),
        Precondition::None,
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), fut)
            .await
            .is_err()
    );
    assert_eq!(
        eventually(&f.engine, (1, 0)).await,
        (1, 0),
        "the dropped write's chunks must be queued for GC and its intent cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_commit_discards_the_stored_bytes() {
    let f = fixture().await;
    f.engine
        .put_object(
            &f.bucket,
            "k",
            body(1, None, false),
            spec(),
            ObjectAttrs::default(),
            Precondition::None,
        )
        .await
        .unwrap();
    let r = f
        .engine
        .put_object(
            &f.bucket,
            "k",
            body(2, None, false),
            spec(),
            ObjectAttrs::default(),
            Precondition::IfNoneMatchStar,
        )
        .await;
    assert!(matches!(
        r,
        Err(EngineError::Meta(
            strata_metadata::MetaError::PreconditionFailed
        ))
    ));
    assert_eq!(gc_state(&f.engine).await, (1, 0));
}
