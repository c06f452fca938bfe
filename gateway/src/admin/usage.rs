//! Operator verb `usage`: per-bucket usage (stored bytes by storage class, objects, versions,
//! requests by class, bytes in and out), filtered by owner and bucket, with samples since a
//! time (docs/usage.md).

use s3s::S3Result;
use serde::Deserialize;
use serde_json::{Value, json};
use strata_engine::Engine;

use super::bad;
use crate::errors;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Args {
    /// A user name: the buckets it owns.
    user: Option<String>,
    bucket: Option<String>,
    since_ms: Option<i64>,
}

/// Handles `verb` if it is this module's; `None` otherwise.
pub(crate) async fn handle(engine: &Engine, verb: &str, raw: &Value) -> Option<S3Result<Value>> {
    (verb == "usage").then_some(())?;
    Some(run(engine, raw).await)
}

async fn run(engine: &Engine, raw: &Value) -> S3Result<Value> {
    let args: Args =
        serde_json::from_value(raw.clone()).map_err(|e| bad(format!("bad JSON: {e}")))?;
    let users = engine.list_users().await.map_err(errors::engine)?;
    let owner = match &args.user {
        Some(name) => Some(
            users
                .iter()
                .find(|u| &u.name == name)
                .map(|u| u.id.clone())
                .ok_or_else(|| bad(format!("no such user {name:?}")))?,
        ),
        None => None,
    };
    let report = engine
        .usage_report(owner, args.bucket, args.since_ms)
        .await
        .map_err(errors::engine)?;
    let mut out = serde_json::to_value(&report).map_err(|e| bad(e.to_string()))?;
    // Owners by name as well as id, for people reading the report.
    if let Some(buckets) = out["buckets"].as_array_mut() {
        for b in buckets {
            let id = b["owner"].as_str().unwrap_or_default().to_string();
            let name = users.iter().find(|u| u.id == id).map(|u| u.name.clone());
            b["owner_name"] = json!(name);
        }
    }
    Ok(out)
}
