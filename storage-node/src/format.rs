//! On-disk formats: shard files (version 2) and deletion tombstones. Every byte read back from
//! disk is untrusted: [`ShardHeader::parse`], [`verify_shard`] and [`Tombstone::parse`] check
//! everything and never panic (fuzzed, see fuzz/).
//!
//! A shard file is a fixed 128-byte header followed by the shard body. Integers are little-endian.
//! The byte layout is documented in docs/on-disk-format.md; keep the two in step.

use crate::ChunkId;

pub const MAGIC: [u8; 8] = *b"STRSHARD";
/// Version 2 added the per-write nonce and the layout id. Version 1 files are refused (the
/// project is pre-release; metadata format 1 stores are refused too).
pub const FORMAT_VERSION: u16 = 2;
pub const HEADER_LEN: usize = 128;
/// Chunk cipher: AES-256-GCM, 16-byte tag appended to the ciphertext before erasure coding.
pub const CIPHER_AES256_GCM: u8 = 1;
/// Body checksum: CRC32C (Castagnoli).
pub const CHECKSUM_CRC32C: u8 = 1;
pub const GCM_TAG_LEN: u64 = 16;
/// Largest chunk ciphertext a header may describe (4 GiB). Bounds what a reader allocates.
pub const MAX_CIPHERTEXT_LEN: u64 = 1 << 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub chunk: ChunkId,
    pub shard_index: u8,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// The AES-GCM nonce, random per put. All shards written by one put share it, so it also
    /// names the put: shards of another write of the same id are never mixed into a decode.
    pub nonce: [u8; 12],
    /// The [`Layout`](crate::Layout) the chunk was written with.
    pub layout_id: u32,
    pub plaintext_len: u64,
    pub ciphertext_len: u64,
    pub shard_len: u64,
    pub body_crc32c: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("shard file too short: {0} bytes")]
    TooShort(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("invalid header field: {0}")]
    InvalidField(&'static str),
    #[error("body length {got} does not match header ({expected})")]
    BodyLength { expected: u64, got: u64 },
    #[error("body checksum mismatch")]
    BodyChecksum,
}

/// CRC32C of `bytes` (hardware-accelerated where available).
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

/// Shard length for a ciphertext of `ciphertext_len` bytes over `k` data shards; must agree with
/// `strata_erasure::Codec::shard_len`.
fn expected_shard_len(ciphertext_len: u64, k: u8) -> u64 {
    ciphertext_len.div_ceil(u64::from(k)).max(1)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl ShardHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[12..28].copy_from_slice(&self.chunk.blob);
        b[28..32].copy_from_slice(&self.chunk.index.to_le_bytes());
        b[32] = self.shard_index;
        b[33] = self.data_shards;
        b[34] = self.parity_shards;
        b[35] = CIPHER_AES256_GCM;
        b[36] = CHECKSUM_CRC32C;
        // 37..40 reserved, zero.
        b[40..52].copy_from_slice(&self.nonce);
        b[52..56].copy_from_slice(&self.layout_id.to_le_bytes());
        b[56..64].copy_from_slice(&self.plaintext_len.to_le_bytes());
        b[64..72].copy_from_slice(&self.ciphertext_len.to_le_bytes());
        b[72..80].copy_from_slice(&self.shard_len.to_le_bytes());
        b[80..84].copy_from_slice(&self.body_crc32c.to_le_bytes());
        // 84..124 reserved, zero.
        let header_crc = crc32c(&b[..124]);
        b[124..128].copy_from_slice(&header_crc.to_le_bytes());
        b
    }

    /// Parses and validates the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::TooShort(bytes.len()));
        }
        let b = &bytes[..HEADER_LEN];
        if b[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        // The checksum comes before any field is trusted.
        if crc32c(&b[..124]) != u32_at(b, 124) {
            return Err(FormatError::HeaderChecksum);
        }
        if usize::from(u16_at(b, 10)) != HEADER_LEN {
            return Err(FormatError::InvalidField("header_len"));
        }
        if b[35] != CIPHER_AES256_GCM {
            return Err(FormatError::InvalidField("cipher"));
        }
        if b[36] != CHECKSUM_CRC32C {
            return Err(FormatError::InvalidField("checksum_algorithm"));
        }
        if b[37..40].iter().chain(&b[84..124]).any(|&x| x != 0) {
            return Err(FormatError::InvalidField("reserved"));
        }
        let header = ShardHeader {
            chunk: ChunkId {
                blob: b[12..28].try_into().expect("16 bytes"),
                index: u32_at(b, 28),
            },
            shard_index: b[32],
            data_shards: b[33],
            parity_shards: b[34],
            nonce: b[40..52].try_into().expect("12 bytes"),
            layout_id: u32_at(b, 52),
            plaintext_len: u64_at(b, 56),
            ciphertext_len: u64_at(b, 64),
            shard_len: u64_at(b, 72),
            body_crc32c: u32_at(b, 80),
        };
        let total = usize::from(header.data_shards) + usize::from(header.parity_shards);
        if header.data_shards == 0
            || header.parity_shards == 0
            || total > strata_erasure::MAX_TOTAL_SHARDS
        {
            return Err(FormatError::InvalidField("k/m"));
        }
        if usize::from(header.shard_index) >= total {
            return Err(FormatError::InvalidField("shard_index"));
        }
        if header.ciphertext_len > MAX_CIPHERTEXT_LEN
            || header.plaintext_len.checked_add(GCM_TAG_LEN) != Some(header.ciphertext_len)
        {
            return Err(FormatError::InvalidField("lengths"));
        }
        if header.shard_len != expected_shard_len(header.ciphertext_len, header.data_shards) {
            return Err(FormatError::InvalidField("shard_len"));
        }
        Ok(header)
    }
}

