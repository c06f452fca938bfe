//! The chunk store against real directories on disk: what an operator or the gateway would check.

mod common;

use std::fs;
use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use strata_storage_node::{
    ChunkId, ChunkService, DataKey, Layout, LocalChunkStore, NodeConfig, NodeError, ShardProblem,
};

#[tokio::test]
async fn round_trip_many_sizes_and_stat() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    for (n, len) in [
        0usize,
        1,
        2,
        15,
        16,
        17,
        4095,
        4096,
        65_537,
        1 << 20,
        (5 << 20) + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let id = ChunkId {
            blob: [n as u8 + 1; 16],
            index: n as u32,
        };
        let data = pseudo_random_bytes(len, n as u64);
        store
            .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
        let got = store.get_chunk(&l, id, &dek).await.unwrap();
        assert_eq!(got.len(), len);
        assert!(got == data, "chunk of {len} bytes came back different");
        let stat = store.stat_chunk(&l, id).await.unwrap();
        assert_eq!(
            (stat.len, stat.healthy_shards, stat.total_shards),
            (len as u64, 6, 6)
        );
    }
}

#[tokio::test]
async fn shards_land_on_six_distinct_disks_under_opaque_names() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let id = random_id();
    store
        .put_chunk(&l, id, &DataKey::generate(), Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    let shard_files: Vec<PathBuf> = all_files(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/shards/"))
        .collect();
    assert_eq!(shard_files.len(), 6);
    let disks: std::collections::BTreeSet<_> = shard_files
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_owned()
        })
        .collect();
    assert_eq!(disks.len(), 6, "{shard_files:?}");
    for (shard, path) in (0..6).map(|s| (s, shard(&store, &l, id, s))) {
        assert!(path.exists());
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&hex::encode(id.blob))
        );
        assert!(
            path.to_str()
                .unwrap()
                .ends_with(&format!(".{}.{shard}", id.index))
        );
    }
}

#[tokio::test]
async fn no_file_under_the_data_dir_contains_the_plaintext() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let marker = b"STRATA-PLAINTEXT-MARKER-0123456789";
    let data: Vec<u8> = marker.iter().copied().cycle().take(3 << 20).collect();
    for index in 0..3 {
        store
            .put_chunk(
                &l,
                ChunkId {
                    blob: [9; 16],
                    index,
                },
                &dek,
                Bytes::from(data.clone()),
            )
            .await
            .unwrap();
    }
    // A 16-byte window of the pattern is enough to recognise it; check every file, every offset.
    let needle = &marker[..16];
    let files = all_files(dir.path());
    assert!(files.len() >= 18);
    for file in files {
        let bytes = fs::read(&file).unwrap();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext found in {}",
            file.display()
        );
    }
    // And the data is still there.
    assert!(
        store
            .get_chunk(
                &l,
                ChunkId {
                    blob: [9; 16],
                    index: 1
                },
                &dek
            )
            .await
            .unwrap()
            == data
    );
}

#[tokio::test]
async fn reads_survive_m_removed_disks_but_not_m_plus_one() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let chunks: Vec<(ChunkId, Vec<u8>)> = (0..12)
        .map(|n| (random_id(), pseudo_random_bytes(100_000 + n * 7, n as u64)))
        .collect();
    for (id, data) in &chunks {
        store
            .put_chunk(&l, *id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
    }
    fs::remove_dir_all(dir.path().join("disk1")).unwrap();
    fs::remove_dir_all(dir.path().join("disk4")).unwrap();
    for (id, data) in &chunks {
        let (got, report) = store.get_chunk_with_report(&l, *id, &dek).await.unwrap();
        assert!(got == *data);
        assert!(
            report
                .bad_shards
                .iter()
                .all(|b| b.problem == ShardProblem::Missing)
        );
        assert_eq!(store.stat_chunk(&l, *id).await.unwrap().healthy_shards, 4);
    }
    fs::remove_dir_all(dir.path().join("disk2")).unwrap();
    for (id, _) in &chunks {
        match store.get_chunk(&l, *id, &dek).await {
            Err(NodeError::Unrecoverable {
                available: 3,
                needed: 4,
            }) => {}
            other => panic!("expected Unrecoverable, got {other:?}"),
        }
    }
    // Puts are refused while a disk is missing: a 200 must mean all k + m shards are durable.
    assert!(
        store
            .put_chunk(&l, random_id(), &dek, Bytes::from_static(b"x"))
            .await
            .is_err()
    );
    // Nothing is left behind on the disks that are still there.
    for disk in [0, 3, 5] {
        let tmp = dir.path().join(format!("disk{disk}")).join("tmp");
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "temporaries left in {}",
            tmp.display()
        );
    }
}

