//! The object data path inside the gateway: cutting a request body into chunks that go to the
//! chunk service (a bounded number in flight, so memory stays bounded for any object size), and
//! streaming chunks back for GET, range by range.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use strata_metadata::{BlobId, Segment};
use strata_storage_node::keys::DataKey;
use strata_storage_node::{ChunkId, ChunkService, Layout, NodeError};
use tokio::task::JoinHandle;

use crate::checksum::Hasher;
use crate::context::Context;
use crate::errors;

/// What a body must satisfy, checked while it streams.
pub struct BodyChecks {
    /// Largest body accepted (`EntityTooLarge` above it).
    pub max_len: u64,
    /// Length the client announced, if any: the body must have exactly this length, and it is
    /// the write intent's bound.
    pub expected_len: Option<u64>,
    /// Content-MD5 the client sent (decoded), if any.
    pub content_md5: Option<Vec<u8>>,
    /// Checksum algorithm to compute, and the value the client declared up front, if any.
    pub checksum_algorithm: Option<String>,
    pub checksum_expected: Option<String>,
    /// Trailers of an aws-chunked body, read once the body has ended.
    pub trailers: Option<s3s::TrailingHeaders>,
}

/// A body that has been stored durably, chunk by chunk.
pub struct StoredBlob {
    pub segment: Segment,
    pub md5: [u8; 16],
    /// (algorithm, base64 value), verified against what the client declared.
    pub checksum: Option<(String, String)>,
}

pub fn new_blob_id() -> BlobId {
    rand::random()
}

fn body_error(e: &s3s::StdError) -> S3Error {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        s3_error!(SignatureDoesNotMatch, "The chunk signature does not match.")
    } else if text.contains("Incomplete") || text.contains("FormatError") {
        s3_error!(IncompleteBody)
    } else {
        tracing::warn!(error = %text, "request body failed");
        s3_error!(IncompleteBody)
    }
}

type PutTask = JoinHandle<Result<(), NodeError>>;

async fn finish_one(inflight: &mut VecDeque<PutTask>) -> S3Result<()> {
    if let Some(t) = inflight.pop_front() {
        match t.await {
            Ok(r) => r.map_err(errors::node)?,
            Err(e) => {
                tracing::error!(error = %e, "chunk write task failed");
                return Err(s3_error!(InternalError));
            }
        }
    }
    Ok(())
}

