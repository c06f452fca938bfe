//! The write half of the data path: a body is cut into chunks that go to the chunk store (a
//! bounded number in flight, under the global buffer budget), while its MD5 and checksum are
//! computed; nothing is committed here.
//!
//! Ownership of the written chunks: before the first chunk, a durable write intent names the blob
//! and this process as its owner. From then on exactly one of these happens, each conditioned on
//! the intent in the metadata tier: the commit that references the blob (which deletes the
//! intent), a discard (the write failed, or the caller gave up or disconnected: the blob goes to
//! the GC queue), or the sweep of an intent whose owner died. [`StoredBlob`] and [`BlobWriter`]
//! discard on drop, so a request future dropped mid-way (client disconnect) still hands its chunks
//! to the GC promptly, after the chunk writes it started have finished.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};
use strata_metadata::{BlobId, InlineData, Segment};
use strata_storage_node::keys::DataKey;
use strata_storage_node::{ChunkId, NodeError};
use tokio::task::JoinHandle;

use crate::Engine;
use crate::body::{BodyError, BodyStream};
use crate::budget::Reservation;
use crate::checksum::Hasher;
use crate::error::{EngineError, Rejection, Result};
use crate::keys::FreshDek;

/// The checksum the client sent after the body (an aws-chunked trailer), read once the body has
/// ended; an error when the trailer the client announced is missing or of another algorithm.
pub type LateChecksum =
    Box<dyn FnOnce() -> std::result::Result<Option<(String, String)>, Rejection> + Send>;

/// What a body must satisfy, checked while it streams.
#[derive(Default)]
pub struct WriteSpec {
    /// Largest body accepted (`TooLarge` above it).
    pub max_len: u64,
    /// Length the client announced, if any: the body must have exactly this length, and it
    /// bounds the write intent.
    pub expected_len: Option<u64>,
    /// Content-MD5 the client sent, if any.
    pub content_md5: Option<[u8; 16]>,
    /// Checksum algorithm to compute, and the value the client declared up front, if any.
    pub checksum_algorithm: Option<String>,
    pub checksum_expected: Option<String>,
    pub late_checksum: Option<LateChecksum>,
    /// A new data key the blob is written under (a new version's): it is written to the key
    /// store once the write intent (which then covers it too) is recorded, and goes to the GC
    /// with the chunks if the blob is never committed. `None`: an existing key (an upload's
    /// parts, a rebalanced segment).
    pub new_key: Option<Arc<FreshDek>>,
    /// A body of 1 to `inline_max` bytes written under a `new_key` is not chunked: it is
    /// sealed into [`StoredBlob::inline`] for the version record (0: always chunks).
    pub inline_max: u64,
}

/// The new data key of a stored blob, durable in the key store.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub kek_id: String,
    pub dek_id: String,
    pub slot: u64,
}

type KeyTask = JoinHandle<Result<String>>;

/// A body stored durably, chunk by chunk, not yet referenced by any version. Dropping it without
/// [`StoredBlob::committed`] hands its chunks to the GC.
pub struct StoredBlob {
    pub segment: Segment,
    pub md5: [u8; 16],
    /// (algorithm, base64 value), verified against what the client declared.
    pub checksum: Option<(String, String)>,
    /// The blob's new data key (`WriteSpec::new_key`), once durable; `None` for an empty body
    /// (nothing was written, so no key was stored).
    pub key: Option<StoredKey>,
    /// The body sealed for the version record ([`WriteSpec::inline_max`]); then no chunk was
    /// written and `segment` only carries the length.
    pub inline: Option<InlineData>,
    guard: DiscardGuard,
}

impl StoredBlob {
    pub fn etag(&self) -> String {
        hex::encode(self.md5)
    }

    /// The segments to record in a version or part (none for an empty body).
    pub fn segments(&self) -> Vec<Segment> {
        if self.segment.len > 0 && self.inline.is_none() {
            vec![self.segment.clone()]
        } else {
            Vec::new()
        }
    }

