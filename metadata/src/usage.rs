//! Usage accounting: per bucket, the objects, versions, delete markers and bytes by storage
//! class it holds, and the requests it served (by class) with their bytes in and out.
//!
//! Stored usage is kept up to date incrementally, never by scanning: [`UsageKv`] wraps the
//! ordered KV and, for every batch that changes object versions, adds one delta record per
//! bucket *to the same batch*, so a delta exists exactly when its change committed (both
//! backends, any writer: PUT, DELETE, GC, lifecycle, archive). Every write gets its own delta
//! key, so concurrent writers (several gateways) never contend on a counter. Request counts
//! come from each process's meter as deltas too (`record_usage`). The leader folds deltas into
//! one totals record per bucket (`fold_usage`) and writes a sample of the totals per minute
//! (kept `MINUTE_SAMPLES_MS`) and per hour (kept until pruned), which `strata admin usage`
//! reads. Format: docs/metadata-format.md "Usage".

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::keys::{STAMP_LEN, StampGen};
use crate::kv::{Batch, Condition, Direction, KeyRange, Op, OrderedKv, Space, prefix_successor};
use crate::store::{decode, encode};
use crate::{MetaError, MetaStore, Result, VersionRecord};

const DELTA_PREFIX: &[u8] = b"usage/d/";
const TOTAL_PREFIX: &[u8] = b"usage/t/";
const MINUTE_PREFIX: &[u8] = b"usage/m/";
const HOUR_PREFIX: &[u8] = b"usage/h/";

/// Minute samples are kept two days; hourly samples until `prune_usage_samples` drops them.
pub const MINUTE_SAMPLES_MS: i64 = 2 * 24 * 3600 * 1000;

/// A change of one bucket's usage (signed: deletions subtract).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    pub bucket: String,
    #[serde(default)]
    pub objects: i64,
    #[serde(default)]
    pub versions: i64,
    #[serde(default)]
    pub delete_markers: i64,
    /// Logical bytes of non-marker versions by storage class.
    #[serde(default)]
    pub bytes: BTreeMap<String, i64>,
    #[serde(default)]
    pub requests: RequestCounts,
}

/// Requests by billing class (as S3 prices them) and their payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// PUT, COPY, POST and LIST requests.
    #[serde(default)]
    pub write_list: u64,
    /// GET, HEAD and every other read.
    #[serde(default)]
    pub read: u64,
    /// DELETE and abort requests (not billed by S3, counted all the same).
    #[serde(default)]
    pub delete: u64,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
}

impl RequestCounts {
    pub fn add(&mut self, o: &RequestCounts) {
        self.write_list += o.write_list;
        self.read += o.read;
        self.delete += o.delete;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }

    pub fn is_zero(&self) -> bool {
        *self == RequestCounts::default()
    }
}

impl UsageDelta {
    fn is_zero(&self) -> bool {
        self.objects == 0
            && self.versions == 0
            && self.delete_markers == 0
            && self.bytes.values().all(|b| *b == 0)
            && self.requests.is_zero()
    }

    fn count(&mut self, v: &VersionRecord, sign: i64) {
        if v.is_delete_marker {
            self.delete_markers += sign;
        } else {
            self.versions += sign;
            *self.bytes.entry(v.storage_class.clone()).or_default() += sign * v.size as i64;
        }
    }
}

/// One bucket's usage: what it stores now and what it has served since it was created
/// (cumulative counters: the difference of two samples is the usage between them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub bucket: String,
    /// The bucket's owner (user id) when the totals were last folded.
    pub owner: String,
    pub objects: i64,
    pub versions: i64,
    pub delete_markers: i64,
    pub bytes: BTreeMap<String, i64>,
    pub requests: RequestCounts,
    /// When these totals were folded (Unix ms).
    pub at_ms: i64,
}