#[tokio::test]
async fn a_put_fails_cleanly_when_one_disk_is_unwritable_and_other_data_stays_readable() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let (kept, id) = (random_id(), random_id());
    let old = pseudo_random_bytes(50_000, 1);
    store
        .put_chunk(&l, kept, &dek, Bytes::from(old.clone()))
        .await
        .unwrap();
    // Take away the temporary directory of the disk holding shard 3 of the new chunk: it
    // cannot be made durable everywhere, so the put must fail and publish nothing.
    let tmp = store.shard_disk(&l, id, 3).unwrap().join("tmp");
    fs::remove_dir_all(&tmp).unwrap();
    let failed = store
        .put_chunk(&l, id, &dek, Bytes::from(vec![9u8; 60_000]))
        .await;
    assert!(matches!(failed, Err(NodeError::Io(_))), "{failed:?}");
    assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());
    assert!(matches!(
        store.get_chunk(&l, id, &dek).await,
        Err(NodeError::NotFound)
    ));
    assert!(store.get_chunk(&l, kept, &dek).await.unwrap() == old);
    // Nothing was published, so the id is still free once the disk is whole again.
    fs::create_dir(&tmp).unwrap();
    store
        .put_chunk(&l, id, &dek, Bytes::from(vec![9u8; 60_000]))
        .await
        .unwrap();
    assert!(store.get_chunk(&l, id, &dek).await.unwrap() == vec![9u8; 60_000]);
}

#[tokio::test]
async fn flipped_byte_is_detected_reported_and_healed() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let id = random_id();
    let data = pseudo_random_bytes(300_000, 5);
    store
        .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
        .await
        .unwrap();
    let shard_file = shard(&store, &l, id, 2);
    let original = fs::read(&shard_file).unwrap();
    let mut damaged = original.clone();
    damaged[128 + 1234] ^= 0x40;
    fs::write(&shard_file, &damaged).unwrap();

    let (got, report) = store.get_chunk_with_report(&l, id, &dek).await.unwrap();
    assert!(got == data);
    assert_eq!(report.bad_shards.len(), 1);
    assert_eq!(report.bad_shards[0].shard, 2);
    assert!(
        matches!(&report.bad_shards[0].problem, ShardProblem::Corrupt(why) if why.contains("checksum"))
    );
    assert_eq!(store.stat_chunk(&l, id).await.unwrap().healthy_shards, 5);

    let heal = store.heal(&l, id).await.unwrap();
    assert_eq!(heal.rebuilt, vec![2]);
    assert!(heal.failed.is_empty());
    // The rebuilt body is the original shard body (the header differs only if the write id
    // would; it is copied from the survivors, so the whole file matches).
    assert_eq!(fs::read(&shard_file).unwrap(), original);
    assert!(
        store
            .get_chunk_with_report(&l, id, &dek)
            .await
            .unwrap()
            .1
            .bad_shards
            .is_empty()
    );
}

