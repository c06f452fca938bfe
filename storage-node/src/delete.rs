//! Deleting a chunk without ever resurrecting it.
//!
//! A delete removes shards one by one, so it can be interrupted (crash, failing disk) with some
//! shards left; if k of them survive, a heal would rebuild the chunk that GC removed, and nothing
//! would ever reference it again. So:
//! 1. a durable **tombstone** is written on every available disk of the layout (and on every disk
//!    holding a file of the chunk) before the first shard is removed;
//! 2. every file of the chunk on every disk of the store is removed (any layout, any shard
//!    index: a partial put under another placement goes too), directories fsync'd;
//! 3. the tombstones are removed.
//!
//! Heal refuses a chunk with a tombstone; scrub completes such deletions (see `repair.rs`). A
//! delete, heal or put of one chunk holds its chunk lock, so they never interleave.
//!
//! A disk that is unavailable during the deletion may still hold a shard. Its tombstones are kept
//! while k or more disks of the store are unavailable (k of the chunk's layout, 1 if unknown):
//! fewer than k surviving shards can never be healed back into a chunk.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::files::{self, DiskScan};
use crate::format::Tombstone;
use crate::store::{LocalChunkStore, blocking, chunk_label};
use crate::{ChunkId, Layout, NodeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    /// No file of the chunk existed.
    Nothing,
    /// Every file of the chunk and its tombstones are gone.
    Completed,
    /// Every visible file is gone, but the tombstones stay until enough disks are back.
    Pending,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LocalChunkStore {
    /// Does any disk of the store hold a tombstone for `id`?
    pub(crate) async fn has_tombstone(&self, id: ChunkId) -> Result<bool, NodeError> {
        let paths: Vec<PathBuf> = self
            .inner
            .config
            .disks
            .iter()
            .filter_map(|(name, _)| self.tombstone_path(name, id))
            .collect();
        blocking(move || paths.iter().any(|p| std::fs::symlink_metadata(p).is_ok())).await
    }

    /// Removes every file of `id` under tombstones (module doc). The caller holds the chunk lock.
    /// `layout_id` goes into new tombstones; `layout`, when known, gets tombstones on all its
    /// available disks and sets k for the unavailable-disk rule.
    pub(crate) async fn delete_locked(
        &self,
        layout_id: u32,
        layout: Option<&Layout>,
        id: ChunkId,
    ) -> Result<DeleteOutcome, NodeError> {
        let mut unavailable = Vec::new();
        let mut holders = BTreeSet::new();
        let mut shard_files: Vec<(String, Vec<PathBuf>)> = Vec::new();
        let mut tombstones: BTreeSet<PathBuf> = BTreeSet::new();
        for (name, scan) in self.scan_all_disks(id).await {
            match scan {
                DiskScan::Unavailable => unavailable.push(name),
                DiskScan::Found { shards, tombstone } => {
                    if !shards.is_empty() || tombstone.is_some() {
                        holders.insert(name.clone());
                    }
                    tombstones.extend(tombstone);
                    if !shards.is_empty() {
                        shard_files.push((name, shards.into_iter().map(|(_, p)| p).collect()));
                    }
                }
            }
        }
        let k = layout.map_or(1, |l| usize::from(l.data_shards));
        let forgettable = unavailable.len() < k;
        if holders.is_empty() && forgettable {
            return Ok(DeleteOutcome::Nothing);
        }

        // 1. Tombstones, durable, before any shard is touched.
        let mut targets = holders;
        if let Some(layout) = layout {
            targets.extend(
                layout
                    .disks
                    .iter()
                    .filter(|d| self.disk_dir(d).is_some() && !unavailable.contains(d))
                    .cloned(),
            );
        }
        if targets.is_empty() {
            return Err(NodeError::Io(std::io::Error::other(format!(
                "no disk available to record the deletion of {} (unavailable: {unavailable:?})",
                chunk_label(id)
            ))));
        }
        let tombstone = Tombstone {
            chunk: id,
            layout_id,
            created_ms: now_ms(),
        };
        let tasks: Vec<_> = targets
            .iter()
            .map(|name| {
                let dir = self.disk_dir(name).expect("known disk").to_path_buf();
                let tombstone = tombstone.clone();
                (
                    name,
                    tokio::task::spawn_blocking(move || files::write_tombstone(&dir, &tombstone)),
                )
            })
            .collect();
        let mut failed = None;
        for (name, task) in tasks {
            if let Err(e) = task.await.map_err(std::io::Error::other).and_then(|r| r) {
                tracing::error!(chunk = %chunk_label(id), disk = %name, error = %e, "cannot write tombstone; delete not started");
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(NodeError::Io(e));
        }
        for name in &targets {
            tombstones.extend(self.tombstone_path(name, id));
        }

        // 2. Every shard file, one blocking task per disk.
        let tasks: Vec<_> = shard_files
            .into_iter()
            .map(|(name, paths)| {
                (
                    name,
                    tokio::task::spawn_blocking(move || files::remove_durably(&paths)),
                )
            })
            .collect();
        for (name, task) in tasks {
            if let Err(e) = task.await.map_err(std::io::Error::other).and_then(|r| r) {
                failed.get_or_insert(e);
                tracing::error!(chunk = %chunk_label(id), disk = %name, "cannot remove shard; tombstones kept");
            }
        }
        if let Some(e) = failed {
            return Err(NodeError::Io(e));
        }

        // 3. The tombstones. Not fsync'd: if this is lost in a crash, a tombstone with no shard
        // left is completed by the next scrub, which costs nothing but a file.
        if !forgettable {
            tracing::warn!(chunk = %chunk_label(id), ?unavailable, "deleted what is visible; tombstones kept until the unavailable disks are back");
            return Ok(DeleteOutcome::Pending);
        }
        let tombstones: Vec<PathBuf> = tombstones.into_iter().collect();
        blocking(move || {
            for path in tombstones {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove tombstone; scrub will");
                }
            }
        })
        .await?;
        Ok(DeleteOutcome::Completed)
    }
}
