//! Heal (rebuild the bad shards of one chunk) and scrub (verify every shard file on every disk,
//! complete interrupted deletions, optionally heal). Both work on ciphertext and need no key.
//! Neither ever rebuilds a chunk that has a tombstone (see `delete.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;

use crate::delete::DeleteOutcome;
use crate::files::{self, SHARDS_DIR, TOMBSTONES_DIR};
use crate::format::{self, ShardHeader};
use crate::report::{HealReport, ScrubReport, ShardFault, ShardProblem};
use crate::store::{LocalChunkStore, Selection, blocking, chunk_label};
use crate::{ChunkId, Layout, NodeError};

/// Files of one chunk found by a scrub: (disk name, shard index, path).
type FoundFiles = Vec<(String, usize, PathBuf)>;

impl LocalChunkStore {
    /// Rebuilds missing, corrupt or stale shards of `id` under `layout` from the survivors and
    /// writes them durably. Needs no key: it works on ciphertext, and the survivors' checksums
    /// vouch for it. A chunk being deleted (tombstone) is never rebuilt: `NotFound`.
    pub async fn heal(&self, layout: &Layout, id: ChunkId) -> Result<HealReport, NodeError> {
        layout.validate()?;
        let _guard = self.inner.locks.lock(id).await;
        self.heal_locked(layout, id).await
    }

    async fn heal_locked(&self, layout: &Layout, id: ChunkId) -> Result<HealReport, NodeError> {
        if self.has_tombstone(id).await? {
            tracing::info!(chunk = %chunk_label(id), "chunk is being deleted: not healed");
            return Err(NodeError::NotFound);
        }
        let codec = self.codec(layout)?;
        let n = codec.total_shards();
        let loaded = self
            .load_shards(layout, id, &(0..n).collect::<Vec<_>>())
            .await;
        let Selection {
            mut shards,
            header,
            bad,
            missing,
        } = self.select_generation(layout, id, loaded);
        let Some(header) = header else {
            return Err(if missing == n {
                NodeError::NotFound
            } else {
                NodeError::Unrecoverable {
                    available: 0,
                    needed: codec.data_shards(),
                }
            });
        };
        if bad.is_empty() {
            return Ok(HealReport::default());
        }
        let ciphertext_len = header.ciphertext_len as usize;
        let rebuild_codec = codec.clone();
        shards = blocking(move || {
            rebuild_codec
                .reconstruct(&mut shards, ciphertext_len)
                .map(|()| shards)
        })
        .await?
        .map_err(|e| match e {
            strata_erasure::ErasureError::TooFewShards { available, needed } => {
                NodeError::Unrecoverable { available, needed }
            }
            other => NodeError::Invalid(other.to_string()),
        })?;
        let mut report = HealReport::default();
        let mut writes = Vec::new();
        for b in &bad {
            let (Some(disk), Some(path)) = (
                self.shard_disk(layout, id, b.shard),
                self.shard_path(layout, id, b.shard),
            ) else {
                report
                    .failed
                    .push((b.shard, format!("disk {} is not attached", b.disk)));
                continue;
            };
            let body = shards[b.shard].take().expect("reconstructed");
            let shard_header = ShardHeader {
                shard_index: b.shard as u8,
                body_crc32c: format::crc32c(&body),
                ..header.clone()
            };
            let disk = disk.to_path_buf();
            writes.push((
                b.shard,
                tokio::task::spawn_blocking(move || {
                    files::write_shard_durably(&disk, &path, &shard_header.encode(), &body)
                }),
            ));
        }
        for (shard, task) in writes {
            match task.await {
                Ok(Ok(())) => report.rebuilt.push(shard),
                Ok(Err(e)) => report.failed.push((shard, e.to_string())),
                Err(e) => report.failed.push((shard, e.to_string())),
            }
        }
        Ok(report)
    }

