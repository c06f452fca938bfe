//! State shared by every request: the metadata store, the chunk service, the master key and the
//! gateway configuration. Also the key-hierarchy helpers (bucket KEK, object DEK).

use std::sync::Arc;

use s3s::{S3Result, s3_error};
use strata_metadata::{BucketRecord, DataLayout, MetaStore};
use strata_storage_node::keys::{DataKey, KeyEncryptionKey, MasterKey, new_key_id};
use strata_storage_node::{ChunkService, Layout};

use crate::errors;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub region: String,
    /// Plaintext bytes per chunk sent to the storage node.
    pub chunk_size: usize,
    /// Chunks of one request being stored at the same time (bounds memory per request).
    pub write_parallelism: usize,
    /// Chunks fetched ahead while streaming a GET.
    pub read_ahead: usize,
    /// Base domain for virtual-hosted-style addressing (`bucket.DOMAIN`), if enabled.
    pub domain: Option<String>,
    /// The layout every chunk is written, read and deleted with.
    // TODO(engine): write with the metadata tier's current layout and read/delete each segment
    // with the layout it records; a single fixed layout makes old data unreadable after a
    // geometry change.
    pub layout: Layout,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            region: "us-east-1".into(),
            chunk_size: 4 * 1024 * 1024,
            write_parallelism: 4,
            read_ahead: 2,
            domain: None,
            layout: Layout::new(0, (0..6).map(|i| format!("disk{i}")).collect(), 4, 2)
                .expect("valid default layout"),
        }
    }
}

pub struct Context {
    pub meta: MetaStore,
    pub chunks: Arc<dyn ChunkService>,
    pub master: Arc<MasterKey>,
    pub cfg: GatewayConfig,
}

/// A freshly generated data key with its stored (wrapped) form.
pub struct NewDataKey {
    pub key: Arc<DataKey>,
    pub dek_id: String,
    pub wrapped: Vec<u8>,
}

fn kek_aad(bucket: &str, kek_id: &str) -> Vec<u8> {
    format!("strata/kek/v1/{bucket}/{kek_id}").into_bytes()
}

fn dek_aad(kek_id: &str, dek_id: &str) -> Vec<u8> {
    format!("strata/dek/v1/{kek_id}/{dek_id}").into_bytes()
}

impl Context {
    /// A new key-encryption key for a bucket: (kek id, KEK wrapped by the master key).
    pub fn new_bucket_kek(&self, bucket: &str) -> (String, Vec<u8>) {
        let kek = KeyEncryptionKey::generate();
        let id = new_key_id();
        let wrapped = self.master.wrap_kek(&kek, &kek_aad(bucket, &id));
        (id, wrapped)
    }

    fn bucket_kek(&self, bucket: &BucketRecord) -> S3Result<KeyEncryptionKey> {
        self.master
            .unwrap_kek(&bucket.wrapped_kek, &kek_aad(&bucket.name, &bucket.kek_id))
            .map_err(errors::key)
    }

    pub fn new_data_key(&self, bucket: &BucketRecord) -> S3Result<NewDataKey> {
        let kek = self.bucket_kek(bucket)?;
        let dek = DataKey::generate();
        let dek_id = new_key_id();
        let wrapped = kek.wrap_dek(&dek, &dek_aad(&bucket.kek_id, &dek_id));
        Ok(NewDataKey {
            key: Arc::new(dek),
            dek_id,
            wrapped,
        })
    }

    /// Unwraps the data key of a stored version (or upload).
    pub fn data_key(
        &self,
        bucket: &BucketRecord,
        kek_id: &str,
        dek_id: &str,
        wrapped: &[u8],
    ) -> S3Result<Arc<DataKey>> {
        if kek_id != bucket.kek_id {
            // Rotation re-wraps every DEK under the new KEK in one pass, so a mismatch means the
            // record belongs to another bucket: never decrypt across buckets.
            tracing::error!(bucket = %bucket.name, "data key wrapped under a foreign KEK");
            return Err(s3_error!(InternalError));
        }
        let kek = self.bucket_kek(bucket)?;
        let dek = kek
            .unwrap_dek(wrapped, &dek_aad(kek_id, dek_id))
            .map_err(errors::key)?;
        Ok(Arc::new(dek))
    }

    pub fn layout_key(&self, bucket: &BucketRecord, layout: &DataLayout) -> S3Result<Arc<DataKey>> {
        self.data_key(bucket, &layout.kek_id, &layout.dek_id, &layout.wrapped_dek)
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}
