//! Reed-Solomon stripes, shard layout and placement math. Pure: no I/O, no clocks, no randomness.
//!
//! A chunk of `len` bytes is laid out as one *stripe*: `k` data shards of `shard_len(len)` bytes
//! (the chunk, zero-padded at the end) followed by `m` parity shards of the same length. Any `k`
//! of the `k + m` shards give back the chunk.
//!
//! Backend: `reed-solomon-erasure` 6 (GF(2^8), SIMD-accelerated). See docs/benchmarks.md for
//! the measured comparison with `reed-solomon-simd`.

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Most shards a stripe may have: shard indices are stored in one byte on disk.
pub const MAX_TOTAL_SHARDS: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    #[error("invalid geometry: k={k}, m={m} (need k >= 1, m >= 1, k + m <= {MAX_TOTAL_SHARDS})")]
    InvalidGeometry { k: usize, m: usize },
    #[error("expected {expected} shards, got {got}")]
    ShardCount { expected: usize, got: usize },
    #[error("shard {index} has {got} bytes, expected {expected}")]
    ShardLength {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error("buffer has {got} bytes, expected {expected}")]
    BufferLength { expected: usize, got: usize },
    /// Fewer than `k` shards present: the chunk cannot be rebuilt.
    #[error("only {available} of {needed} shards available")]
    TooFewShards { available: usize, needed: usize },
}

/// An RS(k, m) codec. Cheap to clone? No: build once and share (`Arc`) — it holds the matrices.
pub struct Codec {
    k: usize,
    m: usize,
    rs: ReedSolomon,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec(RS({}, {}))", self.k, self.m)
    }
}

impl Codec {
    pub fn new(k: usize, m: usize) -> Result<Self, ErasureError> {
        if k == 0 || m == 0 || k + m > MAX_TOTAL_SHARDS {
            return Err(ErasureError::InvalidGeometry { k, m });
        }
        let rs = ReedSolomon::new(k, m).map_err(|_| ErasureError::InvalidGeometry { k, m })?;
        Ok(Self { k, m, rs })
    }

    pub fn data_shards(&self) -> usize {
        self.k
    }
    pub fn parity_shards(&self) -> usize {
        self.m
    }
    pub fn total_shards(&self) -> usize {
        self.k + self.m
    }

    /// Length of every shard of a `data_len`-byte chunk: ceil(data_len / k), but at least 1 so an
    /// empty chunk still has (all-zero) shards that carry its identity on disk.
    pub fn shard_len(&self, data_len: usize) -> usize {
        data_len.div_ceil(self.k).max(1)
    }

    /// Bytes of a whole stripe (data + parity) for a `data_len`-byte chunk.
    pub fn stripe_len(&self, data_len: usize) -> usize {
        self.shard_len(data_len) * (self.k + self.m)
    }

    /// Encodes in place: `stripe` is `stripe_len(data_len)` bytes whose first `data_len` bytes hold
    /// the chunk. Zeroes the padding, then fills the parity region. This is the zero-copy path the
    /// storage node uses (the ciphertext is produced directly inside the stripe buffer).
    pub fn encode_stripe(&self, stripe: &mut [u8], data_len: usize) -> Result<(), ErasureError> {
        let expected = self.stripe_len(data_len);
        if stripe.len() != expected {
            return Err(ErasureError::BufferLength {
                expected,
                got: stripe.len(),
            });
        }
        let shard_len = self.shard_len(data_len);
        stripe[data_len..self.k * shard_len].fill(0);
        let (data, parity) = stripe.split_at_mut(self.k * shard_len);
        let data: Vec<&[u8]> = data.chunks(shard_len).collect();
        let mut parity: Vec<&mut [u8]> = parity.chunks_mut(shard_len).collect();
        self.rs
            .encode_sep(&data, &mut parity)
            .expect("shard counts and lengths were checked above");
        Ok(())
    }

