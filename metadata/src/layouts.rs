//! Versioned placement layouts, and what the rebalance job needs to move data between them:
//! a resumable walk over every version and a compare-and-set segment swap.
//!
//! A layout is never edited, only superseded, so a segment's `layout` id always resolves to the
//! geometry its chunks were written with, whatever the process was started with since.

use crate::gc::stage_consume_intents;
use crate::keys;
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{BlobId, LayoutRecord, MetaError, MetaStore, Result, Segment, VersionRef};

/// `layout/` + id (u32 BE) -> `LayoutRecord`.
pub(crate) const LAYOUT_PREFIX: &[u8] = b"layout/";
/// -> id (u32 BE) of the current layout.
const CURRENT_LAYOUT: &[u8] = b"current-layout";

pub(crate) fn layout_key(id: u32) -> Vec<u8> {
    [LAYOUT_PREFIX, &id.to_be_bytes()].concat()
}

fn same_geometry(l: &LayoutRecord, disks: &[String], k: u8, m: u8, chunk_size: u32) -> bool {
    l.disks == disks && l.data_shards == k && l.parity_shards == m && l.chunk_size == chunk_size
}

pub(crate) fn validate(disks: &[String], k: u8, m: u8, chunk_size: u32) -> Result<()> {
    let bad = |m: &str| Err(MetaError::Invalid(format!("layout: {m}")));
    if k == 0 || chunk_size == 0 {
        return bad("data shards and chunk size must be at least 1");
    }
    if (k as usize + m as usize) > disks.len() {
        return bad("more shards than disks");
    }
    for (i, d) in disks.iter().enumerate() {
        // A cluster disk is `<node>/<disk>`: exactly two such words.
        let word = |w: &str| !w.is_empty() && !w.contains('\\') && w != "." && w != "..";
        let ok = match d.split_once('/') {
            Some((node, disk)) => word(node) && word(disk) && !disk.contains('/'),
            None => word(d),
        };
        if !ok {
            return bad("disks are names (e.g. \"disk0\" or \"n1/disk0\"), not paths");
        }
        if disks[..i].contains(d) {
            return bad("a disk is named twice");
        }
    }
    Ok(())
}

impl MetaStore {
    /// The current layout if it has exactly this geometry; otherwise a new layout (id = max + 1)
    /// that becomes current, in one batch. Two processes racing create one layout: the loser's
    /// retry finds the winner's.
    pub fn ensure_current_layout(
        &self,
        disks: &[String],
        data_shards: u8,
        parity_shards: u8,
        chunk_size: u32,
        now: i64,
    ) -> Result<LayoutRecord> {
        validate(disks, data_shards, parity_shards, chunk_size)?;
        self.retry(|| {
            let current_raw = self.kv().get(Space::Sys, CURRENT_LAYOUT)?;
            if let Some(cur) = self.current_layout()?
                && same_geometry(&cur, disks, data_shards, parity_shards, chunk_size)
            {
                return Ok(cur);
            }
            let max = self
                .kv()
                .scan(
                    Space::Sys,
                    &KeyRange::prefix(LAYOUT_PREFIX),
                    Direction::Reverse,
                    1,
                )?
                .first()
                .map(|(_, v)| decode::<LayoutRecord>(v).map(|l| l.id))
                .transpose()?
                .unwrap_or(0);
            let id = max
                .checked_add(1)
                .ok_or_else(|| MetaError::Invalid("layout ids exhausted".into()))?;
            let rec = LayoutRecord {
                id,
                disks: disks.to_vec(),
                data_shards,
                parity_shards,
                chunk_size,
                created: now,
            };
            let mut b = Batch::default();
            b.unchanged(Space::Sys, CURRENT_LAYOUT, current_raw.as_deref());
            b.absent(Space::Sys, &layout_key(id));
            b.put(Space::Sys, layout_key(id), encode(&rec));
            b.put(
                Space::Sys,
                CURRENT_LAYOUT.to_vec(),
                id.to_be_bytes().to_vec(),
            );
            self.kv().commit(b)?;
            tracing::info!(
                layout = id,
                disks = disks.len(),
                data_shards,
                parity_shards,
                chunk_size,
                "new current placement layout"
            );
            Ok(rec)
        })
    }

