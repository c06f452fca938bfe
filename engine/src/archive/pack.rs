//! Packing sealed extents into container chunks. A [`ContainerWriter`] fills one open container
//! at a time: extents are appended back to back into a buffer of one chunk, and each full chunk
//! is written once (chunk ids are create-only) under the container key, after its index was
//! reserved durably in the container record. An extent becomes *ready* once the chunk holding
//! its last byte is written; only then may its caller commit it (the repack worker points the
//! version at it, compaction swaps it in).
//!
//! Nothing here is durable but the chunks and their reservations: whatever was buffered when
//! the process dies is simply not there, its versions are still queued (or still live where
//! they were), and they are written again. Bytes of extents never committed are dead bytes of
//! their container, counted by the compaction audit (`bytes - live_bytes`).
//!
//! Memory: one chunk buffer (the archive chunk size) per writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use strata_metadata::LayoutRecord;
use strata_metadata::archive::{ArchiveExtent, ContainerRecord};
use strata_storage_node::keys::DataKey;
use strata_storage_node::{ChunkId, Layout};

use crate::Engine;
use crate::error::{EngineError, Result};

struct Open {
    rec: ContainerRecord,
    key: Arc<DataKey>,
    layout: Arc<Layout>,
    /// The chunk being filled (its bytes start at `index * chunk_size`).
    index: u32,
    buf: BytesMut,
    /// End of the last chunk written by this writer (container coordinates).
    durable_end: u64,
}

impl Open {
    fn cs(&self) -> u64 {
        self.rec.chunk_size as u64
    }

    fn position(&self) -> u64 {
        self.index as u64 * self.cs() + self.buf.len() as u64
    }
}

/// An extent placed in a container, with what its caller needs to commit it.
pub(crate) struct Placed<T> {
    pub extent: ArchiveExtent,
    pub item: T,
}

pub(crate) struct ContainerWriter<T> {
    engine: Engine,
    writer: &'static str,
    /// Seal a container once this many bytes are in it (checked between extents).
    seal_bytes: u64,
    open: Option<Open>,
    /// Start of the extent being appended.
    current: Option<u64>,
    /// Placed, their last byte not yet written (in order), and since when.
    waiting: VecDeque<(Placed<T>, Instant)>,
    ready: Vec<Placed<T>>,
    /// Stats: chunks written, and bytes of extents abandoned in written chunks.
    pub chunks_written: u64,
    pub abandoned_bytes: u64,
}

impl<T> ContainerWriter<T> {
    pub fn new(engine: Engine, writer: &'static str, seal_bytes: u64) -> Self {
        ContainerWriter {
            engine,
            writer,
            seal_bytes: seal_bytes.max(1),
            open: None,
            current: None,
            waiting: VecDeque::new(),
            ready: Vec::new(),
            chunks_written: 0,
            abandoned_bytes: 0,
        }
    }