/// Parses a whole shard file (header + body) and checks the body against its length and CRC32C.
pub fn verify_shard(file: &[u8]) -> Result<(ShardHeader, &[u8]), FormatError> {
    let header = ShardHeader::parse(file)?;
    let body = &file[HEADER_LEN..];
    verify_body(&header, body)?;
    Ok((header, body))
}

/// Checks a shard body read separately from its (already parsed) header.
pub fn verify_body(header: &ShardHeader, body: &[u8]) -> Result<(), FormatError> {
    if body.len() as u64 != header.shard_len {
        return Err(FormatError::BodyLength {
            expected: header.shard_len,
            got: body.len() as u64,
        });
    }
    if crc32c(body) != header.body_crc32c {
        return Err(FormatError::BodyChecksum);
    }
    Ok(())
}

pub const TOMBSTONE_MAGIC: [u8; 8] = *b"STRTOMBS";
pub const TOMBSTONE_VERSION: u16 = 1;
pub const TOMBSTONE_LEN: usize = 48;

/// Content of a deletion tombstone (`<disk>/tombstones/<blob hex>.<chunk index>`), written
/// durably before the first shard of a chunk is removed and removed after the last. What marks
/// the deletion is the file's *existence* (a torn or corrupt tombstone still blocks heal); the
/// content tells an operator what is being deleted, under which layout, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub chunk: ChunkId,
    pub layout_id: u32,
    /// Unix milliseconds when the deletion started.
    pub created_ms: i64,
}

