//! Background work as workers: each worker does one bounded unit of work per call and says
//! whether there is more; a runner drives every worker on its own task, throttles it (the
//! "tranquility" knob: after a unit that took `t`, sleep `tranquility × t`), records its status
//! for `strata admin worker list`, and stops it cleanly at shutdown.
//!
//! GC, the intent sweep and rebalancing are workers today; lifecycle, restore, destruction,
//! rebuild and migration jobs are meant to be written the same way. A worker keeps its durable
//! progress (cursors) in the metadata tier, so it resumes after a crash; the runner's status is
//! in memory only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

/// What a unit of work found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// Did something; call again (after the throttle pause).
    Busy,
    /// Nothing to do now; call again after the idle interval.
    Idle,
    /// Finished for good; the runner stops this worker.
    Done,
    /// A singleton worker on a process that is not the leader: waits, does nothing.
    Standby,
}

/// Whether this process may run singleton work now (see `leader.rs`).
pub trait LeaderGate: Send + Sync + 'static {
    fn is_leader(&self) -> bool;
}

/// Gate of a process that is always the leader (embedded store).
pub struct AlwaysLeader;

impl LeaderGate for AlwaysLeader {
    fn is_leader(&self) -> bool {
        true
    }
}

/// How often a standby singleton worker checks whether its process became the leader.
const STANDBY_POLL: Duration = Duration::from_millis(200);

#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    /// One bounded unit of work. Errors are recorded in the status and retried after the idle
    /// interval; a worker must leave durable state consistent whatever the outcome.
    async fn work(&mut self) -> Result<WorkState, String>;
    /// Worker-specific progress (counters, queue length, cursor position, rate...).
    fn status(&self) -> Value;
    /// Pause between calls when idle (or after an error).
    fn idle_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// What `strata admin worker list` shows for one worker.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerInfo {
    pub name: String,
    pub state: WorkState,
    pub tranquility: u32,
    pub units: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Milliseconds since the last unit of work ended.
    pub idle_ms: u64,
    pub status: Value,
    #[serde(skip)]
    last_end: Option<Instant>,
}

struct Slot {
    info: Mutex<WorkerInfo>,
    tranquility: Mutex<u32>,
}

/// The set of running workers.
#[derive(Clone)]
pub struct Workers {
    slots: Arc<Mutex<BTreeMap<String, Arc<Slot>>>>,
    stop: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            slots: Arc::default(),
            stop: watch::channel(false).0,
            tasks: Arc::default(),
        }
    }
}

impl Workers {
    /// Starts `worker` on its own task with the given tranquility (0 = no pause when busy).
    pub fn spawn<W: Worker>(&self, worker: W, tranquility: u32) {
        self.spawn_gated(worker, tranquility, None)
    }

    /// Starts a worker that must run on one process only: it does a unit of work only while
    /// `gate` says this process is the leader, and is `Standby` otherwise. Leadership is checked
    /// before every unit, and units are bounded, so a process that loses leadership stops
    /// within one unit.
    pub fn spawn_singleton<W: Worker>(
        &self,
        worker: W,
        tranquility: u32,
        gate: Arc<dyn LeaderGate>,
    ) {
        self.spawn_gated(worker, tranquility, Some(gate))
    }

