//! The lifecycle worker: passes over every bucket that has a lifecycle configuration, version by
//! version in key order (newest version of a key first), then over its multipart uploads, and
//! performs what is due.
//!
//! Crash safety: the walk's position (bucket, cursor, what the walk knows of the key it is in)
//! and the actions decided for the page just read are persisted together in one worker-state
//! write *before* any action runs; after a crash the pending actions run again first. Every
//! action is conditional on the version it was decided for (`VersionExpect`: same id, ETag,
//! last-modified, still current / still noncurrent), so running one twice does nothing the
//! second time (`Stale`), and an object overwritten meanwhile is never expired. Deletions go
//! through `Engine::delete_object_with` (conditioned on the version decided for) (Object Lock, destruction path), transitions through the
//! metadata tier's `transition_version` (the archive worker then repacks the bytes).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_metadata::lifecycle::LifecycleConfig;
use strata_metadata::{
    BucketRecord, ListUploadsParams, MetaError, NULL_VERSION, VersionExpect, VersionRecord,
    VersionRef, VersioningState,
};

use super::due::{ActionKind, DayClock, VersionCtx, candidates, decide};
use super::rules::filter_matches;
use crate::objects::{DeleteReason, DeleteRequest};
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, now_ms};

/// Worker-state key of the walk.
pub const STATE_KEY: &str = "lifecycle";
/// Versions (or uploads) read per unit of work.
pub const PAGE: usize = 256;

/// What an action is about.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "on")]
pub enum Target {
    Version {
        expect: VersionExpect,
        kind: ActionKind,
    },
    Upload {
        upload_id: String,
    },
}

/// An action decided and not yet known to be done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    pub bucket: String,
    pub key: String,
    pub rule_id: String,
    pub due: i64,
    pub size: u64,
    pub target: Target,
}

/// Counters of one rule (of one bucket).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RuleStats {
    /// Versions (and uploads) the rule's filter covered.
    pub scanned: u64,
    pub expired: u64,
    pub noncurrent_expired: u64,
    pub delete_markers_removed: u64,
    pub transitioned: u64,
    pub uploads_aborted: u64,
    pub bytes_expired: u64,
    pub bytes_transitioned: u64,
    /// Due, but the version is under retention or legal hold (retried every pass).
    pub locked: u64,
    /// Decided, but the object had changed by then (nothing done, as intended).
    pub stale: u64,
    pub errors: u64,
    pub last_action: Option<i64>,
    pub last_error: Option<String>,
    /// Oldest due time of an action not done in this pass / the previous one (locked, failed).
    pub blocked_due: Option<i64>,
    pub prev_blocked_due: Option<i64>,
}

impl RuleStats {
    fn block(&mut self, due: i64) {
        self.blocked_due = Some(self.blocked_due.map_or(due, |d| d.min(due)));
    }
}

/// What the walk knows about the key it is in (versions arrive newest first).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Carry {
    key: Option<String>,
    /// Creation time of the previous (newer) version of the key.
    prev_modified: Option<i64>,
    noncurrent_seen: u32,
    /// A latest delete marker, held until the walk knows whether versions follow it.
    held_marker: Option<VersionRecord>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Phase {
    #[default]
    Versions,
    Uploads,
}

/// What survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// The bucket being walked (`None`: between buckets).
    bucket: Option<String>,
    /// The last bucket finished in this pass.
    done_up_to: Option<String>,
    phase: Phase,
    cursor: Option<Vec<u8>>,
    upload_key_marker: Option<String>,
    upload_id_marker: Option<String>,
    carry: Carry,
    pending: Vec<Action>,
    passes: u64,
    pass_started: Option<i64>,
    last_pass_end: Option<i64>,
    last_pass_ms: Option<i64>,
    versions_scanned: u64,
    /// Per "bucket/rule id".
    rules: BTreeMap<String, RuleStats>,
}

pub struct LifecycleWorker {
    engine: Engine,
    clock: DayClock,
    progress: Option<Progress>,
    wait: Duration,
}

/// Pause between two passes: a due action must happen within one (scaled) day.
pub fn pass_interval(clock: &DayClock) -> Duration {
    Duration::from_millis((clock.day_ms() / 4).clamp(100, 3_600_000) as u64)
}

