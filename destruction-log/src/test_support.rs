//! Fixtures shared by the unit tests of the remote and replicated logs.

use crate::service::{LogTransport, handle};
use crate::{Actor, DestructionLog, DestructionRecord, Reason};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A key node reached by calling its request handler directly (the node side is the real log);
/// while `down` is set it is unreachable.
pub(crate) struct Direct {
    pub log: Arc<DestructionLog>,
    pub scratch: PathBuf,
    pub down: Arc<AtomicBool>,
}

impl LogTransport for Direct {
    fn call(&self, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        Ok(handle(&self.log, &self.scratch, &body))
    }
}

pub(crate) fn record(op: &str, key: &str) -> DestructionRecord {
    DestructionRecord {
        op_id: op.into(),
        bucket: "b".into(),
        key: key.into(),
        version_id: "v".into(),
        size: 1,
        etag: "e".into(),
        checksum: None,
        storage_class: "STANDARD".into(),
        written_ms: 1,
        destroyed_ms: 2,
        reason: Reason::BucketPurge,
        actor: Actor {
            user: None,
            access_key: None,
            engine: Some("test".into()),
        },
        key_id: "dek".into(),
        shards_removed: 6,
        verification: "gone".into(),
    }
}
