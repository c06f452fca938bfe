//! Reading the `multipart/form-data` body of an HTML-form upload (PostObject) at the edge, with
//! bounded memory: the fields before the file are read into memory up to S3's 20 KiB
//! ([`PRE_DATA_LIMIT`], counted in raw body bytes up to the file's first byte), the file part
//! is handed on as a stream, fields after it are ignored (as S3 does). s3s's own PostObject
//! support reads the whole file into memory before any access check, so the front does not let
//! it see form POSTs.
//!
//! The raw body is read into a prefix until the file part's header is complete in it (a small
//! scanner finds the delimiters and the part whose Content-Disposition is `form-data` named
//! `file`, in any case); the fields before it are parsed from that prefix, in memory, by
//! `multer`; the file part (the prefix from its delimiter on, then the rest of the body) is
//! parsed by `multer` as a stream fed through [`Paced`], which hands it one piece of at most
//! [`FILE_PIECE`] bytes per poll (multer pulls from its input until that returns `Pending`, so
//! without pacing a fast client could make it buffer more than it hands on).
//! `fuzz/fuzz_targets/post_form.rs` runs [`fuzz_form`]; so does `tests::fuzz_body_on_stable`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// S3: "The form data and boundaries (excluding the contents of the file) cannot exceed 20KB."
pub const PRE_DATA_LIMIT: u64 = 20 * 1024;
/// The most the parser is handed per poll in the file part.
pub const FILE_PIECE: usize = 256 * 1024;

/// Why a form could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum FormError {
    /// 400 MaxPostPreDataLengthExceeded.
    PreDataTooLarge,
    /// 400 MalformedPOSTRequest.
    Malformed,
    /// 400 InvalidArgument "POST requires exactly one file upload per request."
    NoFile,
    /// The body failed underneath (a stall, a reset): the front answers from its body flags.
    Body(String),
}

/// The form read up to the start of the file part.
pub struct Form {
    /// Fields before the file, (name as sent, value), in form order.
    pub fields: Vec<(String, String)>,
    /// The `filename` of the file part, if it has one.
    pub filename: Option<String>,
    /// The file's bytes, streaming.
    pub file: multer::Field<'static>,
    /// Raw body bytes read so far.
    pub consumed: Arc<AtomicU64>,
    /// The parser, to skip what follows the file once it is read.
    pub rest: multer::Multipart<'static>,
}

