//! Key hierarchy: master key -> per-bucket key-encryption key (KEK) -> per-object-version data
//! key (DEK). Lower keys are stored only wrapped (AES-256-GCM) by the key above. All key material
//! is zeroized on drop.
//!
//! Wrapped / sealed format: `version (1 byte = 1) || nonce (12 random bytes) || ciphertext || tag
//! (16 bytes)`. The AAD is a fixed purpose label followed by the caller's AAD, so a wrapped KEK
//! can never be opened as a sealed secret (or the other way round) even under the same key.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::cipher;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 32 bytes of AES-256 key material, zeroized on drop.
pub type KeyBytes = [u8; 32];

/// Environment variable that, when set, holds the master key as 64 hex characters.
pub const MASTER_KEY_ENV: &str = "STRATA_MASTER_KEY";

const WRAP_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PURPOSE_KEK: &[u8] = b"strata/v1/kek\0";
const PURPOSE_DEK: &[u8] = b"strata/v1/dek\0";
const PURPOSE_SECRET: &[u8] = b"strata/v1/secret\0";

#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    key: KeyBytes,
}

#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyEncryptionKey {
    key: KeyBytes,
}

#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    key: KeyBytes,
}

// Debug never shows key bytes, not even a fingerprint: logs end up in places keys must not.
impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}
impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key unwrap failed (wrong key or corrupted wrapped key)")]
    Unwrap,
    /// The key is not (or no longer) in the key store: destroyed, or never written.
    #[error("key not found: {0}")]
    NotFound(String),
    #[error("bad key material: {0}")]
    Invalid(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn random_key() -> KeyBytes {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    key
}

/// AES-256-GCM with a fresh random nonce. Random 96-bit nonces are safe here: each key wraps few
/// messages (keys and secrets, not data), far below the 2^32 limit for random GCM nonces.
fn seal(key: &KeyBytes, purpose: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let full_aad = [purpose, aad].concat();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(WRAP_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher::seal_in_place(key, &nonce, &full_aad, &mut out[1 + NONCE_LEN..]);
    out.extend_from_slice(&tag);
    out
}

fn open(
    key: &KeyBytes,
    purpose: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != WRAP_VERSION {
        return Err(KeyError::Unwrap);
    }
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("length checked");
    let (ciphertext, tag) =
        sealed[1 + NONCE_LEN..].split_at(sealed.len() - 1 - NONCE_LEN - TAG_LEN);
    let tag: [u8; TAG_LEN] = tag.try_into().expect("length checked");
    let full_aad = [purpose, aad].concat();
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    if cipher::open_in_place(key, &nonce, &full_aad, &mut plaintext, &tag) {
        Ok(plaintext)
    } else {
        Err(KeyError::Unwrap)
    }
}

fn key_from_slice(bytes: &[u8]) -> Result<KeyBytes, KeyError> {
    bytes
        .try_into()
        .map_err(|_| KeyError::Invalid(format!("expected 32 key bytes, got {}", bytes.len())))
}

impl MasterKey {
    /// Loads the master key from `STRATA_MASTER_KEY` (64 hex chars) if set, else from `path`
    /// (32 raw bytes), creating it with mode 0600 (file and directory fsync'd) on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if let Ok(hex_key) = std::env::var(MASTER_KEY_ENV) {
            let bytes = Zeroizing::new(
                hex::decode(hex_key.trim())
                    .map_err(|_| KeyError::Invalid(format!("{MASTER_KEY_ENV} is not hex")))?,
            );
            return Ok(Self {
                key: key_from_slice(&bytes)?,
            });
        }
        match fs::File::open(path) {
            Ok(mut file) => {
                let mode = file.metadata()?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                        "master key file is readable by group/others; chmod 600 it");
                }
                let mut bytes = Zeroizing::new(Vec::with_capacity(33));
                // Read at most 33 bytes: enough to tell "exactly 32" from "too long".
                Read::by_ref(&mut file).take(33).read_to_end(&mut bytes)?;
                Ok(Self {
                    key: key_from_slice(&bytes)?,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e.into()),
        }
    }

    /// A stable, public identifier of this master key (for inventories and for naming which
    /// master wraps a KEK): a keyed BLAKE3 hash of a fixed label under the key. It reveals
    /// nothing about the key (a PRF output) and needs no storage, so it works for keys given in
    /// the environment too.
    /// A secret derived from this master key for one `purpose` (HKDF-SHA256): the same on
    /// every process that holds the master key, and revealing nothing of it. Used where
    /// processes must agree on a keyed hash (the cluster-wide lockout's record names).
    pub fn derive_secret(&self, purpose: &[u8]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hkdf32(b"strata/v1/derived", &self.key, purpose))
    }

    pub fn id(&self) -> [u8; 16] {
        let h = blake3::keyed_hash(&self.key, b"strata/v1/master-key-id");
        h.as_bytes()[..16].try_into().expect("16 of 32 bytes")
    }

    /// Loads the master key file at `path` (never creates it).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut file = fs::File::open(path)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(33));
        Read::by_ref(&mut file).take(33).read_to_end(&mut bytes)?;
        Ok(Self {
            key: key_from_slice(&bytes)?,
        })
    }

    /// Creates a new random master key file at `path` (create-only, 0600, durable).
    pub fn create_new(path: &Path) -> Result<Self, KeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => Err(KeyError::Invalid(format!(
                "{} already exists",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a fresh key to a temporary 0600 file, fsyncs, renames into place and fsyncs the
    /// directory, so a crash leaves either no key file or a complete one.
    fn create(path: &Path) -> Result<Self, KeyError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let key = Self { key: random_key() };
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&key.key)?;
        file.sync_all()?;
        drop(file);
        // Never replace a key another process created meanwhile: hard_link fails if it exists.
        let linked = fs::hard_link(&tmp, path);
        fs::remove_file(&tmp)?;
        match linked {
            Ok(()) => {
                fs::File::open(dir)?.sync_all()?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(e) => Err(e.into()),
        }
    }

    /// Wraps a KEK; `aad` binds the wrapped key to its owner (e.g. the bucket name + key id).
    pub fn wrap_kek(&self, kek: &KeyEncryptionKey, aad: &[u8]) -> Vec<u8> {
        seal(&self.key, PURPOSE_KEK, aad, &kek.key)
    }
    pub fn unwrap_kek(&self, wrapped: &[u8], aad: &[u8]) -> Result<KeyEncryptionKey, KeyError> {
        let bytes = open(&self.key, PURPOSE_KEK, aad, wrapped)?;
        Ok(KeyEncryptionKey {
            key: key_from_slice(&bytes)?,
        })
    }
    /// Seals a secret (e.g. an S3 secret access key) for storage; never stored in plain text.
    pub fn seal_secret(&self, secret: &[u8], aad: &[u8]) -> Vec<u8> {
        seal(&self.key, PURPOSE_SECRET, aad, secret)
    }
    pub fn open_secret(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        open(&self.key, PURPOSE_SECRET, aad, sealed)
    }
}

/// Destroys a master key file: its 32 bytes are overwritten in place with zeros and flushed,
/// then the file is removed (directory fsync'd). On a copy-on-write file system or an SSD the old
/// blocks may survive physically (docs/keys.md).
pub fn destroy_key_file(path: &Path) -> Result<(), KeyError> {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len() as usize;
            f.write_all(&vec![0u8; len.max(32)])?;
            f.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether a master key file holds only zeros (destroyed in place, not yet removed).
pub fn key_file_is_zeroed(path: &Path) -> bool {
    fs::read(path).is_ok_and(|b| !b.is_empty() && b.iter().all(|&x| x == 0))
}

impl KeyEncryptionKey {
    pub fn generate() -> Self {
        Self { key: random_key() }
    }
    pub fn wrap_dek(&self, dek: &DataKey, aad: &[u8]) -> Vec<u8> {
        seal(&self.key, PURPOSE_DEK, aad, &dek.key)
    }
    pub fn unwrap_dek(&self, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, KeyError> {
        let bytes = open(&self.key, PURPOSE_DEK, aad, wrapped)?;
        Ok(DataKey {
            key: key_from_slice(&bytes)?,
        })
    }
}

impl DataKey {
    pub fn generate() -> Self {
        Self { key: random_key() }
    }
    /// Raw key bytes, for this crate's cipher and its HTTP transport only.
    pub(crate) fn expose(&self) -> &KeyBytes {
        &self.key
    }
    /// Rebuilds a DEK received over the node's HTTP API.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            key: key_from_slice(bytes)?,
        })
    }
}