    /// Convenience form: returns the `k + m` shards of `data` as separate vectors.
    pub fn encode(&self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut stripe = vec![0u8; self.stripe_len(data.len())];
        stripe[..data.len()].copy_from_slice(data);
        self.encode_stripe(&mut stripe, data.len())
            .expect("stripe sized by stripe_len");
        stripe
            .chunks(self.shard_len(data.len()))
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Checks that `shards` has k + m entries and that every present shard has the right length.
    fn check_shards(
        &self,
        shards: &[Option<Vec<u8>>],
        shard_len: usize,
    ) -> Result<usize, ErasureError> {
        if shards.len() != self.k + self.m {
            return Err(ErasureError::ShardCount {
                expected: self.k + self.m,
                got: shards.len(),
            });
        }
        let mut present = 0;
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                if shard.len() != shard_len {
                    return Err(ErasureError::ShardLength {
                        index,
                        expected: shard_len,
                        got: shard.len(),
                    });
                }
                present += 1;
            }
        }
        if present < self.k {
            return Err(ErasureError::TooFewShards {
                available: present,
                needed: self.k,
            });
        }
        Ok(present)
    }

    /// Rebuilds every missing shard (data and parity) in place, e.g. to heal lost shard files.
    pub fn reconstruct(
        &self,
        shards: &mut [Option<Vec<u8>>],
        data_len: usize,
    ) -> Result<(), ErasureError> {
        let present = self.check_shards(shards, self.shard_len(data_len))?;
        if present == shards.len() {
            return Ok(());
        }
        self.rs
            .reconstruct(shards)
            .map_err(|_| ErasureError::TooFewShards {
                available: present,
                needed: self.k,
            })
    }

    /// Gives back the `data_len`-byte chunk from any k shards. Data shards that are present are
    /// used as they are; parity is only computed with when a data shard is missing.
    pub fn decode(
        &self,
        mut shards: Vec<Option<Vec<u8>>>,
        data_len: usize,
    ) -> Result<Vec<u8>, ErasureError> {
        let shard_len = self.shard_len(data_len);
        let present = self.check_shards(&shards, shard_len)?;
        if shards[..self.k].iter().any(Option::is_none) {
            self.rs
                .reconstruct_data(&mut shards)
                .map_err(|_| ErasureError::TooFewShards {
                    available: present,
                    needed: self.k,
                })?;
        }
        // Grow the first data shard's buffer into the output rather than allocating a new one:
        // for large shards the allocator extends it in place (mremap), saving a copy and the page
        // faults of a fresh allocation.
        let mut data_shards = shards
            .into_iter()
            .take(self.k)
            .map(|s| s.expect("data shards present after reconstruct"));
        let mut out = data_shards.next().expect("k >= 1");
        out.reserve_exact((self.k - 1) * shard_len);
        for shard in data_shards {
            out.extend_from_slice(&shard);
        }
        out.truncate(data_len);
        Ok(out)
    }
}

/// Which of `disk_count` disks holds shard `shard` of the chunk identified by `chunk_key`.
///
/// Shards go to consecutive disks starting at an offset taken from a hash of the chunk key, so
/// the first (data) shards, which every read touches, spread evenly over all disks. With
/// `disk_count >= k + m` every shard of a chunk lands on a different disk.
pub fn disk_for_shard(chunk_key: &[u8], shard: usize, disk_count: usize) -> usize {
    assert!(disk_count > 0, "placement over zero disks");
    let start = (fnv1a64(chunk_key) % disk_count as u64) as usize;
    (start + shard) % disk_count
}

