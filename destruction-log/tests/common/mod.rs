#![allow(dead_code)]

use strata_destruction_log::{Actor, DestructionRecord, Reason};

pub fn record(op: &str, bucket: &str, key: &str, destroyed_ms: i64) -> DestructionRecord {
    DestructionRecord {
        op_id: op.into(),
        bucket: bucket.into(),
        key: key.into(),
        version_id: format!("ver-{op}"),
        size: 4096,
        etag: "\"9e107d9d372bb6826bd81d3542a419d6\"".into(),
        checksum: Some(("CRC32C".into(), "yZRlqg==".into())),
        storage_class: "STANDARD".into(),
        written_ms: 1_700_000_000_000,
        destroyed_ms,
        reason: Reason::Lifecycle {
            rule_id: "expire-90d".into(),
        },
        actor: Actor {
            user: None,
            access_key: None,
            engine: Some("lifecycle".into()),
        },
        key_id: format!("dek-{op}"),
        shards_removed: 6,
        verification: "read after destruction failed: data key not found".into(),
    }
}

pub fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(path: &std::path::Path, lines: &[String]) {
    let mut s = lines.join("\n");
    if !lines.is_empty() {
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}
