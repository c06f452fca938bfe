//! Export jobs (`strata admin export start ...`): data return, a Strata bucket written out to a
//! directory on the server's machine (see `export_dir`) or to another S3 endpoint. An export is
//! a migration job record with `export` set, run by the same worker one step at a time: a step
//! lists the next `4 × concurrency` keys of the local bucket after the cursor (every version
//! and delete marker with `--versions`, else the current versions), writes them `concurrency`
//! at a time, then (to a directory) writes the step's manifest segment, and commits the cursor,
//! the counters and the report entries in one metadata commit. A crash redoes the step: its
//! files are rewritten at the same paths and its manifest segment under the same number, so
//! nothing is exported twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_engine::workers::WorkState;
use strata_engine::{Engine, EngineError};
use strata_metadata::{BucketRecord, ListObjectsParams, ListVersionsParams, VersionRecord};
use tokio::io::AsyncWriteExt as _;
use zeroize::Zeroizing;

use crate::copy::{Limiter, Outcome, cancelled, copied};
use crate::export_dir::{self, ManifestEntry, Summary};
use crate::job::{
    self, DEFAULT_CONCURRENCY, JOB_LOCK, JobError, JobRecord, JobState, MAX_CONCURRENCY, Overwrite,
    Progress, load_job,
};
use crate::worker::{About, MigrationWorker, account, step_progress};

/// Versions of one key held at once (`--versions`): a key with more stops the job.
const MAX_KEY_VERSIONS: usize = 100_000;

/// The server's data directory: an export never writes into it.
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Tells exports where the server keeps its data (set once by the server at start).
pub fn set_data_dir(dir: &Path) {
    let _ = DATA_DIR.set(dir.to_path_buf());
}

/// Where an export writes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ExportSpec {
    /// `--to-dir`: an absolute directory on the machine of the server that runs the job.
    #[serde(default)]
    pub to_dir: Option<String>,
    /// `--to-endpoint`: the remote bucket; the endpoint, region, access key and the sealed
    /// secret are the job record's `source_*` fields (the other side of the copy).
    #[serde(default)]
    pub to_bucket: Option<String>,
}

/// What `strata admin export start` asks for.
#[derive(Clone, Debug, Deserialize)]
pub struct ExportArgs {
    pub name: String,
    /// The local bucket to export.
    pub bucket: String,
    #[serde(default)]
    pub to_dir: Option<String>,
    #[serde(default)]
    pub to_endpoint: Option<String>,
    #[serde(default)]
    pub to_region: Option<String>,
    #[serde(default)]
    pub to_access_key: Option<String>,
    #[serde(default)]
    pub to_secret_key: Option<String>,
    #[serde(default)]
    pub to_bucket: Option<String>,
    #[serde(default)]
    pub to_ca_pem: Option<String>,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub versions: bool,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub bandwidth: Option<String>,
}

fn invalid(m: impl Into<String>) -> JobError {
    JobError::Invalid(m.into())
}

fn secret_aad(name: &str) -> String {
    // The same AAD as an import's source secret: one job record, one sealed secret, re-sealed
    // by the same rotation code.
    format!("migration-job/{name}")
}

