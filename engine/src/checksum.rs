//! Whole-object checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) computed while bytes stream
//! through, and the two ways a multipart object's checksum is derived from its parts' checksums.
//! Values travel as base64 of the big-endian digest, as S3 clients send and expect them.

use base64::Engine as _;
use sha1::Digest as _;

use crate::error::Rejection;

pub const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// How a multipart object's checksum relates to its parts' checksums.
pub const FULL_OBJECT: &str = "FULL_OBJECT";
pub const COMPOSITE: &str = "COMPOSITE";

pub enum Hasher {
    Crc {
        digest: crc_fast::Digest,
        width: usize,
    },
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// The CRC behind a CRC algorithm name, and its width in bytes.
pub fn crc_algorithm(alg: &str) -> Option<(crc_fast::CrcAlgorithm, usize)> {
    match alg {
        "CRC32" => Some((crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4)),
        "CRC32C" => Some((crc_fast::CrcAlgorithm::Crc32Iscsi, 4)),
        "CRC64NVME" => Some((crc_fast::CrcAlgorithm::Crc64Nvme, 8)),
        _ => None,
    }
}

/// Checks and normalises an algorithm name (`crc32c` -> `CRC32C`).
pub fn algorithm(name: &str) -> Result<String, Rejection> {
    let upper = name.to_ascii_uppercase();
    if ALGORITHMS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(Rejection::UnsupportedChecksum(
            name.chars().take(32).collect(),
        ))
    }
}

impl Hasher {
    pub fn new(name: &str) -> Result<Self, Rejection> {
        let alg = algorithm(name)?;
        Ok(match crc_algorithm(&alg) {
            Some((crc, width)) => Hasher::Crc {
                digest: crc_fast::Digest::new(crc),
                width,
            },
            None if alg == "SHA1" => Hasher::Sha1(sha1::Sha1::new()),
            None => Hasher::Sha256(sha2::Sha256::new()),
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc { digest, .. } => digest.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// Base64 of the digest.
    pub fn finalize(self) -> String {
        match self {
            Hasher::Crc { digest, width } => {
                let v = digest.finalize().to_be_bytes();
                b64(&v[8 - width..])
            }
            Hasher::Sha1(h) => b64(&h.finalize()),
            Hasher::Sha256(h) => b64(&h.finalize()),
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_b64(v: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()
}

/// The multipart ETag: MD5 of the concatenated binary part MD5s, then `-N`.
pub fn multipart_etag(part_etags: &[&str]) -> Result<String, Rejection> {
    use md5::{Digest as _, Md5};
    let mut h = Md5::new();
    for e in part_etags {
        let raw = hex::decode(e).map_err(|_| Rejection::BadPartEtag)?;
        if raw.len() != 16 {
            return Err(Rejection::BadPartEtag);
        }
        h.update(&raw);
    }
    Ok(format!(
        "{}-{}",
        hex::encode(h.finalize()),
        part_etags.len()
    ))
}

fn decode_crc(v: &str, width: usize, part: u32) -> Result<u64, Rejection> {
    let raw = decode_b64(v)
        .filter(|r| r.len() == width)
        .ok_or(Rejection::PartChecksumMismatch(part))?;
    Ok(raw.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// One part's contribution to a combined checksum: (part number, size, stored checksum).
pub struct PartChecksum<'a> {
    pub part_number: u32,
    pub size: u64,
    pub checksum: Option<&'a (String, String)>,
}

/// The whole-object checksum of a completed upload from its parts' checksums: COMPOSITE is the
/// checksum of the concatenated part checksums plus `-N`; FULL_OBJECT (CRCs only) combines the
/// part CRCs mathematically, as if the whole object had been hashed in one pass. `None` when a
/// part has no checksum of that algorithm.
pub fn combined(
    alg: &str,
    kind: &str,
    parts: &[PartChecksum],
) -> Result<Option<String>, Rejection> {
    let values: Option<Vec<&str>> = parts
        .iter()
        .map(|p| {
            p.checksum
                .filter(|(a, _)| a == alg)
                .map(|(_, v)| v.as_str())
        })
        .collect();
    let Some(values) = values else {
        return Ok(None);
    };
    if kind == FULL_OBJECT {
        let (crc, width) = crc_algorithm(alg).ok_or(Rejection::FullObjectNeedsCrc)?;
        let mut acc: Option<u64> = None;
        for (p, v) in parts.iter().zip(&values) {
            let c = decode_crc(v, width, p.part_number)?;
            acc = Some(match acc {
                None => c,
                Some(a) => crc_fast::checksum_combine(crc, a, c, p.size),
            });
        }
        let bytes = acc.unwrap_or(0).to_be_bytes();
        return Ok(Some(b64(&bytes[8 - width..])));
    }
    let mut h = Hasher::new(alg)?;
    for (p, v) in parts.iter().zip(&values) {
        h.update(&decode_b64(v).ok_or(Rejection::PartChecksumMismatch(p.part_number))?);
    }
    Ok(Some(format!("{}-{}", h.finalize(), parts.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_pass(alg: &str, data: &[u8]) -> String {
        let mut h = Hasher::new(alg).unwrap();
        h.update(data);
        h.finalize()
    }

    #[test]
    fn known_vectors() {
        // "123456789" check values of each CRC, and SHA-256 of "abc".
        let crc32 = u32::from_str_radix("CBF43926", 16).unwrap().to_be_bytes();
        assert_eq!(one_pass("CRC32", b"123456789"), b64(&crc32));
        let crc32c = u32::from_str_radix("E3069283", 16).unwrap().to_be_bytes();
        assert_eq!(one_pass("crc32c", b"123456789"), b64(&crc32c));
        assert_eq!(
            one_pass("SHA256", b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert!(Hasher::new("MD4").is_err());
    }

    #[test]
    fn multipart_etag_matches_s3_rule() {
        // Two parts whose MD5s are all-zero and all-0xff bytes.
        let a = "00000000000000000000000000000000";
        let b = "ffffffffffffffffffffffffffffffff";
        let mut raw = vec![0u8; 16];
        raw.extend([0xffu8; 16]);
        use md5::{Digest as _, Md5};
        let expected = format!("{}-2", hex::encode(Md5::digest(&raw)));
        assert_eq!(multipart_etag(&[a, b]).unwrap(), expected);
        assert_eq!(multipart_etag(&["xyz"]), Err(Rejection::BadPartEtag));
    }

    #[test]
    fn full_object_crc_combines_like_one_pass() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in ["CRC32", "CRC32C", "CRC64NVME"] {
            let (a, b) = data.split_at(3_333);
            let ca = (alg.to_string(), one_pass(alg, a));
            let cb = (alg.to_string(), one_pass(alg, b));
            let parts = [
                PartChecksum {
                    part_number: 1,
                    size: a.len() as u64,
                    checksum: Some(&ca),
                },
                PartChecksum {
                    part_number: 2,
                    size: b.len() as u64,
                    checksum: Some(&cb),
                },
            ];
            assert_eq!(
                combined(alg, FULL_OBJECT, &parts).unwrap(),
                Some(one_pass(alg, &data)),
                "{alg}"
            );
            let composite = combined(alg, COMPOSITE, &parts).unwrap().unwrap();
            assert!(composite.ends_with("-2"), "{composite}");
        }
    }
}
