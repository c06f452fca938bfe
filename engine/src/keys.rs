//! The key hierarchy as the engine uses it: master key -> per-bucket key-encryption key (KEK) ->
//! per-version data key (DEK). The primitives (AES-256-GCM wrapping, zeroizing key types) live in
//! `strata_storage_node::keys`; this module decides which key wraps which, and binds every wrapped
//! key to its place with AAD so a key copied into another record never unwraps.

use std::sync::Arc;

use strata_metadata::{BucketRecord, DataLayout, KmsKeyRecord, UploadRecord};
use strata_storage_node::keys::{DataKey, KeyEncryptionKey, MasterKey, new_key_id};

use crate::error::{EngineError, Result};

/// A freshly generated data key with its stored (wrapped) form.
pub struct NewDataKey {
    pub key: Arc<DataKey>,
    pub kek_id: String,
    pub dek_id: String,
    pub wrapped: Vec<u8>,
}

fn kek_aad(bucket: &str, kek_id: &str) -> Vec<u8> {
    format!("strata/kek/v1/{bucket}/{kek_id}").into_bytes()
}

fn dek_aad(kek_id: &str, dek_id: &str) -> Vec<u8> {
    format!("strata/dek/v1/{kek_id}/{dek_id}").into_bytes()
}

fn kms_aad(kms_id: &str, kek_id: &str) -> Vec<u8> {
    format!("strata/kms/v1/{kms_id}/{kek_id}").into_bytes()
}

/// Additional authenticated data that binds a sealed access-key secret to its access key.
pub fn secret_aad(access_key: &str) -> Vec<u8> {
    format!("strata/secret/v1/{access_key}").into_bytes()
}

/// Wraps and unwraps keys under the master key. Cheap to share.
pub struct KeyRing {
    master: Arc<MasterKey>,
}

impl KeyRing {
    pub fn new(master: Arc<MasterKey>) -> Self {
        KeyRing { master }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// A new key-encryption key for a bucket: (kek id, KEK wrapped by the master key).
    pub fn new_bucket_kek(&self, bucket: &str) -> (String, Vec<u8>) {
        let kek = KeyEncryptionKey::generate();
        let id = new_key_id();
        let wrapped = self.master.wrap_kek(&kek, &kek_aad(bucket, &id));
        (id, wrapped)
    }

    fn bucket_kek(&self, bucket: &BucketRecord) -> Result<KeyEncryptionKey> {
        Ok(self
            .master
            .unwrap_kek(&bucket.wrapped_kek, &kek_aad(&bucket.name, &bucket.kek_id))?)
    }

    /// A new random data key for one version (or one multipart upload), wrapped by the bucket KEK.
    pub fn new_data_key(&self, bucket: &BucketRecord) -> Result<NewDataKey> {
        let kek = self.bucket_kek(bucket)?;
        let dek = DataKey::generate();
        let dek_id = new_key_id();
        let wrapped = kek.wrap_dek(&dek, &dek_aad(&bucket.kek_id, &dek_id));
        Ok(NewDataKey {
            key: Arc::new(dek),
            kek_id: bucket.kek_id.clone(),
            dek_id,
            wrapped,
        })
    }

    /// Unwraps a stored data key. A key wrapped under another bucket's KEK is refused: rotation
    /// re-wraps every DEK under the new KEK in one pass, so a mismatch means the record belongs to
    /// another bucket, and the engine never decrypts across buckets.
    pub fn data_key(
        &self,
        bucket: &BucketRecord,
        kek_id: &str,
        dek_id: &str,
        wrapped: &[u8],
    ) -> Result<Arc<DataKey>> {
        if kek_id != bucket.kek_id {
            return Err(EngineError::internal(format!(
                "data key of bucket {} wrapped under a foreign KEK",
                bucket.name
            )));
        }
        let kek = self.bucket_kek(bucket)?;
        Ok(Arc::new(kek.unwrap_dek(wrapped, &dek_aad(kek_id, dek_id))?))
    }

    /// The data key of a stored version.
    pub fn version_key(&self, bucket: &BucketRecord, data: &DataLayout) -> Result<Arc<DataKey>> {
        self.data_key(bucket, &data.kek_id, &data.dek_id, &data.wrapped_dek)
    }

    /// The data key shared by the parts of a multipart upload.
    pub fn upload_key(&self, bucket: &BucketRecord, u: &UploadRecord) -> Result<Arc<DataKey>> {
        self.data_key(bucket, &u.kek_id, &u.dek_id, &u.wrapped_dek)
    }

    /// A new KEK for an operator-managed KMS key: (kek id, KEK wrapped by the master key).
    pub fn new_kms_kek(&self, kms_id: &str) -> (String, Vec<u8>) {
        let kek = KeyEncryptionKey::generate();
        let id = new_key_id();
        let wrapped = self.master.wrap_kek(&kek, &kms_aad(kms_id, &id));
        (id, wrapped)
    }

    /// The secret an SSE-KMS version's DEK is bound to (see `sse.rs`): derived from the KMS
    /// key's KEK, for this key only.
    pub fn kms_binding_secret(&self, rec: &KmsKeyRecord) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let kek = self
            .master
            .unwrap_kek(&rec.wrapped_kek, &kms_aad(&rec.id, &rec.kek_id))?;
        Ok(kek.binding_secret(rec.id.as_bytes()))
    }

    pub fn seal_secret(&self, access_key: &str, secret: &str) -> Vec<u8> {
        self.master
            .seal_secret(secret.as_bytes(), &secret_aad(access_key))
    }

    pub fn open_secret(
        &self,
        access_key: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(self.master.open_secret(sealed, &secret_aad(access_key))?)
    }
}
