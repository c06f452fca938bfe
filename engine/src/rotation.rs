//! Key rotation without rewriting data: a new master key re-wraps every KEK (and re-seals every
//! access-key secret), then the old master key is destroyed; a new bucket KEK re-wraps every
//! DEK of the bucket, then the old KEK is destroyed. Both run as the `key-rotation` worker:
//! resumable (job, phase and cursor persisted in the metadata tier after every unit),
//! rate-limited (keys re-wrapped per second), observable (`strata admin worker list`,
//! `strata admin keys report`), and reads and writes keep working throughout.
//!
//! Why no key is missed: the re-wrap walks the key store's slots, not the metadata records, and
//! the switch to the new wrapping key happens under the key ring's exclusive `switch` lock,
//! which every key write holds shared while it wraps and writes. So once the switch is done, no
//! key can be written under the old wrapping key any more, and every key already written under
//! it is in the store when the walk starts. Re-wraps are journaled in the key store, so a crash
//! in the middle of one never loses a live key. Readers find a key under the old or the new
//! wrapping key, whichever its slot names (both are held until the end).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_keystore::KeyKind;
use strata_metadata::{KekRef, MetaError};
use strata_storage_node::keys::{MasterKey, destroy_key_file};

use crate::keys::MasterSource;
use crate::workers::{WorkState, Worker};
use crate::{Engine, EngineError, Result, now_ms};

const STATE_KEY: &str = "key-rotation";

