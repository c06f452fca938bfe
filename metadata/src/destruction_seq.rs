//! The order of the cluster's replicated destruction log (docs/cluster.md, "The cluster's
//! destruction log"; `strata_destruction_log::replicated`): a record's index, given once per
//! operation id, and the checkpoints, registered only at the size sequenced at that moment, so
//! every replica applies records and checkpoints in one order. A record is kept here until every
//! replica holds it (then pruned), so one that no replica got yet (its appender died) is not
//! lost. Destruction records hold no key material. All in `Space::Sys` under `dlog/`:
//! `dlog/next` (u64 BE: records sequenced), `dlog/r/<index u64 BE>` (u16 BE op id length, op id,
//! record bytes), `dlog/op/<op id>` (u64 BE index), `dlog/c/<size u64 BE>` (i64 BE time, ms).

use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::{MetaError, MetaStore, Result};

const NEXT: &[u8] = b"dlog/next";
const REC: &[u8] = b"dlog/r/";
const OP: &[u8] = b"dlog/op/";
const CP: &[u8] = b"dlog/c/";
/// Records or checkpoints pruned per call, at most.
const PRUNE_MAX: usize = 1024;

fn at(prefix: &[u8], n: u64) -> Vec<u8> {
    [prefix, &n.to_be_bytes()].concat()
}

fn u64_of(b: &[u8], what: &str) -> Result<u64> {
    Ok(u64::from_be_bytes(b.try_into().map_err(|_| {
        MetaError::Corrupt(format!("{what} is not 8 bytes"))
    })?))
}

impl MetaStore {
    /// Records sequenced; `None` before [`MetaStore::dlog_init`].
    pub fn dlog_next(&self) -> Result<Option<u64>> {
        self.kv()
            .get(Space::Sys, NEXT)?
            .map(|b| u64_of(&b, "dlog/next"))
            .transpose()
    }

