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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
pub use strata_destruction_log::{
    ExportFilter, ExportSummary, Log, LogError, LogOptions, LogRecord, SignedCheckpoint,
};

use crate::now_ms;

mod retention;
mod verify;
pub use retention::AuditRetentionWorker;
pub use verify::{AuditVerifyError, AuditVerifyReport, SegmentReport, verify_audit_export};

/// Where a server keeps its audit log: `DATA_DIR/audit-log`.
pub const AUDIT_DIR_NAME: &str = "audit-log";
/// The segment list in the audit log's directory, and its copy in an export.
pub const SEGMENTS_FILE: &str = "segments.json";
pub const EXPORT_SEGMENTS_FILE: &str = "segments.jsonl";
/// Operation of a segment's record 0 (from segment 2 on): it names the previous segment's
/// final signed checkpoint, so every checkpoint of this segment commits to it.
pub const OP_SEGMENT_START: &str = "AUDIT.segment-start";
/// Operation of the record that says a segment was deleted by retention, with its anchor.
pub const OP_RETENTION_DELETE: &str = "AUDIT.retention-delete";
/// The least retention a configuration may ask for: authentication records are kept at least
/// three months.
pub const MIN_RETENTION_DAYS: u64 = 90;
pub const DEFAULT_RETENTION_DAYS: u64 = 365;
pub const DEFAULT_SEGMENT_RECORDS: u64 = 1_000_000;
pub const DAY_MS: i64 = 86_400_000;
const SEGMENTS_FORMAT: u32 = 1;
/// The files of the single-log layout (before segments), moved into `seg-000001/` on open;
/// the records last, so that a crash mid-move is finished by the next open.
const FLAT_FILES: [&str; 5] = [
    "index.bin",
    "tree.bin",
    "state.json",
    "checkpoints.log",
    "records.log",
];
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
    /// `AUDIT.segment-start`: the previous segment; `AUDIT.retention-delete`: the deleted one.
    /// Absent in request records (so their leaves are as before segments existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<SegmentLink>,
}

/// A segment named by its final signed checkpoint (docs/audit.md, "Retention").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SegmentLink {
    pub segment: u32,
    /// Global index of the segment's record 0.
    pub first_index: u64,
    /// Records in the segment (its final tree size).
    pub tree_size: u64,
    pub root_hash: String,
    /// The final checkpoint's time and signature.
    pub timestamp_ms: i64,
    pub signature: String,
    /// Time of the segment's first record, and of its sealing (after its last record).
    pub first_time_ms: i64,
    pub last_time_ms: i64,
}

impl SegmentLink {
    fn new(e: &SegmentEntry, cp: &SignedCheckpoint) -> Self {
        Self {
            segment: e.id,
            first_index: e.first_index,
            tree_size: cp.tree_size,
            root_hash: cp.root_hash.clone(),
            timestamp_ms: cp.timestamp_ms,
            signature: cp.signature.clone(),
            first_time_ms: e.first_time_ms.unwrap_or(cp.timestamp_ms),
            last_time_ms: cp.timestamp_ms,
        }
    }

    /// Whether this names exactly segment `id` (at `first_index`) with checkpoint `cp`.
    pub fn names(&self, id: u32, first_index: u64, cp: &SignedCheckpoint) -> bool {
        self.segment == id
            && self.first_index == first_index
            && self.tree_size == cp.tree_size
            && self.root_hash == cp.root_hash
            && self.timestamp_ms == cp.timestamp_ms
            && self.signature == cp.signature
    }
}

/// Where a segment is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SegmentState {
    /// Takes appends (the highest-numbered segment).
    Active,
    /// Complete, with its final checkpoint.
    Sealed,
    /// Retention is deleting it (steps 2 to 4 may be left).
    Deleting,
    /// Its records are gone; the entry stays as the anchor that proves what existed.
    Deleted,
}

/// One entry of `segments.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub id: u32,
    /// Global index of the segment's record 0.
    pub first_index: u64,
    pub first_time_ms: Option<i64>,
    /// Set when sealed: the final checkpoint's time, after every record of the segment.
    pub last_time_ms: Option<i64>,
    pub state: SegmentState,
    /// The final signed checkpoint, once sealed: the segment's anchor.
    pub checkpoint: Option<SignedCheckpoint>,
}

impl SegmentEntry {
    fn present(&self) -> bool {
        matches!(self.state, SegmentState::Active | SegmentState::Sealed)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsFile {
    format: u32,
    segments: Vec<SegmentEntry>,
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

/// Tuning of the segments; the default suits production.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The active segment is sealed once it holds this many records.
    pub segment_records: u64,
    /// ... or once its record 0 is this old (so retention is exact to about this).
    pub segment_age_ms: i64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            segment_records: DEFAULT_SEGMENT_RECORDS,
            segment_age_ms: DAY_MS,
        }
    }
}

