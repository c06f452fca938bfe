//! Users and access keys.

use crate::kv::{Batch, Space};
use crate::store::{decode, encode};
use crate::{AccessKeyRecord, MetaError, MetaStore, Result, UserRecord};

impl MetaStore {
    /// Creates or replaces the user record.
    pub fn put_user(&self, user: UserRecord) -> Result<()> {
        let mut b = Batch::default();
        b.put(Space::Users, user.name.as_bytes().to_vec(), encode(&user));
        self.kv().commit(b)
    }
    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.kv()
            .get(Space::Users, name.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.scan_all(Space::Users, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Removes the user and all its access keys (`NoSuchUser`).
    pub fn delete_user(&self, name: &str) -> Result<()> {
        self.retry(|| {
            let raw = self
                .kv()
                .get(Space::Users, name.as_bytes())?
                .ok_or(MetaError::NoSuchUser)?;
            let mut b = Batch::default();
            b.equals(Space::Users, name.as_bytes(), &raw);
            b.delete(Space::Users, name.as_bytes().to_vec());
            for (k, v) in self.scan_all(Space::AccessKeys, Vec::new())? {
                let rec: AccessKeyRecord = decode(&v)?;
                if rec.user == name {
                    b.equals(Space::AccessKeys, &k, &v);
                    b.delete(Space::AccessKeys, k);
                }
            }
            self.kv().commit(b)
        })
    }
    /// Creates or replaces the access key record (revocation is a replace with `revoked`).
    pub fn put_access_key(&self, key: AccessKeyRecord) -> Result<()> {
        let mut b = Batch::default();
        b.put(
            Space::AccessKeys,
            key.access_key.as_bytes().to_vec(),
            encode(&key),
        );
        self.kv().commit(b)
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
