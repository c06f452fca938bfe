//! Usage metering (docs/usage.md): per bucket, and per user as the owner of buckets, the bytes
//! stored by storage class, objects and versions (kept exact by the metadata tier's usage
//! deltas), requests by billing class and bytes in and out (counted here, per process).
//!
//! Every process counts its requests in a bounded in-memory meter and flushes it as deltas
//! every `FLUSH` (the `usage-flush` worker; at most that much is lost with a `kill -9`, a clean
//! shutdown flushes first). The `usage-fold` worker (leader only) folds all deltas into totals
//! and per-minute / per-hour samples every `FOLD`, and prunes old samples.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use strata_metadata::usage::{FoldReport, RequestCounts, UsageDelta, UsageTotals};

use crate::workers::{WorkState, Worker};
use crate::{Engine, Result, now_ms};

/// Buckets one process counts between flushes; requests to more are dropped (and counted).
const METER_BUCKETS: usize = 10_000;
const FLUSH: Duration = Duration::from_secs(10);
const FOLD: Duration = Duration::from_secs(15);
const FOLD_BATCH: usize = 2_000;
/// Fold passes per unit (each at most `FOLD_BATCH` deltas).
const FOLD_PASSES: usize = 20;
/// Hourly samples are kept this long (13 months: a year's bills and the month before).
const HOURLY_KEEP_MS: i64 = 400 * 24 * 3600 * 1000;
const PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// Most buckets a usage report or a metrics scrape reads.
pub const REPORT_BUCKETS: usize = 100_000;

/// The billing class of a request (as S3 prices them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    /// PUT, COPY, POST, LIST.
    WriteList,
    /// GET, HEAD and the rest.
    Read,
    /// DELETE and aborts.
    Delete,
}

/// Request counts of this process not yet flushed.
#[derive(Default)]
pub struct UsageMeter {
    pending: Mutex<HashMap<String, RequestCounts>>,
    dropped: AtomicU64,
}

impl UsageMeter {
    fn take(&self) -> HashMap<String, RequestCounts> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts counts back after a failed flush (merging with what came in meanwhile).
    fn restore(&self, counts: HashMap<String, RequestCounts>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (bucket, c) in counts {
            p.entry(bucket).or_default().add(&c);
        }
    }
}

impl Engine {
    /// Counts one request to `bucket` (the gateway calls this for every request it answers
    /// for a bucket, once the caller is known).
    pub fn record_request(&self, bucket: &str, class: RequestClass, bytes_in: u64, bytes_out: u64) {
        let m = self.usage_meter();
        let mut p = m.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !p.contains_key(bucket) {
            if p.len() >= METER_BUCKETS {
                m.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            p.insert(bucket.to_string(), RequestCounts::default());
        }
        let Some(c) = p.get_mut(bucket) else { return };
        match class {
            RequestClass::WriteList => c.write_list += 1,
            RequestClass::Read => c.read += 1,
            RequestClass::Delete => c.delete += 1,
        }
        c.bytes_in += bytes_in;
        c.bytes_out += bytes_out;
    }

    /// Writes this process's pending request counts as deltas.
    pub async fn flush_usage(&self) -> Result<usize> {
        let counts = self.usage_meter().take();
        if counts.is_empty() {
            return Ok(0);
        }
        let deltas: Vec<UsageDelta> = counts
            .iter()
            .map(|(bucket, c)| UsageDelta {
                bucket: bucket.clone(),
                requests: c.clone(),
                ..Default::default()
            })
            .collect();
        let n = deltas.len();
        match self.meta_call(move |m| m.record_usage(&deltas)).await {
            Ok(()) => Ok(n),
            Err(e) => {
                self.usage_meter().restore(counts);
                Err(e)
            }
        }
    }

    /// Folds waiting deltas into totals (up to `passes` passes). Safe from any process.
    pub async fn fold_usage(&self, passes: usize) -> Result<FoldReport> {
        let mut total = FoldReport::default();
        for _ in 0..passes {
            let r = self
                .meta_call(|m| m.fold_usage(FOLD_BATCH, now_ms()))
                .await?;
            total.deltas += r.deltas;
            total.buckets += r.buckets;
            total.more = r.more;
            if !r.more {
                break;
            }
        }
        Ok(total)
    }

    /// Usage per bucket, filtered by owner (user id) and bucket, with the samples since
    /// `since_ms` when given. This process's own pending counts are flushed and every waiting
    /// delta folded first, so the report includes the requests just answered here (other
    /// gateways' counts arrive within their flush interval).
    pub async fn usage_report(
        &self,
        owner: Option<String>,
        bucket: Option<String>,
        since_ms: Option<i64>,
    ) -> Result<UsageReport> {
        self.flush_usage().await?;
        self.fold_usage(FOLD_PASSES).await?;
        let now = now_ms();
        self.meta_call(move |m| {
            let mut buckets = Vec::new();
            for t in m.usage_totals(REPORT_BUCKETS)? {
                if owner.as_ref().is_some_and(|o| *o != t.owner)
                    || bucket.as_ref().is_some_and(|b| *b != t.bucket)
                {
                    continue;
                }
                let samples = match since_ms {
                    Some(s) => m.usage_samples(&t.bucket, s, now, 10_000)?,
                    None => Vec::new(),
                };
                buckets.push(BucketUsage { totals: t, samples });
            }
            Ok(UsageReport {
                at_ms: now,
                buckets,
            })
        })
        .await
    }

    fn usage_meter(&self) -> &UsageMeter {
        &self.inner.usage
    }
}

/// `strata admin usage`: one entry per bucket.
#[derive(Clone, Debug, Serialize)]
pub struct UsageReport {
    pub at_ms: i64,
    pub buckets: Vec<BucketUsage>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BucketUsage {
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// Oldest first; the difference of two samples' request counters is the usage between.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<UsageTotals>,
}

/// Per-process: flushes the meter.
pub struct UsageFlusher {
    engine: Engine,
    flushed: u64,
}

impl UsageFlusher {
    pub fn new(engine: Engine) -> Self {
        UsageFlusher { engine, flushed: 0 }
    }
}

#[async_trait::async_trait]
impl Worker for UsageFlusher {
    fn name(&self) -> &'static str {
        "usage-flush"
    }

