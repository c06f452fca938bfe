//! S3 server access logging (bucket logging). The gateway hands every request to a bucket with
//! logging enabled to [`Engine::log_access`]; entries wait in a bounded in-memory queue, are
//! staged durably in the metadata tier (one batch per unit of the `access-log` worker, at most
//! about a second after the request), and are delivered as log objects into the target bucket
//! under the target prefix, in S3's server-access-log line format, once the oldest staged entry
//! is older than the delivery delay (or a full batch is waiting).
//!
//! Crash safety: staged entries survive restarts; a log object's key is derived from its first
//! entry's queue position, so a delivery repeated after a crash (object written, entries not yet
//! acknowledged) rewrites the same object instead of duplicating lines. Entries still in memory
//! when the process is killed (at most about a second's worth) are lost, as S3's own delivery is
//! best effort; a clean shutdown stages them first. Nothing secret is logged: the front redacts
//! signatures and credentials from the URI, and no header values but Referer, User-Agent and Host
//! are recorded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use strata_metadata::{AccessLogEntry, ContentHeaders, LoggingConfig, Precondition};
use tokio::sync::mpsc;

use crate::objects::ObjectAttrs;
use crate::workers::{WorkState, Worker};
use crate::write::WriteSpec;
use crate::{Engine, now_ms};

/// Entries held in memory before staging; beyond it new entries are dropped (and counted).
const QUEUE: usize = 100_000;
/// Entries staged per unit, and delivered per unit.
const STAGE_BATCH: usize = 10_000;
const DELIVER_BATCH: usize = 2_000;
/// How long a bucket's logging configuration is cached by the request path.
const CONFIG_TTL: Duration = Duration::from_secs(5);
const CONFIG_CACHE: usize = 10_000;

/// The bucket's logging target and owner, as the request path needs them.
#[derive(Clone, Debug)]
pub struct LogTarget {
    pub config: LoggingConfig,
    pub bucket_owner: String,
}

pub struct AccessLog {
    tx: mpsc::Sender<AccessLogEntry>,
    rx: tokio::sync::Mutex<mpsc::Receiver<AccessLogEntry>>,
    cache: Mutex<HashMap<String, (Instant, Option<LogTarget>)>>,
    dropped: AtomicU64,
    /// Delivery delay: the oldest staged entry waits at most this long (plus a unit).
    delay: Duration,
}

impl AccessLog {
    pub fn new(delay: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        AccessLog {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            cache: Mutex::default(),
            dropped: AtomicU64::new(0),
            delay,
        }
    }
}

impl Engine {
    /// Where requests to `bucket` are logged, if anywhere (cached for a few seconds).
    pub async fn logging_target(&self, bucket: &str) -> Option<LogTarget> {
        let log = self.access_log();
        if let Some((at, t)) = log
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            && at.elapsed() < CONFIG_TTL
        {
            return t.clone();
        }
        let target = match self.bucket(bucket).await {
            Ok(Some(b)) => b.logging.map(|config| LogTarget {
                config,
                bucket_owner: b.owner,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "bucket logging configuration could not be read");
                None
            }
        };
        let mut cache = log.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CONFIG_CACHE {
            cache.clear();
        }
        cache.insert(bucket.to_string(), (Instant::now(), target.clone()));
        target
    }

