//! Copies one object from the source into the destination bucket: decides whether to copy
//! (overwrite policy, resumed steps), streams the bytes through the bandwidth limit into one
//! engine write, and verifies them. The write commits only at the end, so a failed or refused
//! copy leaves nothing visible.
//!
//! Verification, strongest available first:
//! - the source's `x-amz-checksum-*` (a full-object checksum): the engine computes the same
//!   algorithm over the bytes it stores and refuses the write on a mismatch;
//! - the MD5 an ETag is for single-part objects: checked by the engine the same way;
//! - otherwise (a multipart ETag is not a content hash): the MD5 of the bytes read is compared
//!   with the MD5 of the bytes the engine stored.
//!
//! The source's announced length is enforced too (the engine refuses a short or long body).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use md5::{Digest as _, Md5};
use strata_engine::objects::ObjectAttrs;
use strata_engine::{BodyError, Engine, EngineError, Rejection, WriteSpec};
use strata_metadata::{BucketRecord, ContentHeaders, MetaError, Origin, Precondition};

use crate::job::{JobRecord, Overwrite};
use crate::source::{Listed, ObjectHead, Source, etag_md5};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `resumed`: a redone step found the object already copied by this job. `parts`: parts
    /// copied now (by-part copies), `parts_resumed`: parts found done when a copy resumed.
    Copied {
        bytes: u64,
        resumed: bool,
        parts: u64,
        parts_resumed: u64,
    },
    /// A delete marker (`--versions`); `resumed` as for `Copied`.
    Marker {
        resumed: bool,
    },
    /// Not copied: the job was cancelled meanwhile (not counted, not reported).
    Cancelled,
    Skipped {
        reason: Skip,
        bytes: u64,
    },
    Failed {
        error: String,
        bytes: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The destination has the same object (size and source ETag).
    Identical,
    /// The destination has the key and `--overwrite never`.
    Exists,
    /// The destination's current version is under a retention or legal hold.
    Locked,
    /// Deleted at the source between the listing and the copy.
    GoneAtSource,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Identical => "identical",
            Skip::Exists => "exists",
            Skip::Locked => "locked",
            Skip::GoneAtSource => "gone_at_source",
        }
    }
}

/// Bytes per second across every copy of a step (a token bucket without burst credit).
pub struct Limiter {
    rate: Option<u64>,
    state: Mutex<(Instant, u64)>,
}