/// FNV-1a: tiny, stable across versions and platforms (placement must never change for data
/// already on disk), and good enough to spread uniformly random blob ids.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
            .collect()
    }

    fn erase(shards: Vec<Vec<u8>>, erased: &[usize]) -> Vec<Option<Vec<u8>>> {
        shards
            .into_iter()
            .enumerate()
            .map(|(i, s)| if erased.contains(&i) { None } else { Some(s) })
            .collect()
    }

    #[test]
    fn invalid_geometry_is_refused() {
        assert!(Codec::new(0, 2).is_err());
        assert!(Codec::new(4, 0).is_err());
        assert!(Codec::new(200, 56).is_err());
        assert!(Codec::new(200, 55).is_ok());
    }

    #[test]
    fn shard_len_math() {
        let c = Codec::new(4, 2).unwrap();
        assert_eq!(c.shard_len(0), 1);
        assert_eq!(c.shard_len(1), 1);
        assert_eq!(c.shard_len(4), 1);
        assert_eq!(c.shard_len(5), 2);
        assert_eq!(c.shard_len(1 << 20), 1 << 18);
        assert_eq!(c.stripe_len(5), 12);
    }

    #[test]
    fn sizes_round_trip_with_every_single_and_double_erasure() {
        let c = Codec::new(4, 2).unwrap();
        for len in [0usize, 1, 3, 4, 5, 1023, 4096, 65_537, 3 * (1 << 20) + 7] {
            let data = pattern(len, len as u8);
            let shards = c.encode(&data);
            assert_eq!(shards.len(), 6);
            assert_eq!(c.decode(erase(shards.clone(), &[]), len).unwrap(), data);
            for a in 0..6 {
                for b in a..6 {
                    let got = c.decode(erase(shards.clone(), &[a, b]), len).unwrap();
                    assert_eq!(got, data, "len {len}, erased {a},{b}");
                }
            }
        }
    }

    #[test]
    fn more_than_m_erased_is_a_clear_error() {
        let c = Codec::new(4, 2).unwrap();
        let shards = c.encode(&pattern(1000, 7));
        let err = c.decode(erase(shards, &[0, 3, 5]), 1000).unwrap_err();
        assert_eq!(
            err,
            ErasureError::TooFewShards {
                available: 3,
                needed: 4
            }
        );
    }

    #[test]
    fn wrong_shard_length_or_count_is_an_error_not_a_panic() {
        let c = Codec::new(4, 2).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> =
            c.encode(&pattern(100, 1)).into_iter().map(Some).collect();
        shards[2].as_mut().unwrap().push(0);
        assert!(matches!(
            c.decode(shards.clone(), 100),
            Err(ErasureError::ShardLength { index: 2, .. })
        ));
        shards.pop();
        assert!(matches!(
            c.decode(shards, 100),
            Err(ErasureError::ShardCount { .. })
        ));
    }

    #[test]
    fn reconstruct_rebuilds_parity_and_data_exactly() {
        let c = Codec::new(4, 2).unwrap();
        let shards = c.encode(&pattern(10_001, 9));
        let mut damaged = erase(shards.clone(), &[1, 5]);
        c.reconstruct(&mut damaged, 10_001).unwrap();
        let rebuilt: Vec<Vec<u8>> = damaged.into_iter().map(Option::unwrap).collect();
        assert_eq!(rebuilt, shards);
    }

    #[test]
    fn placement_puts_every_shard_on_its_own_disk_and_spreads_load() {
        let mut first_shard_per_disk = [0usize; 6];
        for n in 0u32..6000 {
            let key = n.to_le_bytes();
            let disks: std::collections::BTreeSet<usize> =
                (0..6).map(|s| disk_for_shard(&key, s, 6)).collect();
            assert_eq!(disks.len(), 6);
            first_shard_per_disk[disk_for_shard(&key, 0, 6)] += 1;
        }
        for count in first_shard_per_disk {
            assert!(
                (700..1300).contains(&count),
                "uneven placement: {first_shard_per_disk:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn any_k_of_k_plus_m_shards_give_back_the_chunk(
            k in 1usize..8,
            m in 1usize..5,
            len in prop_oneof![Just(0usize), Just(1usize), 0usize..5000, (1usize << 20)..(3usize << 20)],
            seed in any::<u8>(),
            erase_seed in any::<u64>(),
        ) {
            let c = Codec::new(k, m).unwrap();
            let data = pattern(len, seed);
            let shards = c.encode(&data);
            // Erase up to m shards, chosen by a simple deterministic shuffle of the seed.
            let n = k + m;
            let erase_count = (erase_seed % (m as u64 + 1)) as usize;
            let mut order: Vec<usize> = (0..n).collect();
            let mut s = erase_seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let erased = &order[..erase_count];
            prop_assert_eq!(c.decode(erase(shards.clone(), erased), len).unwrap(), data);
            // One more erasure than m is always refused.
            let too_many = &order[..m + 1];
            let is_too_few = matches!(c.decode(erase(shards, too_many), len), Err(ErasureError::TooFewShards { .. }));
            prop_assert!(is_too_few);
        }
    }
}
