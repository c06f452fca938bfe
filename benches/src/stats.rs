//! Counting: per-op latency histograms (HdrHistogram, microseconds), bytes, errors by code,
//! and the human table / JSON that come out of them.

use crate::spec::OpKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Latencies are recorded in microseconds, from 1 µs to one hour, to 3 significant digits.
const HIGHEST_MICROS: u64 = 3_600_000_000;

#[derive(Clone)]
struct OpCounters {
    latency: Histogram<u64>,
    ok: u64,
    errors: u64,
    bytes: u64,
    items: u64,
}

impl OpCounters {
    fn new() -> Self {
        OpCounters {
            latency: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            errors: 0,
            bytes: 0,
            items: 0,
        }
    }
}

#[derive(Clone)]
struct Counters {
    ops: Vec<OpCounters>,
    errors: BTreeMap<(OpKind, String), u64>,
    /// GETs that found no object because a concurrent DELETE of the mix had just removed it:
    /// legitimate under S3 semantics, so counted apart from errors.
    raced_deletes: u64,
}

/// Shared by all workers; one short lock per finished operation.
pub struct Stats {
    counters: Mutex<Counters>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            counters: Mutex::new(Counters {
                ops: OpKind::ALL.iter().map(|_| OpCounters::new()).collect(),
                errors: BTreeMap::new(),
                raced_deletes: 0,
            }),
        }
    }

    /// A successful op: its latency, payload bytes moved, and items (keys listed).
    pub fn record_ok(&self, op: OpKind, latency: Duration, bytes: u64, items: u64) {
        let mut counters = self.counters.lock().expect("stats lock");
        let entry = &mut counters.ops[op.index()];
        entry
            .latency
            .saturating_record(latency.as_micros().clamp(1, u128::from(HIGHEST_MICROS)) as u64);
        entry.ok += 1;
        entry.bytes += bytes;
        entry.items += items;
    }

    pub fn record_error(&self, op: OpKind, code: &str) {
        let mut counters = self.counters.lock().expect("stats lock");
        counters.ops[op.index()].errors += 1;
        *counters.errors.entry((op, code.to_owned())).or_default() += 1;
    }

    pub fn record_raced_delete(&self) {
        self.counters.lock().expect("stats lock").raced_deletes += 1;
    }

    /// (operations finished, payload bytes, errors) so far, for the progress line.
    pub fn totals(&self) -> (u64, u64, u64) {
        let counters = self.counters.lock().expect("stats lock");
        counters
            .ops
            .iter()
            .fold((0, 0, 0), |(ops, bytes, errors), entry| {
                (
                    ops + entry.ok + entry.errors,
                    bytes + entry.bytes,
                    errors + entry.errors,
                )
            })
    }

    pub fn report(&self, elapsed: Duration) -> Report {
        let counters = self.counters.lock().expect("stats lock").clone();
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let mut ops = BTreeMap::new();
        let mut total = OpCounters::new();
        for op in OpKind::ALL {
            let entry = &counters.ops[op.index()];
            if entry.ok + entry.errors == 0 {
                continue;
            }
            total
                .latency
                .add(&entry.latency)
                .expect("histograms share bounds");
            total.ok += entry.ok;
            total.errors += entry.errors;
            total.bytes += entry.bytes;
            total.items += entry.items;
            ops.insert(
                op.name().to_owned(),
                OpReport::from_counters(entry, seconds),
            );
        }
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for ((op, code), count) in &counters.errors {
            errors.insert(format!("{}:{code}", op.name()), *count);
        }
        Report {
            seconds,
            total: OpReport::from_counters(&total, seconds),
            ops,
            errors,
            raced_deletes: counters.raced_deletes,
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let millis = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency {
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Latency {
            p50_ms: millis(histogram.value_at_quantile(0.50)),
            p90_ms: millis(histogram.value_at_quantile(0.90)),
            p99_ms: millis(histogram.value_at_quantile(0.99)),
            max_ms: millis(histogram.max()),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct OpReport {
    pub ok: u64,
    pub errors: u64,
    pub ops_per_s: f64,
    pub mib_per_s: f64,
    pub bytes: u64,
    /// Keys returned by LIST pages.
    pub items: u64,
    pub latency: Latency,
}

impl OpReport {
    fn from_counters(counters: &OpCounters, seconds: f64) -> Self {
        OpReport {
            ok: counters.ok,
            errors: counters.errors,
            ops_per_s: counters.ok as f64 / seconds,
            mib_per_s: counters.bytes as f64 / (1024.0 * 1024.0) / seconds,
            bytes: counters.bytes,
            items: counters.items,
            latency: Latency::from_histogram(&counters.latency),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub seconds: f64,
    pub total: OpReport,
    pub ops: BTreeMap<String, OpReport>,
    /// `op:Code` -> count.
    pub errors: BTreeMap<String, u64>,
    pub raced_deletes: u64,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<10} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "ok", "errors", "ops/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        let rows = self.ops.iter().map(|(name, op)| (name.as_str(), op));
        let total = (self.ops.len() > 1).then_some(("total", &self.total));
        for (name, op) in rows.chain(total) {
            out.push_str(&format!(
                "{:<10} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name,
                op.ok,
                op.errors,
                op.ops_per_s,
                op.mib_per_s,
                op.latency.p50_ms,
                op.latency.p90_ms,
                op.latency.p99_ms,
                op.latency.max_ms
            ));
        }
        if let Some(list) = self.ops.get("list") {
            out.push_str(&format!(
                "list: {} keys listed, {:.0} keys/s\n",
                list.items,
                list.items as f64 / self.seconds
            ));
        }
        if self.raced_deletes > 0 {
            out.push_str(&format!(
                "get: {} reads found their key deleted by a concurrent delete (not errors)\n",
                self.raced_deletes
            ));
        }
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors by code:\n");
            for (code, count) in &self.errors {
                out.push_str(&format!("  {code:<40} {count}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let stats = Stats::new();
        // 1..=1000 ms, each once: p50 = 500 ms, p90 = 900 ms, p99 = 990 ms, max = 1000 ms.
        for millis in 1..=1000u64 {
            stats.record_ok(OpKind::Get, Duration::from_millis(millis), 4096, 0);
        }
        let report = stats.report(Duration::from_secs(10));
        let get = &report.ops["get"];
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.002;
        assert!(close(get.latency.p50_ms, 500.0), "{:?}", get.latency);
        assert!(close(get.latency.p90_ms, 900.0), "{:?}", get.latency);
        assert!(close(get.latency.p99_ms, 990.0), "{:?}", get.latency);
        assert!(close(get.latency.max_ms, 1000.0), "{:?}", get.latency);
        assert_eq!(get.ok, 1000);
        assert!((get.ops_per_s - 100.0).abs() < 1e-9);
        assert!((get.mib_per_s - 1000.0 * 4096.0 / 1048576.0 / 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_slow_tail_shows_in_p99_and_max_but_not_p50() {
        let stats = Stats::new();
        for _ in 0..990 {
            stats.record_ok(OpKind::Put, Duration::from_micros(200), 0, 0);
        }
        for _ in 0..10 {
            stats.record_ok(OpKind::Put, Duration::from_secs(2), 0, 0);
        }
        let latency = &stats.report(Duration::from_secs(1)).ops["put"].latency;
        assert!((latency.p50_ms - 0.2).abs() < 0.001, "{latency:?}");
        assert!(latency.p99_ms < 0.21, "{latency:?}");
        assert!((latency.max_ms - 2000.0).abs() < 2.0, "{latency:?}");
    }

    #[test]
    fn errors_are_counted_by_op_and_code_and_totals_merge() {
        let stats = Stats::new();
        stats.record_ok(OpKind::Put, Duration::from_millis(1), 10, 0);
        stats.record_ok(OpKind::List, Duration::from_millis(3), 100, 1000);
        stats.record_error(OpKind::Get, "NoSuchKey");
        stats.record_error(OpKind::Get, "NoSuchKey");
        stats.record_error(OpKind::Put, "SlowDown");
        let report = stats.report(Duration::from_secs(1));
        assert_eq!(report.errors["get:NoSuchKey"], 2);
        assert_eq!(report.errors["put:SlowDown"], 1);
        assert_eq!(report.total.ok, 2);
        assert_eq!(report.total.errors, 3);
        assert_eq!(report.ops["list"].items, 1000);
        assert_eq!(stats.totals(), (5, 110, 3));
        let table = report.table();
        assert!(table.contains("get:NoSuchKey"), "{table}");
        assert!(table.contains("total"), "{table}");
    }
}
