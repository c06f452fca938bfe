//! An export to another S3 endpoint (`--to-endpoint`): one version is one PutObject (a delete
//! marker one DeleteObject, `--versions`), with what an import preserves: user metadata, the
//! content headers, tags (`x-amz-tagging`), the storage class. The bytes are verified by the
//! remote: Content-MD5 when the version's ETag is an MD5, else the MD5 of the bytes sent is
//! compared with the ETag the remote answers.
//!
//! `--versions`: a remote versioned bucket gives each write a new version, so a redone step
//! must not write a version twice. The source version ids of a key already written are kept in
//! `migration/xver/NAME/HEX(KEY)` (one metadata write after each remote write), skipped when the
//! step is redone, and removed with the step's commit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use md5::{Digest as _, Md5};
use strata_engine::Engine;
use strata_metadata::{BucketRecord, VersionRecord};

use crate::copy::{Limiter, Outcome, copied};
use crate::job::JobRecord;
use crate::source::{Source, UpBody};

pub const XVER_PREFIX: &str = "migration/xver/";

pub fn xver_key(job: &str, key: &str) -> String {
    format!("{XVER_PREFIX}{job}/{}", hex::encode(key.as_bytes()))
}

async fn done_ids(engine: &Engine, job: &str, key: &str) -> HashSet<String> {
    let k = xver_key(job, key);
    let raw = engine
        .meta_call(move |m| m.get_worker_state(&k))
        .await
        .ok()
        .flatten();
    raw.and_then(|r| serde_json::from_slice::<Vec<String>>(&r).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn mark_done(engine: &Engine, job: &str, key: &str, id: &str) -> Result<(), String> {
    let mut ids: Vec<String> = done_ids(engine, job, key).await.into_iter().collect();
    ids.push(id.to_string());
    let raw = serde_json::to_vec(&ids).map_err(|e| e.to_string())?;
    let k = xver_key(job, key);
    engine
        .meta_call(move |m| m.put_worker_state(&k, &raw))
        .await
        .map_err(|e| format!("recording the export of a version: {e}"))
}

/// The request headers of a version: content headers, metadata, tags, storage class.
fn headers(v: &VersionRecord) -> Vec<(String, String)> {
    let c = &v.content;
    let mut h = Vec::new();
    for (name, value) in [
        ("content-type", &c.content_type),
        ("content-encoding", &c.content_encoding),
        ("content-disposition", &c.content_disposition),
        ("content-language", &c.content_language),
        ("cache-control", &c.cache_control),
        ("expires", &c.expires),
    ] {
        if let Some(val) = value {
            h.push((name.to_string(), val.clone()));
        }
    }
    for (k, val) in &v.user_metadata {
        h.push((format!("x-amz-meta-{k}"), val.clone()));
    }
    if !v.tags.is_empty() {
        let tags: Vec<String> = v
            .tags
            .iter()
            .map(|(k, val)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(val)))
            .collect();
        h.push(("x-amz-tagging".into(), tags.join("&")));
    }
    if v.storage_class != "STANDARD" && !v.storage_class.is_empty() {
        h.push(("x-amz-storage-class".into(), v.storage_class.clone()));
    }
    h
}

/// Writes one version (or delete marker) of `key` to the remote bucket.
pub async fn put(
    engine: &Engine,
    bucket: &BucketRecord,
    remote: &Source,
    job: &JobRecord,
    key: &str,
    v: &VersionRecord,
    limiter: &Arc<Limiter>,
) -> Result<Outcome, String> {
    let to_bucket = &job.source_bucket;
    if job.versions
        && done_ids(engine, &job.name, key)
            .await
            .contains(&v.version_id)
    {
        return Ok(if v.is_delete_marker {
            Outcome::Marker { resumed: true }
        } else {
            Outcome::Copied {
                bytes: v.size,
                resumed: true,
                parts: 0,
                parts_resumed: 0,
            }
        });
    }
    let outcome = if v.is_delete_marker {
        remote
            .delete(to_bucket, key)
            .await
            .map_err(|e| format!("writing the delete marker: {e}"))?;
        Outcome::Marker { resumed: false }
    } else {
        let stream = crate::export::read_stream(engine, bucket, v).await?;
        let mut h = headers(v);
        let md5_etag = crate::source::etag_md5(&v.etag);
        if let Some(m) = md5_etag {
            h.push((
                "content-md5".into(),
                base64::engine::general_purpose::STANDARD.encode(m),
            ));
        }
        let hasher = Arc::new(Mutex::new(Md5::new()));
        let (hs, lim) = (hasher.clone(), limiter.clone());
        let body = stream.then(move |r| {
            let (hs, lim) = (hs.clone(), lim.clone());
            async move {
                let b = r?;
                hs.lock().unwrap_or_else(|e| e.into_inner()).update(&b);
                lim.take(b.len()).await;
                Ok::<_, std::io::Error>(hyper::body::Frame::data(b))
            }
        });
        let body: UpBody = http_body_util::StreamBody::new(body).boxed_unsync();
        let etag = remote
            .put(to_bucket, key, v.size, &h, body)
            .await
            .map_err(|e| format!("writing to the remote: {e}"))?;
        let sent = hex::encode(
            std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner())).finalize(),
        );
        if md5_etag.is_none() && crate::source::etag_md5(&etag).is_some() && etag != sent {
            return Err(format!(
                "verification failed: the remote stored ETag {etag}, the bytes sent have MD5 {sent}"
            ));
        }
        copied(v.size)
    };
    if job.versions {
        mark_done(engine, &job.name, key, &v.version_id).await?;
    }
    Ok(outcome)
}