/// Creates an export job in INITIALIZED; the worker (on the leader) starts it.
pub async fn start(engine: &Engine, args: ExportArgs, admin: &str) -> Result<Value, JobError> {
    if !job::valid_job_name(&args.name) {
        return Err(invalid(
            "job names are 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    let concurrency = args.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(invalid(format!("concurrency must be 1-{MAX_CONCURRENCY}")));
    }
    let bandwidth = match args.bandwidth.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            job::parse_bandwidth(b)
                .ok_or_else(|| invalid("bandwidth must be bytes per second, e.g. 50MiB or 1G"))?,
        ),
    };
    if engine.bucket(&args.bucket).await?.is_none() {
        return Err(invalid(format!("no bucket {:?}", args.bucket)));
    }
    let dir = args.to_dir.as_deref().filter(|d| !d.is_empty());
    let endpoint = args.to_endpoint.as_deref().filter(|d| !d.is_empty());
    let mut spec = ExportSpec::default();
    let (mut remote_endpoint, mut region, mut access_key, mut secret) = (
        String::new(),
        String::new(),
        String::new(),
        Zeroizing::new(String::new()),
    );
    match (dir, endpoint) {
        (Some(d), None) => {
            let p = export_dir::check_target(d, DATA_DIR.get().map(PathBuf::as_path))
                .map_err(invalid)?;
            spec.to_dir = Some(p.to_string_lossy().into_owned());
        }
        (None, Some(e)) => {
            let to_bucket = args.to_bucket.clone().filter(|b| !b.is_empty());
            let ak = args.to_access_key.clone().filter(|b| !b.is_empty());
            let (Some(b), Some(ak)) = (to_bucket, ak) else {
                return Err(invalid(
                    "--to-endpoint needs --to-bucket, --to-access-key and --to-secret-key",
                ));
            };
            region = args.to_region.clone().unwrap_or_else(|| "us-east-1".into());
            crate::source::Source::new(
                e,
                &region,
                &ak,
                Zeroizing::new(String::new()),
                args.to_ca_pem.as_deref(),
            )
            .map_err(|m| invalid(m.replace("source endpoint", "--to-endpoint")))?;
            remote_endpoint = e.trim_end_matches('/').to_string();
            access_key = ak;
            secret = Zeroizing::new(args.to_secret_key.clone().unwrap_or_default());
            spec.to_bucket = Some(b);
        }
        _ => {
            return Err(invalid(
                "an export needs exactly one of --to-dir DIR and --to-endpoint URL",
            ));
        }
    }
    let _guard = JOB_LOCK.lock().await;
    if load_job(engine, &args.name).await?.is_some() {
        return Err(invalid(format!("a job named {:?} exists", args.name)));
    }
    let sealed = if spec.to_bucket.is_some() {
        let _shared = engine.keys().switch().read().await;
        hex::encode(
            engine
                .keys()
                .seal_secret(&secret_aad(&args.name), secret.as_str()),
        )
    } else {
        String::new()
    };
    let job = JobRecord {
        name: args.name,
        state: JobState::Initialized,
        source_endpoint: remote_endpoint,
        source_region: region,
        source_access_key: access_key,
        source_secret_sealed: sealed,
        source_bucket: spec.to_bucket.clone().unwrap_or_default(),
        prefix: args.prefix,
        bucket: args.bucket,
        versions: args.versions,
        overwrite: Overwrite::Always,
        concurrency,
        bandwidth,
        created_ms: strata_engine::now_ms(),
        error: None,
        created_by: admin.to_string(),
        source_ca_pem: args.to_ca_pem.filter(|p| !p.trim().is_empty()),
        part_threshold: job::DEFAULT_PART_THRESHOLD,
        part_size: job::DEFAULT_PART_SIZE,
        export: Some(spec),
        list_page: None,
    };
    // Conditional on the name being free in the whole tier (cluster: another gateway).
    if !job::save_job_if(engine, &job, None).await? {
        return Err(invalid(format!("a job named {:?} exists", job.name)));
    }
    Ok(job::job_json(&job, &Progress::default()))
}

/// The step's progress and report entries in one commit, which also drops the per-key records
/// of versions written to a remote (`export_remote`): the cursor now covers those keys.
async fn commit(
    engine: &Engine,
    job: &JobRecord,
    progress: &Progress,
    mut reports: Vec<(String, Vec<u8>)>,
    keys: &[String],
) -> Result<(), String> {
    let raw = serde_json::to_vec(progress).map_err(|e| e.to_string())?;
    reports.push((job::progress_key(&job.name), raw));
    let remote_versions =
        job.versions && job.export.as_ref().is_some_and(|x| x.to_bucket.is_some());
    let delete: Vec<String> = if remote_versions {
        keys.iter()
            .map(|k| crate::export_remote::xver_key(&job.name, k))
            .collect()
    } else {
        Vec::new()
    };
    engine
        .meta_call(move |m| m.update_worker_states(&reports, &delete))
        .await
        .map_err(|e| e.to_string())
}

