//! Puts are create-only and every write has its own AES-GCM nonce: one DEK never encrypts two
//! plaintexts under one nonce, whatever the caller does with chunk ids.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use strata_storage_node::format::{HEADER_LEN, ShardHeader};
use strata_storage_node::{ChunkId, ChunkService, DataKey, Layout, LocalChunkStore, NodeError};

/// Every shard file of `id` under `layout`, by path.
fn snapshot(store: &LocalChunkStore, layout: &Layout, id: ChunkId) -> BTreeMap<PathBuf, Vec<u8>> {
    (0..layout.total_shards())
        .map(|s| shard(store, layout, id, s))
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The nonce all shards of a chunk share (asserting that they do).
fn nonce_of(store: &LocalChunkStore, layout: &Layout, id: ChunkId) -> [u8; 12] {
    let nonces: BTreeSet<[u8; 12]> = snapshot(store, layout, id)
        .values()
        .map(|f| ShardHeader::parse(f).unwrap().nonce)
        .collect();
    assert_eq!(nonces.len(), 1, "shards of one put disagree on the nonce");
    *nonces.first().unwrap()
}

#[tokio::test]
async fn a_second_put_of_an_id_is_refused_so_no_nonce_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 7);
    let l = layout6();
    let dek = DataKey::generate();
    let id = random_id();
    let first = pseudo_random_bytes(30_000, 1);
    store
        .put_chunk(&l, id, &dek, Bytes::from(first.clone()))
        .await
        .unwrap();
    let before = snapshot(&store, &l, id);
    assert_eq!(before.len(), 6);
    let nonce = nonce_of(&store, &l, id);

    // Same id, same DEK, other bytes: refused, nothing written or replaced.
    let second = store
        .put_chunk(&l, id, &dek, Bytes::from(pseudo_random_bytes(30_000, 2)))
        .await;
    assert!(
        matches!(second, Err(NodeError::AlreadyExists)),
        "{second:?}"
    );
    // Also under another layout, whose placement puts shards elsewhere.
    let wider = Layout::new(2, disk_names(7), 5, 2).unwrap();
    let third = store
        .put_chunk(&wider, id, &dek, Bytes::from_static(b"other"))
        .await;
    assert!(matches!(third, Err(NodeError::AlreadyExists)), "{third:?}");
    assert_eq!(snapshot(&store, &l, id), before);
    assert_eq!(files_of_chunk(dir.path(), id).len(), 6);
    assert_eq!(nonce_of(&store, &l, id), nonce);
    assert!(store.get_chunk(&l, id, &dek).await.unwrap() == first);
    for disk in 0..7 {
        let tmp = dir.path().join(format!("disk{disk}/tmp"));
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "{}", tmp.display());
    }

    // Once deleted, the id may be written again: under a fresh nonce.
    store.delete_chunk(&l, id).await.unwrap();
    store
        .put_chunk(&l, id, &dek, Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_ne!(nonce_of(&store, &l, id), nonce);
    assert_eq!(&store.get_chunk(&l, id, &dek).await.unwrap()[..], b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_of_distinct_chunks_differ_and_equal_plaintexts_encrypt_differently() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let l = layout6();
    let dek = DataKey::generate();
    let same = Bytes::from(vec![0x42u8; 4096]);
    let blob: [u8; 16] = rand::random();
    let ids: Vec<ChunkId> = (0..150).map(|index| ChunkId { blob, index }).collect();
    for id in &ids {
        store.put_chunk(&l, *id, &dek, same.clone()).await.unwrap();
    }
    let nonces: BTreeSet<[u8; 12]> = ids.iter().map(|id| nonce_of(&store, &l, *id)).collect();
    assert_eq!(nonces.len(), ids.len(), "a nonce repeated across chunks");
    // The first data shard holds ciphertext: same plaintext, same key, never the same bytes.
    let bodies: BTreeSet<Vec<u8>> = ids
        .iter()
        .map(|id| fs::read(shard(&store, &l, *id, 0)).unwrap()[HEADER_LEN..].to_vec())
        .collect();
    assert_eq!(bodies.len(), ids.len());
    for id in ids.iter().step_by(10) {
        assert!(store.get_chunk(&l, *id, &dek).await.unwrap() == same);
    }
}

#[tokio::test]
async fn a_put_interrupted_after_some_shards_were_published_leaves_a_partial_chunk_that_delete_removes()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let l = layout6();
    let dek = DataKey::generate();
    let id = random_id();
    // A regular file where the fan-out directory of shard 3 should go: that shard's publish
    // fails after the other five were published (the put's real failure path).
    let blob_hex = hex::encode(id.blob);
    let blocker = store
        .shard_disk(&l, id, 3)
        .unwrap()
        .join("shards")
        .join(&blob_hex[0..2]);
    fs::write(&blocker, b"not a directory").unwrap();
    let data = pseudo_random_bytes(20_000, 3);
    let interrupted = store
        .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
        .await;
    assert!(
        matches!(interrupted, Err(NodeError::Io(_))),
        "{interrupted:?}"
    );
    let partial = files_of_chunk(dir.path(), id);
    assert_eq!(partial.len(), 5, "{partial:?}");
    // The partial chunk is readable (it is never committed by the gateway, GC deletes it)...
    assert!(store.get_chunk(&l, id, &dek).await.unwrap() == data);
    // ...and its id is taken: a retry must use a new id.
    let retry = store
        .put_chunk(&l, id, &dek, Bytes::from_static(b"retry"))
        .await;
    assert!(matches!(retry, Err(NodeError::AlreadyExists)), "{retry:?}");
    assert_eq!(files_of_chunk(dir.path(), id), partial);
    store.delete_chunk(&l, id).await.unwrap();
    assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());

    // The same after a crash that published only two shards (fewer than k): unreadable, not
    // rebuildable, still refused, removed by delete.
    fs::remove_file(&blocker).unwrap();
    let id = random_id();
    store
        .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
        .await
        .unwrap();
    for s in [0, 2, 3, 5] {
        fs::remove_file(shard(&store, &l, id, s)).unwrap();
    }
    assert!(matches!(
        store.get_chunk(&l, id, &dek).await,
        Err(NodeError::Unrecoverable {
            available: 2,
            needed: 4
        })
    ));
    assert!(matches!(
        store
            .put_chunk(&l, id, &dek, Bytes::from_static(b"x"))
            .await,
        Err(NodeError::AlreadyExists)
    ));
    let scrub = store.scrub(std::slice::from_ref(&l), true).await.unwrap();
    assert_eq!(scrub.unrecoverable.len(), 1);
    assert_eq!(scrub.shards_repaired, 0);
    store.delete_chunk(&l, id).await.unwrap();
    assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());
    store
        .put_chunk(&l, id, &dek, Bytes::from_static(b"fresh"))
        .await
        .unwrap();
    assert_eq!(&store.get_chunk(&l, id, &dek).await.unwrap()[..], b"fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_id_store_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(test_store(dir.path()));
    let l = layout6();
    let dek = std::sync::Arc::new(DataKey::generate());
    for round in 0..10u64 {
        let id = random_id();
        let tasks: Vec<_> = (0..4u64)
            .map(|n| {
                let (store, dek, l) = (store.clone(), dek.clone(), l.clone());
                tokio::spawn(async move {
                    let data = pseudo_random_bytes(50_000, round * 10 + n);
                    let result = store
                        .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
                        .await;
                    (data, result)
                })
            })
            .collect();
        let mut stored = Vec::new();
        for task in tasks {
            let (data, result) = tokio::time::timeout(std::time::Duration::from_secs(60), task)
                .await
                .unwrap()
                .unwrap();
            match result {
                Ok(()) => stored.push(data),
                Err(NodeError::AlreadyExists) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(stored.len(), 1, "round {round}");
        assert!(store.get_chunk(&l, id, &dek).await.unwrap() == stored[0]);
        assert_eq!(nonce_of(&store, &l, id).len(), 12);
    }
}
