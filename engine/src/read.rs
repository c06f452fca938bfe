//! The read half of the data path: plan which chunks cover a byte range, fetch them a few ahead
//! (decrypted and decoded by the chunk store), and stream exactly the requested bytes.
//!
//! Reads in flight are protected from the GC twice: deleted data waits a grace period before its
//! chunks go (long enough for any reasonable read), and every blob being read by this process is
//! pinned, so the local GC defers it however slow the reader is.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use strata_metadata::{BlobId, BucketRecord, Segment, VersionRecord};
use strata_storage_node::ChunkId;

use crate::Engine;
use crate::body::ReadStream;
use crate::budget;
use crate::error::Result;

/// Blobs with a read in flight in this process, with reader counts.
#[derive(Default)]
pub struct ReadPins {
    counts: Mutex<HashMap<BlobId, usize>>,
}

/// Unpins its blobs when dropped (when the response body is finished or abandoned).
pub struct PinGuard {
    pins: Arc<ReadPins>,
    blobs: Vec<BlobId>,
}

impl ReadPins {
    pub fn pin(self: &Arc<Self>, blobs: Vec<BlobId>) -> PinGuard {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for b in &blobs {
            *c.entry(*b).or_default() += 1;
        }
        PinGuard {
            pins: self.clone(),
            blobs,
        }
    }

    pub fn is_pinned(&self, blob: &BlobId) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(blob)
    }

    /// Blobs pinned right now (for status output).
    pub fn pinned(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut c = self.pins.counts.lock().unwrap_or_else(|e| e.into_inner());
        for b in &self.blobs {
            if let Some(n) = c.get_mut(b) {
                *n -= 1;
                if *n == 0 {
                    c.remove(b);
                }
            }
        }
    }
}

/// One chunk (or part of one) that a read needs, and the layout it was written with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkSlice {
    pub id: ChunkId,
    pub range: Range<usize>,
    pub layout: u32,
}

/// Plans which chunks cover `range` of an object made of `segments`.
pub(crate) fn plan(segments: &[Segment], range: Range<u64>) -> Vec<ChunkSlice> {
    let mut out = Vec::new();
    let mut seg_start = 0u64;
    for seg in segments {
        let seg_end = seg_start + seg.len;
        if seg_end > range.start && seg_start < range.end && seg.chunk_size > 0 {
            let cs = seg.chunk_size as u64;
            let from = range.start.max(seg_start) - seg_start;
            let to = range.end.min(seg_end) - seg_start;
            let mut idx = from / cs;
            while idx * cs < to {
                let c_start = idx * cs;
                let a = from.max(c_start) - c_start;
                let b = to.min(c_start + cs) - c_start;
                out.push(ChunkSlice {
                    id: ChunkId {
                        blob: seg.blob,
                        index: idx as u32,
                    },
                    range: a as usize..b as usize,
                    layout: seg.layout,
                });
                idx += 1;
            }
        }
        seg_start = seg_end;
        if seg_start >= range.end {
            break;
        }
    }
    out
}

impl Engine {
    /// Streams `range` of a stored version: chunks are fetched (decrypted, decoded) a few ahead,
    /// in order, each under the buffer budget until its bytes are sent, each under the layout
    /// its segment was written with.
    pub async fn read_range(
        &self,
        bucket: &BucketRecord,
        version: &VersionRecord,
        range: Range<u64>,
    ) -> Result<ReadStream> {
        self.read_range_bound(bucket, version, range, &crate::sse::KeyBinding::None)
            .await
    }

