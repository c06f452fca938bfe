//! `strata admin` verbs of the key lifecycle, destruction and retention: their arguments, how
//! they become admin API calls, their human-readable output (`--json` prints the API's JSON),
//! and the offline restore of a backup (metadata + key store).

use std::path::Path;

use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum KeysVerb {
    /// The key inventory: master keys, bucket keys (KEKs), data keys per KEK, rotations. Never
    /// key material.
    Report,
}

#[derive(Subcommand)]
pub enum BucketVerb {
    /// Destroys every version of BUCKET (one destruction record each; Object Lock respected),
    /// then the bucket and its key. Read-only from now on.
    Purge { bucket: String },
}

#[derive(Subcommand)]
pub enum RetentionVerb {
    /// Applies retention preset PRESET: a lifecycle expiration after its period (and with
    /// --lock a default Object Lock retention of the same length).
    Apply {
        bucket: String,
        preset: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// GOVERNANCE or COMPLIANCE: also the bucket's default retention (Object Lock buckets).
        #[arg(long)]
        lock: Option<String>,
    },
    /// The presets and their periods.
    Presets,
}

/// `--since`: Unix milliseconds or an RFC 3339 time.
pub fn parse_time_ms(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("--since {s:?}: not Unix ms or RFC 3339: {e}"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn date(v: &Value) -> String {
    match v.as_i64() {
        Some(ms) => time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| ms.to_string()),
        None => "-".into(),
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(head.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// The key report as tables.
pub fn report_table(r: &Value) -> String {
    let mut rows = Vec::new();
    let empty = Vec::new();
    for k in r["master_keys"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .chain(r["bucket_keys"].as_array().unwrap_or(&empty))
    {
        let protects = match k["kind"].as_str() {
            Some("master") => format!(
                "{} bucket key(s), access-key secrets",
                cell(&k["protects"]["bucket_keys"])
            ),
            _ => format!(
                "bucket {}: {} data key(s)",
                cell(&k["bucket"]),
                cell(&k["protects"]["data_keys"])
            ),
        };
        rows.push(vec![
            cell(&k["kind"]),
            cell(&k["id"]),
            cell(&k["state"]),
            date(&k["created_ms"]),
            date(k.get("rotated_ms").unwrap_or(&Value::Null)),
            date(&k["destroyed_ms"]),
            protects,
        ]);
    }
    let mut out = table(
        &[
            "KIND",
            "ID",
            "STATE",
            "CREATED",
            "ROTATED",
            "DESTROYED",
            "PROTECTS",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\n\ndata keys: {} live; {} destruction record(s)\nkey store: {} slots, {} free, {} bytes",
        cell(&r["data_keys"]["live"]),
        cell(&r["data_keys"]["destruction_records"]),
        cell(&r["key_store"]["slots"]),
        cell(&r["key_store"]["free_slots"]),
        cell(&r["key_store"]["file_bytes"]),
    ));
    let queued = r["rotations"]["queued"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for j in queued {
        out.push_str(&format!("\nrotation in progress: {}", rotation_line(&j)));
    }
    out
}

pub fn rotation_line(j: &Value) -> String {
    let target = match j["target"]["kind"].as_str() {
        Some("bucket") => format!("bucket {}", cell(&j["target"]["bucket"])),
        _ => "master key".into(),
    };
    format!(
        "{target}: phase {}, {} key(s) re-wrapped, {} secret(s) re-sealed",
        cell(&j["phase"]),
        cell(&j["rewrapped"]),
        cell(&j["resealed"])
    )
}

/// Any other answer, readable: one `name: value` line per field.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", cell(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join("\n---\n"),
        other => cell(other),
    }
}

/// The destruction records of `show` as a table.
pub fn records_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let r = &e["record"];
                    vec![
                        cell(&e["index"]),
                        cell(&r["version_id"]),
                        date(&r["destroyed_ms"]),
                        cell(&r["reason"]["kind"]),
                        cell(&r["key_id"]),
                        cell(&r["shards_removed"]),
                        cell(&r["size"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no destruction record for this object".into();
    }
    table(
        &[
            "INDEX",
            "VERSION",
            "DESTROYED",
            "REASON",
            "KEY",
            "SHARDS",
            "SIZE",
        ],
        &rows,
    )
}

/// Offline restore of a backup into a stopped server's data directory. A backup is `meta/`
/// (metadata checkpoint) + `keys/` (key store copy); one made before the key store existed is
/// only a checkpoint (refused: its keys are not in it).
///
/// The key store: if the data directory still has its own (the usual disaster: the metadata
/// was lost), it is kept, because it is newer: a key destroyed after the backup stays
/// destroyed. Keys it holds that the restored metadata does not reference (written after the
/// backup) are destroyed. Without a key store, the backup's copy is installed.
pub fn restore(backup: &Path, data_dir: &Path) -> anyhow::Result<Value> {
    let meta_src = backup.join("meta");
    anyhow::ensure!(
        meta_src.join("CURRENT").is_file(),
        "{} is not a Strata backup (no meta/CURRENT; backups made before the key store are not \
         restorable by this version)",
        backup.display()
    );
    std::fs::create_dir_all(data_dir)?;
    let db = data_dir.join("meta");
    strata_metadata::MetaStore::restore(&meta_src, &db)
        .map_err(|e| anyhow::anyhow!("restore failed: {e}"))?;
    let keys_dir = data_dir.join("keys");
    let kept = keys_dir.join("slots").exists();
    if !kept {
        strata_keystore::install_copy(&backup.join("keys"), &keys_dir)
            .map_err(|e| anyhow::anyhow!("installing the backup's key store: {e}"))?;
    }
    // Destroy what nothing references any more.
    let meta = strata_metadata::MetaStore::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let referenced = meta
        .referenced_keys()
        .map_err(|e| anyhow::anyhow!("reading key references: {e}"))?;
    let store = strata_keystore::KeyStore::open(&keys_dir)?;
    let mut destroyed = 0u64;
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let (live, next) = store.scan(from, 65_536)?;
        for (slot, e) in live {
            if !referenced.contains(&(slot, hex::encode(e.id))) {
                store.destroy(slot, &e.id)?;
                destroyed += 1;
            }
        }
        cursor = next;
    }
    Ok(json!({
        "restored": backup,
        "into": db,
        "key_store": if kept { "kept the data directory's (newer) key store" } else { "installed the backup's copy" },
        "unreferenced_keys_destroyed": destroyed,
    }))
}
