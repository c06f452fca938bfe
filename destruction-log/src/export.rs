//! The export directory format (docs/destruction-log.md, "Export format"), shared by the writer
//! (`DestructionLog::export`) and the offline verifier.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::keys::SignedCheckpoint;

pub const MANIFEST: &str = "manifest.json";
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
pub const CONSISTENCY: &str = "consistency.jsonl";
pub const RECORDS: &str = "records.jsonl";
pub const PROOFS: &str = "proofs.jsonl";
/// Every file of an export, in the order the verifier reads them.
pub const FILES: [&str; 5] = [MANIFEST, CHECKPOINTS, CONSISTENCY, PROOFS, RECORDS];

/// The destruction log's format; other record kinds name theirs (`LogRecord::EXPORT_FORMAT`).
pub const FORMAT: &str = "strata-destruction-export/1";

/// Which records an export holds (all `None`: every record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Records whose time is at or after this (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Records whose time is before this.
    pub until_ms: Option<i64>,
    pub bucket: Option<String>,
    pub user: Option<String>,
    /// Also export record 0 whatever the other filters say (the audit log's segments start
    /// with the link record that chains them, which a verifier needs).
    pub include_first: bool,
}

impl ExportFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the export holds, signed with the log key so that a line removed from a filtered export
/// (where the record numbers have gaps anyway) is still found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub format: String,
    pub origin: String,
    pub created_ms: i64,
    pub since_ms: Option<i64>,
    pub bucket: Option<String>,
    // Absent (not null) when unset, so exports made before these filters existed still parse
    // in their canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The latest checkpoint: the proofs are against it; last line of `checkpoints.jsonl`.
    pub checkpoint: SignedCheckpoint,
    pub checkpoints: u64,
    pub records: u64,
    /// The exported record indices as ascending, non-adjacent `[start, end)` ranges.
    pub ranges: Vec<[u64; 2]>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub body: ManifestBody,
    /// Ed25519 over `FORMAT || "\n" || compact JSON of body`, standard base64.
    pub signature: String,
}

/// One line of `proofs.jsonl`: the RFC 6962 audit path of record `index` in the tree of
/// `tree_size` (the latest checkpoint), leaf-side sibling first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofLine {
    pub index: u64,
    pub tree_size: u64,
    pub path: Vec<String>,
}

/// One line of `consistency.jsonl`: the RFC 6962 consistency proof between checkpoint k
/// (`from_size`) and checkpoint k+1 (`to_size`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyLine {
    pub from_size: u64,
    pub to_size: u64,
    pub path: Vec<String>,
}

/// What `DestructionLog::export` wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub records: u64,
    pub checkpoints: u64,
    pub tree_size: u64,
    pub root_hash: String,
    pub checkpoint: SignedCheckpoint,
    pub since_ms: Option<i64>,
    pub bucket: Option<String>,
    #[serde(default)]
    pub until_ms: Option<i64>,
    #[serde(default)]
    pub user: Option<String>,
}
