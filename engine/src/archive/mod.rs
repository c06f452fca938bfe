//! The archive tier: versions in `GLACIER` / `DEEP_ARCHIVE` are repacked from the standard
//! tier into large containers written with their own erasure geometry (the archive layout),
//! restored on request into a temporary standard-tier copy, and containers whose live fraction
//! fell low are compacted.
//!
//! - [`repack`]: the `archive` worker (repack queue -> container extents, standard chunks to GC);
//! - [`restore`]: the `restore` worker (RestoreObject jobs, restored-copy expiry);
//! - [`compact`]: the `archive-compaction` worker (audit live bytes, rewrite, free containers).
//!
//! A container is one blob of the archive layout; each version's extent is a run of its chunks,
//! encrypted by the chunk store under the *version's own* data key, so destroying that key
//! shreds the archived copy too. The format is in `docs/archive-format.md`.

pub mod compact;
pub mod repack;
pub mod restore;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use strata_metadata::archive::ArchiveExtent;
use strata_metadata::{BucketRecord, VersionRecord};
use strata_storage_node::ChunkId;
use strata_storage_node::keys::DataKey;

use crate::Engine;
use crate::body::ReadStream;
use crate::error::{EngineError, Rejection, Result};
use crate::lifecycle::DayClock;

/// Restore job delays by tier (ms). DEEP_ARCHIVE takes `deep_factor` times as long.
#[derive(Clone, Debug)]
pub struct RestoreDelays {
    pub expedited_ms: i64,
    pub standard_ms: i64,
    pub bulk_ms: i64,
    pub deep_factor: i64,
}

impl RestoreDelays {
    /// S3 Glacier's typical times: Expedited minutes, Standard hours, Bulk half a day.
    pub fn real() -> Self {
        RestoreDelays {
            expedited_ms: 5 * 60_000,
            standard_ms: 4 * 3_600_000,
            bulk_ms: 12 * 3_600_000,
            deep_factor: 3,
        }
    }

    /// The scaled-day mode: seconds.
    pub fn scaled() -> Self {
        RestoreDelays {
            expedited_ms: 1_000,
            standard_ms: 2_000,
            bulk_ms: 4_000,
            deep_factor: 2,
        }
    }

    pub fn delay(&self, tier: &str, class: &str) -> i64 {
        let base = match tier {
            "Expedited" => self.expedited_ms,
            "Bulk" => self.bulk_ms,
            _ => self.standard_ms,
        };
        if class == "DEEP_ARCHIVE" {
            base.saturating_mul(self.deep_factor.max(1))
        } else {
            base
        }
    }
}

#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// Plaintext bytes per archive chunk.
    pub chunk_size: u32,
    /// A container is sealed once its extents reserve this many bytes.
    pub container_bytes: u64,
    /// Compaction rewrites a sealed container whose live fraction is below this.
    pub compact_below: f64,
    pub restore_delays: RestoreDelays,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            chunk_size: 16 * 1024 * 1024,
            container_bytes: 1024 * 1024 * 1024,
            compact_below: 0.5,
            restore_delays: RestoreDelays::real(),
        }
    }
}

impl Engine {
    pub fn lifecycle_clock(&self) -> DayClock {
        match self.cfg().lifecycle_day_secs {
            Some(s) => DayClock::scaled(s),
            None => DayClock::real(),
        }
    }

    pub fn archive_cfg(&self) -> &ArchiveConfig {
        &self.cfg().archive
    }

    /// The version as a reader sees it: `InvalidObjectState` for an archived version that is not
    /// restored; for a restored one, its restored copy in place of the (absent) standard data.
    pub fn readable(&self, v: &VersionRecord) -> Result<VersionRecord> {
        if v.needs_restore() {
            return Err(Rejection::InvalidObjectState.into());
        }
        let mut out = v.clone();
        if let Some(r) = v.archive.as_ref().and_then(|a| a.restore.as_ref())
            && strata_metadata::archive::is_archive_class(&v.storage_class)
        {
            out.data.segments = r.segments.clone();
            out.parts = v.parts.clone();
        }
        Ok(out)
    }

