//! Sealed extents: a version's bytes as frames, each AES-256-GCM under the version's own data
//! key (`docs/archive-format.md`, "Extents and frames").
//!
//! ```text
//! frame i = nonce (12 random bytes) || ciphertext (plaintext bytes [i*F, min((i+1)*F, len))) || tag (16)
//! AAD(i)  = "strata/archive-frame/v1\0" || F u32 BE || len u64 BE || i u64 BE
//!           || u16 BE |bucket| || bucket || u16 BE |key| || key || u16 BE |version id| || version id
//! ```
//!
//! The AAD binds a frame to its version and its place *in the extent*, never to where the
//! extent lies in a container: compaction moves sealed extents verbatim, without any data key.
//! A range read opens only the frames it covers, each with its own nonce and tag.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use strata_metadata::archive::{FRAME_OVERHEAD, frame_count};
use strata_storage_node::keys::DataKey;
use strata_storage_node::pipeline::{new_nonce, open_detached, seal_detached};

use crate::body::ReadStream;
use crate::error::{EngineError, Result};

/// Plaintext bytes per frame of the extents written now (each extent records its own).
pub const FRAME_SIZE: u32 = 1024 * 1024;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_LABEL: &[u8] = b"strata/archive-frame/v1\0";

/// The version a sealed extent belongs to, and its shape: what every frame's AAD binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameIdentity {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    /// Plaintext length of the extent.
    pub len: u64,
    pub frame_size: u32,
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Bucket names, keys (<= 1024 bytes) and version ids are far below 64 KiB; clamp anyway so
    // the encoding stays unambiguous whatever the caller passes.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

impl FrameIdentity {
    fn aad(&self, index: u64) -> Vec<u8> {
        let mut a = Vec::with_capacity(
            AAD_LABEL.len() + 20 + 6 + self.bucket.len() + self.key.len() + self.version_id.len(),
        );
        a.extend_from_slice(AAD_LABEL);
        a.extend_from_slice(&self.frame_size.to_be_bytes());
        a.extend_from_slice(&self.len.to_be_bytes());
        a.extend_from_slice(&index.to_be_bytes());
        push_str(&mut a, &self.bucket);
        push_str(&mut a, &self.key);
        push_str(&mut a, &self.version_id);
        a
    }

    pub fn frames(&self) -> u64 {
        frame_count(self.len, self.frame_size)
    }

    /// Plaintext bytes of frame `i`.
    pub fn plain_range(&self, i: u64) -> Range<u64> {
        let f = self.frame_size as u64;
        (i * f).min(self.len)..((i + 1) * f).min(self.len)
    }

    /// Where frame `i` lies in the sealed extent.
    pub fn sealed_range(&self, i: u64) -> Range<u64> {
        let start = i * (self.frame_size as u64 + FRAME_OVERHEAD);
        start..start + self.plain_range(i).end - self.plain_range(i).start + FRAME_OVERHEAD
    }

    /// Frames covering plaintext `range` (non-empty, within the extent).
    pub fn frames_for(&self, range: &Range<u64>) -> Range<u64> {
        let f = self.frame_size as u64;
        range.start / f..range.end.div_ceil(f)
    }
}

/// Seals frame `index` of `plain` into `out` (appended: nonce, ciphertext, tag).
pub fn seal_frame(dek: &DataKey, id: &FrameIdentity, index: u64, plain: &[u8], out: &mut BytesMut) {
    let nonce = new_nonce();
    out.extend_from_slice(&nonce);
    let at = out.len();
    out.extend_from_slice(plain);
    let tag = seal_detached(dek, &nonce, &id.aad(index), &mut out[at..]);
    out.extend_from_slice(&tag);
}