fn stat_key(bucket: &str, rule: &str) -> String {
    format!("{bucket}/{rule}")
}

impl LifecycleWorker {
    pub fn new(engine: Engine, clock: DayClock) -> Self {
        LifecycleWorker {
            engine,
            clock,
            progress: None,
            wait: pass_interval(&clock),
        }
    }

    async fn load(&mut self) -> Result<(), EngineError> {
        if self.progress.is_none() {
            let raw = self
                .engine
                .meta_call(|m| m.get_worker_state(STATE_KEY))
                .await?;
            let p: Progress = raw
                .and_then(|r| serde_json::from_slice(&r).ok())
                .unwrap_or_default();
            self.progress = Some(p);
        }
        Ok(())
    }

    async fn save(&mut self) -> Result<(), EngineError> {
        let raw = serde_json::to_vec(self.progress.as_ref().expect("loaded"))
            .map_err(|e| EngineError::internal(e.to_string()))?;
        self.engine
            .meta_call(move |m| m.put_worker_state(STATE_KEY, &raw))
            .await
    }

    fn p(&mut self) -> &mut Progress {
        self.progress.as_mut().expect("loaded")
    }

    /// Runs every pending action (each conditional), then forgets them.
    async fn run_pending(&mut self) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.p().pending);
        for a in pending {
            self.run(a).await;
        }
        self.save().await
    }

    async fn run(&mut self, a: Action) {
        let now = now_ms();
        let result = self.perform(&a).await;
        let st = self
            .p()
            .rules
            .entry(stat_key(&a.bucket, &a.rule_id))
            .or_default();
        match result {
            Ok(()) => {
                st.last_action = Some(now);
                match &a.target {
                    Target::Upload { .. } => st.uploads_aborted += 1,
                    Target::Version { kind, .. } => match kind {
                        ActionKind::Expire => {
                            st.expired += 1;
                            st.bytes_expired += a.size;
                        }
                        ActionKind::ExpireNoncurrent => {
                            st.noncurrent_expired += 1;
                            st.bytes_expired += a.size;
                        }
                        ActionKind::RemoveDeleteMarker => st.delete_markers_removed += 1,
                        ActionKind::Transition { .. } | ActionKind::NoncurrentTransition { .. } => {
                            st.transitioned += 1;
                            st.bytes_transitioned += a.size;
                        }
                    },
                }
                tracing::info!(bucket = %a.bucket, key = %a.key, rule = %a.rule_id, action = ?a.target, "lifecycle action done");
            }
            Err(EngineError::Meta(
                MetaError::Stale
                | MetaError::NoSuchKey
                | MetaError::NoSuchVersion
                | MetaError::NoSuchUpload
                | MetaError::NoSuchBucket,
            )) => st.stale += 1,
            Err(EngineError::Meta(MetaError::ObjectLocked)) => {
                st.locked += 1;
                st.block(a.due);
            }
            Err(e) => {
                st.errors += 1;
                st.block(a.due);
                st.last_error = Some(e.to_string().chars().take(300).collect());
                tracing::warn!(bucket = %a.bucket, key = %a.key, rule = %a.rule_id, error = %e, "lifecycle action failed; retried next pass");
            }
        }
    }

    async fn perform(&self, a: &Action) -> Result<(), EngineError> {
        let name = a.bucket.clone();
        let bucket = self
            .engine
            .meta_call(move |m| m.get_bucket(&name))
            .await?
            .ok_or(EngineError::Meta(MetaError::NoSuchBucket))?;
        match &a.target {
            Target::Upload { upload_id } => {
                self.engine.abort_upload(&a.bucket, &a.key, upload_id).await
            }
            Target::Version { expect, kind } => match kind {
                ActionKind::Transition { storage_class }
                | ActionKind::NoncurrentTransition { storage_class } => {
                    let (b, k, x, c) = (
                        a.bucket.clone(),
                        a.key.clone(),
                        expect.clone(),
                        storage_class.clone(),
                    );
                    self.engine
                        .meta_call(move |m| m.transition_version(&b, &k, &x, &c, now_ms()))
                        .await
                        .map(|_| ())
                }
                ActionKind::Expire
                | ActionKind::ExpireNoncurrent
                | ActionKind::RemoveDeleteMarker => {
                    let version_id = match kind {
                        ActionKind::Expire if bucket.versioning != VersioningState::Unversioned => {
                            None
                        }
                        ActionKind::Expire => Some(NULL_VERSION.to_string()),
                        _ => Some(expect.version_id.clone()),
                    };
                    let req = DeleteRequest {
                        version_id,
                        bypass_governance: false,
                        actor: "lifecycle".into(),
                        reason: if crate::retention::is_retention_rule(&bucket, &a.rule_id) {
                            DeleteReason::RetentionEnd {
                                rule_id: a.rule_id.clone(),
                            }
                        } else {
                            DeleteReason::Lifecycle {
                                rule_id: a.rule_id.clone(),
                            }
                        },
                    };
                    self.engine
                        .delete_object_with(
                            &bucket,
                            &a.key,
                            req,
                            crate::objects::DeleteConditions {
                                expect: Some(expect.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                        .map(|_| ())
                }
            },
        }
    }

    /// Decides for one version of the walk.
    fn evaluate(
        &mut self,
        cfg: &LifecycleConfig,
        bucket: &BucketRecord,
        ctx: VersionCtx<'_>,
        now: i64,
    ) {
        let clock = self.clock;
        let p = self.p();
        for r in cfg.rules.iter().filter(|r| r.enabled) {
            if filter_matches(&r.filter, ctx.key, ctx.version).is_ok() {
                p.rules
                    .entry(stat_key(&bucket.name, &r.id))
                    .or_default()
                    .scanned += 1;
            }
        }
        let cands = candidates(cfg, &clock, &ctx);
        let Some(c) = decide(&cands, now) else {
            return;
        };
        let v = ctx.version;
        // A removal of data that Object Lock protects is not attempted (and not counted as an
        // error): it is retried every pass until the lock ends. A delete marker in a versioned
        // bucket removes nothing, so S3 places it even on a locked version.
        let removes_data = match c.kind {
            ActionKind::ExpireNoncurrent => true,
            ActionKind::Expire => bucket.versioning == VersioningState::Unversioned,
            _ => false,
        };
        if removes_data && v.is_locked(now, false) {
            let st = p
                .rules
                .entry(stat_key(&bucket.name, &c.rule_id))
                .or_default();
            st.locked += 1;
            st.block(c.due);
            return;
        }
        let latest = match c.kind {
            ActionKind::ExpireNoncurrent | ActionKind::NoncurrentTransition { .. } => Some(false),
            _ => Some(true),
        };
        p.pending.push(Action {
            bucket: bucket.name.clone(),
            key: ctx.key.to_string(),
            rule_id: c.rule_id,
            due: c.due,
            size: v.size,
            target: Target::Version {
                expect: VersionExpect::of(v, latest),
                kind: c.kind,
            },
        });
    }

    /// A held latest delete marker: lone when no version of its key follows.
    fn flush_marker(&mut self, cfg: &LifecycleConfig, bucket: &BucketRecord, lone: bool, now: i64) {
        let Some(dm) = self.p().carry.held_marker.take() else {
            return;
        };
        let key = self.p().carry.key.clone().unwrap_or_default();
        if lone {
            let ctx = VersionCtx {
                key: &key,
                version: &dm,
                is_latest: true,
                noncurrent_since: None,
                newer_noncurrent: 0,
                lone_delete_marker: true,
            };
            self.evaluate(cfg, bucket, ctx, now);
        }
    }

    fn walk_page(
        &mut self,
        cfg: &LifecycleConfig,
        bucket: &BucketRecord,
        page: Vec<VersionRef>,
        now: i64,
    ) {
        for vr in page {
            self.p().versions_scanned += 1;
            let same_key = self.p().carry.key.as_deref() == Some(vr.key.as_str());
            if !same_key {
                self.flush_marker(cfg, bucket, true, now);
                self.p().carry = Carry {
                    key: Some(vr.key.clone()),
                    ..Default::default()
                };
            } else {
                self.flush_marker(cfg, bucket, false, now);
            }
            let is_latest = !same_key;
            let v = vr.version;
            if is_latest && v.is_delete_marker {
                let c = &mut self.p().carry;
                c.prev_modified = Some(v.last_modified);
                c.held_marker = Some(v);
                continue;
            }
            let (prev, seen) = {
                let c = &self.p().carry;
                (c.prev_modified, c.noncurrent_seen)
            };
            let ctx = VersionCtx {
                key: &vr.key,
                version: &v,
                is_latest,
                noncurrent_since: if is_latest { None } else { prev },
                newer_noncurrent: seen,
                lone_delete_marker: false,
            };
            self.evaluate(cfg, bucket, ctx, now);
            let c = &mut self.p().carry;
            if !is_latest {
                c.noncurrent_seen += 1;
            }
            c.prev_modified = Some(v.last_modified);
        }
    }

    /// The next bucket with a lifecycle configuration after `after`.
    async fn next_bucket(
        &self,
        after: Option<String>,
    ) -> Result<Option<BucketRecord>, EngineError> {
        let all = self.engine.meta_call(|m| m.list_buckets()).await?;
        Ok(all.into_iter().find(|b| {
            b.lifecycle.as_ref().is_some_and(|c| !c.rules.is_empty())
                && after.as_ref().is_none_or(|a| &b.name > a)
        }))
    }

    async fn step(&mut self) -> Result<WorkState, EngineError> {
        self.load().await?;
        if !self.p().pending.is_empty() {
            self.run_pending().await?;
            return Ok(WorkState::Busy);
        }
        let now = now_ms();
        if self.p().pass_started.is_none() {
            let p = self.p();
            p.pass_started = Some(now);
            for st in p.rules.values_mut() {
                st.prev_blocked_due = st.blocked_due.take();
            }
        }
        let current = match self.p().bucket.clone() {
            Some(name) => {
                let n = name.clone();
                match self.engine.meta_call(move |m| m.get_bucket(&n)).await? {
                    Some(b) if b.lifecycle.is_some() => Some(b),
                    // Gone or configuration removed: on to the next one.
                    _ => {
                        self.finish_bucket(name);
                        return Ok(WorkState::Busy);
                    }
                }
            }
            None => {
                let after = self.p().done_up_to.clone();
                match self.next_bucket(after).await? {
                    Some(b) => {
                        let p = self.p();
                        p.bucket = Some(b.name.clone());
                        p.phase = Phase::Versions;
                        p.cursor = None;
                        p.carry = Carry::default();
                        Some(b)
                    }
                    None => None,
                }
            }
        };
        let Some(bucket) = current else {
            // The pass is complete.
            let p = self.p();
            p.passes += 1;
            p.last_pass_end = Some(now);
            p.last_pass_ms = p.pass_started.map(|s| now - s);
            p.pass_started = None;
            p.done_up_to = None;
            self.save().await?;
            self.wait = pass_interval(&self.clock);
            return Ok(WorkState::Idle);
        };
        let cfg = bucket.lifecycle.clone().unwrap_or_default();
        match self.p().phase {
            Phase::Versions => {
                let (name, after) = (bucket.name.clone(), self.p().cursor.clone());
                let (page, next) = self
                    .engine
                    .meta_call(move |m| m.scan_bucket_versions(&name, after.as_deref(), PAGE))
                    .await?;
                self.walk_page(&cfg, &bucket, page, now);
                if next.is_none() {
                    self.flush_marker(&cfg, &bucket, true, now);
                    let p = self.p();
                    p.carry = Carry::default();
                    p.phase = Phase::Uploads;
                    p.upload_key_marker = None;
                    p.upload_id_marker = None;
                }
                self.p().cursor = next;
            }
            Phase::Uploads => {
                let abort_rules: Vec<_> = cfg
                    .rules
                    .iter()
                    .filter(|r| r.enabled && r.abort_multipart_days.is_some())
                    .cloned()
                    .collect();
                if abort_rules.is_empty() {
                    self.finish_bucket(bucket.name.clone());
                    self.save().await?;
                    return Ok(WorkState::Busy);
                }
                let params = ListUploadsParams {
                    key_marker: self.p().upload_key_marker.clone(),
                    upload_id_marker: self.p().upload_id_marker.clone(),
                    max_uploads: PAGE,
                    ..Default::default()
                };
                let page = self.engine.list_uploads(&bucket.name, params).await?;
                for u in &page.uploads {
                    let mut best: Option<(i64, String)> = None;
                    for r in &abort_rules {
                        if !u.key.starts_with(&r.filter.prefix) {
                            continue;
                        }
                        let st = self
                            .p()
                            .rules
                            .entry(stat_key(&bucket.name, &r.id))
                            .or_default();
                        st.scanned += 1;
                        let due = self
                            .clock
                            .after_days(u.initiated, r.abort_multipart_days.unwrap_or(0));
                        if best.as_ref().is_none_or(|(d, _)| due < *d) {
                            best = Some((due, r.id.clone()));
                        }
                    }
                    if let Some((due, rule_id)) = best
                        && due <= now
                    {
                        self.p().pending.push(Action {
                            bucket: bucket.name.clone(),
                            key: u.key.clone(),
                            rule_id,
                            due,
                            size: 0,
                            target: Target::Upload {
                                upload_id: u.upload_id.clone(),
                            },
                        });
                    }
                }
                if page.is_truncated {
                    self.p().upload_key_marker = page.next_key_marker;
                    self.p().upload_id_marker = page.next_upload_id_marker;
                } else {
                    self.finish_bucket(bucket.name.clone());
                }
            }
        }
        // Position and decisions together, before anything is done.
        self.save().await?;
        if !self.p().pending.is_empty() {
            self.run_pending().await?;
        }
        Ok(WorkState::Busy)
    }

    fn finish_bucket(&mut self, name: String) {
        let p = self.p();
        p.done_up_to = Some(name);
        p.bucket = None;
        p.phase = Phase::Versions;
        p.cursor = None;
        p.carry = Carry::default();
    }
}

#[async_trait::async_trait]
impl Worker for LifecycleWorker {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        self.step().await.map_err(|e| {
            // Re-read the persisted state next time: the in-memory one may be ahead of it.
            self.progress = None;
            self.wait = Duration::from_secs(1);
            e.to_string()
        })
    }

    fn status(&self) -> Value {
        match &self.progress {
            Some(p) => status_json(p, now_ms(), None),
            None => json!({"state": "loading"}),
        }
    }

    fn idle_interval(&self) -> Duration {
        self.wait
    }
}

fn status_json(p: &Progress, now: i64, only_bucket: Option<&str>) -> Value {
    let mut rules = serde_json::Map::new();
    for (k, st) in &p.rules {
        if let Some(b) = only_bucket
            && !k.starts_with(&format!("{b}/"))
        {
            continue;
        }
        let pending_due = p
            .pending
            .iter()
            .filter(|a| stat_key(&a.bucket, &a.rule_id) == *k)
            .map(|a| a.due)
            .min();
        let oldest = [st.blocked_due, st.prev_blocked_due, pending_due]
            .into_iter()
            .flatten()
            .min();
        let mut v = serde_json::to_value(st).unwrap_or_default();
        v["lag_ms"] = json!(oldest.map(|d| (now - d).max(0)).unwrap_or(0));
        rules.insert(k.clone(), v);
    }
    json!({
        "passes": p.passes,
        "pass_running": p.pass_started.is_some(),
        "bucket": p.bucket,
        "phase": p.phase,
        "pending_actions": p.pending.len(),
        "versions_scanned": p.versions_scanned,
        "last_pass_end": p.last_pass_end,
        "last_pass_ms": p.last_pass_ms,
        "rules": rules,
    })
}

/// `strata admin lifecycle status BUCKET`: the persisted progress and the bucket's per-rule
/// counters (`None`: every bucket).
pub async fn status(engine: &Engine, bucket: Option<&str>) -> Result<Value, EngineError> {
    let raw = engine.meta_call(|m| m.get_worker_state(STATE_KEY)).await?;
    let p: Progress = raw
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or_default();
    Ok(status_json(&p, now_ms(), bucket))
}

/// The lifecycle counters as Prometheus text. `per_rule`: one series per bucket and rule
/// (the labels name buckets and rules: for an authenticated scrape only); otherwise sums over
/// all rules (lag: the largest), safe for the unauthenticated `/_strata/metrics`.
pub async fn prometheus(engine: &Engine, per_rule: bool) -> Result<String, EngineError> {
    let mut v = status(engine, None).await?;
    if !per_rule {
        let mut total = serde_json::Map::new();
        for st in v["rules"].as_object().cloned().unwrap_or_default().values() {
            for (k, x) in st.as_object().into_iter().flatten() {
                if let Some(n) = x.as_u64() {
                    let cur = total.get(k).and_then(Value::as_u64).unwrap_or(0);
                    let new = if k == "lag_ms" { cur.max(n) } else { cur + n };
                    total.insert(k.clone(), json!(new));
                }
            }
        }
        v["rules"] = json!({ "": total });
    }
    let mut s = String::new();
    s.push_str("# HELP strata_lifecycle_actions_total Lifecycle actions done, by bucket, rule and kind.\n# TYPE strata_lifecycle_actions_total counter\n");
    let rules = v["rules"].as_object().cloned().unwrap_or_default();
    let label = |k: &str| {
        let (b, r) = k.split_once('/').unwrap_or((k, ""));
        let esc = |x: &str| {
            x.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        format!("bucket=\"{}\",rule=\"{}\"", esc(b), esc(r))
    };
    // `{labels}` of a series: the rule's, plus `extra`.
    let labels = |k: &str, extra: &str| {
        let l: Vec<String> = [
            (!k.is_empty()).then(|| label(k)),
            (!extra.is_empty()).then(|| extra.to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if l.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", l.join(","))
        }
    };
    for (k, st) in &rules {
        for kind in [
            "expired",
            "noncurrent_expired",
            "delete_markers_removed",
            "transitioned",
            "uploads_aborted",
        ] {
            s.push_str(&format!(
                "strata_lifecycle_actions_total{} {}\n",
                labels(k, &format!("kind=\"{kind}\"")),
                st[kind].as_u64().unwrap_or(0)
            ));
        }
    }
    for (metric, field, help, kind) in [
        (
            "strata_lifecycle_scanned_total",
            "scanned",
            "Versions and uploads a rule's filter covered.",
            "counter",
        ),
        (
            "strata_lifecycle_bytes_transitioned_total",
            "bytes_transitioned",
            "Bytes moved to another storage class.",
            "counter",
        ),
        (
            "strata_lifecycle_bytes_expired_total",
            "bytes_expired",
            "Bytes of expired versions.",
            "counter",
        ),
        (
            "strata_lifecycle_errors_total",
            "errors",
            "Lifecycle actions that failed (retried).",
            "counter",
        ),
        (
            "strata_lifecycle_locked_total",
            "locked",
            "Due actions held back by Object Lock.",
            "counter",
        ),
        (
            "strata_lifecycle_lag_seconds",
            "lag_ms",
            "Age of the oldest due action not yet done.",
            "gauge",
        ),
    ] {
        s.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
        for (k, st) in &rules {
            let n = st[field].as_u64().unwrap_or(0);
            if field == "lag_ms" {
                s.push_str(&format!(
                    "{metric}{} {:.3}\n",
                    labels(k, ""),
                    n as f64 / 1000.0
                ));
            } else {
                s.push_str(&format!("{metric}{} {n}\n", labels(k, "")));
            }
        }
    }
    s.push_str(&format!(
        "# HELP strata_lifecycle_passes_total Completed lifecycle passes.\n# TYPE strata_lifecycle_passes_total counter\nstrata_lifecycle_passes_total {}\n",
        v["passes"].as_u64().unwrap_or(0)
    ));
    if let Some(t) = v["last_pass_end"].as_i64() {
        s.push_str(&format!(
            "# HELP strata_lifecycle_last_pass_timestamp_seconds End of the last complete pass.\n# TYPE strata_lifecycle_last_pass_timestamp_seconds gauge\nstrata_lifecycle_last_pass_timestamp_seconds {:.3}\n",
            t as f64 / 1000.0
        ));
    }
    Ok(s)
}