    /// Forgets the cached logging configuration of `bucket` (after PutBucketLogging).
    pub fn forget_logging_target(&self, bucket: &str) {
        self.access_log()
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bucket);
    }

    /// Queues one request's entry (never blocks; a full queue drops it and counts).
    pub fn log_access(&self, entry: AccessLogEntry) {
        if self.access_log().tx.try_send(entry).is_err() {
            self.access_log().dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stages what is queued in memory (one batch). Returns how many entries were staged.
    pub async fn stage_access_log(&self) -> Result<usize, String> {
        let mut batch = Vec::new();
        {
            let mut rx = self.access_log().rx.lock().await;
            while batch.len() < STAGE_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len();
        if n > 0 {
            self.meta_call(move |m| m.append_access_log(&batch))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

/// Milliseconds as S3 writes them in a log line: `[06/Feb/2019:00:00:38 +0000]`.
fn log_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    format!("[{}]", t.format(&fmt).unwrap_or_default())
}

/// A field: `-` when empty; printable ASCII, with quotes, backslashes, spaces and anything else
/// percent-encoded (a key stays recognisable, a line cannot be split or forged).
fn field(v: Option<&str>) -> String {
    match v {
        None | Some("") => "-".into(),
        Some(s) => clean(s),
    }
}

fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => out.push_str(&format!("%{b:02X}")),
            0x21..=0x7E => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn quoted(v: Option<&str>) -> String {
    match v {
        None | Some("") => "\"-\"".into(),
        Some(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' | '\\' => out.push_str(&format!("%{:02X}", c as u32)),
                    ' '..='~' => out.push(c),
                    _ => out.push('?'),
                }
            }
            out.push('"');
            out
        }
    }
}

fn num(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// One line in S3's server access log format (fields in S3's order; those we do not have are
/// `-`).
pub fn format_line(e: &AccessLogEntry, requester: Option<&str>) -> String {
    [
        field(Some(&e.bucket_owner)),
        field(Some(&e.bucket)),
        log_time(e.time),
        field(Some(&e.remote_ip)),
        field(requester),
        field(Some(&e.request_id)),
        field(Some(&e.operation)),
        field(e.key.as_deref()),
        quoted(Some(&e.request_uri)),
        e.status.to_string(),
        field(e.error_code.as_deref()),
        num(e.bytes_sent),
        num(e.object_size),
        e.total_ms.to_string(),
        "-".into(),
        quoted(e.referer.as_deref()),
        quoted(e.user_agent.as_deref()),
        field(e.version_id.as_deref()),
        field(Some(&e.request_id)),
        field(e.signature_version.as_deref()),
        "-".into(),
        field(e.auth_type.as_deref()),
        field(e.host_header.as_deref()),
        "-".into(),
        "-".into(),
        "-".into(),
    ]
    .join(" ")
}

/// The log object key S3 uses: `PREFIX` + `YYYY-mm-DD-HH-MM-SS-` + a unique string (here the
/// first entry's queue position, so a repeated delivery rewrites the same object).
fn object_key(prefix: &str, time: i64, first: &[u8]) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(time.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day]-[hour]-[minute]-[second]");
    let unique = hex::encode_upper(
        first
            .iter()
            .rev()
            .take(8)
            .rev()
            .copied()
            .collect::<Vec<u8>>(),
    );
    format!("{prefix}{}-{unique}", t.format(&fmt).unwrap_or_default())
}

/// (target bucket, target prefix) of a group of lines.
type Target = (String, String);
/// A staged entry and its queue key.
type Staged = (Vec<u8>, AccessLogEntry);

/// The `access-log` worker: stages queued entries, delivers staged ones.
pub struct AccessLogWorker {
    engine: Engine,
    staged: u64,
    objects: u64,
    lines: u64,
    undeliverable: u64,
}

impl AccessLogWorker {
    pub fn new(engine: Engine) -> Self {
        AccessLogWorker {
            engine,
            staged: 0,
            objects: 0,
            lines: 0,
            undeliverable: 0,
        }
    }

    async fn deliver(&mut self) -> Result<WorkState, String> {
        let pending = self
            .engine
            .meta_call(|m| m.pending_access_log(DELIVER_BATCH))
            .await
            .map_err(|e| e.to_string())?;
        let Some(oldest) = pending.first().map(|(_, e)| e.time) else {
            return Ok(WorkState::Idle);
        };
        let due = now_ms() - oldest >= self.engine.access_log().delay.as_millis() as i64;
        if !due && pending.len() < DELIVER_BATCH {
            return Ok(WorkState::Idle);
        }
        let full = pending.len() == DELIVER_BATCH;
        // Group by target, keeping arrival order inside each.
        let mut groups: Vec<(Target, Vec<Staged>)> = Vec::new();
        for (k, e) in pending {
            let t = (e.target_bucket.clone(), e.target_prefix.clone());
            match groups.iter_mut().find(|(g, _)| *g == t) {
                Some((_, v)) => v.push((k, e)),
                None => groups.push((t, vec![(k, e)])),
            }
        }
        let mut requesters: HashMap<String, Option<String>> = HashMap::new();
        for ((target, prefix), entries) in groups {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
            let Some(bucket) = self
                .engine
                .bucket(&target)
                .await
                .map_err(|e| e.to_string())?
            else {
                // The target is gone: these lines cannot be delivered anywhere.
                tracing::warn!(target_bucket = %target, lines = keys.len(), "access log target bucket missing; lines dropped");
                self.undeliverable += keys.len() as u64;
                self.engine
                    .meta_call(move |m| m.ack_access_log(&keys))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            };
            let mut text = String::new();
            for (_, e) in &entries {
                let requester = match &e.access_key {
                    None => None,
                    Some(ak) => {
                        if !requesters.contains_key(ak) {
                            let a = ak.clone();
                            let user = self
                                .engine
                                .meta_call(move |m| m.get_access_key(&a))
                                .await
                                .map_err(|e| e.to_string())?
                                .map(|k| k.user);
                            requesters.insert(ak.clone(), user);
                        }
                        requesters[ak].clone()
                    }
                };
                text.push_str(&format_line(e, requester.as_deref()));
                text.push('\n');
            }
            let key = object_key(&prefix, entries[0].1.time, &entries[0].0);
            let len = text.len() as u64;
            let body: crate::body::BodyStream =
                Box::pin(futures::stream::once(async move { Ok(Bytes::from(text)) }));
            // The target bucket's default encryption applies, as to any write.
            let sse = match &bucket.encryption {
                Some(e) if e.mode == strata_metadata::SseMode::Kms => crate::sse::SseRequest::Kms {
                    key: e.kms_key_id.clone(),
                    context: None,
                    bucket_key: e.bucket_key,
                },
                _ => crate::sse::SseRequest::S3,
            };
            let (sse, binding) = self
                .engine
                .prepare_sse(sse)
                .await
                .map_err(|e| e.to_string())?;
            let attrs = ObjectAttrs {
                content: ContentHeaders {
                    content_type: Some("text/plain".into()),
                    sse: Some(sse),
                    ..Default::default()
                },
                storage_class: "STANDARD".into(),
                owner: bucket.owner.clone(),
                ..Default::default()
            };
            let spec = WriteSpec {
                max_len: len,
                expected_len: Some(len),
                checksum_algorithm: Some("CRC64NVME".into()),
                ..Default::default()
            };
            self.engine
                .put_object_bound(
                    &bucket,
                    &key,
                    body,
                    spec,
                    attrs,
                    Precondition::None,
                    &binding,
                )
                .await
                .map_err(|e| format!("writing access log object {key}: {e}"))?;
            self.objects += 1;
            self.lines += keys.len() as u64;
            self.engine
                .meta_call(move |m| m.ack_access_log(&keys))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(if full {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }
}

#[async_trait::async_trait]
impl Worker for AccessLogWorker {
    fn name(&self) -> &'static str {
        "access-log"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        self.staged += self.engine.stage_access_log().await? as u64;
        self.deliver().await
    }

    fn status(&self) -> Value {
        json!({
            "staged": self.staged,
            "objects_written": self.objects,
            "lines_delivered": self.lines,
            "undeliverable": self.undeliverable,
            "dropped_queue_full": self.engine.access_log().dropped.load(Ordering::Relaxed),
            "delay_ms": self.engine.access_log().delay.as_millis() as u64,
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_s3_fields_and_no_raw_quotes() {
        let e = AccessLogEntry {
            bucket: "b".into(),
            bucket_owner: "owner".into(),
            time: 1_549_411_238_000,
            remote_ip: "192.0.2.3".into(),
            request_id: "3E57427F3EXAMPLE".into(),
            operation: "REST.GET.VERSIONING".into(),
            request_uri: "GET /b?versioning HTTP/1.1".into(),
            status: 200,
            bytes_sent: Some(113),
            total_ms: 7,
            user_agent: Some("S3Console/0.4 \"x\"".into()),
            key: Some("a b/ü".into()),
            ..Default::default()
        };
        let line = format_line(&e, Some("user"));
        assert!(line.starts_with("owner b [06/Feb/2019:00:00:38 +0000] 192.0.2.3 user 3E57427F3EXAMPLE REST.GET.VERSIONING a%20b/%C3%BC \"GET /b?versioning HTTP/1.1\" 200 - 113 - 7 - \"-\" \"S3Console/0.4 %22x%22\" -"), "{line}");
        assert_eq!(
            object_key("logs/", 1_549_411_238_000, &[0, 1, 2]),
            "logs/2019-02-06-00-00-38-000102"
        );
    }
}
