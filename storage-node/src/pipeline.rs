//! The CPU side of the chunk path, without I/O: encrypt -> erasure-code -> checksum, and back.
//! Shared by the store, the fuzz targets and the pipeline micro-benchmark.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use strata_erasure::Codec;

use crate::cipher;
use crate::format::{self, GCM_TAG_LEN, ShardHeader};
use crate::{ChunkId, DataKey, NodeError};

/// A fresh AES-GCM nonce for one put: 96 random bits from the OS-seeded CSPRNG. Stored in every
/// shard header of the put. Never derived from the chunk id: an id may be written again after a
/// delete, and a derived nonce would then repeat under the same DEK. The bound that makes random
/// nonces safe here is argued in docs/storage-node.md ("Nonces").
pub fn new_nonce() -> [u8; 12] {
    rand::random()
}

/// AAD binds the ciphertext to its chunk id: shards moved to another id fail authentication.
pub fn chunk_aad(id: ChunkId) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..16].copy_from_slice(&id.blob);
    aad[16..].copy_from_slice(&id.index.to_le_bytes());
    aad
}

/// One encoded chunk: a single buffer holding k data shards then m parity shards, contiguous.
pub struct SealedStripe {
    pub stripe: Vec<u8>,
    pub nonce: [u8; 12],
    pub plaintext_len: u64,
    pub ciphertext_len: u64,
    pub shard_len: usize,
    pub checksums: Vec<u32>,
}

impl SealedStripe {
    pub fn shard(&self, index: usize) -> &[u8] {
        &self.stripe[index * self.shard_len..(index + 1) * self.shard_len]
    }

    /// The on-disk header of shard `index`.
    pub fn header(&self, codec: &Codec, id: ChunkId, index: usize, layout_id: u32) -> ShardHeader {
        ShardHeader {
            chunk: id,
            shard_index: index as u8,
            data_shards: codec.data_shards() as u8,
            parity_shards: codec.parity_shards() as u8,
            nonce: self.nonce,
            layout_id,
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            shard_len: self.shard_len as u64,
            body_crc32c: self.checksums[index],
        }
    }

    /// Gives the buffer back for reuse by the next [`seal_chunk`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.stripe
    }
}

/// Copies `plaintext` into a stripe buffer, encrypts it there in place, appends the tag,
/// computes parity in place and checksums every shard. `buffer` is reused if it is big enough.
/// `nonce` must never have been used with `dek` before ([`new_nonce`]).
pub fn seal_chunk(
    codec: &Codec,
    id: ChunkId,
    dek: &DataKey,
    nonce: [u8; 12],
    plaintext: &[u8],
    mut buffer: Vec<u8>,
) -> SealedStripe {
    let ciphertext_len = plaintext.len() + GCM_TAG_LEN as usize;
    let stripe_len = codec.stripe_len(ciphertext_len);
    // Only the length changes: the data region is overwritten and padding/parity are rewritten
    // by encode_stripe, so stale bytes from the last use never leak.
    buffer.resize(stripe_len, 0);
    let data = &mut buffer[..plaintext.len()];
    data.copy_from_slice(plaintext);
    let tag = cipher::seal_in_place(dek.expose(), &nonce, &chunk_aad(id), data);
    buffer[plaintext.len()..ciphertext_len].copy_from_slice(&tag);
    codec
        .encode_stripe(&mut buffer, ciphertext_len)
        .expect("buffer sized by stripe_len");
    let shard_len = codec.shard_len(ciphertext_len);
    let checksums = buffer.chunks(shard_len).map(format::crc32c).collect();
    SealedStripe {
        stripe: buffer,
        nonce,
        plaintext_len: plaintext.len() as u64,
        ciphertext_len: ciphertext_len as u64,
        shard_len,
        checksums,
    }
}

/// The ciphertext length of a `plaintext_len`-byte chunk, if it is within the format's limit.
fn ciphertext_len_of(plaintext_len: u64) -> Result<usize, NodeError> {
    usize::try_from(plaintext_len)
        .ok()
        .and_then(|n| n.checked_add(GCM_TAG_LEN as usize))
        .filter(|&n| n as u64 <= format::MAX_CIPHERTEXT_LEN)
        .ok_or_else(|| NodeError::Invalid(format!("chunk length {plaintext_len} out of range")))
}

