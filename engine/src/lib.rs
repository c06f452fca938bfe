//! The object engine: everything Strata does with buckets, object versions and their bytes, with
//! no S3 in it. The S3 gateway translates requests into these calls and the answers back; the
//! lifecycle engine, the archive tier, the importer and the operator API call the same functions.
//!
//! ```text
//! gateway (S3 edge) / admin API / background workers
//!          │  Engine: async, S3-free
//!          ▼
//!   ┌──────────────┬──────────────┐
//!   metadata tier    chunk store (encrypt, erasure-code, shard files)
//! ```
//!
//! - [`write`] / [`read`]: the data path (chunking under a memory budget, write intents, reads
//!   pinned against GC).
//! - [`objects`], [`multipart`], [`buckets`], [`identity`], [`acl`]: operations by family;
//!   [`authz`]: the access decision.
//! - [`gc`], [`workers`]: background work as observable, throttled workers.
//! - [`keys`]: which key wraps which (master -> bucket KEK -> version DEK).
//! - [`sse`], [`kms`]: the server-side-encryption API (SSE-S3/KMS/C bindings, KMS keys).
//!
//! Every metadata call runs on the blocking pool ([`Engine::meta_call`]): the metadata API is
//! synchronous (RocksDB, fsync'd group commits, bounded retry loops with sleeps), and must never
//! hold a tokio worker thread.

pub mod access_log;
pub mod acl;
pub mod archive;
pub mod audit;
pub mod authz;
pub mod body;
pub mod buckets;
pub mod budget;
pub mod checksum;
pub mod completions;
pub mod destruction;
pub mod disks;
pub mod error;
pub mod gc;
pub mod housekeeping;
pub mod identity;
pub mod instance;
pub mod key_ops;
pub mod keys;
pub mod kms;
pub mod layouts;
pub mod leader;
pub mod lifecycle;
pub mod multipart;
pub mod objects;
pub mod policy;
pub mod purge;
pub mod read;
pub mod rebalance;
pub mod rebuild;
pub mod report;
pub mod retention;
pub mod rotation;
pub mod sse;
pub mod usage;
pub mod workers;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use strata_destruction_log::LogHandle;
use strata_metadata::{LayoutRecord, MetaStore};
use strata_storage_node::ChunkService;

pub use body::{BodyError, BodyStream, ReadStream};
pub use error::{EngineError, Rejection, Result};
pub use write::{StoredBlob, WriteSpec};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Chunks of one write being stored at the same time.
    pub write_parallelism: usize,
    /// Chunks fetched ahead while streaming a read.
    pub read_ahead: usize,
    /// Total bytes of object data the engine may hold in buffers at once (all requests).
    pub buffer_budget: usize,
    /// Bytes per second the rebalance job may move from old layouts to the current one
    /// (0: no rebalancing).
    pub rebalance_rate: u64,
    /// Server access logs: longest wait of a staged entry before its log object is written.
    pub access_log_delay: Duration,
    /// `Some(n)`: one lifecycle day lasts n seconds (tests, demos); `None`: real days. Also the
    /// day of other day-counted periods (the account-closure grace).
    pub lifecycle_day_secs: Option<u64>,
    /// Archive containers, compaction and restore delays.
    pub archive: archive::ArchiveConfig,
    /// Cluster mode: the rebuild job's rate limit (bytes per second) and priority (`None`: no
    /// rebuild worker, as in the single-process default whose store heals itself).
    pub rebuild: Option<(u64, rebuild::Priority)>,
    /// TTL of the process lease that leadership hangs on (shared metadata tier only): a killed
    /// leader's singleton work moves to another process within about this long.
    pub lease_ttl: Duration,
    /// History compaction / defragmentation of the metadata tier (etcd only).
    pub housekeeping: housekeeping::HousekeepingConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            write_parallelism: 4,
            read_ahead: 2,
            buffer_budget: 1024 * 1024 * 1024,
            rebalance_rate: 16 * 1024 * 1024,
            access_log_delay: Duration::from_secs(300),
            lifecycle_day_secs: None,
            archive: archive::ArchiveConfig::default(),
            rebuild: None,
            lease_ttl: Duration::from_secs(10),
            housekeeping: housekeeping::HousekeepingConfig::default(),
        }
    }
}