    /// A commit referencing the blob has landed: nothing to discard.
    pub fn committed(mut self) {
        self.guard.disarm();
    }

    /// The commit definitely failed: queue the chunks for GC now (conditioned on the write intent,
    /// so a blob that some commit does reference is never queued).
    pub async fn discard(mut self, reason: &'static str) {
        if let Some((engine, segment)) = self.guard.take() {
            engine.discard_segment(segment, reason).await;
        }
    }
}

/// Discards a blob's chunks when dropped while armed (spawned, since drop cannot wait).
struct DiscardGuard {
    armed: Option<(Engine, Segment)>,
    /// Chunk writes still running when the guard fires: the discard waits for them, so no chunk
    /// lands after its GC item was processed.
    inflight: VecDeque<JoinHandle<std::result::Result<(), NodeError>>>,
    /// The new key's write to the key store, if running: waited for like the chunk writes.
    key_task: Option<KeyTask>,
    reason: &'static str,
}

impl DiscardGuard {
    fn disarm(&mut self) {
        self.armed = None;
    }
    fn take(&mut self) -> Option<(Engine, Segment)> {
        self.armed.take()
    }
}

impl Drop for DiscardGuard {
    fn drop(&mut self) {
        let Some((engine, segment)) = self.armed.take() else {
            return;
        };
        let inflight = std::mem::take(&mut self.inflight);
        let key_task = self.key_task.take();
        let reason = self.reason;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    for t in inflight {
                        let _ = t.await;
                    }
                    if let Some(t) = key_task {
                        let _ = t.await;
                    }
                    tracing::info!(blob = %hex::encode(segment.blob), reason, "write abandoned: chunks handed to GC");
                    engine.discard_segment(segment, reason).await;
                });
            }
            // No runtime (process shutting down): the intent stays and the next start sweeps it.
            Err(_) => {
                tracing::warn!(blob = %hex::encode(segment.blob), "write abandoned at shutdown: left to the intent sweep")
            }
        }
    }
}

pub fn new_blob_id() -> BlobId {
    rand::random()
}

fn body_error(e: BodyError) -> EngineError {
    match e {
        BodyError::Signature => Rejection::BodySignature.into(),
        BodyError::Incomplete => Rejection::IncompleteBody.into(),
        BodyError::Io(msg) => {
            tracing::warn!(error = %msg.chars().take(200).collect::<String>(), "request body failed");
            Rejection::IncompleteBody.into()
        }
    }
}

/// Bodies below this are hashed on the calling task: handing 64 KiB to a blocking thread costs
/// more than hashing it (MD5 ~0.4 GiB/s: 160 µs for 64 KiB, 10 ms for a 4 MiB chunk).
const INLINE_HASH_MAX: usize = 64 * 1024;

/// MD5 plus the requested checksum, fed in order.
struct Digests {
    md5: Md5,
    checksum: Option<Hasher>,
}

impl Digests {
    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(h) = self.checksum.as_mut() {
            h.update(data);
        }
    }
}

/// Hashes chunk after chunk, large ones on the blocking pool, strictly in order.
struct Hashing {
    idle: Option<Digests>,
    busy: Option<JoinHandle<Digests>>,
}

impl Hashing {
    async fn digests(&mut self) -> Result<Digests> {
        if let Some(t) = self.busy.take() {
            return t
                .await
                .map_err(|e| EngineError::internal(format!("hash task failed: {e}")));
        }
        self.idle
            .take()
            .ok_or_else(|| EngineError::internal("hashing state lost"))
    }

    async fn feed(&mut self, data: Bytes) -> Result<()> {
        let mut d = self.digests().await?;
        if data.len() < INLINE_HASH_MAX {
            d.update(&data);
            self.idle = Some(d);
        } else {
            self.busy = Some(tokio::task::spawn_blocking(move || {
                d.update(&data);
                d
            }));
        }
        Ok(())
    }
}

