//! Length-prefixed, checksummed frames of the append-only files, and the torn-tail rule.
//!
//! Frame: `magic (4) | payload length (u32 LE) | CRC-32 of (length bytes || payload) (u32 LE) |
//! payload`. The magic starts with 0xFF, a byte that never occurs in UTF-8 (so never inside a
//! JSON payload), which makes frame starts recognisable when telling a torn tail from damage.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

pub const RECORD_MAGIC: [u8; 4] = [0xFF, b'D', b'L', 1];
pub const CHECKPOINT_MAGIC: [u8; 4] = [0xFF, b'C', b'P', 1];
pub const HEADER_LEN: u64 = 12;
/// Largest payload: a record is a few hundred bytes (an S3 key is at most 1 KiB; escaping can
/// multiply it by 6).
pub const MAX_PAYLOAD: u32 = 64 * 1024;

pub fn encode(magic: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    let mut out = Vec::with_capacity(HEADER_LEN as usize + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload length if `buf` starts with a whole, valid frame.
fn valid_at(magic: [u8; 4], buf: &[u8]) -> Option<u32> {
    if buf.len() < HEADER_LEN as usize || buf[..4] != magic {
        return None;
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let crc = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    if len > MAX_PAYLOAD || buf.len() < HEADER_LEN as usize + len as usize {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[4..8]);
    h.update(&buf[12..12 + len as usize]);
    (h.finalize() == crc).then_some(len)
}

/// Reads the payload of the frame at `offset` whose payload is `len` bytes (from the index),
/// checking magic, length and checksum.
pub fn read_at(file: &File, magic: [u8; 4], offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEADER_LEN as usize + len as usize];
    file.read_exact_at(&mut buf, offset)?;
    match valid_at(magic, &buf) {
        Some(l) if l == len => Ok(buf.split_off(HEADER_LEN as usize)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("damaged frame at offset {offset}"),
        )),
    }
}

/// How a scan ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// The file ends exactly after the last good frame.
    Clean,
    /// An incomplete frame at this offset is all that follows the good frames: the remains of
    /// an append cut short by a crash (never acknowledged, since appends fsync before they
    /// return). Cut it off.
    Torn(u64),
    /// A bad frame at this offset is followed by more data that is not one cut-short frame:
    /// damage, not a crash. Refuse rather than drop acknowledged records.
    Corrupt(u64),
}

/// Reads the frames from `start` to the end of the file, calling `each(offset, payload)` for
/// every good one (an `Err` from it stops the scan), and classifies what follows them.
pub fn scan<E: From<io::Error>>(
    file: &File,
    magic: [u8; 4],
    start: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(u64, Tail), E> {
    let file_len = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let mut header = [0u8; HEADER_LEN as usize];
    let mut payload = Vec::new();
    loop {
        if offset == file_len {
            return Ok((offset, Tail::Clean));
        }
        if file_len - offset < HEADER_LEN {
            return Ok((offset, classify(file, magic, offset, file_len)?));
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap());
        if header[..4] != magic || len > MAX_PAYLOAD || file_len - offset - HEADER_LEN < len as u64
        {
            return Ok((offset, classify(file, magic, offset, file_len)?));
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload)?;
        let mut frame = header.to_vec();
        frame.extend_from_slice(&payload);
        if valid_at(magic, &frame).is_none() {
            return Ok((offset, classify(file, magic, offset, file_len)?));
        }
        each(offset, &payload)?;
        offset += HEADER_LEN + len as u64;
    }
}

/// A bad frame at `bad` is a torn tail when the rest of the file is short enough to be one
/// frame and no valid frame starts anywhere inside it; anything else is damage.
fn classify(file: &File, magic: [u8; 4], bad: u64, file_len: u64) -> io::Result<Tail> {
    let rest = file_len - bad;
    if rest > HEADER_LEN + MAX_PAYLOAD as u64 {
        return Ok(Tail::Corrupt(bad));
    }
    let mut buf = vec![0u8; rest as usize];
    file.read_exact_at(&mut buf, bad)?;
    for i in 1..buf.len() {
        if buf[i] == magic[0] && valid_at(magic, &buf[i..]).is_some() {
            return Ok(Tail::Corrupt(bad));
        }
    }
    Ok(Tail::Torn(bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, File::open(&path).unwrap())
    }

    fn payloads(file: &File) -> (Vec<Vec<u8>>, u64, Tail) {
        let mut out = Vec::new();
        let (end, tail) = scan::<io::Error>(file, RECORD_MAGIC, 0, |_, p| {
            out.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        (out, end, tail)
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail_and_damage_is_not() {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| encode(RECORD_MAGIC, format!("{{\"n\":{i}}}").as_bytes()))
            .collect();
        let whole = frames.concat();
        let two = frames[0].len() + frames[1].len();
        let (_d, f) = file_with(&whole);
        assert_eq!(payloads(&f).0.len(), 3);
        assert_eq!(payloads(&f).2, Tail::Clean);
        for cut in two..whole.len() {
            let (_d, f) = file_with(&whole[..cut]);
            let (got, end, tail) = payloads(&f);
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(end, two as u64);
            let want = if cut == two {
                Tail::Clean
            } else {
                Tail::Torn(two as u64)
            };
            assert_eq!(tail, want, "cut at {cut}");
        }
        // A complete-length last frame whose bytes did not all reach the disk (zeros).
        let mut zeroed = whole.clone();
        for b in &mut zeroed[two + 14..] {
            *b = 0;
        }
        let (_d, f) = file_with(&zeroed);
        assert_eq!(payloads(&f).2, Tail::Torn(two as u64));
        // A flipped byte in the middle frame, with a good frame after it: damage.
        let mut damaged = whole.clone();
        damaged[frames[0].len() + 14] ^= 1;
        let (_d, f) = file_with(&damaged);
        let (got, _, tail) = payloads(&f);
        assert_eq!(got.len(), 1);
        assert_eq!(tail, Tail::Corrupt(frames[0].len() as u64));
        // Garbage longer than any frame after the good ones: damage too.
        let mut long = whole.clone();
        long.extend(std::iter::repeat_n(7u8, 70 * 1024));
        let (_d, f) = file_with(&long);
        assert_eq!(payloads(&f).2, Tail::Corrupt(whole.len() as u64));
    }

    #[test]
    fn read_at_checks_the_frame() {
        let fr = encode(CHECKPOINT_MAGIC, b"hello");
        let (_d, f) = file_with(&fr);
        assert_eq!(read_at(&f, CHECKPOINT_MAGIC, 0, 5).unwrap(), b"hello");
        assert!(read_at(&f, RECORD_MAGIC, 0, 5).is_err());
        assert!(read_at(&f, CHECKPOINT_MAGIC, 0, 4).is_err());
        let mut bad = fr.clone();
        bad[13] ^= 0x20;
        let (_d, f) = file_with(&bad);
        assert!(read_at(&f, CHECKPOINT_MAGIC, 0, 5).is_err());
    }
}
