//! The destruction log as a service, so that every gateway of a cluster records into one log:
//! the node that hosts the key service also hosts the log (`POST /destruction-log`, over the
//! cluster's mutual TLS), and gateways reach it through [`LogHandle::Remote`]. One log means
//! one chain and one set of signed checkpoints for the auditor, whichever gateway led the GC
//! when a version was destroyed. Requests and answers are JSON; an append returns once the
//! record is durable on the log's node, and a repeated append of the same operation (a GC item
//! redone after a crash) returns the first record's index, exactly as the local log does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{DestructionLog, DestructionRecord, ExportSummary, LogError, SignedCheckpoint};

/// Largest export a remote caller receives in one answer (files, base64): a bigger one is
/// refused with what to do (`--since` / `--bucket`).
pub const MAX_REMOTE_EXPORT: usize = 48 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Append {
        record: Box<DestructionRecord>,
    },
    Find {
        bucket: String,
        key: String,
    },
    Checkpoint {
        now_ms: i64,
    },
    Export {
        since_ms: Option<i64>,
        bucket: Option<String>,
        /// As of the latest checkpoint, making none (a replica of the cluster's log).
        #[serde(default)]
        at_latest: bool,
    },
    PublicKey,
    Page {
        before: Option<u64>,
        limit: usize,
    },
    // ---- a replica of the cluster's log (`replicated.rs`) ----
    Status,
    AppendAt {
        index: u64,
        record: Box<DestructionRecord>,
    },
    CheckpointAt {
        tree_size: u64,
        timestamp_ms: i64,
    },
    /// Up to `limit` (at most [`MAX_RECORDS`]) records from index `from`, with the
    /// checkpoints whose size is in `from..=from + returned`.
    Records {
        from: u64,
        limit: usize,
    },
    Contains {
        op_id: String,
    },
}

/// Most records of one [`Request::Records`] answer.
pub const MAX_RECORDS: usize = 256;

/// What a replica of the cluster's log holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub records: u64,
    /// Size of its latest checkpoint.
    pub checkpoint_size: Option<u64>,
    pub public_key: String,
}

/// Largest page of [`LogHandle::page`].
pub const MAX_PAGE: usize = 200;

/// A page of the log, newest first, with what a reader needs to judge it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogPage {
    /// Records in the log.
    pub total: u64,
    /// (index, record), highest index first.
    pub records: Vec<(u64, DestructionRecord)>,
    /// Where the next page (older records) starts, if any.
    pub next_before: Option<u64>,
    pub latest_checkpoint: Option<SignedCheckpoint>,
    pub origin: String,
}

/// Up to `limit` (at most [`MAX_PAGE`]) records before index `before` (the end when `None`).
fn page(log: &DestructionLog, before: Option<u64>, limit: usize) -> Result<LogPage, LogError> {
    let total = log.len()?;
    let end = before.unwrap_or(total).min(total);
    let start = end.saturating_sub(limit.clamp(1, MAX_PAGE) as u64);
    let records = (start..end)
        .rev()
        .map(|i| log.get(i).map(|r| (i, r)))
        .collect::<Result<_, _>>()?;
    Ok(LogPage {
        total,
        records,
        next_before: (start > 0).then_some(start),
        latest_checkpoint: log.latest_checkpoint()?,
        origin: log.origin().to_string(),
    })
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Index(u64),
    Found(Vec<(u64, DestructionRecord)>),
    Checkpoint(SignedCheckpoint),
    Export {
        summary: ExportSummary,
        /// (path relative to the export directory, base64 content).
        files: Vec<(String, String)>,
    },
    PublicKey(String),
    Page(Box<LogPage>),
    Status(ReplicaStatus),
    Records {
        records: Vec<DestructionRecord>,
        /// (tree size, timestamp) of each checkpoint in the range.
        checkpoints: Vec<(u64, i64)>,
    },
    Contains(Option<u64>),
    Error {
        message: String,
    },
}

