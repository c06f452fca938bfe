//! The key store handle every caller uses: the slot file of this process, or the key service
//! of a cluster (another process owns the file; see `service`). Same calls, same guarantees:
//! a write or a destruction returns only once it is durable where the file lives.

use std::path::Path;
use std::sync::Arc;

use crate::replicated::ReplicatedKeyStore;
use crate::service::RemoteKeyStore;
use crate::{Destroyed, Entry, LocalKeyStore, PauseGuard, Result, Rewrap, ScanPage, Slot, Stats};

/// Cheap to clone. All calls block (file I/O, fsync, or a round trip to the key service): async
/// callers run them on a blocking pool.
#[derive(Clone)]
pub enum KeyStore {
    Local(LocalKeyStore),
    Remote(Arc<RemoteKeyStore>),
    /// The key service replicated over several nodes (`replicated`).
    Replicated(Arc<ReplicatedKeyStore>),
}

impl KeyStore {
    /// Opens (creating on first use) the slot file store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        LocalKeyStore::open(dir).map(KeyStore::Local)
    }

    /// The key service at the other end of `remote`.
    pub fn remote(remote: RemoteKeyStore) -> Self {
        KeyStore::Remote(Arc::new(remote))
    }

    /// The local store, for what only works on a local file (backup copies, offline tools).
    pub fn local(&self) -> Option<&LocalKeyStore> {
        match self {
            KeyStore::Local(l) => Some(l),
            KeyStore::Remote(_) | KeyStore::Replicated(_) => None,
        }
    }

    /// Reserves a slot for a new key (locally: in memory only; remotely: from a batch the key
    /// service reserved for this process). Give it back with [`KeyStore::release`] if the key is
    /// never written.
    pub fn reserve(&self) -> Result<u64> {
        match self {
            KeyStore::Local(l) => Ok(l.reserve()),
            KeyStore::Remote(r) => r.reserve(),
            KeyStore::Replicated(r) => r.reserve(),
        }
    }

    /// Returns a reservation that was never written.
    pub fn release(&self, slot: u64) {
        match self {
            KeyStore::Local(l) => l.release(slot),
            KeyStore::Remote(r) => r.release(slot),
            KeyStore::Replicated(r) => r.release(slot),
        }
    }

    pub fn read(&self, slot: u64) -> Result<Slot> {
        match self {
            KeyStore::Local(l) => l.read(slot),
            KeyStore::Remote(r) => r.read(slot),
            KeyStore::Replicated(r) => r.read(slot),
        }
    }

    /// The live key `id` in `slot`, if the slot still holds it.
    pub fn get(&self, slot: u64, id: &[u8; 16]) -> Result<Option<Entry>> {
        Ok(match self.read(slot)? {
            Slot::Live(e) if &e.id == id => Some(e),
            _ => None,
        })
    }

    /// Writes a new key into a slot reserved for it; returns once it is durable.
    pub fn write(&self, slot: u64, entry: &Entry) -> Result<()> {
        match self {
            KeyStore::Local(l) => l.write(slot, entry),
            KeyStore::Remote(r) => r.write(slot, entry),
            KeyStore::Replicated(r) => r.write(slot, entry),
        }
    }

    /// Overwrites key `id` in `slot` with a destruction marker, durably. Idempotent.
    pub fn destroy(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        match self {
            KeyStore::Local(l) => l.destroy(slot, id),
            KeyStore::Remote(r) => r.destroy(slot, id),
            KeyStore::Replicated(r) => r.destroy(slot, id),
        }
    }

    /// Re-wraps keys in place (journaled where the file lives).
    pub fn rewrap(&self, batch: &[Rewrap]) -> Result<usize> {
        match self {
            KeyStore::Local(l) => l.rewrap(batch),
            KeyStore::Remote(r) => r.rewrap(batch),
            KeyStore::Replicated(r) => r.rewrap(batch),
        }
    }

    /// Live keys in slots `from..from + limit`, and where to continue.
    pub fn scan(&self, from: u64, limit: u64) -> Result<ScanPage> {
        match self {
            KeyStore::Local(l) => l.scan(from, limit),
            KeyStore::Remote(r) => r.scan(from, limit),
            KeyStore::Replicated(r) => r.scan(from, limit),
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        match self {
            KeyStore::Local(l) => l.stats(),
            KeyStore::Remote(r) => r.stats(),
            KeyStore::Replicated(r) => r.stats(),
        }
    }

    /// Pauses destroys and re-wraps of a local store (backups); `None` for the key service,
    /// whose file is backed up where it lives.
    pub fn pause_overwrites(&self) -> Option<PauseGuard<'_>> {
        self.local().map(LocalKeyStore::pause_overwrites)
    }
}