/// The segments: their list (what `segments.json` holds) and the open logs of those present.
struct Segs {
    entries: Vec<SegmentEntry>,
    logs: BTreeMap<u32, Arc<Log<AuditRecord>>>,
}

impl Segs {
    fn active(&self) -> (SegmentEntry, Arc<Log<AuditRecord>>) {
        let e = self
            .entries
            .last()
            .expect("there is always an active segment");
        (e.clone(), self.logs[&e.id].clone())
    }
    /// The present segments, oldest first.
    fn present(&self) -> Vec<(SegmentEntry, Arc<Log<AuditRecord>>)> {
        self.entries
            .iter()
            .filter(|e| e.present())
            .map(|e| (e.clone(), self.logs[&e.id].clone()))
            .collect()
    }
}

struct Shared {
    dir: PathBuf,
    opts: AuditOptions,
    segs: Mutex<Segs>,
}

impl Shared {
    fn segs(&self) -> Result<std::sync::MutexGuard<'_, Segs>, LogError> {
        self.segs
            .lock()
            .map_err(|_| LogError::Poisoned("audit segments lock".into()))
    }
}

/// The audit log (segments of `Log<AuditRecord>`) with its group-commit writer.
pub struct AuditLog {
    shared: Arc<Shared>,
    public_key_pem: String,
    origin: String,
    tx: Mutex<Option<SyncSender<(AuditRecord, Ack)>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    // Held for the log's life: a second process gets `Locked`.
    _lock: File,
}

/// What an audit export wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditExportSummary {
    pub dir: PathBuf,
    pub records: u64,
    pub filter_since_ms: Option<i64>,
    /// Every segment ever made, with whether the export holds it.
    pub segments: Vec<ExportedSegment>,
}

/// One line of an export's `segments.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportedSegment {
    pub id: u32,
    pub first_index: u64,
    pub first_time_ms: Option<i64>,
    pub last_time_ms: Option<i64>,
    pub state: SegmentState,
    pub checkpoint: Option<SignedCheckpoint>,
    /// The export holds this segment in `seg-NNNNNN/` (the destruction log's export format).
    pub exported: bool,
    /// Records of it in the export.
    pub records: u64,
}

/// What one retention step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub segment: u32,
    pub records: u64,
}

pub fn segment_dir_name(id: u32) -> String {
    format!("seg-{id:06}")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(format!("audit log: {what}"))
}

fn write_segments(dir: &Path, entries: &[SegmentEntry]) -> Result<(), LogError> {
    let f = SegmentsFile {
        format: SEGMENTS_FORMAT,
        segments: entries.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&f).expect("segments serialize");
    Ok(write_atomic(&dir.join(SEGMENTS_FILE), &bytes)?)
}

fn open_segment(dir: &Path, id: u32) -> Result<Log<AuditRecord>, LogError> {
    Log::open_with_options(
        &dir.join(segment_dir_name(id)),
        LogOptions {
            key_dir: Some(dir.to_path_buf()),
            ..LogOptions::default()
        },
    )
}

/// Moves a single-log directory (before segments) into `seg-000001/`. Each move is a rename,
/// and `segments.json` is written only after all of them, so an open after a crash finishes
/// the move.
fn migrate_flat(dir: &Path) -> Result<(), LogError> {
    let seg = dir.join(segment_dir_name(1));
    let mut moved = false;
    for name in FLAT_FILES {
        if dir.join(name).exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&seg)?;
            fs::rename(dir.join(name), seg.join(name))?;
            moved = true;
        }
    }
    if moved {
        sync_dir(&seg)?;
        sync_dir(dir)?;
        tracing::info!(dir = %dir.display(), "audit log: the single-log layout moved into segment 1");
    }
    Ok(())
}

fn check_entries(entries: &[SegmentEntry]) -> Result<(), LogError> {
    for (i, e) in entries.iter().enumerate() {
        if e.id as usize != i + 1 {
            return Err(corrupt(format!(
                "{SEGMENTS_FILE}: entry {i} is segment {}",
                e.id
            )));
        }
        let last = i + 1 == entries.len();
        if last != (e.state == SegmentState::Active) {
            return Err(corrupt(format!(
                "{SEGMENTS_FILE}: segment {} is {:?}; only the last one is active",
                e.id, e.state
            )));
        }
        if !last && e.checkpoint.is_none() {
            return Err(corrupt(format!(
                "{SEGMENTS_FILE}: sealed segment {} has no final checkpoint",
                e.id
            )));
        }
    }
    if entries.is_empty() {
        return Err(corrupt(format!("{SEGMENTS_FILE} lists no segment")));
    }
    Ok(())
}

