//! Helpers shared by the chunk store's integration tests (real directories, real files).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use strata_storage_node::{ChunkId, Layout, LocalChunkStore, NodeConfig};

/// `disk0..disk{n-1}`.
pub fn disk_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("disk{i}")).collect()
}

/// Layout 1: RS(4, 2) over disk0..disk5, what `strata serve` uses by default.
pub fn layout6() -> Layout {
    Layout::new(1, disk_names(6), 4, 2).unwrap()
}

/// A store over `disks` directories under `root`, without heal-on-read (tests look at shard
/// files after reads; a background heal would race with them).
pub fn store_with(root: &Path, disks: usize) -> LocalChunkStore {
    let mut config = NodeConfig::under(root, disks);
    config.heal_on_read = false;
    LocalChunkStore::open(config).unwrap()
}

pub fn test_store(root: &Path) -> LocalChunkStore {
    store_with(root, 6)
}

/// Path of a shard under a layout whose disks the store has.
pub fn shard(store: &LocalChunkStore, layout: &Layout, id: ChunkId, shard: usize) -> PathBuf {
    store.shard_path(layout, id, shard).unwrap()
}

pub fn random_id() -> ChunkId {
    ChunkId {
        blob: rand::random(),
        index: rand::random::<u32>() % 1000,
    }
}

pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every regular file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every file anywhere under `root` whose name starts with the chunk's `<blob hex>.<index>`
/// (shard files of any layout, tombstones, temporaries).
pub fn files_of_chunk(root: &Path, id: ChunkId) -> Vec<PathBuf> {
    let prefix = format!("{}.{}", hex::encode(id.blob), id.index);
    all_files(root)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name == prefix || name.starts_with(&format!("{prefix}."))
        })
        .collect()
}
