//! A global memory budget for object bytes held in the engine's buffers (chunks being written,
//! chunks read ahead for a GET), so memory stays bounded however many requests run at once:
//! a request that cannot get budget waits (back-pressure on its client), it does not fail.
//!
//! Deadlock-freedom: a writer asks for budget only when it holds no partly filled buffer (the
//! budget it holds belongs to chunks already handed to the store, which finish on their own), and
//! a reader's budget belongs to chunks that are fetched or sent, so every holder makes progress.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget is counted in KiB so a u32 permit count covers any chunk.
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct BufferBudget {
    sem: Arc<Semaphore>,
    total_units: usize,
}

/// Budget held for one buffer; released when dropped.
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl BufferBudget {
    pub fn new(total_bytes: usize) -> Self {
        let total_units = (total_bytes / UNIT).max(1);
        BufferBudget {
            sem: Arc::new(Semaphore::new(total_units)),
            total_units,
        }
    }

    fn units(&self, bytes: usize) -> u32 {
        // A single buffer larger than the whole budget takes all of it (it still runs, alone).
        bytes.div_ceil(UNIT).clamp(1, self.total_units) as u32
    }

    /// Waits until `bytes` of budget are free and takes them.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .ok();
        Reservation { _permit: permit }
    }

    pub fn total_bytes(&self) -> usize {
        self.total_units * UNIT
    }

    /// Bytes of budget currently free.
    pub fn available_bytes(&self) -> usize {
        self.sem.available_permits() * UNIT
    }
}

/// Bytes that keep their budget reservation until the last clone of them is dropped (that is,
/// until the HTTP layer has written them out).
pub fn hold(bytes: Bytes, reservation: Reservation) -> Bytes {
    struct Held {
        bytes: Bytes,
        _reservation: Reservation,
    }
    impl AsRef<[u8]> for Held {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }
    Bytes::from_owner(Held {
        bytes,
        _reservation: reservation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_block_until_released() {
        let b = BufferBudget::new(8 * 1024);
        let r1 = b.reserve(6 * 1024).await;
        assert_eq!(b.available_bytes(), 2 * 1024);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve(4 * 1024).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "must wait for budget");
        drop(r1);
        let r2 = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released budget wakes the waiter")
            .unwrap();
        assert_eq!(b.available_bytes(), 4 * 1024);
        // Held bytes keep their reservation alive until dropped.
        let held = hold(Bytes::from_static(b"abc"), r2);
        let clone = held.clone();
        drop(held);
        assert_eq!(b.available_bytes(), 4 * 1024);
        assert_eq!(&clone[..], b"abc");
        drop(clone);
        assert_eq!(b.available_bytes(), 8 * 1024);
        // Oversized requests take the whole budget rather than waiting forever.
        let all = b.reserve(1 << 30).await;
        assert_eq!(b.available_bytes(), 0);
        drop(all);
    }
}
