//! Metrics in the Prometheus text format, served at `/_strata/metrics` (docs/metrics.md):
//! request counters kept here by the front, and the gauges the engine's workers keep (disks,
//! GC, rebuild, lifecycle), read without scanning anything at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// A form POST whose fields before the file exceed 20 KiB.
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

/// Distinct operation labels kept; later ones are counted as `other` (bounded memory and
/// scrape size whatever requests arrive).
const MAX_OPS: usize = 200;
/// Distinct status or error-code labels kept per operation; later ones count as `other`.
const MAX_CODES: usize = 64;
/// HTTP methods that keep their name in an operation label.
const OP_METHODS: [&str; 6] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"];

/// One operation's counters.
#[derive(Default)]
struct OpStats {
    by_status: BTreeMap<u16, u64>,
    by_code: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    micros_sum: u64,
}

#[derive(Default)]
pub struct Metrics {
    edge: [AtomicU64; 10],
    requests: [[AtomicU64; 3]; 6],
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_micros_sum: AtomicU64,
    ops: Mutex<BTreeMap<String, OpStats>>,
    bytes_received: AtomicU64,
    bytes_sent: Arc<AtomicU64>,
    /// The engine whose background jobs (lifecycle) report here too.
    pub engine: std::sync::OnceLock<strata_engine::Engine>,
    /// The readiness probe's cached answer (`/_strata/ready` and `strata_ready`).
    pub readiness: crate::http::ready::Readiness,
}

/// The operation label of an audit-log operation name (`REST.GET.OBJECT`, `ADMIN.verb`): admin
/// verbs are one label (their names come from the request), unusual methods `REST.OTHER`.
pub fn op_label(operation: &str) -> String {
    if operation.starts_with("ADMIN.") {
        return "ADMIN".into();
    }
    match operation.split('.').nth(1) {
        Some(m) if operation.starts_with("REST.") && OP_METHODS.contains(&m) => {
            operation.to_string()
        }
        _ => "REST.OTHER".into(),
    }
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn help(s: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(s, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn method_index(m: &str) -> usize {
    METHODS.iter().position(|x| *x == m).unwrap_or(5)
}

impl Metrics {
    pub fn edge(&self, e: EdgeEvent) {
        self.edge[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts body bytes read from clients.
    pub fn received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }

    /// The counter a response body adds the bytes it sends to ([`CountingBody`]).
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        self.bytes_sent.clone()
    }

    /// One request by operation (the audit record's name, see [`op_label`]), status and S3
    /// error code.
    pub fn observe_op(&self, operation: &str, status: u16, code: Option<&str>, elapsed: Duration) {
        let mut label = op_label(operation);
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if !ops.contains_key(&label) && ops.len() >= MAX_OPS {
            label = "other".into();
        }
        let op = ops.entry(label).or_default();
        let status = if op.by_status.contains_key(&status) || op.by_status.len() < MAX_CODES {
            status
        } else {
            0
        };
        *op.by_status.entry(status).or_default() += 1;
        if status >= 400 || status == 0 {
            let code = code.unwrap_or("none");
            let code = if op.by_code.contains_key(code) || op.by_code.len() < MAX_CODES {
                code
            } else {
                "other"
            };
            *op.by_code.entry(code.to_string()).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                op.buckets[i] += 1;
            }
        }
        op.count += 1;
        op.micros_sum += elapsed.as_micros() as u64;
    }

    fn render_ops(&self, s: &mut String) {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        help(
            s,
            "strata_s3_requests_total",
            "counter",
            "S3 requests by operation and HTTP status.",
        );
        for (op, st) in ops.iter() {
            for (status, n) in &st.by_status {
                let status = if *status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                let _ = writeln!(
                    s,
                    "strata_s3_requests_total{{op=\"{}\",status=\"{status}\"}} {n}",
                    esc(op)
                );
            }
        }
        help(
            s,
            "strata_s3_errors_total",
            "counter",
            "S3 requests answered with an error, by operation and S3 error code.",
        );
        for (op, st) in ops.iter() {
            for (code, n) in &st.by_code {
                let _ = writeln!(
                    s,
                    "strata_s3_errors_total{{op=\"{}\",code=\"{}\"}} {n}",
                    esc(op),
                    esc(code)
                );
            }
        }
        help(
            s,
            "strata_s3_request_duration_seconds",
            "histogram",
            "S3 request latency by operation, until the response headers.",
        );
        for (op, st) in ops.iter() {
            let op = esc(op);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "strata_s3_request_duration_seconds_bucket{{op=\"{op}\",le=\"{b}\"}} {}",
                    st.buckets[i]
                );
            }
            let _ = writeln!(
                s,
                "strata_s3_request_duration_seconds_bucket{{op=\"{op}\",le=\"+Inf\"}} {}\nstrata_s3_request_duration_seconds_sum{{op=\"{op}\"}} {}\nstrata_s3_request_duration_seconds_count{{op=\"{op}\"}} {}",
                st.count,
                st.micros_sum as f64 / 1e6,
                st.count
            );
        }
        help(
            s,
            "strata_s3_bytes_received_total",
            "counter",
            "Request body bytes read from clients (as sent: aws-chunked framing included).",
        );
        let _ = writeln!(
            s,
            "strata_s3_bytes_received_total {}",
            self.bytes_received.load(Ordering::Relaxed)
        );
        help(
            s,
            "strata_s3_bytes_sent_total",
            "counter",
            "Response body bytes sent to clients.",
        );
        let _ = writeln!(
            s,
            "strata_s3_bytes_sent_total {}",
            self.bytes_sent.load(Ordering::Relaxed)
        );
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
        let mut s = process_metrics();
        if let Some(e) = self.engine.get() {
            let ready = self.readiness.check(e).await.is_ok();
            help(
                &mut s,
                "strata_ready",
                "gauge",
                "1 while /_strata/ready answers 200 (metadata tier and disks usable).",
            );
            let _ = writeln!(s, "strata_ready {}", u8::from(ready));
            s.push_str(
                &strata_engine::lifecycle::worker::prometheus(e, false)
                    .await
                    .unwrap_or_default(),
            );
            s.push_str(&rebuild_metrics(e));
            s.push_str(&gc_metrics(e));
            s.push_str(&disk_metrics(e));
        }
        s
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
        self.render_ops(&mut s);
        s
    }
}

