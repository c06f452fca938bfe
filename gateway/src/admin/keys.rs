//! Operator verbs of the key lifecycle, destruction and retention (issue 11): key rotation, the
//! key inventory, bucket purge, account restore, retention presets, and the destruction log's
//! server-side verbs (export, show, log: a page of records, verify: the whole log checked). Each takes a small JSON document and answers JSON; every
//! change is logged under `strata::audit`.

use std::path::PathBuf;

use s3s::{S3Error, S3Result, s3_error};
use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::identity::Caller;
use strata_engine::rotation::{DEFAULT_RATE, Target};
use strata_metadata::LockMode;

use super::bad;
use crate::errors;

fn str_arg<'a>(args: &'a Value, name: &str) -> S3Result<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{name} is required")))
}

fn rate(args: &Value) -> S3Result<u64> {
    match args.get("rate") {
        None | Some(Value::Null) => Ok(DEFAULT_RATE),
        Some(v) => v
            .as_u64()
            .filter(|r| *r > 0)
            .ok_or_else(|| bad("rate must be a positive number of keys per second")),
    }
}

/// Engine errors that are the operator's input (unknown bucket, wrong state) as InvalidArgument
/// with the engine's message; the rest as the S3 mapping does it.
fn op_err(e: strata_engine::EngineError) -> S3Error {
    use strata_metadata::MetaError as M;
    match e {
        strata_engine::EngineError::Meta(
            m @ (M::Invalid(_)
            | M::NoSuchUser
            | M::NoSuchBucket
            | M::BucketClosing
            | M::ObjectLockNotEnabled
            | M::InvalidRetention(_)),
        ) => bad(m.to_string()),
        e => errors::engine(e),
    }
}

/// Handles the verbs of this module; `None` for any other verb.
pub(super) async fn handle(
    engine: &Engine,
    who: &Caller,
    verb: &str,
    args: &Value,
) -> Option<S3Result<Value>> {
    let r = match verb {
        "key-rotate-master" => rotate(engine, who, Target::Master, args).await,
        "key-rotate-bucket" => match str_arg(args, "bucket") {
            Ok(b) => {
                let t = Target::Bucket {
                    bucket: b.to_string(),
                };
                rotate(engine, who, t, args).await
            }
            Err(e) => Err(e),
        },
        "keys-report" => engine.keys_report().await.map_err(op_err),
        "bucket-purge" => async {
            let b = str_arg(args, "bucket")?;
            let out = engine.purge_bucket(b, &who.id).await.map_err(op_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, bucket = %b, "bucket purge requested");
            Ok(out)
        }
        .await,
        "user-restore" => async {
            let n = str_arg(args, "name")?;
            let out = engine.restore_account(n).await.map_err(op_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, user = %n, "account restored");
            Ok(out)
        }
        .await,
        "retention-presets" => Ok(Value::Array(
            strata_engine::retention::PRESETS
                .iter()
                .map(|(n, d, what)| json!({"preset": n, "days": d, "for": what}))
                .collect(),
        )),
        "retention-apply" => async {
            let b = str_arg(args, "bucket")?;
            let p = str_arg(args, "preset")?;
            let prefix = args.get("prefix").and_then(Value::as_str).unwrap_or("");
            let lock = match args.get("lock").and_then(Value::as_str) {
                None => None,
                Some(m) if m.eq_ignore_ascii_case("GOVERNANCE") => Some(LockMode::Governance),
                Some(m) if m.eq_ignore_ascii_case("COMPLIANCE") => Some(LockMode::Compliance),
                Some(m) => return Err(bad(format!("lock must be GOVERNANCE or COMPLIANCE, not {m:?}"))),
            };
            let out = engine
                .apply_retention(b, p, prefix, lock)
                .await
                .map_err(op_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, bucket = %b, preset = %p, "retention preset applied");
            Ok(out)
        }
        .await,
        "destruction-show" => async {
            let b = str_arg(args, "bucket")?;
            let k = str_arg(args, "key")?;
            engine.destruction_records(b, k).await.map_err(op_err)
        }
        .await,
        "destruction-export" => export(engine, who, args).await,
        "destruction-log" => async {
            let before = match args.get("before") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| bad("before must be a record index"))?),
            };
            let limit = match args.get("limit") {
                None | Some(Value::Null) => 50,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=strata_engine::destruction::MAX_LOG_PAGE as u64).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be 1..={}",
                            strata_engine::destruction::MAX_LOG_PAGE
                        ))
                    })? as usize,
            };
            engine.destruction_log_page(before, limit).await.map_err(op_err)
        }
        .await,
        "destruction-verify" => async {
            let out = engine.verify_destruction_log().await.map_err(op_err)?;
            tracing::info!(target: "strata::audit", admin = %who.user, ok = %out["ok"], "destruction log verified");
            Ok(out)
        }
        .await,
        _ => return None,
    };
    Some(r)
}

async fn rotate(engine: &Engine, who: &Caller, target: Target, args: &Value) -> S3Result<Value> {
    let st = engine
        .start_rotation(target.clone(), rate(args)?)
        .await
        .map_err(op_err)?;
    tracing::info!(target: "strata::audit", admin = %who.user, job = ?target, "key rotation requested");
    Ok(json!({"queued": st.jobs, "finished": st.finished}))
}

async fn export(engine: &Engine, who: &Caller, args: &Value) -> S3Result<Value> {
    let out = PathBuf::from(str_arg(args, "out")?);
    if !out.is_absolute() {
        return Err(bad("out must be an absolute path on the server's machine"));
    }
    if out.symlink_metadata().is_ok() {
        return Err(bad(format!("{} already exists", out.display())));
    }
    let since = args.get("since_ms").and_then(Value::as_i64);
    let bucket = args
        .get("bucket")
        .and_then(Value::as_str)
        .map(str::to_string);
    let log = engine.destruction_log().clone();
    let o = out.clone();
    let summary = tokio::task::spawn_blocking(move || log.export(since, bucket.as_deref(), &o))
        .await
        .map_err(|_| s3_error!(InternalError))?
        .map_err(|e| bad(format!("export failed: {e}")))?;
    tracing::info!(target: "strata::audit", admin = %who.user, out = %out.display(), "destruction log exported");
    serde_json::to_value(summary).map_err(|_| s3_error!(InternalError))
}
