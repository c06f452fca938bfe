//! Health of the local chunk store's disks, for metrics, `/_strata/health` and `/_strata/ready`:
//! the [`DiskWatch`] worker samples every disk (statvfs and a small create/remove probe in the
//! disk's `tmp/`) every [`SAMPLE_INTERVAL`] and keeps the results in [`DiskHealth`], so scrapes
//! and probes read what the last sample found and never touch the disks themselves.
//!
//! Capacity is the fullest disk's used fraction (blocks reserved for root count as used, as in
//! the store's high-water check): the fullest disk is the one that refuses writes first. Above
//! the alert threshold one WARN line is logged per crossing; it clears one point below it, so a
//! disk hovering at the threshold does not log at every sample.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use strata_storage_node::{LocalChunkStore, disk_space};

use crate::workers::{WorkState, Worker};

/// How often the disks are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// An alert clears this far below the threshold.
const HYSTERESIS: f64 = 0.01;
/// Name of the probe file in a disk's `tmp/` (removed at once; the store clears `tmp/` on open).
const PROBE_FILE: &str = ".strata-health-probe";

/// One disk as the last sample saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskSample {
    pub name: String,
    /// Filesystem size, bytes.
    pub total_bytes: u64,
    /// Bytes an unprivileged writer can still use.
    pub free_bytes: u64,
    /// Bytes in use (total minus all free blocks).
    pub used_bytes: u64,
    /// 1 - free / total (reserved blocks count as used); 1.0 when the disk could not be read.
    pub used_ratio: f64,
    /// statvfs worked and a probe file could be created and removed.
    pub writable: bool,
    /// Why not (short, no secret: an OS error on a path of ours).
    pub error: Option<String>,
    /// I/O errors counted since the store opened (shard reads and writes, failed probes).
    pub io_errors: u64,
}

#[derive(Default)]
struct State {
    samples: Vec<DiskSample>,
    alert: bool,
    sampled: bool,
}

/// The last sample of every disk, and the capacity alert.
pub struct DiskHealth {
    store: Arc<LocalChunkStore>,
    /// Disks of the layout new chunks are written with.
    write_disks: Vec<String>,
    threshold: f64,
    state: Mutex<State>,
}

/// Creates, writes and removes a small file where shard temporaries are written.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join("tmp").join(PROBE_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    f.write_all(b"probe")?;
    drop(f);
    std::fs::remove_file(&path)
}

