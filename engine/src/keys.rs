//! The key hierarchy as the engine uses it: master key -> per-bucket key-encryption key (KEK) ->
//! per-version data key (DEK). This module alone decides which key wraps which.
//!
//! - Master keys: `DATA/master.key` (or `STRATA_MASTER_KEY`); during a rotation also
//!   `DATA/master.key.next`, which then wraps every new or re-wrapped KEK.
//! - KEKs and DEKs live only in the key store (`strata_keystore`, `DATA/keys/`), wrapped (KEKs
//!   by a master key, DEKs by their bucket's KEK). Metadata records hold slot references (slot +
//!   key id), never key material, so destroying a key is overwriting its slot.
//! - AAD binds each wrapped key to its own id and its wrapper's id (`kek_aad`, `dek_aad`), so a
//!   wrapped key never unwraps as another key.
//!
//! Primitives (AES-256-GCM wrapping, zeroizing key types) are `strata_storage_node::keys`.
//! Key-store calls block (file I/O, fsync): async code reaches them through the engine's
//! wrappers, which run them on the blocking pool. A slot read is one 128-byte `pread`, normally
//! from the page cache, so [`KeyRing::version_key`] is synchronous.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use strata_keystore::{Destroyed, Entry, KeyKind, KeyStore, Rewrap};
use strata_metadata::{BucketRecord, DataLayout, KeyClass, KeyRef, KmsKeyRecord, UploadRecord};
use strata_storage_node::keys::{
    DataKey, KeyEncryptionKey, KeyError, MASTER_KEY_ENV, MasterKey, key_file_is_zeroed, new_key_id,
};

use crate::error::{EngineError, Result};

/// v2: with the key store a wrapped KEK is found by its slot, and bound to its own id.
fn kek_aad(kek_id: &str) -> Vec<u8> {
    format!("strata/kek/v2/{kek_id}").into_bytes()
}

fn dek_aad(kek_id: &str, dek_id: &str) -> Vec<u8> {
    format!("strata/dek/v1/{kek_id}/{dek_id}").into_bytes()
}

/// Additional authenticated data that binds a sealed access-key secret to its access key.
pub fn secret_aad(access_key: &str) -> Vec<u8> {
    format!("strata/secret/v1/{access_key}").into_bytes()
}

/// A key id (32 hex characters) as the key store's 16 bytes.
pub fn parse_key_id(id: &str) -> Result<[u8; 16]> {
    hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Invalid(format!("bad key id {id:?}")).into())
}

fn store_err(e: strata_keystore::KeyStoreError) -> EngineError {
    match e {
        strata_keystore::KeyStoreError::Io(e) => KeyError::Io(e).into(),
        e => KeyError::Invalid(e.to_string()).into(),
    }
}

/// Where the master keys come from.
#[derive(Clone, Debug)]
pub enum MasterSource {
    /// `master.key` (and `master.key.next` during a rotation) in this directory.
    Files(PathBuf),
    /// `STRATA_MASTER_KEY`: cannot be rotated by Strata.
    Env,
}

impl MasterSource {
    pub fn current_path(&self) -> Option<PathBuf> {
        match self {
            MasterSource::Files(d) => Some(d.join("master.key")),
            MasterSource::Env => None,
        }
    }
    pub fn next_path(&self) -> Option<PathBuf> {
        match self {
            MasterSource::Files(d) => Some(d.join("master.key.next")),
            MasterSource::Env => None,
        }
    }
}

struct Masters {
    current: Arc<MasterKey>,
    /// During a master rotation: the new key, which wraps every new or re-wrapped KEK.
    next: Option<Arc<MasterKey>>,
}

impl Masters {
    fn wrapping(&self) -> &Arc<MasterKey> {
        self.next.as_ref().unwrap_or(&self.current)
    }
    fn by_id(&self, id: &[u8; 16]) -> Option<&Arc<MasterKey>> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .find(|m| &m.id() == id)
    }
}

/// A new data key: generated in memory, its slot reserved; [`KeyRing::write_dek`] wraps it
/// under the bucket's current KEK and writes it. Dropped unwritten, the slot is given back.
pub struct FreshDek {
    pub key: Arc<DataKey>,
    pub slot: u64,
    pub id: String,
    pub bucket: String,
    store: KeyStore,
    written: AtomicBool,
}

