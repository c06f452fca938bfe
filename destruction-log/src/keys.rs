//! The log's signing key (Ed25519, its own PKCS#8 file under the log directory, mode 0600, apart
//! from every data key) and the signed checkpoint.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize as _;

use crate::merkle::Hash;

pub const KEY_FILE: &str = "log-key.pem";
pub const PUBLIC_KEY_FILE: &str = "log-key.pub.pem";

/// A signed tree head: the log had `tree_size` records with this root at `timestamp_ms`.
///
/// The signature is Ed25519 over [`SignedCheckpoint::signed_body`], a C2SP tlog-checkpoint body
/// (origin, size, base64 root, then the time as an extension line), so an auditor can check one
/// with any Ed25519 tool (docs/destruction-log.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// Names the log: `strata.destruction-log/` + the key's fingerprint.
    pub origin: String,
    pub tree_size: u64,
    /// RFC 6962 root hash, lowercase hex.
    pub root_hash: String,
    pub timestamp_ms: i64,
    /// Ed25519 signature of `signed_body()`, standard base64.
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn signed_body(&self) -> String {
        body(
            &self.origin,
            self.tree_size,
            &self.root_bytes(),
            self.timestamp_ms,
        )
    }

    /// The root as bytes; an unparsable root reads as zeros (and then fails verification).
    pub(crate) fn root_bytes(&self) -> Hash {
        parse_hash(&self.root_hash).unwrap_or([0; 32])
    }

    /// Checks origin and signature against the destruction log's public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        self.verify_in("destruction-log", key)
    }

    /// Checks origin (log `log_name` of this key) and signature.
    pub fn verify_in(&self, log_name: &str, key: &VerifyingKey) -> Result<(), String> {
        let want = origin_named(log_name, key);
        if self.origin != want {
            return Err(format!(
                "origin {:?} is not this key's log ({want:?})",
                self.origin
            ));
        }
        parse_hash(&self.root_hash)?;
        let sig = decode_signature(&self.signature)?;
        key.verify_strict(self.signed_body().as_bytes(), &sig)
            .map_err(|_| "bad signature".to_string())
    }
}

fn body(origin: &str, size: u64, root: &Hash, ts: i64) -> String {
    format!("{origin}\n{size}\n{}\ntime {ts}\n", B64.encode(root))
}

/// A lowercase-hex SHA-256, exactly (other spellings of the same bytes are refused, so every
/// byte of an export matters).
pub(crate) fn parse_hash(s: &str) -> Result<Hash, String> {
    let bytes = hex::decode(s).map_err(|_| format!("not a hex hash: {s:.80?}"))?;
    let h: Hash = bytes
        .try_into()
        .map_err(|_| format!("not a 32-byte hash: {s:.80?}"))?;
    if hex::encode(h) != s {
        return Err(format!("hash not in lowercase hex: {s:.80?}"));
    }
    Ok(h)
}

pub(crate) fn decode_signature(s: &str) -> Result<Signature, String> {
    let bytes = B64
        .decode(s)
        .map_err(|_| "signature is not base64".to_string())?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| "signature is not 64 bytes".to_string())?;
    if B64.encode(arr) != s {
        return Err("signature not in canonical base64".into());
    }
    Ok(Signature::from_bytes(&arr))
}

/// `strata.<log_name>/<first 8 bytes of SHA-256(public key), hex>`.
pub fn origin_named(log_name: &str, key: &VerifyingKey) -> String {
    let fp = Sha256::digest(key.as_bytes());
    format!("strata.{log_name}/{}", hex::encode(&fp[..8]))
}

pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes")
}

/// Parses the auditor's copy of the public key (SPKI PEM, `-----BEGIN PUBLIC KEY-----`).
pub fn parse_public_key_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not an Ed25519 public key in PEM: {e}"))
}

pub(crate) struct LogKey {
    pub signing: SigningKey,
    pub verifying: VerifyingKey,
    pub origin: String,
}

