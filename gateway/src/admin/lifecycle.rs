//! Operator verbs of the lifecycle engine and the archive tier: `lifecycle-status`,
//! `lifecycle-explain`, `lifecycle-preview`, `lifecycle-metrics` (per-rule Prometheus text),
//! `archive-status` (all read-only).

use s3s::{S3Result, s3_error};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_engine::Engine;

use super::bad;
use crate::errors;

#[derive(Deserialize, Default)]
struct Args {
    bucket: Option<String>,
    key: Option<String>,
    version_id: Option<String>,
    days: Option<u32>,
    limit: Option<usize>,
}

/// Handles `verb` if it is one of this module's; `None` otherwise.
pub(crate) async fn handle(engine: &Engine, verb: &str, body: &[u8]) -> Option<S3Result<Value>> {
    if !matches!(
        verb,
        "lifecycle-status"
            | "lifecycle-explain"
            | "lifecycle-preview"
            | "lifecycle-metrics"
            | "archive-status"
    ) {
        return None;
    }
    Some(run(engine, verb, body).await)
}

async fn run(engine: &Engine, verb: &str, body: &[u8]) -> S3Result<Value> {
    let args: Args = if body.is_empty() {
        Args::default()
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON: {e}")))?
    };
    let need_bucket = || args.bucket.clone().ok_or_else(|| bad("bucket is required"));
    match verb {
        "lifecycle-status" => {
            let bucket = args.bucket.clone();
            if let Some(b) = &bucket
                && engine.bucket(b).await.map_err(errors::engine)?.is_none()
            {
                return Err(s3_error!(NoSuchBucket));
            }
            let mut v = strata_engine::lifecycle::worker::status(engine, bucket.as_deref())
                .await
                .map_err(errors::engine)?;
            if let Some(b) = &bucket {
                let rec = engine.bucket(b).await.map_err(errors::engine)?;
                v["configured_rules"] = json!(
                    rec.and_then(|r| r.lifecycle)
                        .map(|c| c
                            .rules
                            .iter()
                            .map(|r| json!({"id": r.id, "enabled": r.enabled}))
                            .collect::<Vec<_>>())
                        .unwrap_or_default()
                );
            }
            v["worker"] = engine
                .workers()
                .list()
                .into_iter()
                .find(|w| w.name == "lifecycle")
                .map(|w| json!({"state": w.state, "units": w.units, "errors": w.errors, "last_error": w.last_error, "idle_ms": w.idle_ms}))
                .unwrap_or(Value::Null);
            Ok(v)
        }
        "lifecycle-explain" => {
            let bucket = need_bucket()?;
            let key = args.key.clone().ok_or_else(|| bad("key is required"))?;
            strata_engine::lifecycle::explain::explain(
                engine,
                &bucket,
                &key,
                args.version_id.as_deref(),
            )
            .await
            .map_err(errors::engine)
        }
        "lifecycle-metrics" => {
            let text = strata_engine::lifecycle::worker::prometheus(engine, true)
                .await
                .map_err(errors::engine)?;
            Ok(json!({ "prometheus": text }))
        }
        "lifecycle-preview" => {
            let bucket = need_bucket()?;
            strata_engine::lifecycle::explain::preview(
                engine,
                &bucket,
                args.days.unwrap_or(30),
                args.limit.unwrap_or(10_000),
            )
            .await
            .map_err(errors::engine)
        }
        _ => {
            let containers = engine
                .meta_call(|m| m.list_containers())
                .await
                .map_err(errors::engine)?;
            let (pending, restores) = engine
                .meta_call(|m| m.archive_queue_lengths())
                .await
                .map_err(errors::engine)?;
            let workers: Vec<Value> = engine
                .workers()
                .list()
                .into_iter()
                .filter(|w| matches!(w.name.as_str(), "archive" | "restore" | "archive-compaction"))
                .map(|w| json!({"name": w.name, "state": w.state, "errors": w.errors, "last_error": w.last_error, "status": w.status}))
                .collect();
            Ok(json!({
                "containers": containers.iter().map(|c| json!({
                    "id": hex::encode(c.id),
                    "layout": c.layout,
                    "chunks": c.next_chunk,
                    "extents": c.extents,
                    "bytes": c.bytes,
                    "live_bytes": c.live_bytes,
                    "sealed": c.sealed,
                    "retiring": c.retiring,
                    "audited": c.audited,
                })).collect::<Vec<_>>(),
                "repack_queue": pending,
                "restore_queue": restores,
                "workers": workers,
            }))
        }
    }
}