    pub fn get_layout(&self, id: u32) -> Result<Option<LayoutRecord>> {
        self.kv()
            .get(Space::Sys, &layout_key(id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// Every layout, oldest first.
    pub fn list_layouts(&self) -> Result<Vec<LayoutRecord>> {
        self.scan_all(Space::Sys, LAYOUT_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    pub fn current_layout(&self) -> Result<Option<LayoutRecord>> {
        let Some(raw) = self.kv().get(Space::Sys, CURRENT_LAYOUT)? else {
            return Ok(None);
        };
        let id: [u8; 4] = raw
            .as_slice()
            .try_into()
            .map_err(|_| MetaError::Corrupt("current layout pointer".into()))?;
        let id = u32::from_be_bytes(id);
        self.get_layout(id)?
            .ok_or_else(|| MetaError::Corrupt(format!("current layout {id} is missing")))
            .map(Some)
    }

    /// Up to `limit` versions of every object of every bucket, in key order (bucket, key, newest
    /// version first), after the opaque cursor `after` (`None`: from the start). Returns the
    /// cursor to continue from, `None` when the walk is complete.
    pub fn scan_versions(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<VersionRef>, Option<Vec<u8>>)> {
        if limit == 0 {
            // Nothing read: the walk is where it was, not complete.
            return Ok((Vec::new(), Some(after.unwrap_or_default().to_vec())));
        }
        let start = match after {
            Some(c) => [c, &[0]].concat(),
            None => Vec::new(),
        };
        let rows = self.kv().scan(
            Space::Versions,
            &KeyRange::new(start, None),
            Direction::Forward,
            limit,
        )?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let blen = k
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| MetaError::Corrupt("version key without bucket".into()))?;
            let bucket = String::from_utf8(k[..blen].to_vec())
                .map_err(|_| MetaError::Corrupt("bucket name".into()))?;
            let (key, _) = keys::split_object_key(&k, blen)?;
            out.push(VersionRef {
                bucket,
                key,
                version: decode(&v)?,
            });
        }
        Ok((out, next))
    }

    /// Rebalance: replaces the segment holding `old_blob` in this version by `new_segment`
    /// (same length, chunks already written under a write intent), queues the old segment for
    /// GC (reason "rebalanced", with the grace period) and consumes the new blob's intent, in one
    /// batch conditioned on the version record. `Stale` if the version is gone or no longer
    /// holds `old_blob` (re-read and decide again); `WriteAborted` if the intent was swept.
    pub fn replace_segment(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        old_blob: &BlobId,
        new_segment: Segment,
        now: i64,
    ) -> Result<()> {
        self.retry(|| {
            let (vkey, raw, rec) = match self.locate_version(bucket, key, Some(version_id)) {
                Ok(found) => found,
                Err(MetaError::NoSuchKey | MetaError::NoSuchVersion) => {
                    return Err(MetaError::Stale);
                }
                Err(e) => return Err(e),
            };
            let Some(i) = rec.data.segments.iter().position(|s| &s.blob == old_blob) else {
                return Err(MetaError::Stale);
            };
            let old = rec.data.segments[i].clone();
            if old.len != new_segment.len {
                return Err(MetaError::Invalid(format!(
                    "replacement segment has {} bytes, the old one {}",
                    new_segment.len, old.len
                )));
            }
            let mut new = rec.clone();
            new.data.segments[i] = new_segment.clone();
            let mut b = Batch::default();
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.stage_gc(&mut b, vec![old], "rebalanced", now);
            let consumed = std::slice::from_ref(&new_segment);
            stage_consume_intents(&mut b, consumed);
            self.commit_consuming(b, consumed)
        })
    }
}
