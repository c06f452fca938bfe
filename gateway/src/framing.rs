//! Watches the framing of aws-chunked request bodies on their way to s3s, which decodes them but
//! accepts a body that simply stops after a data chunk: S3 requires the final zero-length chunk
//! (it carries the last chunk signature and the trailers), and so do we. The watcher passes the
//! bytes through untouched and only records whether the final chunk went by; handlers check it
//! when the body has ended (see `checksum::late_checksum`).
//!
//! The state machine reads untrusted bytes: it never allocates, never panics, and gives up (marks
//! the framing as unknown, leaving the verdict to s3s's decoder) on anything unexpected.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

/// What the watcher has seen so far, shared with the handler through the request extensions.
#[derive(Default, Debug)]
pub struct ChunkedFraming {
    state: AtomicU8,
}

const SEEN_NOTHING: u8 = 0;
const SEEN_FINAL: u8 = 1;
const UNPARSABLE: u8 = 2;

impl ChunkedFraming {
    /// True unless the body ended without its final zero-length chunk.
    pub fn complete(&self) -> bool {
        self.state.load(Ordering::Acquire) != SEEN_NOTHING
    }
}

/// Where the scanner is in the framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Reading the hex chunk size (`digits` so far).
    Size { size: u64, digits: u8 },
    /// Skipping the rest of the chunk header line (`;chunk-signature=...\r`) until `\n`.
    Header { size: u64 },
    /// Skipping chunk data.
    Data { left: u64 },
    /// Skipping the CRLF after chunk data (`left` bytes).
    DataEnd { left: u8 },
    /// The final chunk header was read; the rest (trailers) is not our business.
    Final,
    /// Not aws-chunked framing as we know it.
    Invalid,
}

impl Scan {
    pub const START: Scan = Scan::Size { size: 0, digits: 0 };

    /// Advances over `bytes`.
    pub fn feed(mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            self = match self {
                Scan::Final | Scan::Invalid => return self,
                Scan::Size { size, digits } => {
                    let b = bytes[i];
                    i += 1;
                    match (b as char).to_digit(16) {
                        Some(d) if digits < 16 => Scan::Size {
                            size: (size << 4) | d as u64,
                            digits: digits + 1,
                        },
                        None if digits > 0 && (b == b';' || b == b'\r') => Scan::Header { size },
                        _ => Scan::Invalid,
                    }
                }
                Scan::Header { size } => match bytes[i..].iter().position(|&b| b == b'\n') {
                    None => return Scan::Header { size },
                    Some(p) => {
                        i += p + 1;
                        if size == 0 {
                            Scan::Final
                        } else {
                            Scan::Data { left: size }
                        }
                    }
                },
                Scan::Data { left } => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    if take == left {
                        Scan::DataEnd { left: 2 }
                    } else {
                        Scan::Data { left: left - take }
                    }
                }
                Scan::DataEnd { left } => {
                    i += 1;
                    if left == 1 {
                        Scan::START
                    } else {
                        Scan::DataEnd { left: left - 1 }
                    }
                }
            };
        }
        self
    }
}

/// A request body that scans aws-chunked framing as it passes (only when `active`: other bodies
/// pass through untouched).
pub struct Watched<B> {
    inner: B,
    active: bool,
    scan: Scan,
    seen: Arc<ChunkedFraming>,
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.active
            && let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.scan = this.scan.feed(data);
            let verdict = match this.scan {
                Scan::Final => SEEN_FINAL,
                Scan::Invalid => UNPARSABLE,
                _ => SEEN_NOTHING,
            };
            this.seen.state.store(verdict, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// True for requests whose body s3s decodes as aws-chunked.
pub fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"))
}

/// Wraps a request body with the watcher; for an aws-chunked request the watcher scans and its
/// verdict goes into the request extensions (s3s hands extensions on to the handlers).
pub fn watch<B>(req: http::Request<B>) -> http::Request<Watched<B>> {
    let chunked = is_aws_chunked(req.headers());
    let (mut parts, body) = req.into_parts();
    let seen = Arc::new(ChunkedFraming::default());
    if chunked {
        parts.extensions.insert(seen.clone());
    } else {
        // Not framed: nothing to check.
        seen.state.store(UNPARSABLE, Ordering::Release);
    }
    http::Request::from_parts(
        parts,
        Watched {
            inner: body,
            active: chunked,
            scan: Scan::START,
            seen,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(pieces: &[&[u8]]) -> Scan {
        pieces.iter().fold(Scan::START, |s, p| s.feed(p))
    }

    #[test]
    fn final_chunk_is_found_across_any_split() {
        let body = b"5;chunk-signature=ab\r\nhello\r\n0;chunk-signature=cd\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            assert_eq!(scan_all(&[a, b]), Scan::Final, "cut at {cut}");
        }
        // Unsigned trailer framing: `size\r\n`.
        assert_eq!(scan_all(&[b"3\r\nabc\r\n0\r\n"]), Scan::Final);
    }

    #[test]
    fn a_body_without_the_final_chunk_is_not_final() {
        let s = scan_all(&[b"5;chunk-signature=ab\r\nhello\r\n"]);
        assert_eq!(s, Scan::START);
        assert_ne!(scan_all(&[b"a\r\n0123"]), Scan::Final);
    }

    #[test]
    fn garbage_is_invalid_and_sizes_are_bounded() {
        assert_eq!(scan_all(&[b"zz\r\n"]), Scan::Invalid);
        assert_eq!(scan_all(&[b";\r\n"]), Scan::Invalid);
        assert_eq!(scan_all(&[b"11111111111111111\r\n"]), Scan::Invalid);
        // A huge declared size just skips (no allocation).
        assert_eq!(
            scan_all(&[b"ffffffffffffffff\r\n", &[0u8; 100]]),
            Scan::Data {
                left: u64::MAX - 100
            }
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // SplitMix64 stream of inputs, fed in random pieces: the scanner must never panic.
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let alphabet = b"0123456789abcdefXYZ;\r\n=:";
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let cut = (next() as usize) % (len + 1);
            let _ = Scan::START.feed(&bytes[..cut]).feed(&bytes[cut..]);
        }
    }
}