impl LogKey {
    pub fn sign(&self, size: u64, root: &Hash, ts: i64) -> SignedCheckpoint {
        let text = body(&self.origin, size, root, ts);
        let sig = self.signing.sign(text.as_bytes());
        SignedCheckpoint {
            origin: self.origin.clone(),
            tree_size: size,
            root_hash: hex::encode(root),
            timestamp_ms: ts,
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Signs a message of another kind; `domain` keeps it apart from checkpoint bodies.
    pub fn sign_message(&self, domain: &str, msg: &[u8]) -> String {
        let sig = self.signing.sign(&[domain.as_bytes(), b"\n", msg].concat());
        B64.encode(sig.to_bytes())
    }

    fn from_signing(signing: SigningKey, log_name: &str) -> Self {
        let verifying = signing.verifying_key();
        Self {
            origin: origin_named(log_name, &verifying),
            signing,
            verifying,
        }
    }

    /// Loads `dir/log-key.pem`, creating it (0600, fsync'd, then linked into place so a crash
    /// leaves no half key) and its public twin on first use.
    pub fn load_or_create(dir: &Path, log_name: &str) -> Result<Self, String> {
        let path = dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(pem) => {
                let mode = fs::metadata(&path)
                    .map_err(|e| e.to_string())?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                        "log signing key is readable by group/others; chmod 600 it");
                }
                let signing = SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
                Ok(Self::from_signing(signing, log_name))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(dir, log_name),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn create(dir: &Path, log_name: &str) -> Result<Self, String> {
        let io = |e: std::io::Error| format!("creating the log signing key: {e}");
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let key = Self::from_signing(SigningKey::from_bytes(&seed), log_name);
        seed.zeroize();
        let pem = key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let path = dir.join(KEY_FILE);
        let tmp = dir.join(format!("{KEY_FILE}.tmp.{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(pem.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        // Never replace a key that appeared meanwhile: hard_link fails if the name exists.
        let linked = fs::hard_link(&tmp, &path);
        fs::remove_file(&tmp).map_err(io)?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::load_or_create(dir, log_name);
            }
            Err(e) => return Err(io(e)),
        }
        crate::log::write_atomic(
            &dir.join(PUBLIC_KEY_FILE),
            public_key_pem(&key.verifying).as_bytes(),
            0o644,
        )
        .map_err(io)?;
        Ok(key)
    }
}

/// The public key (PEM) of the log in `dir`, derived from its signing key; reads nothing else
/// and needs no lock, so it works while a server has the log open.
pub fn public_key_pem_of(dir: &Path) -> Result<String, String> {
    let path = dir.join(KEY_FILE);
    let pem = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let signing = SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
    Ok(public_key_pem(&signing.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_stable_and_signs_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let k = LogKey::load_or_create(dir.path(), "destruction-log").unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = LogKey::load_or_create(dir.path(), "destruction-log").unwrap();
        assert_eq!(k.verifying, again.verifying);
        let pem = public_key_pem_of(dir.path()).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(
            fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap(),
            pem
        );
        let vk = parse_public_key_pem(&pem).unwrap();
        let cp = k.sign(3, &[0xab; 32], 1234);
        cp.verify(&vk).unwrap();
        assert_eq!(
            cp.signed_body(),
            format!("{}\n3\n{}\ntime 1234\n", k.origin, B64.encode([0xabu8; 32]))
        );
        let mut bad = cp.clone();
        bad.timestamp_ms += 1;
        assert!(bad.verify(&vk).is_err());
        let other =
            LogKey::load_or_create(tempfile::tempdir().unwrap().path(), "destruction-log").unwrap();
        assert!(cp.verify(&other.verifying).is_err());
        let mut upper = cp.clone();
        upper.root_hash = upper.root_hash.to_uppercase();
        assert!(upper.verify(&vk).is_err());
    }
}
