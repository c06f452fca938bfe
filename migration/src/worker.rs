//! The `migration` worker: drives every started job, one step per unit of work. A step lists a
//! page of the source after the job's cursor (kept in memory between steps), copies the next
//! `4 × concurrency` keys of it `concurrency` at a time, then commits the new cursor, the
//! counters and the step's report entries in one metadata commit. A crash (kill -9 included)
//! redoes at most the step that was running; its already-copied objects are recognised by the
//! origin recorded on them and are not copied again.
//!
//! With `--versions` a step lists ListObjectVersions after the cursor (the last key whose
//! history is copied), groups the page by key (a key whose versions continue on the next page
//! is listed on until it is whole), and copies each key's versions and delete markers oldest
//! first, keys `concurrency` at a time. A redone step skips every version whose source version
//! id the destination already has from this job (its origin), so nothing is added twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::workers::{WorkState, Worker};

use crate::copy::{Ctx, Limiter, Outcome, Skip, copy_one, copy_version};
use crate::job::{self, JOB_LOCK, JobRecord, JobState, Progress, load_progress, progress_key};
use crate::ranges::{self, Range};
use crate::report::{Entry, entry_key};
use crate::source::{Listed, ListedVersion, Source, SourceError};

/// Keys per ListObjectsV2 request.
const LIST_PAGE: usize = 1000;
/// Source listing failures in a row before a job stops in ERROR.
const MAX_LIST_ERRORS: u32 = 10;
/// Versions of one key held at once (`--versions`): a key with more is a failure.
const MAX_KEY_VERSIONS: usize = 100_000;

/// One key's history, oldest first.
type History = (String, Vec<ListedVersion>);

struct VersionsPage {
    job: String,
    cursor: Option<String>,
    keys: VecDeque<History>,
    /// The listing ends with these keys.
    last: bool,
}

struct PageState {
    job: String,
    /// The `start-after` the front of `items` follows.
    cursor: Option<String>,
    items: VecDeque<Listed>,
    truncated: bool,
}

pub struct MigrationWorker {
    pub(crate) engine: Engine,
    /// The listed page of each active range (by index), kept between steps.
    pages: HashMap<usize, PageState>,
    vpage: Option<VersionsPage>,
    source: Option<(String, Source)>,
    pub(crate) status: Value,
}

impl MigrationWorker {
    pub fn new(engine: Engine) -> Self {
        MigrationWorker {
            engine,
            pages: HashMap::new(),
            vpage: None,
            source: None,
            status: json!({"job": null}),
        }
    }

    pub(crate) fn source(&mut self, job: &JobRecord) -> Result<&Source, String> {
        if self.source.as_ref().is_none_or(|(n, _)| *n != job.name) {
            let secret = job::open_secret(&self.engine, job)?;
            let s = Source::new(
                &job.source_endpoint,
                &job.source_region,
                &job.source_access_key,
                secret,
                job.source_ca_pem.as_deref(),
            )?;
            self.source = Some((job.name.clone(), s));
        }
        Ok(&self.source.as_ref().expect("just set").1)
    }

