//! Who is calling: SigV4 secrets come from the metadata store (sealed under the master key, opened
//! only to verify a signature), and a verified access key resolves to a user.

use std::sync::Arc;

use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::{S3Result, s3_error};
use strata_metadata::{AccessKeyRecord, MetaStore, UserRecord};
use strata_storage_node::keys::MasterKey;

/// Additional authenticated data that binds a sealed secret to its access key.
pub fn secret_aad(access_key: &str) -> Vec<u8> {
    format!("strata/secret/v1/{access_key}").into_bytes()
}

/// Generates a new access key id (20 upper-case alphanumerics, AWS style) and secret (40 chars).
pub fn generate_key_pair() -> (String, String) {
    use rand::RngExt as _;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    let ak: String = std::iter::once("SK".to_string())
        .chain((0..18).map(|_| (UPPER[rng.random_range(0..UPPER.len())] as char).to_string()))
        .collect();
    let sk: String = (0..40)
        .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
        .collect();
    (ak, sk)
}

pub struct MetaAuth {
    pub meta: MetaStore,
    pub master: Arc<MasterKey>,
}

#[async_trait::async_trait]
impl S3Auth for MetaAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let rec = self
            .meta
            .get_access_key(access_key)
            .map_err(crate::errors::meta)?;
        let Some(rec) = rec.filter(|r| !r.revoked) else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        // s3s checks the signature against this key: failures are counted against it.
        crate::http::lockout::note_key_lookup(access_key);
        let secret = self
            .master
            .open_secret(&rec.sealed_secret, &secret_aad(access_key))
            .map_err(crate::errors::key)?;
        let s = String::from_utf8(secret.to_vec()).map_err(|_| s3_error!(InternalError))?;
        Ok(SecretKey::from(s))
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub is_admin: bool,
}

pub fn caller(meta: &MetaStore, creds: &Option<Credentials>) -> S3Result<Caller> {
    let Some(c) = creds else {
        return Err(s3_error!(AccessDenied, "Anonymous access is not allowed."));
    };
    let key: AccessKeyRecord = meta
        .get_access_key(&c.access_key)
        .map_err(crate::errors::meta)?
        .filter(|k| !k.revoked)
        .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
    let user: UserRecord = meta
        .get_user(&key.user)
        .map_err(crate::errors::meta)?
        .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
    Ok(Caller {
        user: user.name,
        is_admin: user.is_admin,
    })
}

/// Creates a user with a fresh key pair (or the given one) and stores the sealed secret.
pub fn create_user_with_key(
    meta: &MetaStore,
    master: &MasterKey,
    name: &str,
    is_admin: bool,
    keys: Option<(String, String)>,
) -> strata_metadata::Result<(String, String)> {
    if meta.get_user(name)?.is_some() {
        return Err(strata_metadata::MetaError::AlreadyExists);
    }
    meta.put_user(UserRecord {
        name: name.to_string(),
        created: crate::context::now_ms(),
        is_admin,
    })?;
    add_key(meta, master, name, keys)
}

/// Adds an access key to an existing user.
pub fn add_key(
    meta: &MetaStore,
    master: &MasterKey,
    user: &str,
    keys: Option<(String, String)>,
) -> strata_metadata::Result<(String, String)> {
    let (ak, sk) = keys.unwrap_or_else(generate_key_pair);
    if meta.get_access_key(&ak)?.is_some() {
        return Err(strata_metadata::MetaError::AlreadyExists);
    }
    let sealed = master.seal_secret(sk.as_bytes(), &secret_aad(&ak));
    meta.put_access_key(AccessKeyRecord {
        access_key: ak.clone(),
        user: user.to_string(),
        sealed_secret: sealed,
        created: crate::context::now_ms(),
        revoked: false,
    })?;
    Ok((ak, sk))
}
