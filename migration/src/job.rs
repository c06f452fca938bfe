//! Migration job records and their states. A job is three families of worker state in the
//! metadata tier:
//! - `migration/job/NAME`: what to copy and the state; written by the admin verbs (start,
//!   pause, resume, cancel) and by the worker only when it ends a job (DONE, ERROR);
//! - `migration/progress/NAME`: cursor and counters; written by the worker only, together
//!   with the report entries of the same step in one commit;
//! - `migration/report/NAME/SEQ`: one entry per failed or skipped object (see `report`).
//!
//! The source secret is sealed under the master key like an access-key secret (AAD names the
//! job) and opened only to sign requests to the source; it is never logged or shown.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_engine::{Engine, EngineError};
use zeroize::Zeroizing;

pub const JOB_PREFIX: &str = "migration/job/";
pub const PROGRESS_PREFIX: &str = "migration/progress/";
pub const REPORT_PREFIX: &str = "migration/report/";
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Objects larger than this are copied by parts, by default; and the default part size of a
/// single-part source copied by parts.
pub const DEFAULT_PART_THRESHOLD: u64 = 64 << 20;
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
pub const MAX_CONCURRENCY: u32 = 256;

/// Serialises read-modify-write of job records between the admin verbs and the worker (both in
/// the server process; a single writer per record otherwise).
pub(crate) static JOB_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Created; the worker has not picked it up yet.
    Initialized,
    Started,
    Paused,
    Done,
    /// Stopped by a failure that retrying cannot cure (the source refused us, the
    /// destination bucket is gone); `error` says which.
    Error,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Error | JobState::Cancelled)
    }
}

/// What to do when the destination already has a current version of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Skip it (reason `exists`).
    Never,
    /// Skip it when it is the same object (same size and the source's ETag, reason
    /// `identical`); copy otherwise.
    #[default]
    IfDifferent,
    Always,
}

impl Overwrite {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "never" => Some(Overwrite::Never),
            "if-different" => Some(Overwrite::IfDifferent),
            "always" => Some(Overwrite::Always),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub state: JobState,
    pub source_endpoint: String,
    pub source_region: String,
    pub source_access_key: String,
    /// The source secret key, sealed (hex).
    pub source_secret_sealed: String,
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub bucket: String,
    #[serde(default)]
    pub versions: bool,
    #[serde(default)]
    pub overwrite: Overwrite,
    pub concurrency: u32,
    /// Bytes per second read from the source, at most (`None`: unlimited).
    #[serde(default)]
    pub bandwidth: Option<u64>,
    pub created_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
    /// Who started it (admin user name), for the audit trail.
    #[serde(default)]
    pub created_by: String,
    /// Certificates (PEM) trusted for an https source besides Mozilla's roots.
    #[serde(default)]
    pub source_ca_pem: Option<String>,
    /// Objects larger than this many bytes are copied by parts (resumable at the part).
    #[serde(default = "default_part_threshold")]
    pub part_threshold: u64,
    /// Part size when a single-part source object is copied by parts.
    #[serde(default = "default_part_size")]
    pub part_size: u64,
    /// An export job (`strata admin export`): `bucket` is the local bucket read, and the
    /// `source_*` fields describe the remote written to (`--to-endpoint`); `None`: an import.
    #[serde(default)]
    pub export: Option<crate::export::ExportSpec>,
    /// Keys per listing request of the source (`max-keys`, 1-1000; `None`: 1000).
    #[serde(default)]
    pub list_page: Option<u32>,
}

fn default_part_threshold() -> u64 {
    DEFAULT_PART_THRESHOLD
}
fn default_part_size() -> u64 {
    DEFAULT_PART_SIZE
}