    /// Moves a job to a final state (unless an operator changed it meanwhile).
    pub(crate) async fn finish(
        &self,
        name: &str,
        state: JobState,
        error: Option<String>,
        mut progress: Progress,
    ) -> Result<(), String> {
        let _g = JOB_LOCK.lock().await;
        let Some((mut job, read)) = job::load_job_raw(&self.engine, name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if job.state != JobState::Started {
            return Ok(());
        }
        job.state = state;
        job.error = error;
        progress.finished_ms = Some(strata_engine::now_ms());
        // A by-part copy cut short (a crash between completion and its cursor's removal).
        crate::parts::abort_all(&self.engine, &job).await;
        save_progress(&self.engine, name, &progress, Vec::new()).await?;
        // An operator's pause or cancel through another gateway meanwhile wins.
        if !job::save_job_if(&self.engine, &job, Some(read))
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        tracing::info!(target: "strata::audit", job = %name, state = %job::state_name(state), "migration job ended");
        Ok(())
    }

    /// The next job to run: the first (by name) that is INITIALIZED or STARTED.
    async fn pick(&self) -> Result<Option<JobRecord>, String> {
        let jobs = job::list_jobs(&self.engine)
            .await
            .map_err(|e| e.to_string())?;
        // A step that ran while its job was cancelled may have left an upload behind.
        for j in jobs.iter().filter(|j| j.state == JobState::Cancelled) {
            if !crate::parts::in_flight(&self.engine, &j.name)
                .await
                .is_empty()
            {
                crate::parts::abort_all(&self.engine, j).await;
            }
        }
        let Some(found) = jobs
            .into_iter()
            .find(|j| matches!(j.state, JobState::Initialized | JobState::Started))
        else {
            return Ok(None);
        };
        if found.state == JobState::Started {
            return Ok(Some(found));
        }
        let _g = JOB_LOCK.lock().await;
        let Some((mut j, read)) = job::load_job_raw(&self.engine, &found.name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if j.state != JobState::Initialized {
            return Ok(None);
        }
        j.state = JobState::Started;
        if !job::save_job_if(&self.engine, &j, Some(read))
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(None);
        }
        tracing::info!(target: "strata::audit", job = %j.name, source = %j.source_endpoint, source_bucket = %j.source_bucket, bucket = %j.bucket, "migration job started");
        Ok(Some(j))
    }

    async fn step(&mut self, job: JobRecord) -> Result<WorkState, String> {
        if job.export.is_some() {
            return self.step_export(job).await;
        }
        if job.versions {
            return self.step_versions(job).await;
        }
        let started = Instant::now();
        let engine = self.engine.clone();
        let mut progress = step_progress(&engine, &job.name).await?;
        // A secret that no longer opens (or a bad endpoint) cannot get better by retrying.
        let source = match self.source(&job).cloned() {
            Ok(s) => s,
            Err(e) => {
                self.finish(&job.name, JobState::Error, Some(e), progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
        };
        if !progress.ranges_planned {
            // A job begun before ranges existed continues from its one cursor.
            progress.ranges = if progress.cursor.is_some() || progress.listing_done {
                vec![Range {
                    cursor: progress.cursor.clone(),
                    listed_through: progress.listed_through.clone(),
                    done: progress.listing_done,
                    ..Range::default()
                }]
            } else {
                let want = (job.concurrency as usize * 4).min(ranges::MAX_RANGES);
                match ranges::plan(&source, &job.source_bucket, &job.prefix, want).await {
                    Ok(b) => ranges::from_boundaries(&b),
                    Err(e) => return self.listing_failed(&job, progress, e).await,
                }
            };
            progress.ranges_planned = true;
            progress.consecutive_errors = 0;
            self.pages.clear();
            save_progress(&engine, &job.name, &progress, Vec::new()).await?;
            return Ok(WorkState::Busy);
        }
        // Pages of another job, or that no longer follow their range's cursor, are dropped.
        let name = job.name.clone();
        self.pages.retain(|i, p| {
            p.job == name
                && progress
                    .ranges
                    .get(*i)
                    .is_some_and(|r| !r.done && r.start_after() == p.cursor.as_deref())
        });
        let active: Vec<usize> = (0..progress.ranges.len())
            .filter(|&i| !progress.ranges[i].done)
            .take(job.concurrency as usize)
            .collect();
        if active.is_empty() {
            // Every range is done: so is the job.
            progress.listing_done = true;
            self.pages.clear();
            self.finish(&job.name, JobState::Done, None, progress)
                .await?;
            return Ok(WorkState::Busy);
        }
        // The active ranges whose page is used up list their next pages concurrently.
        let page_len = job.list_page.map_or(LIST_PAGE, |n| n as usize);
        let need: Vec<(usize, Option<String>)> = active
            .iter()
            .filter(|i| {
                self.pages
                    .get(i)
                    .is_none_or(|p| p.items.is_empty() && p.truncated)
            })
            .map(|&i| (i, progress.ranges[i].start_after().map(str::to_string)))
            .collect();
        let mut lists = Vec::with_capacity(need.len());
        for (i, after) in need {
            let (source, bucket, prefix) = (
                source.clone(),
                job.source_bucket.clone(),
                job.prefix.clone(),
            );
            lists.push(async move {
                let r = source
                    .list(&bucket, &prefix, after.as_deref(), page_len)
                    .await;
                (i, after, r)
            });
        }
        let listed = futures::future::join_all(lists).await;
        let mut failed = None;
        for (i, after, res) in listed {
            match res {
                Ok(page) => {
                    let range = &progress.ranges[i];
                    let mut items: VecDeque<Listed> = page.objects.into();
                    let mut truncated = page.truncated;
                    // The next range's keys are its own.
                    if let Some(end) = items.iter().position(|l| !range.holds(&l.key)) {
                        items.truncate(end);
                        truncated = false;
                    }
                    self.pages.insert(
                        i,
                        PageState {
                            job: job.name.clone(),
                            cursor: after,
                            items,
                            truncated,
                        },
                    );
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return self.listing_failed(&job, progress, e).await;
        }
        progress.consecutive_errors = 0;
        for &i in &active {
            let Some(page) = self.pages.get(&i) else {
                continue;
            };
            for item in &page.items {
                let range = &mut progress.ranges[i];
                if range
                    .listed_through
                    .as_deref()
                    .is_none_or(|t| item.key.as_str() > t)
                {
                    range.listed_through = Some(item.key.clone());
                    progress.objects_listed += 1;
                    progress.bytes_listed += item.size;
                }
            }
        }
        // `4 × concurrency` keys a step, shared by the active ranges, in key order in each.
        let per = (job.concurrency as usize * 4 / active.len()).max(1);
        let mut chunk: Vec<(usize, Listed)> = Vec::new();
        for &i in &active {
            if let Some(p) = self.pages.get_mut(&i) {
                let take = p.items.len().min(per);
                chunk.extend(p.items.drain(..take).map(|l| (i, l)));
            }
        }
        let dest = match engine.bucket(&job.bucket).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                self.finish(
                    &job.name,
                    JobState::Error,
                    Some(format!("the destination bucket {:?} is gone", job.bucket)),
                    progress,
                )
                .await?;
                return Ok(WorkState::Busy);
            }
            Err(e) => return Err(e.to_string()),
        };
        let limiter = Arc::new(Limiter::new(job.bandwidth));
        let source = Arc::new(source);
        let shared = Arc::new((engine.clone(), job.clone(), dest));
        let items: Vec<Listed> = chunk.iter().map(|(_, l)| l.clone()).collect();
        let outcomes: Vec<(usize, Outcome)> = futures::stream::iter(items.into_iter().enumerate())
            .map(|(i, item)| {
                let (shared, source, limiter) = (shared.clone(), source.clone(), limiter.clone());
                async move {
                    let (engine, job, dest) = &*shared;
                    (
                        i,
                        copy_one(engine, &source, job, dest, &item, limiter).await,
                    )
                }
            })
            .buffer_unordered(job.concurrency as usize)
            .collect()
            .await;
        let mut outcomes = outcomes;
        outcomes.sort_by_key(|(i, _)| *i);
        let mut reports = Vec::new();
        for (i, outcome) in outcomes {
            let item = &chunk[i].1;
            let about = About {
                key: &item.key,
                version_id: None,
                size: item.size,
                etag: &item.etag,
            };
            account(&job.name, &mut progress, &mut reports, &about, outcome);
        }
        for (r, item) in &chunk {
            progress.ranges[*r].cursor = Some(item.key.clone());
        }
        for &i in &active {
            let range = &mut progress.ranges[i];
            match self.pages.get_mut(&i) {
                Some(p) if !p.items.is_empty() || p.truncated => {
                    p.cursor = range.start_after().map(str::to_string);
                }
                _ => {
                    range.done = true;
                    self.pages.remove(&i);
                }
            }
        }
        // Every key up to here is done: the first unfinished range's cursor.
        progress.cursor = progress
            .ranges
            .iter()
            .find(|r| !r.done)
            .and_then(|r| r.start_after().map(str::to_string))
            .or_else(|| progress.ranges.last().and_then(|r| r.cursor.clone()));
        progress.active_ms += started.elapsed().as_millis() as u64;
        save_progress(&engine, &job.name, &progress, reports).await?;
        self.status = json!({
            "job": job.name,
            "cursor": progress.cursor,
            "ranges": progress.ranges.len(),
            "ranges_active": active.len(),
            "objects_copied": progress.objects_copied,
            "objects_failed": progress.objects_failed,
            "objects_skipped": progress.objects_skipped,
        });
        Ok(WorkState::Busy)
    }

    /// A failed source listing: counted, and the job ends in ERROR when retrying cannot help.
    async fn listing_failed(
        &self,
        job: &JobRecord,
        mut progress: Progress,
        e: SourceError,
    ) -> Result<WorkState, String> {
        progress.consecutive_errors += 1;
        progress.last_error = Some(e.to_string());
        if e.permanent() || progress.consecutive_errors >= MAX_LIST_ERRORS {
            self.finish(&job.name, JobState::Error, Some(e.to_string()), progress)
                .await?;
            return Ok(WorkState::Busy);
        }
        save_progress(&self.engine, &job.name, &progress, Vec::new()).await?;
        Err(format!("job {}: listing the source: {e}", job.name))
    }
}

/// Whole key histories after `cursor` (a key whose versions continue past a page is listed on
/// until it is whole): the histories, and whether the listing ends with them.
async fn list_histories(
    source: &Source,
    job: &JobRecord,
    cursor: Option<&str>,
) -> Result<(VecDeque<History>, bool), SourceError> {
    let mut entries: Vec<ListedVersion> = Vec::new();
    let (mut km, mut vm) = (cursor.map(str::to_string), None::<String>);
    for _ in 0..MAX_KEY_VERSIONS / LIST_PAGE + 2 {
        let page = source
            .list_versions(
                &job.source_bucket,
                &job.prefix,
                km.as_deref(),
                vm.as_deref(),
                LIST_PAGE,
            )
            .await?;
        entries.extend(page.entries);
        if !page.truncated || page.next_key_marker.is_none() {
            return Ok((histories(entries), true));
        }
        let mut keys = histories(std::mem::take(&mut entries));
        if keys.len() > 1 {
            // The last key's history may continue on the next page: it is listed again whole.
            keys.pop_back();
            return Ok((keys, false));
        }
        entries = keys.into_iter().flat_map(|(_, vs)| vs).collect();
        km = page.next_key_marker;
        vm = page.next_version_id_marker;
    }
    Err(SourceError {
        status: Some(200),
        code: "TooManyVersions".into(),
        message: format!(
            "a key after {:?} has more than {MAX_KEY_VERSIONS} versions",
            cursor.unwrap_or("")
        ),
    })
}

/// The progress a step starts from, stamped with the job's start time on its first step.
pub(crate) async fn step_progress(engine: &Engine, name: &str) -> Result<Progress, String> {
    let mut progress = load_progress(engine, name)
        .await
        .map_err(|e| e.to_string())?;
    if progress.started_ms.is_none() {
        progress.started_ms = Some(strata_engine::now_ms());
    }
    Ok(progress)
}

impl MigrationWorker {
    /// One step of a `--versions` job (see the module doc).
    async fn step_versions(&mut self, job: JobRecord) -> Result<WorkState, String> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let mut progress = step_progress(&engine, &job.name).await?;
        if self
            .vpage
            .as_ref()
            .is_some_and(|p| p.job != job.name || p.cursor != progress.cursor)
        {
            self.vpage = None;
        }
        let source = match self.source(&job).cloned() {
            Ok(s) => s,
            Err(e) => {
                self.finish(&job.name, JobState::Error, Some(e), progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
        };
        if self
            .vpage
            .as_ref()
            .is_none_or(|p| p.keys.is_empty() && !p.last)
        {
            match list_histories(&source, &job, progress.cursor.as_deref()).await {
                Ok((keys, last)) => {
                    progress.consecutive_errors = 0;
                    self.vpage = Some(VersionsPage {
                        job: job.name.clone(),
                        cursor: progress.cursor.clone(),
                        keys,
                        last,
                    });
                }
                Err(e) => {
                    progress.consecutive_errors += 1;
                    progress.last_error = Some(e.to_string());
                    if e.permanent() || progress.consecutive_errors >= MAX_LIST_ERRORS {
                        self.finish(&job.name, JobState::Error, Some(e.to_string()), progress)
                            .await?;
                        return Ok(WorkState::Busy);
                    }
                    save_progress(&engine, &job.name, &progress, Vec::new()).await?;
                    return Err(format!(
                        "job {}: listing the source's versions: {e}",
                        job.name
                    ));
                }
            }
        }
        let page = self.vpage.as_mut().expect("listed above");
        if page.keys.is_empty() {
            progress.listing_done = true;
            self.vpage = None;
            self.finish(&job.name, JobState::Done, None, progress)
                .await?;
            return Ok(WorkState::Busy);
        }
        for (key, vs) in &page.keys {
            if progress
                .listed_through
                .as_deref()
                .is_none_or(|t| key.as_str() > t)
            {
                progress.objects_listed += vs.len() as u64;
                progress.bytes_listed += vs.iter().map(|v| v.size).sum::<u64>();
                progress.listed_through = Some(key.clone());
            }
        }
        let take = page.keys.len().min(job.concurrency as usize * 4);
        let chunk: Vec<History> = page.keys.drain(..take).collect();
        let dest = match engine.bucket(&job.bucket).await {
            Ok(Some(b)) if b.versioning == strata_metadata::VersioningState::Enabled => b,
            Ok(found) => {
                let why = match found {
                    Some(_) => format!(
                        "versioning is no longer enabled on the destination bucket {:?}",
                        job.bucket
                    ),
                    None => format!("the destination bucket {:?} is gone", job.bucket),
                };
                self.finish(&job.name, JobState::Error, Some(why), progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
            Err(e) => return Err(e.to_string()),
        };
        let limiter = Arc::new(Limiter::new(job.bandwidth));
        let shared = Arc::new((engine.clone(), job.clone(), dest, source));
        let mut results: Vec<(usize, Vec<Outcome>)> =
            futures::stream::iter(chunk.iter().cloned().enumerate())
                .map(|(i, (key, versions))| {
                    let (shared, limiter) = (shared.clone(), limiter.clone());
                    async move {
                        let (engine, job, dest, source) = &*shared;
                        let ctx = Ctx {
                            engine,
                            source,
                            job,
                            dest,
                            limiter,
                        };
                        let done = match copied_versions(engine, &dest.name, &job.name, &key).await
                        {
                            Ok(d) => d,
                            Err(e) => {
                                let failed = versions
                                    .iter()
                                    .map(|v| Outcome::Failed {
                                        error: e.clone(),
                                        bytes: v.size,
                                    })
                                    .collect();
                                return (i, failed);
                            }
                        };
                        // Oldest first, one at a time: the destination's order is the source's.
                        let mut outs = Vec::with_capacity(versions.len());
                        for v in &versions {
                            outs.push(copy_version(&ctx, v, &done).await);
                        }
                        (i, outs)
                    }
                })
                .buffer_unordered(job.concurrency as usize)
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        let mut reports = Vec::new();
        for (i, outs) in results {
            for (v, outcome) in chunk[i].1.iter().zip(outs) {
                let about = About {
                    key: &v.key,
                    version_id: Some(&v.version_id),
                    size: v.size,
                    etag: &v.etag,
                };
                account(&job.name, &mut progress, &mut reports, &about, outcome);
            }
        }
        progress.cursor = chunk.last().map(|(k, _)| k.clone());
        progress.active_ms += started.elapsed().as_millis() as u64;
        save_progress(&engine, &job.name, &progress, reports).await?;
        if let Some(p) = self.vpage.as_mut() {
            p.cursor = progress.cursor.clone();
        }
        self.status = json!({
            "job": job.name,
            "cursor": progress.cursor,
            "objects_copied": progress.objects_copied,
            "delete_markers_copied": progress.delete_markers_copied,
            "objects_failed": progress.objects_failed,
        });
        Ok(WorkState::Busy)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The object an outcome is about, for the report.
pub(crate) struct About<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub size: u64,
    pub etag: &'a str,
}

/// Counts one outcome and adds its report entry (failures and skips) to `reports`.
pub(crate) fn account(
    job: &str,
    progress: &mut Progress,
    reports: &mut Vec<(String, Vec<u8>)>,
    item: &About<'_>,
    outcome: Outcome,
) {
    let mut entry =
        |progress: &mut Progress, outcome: &str, reason: &str, error: Option<String>| {
            let e = Entry {
                seq: progress.report_entries,
                key: item.key.to_string(),
                version_id: item.version_id.map(str::to_string),
                outcome: outcome.into(),
                reason: reason.into(),
                error,
                size: item.size,
                source_etag: item.etag.to_string(),
                at_ms: strata_engine::now_ms(),
            };
            progress.report_entries += 1;
            reports.push((
                entry_key(job, e.seq),
                serde_json::to_vec(&e).unwrap_or_default(),
            ));
        };
    match outcome {
        Outcome::Copied {
            bytes,
            resumed,
            parts,
            parts_resumed,
        } => {
            progress.objects_copied += 1;
            progress.bytes_copied += bytes;
            progress.parts_copied += parts;
            progress.parts_resumed += parts_resumed;
            if resumed {
                progress.objects_resumed += 1;
            }
        }
        Outcome::Cancelled => {}
        Outcome::Marker { resumed } => {
            progress.delete_markers_copied += 1;
            if resumed {
                progress.objects_resumed += 1;
            }
        }
        Outcome::Skipped { reason, bytes } => {
            entry(progress, "skipped", reason.as_str(), None);
            progress.objects_skipped += 1;
            progress.bytes_skipped += bytes;
            match reason {
                Skip::Identical => progress.skipped_identical += 1,
                Skip::Exists => progress.skipped_exists += 1,
                Skip::Locked => progress.skipped_locked += 1,
                Skip::GoneAtSource => progress.skipped_excluded += 1,
            }
        }
        Outcome::Failed { error, bytes } => {
            tracing::warn!(job = %job, key = %truncate(item.key, 200), error = %truncate(&error, 300), "migration: object failed");
            entry(progress, "failed", "error", Some(error));
            progress.objects_failed += 1;
            progress.bytes_failed += bytes;
        }
    }
}

/// The source version ids that this job already copied into `key` (their origins).
async fn copied_versions(
    engine: &Engine,
    bucket: &str,
    job: &str,
    key: &str,
) -> Result<HashSet<String>, String> {
    let mut done = HashSet::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    // Bounded: MAX_KEY_VERSIONS versions of the key, 1000 a page (and other keys under it as a
    // prefix end the walk).
    for _ in 0..=MAX_KEY_VERSIONS / 1000 + 1 {
        let page = engine
            .list_versions(
                bucket,
                strata_metadata::ListVersionsParams {
                    prefix: key.to_string(),
                    delimiter: None,
                    key_marker: km.clone(),
                    version_id_marker: vm.clone(),
                    max_keys: 1000,
                },
            )
            .await
            .map_err(|e| format!("reading the destination's versions: {e}"))?;
        let mut other_key = false;
        for e in &page.entries {
            if e.key != key {
                other_key = true;
                break;
            }
            if let Some(o) = &e.version.origin
                && o.job == job
                && let Some(v) = &o.version_id
            {
                done.insert(v.clone());
            }
        }
        if other_key || !page.is_truncated {
            return Ok(done);
        }
        km = page.next_key_marker.clone();
        vm = page.next_version_id_marker.clone();
    }
    Ok(done)
}

/// Groups a version listing by key, keys in S3's order (UTF-8 bytes), each key's history
/// oldest first. Some sources (Strata among them) send a page's versions and its delete markers
/// as two lists rather than interleaved, so a key's entries are ordered here: the latest
/// first, then by Last-Modified, newest first; the sort is stable, so entries of the same
/// instant keep the order the source sent them in.
fn histories(entries: Vec<ListedVersion>) -> VecDeque<History> {
    let mut by_key: std::collections::BTreeMap<String, Vec<ListedVersion>> = Default::default();
    for e in entries {
        by_key.entry(e.key.clone()).or_default().push(e);
    }
    by_key
        .into_iter()
        .map(|(k, mut vs)| {
            vs.sort_by(|a, b| {
                b.latest
                    .cmp(&a.latest)
                    .then_with(|| b.last_modified.cmp(&a.last_modified))
            });
            vs.reverse();
            (k, vs)
        })
        .collect()
}

/// The job's progress and the report entries of the same step, in one commit.
pub(crate) async fn save_progress(
    engine: &Engine,
    name: &str,
    progress: &Progress,
    mut reports: Vec<(String, Vec<u8>)>,
) -> Result<(), String> {
    let raw = serde_json::to_vec(progress).map_err(|e| e.to_string())?;
    reports.push((progress_key(name), raw));
    engine
        .meta_call(move |m| m.put_worker_states(&reports))
        .await
        .map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl Worker for MigrationWorker {
    fn name(&self) -> &'static str {
        "migration"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let Some(job) = self.pick().await? else {
            self.pages.clear();
            self.vpage = None;
            self.source = None;
            return Ok(WorkState::Idle);
        };
        self.step(job).await
    }

    fn status(&self) -> Value {
        self.status.clone()
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_millis(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, id: &str, marker: bool, latest: bool, at: &str) -> ListedVersion {
        ListedVersion {
            key: key.into(),
            version_id: id.into(),
            delete_marker: marker,
            latest,
            size: 0,
            etag: String::new(),
            last_modified: at.into(),
        }
    }

    #[test]
    fn histories_are_oldest_first_whether_markers_interleave_or_not() {
        // Versions first, then the markers (as Strata sends them), keys in byte order.
        let sent = vec![
            v("b", "b1", false, true, "2026-01-01T00:00:05.000Z"),
            v("é", "e2", false, false, "2026-01-01T00:00:03.000Z"),
            v("é", "e1", false, false, "2026-01-01T00:00:01.000Z"),
            v("é", "m2", true, true, "2026-01-01T00:00:04.000Z"),
            v("é", "m1", true, false, "2026-01-01T00:00:02.000Z"),
        ];
        let got: Vec<(String, Vec<String>)> = histories(sent)
            .into_iter()
            .map(|(k, vs)| (k, vs.into_iter().map(|v| v.version_id).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), vec!["b1".to_string()]),
                (
                    "é".to_string(),
                    ["e1", "m1", "e2", "m2"].map(String::from).to_vec()
                ),
            ]
        );
        // Two entries of the same instant: the latest is last.
        let same = vec![
            v("k", "new", false, true, "2026-01-01T00:00:01.000Z"),
            v("k", "old", true, false, "2026-01-01T00:00:01.000Z"),
        ];
        let ids: Vec<String> = histories(same)[0]
            .1
            .iter()
            .map(|v| v.version_id.clone())
            .collect();
        assert_eq!(ids, ["old", "new"]);
    }
}