    fn spawn_gated<W: Worker>(
        &self,
        mut worker: W,
        tranquility: u32,
        gate: Option<Arc<dyn LeaderGate>>,
    ) {
        let name = worker.name().to_string();
        let slot = Arc::new(Slot {
            info: Mutex::new(WorkerInfo {
                name: name.clone(),
                state: WorkState::Idle,
                tranquility,
                units: 0,
                errors: 0,
                last_error: None,
                idle_ms: 0,
                status: worker.status(),
                last_end: None,
            }),
            tranquility: Mutex::new(tranquility),
        });
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), slot.clone());
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    break;
                }
                if let Some(g) = &gate
                    && !g.is_leader()
                {
                    slot.info.lock().unwrap_or_else(|e| e.into_inner()).state = WorkState::Standby;
                    tokio::select! {
                        _ = tokio::time::sleep(STANDBY_POLL) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                let started = Instant::now();
                let outcome = worker.work().await;
                let took = started.elapsed();
                let pause = {
                    let mut info = slot.info.lock().unwrap_or_else(|e| e.into_inner());
                    info.units += 1;
                    info.status = worker.status();
                    info.last_end = Some(Instant::now());
                    let tranquility = *slot.tranquility.lock().unwrap_or_else(|e| e.into_inner());
                    info.tranquility = tranquility;
                    match outcome {
                        Ok(state) => {
                            info.state = state;
                            match state {
                                WorkState::Busy => took * tranquility,
                                WorkState::Idle => worker.idle_interval(),
                                WorkState::Done => break,
                                WorkState::Standby => worker.idle_interval(),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(worker = %info.name, error = %e, "worker unit failed; will retry");
                            info.errors += 1;
                            info.last_error = Some(e.chars().take(500).collect());
                            info.state = WorkState::Idle;
                            worker.idle_interval()
                        }
                    }
                };
                if !pause.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                } else {
                    // Busy with no throttle: still let other tasks run.
                    tokio::task::yield_now().await;
                }
            }
            tracing::debug!(worker = %name, "worker stopped");
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Every worker's status, by name.
    pub fn list(&self) -> Vec<WorkerInfo> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .map(|s| {
                let mut info = s.info.lock().unwrap_or_else(|e| e.into_inner()).clone();
                info.idle_ms = info
                    .last_end
                    .map(|t| t.elapsed().as_millis() as u64)
                    .unwrap_or(0);
                info
            })
            .collect()
    }

    /// Sets a worker's tranquility; false if there is no such worker.
    pub fn set_tranquility(&self, name: &str, tranquility: u32) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get(name) {
            Some(s) => {
                *s.tranquility.lock().unwrap_or_else(|e| e.into_inner()) = tranquility;
                true
            }
            None => false,
        }
    }

    /// Asks every worker to stop after its current unit, and waits (bounded) for them.
    pub async fn shutdown(&self, wait: Duration) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(wait, futures::future::join_all(tasks)).await;
    }
}

impl crate::Engine {
    /// A worker's persisted state under `key` (JSON); the default when none was saved yet or
    /// it no longer decodes (a worker's state is a resumable cursor, never data).
    pub async fn load_worker_state<T>(&self, key: &'static str) -> crate::Result<T>
    where
        T: serde::de::DeserializeOwned + Default,
    {
        let raw = self.meta_call(move |m| m.get_worker_state(key)).await?;
        Ok(raw
            .and_then(|r| serde_json::from_slice(&r).ok())
            .unwrap_or_default())
    }

    /// Persists a worker's state under `key` (synced with the metadata tier's commit).
    pub async fn save_worker_state<T: Serialize>(
        &self,
        key: &'static str,
        state: &T,
    ) -> crate::Result<()> {
        let raw =
            serde_json::to_vec(state).map_err(|e| crate::EngineError::internal(e.to_string()))?;
        self.meta_call(move |m| m.put_worker_state(key, &raw)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        left: u32,
        done: u32,
    }

    #[async_trait::async_trait]
    impl Worker for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        async fn work(&mut self) -> Result<WorkState, String> {
            if self.left == 0 {
                return Ok(WorkState::Done);
            }
            self.left -= 1;
            self.done += 1;
            if self.done == 2 {
                return Err("second unit fails".into());
            }
            Ok(WorkState::Busy)
        }
        fn status(&self) -> Value {
            serde_json::json!({"done": self.done})
        }
        fn idle_interval(&self) -> Duration {
            Duration::from_millis(5)
        }
    }

    #[tokio::test]
    async fn runner_drives_records_and_stops() {
        let w = Workers::default();
        w.spawn(Counter { left: 5, done: 0 }, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let info = &w.list()[0];
            if info.state == WorkState::Done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let info = &w.list()[0];
        assert_eq!(info.state, WorkState::Done);
        assert_eq!(info.status["done"], 5);
        assert_eq!(info.errors, 1);
        assert_eq!(info.last_error.as_deref(), Some("second unit fails"));
        assert!(w.set_tranquility("counter", 3));
        assert!(!w.set_tranquility("nope", 3));
        w.shutdown(Duration::from_secs(1)).await;
    }

    struct Gate(std::sync::atomic::AtomicBool);
    impl LeaderGate for Gate {
        fn is_leader(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_singleton_worker_runs_only_while_its_process_leads() {
        let w = Workers::default();
        let gate = Arc::new(Gate(false.into()));
        w.spawn_singleton(
            Counter {
                left: 1_000_000,
                done: 0,
            },
            0,
            gate.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let info = &w.list()[0];
        assert_eq!(info.state, WorkState::Standby);
        assert_eq!(info.units, 0, "worked while not the leader");
        gate.0.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.list()[0].units < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            w.list()[0].units >= 3,
            "did not start when it became leader"
        );
        // Losing leadership stops it within one unit.
        gate.0.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let units = w.list()[0].units;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            w.list()[0].units,
            units,
            "kept working after leadership was lost"
        );
        assert_eq!(w.list()[0].state, WorkState::Standby);
        w.shutdown(Duration::from_secs(1)).await;
    }
}