/// A new random key id (hex, 32 chars) for inventories and destruction records.
pub fn new_key_id() -> String {
    let mut id = [0u8; 16];
    rand::fill(&mut id);
    hex::encode(id)
}

// ---- SSE key binding (SSE-KMS, SSE-C) ---------------------------------------------------------
// A version's stored DEK stays what it is (random, wrapped by the bucket KEK); an SSE-KMS or SSE-C
// version's chunks are encrypted under a key *bound* to a second secret that the bucket KEK does
// not give: HKDF-SHA256 (RFC 5869) over the DEK and that secret. Destroying the DEK destroys the
// data whoever holds the second secret; without the second secret the DEK alone reads nothing.

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut m =
        <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// HKDF-SHA256 with one output block (32 bytes): extract with `salt`, expand with `info`.
fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> KeyBytes {
    let prk = Zeroizing::new(hmac_sha256(salt, &[ikm]));
    hmac_sha256(prk.as_slice(), &[info, &[1u8]])
}

impl DataKey {
    /// The key an SSE-KMS / SSE-C version's chunks are encrypted with: this DEK bound to
    /// `secret` (the KMS key's binding secret, or the customer's key) and `info` (what the
    /// binding is for: mode, key id, encryption context).
    pub fn bound_to(&self, secret: &[u8], info: &[u8]) -> DataKey {
        let ikm = Zeroizing::new([self.key.as_slice(), secret].concat());
        DataKey {
            key: hkdf32(b"strata/v1/sse-binding", &ikm, info),
        }
    }
}

