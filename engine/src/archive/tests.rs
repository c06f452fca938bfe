//! The archive tier against real stores (RocksDB metadata, shard files in a temp dir): many
//! versions packed per container chunk, byte-exact restores, crypto-shredding of one version
//! inside a shared chunk, crashes around a chunk write, verbatim compaction, format-1 extents.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use strata_metadata::archive::{
    ArchiveCommit, ArchiveExtent, ContainerRecord, WRITER_REPACK, sealed_len,
};
use strata_metadata::{BucketRecord, MetaStore, Precondition, VersionRecord};
use strata_storage_node::keys::DataKey;
use strata_storage_node::{ChunkId, ChunkService, LocalChunkStore, NodeConfig};

use super::compact::CompactionWorker;
use super::frame::{FRAME_SIZE, FrameIdentity, FrameSealer, open_frame};
use super::pack::ContainerWriter;
use super::repack::ArchiveWorker;
use super::{ArchiveConfig, RestoreDelays};
use crate::body::ReadStream;
use crate::buckets::NewBucket;
use crate::gc::GcWorker;
use crate::objects::{DeleteReason, DeleteRequest, ObjectAttrs};
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineConfig, EngineError, WriteSpec};

const DISKS: usize = 6;

struct Fx {
    engine: Engine,
    bucket: BucketRecord,
    dir: tempfile::TempDir,
}

async fn fixture(chunk_size: u32, container_bytes: u64, compact_below: f64) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::keys::KeyRing::open_files(dir.path()).unwrap();
    let log = Arc::new(
        strata_destruction_log::DestructionLog::open(&dir.path().join("destruction-log")).unwrap(),
    );
    let meta = MetaStore::open(&dir.path().join("meta")).unwrap();
    meta.set_gc_grace_ms(0);
    let store = LocalChunkStore::open(NodeConfig::under(&dir.path().join("disks"), DISKS)).unwrap();
    let chunks: Arc<dyn ChunkService> = Arc::new(store);
    let now = crate::now_ms();
    let disks: Vec<String> = (0..DISKS).map(|i| format!("disk{i}")).collect();
    let layout = meta
        .ensure_current_layout(&disks, 4, 2, 1 << 20, now)
        .unwrap();
    meta.ensure_archive_layout(&disks, 4, 2, chunk_size, now)
        .unwrap();
    let instance = crate::instance::new_instance_id();
    meta.register_instance(&instance, crate::instance::LEASE_MS, now)
        .unwrap();
    let cfg = EngineConfig {
        lifecycle_day_secs: Some(1),
        archive: ArchiveConfig {
            chunk_size,
            container_bytes,
            compact_below,
            restore_delays: RestoreDelays::scaled(),
        },
        ..EngineConfig::default()
    };
    let engine = Engine::new(meta, chunks, keys, log, cfg, layout, instance).unwrap();
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
    Fx {
        engine,
        bucket,
        dir,
    }
}

fn data(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + seed * 7919) % 251) as u8)
        .collect()
}

async fn put_glacier(fx: &Fx, key: &str, bytes: Vec<u8>) {
    let body = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(bytes))]));
    fx.engine
        .put_object(
            &fx.bucket,
            key,
            body,
            WriteSpec {
                max_len: 1 << 30,
                ..Default::default()
            },
            ObjectAttrs {
                storage_class: "GLACIER".into(),
                ..Default::default()
            },
            Precondition::None,
        )
        .await
        .unwrap();
}

