//! Object payloads generated cheaply and deterministically from (seed, key), so a run never
//! holds object bodies in memory and any byte range of any object can be produced again.

use bytes::Bytes;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// Payload bytes are produced in independent blocks of this size, so a multipart part (always a
/// multiple of it) can start generating at its own offset without replaying earlier bytes.
pub const BLOCK: u64 = 64 * 1024;

/// The content of one object: `size` bytes derived from `seed` and `key`.
#[derive(Clone, Debug)]
pub struct Payload {
    seed: u64,
    key: String,
    size: u64,
}

impl Payload {
    pub fn new(seed: u64, key: &str, size: u64) -> Self {
        Payload {
            seed,
            key: key.to_owned(),
            size,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn block_rng(&self, block: u64) -> Xoshiro256PlusPlus {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(&(self.key.len() as u64).to_le_bytes());
        hasher.update(self.key.as_bytes());
        hasher.update(&block.to_le_bytes());
        Xoshiro256PlusPlus::from_seed(*hasher.finalize().as_bytes())
    }

    /// Pieces of the byte range `offset..offset + len`, each at most one block long.
    /// `offset` must be a multiple of [`BLOCK`].
    pub fn pieces(&self, offset: u64, len: u64) -> Pieces {
        assert!(
            offset.is_multiple_of(BLOCK),
            "payload ranges start on a block boundary"
        );
        assert!(offset + len <= self.size, "range beyond the object");
        Pieces {
            payload: self.clone(),
            next_offset: offset,
            end: offset + len,
        }
    }

    /// BLAKE3 of the whole object: what a GET must return (the client hashes while sending).
    #[cfg(test)]
    pub fn blake3(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for piece in self.pieces(0, self.size) {
            hasher.update(&piece);
        }
        *hasher.finalize().as_bytes()
    }

    /// Lower-case hex SHA-256 of a byte range, for `x-amz-content-sha256` in signed-payload mode.
    pub fn sha256_hex(&self, offset: u64, len: u64) -> String {
        let mut hasher = Sha256::new();
        for piece in self.pieces(offset, len) {
            hasher.update(&piece);
        }
        hex::encode(hasher.finalize())
    }
}

/// Iterator over the generated pieces of a payload range.
pub struct Pieces {
    payload: Payload,
    next_offset: u64,
    end: u64,
}

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.next_offset >= self.end {
            return None;
        }
        let len = BLOCK.min(self.end - self.next_offset) as usize;
        let mut buf = vec![0u8; len];
        self.payload
            .block_rng(self.next_offset / BLOCK)
            .fill_bytes(&mut buf);
        self.next_offset += len as u64;
        Some(Bytes::from(buf))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next_offset).div_ceil(BLOCK) as usize;
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(payload: &Payload, offset: u64, len: u64) -> Vec<u8> {
        payload
            .pieces(offset, len)
            .flat_map(|piece| piece.to_vec())
            .collect()
    }

    #[test]
    fn same_key_and_seed_give_same_bytes_and_others_differ() {
        let size = 3 * BLOCK + 17;
        let one = collect(&Payload::new(1, "a/key", size), 0, size);
        assert_eq!(one.len() as u64, size);
        assert_eq!(one, collect(&Payload::new(1, "a/key", size), 0, size));
        assert_ne!(one, collect(&Payload::new(2, "a/key", size), 0, size));
        assert_ne!(one, collect(&Payload::new(1, "a/kez", size), 0, size));
        // Not a constant fill: the bytes look random, so compressing servers get no shortcut.
        let zeros = one.iter().filter(|byte| **byte == 0).count();
        assert!(zeros < one.len() / 100, "{zeros} zero bytes");
    }

    #[test]
    fn a_range_equals_the_same_slice_of_the_whole_object() {
        let size = 5 * BLOCK + 100;
        let payload = Payload::new(9, "multipart/object", size);
        let whole = collect(&payload, 0, size);
        let part = collect(&payload, 2 * BLOCK, 2 * BLOCK + 50);
        assert_eq!(part, whole[(2 * BLOCK) as usize..(4 * BLOCK + 50) as usize]);
        assert_eq!(payload.blake3(), *blake3::hash(&whole).as_bytes());
        assert_eq!(
            payload.sha256_hex(0, size),
            hex::encode(Sha256::digest(&whole))
        );
    }

    #[test]
    fn empty_objects_have_no_pieces() {
        let payload = Payload::new(0, "empty", 0);
        assert_eq!(payload.pieces(0, 0).count(), 0);
        assert_eq!(payload.blake3(), *blake3::hash(b"").as_bytes());
    }
}
