//! The metadata tier: the single source of truth for what exists.
//!
//! Layers, bottom up:
//! - [`kv`]: a narrow ordered key-value interface (get, range scan, atomic batch with
//!   compare-and-set) and its embedded RocksDB implementation.
//! - [`kv_etcd`]: the same interface on etcd v3 (cluster mode), selected by
//!   [`MetaStore::open_url`] with `etcd://HOST:PORT,.../PREFIX`.
//! - [`coord`]: process leases and leader election (etcd; always-leader for RocksDB).
//! - [`MetaStore`]: buckets, object versions, multipart state, listings, the GC queue and
//!   users/keys, written only against the `kv` interface.
//!
//! Module map (one family of operations per module, all `impl MetaStore`): `store` (handle, open,
//! format check, retry loop, record encoding, shared read helpers), `buckets`, `objects` (versions,
//! delete markers), `lock` (Object Lock rules; the only way to change retention, legal hold, tags
//! and object ACLs), `multipart`, `listing`, `gc` (GC queue with grace, write intents, process
//! instances, worker state), `layouts` (placement layouts, the rebalance walk and segment swap),
//! `users` (users by id, access keys), `maintenance` (backup, restore, verify), `lifecycle`
//! (persisted lifecycle configuration, per-bucket version walk), `archive` (archive/restore state,
//! containers, the archive workers' queues), `cluster` (the cluster map: nodes, layout epochs,
//! degraded chunks, disk rebuilds); `acl` (stored ACLs); `keys` (key encoding, ids) and `types`
//! (the records) are the shared vocabulary.

mod access_log;
pub mod acl;
pub mod archive;
mod buckets;
mod cluster;
pub mod coord;
mod destruction_seq;
mod error;
#[doc(hidden)]
pub mod etcd_server;
mod gc;
mod key_replicas;
pub mod keys;
mod kms;
pub mod kv;
pub mod kv_etcd;
mod layouts;
pub mod lifecycle;
mod listing;
mod lock;
pub mod lockout;
mod maintenance;
mod multipart;
mod objects;
mod store;
pub mod types;
pub mod usage;
pub mod users;

pub use cluster::NodeChange;
pub use error::{MetaError, Result};
pub use gc::GC_STATS_LIMIT;
pub use lock::check_retention_change;
pub use maintenance::VerifyReport;
pub use multipart::{COMPLETED_UPLOAD_TTL_MS, MIN_PART_SIZE};
pub use objects::VersionExpect;
pub use store::{DEFAULT_GC_GRACE_MS, MetaStore};
pub use types::*;