async fn collect(mut s: ReadStream) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    while let Some(p) = s.next().await {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

async fn version(fx: &Fx, key: &str) -> VersionRecord {
    fx.engine.version("b", key, None).await.unwrap()
}

fn extent(v: &VersionRecord) -> ArchiveExtent {
    v.archive
        .as_ref()
        .unwrap()
        .extent
        .clone()
        .expect("repacked")
}

async fn restored(fx: &Fx, key: &str) -> Vec<u8> {
    let v = version(fx, key).await;
    collect(
        fx.engine
            .archived_bytes(&fx.bucket, key, &v, &Default::default())
            .await
            .unwrap(),
    )
    .await
    .unwrap()
}

async fn pending(fx: &Fx) -> usize {
    fx.engine
        .meta_call(|m| m.archive_queue_lengths())
        .await
        .unwrap()
        .0
}

/// Runs the repack worker until the queue is empty (bounded: 30 s).
async fn repack_all(fx: &Fx, w: &mut ArchiveWorker) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pending(fx).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "repack did not finish"
        );
        if w.work().await.unwrap() == WorkState::Idle {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn containers(fx: &Fx) -> Vec<ContainerRecord> {
    fx.engine.meta_call(|m| m.list_containers()).await.unwrap()
}

/// Shard files of one blob on all disks.
fn shard_files(dir: &Path, blob: &[u8; 16]) -> usize {
    fn walk(p: &Path, prefix: &str, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, prefix, n);
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("disks"), &hex::encode(blob), &mut n);
    n
}

