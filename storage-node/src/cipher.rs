//! AES-256-GCM for everything the chunk store seals: chunks, archive frames and wrapped keys.
//!
//! Implemented with `ring` (AES-NI + carry-less-multiply assembly). Measured on one core of the
//! 2-core benchmark machine: ring 2.96 GiB/s against 1.67 GiB/s for the `aes-gcm` 0.11 crate
//! (docs/benchmarks.md). The cipher is standard AES-256-GCM (96-bit nonce, 128-bit tag), so data
//! sealed by either opens with the other: the on-disk formats do not depend on the library
//! (`tests::ring_and_aes_gcm_agree` pins it).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

pub const TAG_LEN: usize = 16;

fn key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// Encrypts `buf` in place under `nonce` and returns the detached tag. The caller owns nonce
/// uniqueness under `key_bytes`.
pub fn seal_in_place(
    key_bytes: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; 16] {
    let tag = key(key_bytes)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
        .expect("below the AES-GCM length limit");
    tag.as_ref().try_into().expect("16-byte tag")
}

/// Decrypts `buf` in place if `tag` verifies under this key, nonce and AAD. On `false` the
/// contents of `buf` are unspecified and must not be used.
#[must_use]
pub fn open_in_place(
    key_bytes: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    key(key_bytes)
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            Tag::from(*tag),
            buf,
            0..,
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::{Aes256Gcm, KeyInit};

    #[test]
    fn ring_and_aes_gcm_agree() {
        let key_bytes = [7u8; 32];
        let nonce = [9u8; 12];
        let aad = b"chunk aad";
        for len in [0usize, 1, 15, 16, 17, 4096, 1 << 20] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut ours = plaintext.clone();
            let tag = seal_in_place(&key_bytes, &nonce, aad, &mut ours);
            let mut theirs = plaintext.clone();
            let their_tag: [u8; 16] = Aes256Gcm::new((&key_bytes).into())
                .encrypt_inout_detached(&nonce.into(), aad, theirs.as_mut_slice().into())
                .unwrap()
                .into();
            assert_eq!(ours, theirs, "ciphertext of {len} bytes");
            assert_eq!(tag, their_tag, "tag of {len} bytes");
            assert!(open_in_place(&key_bytes, &nonce, aad, &mut ours, &tag));
            assert_eq!(ours, plaintext);
        }
    }

    #[test]
    fn a_flipped_bit_or_wrong_aad_is_refused() {
        let key_bytes = [1u8; 32];
        let nonce = [2u8; 12];
        let mut buf = b"secret bytes".to_vec();
        let tag = seal_in_place(&key_bytes, &nonce, b"a", &mut buf);
        let mut flipped = buf.clone();
        flipped[3] ^= 1;
        assert!(!open_in_place(&key_bytes, &nonce, b"a", &mut flipped, &tag));
        let mut wrong_aad = buf.clone();
        assert!(!open_in_place(
            &key_bytes,
            &nonce,
            b"b",
            &mut wrong_aad,
            &tag
        ));
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert!(!open_in_place(
            &key_bytes,
            &nonce,
            b"a",
            &mut buf.clone(),
            &bad_tag
        ));
        assert!(open_in_place(&key_bytes, &nonce, b"a", &mut buf, &tag));
        assert_eq!(buf, b"secret bytes");
    }
}
