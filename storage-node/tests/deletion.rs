//! Deleted chunks stay deleted: an interrupted delete is completed by scrub, never healed back,
//! and a heal racing a delete leaves nothing behind.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use strata_storage_node::format::Tombstone;
use strata_storage_node::{
    ChunkId, ChunkService, DataKey, Layout, LocalChunkStore, NodeConfig, NodeError,
};

/// What a delete has durably done before it removes its first shard: a tombstone on every disk
/// of the layout (the documented format, written here by hand).
fn write_tombstones(store: &LocalChunkStore, layout: &Layout, id: ChunkId) {
    for disk in &layout.disks {
        let tombstone = Tombstone {
            chunk: id,
            layout_id: layout.id,
            created_ms: 1,
        };
        fs::write(store.tombstone_path(disk, id).unwrap(), tombstone.encode()).unwrap();
    }
}

#[tokio::test]
async fn an_interrupted_delete_is_completed_by_scrub_and_never_healed() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let l = layout6();
    let dek = DataKey::generate();
    let (deleted, torn, damaged) = (random_id(), random_id(), random_id());
    for id in [deleted, torn, damaged] {
        store
            .put_chunk(&l, id, &dek, Bytes::from(pseudo_random_bytes(40_000, 9)))
            .await
            .unwrap();
    }
    // A delete of `deleted` cut off after its tombstones and two of six shard removals: four
    // shards (= k) remain, enough to rebuild the chunk.
    write_tombstones(&store, &l, deleted);
    fs::remove_file(shard(&store, &l, deleted, 0)).unwrap();
    fs::remove_file(shard(&store, &l, deleted, 5)).unwrap();
    // A crash while the first tombstone of `torn` was being written: an empty file on one disk.
    fs::write(store.tombstone_path("disk3", torn).unwrap(), b"").unwrap();
    fs::remove_file(shard(&store, &l, torn, 1)).unwrap();
    // Control: a plain lost shard, which scrub must repair.
    fs::remove_file(shard(&store, &l, damaged, 2)).unwrap();

    // Heal refuses chunks being deleted, and a put of their ids is refused.
    for id in [deleted, torn] {
        assert!(matches!(store.heal(&l, id).await, Err(NodeError::NotFound)));
        assert!(matches!(
            store
                .put_chunk(&l, id, &dek, Bytes::from_static(b"x"))
                .await,
            Err(NodeError::AlreadyExists)
        ));
    }
    assert!(!shard(&store, &l, deleted, 0).exists() && !shard(&store, &l, deleted, 5).exists());
    assert!(!shard(&store, &l, torn, 1).exists());

    let layouts = std::slice::from_ref(&l);
    let looked = store.scrub(layouts, false).await.unwrap();
    assert_eq!(looked.deletions_pending.len(), 2, "{looked:#?}");
    assert_eq!((looked.deletions_completed, looked.shards_repaired), (0, 0));
    assert_eq!(
        looked.chunks_checked, 1,
        "tombstoned chunks are not scrubbed as live"
    );

    let repaired = store.scrub(layouts, true).await.unwrap();
    assert_eq!(repaired.deletions_completed, 2, "{repaired:#?}");
    assert!(repaired.deletions_pending.is_empty());
    assert_eq!(
        repaired.shards_repaired, 1,
        "only the control chunk is rebuilt"
    );
    for id in [deleted, torn] {
        assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());
        assert!(matches!(
            store.get_chunk(&l, id, &dek).await,
            Err(NodeError::NotFound)
        ));
    }
    assert_eq!(files_of_chunk(dir.path(), damaged).len(), 6);
    let after = store.scrub(layouts, true).await.unwrap();
    assert_eq!(
        (
            after.deletions_completed,
            after.deletions_pending.len(),
            after.chunks_checked
        ),
        (0, 0, 1)
    );
    assert!(after.faults.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_racing_delete_leaves_no_shard() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::under(dir.path(), 6);
    config.heal_on_read = true;
    let store = Arc::new(LocalChunkStore::open(config).unwrap());
    let l = Arc::new(layout6());
    let dek = Arc::new(DataKey::generate());
    for round in 0..24u64 {
        let id = random_id();
        let data = pseudo_random_bytes(1 << 20, round);
        store
            .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
        // Two shards lost, so every heal has real work to do while the delete runs.
        fs::remove_file(shard(&store, &l, id, (round % 6) as usize)).unwrap();
        fs::remove_file(shard(&store, &l, id, ((round + 3) % 6) as usize)).unwrap();
        let heal = {
            let (store, l) = (store.clone(), l.clone());
            tokio::spawn(async move { store.heal(&l, id).await })
        };
        // A read that finds the bad shards spawns a background heal too.
        let read = {
            let (store, l, dek) = (store.clone(), l.clone(), dek.clone());
            tokio::spawn(async move { store.get_chunk(&l, id, &dek).await })
        };
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        store.delete_chunk(&l, id).await.unwrap();
        let healed = tokio::time::timeout(Duration::from_secs(30), heal)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(healed, Ok(_) | Err(NodeError::NotFound)),
            "round {round}: {healed:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .unwrap();
        // Whatever ran first, once the delete has returned nothing can bring the chunk back:
        // check now and after the background heals have had time to run.
        assert_eq!(
            files_of_chunk(dir.path(), id),
            Vec::<PathBuf>::new(),
            "round {round}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all_files(dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn tombstones_stay_while_k_disks_are_away_so_their_shards_are_not_resurrected() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    // Wide parity: k = 2, so two returning disks would hold enough shards to rebuild.
    let l = Layout::new(5, disk_names(6), 2, 4).unwrap();
    let dek = DataKey::generate();
    let id = random_id();
    store
        .put_chunk(&l, id, &dek, Bytes::from(pseudo_random_bytes(9_000, 4)))
        .await
        .unwrap();
    // Two disks unmounted during the delete.
    let away = |n: usize| {
        (
            dir.path().join(format!("disk{n}")),
            dir.path().join(format!("disk{n}.away")),
        )
    };
    for n in [1, 4] {
        let (disk, aside) = away(n);
        fs::rename(disk, aside).unwrap();
    }
    store.delete_chunk(&l, id).await.unwrap();
    let visible = files_of_chunk(dir.path(), id);
    assert!(
        visible
            .iter()
            .all(|p| p.to_string_lossy().contains(".away/shards/")
                || p.to_string_lossy().contains("/tombstones/")),
        "{visible:?}"
    );
    assert_eq!(
        visible
            .iter()
            .filter(|p| p.to_string_lossy().contains("/tombstones/"))
            .count(),
        4,
        "a tombstone on every available disk"
    );
    let pending = store.scrub(std::slice::from_ref(&l), true).await.unwrap();
    assert_eq!(pending.deletions_pending.len(), 1, "{pending:#?}");

    // The disks come back with two shards of the chunk: k of them.
    for n in [1, 4] {
        let (disk, aside) = away(n);
        fs::rename(aside, disk).unwrap();
    }
    assert!(matches!(store.heal(&l, id).await, Err(NodeError::NotFound)));
    let done = store.scrub(std::slice::from_ref(&l), true).await.unwrap();
    assert_eq!(
        (done.deletions_completed, done.shards_repaired),
        (1, 0),
        "{done:#?}"
    );
    assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());

    // With one disk away and k = 4, the shard it keeps can never be rebuilt: the delete
    // completes at once.
    let l = layout6();
    let id = random_id();
    store
        .put_chunk(&l, id, &dek, Bytes::from_static(b"short-lived"))
        .await
        .unwrap();
    let (disk, aside) = away(2);
    fs::rename(&disk, &aside).unwrap();
    store.delete_chunk(&l, id).await.unwrap();
    fs::rename(&aside, &disk).unwrap();
    let left = files_of_chunk(dir.path(), id);
    assert!(
        left.len() <= 1 && left.iter().all(|p| p.starts_with(&disk)),
        "{left:?}"
    );
}