    /// Walks every disk: first completes (with `repair`) or reports interrupted deletions, then
    /// verifies every shard file of every chunk under the layout its headers name (which must be
    /// among `layouts`), and with `repair` heals every chunk that has a bad or missing shard.
    /// Works one fan-out prefix at a time so memory stays bounded by the largest prefix (plus the
    /// list of pending deletions), not the whole store.
    pub async fn scrub(&self, layouts: &[Layout], repair: bool) -> Result<ScrubReport, NodeError> {
        let mut by_id: HashMap<u32, &Layout> = HashMap::new();
        for layout in layouts {
            layout.validate()?;
            if by_id.insert(layout.id, layout).is_some_and(|l| l != layout) {
                return Err(NodeError::Invalid(format!(
                    "two different layouts with id {}",
                    layout.id
                )));
            }
        }
        let mut report = ScrubReport::default();
        let disks: Vec<(String, PathBuf)> = self.inner.config.disks.clone();

        // 1. Tombstones: interrupted deletions. Never healed; completed with `repair`.
        let listing = disks.clone();
        let (tombstoned, unknown) = blocking(move || list_tombstones(&listing)).await?;
        report.unknown_files.extend(unknown);
        for (&id, layout_id) in &tombstoned {
            if !repair {
                report.deletions_pending.push(chunk_label(id));
                continue;
            }
            let layout = layout_id.and_then(|l| by_id.get(&l).copied());
            let _guard = self.inner.locks.lock(id).await;
            match self.delete_locked(layout_id.unwrap_or(0), layout, id).await {
                Ok(DeleteOutcome::Completed | DeleteOutcome::Nothing) => {
                    report.deletions_completed += 1;
                }
                Ok(DeleteOutcome::Pending) => report.deletions_pending.push(chunk_label(id)),
                Err(e) => report
                    .deletions_pending
                    .push(format!("{}: {e}", chunk_label(id))),
            }
        }

        // 2. Shards, one fan-out prefix at a time.
        let listing = disks.clone();
        let (prefixes, unavailable) = blocking(move || {
            let mut prefixes = BTreeSet::new();
            let mut unavailable = Vec::new();
            for (name, dir) in &listing {
                match fs::read_dir(dir.join(SHARDS_DIR)) {
                    Ok(entries) => prefixes.extend(
                        entries
                            .flatten()
                            .filter_map(|e| e.file_name().to_str().map(str::to_owned)),
                    ),
                    Err(_) => unavailable.push(name.clone()),
                }
            }
            (prefixes, unavailable)
        })
        .await?;
        report.unavailable_disks = unavailable;
        for prefix in prefixes {
            let listing = disks.clone();
            let (chunks, unknown) = blocking(move || list_prefix(&listing, &prefix)).await?;
            report.unknown_files.extend(unknown);
            for (id, found) in chunks {
                if tombstoned.contains_key(&id) {
                    continue;
                }
                self.scrub_chunk(&by_id, id, found, repair, &mut report)
                    .await?;
            }
        }
        tracing::info!(
            chunks = report.chunks_checked,
            faults = report.faults.len(),
            repaired = report.shards_repaired,
            deletions_completed = report.deletions_completed,
            deletions_pending = report.deletions_pending.len(),
            "scrub finished"
        );
        Ok(report)
    }