/// Decrypts `buf` in place: `buf` is the ciphertext of chunk `id` with its 16-byte tag
/// appended (anything after that is ignored). Returns the plaintext length, the prefix of `buf`
/// now holding the plaintext.
fn decrypt_in_place(
    id: ChunkId,
    dek: &DataKey,
    nonce: [u8; 12],
    buf: &mut [u8],
    ciphertext_len: usize,
) -> Result<usize, NodeError> {
    let plaintext_len = ciphertext_len - GCM_TAG_LEN as usize;
    let tag: [u8; 16] = buf[plaintext_len..ciphertext_len]
        .try_into()
        .expect("16-byte tag");
    if !cipher::open_in_place(
        dek.expose(),
        &nonce,
        &chunk_aad(id),
        &mut buf[..plaintext_len],
        &tag,
    ) {
        return Err(NodeError::Integrity);
    }
    Ok(plaintext_len)
}

/// The healthy read path: `data` holds the k data shards of the chunk back to back
/// (`k * shard_len` bytes, as the store reads them straight from the shard files into one
/// buffer), each already checked against its header checksum. No Reed-Solomon work is needed:
/// the concatenated data shards *are* the ciphertext plus tag plus zero padding, so this only
/// decrypts in place. Returns the plaintext length: `data[..len]` is the chunk.
pub fn open_data_shards(
    codec: &Codec,
    id: ChunkId,
    dek: &DataKey,
    nonce: [u8; 12],
    data: &mut [u8],
    plaintext_len: u64,
) -> Result<usize, NodeError> {
    let ciphertext_len = ciphertext_len_of(plaintext_len)?;
    let expected = codec.data_shards() * codec.shard_len(ciphertext_len);
    if data.len() != expected {
        return Err(NodeError::Invalid(format!(
            "data shards are {} bytes, expected {expected}",
            data.len()
        )));
    }
    decrypt_in_place(id, dek, nonce, data, ciphertext_len)
}

/// Decodes verified shards (any k of k + m, `None` for missing) and decrypts. The caller has
/// already checked each present shard against its header checksum. This is the degraded path
/// (and the fuzz path); a read with all k data shards healthy uses [`open_data_shards`].
pub fn open_chunk(
    codec: &Codec,
    id: ChunkId,
    dek: &DataKey,
    nonce: [u8; 12],
    shards: Vec<Option<Vec<u8>>>,
    plaintext_len: u64,
) -> Result<Vec<u8>, NodeError> {
    let ciphertext_len = ciphertext_len_of(plaintext_len)?;
    let mut data = codec.decode(shards, ciphertext_len).map_err(|e| match e {
        strata_erasure::ErasureError::TooFewShards { available, needed } => {
            NodeError::Unrecoverable { available, needed }
        }
        other => NodeError::Invalid(other.to_string()),
    })?;
    let plaintext_len = decrypt_in_place(id, dek, nonce, &mut data, ciphertext_len)?;
    data.truncate(plaintext_len);
    Ok(data)
}

/// AES-256-GCM of the `aes-gcm` crate (the pure-Rust alternative to [`cipher`]'s ring), in place,
/// for the pipeline benchmark's comparison. It lives here so it is compiled like the pipeline
/// (aes-gcm is generic: its hot loops are compiled in the calling crate, and storage-node is
/// built at opt-level 3 even in dev, the benchmark crate is not).
pub fn aes_gcm_encrypt_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; 16] {
    Aes256Gcm::new(key.into())
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
        .expect("below the AES-GCM length limit")
        .into()
}

/// Counterpart of [`aes_gcm_encrypt_in_place`]; returns whether the tag verified.
pub fn aes_gcm_decrypt_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
        .is_ok()
}

/// AES-256-GCM of `buf` in place under a data key, detached tag. For sealing outside the chunk
/// path (the archive tier seals each frame of a version's extent under the version's own key,
/// inside container chunks the store then encrypts again). The caller owns nonce uniqueness
/// (a fresh [`new_nonce`]) and domain separation (an AAD of its own shape).
pub fn seal_detached(dek: &DataKey, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    cipher::seal_in_place(dek.expose(), nonce, aad, buf)
}

