//! The GC queue (data no version references any more) and write intents (data being written
//! that no version references yet).

use crate::kv::{self, Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{BlobId, GcItem, MetaStore, Result, Segment};
use std::sync::atomic::Ordering;

/// Write intents live in the Sys space under this prefix, keyed by blob id.
pub(crate) const INTENT_PREFIX: &[u8] = b"intent/";

pub(crate) fn intent_key(blob: &BlobId) -> Vec<u8> {
    let mut k = INTENT_PREFIX.to_vec();
    k.extend_from_slice(blob);
    k
}

/// The blobs are now referenced (or queued for GC): their write intents are done.
pub(crate) fn stage_clear_intents(b: &mut Batch, segments: &[Segment]) {
    for s in segments {
        b.delete(Space::Sys, intent_key(&s.blob));
    }
}

impl MetaStore {
    pub(crate) fn stage_gc(&self, b: &mut Batch, segments: Vec<Segment>, reason: &str) {
        if segments.is_empty() {
            return;
        }
        let seq = self.inner.gc_seq.fetch_add(1, Ordering::Relaxed);
        let key = seq.to_be_bytes().to_vec();
        let item = GcItem {
            seq,
            segments,
            reason: reason.to_string(),
        };
        // Absent: another process sharing the KV could pick the same position.
        b.absent(Space::Gc, &key);
        b.put(Space::Gc, key, encode(&item));
    }

    /// Up to `limit` queued items, oldest first.
    pub fn gc_pending(&self, limit: usize) -> Result<Vec<GcItem>> {
        self.kv()
            .scan(
                Space::Gc,
                &KeyRange::new(Vec::new(), None),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Removes items whose chunks have been deleted.
    pub fn gc_ack(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        for s in seqs {
            b.delete(Space::Gc, s.to_be_bytes().to_vec());
        }
        self.kv().commit(b)
    }
    /// Records, durably, that chunks of `segment.blob` are about to be written (`segment.len` is an
    /// upper bound of the bytes). The commit that references the blob (`put_version`, `put_part`,
    /// `complete_upload`) or `gc_enqueue` removes the intent in its own batch; an intent that
    /// outlives its writer (the process died mid-request) is turned into a GC item by
    /// [`MetaStore::sweep_interrupted_writes`], so no chunk is ever left unreferenced for good.
    pub fn begin_write(&self, segment: &Segment, now: i64) -> Result<()> {
        let mut b = Batch::default();
        b.put(
            Space::Sys,
            intent_key(&segment.blob),
            encode(&(now, segment.clone())),
        );
        self.kv().commit(b)
    }

    /// Queues for GC the blobs of every write intent begun before `started_before` (Unix ms)
    /// and never committed. Safe only for intents whose writers are gone: call it at start-up with
    /// the start time (one process owns the store), or with an age far beyond any request.
    /// Returns how many intents were swept.
    pub fn sweep_interrupted_writes(&self, started_before: i64) -> Result<usize> {
        let range = KeyRange::new(INTENT_PREFIX.to_vec(), kv::prefix_successor(INTENT_PREFIX));
        let mut swept = 0;
        // Bounded: at most 1000 batches of 256 per call.
        for _ in 0..1000 {
            let page = self
                .kv()
                .scan(Space::Sys, &range, Direction::Forward, 256)?;
            let mut b = Batch::default();
            let mut stale = Vec::new();
            for (k, v) in &page {
                let (started, seg): (i64, Segment) = decode(v)?;
                if started < started_before {
                    b.equals(Space::Sys, k, v);
                    b.delete(Space::Sys, k.clone());
                    stale.push(seg);
                }
            }
            if stale.is_empty() {
                break;
            }
            swept += stale.len();
            self.stage_gc(&mut b, stale, "interrupted-write");
            self.kv().commit(b)?;
            if page.len() < 256 {
                break;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "queued the chunks of interrupted writes for GC");
        }
        Ok(swept)
    }

    /// Write intents not yet committed or swept (for tests and the consistency check).
    pub fn pending_writes(&self) -> Result<usize> {
        let range = KeyRange::new(INTENT_PREFIX.to_vec(), kv::prefix_successor(INTENT_PREFIX));
        Ok(self
            .kv()
            .scan(Space::Sys, &range, Direction::Forward, usize::MAX)?
            .len())
    }

    /// Queues segments written but never committed (e.g. a PUT that failed after writing chunks).
    pub fn gc_enqueue(&self, segments: Vec<Segment>, reason: &str) -> Result<()> {
        self.retry(|| {
            let mut b = Batch::default();
            stage_clear_intents(&mut b, &segments);
            self.stage_gc(&mut b, segments.clone(), reason);
            if b.ops.is_empty() {
                return Ok(());
            }
            self.kv().commit(b)
        })
    }

}