fn ident(key: &str, v: &VersionRecord) -> FrameIdentity {
    FrameIdentity {
        bucket: "b".into(),
        key: key.into(),
        version_id: v.version_id.clone(),
        len: v.size,
        frame_size: FRAME_SIZE,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_versions_share_chunks_and_restore_byte_exact() {
    let cs = 64 * 1024;
    let fx = fixture(cs, 1 << 30, 0.5).await;
    let mut objects: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("k{i:03}"), data(i, (i * 37) % 5000)))
        .collect();
    // One version of three frames spanning many chunks.
    objects.push(("big".into(), data(999, 2 * FRAME_SIZE as usize + 500_000)));
    for (k, d) in &objects {
        put_glacier(&fx, k, d.clone()).await;
    }
    let mut w = ArchiveWorker::new(fx.engine.clone());
    repack_all(&fx, &mut w).await;

    let cs_all = containers(&fx).await;
    assert_eq!(cs_all.len(), 1, "one container holds them all");
    let c = &cs_all[0];
    let sealed: u64 = objects
        .iter()
        .map(|(_, d)| sealed_len(d.len() as u64, FRAME_SIZE))
        .sum();
    assert_eq!(c.bytes, sealed, "extents back to back, nothing else");
    assert_eq!(c.extents, objects.len() as u64);
    let ideal = sealed.div_ceil(cs as u64) as u32;
    assert!(
        c.next_chunk <= ideal + 1,
        "{} chunks for {sealed} sealed bytes (ideal {ideal})",
        c.next_chunk
    );
    // k + m shard files per chunk, not per object.
    assert_eq!(shard_files(fx.dir.path(), &c.id), c.next_chunk as usize * 6);
    assert!(
        c.next_chunk < objects.len() as u32 / 5,
        "not a chunk per object"
    );
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (k, d) in &objects {
        assert_eq!(&restored(&fx, k).await, d, "{k}");
        let e = extent(&version(&fx, k).await);
        assert!(e.is_packed() && e.container == c.id && e.frame_size == FRAME_SIZE);
        spans.push((e.offset, e.offset + e.sealed_len));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "extents overlap: {w:?}");
    }
    // A range read opens only the frames it covers, across chunk boundaries.
    let v = version(&fx, "big").await;
    let e = extent(&v);
    let d = &objects.last().unwrap().1;
    for r in [1_048_570..1_048_590u64, 0..1, 2_597_000..d.len() as u64] {
        let got = collect(
            fx.engine
                .read_extent(&fx.bucket, "big", &v, &e, r.clone(), &Default::default())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(got, &d[r.start as usize..r.end as usize]);
    }
    // The standard-tier chunks went to GC.
    let mut gc = GcWorker::new(fx.engine.clone());
    while gc.work().await.unwrap() == WorkState::Busy {}
    assert!(
        fx.engine
            .meta_call(|m| m.gc_pending(i64::MAX, 10))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_version_stays_unreadable_in_its_shared_chunk() {
    let fx = fixture(64 * 1024, 1 << 30, 0.5).await;
    let keys: Vec<String> = (0..12).map(|i| format!("doc{i}")).collect();
    let text = |k: &str| {
        format!("{k}: confidential record ")
            .repeat(170)
            .into_bytes()
    };
    for k in &keys {
        put_glacier(&fx, k, text(k)).await;
    }
    let mut w = ArchiveWorker::new(fx.engine.clone());
    repack_all(&fx, &mut w).await;
    let victim = "doc5";
    let vv = version(&fx, victim).await;
    let ve = extent(&vv);
    let before = collect(fx.engine.read_sealed_extent(&ve).await.unwrap())
        .await
        .unwrap();
    assert!(
        !before.windows(16).any(|w| w == &b"confidential rec"[..]),
        "no plaintext in the sealed extent"
    );
    // It shares its chunk with others.
    let neighbours = {
        let mut n = 0;
        for k in &keys {
            let e = extent(&version(&fx, k).await);
            if k != victim && e.offset / 65536 == ve.offset / 65536 {
                n += 1;
            }
        }
        n
    };
    assert!(neighbours >= 2, "{neighbours}");
    // While it lives, its own key opens its frame (so the checks below can fail).
    let own = fx.engine.version_key(&fx.bucket, &vv.data).await.unwrap();
    assert!(open_frame(&own, &ident(victim, &vv), 0, BytesMut::from(&before[..])).is_ok());
    drop(own);

    fx.engine
        .delete_object(
            &fx.bucket,
            victim,
            DeleteRequest {
                version_id: None,
                bypass_governance: false,
                actor: "u".into(),
                reason: DeleteReason::UserRequest { request_id: None },
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        fx.engine.version("b", victim, None).await,
        Err(EngineError::Meta(_))
    ));
    // The destruction path (the GC item of the delete): the data key is destroyed in the key
    // store, the shared chunks stay, and the record says so.
    let mut gc = GcWorker::new(fx.engine.clone());
    for _ in 0..5 {
        gc.work().await.unwrap();
    }
    let dek = vv.data.dek_ref().expect("a version with data has a key");
    assert!(
        !fx.engine.keys().holds(&dek).unwrap(),
        "the key is destroyed"
    );
    assert!(fx.engine.version_key(&fx.bucket, &vv.data).await.is_err());
    let read = fx
        .engine
        .read_extent(
            &fx.bucket,
            victim,
            &vv,
            &ve,
            0..vv.size,
            &Default::default(),
        )
        .await;
    assert!(read.is_err(), "the engine cannot open the extent any more");
    let recs = fx.engine.destruction_log().find("b", victim).unwrap();
    assert_eq!(recs.len(), 1, "one destruction record");
    let r = &recs[0].1;
    assert_eq!(r.key_id, format!("dek:{}", vv.data.dek_id));
    assert_eq!(r.shards_removed, 0, "the shared chunks are not deleted");
    assert!(
        r.verification.contains("sealed archive extent")
            && r.verification.contains(&hex::encode(ve.container)),
        "{}",
        r.verification
    );
    // The container chunk is still there and readable at the container layer...
    let after = collect(fx.engine.read_sealed_extent(&ve).await.unwrap())
        .await
        .unwrap();
    assert_eq!(after, before);
    // ...but no key the system still holds opens the victim's frame (nor a new one).
    let mut tried = 0;
    for k in keys.iter().filter(|k| *k != victim) {
        let v = version(&fx, k).await;
        let dek = fx.engine.version_key(&fx.bucket, &v.data).await.unwrap();
        let frame = BytesMut::from(&after[..]);
        assert!(open_frame(&dek, &ident(victim, &vv), 0, frame).is_err());
        tried += 1;
    }
    let frame = BytesMut::from(&after[..]);
    assert!(open_frame(&DataKey::generate(), &ident(victim, &vv), 0, frame).is_err());
    assert_eq!(tried, keys.len() - 1);
    // The others restore byte-exact.
    for k in keys.iter().filter(|k| *k != victim) {
        assert_eq!(restored(&fx, k).await, text(k));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_around_a_chunk_write_loses_nothing_and_dead_bytes_are_counted() {
    let cs = 16 * 1024;
    let fx = fixture(cs, 1 << 30, 0.5).await;
    let objects: Vec<(String, Vec<u8>)> =
        (0..10).map(|i| (format!("c{i}"), data(i, 3000))).collect();
    for (k, d) in &objects {
        put_glacier(&fx, k, d.clone()).await;
    }
    let layout = fx
        .engine
        .meta_call(|m| m.archive_layout())
        .await
        .unwrap()
        .unwrap();
    // A writer seals five versions, writes their chunk, and dies before committing.
    let mut dead = 0;
    {
        let mut wr: ContainerWriter<()> =
            ContainerWriter::new(fx.engine.clone(), WRITER_REPACK, 1 << 30);
        for (k, d) in objects.iter().take(5) {
            let v = version(&fx, k).await;
            let dek = fx.engine.version_key(&fx.bucket, &v.data).await.unwrap();
            let mut sealer = FrameSealer::new(dek, ident(k, &v));
            let mut out = BytesMut::new();
            sealer.push(d, &mut out).unwrap();
            sealer.finish(&mut out).unwrap();
            wr.begin(&layout, cs).await.unwrap();
            wr.push(&out).await.unwrap();
            wr.finish(v.size, FRAME_SIZE, ()).await.unwrap();
            dead += out.len() as u64;
        }
        wr.flush().await.unwrap();
        assert_eq!(wr.take_ready().len(), 5);
    }
    assert_eq!(pending(&fx).await, 10, "nothing committed");
    // A worker dies after one unit (some chunks written, some extents only buffered).
    {
        let mut w = ArchiveWorker::new(fx.engine.clone());
        w.work().await.unwrap();
    }
    // The next one finishes: every version repacked once, all restore.
    let mut w = ArchiveWorker::new(fx.engine.clone());
    repack_all(&fx, &mut w).await;
    for (k, d) in &objects {
        assert_eq!(&restored(&fx, k).await, d, "{k}");
    }
    let cs_all = containers(&fx).await;
    assert_eq!(cs_all.len(), 1, "the writer's container was resumed");
    let c = &cs_all[0];
    assert_eq!(c.extents, 10);
    let live: u64 = objects
        .iter()
        .map(|(_, d)| sealed_len(d.len() as u64, FRAME_SIZE))
        .sum();
    assert!(c.bytes >= live + dead, "{} < {live} + {dead}", c.bytes);
    // The audit counts what no version references.
    let mut comp = CompactionWorker::new(fx.engine.clone());
    comp.work().await.unwrap();
    let st = comp.status();
    assert_eq!(st["live_bytes"], live);
    assert_eq!(st["dead_bytes"], c.bytes - live);
    // And a crash after the commits loses nothing: a new worker finds nothing to do.
    let mut w = ArchiveWorker::new(fx.engine.clone());
    assert_eq!(w.work().await.unwrap(), WorkState::Idle);
    for (k, d) in &objects {
        assert_eq!(&restored(&fx, k).await, d, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_moves_sealed_extents_verbatim_and_frees_containers() {
    let cs = 16 * 1024;
    let fx = fixture(cs, 40_000, 0.5).await;
    let objects: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("m{i:02}"), data(i, 3000)))
        .collect();
    for (k, d) in &objects {
        put_glacier(&fx, k, d.clone()).await;
    }
    let mut w = ArchiveWorker::new(fx.engine.clone());
    repack_all(&fx, &mut w).await;
    let before = containers(&fx).await;
    let sealed: Vec<_> = before.iter().filter(|c| c.sealed).cloned().collect();
    assert_eq!(sealed.len(), 2, "{before:?}");
    let mut sealed_bytes = std::collections::HashMap::new();
    for (k, _) in objects.iter().step_by(5) {
        let e = extent(&version(&fx, k).await);
        let s = collect(fx.engine.read_sealed_extent(&e).await.unwrap())
            .await
            .unwrap();
        sealed_bytes.insert(k.clone(), (e, s));
    }
    for (i, (k, _)) in objects.iter().enumerate() {
        if i % 5 != 0 {
            fx.engine
                .delete_object(
                    &fx.bucket,
                    k,
                    DeleteRequest {
                        version_id: None,
                        bypass_governance: false,
                        actor: "u".into(),
                        reason: DeleteReason::UserRequest { request_id: None },
                    },
                )
                .await
                .unwrap();
        }
    }
    let mut comp = CompactionWorker::new(fx.engine.clone());
    comp.work().await.unwrap();
    let st = comp.status();
    assert_eq!(st["containers_retired"], 2, "{st}");
    let freed: u64 = sealed.iter().map(|c| c.bytes).sum();
    assert!(
        st["reclaimed_bytes"].as_u64().unwrap() >= freed * 3 / 4,
        "{st}"
    );
    let after = containers(&fx).await;
    for c in &sealed {
        assert!(after.iter().all(|a| a.id != c.id), "retired");
    }
    for (k, (old, s)) in &sealed_bytes {
        let e = extent(&version(&fx, k).await);
        if sealed.iter().any(|c| c.id == old.container) {
            assert_ne!(e.container, old.container, "{k} moved");
            assert_eq!(e.sealed_len, old.sealed_len);
            let now = collect(fx.engine.read_sealed_extent(&e).await.unwrap())
                .await
                .unwrap();
            assert_eq!(&now, s, "{k}: copied verbatim, no re-encryption");
        }
        assert_eq!(
            restored(&fx, k).await,
            objects.iter().find(|(n, _)| n == k).unwrap().1
        );
    }
    // The retired containers' chunks go through GC.
    let mut gc = GcWorker::new(fx.engine.clone());
    for _ in 0..50 {
        if gc.work().await.unwrap() == WorkState::Idle {
            break;
        }
    }
    for c in &sealed {
        assert_eq!(shard_files(fx.dir.path(), &c.id), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format1_extents_restore_and_are_resealed_by_compaction() {
    let cs = 16 * 1024;
    let fx = fixture(cs, 1 << 30, 0.9).await;
    let layout = fx
        .engine
        .meta_call(|m| m.archive_layout())
        .await
        .unwrap()
        .unwrap();
    let node = fx.engine.layout(layout.id).await.unwrap().node;
    // A container as the first archive format wrote it: no key of its own, each version's
    // extent a run of its own chunks under its own data key.
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    let rec = ContainerRecord::new(id, "format1", layout.id, cs, String::new(), Vec::new(), 0);
    fx.engine
        .meta_call(move |m| m.open_container("format1", &rec))
        .await
        .unwrap();
    let objects = [("old-a", data(1, 40_000)), ("old-b", data(2, 10_000))];
    let mut next = 0u32;
    for (k, d) in &objects {
        put_glacier(&fx, k, d.clone()).await;
        let v = version(&fx, k).await;
        let dek = fx.engine.version_key(&fx.bucket, &v.data).await.unwrap();
        let ext = ArchiveExtent {
            container: id,
            first_chunk: next,
            len: d.len() as u64,
            chunk_size: cs,
            layout: layout.id,
            offset: 0,
            sealed_len: 0,
            frame_size: 0,
        };
        for piece in d.chunks(cs as usize) {
            let n = next;
            let len = piece.len() as u64;
            fx.engine
                .meta_call(move |m| m.reserve_chunk(&id, n, len))
                .await
                .unwrap();
            fx.engine
                .chunks()
                .put_chunk(
                    &node,
                    ChunkId { blob: id, index: n },
                    &dek,
                    Bytes::copy_from_slice(piece),
                )
                .await
                .unwrap();
            next += 1;
        }
        let q = fx
            .engine
            .meta_call(|m| m.pending_archives(None, 10))
            .await
            .unwrap();
        let vkey = q.iter().find(|q| q.key == *k).unwrap().vkey.clone();
        let commit = ArchiveCommit {
            vkey,
            segments: v.data.segments.clone(),
            extent: ext,
        };
        let done = fx
            .engine
            .meta_call(move |m| m.commit_archives(&[commit], 0))
            .await
            .unwrap();
        assert_eq!(done, vec![true]);
    }
    fx.engine
        .meta_call(move |m| m.seal_container(&id))
        .await
        .unwrap();
    for (k, d) in &objects {
        assert_eq!(&restored(&fx, k).await, d, "{k}");
    }
    fx.engine
        .delete_object(
            &fx.bucket,
            "old-b",
            DeleteRequest {
                version_id: None,
                bypass_governance: false,
                actor: "u".into(),
                reason: DeleteReason::UserRequest { request_id: None },
            },
        )
        .await
        .unwrap();
    // 80% live < 90%: compaction seals old-a into frames in a packed container.
    let mut comp = CompactionWorker::new(fx.engine.clone());
    comp.work().await.unwrap();
    assert_eq!(comp.status()["containers_retired"], 1);
    let e = extent(&version(&fx, "old-a").await);
    assert!(e.is_packed() && e.container != id);
    assert_eq!(restored(&fx, "old-a").await, objects[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_kek_is_a_key_store_key_that_rotations_rewrap() {
    use crate::rotation::{RotationWorker, Target};
    let fx = fixture(64 * 1024, 1 << 30, 0.5).await;
    let objects: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("r{i}"), data(i, 3000 + i * 700)))
        .collect();
    for (k, d) in &objects {
        put_glacier(&fx, k, d.clone()).await;
    }
    let mut w = ArchiveWorker::new(fx.engine.clone());
    repack_all(&fx, &mut w).await;
    // In the key store (so a master rotation finds it), and referenced (so a backup restore
    // keeps it).
    let kek = fx
        .engine
        .meta_call(|m| m.archive_kek())
        .await
        .unwrap()
        .expect("created with the first container");
    assert!(fx.engine.keys().holds(&kek.key_ref()).unwrap());
    let refs = fx.engine.meta_call(|m| m.referenced_keys()).await.unwrap();
    assert!(refs.contains(&(kek.slot, kek.id.clone())));
    assert_eq!(
        fx.engine.meta_call(|m| m.pending_writes()).await.unwrap(),
        0,
        "its key-only intent was consumed"
    );
    let old_master = std::fs::read(fx.dir.path().join("master.key")).unwrap();
    fx.engine
        .start_rotation(Target::Bucket { bucket: "b".into() }, 1000)
        .await
        .unwrap();
    fx.engine
        .start_rotation(Target::Master, 1000)
        .await
        .unwrap();
    let mut rot = RotationWorker::new(fx.engine.clone());
    for _ in 0..50 {
        if rot.work().await.unwrap() == WorkState::Idle {
            break;
        }
    }
    assert_ne!(
        std::fs::read(fx.dir.path().join("master.key")).unwrap(),
        old_master,
        "the old master key is gone"
    );
    // The retired bucket KEK is destroyed through the GC.
    let mut gc = GcWorker::new(fx.engine.clone());
    for _ in 0..5 {
        gc.work().await.unwrap();
    }
    // The inventory lists it apart from the bucket keys, wrapped by the new master key.
    let rep = fx.engine.keys_report().await.unwrap();
    assert_eq!(rep["archive_keys"][0]["id"], kek.id.as_str(), "{rep}");
    assert_eq!(rep["archive_keys"][0]["protects"]["archive_containers"], 1);
    let m = &rep["master_keys"][0];
    assert_eq!(m["state"], "current");
    assert_eq!(m["protects"]["bucket_keys"], 1, "{m}");
    assert_eq!(m["protects"]["archive_keys"], 1, "{m}");
    assert_eq!(rep["archive_keys"][0]["wrapped_by_master"], m["id"]);
    // Container keys (archive KEK, re-wrapped) and version keys (bucket KEK, re-wrapped) both
    // still open every extent.
    let b = fx.engine.bucket("b").await.unwrap().unwrap();
    for (k, d) in &objects {
        let v = version(&fx, k).await;
        let got = collect(
            fx.engine
                .archived_bytes(&b, k, &v, &Default::default())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(&got, d, "{k}");
    }
}