    /// Streams an archive extent (chunk by chunk, in order).
    pub async fn read_extent(
        &self,
        dek: std::sync::Arc<DataKey>,
        extent: &ArchiveExtent,
    ) -> Result<ReadStream> {
        let layout = self.layout(extent.layout).await?.node;
        let chunks = self.chunks().clone();
        let (container, first, n, len, cs) = (
            extent.container,
            extent.first_chunk,
            extent.chunk_count(),
            extent.len,
            extent.chunk_size as u64,
        );
        let stream = futures::stream::iter(0..n)
            .map(move |i| {
                let (chunks, layout, dek) = (chunks.clone(), layout.clone(), dek.clone());
                // Spawned: the body stream must be Sync (a JoinHandle is).
                tokio::spawn(async move {
                    let want = (len - i as u64 * cs).min(cs) as usize;
                    let data = chunks
                        .get_chunk(
                            &layout,
                            ChunkId {
                                blob: container,
                                index: first + i,
                            },
                            &dek,
                        )
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    if data.len() != want {
                        return Err(std::io::Error::other("archive chunk of unexpected length"));
                    }
                    Ok::<Bytes, std::io::Error>(data)
                })
            })
            .buffered(2)
            .map(|joined| match joined {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        Ok(Box::pin(stream))
    }

    /// The bytes of an archive-class version wherever they are: its extent, or (not yet
    /// repacked) its standard-tier segments.
    /// `binding`: the version's SSE binding (`Engine::server_chunk_key`).
    pub async fn archived_bytes(
        &self,
        bucket: &BucketRecord,
        v: &VersionRecord,
        binding: &crate::sse::KeyBinding,
    ) -> Result<ReadStream> {
        match v.archive.as_ref().and_then(|a| a.extent.as_ref()) {
            Some(ext) => {
                let dek = binding.apply(self.version_key(bucket, &v.data).await?);
                self.read_extent(dek, ext).await
            }
            None => self.read_range_bound(bucket, v, 0..v.size, binding).await,
        }
    }

    /// Writes `body` (exactly `extent.len` bytes) as the chunks of a reserved extent.
    pub(crate) async fn write_extent(
        &self,
        dek: &DataKey,
        extent: &ArchiveExtent,
        mut body: ReadStream,
    ) -> Result<()> {
        let layout = self.layout(extent.layout).await?.node;
        let cs = extent.chunk_size as usize;
        let mut buf = BytesMut::with_capacity(cs.min(extent.len as usize));
        let mut index = extent.first_chunk;
        let mut written: u64 = 0;
        while let Some(piece) = body.next().await {
            let mut piece =
                piece.map_err(|e| EngineError::internal(format!("reading source: {e}")))?;
            while !piece.is_empty() {
                let take = (cs - buf.len()).min(piece.len());
                buf.extend_from_slice(&piece.split_to(take));
                if buf.len() == cs {
                    let chunk = std::mem::replace(&mut buf, BytesMut::with_capacity(cs)).freeze();
                    written += chunk.len() as u64;
                    self.chunks()
                        .put_chunk(
                            &layout,
                            ChunkId {
                                blob: extent.container,
                                index,
                            },
                            dek,
                            chunk,
                        )
                        .await?;
                    index += 1;
                }
            }
        }
        if !buf.is_empty() {
            written += buf.len() as u64;
            self.chunks()
                .put_chunk(
                    &layout,
                    ChunkId {
                        blob: extent.container,
                        index,
                    },
                    dek,
                    buf.freeze(),
                )
                .await?;
        }
        if written != extent.len {
            return Err(EngineError::internal(format!(
                "extent source gave {written} bytes, expected {}",
                extent.len
            )));
        }
        Ok(())
    }
}