/// Answers one request on the log's node. `scratch` is a directory of the node's own where an
/// export is assembled before it is sent (and removed).
pub fn handle(log: &DestructionLog, scratch: &Path, body: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<Request>(body) {
        Err(e) => Response::Error {
            message: format!("bad destruction-log request: {e}"),
        },
        Ok(req) => run(log, scratch, req).unwrap_or_else(|e| Response::Error {
            message: e.to_string(),
        }),
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

fn run(log: &DestructionLog, scratch: &Path, req: Request) -> Result<Response, LogError> {
    Ok(match req {
        Request::Append { record } => Response::Index(log.append(*record)?),
        Request::Find { bucket, key } => Response::Found(log.find(&bucket, &key)?),
        Request::Checkpoint { now_ms } => Response::Checkpoint(log.checkpoint(now_ms)?),
        Request::PublicKey => Response::PublicKey(log.public_key_pem()),
        Request::Page { before, limit } => Response::Page(Box::new(page(log, before, limit)?)),
        Request::Status => Response::Status(ReplicaStatus {
            records: log.len()?,
            checkpoint_size: log.latest_checkpoint()?.map(|c| c.tree_size),
            public_key: log.public_key_pem(),
        }),
        Request::AppendAt { index, record } => Response::Index(log.append_at(index, *record)?),
        Request::CheckpointAt {
            tree_size,
            timestamp_ms,
        } => Response::Checkpoint(log.checkpoint_at(tree_size, timestamp_ms)?),
        Request::Contains { op_id } => Response::Contains(log.contains(&op_id)?),
        Request::Records { from, limit } => {
            let end = log
                .len()?
                .min(from.saturating_add(limit.clamp(1, MAX_RECORDS) as u64));
            let records = (from..end).map(|i| log.get(i)).collect::<Result<_, _>>()?;
            let checkpoints = log
                .checkpoints()?
                .into_iter()
                .filter(|c| c.tree_size >= from && c.tree_size <= end.max(from))
                .map(|c| (c.tree_size, c.timestamp_ms))
                .collect();
            Response::Records {
                records,
                checkpoints,
            }
        }
        Request::Export {
            since_ms,
            bucket,
            at_latest,
        } => {
            let dir = scratch.join(format!("export-{}", hex::encode(rand::random::<[u8; 8]>())));
            let out = export_files(log, since_ms, bucket.as_deref(), at_latest, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            let (summary, files) = out?;
            Response::Export { summary, files }
        }
    })
}

fn export_files(
    log: &DestructionLog,
    since_ms: Option<i64>,
    bucket: Option<&str>,
    at_latest: bool,
    dir: &Path,
) -> Result<(ExportSummary, Vec<(String, String)>), LogError> {
    let filter = crate::ExportFilter {
        since_ms,
        bucket: bucket.map(str::to_string),
        ..crate::ExportFilter::default()
    };
    let summary = if at_latest {
        log.export_at_latest(&filter, dir)?
    } else {
        log.export_filtered(&filter, dir)?
    };
    let mut files = Vec::new();
    let mut total = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path)?;
            total += bytes.len();
            if total > MAX_REMOTE_EXPORT / 4 * 3 {
                return Err(LogError::Export(format!(
                    "the export is larger than {} MiB: export a part with --since or --bucket",
                    MAX_REMOTE_EXPORT >> 20
                )));
            }
            let rel = path
                .strip_prefix(dir)
                .map_err(|e| LogError::Export(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            files.push((rel, base64::engine::general_purpose::STANDARD.encode(bytes)));
        }
    }
    files.sort();
    Ok((summary, files))
}

/// How a caller reaches the log's node (the cluster's node client implements it).
pub trait LogTransport: Send + Sync {
    fn call(&self, body: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// A destruction log on another node.
pub struct RemoteLog {
    transport: Box<dyn LogTransport>,
}

impl RemoteLog {
    pub fn new(transport: Box<dyn LogTransport>) -> Self {
        RemoteLog { transport }
    }

    pub(crate) fn ask(&self, req: &Request) -> Result<Response, LogError> {
        let body = serde_json::to_vec(req).map_err(|e| LogError::Export(e.to_string()))?;
        let raw = self.transport.call(body).map_err(|e| {
            LogError::Io(std::io::Error::other(format!(
                "the destruction log service: {e}"
            )))
        })?;
        match serde_json::from_slice(&raw) {
            Ok(Response::Error { message }) => Err(LogError::Io(std::io::Error::other(format!(
                "the destruction log service: {message}"
            )))),
            Ok(r) => Ok(r),
            Err(e) => Err(LogError::Corrupt(format!(
                "bad answer from the destruction log service: {e}"
            ))),
        }
    }
}

pub(crate) fn unexpected() -> LogError {
    LogError::Corrupt("unexpected answer from the destruction log service".into())
}

/// The destruction log a process records into: its own (`DATA/destruction-log`), or the
/// cluster's, on the key-service node. Same calls, same guarantees; all block.
pub enum LogHandle {
    Local(Arc<DestructionLog>),
    Remote(RemoteLog),
    /// The cluster's log, replicated on every key-service node (`replicated.rs`).
    Replicated(Arc<crate::replicated::ReplicatedLog>),
}

impl From<Arc<DestructionLog>> for LogHandle {
    fn from(log: Arc<DestructionLog>) -> Self {
        LogHandle::Local(log)
    }
}

impl From<DestructionLog> for LogHandle {
    fn from(log: DestructionLog) -> Self {
        LogHandle::Local(Arc::new(log))
    }
}

impl LogHandle {
    /// Appends a record once it is durable; a record of an operation already logged returns
    /// that record's index.
    pub fn append(&self, rec: DestructionRecord) -> Result<u64, LogError> {
        match self {
            LogHandle::Local(l) => l.append(rec),
            LogHandle::Remote(r) => match r.ask(&Request::Append {
                record: Box::new(rec),
            })? {
                Response::Index(i) => Ok(i),
                _ => Err(unexpected()),
            },
            LogHandle::Replicated(r) => r.append(rec),
        }
    }

    pub fn find(&self, bucket: &str, key: &str) -> Result<Vec<(u64, DestructionRecord)>, LogError> {
        match self {
            LogHandle::Local(l) => l.find(bucket, key),
            LogHandle::Replicated(r) => r.serving()?.find(bucket, key),
            LogHandle::Remote(r) => match r.ask(&Request::Find {
                bucket: bucket.into(),
                key: key.into(),
            })? {
                Response::Found(v) => Ok(v),
                _ => Err(unexpected()),
            },
        }
    }

    pub fn checkpoint(&self, now_ms: i64) -> Result<SignedCheckpoint, LogError> {
        match self {
            LogHandle::Local(l) => l.checkpoint(now_ms),
            LogHandle::Replicated(r) => r.checkpoint(now_ms),
            LogHandle::Remote(r) => match r.ask(&Request::Checkpoint { now_ms })? {
                Response::Checkpoint(c) => Ok(c),
                _ => Err(unexpected()),
            },
        }
    }

    pub fn public_key_pem(&self) -> Result<String, LogError> {
        match self {
            LogHandle::Local(l) => Ok(l.public_key_pem()),
            LogHandle::Replicated(r) => r.serving()?.public_key_pem(),
            LogHandle::Remote(r) => match r.ask(&Request::PublicKey)? {
                Response::PublicKey(p) => Ok(p),
                _ => Err(unexpected()),
            },
        }
    }

    /// A page of the log, newest first (the console's and `destruction-log` verb's listing).
    pub fn page(&self, before: Option<u64>, limit: usize) -> Result<LogPage, LogError> {
        match self {
            LogHandle::Local(l) => page(l, before, limit),
            LogHandle::Replicated(r) => r.serving()?.page(before, limit),
            LogHandle::Remote(r) => match r.ask(&Request::Page { before, limit })? {
                Response::Page(p) => Ok(*p),
                _ => Err(unexpected()),
            },
        }
    }

    /// Writes an export into the new directory `out` on this machine (a remote log's export is
    /// made on its node and sent here).
    pub fn export(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        match self {
            LogHandle::Local(l) => l.export(since_ms, bucket, out),
            LogHandle::Replicated(r) => {
                // A checkpoint on every replica first, then the export of one caught-up
                // replica as of it: the same checkpoints whichever replica answers.
                r.checkpoint(crate::log::now_ms())?;
                r.serving()?.export_at_latest(since_ms, bucket, out)
            }
            LogHandle::Remote(r) => r.export(since_ms, bucket, false, out),
        }
    }
}

impl RemoteLog {
    pub(crate) fn find(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(u64, DestructionRecord)>, LogError> {
        match self.ask(&Request::Find {
            bucket: bucket.into(),
            key: key.into(),
        })? {
            Response::Found(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn public_key_pem(&self) -> Result<String, LogError> {
        match self.ask(&Request::PublicKey)? {
            Response::PublicKey(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn page(&self, before: Option<u64>, limit: usize) -> Result<LogPage, LogError> {
        match self.ask(&Request::Page { before, limit })? {
            Response::Page(p) => Ok(*p),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn export_at_latest(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        self.export(since_ms, bucket, true, out)
    }

    fn export(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        at_latest: bool,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        let Response::Export { mut summary, files } = self.ask(&Request::Export {
            since_ms,
            bucket: bucket.map(str::to_string),
            at_latest,
        })?
        else {
            return Err(unexpected());
        };
        write_export(out, &files)?;
        summary.dir = out.to_path_buf();
        Ok(summary)
    }
}

fn write_export(out: &Path, files: &[(String, String)]) -> Result<(), LogError> {
    if out.exists() {
        return Err(LogError::Export(format!(
            "{} already exists",
            out.display()
        )));
    }
    std::fs::create_dir_all(out)?;
    for (rel, b64) in files {
        let rel = PathBuf::from(rel);
        // Only plain relative names from the log's node.
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(LogError::Export(format!(
                "bad file name {rel:?} in a remote export"
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| LogError::Export(e.to_string()))?;
        let path = out.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Direct, record};

    #[test]
    fn a_remote_log_appends_once_finds_and_exports_a_verifiable_copy() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(DestructionLog::open(&dir.path().join("log")).unwrap());
        let remote = LogHandle::Remote(RemoteLog::new(Box::new(Direct {
            log: log.clone(),
            scratch: dir.path().to_path_buf(),
            down: Default::default(),
        })));
        assert_eq!(remote.append(record("op1", "k1")).unwrap(), 0);
        assert_eq!(remote.append(record("op2", "k2")).unwrap(), 1);
        // The same operation again (a redone GC item): the first record's index, no new one.
        assert_eq!(remote.append(record("op1", "k1")).unwrap(), 0);
        assert_eq!(log.len().unwrap(), 2);
        assert_eq!(remote.find("b", "k2").unwrap()[0].0, 1);
        assert_eq!(remote.checkpoint(5).unwrap().tree_size, 2);
        let pem = remote.public_key_pem().unwrap();
        assert_eq!(pem, log.public_key_pem());
        let out = dir.path().join("exported");
        let s = remote.export(None, None, &out).unwrap();
        assert_eq!((s.records, s.dir.clone()), (2, out.clone()));
        let report = crate::verify_export(&out, &pem).unwrap();
        assert_eq!(report.records, 2);
        // The node's scratch copy is gone; an existing target is refused.
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("export-")
        }));
        assert!(remote.export(None, None, &out).is_err());
        // A bad request is an error answer, not a panic.
        let bad: Response = serde_json::from_slice(&handle(&log, dir.path(), b"{")).unwrap();
        assert!(matches!(bad, Response::Error { .. }));
    }
}
