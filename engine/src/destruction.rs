//! The destruction path: what the GC worker does with one due item. Every item loses its keys
//! and its chunks; an item for a destroyed *version* (user delete, lifecycle expiration,
//! retention end, bucket purge, account closure) also gets its destruction record.
//!
//! Steps, each idempotent, so a crash at any point is repaired by doing the item again (it
//! stays queued until the last step):
//! 1. destroy every key of the item in the key store (slot overwritten, flushed);
//! 2. delete every chunk (tombstoned deletes, see the storage node);
//! 3. verify: the key store no longer holds any of the keys, and no chunk can be found;
//! 4. append the destruction record to the log (durable; idempotent by the item's `op_id`);
//! 5. (the caller) acknowledge the item.
//!
//! The GC item, committed in the same batch that removed the version, is the durable intent
//! of the destruction: as long as it is queued, the key destruction, the shard removal and the
//! record are all (re)done. The record is written last so that it states only what was done and
//! verified (shards removed, the failed read): never a record of something not destroyed. A key
//! destroyed before a crash gets its record when the item is redone, and never a second one.

use serde_json::{Value, json};
use strata_destruction_log::{Actor, DestructionRecord, Reason};
use strata_metadata::{DeleteActor, DeleteReason, DestroyedVersion, GcItem, KeyClass, KeyRef};
use strata_storage_node::{ChunkId, NodeError};

use crate::{Engine, now_ms};

/// What doing one item did.
#[derive(Clone, Debug, Default)]
pub struct ItemDone {
    pub chunks_deleted: u64,
    pub shards_removed: u64,
    pub keys_destroyed: u64,
    /// Index of the destruction record, for a destroyed version.
    pub record: Option<u64>,
}

pub fn log_reason(r: &DeleteReason) -> Reason {
    match r.clone() {
        DeleteReason::UserRequest { request_id } => Reason::UserRequest { request_id },
        DeleteReason::Lifecycle { rule_id } => Reason::Lifecycle { rule_id },
        DeleteReason::RetentionEnd { rule_id } => Reason::RetentionEnd { rule_id },
        DeleteReason::BucketPurge => Reason::BucketPurge,
        DeleteReason::AccountClosure => Reason::AccountClosure,
        DeleteReason::Admin { request_id } => Reason::Admin { request_id },
    }
}

fn log_actor(a: &DeleteActor) -> Actor {
    Actor {
        user: a.user.clone(),
        access_key: a.access_key.clone(),
        engine: a.engine.clone(),
    }
}

/// How a key is named in records and reports: `dek:<id>` / `kek:<id>`.
pub fn key_label(k: &KeyRef) -> String {
    match k.class {
        KeyClass::Kek => format!("kek:{}", k.id),
        KeyClass::Dek => format!("dek:{}", k.id),
    }
}

impl Engine {
    /// Destroys the keys and chunks of a due GC item, verifies, and writes its destruction
    /// record if it destroyed a version. Err leaves the item queued (it is redone later).
    pub async fn destroy_item(&self, item: &GcItem) -> Result<ItemDone, String> {
        let mut done = ItemDone::default();
        // 1. Keys first: from here on the data is unreadable, whatever happens to the shards.
        for k in &item.keys {
            let key = k.clone();
            let r = self
                .key_call(move |ring| ring.destroy(&key))
                .await
                .map_err(|e| format!("destroying {}: {e}", key_label(k)))?;
            if r == strata_keystore::Destroyed::Now {
                done.keys_destroyed += 1;
                if k.class == KeyClass::Kek {
                    self.note_key_event("kek", &k.id, "destroyed", None)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        // 2. Chunks.
        let mut chunk_ids = Vec::new();
        for seg in &item.segments {
            let layout = self
                .layout(seg.layout)
                .await
                .map_err(|e| e.to_string())?
                .node;
            for index in 0..seg.chunk_count() {
                let id = ChunkId {
                    blob: seg.blob,
                    index,
                };
                self.chunks()
                    .delete_chunk(&layout, id)
                    .await
                    .map_err(|e| e.to_string())?;
                done.chunks_deleted += 1;
                done.shards_removed += layout.total_shards() as u64;
                chunk_ids.push((layout.clone(), id));
            }
        }
        // 3. Verify: no key left, no chunk readable.
        for k in &item.keys {
            let key = k.clone();
            if self
                .key_call(move |ring| ring.holds(&key))
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("{} is still in the key store", key_label(k)));
            }
        }
        for (layout, id) in &chunk_ids {
            match self.chunks().stat_chunk(layout, *id).await {
                Err(NodeError::NotFound) => {}
                Ok(_) | Err(NodeError::Unrecoverable { .. }) => {
                    return Err(format!(
                        "chunk {}/{} is still present after its deletion",
                        hex::encode(id.blob),
                        id.index
                    ));
                }
                Err(e) => return Err(format!("verifying the deletion: {e}")),
            }
        }
        // 4. The record, for a destroyed version.
        if let Some(v) = &item.destroyed {
            let rec = self.record_for(v, item, &done, chunk_ids.len());
            let log = self.destruction_log().clone();
            let index = tokio::task::spawn_blocking(move || log.append(rec))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("appending the destruction record: {e}"))?;
            done.record = Some(index);
            tracing::info!(target: "strata::audit", bucket = %v.bucket, key = %v.key, version = %v.version_id, op = %v.op_id, index, "version destroyed");
        }
        Ok(done)
    }