impl Tombstone {
    pub fn encode(&self) -> [u8; TOMBSTONE_LEN] {
        let mut b = [0u8; TOMBSTONE_LEN];
        b[0..8].copy_from_slice(&TOMBSTONE_MAGIC);
        b[8..10].copy_from_slice(&TOMBSTONE_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(TOMBSTONE_LEN as u16).to_le_bytes());
        b[12..28].copy_from_slice(&self.chunk.blob);
        b[28..32].copy_from_slice(&self.chunk.index.to_le_bytes());
        b[32..36].copy_from_slice(&self.layout_id.to_le_bytes());
        b[36..44].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a whole tombstone file (exactly [`TOMBSTONE_LEN`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < TOMBSTONE_LEN {
            return Err(FormatError::TooShort(bytes.len()));
        }
        if bytes.len() > TOMBSTONE_LEN {
            return Err(FormatError::InvalidField("tombstone length"));
        }
        if bytes[0..8] != TOMBSTONE_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u16_at(bytes, 8);
        if version != TOMBSTONE_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if crc32c(&bytes[..44]) != u32_at(bytes, 44) {
            return Err(FormatError::HeaderChecksum);
        }
        if usize::from(u16_at(bytes, 10)) != TOMBSTONE_LEN {
            return Err(FormatError::InvalidField("tombstone length"));
        }
        Ok(Self {
            chunk: ChunkId {
                blob: bytes[12..28].try_into().expect("16 bytes"),
                index: u32_at(bytes, 28),
            },
            layout_id: u32_at(bytes, 32),
            created_ms: u64_at(bytes, 36) as i64,
        })
    }
}

/// Fuzz body (`fuzz/fuzz_targets/shard_header.rs`): arbitrary bytes as a shard file and as a
/// tombstone. Must not panic; whatever parses must re-encode to exactly the bytes it came from.
pub fn fuzz_shard_header(data: &[u8]) {
    if let Ok(header) = ShardHeader::parse(data) {
        assert_eq!(
            &header.encode()[..],
            &data[..HEADER_LEN],
            "parse/encode round trip"
        );
    }
    let _ = verify_shard(data);
    if let Ok(tombstone) = Tombstone::parse(data) {
        assert_eq!(&tombstone.encode()[..], data, "tombstone round trip");
    }
}

/// Recomputes the header and body checksums of a would-be shard file in place, so fuzzing gets
/// past the checksums and exercises the field checks and the decoder behind them.
pub fn fix_checksums(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let body_crc = crc32c(&file[HEADER_LEN..]);
    file[80..84].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c(&file[..124]);
    file[124..128].copy_from_slice(&header_crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> ShardHeader {
        ShardHeader {
            chunk: ChunkId {
                blob: [7; 16],
                index: 3,
            },
            shard_index: 5,
            data_shards: 4,
            parity_shards: 2,
            nonce: [0x5c; 12],
            layout_id: 0xfeed,
            plaintext_len: 4 * body.len() as u64 - GCM_TAG_LEN,
            ciphertext_len: 4 * body.len() as u64,
            shard_len: body.len() as u64,
            body_crc32c: crc32c(body),
        }
    }

    #[test]
    fn header_round_trips_and_every_single_byte_flip_is_caught() {
        let body = vec![0xabu8; 1000];
        let header = sample(&body);
        let mut file = header.encode().to_vec();
        file.extend_from_slice(&body);
        assert_eq!(verify_shard(&file).unwrap().0, header);
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x01;
            assert!(
                verify_shard(&bad).is_err(),
                "flip at byte {at} not detected"
            );
        }
        assert!(matches!(
            verify_shard(&file[..file.len() - 1]),
            Err(FormatError::BodyLength { .. })
        ));
        assert!(matches!(
            verify_shard(&file[..100]),
            Err(FormatError::TooShort(100))
        ));
    }

    #[test]
    fn fuzz_body_survives_random_and_mutated_headers() {
        let body = vec![0x11u8; 64];
        let mut valid = sample(&body).encode().to_vec();
        valid.extend_from_slice(&body);
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5000 {
            let mut input = if round % 2 == 0 {
                let len = (next() % 300) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            for _ in 0..(next() % 4) {
                if !input.is_empty() {
                    let at = (next() as usize) % input.len();
                    input[at] = next() as u8;
                }
            }
            if round % 3 == 0 {
                fix_checksums(&mut input);
            }
            fuzz_shard_header(&input);
        }
    }

    #[test]
    fn format_1_headers_are_refused() {
        let body = vec![0x22u8; 16];
        let mut file = sample(&body).encode().to_vec();
        file[8..10].copy_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&body);
        fix_checksums(&mut file);
        assert_eq!(
            ShardHeader::parse(&file),
            Err(FormatError::UnsupportedVersion(1))
        );
    }

    #[test]
    fn tombstone_round_trips_and_every_single_byte_flip_is_caught() {
        let tombstone = Tombstone {
            chunk: ChunkId {
                blob: [0xa5; 16],
                index: 77,
            },
            layout_id: 3,
            created_ms: 1_790_000_000_000,
        };
        let bytes = tombstone.encode();
        assert_eq!(Tombstone::parse(&bytes).unwrap(), tombstone);
        for at in 0..bytes.len() {
            let mut bad = bytes;
            bad[at] ^= 0x01;
            assert!(Tombstone::parse(&bad).is_err(), "flip at byte {at}");
        }
        assert!(Tombstone::parse(&bytes[..47]).is_err());
        assert!(Tombstone::parse(&[&bytes[..], &[0]].concat()).is_err());
        fuzz_shard_header(&bytes);
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // Standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