    /// Starts the sequence at `floor` unless it is started.
    pub fn dlog_init(&self, floor: u64) -> Result<()> {
        let mut b = Batch::default();
        b.absent(Space::Sys, NEXT);
        b.put(Space::Sys, NEXT.to_vec(), floor.to_be_bytes().to_vec());
        match self.kv().commit(b) {
            Ok(()) | Err(MetaError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn dlog_lookup(&self, op_id: &str) -> Result<Option<u64>> {
        self.kv()
            .get(Space::Sys, &[OP, op_id.as_bytes()].concat())?
            .map(|b| u64_of(&b, "dlog/op"))
            .transpose()
    }

    /// Gives `op_id` the next index and stores `record` under it (the existing index if the
    /// operation has one).
    pub fn dlog_assign(&self, op_id: &str, record: &[u8]) -> Result<u64> {
        let op_key = [OP, op_id.as_bytes()].concat();
        let op_len = u16::try_from(op_id.len())
            .map_err(|_| MetaError::Invalid("operation id too long".into()))?;
        self.retry(|| {
            if let Some(b) = self.kv().get(Space::Sys, &op_key)? {
                return u64_of(&b, "dlog/op");
            }
            let raw = self.kv().get(Space::Sys, NEXT)?.ok_or_else(|| {
                MetaError::Invalid("the destruction log sequence is not started".into())
            })?;
            let n = u64_of(&raw, "dlog/next")?;
            let mut b = Batch::default();
            b.equals(Space::Sys, NEXT, &raw);
            b.absent(Space::Sys, &op_key);
            b.put(Space::Sys, NEXT.to_vec(), (n + 1).to_be_bytes().to_vec());
            b.put(Space::Sys, op_key.clone(), n.to_be_bytes().to_vec());
            b.put(
                Space::Sys,
                at(REC, n),
                [&op_len.to_be_bytes()[..], op_id.as_bytes(), record].concat(),
            );
            self.kv().commit(b)?;
            Ok(n)
        })
    }

    /// Stored records from `from`, at most `limit`: (index, record bytes).
    pub fn dlog_records(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(at(REC, from), crate::kv::prefix_successor(REC)),
            Direction::Forward,
            limit.max(1),
        )?;
        rows.into_iter()
            .map(|(k, v)| {
                let i = u64_of(&k[REC.len()..], "dlog/r key")?;
                let n = v
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    .ok_or_else(|| MetaError::Corrupt("dlog/r record too short".into()))?;
                let rec = v
                    .get(2 + n..)
                    .ok_or_else(|| MetaError::Corrupt("dlog/r record too short".into()))?;
                Ok((i, rec.to_vec()))
            })
            .collect()
    }

    /// Registers the checkpoint of `tree_size` records at `ts` if that many are sequenced;
    /// returns the registered time (the first registration's), `None` if the sequence moved on.
    pub fn dlog_checkpoint(&self, tree_size: u64, ts: i64) -> Result<Option<i64>> {
        let key = at(CP, tree_size);
        self.retry(|| {
            if let Some(b) = self.kv().get(Space::Sys, &key)? {
                return Ok(Some(u64_of(&b, "dlog/c")? as i64));
            }
            let Some(raw) = self.kv().get(Space::Sys, NEXT)? else {
                return Ok(None);
            };
            if u64_of(&raw, "dlog/next")? != tree_size {
                return Ok(None);
            }
            let mut b = Batch::default();
            b.equals(Space::Sys, NEXT, &raw);
            b.absent(Space::Sys, &key);
            b.put(Space::Sys, key.clone(), ts.to_be_bytes().to_vec());
            self.kv().commit(b)?;
            Ok(Some(ts))
        })
    }

    /// Registered checkpoints (size, time) with sizes in `from..=to`.
    pub fn dlog_checkpoints(&self, from: u64, to: u64) -> Result<Vec<(u64, i64)>> {
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(at(CP, from), Some(at(CP, to.saturating_add(1)))),
            Direction::Forward,
            10_000,
        )?;
        rows.into_iter()
            .map(|(k, v)| {
                Ok((
                    u64_of(&k[CP.len()..], "dlog/c key")?,
                    u64_of(&v, "dlog/c")? as i64,
                ))
            })
            .collect()
    }

    /// Forgets records below `records` (and their operation ids) and checkpoints below
    /// `checkpoint_size`, at most [`PRUNE_MAX`] of each per call.
    pub fn dlog_prune(&self, records: u64, checkpoint_size: u64) -> Result<()> {
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(at(REC, 0), Some(at(REC, records))),
            Direction::Forward,
            PRUNE_MAX,
        )?;
        for part in rows.chunks(128) {
            let mut b = Batch::default();
            for (k, v) in part {
                if let Some(n) = v
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                    && let Some(op) = v.get(2..2 + n)
                {
                    b.delete(Space::Sys, [OP, op].concat());
                }
                b.delete(Space::Sys, k.clone());
            }
            self.kv().commit(b)?;
        }
        let cps = self.kv().scan(
            Space::Sys,
            &KeyRange::new(at(CP, 0), Some(at(CP, checkpoint_size))),
            Direction::Forward,
            PRUNE_MAX,
        )?;
        for part in cps.chunks(256) {
            let mut b = Batch::default();
            for (k, _) in part {
                b.delete(Space::Sys, k.clone());
            }
            self.kv().commit(b)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_index_per_operation_and_checkpoints_only_at_the_sequenced_size() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(dir.path()).unwrap();
        assert_eq!(m.dlog_next().unwrap(), None);
        assert!(m.dlog_assign("op-a", b"A").is_err(), "not started");
        m.dlog_init(5).unwrap();
        m.dlog_init(9).unwrap(); // started: no change
        assert_eq!(m.dlog_assign("op-a", b"A").unwrap(), 5);
        assert_eq!(
            m.dlog_assign("op-a", b"A").unwrap(),
            5,
            "once per operation"
        );
        assert_eq!(m.dlog_checkpoint(5, 100).unwrap(), None, "moved on");
        assert_eq!(m.dlog_checkpoint(6, 100).unwrap(), Some(100));
        assert_eq!(m.dlog_checkpoint(6, 200).unwrap(), Some(100), "first wins");
        assert_eq!(m.dlog_assign("op-b", b"B").unwrap(), 6);
        assert_eq!(m.dlog_lookup("op-b").unwrap(), Some(6));
        assert_eq!(
            m.dlog_records(0, 10).unwrap(),
            vec![(5, b"A".to_vec()), (6, b"B".to_vec())]
        );
        assert_eq!(m.dlog_checkpoints(0, 6).unwrap(), vec![(6, 100)]);
        m.dlog_prune(6, 6).unwrap();
        assert_eq!(m.dlog_records(0, 10).unwrap(), vec![(6, b"B".to_vec())]);
        assert_eq!(m.dlog_lookup("op-a").unwrap(), None);
        assert_eq!(m.dlog_checkpoints(0, 6).unwrap(), vec![(6, 100)]);
        assert_eq!(m.dlog_next().unwrap(), Some(7));
    }
}