/// Counterpart of [`seal_detached`]: `Err(Integrity)` (and `buf` unspecified) unless the tag
/// verifies under this key, nonce and AAD.
pub fn open_detached(
    dek: &DataKey,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> Result<(), NodeError> {
    if cipher::open_in_place(dek.expose(), nonce, aad, buf, tag) {
        Ok(())
    } else {
        Err(NodeError::Integrity)
    }
}

/// Fuzz/CI entry point: runs arbitrary shard-file bytes through header parsing, body verification,
/// decoding and decryption exactly as a read does. Must never panic, whatever the input.
pub fn decode_untrusted_shards(
    codec: &Codec,
    dek: &DataKey,
    files: &[Vec<u8>],
) -> Result<Vec<u8>, NodeError> {
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; codec.total_shards()];
    let mut first: Option<ShardHeader> = None;
    for file in files {
        let Ok((header, body)) = format::verify_shard(file) else {
            continue;
        };
        if usize::from(header.data_shards) != codec.data_shards()
            || usize::from(header.parity_shards) != codec.parity_shards()
        {
            continue;
        }
        if let Some(f) = &first
            && (f.chunk, f.nonce, f.plaintext_len)
                != (header.chunk, header.nonce, header.plaintext_len)
        {
            continue;
        }
        shards[usize::from(header.shard_index)] = Some(body.to_vec());
        first.get_or_insert(header);
    }
    let Some(header) = first else {
        return Err(NodeError::NotFound);
    };
    open_chunk(
        codec,
        header.chunk,
        dek,
        header.nonce,
        shards,
        header.plaintext_len,
    )
}

