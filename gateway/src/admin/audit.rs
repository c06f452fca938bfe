//! Operator verbs of the audit log: `audit-export` (records, checkpoints and proofs into a new
//! directory on the server's machine, filtered by time, user and bucket), `audit-search`
//! (recent records, e.g. failed authentications), `audit-public-key`.

use std::path::PathBuf;

use s3s::{S3Result, s3_error};

use super::bad;
use serde::Deserialize;
use serde_json::{Value, json};
use strata_engine::Engine;
use strata_engine::audit::ExportFilter;
use strata_engine::identity::Caller;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Args {
    out: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    user: Option<String>,
    bucket: Option<String>,
    #[serde(default)]
    failed_auth: bool,
    limit: Option<usize>,
}

/// Handles `verb` if it is one of this module's; `None` otherwise.
pub(crate) async fn handle(
    engine: &Engine,
    who: &Caller,
    verb: &str,
    raw: &Value,
) -> Option<S3Result<Value>> {
    if !matches!(verb, "audit-export" | "audit-search" | "audit-public-key") {
        return None;
    }
    Some(run(engine, who, verb, raw).await)
}

async fn run(engine: &Engine, who: &Caller, verb: &str, raw: &Value) -> S3Result<Value> {
    let args: Args =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("bad JSON: {e}")))?;
    let audit = engine
        .audit_log()
        .cloned()
        .ok_or_else(|| bad("this server keeps no audit log"))?;
    match verb {
        "audit-export" => {
            let out = PathBuf::from(args.out.ok_or_else(|| bad("out is required"))?);
            if !out.is_absolute() {
                return Err(bad("out must be an absolute path on the server's machine"));
            }
            if out.symlink_metadata().is_ok() {
                return Err(bad(format!("{} already exists", out.display())));
            }
            let filter = ExportFilter {
                since_ms: args.since_ms,
                until_ms: args.until_ms,
                bucket: args.bucket,
                user: args.user,
                include_first: false,
            };
            let o = out.clone();
            let summary = tokio::task::spawn_blocking(move || audit.export(&filter, &o))
                .await
                .map_err(|_| s3_error!(InternalError))?
                .map_err(|e| bad(format!("export failed: {e}")))?;
            tracing::info!(target: "strata::audit", admin = %who.user, out = %out.display(), "audit log exported");
            serde_json::to_value(summary).map_err(|_| s3_error!(InternalError))
        }
        "audit-search" => {
            let since = args.since_ms.unwrap_or(0);
            let limit = args
                .limit
                .unwrap_or(strata_engine::audit::SEARCH_LIMIT)
                .min(strata_engine::audit::SEARCH_LIMIT);
            let (failed, user, bucket) = (args.failed_auth, args.user, args.bucket);
            let found = tokio::task::spawn_blocking(move || {
                audit.search(since, limit, |r| {
                    (!failed || r.auth_failed)
                        && user.as_deref().is_none_or(|u| r.user.as_deref() == Some(u))
                        && bucket
                            .as_deref()
                            .is_none_or(|b| r.bucket.as_deref() == Some(b))
                })
            })
            .await
            .map_err(|_| s3_error!(InternalError))?
            .map_err(|e| bad(format!("search failed: {e}")))?;
            Ok(Value::Array(
                found
                    .into_iter()
                    .map(|(index, rec)| json!({"index": index, "record": rec}))
                    .collect(),
            ))
        }
        _ => Ok(json!({
            "public_key_pem": audit.public_key_pem(),
            "origin": audit.origin(),
        })),
    }
}