    fn record_for(
        &self,
        v: &DestroyedVersion,
        item: &GcItem,
        done: &ItemDone,
        chunks: usize,
    ) -> DestructionRecord {
        let dek = item.keys.iter().find(|k| k.class == KeyClass::Dek);
        let key_part = match dek {
            Some(k) => format!(
                "{} overwritten in key-store slot {} and absent on re-read",
                key_label(k),
                k.slot
            ),
            None => "no data key (nothing was stored)".to_string(),
        };
        let mut data_part = if chunks == 0 {
            "no chunks".to_string()
        } else {
            format!("read of all {chunks} chunk(s) after deletion: not found")
        };
        if let Some(x) = v.archive_extent.as_ref().filter(|x| x.is_packed()) {
            // Shared with other versions: the chunk stays, the extent in it cannot be opened.
            data_part.push_str(&format!(
                "; sealed archive extent ({} bytes at offset {} of container {}) left for \
                 compaction, undecryptable without the destroyed key",
                x.sealed_len,
                x.offset,
                hex::encode(x.container)
            ));
        } else if let Some(x) = &v.archive_extent {
            data_part.push_str(&format!(
                "; archive extent (chunks {}.. of container {}) left for compaction, \
                 undecryptable without the destroyed key",
                x.first_chunk,
                hex::encode(x.container)
            ));
        }
        DestructionRecord {
            op_id: v.op_id.clone(),
            bucket: v.bucket.clone(),
            key: v.key.clone(),
            version_id: v.version_id.clone(),
            size: v.size,
            etag: v.etag.clone(),
            checksum: v.checksum.clone(),
            storage_class: v.storage_class.clone(),
            written_ms: v.written_ms,
            destroyed_ms: now_ms(),
            reason: log_reason(&v.reason),
            actor: log_actor(&v.actor),
            key_id: dek.map(key_label).unwrap_or_else(|| "none".into()),
            shards_removed: done.shards_removed,
            verification: format!("{key_part}; {data_part}"),
        }
    }

    /// The destruction records of one object, oldest first.
    pub async fn destruction_records(&self, bucket: &str, key: &str) -> crate::Result<Value> {
        let (log, b, k) = (
            self.destruction_log().clone(),
            bucket.to_string(),
            key.to_string(),
        );
        let found = tokio::task::spawn_blocking(move || log.find(&b, &k))
            .await
            .map_err(|e| crate::EngineError::internal(e.to_string()))?
            .map_err(|e| crate::EngineError::internal(e.to_string()))?;
        Ok(Value::Array(
            found
                .into_iter()
                .map(|(index, rec)| json!({"index": index, "record": rec}))
                .collect(),
        ))
    }

    /// A page of the destruction log, newest first: up to `limit` (at most
    /// [`MAX_LOG_PAGE`]) records before index `before` (the log's end when `None`), with the
    /// log's size, latest checkpoint, name and public key. `next_before` continues the listing.
    pub async fn destruction_log_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> crate::Result<Value> {
        let log = self.destruction_log().clone();
        let internal = |e: String| crate::EngineError::internal(e);
        tokio::task::spawn_blocking(move || {
            let page = log
                .page(before, limit)
                .map_err(|e| internal(e.to_string()))?;
            let public_key_pem = log.public_key_pem().map_err(|e| internal(e.to_string()))?;
            let records: Vec<Value> = page
                .records
                .into_iter()
                .map(|(index, rec)| json!({"index": index, "record": rec}))
                .collect();
            Ok(json!({
                "total": page.total,
                "records": records,
                "next_before": page.next_before,
                "latest_checkpoint": page.latest_checkpoint,
                "origin": page.origin,
                "public_key_pem": public_key_pem,
            }))
        })
        .await
        .map_err(|e| internal(e.to_string()))?
    }

    /// Verifies the whole destruction log as an auditor would: exports it (signing a checkpoint
    /// of its current state) into a private scratch directory and checks that export offline
    /// with the log's public key (every checkpoint's signature and consistency, every record's
    /// inclusion). `{"ok": true, "report": ...}` or `{"ok": false, "error": ...}`; the scratch
    /// directory is removed either way. Costs a pass over the log; one runs at a time (another
    /// call meanwhile answers `{"ok": false, "busy": true}`).
    pub async fn verify_destruction_log(&self) -> crate::Result<Value> {
        use std::sync::atomic::{AtomicBool, Ordering};
        static RUNNING: AtomicBool = AtomicBool::new(false);
        if RUNNING.swap(true, Ordering::AcqRel) {
            return Ok(json!({"ok": false, "busy": true,
                "message": "a destruction log verification is already running"}));
        }
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                RUNNING.store(false, Ordering::Release);
            }
        }
        let _done = Done;
        let log = self.destruction_log().clone();
        let internal = |e: String| crate::EngineError::internal(e);
        tokio::task::spawn_blocking(move || {
            let dir = scratch_dir().map_err(|e| internal(format!("scratch directory: {e}")))?;
            let out = dir.join("export");
            let result = log
                .export(None, None, &out)
                .map_err(|e| e.to_string())
                .and_then(|_| log.public_key_pem().map_err(|e| e.to_string()))
                .map(|pem| strata_destruction_log::verify_export(&out, &pem));
            let _ = std::fs::remove_dir_all(&dir);
            Ok(match result {
                Ok(Ok(report)) => json!({"ok": true, "report": report}),
                Ok(Err(e)) => json!({"ok": false, "error": e, "message": e.to_string()}),
                Err(e) => json!({"ok": false, "message": format!("export failed: {e}")}),
            })
        })
        .await
        .map_err(|e| internal(e.to_string()))?
    }
}

/// Largest page of [`Engine::destruction_log_page`].
pub const MAX_LOG_PAGE: usize = strata_destruction_log::service::MAX_PAGE;

/// A new 0700 directory under the system's temporary directory (records name buckets and keys:
/// no other local user may read them).
fn scratch_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("strata-verify-{:016x}", rand::random::<u64>()));
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir)?;
    Ok(dir)
}
