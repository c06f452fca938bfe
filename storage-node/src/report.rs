//! What reads, heals and scrubs found: plain data, serialisable for `strata admin scrub` and the
//! node's HTTP API.

use std::path::PathBuf;

use serde::Serialize;

/// Why a shard could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ShardProblem {
    /// No file (or the disk directory is gone, or the layout names a disk this store lacks).
    Missing,
    /// The file exists but could not be read.
    Unreadable(String),
    /// Header or body failed verification (bitrot, truncation, wrong identity or layout).
    Corrupt(String),
    /// A valid shard of another write of the same id (a different nonce).
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadShard {
    pub shard: usize,
    /// Disk name, as the layout lists it.
    pub disk: String,
    pub problem: ShardProblem,
}

/// What a read found besides the data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    pub bad_shards: Vec<BadShard>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealReport {
    /// Shards that were missing or bad and are now rewritten and durable.
    pub rebuilt: Vec<usize>,
    /// Shards that could not be rewritten (e.g. their disk is gone), with the error.
    pub failed: Vec<(usize, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardFault {
    /// `<blob hex>/<chunk index>`
    pub chunk: String,
    pub shard: usize,
    /// Disk name.
    pub disk: String,
    pub problem: ShardProblem,
}

/// Result of a scrub; serialisable for `strata admin scrub`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    pub chunks_checked: u64,
    pub shards_checked: u64,
    pub shards_healthy: u64,
    pub bytes_verified: u64,
    pub faults: Vec<ShardFault>,
    /// Chunks with fewer than k usable shards.
    pub unrecoverable: Vec<String>,
    pub shards_repaired: u64,
    pub repair_failures: Vec<ShardFault>,
    /// Interrupted deletions (tombstones) that this scrub completed (repair only).
    pub deletions_completed: u64,
    /// Chunks with a tombstone still in place: never healed; completed by a scrub with repair
    /// (kept while disks that may hold their shards are unavailable).
    pub deletions_pending: Vec<String>,
    /// Chunks whose shard headers name a layout the scrub was not given (left alone).
    pub unknown_layouts: Vec<String>,
    /// Files under shards/ or tombstones/ that are not a file of a known layout at its
    /// placement (left alone).
    pub unknown_files: Vec<PathBuf>,
    /// Disk names whose directory could not be listed.
    pub unavailable_disks: Vec<String>,
}

/// What rebuilding one chunk to full redundancy did (cluster pipeline; the local store maps its
/// heal onto it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RebuildReport {
    /// Shards that were missing or bad and are now rewritten and durable.
    pub rebuilt: Vec<usize>,
    /// Shards that could not be rewritten, with the error.
    pub failed: Vec<(usize, String)>,
    /// Shards whose node did not answer: neither checked nor rebuilt.
    pub unreachable: Vec<usize>,
    /// Shard bytes read from survivors and written to the rebuilt shards.
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl RebuildReport {
    /// Every shard is present and verified.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.unreachable.is_empty()
    }
}
