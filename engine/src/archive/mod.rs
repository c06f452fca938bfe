//! The archive tier: versions in `GLACIER` / `DEEP_ARCHIVE` are repacked from the standard
//! tier into large containers written with their own erasure geometry (the archive layout),
//! restored on request into a temporary standard-tier copy, and containers whose live fraction
//! fell low are compacted.
//!
//! - [`repack`]: the `archive` worker (repack queue -> sealed extents packed into container
//!   chunks, standard chunks to GC);
//! - [`restore`]: the `restore` worker (RestoreObject jobs, restored-copy expiry);
//! - [`compact`]: the `archive-compaction` worker (audit live bytes, copy live sealed extents
//!   verbatim into new containers, free the old ones);
//! - [`frame`]: a version's bytes as frames sealed under the version's own data key;
//! - [`pack`]: appending sealed extents into container chunks (the container writer);
//! - [`read`]: container ranges, extents (only the frames a range needs), format-1 extents;
//! - [`keys`]: container keys (master key -> archive KEK -> container key).
//!
//! A container is one blob of the archive layout holding the sealed extents of many versions
//! back to back: small extents share a chunk, large ones span chunks. Two keys are involved:
//! the container key (the chunk store encrypts the container's chunks with it) protects the
//! packing; each extent's frames are sealed under the *version's own* data key, so destroying
//! that key shreds the archived copy though the container chunk stays readable until compaction
//! rewrites it. The format is in `docs/archive-format.md`.

pub mod compact;
pub mod frame;
pub mod keys;
pub mod pack;
pub mod read;
pub mod repack;
pub mod restore;

use std::time::Duration;

use strata_metadata::VersionRecord;

use crate::Engine;
use crate::error::{Rejection, Result};
use crate::lifecycle::DayClock;

/// Restore job delays by tier (ms). DEEP_ARCHIVE takes `deep_factor` times as long.
#[derive(Clone, Debug)]
pub struct RestoreDelays {
    pub expedited_ms: i64,
    pub standard_ms: i64,
    pub bulk_ms: i64,
    pub deep_factor: i64,
}

impl RestoreDelays {
    /// S3 Glacier's typical times: Expedited minutes, Standard hours, Bulk half a day.
    pub fn real() -> Self {
        RestoreDelays {
            expedited_ms: 5 * 60_000,
            standard_ms: 4 * 3_600_000,
            bulk_ms: 12 * 3_600_000,
            deep_factor: 3,
        }
    }

    /// The scaled-day mode: seconds.
    pub fn scaled() -> Self {
        RestoreDelays {
            expedited_ms: 1_000,
            standard_ms: 2_000,
            bulk_ms: 4_000,
            deep_factor: 2,
        }
    }

    pub fn delay(&self, tier: &str, class: &str) -> i64 {
        let base = match tier {
            "Expedited" => self.expedited_ms,
            "Bulk" => self.bulk_ms,
            _ => self.standard_ms,
        };
        if class == "DEEP_ARCHIVE" {
            base.saturating_mul(self.deep_factor.max(1))
        } else {
            base
        }
    }
}

#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// Plaintext bytes per archive chunk.
    pub chunk_size: u32,
    /// A container is sealed once its extents reserve this many bytes.
    pub container_bytes: u64,
    /// Compaction rewrites a sealed container whose live fraction is below this.
    pub compact_below: f64,
    pub restore_delays: RestoreDelays,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            chunk_size: 16 * 1024 * 1024,
            container_bytes: 1024 * 1024 * 1024,
            compact_below: 0.5,
            restore_delays: RestoreDelays::real(),
        }
    }
}

impl Engine {
    pub fn lifecycle_clock(&self) -> DayClock {
        match self.cfg().lifecycle_day_secs {
            Some(s) => DayClock::scaled(s),
            None => DayClock::real(),
        }
    }

    pub fn archive_cfg(&self) -> &ArchiveConfig {
        &self.cfg().archive
    }

    /// The version as a reader sees it: `InvalidObjectState` for an archived version that is not
    /// restored; for a restored one, its restored copy in place of the (absent) standard data.
    pub fn readable(&self, v: &VersionRecord) -> Result<VersionRecord> {
        if v.needs_restore() {
            return Err(Rejection::InvalidObjectState.into());
        }
        let mut out = v.clone();
        if let Some(r) = v.archive.as_ref().and_then(|a| a.restore.as_ref())
            && strata_metadata::archive::is_archive_class(&v.storage_class)
        {
            out.data.segments = r.segments.clone();
            out.data.inline = None;
            out.parts = v.parts.clone();
        }
        Ok(out)
    }

    /// How long placed extents may wait in a partly filled chunk for more extents once the
    /// repack queue is empty: then the chunk is written short.
    pub fn archive_linger(&self) -> Duration {
        if self.lifecycle_clock().is_scaled() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        }
    }
}

#[cfg(test)]
mod tests;
