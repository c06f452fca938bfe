//! The chunk store: a chunk is encrypted (AES-256-GCM under its object version's data key),
//! then erasure-coded into k data + m parity shards, each written with a checksummed header to its
//! own disk directory and fsync'd before the put returns.
//!
//! One implementation ([`LocalChunkStore`]) serves both the in-process API (the [`ChunkService`]
//! trait) and the HTTP service that `strata node` runs.

pub mod format;
pub mod http;
pub mod keys;
pub mod pipeline;
mod store;

use async_trait::async_trait;
use bytes::Bytes;

pub use http::{RemoteChunkStore, serve_http};
pub use keys::{DataKey, KeyEncryptionKey, MasterKey};
pub use store::{
    BadShard, HealReport, LocalChunkStore, NodeConfig, ReadReport, ScrubReport, ShardFault,
    ShardProblem, disk_usage_fraction,
};

/// Identity of one chunk: the blob (one written byte stream) and the chunk's index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId {
    pub blob: [u8; 16],
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkStat {
    /// Plaintext length.
    pub len: u64,
    /// Shards present and valid, out of k + m.
    pub healthy_shards: usize,
    pub total_shards: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("chunk not found")]
    NotFound,
    /// Fewer than k shards could be read and verified.
    #[error("chunk unreadable: only {available} of {needed} shards usable")]
    Unrecoverable { available: usize, needed: usize },
    /// AES-GCM authentication failed (wrong key or tampered data).
    #[error("chunk failed authentication")]
    Integrity,
    /// The disks are above the configured high-water mark: writes are refused.
    #[error("insufficient storage")]
    InsufficientStorage,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the gateway needs from chunk storage, in-process or over HTTP.
#[async_trait]
pub trait ChunkService: Send + Sync + 'static {
    /// Encrypts, erasure-codes and durably stores the chunk. Returns only when every shard is
    /// fsync'd. Putting an existing id replaces it atomically.
    async fn put_chunk(
        &self,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError>;
    /// Reads any k valid shards, decodes and decrypts. Bad shards are reported in the log and
    /// healed in the background.
    async fn get_chunk(&self, id: ChunkId, dek: &DataKey) -> Result<Bytes, NodeError>;
    /// Removes every shard of the chunk (idempotent: a missing chunk is Ok).
    async fn delete_chunk(&self, id: ChunkId) -> Result<(), NodeError>;
    async fn stat_chunk(&self, id: ChunkId) -> Result<ChunkStat, NodeError>;
}
