//! Key-store work as the data path needs it, off the async workers: writing new keys under the
//! right wrapping key (and under an intent, so a key is always referenced by a record, an intent
//! or a GC item), and reading a version's key.
//!
//! Order for every new key: the intent that covers it is durable first (a blob's write intent,
//! or a key-only intent), then the key is written to the key store, then a commit references it
//! (consuming the intent). A crash anywhere leaves the intent, which the sweep turns into a GC
//! item that destroys the key: no key outlives every reference to it.

use std::sync::Arc;

use strata_metadata::{BucketRecord, DataLayout, KeyRef, MetaError};
use strata_storage_node::keys::DataKey;

use crate::error::{EngineError, Result};
use crate::keys::{FreshDek, FreshKek, KeyRing};
use crate::{Engine, now_ms};

impl Engine {
    /// Runs a blocking key-ring call on the blocking pool.
    pub async fn key_call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&KeyRing) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || f(engine.keys()))
            .await
            .map_err(|e| EngineError::internal(format!("key task failed: {e}")))?
    }

    /// A new data key with a reserved slot. A local store reserves in memory; the cluster's key
    /// service may need a round trip, which runs on the blocking pool.
    pub async fn fresh_dek(&self, bucket: &str) -> Result<FreshDek> {
        if self.keys().store().local().is_some() {
            return self.keys().fresh_dek(bucket);
        }
        let bucket = bucket.to_string();
        self.key_call(move |k| k.fresh_dek(&bucket)).await
    }

    /// A new KEK with a reserved slot (see [`Engine::fresh_dek`]).
    pub async fn fresh_kek(&self) -> Result<FreshKek> {
        if self.keys().store().local().is_some() {
            return self.keys().fresh_kek();
        }
        self.key_call(|k| k.fresh_kek()).await
    }

    /// The data key of a stored version, read on the blocking pool.
    pub async fn version_key(
        &self,
        bucket: &BucketRecord,
        data: &DataLayout,
    ) -> Result<Arc<DataKey>> {
        let (b, d) = (bucket.clone(), data.clone());
        self.key_call(move |k| k.version_key(&b, &d)).await
    }

    /// Writes a new data key under its bucket's current KEK. The bucket record is read again
    /// under the shared switch lock, so a KEK rotation that switched meanwhile is seen (no key
    /// is ever written under a KEK being rotated out once its re-wrap pass started). Returns
    /// the KEK's id.
    pub async fn persist_dek(&self, fresh: Arc<FreshDek>) -> Result<String> {
        let _shared = self.keys().switch().read().await;
        let name = fresh.bucket.clone();
        let bucket = self
            .meta_call(move |m| m.get_bucket(&name))
            .await?
            .ok_or(MetaError::NoSuchBucket)?;
        self.key_call(move |k| k.write_dek(&bucket, &fresh)).await
    }

    /// A new KEK, written under a key-only intent (consumed by the record that will name it).
    pub async fn new_kek(&self) -> Result<FreshKek> {
        let fresh = Arc::new(self.fresh_kek().await?);
        let key = fresh.key_ref();
        let owner = self.instance().get();
        self.meta_call(move |m| m.begin_key(&key, &owner, now_ms()))
            .await?;
        let _shared = self.keys().switch().read().await;
        let f = fresh.clone();
        if let Err(e) = self.key_call(move |k| k.write_kek(&f)).await {
            self.discard_key(fresh.key_ref(), "failed-key-write").await;
            return Err(e);
        }
        drop(_shared);
        Arc::try_unwrap(fresh).map_err(|_| EngineError::internal("new KEK still shared"))
    }

    /// A new data key for a multipart upload, written under a key-only intent (consumed by
    /// `create_upload`). Returns the key and the id of the KEK that wraps it.
    pub async fn new_upload_key(&self, bucket: &BucketRecord) -> Result<(Arc<FreshDek>, String)> {
        let fresh = Arc::new(self.fresh_dek(&bucket.name).await?);
        let key = fresh.key_ref();
        let owner = self.instance().get();
        self.meta_call(move |m| m.begin_key(&key, &owner, now_ms()))
            .await?;
        match self.persist_dek(fresh.clone()).await {
            Ok(kek_id) => Ok((fresh, kek_id)),
            Err(e) => {
                self.discard_key(fresh.key_ref(), "failed-key-write").await;
                Err(e)
            }
        }
    }

    /// A key-only intent whose record will never be written: its key goes to the GC.
    pub(crate) async fn discard_key(&self, key: KeyRef, reason: &'static str) {
        let id = key.id.clone();
        if let Err(e) = self.meta_call(move |m| m.discard_key(&key, reason)).await {
            tracing::error!(error = %e, key = %id, "could not queue an unused key for destruction; the intent sweep will");
        }
    }
}