#[tokio::test]
async fn heal_restores_deleted_shard_files() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let id = random_id();
    let data = pseudo_random_bytes(77_777, 6);
    store
        .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
        .await
        .unwrap();
    let before: Vec<Vec<u8>> = (0..6)
        .map(|s| fs::read(shard(&store, &l, id, s)).unwrap())
        .collect();
    fs::remove_file(shard(&store, &l, id, 0)).unwrap();
    fs::remove_file(shard(&store, &l, id, 5)).unwrap();
    let heal = store.heal(&l, id).await.unwrap();
    assert_eq!(heal.rebuilt, vec![0, 5]);
    let after: Vec<Vec<u8>> = (0..6)
        .map(|s| fs::read(shard(&store, &l, id, s)).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        store.heal(&l, id).await.unwrap().rebuilt,
        Vec::<usize>::new()
    );
}

#[tokio::test]
async fn scrub_finds_corruption_and_missing_shards_and_repairs_them() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let chunks: Vec<(ChunkId, Vec<u8>)> = (0..20)
        .map(|n| (random_id(), pseudo_random_bytes(5_000 + n * 101, n as u64)))
        .collect();
    for (id, data) in &chunks {
        store
            .put_chunk(&l, *id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
    }
    let clean = store.scrub(std::slice::from_ref(&l), false).await.unwrap();
    assert_eq!(
        (
            clean.chunks_checked,
            clean.shards_checked,
            clean.shards_healthy
        ),
        (20, 120, 120)
    );
    assert!(clean.faults.is_empty() && clean.unrecoverable.is_empty());

    // Damage: a flipped body byte, a truncated file, a deleted shard, a flipped header byte.
    let flip = |path: PathBuf, at: usize| {
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 0xff;
        fs::write(&path, bytes).unwrap();
    };
    flip(shard(&store, &l, chunks[0].0, 1), 200);
    let truncated = shard(&store, &l, chunks[1].0, 3);
    let len = fs::metadata(&truncated).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    fs::remove_file(shard(&store, &l, chunks[2].0, 4)).unwrap();
    flip(shard(&store, &l, chunks[3].0, 0), 30);

    let found = store.scrub(std::slice::from_ref(&l), false).await.unwrap();
    assert_eq!(found.faults.len(), 4, "{:#?}", found.faults);
    assert_eq!(found.shards_repaired, 0);
    let faulty: std::collections::BTreeSet<(String, usize)> = found
        .faults
        .iter()
        .map(|f| (f.chunk.clone(), f.shard))
        .collect();
    for (chunk, shard) in [(0, 1), (1, 3), (2, 4), (3, 0)] {
        assert!(faulty.contains(&(
            format!(
                "{}/{}",
                hex::encode(chunks[chunk].0.blob),
                chunks[chunk].0.index
            ),
            shard
        )));
    }
    assert!(
        serde_json::to_string(&found)
            .unwrap()
            .contains("\"corrupt\"")
    );

    let repaired = store.scrub(std::slice::from_ref(&l), true).await.unwrap();
    assert_eq!(repaired.shards_repaired, 4);
    assert!(repaired.repair_failures.is_empty());
    let after = store.scrub(std::slice::from_ref(&l), false).await.unwrap();
    assert!(after.faults.is_empty(), "{:#?}", after.faults);
    assert_eq!(after.shards_healthy, 120);
    for (id, data) in &chunks {
        assert!(store.get_chunk(&l, *id, &dek).await.unwrap() == *data);
    }
}

#[tokio::test]
async fn orphan_temporaries_are_removed_at_open_and_real_shards_kept() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let id = random_id();
    let dek = DataKey::generate();
    {
        let store = test_store(dir.path());
        store
            .put_chunk(&l, id, &dek, Bytes::from_static(b"survives restart"))
            .await
            .unwrap();
    }
    // What a crash between write and rename leaves behind.
    let stray = dir
        .path()
        .join("disk3")
        .join("tmp")
        .join(format!("{}.0.1.00000000deadbeef", hex::encode([7u8; 16])));
    fs::write(&stray, b"half a shard").unwrap();
    let store = test_store(dir.path());
    assert!(!stray.exists(), "stray temporary not removed at open");
    assert_eq!(
        &store.get_chunk(&l, id, &dek).await.unwrap()[..],
        b"survives restart"
    );
}

