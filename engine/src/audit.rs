//! The audit log: one record per request and per operator action, on the destruction log's
//! machinery (`strata_destruction_log::Log`: append-only frames under an RFC 6962 Merkle tree,
//! Ed25519-signed checkpoints, offline-verifiable exports), in `DATA_DIR/audit-log` with its own
//! signing key. Format and the auditor's steps: docs/audit.md.
//!
//! Durability without one fsync per request: callers hand records to one writer thread and
//! wait; the writer takes everything queued (up to `MAX_BATCH`), appends it with one write and
//! one fsync (group commit), then wakes every caller of the batch. The front answers a request
//! only after its record is durable, so an acknowledged request is in the log.
//!
//! Nothing secret is ever in a record: no URI, query, header or body is recorded, only the
//! fields of [`AuditRecord`] (access key *ids*, never secrets or signatures).

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
pub use strata_destruction_log::{ExportFilter, ExportSummary, Log, LogError, LogRecord};

use crate::now_ms;

/// Where a server keeps its audit log: `DATA_DIR/audit-log`.
pub const AUDIT_DIR_NAME: &str = "audit-log";
/// Records written by one fsync at most.
const MAX_BATCH: usize = 4096;
/// Records waiting for the writer at most; beyond it callers wait for room.
const QUEUE: usize = 65_536;
/// A signed checkpoint at least this often while records arrive.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// `search` returns at most this many records and reads at most `SEARCH_SCAN` of them.
pub const SEARCH_LIMIT: usize = 1000;
const SEARCH_SCAN: u64 = 1_000_000;
/// Records are appended in arrival order, which may trail their start time by a request's
/// duration: a search by time looks this much further back before it stops.
const SEARCH_SLACK_MS: i64 = 15 * 60 * 1000;

/// One request or operator action (docs/audit.md, "Record").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// When the request arrived (ms since the Unix epoch).
    pub time_ms: i64,
    pub request_id: String,
    /// The user behind the verified access key; `None` for anonymous or unauthenticated calls.
    pub user: Option<String>,
    /// The access key id the request was signed with: the verified one, else the claimed one
    /// (a failed authentication names the key it tried).
    pub access_key: Option<String>,
    /// S3 requests: `REST.<METHOD>.<RESOURCE>` as in S3's server access log; operator API:
    /// `ADMIN.<verb>`.
    pub operation: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub version_id: Option<String>,
    /// Peer address (ip:port).
    pub remote: String,
    pub user_agent: Option<String>,
    pub status: u16,
    /// The S3 error code of a failed request.
    pub error_code: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    /// The request failed authentication (bad signature, unknown key, lockout).
    pub auth_failed: bool,
}

impl LogRecord for AuditRecord {
    const LOG_NAME: &'static str = "audit-log";
    const EXPORT_FORMAT: &'static str = "strata-audit-export/1";
    fn op_id(&self) -> Option<&str> {
        None
    }
    fn object(&self) -> (&str, &str) {
        (
            self.bucket.as_deref().unwrap_or(""),
            self.key.as_deref().unwrap_or(""),
        )
    }
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    fn time_ms(&self) -> i64 {
        self.time_ms
    }
}

/// Error codes that mean the caller did not authenticate.
pub const AUTH_FAILURE_CODES: [&str; 7] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "ExpiredToken",
    "RequestTimeTooSkewed",
    "InvalidSecurity",
];