/// A response body that adds the bytes it hands to the connection to a counter.
pub struct CountingBody {
    inner: s3s::Body,
    counter: Arc<AtomicU64>,
}

impl CountingBody {
    pub fn wrap(inner: s3s::Body, counter: Arc<AtomicU64>) -> s3s::Body {
        s3s::Body::http_body(CountingBody { inner, counter })
    }
}

impl http_body::Body for CountingBody {
    type Data = bytes::Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.counter.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// CPU time, resident memory and file descriptors of this process, from `/proc/self` and
/// getrusage/getrlimit (Prometheus' standard `process_*` names). Empty where /proc is absent.
fn process_metrics() -> String {
    let mut s = String::new();
    // SAFETY: getrusage and getrlimit only write the structs they are given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        help(
            &mut s,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the process.",
        );
        let _ = writeln!(
            s,
            "process_cpu_seconds_total {}",
            secs(ru.ru_utime) + secs(ru.ru_stime)
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        help(
            &mut s,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
        );
        let _ = writeln!(s, "process_resident_memory_bytes {}", kb * 1024);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        help(
            &mut s,
            "process_open_fds",
            "gauge",
            "Open file descriptors of the process.",
        );
        let _ = writeln!(s, "process_open_fds {}", dir.count());
    }
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        help(
            &mut s,
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors of the process.",
        );
        let _ = writeln!(s, "process_max_fds {}", lim.rlim_cur);
    }
    s
}

/// The GC worker's counters and its last measure of the queue (every 30 s, bounded).
fn gc_metrics(engine: &strata_engine::Engine) -> String {
    let Some(w) = engine.workers().list().into_iter().find(|w| w.name == "gc") else {
        return String::new();
    };
    let mut s = String::new();
    let st = &w.status;
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    for (name, kind, field, text) in [
        (
            "strata_gc_queued_items",
            "gauge",
            "queued",
            "Items in the GC queue, in their grace period or due (measured every 30 s).",
        ),
        (
            "strata_gc_backlog_items",
            "gauge",
            "due",
            "GC items whose grace period has passed, not processed yet (measured every 30 s).",
        ),
        (
            "strata_gc_items_done_total",
            "counter",
            "items_done",
            "GC items processed.",
        ),
        (
            "strata_gc_bytes_deleted_total",
            "counter",
            "bytes_deleted",
            "Bytes of object data deleted by the GC.",
        ),
        (
            "strata_destruction_failures_total",
            "counter",
            "destruction_failures",
            "GC items whose destruction (keys, chunks, destruction record) failed; retried.",
        ),
    ] {
        help(&mut s, name, kind, text);
        let _ = writeln!(s, "{name} {}", n(field));
    }
    let age = st["oldest_due_ms"]
        .as_i64()
        .map_or(0, |due| (strata_engine::now_ms() - due).max(0));
    help(
        &mut s,
        "strata_gc_oldest_pending_age_seconds",
        "gauge",
        "How long the oldest due GC item has waited past its grace period.",
    );
    let _ = writeln!(
        s,
        "strata_gc_oldest_pending_age_seconds {}",
        age as f64 / 1000.0
    );
    help(
        &mut s,
        "strata_destructions_total",
        "counter",
        "Destroyed object versions (destruction records written), by reason.",
    );
    for reason in [
        "user_request",
        "lifecycle",
        "retention_end",
        "bucket_purge",
        "account_closure",
        "admin",
    ] {
        let v = st["destroyed_by_reason"][reason].as_u64().unwrap_or(0);
        let _ = writeln!(s, "strata_destructions_total{{reason=\"{reason}\"}} {v}");
    }
    s
}