/// Streams a body into the chunks of a new blob, under one data key.
struct BlobWriter<'a> {
    engine: &'a Engine,
    dek: Arc<DataKey>,
    blob: BlobId,
    chunk_size: usize,
    /// The layout the chunks are written with (the current one when the write began).
    layout: Arc<strata_storage_node::Layout>,
    /// Chunks handed to the chunk store so far: after a failure, any of them may exist.
    submitted: u32,
    intent_bound: u64,
    new_key: Option<Arc<FreshDek>>,
    guard: DiscardGuard,
}

impl BlobWriter<'_> {
    fn segment(&self, len: u64) -> Segment {
        Segment {
            blob: self.blob,
            len,
            chunk_size: self.chunk_size as u32,
            layout: self.layout.id,
        }
    }

    /// Hands one full (or final) chunk to the chunk store, keeping at most `write_parallelism`
    /// in flight. `reservation` is the budget of this chunk's buffer; it is released when the
    /// chunk is durable.
    async fn submit(&mut self, data: Bytes, reservation: Reservation) -> Result<()> {
        if self.submitted == 0 {
            let intent = self.segment(self.intent_bound.max(1));
            let owner = self.engine.instance().get();
            let key = self.new_key.as_ref().map(|k| k.key_ref());
            self.engine
                .meta_call(move |m| {
                    m.begin_write_with_key(&intent, key.as_ref(), &owner, crate::now_ms())
                })
                .await?;
            // From here on a failure or a drop must discard what may have been written.
            self.guard.armed = Some((self.engine.clone(), self.segment(0)));
            // The intent covers the new key now: write it while the chunks are written.
            if let Some(k) = self.new_key.clone() {
                let engine = self.engine.clone();
                self.guard.key_task =
                    Some(tokio::spawn(async move { engine.persist_dek(k).await }));
            }
        }
        while self.guard.inflight.len() >= self.engine.cfg().write_parallelism.max(1) {
            self.finish_one().await?;
        }
        let id = ChunkId {
            blob: self.blob,
            index: self.submitted,
        };
        self.submitted += 1;
        if let Some((_, seg)) = self.guard.armed.as_mut() {
            seg.len = self.submitted as u64 * self.chunk_size as u64;
        }
        let chunks = self.engine.chunks().clone();
        let dek = self.dek.clone();
        let layout = self.layout.clone();
        self.guard.inflight.push_back(tokio::spawn(async move {
            let r = chunks.put_chunk(&layout, id, &dek, data).await;
            drop(reservation);
            r
        }));
        Ok(())
    }

    async fn finish_one(&mut self) -> Result<()> {
        if let Some(t) = self.guard.inflight.pop_front() {
            t.await
                .map_err(|e| EngineError::internal(format!("chunk write task failed: {e}")))??;
        }
        Ok(())
    }

    async fn finish_all(&mut self) -> Result<()> {
        while !self.guard.inflight.is_empty() {
            self.finish_one().await?;
        }
        Ok(())
    }

    /// Waits for the new key's write (if one was started): its KEK id.
    async fn finish_key(&mut self) -> Result<Option<String>> {
        match self.guard.key_task.take() {
            None => Ok(None),
            Some(t) => t
                .await
                .map_err(|e| EngineError::internal(format!("key write task failed: {e}")))?
                .map(Some),
        }
    }
}

