//! The `migration` worker: drives every started job, one step per unit of work. A step lists a
//! page of the source after the job's cursor (kept in memory between steps), copies the next
//! `4 × concurrency` keys of it `concurrency` at a time, then commits the new cursor, the
//! counters and the step's report entries in one metadata commit. A crash (kill -9 included)
//! redoes at most the step that was running; its already-copied objects are recognised by the
//! origin recorded on them and are not copied again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::workers::{WorkState, Worker};

use crate::copy::{Limiter, Outcome, Skip, copy_one};
use crate::job::{
    self, JOB_LOCK, JobRecord, JobState, Progress, load_job, load_progress, progress_key, save_job,
};
use crate::report::{Entry, entry_key};
use crate::source::{Listed, Source};

/// Keys per ListObjectsV2 request.
const LIST_PAGE: usize = 1000;
/// Source listing failures in a row before a job stops in ERROR.
const MAX_LIST_ERRORS: u32 = 10;

struct PageState {
    job: String,
    /// The cursor the front of `items` follows.
    cursor: Option<String>,
    items: VecDeque<Listed>,
    truncated: bool,
}

pub struct MigrationWorker {
    engine: Engine,
    page: Option<PageState>,
    source: Option<(String, Source)>,
    status: Value,
}

impl MigrationWorker {
    pub fn new(engine: Engine) -> Self {
        MigrationWorker {
            engine,
            page: None,
            source: None,
            status: json!({"job": null}),
        }
    }

    fn source(&mut self, job: &JobRecord) -> Result<&Source, String> {
        if self.source.as_ref().is_none_or(|(n, _)| *n != job.name) {
            let secret = job::open_secret(&self.engine, job)?;
            let s = Source::new(
                &job.source_endpoint,
                &job.source_region,
                &job.source_access_key,
                secret,
            )?;
            self.source = Some((job.name.clone(), s));
        }
        Ok(&self.source.as_ref().expect("just set").1)
    }

    /// Moves a job to a final state (unless an operator changed it meanwhile).
    async fn finish(
        &self,
        name: &str,
        state: JobState,
        error: Option<String>,
        mut progress: Progress,
    ) -> Result<(), String> {
        let _g = JOB_LOCK.lock().await;
        let Some(mut job) = load_job(&self.engine, name)
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
        save_progress(&self.engine, name, &progress, Vec::new()).await?;
        save_job(&self.engine, &job)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(target: "strata::audit", job = %name, state = %job::state_name(state), "migration job ended");
        Ok(())
    }