/// ISO 8601 UTC with milliseconds.
pub fn iso_ms(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// The manifest line of a version (without its file's path and hash).
fn entry_of(key: &str, is_latest: bool, v: &VersionRecord) -> ManifestEntry {
    let (alg, sum) = v.checksum.clone().unzip();
    ManifestEntry {
        key: key.to_string(),
        version_id: v.version_id.clone(),
        is_latest,
        delete_marker: v.is_delete_marker,
        path: None,
        size: v.size,
        etag: v.etag.clone(),
        sha256: None,
        checksum_algorithm: alg,
        checksum: sum,
        checksum_type: v.checksum_type.clone(),
        last_modified: iso_ms(v.last_modified),
        content_type: v.content.content_type.clone(),
        content_encoding: v.content.content_encoding.clone(),
        content_disposition: v.content.content_disposition.clone(),
        content_language: v.content.content_language.clone(),
        cache_control: v.content.cache_control.clone(),
        expires: v.content.expires.clone(),
        user_metadata: v.user_metadata.clone(),
        tags: v.tags.clone(),
        storage_class: v.storage_class.clone(),
        origin: v.origin.as_ref().map(|o| {
            json!({"job": o.job, "source_version_id": o.version_id, "source_etag": o.etag,
                   "source_last_modified": o.last_modified})
        }),
    }
}

/// The bytes of a version, readable with the server's own keys (SSE-C needs the customer's).
pub(crate) async fn read_stream(
    engine: &Engine,
    bucket: &BucketRecord,
    v: &VersionRecord,
) -> Result<strata_engine::ReadStream, String> {
    let binding = engine
        .sse_binding(v.content.sse.as_ref(), None)
        .await
        .map_err(|_| {
            "encrypted with a customer key (SSE-C): the server cannot read it".to_string()
        })?;
    engine
        .read_bound(bucket, v, 0..v.size, &binding)
        .await
        .map_err(|e| match e {
            EngineError::Rejected(strata_engine::Rejection::InvalidObjectState) => {
                "archived (restore it first)".to_string()
            }
            e => format!("reading the object: {e}"),
        })
}

fn plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes one version's bytes to its file under `root`, durably; its manifest line.
async fn to_dir(
    engine: &Engine,
    bucket: &BucketRecord,
    root: &Path,
    key: &str,
    is_latest: bool,
    v: &VersionRecord,
    limiter: &Limiter,
) -> Result<ManifestEntry, String> {
    let mut entry = entry_of(key, is_latest, v);
    let rel = export_dir::version_path(key, &v.version_id);
    let mut stream = read_stream(engine, bucket, v).await?;
    let r = root.to_path_buf();
    let tmp = tokio::task::spawn_blocking(move || export_dir::temp_path(&r))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("writing the export: {e}"))?;
    let io = |e: std::io::Error| format!("writing the export: {e}");
    let mut f = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let (mut sha, mut md5, mut n) = (sha2::Sha256::new(), Md5::new(), 0u64);
    let written: Result<(), String> = async {
        // Bounded by the object's size (the engine ends the stream at its length).
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading the object: {e}"))?;
            limiter.take(chunk.len()).await;
            sha.update(&chunk);
            md5.update(&chunk);
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.sync_all().await.map_err(io)?;
        if n != v.size {
            return Err(format!("read {n} bytes of {}", v.size));
        }
        let md5 = hex::encode(md5.finalize());
        if plain_md5(&v.etag) && md5 != v.etag {
            return Err(format!(
                "verification failed: the bytes read have MD5 {md5}, the object's ETag is {}",
                v.etag
            ));
        }
        Ok(())
    }
    .await;
    drop(f);
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let (r, rel2) = (root.to_path_buf(), rel.clone());
    tokio::task::spawn_blocking(move || export_dir::install(&r, &tmp, &rel2))
        .await
        .map_err(|e| e.to_string())?
        .map_err(io)?;
    entry.path = Some(rel.to_string_lossy().into_owned());
    entry.sha256 = Some(hex::encode(sha.finalize()));
    Ok(entry)
}

/// One listed version: key, whether it is the key's latest, the version.
type Listed = (String, bool, VersionRecord);

