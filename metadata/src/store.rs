//! The store handle: opening, the format check, the bounded retry loop, record encoding, and the
//! read/stage helpers that several operation families share.

use crate::keys::{self, Stamp, decode_id, encode_id};
use crate::kv::{self, Batch, Direction, KeyRange, OrderedKv, RocksKv, Space};
use crate::{BucketRecord, MetaError, NULL_VERSION, Result, VersionRecord};
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Format of every stored record: first byte of the value (see `docs/metadata-format.md`).
pub(crate) const FORMAT_V1: u8 = 1;
/// Bounded retries of a read-check-commit cycle that lost a compare-and-set race.
pub(crate) const MAX_ATTEMPTS: usize = 64;

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // postcard into a Vec cannot fail for our plain records.
    out.extend(postcard::to_stdvec(v).expect("postcard encodes plain records"));
    out
}

pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T> {
    match raw.split_first() {
        Some((&FORMAT_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| MetaError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(MetaError::Corrupt(format!("unknown record format {v}"))),
        None => Err(MetaError::Corrupt("empty record".into())),
    }
}

/// Per-object record in `Space::Heads`: the CAS point for every change to an object's versions.
/// `tag` is fresh on every change (no ABA); `null_stamp` locates the `null` version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) tag: Stamp,
    pub(crate) null_stamp: Option<Stamp>,
}

impl Head {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.tag);
        match &self.null_stamp {
            Some(s) => {
                out.push(1);
                out.extend_from_slice(s);
            }
            None => out.push(0),
        }
        out
    }
    pub(crate) fn decode(raw: &[u8]) -> Result<Head> {
        let corrupt = || MetaError::Corrupt("head record".into());
        if raw.first() != Some(&FORMAT_V1) || raw.len() < 18 {
            return Err(corrupt());
        }
        let tag: Stamp = raw[1..17].try_into().map_err(|_| corrupt())?;
        let null_stamp = match raw[17] {
            0 => None,
            1 => Some(
                raw.get(18..34)
                    .ok_or_else(corrupt)?
                    .try_into()
                    .map_err(|_| corrupt())?,
            ),
            _ => return Err(corrupt()),
        };
        Ok(Head { tag, null_stamp })
    }
}

/// What was read about one object before staging a change to it.
pub(crate) struct ObjectState {
    pub(crate) head_raw: Option<Vec<u8>>,
    pub(crate) head: Option<Head>,
    /// Latest version: (encoded key, record).
    pub(crate) latest: Option<(Vec<u8>, VersionRecord)>,
}

pub(crate) fn etag_eq(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// The metadata store. Cheap to clone (shared handle); safe to use from many threads.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) kv: Arc<dyn OrderedKv>,
    pub(crate) stamps: keys::StampGen,
    /// Next GC queue position; starts above anything stored and above the clock in µs, so
    /// positions keep increasing across restarts.
    pub(crate) gc_seq: AtomicU64,
}

impl MetaStore {
    /// Opens (creating if needed) the store in `dir` (a RocksDB directory).
    pub fn open(dir: &Path) -> Result<Self> {
        let kv = RocksKv::open(dir)?;
        Self::with_kv(Arc::new(kv))
    }

    /// A store over any [`OrderedKv`] engine.
    pub fn with_kv(kv: Arc<dyn OrderedKv>) -> Result<Self> {
        match kv.get(Space::Sys, b"format")? {
            Some(v) if v == [FORMAT_V1] => {}
            Some(v) => {
                return Err(MetaError::Corrupt(format!(
                    "unsupported store format {v:?}"
                )));
            }
            None => {
                let mut b = Batch::default();
                b.absent(Space::Sys, b"format");
                b.put(Space::Sys, b"format".to_vec(), vec![FORMAT_V1]);
                match kv.commit(b) {
                    Ok(()) | Err(MetaError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let last = kv.scan(
            Space::Gc,
            &KeyRange::new(Vec::new(), None),
            Direction::Reverse,
            1,
        )?;
        let after_last = match last.first() {
            Some((k, _)) => {
                u64::from_be_bytes(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| MetaError::Corrupt("gc key".into()))?,
                ) + 1
            }
            None => 0,
        };
        let clock_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Ok(MetaStore {
            inner: Arc::new(Inner {
                kv,
                stamps: keys::StampGen::default(),
                gc_seq: AtomicU64::new(after_last.max(clock_us)),
            }),
        })
    }

    pub(crate) fn kv(&self) -> &dyn OrderedKv {
        self.inner.kv.as_ref()
    }

    /// A new unique, time-ordered version id (URL-safe, at most 32 characters).
    pub fn new_version_id(&self) -> String {
        encode_id(&self.inner.stamps.next())
    }

    /// A new unique multipart upload id (URL-safe).
    pub fn new_upload_id(&self) -> String {
        encode_id(&self.inner.stamps.next())
    }

    /// Runs a read-check-commit cycle until it does not lose a CAS race (bounded).
    pub(crate) fn retry<T>(&self, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
        for n in 0..MAX_ATTEMPTS {
            match attempt() {
                Err(MetaError::Conflict) => {
                    // Let the winner finish; back off a little more on each loss.
                    std::thread::sleep(std::time::Duration::from_micros(50 * n as u64));
                }
                other => return other,
            }
        }
        Err(MetaError::Conflict)
    }


    pub(crate) fn read_bucket(&self, name: &str) -> Result<(Vec<u8>, BucketRecord)> {
        let raw = self
            .kv()
            .get(Space::Buckets, name.as_bytes())?
            .ok_or(MetaError::NoSuchBucket)?;
        let rec = decode(&raw)?;
        Ok((raw, rec))
    }

    pub(crate) fn require_bucket(&self, name: &str) -> Result<()> {
        self.kv()
            .get(Space::Buckets, name.as_bytes())?
            .map(|_| ())
            .ok_or(MetaError::NoSuchBucket)
    }

    pub(crate) fn read_object(&self, bucket: &str, key: &str) -> Result<ObjectState> {
        let okey = keys::object_key(bucket, key);
        // Head first: if anything changes after this read, the head's tag changes and the
        // commit conditioned on it fails.
        let head_raw = self.kv().get(Space::Heads, &okey)?;
        let head = head_raw.as_deref().map(Head::decode).transpose()?;
        let latest = self
            .kv()
            .scan(
                Space::Versions,
                &KeyRange::prefix(&okey),
                Direction::Forward,
                1,
            )?
            .into_iter()
            .next()
            .map(|(k, v)| decode(&v).map(|rec| (k, rec)))
            .transpose()?;
        Ok(ObjectState {
            head_raw,
            head,
            latest,
        })
    }

    /// The stamp of version `version_id` of an object, if it can exist.
    pub(crate) fn stamp_of(&self, head: Option<&Head>, version_id: &str) -> Option<Stamp> {
        if version_id == NULL_VERSION {
            head.and_then(|h| h.null_stamp)
        } else {
            decode_id(version_id)
        }
    }

    /// Every entry whose key starts with `prefix`, read page by page.
    pub(crate) fn scan_all(&self, space: Space, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        const PAGE: usize = 1000;
        let end = kv::prefix_successor(&prefix);
        let mut start = prefix;
        let mut out = Vec::new();
        loop {
            let rows = self.kv().scan(
                space,
                &KeyRange::new(start, end.clone()),
                Direction::Forward,
                PAGE,
            )?;
            let full = rows.len() == PAGE;
            let Some((last, _)) = rows.last() else { break };
            start = last.clone();
            start.push(0);
            out.extend(rows);
            if !full {
                break;
            }
        }
        Ok(out)
    }
}