struct Inner {
    meta: MetaStore,
    chunks: Arc<dyn ChunkService>,
    keys: keys::KeyRing,
    log: Arc<LogHandle>,
    cfg: EngineConfig,
    budget: budget::BufferBudget,
    pins: Arc<read::ReadPins>,
    workers: workers::Workers,
    instance: instance::InstanceId,
    layouts: layouts::Layouts,
    access_log: access_log::AccessLog,
    usage: usage::UsageMeter,
    /// The audit log, once the server set it (`Engine::set_audit_log`); none in tests and tools.
    audit: std::sync::OnceLock<Arc<audit::AuditLog>>,
    /// Parsed bucket policies, keyed by the stored document (authorisation decisions).
    policies: policy::PolicyCache,
    /// The local disks' health, once the server set it (`Engine::set_disk_health`).
    disk_health: std::sync::OnceLock<Arc<disks::DiskHealth>>,
    /// Cluster mode: re-reads the nodes' disk ids into the map (`Engine::set_disk_check`).
    disk_check: std::sync::OnceLock<Arc<dyn rebuild::DiskCheck>>,
    /// Serialises changes to the key-rotation queue.
    rotation: tokio::sync::Mutex<()>,
    /// This process's standing in the election of singleton work.
    leadership: leader::Leadership,
    /// Other holders of secrets sealed under the master key (migration jobs), re-sealed by a
    /// master rotation like access-key secrets.
    resealers: std::sync::Mutex<Vec<Arc<dyn rotation::SecretResealer>>>,
}

/// The engine. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// How many buckets' parsed policies the engine keeps (at most 20 KiB of document each).
const POLICY_CACHE_BUCKETS: usize = 1024;

