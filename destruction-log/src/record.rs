//! The destruction record and its leaf encoding: the exact bytes the Merkle tree hashes, which
//! are also the line an export writes for it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a log holds: the destruction log's [`DestructionRecord`], or another record kind (the
/// audit log's) that reuses the same files, tree, checkpoints, export and verifier.
pub trait LogRecord: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Names the log in every checkpoint: origin `strata.<LOG_NAME>/<key fingerprint>`, so a
    /// checkpoint or export of one kind never verifies as another.
    const LOG_NAME: &'static str;
    /// The `format` of an export's manifest (and the domain of its signature).
    const EXPORT_FORMAT: &'static str;
    /// Idempotency id: appending a record whose id is in the log writes nothing. `None`: every
    /// append is a new record (and costs no lookup).
    fn op_id(&self) -> Option<&str>;
    /// (bucket, key) the record is about, for `find` and the export's bucket filter.
    fn object(&self) -> (&str, &str);
    /// The user the record names, for the export's user filter.
    fn user(&self) -> Option<&str>;
    /// The record's time (ms since the Unix epoch), for the export's since/until filter.
    fn time_ms(&self) -> i64;
}

impl LogRecord for DestructionRecord {
    const LOG_NAME: &'static str = "destruction-log";
    const EXPORT_FORMAT: &'static str = crate::export::FORMAT;
    fn op_id(&self) -> Option<&str> {
        Some(&self.op_id)
    }
    fn object(&self) -> (&str, &str) {
        (&self.bucket, &self.key)
    }
    fn user(&self) -> Option<&str> {
        self.actor.user.as_deref()
    }
    fn time_ms(&self) -> i64 {
        self.destroyed_ms
    }
}

/// One destroyed object version (docs/destruction-log.md, "Record format").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DestructionRecord {
    /// Id of the destruction operation; appending the same id twice keeps the first record.
    pub op_id: String,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub size: u64,
    pub etag: String,
    /// (algorithm, value), e.g. ("CRC32C", "yZRlqg=="), when the version had a checksum.
    #[serde(with = "checksum_json")]
    pub checksum: Option<(String, String)>,
    pub storage_class: String,
    /// When the version was written and when it was destroyed (ms since the Unix epoch).
    pub written_ms: i64,
    pub destroyed_ms: i64,
    pub reason: Reason,
    pub actor: Actor,
    /// Id of the data key that was destroyed.
    pub key_id: String,
    pub shards_removed: u64,
    /// The check done after destruction (e.g. "read after destruction failed: key not found").
    pub verification: String,
}

/// Why a version was destroyed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reason {
    Lifecycle {
        rule_id: String,
    },
    UserRequest {
        request_id: Option<String>,
    },
    /// A retention preset's rule (`rule_id`) fired: the period the operator's rules name ended.
    RetentionEnd {
        #[serde(default)]
        rule_id: String,
    },
    BucketPurge,
    AccountClosure,
    Admin {
        request_id: Option<String>,
    },
}

/// Who destroyed it: a user (and the access key used), or the engine itself (a worker name).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub user: Option<String>,
    pub access_key: Option<String>,
    pub engine: Option<String>,
}

/// The leaf: the record with its position, so a moved line names itself.
#[derive(Serialize)]
struct LeafRef<'a, R> {
    v: u32,
    index: u64,
    record: &'a R,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "R: DeserializeOwned")]
pub(crate) struct Leaf<R> {
    pub v: u32,
    pub index: u64,
    pub record: R,
}

pub(crate) const LEAF_VERSION: u32 = 1;

/// Leaf bytes of record `index`: compact JSON (no raw newline can occur in it, so it is one
/// line of `records.jsonl` as is).
pub(crate) fn encode_leaf<R: Serialize>(index: u64, record: &R) -> Vec<u8> {
    serde_json::to_vec(&LeafRef {
        v: LEAF_VERSION,
        index,
        record,
    })
    .expect("a record always serializes")
}

pub(crate) fn decode_leaf<R: DeserializeOwned>(bytes: &[u8]) -> Result<Leaf<R>, String> {
    let leaf: Leaf<R> = serde_json::from_slice(bytes).map_err(|e| format!("not a record: {e}"))?;
    if leaf.v != LEAF_VERSION {
        return Err(format!("unknown record version {}", leaf.v));
    }
    Ok(leaf)
}

/// `checksum` as `{"algorithm": "...", "value": "..."}` or `null`, not a bare array.
mod checksum_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Checksum {
        algorithm: String,
        value: String,
    }

    pub fn serialize<S: Serializer>(v: &Option<(String, String)>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|(algorithm, value)| Checksum {
                algorithm: algorithm.clone(),
                value: value.clone(),
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(String, String)>, D::Error> {
        Ok(Option::<Checksum>::deserialize(d)?.map(|c| (c.algorithm, c.value)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(n: u64) -> DestructionRecord {
        DestructionRecord {
            op_id: format!("op-{n}"),
            bucket: "photos".into(),
            key: format!("2024/img-{n}.jpg"),
            version_id: format!("v{n:04}"),
            size: 1000 + n,
            etag: format!("\"{n:032x}\""),
            checksum: n
                .is_multiple_of(2)
                .then(|| ("CRC32C".to_string(), "yZRlqg==".to_string())),
            storage_class: "STANDARD".into(),
            written_ms: 1_700_000_000_000 + n as i64,
            destroyed_ms: 1_800_000_000_000 + n as i64,
            reason: match n % 6 {
                0 => Reason::Lifecycle {
                    rule_id: "expire-logs".into(),
                },
                1 => Reason::UserRequest {
                    request_id: Some(format!("req-{n}")),
                },
                2 => Reason::RetentionEnd {
                    rule_id: "strata-retention-login-records".into(),
                },
                3 => Reason::BucketPurge,
                4 => Reason::AccountClosure,
                _ => Reason::Admin { request_id: None },
            },
            actor: Actor {
                user: Some("alice".into()),
                access_key: Some("AKIAEXAMPLE".into()),
                engine: None,
            },
            key_id: format!("{n:032x}"),
            shards_removed: 6,
            verification: "read after destruction failed: data key not found".into(),
        }
    }

    #[test]
    fn leaf_round_trips_and_has_a_stable_shape() {
        let rec = sample(2);
        let bytes = encode_leaf(7, &rec);
        assert!(!bytes.contains(&b'\n'));
        let leaf = decode_leaf::<DestructionRecord>(&bytes).unwrap();
        assert_eq!((leaf.index, leaf.record), (7, rec));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"v":1,"index":7,"record":{"op_id":"op-2","#));
        assert!(text.contains(r#""checksum":{"algorithm":"CRC32C","value":"yZRlqg=="}"#));
        assert!(text.contains(
            r#""reason":{"kind":"retention_end","rule_id":"strata-retention-login-records"}"#
        ));
        // Control characters and newlines in keys are escaped: still one line.
        let mut odd = sample(1);
        odd.key = "a\nb\u{0}c\u{2028}".into();
        assert!(!encode_leaf(0, &odd).contains(&b'\n'));
        assert_eq!(
            decode_leaf::<DestructionRecord>(&encode_leaf(0, &odd))
                .unwrap()
                .record,
            odd
        );
    }
}
