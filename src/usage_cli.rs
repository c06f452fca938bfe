//! `strata admin usage [--user U] [--bucket B] [--since T]` (docs/usage.md): the server's usage
//! report as a table (or JSON with `--json`).

use serde_json::{Value, json};

/// The admin verb's body.
pub fn request(
    user: Option<String>,
    bucket: Option<String>,
    since: Option<String>,
) -> anyhow::Result<Value> {
    let since_ms = since
        .as_deref()
        .map(crate::audit_cli::parse_when)
        .transpose()?;
    Ok(json!({"user": user, "bucket": bucket, "since_ms": since_ms}))
}

fn classes(bytes: &Value) -> String {
    match bytes.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(c, b)| format!("{c}={}", b.as_i64().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// One line per bucket; with samples, the requests and bytes out between the first sample and
/// now (the counters are cumulative).
pub fn render(v: &Value) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:>9} {:>9} {:>14} {:>10} {:>10} {:>8} {:>14} {:>14}  {}\n",
        "BUCKET",
        "OWNER",
        "OBJECTS",
        "VERSIONS",
        "BYTES",
        "WRITE/LIST",
        "READ",
        "DELETE",
        "BYTES_IN",
        "BYTES_OUT",
        "BY_CLASS"
    );
    for b in v["buckets"].as_array().into_iter().flatten() {
        let r = &b["requests"];
        let first = b["samples"].as_array().and_then(|s| s.first());
        let since = |f: &str| {
            r[f].as_i64().unwrap_or(0) - first.map_or(0, |s| s["requests"][f].as_i64().unwrap_or(0))
        };
        let stored: i64 = b["bytes"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_i64).sum());
        out.push_str(&format!(
            "{:<24} {:<16} {:>9} {:>9} {:>14} {:>10} {:>10} {:>8} {:>14} {:>14}  {}\n",
            b["bucket"].as_str().unwrap_or("?"),
            b["owner_name"].as_str().unwrap_or("-"),
            b["objects"],
            b["versions"],
            stored,
            since("write_list"),
            since("read"),
            since("delete"),
            since("bytes_in"),
            since("bytes_out"),
            classes(&b["bytes"]),
        ));
    }
    out
}
