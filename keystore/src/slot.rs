//! The 128-byte slot: one wrapped key (or the marker left by its destruction), checksummed.
//!
//! ```text
//! off len
//!   0   1  state: 0 empty, 1 live, 2 destroyed
//!   1   1  kind: 1 KEK, 2 DEK
//!   2   1  length of the wrapped key (<= 64)
//!   3   5  zero
//!   8  16  key id
//!  24  16  wrapper id (the master key's id for a KEK, the KEK's id for a DEK)
//!  40   8  created, Unix ms (i64 LE)
//!  48   8  changed, Unix ms: last re-wrap, or the destruction
//!  56  64  wrapped key, zero-padded (zero in a destroyed slot)
//! 120   4  zero
//! 124   4  CRC32C of bytes 0..124 (LE)
//! ```
//!
//! A slot never straddles a 512-byte sector (the slots start at 4096 and 512 / 128 = 4), so a
//! device that writes sectors atomically never tears one; a torn or rotten slot fails its CRC
//! and reads as `Corrupt` (never as a key).

/// Bytes per slot.
pub const SLOT_SIZE: usize = 128;
/// Longest wrapped key a slot holds.
pub const MAX_WRAPPED: usize = 64;

const STATE_EMPTY: u8 = 0;
const STATE_LIVE: u8 = 1;
const STATE_DESTROYED: u8 = 2;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum KeyKind {
    /// A bucket's key-encryption key, wrapped by a master key.
    Kek,
    /// A version's (or multipart upload's) data key, wrapped by its bucket's KEK.
    Dek,
}

impl KeyKind {
    fn byte(self) -> u8 {
        match self {
            KeyKind::Kek => 1,
            KeyKind::Dek => 2,
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyKind::Kek),
            2 => Some(KeyKind::Dek),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Kek => "kek",
            KeyKind::Dek => "dek",
        }
    }
}

/// A live key as stored: its identity, what wraps it, and the wrapped bytes (never the key).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: KeyKind,
    pub id: [u8; 16],
    pub wrapper: [u8; 16],
    pub created_ms: i64,
    pub changed_ms: i64,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Wrapped bytes are not secret without the wrapping key, but logs do not need them.
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("id", &hex::encode(self.id))
            .field("wrapper", &hex::encode(self.wrapper))
            .field("created_ms", &self.created_ms)
            .field("changed_ms", &self.changed_ms)
            .finish_non_exhaustive()
    }
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Empty,
    Live(Entry),
    Destroyed {
        kind: KeyKind,
        id: [u8; 16],
        destroyed_ms: i64,
    },
    /// Fails its checksum (torn write, bitrot): holds no usable key.
    Corrupt,
}

impl Slot {
    pub fn is_live(&self) -> bool {
        matches!(self, Slot::Live(_))
    }
}

fn crc(b: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(b)
}

fn seal(mut b: [u8; SLOT_SIZE]) -> [u8; SLOT_SIZE] {
    let c = crc(&b[..124]);
    b[124..].copy_from_slice(&c.to_le_bytes());
    b
}

pub(crate) fn encode_live(e: &Entry) -> [u8; SLOT_SIZE] {
    assert!(
        e.wrapped.len() <= MAX_WRAPPED,
        "wrapped key longer than a slot"
    );
    let mut b = [0u8; SLOT_SIZE];
    b[0] = STATE_LIVE;
    b[1] = e.kind.byte();
    b[2] = e.wrapped.len() as u8;
    b[8..24].copy_from_slice(&e.id);
    b[24..40].copy_from_slice(&e.wrapper);
    b[40..48].copy_from_slice(&e.created_ms.to_le_bytes());
    b[48..56].copy_from_slice(&e.changed_ms.to_le_bytes());
    b[56..56 + e.wrapped.len()].copy_from_slice(&e.wrapped);
    seal(b)
}

/// The marker that replaces a destroyed key: its id and kind stay (for verification and
/// inventories), every byte of the wrapped key is zero.
pub(crate) fn encode_destroyed(kind: KeyKind, id: &[u8; 16], now_ms: i64) -> [u8; SLOT_SIZE] {
    let mut b = [0u8; SLOT_SIZE];
    b[0] = STATE_DESTROYED;
    b[1] = kind.byte();
    b[8..24].copy_from_slice(id);
    b[48..56].copy_from_slice(&now_ms.to_le_bytes());
    seal(b)
}

pub(crate) fn decode(b: &[u8]) -> Slot {
    if b.len() != SLOT_SIZE {
        return Slot::Corrupt;
    }
    if b.iter().all(|&x| x == 0) {
        return Slot::Empty;
    }
    let stored = u32::from_le_bytes(b[124..128].try_into().expect("4 bytes"));
    if crc(&b[..124]) != stored {
        return Slot::Corrupt;
    }
    let id: [u8; 16] = b[8..24].try_into().expect("16 bytes");
    let Some(kind) = KeyKind::from_byte(b[1]) else {
        return Slot::Corrupt;
    };
    let changed = i64::from_le_bytes(b[48..56].try_into().expect("8 bytes"));
    match b[0] {
        STATE_LIVE => {
            let len = b[2] as usize;
            if len > MAX_WRAPPED {
                return Slot::Corrupt;
            }
            Slot::Live(Entry {
                kind,
                id,
                wrapper: b[24..40].try_into().expect("16 bytes"),
                created_ms: i64::from_le_bytes(b[40..48].try_into().expect("8 bytes")),
                changed_ms: changed,
                wrapped: b[56..56 + len].to_vec(),
            })
        }
        STATE_DESTROYED => Slot::Destroyed {
            kind,
            id,
            destroyed_ms: changed,
        },
        STATE_EMPTY => Slot::Corrupt,
        _ => Slot::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            kind: KeyKind::Dek,
            id: [7; 16],
            wrapper: [9; 16],
            created_ms: 1_700_000_000_000,
            changed_ms: 1_700_000_000_001,
            wrapped: (0..61).collect(),
        }
    }

    #[test]
    fn live_and_destroyed_round_trip() {
        let e = entry();
        assert_eq!(decode(&encode_live(&e)), Slot::Live(e.clone()));
        let d = encode_destroyed(KeyKind::Dek, &e.id, 5);
        assert_eq!(
            decode(&d),
            Slot::Destroyed {
                kind: KeyKind::Dek,
                id: e.id,
                destroyed_ms: 5
            }
        );
        // Nothing of the wrapped key survives in the marker.
        assert!(d[56..120].iter().all(|&x| x == 0));
        assert_eq!(decode(&[0u8; SLOT_SIZE]), Slot::Empty);
    }

    #[test]
    fn any_flipped_bit_is_corrupt_never_another_key() {
        let good = encode_live(&entry());
        for byte in 0..SLOT_SIZE {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                let s = decode(&b);
                assert!(
                    matches!(s, Slot::Corrupt),
                    "byte {byte} bit {bit} decoded as {s:?}"
                );
            }
        }
    }
}
