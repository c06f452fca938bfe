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
//! - [`objects`], [`multipart`], [`buckets`], [`identity`]: operations by family.
//! - [`gc`], [`workers`]: background work as observable, throttled workers.
//! - [`keys`]: which key wraps which (master -> bucket KEK -> version DEK).
//!
//! Every metadata call runs on the blocking pool ([`Engine::meta_call`]): the metadata API is
//! synchronous (RocksDB, fsync'd group commits, bounded retry loops with sleeps), and must never
//! hold a tokio worker thread.

pub mod body;
pub mod buckets;
pub mod budget;
pub mod checksum;
pub mod error;
pub mod gc;
pub mod identity;
pub mod keys;
pub mod multipart;
pub mod objects;
pub mod read;
pub mod workers;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use strata_metadata::MetaStore;
use strata_storage_node::ChunkService;
use strata_storage_node::keys::MasterKey;

pub use body::{BodyError, BodyStream, ReadStream};
pub use error::{EngineError, Rejection, Result};
pub use write::{StoredBlob, WriteSpec};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Plaintext bytes per chunk sent to the chunk store.
    pub chunk_size: usize,
    /// Chunks of one write being stored at the same time.
    pub write_parallelism: usize,
    /// Chunks fetched ahead while streaming a read.
    pub read_ahead: usize,
    /// Total bytes of object data the engine may hold in buffers at once (all requests).
    pub buffer_budget: usize,
    /// How long deleted data waits before its chunks are removed.
    pub gc_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunk_size: 4 * 1024 * 1024,
            write_parallelism: 4,
            read_ahead: 2,
            buffer_budget: 1024 * 1024 * 1024,
            gc_grace: Duration::from_secs(15 * 60),
        }
    }
}

struct Inner {
    meta: MetaStore,
    chunks: Arc<dyn ChunkService>,
    keys: keys::KeyRing,
    cfg: EngineConfig,
    budget: budget::BufferBudget,
    pins: Arc<read::ReadPins>,
    workers: workers::Workers,
}

/// The engine. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        meta: MetaStore,
        chunks: Arc<dyn ChunkService>,
        master: Arc<MasterKey>,
        cfg: EngineConfig,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                meta,
                chunks,
                keys: keys::KeyRing::new(master),
                budget: budget::BufferBudget::new(cfg.buffer_budget),
                pins: Arc::default(),
                workers: workers::Workers::default(),
                cfg,
            }),
        }
    }

    pub fn cfg(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn keys(&self) -> &keys::KeyRing {
        &self.inner.keys
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

    /// Starts the background workers this process runs: the GC and the write-intent sweep.
    pub fn start_background(&self) {
        self.workers().spawn(gc::GcWorker::new(self.clone()), 0);
        self.workers()
            .spawn(gc::IntentSweeper::new(self.clone()), 0);
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
