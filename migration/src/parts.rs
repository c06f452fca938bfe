//! Copies one large object by parts: a destination multipart upload whose id, completed parts
//! and the running MD5 of the bytes read are persisted (`migration/upload/JOB/HEX(KEY)`) after
//! every part, so a job resumed after pause, restart or kill -9 continues at the next part and
//! never copies a completed part again. The upload is invisible until it completes, which
//! happens only once the whole object verified; a failed or cancelled copy aborts it.
//!
//! A multipart source is read part by part (`partNumber=N`), so the destination has the same
//! parts and, the parts' bytes being the same, the same ETag. A single-part source is read in
//! ranges of the job's part size. Every read names the source's ETag (`If-Match`): parts of two
//! different objects are never mixed.
//!
//! Verification: each part's MD5 over the bytes read against the MD5 the engine computed over
//! the bytes it stored; then the whole object: the source's MD5 (single-part ETag) against the
//! running MD5 of every byte read, or the source's multipart ETag against the one the parts
//! make.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use strata_engine::multipart::{CompleteRequest, UploadAttrs};
use strata_engine::{BodyError, Engine, EngineError, WriteSpec};
use strata_metadata::{MetaError, Precondition};

use crate::copy::{Ctx, Outcome, Skip, Want, content, gone, map_storage_class, origin};
use crate::job::JobRecord;
use crate::source::{PartRead, etag_md5};

pub const UPLOAD_PREFIX: &str = "migration/upload/";
/// S3's limits: parts per upload, smallest part but the last, largest part.
const MAX_PARTS: u64 = 10_000;
pub const MIN_PART: u64 = 5 << 20;
pub const MAX_PART: u64 = 5 << 30;

/// A by-part copy in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartCopy {
    pub key: String,
    #[serde(default)]
    pub source_version_id: Option<String>,
    pub source_etag: String,
    pub size: u64,
    pub upload_id: String,
    /// 0: the source's own parts (`partNumber` reads); else ranges of this many bytes.
    pub part_size: u64,
    pub parts_total: u32,
    /// Completed parts, ascending.
    #[serde(default)]
    pub parts: Vec<DonePart>,
    /// The MD5 state (hex) over the bytes of `parts`: the whole object's MD5 survives a resume.
    pub md5_state: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DonePart {
    pub number: u32,
    /// The MD5 of the part's bytes (hex), checked against the bytes read.
    pub etag: String,
    pub size: u64,
    #[serde(default)]
    pub checksum: Option<(String, String)>,
}

pub fn upload_key(job: &str, key: &str) -> String {
    format!("{UPLOAD_PREFIX}{job}/{}", hex::encode(key))
}

fn save_md5(h: &Md5) -> String {
    hex::encode(h.serialize())
}

fn load_md5(s: &str) -> Option<Md5> {
    let raw = hex::decode(s).ok()?;
    let state = SerializedState::<Md5>::try_from(raw.as_slice()).ok()?;
    Md5::deserialize(&state).ok()
}

/// The parts of a multipart ETag (`...-N`).
fn etag_parts(etag: &str) -> Option<u32> {
    let (hash, n) = etag.rsplit_once('-')?;
    (hash.len() == 32).then_some(())?;
    n.parse()
        .ok()
        .filter(|n| (1..=MAX_PARTS as u32).contains(n))
}

async fn load(engine: &Engine, name: &str) -> Option<PartCopy> {
    let k = name.to_string();
    let raw = engine
        .meta_call(move |m| m.get_worker_state(&k))
        .await
        .ok()??;
    serde_json::from_slice(&raw).ok()
}

async fn save(engine: &Engine, name: &str, rec: &PartCopy) -> Result<(), String> {
    let (k, raw) = (
        name.to_string(),
        serde_json::to_vec(rec).map_err(|e| e.to_string())?,
    );
    engine
        .meta_call(move |m| m.put_worker_state(&k, &raw))
        .await
        .map_err(|e| format!("saving the part cursor: {e}"))
}

async fn delete(engine: &Engine, names: Vec<String>) {
    if let Err(e) = engine
        .meta_call(move |m| m.update_worker_states(&[], &names))
        .await
    {
        tracing::warn!(error = %e, "migration: cannot remove a finished part cursor");
    }
}

/// Aborts the upload of a copy that will not complete, and forgets it.
async fn abandon(engine: &Engine, dest: &str, name: &str, rec: &PartCopy) {
    match engine.abort_upload(dest, &rec.key, &rec.upload_id).await {
        Ok(()) | Err(EngineError::Meta(MetaError::NoSuchUpload)) => {}
        Err(e) => tracing::warn!(error = %e, "migration: cannot abort an upload"),
    }
    delete(engine, vec![name.to_string()]).await;
}

/// Forgets the part cursor of a key whose copy is known complete (a crash came between the
/// completion and the cursor's removal).
pub async fn forget(engine: &Engine, job: &JobRecord, key: &str) {
    let name = upload_key(&job.name, key);
    if let Some(rec) = load(engine, &name).await {
        abandon(engine, &job.bucket, &name, &rec).await;
    }
}

