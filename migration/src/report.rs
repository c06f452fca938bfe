//! The per-object report: one entry for every failed or skipped object, written with the step's
//! checkpoint (so a redone step never duplicates an entry), read back in pages of bounded size.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_engine::{Engine, EngineError};

use crate::job::REPORT_PREFIX;

/// Entries returned per `migration-report` call at most.
pub const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub key: String,
    /// The source version (`--versions` jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `failed` or `skipped`.
    pub outcome: String,
    /// Skip reason (`identical`, `exists`, `locked`, `gone_at_source`) or `error`.
    pub reason: String,
    #[serde(default)]
    pub error: Option<String>,
    pub size: u64,
    pub source_etag: String,
    pub at_ms: i64,
}

pub fn entry_key(job: &str, seq: u64) -> String {
    format!("{REPORT_PREFIX}{job}/{seq:016}")
}

/// Entries with a sequence number above `after` (from the first when `None`), at most `limit`.
pub async fn page(
    engine: &Engine,
    job: &str,
    after: Option<u64>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<u64>), EngineError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let prefix = format!("{REPORT_PREFIX}{job}/");
    let after_key = after.map(|s| entry_key(job, s));
    let rows = engine
        .meta_call(move |m| m.worker_states_page(&prefix, after_key.as_deref(), limit))
        .await?;
    let entries: Vec<Entry> = rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect();
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok((entries, next))
}

pub fn entry_json(e: &Entry) -> Value {
    json!(e)
}