    async fn scrub_chunk(
        &self,
        layouts: &HashMap<u32, &Layout>,
        id: ChunkId,
        found: FoundFiles,
        repair: bool,
        report: &mut ScrubReport,
    ) -> Result<(), NodeError> {
        // Which layout: the first header that parses says (a header is checksummed; the shard
        // loads below then hold every file to that layout).
        let paths: Vec<PathBuf> = found.iter().map(|(_, _, p)| p.clone()).collect();
        let layout_id = blocking(move || {
            paths
                .iter()
                .find_map(|p| files::read_header(p))
                .map(|h| h.layout_id)
        })
        .await?;
        let Some(layout_id) = layout_id else {
            // No file of this chunk has a readable header: nothing to rebuild from.
            for (disk, shard, _) in &found {
                report.faults.push(ShardFault {
                    chunk: chunk_label(id),
                    shard: *shard,
                    disk: disk.clone(),
                    problem: ShardProblem::Corrupt("unreadable header".into()),
                });
            }
            report.unrecoverable.push(chunk_label(id));
            return Ok(());
        };
        let Some(&layout) = layouts.get(&layout_id) else {
            report
                .unknown_layouts
                .push(format!("{}: layout {layout_id}", chunk_label(id)));
            return Ok(());
        };
        let n = layout.total_shards();
        for (disk, shard, path) in &found {
            if *shard >= n || layout.disk_for_shard(id, *shard) != disk {
                report.unknown_files.push(path.clone());
            }
        }
        let loaded = self
            .load_shards(layout, id, &(0..n).collect::<Vec<_>>())
            .await;
        let bytes: u64 = loaded
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|s| s.body.len() as u64)
            .sum();
        let Selection {
            shards,
            bad,
            missing,
            ..
        } = self.select_generation(layout, id, loaded);
        if missing == n {
            // Deleted since the listing (or only misplaced files, reported above).
            return Ok(());
        }
        report.chunks_checked += 1;
        report.shards_checked += n as u64;
        report.bytes_verified += bytes;
        let healthy = shards.iter().filter(|s| s.is_some()).count();
        report.shards_healthy += healthy as u64;
        for b in &bad {
            report.faults.push(ShardFault {
                chunk: chunk_label(id),
                shard: b.shard,
                disk: b.disk.clone(),
                problem: b.problem.clone(),
            });
        }
        if healthy < usize::from(layout.data_shards) {
            report.unrecoverable.push(chunk_label(id));
            return Ok(());
        }
        if repair && !bad.is_empty() {
            let _guard = self.inner.locks.lock(id).await;
            match self.heal_locked(layout, id).await {
                Ok(heal) => {
                    report.shards_repaired += heal.rebuilt.len() as u64;
                    for (shard, error) in heal.failed {
                        report.repair_failures.push(ShardFault {
                            chunk: chunk_label(id),
                            shard,
                            disk: layout.disk_for_shard(id, shard).to_owned(),
                            problem: ShardProblem::Unreadable(error),
                        });
                    }
                }
                Err(e) => report
                    .unrecoverable
                    .push(format!("{}: {e}", chunk_label(id))),
            }
        }
        Ok(())
    }
}

/// Every tombstone on every disk: chunk -> layout id from its content (None if torn/corrupt),
/// plus files in `tombstones/` that are not tombstones. Blocking.
fn list_tombstones(disks: &[(String, PathBuf)]) -> (BTreeMap<ChunkId, Option<u32>>, Vec<PathBuf>) {
    let mut found: BTreeMap<ChunkId, Option<u32>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (_, dir) in disks {
        let Ok(entries) = fs::read_dir(dir.join(TOMBSTONES_DIR)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(files::parse_tombstone_file_name)
            else {
                unknown.push(entry.path());
                continue;
            };
            let content = files::read_tombstone(&entry.path()).filter(|t| t.chunk == id);
            if content.is_none() {
                tracing::warn!(path = %entry.path().display(), "torn or corrupt tombstone (still honoured)");
            }
            let slot = found.entry(id).or_default();
            *slot = slot.or(content.map(|t| t.layout_id));
        }
    }
    (found, unknown)
}

/// Shard files under `shards/<prefix>/` on every disk, grouped by chunk, plus files there that
/// are not shard files. Blocking.
fn list_prefix(
    disks: &[(String, PathBuf)],
    prefix: &str,
) -> (BTreeMap<ChunkId, FoundFiles>, Vec<PathBuf>) {
    let mut chunks: BTreeMap<ChunkId, FoundFiles> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (name, dir) in disks {
        let top = dir.join(SHARDS_DIR).join(prefix);
        let Ok(subdirs) = fs::read_dir(&top) else {
            continue;
        };
        for sub in subdirs.flatten() {
            let Ok(entries) = fs::read_dir(sub.path()) else {
                unknown.push(sub.path());
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry
                    .file_name()
                    .to_str()
                    .and_then(files::parse_shard_file_name)
                {
                    // Only at its fan-out place is a shard file ours.
                    Some((id, shard)) if dir.join(files::fanout_dir(id)) == sub.path() => {
                        chunks
                            .entry(id)
                            .or_default()
                            .push((name.clone(), shard, path));
                    }
                    _ => unknown.push(path),
                }
            }
        }
    }
    (chunks, unknown)
}