impl Engine {
    /// Streams `body` into a new blob under `dek`, checking `spec` on the way. On success the
    /// chunks are durable and the caller must commit the returned [`StoredBlob`] (or drop it,
    /// which discards). On failure everything written is handed to the GC before returning.
    pub async fn write_blob(
        &self,
        dek: Arc<DataKey>,
        mut body: BodyStream,
        spec: WriteSpec,
    ) -> Result<StoredBlob> {
        let layout = self.layouts().current();
        let chunk_size = (layout.record.chunk_size as usize).max(1);
        let mut w = BlobWriter {
            engine: self,
            dek,
            blob: new_blob_id(),
            chunk_size,
            layout: layout.node,
            submitted: 0,
            intent_bound: spec.expected_len.unwrap_or(spec.max_len).min(spec.max_len),
            new_key: spec.new_key.clone(),
            guard: DiscardGuard {
                armed: None,
                inflight: VecDeque::new(),
                key_task: None,
                reason: "abandoned-write",
            },
        };
        let result = async {
            let mut hashing = Hashing {
                idle: Some(Digests {
                    md5: Md5::new(),
                    checksum: spec
                        .checksum_algorithm
                        .as_deref()
                        .map(Hasher::new)
                        .transpose()?,
                }),
                busy: None,
            };
            let mut buf = BytesMut::new();
            let mut held: Option<Reservation> = None;
            let mut total: u64 = 0;
            while let Some(item) = body.next().await {
                let mut data = item.map_err(body_error)?;
                total += data.len() as u64;
                if total > spec.max_len {
                    return Err(Rejection::TooLarge {
                        limit: spec.max_len,
                    }
                    .into());
                }
                while !data.is_empty() {
                    if buf.is_empty() && data.len() >= chunk_size {
                        // A whole chunk arrived in one piece: hand it on without copying.
                        let piece = data.split_to(chunk_size);
                        let r = self.budget().reserve(chunk_size).await;
                        hashing.feed(piece.clone()).await?;
                        w.submit(piece, r).await?;
                        continue;
                    }
                    if held.is_none() {
                        // Budget first, then the buffer: never wait for budget while holding a
                        // partly filled buffer.
                        held = Some(self.budget().reserve(chunk_size).await);
                        buf.reserve(chunk_size);
                    }
                    let take = (chunk_size - buf.len()).min(data.len());
                    buf.extend_from_slice(&data.split_to(take));
                    if buf.len() == chunk_size {
                        let piece = buf.split().freeze();
                        hashing.feed(piece.clone()).await?;
                        w.submit(piece, held.take().expect("reserved above"))
                            .await?;
                    }
                }
            }
            let mut inline_body = None;
            if !buf.is_empty() {
                let piece = buf.split().freeze();
                hashing.feed(piece.clone()).await?;
                if w.submitted == 0 && total <= spec.inline_max && spec.new_key.is_some() {
                    // Small enough for the record: sealed once the body is known good.
                    inline_body = Some(piece);
                } else {
                    let r = match held.take() {
                        Some(r) => r,
                        None => self.budget().reserve(piece.len()).await,
                    };
                    w.submit(piece, r).await?;
                }
            }
            drop(held);
            w.finish_all().await?;
            let kek_id = w.finish_key().await?;
            // A body shorter or longer than announced is never committed.
            if spec.expected_len.is_some_and(|n| n != total) {
                return Err(Rejection::IncompleteBody.into());
            }
            let digests = hashing.digests().await?;
            let md5: [u8; 16] = digests.md5.finalize().into();
            if spec.content_md5.is_some_and(|expected| expected != md5) {
                return Err(Rejection::Md5Mismatch.into());
            }
            let late = match spec.late_checksum {
                Some(f) => f()?,
                None => None,
            };
            let checksum = match digests.checksum {
                None => None,
                Some(h) => {
                    let alg = spec.checksum_algorithm.clone().unwrap_or_default();
                    let actual = h.finalize();
                    let expected = spec.checksum_expected.clone().or_else(|| {
                        late.filter(|(a, _)| a.eq_ignore_ascii_case(&alg))
                            .map(|(_, v)| v)
                    });
                    if expected.is_some_and(|e| e != actual) {
                        return Err(Rejection::ChecksumMismatch { algorithm: alg }.into());
                    }
                    Some((alg, actual))
                }
            };
            Ok((md5, checksum, total, kek_id, inline_body))
        }
        .await;

        match result {
            Ok((md5, checksum, total, _, Some(body))) => {
                let key = spec.new_key.clone().expect("inline needs a new key");
                self.store_inline(&w.dek, key, body, md5, checksum, total)
                    .await
            }
            Ok((md5, checksum, total, kek_id, None)) => {
                let segment = w.segment(total);
                let key = match (kek_id, &spec.new_key) {
                    (Some(kek_id), Some(k)) => Some(StoredKey {
                        kek_id,
                        dek_id: k.id.clone(),
                        slot: k.slot,
                    }),
                    _ => None,
                };
                // The guard now covers exactly the stored chunks (none for an empty body, which
                // wrote nothing and recorded no intent).
                let mut guard = std::mem::replace(
                    &mut w.guard,
                    DiscardGuard {
                        armed: None,
                        inflight: VecDeque::new(),
                        key_task: None,
                        reason: "abandoned-write",
                    },
                );
                if let Some((_, seg)) = guard.armed.as_mut() {
                    *seg = segment.clone();
                }
                guard.reason = "uncommitted-write";
                Ok(StoredBlob {
                    segment,
                    md5,
                    checksum,
                    key,
                    inline: None,
                    guard,
                })
            }
            Err(e) => {
                // Let the chunk writes already started finish, then queue every chunk this blob
                // may hold (the write intent is cleared in the same batch).
                for t in std::mem::take(&mut w.guard.inflight) {
                    let _ = t.await;
                }
                let _ = w.finish_key().await;
                if let Some((engine, _)) = w.guard.armed.take() {
                    let orphan = w.segment(w.submitted as u64 * chunk_size as u64);
                    engine.discard_segment(orphan, "failed-write").await;
                }
                Err(e)
            }
        }
    }

