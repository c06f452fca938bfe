//! The chunk store: a chunk is encrypted (AES-256-GCM under its object version's data key, a
//! random nonce per write), then erasure-coded into k data + m parity shards, each written with a
//! checksummed header to its own disk directory and fsync'd before the put returns. The geometry
//! (which disks, k, m) is a [`Layout`] passed with every call, so one store serves chunks written
//! under any number of layouts.
//!
//! One implementation ([`LocalChunkStore`]) serves both the in-process API (the [`ChunkService`]
//! trait) and the HTTP service that `strata node` runs.
//!
//! Modules: `layout` (the geometry and its wire form), `format` (shard header and tombstone
//! bytes), `pipeline` (encrypt/encode and back, no I/O), `store` (put/get/stat), `delete`
//! (tombstoned deletion), `repair` (heal and scrub), `files` (paths and blocking file helpers),
//! `locks` (per-chunk locks), `report` (what reads/heals/scrubs found), `http` (node API and
//! client), `keys` (key hierarchy); cluster mode: `tls` (cluster CA, mutual TLS), `shards` (shard
//! I/O on a local or remote disk), `cluster` (placement groups, the primary pipeline, the gateway's
//! client), `node_server` (the cluster node API).

pub mod cipher;
pub mod cluster;
mod delete;
mod files;
pub mod format;
pub mod http;
pub mod key_client;
pub mod keys;
pub mod layout;
mod locks;
pub mod node_server;
pub mod pipeline;
mod repair;
mod report;
pub mod shards;
mod store;
pub mod tls;

use async_trait::async_trait;
use bytes::Bytes;

pub use files::{DiskSpace, disk_space, disk_usage_fraction};
pub use http::{RemoteChunkStore, serve_http};
pub use keys::{DataKey, KeyEncryptionKey, MasterKey};
pub use layout::Layout;
pub use report::{
    BadShard, HealReport, ReadReport, RebuildReport, ScrubReport, ShardFault, ShardProblem,
};
pub use store::{LocalChunkStore, NodeConfig};

/// Identity of one chunk: the blob (one written byte stream) and the chunk's index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId {
    pub blob: [u8; 16],
    pub index: u32,
}

/// `blob || index_le32`: the placement key and the AES-GCM AAD of a chunk.
pub(crate) fn chunk_key(id: ChunkId) -> [u8; 20] {
    pipeline::chunk_aad(id)
}

/// At most `max` characters of untrusted text, for logs and error messages.
pub(crate) fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
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
    /// Puts are create-only: some file of this chunk id (a shard under any layout, or a
    /// tombstone) already exists. Nothing was written.
    #[error("chunk already exists")]
    AlreadyExists,
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

/// What the gateway needs from chunk storage, in-process or over HTTP. Every call names the
/// [`Layout`] the chunk was (or is to be) written with.
#[async_trait]
pub trait ChunkService: Send + Sync + 'static {
    /// Encrypts under a fresh random nonce, erasure-codes and durably stores the chunk. Returns
    /// only when every shard is fsync'd. Create-only: if any file of `id` exists (any layout),
    /// refuses with `AlreadyExists` and writes nothing.
    async fn put_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
        plaintext: Bytes,
    ) -> Result<(), NodeError>;
    /// Reads any k valid shards, decodes and decrypts. Bad shards are reported in the log and
    /// healed in the background.
    async fn get_chunk(
        &self,
        layout: &Layout,
        id: ChunkId,
        dek: &DataKey,
    ) -> Result<Bytes, NodeError>;
    /// Removes every shard of the chunk, under a tombstone so that nothing rebuilds it
    /// (idempotent: a missing chunk is Ok).
    async fn delete_chunk(&self, layout: &Layout, id: ChunkId) -> Result<(), NodeError>;
    async fn stat_chunk(&self, layout: &Layout, id: ChunkId) -> Result<ChunkStat, NodeError>;
    /// Restores every missing or bad shard of the chunk from k survivors (no key needed).
    /// Stores that cannot rebuild on their own answer `Invalid`.
    async fn rebuild_chunk(
        &self,
        _layout: &Layout,
        _id: ChunkId,
    ) -> Result<RebuildReport, NodeError> {
        Err(NodeError::Invalid(
            "this chunk store does not rebuild chunks".into(),
        ))
    }
}
