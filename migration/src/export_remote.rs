//! An export to another S3 endpoint (`--to-endpoint`): one version is one PutObject (a delete
//! marker one DeleteObject, `--versions`), with what an import preserves: user metadata, the
//! content headers, tags (`x-amz-tagging`), the storage class. The bytes are verified by the
//! remote: Content-MD5 when the version's ETag is an MD5, else the MD5 of the bytes sent is
//! compared with the ETag the remote answers.
//!
//! `--versions`: a remote versioned bucket gives each write a new version, so a redone step
//! must not write a version twice. `migration/xver/NAME/HEX(KEY)` keeps, for the running step,
//! the remote's count of the key's versions before its first write, the source version ids
//! written, and the one being written (saved before and after each remote write); it is removed
//! with the step's commit. A redone step skips the ids written, and for the one a crash cut
//! asks the remote: one more version than recorded means it arrived, so it is not written again.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use strata_engine::Engine;
use strata_metadata::{BucketRecord, VersionRecord};

use crate::copy::{Limiter, Outcome, copied};
use crate::job::JobRecord;
use crate::source::{Source, UpBody};

pub const XVER_PREFIX: &str = "migration/xver/";

pub fn xver_key(job: &str, key: &str) -> String {
    format!("{XVER_PREFIX}{job}/{}", hex::encode(key.as_bytes()))
}

/// What a step wrote of one key to a versioned remote, saved around every remote write.
#[derive(Default, Serialize, Deserialize)]
struct Written {
    /// The remote's versions of the key (markers included) before the step's first write.
    #[serde(default)]
    base: Option<u64>,
    /// Source version ids written.
    #[serde(default)]
    done: Vec<String>,
    /// The source version id being written (a crash may have cut it before or after the
    /// remote took it).
    #[serde(default)]
    pending: Option<String>,
}

async fn load_written(engine: &Engine, job: &str, key: &str) -> Written {
    let k = xver_key(job, key);
    let raw = engine
        .meta_call(move |m| m.get_worker_state(&k))
        .await
        .ok()
        .flatten();
    raw.and_then(|r| {
        serde_json::from_slice::<Written>(&r).ok().or_else(|| {
            // The record of a step begun before `Written`: the ids only.
            serde_json::from_slice::<Vec<String>>(&r)
                .ok()
                .map(|done| Written {
                    done,
                    ..Written::default()
                })
        })
    })
    .unwrap_or_default()
}

async fn save_written(engine: &Engine, job: &str, key: &str, w: &Written) -> Result<(), String> {
    let raw = serde_json::to_vec(w).map_err(|e| e.to_string())?;
    let k = xver_key(job, key);
    engine
        .meta_call(move |m| m.put_worker_state(&k, &raw))
        .await
        .map_err(|e| format!("recording the export of a version: {e}"))
}

/// The remote's versions and delete markers of exactly `key` (bounded: 100 pages).
async fn remote_versions(remote: &Source, bucket: &str, key: &str) -> Result<u64, String> {
    let (mut n, mut km, mut vm) = (0u64, None::<String>, None::<String>);
    for _ in 0..100 {
        let page = remote
            .list_versions(bucket, key, km.as_deref(), vm.as_deref(), 1000)
            .await
            .map_err(|e| format!("listing the remote's versions: {e}"))?;
        // The key's own entries come first: every other key under it as a prefix is longer.
        let mine = page.entries.iter().take_while(|e| e.key == key).count();
        n += mine as u64;
        if mine < page.entries.len() || !page.truncated || page.next_key_marker.is_none() {
            return Ok(n);
        }
        km = page.next_key_marker;
        vm = page.next_version_id_marker;
    }
    Err(format!(
        "the remote has more than 100,000 versions of {key:?}"
    ))
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
    let resumed = if v.is_delete_marker {
        Outcome::Marker { resumed: true }
    } else {
        Outcome::Copied {
            bytes: v.size,
            resumed: true,
            parts: 0,
            parts_resumed: 0,
        }
    };
    let mut written = Written::default();
    if job.versions {
        written = load_written(engine, &job.name, key).await;
        if written.done.contains(&v.version_id) {
            return Ok(resumed);
        }
        if written.pending.as_ref() == Some(&v.version_id)
            && let Some(base) = written.base
        {
            // A crash cut this write: the remote's count of the key's versions says whether
            // it took it (one more than what is recorded) or not.
            let n = remote_versions(remote, to_bucket, key).await?;
            let recorded = base + written.done.len() as u64;
            if n == recorded + 1 {
                written.done.push(v.version_id.clone());
                written.pending = None;
                save_written(engine, &job.name, key, &written).await?;
                return Ok(resumed);
            }
            if n != recorded {
                tracing::warn!(job = %job.name, "export: the remote's versions of a key changed meanwhile; writing the version again");
            }
        }
        if written.base.is_none() {
            written.base = Some(remote_versions(remote, to_bucket, key).await?);
        }
        written.pending = Some(v.version_id.clone());
        save_written(engine, &job.name, key, &written).await?;
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
        written.done.push(v.version_id.clone());
        written.pending = None;
        save_written(engine, &job.name, key, &written).await?;
    }
    Ok(outcome)
}