/// Durable progress: the cursor and every counter.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// The last source key whose outcome is recorded; the listing resumes after it.
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub listing_done: bool,
    /// The last key counted in `objects_listed` (a page listed again is not counted twice).
    #[serde(default)]
    pub listed_through: Option<String>,
    #[serde(default)]
    pub objects_listed: u64,
    #[serde(default)]
    pub bytes_listed: u64,
    #[serde(default)]
    pub objects_copied: u64,
    #[serde(default)]
    pub bytes_copied: u64,
    #[serde(default)]
    pub objects_skipped: u64,
    #[serde(default)]
    pub bytes_skipped: u64,
    /// Skips by reason.
    #[serde(default)]
    pub skipped_identical: u64,
    #[serde(default)]
    pub skipped_exists: u64,
    #[serde(default)]
    pub skipped_locked: u64,
    #[serde(default)]
    pub skipped_excluded: u64,
    #[serde(default)]
    pub objects_failed: u64,
    #[serde(default)]
    pub bytes_failed: u64,
    /// Objects found already copied by this job when a step was redone after a crash (counted
    /// in `objects_copied` too, never copied twice).
    #[serde(default)]
    pub objects_resumed: u64,
    /// `--versions`: delete markers copied (not counted in `objects_copied`).
    #[serde(default)]
    pub delete_markers_copied: u64,
    /// By-part copies: parts copied, and parts found already copied when a copy resumed.
    #[serde(default)]
    pub parts_copied: u64,
    #[serde(default)]
    pub parts_resumed: u64,
    /// Report entries written (the next entry's sequence number).
    #[serde(default)]
    pub report_entries: u64,
    /// Milliseconds spent running (for the rate), summed over runs.
    #[serde(default)]
    pub active_ms: u64,
    #[serde(default)]
    pub started_ms: Option<i64>,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// Source errors in a row (listing); a job stops in ERROR after too many.
    #[serde(default)]
    pub consecutive_errors: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Export to a directory: manifest segments written (the next one is this plus one).
    #[serde(default)]
    pub manifest_segments: u64,
    /// An import's listing ranges, each with its cursor (see `ranges`), once split.
    #[serde(default)]
    pub ranges: Vec<crate::ranges::Range>,
    /// The split is done (a job started before ranges existed continues as one range).
    #[serde(default)]
    pub ranges_planned: bool,
}

pub fn job_key(name: &str) -> String {
    format!("{JOB_PREFIX}{name}")
}
pub fn progress_key(name: &str) -> String {
    format!("{PROGRESS_PREFIX}{name}")
}

fn secret_aad(name: &str) -> String {
    // Not an access key id: a name no access key can have, so a sealed job secret never opens
    // as (or in place of) a user's secret.
    format!("migration-job/{name}")
}

/// What `strata admin migration start` asks for.
#[derive(Clone, Debug, Deserialize)]
pub struct StartArgs {
    pub name: String,
    pub source_endpoint: String,
    #[serde(default = "default_region")]
    pub source_region: String,
    pub source_access_key: String,
    pub source_secret_key: String,
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub bucket: String,
    #[serde(default)]
    pub versions: bool,
    #[serde(default)]
    pub overwrite: Option<String>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Bytes per second, or a size with a unit per second (`10MiB`, `500K`).
    #[serde(default)]
    pub bandwidth: Option<String>,
    /// PEM certificates to trust for an https source (the CLI reads `--source-ca-bundle`).
    #[serde(default)]
    pub source_ca_pem: Option<String>,
    /// Sizes with a unit (`64MiB`).
    #[serde(default)]
    pub part_threshold: Option<String>,
    #[serde(default)]
    pub part_size: Option<String>,
    /// Keys per listing request (1-1000).
    #[serde(default)]
    pub list_page: Option<u32>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Input the operator must fix: the admin API answers InvalidArgument with the message.
#[derive(Debug)]
pub enum JobError {
    Invalid(String),
    Engine(EngineError),
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        JobError::Engine(e)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Invalid(m) => f.write_str(m),
            JobError::Engine(e) => write!(f, "{e}"),
        }
    }
}

fn invalid(m: impl Into<String>) -> JobError {
    JobError::Invalid(m.into())
}

