//! Reading archived bytes: a byte range of a container (its chunks fetched a couple ahead and
//! decrypted under the container key), the frames of a version's extent opened under the
//! version's key, and format-1 extents (the version's own chunks under its own key).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use strata_metadata::archive::ArchiveExtent;
use strata_metadata::{BucketRecord, VersionRecord};
use strata_storage_node::ChunkId;
use strata_storage_node::keys::DataKey;

use super::frame::{FrameIdentity, open_frames};
use crate::Engine;
use crate::body::ReadStream;
use crate::error::{EngineError, Result};

/// Container chunks fetched ahead of the one being consumed.
const READ_AHEAD: usize = 2;

impl Engine {
    /// Bytes `range` (container coordinates) of the packed container `ext` is in, decrypted
    /// under its container key. The container is pinned against GC while the stream lives.
    pub async fn read_container(
        &self,
        ext: &ArchiveExtent,
        range: Range<u64>,
    ) -> Result<ReadStream> {
        if range.is_empty() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let id = ext.container;
        let c = self
            .meta_call(move |m| m.get_container(&id))
            .await?
            .ok_or_else(|| EngineError::internal("archive container is gone"))?;
        let key = self.container_key(&c).await?;
        let layout = self.layout(c.layout).await?.node;
        let cs = c.chunk_size as u64;
        if cs == 0 {
            return Err(EngineError::internal(
                "archive container without a chunk size",
            ));
        }
        let pin = self.pins().pin(vec![id]);
        let chunks = self.chunks().clone();
        let first = range.start / cs;
        let last = (range.end - 1) / cs;
        let stream = futures::stream::iter(first..=last)
            .map(move |i| {
                let (chunks, layout, key) = (chunks.clone(), layout.clone(), key.clone());
                let a = range.start.max(i * cs) - i * cs;
                let b = range.end.min((i + 1) * cs) - i * cs;
                // Spawned: the read-ahead really runs ahead, and the body stream must be Sync
                // (a JoinHandle is).
                tokio::spawn(async move {
                    let index = u32::try_from(i)
                        .map_err(|_| std::io::Error::other("container offset out of range"))?;
                    let data = chunks
                        .get_chunk(&layout, ChunkId { blob: id, index }, &key)
                        .await
                        .map_err(|e| {
                            tracing::error!(error = %e, container = %hex::encode(id), index, "archive chunk read failed");
                            std::io::Error::other(e.to_string())
                        })?;
                    if (data.len() as u64) < b {
                        tracing::error!(container = %hex::encode(id), index, "archive chunk shorter than its extents");
                        return Err(std::io::Error::other("archive chunk shorter than recorded"));
                    }
                    Ok::<Bytes, std::io::Error>(data.slice(a as usize..b as usize))
                })
            })
            .buffered(READ_AHEAD)
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

    /// The sealed bytes of a packed extent, as stored (what compaction copies verbatim).
    pub async fn read_sealed_extent(&self, ext: &ArchiveExtent) -> Result<ReadStream> {
        self.read_container(ext, ext.offset..ext.offset + ext.sealed_len)
            .await
    }

    /// Plaintext `range` of an archived version's extent: only the frames covering it are
    /// fetched and opened (under the version's data key).
    pub async fn read_extent(
        &self,
        bucket: &BucketRecord,
        key: &str,
        v: &VersionRecord,
        ext: &ArchiveExtent,
        range: Range<u64>,
        binding: &crate::sse::KeyBinding,
    ) -> Result<ReadStream> {
        let range = range.start.min(ext.len)..range.end.min(ext.len);
        if range.is_empty() {
            // Nothing to open (and an empty version has no data key at all).
            return Ok(Box::pin(futures::stream::empty()));
        }
        // SSE-KMS versions: sealed under the DEK bound to the KMS key (sse.rs).
        let dek = binding.apply(self.version_key(bucket, &v.data).await?);
        if !ext.is_packed() {
            return self.read_format1_extent(dek, ext, range).await;
        }
        let id = FrameIdentity {
            bucket: bucket.name.clone(),
            key: key.to_string(),
            version_id: v.version_id.clone(),
            len: ext.len,
            frame_size: ext.frame_size,
        };
        let frames = id.frames_for(&range);
        let from = id.sealed_range(frames.start).start;
        let to = id.sealed_range(frames.end - 1).end;
        if to > ext.sealed_len {
            return Err(EngineError::internal(
                "archive extent shorter than its frames",
            ));
        }
        let sealed = self
            .read_container(ext, ext.offset + from..ext.offset + to)
            .await?;
        Ok(open_frames(sealed, dek, id, range))
    }

    /// Format 1: chunks `first_chunk..` of the container are the version's own, each encrypted
    /// by the chunk store under the version's key.
    async fn read_format1_extent(
        &self,
        dek: Arc<DataKey>,
        extent: &ArchiveExtent,
        range: Range<u64>,
    ) -> Result<ReadStream> {
        let layout = self.layout(extent.layout).await?.node;
        let chunks = self.chunks().clone();
        let cs = extent.chunk_size as u64;
        if range.is_empty() || cs == 0 {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let (container, first, len) = (extent.container, extent.first_chunk, extent.len);
        let pin = self.pins().pin(vec![container]);
        let stream = futures::stream::iter(range.start / cs..range.end.div_ceil(cs))
            .map(move |i| {
                let (chunks, layout, dek) = (chunks.clone(), layout.clone(), dek.clone());
                let a = range.start.max(i * cs) - i * cs;
                let b = range.end.min((i + 1) * cs) - i * cs;
                tokio::spawn(async move {
                    let want = (len - i * cs).min(cs) as usize;
                    let index = first
                        .checked_add(i as u32)
                        .ok_or_else(|| std::io::Error::other("chunk index out of range"))?;
                    let data = chunks
                        .get_chunk(
                            &layout,
                            ChunkId {
                                blob: container,
                                index,
                            },
                            &dek,
                        )
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    if data.len() != want {
                        return Err(std::io::Error::other("archive chunk of unexpected length"));
                    }
                    Ok::<Bytes, std::io::Error>(data.slice(a as usize..b as usize))
                })
            })
            .buffered(READ_AHEAD)
            .map(move |joined| {
                let _ = &pin;
                match joined {
                    Ok(r) => r,
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                }
            });
        Ok(Box::pin(stream))
    }

    /// The bytes of an archive-class version wherever they are: its extent, or (not yet
    /// repacked) its standard-tier segments. `binding`: the version's SSE binding
    /// (`Engine::server_chunk_key`).
    pub async fn archived_bytes(
        &self,
        bucket: &BucketRecord,
        key: &str,
        v: &VersionRecord,
        binding: &crate::sse::KeyBinding,
    ) -> Result<ReadStream> {
        match v.archive.as_ref().and_then(|a| a.extent.as_ref()) {
            Some(ext) => {
                self.read_extent(bucket, key, v, ext, 0..v.size, binding)
                    .await
            }
            None => self.read_range_bound(bucket, v, 0..v.size, binding).await,
        }
    }
}
