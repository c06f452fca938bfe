//! Key hierarchy: master key -> per-bucket key-encryption key (KEK) -> per-object-version data
//! key (DEK). Lower keys are stored only wrapped (AES-256-GCM) by the key above. All key material
//! is zeroized on drop.

use std::path::Path;

/// 32 bytes of AES-256 key material, zeroized on drop.
pub type KeyBytes = [u8; 32];

pub struct MasterKey {
    _key: KeyBytes,
}

pub struct KeyEncryptionKey {
    _key: KeyBytes,
}

pub struct DataKey {
    _key: KeyBytes,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key unwrap failed (wrong key or corrupted wrapped key)")]
    Unwrap,
    #[error("bad key material: {0}")]
    Invalid(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl MasterKey {
    /// Loads the master key from `STRATA_MASTER_KEY` (64 hex chars) if set, else from `path`
    /// (32 raw bytes), creating it with mode 0600 (file and directory fsync'd) on first start.
    pub fn load_or_create(_path: &Path) -> Result<Self, KeyError> {
        todo!()
    }
    /// Wraps a KEK; `aad` binds the wrapped key to its owner (e.g. the bucket name + key id).
    pub fn wrap_kek(&self, _kek: &KeyEncryptionKey, _aad: &[u8]) -> Vec<u8> {
        todo!()
    }
    pub fn unwrap_kek(&self, _wrapped: &[u8], _aad: &[u8]) -> Result<KeyEncryptionKey, KeyError> {
        todo!()
    }
    /// Seals a secret (e.g. an S3 secret access key) for storage; never stored in plain text.
    pub fn seal_secret(&self, _secret: &[u8], _aad: &[u8]) -> Vec<u8> {
        todo!()
    }
    pub fn open_secret(&self, _sealed: &[u8], _aad: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        todo!()
    }
}

impl KeyEncryptionKey {
    pub fn generate() -> Self {
        todo!()
    }
    pub fn wrap_dek(&self, _dek: &DataKey, _aad: &[u8]) -> Vec<u8> {
        todo!()
    }
    pub fn unwrap_dek(&self, _wrapped: &[u8], _aad: &[u8]) -> Result<DataKey, KeyError> {
        todo!()
    }
}

impl DataKey {
    pub fn generate() -> Self {
        todo!()
    }
}

/// A new random key id (hex, 32 chars) for inventories and destruction records.
pub fn new_key_id() -> String {
    todo!()
}