    /// Starts an extent in the open container (opening one of `layout` / `chunk_size` first, or
    /// resuming the one recorded for this writer).
    pub async fn begin(&mut self, layout: &LayoutRecord, chunk_size: u32) -> Result<()> {
        if self.current.is_some() {
            return Err(EngineError::internal("archive extent begun twice"));
        }
        self.seal_if_full().await?;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.rec.layout != layout.id || o.rec.chunk_size != chunk_size)
        {
            // A new archive geometry: the old container takes nothing more.
            self.seal().await?;
        }
        if self.open.is_none() {
            let fresh = self
                .engine
                .new_container_record(self.writer, layout.id, chunk_size)
                .await?;
            let w = self.writer;
            let rec = self
                .engine
                .meta_call(move |m| m.open_container(w, &fresh))
                .await?;
            let key = self.engine.container_key(&rec).await?;
            let node = self.engine.layout(rec.layout).await?.node;
            let index = rec.next_chunk;
            let durable_end = index as u64 * rec.chunk_size as u64;
            tracing::debug!(container = %hex::encode(rec.id), writer = w, next_chunk = index, "archive container open");
            self.open = Some(Open {
                buf: BytesMut::with_capacity(rec.chunk_size as usize),
                rec,
                key,
                layout: node,
                index,
                durable_end,
            });
        }
        self.current = self.open.as_ref().map(|o| o.position());
        Ok(())
    }

    /// Appends sealed bytes of the current extent; writes every chunk they fill.
    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        if self.current.is_none() {
            return Err(EngineError::internal("archive bytes outside an extent"));
        }
        while !bytes.is_empty() {
            let o = self.open.as_mut().expect("begun");
            let room = o.rec.chunk_size as usize - o.buf.len();
            let take = room.min(bytes.len());
            o.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if o.buf.len() == o.rec.chunk_size as usize {
                self.write_chunk().await?;
            }
        }
        Ok(())
    }

    /// Ends the current extent: it is placed (ready at once if it has no bytes left to write).
    /// A container that is now full gets its last chunk written (so everything in it becomes
    /// ready); [`Self::seal_if_full`] seals it once the caller has committed.
    pub async fn finish(&mut self, len: u64, frame_size: u32, item: T) -> Result<()> {
        let start = self
            .current
            .take()
            .ok_or_else(|| EngineError::internal("archive extent finished twice"))?;
        let o = self.open.as_ref().expect("begun");
        let end = o.position();
        let placed = Placed {
            extent: ArchiveExtent {
                container: o.rec.id,
                first_chunk: 0,
                len,
                chunk_size: o.rec.chunk_size,
                layout: o.rec.layout,
                offset: start,
                sealed_len: end - start,
                frame_size,
            },
            item,
        };
        if end <= o.durable_end || end == start {
            self.ready.push(placed);
        } else {
            self.waiting.push_back((placed, Instant::now()));
        }
        if o.rec.bytes + o.buf.len() as u64 >= self.seal_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals the open container if it holds `seal_bytes`. Called after the ready extents were
    /// committed: a sealed container may be audited (and retired) at once, and commits into a
    /// retiring container are refused.
    pub async fn seal_if_full(&mut self) -> Result<()> {
        if self.current.is_none()
            && self.waiting.is_empty()
            && self.ready.is_empty()
            && self
                .open
                .as_ref()
                .is_some_and(|o| o.rec.bytes + o.buf.len() as u64 >= self.seal_bytes)
        {
            self.seal().await?;
        }
        Ok(())
    }

    /// Drops the current extent (its source failed): bytes still buffered are taken back, any
    /// already in written chunks stay there, dead.
    pub fn abort(&mut self) {
        let (Some(start), Some(o)) = (self.current.take(), self.open.as_mut()) else {
            return;
        };
        let chunk_start = o.index as u64 * o.cs();
        if start >= chunk_start {
            o.buf.truncate((start - chunk_start) as usize);
        } else {
            self.abandoned_bytes += chunk_start - start;
            o.buf.clear();
        }
    }

    /// Writes the partly filled chunk, so every placed extent becomes ready. The next extent
    /// starts in the next chunk (chunks are never rewritten; a short one is just shorter).
    pub async fn flush(&mut self) -> Result<()> {
        if self.current.is_some() {
            return Err(EngineError::internal("archive flush inside an extent"));
        }
        if self.open.as_ref().is_some_and(|o| !o.buf.is_empty()) {
            self.write_chunk().await?;
        }
        Ok(())
    }

    /// Flushes and seals the open container (immutable from now on).
    pub async fn seal(&mut self) -> Result<()> {
        self.flush().await?;
        if let Some(o) = self.open.take() {
            let id = o.rec.id;
            self.engine
                .meta_call(move |m| m.seal_container(&id))
                .await?;
            tracing::info!(container = %hex::encode(id), writer = self.writer, bytes = o.rec.bytes, chunks = o.index, "archive container sealed");
        }
        Ok(())
    }

    /// Extents whose bytes are all written, in order, for the caller to commit.
    pub fn take_ready(&mut self) -> Vec<Placed<T>> {
        std::mem::take(&mut self.ready)
    }

    /// Since when the oldest waiting extent waits.
    pub fn oldest_waiting(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, t)| *t)
    }

    /// After an error: forget the open container and everything placed and not written (their
    /// callers start over); ready extents stay ready.
    pub fn reset(&mut self) -> Vec<T> {
        self.current = None;
        self.open = None;
        self.waiting.drain(..).map(|(p, _)| p.item).collect()
    }

    async fn write_chunk(&mut self) -> Result<()> {
        let o = self.open.as_mut().expect("open");
        let data = o.buf.split().freeze();
        let (id, index, len) = (o.rec.id, o.index, data.len() as u64);
        // Reserved before it is written: a crash leaves the chunk under `next_chunk`, where
        // the container's retirement finds it.
        let rec = self
            .engine
            .meta_call(move |m| m.reserve_chunk(&id, index, len))
            .await?;
        let o = self.open.as_mut().expect("open");
        o.rec = rec;
        self.engine
            .chunks()
            .put_chunk(&o.layout, ChunkId { blob: id, index }, &o.key, data)
            .await?;
        o.durable_end = index as u64 * o.cs() + len;
        o.index += 1;
        o.buf.reserve(o.rec.chunk_size as usize);
        self.chunks_written += 1;
        let end = o.durable_end;
        while self
            .waiting
            .front()
            .is_some_and(|(p, _)| p.extent.offset + p.extent.sealed_len <= end)
        {
            let (p, _) = self.waiting.pop_front().expect("checked");
            self.ready.push(p);
        }
        Ok(())
    }
}
