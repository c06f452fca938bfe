//! Container keys. The chunk store encrypts each container chunk under a random key of that
//! container's own, wrapped by the archive KEK, which lives in the key store like a bucket KEK
//! (wrapped by the master key, re-wrapped by a master rotation):
//!
//! ```text
//! master key -> archive KEK (key store; sys `archive-kek` names its slot)
//!            -> container key (ContainerRecord::wrapped_key)
//! ```
//!
//! The container key protects the packing (frame boundaries, nonces, which bytes are whose);
//! the version's data key protects the version's bytes inside it, and is what crypto-shredding
//! destroys. A container key is never needed to destroy a version, and never enough to read one.

use std::sync::Arc;

use strata_metadata::BlobId;
use strata_metadata::archive::{ArchiveKekRecord, ContainerRecord};
use strata_storage_node::keys::{DataKey, KeyEncryptionKey};

use crate::error::{EngineError, Result};
use crate::{Engine, now_ms};

fn container_aad(kek_id: &str, container: &BlobId) -> Vec<u8> {
    format!(
        "strata/container-key/v1/{kek_id}/{}",
        hex::encode(container)
    )
    .into_bytes()
}

impl Engine {
    /// The archive KEK, created on first use: written to the key store under a key-only intent,
    /// which the record naming it consumes (a crash in between leaves the intent, and the sweep
    /// destroys the key).
    async fn archive_kek(&self) -> Result<(String, KeyEncryptionKey)> {
        let rec = match self.meta_call(|m| m.archive_kek()).await? {
            Some(r) => r,
            None => {
                let fresh = self.new_kek().await?;
                let rec = ArchiveKekRecord {
                    id: fresh.id.clone(),
                    slot: fresh.slot,
                    created: now_ms(),
                };
                match self.meta_call(move |m| m.create_archive_kek(rec)).await {
                    Ok(won) => {
                        if won.id != fresh.id {
                            // Another writer recorded one first: ours names nothing.
                            self.discard_key(fresh.key_ref(), "archive-kek-race").await;
                        }
                        won
                    }
                    Err(e) => {
                        self.discard_key(fresh.key_ref(), "failed-key-write").await;
                        return Err(e);
                    }
                }
            }
        };
        let (slot, id) = (rec.slot, rec.id.clone());
        let kek = self.key_call(move |k| k.archive_kek(slot, &id)).await?;
        Ok((rec.id, kek))
    }

    /// A new container record for `writer` with a fresh random id and key (not yet recorded).
    pub(crate) async fn new_container_record(
        &self,
        writer: &str,
        layout: u32,
        chunk_size: u32,
    ) -> Result<ContainerRecord> {
        let (kek_id, kek) = self.archive_kek().await?;
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        let key = DataKey::generate();
        let wrapped = kek.wrap_dek(&key, &container_aad(&kek_id, &id));
        Ok(ContainerRecord::new(
            id,
            writer,
            layout,
            chunk_size,
            kek_id,
            wrapped,
            now_ms(),
        ))
    }

    /// The key a packed container's chunks are encrypted with.
    pub(crate) async fn container_key(&self, c: &ContainerRecord) -> Result<Arc<DataKey>> {
        if !c.is_packed() {
            return Err(EngineError::internal(
                "format-1 container: no container key",
            ));
        }
        let (kek_id, kek) = self.archive_kek().await?;
        if kek_id != c.key_id {
            return Err(EngineError::internal(format!(
                "container key wrapped by archive KEK {}, not the current one",
                c.key_id
            )));
        }
        Ok(Arc::new(kek.unwrap_dek(
            &c.wrapped_key,
            &container_aad(&c.key_id, &c.id),
        )?))
    }
}
