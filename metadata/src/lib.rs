//! The metadata tier: the single source of truth for what exists.
//!
//! Layers, bottom up:
//! - [`kv`]: a narrow ordered key-value interface (get, range scan, atomic batch with
//!   compare-and-set) and its embedded RocksDB implementation.
//! - [`MetaStore`]: buckets, object versions, multipart state, listings, the GC queue and
//!   users/keys, written only against the `kv` interface.
//!
//! Module map (one family of operations per module, all `impl MetaStore`):
//! `store` (handle, open, retry loop, record encoding, shared read/stage helpers), `buckets`,
//! `objects` (versions, delete markers, per-version updates), `multipart`, `listing`, `gc` (GC
//! queue, write intents), `users` (users, access keys), `maintenance` (backup, restore, verify);
//! `keys` (key encoding, ids) and `types` (the records) are the shared vocabulary.

mod buckets;
mod error;
mod gc;
pub mod keys;
pub mod kv;
mod listing;
mod maintenance;
mod multipart;
mod objects;
mod store;
pub mod types;
mod users;

pub use error::{MetaError, Result};
pub use maintenance::VerifyReport;
pub use multipart::MIN_PART_SIZE;
pub use store::MetaStore;
pub use types::*;
