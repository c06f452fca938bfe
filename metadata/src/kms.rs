//! Operator-managed KMS keys (SSE-KMS): records that name a KEK in the key store (slot + id,
//! never key material). Sys space: `kms/` + id -> the record, `kms-name/` + name -> id (names
//! are unique).

use crate::gc::stage_consume_key;
use crate::kv::{Batch, Space};
use crate::store::{decode, encode};
use crate::{KmsKeyRecord, MetaError, MetaStore, Result};

const KMS_PREFIX: &[u8] = b"kms/";
const KMS_NAME_PREFIX: &[u8] = b"kms-name/";

fn id_key(id: &str) -> Vec<u8> {
    [KMS_PREFIX, id.as_bytes()].concat()
}

fn name_key(name: &str) -> Vec<u8> {
    [KMS_NAME_PREFIX, name.as_bytes()].concat()
}

impl MetaStore {
    /// `AlreadyExists` if the name is taken. The KEK (`kek_slot`) was written to the key store
    /// under a key-only intent (`begin_key`), which this consumes (`WriteAborted` if the sweep
    /// took it); on any error the caller discards the key.
    pub fn create_kms_key(&self, rec: &KmsKeyRecord) -> Result<()> {
        let mut b = Batch::default();
        b.absent(Space::Sys, &name_key(&rec.name));
        b.absent(Space::Sys, &id_key(&rec.id));
        b.put(Space::Sys, name_key(&rec.name), rec.id.as_bytes().to_vec());
        b.put(Space::Sys, id_key(&rec.id), encode(rec));
        let consumed = match rec.kek_ref() {
            Some(k) => vec![stage_consume_key(&mut b, &k)?],
            None => Vec::new(),
        };
        match self.commit_consuming(b, &consumed) {
            Err(MetaError::Conflict)
                if self.kv().get(Space::Sys, &name_key(&rec.name))?.is_some() =>
            {
                Err(MetaError::AlreadyExists)
            }
            other => other,
        }
    }

    pub fn get_kms_key(&self, id: &str) -> Result<Option<KmsKeyRecord>> {
        self.kv()
            .get(Space::Sys, &id_key(id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    pub fn kms_key_by_name(&self, name: &str) -> Result<Option<KmsKeyRecord>> {
        match self.kv().get(Space::Sys, &name_key(name))? {
            None => Ok(None),
            Some(id) => {
                let id =
                    String::from_utf8(id).map_err(|_| MetaError::Corrupt("kms name".into()))?;
                self.get_kms_key(&id)
            }
        }
    }

    pub fn list_kms_keys(&self) -> Result<Vec<KmsKeyRecord>> {
        self.scan_all(Space::Sys, KMS_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Enables or disables a key (by id); `NoSuchKey` if there is none. Returns the record.
    pub fn set_kms_key_enabled(&self, id: &str, enabled: bool, now: i64) -> Result<KmsKeyRecord> {
        self.retry(|| {
            let raw = self
                .kv()
                .get(Space::Sys, &id_key(id))?
                .ok_or(MetaError::NoSuchKey)?;
            let mut rec: KmsKeyRecord = decode(&raw)?;
            rec.enabled = enabled;
            rec.disabled_at = (!enabled).then_some(now);
            let mut b = Batch::default();
            b.equals(Space::Sys, &id_key(id), &raw);
            b.put(Space::Sys, id_key(id), encode(&rec));
            self.kv().commit(b)?;
            Ok(rec)
        })
    }
}