#[tokio::test]
async fn wrong_dek_is_an_integrity_error_and_missing_chunk_is_not_found() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let id = random_id();
    store
        .put_chunk(
            &l,
            id,
            &DataKey::generate(),
            Bytes::from_static(b"secret bytes"),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.get_chunk(&l, id, &DataKey::generate()).await,
        Err(NodeError::Integrity)
    ));
    assert!(matches!(
        store.get_chunk(&l, random_id(), &DataKey::generate()).await,
        Err(NodeError::NotFound)
    ));
    assert!(matches!(
        store.stat_chunk(&l, random_id()).await,
        Err(NodeError::NotFound)
    ));
}

#[tokio::test]
async fn shards_swapped_between_chunks_fail_authentication() {
    let l = layout6();
    // Shard files are self-consistent (valid checksums) but belong to another chunk: the header
    // identity check rejects them; even with headers forged, AAD = chunk id would.
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let (a, b) = (
        ChunkId {
            blob: [1; 16],
            index: 0,
        },
        ChunkId {
            blob: [1; 16],
            index: 1,
        },
    );
    store
        .put_chunk(&l, a, &dek, Bytes::from(vec![0xaa; 4000]))
        .await
        .unwrap();
    store
        .put_chunk(&l, b, &dek, Bytes::from(vec![0xbb; 4000]))
        .await
        .unwrap();
    for s in 0..6 {
        fs::copy(shard(&store, &l, a, s), shard(&store, &l, b, s)).unwrap();
    }
    assert!(store.get_chunk(&l, b, &dek).await.is_err());
}

#[tokio::test]
async fn delete_removes_every_shard_and_is_idempotent() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    let id = random_id();
    store
        .put_chunk(&l, id, &dek, Bytes::from(vec![3u8; 10_000]))
        .await
        .unwrap();
    assert_eq!(files_of_chunk(dir.path(), id).len(), 6);
    store.delete_chunk(&l, id).await.unwrap();
    // No shard and no tombstone left: a completed delete leaves nothing behind.
    assert_eq!(files_of_chunk(dir.path(), id), Vec::<PathBuf>::new());
    assert!(matches!(
        store.get_chunk(&l, id, &dek).await,
        Err(NodeError::NotFound)
    ));
    store.delete_chunk(&l, id).await.unwrap();
    // Deleting a chunk that never existed writes nothing (GC deletes every chunk index a
    // failed upload may have written).
    let before = all_files(dir.path());
    store.delete_chunk(&l, random_id()).await.unwrap();
    assert_eq!(all_files(dir.path()), before);
}

#[tokio::test]
async fn writes_are_refused_above_the_high_water_mark() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::under(dir.path(), 6);
    // Any real filesystem holding this test is more than 0% used.
    config.high_water = 0.0;
    let store = LocalChunkStore::open(config).unwrap();
    let result = store
        .put_chunk(
            &l,
            random_id(),
            &DataKey::generate(),
            Bytes::from_static(b"x"),
        )
        .await;
    assert!(
        matches!(result, Err(NodeError::InsufficientStorage)),
        "{result:?}"
    );
    assert!(
        all_files(dir.path()).is_empty(),
        "a refused put wrote files"
    );
}