impl UsageTotals {
    fn apply(&mut self, d: &UsageDelta) {
        self.objects += d.objects;
        self.versions += d.versions;
        self.delete_markers += d.delete_markers;
        for (class, b) in &d.bytes {
            *self.bytes.entry(class.clone()).or_default() += b;
        }
        self.bytes.retain(|_, b| *b != 0);
        self.requests.add(&d.requests);
    }

    pub fn stored_bytes(&self) -> i64 {
        self.bytes.values().sum()
    }
}

/// What one fold did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FoldReport {
    pub deltas: usize,
    pub buckets: usize,
    /// More deltas are waiting (the pass stopped at its limit).
    pub more: bool,
}

/// The ordered KV with usage accounting on every batch that changes object versions.
pub struct UsageKv {
    inner: Arc<dyn OrderedKv>,
    stamps: StampGen,
}

impl UsageKv {
    pub fn new(inner: Arc<dyn OrderedKv>) -> Self {
        UsageKv {
            inner,
            stamps: StampGen::default(),
        }
    }

    /// The usage change a batch makes, per bucket. Old values come from the batch's own
    /// conditions (every version write states what it replaces) or, failing that, a read;
    /// whether an object is live (latest version not a delete marker) before and after is
    /// read from its newest versions, which the batch's head condition keeps stable.
    fn deltas(&self, batch: &Batch) -> Result<Vec<UsageDelta>> {
        // Per object: the version keys the batch puts (with values) and deletes.
        let mut objects: BTreeMap<&[u8], ObjectOps> = BTreeMap::new();
        for op in &batch.ops {
            match op {
                Op::Put {
                    space: Space::Versions,
                    key,
                    value,
                } => objects
                    .entry(object_of(key)?)
                    .or_default()
                    .puts
                    .push((key, value)),
                Op::Delete {
                    space: Space::Versions,
                    key,
                } => objects.entry(object_of(key)?).or_default().dels.push(key),
                _ => {}
            }
        }
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let mut stated: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
        for c in &batch.conditions {
            match c {
                Condition::Equals {
                    space: Space::Versions,
                    key,
                    value,
                } => {
                    stated.insert(key, Some(value));
                }
                Condition::Absent {
                    space: Space::Versions,
                    key,
                } => {
                    stated.insert(key, None);
                }
                _ => {}
            }
        }
        let mut per_bucket: BTreeMap<String, UsageDelta> = BTreeMap::new();
        for (okey, ObjectOps { puts, dels }) in objects {
            let bucket = bucket_of(okey)?;
            let d = per_bucket
                .entry(bucket.clone())
                .or_insert_with(|| UsageDelta {
                    bucket,
                    ..Default::default()
                });
            // The newest versions before the batch: enough of them that one survives the
            // batch's deletes, if any does.
            let before = self.inner.scan(
                Space::Versions,
                &KeyRange::new(okey.to_vec(), prefix_successor(okey)),
                Direction::Forward,
                dels.len() + 1,
            )?;
            let old_value = |key: &[u8]| -> Result<Option<Vec<u8>>> {
                if let Some(v) = stated.get(key) {
                    return Ok(v.map(<[u8]>::to_vec));
                }
                if let Some((_, v)) = before.iter().find(|(k, _)| k == key) {
                    return Ok(Some(v.clone()));
                }
                self.inner.get(Space::Versions, key)
            };
            let mut after: BTreeMap<Vec<u8>, Vec<u8>> = before.iter().cloned().collect();
            for key in &dels {
                if let Some(old) = old_value(key)? {
                    d.count(&decode(&old)?, -1);
                }
                after.remove(*key);
            }
            for (key, value) in &puts {
                if !dels.contains(key)
                    && let Some(old) = old_value(key)?
                {
                    d.count(&decode(&old)?, -1);
                }
                d.count(&decode(value)?, 1);
                after.insert(key.to_vec(), value.to_vec());
            }
            let live = |v: Option<&Vec<u8>>| -> Result<i64> {
                Ok(match v {
                    Some(raw) => i64::from(!decode::<VersionRecord>(raw)?.is_delete_marker),
                    None => 0,
                })
            };
            d.objects += live(after.values().next())? - live(before.first().map(|(_, v)| v))?;
        }
        Ok(per_bucket.into_values().filter(|d| !d.is_zero()).collect())
    }