type Ack = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The audit log with its group-commit writer.
pub struct AuditLog {
    log: Arc<Log<AuditRecord>>,
    tx: Mutex<Option<SyncSender<(AuditRecord, Ack)>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AuditLog {
    /// Opens (creating on first use) the log in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let log = Arc::new(Log::<AuditRecord>::open(dir)?);
        let (tx, rx) = mpsc::sync_channel::<(AuditRecord, Ack)>(QUEUE);
        let l = log.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&l, rx))?;
        Ok(Self {
            log,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Appends a record; returns once it is durable (fsync'd with its batch).
    pub async fn append(&self, rec: AuditRecord) -> Result<(), String> {
        let (ack, done) = tokio::sync::oneshot::channel();
        let tx = self
            .tx
            .lock()
            .map_err(|_| "audit log poisoned".to_string())?
            .clone()
            .ok_or_else(|| "audit log closed".to_string())?;
        match tx.try_send((rec, ack)) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                // Queue full: wait for room off the runtime's threads.
                tokio::task::spawn_blocking(move || tx.send(item).map_err(|_| ()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|()| "audit log closed".to_string())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err("audit log closed".into()),
        }
        done.await.map_err(|_| "audit writer stopped".to_string())?
    }

    /// The log itself (blocking calls: use the blocking pool).
    pub fn log(&self) -> &Arc<Log<AuditRecord>> {
        &self.log
    }

    /// Export (see `Log::export_filtered`); blocking.
    pub fn export(&self, filter: &ExportFilter, out: &Path) -> Result<ExportSummary, LogError> {
        self.log.export_filtered(filter, out)
    }

    /// The newest records (newest first) with `time_ms >= since_ms` that `pred` accepts, at
    /// most `limit`; blocking.
    pub fn search(
        &self,
        since_ms: i64,
        limit: usize,
        pred: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Vec<(u64, AuditRecord)>, LogError> {
        let n = self.log.len()?;
        let mut out = Vec::new();
        let stop = n.saturating_sub(SEARCH_SCAN);
        let mut i = n;
        while i > stop && out.len() < limit.min(SEARCH_LIMIT) {
            i -= 1;
            let rec = self.log.get(i)?;
            if rec.time_ms < since_ms.saturating_sub(SEARCH_SLACK_MS) {
                break;
            }
            if rec.time_ms >= since_ms && pred(&rec) {
                out.push((i, rec));
            }
        }
        Ok(out)
    }

    /// Stops the writer after it wrote what is queued, with a last checkpoint.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(log: &Log<AuditRecord>, rx: mpsc::Receiver<(AuditRecord, Ack)>) {
    let mut last_checkpoint = Instant::now();
    let mut unsigned = false;
    loop {
        let first = match rx.recv_timeout(CHECKPOINT_EVERY) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let (recs, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let res = log.append_batch(recs).map(|_| ()).map_err(|e| {
                tracing::error!(error = %e, "audit log append failed; requests are refused");
                e.to_string()
            });
            unsigned |= res.is_ok();
            for a in acks {
                let _ = a.send(res.clone());
            }
        }
        if unsigned && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            match log.checkpoint(now_ms()) {
                Ok(_) => unsigned = false,
                Err(e) => tracing::error!(error = %e, "audit log checkpoint failed"),
            }
            last_checkpoint = Instant::now();
        }
    }
    if unsigned && let Err(e) = log.checkpoint(now_ms()) {
        tracing::error!(error = %e, "audit log checkpoint at close failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, failed: bool) -> AuditRecord {
        AuditRecord {
            time_ms: now_ms(),
            request_id: format!("req-{i}"),
            user: Some("alice".into()),
            access_key: Some("AKIDEXAMPLE".into()),
            operation: "REST.PUT.OBJECT".into(),
            bucket: Some("b".into()),
            key: Some(format!("k{i}")),
            status: if failed { 403 } else { 200 },
            auth_failed: failed,
            remote: "127.0.0.1:1".into(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_durable_verifiable_and_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(AuditLog::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let a = a.clone();
            tasks.push(tokio::spawn(
                async move { a.append(rec(i, i % 50 == 7)).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(a.log().len().unwrap(), 200);
        let found = a.search(0, 100, |r| r.auth_failed).unwrap();
        assert_eq!(found.len(), 4);
        assert!(found.iter().all(|(_, r)| r.status == 403));
        let out = dir.path().join("export");
        let filter = ExportFilter {
            user: Some("alice".into()),
            ..Default::default()
        };
        let s = a.export(&filter, &out).unwrap();
        assert_eq!(s.records, 200);
        let pem = a.log().public_key_pem();
        let report = strata_destruction_log::verify_export_of::<AuditRecord>(&out, &pem).unwrap();
        assert_eq!(report.records, 200);
        assert!(report.origin.starts_with("strata.audit-log/"));
        // An audit export never passes as a destruction-log export.
        assert!(strata_destruction_log::verify_export(&out, &pem).is_err());
        a.close();
        drop(a);
        // Reopened: everything is still there.
        let again = AuditLog::open(dir.path()).unwrap();
        assert_eq!(again.log().len().unwrap(), 200);
    }
}
