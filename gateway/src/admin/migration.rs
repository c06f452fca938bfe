//! Operator verbs of migration jobs (`strata admin migration ...`): start, status, list, pause,
//! resume, cancel, report. The source secret arrives in `migration-start` and is sealed at once;
//! no answer or log line carries it.

use s3s::{S3Error, S3Result};
use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::identity::Caller;
use strata_migration::job::{self, JobError, StartArgs};

use super::bad;
use crate::errors;

fn job_err(e: JobError) -> S3Error {
    match e {
        JobError::Invalid(m) => bad(m),
        JobError::Engine(e) => errors::engine(e),
    }
}

/// Versions of one key (newest first, at most 1000) with what a migration recorded of their
/// source: the job, the source's version id, ETag and Last-Modified.
async fn origins(engine: &Engine, bucket: &str, key: &str) -> S3Result<Value> {
    const MAX: usize = 1000;
    let page = engine
        .list_versions(
            bucket,
            strata_metadata::ListVersionsParams {
                prefix: key.to_string(),
                delimiter: None,
                key_marker: None,
                version_id_marker: None,
                max_keys: MAX,
            },
        )
        .await
        .map_err(errors::engine)?;
    let mine: Vec<_> = page.entries.iter().filter(|e| e.key == key).collect();
    let truncated = page.is_truncated && mine.len() == page.entries.len();
    let versions: Vec<Value> = mine
        .iter()
        .map(|e| {
            let v = &e.version;
            json!({
                "version_id": v.version_id,
                "is_latest": e.is_latest,
                "is_delete_marker": v.is_delete_marker,
                "size": v.size,
                "etag": v.etag,
                "origin": v.origin.as_ref().map(|o| json!({
                    "job": o.job,
                    "source_version_id": o.version_id,
                    "source_etag": o.etag,
                    "source_last_modified": o.last_modified,
                })),
            })
        })
        .collect();
    Ok(json!({"bucket": bucket, "key": key, "versions": versions, "truncated": truncated}))
}

fn name(args: &Value) -> S3Result<&str> {
    args.get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("name is required"))
}

/// Handles the verbs of this module; `None` for any other verb.
pub(super) async fn handle(
    engine: &Engine,
    who: &Caller,
    verb: &str,
    args: &Value,
) -> Option<S3Result<Value>> {
    let r = match verb {
        "migration-start" => async {
            // Not serde's message: it can quote a field's value, and one of them is a secret.
            let a: StartArgs = serde_json::from_value(args.clone()).map_err(|_| {
                bad("migration-start needs name, source_endpoint, source_access_key, source_secret_key, source_bucket and bucket (strings)")
            })?;
            let (n, src, sb, b) = (a.name.clone(), a.source_endpoint.clone(), a.source_bucket.clone(), a.bucket.clone());
            let out = job::start(engine, a, &who.user).await.map_err(job_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, job = %n, source = %src, source_bucket = %sb, bucket = %b, "migration job created");
            Ok(out)
        }
        .await,
        "export-start" => async {
            // Not serde's message: it can quote a field's value, and one of them is a secret.
            let a: strata_migration::export::ExportArgs = serde_json::from_value(args.clone())
                .map_err(|_| bad("export-start needs name and bucket (strings), and to_dir or to_endpoint, to_access_key, to_secret_key and to_bucket"))?;
            let (n, b) = (a.name.clone(), a.bucket.clone());
            let to = a.to_dir.clone().or_else(|| a.to_endpoint.clone()).unwrap_or_default();
            let out = strata_migration::export::start(engine, a, &who.user)
                .await
                .map_err(job_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, job = %n, bucket = %b, to = %to, "export job created");
            Ok(out)
        }
        .await,
        "migration-origins" => async {
            let bucket = args
                .get("bucket")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("bucket is required"))?;
            let key = args
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("key is required"))?;
            origins(engine, bucket, key).await
        }
        .await,
        "migration-status" => async { job::status(engine, name(args)?).await.map_err(job_err) }.await,
        "migration-list" => job::list(engine).await.map_err(job_err),
        v @ ("migration-pause" | "migration-resume" | "migration-cancel") => async {
            let n = name(args)?;
            let what = v.trim_start_matches("migration-");
            let out = job::control(engine, n, what).await.map_err(job_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, job = %n, verb = %what, "migration job control");
            Ok(out)
        }
        .await,
        "migration-report" => async {
            let n = name(args)?;
            let after = args.get("after").and_then(Value::as_u64);
            let limit = args
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(strata_migration::report::MAX_PAGE as u64) as usize;
            let summary = job::status(engine, n).await.map_err(job_err)?;
            let (entries, next) = strata_migration::report::page(engine, n, after, limit)
                .await
                .map_err(errors::engine)?;
            Ok(json!({
                "summary": summary,
                "entries": entries.iter().map(strata_migration::report::entry_json).collect::<Vec<_>>(),
                "next": next,
            }))
        }
        .await,
        _ => return None,
    };
    Some(r)
}
