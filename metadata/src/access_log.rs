//! The staging queue of server access log entries (S3 bucket logging): appended in batches by the
//! gateway's logger, taken oldest first by the `access-log` delivery worker, removed once their
//! log object is written. Sys space: `accesslog/` + seq (u64 BE: Unix ms << 20 | counter), so
//! key order is arrival order.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::kv::{self, Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{AccessLogEntry, MetaStore, Result};

const PREFIX: &[u8] = b"accesslog/";
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn entry_key(time: i64) -> Vec<u8> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
    let seq = ((time.max(0) as u64) << 20) | n;
    [PREFIX, &seq.to_be_bytes()].concat()
}

impl MetaStore {
    /// Stages entries durably (one synced batch).
    pub fn append_access_log(&self, entries: &[AccessLogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // Fresh positions on every attempt: a lost race (another process took one) retries.
        self.retry(|| {
            let mut b = Batch::default();
            for e in entries {
                let k = entry_key(e.time);
                b.absent(Space::Sys, &k);
                b.put(Space::Sys, k, encode(e));
            }
            self.kv().commit(b)
        })
    }

    /// The oldest staged entries (at most `limit`), with their queue keys.
    pub fn pending_access_log(&self, limit: usize) -> Result<Vec<(Vec<u8>, AccessLogEntry)>> {
        let range = KeyRange::new(PREFIX.to_vec(), kv::prefix_successor(PREFIX));
        self.kv()
            .scan(Space::Sys, &range, Direction::Forward, limit)?
            .into_iter()
            .map(|(k, v)| decode(&v).map(|e| (k, e)))
            .collect()
    }

    /// Removes delivered entries.
    pub fn ack_access_log(&self, keys: &[Vec<u8>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        for k in keys {
            b.delete(Space::Sys, k.clone());
        }
        self.kv().commit(b)
    }
}
