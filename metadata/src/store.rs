//! The store handle: opening, the format check, the bounded retry loop, record encoding, and the
//! read/stage helpers that several operation families share.

use crate::coord::{
    Coordinator, EtcdCoordinator, EtcdHousekeeping, Housekeeping, LocalCoordinator,
};
use crate::keys::{self, Stamp, decode_id, encode_id};
use crate::kv::{self, Batch, Direction, KeyRange, OrderedKv, RocksKv, Space};
use crate::kv_etcd::{EtcdConfig, EtcdHandle, EtcdKv};
use crate::{BucketRecord, MetaError, NULL_VERSION, Result, VersionRecord};
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

/// Store format: `sys/format` holds this one byte, and every record value starts with it (see
/// `docs/metadata-format.md`). Format 1 (postcard) stores are refused at open.
pub(crate) const FORMAT: u8 = 2;
/// Bounded retries of a read-check-commit cycle that lost a compare-and-set race.
pub(crate) const MAX_ATTEMPTS: usize = 64;
/// Default grace period between queuing data for GC and deleting its chunks.
pub const DEFAULT_GC_GRACE_MS: i64 = 15 * 60 * 1000;

/// `FORMAT` then the record as a MessagePack map with field names: a field added later (with
/// `#[serde(default)]`) decodes from records written before it.
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    encode_into(&mut out, v);
    out
}

pub(crate) fn encode_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // Into a Vec, with plain records (string map keys), this cannot fail.
    rmp_serde::encode::write_named(out, v).expect("MessagePack encodes plain records");
}

pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T> {
    match raw.split_first() {
        Some((&FORMAT, rest)) => decode_body(rest),
        Some((v, _)) => Err(MetaError::Corrupt(format!("unknown record format {v}"))),
        None => Err(MetaError::Corrupt("empty record".into())),
    }
}

pub(crate) fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    rmp_serde::from_slice(body).map_err(|e| MetaError::Corrupt(e.to_string()))
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
        out.push(FORMAT);
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
        if raw.first() != Some(&FORMAT) || raw.len() < 18 {
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
    /// Low bits of GC queue positions (see `gc.rs`); random start, so that processes sharing
    /// the store rarely pick the same position in the same millisecond.
    pub(crate) gc_seq: AtomicU64,
    pub(crate) gc_grace_ms: AtomicI64,
    /// Leases and elections for processes sharing this store.
    pub(crate) coordinator: Arc<dyn Coordinator>,
    /// History compaction / defragmentation, for backends that keep history (etcd).
    pub(crate) housekeeping: Option<Arc<dyn Housekeeping>>,
}

impl MetaStore {
    /// Opens (creating if needed) the store in `dir` (a RocksDB directory).
    pub fn open(dir: &Path) -> Result<Self> {
        let kv = RocksKv::open(dir)?;
        Self::with_kv(Arc::new(kv))
    }