/// Opens sealed frame `index` in place; its plaintext on success. Fails (no plaintext) under
/// any other key, for another version or frame index, or if a byte changed.
pub fn open_frame(
    dek: &DataKey,
    id: &FrameIdentity,
    index: u64,
    mut sealed: BytesMut,
) -> std::result::Result<Bytes, std::io::Error> {
    let want = id.sealed_range(index);
    if index >= id.frames() || sealed.len() as u64 != want.end - want.start {
        return Err(std::io::Error::other("archive frame of unexpected length"));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("length checked");
    let tag: [u8; TAG_LEN] = sealed[sealed.len() - TAG_LEN..]
        .try_into()
        .expect("length checked");
    let end = sealed.len() - TAG_LEN;
    open_detached(
        dek,
        &nonce,
        &id.aad(index),
        &mut sealed[NONCE_LEN..end],
        &tag,
    )
    .map_err(|_| std::io::Error::other("archive frame failed authentication"))?;
    sealed.truncate(end);
    Ok(sealed.split_off(NONCE_LEN).freeze())
}

/// Cuts a plaintext stream into sealed frames. Holds at most one frame of plaintext.
pub struct FrameSealer {
    dek: Arc<DataKey>,
    id: FrameIdentity,
    plain: BytesMut,
    index: u64,
    fed: u64,
}

impl FrameSealer {
    pub fn new(dek: Arc<DataKey>, id: FrameIdentity) -> Self {
        let cap = (id.frame_size as u64).min(id.len) as usize;
        FrameSealer {
            dek,
            id,
            plain: BytesMut::with_capacity(cap),
            index: 0,
            fed: 0,
        }
    }

    /// Feeds plaintext; appends every frame it completes to `out`.
    pub fn push(&mut self, mut piece: &[u8], out: &mut BytesMut) -> Result<()> {
        self.fed += piece.len() as u64;
        if self.fed > self.id.len {
            return Err(EngineError::internal(
                "archive source longer than the version",
            ));
        }
        let f = self.id.frame_size as usize;
        while !piece.is_empty() {
            let take = (f - self.plain.len()).min(piece.len());
            self.plain.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.plain.len() == f {
                self.seal(out);
            }
        }
        Ok(())
    }

    /// The last (short) frame; checks the source gave exactly `len` bytes.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        if self.fed != self.id.len {
            return Err(EngineError::internal(format!(
                "archive source gave {} bytes, expected {}",
                self.fed, self.id.len
            )));
        }
        if !self.plain.is_empty() {
            self.seal(out);
        }
        Ok(())
    }

    fn seal(&mut self, out: &mut BytesMut) {
        seal_frame(&self.dek, &self.id, self.index, &self.plain, out);
        self.plain.clear();
        self.index += 1;
    }
}

struct Opener {
    sealed: ReadStream,
    carry: BytesMut,
    dek: Arc<DataKey>,
    id: FrameIdentity,
    next: u64,
    frames: Range<u64>,
    /// Plaintext wanted, in extent coordinates.
    want: Range<u64>,
}