/// The local disks as the disk-watch worker last sampled them, and the capacity alert.
fn disk_metrics(engine: &strata_engine::Engine) -> String {
    let Some(h) = engine.disk_health() else {
        return String::new();
    };
    let mut s = String::new();
    let samples = h.samples();
    type Field = fn(&strata_engine::disks::DiskSample) -> f64;
    let series: [(&str, &str, &str, Field); 5] = [
        (
            "strata_disk_total_bytes",
            "gauge",
            "Size of the disk's filesystem.",
            |d| d.total_bytes as f64,
        ),
        (
            "strata_disk_free_bytes",
            "gauge",
            "Bytes still available to Strata on the disk's filesystem.",
            |d| d.free_bytes as f64,
        ),
        (
            "strata_disk_used_bytes",
            "gauge",
            "Bytes in use on the disk's filesystem.",
            |d| d.used_bytes as f64,
        ),
        (
            "strata_disk_writable",
            "gauge",
            "1 if the last probe could write to the disk, else 0.",
            |d| f64::from(u8::from(d.writable)),
        ),
        (
            "strata_disk_io_errors_total",
            "counter",
            "I/O errors on the disk (shard reads and writes, failed probes).",
            |d| d.io_errors as f64,
        ),
    ];
    for (name, kind, text, f) in series {
        help(&mut s, name, kind, text);
        for d in &samples {
            let _ = writeln!(s, "{name}{{disk=\"{}\"}} {}", esc(&d.name), f(d));
        }
    }
    help(
        &mut s,
        "strata_capacity_used_ratio",
        "gauge",
        "Used fraction of the fullest writable disk (reserved blocks count as used).",
    );
    let _ = writeln!(
        s,
        "strata_capacity_used_ratio {}",
        h.capacity().map_or(0.0, |c| c.0)
    );
    help(
        &mut s,
        "strata_capacity_alert_threshold",
        "gauge",
        "The --capacity-alert-threshold fraction.",
    );
    let _ = writeln!(s, "strata_capacity_alert_threshold {}", h.threshold());
    help(
        &mut s,
        "strata_capacity_alert",
        "gauge",
        "1 while capacity is above the alert threshold, else 0.",
    );
    let _ = writeln!(s, "strata_capacity_alert {}", u8::from(h.alert()));
    s
}

/// The rebuild job's counters (cluster mode; zeros without a rebuild worker: a local store
/// heals on read and records no degraded chunks, so its rebuild backlog is empty).
fn rebuild_metrics(engine: &strata_engine::Engine) -> String {
    let status = engine
        .workers()
        .list()
        .into_iter()
        .find(|w| w.name == "rebuild")
        .map(|w| w.status)
        .unwrap_or_default();
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
        let v = status[name].as_f64().unwrap_or(0.0);
        s.push_str(&format!(
            "# HELP strata_rebuild_{name} {help}\n# TYPE strata_rebuild_{name} {kind}\nstrata_rebuild_{name} {v}\n"
        ));
    }
    let disks = status["disks_pending"].as_array().map_or(0, Vec::len);
    s.push_str(&format!(
        "# HELP strata_rebuild_disks_pending Disks waiting for a full rebuild.\n# TYPE strata_rebuild_disks_pending gauge\nstrata_rebuild_disks_pending {disks}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_bounded() {
        assert_eq!(op_label("REST.GET.OBJECT"), "REST.GET.OBJECT");
        assert_eq!(op_label("ADMIN.user-add"), "ADMIN");
        assert_eq!(op_label("REST.BREW.OBJECT"), "REST.OTHER");
        let m = Metrics::default();
        // Request-chosen names cannot grow the label set past MAX_OPS.
        for i in 0..MAX_OPS + 50 {
            m.observe_op(
                &format!("REST.GET.X{i}"),
                200,
                None,
                Duration::from_millis(1),
            );
        }
        m.observe_op(
            "REST.GET.OBJECT",
            404,
            Some("NoSuchKey"),
            Duration::from_millis(2),
        );
        let text = m.render();
        // MAX_OPS names, then `other`.
        assert_eq!(
            text.matches("strata_s3_request_duration_seconds_count{")
                .count(),
            MAX_OPS + 1
        );
        assert!(text.contains("strata_s3_requests_total{op=\"other\",status=\"404\"} 1"));
        assert!(text.contains("strata_s3_errors_total{op=\"other\",code=\"NoSuchKey\"} 1"));
    }
}