impl KeyEncryptionKey {
    /// A secret derived from this KEK for binding data keys (SSE-KMS): the KEK itself never
    /// leaves this type.
    pub fn binding_secret(&self, info: &[u8]) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(hkdf32(b"strata/v1/kms-binding", &self.key, info).to_vec())
    }
}

/// The salted MAC by which an SSE-C customer key is recognised (the key itself is never
/// stored): HMAC-SHA256 keyed with a random per-version salt.
pub fn customer_key_mac(salt: &[u8], customer_key: &[u8]) -> [u8; 32] {
    hmac_sha256(salt, &[b"strata/v1/sse-c-key\0", customer_key])
}

/// Constant-time check of a customer key against its stored salted MAC.
pub fn customer_key_matches(salt: &[u8], customer_key: &[u8], mac: &[u8]) -> bool {
    use hmac::Mac as _;
    let mut m =
        <HmacSha256 as hmac::KeyInit>::new_from_slice(salt).expect("HMAC takes any key length");
    m.update(b"strata/v1/sse-c-key\0");
    m.update(customer_key);
    m.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_aad_or_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
        let kek = KeyEncryptionKey::generate();
        let wrapped = master.wrap_kek(&kek, b"bucket-a");
        let unwrapped = master.unwrap_kek(&wrapped, b"bucket-a").unwrap();
        assert_eq!(unwrapped.key, kek.key);
        assert!(matches!(
            master.unwrap_kek(&wrapped, b"bucket-b"),
            Err(KeyError::Unwrap)
        ));

        let dek = DataKey::generate();
        let wrapped_dek = kek.wrap_dek(&dek, b"v1");
        assert_eq!(kek.unwrap_dek(&wrapped_dek, b"v1").unwrap().key, dek.key);
        let other_kek = KeyEncryptionKey::generate();
        assert!(matches!(
            other_kek.unwrap_dek(&wrapped_dek, b"v1"),
            Err(KeyError::Unwrap)
        ));
        // A wrapped KEK is not accepted as a sealed secret (purpose separation).
        assert!(master.open_secret(&wrapped, b"bucket-a").is_err());
        // Truncated / garbage input is an error, not a panic.
        for len in 0..wrapped.len() {
            assert!(master.unwrap_kek(&wrapped[..len], b"bucket-a").is_err());
        }
    }

    #[test]
    fn secrets_are_sealed_not_stored_in_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("k")).unwrap();
        let secret = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let sealed = master.seal_secret(secret, b"AKIAEXAMPLE");
        assert!(!sealed.windows(8).any(|w| secret.windows(8).any(|s| s == w)));
        assert_eq!(
            &master.open_secret(&sealed, b"AKIAEXAMPLE").unwrap()[..],
            secret
        );
        // Two seals of the same secret differ (random nonce).
        assert_ne!(sealed, master.seal_secret(secret, b"AKIAEXAMPLE"));
    }

    #[test]
    fn master_key_file_is_created_0600_and_reloaded() {
        // This test must not see a master key from the environment.
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(first.key, second.key);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // A wrong-length key file is refused.
        fs::write(&path, [0u8; 31]).unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::Invalid(_))
        ));
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let dek = DataKey::generate();
        let shown = format!("{dek:?} {:?}", KeyEncryptionKey::generate());
        assert!(!shown.contains(&hex::encode(dek.key)));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn key_ids_are_unique_hex() {
        let a = new_key_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_key_id());
    }

    #[test]
    fn bound_keys_differ_by_secret_and_info_and_macs_check_in_constant_time() {
        let dek = DataKey::generate();
        let a = dek.bound_to(b"secret-a", b"info");
        let b = dek.bound_to(b"secret-b", b"info");
        let c = dek.bound_to(b"secret-a", b"other");
        assert_ne!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_ne!(a.key, dek.key);
        assert_eq!(a.key, dek.bound_to(b"secret-a", b"info").key);
        let kek = KeyEncryptionKey::generate();
        assert_ne!(*kek.binding_secret(b"x"), kek.key.to_vec());
        let mac = customer_key_mac(b"salt", &[7u8; 32]);
        assert!(customer_key_matches(b"salt", &[7u8; 32], &mac));
        assert!(!customer_key_matches(b"salt", &[8u8; 32], &mac));
        assert!(!customer_key_matches(b"pepper", &[7u8; 32], &mac));
    }
}