    /// [`Engine::read_range`] of a version whose DEK is bound to a second secret (SSE-KMS,
    /// SSE-C; see `sse.rs`).
    pub async fn read_range_bound(
        &self,
        bucket: &BucketRecord,
        version: &VersionRecord,
        range: Range<u64>,
        binding: &crate::sse::KeyBinding,
    ) -> Result<ReadStream> {
        if let Some(inline) = &version.data.inline {
            return self
                .read_inline(bucket, version, inline, range, binding)
                .await;
        }
        let slices = plan(&version.data.segments, range);
        if slices.is_empty() {
            // Nothing stored to read (an empty object has no data key either).
            return Ok(Box::pin(futures::stream::empty()));
        }
        let dek = binding.apply(self.version_key(bucket, &version.data).await?);
        let mut layouts: HashMap<u32, Arc<strata_storage_node::Layout>> = HashMap::new();
        for s in &version.data.segments {
            if let std::collections::hash_map::Entry::Vacant(e) = layouts.entry(s.layout) {
                e.insert(self.layout(s.layout).await?.node);
            }
        }
        let pin = self
            .pins()
            .pin(version.data.segments.iter().map(|s| s.blob).collect());
        let chunks = self.chunks().clone();
        let budget = self.budget().clone();
        let chunk_size = version
            .data
            .segments
            .iter()
            .map(|s| s.chunk_size as usize)
            .max()
            .unwrap_or(0);
        let stream = futures::stream::iter(slices)
            .map(move |s| {
                let chunks = chunks.clone();
                let dek = dek.clone();
                let budget = budget.clone();
                let layout = layouts.get(&s.layout).cloned();
                // Spawned so the read-ahead really runs ahead, and because the body stream must
                // be Sync (a JoinHandle is).
                tokio::spawn(async move {
                    let reservation = budget.reserve(chunk_size.max(s.range.end)).await;
                    let layout = layout.ok_or_else(|| std::io::Error::other("segment layout unknown"))?;
                    let data = chunks.get_chunk(&layout, s.id, &dek).await.map_err(|e| {
                        tracing::error!(error = %e, blob = %hex::encode(s.id.blob), index = s.id.index, "chunk read failed");
                        std::io::Error::other(e.to_string())
                    })?;
                    if s.range.end > data.len() {
                        tracing::error!(blob = %hex::encode(s.id.blob), index = s.id.index, "chunk shorter than its record");
                        return Err(std::io::Error::other("chunk shorter than recorded"));
                    }
                    Ok::<Bytes, std::io::Error>(budget::hold(data.slice(s.range), reservation))
                })
            })
            .buffered(self.cfg().read_ahead.max(1))
            .map(move |joined| {
                // The pin lives as long as the stream.
                let _ = &pin;
                match joined {
                    Ok(r) => r,
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                }
            });
        Ok(Box::pin(stream))
    }
}

impl Engine {
    /// `range` of a version whose bytes are in its record: unsealed under its DEK (no pin: the
    /// bytes are in the record already read, and the DEK is read before anything is sent).
    async fn read_inline(
        &self,
        bucket: &BucketRecord,
        version: &VersionRecord,
        inline: &strata_metadata::InlineData,
        range: Range<u64>,
        binding: &crate::sse::KeyBinding,
    ) -> Result<ReadStream> {
        if range.start >= range.end {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let dek = binding.apply(self.version_key(bucket, &version.data).await?);
        let plain = strata_storage_node::pipeline::open_inline(&dek, &inline.blob, &inline.sealed)
            .map_err(|e| {
                tracing::error!(error = %e, blob = %hex::encode(inline.blob), "inline body failed to open");
                crate::EngineError::internal(format!("inline body: {e}"))
            })?;
        if plain.len() as u64 != version.size || range.end > version.size {
            tracing::error!(blob = %hex::encode(inline.blob), "inline body length differs from its record");
            return Err(crate::EngineError::internal(
                "inline body length differs from its record",
            ));
        }
        let data = Bytes::from(plain).slice(range.start as usize..range.end as usize);
        Ok(Box::pin(futures::stream::iter([
            Ok::<Bytes, std::io::Error>(data),
        ])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(b: u8, len: u64, cs: u32) -> Segment {
        Segment {
            blob: [b; 16],
            len,
            chunk_size: cs,
            layout: 1,
        }
    }

    #[test]
    fn plan_covers_exactly_the_range() {
        let segs = [seg(1, 10, 4), seg(2, 7, 4)];
        let p = plan(&segs, 3..13);
        let got: Vec<(u8, u32, Range<usize>)> = p
            .iter()
            .map(|s| (s.id.blob[0], s.id.index, s.range.clone()))
            .collect();
        assert_eq!(
            got,
            vec![(1, 0, 3..4), (1, 1, 0..4), (1, 2, 0..2), (2, 0, 0..3)]
        );
        let total: usize = p.iter().map(|s| s.range.len()).sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn plan_of_empty_object_is_empty() {
        assert!(plan(&[seg(1, 0, 4)], 0..0).is_empty());
        assert!(plan(&[], 0..0).is_empty());
    }

    #[test]
    fn plan_last_byte() {
        let p = plan(&[seg(1, 9, 4)], 8..9);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].id.index, p[0].range.clone()), (2, 0..1));
    }

    #[test]
    fn pins_count_readers() {
        let pins = Arc::new(ReadPins::default());
        let a = pins.pin(vec![[1; 16], [2; 16]]);
        let b = pins.pin(vec![[1; 16]]);
        assert!(pins.is_pinned(&[1; 16]) && pins.is_pinned(&[2; 16]));
        drop(a);
        assert!(pins.is_pinned(&[1; 16]) && !pins.is_pinned(&[2; 16]));
        drop(b);
        assert_eq!(pins.pinned(), 0);
    }
}