/// Plaintext `want` of an extent from a stream of its sealed bytes that starts at the first of
/// `frames_for(want)` and covers them all. Holds at most one frame plus one incoming piece.
pub fn open_frames(
    sealed: ReadStream,
    dek: Arc<DataKey>,
    id: FrameIdentity,
    want: Range<u64>,
) -> ReadStream {
    if want.is_empty() {
        return Box::pin(futures::stream::empty());
    }
    let frames = id.frames_for(&want);
    let st = Opener {
        sealed,
        carry: BytesMut::new(),
        dek,
        next: frames.start,
        frames,
        want,
        id,
    };
    Box::pin(futures::stream::unfold(Some(st), |st| async move {
        let mut st = st?;
        if st.next >= st.frames.end {
            return None;
        }
        let r = st.id.sealed_range(st.next);
        let need = (r.end - r.start) as usize;
        while st.carry.len() < need {
            match st.sealed.next().await {
                Some(Ok(piece)) => st.carry.extend_from_slice(&piece),
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let e = std::io::Error::other("archive extent ended inside a frame");
                    return Some((Err(e), None));
                }
            }
        }
        let frame = st.carry.split_to(need);
        let index = st.next;
        let plain = match open_frame(&st.dek, &st.id, index, frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(version = %st.id.version_id, frame = index, "archive frame failed to open");
                return Some((Err(e), None));
            }
        };
        st.next += 1;
        // Trim to the range asked for (first and last frames only).
        let pr = st.id.plain_range(index);
        let a = st.want.start.max(pr.start) - pr.start;
        let b = st.want.end.min(pr.end) - pr.start;
        Some((Ok(plain.slice(a as usize..b as usize)), Some(st)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(len: u64, f: u32) -> FrameIdentity {
        FrameIdentity {
            bucket: "b".into(),
            key: "k".into(),
            version_id: "v".into(),
            len,
            frame_size: f,
        }
    }

    fn seal_all(dek: &Arc<DataKey>, id: &FrameIdentity, data: &[u8]) -> BytesMut {
        let mut s = FrameSealer::new(dek.clone(), id.clone());
        let mut out = BytesMut::new();
        for piece in data.chunks(7) {
            s.push(piece, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        out
    }

    async fn open_range(
        dek: &Arc<DataKey>,
        id: &FrameIdentity,
        sealed: &[u8],
        want: Range<u64>,
    ) -> std::result::Result<Vec<u8>, std::io::Error> {
        let frames = id.frames_for(&want);
        let from = if want.is_empty() {
            0
        } else {
            id.sealed_range(frames.start).start as usize
        };
        // Delivered in awkward pieces, as container chunks would.
        let pieces: Vec<std::result::Result<Bytes, std::io::Error>> = sealed[from..]
            .chunks(5)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = open_frames(
            Box::pin(futures::stream::iter(pieces)),
            dek.clone(),
            id.clone(),
            want,
        );
        let mut out = Vec::new();
        while let Some(p) = s.next().await {
            out.extend_from_slice(&p?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn frames_round_trip_any_range_and_bind_identity() {
        let dek = Arc::new(DataKey::generate());
        let data: Vec<u8> = (0..100u32).map(|i| (i * 31 % 251) as u8).collect();
        let id = ident(data.len() as u64, 16);
        let sealed = seal_all(&dek, &id, &data);
        assert_eq!(sealed.len() as u64, 100 + 7 * FRAME_OVERHEAD);
        assert_eq!(id.sealed_range(6), 6 * 44..6 * 44 + 4 + 28);
        for (a, b) in [
            (0, 100),
            (0, 1),
            (15, 17),
            (16, 32),
            (99, 100),
            (3, 90),
            (40, 40),
        ] {
            let got = open_range(&dek, &id, &sealed, a..b).await.unwrap();
            assert_eq!(got, &data[a as usize..b as usize], "{a}..{b}");
        }
        // Another key, another version, another length: nothing opens.
        let other = Arc::new(DataKey::generate());
        assert!(open_range(&other, &id, &sealed, 0..100).await.is_err());
        let mut moved = id.clone();
        moved.version_id = "w".into();
        assert!(open_range(&dek, &moved, &sealed, 0..10).await.is_err());
        let mut key2 = id.clone();
        key2.key = "k2".into();
        assert!(open_range(&dek, &key2, &sealed, 0..10).await.is_err());
        // Frames swapped within the extent fail (the index is bound).
        let mut swapped = sealed.clone();
        let (f0, f1) = (id.sealed_range(0), id.sealed_range(1));
        let a = sealed[f0.start as usize..f0.end as usize].to_vec();
        let b = sealed[f1.start as usize..f1.end as usize].to_vec();
        swapped[f0.start as usize..f0.end as usize].copy_from_slice(&b);
        swapped[f1.start as usize..f1.end as usize].copy_from_slice(&a);
        assert!(open_range(&dek, &id, &swapped, 0..32).await.is_err());
        // One flipped bit anywhere fails.
        for at in [0usize, 12, 20, 43, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open_range(&dek, &id, &bad, 0..100).await.is_err(), "{at}");
        }
        // A truncated extent is an error, not short data.
        assert!(
            open_range(&dek, &id, &sealed[..sealed.len() - 1], 0..100)
                .await
                .is_err()
        );
        // No plaintext in the sealed bytes.
        assert!(!sealed.windows(8).any(|w| data.windows(8).any(|d| d == w)));
    }

    #[test]
    fn sealer_checks_the_source_length() {
        let dek = Arc::new(DataKey::generate());
        let mut s = FrameSealer::new(dek.clone(), ident(10, 4));
        let mut out = BytesMut::new();
        s.push(b"12345678", &mut out).unwrap();
        assert!(s.finish(&mut out).is_err(), "short source");
        assert!(s.push(b"abc", &mut out).is_err(), "long source");
        let empty = seal_all(&dek, &ident(0, 4), b"");
        assert!(empty.is_empty(), "an empty version has no frame");
    }
}
