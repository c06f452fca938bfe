//! Key encoding (see `docs/metadata-format.md`). The byte order of encoded keys equals S3 order:
//! bucket, then object key in UTF-8 byte order, then versions newest first.
//!
//! Object key bytes are escaped so that a terminator can follow them without breaking order:
//! `0x00` becomes `0x00 0xFF`, and the key ends with `0x00 0x01`. For any keys a < b (bytewise),
//! enc(a) < enc(b), and every key starting with prefix p has an encoding starting with esc(p).

use crate::kv::prefix_successor;
use crate::{MetaError, Result};
use std::sync::Mutex;

/// Length of a binary version stamp: 8 bytes ms timestamp, 2 bytes sequence, 6 bytes random.
pub const STAMP_LEN: usize = 16;
pub type Stamp = [u8; STAMP_LEN];

const TERMINATOR: [u8; 2] = [0x00, 0x01];

fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// `bucket 0x00` — bucket names never contain 0x00 (S3 naming rules), so no escaping needed.
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 1);
    out.extend_from_slice(bucket.as_bytes());
    out.push(0);
    out
}

/// `bucket 0x00 esc(key_prefix)`: the encoded form of every key starting with `key_prefix`
/// starts with this.
pub fn key_prefix(bucket: &str, key_prefix: &str) -> Vec<u8> {
    let mut out = bucket_prefix(bucket);
    escape_into(&mut out, key_prefix.as_bytes());
    out
}

/// `bucket 0x00 esc(key) 0x00 0x01`: the head key, and the prefix of all versions of `key`.
pub fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = key_prefix(bucket, key);
    out.extend_from_slice(&TERMINATOR);
    out
}

/// The first encoded key after every entry of object `key` (all its versions/uploads).
pub fn after_object(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = key_prefix(bucket, key);
    out.extend_from_slice(&[0x00, 0x02]);
    out
}

/// The first encoded key after every object whose key starts with `prefix`.
pub fn after_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    // bucket prefix ends in 0x00, so the successor always exists.
    prefix_successor(&key_prefix(bucket, prefix)).expect("non-empty prefix with a 0x00 byte")
}

/// Version key: object key then the inverted stamp, so newer versions sort first.
pub fn version_key(bucket: &str, key: &str, stamp: &Stamp) -> Vec<u8> {
    let mut out = object_key(bucket, key);
    out.extend(stamp.iter().map(|b| !b));
    out
}

/// Upload key: object key then the upload id (time-ordered: uploads of one key oldest first).
pub fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut out = object_key(bucket, key);
    out.extend_from_slice(upload_id.as_bytes());
    out
}

/// Part key: `bucket 0x00 upload_id 0x00 part_number(u32 BE)`. Upload ids are unique and
/// URL-safe (no 0x00), so parts of one upload are one contiguous range in part order.
pub fn part_prefix(bucket: &str, upload_id: &str) -> Vec<u8> {
    let mut out = bucket_prefix(bucket);
    out.extend_from_slice(upload_id.as_bytes());
    out.push(0);
    out
}

pub fn part_key(bucket: &str, upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut out = part_prefix(bucket, upload_id);
    out.extend_from_slice(&part_number.to_be_bytes());
    out
}

/// Splits `bucket 0x00 esc(key) 0x00 0x01 rest` into (key, rest). `bucket_len` is the length
/// of the bucket name.
pub fn split_object_key(enc: &[u8], bucket_len: usize) -> Result<(String, &[u8])> {
    let corrupt = || MetaError::Corrupt("malformed object key encoding".into());
    let body = enc.get(bucket_len + 1..).ok_or_else(corrupt)?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == 0 {
            match body.get(i + 1) {
                Some(0xFF) => {
                    key.push(0);
                    i += 2;
                }
                Some(0x01) => {
                    let key = String::from_utf8(key).map_err(|_| corrupt())?;
                    return Ok((key, &body[i + 2..]));
                }
                _ => return Err(corrupt()),
            }
        } else {
            key.push(b);
            i += 1;
        }
    }
    Err(corrupt())
}

/// The stamp from the tail of a version key.
pub fn stamp_from_suffix(suffix: &[u8]) -> Result<Stamp> {
    let inv: Stamp = suffix
        .try_into()
        .map_err(|_| MetaError::Corrupt("version key suffix length".into()))?;
    Ok(inv.map(|b| !b))
}

// ----- version ids -----

/// Order-preserving URL-safe alphabet (ASCII ascending): string order = binary order. It has no
/// `-`, so an id never starts with one (command-line parsers would read it as an option: the AWS
/// CLI rejects `--upload-id ----x`).
const ALPHABET: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
/// 128 bits in 6-bit digits.
pub const ID_LEN: usize = 22;