/// Streams `body` into chunks of a new blob under `dek`. On any failure the chunks written so far
/// are queued for garbage collection and the error is returned; nothing is committed here.
///
/// Before the first chunk is written, a durable write intent names the blob
/// (`MetaStore::begin_write`), so that chunks of a request cut short by a crash are still found and
/// collected; the commit that references the blob clears the intent in its own batch.
pub async fn store_body(
    ctx: &Context,
    dek: Arc<DataKey>,
    body: Option<StreamingBlob>,
    checks: BodyChecks,
) -> S3Result<StoredBlob> {
    let blob = new_blob_id();
    let chunk_size = ctx.cfg.chunk_size;
    let segment = |len: u64| Segment {
        blob,
        len,
        chunk_size: chunk_size as u32,
    };
    let mut inflight: VecDeque<PutTask> = VecDeque::new();
    // Chunks handed to the chunk service so far: after a failure, any of them may exist.
    let mut submitted: u32 = 0;
    let intent_bound = checks
        .expected_len
        .unwrap_or(checks.max_len)
        .min(checks.max_len);

    let result = async {
        let mut md5 = Md5::new();
        let mut hasher = match &checks.checksum_algorithm {
            Some(a) => Some(Hasher::new(a)?),
            None => None,
        };
        let mut buf = BytesMut::new();
        let mut total: u64 = 0;

        // Hands one chunk to the chunk service, keeping at most `write_parallelism` in flight.
        let mut submit = async |data: Bytes, inflight: &mut VecDeque<PutTask>| -> S3Result<()> {
            if submitted == 0 {
                ctx.meta
                    .begin_write(&segment(intent_bound.max(1)), crate::context::now_ms())
                    .map_err(errors::meta)?;
            }
            if inflight.len() >= ctx.cfg.write_parallelism {
                finish_one(inflight).await?;
            }
            let id = ChunkId {
                blob,
                index: submitted,
            };
            submitted += 1;
            let chunks: Arc<dyn ChunkService> = ctx.chunks.clone();
            let dek = dek.clone();
            // TODO(engine): the segment's recorded layout, not the configured one.
            let layout = ctx.cfg.layout.clone();
            inflight.push_back(tokio::spawn(async move {
                chunks.put_chunk(&layout, id, &dek, data).await
            }));
            Ok(())
        };

        if let Some(mut body) = body {
            while let Some(item) = body.next().await {
                let mut data = item.map_err(|e| body_error(&e))?;
                total += data.len() as u64;
                if total > checks.max_len {
                    return Err(s3_error!(EntityTooLarge));
                }
                md5.update(&data);
                if let Some(h) = hasher.as_mut() {
                    h.update(&data);
                }
                while !data.is_empty() {
                    if buf.is_empty() && data.len() >= chunk_size {
                        // Whole chunk available: hand it on without copying.
                        let piece = data.split_to(chunk_size);
                        submit(piece, &mut inflight).await?;
                        continue;
                    }
                    if buf.capacity() == 0 {
                        buf.reserve(chunk_size);
                    }
                    let take = (chunk_size - buf.len()).min(data.len());
                    buf.extend_from_slice(&data.split_to(take));
                    if buf.len() == chunk_size {
                        submit(buf.split().freeze(), &mut inflight).await?;
                    }
                }
            }
        }
        if !buf.is_empty() {
            submit(buf.split().freeze(), &mut inflight).await?;
        }
        while !inflight.is_empty() {
            finish_one(&mut inflight).await?;
        }
        // A body shorter or longer than announced is never committed (its chunks go to GC below).
        if checks.expected_len.is_some_and(|n| n != total) {
            return Err(s3_error!(IncompleteBody));
        }

        let md5: [u8; 16] = md5.finalize().into();
        if let Some(expected) = &checks.content_md5
            && expected.as_slice() != md5.as_slice()
        {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
        let checksum = match hasher {
            None => None,
            Some(h) => {
                let alg = checks.checksum_algorithm.clone().unwrap_or_default();
                let actual = h.finalize();
                let expected = checks.checksum_expected.clone().or_else(|| {
                    checks
                        .trailers
                        .as_ref()
                        .and_then(|t| t.read(crate::checksum::from_trailers))
                        .flatten()
                        .filter(|(a, _)| a.eq_ignore_ascii_case(&alg))
                        .map(|(_, v)| v)
                });
                if let Some(expected) = expected
                    && expected != actual
                {
                    return Err(S3Error::with_message(
                        S3ErrorCode::BadDigest,
                        format!(
                            "The {} you specified did not match the calculated checksum.",
                            alg.to_ascii_lowercase()
                        ),
                    ));
                }
                Some((alg, actual))
            }
        };
        Ok((md5, checksum, total))
    }
    .await;

    match result {
        Ok((md5, checksum, total)) => Ok(StoredBlob {
            segment: segment(total),
            md5,
            checksum,
        }),
        Err(e) => {
            // Let writes already started finish, then queue every chunk this blob may hold;
            // queuing also clears the write intent, in the same batch.
            for t in inflight.drain(..) {
                let _ = t.await;
            }
            if submitted > 0 {
                let orphan = segment(submitted as u64 * chunk_size as u64);
                if let Err(ge) = ctx.meta.gc_enqueue(vec![orphan], "failed-write") {
                    tracing::error!(error = %ge, "could not queue an aborted write for GC");
                }
            }
            Err(e)
        }
    }
}

/// One chunk (or part of one) that a read needs.
struct ChunkSlice {
    id: ChunkId,
    range: Range<usize>,
}

/// Plans which chunks cover `range` of an object made of `segments`.
fn plan(segments: &[Segment], range: Range<u64>) -> Vec<ChunkSlice> {
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

/// Streams `range` of an object: chunks are fetched (decrypted, decoded) a few ahead, in order.
pub fn read_range(
    ctx: &Context,
    dek: Arc<DataKey>,
    segments: &[Segment],
    range: Range<u64>,
) -> StreamingBlob {
    let chunks: Arc<dyn ChunkService> = ctx.chunks.clone();
    // TODO(engine): read each segment with the layout it records.
    let layout = Arc::new(ctx.cfg.layout.clone());
    let slices = plan(segments, range);
    let stream = futures::stream::iter(slices)
        .map(move |s| {
            let chunks = chunks.clone();
            let dek = dek.clone();
            let layout = layout.clone();
            // Spawned so the read-ahead really runs ahead, and because the body stream must be
            // Sync (a JoinHandle is).
            tokio::spawn(async move {
                let data = chunks.get_chunk(&layout, s.id, &dek).await.map_err(|e| {
                    tracing::error!(error = %e, blob = %hex::encode(s.id.blob), index = s.id.index, "chunk read failed");
                    std::io::Error::other(e.to_string())
                })?;
                if s.range.end > data.len() {
                    tracing::error!(blob = %hex::encode(s.id.blob), index = s.id.index, "chunk shorter than its record");
                    return Err(std::io::Error::other("chunk shorter than recorded"));
                }
                Ok::<Bytes, std::io::Error>(data.slice(s.range))
            })
        })
        .buffered(ctx.cfg.read_ahead.max(1))
        .map(|joined| match joined {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        });
    StreamingBlob::wrap(stream)
}

/// Deletes every chunk of the segments (idempotent).
// TODO(engine): delete each segment with the layout it records instead of one `layout`.
pub async fn delete_segments(
    chunks: &Arc<dyn ChunkService>,
    layout: &Layout,
    segments: &[Segment],
) -> Result<(), NodeError> {
    for seg in segments {
        for index in 0..seg.chunk_count() {
            chunks
                .delete_chunk(
                    layout,
                    ChunkId {
                        blob: seg.blob,
                        index,
                    },
                )
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(b: u8, len: u64, cs: u32) -> Segment {
        Segment {
            blob: [b; 16],
            len,
            chunk_size: cs,
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
}