impl Limiter {
    pub fn new(rate: Option<u64>) -> Self {
        Limiter {
            rate,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Accounts `n` bytes and waits until they are within the rate.
    pub async fn take(&self, n: usize) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.1 += n as u64;
            let due = s.0 + Duration::from_secs_f64(s.1 as f64 / rate as f64);
            due.saturating_duration_since(Instant::now())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The destination storage class for the source's: S3's classes are kept (the archive classes
/// go to the archive tier), anything else (vendor classes) becomes STANDARD.
pub fn map_storage_class(class: Option<&str>) -> String {
    match class {
        Some(
            c @ ("REDUCED_REDUNDANCY"
            | "STANDARD_IA"
            | "ONEZONE_IA"
            | "INTELLIGENT_TIERING"
            | "GLACIER_IR"
            | "GLACIER"
            | "DEEP_ARCHIVE"),
        ) => c.to_string(),
        _ => "STANDARD".to_string(),
    }
}

/// Whether `v` is this job's copy of the listed object.
fn is_our_copy(job: &JobRecord, v: &strata_metadata::VersionRecord, item: &Listed) -> bool {
    v.origin
        .as_ref()
        .is_some_and(|o| o.job == job.name && o.etag == item.etag && v.size == item.size)
}

/// Whether the destination's current version is the listed object already.
fn is_identical(v: &strata_metadata::VersionRecord, item: &Listed) -> bool {
    v.size == item.size
        && (v.etag == item.etag || v.origin.as_ref().is_some_and(|o| o.etag == item.etag))
}

/// The checksum the engine is asked to verify: the source's, if it is one of the full-object
/// checksums the engine computes.
fn checksum_to_verify(head: &ObjectHead) -> Option<(String, String)> {
    let (alg, value) = head.checksum.clone()?;
    if head
        .checksum_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("COMPOSITE"))
    {
        return None;
    }
    // Without a type, a multipart object's checksum is composite (S3 before FULL_OBJECT).
    if head.checksum_type.is_none() && head.etag.contains('-') {
        return None;
    }
    strata_engine::checksum::ALGORITHMS
        .contains(&alg.as_str())
        .then_some((alg, value))
}

fn describe(e: &EngineError, head: &ObjectHead, verified: &str) -> String {
    match e {
        EngineError::Rejected(Rejection::Md5Mismatch) => format!(
            "verification failed: the bytes read do not match the source's MD5 (ETag {})",
            head.etag
        ),
        EngineError::Rejected(Rejection::ChecksumMismatch { algorithm }) => format!(
            "verification failed: the bytes read do not match the source's {algorithm} checksum"
        ),
        EngineError::Rejected(Rejection::IncompleteBody) => format!(
            "the source sent another length than its Content-Length {} ({verified})",
            head.size
        ),
        e => format!("destination write failed: {e}"),
    }
}

/// The source no longer has the object (or the version).
pub(crate) fn gone(e: &crate::source::SourceError) -> bool {
    e.status == Some(404) && matches!(e.code.as_str(), "NoSuchKey" | "NoSuchVersion" | "HTTP404")
}

/// Whether the job was cancelled since the step began: a step stops copying (and a by-part
/// copy stops at the next part) rather than write what the operator no longer wants.
pub(crate) async fn cancelled(engine: &Engine, job: &str) -> bool {
    matches!(
        crate::job::load_job(engine, job).await,
        Ok(Some(j)) if j.state == crate::job::JobState::Cancelled
    )
}

/// What a copy works with.
pub struct Ctx<'a> {
    pub engine: &'a Engine,
    pub source: &'a Source,
    pub job: &'a JobRecord,
    pub dest: &'a BucketRecord,
    pub limiter: Arc<Limiter>,
}

/// The source object (or version) to copy, as the listing described it.
pub struct Want<'a> {
    pub key: &'a str,
    /// The version to read (`--versions`), `None` for the current one.
    pub version_id: Option<&'a str>,
    pub size: u64,
    pub etag: &'a str,
}

pub(crate) fn copied(bytes: u64) -> Outcome {
    Outcome::Copied {
        bytes,
        resumed: false,
        parts: 0,
        parts_resumed: 0,
    }
}

fn resumed(bytes: u64) -> Outcome {
    Outcome::Copied {
        bytes,
        resumed: true,
        parts: 0,
        parts_resumed: 0,
    }
}

/// The origin recorded with a copy.
pub(crate) fn origin(job: &JobRecord, head: &ObjectHead, version_id: Option<&str>) -> Origin {
    Origin {
        job: job.name.clone(),
        etag: head.etag.clone(),
        last_modified: head.last_modified.clone(),
        // The listed id when there is one (`null` included): resumes match on it.
        version_id: version_id
            .map(str::to_string)
            .or_else(|| head.version_id.clone()),
    }
}

/// The destination's attributes of a copy of `head`.
pub(crate) fn content(head: &ObjectHead) -> ContentHeaders {
    ContentHeaders {
        content_type: head.content_type.clone(),
        content_encoding: head.content_encoding.clone(),
        content_disposition: head.content_disposition.clone(),
        content_language: head.content_language.clone(),
        cache_control: head.cache_control.clone(),
        expires: head.expires.clone(),
        sse: None,
    }
}

/// Copies `item` (one listed object) unless the policy says otherwise.
pub async fn copy_one(
    engine: &Engine,
    source: &Source,
    job: &JobRecord,
    dest: &BucketRecord,
    item: &Listed,
    limiter: Arc<Limiter>,
) -> Outcome {
    let failed = |error: String| Outcome::Failed {
        error,
        bytes: item.size,
    };
    let current = match engine.version(&dest.name, &item.key, None).await {
        Ok(v) if !v.is_delete_marker => Some(v),
        Ok(_) | Err(EngineError::Meta(MetaError::NoSuchKey)) => None,
        Err(e) => return failed(format!("reading the destination: {e}")),
    };
    let mut precondition = Precondition::None;
    if let Some(v) = &current {
        if is_our_copy(job, v, item) {
            crate::parts::forget(engine, job, &item.key).await;
            return resumed(item.size);
        }
        match job.overwrite {
            Overwrite::Never => {
                return Outcome::Skipped {
                    reason: Skip::Exists,
                    bytes: item.size,
                };
            }
            Overwrite::IfDifferent if is_identical(v, item) => {
                return Outcome::Skipped {
                    reason: Skip::Identical,
                    bytes: item.size,
                };
            }
            _ => {}
        }
        // An unversioned bucket would replace the version: not a locked one.
        let locked = v.legal_hold
            || v.retention
                .as_ref()
                .is_some_and(|r| r.retain_until > strata_engine::now_ms());
        if locked && dest.versioning == strata_metadata::VersioningState::Unversioned {
            return Outcome::Skipped {
                reason: Skip::Locked,
                bytes: item.size,
            };
        }
    } else if job.overwrite == Overwrite::Never {
        // A key created meanwhile is not overwritten either.
        precondition = Precondition::IfNoneMatchStar;
    }
    let ctx = Ctx {
        engine,
        source,
        job,
        dest,
        limiter,
    };
    let want = Want {
        key: &item.key,
        version_id: None,
        size: item.size,
        etag: &item.etag,
    };
    copy_bytes(&ctx, &want, precondition).await
}

/// Copies one version of a key (`--versions`): a version whose source version id this job
/// already copied (`done`, read from the destination's origins) is not copied again.
pub async fn copy_version(
    ctx: &Ctx<'_>,
    v: &crate::source::ListedVersion,
    done: &std::collections::HashSet<String>,
) -> Outcome {
    if done.contains(&v.version_id) {
        if v.delete_marker {
            return Outcome::Marker { resumed: true };
        }
        crate::parts::forget(ctx.engine, ctx.job, &v.key).await;
        return resumed(v.size);
    }
    if v.delete_marker {
        if cancelled(ctx.engine, &ctx.job.name).await {
            return Outcome::Cancelled;
        }
        let origin = Origin {
            job: ctx.job.name.clone(),
            etag: String::new(),
            last_modified: v.last_modified.clone(),
            version_id: Some(v.version_id.clone()),
        };
        return match ctx
            .engine
            .put_delete_marker(ctx.dest, &v.key, &ctx.dest.owner, Some(origin))
            .await
        {
            Ok(_) => Outcome::Marker { resumed: false },
            Err(e) => Outcome::Failed {
                error: format!("destination write failed: {e}"),
                bytes: 0,
            },
        };
    }
    let want = Want {
        key: &v.key,
        version_id: Some(&v.version_id),
        size: v.size,
        etag: &v.etag,
    };
    copy_bytes(ctx, &want, Precondition::None).await
}

/// Reads the object from the source and writes it, verified: in one streamed PUT, or by parts
/// when it is larger than the job's part threshold.
async fn copy_bytes(ctx: &Ctx<'_>, want: &Want<'_>, precondition: Precondition) -> Outcome {
    let (engine, source, job, dest) = (ctx.engine, ctx.source, ctx.job, ctx.dest);
    let failed = |error: String| Outcome::Failed {
        error,
        bytes: want.size,
    };
    if cancelled(engine, &job.name).await {
        return Outcome::Cancelled;
    }
    if want.size > job.part_threshold {
        return crate::parts::copy_by_parts(ctx, want, precondition).await;
    }
    let limiter = ctx.limiter.clone();
    let (head, body) = match source
        .get(&job.source_bucket, want.key, want.version_id)
        .await
    {
        Ok(r) => r,
        Err(e) if gone(&e) => {
            return Outcome::Skipped {
                reason: Skip::GoneAtSource,
                bytes: want.size,
            };
        }
        Err(e) if e.code == "InvalidObjectState" => {
            return failed(format!(
                "archived at the source (restore it there first): {e}"
            ));
        }
        Err(e) => return failed(format!("reading the source: {e}")),
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

    let checksum = checksum_to_verify(&head);
    // The source's checksum when it has one, else the MD5 a single-part ETag is.
    let content_md5 = checksum.is_none().then(|| etag_md5(&head.etag)).flatten();
    let verified = match (&checksum, content_md5) {
        (Some((alg, _)), _) => format!("verified by the source's {alg}"),
        (None, Some(_)) => "verified by the source's MD5".to_string(),
        (None, None) => "verified by the MD5 of the bytes read".to_string(),
    };
    let read_md5 = Arc::new(Mutex::new(Md5::new()));
    let hasher = read_md5.clone();
    let stream = body.into_data_stream().then(move |r| {
        let limiter = limiter.clone();
        let hasher = hasher.clone();
        async move {
            let b = r.map_err(|e| BodyError::Io(format!("source: {e}")))?;
            hasher.lock().unwrap_or_else(|e| e.into_inner()).update(&b);
            limiter.take(b.len()).await;
            Ok::<_, BodyError>(b)
        }
    });
    let spec = WriteSpec {
        max_len: head.size,
        expected_len: Some(head.size),
        content_md5,
        checksum_algorithm: checksum.as_ref().map(|c| c.0.clone()),
        checksum_expected: checksum.as_ref().map(|c| c.1.clone()),
        ..Default::default()
    };
    let attrs = ObjectAttrs {
        content: content(&head),
        user_metadata: head.user_metadata.clone(),
        tags,
        storage_class: map_storage_class(head.storage_class.as_deref()),
        owner: dest.owner.clone(),
        retention: None,
        legal_hold: false,
        // Source ACLs name the source's accounts; the copy is the destination owner's, private.
        acl: None,
        origin: Some(origin(job, &head, want.version_id)),
    };
    let written = match engine
        .put_object(dest, want.key, Box::pin(stream), spec, attrs, precondition)
        .await
    {
        Ok(w) => w,
        Err(EngineError::Meta(MetaError::PreconditionFailed)) => {
            return Outcome::Skipped {
                reason: Skip::Exists,
                bytes: head.size,
            };
        }
        Err(e) => {
            return Outcome::Failed {
                error: describe(&e, &head, &verified),
                bytes: head.size,
            };
        }
    };
    let read = hex::encode(
        std::mem::take(&mut *read_md5.lock().unwrap_or_else(|e| e.into_inner())).finalize(),
    );
    // The engine's ETag of a single-part write is the MD5 of the bytes it stored.
    if written.version.etag != read {
        tracing::error!(bucket = %dest.name, key = %want.key.chars().take(200).collect::<String>(), "migration: stored bytes differ from the bytes read");
        return Outcome::Failed {
            error: format!(
                "verification failed: stored MD5 {} differs from the MD5 {read} of the bytes read",
                written.version.etag
            ),
            bytes: head.size,
        };
    }
    copied(head.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(etag: &str, checksum: Option<(&str, &str)>, kind: Option<&str>) -> ObjectHead {
        ObjectHead {
            etag: etag.into(),
            checksum: checksum.map(|(a, v)| (a.into(), v.into())),
            checksum_type: kind.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn only_full_object_checksums_are_verified_as_such() {
        let full = head("abc-2", Some(("CRC64NVME", "x")), Some("FULL_OBJECT"));
        assert_eq!(checksum_to_verify(&full).unwrap().0, "CRC64NVME");
        assert!(
            checksum_to_verify(&head("abc-2", Some(("CRC32", "x")), Some("COMPOSITE"))).is_none()
        );
        assert!(checksum_to_verify(&head("abc-2", Some(("CRC32", "x")), None)).is_none());
        assert!(checksum_to_verify(&head("abc", Some(("SHA256", "x")), None)).is_some());
        assert!(checksum_to_verify(&head("abc", Some(("MD7", "x")), None)).is_none());
    }

    #[test]
    fn storage_classes_map() {
        assert_eq!(map_storage_class(None), "STANDARD");
        assert_eq!(map_storage_class(Some("GLACIER")), "GLACIER");
        assert_eq!(map_storage_class(Some("STANDARD_IA")), "STANDARD_IA");
        // vendor classes (MinIO's, Garage's) have no meaning here
        assert_eq!(map_storage_class(Some("REDUCED")), "STANDARD");
    }

    #[tokio::test]
    async fn limiter_holds_the_rate() {
        let l = Limiter::new(Some(100_000));
        let t = Instant::now();
        for _ in 0..5 {
            l.take(10_000).await;
        }
        // 50 kB at 100 kB/s: about half a second
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );
        let free = Limiter::new(None);
        let t = Instant::now();
        free.take(1 << 30).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
