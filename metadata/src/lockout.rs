//! The cluster-wide authentication lockout's records (docs/security-limits.md, "Failed
//! signatures"; gateway/src/http/lockout.rs): each gateway publishes its own failure count per
//! principal (a source address, an access key, or the pair) and reads every other gateway's, so
//! the limits hold for the cluster, not per gateway.
//!
//! A record is `Space::Sys` `lockout/<tag>/<gateway>` where `tag` is a keyed 64-bit hash of the
//! principal (16 hex digits; the key is derived from the master key, so every gateway names a
//! principal alike and the metadata tier never holds an access key or an address), and the value
//! `window_start`, `count`, `locked_until` (Unix seconds, u32 big-endian each). One writer per
//! record (its gateway), so no compare-and-set is needed; records expire (the gateway deletes its
//! own, any gateway deletes a dead gateway's long-expired ones, conditioned on their value).

use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::{MetaError, MetaStore, Result};

const PREFIX: &[u8] = b"lockout/";
/// Writes per commit (well below etcd's transaction limit).
const BATCH: usize = 256;

/// One gateway's count for one principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutCount {
    pub tag: u64,
    pub window_start: u32,
    pub count: u32,
    pub locked_until: u32,
}

/// A record as read back: whose it is and its raw value (for a conditioned delete).
#[derive(Clone, Debug)]
pub struct LockoutRecord {
    pub gateway: String,
    pub count: LockoutCount,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn key(tag: u64, gateway: &str) -> Vec<u8> {
    [
        PREFIX,
        format!("{tag:016x}/").as_bytes(),
        gateway.as_bytes(),
    ]
    .concat()
}

fn encode(c: &LockoutCount) -> Vec<u8> {
    [c.window_start, c.count, c.locked_until]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn decode(k: &[u8], v: &[u8]) -> Option<(String, LockoutCount)> {
    let rest = k.strip_prefix(PREFIX)?;
    let (tag, gateway) = (rest.get(..16)?, rest.get(17..)?);
    let tag = u64::from_str_radix(std::str::from_utf8(tag).ok()?, 16).ok()?;
    let u = |i: usize| {
        Some(u32::from_be_bytes(
            v.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    Some((
        String::from_utf8(gateway.to_vec()).ok()?,
        LockoutCount {
            tag,
            window_start: u(0)?,
            count: u(1)?,
            locked_until: u(2)?,
        },
    ))
}

impl MetaStore {
    /// Writes `gateway`'s counts in `put` and deletes its records of the tags in `delete`.
    pub fn publish_lockout_counts(
        &self,
        gateway: &str,
        put: &[LockoutCount],
        delete: &[u64],
    ) -> Result<()> {
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = put
            .iter()
            .map(|c| (key(c.tag, gateway), Some(encode(c))))
            .chain(delete.iter().map(|t| (key(*t, gateway), None)))
            .collect();
        for part in ops.chunks(BATCH) {
            let mut b = Batch::default();
            for (k, v) in part {
                match v {
                    Some(v) => b.put(Space::Sys, k.clone(), v.clone()),
                    None => b.delete(Space::Sys, k.clone()),
                }
            }
            self.kv().commit(b)?;
        }
        Ok(())
    }

    /// Every gateway's lockout records, up to `limit` (in tag order; paged).
    pub fn lockout_records(&self, limit: usize) -> Result<Vec<LockoutRecord>> {
        let mut out = Vec::new();
        let end = crate::kv::prefix_successor(PREFIX);
        let mut start = PREFIX.to_vec();
        while out.len() < limit {
            let page = self.kv().scan(
                Space::Sys,
                &KeyRange::new(start.clone(), end.clone()),
                Direction::Forward,
                (limit - out.len()).min(1024),
            )?;
            let Some((last, _)) = page.last() else { break };
            start = [last.as_slice(), &[0]].concat();
            let full = page.len() >= 1024;
            for (k, v) in page {
                if let Some((gateway, count)) = decode(&k, &v) {
                    out.push(LockoutRecord {
                        gateway,
                        count,
                        key: k,
                        value: v,
                    });
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes records read by [`MetaStore::lockout_records`] that are still unchanged (another
    /// gateway's expired ones); false if one changed meanwhile (nothing deleted then).
    pub fn remove_lockout_records(&self, recs: &[LockoutRecord]) -> Result<bool> {
        for part in recs.chunks(BATCH / 2) {
            let mut b = Batch::default();
            for r in part {
                b.equals(Space::Sys, &r.key, &r.value);
                b.delete(Space::Sys, r.key.clone());
            }
            match self.kv().commit(b) {
                Ok(()) => {}
                Err(MetaError::Conflict) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_name_no_principal() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(dir.path()).unwrap();
        let c = |tag, count| LockoutCount {
            tag,
            window_start: 100,
            count,
            locked_until: 0,
        };
        m.publish_lockout_counts("gw-a", &[c(7, 3), c(u64::MAX, 1)], &[])
            .unwrap();
        m.publish_lockout_counts("gw-b", &[c(7, 5)], &[]).unwrap();
        let recs = m.lockout_records(100).unwrap();
        let got: Vec<_> = recs.iter().map(|r| (r.gateway.as_str(), r.count)).collect();
        assert_eq!(
            got,
            vec![
                ("gw-a", c(7, 3)),
                ("gw-b", c(7, 5)),
                ("gw-a", c(u64::MAX, 1))
            ]
        );
        m.publish_lockout_counts("gw-a", &[], &[7]).unwrap();
        assert_eq!(m.lockout_records(100).unwrap().len(), 2);
        // a conditioned delete of a record rewritten meanwhile deletes nothing
        let recs = m.lockout_records(100).unwrap();
        m.publish_lockout_counts("gw-b", &[c(7, 6)], &[]).unwrap();
        assert!(!m.remove_lockout_records(&recs).unwrap());
        assert_eq!(m.lockout_records(100).unwrap().len(), 2);
        let recs = m.lockout_records(100).unwrap();
        assert!(m.remove_lockout_records(&recs).unwrap());
        assert!(m.lockout_records(100).unwrap().is_empty());
        assert_eq!(m.lockout_records(1).unwrap().len(), 0);
    }
}
