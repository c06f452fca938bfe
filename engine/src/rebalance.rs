//! Rebalancing: moves the data of versions written under an older layout (other disks, other
//! k/m, other chunk size) to the current layout, so that restarting with a new geometry
//! eventually leaves every object on it.
//!
//! The walk goes over every version in key order from a cursor kept in the metadata tier, so it
//! resumes where it stopped after a restart or a crash. A segment on an old layout is read
//! (decrypted) and written again as a new blob under the current layout and the same data key
//! (a new blob means fresh nonces), then swapped into the version record with a compare-and-set
//! (`MetaStore::replace_segment`): the old segment goes to the GC queue with the grace period, so
//! reads that started on it finish. A version changed or deleted meanwhile makes the swap fail
//! (`Stale`) and the new blob is discarded; nothing is lost and the next pass looks again. Bytes
//! moved per second are capped (`--rebalance-rate`). A pass that finds nothing to move is
//! remembered per current layout, so the walk does not repeat until the layout changes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_metadata::{MetaError, VersionRef};

use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, WriteSpec, now_ms};

/// Versions read from the walk at a time.
const PAGE: usize = 128;
/// Worker-state key of the walk's progress.
const STATE_KEY: &str = "rebalance";

/// What survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Where the walk continues (`None`: at the start).
    cursor: Option<Vec<u8>>,
    /// The current layout when a full pass last found nothing to move.
    clean_for_layout: Option<u32>,
    /// Old-layout segments found in the pass so far.
    found_this_pass: u64,
}

pub struct Rebalancer {
    engine: Engine,
    /// Bytes per second to move at most.
    rate: u64,
    progress: Option<Progress>,
    /// The page of the walk being worked on, and where the walk continues after it (`Some(None)`:
    /// this page ends the pass). The persisted cursor moves only when a page is done, so a crash
    /// repeats at most one page (harmless: moved segments are skipped).
    queue: VecDeque<VersionRef>,
    after_page: Option<Option<Vec<u8>>>,
    scanned: u64,
    moved_segments: u64,
    moved_bytes: u64,
    stale: u64,
    failed: u64,
    passes: u64,
    /// Old-layout versions left alone: SSE-C, or SSE-KMS under a disabled key.
    skipped_customer_key: u64,
}

impl Rebalancer {
    pub fn new(engine: Engine, rate_bytes_per_sec: u64) -> Self {
        Rebalancer {
            engine,
            rate: rate_bytes_per_sec.max(1),
            progress: None,
            queue: VecDeque::new(),
            after_page: None,
            scanned: 0,
            moved_segments: 0,
            moved_bytes: 0,
            stale: 0,
            failed: 0,
            passes: 0,
            skipped_customer_key: 0,
        }
    }

    async fn load(&mut self) -> Result<Progress, EngineError> {
        if let Some(p) = &self.progress {
            return Ok(p.clone());
        }
        let p: Progress = self.engine.load_worker_state(STATE_KEY).await?;
        self.progress = Some(p.clone());
        Ok(p)
    }

    async fn save(&mut self, p: Progress) -> Result<(), EngineError> {
        self.engine.save_worker_state(STATE_KEY, &p).await?;
        self.progress = Some(p);
        Ok(())
    }