/// Text form of a stamp: 22 characters from [`ALPHABET`], same order as the bytes. The first
/// digit carries the top 2 bits, the other 21 digits 6 bits each (2 + 126 = 128).
pub fn encode_id(stamp: &Stamp) -> String {
    let n = u128::from_be_bytes(*stamp);
    let mut out = String::with_capacity(ID_LEN);
    out.push(ALPHABET[(n >> 126) as usize] as char);
    for i in (0..ID_LEN - 1).rev() {
        out.push(ALPHABET[((n >> (6 * i)) & 0x3F) as usize] as char);
    }
    out
}

/// Inverse of [`encode_id`]; `None` for anything we did not generate.
pub fn decode_id(id: &str) -> Option<Stamp> {
    let b = id.as_bytes();
    if b.len() != ID_LEN {
        return None;
    }
    let digit = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u128);
    let top = digit(b[0])?;
    if top >= 4 {
        return None;
    }
    let mut n: u128 = top;
    for &c in &b[1..] {
        n = (n << 6) | digit(c)?;
    }
    Some(n.to_be_bytes())
}

/// Time-ordered unique stamps: strictly increasing within a process; 48 random bits separate
/// processes that generate in the same millisecond.
pub struct StampGen {
    last: Mutex<(u64, u16)>,
}

impl Default for StampGen {
    fn default() -> Self {
        StampGen {
            last: Mutex::new((0, 0)),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl StampGen {
    pub fn next(&self) -> Stamp {
        use rand::Rng;
        let now = now_ms().max(0) as u64;
        let (ms, seq) = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let next = if now > last.0 {
                (now, 0)
            } else if last.1 < u16::MAX {
                // Same (or earlier: clock stepped back) millisecond: keep the order strict.
                (last.0, last.1 + 1)
            } else {
                (last.0 + 1, 0)
            };
            *last = next;
            next
        };
        let mut stamp = [0u8; STAMP_LEN];
        stamp[..8].copy_from_slice(&ms.to_be_bytes());
        stamp[8..10].copy_from_slice(&seq.to_be_bytes());
        rand::rng().fill_bytes(&mut stamp[10..]);
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_roundtrip_and_order() {
        let g = StampGen::default();
        let mut prev: Option<(Stamp, String)> = None;
        for _ in 0..10_000 {
            let s = g.next();
            let id = encode_id(&s);
            assert_eq!(id.len(), ID_LEN);
            assert_eq!(decode_id(&id), Some(s));
            if let Some((ps, pid)) = &prev {
                assert!(s > *ps, "stamps strictly increase");
                assert!(id > *pid, "text order follows binary order");
            }
            prev = Some((s, id));
        }
        assert_eq!(decode_id("null"), None);
        assert!(!encode_id(&[0; 16]).starts_with('-'));
        assert!(
            ALPHABET.windows(2).all(|w| w[0] < w[1]),
            "alphabet must be ASCII ascending"
        );
        assert_eq!(encode_id(&[0xFF; 16]).len(), ID_LEN);
        assert_eq!(decode_id(&encode_id(&[0xFF; 16])), Some([0xFF; 16]));
        assert_eq!(decode_id(&encode_id(&[0; 16])), Some([0; 16]));
    }

    #[test]
    fn object_key_order_is_byte_order() {
        let keys = [
            "",
            "\0",
            "\0\0",
            "\u{1}",
            "a",
            "a\0",
            "a\0b",
            "a\u{1}",
            "a/",
            "a/b",
            "ab",
            "b",
            "é",
            "\u{10FFFF}",
        ];
        for a in keys {
            for b in keys {
                let (ea, eb) = (object_key("bk", a), object_key("bk", b));
                assert_eq!(
                    a.as_bytes().cmp(b.as_bytes()),
                    ea.cmp(&eb),
                    "{a:?} vs {b:?}"
                );
                assert!(after_object("bk", a) > ea);
                if b > a {
                    assert!(after_object("bk", a) <= eb, "{a:?} {b:?}");
                }
                if b.starts_with(a) {
                    assert!(eb.starts_with(&key_prefix("bk", a)));
                    assert!(eb < after_prefix("bk", a));
                } else if b > a {
                    assert!(eb >= after_prefix("bk", a), "{a:?} {b:?}");
                }
            }
            let vk = version_key("bk", a, &[7; 16]);
            let (k, rest) = split_object_key(&vk, 2).unwrap();
            assert_eq!(k, a);
            assert_eq!(stamp_from_suffix(rest).unwrap(), [7; 16]);
        }
    }
}