#[tokio::test]
async fn oversized_chunks_and_bad_or_foreign_layouts_are_refused() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::under(dir.path(), 6);
    config.max_chunk_len = 1000;
    let store = LocalChunkStore::open(config).unwrap();
    let dek = DataKey::generate();
    let result = store
        .put_chunk(&l, random_id(), &dek, Bytes::from(vec![0u8; 1001]))
        .await;
    assert!(matches!(result, Err(NodeError::Invalid(_))));
    // 4 + 2 shards need 6 distinct disks; a hand-built invalid layout is refused at every entry.
    let short = Layout {
        id: 9,
        disks: disk_names(5),
        data_shards: 4,
        parity_shards: 2,
    };
    let id = random_id();
    assert!(matches!(
        store
            .put_chunk(&short, id, &dek, Bytes::from_static(b"x"))
            .await,
        Err(NodeError::Invalid(_))
    ));
    assert!(matches!(
        store.get_chunk(&short, id, &dek).await,
        Err(NodeError::Invalid(_))
    ));
    assert!(matches!(
        store.delete_chunk(&short, id).await,
        Err(NodeError::Invalid(_))
    ));
    // A layout naming a disk this store does not have cannot get its full redundancy here.
    let mut names = disk_names(5);
    names.push("disk-elsewhere".into());
    let foreign = Layout::new(10, names, 4, 2).unwrap();
    let refused = store
        .put_chunk(&foreign, id, &dek, Bytes::from_static(b"x"))
        .await;
    assert!(matches!(refused, Err(NodeError::Io(_))), "{refused:?}");
    assert!(
        all_files(dir.path()).is_empty(),
        "a refused put wrote files"
    );
    // Bad disk configurations are refused at open.
    let mut twice = NodeConfig::under(dir.path(), 2);
    twice.disks[1].0 = "disk0".into();
    assert!(matches!(
        LocalChunkStore::open(twice),
        Err(NodeError::Invalid(_))
    ));
    let mut bad_name = NodeConfig::under(dir.path(), 1);
    bad_name.disks[0].0 = "disk/0".into();
    assert!(matches!(
        LocalChunkStore::open(bad_name),
        Err(NodeError::Invalid(_))
    ));
}

#[tokio::test]
async fn concurrent_puts_and_gets_stay_consistent() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(test_store(dir.path()));
    let dek = std::sync::Arc::new(DataKey::generate());
    let mut tasks = Vec::new();
    for n in 0..16u64 {
        let (store, dek, l) = (store.clone(), dek.clone(), l.clone());
        tasks.push(tokio::spawn(async move {
            let id = ChunkId {
                blob: [n as u8; 16],
                index: n as u32,
            };
            let data = pseudo_random_bytes(200_000 + n as usize, n);
            store
                .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
                .await
                .unwrap();
            assert!(store.get_chunk(&l, id, &dek).await.unwrap() == data);
        }));
    }
    for task in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// The healthy read takes the single-buffer path; every kind of data-shard damage it can meet
/// (short file, header naming another shard, body bit flip in the last data shard, whose piece
/// is the tail of the buffer) must fall back to the general path, which reports and decodes.
#[tokio::test]
async fn damaged_data_shards_fall_back_from_the_single_buffer_read() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path());
    let dek = DataKey::generate();
    for (case, len) in [(0, 1usize), (1, 4096), (2, 1_000_003)] {
        let id = random_id();
        let data = pseudo_random_bytes(len, 40 + case);
        store
            .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
        let (got, report) = store.get_chunk_with_report(&l, id, &dek).await.unwrap();
        assert!(got == data && report.bad_shards.is_empty());
        let bad = match case {
            0 => {
                let f = fs::read(shard(&store, &l, id, 1)).unwrap();
                fs::write(shard(&store, &l, id, 1), &f[..f.len() - 1]).unwrap();
                1
            }
            1 => {
                fs::copy(shard(&store, &l, id, 0), shard(&store, &l, id, 2)).unwrap();
                2
            }
            _ => {
                let mut f = fs::read(shard(&store, &l, id, 3)).unwrap();
                let last = f.len() - 1;
                f[last] ^= 1;
                fs::write(shard(&store, &l, id, 3), &f).unwrap();
                3
            }
        };
        let (got, report) = store.get_chunk_with_report(&l, id, &dek).await.unwrap();
        assert!(got == data, "case {case}");
        assert_eq!(report.bad_shards.len(), 1, "case {case}");
        assert_eq!(report.bad_shards[0].shard, bad, "case {case}");
    }
}