/// Fuzz body (`fuzz/fuzz_targets/shard_decode.rs`). Input: byte 0 = flags (bit 0: fix up the
/// checksums so the decoder is reached), byte 1 = key byte; then up to 8 shard files, each as a
/// 2-byte little-endian length and that many bytes. Decoded under RS(4, 2). Must not panic.
pub fn fuzz_shard_decode(data: &[u8]) {
    let (Some(&flags), Some(&key_byte)) = (data.first(), data.get(1)) else {
        return;
    };
    let mut rest = &data[2..];
    let mut files = Vec::new();
    while files.len() < 8 && rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut file = rest[2..2 + len].to_vec();
        if flags & 1 == 1 {
            format::fix_checksums(&mut file);
        }
        files.push(file);
        rest = &rest[2 + len..];
    }
    let codec = Codec::new(4, 2).expect("valid geometry");
    let dek = DataKey::from_bytes(&[key_byte; 32]).expect("32 bytes");
    let _ = decode_untrusted_shards(&codec, &dek, &files);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_seal_opens_only_with_its_key_nonce_and_aad() {
        let dek = DataKey::generate();
        let nonce = new_nonce();
        let plain = b"archived bytes of one frame".to_vec();
        let mut buf = plain.clone();
        let tag = seal_detached(&dek, &nonce, b"aad", &mut buf);
        assert_ne!(buf, plain);
        let sealed = buf.clone();
        open_detached(&dek, &nonce, b"aad", &mut buf, &tag).unwrap();
        assert_eq!(buf, plain);
        for (key, n, aad) in [
            (&DataKey::generate(), nonce, &b"aad"[..]),
            (&dek, new_nonce(), &b"aad"[..]),
            (&dek, nonce, &b"other"[..]),
        ] {
            let mut b = sealed.clone();
            assert!(matches!(
                open_detached(key, &n, aad, &mut b, &tag),
                Err(NodeError::Integrity)
            ));
        }
    }

    #[test]
    fn seal_then_open_with_any_two_shards_missing() {
        let codec = Codec::new(4, 2).unwrap();
        let dek = DataKey::generate();
        let id = ChunkId {
            blob: [1; 16],
            index: 9,
        };
        let mut buffer = Vec::new();
        for len in [0usize, 1, 17, 4096, 1 << 20] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let nonce = new_nonce();
            let sealed = seal_chunk(&codec, id, &dek, nonce, &plain, std::mem::take(&mut buffer));
            if len > 0 {
                assert_ne!(
                    &sealed.stripe[..len],
                    &plain[..],
                    "ciphertext must differ from plaintext"
                );
            }
            let mut data = sealed.stripe[..4 * sealed.shard_len].to_vec();
            let n = open_data_shards(&codec, id, &dek, nonce, &mut data, len as u64).unwrap();
            assert_eq!(&data[..n], &plain[..]);
            let mut short = sealed.stripe[..4 * sealed.shard_len - 1].to_vec();
            assert!(open_data_shards(&codec, id, &dek, nonce, &mut short, len as u64).is_err());
            let mut flipped = sealed.stripe[..4 * sealed.shard_len].to_vec();
            flipped[len / 2] ^= 1;
            assert!(matches!(
                open_data_shards(&codec, id, &dek, nonce, &mut flipped, len as u64),
                Err(NodeError::Integrity)
            ));
            for missing in [(0, 1), (2, 5), (4, 5)] {
                let shards = (0..6)
                    .map(|i| (i != missing.0 && i != missing.1).then(|| sealed.shard(i).to_vec()))
                    .collect();
                assert_eq!(
                    open_chunk(&codec, id, &dek, nonce, shards, len as u64).unwrap(),
                    plain
                );
            }
            let all = (0..6)
                .map(|i| Some(sealed.shard(i).to_vec()))
                .collect::<Vec<_>>();
            assert!(matches!(
                open_chunk(
                    &codec,
                    id,
                    &DataKey::generate(),
                    nonce,
                    all.clone(),
                    len as u64
                ),
                Err(NodeError::Integrity)
            ));
            // The nonce is an input of the AEAD: the stored one must be used.
            assert!(matches!(
                open_chunk(&codec, id, &dek, new_nonce(), all.clone(), len as u64),
                Err(NodeError::Integrity)
            ));
            let other_id = ChunkId {
                blob: [1; 16],
                index: 10,
            };
            assert!(matches!(
                open_chunk(&codec, other_id, &dek, nonce, all, len as u64),
                Err(NodeError::Integrity)
            ));
            buffer = sealed.into_buffer();
        }
    }

    /// Runs the fuzz body over random inputs and over real shard sets with mutations (checksums
    /// fixed up so the decoder sees them), so a panic shows up in `cargo test` without nightly.
    #[test]
    fn fuzz_decode_body_never_panics() {
        let codec = Codec::new(4, 2).unwrap();
        let dek = DataKey::from_bytes(&[7; 32]).unwrap();
        let id = ChunkId {
            blob: [3; 16],
            index: 1,
        };
        let sealed = seal_chunk(&codec, id, &dek, new_nonce(), &[0x5a; 300], Vec::new());
        let files: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                let mut f = sealed.header(&codec, id, i, 99).encode().to_vec();
                f.extend_from_slice(sealed.shard(i));
                f
            })
            .collect();
        // Sanity: the untouched set decodes, so the mutated runs below do reach the decoder.
        assert_eq!(
            decode_untrusted_shards(&codec, &dek, &files).unwrap(),
            vec![0x5a; 300]
        );
        let mut state = 0x0dd_ba11_cafe_f00du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut input = vec![if round % 2 == 0 { 1u8 } else { 0 }, 7];
            let count = (next() % 8) as usize;
            for _ in 0..count {
                let mut file = if round % 4 == 3 {
                    (0..(next() % 400)).map(|_| next() as u8).collect()
                } else {
                    files[(next() % 6) as usize].clone()
                };
                for _ in 0..(next() % 3) {
                    if !file.is_empty() {
                        let at = (next() as usize) % file.len().min(200);
                        file[at] = next() as u8;
                    }
                }
                if next() % 5 == 0 {
                    file.truncate((next() as usize) % (file.len() + 1));
                }
                input.extend_from_slice(&(file.len() as u16).to_le_bytes());
                input.extend_from_slice(&file);
            }
            fuzz_shard_decode(&input);
        }
    }

    #[test]
    fn one_plaintext_sealed_twice_never_shares_nonce_or_ciphertext() {
        let codec = Codec::new(4, 2).unwrap();
        let dek = DataKey::generate();
        let id = ChunkId {
            blob: [5; 16],
            index: 0,
        };
        let a = seal_chunk(&codec, id, &dek, new_nonce(), &[0x33; 1000], Vec::new());
        let b = seal_chunk(&codec, id, &dek, new_nonce(), &[0x33; 1000], Vec::new());
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.stripe, b.stripe);
        let nonces: std::collections::HashSet<[u8; 12]> =
            (0..10_000).map(|_| new_nonce()).collect();
        assert_eq!(nonces.len(), 10_000);
    }
}