/// The by-part copies of a job in progress: (key, parts done, parts in all).
pub async fn in_flight(engine: &Engine, job: &str) -> Vec<(String, u32, u32)> {
    let prefix = format!("{UPLOAD_PREFIX}{job}/");
    let rows = engine
        .meta_call(move |m| m.worker_states_page(&prefix, None, 1000))
        .await
        .unwrap_or_default();
    rows.into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<PartCopy>(&v).ok())
        .map(|r| (r.key, r.parts.len() as u32, r.parts_total))
        .collect()
}

/// Aborts every by-part copy of a job (cancel, end): nothing of them stays at the destination.
pub async fn abort_all(engine: &Engine, job: &JobRecord) {
    let prefix = format!("{UPLOAD_PREFIX}{}/", job.name);
    // Bounded: each round removes what it read.
    for _ in 0..1000 {
        let p = prefix.clone();
        let rows = engine
            .meta_call(move |m| m.worker_states_page(&p, None, 100))
            .await
            .unwrap_or_default();
        if rows.is_empty() {
            return;
        }
        for (name, raw) in rows {
            match serde_json::from_slice::<PartCopy>(&raw) {
                Ok(rec) => abandon(engine, &job.bucket, &name, &rec).await,
                Err(_) => delete(engine, vec![name]).await,
            }
        }
    }
}