pub fn valid_job_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `10MiB`, `500K`, `1G`, `12345` (bytes per second); binary multiples.
pub fn parse_bandwidth(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches("/s");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

/// `64MiB`, `5M`, `1G`, `12345` (bytes); binary multiples.
pub fn parse_size(s: &str) -> Option<u64> {
    parse_bandwidth(s).filter(|_| !s.trim().ends_with("/s"))
}

pub async fn load_job(engine: &Engine, name: &str) -> Result<Option<JobRecord>, EngineError> {
    let k = job_key(name);
    let raw = engine.meta_call(move |m| m.get_worker_state(&k)).await?;
    Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
}

/// The job and its stored bytes (what a conditional save compares with).
pub async fn load_job_raw(
    engine: &Engine,
    name: &str,
) -> Result<Option<(JobRecord, Vec<u8>)>, EngineError> {
    let k = job_key(name);
    let raw = engine.meta_call(move |m| m.get_worker_state(&k)).await?;
    Ok(raw.and_then(|r| serde_json::from_slice(&r).ok().map(|j| (j, r))))
}

/// Saves the job only if its record still is `read` (`None`: there was none): `false` when
/// another process (a gateway sharing the metadata tier) changed it meanwhile. JOB_LOCK
/// serialises the writers of one process; this, those of every process.
pub async fn save_job_if(
    engine: &Engine,
    job: &JobRecord,
    read: Option<Vec<u8>>,
) -> Result<bool, EngineError> {
    let k = job_key(&job.name);
    let raw = serde_json::to_vec(job).map_err(|e| EngineError::internal(e.to_string()))?;
    engine
        .meta_call(move |m| m.put_worker_state_if(&k, read.as_deref(), &raw))
        .await
}

pub async fn save_job(engine: &Engine, job: &JobRecord) -> Result<(), EngineError> {
    let k = job_key(&job.name);
    let raw = serde_json::to_vec(job).map_err(|e| EngineError::internal(e.to_string()))?;
    engine
        .meta_call(move |m| m.put_worker_state(&k, &raw))
        .await
}

pub async fn load_progress(engine: &Engine, name: &str) -> Result<Progress, EngineError> {
    let k = progress_key(name);
    let raw = engine.meta_call(move |m| m.get_worker_state(&k)).await?;
    Ok(raw
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or_default())
}

pub async fn list_jobs(engine: &Engine) -> Result<Vec<JobRecord>, EngineError> {
    let rows = engine.meta_call(|m| m.worker_states(JOB_PREFIX)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// Opens the job's sealed source secret.
pub fn open_secret(engine: &Engine, job: &JobRecord) -> Result<Zeroizing<String>, String> {
    let sealed = hex::decode(&job.source_secret_sealed).map_err(|_| "sealed secret is corrupt")?;
    let raw = engine
        .keys()
        .open_secret(&secret_aad(&job.name), &sealed)
        .map_err(|e| format!("cannot open the source secret: {e}"))?;
    String::from_utf8(raw.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| "source secret is not UTF-8".into())
}

/// Creates a job in INITIALIZED; the worker starts it.
pub async fn start(engine: &Engine, args: StartArgs, admin: &str) -> Result<Value, JobError> {
    if !valid_job_name(&args.name) {
        return Err(invalid(
            "job names are 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    let overwrite = match args.overwrite.as_deref() {
        None => Overwrite::default(),
        Some(s) => Overwrite::parse(s)
            .ok_or_else(|| invalid("overwrite must be never, if-different or always"))?,
    };
    let concurrency = args.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(invalid(format!("concurrency must be 1-{MAX_CONCURRENCY}")));
    }
    let bandwidth = match args.bandwidth.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            parse_bandwidth(b)
                .ok_or_else(|| invalid("bandwidth must be bytes per second, e.g. 50MiB or 1G"))?,
        ),
    };
    let size = |v: &Option<String>, default: u64, what: &str| -> Result<u64, JobError> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some(s) => {
                parse_size(s).ok_or_else(|| invalid(format!("{what} must be a size, e.g. 64MiB")))
            }
        }
    };
    let part_threshold = size(
        &args.part_threshold,
        DEFAULT_PART_THRESHOLD,
        "part-threshold",
    )?;
    let part_size = size(&args.part_size, DEFAULT_PART_SIZE, "part-size")?;
    if !(crate::parts::MIN_PART..=crate::parts::MAX_PART).contains(&part_size) {
        return Err(invalid("part-size must be 5MiB-5GiB"));
    }
    if args.list_page.is_some_and(|n| !(1..=1000).contains(&n)) {
        return Err(invalid("list-page must be 1-1000"));
    }
    if args.versions && overwrite != Overwrite::IfDifferent {
        return Err(invalid(
            "--overwrite does not apply with --versions: every source version is added once",
        ));
    }
    if args.source_bucket.is_empty() || args.source_access_key.is_empty() {
        return Err(invalid("source bucket and access key are required"));
    }
    // Checks the endpoint's form and the CA bundle now rather than at the first unit.
    crate::source::Source::new(
        &args.source_endpoint,
        &args.source_region,
        &args.source_access_key,
        Zeroizing::new(String::new()),
        args.source_ca_pem.as_deref(),
    )
    .map_err(invalid)?;
    match engine.bucket(&args.bucket).await? {
        Some(b) => {
            engine.check_writable(&b)?;
            if args.versions && b.versioning != strata_metadata::VersioningState::Enabled {
                return Err(invalid(format!(
                    "--versions needs versioning enabled on the destination bucket {:?} (each source version becomes a version)",
                    args.bucket
                )));
            }
        }
        None => return Err(invalid(format!("no destination bucket {:?}", args.bucket))),
    }
    let _guard = JOB_LOCK.lock().await;
    if load_job(engine, &args.name).await?.is_some() {
        return Err(invalid(format!(
            "a migration job named {:?} exists",
            args.name
        )));
    }
    let sealed = {
        let _shared = engine.keys().switch().read().await;
        engine
            .keys()
            .seal_secret(&secret_aad(&args.name), &args.source_secret_key)
    };
    let job = JobRecord {
        name: args.name,
        state: JobState::Initialized,
        source_endpoint: args.source_endpoint.trim_end_matches('/').to_string(),
        source_region: args.source_region,
        source_access_key: args.source_access_key,
        source_secret_sealed: hex::encode(sealed),
        source_bucket: args.source_bucket,
        prefix: args.prefix,
        bucket: args.bucket,
        versions: args.versions,
        overwrite,
        concurrency,
        bandwidth,
        created_ms: strata_engine::now_ms(),
        error: None,
        created_by: admin.to_string(),
        source_ca_pem: args.source_ca_pem.filter(|p| !p.trim().is_empty()),
        part_threshold,
        part_size,
        export: None,
        list_page: args.list_page,
    };
    // Conditional on the name being free in the whole tier: two gateways starting the same
    // name at once get one job and one refusal.
    if !save_job_if(engine, &job, None).await? {
        return Err(invalid(format!(
            "a migration job named {:?} exists",
            job.name
        )));
    }
    Ok(job_json(&job, &Progress::default()))
}

