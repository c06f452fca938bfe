//! Request metrics in the Prometheus text format, served at `/_strata/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OTHER"];
const CLASSES: [&str; 3] = ["2xx_3xx", "4xx", "5xx"];
/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Requests and connections the HTTP edge refused or cut off, by reason.
#[derive(Clone, Copy, Debug)]
pub enum EdgeEvent {
    SigV2Refused,
    UnsignedHeaders,
    FormPostRefused,
    BodyTooLarge,
    BodyStalled,
    AuthSlowDown,
    ConnectionRefused,
    HeaderTimeout,
    IdleClosed,
    StalledReaderClosed,
}

const EDGE_REASONS: [&str; 10] = [
    "sigv2",
    "unsigned_headers",
    "form_post",
    "body_too_large",
    "body_stalled",
    "auth_slowdown",
    "connection_limit",
    "header_timeout",
    "idle",
    "stalled_reader",
];

#[derive(Default)]
pub struct Metrics {
    edge: [AtomicU64; 10],
    requests: [[AtomicU64; 3]; 6],
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_micros_sum: AtomicU64,
    /// The engine whose background jobs (lifecycle) report here too.
    pub engine: std::sync::OnceLock<strata_engine::Engine>,
}

fn method_index(m: &str) -> usize {
    METHODS.iter().position(|x| *x == m).unwrap_or(5)
}

impl Metrics {
    pub fn edge(&self, e: EdgeEvent) {
        self.edge[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, method: &str, status: u16, elapsed: Duration) {
        let class = match status {
            500.. => 2,
            400..=499 => 1,
            _ => 0,
        };
        self.requests[method_index(method)][class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros_sum
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The engine's job metrics (lifecycle, summed over rules: this endpoint is not
    /// authenticated, so it names no bucket), in the same text format.
    pub async fn render_engine(&self) -> String {
        match self.engine.get() {
            Some(e) => {
                let mut s = strata_engine::lifecycle::worker::prometheus(e, false)
                    .await
                    .unwrap_or_default();
                s.push_str(&rebuild_metrics(e));
                s
            }
            None => String::new(),
        }
    }

    /// Per-bucket usage series (`named`: with bucket and owner labels, else summed).
    pub async fn render_usage(&self, named: bool) -> String {
        match self.engine.get() {
            Some(e) => strata_engine::usage::prometheus(e, named).await,
            None => String::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP strata_requests_total S3 requests by method and status class.\n# TYPE strata_requests_total counter\n");
        for (mi, m) in METHODS.iter().enumerate() {
            for (ci, c) in CLASSES.iter().enumerate() {
                let v = self.requests[mi][ci].load(Ordering::Relaxed);
                s.push_str(&format!(
                    "strata_requests_total{{method=\"{m}\",status=\"{c}\"}} {v}\n"
                ));
            }
        }
        s.push_str("# HELP strata_request_duration_seconds Request latency.\n# TYPE strata_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let v = self.latency_buckets[i].load(Ordering::Relaxed);
            s.push_str(&format!(
                "strata_request_duration_seconds_bucket{{le=\"{b}\"}} {v}\n"
            ));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        s.push_str(&format!(
            "strata_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        let sum = self.latency_micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
        s.push_str(&format!("strata_request_duration_seconds_sum {sum}\nstrata_request_duration_seconds_count {count}\n"));
        s.push_str("# HELP strata_edge_refusals_total Requests and connections refused or cut off at the HTTP edge.\n# TYPE strata_edge_refusals_total counter\n");
        for (i, r) in EDGE_REASONS.iter().enumerate() {
            let v = self.edge[i].load(Ordering::Relaxed);
            s.push_str(&format!(
                "strata_edge_refusals_total{{reason=\"{r}\"}} {v}\n"
            ));
        }
        s
    }
}

/// The rebuild job's counters (cluster mode only: nothing when no rebuild worker runs).
fn rebuild_metrics(engine: &strata_engine::Engine) -> String {
    let Some(w) = engine
        .workers()
        .list()
        .into_iter()
        .find(|w| w.name == "rebuild")
    else {
        return String::new();
    };
    let mut s = String::new();
    for (name, kind, help) in [
        (
            "bytes_done",
            "counter",
            "Shard bytes written by the rebuild.",
        ),
        ("bytes_read", "counter", "Shard bytes read by the rebuild."),
        (
            "chunks_rebuilt",
            "counter",
            "Chunks brought back to full redundancy.",
        ),
        (
            "shards_rebuilt",
            "counter",
            "Shards rewritten by the rebuild.",
        ),
        (
            "failures",
            "counter",
            "Chunks the rebuild could not complete (retried).",
        ),
        (
            "degraded_chunks_pending",
            "gauge",
            "Chunks acknowledged with missing shards, not rebuilt yet.",
        ),
        ("rate_bytes_per_sec", "gauge", "Measured rebuild rate."),
        (
            "eta_secs",
            "gauge",
            "Estimated seconds until the degraded chunks are rebuilt.",
        ),
    ] {
        let v = w.status[name].as_f64().unwrap_or(0.0);
        s.push_str(&format!(
            "# HELP strata_rebuild_{name} {help}\n# TYPE strata_rebuild_{name} {kind}\nstrata_rebuild_{name} {v}\n"
        ));
    }
    let disks = w.status["disks_pending"].as_array().map_or(0, Vec::len);
    s.push_str(&format!(
        "# HELP strata_rebuild_disks_pending Disks waiting for a full rebuild.\n# TYPE strata_rebuild_disks_pending gauge\nstrata_rebuild_disks_pending {disks}\n"
    ));
    s
}
