//! The key inventory an auditor asks for (`strata admin keys report`): every master key and
//! KEK with its id, kind, creation, rotation and destruction dates and what it protects, and the
//! DEKs counted per KEK. Never key material, not even wrapped.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use strata_keystore::KeyKind;

use crate::{Engine, EngineError, Result, now_ms};

impl Engine {
    pub async fn keys_report(&self) -> Result<Value> {
        let buckets = self.list_buckets().await?;
        let inventory: Vec<(String, Vec<u8>)> = self
            .meta_call(|m| m.worker_states("key-inventory/"))
            .await?;
        let mut events: BTreeMap<(String, String), Value> = BTreeMap::new();
        for (name, raw) in inventory {
            let rest = name.trim_start_matches("key-inventory/");
            if let Some((kind, id)) = rest.split_once('/') {
                let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                events.insert((kind.to_string(), id.to_string()), v);
            }
        }
        // Slots of the buckets' KEKs: creation and last re-wrap come from the key store.
        let mut kek_slots: Vec<(String, String, u64, &'static str)> = Vec::new();
        for b in &buckets {
            if let Some(k) = b.kek_ref() {
                kek_slots.push((b.name.clone(), k.id, k.slot, "current"));
            }
            for k in &b.previous_keks {
                kek_slots.push((b.name.clone(), k.id.clone(), k.slot, "rotating-out"));
            }
        }
        // KMS keys (SSE-KMS) are KEKs of the key store too; they wrap no DEK (versions bind
        // their DEK to a secret derived from them, see sse.rs).
        let kms = self.list_kms_keys().await?;
        // The archive tier's KEK (wraps container keys, no bucket's): listed on its own.
        let archive_kek = self.meta_call(|m| m.archive_kek()).await?;
        let containers = match &archive_kek {
            Some(_) => self.meta_call(|m| m.list_containers()).await?.len(),
            None => 0,
        };
        let mut slots: Vec<(u64, String)> = kek_slots.iter().map(|k| (k.2, k.1.clone())).collect();
        slots.extend(
            kms.iter()
                .filter_map(|k| k.kek_ref().map(|r| (r.slot, r.id))),
        );
        slots.extend(archive_kek.as_ref().map(|k| (k.slot, k.id.clone())));
        let (entries, stats) = self
            .key_call(move |k| {
                let mut out = HashMap::new();
                for (slot, id) in slots {
                    let idb = crate::keys::parse_key_id(&id)?;
                    if let Some(e) = k
                        .store()
                        .get(slot, &idb)
                        .map_err(|e| EngineError::internal(e.to_string()))?
                    {
                        out.insert(id, (e.created_ms, e.changed_ms, hex::encode(e.wrapper)));
                    }
                }
                let stats = k
                    .store()
                    .stats()
                    .map_err(|e| EngineError::internal(e.to_string()))?;
                Ok((out, stats))
            })
            .await?;
        let mut deks_by_kek: BTreeMap<String, u64> = BTreeMap::new();
        let mut keks_by_master: BTreeMap<String, u64> = BTreeMap::new();
        for (w, kind, n) in &stats.by_wrapper {
            match kind {
                KeyKind::Dek => {
                    deks_by_kek.insert(hex::encode(w), *n);
                }
                KeyKind::Kek => {
                    keks_by_master.insert(hex::encode(w), *n);
                }
            }
        }
        let mut keks = Vec::new();
        let mut listed = std::collections::BTreeSet::new();
        for (bucket, id, slot, state) in &kek_slots {
            listed.insert(id.clone());
            let ev = events.get(&("kek".into(), id.clone()));
            let (created, changed, wrapper) = entries
                .get(id)
                .cloned()
                .map(|(c, ch, w)| (Some(c), Some(ch), Some(w)))
                .unwrap_or((None, None, None));
            keks.push(json!({
                "id": id,
                "kind": "kek",
                "bucket": bucket,
                "state": state,
                "slot": slot,
                "created_ms": created,
                "last_rewrapped_ms": changed.filter(|c| Some(*c) != created),
                "rotated_ms": ev.and_then(|e| e.get("rotated")),
                "destroyed_ms": Value::Null,
                "wrapped_by_master": wrapper,
                "protects": {"bucket": bucket, "data_keys": deks_by_kek.get(id).copied().unwrap_or(0)},
            }));
        }
        for k in &kms {
            let Some(r) = k.kek_ref() else { continue };
            listed.insert(r.id.clone());
            let (created, changed, wrapper) = entries
                .get(&r.id)
                .cloned()
                .map(|(c, ch, w)| (Some(c), Some(ch), Some(w)))
                .unwrap_or((None, None, None));
            keks.push(json!({
                "id": r.id,
                "kind": "kek",
                "kms_key": k.name,
                "state": if k.enabled { "current" } else { "disabled" },
                "slot": r.slot,
                "created_ms": created,
                "last_rewrapped_ms": changed.filter(|c| Some(*c) != created),
                "destroyed_ms": Value::Null,
                "wrapped_by_master": wrapper,
                "protects": {"kms_key": k.name, "kms_key_id": k.id},
            }));
        }
        // KEKs no bucket names any more: destroyed (or queued for destruction).
        for ((kind, id), ev) in &events {
            if kind != "kek" || listed.contains(id) {
                continue;
            }
            keks.push(json!({
                "id": id,
                "kind": "kek",
                "bucket": ev.get("bucket"),
                "state": if ev.get("destroyed").is_some() { "destroyed" } else { "pending-destruction" },
                "created_ms": ev.get("created"),
                "rotated_ms": ev.get("rotated"),
                "destroyed_ms": ev.get("destroyed"),
                "protects": {"data_keys": deks_by_kek.get(id).copied().unwrap_or(0)},
            }));
        }
        let mut archive_keys = Vec::new();
        let mut archive_by_master: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(k) = &archive_kek {
            let (created, changed, wrapper) = entries
                .get(&k.id)
                .cloned()
                .map(|(c, ch, w)| (Some(c), Some(ch), Some(w)))
                .unwrap_or((None, None, None));
            if let Some(w) = &wrapper {
                *archive_by_master.entry(w.clone()).or_default() += 1;
            }
            archive_keys.push(json!({
                "id": k.id,
                "kind": "kek",
                "state": if created.is_some() { "current" } else { "missing" },
                "slot": k.slot,
                "created_ms": created,
                "last_rewrapped_ms": changed.filter(|c| Some(*c) != created),
                "wrapped_by_master": wrapper,
                "protects": {"archive_containers": containers},
            }));
        }
        let (wrapping, old) = self.keys().master_ids();
        let mut masters = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (id, state) in std::iter::once((hex::encode(wrapping), "current"))
            .chain(old.map(|o| (hex::encode(o), "rotating-out")))
        {
            let ev = events.get(&("master".into(), id.clone()));
            seen.insert(id.clone());
            masters.push(json!({
                "id": id,
                "kind": "master",
                "state": state,
                "created_ms": ev.and_then(|e| e.get("created")),
                "destroyed_ms": Value::Null,
                "source": match self.keys().source() { crate::keys::MasterSource::Env => "environment", _ => "file" },
                "protects": {
                    "bucket_keys": keks_by_master.get(&id).copied().unwrap_or(0)
                        .saturating_sub(archive_by_master.get(&id).copied().unwrap_or(0)),
                    "archive_keys": archive_by_master.get(&id).copied().unwrap_or(0),
                    "access_key_secrets": true,
                },
            }));
        }
        for ((kind, id), ev) in &events {
            if kind == "master" && !seen.contains(id) {
                masters.push(json!({
                    "id": id,
                    "kind": "master",
                    "state": if ev.get("destroyed").is_some() { "destroyed" } else { "unknown" },
                    "created_ms": ev.get("created"),
                    "destroyed_ms": ev.get("destroyed"),
                    "protects": {"bucket_keys": 0},
                }));
            }
        }
        let rotation = self.rotation_state().await?;
        let log = self.destruction_log().clone();
        let checkpoint = tokio::task::spawn_blocking(move || log.checkpoint(now_ms()))
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
            .map_err(|e| EngineError::internal(e.to_string()))?;
        Ok(json!({
            "generated_ms": now_ms(),
            "master_keys": masters,
            "bucket_keys": keks,
            "archive_keys": archive_keys,
            "data_keys": {
                "live": stats.live_deks,
                "by_kek": deks_by_kek,
                "destruction_records": checkpoint.tree_size,
            },
            "key_store": {
                "slots": stats.slots,
                "free_slots": stats.free,
                "live_keks": stats.live_keks,
                "live_deks": stats.live_deks,
                "file_bytes": stats.file_bytes,
            },
            "rotations": {"queued": rotation.jobs, "finished": rotation.finished},
        }))
    }
}