    /// Moves every old-layout segment of one version; returns the bytes moved.
    async fn move_version(&mut self, v: &VersionRef) -> Result<u64, EngineError> {
        let current = self.engine.layouts().current().record.id;
        let old: Vec<_> = v
            .version
            .data
            .segments
            .iter()
            .filter(|s| s.layout != current)
            .cloned()
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        // SSE-C versions (the server does not hold the customer's key) and SSE-KMS versions under
        // a disabled key cannot be rewritten: they stay on their layout, which stays readable,
        // and do not keep the walk going.
        let Some(binding) = self.engine.server_binding(&v.version).await? else {
            self.skipped_customer_key += 1;
            return Ok(0);
        };
        if let Some(p) = self.progress.as_mut() {
            p.found_this_pass += old.len() as u64;
        }
        let bucket_name = v.bucket.clone();
        let Some(bucket) = self
            .engine
            .meta_call(move |m| m.get_bucket(&bucket_name))
            .await?
        else {
            return Ok(0);
        };
        let dek = binding.apply(self.engine.keys().version_key(&bucket, &v.version.data)?);
        let mut moved = 0;
        for seg in old {
            let started = Instant::now();
            let mut one = v.version.clone();
            one.data.segments = vec![seg.clone()];
            let body = crate::body::read_as_body(
                self.engine
                    .read_range_bound(&bucket, &one, 0..seg.len, &binding)
                    .await?,
            );
            let spec = WriteSpec {
                max_len: seg.len,
                expected_len: Some(seg.len),
                ..Default::default()
            };
            let stored = self.engine.write_blob(dek.clone(), body, spec).await?;
            let (b, k, id, old_blob, new_seg) = (
                v.bucket.clone(),
                v.key.clone(),
                v.version.version_id.clone(),
                seg.blob,
                stored.segment.clone(),
            );
            let swapped = self
                .engine
                .meta_call(move |m| m.replace_segment(&b, &k, &id, &old_blob, new_seg, now_ms()))
                .await;
            match swapped {
                Ok(()) => {
                    stored.committed();
                    self.moved_segments += 1;
                    self.moved_bytes += seg.len;
                    moved += seg.len;
                }
                Err(EngineError::Meta(MetaError::Stale)) => {
                    // Overwritten, deleted or already moved meanwhile: nothing to do.
                    stored.discard("rebalance-stale").await;
                    self.stale += 1;
                }
                Err(e) => {
                    stored.discard("rebalance-failed").await;
                    return Err(e);
                }
            }
            // The rate cap: this segment may not have taken less than len / rate.
            let due = Duration::from_secs_f64(seg.len as f64 / self.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(moved)
    }
}

#[async_trait::async_trait]
impl Worker for Rebalancer {
    fn name(&self) -> &'static str {
        "rebalance"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let mut p = self.load().await.map_err(|e| e.to_string())?;
        let current = self.engine.layouts().current().record.id;
        if p.clean_for_layout == Some(current) {
            return Ok(WorkState::Idle);
        }
        if let Some(v) = self.queue.pop_front() {
            self.scanned += 1;
            if let Err(e) = self.move_version(&v).await {
                self.failed += 1;
                return Err(format!("moving {}/{}: {e}", v.bucket, v.key));
            }
            return Ok(WorkState::Busy);
        }
        if let Some(after) = self.after_page.take() {
            // The page is done: advance the persisted walk.
            if let Some(q) = &self.progress {
                p.found_this_pass = q.found_this_pass;
            }
            match after {
                Some(c) => p.cursor = Some(c),
                None => {
                    self.passes += 1;
                    if p.found_this_pass == 0 {
                        tracing::info!(
                            layout = current,
                            "rebalance: every segment is on the current layout"
                        );
                        p.clean_for_layout = Some(current);
                    }
                    p.cursor = None;
                    p.found_this_pass = 0;
                }
            }
            self.save(p).await.map_err(|e| e.to_string())?;
            return Ok(WorkState::Busy);
        }
        let after = p.cursor.clone();
        let (page, next) = self
            .engine
            .meta_call(move |m| m.scan_versions(after.as_deref(), PAGE))
            .await
            .map_err(|e| e.to_string())?;
        self.queue.extend(page);
        self.after_page = Some(next);
        Ok(WorkState::Busy)
    }

    fn status(&self) -> Value {
        let p = self.progress.clone().unwrap_or_default();
        json!({
            "current_layout": self.engine.layouts().current().record.id,
            "clean_for_layout": p.clean_for_layout,
            "old_segments_found_this_pass": p.found_this_pass,
            "versions_scanned": self.scanned,
            "segments_moved": self.moved_segments,
            "bytes_moved": self.moved_bytes,
            "stale": self.stale,
            "failed": self.failed,
            "skipped_unreadable_sse": self.skipped_customer_key,
            "passes": self.passes,
            "rate_bytes_per_sec": self.rate,
        })
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(30)
    }
}