    fn delta_key(&self) -> Vec<u8> {
        [DELTA_PREFIX, &self.stamps.next()].concat()
    }
}

/// What one batch does to one object's versions: keys put (with their new values), deleted.
#[derive(Default)]
struct ObjectOps<'a> {
    puts: Vec<(&'a [u8], &'a [u8])>,
    dels: Vec<&'a [u8]>,
}

/// `bucket 0x00 esc(key) 0x00 0x01` of a version key (which ends in a stamp).
fn object_of(vkey: &[u8]) -> Result<&[u8]> {
    vkey.len()
        .checked_sub(STAMP_LEN)
        .filter(|n| *n > 0)
        .map(|n| &vkey[..n])
        .ok_or_else(|| MetaError::Corrupt("version key too short".into()))
}

fn bucket_of(okey: &[u8]) -> Result<String> {
    let end = okey
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| MetaError::Corrupt("object key without a bucket".into()))?;
    String::from_utf8(okey[..end].to_vec())
        .map_err(|_| MetaError::Corrupt("bucket name is not UTF-8".into()))
}

impl OrderedKv for UsageKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(space, range, direction, limit)
    }

    fn commit(&self, mut batch: Batch) -> Result<()> {
        for d in self.deltas(&batch)? {
            batch.put(Space::Sys, self.delta_key(), encode(&d));
        }
        self.inner.commit(batch)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        self.inner.checkpoint(dir)
    }
}

fn total_key(bucket: &str) -> Vec<u8> {
    [TOTAL_PREFIX, bucket.as_bytes()].concat()
}

fn sample_key(prefix: &[u8], bucket: &str, at_ms: i64) -> Vec<u8> {
    let mut k = [prefix, bucket.as_bytes(), &[0]].concat();
    k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k
}

fn sample_range(prefix: &[u8], bucket: &str, from_ms: i64, to_ms: Option<i64>) -> KeyRange {
    KeyRange::new(
        sample_key(prefix, bucket, from_ms),
        Some(match to_ms {
            Some(t) => sample_key(prefix, bucket, t),
            None => [prefix, bucket.as_bytes(), &[1]].concat(),
        }),
    )
}