/// pause / resume / cancel.
pub async fn control(engine: &Engine, name: &str, verb: &str) -> Result<Value, JobError> {
    let _guard = JOB_LOCK.lock().await;
    let (mut job, read) = load_job_raw(engine, name)
        .await?
        .ok_or_else(|| invalid(format!("no migration job {name:?}")))?;
    let next = match (verb, job.state) {
        ("pause", JobState::Initialized | JobState::Started) => JobState::Paused,
        ("resume", JobState::Paused) => JobState::Started,
        ("cancel", s) if !s.is_final() => JobState::Cancelled,
        (v, s) => {
            return Err(invalid(format!(
                "cannot {v} a job in state {}",
                state_name(s)
            )));
        }
    };
    job.state = next;
    if !save_job_if(engine, &job, Some(read)).await? {
        return Err(invalid(format!(
            "job {name:?} changed meanwhile (through another gateway or its worker): try again"
        )));
    }
    if next == JobState::Cancelled {
        // Nothing half-copied stays at the destination (the worker also sweeps what a running
        // step leaves after this).
        crate::parts::abort_all(engine, &job).await;
    }
    let progress = load_progress(engine, name).await?;
    Ok(job_json(&job, &progress))
}

pub async fn status(engine: &Engine, name: &str) -> Result<Value, JobError> {
    let job = load_job(engine, name)
        .await?
        .ok_or_else(|| invalid(format!("no migration job {name:?}")))?;
    let progress = load_progress(engine, name).await?;
    let mut v = job_json(&job, &progress);
    v["parts_in_flight"] = crate::parts::in_flight(engine, name)
        .await
        .into_iter()
        .map(|(key, done, total)| json!({"key": key, "parts_done": done, "parts_total": total}))
        .collect();
    Ok(v)
}

/// Re-seals job source secrets on a master rotation, like access-key secrets.
pub struct JobSecrets;

#[async_trait::async_trait]
impl strata_engine::rotation::SecretResealer for JobSecrets {
    async fn reseal(&self, engine: &Engine) -> strata_engine::Result<u64> {
        let mut changed = 0;
        for found in list_jobs(engine).await? {
            // Under the lock every writer of job records takes: no verb's write is undone.
            let _g = JOB_LOCK.lock().await;
            // Bounded: a record another gateway keeps changing is read again a few times.
            for _ in 0..16 {
                let Some((mut job, read)) = load_job_raw(engine, &found.name).await? else {
                    break;
                };
                let Ok(sealed) = hex::decode(&job.source_secret_sealed) else {
                    break;
                };
                match engine.keys().reseal_secret(&secret_aad(&job.name), &sealed) {
                    Ok(Some(new)) => {
                        job.source_secret_sealed = hex::encode(new);
                        if !save_job_if(engine, &job, Some(read)).await? {
                            continue;
                        }
                        changed += 1;
                    }
                    Ok(None) => {}
                    // Neither key opens it (corrupt): the job ends in ERROR when it runs; the
                    // rotation must not stop for it.
                    Err(e) => {
                        tracing::warn!(job = %job.name, error = %e, "master rotation: a migration job secret does not open")
                    }
                }
                break;
            }
        }
        Ok(changed)
    }
}

