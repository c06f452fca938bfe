//! What the replicated key service needs from the metadata tier (docs/cluster.md, "The key
//! service"): a cluster-wide slot counter, so every replica stores a key in the same slot, and
//! per-replica journals of the writes and destructions a replica missed (it was down or did not
//! answer). A returning replica applies its journal before it serves again. A journal entry
//! names slots and key ids only, never key material (etcd keeps old revisions: a wrapped key
//! written here would outlive its destruction). All records live in `Space::Sys` under `keys/`.

use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::{MetaError, MetaStore, Result};

const NEXT_SLOT: &[u8] = b"keys/next-slot";
const JOURNAL_PREFIX: &[u8] = b"keys/journal/";

fn journal_prefix(replica: &str) -> Vec<u8> {
    [JOURNAL_PREFIX, replica.as_bytes(), b"/"].concat()
}

impl MetaStore {
    /// Reserves `count` consecutive slot numbers for keys, cluster-wide, at or above `floor`
    /// (the highest slot count a replica reported, for a cluster that starts counting here);
    /// returns the first. Never hands a number out twice.
    pub fn allocate_key_slots(&self, count: u64, floor: u64) -> Result<u64> {
        self.retry(|| {
            let raw = self.kv().get(Space::Sys, NEXT_SLOT)?;
            let next = match raw.as_deref() {
                Some(b) => u64::from_be_bytes(
                    b.try_into()
                        .map_err(|_| MetaError::Corrupt("keys/next-slot is not 8 bytes".into()))?,
                ),
                None => 0,
            }
            .max(floor);
            let mut b = Batch::default();
            b.unchanged(Space::Sys, NEXT_SLOT, raw.as_deref());
            b.put(
                Space::Sys,
                NEXT_SLOT.to_vec(),
                next.saturating_add(count).to_be_bytes().to_vec(),
            );
            self.kv().commit(b)?;
            Ok(next)
        })
    }

    /// Appends `entry` (opaque to the metadata tier) to `replica`'s journal, durably. Keys are
    /// time-ordered: a replica applies its entries oldest first.
    pub fn append_key_journal(&self, replica: &str, entry: &[u8]) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut suffix = [0u8; 16];
        suffix[..8].copy_from_slice(&now.to_be_bytes());
        suffix[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let mut b = Batch::default();
        b.put(
            Space::Sys,
            [journal_prefix(replica).as_slice(), &suffix].concat(),
            entry.to_vec(),
        );
        self.kv().commit(b)
    }

    /// Up to `limit` of `replica`'s journal entries, oldest first, with their keys.
    pub fn key_journal(&self, replica: &str, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.kv().scan(
            Space::Sys,
            &KeyRange::prefix(&journal_prefix(replica)),
            Direction::Forward,
            limit.max(1),
        )
    }

    /// Removes applied journal entries (by the keys [`MetaStore::key_journal`] returned).
    pub fn remove_key_journal(&self, keys: &[Vec<u8>]) -> Result<()> {
        for part in keys.chunks(256) {
            let mut b = Batch::default();
            for k in part {
                b.delete(Space::Sys, k.clone());
            }
            self.kv().commit(b)?;
        }
        Ok(())
    }
}