    /// The next job to run: the first (by name) that is INITIALIZED or STARTED.
    async fn pick(&self) -> Result<Option<JobRecord>, String> {
        let jobs = job::list_jobs(&self.engine)
            .await
            .map_err(|e| e.to_string())?;
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
        let Some(mut j) = load_job(&self.engine, &found.name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if j.state != JobState::Initialized {
            return Ok(None);
        }
        j.state = JobState::Started;
        save_job(&self.engine, &j)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(target: "strata::audit", job = %j.name, source = %j.source_endpoint, source_bucket = %j.source_bucket, bucket = %j.bucket, "migration job started");
        Ok(Some(j))
    }

    async fn step(&mut self, job: JobRecord) -> Result<WorkState, String> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let mut progress = load_progress(&engine, &job.name)
            .await
            .map_err(|e| e.to_string())?;
        if progress.started_ms.is_none() {
            progress.started_ms = Some(strata_engine::now_ms());
        }
        if self
            .page
            .as_ref()
            .is_some_and(|p| p.job != job.name || p.cursor != progress.cursor)
        {
            self.page = None;
        }
        // A secret that no longer opens (or a bad endpoint) cannot get better by retrying.
        let source = match self.source(&job).cloned() {
            Ok(s) => s,
            Err(e) => {
                self.finish(&job.name, JobState::Error, Some(e), progress)
                    .await?;
                return Ok(WorkState::Busy);
            }
        };
        if self
            .page
            .as_ref()
            .is_none_or(|p| p.items.is_empty() && p.truncated)
        {
            let page = match source
                .list(
                    &job.source_bucket,
                    &job.prefix,
                    progress.cursor.as_deref(),
                    LIST_PAGE,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    progress.consecutive_errors += 1;
                    progress.last_error = Some(e.to_string());
                    if e.permanent() || progress.consecutive_errors >= MAX_LIST_ERRORS {
                        self.finish(&job.name, JobState::Error, Some(e.to_string()), progress)
                            .await?;
                        return Ok(WorkState::Busy);
                    }
                    save_progress(&engine, &job.name, &progress, Vec::new()).await?;
                    return Err(format!("job {}: listing the source: {e}", job.name));
                }
            };
            progress.consecutive_errors = 0;
            self.page = Some(PageState {
                job: job.name.clone(),
                cursor: progress.cursor.clone(),
                items: page.objects.into(),
                truncated: page.truncated,
            });
        }
        let page = self.page.as_mut().expect("listed above");
        if page.items.is_empty() {
            // The last page is done: so is the job.
            progress.listing_done = true;
            self.page = None;
            self.finish(&job.name, JobState::Done, None, progress)
                .await?;
            return Ok(WorkState::Busy);
        }
        for item in &page.items {
            if progress
                .listed_through
                .as_deref()
                .is_none_or(|t| item.key.as_str() > t)
            {
                progress.objects_listed += 1;
                progress.bytes_listed += item.size;
                progress.listed_through = Some(item.key.clone());
            }
        }
        let take = page.items.len().min(job.concurrency as usize * 4);
        let chunk: Vec<Listed> = page.items.drain(..take).collect();
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
        let outcomes: Vec<(usize, Outcome)> =
            futures::stream::iter(chunk.clone().into_iter().enumerate())
                .map(|(i, item)| {
                    let (shared, source, limiter) =
                        (shared.clone(), source.clone(), limiter.clone());
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
        let now = strata_engine::now_ms();
        for (i, outcome) in outcomes {
            let item = &chunk[i];
            let mut entry = |outcome: &str, reason: &str, error: Option<String>| {
                let e = Entry {
                    seq: progress.report_entries,
                    key: item.key.clone(),
                    outcome: outcome.into(),
                    reason: reason.into(),
                    error,
                    size: item.size,
                    source_etag: item.etag.clone(),
                    at_ms: now,
                };
                progress.report_entries += 1;
                reports.push((
                    entry_key(&job.name, e.seq),
                    serde_json::to_vec(&e).unwrap_or_default(),
                ));
            };
            match outcome {
                Outcome::Copied { bytes, resumed } => {
                    progress.objects_copied += 1;
                    progress.bytes_copied += bytes;
                    if resumed {
                        progress.objects_resumed += 1;
                    }
                }
                Outcome::Skipped { reason, bytes } => {
                    entry("skipped", reason.as_str(), None);
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
                    tracing::warn!(job = %job.name, key = %truncate(&item.key, 200), error = %truncate(&error, 300), "migration: object failed");
                    entry("failed", "error", Some(error));
                    progress.objects_failed += 1;
                    progress.bytes_failed += bytes;
                }
            }
        }
        progress.cursor = chunk.last().map(|l| l.key.clone());
        progress.active_ms += started.elapsed().as_millis() as u64;
        save_progress(&engine, &job.name, &progress, reports).await?;
        if let Some(p) = self.page.as_mut() {
            p.cursor = progress.cursor.clone();
        }
        self.status = json!({
            "job": job.name,
            "cursor": progress.cursor,
            "objects_copied": progress.objects_copied,
            "objects_failed": progress.objects_failed,
            "objects_skipped": progress.objects_skipped,
        });
        Ok(WorkState::Busy)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The job's progress and the report entries of the same step, in one commit.
async fn save_progress(
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
            self.page = None;
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