pub async fn list(engine: &Engine) -> Result<Value, JobError> {
    let mut out = Vec::new();
    for job in list_jobs(engine).await? {
        let p = load_progress(engine, &job.name).await?;
        out.push(job_json(&job, &p));
    }
    Ok(Value::Array(out))
}

pub fn state_name(s: JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A job as the operator sees it: state, settings (never the secret), every counter, rate.
pub fn job_json(job: &JobRecord, p: &Progress) -> Value {
    let secs = p.active_ms as f64 / 1000.0;
    let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let mut v = json!({
        "name": job.name,
        "state": state_name(job.state),
        "error": job.error,
        "source_endpoint": job.source_endpoint,
        "source_region": job.source_region,
        "source_access_key": job.source_access_key,
        "source_bucket": job.source_bucket,
        "prefix": job.prefix,
        "bucket": job.bucket,
        "versions": job.versions,
        "overwrite": job.overwrite,
        "concurrency": job.concurrency,
        "bandwidth_bytes_per_sec": job.bandwidth,
        "created_ms": job.created_ms,
        "started_ms": p.started_ms,
        "finished_ms": p.finished_ms,
        "cursor": p.cursor,
        "listing_done": p.listing_done,
        "objects_listed": p.objects_listed,
        "bytes_listed": p.bytes_listed,
        "objects_copied": p.objects_copied,
        "bytes_copied": p.bytes_copied,
        "objects_resumed": p.objects_resumed,
        "objects_skipped": p.objects_skipped,
        "bytes_skipped": p.bytes_skipped,
        "skipped_identical": p.skipped_identical,
        "skipped_exists": p.skipped_exists,
        "skipped_locked": p.skipped_locked,
        "skipped_excluded": p.skipped_excluded,
        "objects_failed": p.objects_failed,
        "bytes_failed": p.bytes_failed,
        "report_entries": p.report_entries,
        "active_secs": secs,
        "objects_per_sec": rate(p.objects_copied + p.objects_skipped + p.objects_failed),
        "bytes_per_sec": rate(p.bytes_copied),
        // The listing runs just ahead of the copy, so the total is known only at the end.
        "eta_secs": Value::Null,
        "last_error": p.last_error,
    });
    // Apart: one json! of every field would pass serde_json's macro recursion limit.
    v["delete_markers_copied"] = json!(p.delete_markers_copied);
    v["parts_copied"] = json!(p.parts_copied);
    v["parts_resumed"] = json!(p.parts_resumed);
    v["part_threshold"] = json!(job.part_threshold);
    v["part_size"] = json!(job.part_size);
    v["source_ca_bundle"] = json!(job.source_ca_pem.is_some());
    v["list_page"] = json!(job.list_page.unwrap_or(1000));
    v["ranges"] = json!(p.ranges);
    v["ranges_done"] = json!(p.ranges.iter().filter(|r| r.done).count());
    v["kind"] = json!(if job.export.is_some() {
        "export"
    } else {
        "import"
    });
    if let Some(x) = &job.export {
        v["to_dir"] = json!(x.to_dir);
        v["to_bucket"] = json!(x.to_bucket);
        v["to_endpoint"] = json!(x.to_bucket.as_ref().map(|_| &job.source_endpoint));
        v["manifest_segments"] = json!(p.manifest_segments);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_units() {
        assert_eq!(parse_bandwidth("12345"), Some(12345));
        assert_eq!(parse_bandwidth("10MiB"), Some(10 << 20));
        assert_eq!(parse_bandwidth("500K/s"), Some(500 << 10));
        assert_eq!(parse_bandwidth("1G"), Some(1 << 30));
        assert_eq!(parse_bandwidth("0"), None);
        assert_eq!(parse_bandwidth("fast"), None);
        assert_eq!(parse_bandwidth("5X"), None);
    }

    #[test]
    fn names() {
        assert!(valid_job_name("move-1.a_b"));
        assert!(!valid_job_name(""));
        assert!(!valid_job_name("a/b"));
        assert!(!valid_job_name(&"a".repeat(65)));
    }
}