impl FreshDek {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            class: KeyClass::Dek,
            slot: self.slot,
            id: self.id.clone(),
        }
    }
}

impl Drop for FreshDek {
    fn drop(&mut self) {
        if !self.written.load(Ordering::Acquire) {
            self.store.release(self.slot);
        }
    }
}

/// A new KEK, like [`FreshDek`].
pub struct FreshKek {
    key: KeyEncryptionKey,
    pub slot: u64,
    pub id: String,
    store: KeyStore,
    written: AtomicBool,
}

impl FreshKek {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            class: KeyClass::Kek,
            slot: self.slot,
            id: self.id.clone(),
        }
    }
}

impl Drop for FreshKek {
    fn drop(&mut self) {
        if !self.written.load(Ordering::Acquire) {
            self.store.release(self.slot);
        }
    }
}

/// Wraps, stores, unwraps and destroys keys. Shared by the whole engine.
pub struct KeyRing {
    masters: RwLock<Masters>,
    source: MasterSource,
    store: KeyStore,
    /// Every key wrap + write takes it shared; a rotation takes it exclusively to switch the
    /// wrapping key, so that once it holds it no key can still be written under the old one.
    switch: tokio::sync::RwLock<()>,
    /// KEKs written by this process (id -> slot): resolves a DEK already re-wrapped under a KEK
    /// newer than the bucket record a reader holds.
    recent_keks: Mutex<HashMap<String, u64>>,
}