impl MetaStore {
    /// Stages request counts (from a process's meter) as deltas, in one batch.
    pub fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        for chunk in deltas.chunks(100) {
            let mut b = Batch::default();
            for d in chunk.iter().filter(|d| !d.is_zero()) {
                let key = [DELTA_PREFIX, &self.inner.stamps.next()].concat();
                b.absent(Space::Sys, &key);
                b.put(Space::Sys, key, encode(d));
            }
            if !b.ops.is_empty() {
                self.kv().commit(b)?;
            }
        }
        Ok(())
    }

    /// Folds up to `limit` deltas into their buckets' totals and samples, atomically per pass
    /// (a conflict with another folder changes nothing: the next pass retries). Deltas of a
    /// bucket that no longer exists are dropped, with its totals once it stores nothing.
    pub fn fold_usage(&self, limit: usize, now_ms: i64) -> Result<FoldReport> {
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::prefix(DELTA_PREFIX),
            Direction::Forward,
            limit,
        )?;
        let mut report = FoldReport {
            deltas: rows.len(),
            more: rows.len() == limit,
            ..Default::default()
        };
        if rows.is_empty() {
            return Ok(report);
        }
        let mut b = Batch::default();
        let mut by_bucket: BTreeMap<String, Vec<UsageDelta>> = BTreeMap::new();
        for (k, v) in rows {
            b.present(Space::Sys, &k);
            b.delete(Space::Sys, k);
            let d: UsageDelta = decode(&v)?;
            by_bucket.entry(d.bucket.clone()).or_default().push(d);
        }
        report.buckets = by_bucket.len();
        for (bucket, deltas) in by_bucket {
            let owner = match self.kv().get(Space::Buckets, bucket.as_bytes())? {
                Some(r) => decode::<crate::BucketRecord>(&r)?.owner,
                // Gone (requests to it after the delete): nothing new is counted for a bucket
                // that is not; its last totals and samples stay for the record until pruned.
                None => continue,
            };
            let tk = total_key(&bucket);
            let raw = self.kv().get(Space::Sys, &tk)?;
            b.unchanged(Space::Sys, &tk, raw.as_deref());
            let mut t: UsageTotals = match &raw {
                Some(r) => decode(r)?,
                None => UsageTotals {
                    bucket: bucket.clone(),
                    ..Default::default()
                },
            };
            for d in &deltas {
                t.apply(d);
            }
            t.owner = owner;
            t.at_ms = now_ms;
            let minute = now_ms - now_ms.rem_euclid(60_000);
            let hour = now_ms - now_ms.rem_euclid(3_600_000);
            b.put(
                Space::Sys,
                sample_key(MINUTE_PREFIX, &bucket, minute),
                encode(&t),
            );
            b.put(
                Space::Sys,
                sample_key(HOUR_PREFIX, &bucket, hour),
                encode(&t),
            );
            b.put(Space::Sys, tk, encode(&t));
        }
        self.kv().commit(b)?;
        Ok(report)
    }

    /// Every bucket's folded totals, in bucket order (at most `limit`).
    pub fn usage_totals(&self, limit: usize) -> Result<Vec<UsageTotals>> {
        self.kv()
            .scan(
                Space::Sys,
                &KeyRange::prefix(TOTAL_PREFIX),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// One bucket's samples from `since_ms` on, oldest first: per minute when `since_ms` is
    /// within the minute samples' retention, else per hour.
    pub fn usage_samples(
        &self,
        bucket: &str,
        since_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<UsageTotals>> {
        let prefix = if now_ms - since_ms <= MINUTE_SAMPLES_MS {
            MINUTE_PREFIX
        } else {
            HOUR_PREFIX
        };
        self.kv()
            .scan(
                Space::Sys,
                &sample_range(prefix, bucket, since_ms, None),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Drops minute samples older than their retention and hourly samples older than
    /// `keep_hours_ms`, for up to `limit` samples of the buckets with totals, and the totals of
    /// a deleted bucket once its last hourly sample is that old.
    pub fn prune_usage_samples(
        &self,
        now_ms: i64,
        keep_hours_ms: i64,
        limit: usize,
    ) -> Result<usize> {
        let mut b = Batch::default();
        for t in self.usage_totals(100_000)? {
            if t.at_ms < now_ms - keep_hours_ms
                && self
                    .kv()
                    .get(Space::Buckets, t.bucket.as_bytes())?
                    .is_none()
            {
                b.delete(Space::Sys, total_key(&t.bucket));
            }
            for (prefix, keep) in [
                (MINUTE_PREFIX, MINUTE_SAMPLES_MS),
                (HOUR_PREFIX, keep_hours_ms),
            ] {
                let left = limit.saturating_sub(b.ops.len());
                if left == 0 {
                    break;
                }
                let old = self.kv().scan(
                    Space::Sys,
                    &sample_range(prefix, &t.bucket, 0, Some(now_ms - keep)),
                    Direction::Forward,
                    left,
                )?;
                for (k, _) in old {
                    b.delete(Space::Sys, k);
                }
            }
        }
        let n = b.ops.len();
        if n > 0 {
            self.kv().commit(b)?;
        }
        Ok(n)
    }
}