impl DiskHealth {
    /// `write_disks`: the disk names of the current write layout; `threshold`: the capacity
    /// alert threshold (fraction).
    pub fn new(store: Arc<LocalChunkStore>, write_disks: Vec<String>, threshold: f64) -> Self {
        DiskHealth {
            store,
            write_disks,
            threshold,
            state: Mutex::default(),
        }
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Samples every disk now (blocking: statvfs and file I/O) and updates the alert.
    pub fn sample_now(&self) {
        let errors: std::collections::HashMap<String, u64> =
            self.store.disk_io_errors().into_iter().collect();
        let mut samples = Vec::new();
        for (name, dir) in &self.store.config().disks {
            let mut s = DiskSample {
                name: name.clone(),
                used_ratio: 1.0,
                ..Default::default()
            };
            match disk_space(dir).and_then(|v| probe(dir).map(|()| v)) {
                Ok(space) => {
                    s.total_bytes = space.total;
                    s.free_bytes = space.available;
                    s.used_bytes = space.used();
                    s.used_ratio = space.used_fraction();
                    s.writable = true;
                }
                Err(e) => {
                    self.store.record_io_error(name);
                    s.error = Some(e.to_string().chars().take(200).collect());
                }
            }
            s.io_errors = errors.get(name).copied().unwrap_or(0) + u64::from(!s.writable);
            samples.push(s);
        }
        let fullest = fullest(&samples);
        let mut st = self.state();
        match fullest {
            Some((ratio, disk)) if !st.alert && ratio > self.threshold => {
                st.alert = true;
                tracing::warn!(disk = %disk, used = format!("{:.1}%", ratio * 100.0),
                    threshold = format!("{:.1}%", self.threshold * 100.0),
                    "capacity above the alert threshold");
            }
            Some((ratio, disk)) if st.alert && ratio < self.threshold - HYSTERESIS => {
                st.alert = false;
                tracing::info!(disk = %disk, used = format!("{:.1}%", ratio * 100.0),
                    threshold = format!("{:.1}%", self.threshold * 100.0),
                    "capacity back below the alert threshold");
            }
            _ => {}
        }
        st.samples = samples;
        st.sampled = true;
    }

    /// The last sample of every disk (empty before the first).
    pub fn samples(&self) -> Vec<DiskSample> {
        self.state().samples.clone()
    }

    /// The fullest readable disk: (used fraction, disk name).
    pub fn capacity(&self) -> Option<(f64, String)> {
        fullest(&self.state().samples)
    }

    /// Whether capacity is above the alert threshold (as of the last crossing).
    pub fn alert(&self) -> bool {
        self.state().alert
    }

    /// Why writes cannot succeed, if they cannot: a local write needs every disk of a chunk's
    /// placement (a 200 means full redundancy, docs/storage-node.md), so one unusable disk of
    /// the write layout fails the writes of the chunks placed on it.
    pub fn write_problem(&self) -> Option<String> {
        let st = self.state();
        if !st.sampled {
            return None;
        }
        let bad: Vec<String> = st
            .samples
            .iter()
            .filter(|s| self.write_disks.contains(&s.name) && !s.writable)
            .map(|s| format!("{} ({})", s.name, s.error.as_deref().unwrap_or("unusable")))
            .collect();
        let missing = self
            .write_disks
            .iter()
            .filter(|d| !st.samples.iter().any(|s| &s.name == *d))
            .count();
        let n = bad.len() + missing;
        (n > 0).then(|| {
            format!(
                "{n} of {} disks of the write layout unusable, writes need all of them: {}",
                self.write_disks.len(),
                bad.join(", ")
            )
        })
    }
}

fn fullest(samples: &[DiskSample]) -> Option<(f64, String)> {
    samples
        .iter()
        .filter(|s| s.writable)
        .map(|s| (s.used_ratio, s.name.clone()))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Samples the disks every [`SAMPLE_INTERVAL`] (every process, not only the leader: the disks
/// are this process's own).
pub struct DiskWatch {
    health: Arc<DiskHealth>,
    samples: u64,
}

impl DiskWatch {
    pub fn new(health: Arc<DiskHealth>) -> Self {
        DiskWatch { health, samples: 0 }
    }
}

#[async_trait::async_trait]
impl Worker for DiskWatch {
    fn name(&self) -> &'static str {
        "disk-watch"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let h = self.health.clone();
        tokio::task::spawn_blocking(move || h.sample_now())
            .await
            .map_err(|e| e.to_string())?;
        self.samples += 1;
        Ok(WorkState::Idle)
    }

    fn status(&self) -> Value {
        let cap = self.health.capacity();
        json!({
            "samples": self.samples,
            "capacity_used_ratio": cap.as_ref().map(|c| c.0),
            "fullest_disk": cap.map(|c| c.1),
            "threshold": self.health.threshold(),
            "alert": self.health.alert(),
            "write_problem": self.health.write_problem(),
        })
    }

    fn idle_interval(&self) -> Duration {
        SAMPLE_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage_node::NodeConfig;

    fn store(root: &Path) -> Arc<LocalChunkStore> {
        Arc::new(LocalChunkStore::open(NodeConfig::under(root, 3)).unwrap())
    }

    #[test]
    fn samples_space_raises_the_alert_once_and_names_an_unusable_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let names = s.config().disk_names();
        // Nothing known before the first sample: not a reason to be unready.
        let h = DiskHealth::new(s.clone(), names.clone(), 0.0001);
        assert!(h.write_problem().is_none() && !h.alert() && h.capacity().is_none());
        h.sample_now();
        let samples = h.samples();
        assert_eq!(samples.len(), 3);
        for d in &samples {
            assert!(d.writable && d.total_bytes > 0 && d.free_bytes <= d.total_bytes);
            assert!(d.used_bytes <= d.total_bytes && d.io_errors == 0);
        }
        assert!(h.alert(), "any disk in use is above 0.01 %");
        assert!(h.capacity().unwrap().0 > 0.0001);
        // A disk gone: it is unwritable, counted, named, and the others still count.
        std::fs::rename(dir.path().join("disk1"), dir.path().join("gone")).unwrap();
        h.sample_now();
        let why = h.write_problem().unwrap();
        assert!(
            why.starts_with("1 of 3 disks") && why.contains("disk1"),
            "{why}"
        );
        let d1 = h.samples().into_iter().find(|d| d.name == "disk1").unwrap();
        assert!(!d1.writable && d1.io_errors == 1 && d1.total_bytes == 0);
        assert!(h.alert(), "still above: no second crossing");
        std::fs::rename(dir.path().join("gone"), dir.path().join("disk1")).unwrap();
        h.sample_now();
        assert!(h.write_problem().is_none());
        // Below the threshold the alert clears.
        let calm = DiskHealth::new(s, names, 1.0);
        calm.sample_now();
        assert!(!calm.alert());
    }
}