impl KeyRing {
    /// The key ring of a data directory: master keys from `STRATA_MASTER_KEY` or
    /// `DIR/master.key` (created on first start; `DIR/master.key.next` too during a rotation),
    /// the key store in `DIR/keys`. Finishes the last step of an interrupted master rotation.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, None)
    }

    /// [`KeyRing::open`] over a given key store (`None`: the one in `DIR/keys`), e.g. the
    /// cluster's key service.
    pub fn open_with(data_dir: &Path, store: Option<KeyStore>) -> Result<Self> {
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            let store = match store {
                Some(s) => s,
                None => KeyStore::open(&data_dir.join("keys")).map_err(store_err)?,
            };
            let m = MasterKey::load_or_create(&data_dir.join("master.key"))?;
            return Self::new(m, None, MasterSource::Env, store);
        }
        Self::open_files_with(data_dir, store)
    }

    /// [`KeyRing::open`] with the master key from files only, never from the environment (test
    /// fixtures: they generate their own keys, never use an operator's).
    pub fn open_files(data_dir: &Path) -> Result<Self> {
        Self::open_files_with(data_dir, None)
    }

    fn open_files_with(data_dir: &Path, store: Option<KeyStore>) -> Result<Self> {
        let store = match store {
            Some(s) => s,
            None => KeyStore::open(&data_dir.join("keys")).map_err(store_err)?,
        };
        let source = MasterSource::Files(data_dir.to_path_buf());
        let cur = source.current_path().expect("files");
        let next = source.next_path().expect("files");
        if next.exists() && (!cur.exists() || key_file_is_zeroed(&cur)) {
            // A rotation destroyed the old key and stopped before renaming the new one.
            std::fs::rename(&next, &cur).map_err(KeyError::Io)?;
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(KeyError::Io)?;
            tracing::info!("finished an interrupted master key rotation");
        }
        let current = if cur.exists() {
            MasterKey::load(&cur)?
        } else if store.stats().map_err(store_err)?.live_keks > 0 {
            // Never replace a lost master key with a new one: nothing would be readable, and
            // the new file would hide the mistake at the next start.
            return Err(KeyError::Invalid(format!(
                "{} is missing but the key store holds bucket keys wrapped by it; put the master                  key file back (or set {MASTER_KEY_ENV})",
                cur.display()
            ))
            .into());
        } else {
            MasterKey::create_new(&cur)?
        };
        let next_key = if next.exists() {
            Some(MasterKey::load(&next)?)
        } else {
            None
        };
        Self::new(current, next_key, source, store)
    }

    /// A key ring over given parts (tests, tools).
    pub fn new(
        current: MasterKey,
        next: Option<MasterKey>,
        source: MasterSource,
        store: KeyStore,
    ) -> Result<Self> {
        let ring = KeyRing {
            masters: RwLock::new(Masters {
                current: Arc::new(current),
                next: next.map(Arc::new),
            }),
            source,
            store,
            switch: tokio::sync::RwLock::new(()),
            recent_keks: Mutex::new(HashMap::new()),
        };
        ring.check_masters()?;
        Ok(ring)
    }

    /// Refuses a key store whose KEKs are wrapped by a master key that is not here (a wrong
    /// `STRATA_MASTER_KEY`, a master key file from elsewhere): nothing would be readable.
    fn check_masters(&self) -> Result<()> {
        let stats = self.store.stats().map_err(store_err)?;
        let m = self.masters();
        for (wrapper, kind, n) in stats.by_wrapper {
            if kind == KeyKind::Kek && m.by_id(&wrapper).is_none() {
                return Err(KeyError::Invalid(format!(
                    "{n} bucket key(s) in the key store are wrapped by master key {}, which is \
                     not the configured one ({}); start with the right master key",
                    hex::encode(wrapper),
                    hex::encode(m.current.id())
                ))
                .into());
            }
        }
        Ok(())
    }

    fn masters(&self) -> std::sync::RwLockReadGuard<'_, Masters> {
        self.masters.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    pub fn source(&self) -> &MasterSource {
        &self.source
    }

    /// Shared while writing a key; exclusive to switch the wrapping key (rotations).
    pub fn switch(&self) -> &tokio::sync::RwLock<()> {
        &self.switch
    }

    /// A secret derived from the current master key for `purpose` (see
    /// `MasterKey::derive_secret`): equal on every gateway of a cluster (they share the key).
    pub fn derived_secret(&self, purpose: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        self.masters().current.derive_secret(purpose)
    }

    /// Id of the master key that wraps new KEKs, and of the one being replaced, if rotating.
    pub fn master_ids(&self) -> ([u8; 16], Option<[u8; 16]>) {
        let m = self.masters();
        match &m.next {
            Some(n) => (n.id(), Some(m.current.id())),
            None => (m.current.id(), None),
        }
    }

    // ----- new keys -----

    /// A new random data key for `bucket` with a reserved slot (nothing written yet).
    pub fn fresh_dek(&self, bucket: &str) -> Result<FreshDek> {
        Ok(FreshDek {
            key: Arc::new(DataKey::generate()),
            slot: self.store.reserve().map_err(store_err)?,
            id: new_key_id(),
            bucket: bucket.to_string(),
            store: self.store.clone(),
            written: AtomicBool::new(false),
        })
    }

    /// Wraps `fresh` under the current KEK of `bucket` (a record read under the shared
    /// [`KeyRing::switch`] lock) and writes it durably. Returns the KEK's id. Blocking.
    pub fn write_dek(&self, bucket: &BucketRecord, fresh: &FreshDek) -> Result<String> {
        let kek = self.kek(bucket, &bucket.kek_id)?;
        let wrapped = kek.wrap_dek(&fresh.key, &dek_aad(&bucket.kek_id, &fresh.id));
        let now = crate::now_ms();
        self.store
            .write(
                fresh.slot,
                &Entry {
                    kind: KeyKind::Dek,
                    id: parse_key_id(&fresh.id)?,
                    wrapper: parse_key_id(&bucket.kek_id)?,
                    created_ms: now,
                    changed_ms: now,
                    wrapped,
                },
            )
            .map_err(store_err)?;
        fresh.written.store(true, Ordering::Release);
        Ok(bucket.kek_id.clone())
    }

    pub fn fresh_kek(&self) -> Result<FreshKek> {
        Ok(FreshKek {
            key: KeyEncryptionKey::generate(),
            slot: self.store.reserve().map_err(store_err)?,
            id: new_key_id(),
            store: self.store.clone(),
            written: AtomicBool::new(false),
        })
    }

    /// Wraps `fresh` under the wrapping master key and writes it durably (under the shared
    /// switch lock). Blocking.
    pub fn write_kek(&self, fresh: &FreshKek) -> Result<()> {
        let (wrapped, wrapper) = {
            let m = self.masters();
            let w = m.wrapping();
            (w.wrap_kek(&fresh.key, &kek_aad(&fresh.id)), w.id())
        };
        let now = crate::now_ms();
        self.store
            .write(
                fresh.slot,
                &Entry {
                    kind: KeyKind::Kek,
                    id: parse_key_id(&fresh.id)?,
                    wrapper,
                    created_ms: now,
                    changed_ms: now,
                    wrapped,
                },
            )
            .map_err(store_err)?;
        fresh.written.store(true, Ordering::Release);
        self.recent_keks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fresh.id.clone(), fresh.slot);
        Ok(())
    }

    // ----- reading keys -----

    fn kek_slot(&self, bucket: &BucketRecord, kek_id: &str) -> Option<u64> {
        if bucket.kek_id == kek_id
            && let Some(s) = bucket.kek_slot
        {
            return Some(s);
        }
        bucket
            .previous_keks
            .iter()
            .find(|k| k.id == kek_id)
            .map(|k| k.slot)
            .or_else(|| {
                self.recent_keks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(kek_id)
                    .copied()
            })
    }

    /// KEK `kek_id` of `bucket` (its current one or one being rotated out).
    fn kek(&self, bucket: &BucketRecord, kek_id: &str) -> Result<KeyEncryptionKey> {
        let slot = self.kek_slot(bucket, kek_id).ok_or_else(|| {
            KeyError::NotFound(format!(
                "KEK {kek_id} is not a key of bucket {}",
                bucket.name
            ))
        })?;
        self.kek_at(slot, kek_id)
    }

    fn kek_at(&self, slot: u64, kek_id: &str) -> Result<KeyEncryptionKey> {
        let e = self
            .store
            .get(slot, &parse_key_id(kek_id)?)
            .map_err(store_err)?
            .filter(|e| e.kind == KeyKind::Kek)
            .ok_or_else(|| KeyError::NotFound(format!("KEK {kek_id} (destroyed?)")))?;
        let m = self.masters();
        let master = m.by_id(&e.wrapper).ok_or_else(|| {
            KeyError::NotFound(format!(
                "master key {} of KEK {kek_id}",
                hex::encode(e.wrapper)
            ))
        })?;
        Ok(master.unwrap_kek(&e.wrapped, &kek_aad(kek_id))?)
    }

    /// The archive tier's KEK (the key-store slot its `ArchiveKekRecord` names): it wraps
    /// container keys only, never a version's data key. Blocking.
    pub fn archive_kek(&self, slot: u64, kek_id: &str) -> Result<KeyEncryptionKey> {
        self.kek_at(slot, kek_id)
    }

    /// The data key in `slot` with id `dek_id`, unwrapped by the bucket KEK that wraps it now.
    pub fn data_key(&self, bucket: &BucketRecord, slot: u64, dek_id: &str) -> Result<Arc<DataKey>> {
        let e = self
            .store
            .get(slot, &parse_key_id(dek_id)?)
            .map_err(store_err)?
            .filter(|e| e.kind == KeyKind::Dek)
            .ok_or_else(|| KeyError::NotFound(format!("data key {dek_id} (destroyed)")))?;
        let kek_id = hex::encode(e.wrapper);
        let kek = self.kek(bucket, &kek_id)?;
        Ok(Arc::new(
            kek.unwrap_dek(&e.wrapped, &dek_aad(&kek_id, dek_id))?,
        ))
    }

    /// The data key of a stored version (`NotFound` for a version without data, or destroyed).
    pub fn version_key(&self, bucket: &BucketRecord, data: &DataLayout) -> Result<Arc<DataKey>> {
        match data.dek_slot {
            Some(slot) => self.data_key(bucket, slot, &data.dek_id),
            None => Err(KeyError::NotFound(format!(
                "the version has no data key (empty, or written before the key store) in bucket {}",
                bucket.name
            ))
            .into()),
        }
    }

    /// The data key shared by the parts of a multipart upload.
    pub fn upload_key(&self, bucket: &BucketRecord, u: &UploadRecord) -> Result<Arc<DataKey>> {
        match u.dek_slot {
            Some(slot) => self.data_key(bucket, slot, &u.dek_id),
            None => {
                Err(KeyError::NotFound(format!("upload {} has no data key", u.upload_id)).into())
            }
        }
    }

    /// The secret an SSE-KMS version's DEK is bound to (see `sse.rs`): derived from the KMS
    /// key's KEK (a KEK of the key store), for this key only. Blocking (one slot read).
    pub fn kms_binding_secret(&self, rec: &KmsKeyRecord) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let slot = rec.kek_slot.ok_or_else(|| {
            KeyError::NotFound(format!("KMS key {} has no key in the key store", rec.id))
        })?;
        let kek = self.kek_at(slot, &rec.kek_id)?;
        Ok(kek.binding_secret(rec.id.as_bytes()))
    }

    /// Whether the key store still holds `key` (false once destroyed). Blocking.
    pub fn holds(&self, key: &KeyRef) -> Result<bool> {
        Ok(self
            .store
            .get(key.slot, &parse_key_id(&key.id)?)
            .map_err(store_err)?
            .is_some())
    }

    /// Destroys `key` in the key store (overwritten and flushed before this returns). Blocking.
    pub fn destroy(&self, key: &KeyRef) -> Result<Destroyed> {
        self.store
            .destroy(key.slot, &parse_key_id(&key.id)?)
            .map_err(store_err)
    }

    // ----- access-key secrets -----

    pub fn seal_secret(&self, access_key: &str, secret: &str) -> Vec<u8> {
        self.masters()
            .wrapping()
            .seal_secret(secret.as_bytes(), &secret_aad(access_key))
    }

    /// Opens a sealed secret under the wrapping master key or, during a rotation, the old one.
    pub fn open_secret(
        &self,
        access_key: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let m = self.masters();
        let aad = secret_aad(access_key);
        let mut last = None;
        for key in m.next.iter().chain(std::iter::once(&m.current)) {
            match key.open_secret(sealed, &aad) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one master key").into())
    }

    /// A sealed secret under the wrapping master key, or `None` if it is already sealed by it
    /// (master rotation). Fails if no master key here opens it.
    pub fn reseal_secret(&self, access_key: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        let m = self.masters();
        let aad = secret_aad(access_key);
        if m.wrapping().open_secret(sealed, &aad).is_ok() {
            return Ok(None);
        }
        let plain = m.current.open_secret(sealed, &aad)?;
        Ok(Some(m.wrapping().seal_secret(&plain, &aad)))
    }

    // ----- rotation -----

    /// Makes `next` the key that wraps new KEKs (the caller holds the switch exclusively).
    pub fn set_next_master(&self, next: MasterKey) {
        let mut m = self.masters.write().unwrap_or_else(|e| e.into_inner());
        m.next = Some(Arc::new(next));
    }

    /// Ends a master rotation: the next key becomes the only one; the old one is dropped
    /// (zeroized when the last reader lets go). The caller destroys the old file.
    pub fn promote_next_master(&self) {
        let mut m = self.masters.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.next.take() {
            m.current = n;
        }
    }

    /// The re-wrap of a live KEK entry under the wrapping master key, if it is wrapped by
    /// another (older) one.
    pub fn rewrap_kek(&self, slot: u64, e: &Entry) -> Result<Option<Rewrap>> {
        let m = self.masters();
        let to = m.wrapping();
        if e.kind != KeyKind::Kek || e.wrapper == to.id() {
            return Ok(None);
        }
        let Some(from) = m.by_id(&e.wrapper) else {
            return Ok(None);
        };
        let id = hex::encode(e.id);
        let kek = from.unwrap_kek(&e.wrapped, &kek_aad(&id))?;
        Ok(Some(Rewrap {
            slot,
            id: e.id,
            from: e.wrapper,
            to: to.id(),
            wrapped: to.wrap_kek(&kek, &kek_aad(&id)),
        }))
    }

    /// The re-wrap of a live DEK entry wrapped by KEK `old` (at `old_slot`) under KEK `new`.
    pub fn rewrap_dek(
        &self,
        slot: u64,
        e: &Entry,
        old: (&str, u64),
        new: (&str, u64),
    ) -> Result<Option<Rewrap>> {
        if e.kind != KeyKind::Dek || hex::encode(e.wrapper) != old.0 {
            return Ok(None);
        }
        let old_kek = self.kek_at(old.1, old.0)?;
        let new_kek = self.kek_at(new.1, new.0)?;
        let dek_id = hex::encode(e.id);
        let dek = old_kek.unwrap_dek(&e.wrapped, &dek_aad(old.0, &dek_id))?;
        Ok(Some(Rewrap {
            slot,
            id: e.id,
            from: e.wrapper,
            to: parse_key_id(new.0)?,
            wrapped: new_kek.wrap_dek(&dek, &dek_aad(new.0, &dek_id)),
        }))
    }
}
