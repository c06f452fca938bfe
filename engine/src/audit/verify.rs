//! Offline verification of an audit export across segments (docs/audit.md, "Export, search,
//! verify"): each exported segment is checked as a destruction-log export is (signatures,
//! consistency, every record's inclusion); then the chain: segment k+1's record 0 names
//! segment k's final signed checkpoint exactly, a segment not in the export is deleted (or,
//! in an export `--since`, sealed before it) and its anchor's signature verifies, a deletion
//! record matches the anchor it names, and the newest deleted segment's deletion record is
//! there (an unfiltered export). The first problem names its segment.
//!
//! An export made before segments (one `records.jsonl` at the top) verifies as before.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_destruction_log::{VerifyError, VerifyReport, parse_public_key_pem, verify_export_of};

use super::{
    AuditRecord, EXPORT_SEGMENTS_FILE, ExportedSegment, OP_RETENTION_DELETE, OP_SEGMENT_START,
    SegmentLink, SegmentState, segment_dir_name,
};

/// Lines of `segments.jsonl` at most, and bytes per line.
const MAX_SEGMENTS: usize = 1 << 20;
const MAX_LINE: usize = 4 << 10;
const MAX_FILE: u64 = 64 << 20;

/// What a successful verification established.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditVerifyReport {
    pub origin: String,
    /// Records checked (each proven included in its segment's latest checkpoint).
    pub records: u64,
    /// Every segment, exported or not.
    pub segments: Vec<SegmentReport>,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    pub id: u32,
    pub state: SegmentState,
    pub first_index: u64,
    pub exported: bool,
    /// Records of it checked (0 when not exported).
    pub records: u64,
    /// Exported: its latest checkpoint; not exported: its anchor (final checkpoint).
    pub tree_size: u64,
    pub root_hash: String,
    pub timestamp_ms: i64,
    /// A deletion record for it was found (and matches its anchor).
    pub deletion_record: bool,
    /// The exported segment's own report (legacy: the whole export's).
    #[serde(skip)]
    pub export: Option<VerifyReport>,
}

/// The first problem found.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditVerifyError {
    /// The segment it concerns, if one.
    pub segment: Option<u32>,
    pub message: String,
    /// The segment export's own finding, when that is what failed.
    pub detail: Option<VerifyError>,
}