impl AuditLog {
    /// Opens (creating on first use) the log in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        Self::open_with(dir, AuditOptions::default())
    }

    /// Opens the log: moves a single-log layout into segment 1, finishes a roll a crash cut
    /// short, opens every present segment, and starts the writer.
    pub fn open_with(dir: &Path, opts: AuditOptions) -> Result<Self, LogError> {
        let lock = strata_destruction_log::lock_dir(dir)?;
        let path = dir.join(SEGMENTS_FILE);
        let mut entries = match fs::read(&path) {
            Ok(b) => {
                let f: SegmentsFile = serde_json::from_slice(&b)
                    .map_err(|e| corrupt(format!("{SEGMENTS_FILE}: {e}")))?;
                if f.format != SEGMENTS_FORMAT {
                    return Err(corrupt(format!(
                        "{SEGMENTS_FILE}: format {} is not {SEGMENTS_FORMAT}",
                        f.format
                    )));
                }
                f.segments
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                migrate_flat(dir)?;
                let first = vec![SegmentEntry {
                    id: 1,
                    first_index: 0,
                    first_time_ms: None,
                    last_time_ms: None,
                    state: SegmentState::Active,
                    checkpoint: None,
                }];
                // The key first (segment 1 creates it in the parent), then the list.
                drop(open_segment(dir, 1)?);
                write_segments(dir, &first)?;
                first
            }
            Err(e) => return Err(e.into()),
        };
        check_entries(&entries)?;
        let mut logs = BTreeMap::new();
        for e in entries.iter().filter(|e| e.present()) {
            // A present segment whose directory is gone was removed by hand: never recreate it.
            if !dir
                .join(segment_dir_name(e.id))
                .join("records.log")
                .exists()
            {
                return Err(corrupt(format!(
                    "segment {} is {:?} but its directory {} is missing (removed without a \
                     deletion record)",
                    e.id,
                    e.state,
                    segment_dir_name(e.id)
                )));
            }
            logs.insert(e.id, Arc::new(open_segment(dir, e.id)?));
        }
        repair_roll(dir, &mut entries, &mut logs)?;
        let (active, log) = {
            let e = entries.last().expect("checked");
            (e.clone(), logs[&e.id].clone())
        };
        if active.first_time_ms.is_none() && !log.is_empty()? {
            let t = log.get(0)?.time_ms;
            entries.last_mut().expect("checked").first_time_ms = Some(t);
        }
        let public_key_pem = log.public_key_pem();
        let origin = log.origin().to_string();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts: AuditOptions {
                segment_records: opts.segment_records.max(2),
                segment_age_ms: opts.segment_age_ms.max(1),
            },
            segs: Mutex::new(Segs { entries, logs }),
        });
        let (tx, rx) = mpsc::sync_channel::<(AuditRecord, Ack)>(QUEUE);
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&s, rx))?;
        Ok(Self {
            shared,
            public_key_pem,
            origin,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            _lock: lock,
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

    /// The log's public key (SPKI PEM), for auditors; one key for every segment.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// `strata.audit-log/<fingerprint>`: the name in every checkpoint.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Records in the present segments.
    pub fn len(&self) -> Result<u64, LogError> {
        let present = self.shared.segs()?.present();
        let mut n = 0;
        for (_, l) in present {
            n += l.len()?;
        }
        Ok(n)
    }

    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }

    /// The global index the next record gets.
    pub fn next_index(&self) -> Result<u64, LogError> {
        let (e, l) = self.shared.segs()?.active();
        Ok(e.first_index + l.len()?)
    }

    /// Every segment ever made (what `segments.json` holds).
    pub fn segments(&self) -> Result<Vec<SegmentEntry>, LogError> {
        Ok(self.shared.segs()?.entries.clone())
    }

    /// Record at global index `i`, if its segment is present.
    pub fn get(&self, i: u64) -> Result<AuditRecord, LogError> {
        for (e, l) in self.shared.segs()?.present().into_iter().rev() {
            if i >= e.first_index {
                return l.get(i - e.first_index);
            }
        }
        Err(LogError::InvalidRecord(format!("no record {i}")))
    }

    /// Writes every present segment (records filtered by `filter`; each segment's record 0,
    /// the link, always) into `out/seg-NNNNNN/` in the destruction log's export format, and
    /// `out/segments.jsonl`, one line per segment ever made (a deleted one's line is its
    /// anchor). A sealed segment sealed before `since` holds no wanted record and is left out
    /// (its line says so). Blocking.
    pub fn export(
        &self,
        filter: &ExportFilter,
        out: &Path,
    ) -> Result<AuditExportSummary, LogError> {
        match fs::read_dir(out) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(LogError::Export(format!(
                        "{} exists and is not empty",
                        out.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(out)?,
            Err(e) => return Err(e.into()),
        }
        let (entries, logs) = {
            let g = self.shared.segs()?;
            (g.entries.clone(), g.logs.clone())
        };
        // Record 0 of segment 2 on is the link the verifier needs.
        let linked = ExportFilter {
            include_first: true,
            ..filter.clone()
        };
        let mut lines = Vec::new();
        let mut total = 0;
        for e in entries {
            let skip = e.state == SegmentState::Sealed
                && filter
                    .since_ms
                    .zip(e.last_time_ms)
                    .is_some_and(|(since, last)| last < since);
            let (exported, records) = match logs.get(&e.id) {
                Some(l) if e.present() && !skip => {
                    let f = if e.id > 1 { &linked } else { filter };
                    let s = l.export_filtered(f, &out.join(segment_dir_name(e.id)))?;
                    (true, s.records)
                }
                _ => (false, 0),
            };
            total += records;
            lines.push(ExportedSegment {
                id: e.id,
                first_index: e.first_index,
                first_time_ms: e.first_time_ms,
                last_time_ms: e.last_time_ms,
                state: e.state,
                checkpoint: e.checkpoint,
                exported,
                records,
            });
        }
        let mut bytes = Vec::new();
        for l in &lines {
            bytes.extend_from_slice(&serde_json::to_vec(l).expect("serializes"));
            bytes.push(b'\n');
        }
        let mut file = File::create(out.join(EXPORT_SEGMENTS_FILE))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        sync_dir(out)?;
        Ok(AuditExportSummary {
            dir: out.to_path_buf(),
            records: total,
            filter_since_ms: filter.since_ms,
            segments: lines,
        })
    }

    /// The newest records (newest first, with their global index) with `time_ms >= since_ms`
    /// that `pred` accepts, at most `limit`; across the present segments, newest first.
    /// Blocking.
    pub fn search(
        &self,
        since_ms: i64,
        limit: usize,
        pred: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Vec<(u64, AuditRecord)>, LogError> {
        let present = self.shared.segs()?.present();
        let floor = since_ms.saturating_sub(SEARCH_SLACK_MS);
        let limit = limit.min(SEARCH_LIMIT);
        let mut out = Vec::new();
        let mut scanned = 0u64;
        'segments: for (e, log) in present.into_iter().rev() {
            if e.last_time_ms.is_some_and(|t| t < floor) {
                break;
            }
            let mut i = log.len()?;
            while i > 0 {
                if out.len() >= limit || scanned >= SEARCH_SCAN {
                    break 'segments;
                }
                i -= 1;
                scanned += 1;
                let rec = log.get(i)?;
                if rec.time_ms < floor {
                    break 'segments;
                }
                if rec.time_ms >= since_ms && pred(&rec) {
                    out.push((e.first_index + i, rec));
                }
            }
        }
        Ok(out)
    }

    /// One retention step: deletes the oldest sealed segment sealed before `now_ms -
    /// retention_ms` (never the active one nor the newest sealed one), or finishes a deletion
    /// a crash cut short. `None` when nothing is due.
    pub async fn retention_step(
        &self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<Option<Deleted>, String> {
        self.delete_steps(now_ms, retention_ms, 4).await
    }

    /// The deletion's steps 1..=`upto` (each durable before the next); `upto < 4` only in
    /// tests, to stop as a crash would.
    async fn delete_steps(
        &self,
        now_ms: i64,
        retention_ms: i64,
        upto: u8,
    ) -> Result<Option<Deleted>, String> {
        let sh = self.shared.clone();
        let e = {
            let mut g = sh.segs().map_err(|e| e.to_string())?;
            let active = g.entries.last().expect("active").id;
            let due = g.entries.iter().position(|e| {
                e.state == SegmentState::Deleting
                    || (e.state == SegmentState::Sealed
                        && e.id + 1 < active
                        && e.last_time_ms.is_some_and(|t| t < now_ms - retention_ms))
            });
            let Some(pos) = due else { return Ok(None) };
            if g.entries[pos].state == SegmentState::Sealed {
                // Step 1: the segment is being deleted.
                g.entries[pos].state = SegmentState::Deleting;
                if let Err(err) = write_segments(&sh.dir, &g.entries) {
                    g.entries[pos].state = SegmentState::Sealed;
                    return Err(err.to_string());
                }
            }
            g.entries[pos].clone()
        };
        if upto < 2 {
            return Ok(None);
        }
        let cp = e
            .checkpoint
            .clone()
            .ok_or("a sealed segment without its checkpoint")?;
        let link = SegmentLink::new(&e, &cp);
        // Step 2: the deletion record, once (a crash after it must not write a second one).
        let s = sh.clone();
        let id = e.id;
        let found = tokio::task::spawn_blocking(move || find_deletion_record(&s, id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !found {
            self.append(AuditRecord {
                time_ms: now_ms,
                request_id: format!("retention-{}", segment_dir_name(e.id)),
                operation: OP_RETENTION_DELETE.into(),
                remote: "-".into(),
                status: 200,
                link: Some(link),
                ..Default::default()
            })
            .await?;
        }
        if upto < 3 {
            return Ok(None);
        }
        // Step 3: the records go.
        let s = sh.clone();
        tokio::task::spawn_blocking(move || -> Result<(), LogError> {
            let log = s.segs()?.logs.remove(&id);
            drop(log);
            match fs::remove_dir_all(s.dir.join(segment_dir_name(id))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            Ok(sync_dir(&s.dir)?)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if upto < 4 {
            return Ok(None);
        }
        // Step 4: the entry stays as the anchor.
        let mut g = sh.segs().map_err(|e| e.to_string())?;
        let pos = (id - 1) as usize;
        g.entries[pos].state = SegmentState::Deleted;
        write_segments(&sh.dir, &g.entries).map_err(|e| e.to_string())?;
        tracing::info!(target: "strata::audit", segment = id, records = cp.tree_size,
            "audit log: segment past retention deleted");
        Ok(Some(Deleted {
            segment: id,
            records: cp.tree_size,
        }))
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

/// Whether a segment newer than `id` holds the deletion record of segment `id` (newest
/// first, at most `SEARCH_SCAN` records read).
fn find_deletion_record(sh: &Shared, id: u32) -> Result<bool, LogError> {
    let present = sh.segs()?.present();
    let mut scanned = 0u64;
    for (e, log) in present.into_iter().rev() {
        if e.id <= id {
            break;
        }
        let mut i = log.len()?;
        while i > 0 && scanned < SEARCH_SCAN {
            i -= 1;
            scanned += 1;
            let r = log.get(i)?;
            if r.operation == OP_RETENTION_DELETE
                && r.link.as_ref().is_some_and(|l| l.segment == id)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A roll a crash cut short: `seg-(active+1)/` exists but `segments.json` does not list it.
/// If its link record names the active segment's latest checkpoint, step 3 is completed;
/// otherwise it is removed (the next roll makes it again).
fn repair_roll(
    dir: &Path,
    entries: &mut Vec<SegmentEntry>,
    logs: &mut BTreeMap<u32, Arc<Log<AuditRecord>>>,
) -> Result<(), LogError> {
    let active = entries.last().expect("checked").clone();
    let next = dir.join(segment_dir_name(active.id + 1));
    if !next.exists() {
        return Ok(());
    }
    let cp = logs[&active.id].latest_checkpoint()?;
    let complete = {
        let l = open_segment(dir, active.id + 1)?;
        let linked = match (&cp, l.len()?) {
            (Some(cp), 1) => {
                let r = l.get(0)?;
                r.operation == OP_SEGMENT_START
                    && r.link
                        .as_ref()
                        .is_some_and(|k| k.names(active.id, active.first_index, cp))
            }
            _ => false,
        };
        linked.then_some(l)
    };
    match (complete, cp) {
        (Some(l), Some(cp)) => {
            let t = l.get(0)?.time_ms;
            seal(entries, &cp, t);
            logs.insert(active.id + 1, Arc::new(l));
            write_segments(dir, entries)?;
            tracing::info!(
                segment = active.id + 1,
                "audit log: finished a roll cut short"
            );
        }
        _ => {
            fs::remove_dir_all(&next)?;
            sync_dir(dir)?;
            tracing::warn!(
                segment = active.id + 1,
                "audit log: removed a segment a crash left without its link"
            );
        }
    }
    Ok(())
}

/// `segments.json` after a roll: the active segment sealed with `cp`, the next one active.
fn seal(entries: &mut Vec<SegmentEntry>, cp: &SignedCheckpoint, next_first_ms: i64) {
    let last = entries.last_mut().expect("active");
    last.state = SegmentState::Sealed;
    last.last_time_ms = Some(cp.timestamp_ms);
    last.checkpoint = Some(cp.clone());
    let (id, first_index) = (last.id + 1, last.first_index + cp.tree_size);
    entries.push(SegmentEntry {
        id,
        first_index,
        first_time_ms: Some(next_first_ms),
        last_time_ms: None,
        state: SegmentState::Active,
        checkpoint: None,
    });
}

/// Seals the active segment and starts the next one (docs/audit.md, "Sealing and the chain").
/// Runs on the writer thread between batches.
fn roll(sh: &Shared, stop_after: u8) -> Result<(), LogError> {
    let (e, log) = sh.segs()?.active();
    // Step 1: the final checkpoint.
    let now = now_ms();
    let cp = log.checkpoint(now)?;
    if stop_after < 2 {
        return Ok(());
    }
    // Step 2: the next segment, its record 0 naming that checkpoint.
    let next = sh.dir.join(segment_dir_name(e.id + 1));
    if next.exists() {
        fs::remove_dir_all(&next)?;
    }
    let l = open_segment(&sh.dir, e.id + 1)?;
    let link = AuditRecord {
        time_ms: now,
        request_id: format!("link-{}", segment_dir_name(e.id + 1)),
        operation: OP_SEGMENT_START.into(),
        remote: "-".into(),
        status: 200,
        link: Some(SegmentLink::new(&e, &cp)),
        ..Default::default()
    };
    l.append_batch(vec![link])?;
    l.checkpoint(now)?;
    if stop_after < 3 {
        return Ok(());
    }
    // Step 3: the list.
    let mut g = sh.segs()?;
    let mut entries = g.entries.clone();
    seal(&mut entries, &cp, now);
    write_segments(&sh.dir, &entries)?;
    g.entries = entries;
    g.logs.insert(e.id + 1, Arc::new(l));
    tracing::debug!(
        segment = e.id,
        records = cp.tree_size,
        "audit log: segment sealed"
    );
    Ok(())
}

fn roll_due(sh: &Shared) -> Result<bool, LogError> {
    let (e, log) = sh.segs()?.active();
    let n = log.len()?;
    let base = u64::from(e.id > 1);
    let old = e
        .first_time_ms
        .is_some_and(|t| t <= now_ms() - sh.opts.segment_age_ms);
    Ok(n >= sh.opts.segment_records.max(base + 1) || (n > base && old))
}

fn write_loop(sh: &Shared, rx: mpsc::Receiver<(AuditRecord, Ack)>) {
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
            let res = sh
                .segs()
                .and_then(|g| {
                    let (e, log) = g.active();
                    drop(g);
                    if e.first_time_ms.is_none()
                        && let Some(r) = recs.first()
                    {
                        // Segment 1's first record: what its age is counted from.
                        if let Ok(mut g) = sh.segs() {
                            g.entries.last_mut().expect("active").first_time_ms = Some(r.time_ms);
                        }
                    }
                    log.append_batch(recs)
                })
                .map(|_| ())
                .map_err(|e| {
                    tracing::error!(error = %e, "audit log append failed; requests are refused");
                    e.to_string()
                });
            unsigned |= res.is_ok();
            for a in acks {
                let _ = a.send(res.clone());
            }
        }
        match roll_due(sh) {
            Ok(true) => match roll(sh, 3) {
                Ok(()) => {
                    unsigned = false;
                    last_checkpoint = Instant::now();
                }
                Err(e) => tracing::error!(error = %e, "audit log: sealing a segment failed"),
            },
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "audit log: segment state unreadable"),
        }
        if unsigned && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            match sh.segs().and_then(|g| g.active().1.checkpoint(now_ms())) {
                Ok(_) => unsigned = false,
                Err(e) => tracing::error!(error = %e, "audit log checkpoint failed"),
            }
            last_checkpoint = Instant::now();
        }
    }
    if unsigned && let Err(e) = sh.segs().and_then(|g| g.active().1.checkpoint(now_ms())) {
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

    fn opts(n: u64) -> AuditOptions {
        AuditOptions {
            segment_records: n,
            ..AuditOptions::default()
        }
    }

    async fn fill(a: &AuditLog, from: u64, n: u64) {
        for i in from..from + n {
            a.append(rec(i, i % 7 == 3)).await.unwrap();
        }
    }

    fn verify(
        a: &AuditLog,
        out: &Path,
        filter: &ExportFilter,
    ) -> Result<AuditVerifyReport, AuditVerifyError> {
        a.export(filter, out).unwrap();
        verify_audit_export(out, a.public_key_pem())
    }

    const FUTURE: i64 = 400 * DAY_MS;

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
        assert_eq!(a.len().unwrap(), 200);
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
        let pem = a.public_key_pem().to_string();
        let report = verify_audit_export(&out, &pem).unwrap();
        assert_eq!(report.records, 200);
        assert!(report.origin.starts_with("strata.audit-log/"));
        // A segment of an audit export never passes as a destruction-log export.
        assert!(strata_destruction_log::verify_export(&out.join("seg-000001"), &pem).is_err());
        a.close();
        drop(a);
        // Reopened: everything is still there.
        let again = AuditLog::open(dir.path()).unwrap();
        assert_eq!(again.len().unwrap(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_roll_with_global_indices_and_verify_as_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open_with(dir.path(), opts(10)).unwrap();
        fill(&a, 0, 35).await;
        // 10 records, then link + 9, link + 9, link + 7 (the active one).
        let segs = a.segments().unwrap();
        assert_eq!(segs.len(), 4, "{segs:?}");
        assert_eq!(
            segs.iter().map(|e| e.first_index).collect::<Vec<_>>(),
            [0, 10, 20, 30]
        );
        assert!(segs[..3].iter().all(|e| e.state == SegmentState::Sealed));
        assert_eq!(a.next_index().unwrap(), 38);
        // Record 0 of segment 2 is the link naming segment 1's final checkpoint.
        let link = a.get(10).unwrap();
        assert_eq!(link.operation, OP_SEGMENT_START);
        let l = link.link.unwrap();
        assert!(l.names(1, 0, segs[0].checkpoint.as_ref().unwrap()));
        assert_eq!(l.tree_size, 10);
        // Global numbering: the request record k0 is index 0, k10 is index 11 (after a link).
        assert_eq!(a.get(11).unwrap().request_id, "req-10");
        let found = a.search(0, 1000, |r| r.request_id == "req-30").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(a.get(found[0].0).unwrap().request_id, "req-30");
        let all = a
            .search(0, 1000, |r| r.operation == "REST.PUT.OBJECT")
            .unwrap();
        assert_eq!(all.len(), 35);
        let r = verify(&a, &dir.path().join("x1"), &ExportFilter::default()).unwrap();
        assert_eq!(r.records, 38);
        assert_eq!(r.segments.len(), 4);
        // A filtered export still carries each link record, and verifies.
        let f = ExportFilter {
            bucket: Some("nope".into()),
            ..Default::default()
        };
        let r = verify(&a, &dir.path().join("x2"), &f).unwrap();
        assert_eq!(r.records, 3, "only the three links");
        // Reopened: the same segments, appends continue in the active one.
        drop(a);
        let a = AuditLog::open_with(dir.path(), opts(10)).unwrap();
        assert_eq!(a.segments().unwrap(), segs);
        fill(&a, 35, 3).await;
        assert_eq!(a.segments().unwrap().len(), 5);
        assert!(verify(&a, &dir.path().join("x3"), &ExportFilter::default()).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_link_or_anchor_is_found_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open_with(dir.path(), opts(5)).unwrap();
        fill(&a, 0, 14).await;
        let out = dir.path().join("x");
        verify(&a, &out, &ExportFilter::default()).unwrap();
        let list = out.join(EXPORT_SEGMENTS_FILE);
        let orig = fs::read_to_string(&list).unwrap();
        // An edited anchor (segment 1's root) no longer verifies.
        let mut lines: Vec<ExportedSegment> = orig
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines[0].checkpoint.as_mut().unwrap().root_hash = "00".repeat(32);
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        fs::write(&list, text).unwrap();
        let e = verify_audit_export(&out, a.public_key_pem()).unwrap_err();
        assert_eq!(e.segment, Some(1), "{e}");
        // A segment dropped from the export and listed as deleted: no deletion record.
        let mut lines: Vec<ExportedSegment> = orig
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines[0].state = SegmentState::Deleted;
        lines[0].exported = false;
        lines[0].records = 0;
        let text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        fs::write(&list, text).unwrap();
        fs::remove_dir_all(out.join("seg-000001")).unwrap();
        let e = verify_audit_export(&out, a.public_key_pem()).unwrap_err();
        assert_eq!(e.segment, Some(1), "{e}");
        assert!(e.message.contains("no deletion record"), "{e}");
        // A segment left out of an unfiltered export.
        fs::write(&list, &orig).unwrap();
        let e = verify_audit_export(&out, a.public_key_pem()).unwrap_err();
        assert_eq!(e.segment, Some(1), "{e}");
        // A link record naming something else: segment 3's record 0 altered.
        let out2 = dir.path().join("y");
        verify(&a, &out2, &ExportFilter::default()).unwrap();
        let recs = out2.join("seg-000002/records.jsonl");
        let t =
            fs::read_to_string(&recs)
                .unwrap()
                .replacen("\"tree_size\":5", "\"tree_size\":4", 1);
        fs::write(&recs, t).unwrap();
        let e = verify_audit_export(&out2, a.public_key_pem()).unwrap_err();
        assert_eq!(e.segment, Some(2), "{e}");
        assert!(e.to_string().contains("altered"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_deletes_the_oldest_sealed_segment_with_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open_with(dir.path(), opts(5)).unwrap();
        fill(&a, 0, 14).await; // segments 1..3 (5, 5, 4+...) and the active 4
        let before = a.segments().unwrap();
        assert_eq!(before.len(), 4);
        // Not yet due.
        assert_eq!(a.retention_step(now_ms(), DAY_MS).await.unwrap(), None);
        let now = now_ms() + FUTURE;
        let d = a.retention_step(now, DAY_MS).await.unwrap().unwrap();
        assert_eq!(
            d,
            Deleted {
                segment: 1,
                records: 5
            }
        );
        let d = a.retention_step(now, DAY_MS).await.unwrap().unwrap();
        assert_eq!(d.segment, 2);
        // The newest sealed segment (3) and the active one stay.
        assert_eq!(a.retention_step(now, DAY_MS).await.unwrap(), None);
        assert!(!dir.path().join("seg-000001").exists());
        assert!(!dir.path().join("seg-000002").exists());
        let segs = a.segments().unwrap();
        assert_eq!(segs[0].state, SegmentState::Deleted);
        assert_eq!(segs[0].checkpoint, before[0].checkpoint, "the anchor stays");
        let dels = a
            .search(0, 100, |r| r.operation == OP_RETENTION_DELETE)
            .unwrap();
        assert_eq!(dels.len(), 2);
        let l = dels[1].1.link.as_ref().unwrap();
        assert!(l.names(1, 0, before[0].checkpoint.as_ref().unwrap()));
        assert_eq!((l.first_index, l.tree_size), (0, 5));
        assert!(a.get(0).is_err(), "deleted records are gone");
        let r = verify(&a, &dir.path().join("x"), &ExportFilter::default()).unwrap();
        assert!(!r.segments[0].exported && r.segments[0].deletion_record);
        assert_eq!(r.segments[0].tree_size, 5);
        // Restarted: the deleted segments stay deleted, the rest opens.
        drop(a);
        let a = AuditLog::open_with(dir.path(), opts(5)).unwrap();
        assert_eq!(a.segments().unwrap()[1].state, SegmentState::Deleted);
        assert!(verify(&a, &dir.path().join("y"), &ExportFilter::default()).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_deletion_steps_finishes_it_exactly_once() {
        for upto in 1..=3u8 {
            let dir = tempfile::tempdir().unwrap();
            let a = AuditLog::open_with(dir.path(), opts(5)).unwrap();
            fill(&a, 0, 14).await;
            let now = now_ms() + FUTURE;
            assert_eq!(a.delete_steps(now, DAY_MS, upto).await.unwrap(), None);
            assert_eq!(a.segments().unwrap()[0].state, SegmentState::Deleting);
            drop(a); // the crash
            let a = AuditLog::open_with(dir.path(), opts(5)).unwrap();
            let d = a.retention_step(now, DAY_MS).await.unwrap().unwrap();
            assert_eq!(d.segment, 1, "after step {upto}");
            let dels = a
                .search(0, 100, |r| r.operation == OP_RETENTION_DELETE)
                .unwrap();
            assert_eq!(dels.len(), 1, "after step {upto}: {dels:?}");
            assert_eq!(a.segments().unwrap()[0].state, SegmentState::Deleted);
            assert!(!dir.path().join("seg-000001").exists());
            assert!(verify(&a, &dir.path().join("x"), &ExportFilter::default()).is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_while_rolling_is_repaired_on_open() {
        for stop_after in 1..=2u8 {
            let dir = tempfile::tempdir().unwrap();
            let a = AuditLog::open_with(dir.path(), opts(1000)).unwrap();
            fill(&a, 0, 4).await;
            roll(&a.shared, stop_after).unwrap();
            assert_eq!(a.segments().unwrap().len(), 1);
            drop(a);
            let a = AuditLog::open_with(dir.path(), opts(1000)).unwrap();
            let segs = a.segments().unwrap();
            // After step 2 the link is there: the roll is completed; after step 1 nothing.
            assert_eq!(segs.len(), stop_after as usize, "stop after {stop_after}");
            fill(&a, 4, 2).await;
            assert_eq!(a.next_index().unwrap(), 6 + u64::from(stop_after == 2));
            assert!(verify(&a, &dir.path().join("x"), &ExportFilter::default()).is_ok());
        }
        // A next segment without its link record is removed and made again.
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open_with(dir.path(), opts(1000)).unwrap();
        fill(&a, 0, 2).await;
        drop(a);
        drop(open_segment(dir.path(), 2).unwrap());
        let a = AuditLog::open_with(dir.path(), opts(1000)).unwrap();
        assert!(!dir.path().join("seg-000002").exists());
        assert_eq!(a.segments().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_log_directory_becomes_segment_one() {
        let dir = tempfile::tempdir().unwrap();
        let pem = {
            let old = Log::<AuditRecord>::open(dir.path()).unwrap();
            old.append_batch((0..5).map(|i| rec(i, false)).collect())
                .unwrap();
            old.checkpoint(now_ms()).unwrap();
            old.public_key_pem()
        };
        let a = AuditLog::open_with(dir.path(), opts(4)).unwrap();
        assert_eq!(a.public_key_pem(), pem, "the same key");
        assert_eq!(a.len().unwrap(), 5);
        assert!(dir.path().join("seg-000001/records.log").exists());
        assert!(!dir.path().join("records.log").exists());
        fill(&a, 5, 2).await; // segment 1 is full: it rolls
        assert_eq!(a.segments().unwrap().len(), 2);
        assert!(verify(&a, &dir.path().join("x"), &ExportFilter::default()).is_ok());
        // A present segment removed by hand is refused at open, named.
        drop(a);
        fs::remove_dir_all(dir.path().join("seg-000001")).unwrap();
        let e = AuditLog::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("segment 1"), "{e}");
    }
}