/// Copies `want` by parts (see the module doc).
pub async fn copy_by_parts(ctx: &Ctx<'_>, want: &Want<'_>, precondition: Precondition) -> Outcome {
    let (engine, source, job, dest) = (ctx.engine, ctx.source, ctx.job, ctx.dest);
    let failed = |error: String| Outcome::Failed {
        error,
        bytes: want.size,
    };
    let (head, _) = match source
        .head(&job.source_bucket, want.key, want.version_id, None)
        .await
    {
        Ok(h) => h,
        Err(e) if gone(&e) => {
            return Outcome::Skipped {
                reason: Skip::GoneAtSource,
                bytes: want.size,
            };
        }
        Err(e) => return failed(format!("reading the source: {e}")),
    };
    let name = upload_key(&job.name, want.key);
    let version_id = want.version_id.map(str::to_string);
    let mut rec = match load(engine, &name).await {
        Some(r)
            if r.source_etag == head.etag
                && r.size == head.size
                && r.source_version_id == version_id
                && engine
                    .upload(&dest.name, want.key, &r.upload_id)
                    .await
                    .is_ok() =>
        {
            r
        }
        other => {
            if let Some(stale) = other {
                abandon(engine, &dest.name, &name, &stale).await;
            }
            let (part_size, parts_total) = match etag_parts(&head.etag) {
                Some(n) => (0, n),
                None => {
                    let ps = job.part_size.max(head.size.div_ceil(MAX_PARTS)).max(1);
                    (ps, head.size.div_ceil(ps).max(1) as u32)
                }
            };
            let tags = if head.tag_count > 0 {
                match source
                    .tags(&job.source_bucket, want.key, want.version_id)
                    .await
                {
                    Ok(t) => t,
                    Err(e) => return failed(format!("reading the source's tags: {e}")),
                }
            } else {
                Vec::new()
            };
            let attrs = UploadAttrs {
                content: content(&head),
                user_metadata: head.user_metadata.clone(),
                tags,
                storage_class: map_storage_class(head.storage_class.as_deref()),
                owner: dest.owner.clone(),
                ..Default::default()
            };
            let upload = match engine.create_upload(dest, want.key, attrs).await {
                Ok(u) => u,
                Err(e) => return failed(format!("destination write failed: {e}")),
            };
            let r = PartCopy {
                key: want.key.to_string(),
                source_version_id: version_id.clone(),
                source_etag: head.etag.clone(),
                size: head.size,
                upload_id: upload.upload_id,
                part_size,
                parts_total,
                parts: Vec::new(),
                md5_state: save_md5(&Md5::new()),
            };
            if let Err(e) = save(engine, &name, &r).await {
                abandon(engine, &dest.name, &name, &r).await;
                return failed(e);
            }
            r
        }
    };
    let parts_resumed = rec.parts.len() as u64;
    let mut parts_now = 0u64;
    let upload = match engine.upload(&dest.name, want.key, &rec.upload_id).await {
        Ok(u) => u,
        Err(e) => return failed(format!("destination upload lost: {e}")),
    };
    let Some(mut whole) = load_md5(&rec.md5_state) else {
        abandon(engine, &dest.name, &name, &rec).await;
        return failed("the part cursor's MD5 state is corrupt".into());
    };
    let mut offset: u64 = rec.parts.iter().map(|p| p.size).sum();
    for n in rec.parts.len() as u32 + 1..=rec.parts_total {
        if crate::copy::cancelled(engine, &job.name).await {
            abandon(engine, &dest.name, &name, &rec).await;
            return Outcome::Cancelled;
        }
        let read = if rec.part_size == 0 {
            PartRead::Number(n)
        } else {
            PartRead::Range(offset, (offset + rec.part_size).min(rec.size))
        };
        let (len, body) = match source
            .get_part(
                &job.source_bucket,
                want.key,
                want.version_id,
                read,
                &rec.source_etag,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                abandon(engine, &dest.name, &name, &rec).await;
                return failed(format!("reading part {n} of the source: {e}"));
            }
        };
        if len > MAX_PART || offset + len > rec.size {
            abandon(engine, &dest.name, &name, &rec).await;
            return failed(format!(
                "part {n} of the source has {len} bytes, more than the object has left"
            ));
        }
        let hashers = Arc::new(Mutex::new((Md5::new(), whole.clone())));
        let h = hashers.clone();
        let limiter = ctx.limiter.clone();
        let stream = body.into_data_stream().then(move |r| {
            let (limiter, h) = (limiter.clone(), h.clone());
            async move {
                let b = r.map_err(|e| BodyError::Io(format!("source: {e}")))?;
                {
                    let mut g = h.lock().unwrap_or_else(|e| e.into_inner());
                    g.0.update(&b);
                    g.1.update(&b);
                }
                limiter.take(b.len()).await;
                Ok::<_, BodyError>(b)
            }
        });
        let spec = WriteSpec {
            max_len: len,
            expected_len: Some(len),
            ..Default::default()
        };
        let part = match engine
            .upload_part(dest, &upload, n, Box::pin(stream), spec)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                abandon(engine, &dest.name, &name, &rec).await;
                return failed(format!("destination write of part {n} failed: {e}"));
            }
        };
        let (part_md5, next_whole) = std::mem::replace(
            &mut *hashers.lock().unwrap_or_else(|e| e.into_inner()),
            (Md5::new(), Md5::new()),
        );
        let read_md5 = hex::encode(part_md5.finalize());
        if !part.etag.eq_ignore_ascii_case(&read_md5) {
            abandon(engine, &dest.name, &name, &rec).await;
            return failed(format!(
                "verification failed: part {n} stored with MD5 {} differs from the MD5 {read_md5} of the bytes read",
                part.etag
            ));
        }
        whole = next_whole;
        offset += part.size;
        rec.parts.push(DonePart {
            number: n,
            etag: part.etag,
            size: part.size,
            checksum: part.checksum,
        });
        rec.md5_state = save_md5(&whole);
        if let Err(e) = save(engine, &name, &rec).await {
            abandon(engine, &dest.name, &name, &rec).await;
            return failed(e);
        }
        parts_now += 1;
    }
    // The whole object, before anything becomes visible.
    let problem = if offset != rec.size {
        Some(format!(
            "the source's parts hold {offset} bytes, its Content-Length says {}",
            rec.size
        ))
    } else if let Some(md5) = etag_md5(&rec.source_etag) {
        let read = whole.finalize();
        (read.as_slice() != md5).then(|| {
            format!(
                "verification failed: the bytes read do not match the source's MD5 (ETag {})",
                rec.source_etag
            )
        })
    } else if rec.part_size == 0 {
        let etags: Vec<&str> = rec.parts.iter().map(|p| p.etag.as_str()).collect();
        match strata_engine::checksum::multipart_etag(&etags) {
            Ok(made) if made.eq_ignore_ascii_case(&rec.source_etag) => None,
            Ok(made) => Some(format!(
                "verification failed: the parts read make the ETag {made}, the source's is {}",
                rec.source_etag
            )),
            Err(e) => Some(format!("verification failed: {e:?}")),
        }
    } else {
        None
    };
    if let Some(p) = problem {
        abandon(engine, &dest.name, &name, &rec).await;
        return failed(p);
    }
    let req = CompleteRequest {
        parts: rec
            .parts
            .iter()
            .map(|p| (p.number, p.etag.clone()))
            .collect(),
        part_checksums: vec![None; rec.parts.len()],
        whole_checksum: None,
        object_size: Some(rec.size),
        owner: dest.owner.clone(),
        origin: Some(origin(job, &head, want.version_id)),
    };
    let outcome = match engine
        .complete_upload(dest, want.key, &rec.upload_id, req, precondition)
        .await
    {
        Ok(_) => Outcome::Copied {
            bytes: rec.size,
            resumed: false,
            parts: parts_now,
            parts_resumed,
        },
        Err(EngineError::Meta(MetaError::PreconditionFailed)) => Outcome::Skipped {
            reason: Skip::Exists,
            bytes: rec.size,
        },
        Err(e) => failed(format!("destination write failed: {e}")),
    };
    abandon(engine, &dest.name, &name, &rec).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_state_survives_a_round_trip() {
        let mut h = Md5::new();
        h.update(b"hello ");
        let mut back = load_md5(&save_md5(&h)).unwrap();
        back.update(b"world");
        assert_eq!(
            hex::encode(back.finalize()),
            crate::source::md5_hex(b"hello world")
        );
        assert!(load_md5("zz").is_none());
    }

    #[test]
    fn multipart_etags_give_their_part_count() {
        assert_eq!(etag_parts("0123456789abcdef0123456789abcdef-3"), Some(3));
        assert_eq!(etag_parts("0123456789abcdef0123456789abcdef"), None);
        assert_eq!(etag_parts("abc-3"), None);
        assert_eq!(etag_parts("0123456789abcdef0123456789abcdef-0"), None);
    }
}