impl fmt::Display for AuditVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.segment {
            Some(s) => write!(f, "segment {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AuditVerifyError {}

fn fail(segment: Option<u32>, message: impl Into<String>) -> AuditVerifyError {
    AuditVerifyError {
        segment,
        message: message.into(),
        detail: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Leaf {
    #[allow(dead_code)]
    v: u32,
    index: u64,
    record: AuditRecord,
}

/// Verifies the audit export in `dir` with the log's public key (PEM), offline.
pub fn verify_audit_export(
    dir: &Path,
    public_key_pem: &str,
) -> Result<AuditVerifyReport, AuditVerifyError> {
    let key =
        parse_public_key_pem(public_key_pem).map_err(|e| fail(None, format!("public key: {e}")))?;
    let list = dir.join(EXPORT_SEGMENTS_FILE);
    if !list.exists() {
        // An export made before segments.
        let r =
            verify_export_of::<AuditRecord>(dir, public_key_pem).map_err(|e| AuditVerifyError {
                segment: None,
                message: e.to_string(),
                detail: Some(e),
            })?;
        return Ok(AuditVerifyReport {
            origin: r.origin.clone(),
            records: r.records,
            segments: vec![SegmentReport {
                id: 1,
                state: SegmentState::Active,
                first_index: 0,
                exported: true,
                records: r.records,
                tree_size: r.tree_size,
                root_hash: r.root_hash.clone(),
                timestamp_ms: r.timestamp_ms,
                deletion_record: false,
                export: Some(r),
            }],
        });
    }
    let segs = read_segments(&list)?;
    let origin = strata_destruction_log::origin_of_log::<AuditRecord>(public_key_pem)
        .map_err(|e| fail(None, e.to_string()))?;
    let mut reports: Vec<SegmentReport> = Vec::new();
    let mut deletions: Vec<(u32, SegmentLink)> = Vec::new();
    let mut since: Option<i64> = None;
    let mut unfiltered = true;
    for (pos, s) in segs.iter().enumerate() {
        let id = s.id;
        let here = Some(id);
        if id as usize != pos + 1 {
            return Err(fail(here, format!("listed at position {}", pos + 1)));
        }
        let last = pos + 1 == segs.len();
        if last != (s.state == SegmentState::Active) {
            return Err(fail(
                here,
                format!("{:?} where only the last segment is active", s.state),
            ));
        }
        if let Some(cp) = &s.checkpoint {
            cp.verify_in("audit-log", &key).map_err(|e| {
                fail(
                    here,
                    format!("its anchor (final checkpoint) does not verify: {e}"),
                )
            })?;
        } else if !last {
            return Err(fail(here, "sealed without an anchor (final checkpoint)"));
        }
        if pos > 0 {
            let p = &segs[pos - 1];
            let size = p.checkpoint.as_ref().map_or(0, |c| c.tree_size);
            if s.first_index != p.first_index + size {
                return Err(fail(
                    here,
                    format!(
                        "starts at record {}, segment {} ends at {}",
                        s.first_index,
                        p.id,
                        p.first_index + size
                    ),
                ));
            }
        }
        if !s.exported {
            match s.state {
                SegmentState::Deleted | SegmentState::Deleting => {}
                // Left out of an export --since; checked below once its since is known.
                SegmentState::Sealed => {}
                SegmentState::Active => {
                    return Err(fail(here, "the active segment is not in the export"));
                }
            }
            let cp = s.checkpoint.as_ref().expect("checked");
            reports.push(SegmentReport {
                id,
                state: s.state,
                first_index: s.first_index,
                exported: false,
                records: 0,
                tree_size: cp.tree_size,
                root_hash: cp.root_hash.clone(),
                timestamp_ms: cp.timestamp_ms,
                deletion_record: false,
                export: None,
            });
            continue;
        }
        if !matches!(s.state, SegmentState::Active | SegmentState::Sealed) {
            return Err(fail(here, format!("{:?} but exported", s.state)));
        }
        let sub = dir.join(segment_dir_name(id));
        let r = verify_export_of::<AuditRecord>(&sub, public_key_pem).map_err(|e| {
            AuditVerifyError {
                segment: here,
                message: e.to_string(),
                detail: Some(e),
            }
        })?;
        if r.origin != origin {
            return Err(fail(here, format!("origin {} is not {origin}", r.origin)));
        }
        if let Some(cp) = &s.checkpoint
            && (r.tree_size != cp.tree_size || r.root_hash != cp.root_hash)
        {
            return Err(fail(
                here,
                "its latest checkpoint is not the anchor segments.jsonl names",
            ));
        }
        if r.records != s.records {
            return Err(fail(
                here,
                format!(
                    "holds {} records, segments.jsonl says {}",
                    r.records, s.records
                ),
            ));
        }
        if r.since_ms.is_some() || r.until_ms.is_some() || r.bucket.is_some() || r.user.is_some() {
            unfiltered = false;
        }
        since = since.or(r.since_ms);
        // The records (all proven included): record 0, the link, and deletion records.
        let leaves = read_leaves(&sub).map_err(|e| fail(here, e))?;
        if id > 1 {
            let p = &segs[pos - 1];
            let pcp = p.checkpoint.as_ref().expect("checked");
            let link = leaves
                .iter()
                .find(|l| l.index == 0)
                .filter(|l| l.record.operation == OP_SEGMENT_START)
                .and_then(|l| l.record.link.clone())
                .ok_or_else(|| {
                    fail(
                        here,
                        "its record 0 (the link to the segment before) is missing",
                    )
                })?;
            if !link.names(p.id, p.first_index, pcp) {
                return Err(fail(
                    here,
                    format!(
                        "its link record does not name segment {}'s final checkpoint \
                         (size {}, root {})",
                        p.id, pcp.tree_size, pcp.root_hash
                    ),
                ));
            }
        }
        for l in &leaves {
            if l.record.operation == OP_RETENTION_DELETE {
                let link = l.record.link.clone().ok_or_else(|| {
                    fail(
                        here,
                        format!("deletion record {} names no segment", l.index),
                    )
                })?;
                deletions.push((id, link));
            }
        }
        reports.push(SegmentReport {
            id,
            state: s.state,
            first_index: s.first_index,
            exported: true,
            records: r.records,
            tree_size: r.tree_size,
            root_hash: r.root_hash.clone(),
            timestamp_ms: r.timestamp_ms,
            deletion_record: false,
            export: Some(r),
        });
    }
    // Sealed segments left out: only from an export --since, sealed before it.
    for s in segs
        .iter()
        .filter(|s| !s.exported && s.state == SegmentState::Sealed)
    {
        let cp = s.checkpoint.as_ref().expect("checked");
        if since.is_none_or(|t| cp.timestamp_ms >= t) {
            return Err(fail(
                Some(s.id),
                "sealed but missing from the export, and not before its --since",
            ));
        }
    }
    for (holder, link) in &deletions {
        let named = segs.iter().find(|s| s.id == link.segment).ok_or_else(|| {
            fail(
                Some(*holder),
                format!(
                    "a deletion record names segment {} that does not exist",
                    link.segment
                ),
            )
        })?;
        let ok = matches!(named.state, SegmentState::Deleted | SegmentState::Deleting)
            && named
                .checkpoint
                .as_ref()
                .is_some_and(|cp| link.names(named.id, named.first_index, cp));
        if !ok {
            return Err(fail(
                Some(named.id),
                format!(
                    "the deletion record in segment {holder} does not match this segment's \
                     anchor in segments.jsonl"
                ),
            ));
        }
        if let Some(r) = reports.iter_mut().find(|r| r.id == named.id) {
            r.deletion_record = true;
        }
    }
    // The newest deleted segment was deleted while a later, still present, segment was
    // active: its deletion record must be in an unfiltered export.
    if unfiltered
        && let Some(d) = reports
            .iter()
            .filter(|r| r.state == SegmentState::Deleted)
            .max_by_key(|r| r.id)
        && !d.deletion_record
    {
        return Err(fail(
            Some(d.id),
            "deleted, but no deletion record for it is in the export",
        ));
    }
    Ok(AuditVerifyReport {
        origin,
        records: reports.iter().map(|r| r.records).sum(),
        segments: reports,
    })
}

fn read_segments(path: &Path) -> Result<Vec<ExportedSegment>, AuditVerifyError> {
    let f = std::fs::File::open(path)
        .map_err(|e| fail(None, format!("{EXPORT_SEGMENTS_FILE}: {e}")))?;
    let len = f.metadata().map_err(|e| fail(None, e.to_string()))?.len();
    if len > MAX_FILE {
        return Err(fail(
            None,
            format!("{EXPORT_SEGMENTS_FILE}: {len} bytes is too large"),
        ));
    }
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| fail(None, format!("{EXPORT_SEGMENTS_FILE}: {e}")))?;
        if line.len() > MAX_LINE || i >= MAX_SEGMENTS {
            return Err(fail(
                None,
                format!(
                    "{EXPORT_SEGMENTS_FILE}: line {} too long or too many lines",
                    i + 1
                ),
            ));
        }
        let s: ExportedSegment = serde_json::from_slice(&line)
            .map_err(|e| fail(None, format!("{EXPORT_SEGMENTS_FILE} line {}: {e}", i + 1)))?;
        out.push(s);
    }
    if out.is_empty() {
        return Err(fail(
            None,
            format!("{EXPORT_SEGMENTS_FILE} lists no segment"),
        ));
    }
    Ok(out)
}

/// The records of a segment export (verified before: each line is a proven leaf).
fn read_leaves(sub: &Path) -> Result<Vec<Leaf>, String> {
    let f = std::fs::File::open(sub.join("records.jsonl")).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        out.push(serde_json::from_slice(&line).map_err(|e| format!("records.jsonl: {e}"))?);
    }
    Ok(out)
}