/// The next keys after the cursor, and whether the listing ends.
async fn list_step(
    engine: &Engine,
    job: &JobRecord,
    cursor: Option<&str>,
) -> Result<(Vec<Listed>, bool), String> {
    let n = (job.concurrency as usize * 4).max(2);
    if !job.versions {
        let page = engine
            .list_objects(
                &job.bucket,
                ListObjectsParams {
                    prefix: job.prefix.clone(),
                    delimiter: None,
                    start_after: cursor.map(str::to_string),
                    max_keys: n,
                },
            )
            .await
            .map_err(|e| format!("listing the bucket: {e}"))?;
        let last = !page.is_truncated;
        return Ok((
            page.objects
                .into_iter()
                .map(|(k, v)| (k, true, v))
                .collect(),
            last,
        ));
    }
    let mut out: Vec<Listed> = Vec::new();
    let (mut km, mut vm) = (cursor.map(str::to_string), None::<String>);
    for _ in 0..MAX_KEY_VERSIONS / n + 2 {
        let page = engine
            .list_versions(
                &job.bucket,
                ListVersionsParams {
                    prefix: job.prefix.clone(),
                    delimiter: None,
                    key_marker: km.clone(),
                    version_id_marker: vm.clone(),
                    max_keys: n,
                },
            )
            .await
            .map_err(|e| format!("listing the bucket's versions: {e}"))?;
        out.extend(
            page.entries
                .into_iter()
                .map(|e| (e.key, e.is_latest, e.version)),
        );
        if !page.is_truncated {
            return Ok((out, true));
        }
        let last_key = out.last().map(|e| e.0.clone());
        if out.iter().any(|e| Some(&e.0) != last_key.as_ref()) {
            // The last key's history may continue: it is listed whole by the next step.
            out.retain(|e| Some(&e.0) != last_key.as_ref());
            return Ok((out, false));
        }
        km = page.next_key_marker;
        vm = page.next_version_id_marker;
    }
    Err(format!(
        "a key after {:?} has more than {MAX_KEY_VERSIONS} versions",
        cursor.unwrap_or("")
    ))
}

