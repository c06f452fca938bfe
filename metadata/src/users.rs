//! Users and access keys.
//!
//! A user is its random canonical id (`id/<id>` in `Space::Users`); the name is only an index
//! (`name/<name>` -> id) kept unique among living users. Buckets and access keys hold the id, so
//! a removed user's name given to a new account never hands it the old account's buckets.

use crate::kv::{Batch, Space};
use crate::store::{decode, encode};
use crate::{AccessKeyRecord, MetaError, MetaStore, Result, UserClosing, UserRecord};

fn id_key(id: &str) -> Vec<u8> {
    [b"id/".as_slice(), id.as_bytes()].concat()
}

fn name_key(name: &str) -> Vec<u8> {
    [b"name/".as_slice(), name.as_bytes()].concat()
}

/// 32 random bytes as 64 lowercase hex characters (the shape of an S3 canonical user id).
fn new_user_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The name the audit log gives the caller of an unsigned request; no user may take it.
pub const ANONYMOUS: &str = "anonymous";

impl MetaStore {
    /// Creates a user with a fresh id. `AlreadyExists` if a living user has this name.
    pub fn create_user(&self, name: &str, is_admin: bool, now: i64) -> Result<UserRecord> {
        if name.is_empty() {
            return Err(MetaError::Invalid("empty user name".into()));
        }
        // The audit log and access logs name unsigned requests' caller "anonymous": a user of
        // that name would be indistinguishable from them in `audit search --user`.
        if name == ANONYMOUS {
            return Err(MetaError::Invalid(format!(
                "user name {ANONYMOUS:?} is reserved for unsigned requests"
            )));
        }
        let user = UserRecord {
            id: new_user_id(),
            name: name.to_string(),
            created: now,
            is_admin,
            closing: None,
        };
        let mut b = Batch::default();
        b.absent(Space::Users, &name_key(name));
        b.absent(Space::Users, &id_key(&user.id));
        b.put(Space::Users, name_key(name), user.id.as_bytes().to_vec());
        b.put(Space::Users, id_key(&user.id), encode(&user));
        match self.kv().commit(b) {
            // A 256-bit random id does not collide: the name is taken.
            Err(MetaError::Conflict) => Err(MetaError::AlreadyExists),
            Err(e) => Err(e),
            Ok(()) => Ok(user),
        }
    }

    /// The living user with this name.
    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        match self.kv().get(Space::Users, &name_key(name))? {
            Some(id) => self.get_user_by_id(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn get_user_by_id(&self, id: &str) -> Result<Option<UserRecord>> {
        self.kv()
            .get(Space::Users, &id_key(id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// All users, by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let mut users: Vec<UserRecord> = self
            .scan_all(Space::Users, b"id/".to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect::<Result<_>>()?;
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Removes the user, its name index and all its access keys (`NoSuchUser`). Its buckets stay,
    /// owned by the dead id: nobody can reach them as their owner any more.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        self.retry(|| {
            let nkey = name_key(name);
            let id_raw = self
                .kv()
                .get(Space::Users, &nkey)?
                .ok_or(MetaError::NoSuchUser)?;
            let id = String::from_utf8_lossy(&id_raw).into_owned();
            let ikey = id_key(&id);
            let mut b = Batch::default();
            b.equals(Space::Users, &nkey, &id_raw);
            b.delete(Space::Users, nkey);
            if let Some(raw) = self.kv().get(Space::Users, &ikey)? {
                b.equals(Space::Users, &ikey, &raw);
                b.delete(Space::Users, ikey);
            }
            for (k, v) in self.scan_all(Space::AccessKeys, Vec::new())? {
                let rec: AccessKeyRecord = decode(&v)?;
                if rec.user == id {
                    b.equals(Space::AccessKeys, &k, &v);
                    b.delete(Space::AccessKeys, k);
                }
            }
            self.kv().commit(b)
        })
    }

    /// Creates or replaces the access key record (revocation is a replace with `revoked`).
    /// `key.user` is a user id, which must exist (`NoSuchUser`).
    pub fn put_access_key(&self, key: AccessKeyRecord) -> Result<()> {
        let ikey = id_key(&key.user);
        let mut b = Batch::default();
        // A key can never be added for a user removed meanwhile.
        b.present(Space::Users, &ikey);
        b.put(
            Space::AccessKeys,
            key.access_key.as_bytes().to_vec(),
            encode(&key),
        );
        match self.kv().commit(b) {
            Err(MetaError::Conflict) => Err(MetaError::NoSuchUser),
            other => other,
        }
    }

    /// Sets or clears a user's account closure (CAS on the user record).
    pub fn set_user_closing(&self, name: &str, closing: Option<UserClosing>) -> Result<UserRecord> {
        self.retry(|| {
            let id_raw = self
                .kv()
                .get(Space::Users, &name_key(name))?
                .ok_or(MetaError::NoSuchUser)?;
            let ikey = id_key(&String::from_utf8_lossy(&id_raw));
            let raw = self
                .kv()
                .get(Space::Users, &ikey)?
                .ok_or(MetaError::NoSuchUser)?;
            let mut rec: UserRecord = decode(&raw)?;
            rec.closing = closing.clone();
            let mut b = Batch::default();
            b.equals(Space::Users, &ikey, &raw);
            b.put(Space::Users, ikey, encode(&rec));
            self.kv().commit(b)?;
            Ok(rec)
        })
    }

    /// Re-seals an access key's secret (master key rotation): `f` gets the record and returns
    /// the new sealed secret, or `None` to leave it. Compare-and-set on the record, so a revoke
    /// or removal racing this is never undone. Returns whether it was changed.
    pub fn reseal_access_key<F>(&self, access_key: &str, mut f: F) -> Result<bool>
    where
        F: FnMut(&AccessKeyRecord) -> Result<Option<Vec<u8>>>,
    {
        self.retry(|| {
            let k = access_key.as_bytes();
            let Some(raw) = self.kv().get(Space::AccessKeys, k)? else {
                return Ok(false);
            };
            let mut rec: AccessKeyRecord = decode(&raw)?;
            let Some(sealed) = f(&rec)? else {
                return Ok(false);
            };
            rec.sealed_secret = sealed;
            let mut b = Batch::default();
            b.equals(Space::AccessKeys, k, &raw);
            b.put(Space::AccessKeys, k.to_vec(), encode(&rec));
            self.kv().commit(b)?;
            Ok(true)
        })
    }

    pub fn get_access_key(&self, access_key: &str) -> Result<Option<AccessKeyRecord>> {
        self.kv()
            .get(Space::AccessKeys, access_key.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }

    pub fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.scan_all(Space::AccessKeys, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
}