    /// Opens the store on etcd (see `kv_etcd`): a KV, leases/elections and housekeeping over
    /// one client.
    pub fn open_etcd(cfg: EtcdConfig) -> Result<Self> {
        let handle = Arc::new(EtcdHandle::connect(cfg)?);
        let kv = Arc::new(EtcdKv::over(handle.clone()));
        Self::with_parts(
            kv,
            Arc::new(EtcdCoordinator::new(handle.clone())),
            Some(Arc::new(EtcdHousekeeping::new(handle))),
        )
    }

    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` opens [`MetaStore::open_etcd`]; anything else
    /// is a RocksDB directory path ([`MetaStore::open`]).
    pub fn open_url(url: &str) -> Result<Self> {
        if url.starts_with("etcd://") {
            Self::open_etcd(EtcdConfig::from_url(url)?)
        } else {
            Self::open(Path::new(url))
        }
    }

    /// The coordination primitives of this store's backend (always-leader for RocksDB).
    pub fn coordinator(&self) -> Arc<dyn Coordinator> {
        self.inner.coordinator.clone()
    }

    /// History compaction / defragmentation (`None`: the backend needs none, e.g. RocksDB).
    pub fn housekeeping(&self) -> Option<Arc<dyn Housekeeping>> {
        self.inner.housekeeping.clone()
    }

    /// `"etcd"` for a shared etcd store, `"rocksdb"` otherwise (a KV given to
    /// [`MetaStore::with_kv`] coordinates as a single process, like RocksDB).
    pub fn backend(&self) -> &'static str {
        match self.inner.coordinator.backend() {
            "etcd" => "etcd",
            _ => "rocksdb",
        }
    }

    /// A store over any [`OrderedKv`] engine.
    pub fn with_kv(kv: Arc<dyn OrderedKv>) -> Result<Self> {
        Self::with_parts(kv, Arc::new(LocalCoordinator::default()), None)
    }

    /// A store over a KV with its coordination primitives and housekeeping.
    pub fn with_parts(
        kv: Arc<dyn OrderedKv>,
        coordinator: Arc<dyn Coordinator>,
        housekeeping: Option<Arc<dyn Housekeeping>>,
    ) -> Result<Self> {
        match kv.get(Space::Sys, b"format")? {
            Some(v) if v == [FORMAT] => {}
            Some(v) if v == [1] => {
                return Err(MetaError::UnsupportedFormat(
                    "this metadata store has format 1 (written by a pre-release Strata before \
                     format 2); this version reads only format 2 and does not convert. Stop the \
                     server, move the data directory away (or restore a format 2 backup) and \
                     start again with an empty data directory"
                        .into(),
                ));
            }
            Some(v) => {
                return Err(MetaError::UnsupportedFormat(format!(
                    "unknown metadata store format {v:?} (this version reads format {FORMAT}); \
                     was it written by a newer Strata?"
                )));
            }
            None => {
                let mut b = Batch::default();
                b.absent(Space::Sys, b"format");
                b.put(Space::Sys, b"format".to_vec(), vec![FORMAT]);
                match kv.commit(b) {
                    Ok(()) | Err(MetaError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(MetaStore {
            inner: Arc::new(Inner {
                // Every batch that changes versions carries its usage delta (`usage.rs`).
                kv: Arc::new(crate::usage::UsageKv::new(kv)),
                stamps: keys::StampGen::default(),
                gc_seq: AtomicU64::new(rand::random()),
                gc_grace_ms: AtomicI64::new(DEFAULT_GC_GRACE_MS),
                coordinator,
                housekeeping,
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
    pub(crate) fn scan_all(
        &self,
        space: Space,
        prefix: Vec<u8>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A record as an older version wrote it.
    #[derive(Serialize)]
    struct Before {
        name: String,
        size: u64,
    }

    /// The same record after a release added fields.
    #[derive(Deserialize, Debug, PartialEq)]
    struct After {
        name: String,
        size: u64,
        #[serde(default)]
        archived: bool,
        #[serde(default)]
        restore_expiry: Option<i64>,
    }

    #[test]
    fn a_record_missing_a_new_field_decodes_with_its_default() {
        let raw = encode(&Before {
            name: "k".into(),
            size: 7,
        });
        assert_eq!(raw[0], FORMAT);
        let got: After = decode(&raw).unwrap();
        assert_eq!(
            got,
            After {
                name: "k".into(),
                size: 7,
                archived: false,
                restore_expiry: None
            }
        );
        // And the other way: an older reader skips fields it does not know.
        #[derive(Serialize)]
        struct Newer {
            name: String,
            size: u64,
            epoch: u32,
        }
        let raw = encode(&Newer {
            name: "k".into(),
            size: 7,
            epoch: 3,
        });
        let old: After = decode(&raw).unwrap();
        assert_eq!(old.size, 7);
    }

    #[test]
    fn records_of_another_format_are_corrupt_not_misread() {
        let mut raw = encode(&Before {
            name: "k".into(),
            size: 7,
        });
        raw[0] = 1;
        assert!(matches!(decode::<After>(&raw), Err(MetaError::Corrupt(_))));
        assert!(matches!(decode::<After>(&[]), Err(MetaError::Corrupt(_))));
        assert!(matches!(
            decode::<After>(&[FORMAT, 0xc1]),
            Err(MetaError::Corrupt(_))
        ));
    }
}