impl Engine {
    /// An engine over the stores. `layout` is the current placement layout (new data is written
    /// with it; see `MetaStore::ensure_current_layout`), and `instance` this process's registered
    /// instance id (the owner of its write intents).
    ///
    /// `keys` holds the master keys and the key store ([`keys::KeyRing::open`]), `log` the
    /// destruction log that every destroyed version gets a record in.
    pub fn new(
        meta: MetaStore,
        chunks: Arc<dyn ChunkService>,
        keys: keys::KeyRing,
        log: impl Into<LogHandle>,
        cfg: EngineConfig,
        layout: LayoutRecord,
        instance: String,
    ) -> Result<Self> {
        let layouts = layouts::Layouts::load(&meta, layout)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                meta,
                chunks,
                keys,
                log: Arc::new(log.into()),
                budget: budget::BufferBudget::new(cfg.buffer_budget),
                pins: Arc::default(),
                workers: workers::Workers::default(),
                instance: instance::InstanceId::new(instance),
                layouts,
                access_log: access_log::AccessLog::new(cfg.access_log_delay),
                usage: usage::UsageMeter::default(),
                audit: std::sync::OnceLock::new(),
                policies: policy::PolicyCache::new(POLICY_CACHE_BUCKETS),
                disk_health: std::sync::OnceLock::new(),
                disk_check: std::sync::OnceLock::new(),
                rotation: tokio::sync::Mutex::new(()),
                leadership: leader::Leadership::new(cfg.lease_ttl),
                resealers: std::sync::Mutex::new(Vec::new()),
                cfg,
            }),
        })
    }

    pub fn cfg(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn keys(&self) -> &keys::KeyRing {
        &self.inner.keys
    }

    /// Registers a holder of sealed secrets that a master rotation must re-seal (see
    /// [`rotation::SecretResealer`]); registered at start, before the workers run.
    pub fn add_resealer(&self, r: Arc<dyn rotation::SecretResealer>) {
        self.inner
            .resealers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    pub(crate) fn resealers(&self) -> Vec<Arc<dyn rotation::SecretResealer>> {
        self.inner
            .resealers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the audit log every request and operator action is recorded in; once (false if it
    /// was set already).
    pub fn set_audit_log(&self, log: Arc<audit::AuditLog>) -> bool {
        self.inner.audit.set(log).is_ok()
    }

    pub fn audit_log(&self) -> Option<&Arc<audit::AuditLog>> {
        self.inner.audit.get()
    }

    /// Sets the health of the local disks and starts the worker that samples them; once (false
    /// if it was set already). None in cluster mode (the nodes own the disks) and in tools.
    pub fn set_disk_health(&self, health: Arc<disks::DiskHealth>) -> bool {
        if self.inner.disk_health.set(health.clone()).is_err() {
            return false;
        }
        self.workers().spawn(disks::DiskWatch::new(health), 0);
        true
    }

    pub fn disk_health(&self) -> Option<&Arc<disks::DiskHealth>> {
        self.inner.disk_health.get()
    }

    /// Cluster mode: how the rebuild asks for the nodes' current disk ids before it reports
    /// its queues empty (see `rebuild::DiskCheck`); once, before `start_background`.
    pub fn set_disk_check(&self, check: Arc<dyn rebuild::DiskCheck>) -> bool {
        self.inner.disk_check.set(check).is_ok()
    }

    pub fn disk_check(&self) -> Option<&Arc<dyn rebuild::DiskCheck>> {
        self.inner.disk_check.get()
    }

    /// Records a request in the audit log and returns once it is durable; Ok at once when the
    /// engine has no audit log.
    pub async fn audit(&self, rec: audit::AuditRecord) -> std::result::Result<(), String> {
        match self.inner.audit.get() {
            Some(a) => a.append(rec).await,
            None => Ok(()),
        }
    }

    /// The destruction log (blocking calls: use the blocking pool).
    pub fn destruction_log(&self) -> &Arc<LogHandle> {
        &self.inner.log
    }

    pub(crate) fn chunks(&self) -> &Arc<dyn ChunkService> {
        &self.inner.chunks
    }

    pub(crate) fn budget(&self) -> &budget::BufferBudget {
        &self.inner.budget
    }

    pub(crate) fn pins(&self) -> &Arc<read::ReadPins> {
        &self.inner.pins
    }

    /// The background workers of this process.
    pub fn workers(&self) -> &workers::Workers {
        &self.inner.workers
    }

    /// The instance id that owns this process's new write intents.
    pub fn instance(&self) -> &instance::InstanceId {
        &self.inner.instance
    }

    pub fn layouts(&self) -> &layouts::Layouts {
        &self.inner.layouts
    }

    pub(crate) fn access_log(&self) -> &access_log::AccessLog {
        &self.inner.access_log
    }

    pub(crate) fn rotation_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.rotation
    }

    /// This process's leadership of singleton work.
    pub fn leadership(&self) -> &leader::Leadership {
        &self.inner.leadership
    }

    /// What singleton workers ask before every unit: always yes with the embedded store, the
    /// etcd election otherwise (the `leader-election` worker started by `start_background`
    /// keeps it current).
    pub fn leader_gate(&self) -> Arc<dyn workers::LeaderGate> {
        if self.inner.meta.coordinator().backend() == "local" {
            Arc::new(workers::AlwaysLeader)
        } else {
            Arc::new(self.leadership().clone())
        }
    }

    /// Starts the background workers this process runs: the instance lease on every process;
    /// on the leader only (see `leader.rs`): the GC and the write-intent sweep, lifecycle, the
    /// archive tier (repack, restore, compaction), key rotation and purges, the rebalance of old
    /// layouts, the rebuild of degraded chunks and metadata housekeeping. Every process runs its
    /// instance lease and delivers its own server access-log entries. With the embedded store
    /// the process is always the leader; with a shared one (etcd) an election worker keeps a
    /// process lease and follows the election ([`Engine::leader_gate`]).
    pub fn start_background(&self) {
        let w = self.workers();
        w.spawn(instance::LeaseWorker::new(self.clone()), 0);
        let coord = self.inner.meta.coordinator();
        if coord.backend() != "local" {
            w.spawn(
                leader::ElectionWorker::new(
                    coord,
                    self.leadership().clone(),
                    self.instance().get(),
                ),
                0,
            );
        }
        let gate = self.leader_gate();
        w.spawn_singleton(gc::GcWorker::new(self.clone()), 0, gate.clone());
        w.spawn_singleton(gc::IntentSweeper::new(self.clone()), 0, gate.clone());
        w.spawn_singleton(
            completions::CompletionCleaner::new(self.clone()),
            0,
            gate.clone(),
        );
        w.spawn(access_log::AccessLogWorker::new(self.clone()), 0);
        w.spawn(usage::UsageFlusher::new(self.clone()), 0);
        w.spawn_singleton(usage::UsageFolder::new(self.clone()), 0, gate.clone());
        // Lifecycle and the archive tier.
        w.spawn_singleton(
            lifecycle::worker::LifecycleWorker::new(self.clone(), self.lifecycle_clock()),
            0,
            gate.clone(),
        );
        w.spawn_singleton(
            archive::repack::ArchiveWorker::new(self.clone()),
            0,
            gate.clone(),
        );
        w.spawn_singleton(
            archive::restore::RestoreWorker::new(self.clone()),
            0,
            gate.clone(),
        );
        w.spawn_singleton(
            archive::compact::CompactionWorker::new(self.clone()),
            0,
            gate.clone(),
        );
        // Key lifecycle: rotations, bucket purges and account closures.
        w.spawn_singleton(rotation::RotationWorker::new(self.clone()), 0, gate.clone());
        w.spawn_singleton(purge::PurgeWorker::new(self.clone()), 0, gate.clone());
        if self.cfg().rebalance_rate > 0 {
            w.spawn_singleton(
                rebalance::Rebalancer::new(self.clone(), self.cfg().rebalance_rate),
                0,
                gate.clone(),
            );
        }
        if let Some((rate, priority)) = self.cfg().rebuild {
            w.spawn_singleton(
                rebuild::Rebuilder::new(self.clone(), rate, priority),
                0,
                gate.clone(),
            );
        }
        if let Some(hk) = self.inner.meta.housekeeping() {
            w.spawn_singleton(
                housekeeping::HousekeepingWorker::new(hk, self.cfg().housekeeping.clone()),
                0,
                gate,
            );
        }
    }

    /// Stops the workers (bounded wait), gives up leadership (so another process need not wait
    /// for the lease to run out) and retires the instance, so intents of requests cut short now
    /// are swept at the next start at once.
    pub async fn shutdown(&self) {
        self.workers().shutdown(Duration::from_secs(5)).await;
        // Access log entries still in memory are staged, so the next start delivers them.
        if let Err(e) = self.stage_access_log().await {
            tracing::warn!(error = %e, "could not stage the access log at shutdown");
        }
        if let Err(e) = self.flush_usage().await {
            tracing::warn!(error = %e, "could not flush the usage meter at shutdown");
        }
        let (leadership, coord) = (self.leadership().clone(), self.inner.meta.coordinator());
        let _ = tokio::task::spawn_blocking(move || leadership.release(coord.as_ref())).await;
        let id = self.instance().get();
        if let Err(e) = self.meta_call(move |m| m.retire_instance(&id)).await {
            tracing::warn!(error = %e, "could not retire the instance");
        }
    }

    /// Runs a metadata call on the blocking pool.
    pub async fn meta_call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&MetaStore) -> strata_metadata::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let meta = self.inner.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| EngineError::internal(format!("metadata task failed: {e}")))?
            .map_err(EngineError::from)
    }

    /// The metadata store, for synchronous callers that are not on the async runtime (start-up,
    /// offline tools, tests). Request paths use [`Engine::meta_call`].
    pub fn meta_blocking(&self) -> &MetaStore {
        &self.inner.meta
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}