impl Form {
    /// The value of a field (names are case-insensitive, as S3 reads them).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The boundary of a `multipart/form-data` Content-Type, if it has a usable one.
pub fn boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type)
        .ok()
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hands the inner stream on in pieces of at most [`FILE_PIECE`] bytes, one per poll (the next
/// poll returns `Pending` after waking itself), counting the bytes.
pub struct Paced<S> {
    inner: S,
    pending: Bytes,
    just_yielded: bool,
    consumed: Arc<AtomicU64>,
}

impl<S> Paced<S> {
    pub fn new(inner: S, first: Bytes, consumed: Arc<AtomicU64>) -> Self {
        Paced {
            inner,
            pending: first,
            just_yielded: false,
            consumed,
        }
    }
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.just_yielded {
            this.just_yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(FILE_PIECE);
                this.just_yielded = true;
                return Poll::Ready(Some(Ok(this.pending.split_to(n))));
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    this.consumed.fetch_add(b.len() as u64, Ordering::Relaxed);
                    this.pending = b;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A file name as S3 uses it for `${filename}`: the text after the last `/` or `\`.
pub fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Whether a part's header block names the file: `Content-Disposition: form-data; name="file"`.
fn is_file_part(headers: &[u8]) -> bool {
    let text = String::from_utf8_lossy(headers);
    text.split("\r\n").any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("content-disposition") {
            return false;
        }
        let mut params = value.split(';');
        let kind = params.next().unwrap_or_default().trim();
        kind.eq_ignore_ascii_case("form-data")
            && params.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("name")
                        && v.trim().trim_matches('"').eq_ignore_ascii_case("file")
                })
            })
    })
}

/// Where the file part starts in `buf` (its delimiter) and where its data starts; `None` when
/// `buf` does not hold it (yet). Delimiters count at the start or after a CRLF, as RFC 2046 says.
fn find_file_part(buf: &[u8], boundary: &str) -> Option<(usize, usize)> {
    let delim = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delim.as_bytes());
    let mut from = 0;
    while let Some(i) = finder.find(&buf[from..]) {
        let at = from + i;
        from = at + 1;
        if at != 0 && !(at >= 2 && &buf[at - 2..at] == b"\r\n") {
            continue;
        }
        let mut h = at + delim.len();
        if buf[h..].starts_with(b"--") {
            return None;
        }
        while h < buf.len() && (buf[h] == b' ' || buf[h] == b'\t') {
            h += 1;
        }
        if !buf[h..].starts_with(b"\r\n") {
            continue;
        }
        let block = h + 2;
        let (headers, data) = if buf[block..].starts_with(b"\r\n") {
            (&buf[block..block], block + 2)
        } else {
            let end = memchr::memmem::find(&buf[block..], b"\r\n\r\n")?;
            (&buf[block..block + end], block + end + 4)
        };
        if is_file_part(headers) {
            return Some((at, data));
        }
        from = data.min(buf.len());
    }
    None
}

/// Parses complete, in-memory form data (the fields before the file) with multer.
async fn parse_fields(data: Bytes, boundary: &str) -> Result<Vec<(String, String)>, FormError> {
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(data) });
    let mut form = multer::Multipart::new(body, boundary.to_string());
    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(fields),
            Err(_) => return Err(FormError::Malformed),
        };
        let name = field.name().unwrap_or_default().to_string();
        let value = field.bytes().await.map_err(|_| FormError::Malformed)?;
        let value = String::from_utf8_lossy(&value).into_owned();
        // S3: several fields of one name count as one, their values joined by commas.
        match fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => fields.push((name, value)),
        }
    }
}

/// Reads the body up to the start of the file's data (at most [`PRE_DATA_LIMIT`] bytes, else
/// `PreDataTooLarge`), parses the fields before the file, and returns the file as a stream.
pub async fn read_form<S, E>(mut body: S, boundary: &str) -> Result<Form, FormError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let consumed = Arc::new(AtomicU64::new(0));
    let mut prefix = BytesMut::new();
    let (part, data) = loop {
        if let Some(found) = find_file_part(&prefix, boundary) {
            break found;
        }
        if prefix.len() as u64 > PRE_DATA_LIMIT {
            return Err(FormError::PreDataTooLarge);
        }
        match body.next().await {
            Some(Ok(b)) => {
                consumed.fetch_add(b.len() as u64, Ordering::Relaxed);
                prefix.extend_from_slice(&b);
            }
            Some(Err(e)) => return Err(FormError::Body(e.into().to_string())),
            None => {
                // The whole body is here and has no file part: a form without one, or not a form.
                let closed =
                    memchr::memmem::find(&prefix, format!("--{boundary}--").as_bytes()).is_some();
                return match parse_fields(prefix.freeze(), boundary).await {
                    Ok(_) if closed => Err(FormError::NoFile),
                    _ => Err(FormError::Malformed),
                };
            }
        }
    };
    if data as u64 > PRE_DATA_LIMIT {
        return Err(FormError::PreDataTooLarge);
    }
    let prefix = prefix.freeze();
    let fields = if part == 0 {
        Vec::new()
    } else {
        let mut before = BytesMut::from(&prefix[..part]);
        before.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        parse_fields(before.freeze(), boundary).await?
    };
    let rest = Paced::new(body, prefix.slice(part..), consumed.clone());
    let mut form = multer::Multipart::new(rest, boundary.to_string());
    let file = match form.next_field().await {
        Ok(Some(f)) => f,
        _ => return Err(FormError::Malformed),
    };
    Ok(Form {
        fields,
        filename: file.file_name().map(str::to_string),
        file,
        consumed,
        rest: form,
    })
}

/// The fuzz body: read arbitrary bytes as a form (with a fixed boundary, and with the first
/// line as the boundary), drain the file; must never panic nor loop.
pub fn fuzz_form(data: &[u8]) {
    let first_line = data
        .split(|&b| b == b'\n')
        .next()
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_start_matches('-')
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    for b in ["XyZ", first_line.as_str()] {
        if b.is_empty() {
            continue;
        }
        let pieces: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = futures::stream::iter(pieces);
        futures::executor::block_on(async {
            if let Ok(mut form) = read_form(body, b).await {
                let _ = form.field("key");
                let _ = form.filename.as_deref().map(base_name);
                let mut n = 0usize;
                while let Ok(Some(c)) = form.file.chunk().await {
                    n += c.len();
                }
                assert!(n <= data.len());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, value) in parts {
            out.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
            if let Some(f) = filename {
                out.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    fn read(data: Vec<u8>, piece: usize) -> Result<(Form, Vec<u8>), FormError> {
        let pieces: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::executor::block_on(async {
            let mut form = read_form(futures::stream::iter(pieces), "XyZ").await?;
            let mut file = Vec::new();
            while let Some(c) = form.file.chunk().await.map_err(|_| FormError::Malformed)? {
                file.extend_from_slice(&c);
            }
            Ok((form, file))
        })
    }

    #[test]
    fn fields_then_streamed_file_then_ignored_fields() {
        let data = body(&[
            ("key", None, b"user/${filename}"),
            ("X-Amz-Meta-A", None, b"1"),
            ("x-amz-meta-a", None, b"2"),
            ("File", Some("C:\\dir\\photo.jpg"), &[7u8; 300_000]),
            ("after", None, b"ignored"),
        ]);
        for piece in [1, 13, 4096, 1 << 20] {
            let (form, file) =
                read(data.clone(), piece).unwrap_or_else(|e| panic!("{piece}: {e:?}"));
            assert_eq!(form.field("KEY"), Some("user/${filename}"));
            assert_eq!(form.field("x-amz-meta-a"), Some("1,2"));
            assert_eq!(form.field("after"), None);
            assert_eq!(form.filename.as_deref().map(base_name), Some("photo.jpg"));
            assert_eq!(file, vec![7u8; 300_000]);
        }
    }

    #[test]
    fn pre_data_is_capped_and_the_file_is_not_buffered() {
        let big = vec![b'x'; PRE_DATA_LIMIT as usize + 1];
        let data = body(&[("x-ignore-pad", None, &big), ("file", None, b"f")]);
        assert_eq!(read(data, 1 << 20).err(), Some(FormError::PreDataTooLarge));
        // A part header that never ends is cut at the limit, not read to the end.
        let mut endless = b"--XyZ\r\nContent-Disposition: form-data; name=\"a".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 4 << 20));
        let pieces: Vec<Result<Bytes, std::io::Error>> = endless
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let taken = Arc::new(AtomicU64::new(0));
        let counter = taken.clone();
        let stream = futures::stream::iter(pieces).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        futures::executor::block_on(async {
            assert_eq!(
                read_form(stream, "XyZ").await.err(),
                Some(FormError::PreDataTooLarge)
            );
        });
        assert!(
            taken.load(Ordering::Relaxed) <= 8,
            "read {} pieces",
            taken.load(Ordering::Relaxed)
        );
        // Many small fields are fine; the file part may be of any size: it is streamed.
        let file = vec![1u8; 2 << 20];
        let mut parts: Vec<(String, Vec<u8>)> = (0..150)
            .map(|i| (format!("x-ignore-{i}"), b"v".to_vec()))
            .collect();
        parts.push(("key".into(), b"k".to_vec()));
        let mut data = Vec::new();
        for (n, v) in &parts {
            data.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n").as_bytes(),
            );
            data.extend_from_slice(v);
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
        data.extend_from_slice(&file);
        data.extend_from_slice(b"\r\n--XyZ--\r\n");
        let (form, got) = read(data, 1 << 20).unwrap();
        assert_eq!(form.fields.len(), 151);
        assert_eq!(form.field("key"), Some("k"));
        assert_eq!(got, file);
    }

    #[test]
    fn no_file_and_malformed() {
        let data = body(&[("key", None, b"k")]);
        assert_eq!(read(data, 5).err(), Some(FormError::NoFile));
        assert_eq!(
            read(b"garbage".to_vec(), 5).err(),
            Some(FormError::Malformed)
        );
        // A part with another disposition is not the file.
        let data = b"--XyZ\r\nContent-Disposition: file; name=\"file\"\r\n\r\nx\r\n--XyZ--\r\n";
        assert_eq!(read(data.to_vec(), 5).err(), Some(FormError::NoFile));
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
    }

    #[test]
    fn fuzz_body_on_stable() {
        let valid = body(&[
            ("key", None, b"a/${filename}"),
            ("policy", None, b"eyJ9"),
            ("file", Some("x/y.txt"), b"hello world"),
            ("submit", None, b"go"),
        ]);
        fuzz_form(&valid);
        let mut state: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..2000 {
            let mut data = valid.clone();
            for _ in 0..1 + next() % 4 {
                let pos = (next() as usize) % data.len();
                match next() % 3 {
                    0 => data[pos] = next() as u8,
                    1 => {
                        data.remove(pos);
                    }
                    _ => data.insert(pos, b"-\r\n\";=XyZ"[(next() % 9) as usize]),
                }
            }
            if i % 4 == 0 {
                data = (0..(next() % 96)).map(|_| next() as u8).collect();
            }
            fuzz_form(&data);
        }
    }
}
