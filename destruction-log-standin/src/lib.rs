//! STAND-IN for `strata-destruction-log` (see Cargo.toml): the agreed API over a hash-chained
//! JSON-lines file. Append is durable (fsync) before it returns and idempotent by `op_id`.
//! Replace with the real crate; nothing outside this crate depends on its file format.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructionRecord {
    pub op_id: String,
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub size: u64,
    pub etag: String,
    pub checksum: Option<(String, String)>,
    pub storage_class: String,
    pub written_ms: i64,
    pub destroyed_ms: i64,
    pub reason: Reason,
    pub actor: Actor,
    pub key_id: String,
    pub shards_removed: u64,
    pub verification: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    Lifecycle { rule_id: String },
    UserRequest { request_id: Option<String> },
    RetentionEnd,
    BucketPurge,
    AccountClosure,
    Admin { request_id: Option<String> },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: Option<String>,
    pub access_key: Option<String>,
    pub engine: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub time_ms: i64,
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub records: u64,
    pub checkpoint: SignedCheckpoint,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub records: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("destruction log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("destruction log corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("record {index} is bad: {why}")]
    BadRecord { index: u64, why: String },
}

#[derive(Serialize, Deserialize)]
struct Line {
    index: u64,
    prev: String,
    hash: String,
    record: DestructionRecord,
}

struct State {
    file: File,
    records: Vec<DestructionRecord>,
    by_op: HashMap<String, u64>,
    head: String,
}

pub struct DestructionLog {
    state: Mutex<State>,
}

fn chain(prev: &str, rec: &DestructionRecord) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(serde_json::to_vec(rec).expect("records serialise"));
    hex::encode(h.finalize())
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl DestructionLog {
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        fs::create_dir_all(dir)?;
        let path = dir.join("standin-records.jsonl");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        let mut st = State {
            file,
            records: Vec::new(),
            by_op: HashMap::new(),
            head: GENESIS.into(),
        };
        let mut good_len = 0u64;
        for line in BufReader::new(File::open(&path)?).split(b'\n') {
            let line = line?;
            // A torn last line (crash mid-append) is cut below.
            let Ok(l) = serde_json::from_slice::<Line>(&line) else {
                break;
            };
            if l.prev != st.head || chain(&l.prev, &l.record) != l.hash {
                return Err(LogError::Corrupt(format!(
                    "record {} breaks the chain",
                    l.index
                )));
            }
            st.head = l.hash;
            st.by_op.insert(l.record.op_id.clone(), l.index);
            st.records.push(l.record);
            good_len += line.len() as u64 + 1;
        }
        if st.file.metadata()?.len() != good_len {
            st.file.set_len(good_len)?;
            st.file.sync_all()?;
        }
        Ok(DestructionLog {
            state: Mutex::new(st),
        })
    }

    pub fn append(&self, rec: DestructionRecord) -> Result<u64, LogError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = st.by_op.get(&rec.op_id) {
            return Ok(*i);
        }
        let index = st.records.len() as u64;
        let hash = chain(&st.head, &rec);
        let line = Line {
            index,
            prev: st.head.clone(),
            hash: hash.clone(),
            record: rec.clone(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("serialise");
        bytes.push(b'\n');
        st.file.write_all(&bytes)?;
        st.file.sync_data()?;
        st.head = hash;
        st.by_op.insert(rec.op_id.clone(), index);
        st.records.push(rec);
        Ok(index)
    }

    pub fn contains(&self, op_id: &str) -> Result<Option<u64>, LogError> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(st.by_op.get(op_id).copied())
    }

    pub fn checkpoint(&self, now_ms: i64) -> Result<SignedCheckpoint, LogError> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(SignedCheckpoint {
            tree_size: st.records.len() as u64,
            root_hash: st.head.clone(),
            time_ms: now_ms,
            signature: "stand-in: unsigned".into(),
        })
    }

    pub fn find(&self, bucket: &str, key: &str) -> Result<Vec<(u64, DestructionRecord)>, LogError> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(st
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.bucket == bucket && r.key == key)
            .map(|(i, r)| (i as u64, r.clone()))
            .collect())
    }

    pub fn export(
        &self,
        since_ms: Option<i64>,
        bucket: Option<&str>,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cp = self.checkpoint(now)?;
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        fs::create_dir_all(out)?;
        let mut f = File::create(out.join("records.jsonl"))?;
        let mut n = 0;
        for (i, r) in st.records.iter().enumerate() {
            if since_ms.is_some_and(|s| r.destroyed_ms < s) || bucket.is_some_and(|b| r.bucket != b)
            {
                continue;
            }
            let line = serde_json::json!({"index": i, "hash": chain("", r), "record": r});
            writeln!(f, "{line}")?;
            n += 1;
        }
        f.sync_all()?;
        fs::write(
            out.join("checkpoint.json"),
            serde_json::to_vec(&cp).expect("json"),
        )?;
        Ok(ExportSummary {
            records: n,
            checkpoint: cp,
            dir: out.to_path_buf(),
        })
    }

    pub fn public_key_pem(&self) -> String {
        "-----BEGIN PUBLIC KEY-----\nstand-in destruction log: no signing key\n-----END PUBLIC KEY-----\n"
            .into()
    }
}

/// Checks each exported record against its hash (the stand-in has no tree or signatures).
pub fn verify_export(dir: &Path, _public_key_pem: &str) -> Result<VerifyReport, VerifyError> {
    let mut n = 0;
    for line in BufReader::new(File::open(dir.join("records.jsonl"))?).lines() {
        let v: serde_json::Value =
            serde_json::from_str(&line?).map_err(|e| VerifyError::BadRecord {
                index: n,
                why: e.to_string(),
            })?;
        let rec: DestructionRecord =
            serde_json::from_value(v["record"].clone()).map_err(|e| VerifyError::BadRecord {
                index: n,
                why: e.to_string(),
            })?;
        if v["hash"].as_str() != Some(chain("", &rec).as_str()) {
            return Err(VerifyError::BadRecord {
                index: v["index"].as_u64().unwrap_or(n),
                why: "altered".into(),
            });
        }
        n += 1;
    }
    Ok(VerifyReport { records: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: &str) -> DestructionRecord {
        DestructionRecord {
            op_id: op.into(),
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v".into(),
            size: 1,
            etag: "e".into(),
            checksum: None,
            storage_class: "STANDARD".into(),
            written_ms: 1,
            destroyed_ms: 2,
            reason: Reason::BucketPurge,
            actor: Actor::default(),
            key_id: "dek:00".into(),
            shards_removed: 6,
            verification: "ok".into(),
        }
    }

    #[test]
    fn append_is_idempotent_and_survives_reopen_with_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = DestructionLog::open(dir.path()).unwrap();
        assert_eq!(log.append(rec("a")).unwrap(), 0);
        assert_eq!(log.append(rec("b")).unwrap(), 1);
        assert_eq!(log.append(rec("a")).unwrap(), 0);
        drop(log);
        let p = dir.path().join("standin-records.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"index\":2,\"pr").unwrap();
        let log = DestructionLog::open(dir.path()).unwrap();
        assert_eq!(log.contains("b").unwrap(), Some(1));
        assert_eq!(log.append(rec("c")).unwrap(), 2);
        assert_eq!(log.find("b", "k").unwrap().len(), 3);
        let out = dir.path().join("export");
        assert_eq!(log.export(None, None, &out).unwrap().records, 3);
        assert_eq!(verify_export(&out, "").unwrap().records, 3);
    }
}
