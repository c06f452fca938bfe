//! Several layouts in one store: what an operator sees after restarting with another disk count
//! or another RS geometry. Chunks are always read with the layout they were written with.

mod common;

use std::fs;

use bytes::Bytes;
use common::*;
use strata_storage_node::format::ShardHeader;
use strata_storage_node::{ChunkId, ChunkService, DataKey, Layout, NodeError, ShardProblem};

fn chunk(n: usize) -> ChunkId {
    ChunkId {
        blob: rand::random(),
        index: n as u32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_every_layout_stay_readable_after_a_geometry_change() {
    let dir = tempfile::tempdir().unwrap();
    let dek = DataKey::generate();
    let a = Layout::new(1, disk_names(6), 4, 2).unwrap();
    let b = Layout::new(2, disk_names(7), 4, 2).unwrap();
    let c = Layout::new(3, disk_names(7), 5, 2).unwrap();
    let data = |n: usize| pseudo_random_bytes(10_000 + n * 977, n as u64);

    // Yesterday: `strata serve --disks 6`, RS(4, 2).
    let old: Vec<ChunkId> = (0..12).map(chunk).collect();
    {
        let store = store_with(dir.path(), 6);
        for (n, id) in old.iter().enumerate() {
            store
                .put_chunk(&a, *id, &dek, Bytes::from(data(n)))
                .await
                .unwrap();
        }
    }
    // Today: the same disks plus disk6, and new layouts next to the old one.
    let store = store_with(dir.path(), 7);
    let new_b: Vec<ChunkId> = (100..112).map(chunk).collect();
    let new_c: Vec<ChunkId> = (200..212).map(chunk).collect();
    for id in &new_b {
        store
            .put_chunk(&b, *id, &dek, Bytes::from(data(id.index as usize)))
            .await
            .unwrap();
    }
    for id in &new_c {
        store
            .put_chunk(&c, *id, &dek, Bytes::from(data(id.index as usize)))
            .await
            .unwrap();
    }
    let everything: Vec<(&Layout, ChunkId, Vec<u8>)> = old
        .iter()
        .enumerate()
        .map(|(n, id)| (&a, *id, data(n)))
        .chain(new_b.iter().map(|id| (&b, *id, data(id.index as usize))))
        .chain(new_c.iter().map(|id| (&c, *id, data(id.index as usize))))
        .collect();
    for (layout, id, bytes) in &everything {
        let (got, report) = store
            .get_chunk_with_report(layout, *id, &dek)
            .await
            .unwrap();
        assert!(got == *bytes, "layout {} chunk {id:?}", layout.id);
        assert!(report.bad_shards.is_empty());
        let stat = store.stat_chunk(layout, *id).await.unwrap();
        assert_eq!(stat.total_shards, layout.total_shards());
        // Every shard file says which layout and geometry it belongs to.
        for s in 0..layout.total_shards() {
            let file = fs::read(shard(&store, layout, *id, s)).unwrap();
            let header = ShardHeader::parse(&file).unwrap();
            assert_eq!(
                (header.layout_id, header.data_shards, header.parity_shards),
                (layout.id, layout.data_shards, layout.parity_shards)
            );
        }
    }
    // The new layouts really use the new disk.
    assert!(new_b.iter().any(|id| {
        (0..6).any(|s| {
            let path = shard(&store, &b, *id, s);
            path.starts_with(dir.path().join("disk6")) && path.exists()
        })
    }));
    // Read with the wrong layout, a chunk is an error, never other bytes.
    for (layout, id, _) in everything.iter().step_by(5) {
        let wrong = if layout.id == 2 { &c } else { &b };
        assert!(store.get_chunk(wrong, *id, &dek).await.is_err());
    }

    // Degraded: two disks gone. Every layout loses at most two shards per chunk.
    fs::remove_dir_all(dir.path().join("disk1")).unwrap();
    fs::remove_dir_all(dir.path().join("disk4")).unwrap();
    for (layout, id, bytes) in &everything {
        let (got, report) = store
            .get_chunk_with_report(layout, *id, &dek)
            .await
            .unwrap();
        assert!(got == *bytes, "degraded layout {} chunk {id:?}", layout.id);
        assert!(report.bad_shards.len() <= 2);
        assert!(report.bad_shards.iter().all(
            |s| s.problem == ShardProblem::Missing && (s.disk == "disk1" || s.disk == "disk4")
        ));
    }
    // The old layout places on disk0..disk5 only: it lost exactly two shards of every chunk.
    for id in &old {
        let (_, report) = store.get_chunk_with_report(&a, *id, &dek).await.unwrap();
        assert_eq!(report.bad_shards.len(), 2);
        assert_eq!(store.stat_chunk(&a, *id).await.unwrap().healthy_shards, 4);
    }
    let report = store
        .scrub(&[a.clone(), b.clone(), c.clone()], false)
        .await
        .unwrap();
    assert_eq!(report.chunks_checked, 36);
    assert!(report.unrecoverable.is_empty() && report.unknown_layouts.is_empty());
    assert_eq!(report.unavailable_disks, vec!["disk1", "disk4"]);
}

#[tokio::test]
async fn scrub_tells_layouts_apart_repairs_each_and_leaves_unknown_ones_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 7);
    let dek = DataKey::generate();
    let a = Layout::new(1, disk_names(6), 4, 2).unwrap();
    let c = Layout::new(3, disk_names(7), 5, 2).unwrap();
    let ids_a: Vec<ChunkId> = (0..8).map(chunk).collect();
    let ids_c: Vec<ChunkId> = (0..8).map(chunk).collect();
    for id in &ids_a {
        store
            .put_chunk(&a, *id, &dek, Bytes::from(vec![1u8; 3000]))
            .await
            .unwrap();
    }
    for id in &ids_c {
        store
            .put_chunk(&c, *id, &dek, Bytes::from(vec![2u8; 3000]))
            .await
            .unwrap();
    }
    let both = [a.clone(), c.clone()];
    let clean = store.scrub(&both, false).await.unwrap();
    assert_eq!(
        (
            clean.chunks_checked,
            clean.shards_checked,
            clean.shards_healthy
        ),
        (16, 8 * 6 + 8 * 7, 8 * 6 + 8 * 7)
    );
    assert!(clean.faults.is_empty() && clean.unknown_files.is_empty());

    // One shard of each layout damaged: the scrub finds the layout from the headers.
    fs::remove_file(shard(&store, &a, ids_a[0], 2)).unwrap();
    let victim = shard(&store, &c, ids_c[0], 6);
    let mut bytes = fs::read(&victim).unwrap();
    bytes[200] ^= 0x10;
    fs::write(&victim, bytes).unwrap();

    // A scrub that knows only layout 3 checks and repairs only layout-3 chunks.
    let partial = store.scrub(std::slice::from_ref(&c), true).await.unwrap();
    assert_eq!(partial.chunks_checked, 8);
    assert_eq!(partial.shards_repaired, 1);
    assert_eq!(partial.unknown_layouts.len(), 8);
    assert!(
        partial
            .unknown_layouts
            .iter()
            .all(|u| u.ends_with("layout 1"))
    );
    assert!(!shard(&store, &a, ids_a[0], 2).exists(), "left alone");

    let full = store.scrub(&both, true).await.unwrap();
    assert_eq!(full.shards_repaired, 1);
    let after = store.scrub(&both, false).await.unwrap();
    assert!(after.faults.is_empty(), "{:#?}", after.faults);
    for id in &ids_a {
        assert!(store.get_chunk(&a, *id, &dek).await.unwrap() == vec![1u8; 3000]);
    }
    for id in &ids_c {
        assert!(store.get_chunk(&c, *id, &dek).await.unwrap() == vec![2u8; 3000]);
    }
    // Two different layouts under one id are a caller bug, refused.
    let clash = Layout::new(1, disk_names(7), 4, 2).unwrap();
    assert!(matches!(
        store.scrub(&[a, clash], false).await,
        Err(NodeError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_layout_disk_this_store_lacks_reads_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 7);
    let dek = DataKey::generate();
    let a = Layout::new(1, disk_names(7), 4, 2).unwrap();
    let id = chunk(0);
    store
        .put_chunk(&a, id, &dek, Bytes::from(vec![7u8; 5000]))
        .await
        .unwrap();
    // The same placement with one disk name this store does not know: the shard there is
    // simply unavailable, and the chunk still decodes from the others.
    let mut names = disk_names(7);
    let renamed = a.disk_for_shard(id, 1).to_owned();
    let at = names.iter().position(|n| *n == renamed).unwrap();
    names[at] = "disk-gone".into();
    let seen_elsewhere = Layout::new(1, names, 4, 2).unwrap();
    let (got, report) = store
        .get_chunk_with_report(&seen_elsewhere, id, &dek)
        .await
        .unwrap();
    assert!(got == vec![7u8; 5000]);
    assert_eq!(report.bad_shards.len(), 1);
    assert_eq!(report.bad_shards[0].disk, "disk-gone");
    assert_eq!(report.bad_shards[0].problem, ShardProblem::Missing);
}
