//! In-process per-chunk locks: put, delete and heal of one chunk never interleave (a heal must not
//! rebuild shards a delete is removing, nor a put publish next to a heal). Reads take no lock.
//!
//! Striped: a fixed table of async mutexes indexed by a hash of the chunk id, so memory is
//! bounded whatever the number of chunks. Two chunks sharing a stripe only wait for each other.
//! An operation takes exactly one stripe and never calls another locking entry point while
//! holding it, so there is no lock ordering to get wrong.

use tokio::sync::{Mutex, MutexGuard};

use crate::ChunkId;

const STRIPES: usize = 1024;

pub(crate) struct ChunkLocks {
    stripes: Box<[Mutex<()>]>,
}

impl ChunkLocks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) async fn lock(&self, id: ChunkId) -> MutexGuard<'_, ()> {
        // Blob ids are random, but tests and tools use patterned ones: mix in everything.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in crate::chunk_key(id) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.stripes[(h % STRIPES as u64) as usize].lock().await
    }
}