    /// Stores a small body for its version record: a write intent (a stand-in blob with no
    /// chunks) covers the new key, the key is written to the key store, and the body is sealed
    /// under `dek`. The commit of the version consumes the intent; dropping the result
    /// discards it (the key goes to the GC). Costs two group-committed syncs (intent, key
    /// store) and no file per shard.
    async fn store_inline(
        &self,
        dek: &DataKey,
        key: Arc<FreshDek>,
        body: Bytes,
        md5: [u8; 16],
        checksum: Option<(String, String)>,
        total: u64,
    ) -> Result<StoredBlob> {
        let blob = new_blob_id();
        let stand_in = Segment {
            blob,
            len: 0,
            chunk_size: 0,
            layout: 0,
        };
        let owner = self.instance().get();
        let (intent, kref) = (stand_in.clone(), key.key_ref());
        self.meta_call(move |m| {
            m.begin_write_with_key(&intent, Some(&kref), &owner, crate::now_ms())
        })
        .await?;
        let mut guard = DiscardGuard {
            armed: Some((self.clone(), stand_in)),
            inflight: VecDeque::new(),
            key_task: None,
            reason: "uncommitted-write",
        };
        let kek_id = match self.persist_dek(key.clone()).await {
            Ok(k) => k,
            Err(e) => {
                if let Some((engine, s)) = guard.take() {
                    engine.discard_segment(s, "failed-write").await;
                }
                return Err(e);
            }
        };
        let sealed = strata_storage_node::pipeline::seal_inline(dek, &blob, &body);
        Ok(StoredBlob {
            segment: Segment {
                blob,
                len: total,
                chunk_size: 0,
                layout: 0,
            },
            md5,
            checksum,
            key: Some(StoredKey {
                kek_id,
                dek_id: key.id.clone(),
                slot: key.slot,
            }),
            inline: Some(InlineData { blob, sealed }),
            guard,
        })
    }

    /// Queues a written, uncommitted segment for GC (no-op for an empty one). The metadata tier
    /// does it only while the blob's write intent exists, in the batch that deletes the intent: a
    /// blob whose commit landed (or that the sweep already took) is never queued, so this is safe
    /// after any failure, even one where it is unknown whether the commit applied.
    pub(crate) async fn discard_segment(&self, segment: Segment, reason: &'static str) {
        // No chunks and a chunk size: nothing was written. No chunk size: the stand-in of an
        // inline body's intent, which holds its key.
        if segment.chunk_count() == 0 && segment.chunk_size > 0 {
            return;
        }
        let blob = hex::encode(segment.blob);
        if let Err(e) = self
            .meta_call(move |m| m.discard_write(vec![segment], reason))
            .await
        {
            tracing::error!(error = %e, %blob, "could not queue an uncommitted write for GC; the intent sweep will");
        }
    }
}
