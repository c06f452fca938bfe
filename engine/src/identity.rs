//! Users and access keys. A user has a stable random id (S3's canonical user id): buckets and
//! versions record the owner's id, so a new user who takes a removed user's name owns nothing of
//! the old one's. Access-key secrets must be recoverable for SigV4 (an HMAC over them), so they
//! are stored sealed (AES-256-GCM) under the master key and opened only to check a signature.

use strata_metadata::{AccessKeyRecord, MetaError, UserRecord};
use zeroize::Zeroizing;

use crate::error::Result;
use crate::{Engine, now_ms};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's name (for logs and display).
    pub user: String,
    /// The user's canonical id: what ownership compares.
    pub id: String,
    pub is_admin: bool,
}

impl Caller {
    /// The caller of an unsigned request (no Authorization header, no presigned query). It has
    /// no id, so it owns nothing and matches no grant to a user.
    pub fn anonymous() -> Caller {
        Caller {
            user: "anonymous".into(),
            id: String::new(),
            is_admin: false,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.id.is_empty()
    }

    /// Who asks, for [`crate::authz::authorize`].
    pub fn principal(&self) -> crate::authz::Principal {
        if self.is_anonymous() {
            crate::authz::Principal::Anonymous
        } else {
            crate::authz::Principal::User {
                id: self.id.clone(),
            }
        }
    }
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

impl Engine {
    /// The secret of an active access key, for signature verification. `None` when the key does
    /// not exist or is revoked.
    pub async fn access_secret(&self, access_key: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let ak = access_key.to_string();
        let rec = self.meta_call(move |m| m.get_access_key(&ak)).await?;
        match rec.filter(|r| !r.revoked) {
            None => Ok(None),
            Some(r) => Ok(Some(self.keys().open_secret(access_key, &r.sealed_secret)?)),
        }
    }

    /// The user behind a verified access key (`None`: key revoked or user gone meanwhile). The
    /// key names its user by id, so it never resolves to a later namesake.
    pub async fn caller(&self, access_key: &str) -> Result<Option<Caller>> {
        let ak = access_key.to_string();
        self.meta_call(move |m| {
            let Some(key) = m.get_access_key(&ak)?.filter(|k| !k.revoked) else {
                return Ok(None);
            };
            Ok(m.get_user_by_id(&key.user)?.map(|u| Caller {
                user: u.name,
                id: u.id,
                is_admin: u.is_admin,
            }))
        })
        .await
    }

    /// The user with this canonical id (for display names).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>> {
        let i = id.to_string();
        self.meta_call(move |m| m.get_user_by_id(&i)).await
    }

    /// Creates a user with a fresh key pair (or the given one); returns the pair.
    pub async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        keys: Option<(String, String)>,
    ) -> Result<(String, String)> {
        let n = name.to_string();
        self.meta_call(move |m| m.create_user(&n, is_admin, now_ms()))
            .await?;
        self.add_access_key(name, keys).await
    }

    /// Adds an access key to an existing user (by name); returns the pair.
    pub async fn add_access_key(
        &self,
        user: &str,
        keys: Option<(String, String)>,
    ) -> Result<(String, String)> {
        let (ak, sk) = keys.unwrap_or_else(generate_key_pair);
        // Sealed and stored under the shared switch lock: a master rotation's re-seal pass,
        // which starts after the switch, sees this key (or it is sealed by the new master).
        let _shared = self.keys().switch().read().await;
        let sealed = self.keys().seal_secret(&ak, &sk);
        let (u, a) = (user.to_string(), ak.clone());
        self.meta_call(move |m| {
            let user = m.get_user(&u)?.ok_or(MetaError::NoSuchUser)?;
            if m.get_access_key(&a)?.is_some() {
                return Err(MetaError::AlreadyExists);
            }
            m.put_access_key(AccessKeyRecord {
                access_key: a,
                user: user.id,
                sealed_secret: sealed,
                created: now_ms(),
                revoked: false,
            })
        })
        .await?;
        Ok((ak, sk))
    }

    /// Revokes an access key (`NoSuchUser` if there is no such key).
    pub async fn revoke_access_key(&self, access_key: &str) -> Result<()> {
        let a = access_key.to_string();
        self.meta_call(move |m| {
            let mut rec = m.get_access_key(&a)?.ok_or(MetaError::NoSuchUser)?;
            rec.revoked = true;
            m.put_access_key(rec)
        })
        .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.meta_call(|m| m.list_users()).await
    }

    pub async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.meta_call(|m| m.list_access_keys()).await
    }

    /// Removes a user and its keys; its buckets stay owned by its (now dead) id.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let n = name.to_string();
        self.meta_call(move |m| m.delete_user(&n)).await
    }
}