/// Another holder of secrets sealed under the master key (`KeyRing::seal_secret`), e.g. the
/// migration jobs' source secrets: the master rotation's reseal phase calls it after the
/// access keys and destroys the old master key only once it succeeded.
#[async_trait::async_trait]
pub trait SecretResealer: Send + Sync {
    /// Re-seals every secret still under the old master key (`KeyRing::reseal_secret`) with a
    /// compare-and-set per record, and returns how many changed. Must be idempotent: a crash
    /// runs the phase again.
    async fn reseal(&self, engine: &Engine) -> Result<u64>;
}
/// Slots read per unit of the walk.
const SCAN_SLOTS: u64 = 4096;
/// Keys re-wrapped per journaled batch at most.
const MAX_BATCH: usize = 64;
/// Default re-wrap rate (keys per second).
pub const DEFAULT_RATE: u64 = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prepare,
    Rewrap,
    Reseal,
    Retire,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Master,
    Bucket { bucket: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub target: Target,
    pub phase: Phase,
    /// Next slot of the walk.
    pub cursor: u64,
    pub rewrapped: u64,
    pub resealed: u64,
    /// Keys per second.
    pub rate: u64,
    pub started_ms: i64,
    /// Master rotation: ids (hex) of the old and the new master key.
    #[serde(default)]
    pub old_master: Option<String>,
    #[serde(default)]
    pub new_master: Option<String>,
    /// Bucket rotation: the KEK rotated out and its replacement.
    #[serde(default)]
    pub old_kek: Option<KekRef>,
    #[serde(default)]
    pub new_kek: Option<KekRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RotationState {
    pub jobs: VecDeque<Job>,
    /// The last finished rotations (newest last), for reports.
    pub finished: Vec<Value>,
}

impl Engine {
    pub(crate) async fn rotation_state(&self) -> Result<RotationState> {
        let raw = self.meta_call(|m| m.get_worker_state(STATE_KEY)).await?;
        Ok(raw
            .and_then(|r| serde_json::from_slice(&r).ok())
            .unwrap_or_default())
    }

    async fn save_rotation_state(&self, st: &RotationState) -> Result<()> {
        let raw = serde_json::to_vec(st).map_err(|e| EngineError::internal(e.to_string()))?;
        self.meta_call(move |m| m.put_worker_state(STATE_KEY, &raw))
            .await
    }

    /// Queues a rotation (master key, or one bucket's KEK); the `key-rotation` worker runs it.
    /// Returns the queue as it is now.
    pub async fn start_rotation(&self, target: Target, rate: u64) -> Result<RotationState> {
        match &target {
            Target::Master => {
                if matches!(self.keys().source(), MasterSource::Env) {
                    return Err(MetaError::Invalid(
                        "the master key comes from STRATA_MASTER_KEY: rotate it by starting with a \
                         key file instead (Strata cannot replace an environment variable)"
                            .into(),
                    )
                    .into());
                }
                if self.keys().store().local().is_none() {
                    // Every gateway of a cluster holds the master key; one process replacing
                    // its own file would leave the others unable to unwrap any KEK.
                    return Err(MetaError::Invalid(
                        "the key store is the cluster's key service: a master key rotation                          would have to replace the key on every gateway at once, which is not                          supported yet (rotate bucket KEKs instead)"
                            .into(),
                    )
                    .into());
                }
            }
            Target::Bucket { bucket } => {
                let b = self.bucket(bucket).await?.ok_or(MetaError::NoSuchBucket)?;
                self.check_writable(&b)?;
            }
        }
        // One writer of the state: the worker's unit and this call are serialised by the lock.
        let _g = self.rotation_lock().lock().await;
        let mut st = self.rotation_state().await?;
        let same = |j: &Job| match (&j.target, &target) {
            (Target::Master, Target::Master) => true,
            (Target::Bucket { bucket: a }, Target::Bucket { bucket: b }) => a == b,
            _ => false,
        };
        if !st.jobs.iter().any(same) {
            st.jobs.push_back(Job {
                target,
                phase: Phase::Prepare,
                cursor: 0,
                rewrapped: 0,
                resealed: 0,
                rate: rate.max(1),
                started_ms: now_ms(),
                old_master: None,
                new_master: None,
                old_kek: None,
                new_kek: None,
            });
            self.save_rotation_state(&st).await?;
        }
        Ok(st)
    }

    /// One bounded step of the first queued rotation; returns whether work remains.
    async fn rotation_step(&self) -> Result<bool> {
        let _g = self.rotation_lock().lock().await;
        let mut st = self.rotation_state().await?;
        let Some(mut job) = st.jobs.pop_front() else {
            return Ok(false);
        };
        let started = Instant::now();
        let before = job.rewrapped;
        let finished = match job.target.clone() {
            Target::Master => self.master_step(&mut job).await?,
            Target::Bucket { bucket } => self.bucket_step(&bucket, &mut job).await?,
        };
        if finished {
            tracing::info!(target: "strata::audit", job = ?job.target, rewrapped = job.rewrapped, resealed = job.resealed, "key rotation finished");
            st.finished.push(json!({
                "target": job.target,
                "started_ms": job.started_ms,
                "finished_ms": now_ms(),
                "rewrapped": job.rewrapped,
                "resealed": job.resealed,
                "old_master": job.old_master,
                "new_master": job.new_master,
                "old_kek": job.old_kek.as_ref().map(|k| &k.id),
                "new_kek": job.new_kek.as_ref().map(|k| &k.id),
            }));
            let keep = st.finished.len().saturating_sub(20);
            st.finished.drain(..keep);
        } else {
            st.jobs.push_front(job.clone());
        }
        self.save_rotation_state(&st).await?;
        drop(_g);
        // The rate cap: n keys may not have taken less than n / rate.
        let n = job.rewrapped - before;
        let due = Duration::from_secs_f64(n as f64 / job.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        Ok(!st.jobs.is_empty())
    }

    /// Walks `SCAN_SLOTS` slots from `job.cursor`, re-wrapping what `pick` returns, at most
    /// `rate` keys; returns true when the walk reached the end.
    async fn rewrap_walk<F>(&self, job: &mut Job, pick: F) -> Result<bool>
    where
        F: Fn(
                &crate::keys::KeyRing,
                u64,
                &strata_keystore::Entry,
            ) -> Result<Option<strata_keystore::Rewrap>>
            + Send
            + Sync
            + 'static,
    {
        let cursor = job.cursor;
        let limit = (job.rate as usize).clamp(1, MAX_BATCH);
        let (rewrapped, next) = self
            .key_call(move |k| {
                let (live, mut next) = k
                    .store()
                    .scan(cursor, SCAN_SLOTS)
                    .map_err(|e| EngineError::internal(e.to_string()))?;
                let mut batch = Vec::new();
                for (slot, e) in &live {
                    if let Some(r) = pick(k, *slot, e)? {
                        batch.push(r);
                        if batch.len() == limit {
                            // Continue right after this slot next time.
                            next = Some(slot + 1);
                            break;
                        }
                    }
                }
                let n = k
                    .store()
                    .rewrap(&batch)
                    .map_err(|e| EngineError::internal(e.to_string()))?;
                Ok((n as u64, next))
            })
            .await?;
        job.rewrapped += rewrapped;
        match next {
            Some(n) => {
                job.cursor = n;
                Ok(false)
            }
            None => {
                job.cursor = 0;
                Ok(true)
            }
        }
    }

    async fn master_step(&self, job: &mut Job) -> Result<bool> {
        let MasterSource::Files(_) = self.keys().source().clone() else {
            tracing::error!("master rotation needs key files; dropping the job");
            return Ok(true);
        };
        let cur = self.keys().source().current_path().expect("files");
        let next = self.keys().source().next_path().expect("files");
        match job.phase {
            Phase::Prepare => {
                let (wrapping, old) = self.keys().master_ids();
                if old.is_none() {
                    // Not switched yet (or a restart lost nothing: open() reloads the next key).
                    let p = next.clone();
                    let key = tokio::task::spawn_blocking(move || {
                        if p.exists() {
                            MasterKey::load(&p)
                        } else {
                            MasterKey::create_new(&p)
                        }
                    })
                    .await
                    .map_err(|e| EngineError::internal(e.to_string()))??;
                    let _exclusive = self.keys().switch().write().await;
                    job.old_master = Some(hex::encode(wrapping));
                    job.new_master = Some(hex::encode(key.id()));
                    self.keys().set_next_master(key);
                } else {
                    job.old_master = old.map(hex::encode);
                    job.new_master = Some(hex::encode(wrapping));
                }
                self.note_key_event(
                    "master",
                    job.new_master.as_deref().unwrap_or(""),
                    "created",
                    None,
                )
                .await?;
                job.phase = Phase::Rewrap;
                Ok(false)
            }
            Phase::Rewrap => {
                let done = self
                    .rewrap_walk(job, |k, slot, e| k.rewrap_kek(slot, e))
                    .await?;
                if done {
                    job.phase = Phase::Reseal;
                }
                Ok(false)
            }
            Phase::Reseal => {
                let keys = self.list_access_keys().await?;
                for rec in keys {
                    let engine = self.clone();
                    let ak = rec.access_key.clone();
                    let changed = self
                        .meta_call(move |m| {
                            m.reseal_access_key(&ak, |r| {
                                engine
                                    .keys()
                                    .reseal_secret(&r.access_key, &r.sealed_secret)
                                    .map_err(|e| MetaError::Invalid(e.to_string()))
                            })
                        })
                        .await?;
                    job.resealed += changed as u64;
                }
                for r in self.resealers() {
                    job.resealed += r.reseal(self).await?;
                }
                job.phase = Phase::Retire;
                Ok(false)
            }
            Phase::Retire => {
                // Nothing may still need the old key: every KEK is under the new one.
                let stats = self
                    .key_call(|k| {
                        k.store()
                            .stats()
                            .map_err(|e| EngineError::internal(e.to_string()))
                    })
                    .await?;
                let (wrapping, _) = self.keys().master_ids();
                if stats
                    .by_wrapper
                    .iter()
                    .any(|(w, kind, n)| *kind == KeyKind::Kek && *w != wrapping && *n > 0)
                {
                    tracing::warn!("master rotation: KEKs under the old key remain; walking again");
                    job.phase = Phase::Rewrap;
                    job.cursor = 0;
                    return Ok(false);
                }
                {
                    let _exclusive = self.keys().switch().write().await;
                    self.keys().promote_next_master();
                }
                let (c, n) = (cur.clone(), next.clone());
                tokio::task::spawn_blocking(move || -> std::result::Result<(), EngineError> {
                    if n.exists() {
                        // Old key: overwritten in place and removed, then the new one takes its
                        // name (a crash in between is finished by KeyRing::open).
                        destroy_key_file(&c)?;
                        std::fs::rename(&n, &c).map_err(strata_storage_node::keys::KeyError::Io)?;
                        if let Some(d) = c.parent() {
                            std::fs::File::open(d)
                                .and_then(|f| f.sync_all())
                                .map_err(strata_storage_node::keys::KeyError::Io)?;
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(|e| EngineError::internal(e.to_string()))??;
                if let Some(old) = &job.old_master {
                    self.note_key_event("master", old, "destroyed", None)
                        .await?;
                }
                Ok(true)
            }
        }
    }

    async fn bucket_step(&self, bucket: &str, job: &mut Job) -> Result<bool> {
        match job.phase {
            Phase::Prepare => {
                let Some(b) = self.bucket(bucket).await? else {
                    return Ok(true);
                };
                if let (Some(old), Some(_)) = (b.previous_keks.first(), b.kek_ref()) {
                    // Switched before a crash: carry on with that rotation.
                    job.old_kek = Some(old.clone());
                    job.new_kek = b.kek_ref();
                } else {
                    let old = b.kek_ref().ok_or_else(|| {
                        EngineError::internal(format!("bucket {bucket} has no KEK slot"))
                    })?;
                    let fresh = self.new_kek().await?;
                    let new = KekRef {
                        id: fresh.id.clone(),
                        slot: fresh.slot,
                    };
                    let _exclusive = self.keys().switch().write().await;
                    let (n, nk) = (bucket.to_string(), new.clone());
                    match self.meta_call(move |m| m.rotate_bucket_kek(&n, &nk)).await {
                        Ok(_) => {}
                        Err(e) => {
                            drop(_exclusive);
                            self.discard_key(fresh.key_ref(), "kek-rotation-refused")
                                .await;
                            return Err(e);
                        }
                    }
                    job.old_kek = Some(old);
                    job.new_kek = Some(new);
                }
                if let Some(k) = &job.new_kek {
                    self.note_key_event("kek", &k.id, "created", Some(bucket))
                        .await?;
                }
                if let Some(k) = &job.old_kek {
                    self.note_key_event("kek", &k.id, "rotated", Some(bucket))
                        .await?;
                }
                job.phase = Phase::Rewrap;
                Ok(false)
            }
            Phase::Rewrap => {
                let (old, new) = match (&job.old_kek, &job.new_kek) {
                    (Some(o), Some(n)) => (o.clone(), n.clone()),
                    _ => return Ok(true),
                };
                let done = self
                    .rewrap_walk(job, move |k, slot, e| {
                        k.rewrap_dek(slot, e, (&old.id, old.slot), (&new.id, new.slot))
                    })
                    .await?;
                if done {
                    job.phase = Phase::Retire;
                }
                Ok(false)
            }
            Phase::Reseal | Phase::Retire => {
                let Some(old) = job.old_kek.clone() else {
                    return Ok(true);
                };
                let old_id = crate::keys::parse_key_id(&old.id)?;
                let stats = self
                    .key_call(|k| {
                        k.store()
                            .stats()
                            .map_err(|e| EngineError::internal(e.to_string()))
                    })
                    .await?;
                if stats
                    .by_wrapper
                    .iter()
                    .any(|(w, kind, n)| *kind == KeyKind::Dek && *w == old_id && *n > 0)
                {
                    tracing::warn!(
                        bucket,
                        "KEK rotation: DEKs under the old KEK remain; walking again"
                    );
                    job.phase = Phase::Rewrap;
                    job.cursor = 0;
                    return Ok(false);
                }
                let (n, id) = (bucket.to_string(), old.id.clone());
                match self.meta_call(move |m| m.retire_kek(&n, &id)).await {
                    Ok(()) | Err(EngineError::Meta(MetaError::NoSuchBucket)) => {}
                    Err(e) => return Err(e),
                }
                Ok(true)
            }
        }
    }

    /// Records a key event for the inventory (`strata admin keys report`): one small record per
    /// key in the worker-state space, never key material.
    pub(crate) async fn note_key_event(
        &self,
        kind: &str,
        id: &str,
        event: &str,
        bucket: Option<&str>,
    ) -> Result<()> {
        let name = format!("key-inventory/{kind}/{id}");
        let (n, ev, b) = (name.clone(), event.to_string(), bucket.map(str::to_string));
        self.meta_call(move |m| {
            let mut rec: Value = m
                .get_worker_state(&n)?
                .and_then(|r| serde_json::from_slice(&r).ok())
                .unwrap_or_else(|| json!({}));
            rec[ev.as_str()] = json!(now_ms());
            if let Some(b) = b {
                rec["bucket"] = json!(b);
            }
            let raw = serde_json::to_vec(&rec).map_err(|e| MetaError::Invalid(e.to_string()))?;
            m.put_worker_state(&n, &raw)
        })
        .await
    }
}

/// The `key-rotation` worker.
pub struct RotationWorker {
    engine: Engine,
    steps: u64,
    last: Value,
}

impl RotationWorker {
    pub fn new(engine: Engine) -> Self {
        RotationWorker {
            engine,
            steps: 0,
            last: Value::Null,
        }
    }
}

#[async_trait::async_trait]
impl Worker for RotationWorker {
    fn name(&self) -> &'static str {
        "key-rotation"
    }

    async fn work(&mut self) -> std::result::Result<WorkState, String> {
        let more = self
            .engine
            .rotation_step()
            .await
            .map_err(|e| e.to_string())?;
        self.steps += 1;
        if let Ok(st) = self.engine.rotation_state().await {
            self.last = json!({"jobs": st.jobs, "finished": st.finished.last()});
        }
        Ok(if more {
            WorkState::Busy
        } else {
            WorkState::Idle
        })
    }

    fn status(&self) -> Value {
        json!({"steps": self.steps, "state": self.last})
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_millis(500)
    }
}