    async fn work(&mut self) -> std::result::Result<WorkState, String> {
        let n = self
            .engine
            .flush_usage()
            .await
            .map_err(|e| format!("usage flush failed: {e}"))?;
        self.flushed += n as u64;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        json!({
            "bucket_deltas_flushed": self.flushed,
            "requests_dropped": self.engine.usage_meter().dropped.load(Ordering::Relaxed),
        })
    }

    fn idle_interval(&self) -> Duration {
        FLUSH
    }
}

/// Leader only: folds deltas and prunes samples.
pub struct UsageFolder {
    engine: Engine,
    folded: u64,
    pruned: u64,
    last_prune_ms: i64,
    backlog: bool,
}

impl UsageFolder {
    pub fn new(engine: Engine) -> Self {
        UsageFolder {
            engine,
            folded: 0,
            pruned: 0,
            last_prune_ms: 0,
            backlog: false,
        }
    }
}

#[async_trait::async_trait]
impl Worker for UsageFolder {
    fn name(&self) -> &'static str {
        "usage-fold"
    }

    async fn work(&mut self) -> std::result::Result<WorkState, String> {
        let r = self
            .engine
            .fold_usage(FOLD_PASSES)
            .await
            .map_err(|e| format!("usage fold failed: {e}"))?;
        self.folded += r.deltas as u64;
        self.backlog = r.more;
        let now = now_ms();
        if now - self.last_prune_ms >= PRUNE_EVERY_MS {
            let n = self
                .engine
                .meta_call(move |m| m.prune_usage_samples(now, HOURLY_KEEP_MS, 10_000))
                .await
                .map_err(|e| format!("usage prune failed: {e}"))?;
            self.pruned += n as u64;
            self.last_prune_ms = now;
        }
        Ok(if r.more {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }

    fn status(&self) -> Value {
        json!({
            "deltas_folded": self.folded,
            "samples_pruned": self.pruned,
            "backlog": self.backlog,
        })
    }

    fn idle_interval(&self) -> Duration {
        FOLD
    }
}

/// One series' samples of a bucket: (extra labels, value).
type SeriesValues = fn(&UsageTotals) -> Vec<(String, i64)>;

/// Per-bucket usage series for `/_strata/metrics` (folded totals: at most `FOLD` behind).
/// `named`: whether the scrape may name buckets (not when metrics are open to anyone).
pub async fn prometheus(engine: &Engine, named: bool) -> String {
    let Ok(totals) = engine.meta_call(|m| m.usage_totals(REPORT_BUCKETS)).await else {
        return String::new();
    };
    let mut s = String::new();
    let series: [(&str, &str, &str, SeriesValues); 7] = [
        (
            "strata_bucket_objects",
            "gauge",
            "Current (live) objects.",
            |t| vec![(String::new(), t.objects)],
        ),
        (
            "strata_bucket_versions",
            "gauge",
            "Versions (not delete markers), current and noncurrent.",
            |t| vec![(String::new(), t.versions)],
        ),
        (
            "strata_bucket_delete_markers",
            "gauge",
            "Delete markers.",
            |t| vec![(String::new(), t.delete_markers)],
        ),
        (
            "strata_bucket_bytes",
            "gauge",
            "Logical bytes stored, by storage class.",
            |t| {
                t.bytes
                    .iter()
                    .map(|(c, b)| (format!(",storage_class=\"{c}\""), *b))
                    .collect()
            },
        ),
        (
            "strata_bucket_requests_total",
            "counter",
            "Requests by billing class.",
            |t| {
                vec![
                    (",class=\"write_list\"".into(), t.requests.write_list as i64),
                    (",class=\"read\"".into(), t.requests.read as i64),
                    (",class=\"delete\"".into(), t.requests.delete as i64),
                ]
            },
        ),
        (
            "strata_bucket_received_bytes_total",
            "counter",
            "Request payload bytes received.",
            |t| vec![(String::new(), t.requests.bytes_in as i64)],
        ),
        (
            "strata_bucket_sent_bytes_total",
            "counter",
            "Response payload bytes sent.",
            |t| vec![(String::new(), t.requests.bytes_out as i64)],
        ),
    ];
    for (name, kind, help, values) in series {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        if named {
            for t in &totals {
                for (labels, v) in values(t) {
                    s.push_str(&format!(
                        "{name}{{bucket=\"{}\",owner=\"{}\"{labels}}} {v}\n",
                        t.bucket, t.owner
                    ));
                }
            }
        } else {
            let mut sums: std::collections::BTreeMap<String, i64> = Default::default();
            for t in &totals {
                for (labels, v) in values(t) {
                    *sums.entry(labels).or_default() += v;
                }
            }
            for (labels, v) in sums {
                match labels.trim_start_matches(',') {
                    "" => s.push_str(&format!("{name} {v}\n")),
                    l => s.push_str(&format!("{name}{{{l}}} {v}\n")),
                }
            }
        }
    }
    s
}