impl MigrationWorker {
    /// One step of an export job (see the module doc).
    pub(crate) async fn step_export(&mut self, job: JobRecord) -> Result<WorkState, String> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let spec = job.export.clone().unwrap_or_default();
        let mut progress = step_progress(&engine, &job.name).await?;
        let Some(bucket) = engine
            .bucket(&job.bucket)
            .await
            .map_err(|e| e.to_string())?
        else {
            let why = format!("the bucket {:?} is gone", job.bucket);
            self.finish(&job.name, JobState::Error, Some(why), progress)
                .await?;
            return Ok(WorkState::Busy);
        };
        let root = match &spec.to_dir {
            Some(d) => {
                // The server that runs the job writes the directory: it must not be inside
                // this server's data directory either (another gateway checked the start).
                let p = PathBuf::from(d);
                let forbidden = DATA_DIR.get();
                let inside = forbidden.is_some_and(|f| {
                    let f = f.canonicalize().unwrap_or_else(|_| f.clone());
                    p.starts_with(&f) || f.starts_with(&p)
                });
                let made = if inside {
                    Err(format!(
                        "--to-dir {d:?} is inside this server's data directory"
                    ))
                } else {
                    let pc = p.clone();
                    tokio::task::spawn_blocking(move || {
                        let top = pc
                            .ancestors()
                            .last()
                            .map(Path::to_path_buf)
                            .unwrap_or_default();
                        export_dir::create_dirs(&top, &pc)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot create --to-dir {d:?}: {e}"))
                };
                if let Err(e) = made {
                    self.finish(&job.name, JobState::Error, Some(e), progress)
                        .await?;
                    return Ok(WorkState::Busy);
                }
                Some(p)
            }
            None => None,
        };
        let remote = if root.is_none() {
            match self.source(&job).cloned() {
                Ok(s) => Some(s),
                Err(e) => {
                    self.finish(&job.name, JobState::Error, Some(e), progress)
                        .await?;
                    return Ok(WorkState::Busy);
                }
            }
        } else {
            None
        };
        let (chunk, last) = match list_step(&engine, &job, progress.cursor.as_deref()).await {
            Ok(x) => x,
            Err(e) => {
                self.finish(&job.name, JobState::Error, Some(e), progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
        };
        progress.objects_listed += chunk.len() as u64;
        progress.bytes_listed += chunk.iter().map(|(_, _, v)| v.size).sum::<u64>();
        let limiter = Arc::new(Limiter::new(job.bandwidth));
        let shared = Arc::new((engine.clone(), job.clone(), bucket, root.clone(), remote));
        // Keys are exported `concurrency` at a time, each key's versions oldest first (a
        // remote versioned bucket gets the history in order).
        let mut by_key: Vec<Vec<(usize, &Listed)>> = Vec::new();
        for (i, e) in chunk.iter().enumerate() {
            match by_key.last_mut() {
                Some(g) if g[0].1.0 == e.0 => g.push((i, e)),
                _ => by_key.push(vec![(i, e)]),
            }
        }
        let groups: Vec<Vec<(usize, String, bool, VersionRecord)>> = by_key
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .rev()
                    .map(|(i, (k, l, v))| (i, k.clone(), *l, v.clone()))
                    .collect()
            })
            .collect();
        let results: Vec<Vec<(usize, Outcome, Option<ManifestEntry>)>> =
            futures::stream::iter(groups)
                .map(|group| {
                    let (shared, limiter) = (shared.clone(), limiter.clone());
                    async move {
                        let (engine, job, bucket, root, remote) = &*shared;
                        let mut outs = Vec::with_capacity(group.len());
                        for (i, key, latest, v) in group {
                            if cancelled(engine, &job.name).await {
                                outs.push((i, Outcome::Cancelled, None));
                                continue;
                            }
                            let r = match (root, remote) {
                                (Some(_), _) if v.is_delete_marker => Ok((
                                    Outcome::Marker { resumed: false },
                                    Some(entry_of(&key, latest, &v)),
                                )),
                                (Some(root), _) => {
                                    to_dir(engine, bucket, root, &key, latest, &v, &limiter)
                                        .await
                                        .map(|e| (copied(v.size), Some(e)))
                                }
                                (None, Some(remote)) => crate::export_remote::put(
                                    engine, bucket, remote, job, &key, &v, &limiter,
                                )
                                .await
                                .map(|o| (o, None)),
                                (None, None) => Err("no target".to_string()),
                            };
                            outs.push(match r {
                                Ok((o, e)) => (i, o, e),
                                Err(error) => (
                                    i,
                                    Outcome::Failed {
                                        error,
                                        bytes: v.size,
                                    },
                                    None,
                                ),
                            });
                        }
                        outs
                    }
                })
                .buffer_unordered(job.concurrency as usize)
                .collect()
                .await;
        let mut results: Vec<_> = results.into_iter().flatten().collect();
        results.sort_by_key(|(i, _, _)| *i);
        if cancelled(&engine, &job.name).await {
            // Nothing of this step is committed; the job is over.
            return Ok(WorkState::Busy);
        }
        let mut entries = Vec::new();
        let mut reports = Vec::new();
        let mut step_keys: Vec<String> = chunk.iter().map(|(k, _, _)| k.clone()).collect();
        step_keys.dedup();
        for (i, outcome, entry) in results {
            let (key, _, v) = &chunk[i];
            let about = About {
                key,
                version_id: job.versions.then_some(v.version_id.as_str()),
                size: v.size,
                etag: &v.etag,
            };
            account(&job.name, &mut progress, &mut reports, &about, outcome);
            entries.extend(entry);
        }
        if let Some(root) = &root
            && !entries.is_empty()
        {
            let (r, seq) = (root.clone(), progress.manifest_segments + 1);
            tokio::task::spawn_blocking(move || export_dir::write_segment(&r, seq, &entries))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("job {}: writing the manifest: {e}", job.name))?;
            progress.manifest_segments = seq;
        }
        if let Some((k, _, _)) = chunk.last() {
            progress.cursor = Some(k.clone());
        }
        progress.active_ms += started.elapsed().as_millis() as u64;
        if last {
            progress.listing_done = true;
            if let Some(root) = &root {
                let summary = Summary {
                    format: export_dir::FORMAT.into(),
                    job: job.name.clone(),
                    bucket: job.bucket.clone(),
                    prefix: job.prefix.clone(),
                    versions: job.versions,
                    segments: progress.manifest_segments,
                    files: progress.objects_copied,
                    delete_markers: progress.delete_markers_copied,
                    bytes: progress.bytes_copied,
                    failed: progress.objects_failed,
                    started_ms: progress.started_ms,
                    finished_ms: strata_engine::now_ms(),
                };
                // The step's counters first: a crash here redoes only the summary.
                commit(&engine, &job, &progress, reports, &step_keys).await?;
                let r = root.clone();
                tokio::task::spawn_blocking(move || export_dir::write_summary(&r, &summary))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("job {}: writing the summary: {e}", job.name))?;
                self.finish(&job.name, JobState::Done, None, progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
            commit(&engine, &job, &progress, reports, &step_keys).await?;
            self.finish(&job.name, JobState::Done, None, progress)
                .await?;
            return Ok(WorkState::Busy);
        }
        commit(&engine, &job, &progress, reports, &step_keys).await?;
        self.status = json!({
            "job": job.name,
            "export": true,
            "cursor": progress.cursor,
            "objects_copied": progress.objects_copied,
            "objects_failed": progress.objects_failed,
        });
        Ok(WorkState::Busy)
    }
}
