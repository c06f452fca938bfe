//! The GC queue (data no version references any more), write intents (data being written that
//! no version references yet) and the process instances that own those intents.
//!
//! Invariant kept by every batch here: a blob is referenced by a committed record, or has a
//! write intent, or is in the GC queue — and never two of those at once. A commit that references
//! a new blob consumes its intent (`Present` condition + delete); the sweep and `discard_write`
//! consume it too (`Equals` + delete) and queue the chunks instead; exactly one of them wins.

use crate::keys::now_ms;
use crate::kv::{self, Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{
    BlobId, DestroyedVersion, GcItem, GcStats, InstanceRecord, KeyRef, MetaError, MetaStore,
    Result, Segment,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Write intents live in the Sys space under this prefix, keyed by blob id.
pub(crate) const INTENT_PREFIX: &[u8] = b"intent/";
/// Process instances: `instance/` + instance id.
const INSTANCE_PREFIX: &[u8] = b"instance/";
/// The intent sweep's resume point (a worker state).
const SWEEP_CURSOR: &str = "intent-sweep";
/// Intents looked at per `sweep_interrupted_writes` call, in pages.
const SWEEP_PAGE: usize = 256;
const SWEEP_PAGES: usize = 40;
/// `gc_stats` counts at most this many queue entries (bounded cost).
pub const GC_STATS_LIMIT: usize = 100_000;
/// GC positions: `due` (Unix ms) in the high 42 bits (enough until the year 2109), a
/// per-process counter in the low 22 bits. Key order is therefore due order.
const SEQ_LOW_BITS: u32 = 22;
const MAX_DUE: i64 = (1 << (64 - SEQ_LOW_BITS)) - 1;

pub(crate) fn intent_key(blob: &BlobId) -> Vec<u8> {
    let mut k = INTENT_PREFIX.to_vec();
    k.extend_from_slice(blob);
    k
}

fn instance_key(id: &str) -> Vec<u8> {
    let mut k = INSTANCE_PREFIX.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// The first GC position whose due time is after `now` (`None`: past every position).
fn first_seq_after(now: i64) -> Option<u64> {
    if now < 0 {
        return Some(0);
    }
    (now < MAX_DUE).then(|| ((now + 1) as u64) << SEQ_LOW_BITS)
}

/// A write in progress: who writes, since when, and a bound of what it may have written; and
/// the new key it wrote to the key store, if any (a new version's DEK, a new upload's DEK, a
/// new bucket's KEK), which goes to the GC with the chunks unless a commit references it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Intent {
    owner: String,
    begun: i64,
    segment: Segment,
    #[serde(default)]
    key: Option<KeyRef>,
}

/// The stand-in segment of a key-only intent: keyed by the key's id, no chunks.
pub(crate) fn key_segment(key: &KeyRef) -> Result<Segment> {
    let id: BlobId = hex::decode(&key.id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| MetaError::Invalid(format!("key id {:?} is not 16 hex bytes", key.id)))?;
    Ok(Segment {
        blob: id,
        len: 0,
        chunk_size: 0,
        layout: 0,
    })
}

/// Stages "this new key is now referenced" (a key-only intent, see `begin_key`).
pub(crate) fn stage_consume_key(b: &mut Batch, key: &KeyRef) -> Result<Segment> {
    let seg = key_segment(key)?;
    stage_consume_intents(b, std::slice::from_ref(&seg));
    Ok(seg)
}

/// A random id for a destruction (the record's idempotency key).
pub(crate) fn new_op_id() -> String {
    let id: [u8; 16] = rand::random();
    hex::encode(id)
}

/// Stages "these new blobs are now referenced": each intent must still exist (the sweep has not
/// taken it) and is removed in the same batch. Commit with [`MetaStore::commit_consuming`].
pub(crate) fn stage_consume_intents(b: &mut Batch, segments: &[Segment]) {
    for s in segments {
        let k = intent_key(&s.blob);
        b.present(Space::Sys, &k);
        b.delete(Space::Sys, k);
    }
}

impl MetaStore {
    /// Sets the grace period (ms, at least 0) between queuing data for GC and the moment its
    /// chunks may be deleted. Default 15 minutes.
    pub fn set_gc_grace_ms(&self, ms: i64) {
        self.inner.gc_grace_ms.store(ms.max(0), Ordering::Relaxed);
    }

    pub fn gc_grace_ms(&self) -> i64 {
        self.inner.gc_grace_ms.load(Ordering::Relaxed)
    }

    /// Stages a GC item for `segments`, due after the grace period.
    pub(crate) fn stage_gc(&self, b: &mut Batch, segments: Vec<Segment>, reason: &str, now: i64) {
        self.stage_gc_item(b, segments, Vec::new(), None, reason, now);
    }

    /// Stages a GC item: chunks to delete, keys to destroy, and the destruction record to write
    /// if a version was destroyed. Nothing is staged when there is nothing to do.
    pub(crate) fn stage_gc_item(
        &self,
        b: &mut Batch,
        segments: Vec<Segment>,
        keys: Vec<KeyRef>,
        destroyed: Option<DestroyedVersion>,
        reason: &str,
        now: i64,
    ) {
        let segments: Vec<Segment> = segments
            .into_iter()
            .filter(|s| s.chunk_count() > 0)
            .collect();
        if segments.is_empty() && keys.is_empty() && destroyed.is_none() {
            return;
        }
        let due = now.saturating_add(self.gc_grace_ms()).clamp(0, MAX_DUE);
        let low = self.inner.gc_seq.fetch_add(1, Ordering::Relaxed) & ((1 << SEQ_LOW_BITS) - 1);
        let seq = ((due as u64) << SEQ_LOW_BITS) | low;
        let key = seq.to_be_bytes().to_vec();
        let item = GcItem {
            seq,
            segments,
            reason: reason.to_string(),
            enqueued: now,
            due,
            keys,
            destroyed,
        };
        // Absent: another process sharing the KV could pick the same position (then the
        // caller's retry loop stages again with a new one).
        b.absent(Space::Gc, &key);
        b.put(Space::Gc, key, encode(&item));
    }

    /// Commits a batch staged with [`stage_consume_intents`]: a failed condition caused by a
    /// missing intent is `WriteAborted` (final, nothing applied), any other one `Conflict`.
    pub(crate) fn commit_consuming(&self, b: Batch, segments: &[Segment]) -> Result<()> {
        match self.kv().commit(b) {
            Err(MetaError::Conflict) => {
                for s in segments {
                    if self.kv().get(Space::Sys, &intent_key(&s.blob))?.is_none() {
                        return Err(MetaError::WriteAborted);
                    }
                }
                Err(MetaError::Conflict)
            }
            other => other,
        }
    }

    /// Up to `limit` items whose grace period has passed (`due <= now`), earliest due first.
    /// One bounded range scan: positions are ordered by due time.
    pub fn gc_pending(&self, now: i64, limit: usize) -> Result<Vec<GcItem>> {
        let end = first_seq_after(now).map(|s| s.to_be_bytes().to_vec());
        self.kv()
            .scan(
                Space::Gc,
                &KeyRange::new(Vec::new(), end),
                Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Removes items whose chunks have been deleted.
    pub fn gc_ack(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        for s in seqs {
            b.delete(Space::Gc, s.to_be_bytes().to_vec());
        }
        self.kv().commit(b)
    }

    /// Queue size at `now`. Reads at most [`GC_STATS_LIMIT`] entries: beyond that `queued` and
    /// `due` stop counting (they are lower bounds).
    pub fn gc_stats(&self, now: i64) -> Result<GcStats> {
        const PAGE: usize = 4096;
        let bound = first_seq_after(now);
        let mut stats = GcStats::default();
        let mut start = Vec::new();
        while (stats.queued as usize) < GC_STATS_LIMIT {
            let want = PAGE.min(GC_STATS_LIMIT - stats.queued as usize);
            let rows = self.kv().scan(
                Space::Gc,
                &KeyRange::new(start.clone(), None),
                Direction::Forward,
                want,
            )?;
            for (k, _) in &rows {
                let seq = u64::from_be_bytes(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| MetaError::Corrupt("gc key".into()))?,
                );
                if stats.oldest_due.is_none() {
                    stats.oldest_due = Some((seq >> SEQ_LOW_BITS) as i64);
                }
                stats.queued += 1;
                if bound.is_none_or(|b| seq < b) {
                    stats.due += 1;
                }
            }
            let Some((last, _)) = rows.last() else { break };
            if rows.len() < want {
                break;
            }
            start = last.clone();
            start.push(0);
        }
        Ok(stats)
    }

    // ----- process instances -----

    /// Registers a process that will write chunks, with a lease of `lease_ms` from `now`.
    /// `AlreadyExists` if the id is taken.
    pub fn register_instance(&self, id: &str, lease_ms: i64, now: i64) -> Result<()> {
        if id.is_empty() || id.len() > 128 {
            return Err(MetaError::Invalid("instance id must be 1-128 bytes".into()));
        }
        let rec = InstanceRecord {
            id: id.to_string(),
            registered: now,
            lease_until: now.saturating_add(lease_ms.max(0)),
        };
        let key = instance_key(id);
        let mut b = Batch::default();
        b.absent(Space::Sys, &key);
        b.put(Space::Sys, key, encode(&rec));
        match self.kv().commit(b) {
            Err(MetaError::Conflict) => Err(MetaError::AlreadyExists),
            other => other,
        }
    }

    /// Extends the lease to `now + lease_ms`. `InstanceExpired` if the record is gone or the
    /// lease already ran out before `now`: the sweep may have taken the instance's intents, so
    /// the process must stop writing.
    pub fn renew_instance(&self, id: &str, lease_ms: i64, now: i64) -> Result<()> {
        self.retry(|| {
            let (raw, mut rec) = self.live_instance(id, now)?;
            rec.lease_until = now.saturating_add(lease_ms.max(0)).max(rec.lease_until);
            let key = instance_key(id);
            let mut b = Batch::default();
            b.equals(Space::Sys, &key, &raw);
            b.put(Space::Sys, key, encode(&rec));
            self.kv().commit(b)
        })
    }

    /// Clean shutdown: the instance is gone, its remaining intents (requests cut short) are
    /// swept at once.
    pub fn retire_instance(&self, id: &str) -> Result<()> {
        let mut b = Batch::default();
        b.delete(Space::Sys, instance_key(id));
        self.kv().commit(b)
    }

    /// Removes every instance but `self_id`: for a process that knows it is the only writer
    /// (`strata serve` holds the RocksDB lock), so every other instance died. Their intents are
    /// then swept by the next `sweep_interrupted_writes`. Returns how many were removed.
    pub fn expire_other_instances(&self, self_id: &str, _now: i64) -> Result<usize> {
        let mut removed = 0;
        for (k, v) in self.scan_all(Space::Sys, INSTANCE_PREFIX.to_vec())? {
            let rec: InstanceRecord = decode(&v)?;
            if rec.id == self_id {
                continue;
            }
            let mut b = Batch::default();
            b.equals(Space::Sys, &k, &v);
            b.delete(Space::Sys, k);
            match self.kv().commit(b) {
                Ok(()) => removed += 1,
                // Renewed or removed meanwhile: a shared store after all; leave it alone.
                Err(MetaError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "expired the instances of earlier processes");
        }
        Ok(removed)
    }

    pub fn list_instances(&self) -> Result<Vec<InstanceRecord>> {
        self.scan_all(Space::Sys, INSTANCE_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// The instance's record if its lease holds at `now`, else `InstanceExpired`.
    fn live_instance(&self, id: &str, now: i64) -> Result<(Vec<u8>, InstanceRecord)> {
        let expired = || MetaError::InstanceExpired(id.to_string());
        let raw = self
            .kv()
            .get(Space::Sys, &instance_key(id))?
            .ok_or_else(expired)?;
        let rec: InstanceRecord = decode(&raw)?;
        if rec.lease_until < now {
            return Err(expired());
        }
        Ok((raw, rec))
    }

    // ----- write intents -----

    /// Records, durably, that chunks of `segment.blob` are about to be written by instance
    /// `owner` (`segment.len` is an upper bound of the bytes). The owner must be a live instance
    /// (`InstanceExpired` otherwise). The commit that references the blob (`put_version`,
    /// `put_part`, `replace_segment`) or `discard_write` consumes the intent in its own batch; an
    /// intent whose owner died is turned into a GC item by
    /// [`MetaStore::sweep_interrupted_writes`], so no chunk is ever left unreferenced for good.
    pub fn begin_write(&self, segment: &Segment, owner: &str, now: i64) -> Result<()> {
        self.begin_write_with_key(segment, None, owner, now)
    }

    /// [`MetaStore::begin_write`] for a blob written under a new key, which the intent then covers
    /// too: the commit that references the blob takes the key with it; a discard or sweep queues
    /// the key for destruction with the chunks.
    pub fn begin_write_with_key(
        &self,
        segment: &Segment,
        key: Option<&KeyRef>,
        owner: &str,
        now: i64,
    ) -> Result<()> {
        let intent = encode(&Intent {
            owner: owner.to_string(),
            begun: now,
            segment: segment.clone(),
            key: key.cloned(),
        });
        self.retry(|| {
            let (raw, _) = self.live_instance(owner, now)?;
            let mut b = Batch::default();
            // The lease checked above is the one in force at commit (a racing expiry or
            // renewal makes this a conflict and a re-check).
            b.equals(Space::Sys, &instance_key(owner), &raw);
            b.put(Space::Sys, intent_key(&segment.blob), intent.clone());
            self.kv().commit(b)
        })
    }

    /// A key-only intent, recorded before a new key that no blob covers (a multipart upload's
    /// DEK, a bucket's KEK) is written to the key store: the record that will reference the key
    /// (`create_upload`, `create_bucket`, a KEK rotation) consumes it; otherwise `discard_key` or
    /// the sweep queues the key for destruction. So a key in the store is always referenced by a
    /// record, an intent or a GC item.
    pub fn begin_key(&self, key: &KeyRef, owner: &str, now: i64) -> Result<()> {
        self.begin_write_with_key(&key_segment(key)?, Some(key), owner, now)
    }

    /// The key of a key-only intent will never be referenced: queue it for destruction.
    pub fn discard_key(&self, key: &KeyRef, reason: &str) -> Result<()> {
        self.discard_write(vec![key_segment(key)?], reason)
    }

    /// Turns into GC items (reason "interrupted-write", with the grace period) the intents whose
    /// owner instance is absent or whose lease expired before `now`; never those of a live
    /// instance. Looks at most `SWEEP_PAGES * SWEEP_PAGE` intents per call and resumes where the
    /// last call stopped (cursor kept as worker state); at the end of a full pass it also removes
    /// the records of expired instances. Returns how many intents were swept.
    pub fn sweep_interrupted_writes(&self, now: i64) -> Result<usize> {
        let cursor = self.get_worker_state(SWEEP_CURSOR)?.unwrap_or_default();
        let mut start = if cursor.starts_with(INTENT_PREFIX) {
            cursor
        } else {
            INTENT_PREFIX.to_vec()
        };
        let end = kv::prefix_successor(INTENT_PREFIX);
        // Owner -> (raw record if present, dead at `now`).
        let mut owners: HashMap<String, (Option<Vec<u8>>, bool)> = HashMap::new();
        let mut swept = 0;
        let mut finished = false;
        for _ in 0..SWEEP_PAGES {
            let page = self.kv().scan(
                Space::Sys,
                &KeyRange::new(start.clone(), end.clone()),
                Direction::Forward,
                SWEEP_PAGE,
            )?;
            let mut b = Batch::default();
            let mut dead = Vec::new();
            let mut dead_keys = Vec::new();
            let mut checked_owners = Vec::new();
            for (k, v) in &page {
                let intent: Intent = decode(v)?;
                if !owners.contains_key(&intent.owner) {
                    let raw = self.kv().get(Space::Sys, &instance_key(&intent.owner))?;
                    let is_dead = match &raw {
                        None => true,
                        Some(r) => decode::<InstanceRecord>(r)?.lease_until < now,
                    };
                    owners.insert(intent.owner.clone(), (raw, is_dead));
                }
                let (raw, is_dead) = &owners[&intent.owner];
                if !is_dead {
                    continue;
                }
                if !checked_owners.contains(&intent.owner) {
                    // A renewal or re-registration racing this batch makes it a conflict.
                    b.unchanged(Space::Sys, &instance_key(&intent.owner), raw.as_deref());
                    checked_owners.push(intent.owner.clone());
                }
                b.equals(Space::Sys, k, v);
                b.delete(Space::Sys, k.clone());
                dead.push(intent.segment);
                dead_keys.extend(intent.key);
            }
            let n = dead.len();
            if n > 0 {
                self.stage_gc_item(&mut b, dead, dead_keys, None, "interrupted-write", now);
                match self.kv().commit(b) {
                    Ok(()) => swept += n,
                    // Something changed under us (a commit consumed an intent, an instance
                    // renewed): leave this page to the next pass.
                    Err(MetaError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == SWEEP_PAGE => {
                    start = last.clone();
                    start.push(0);
                }
                _ => {
                    finished = true;
                    break;
                }
            }
        }
        if finished {
            self.put_worker_state(SWEEP_CURSOR, b"")?;
            self.remove_expired_instances(now)?;
        } else {
            self.put_worker_state(SWEEP_CURSOR, &start)?;
        }
        if swept > 0 {
            tracing::info!(swept, "queued the chunks of interrupted writes for GC");
        }
        Ok(swept)
    }

    /// Drops instance records whose lease ran out: an absent owner counts as dead too, so this
    /// never changes what the sweep may take; it only keeps the instance list short.
    fn remove_expired_instances(&self, now: i64) -> Result<()> {
        for (k, v) in self.scan_all(Space::Sys, INSTANCE_PREFIX.to_vec())? {
            let rec: InstanceRecord = decode(&v)?;
            if rec.lease_until < now {
                let mut b = Batch::default();
                b.equals(Space::Sys, &k, &v);
                b.delete(Space::Sys, k);
                match self.kv().commit(b) {
                    Ok(()) | Err(MetaError::Conflict) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Keys covered by write intents (new keys not yet referenced by a commit).
    pub(crate) fn intent_keys(&self) -> Result<Vec<KeyRef>> {
        let mut out = Vec::new();
        for (_, v) in self.scan_all(Space::Sys, INTENT_PREFIX.to_vec())? {
            let i: Intent = decode(&v)?;
            out.extend(i.key);
        }
        Ok(out)
    }

    /// Write intents not yet committed or swept (for tests and the consistency check).
    pub fn pending_writes(&self) -> Result<usize> {
        Ok(self.scan_all(Space::Sys, INTENT_PREFIX.to_vec())?.len())
    }

    /// A write definitely failed (its commit was refused, or the body was bad): for each segment
    /// whose intent still exists, removes the intent and queues the segment for GC, conditioned
    /// on the intent, so a blob whose commit landed, or that the sweep already queued, is never
    /// queued (again).
    pub fn discard_write(&self, segments: Vec<Segment>, reason: &str) -> Result<()> {
        self.retry(|| {
            let mut b = Batch::default();
            let mut queued = Vec::new();
            let mut keys = Vec::new();
            for s in &segments {
                let k = intent_key(&s.blob);
                if let Some(raw) = self.kv().get(Space::Sys, &k)? {
                    let intent: Intent = decode(&raw)?;
                    b.equals(Space::Sys, &k, &raw);
                    b.delete(Space::Sys, k);
                    queued.push(s.clone());
                    keys.extend(intent.key);
                }
            }
            if queued.is_empty() {
                return Ok(());
            }
            self.stage_gc_item(&mut b, queued, keys, None, reason, now_ms());
            self.kv().commit(b)
        })
    }

    // ----- worker state -----

    /// Small persisted state of a background worker (a cursor, counters). Last write wins.
    pub fn put_worker_state(&self, name: &str, value: &[u8]) -> Result<()> {
        let mut b = Batch::default();
        b.put(Space::Sys, worker_key(name), value.to_vec());
        self.kv().commit(b)
    }

    /// Writes a worker state only if it still is `current` (`None`: absent), as one
    /// linearisable step of the tier: `Ok(false)` (and no change) when another writer changed it
    /// since it was read. Processes sharing the tier (cluster gateways) serialise
    /// read-modify-writes with it.
    pub fn put_worker_state_if(
        &self,
        name: &str,
        current: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool> {
        let k = worker_key(name);
        let mut b = Batch::default();
        b.unchanged(Space::Sys, &k, current);
        b.put(Space::Sys, k, value.to_vec());
        match self.kv().commit(b) {
            Ok(()) => Ok(true),
            Err(MetaError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Several worker states in one atomic commit (a job's checkpoint with the report entries
    /// of the same step, so a crash keeps both or neither).
    pub fn put_worker_states(&self, states: &[(String, Vec<u8>)]) -> Result<()> {
        let mut b = Batch::default();
        for (name, value) in states {
            b.put(Space::Sys, worker_key(name), value.clone());
        }
        self.kv().commit(b)
    }

    /// At most `limit` worker states whose name starts with `prefix` and sorts after `after`
    /// (all of them from the start when `None`), in name order: a page of a large family.
    pub fn worker_states_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let skip = worker_key("").len();
        let start = match after {
            Some(a) => {
                let mut k = worker_key(a);
                k.push(0);
                k
            }
            None => worker_key(prefix),
        };
        let end = crate::kv::prefix_successor(&worker_key(prefix));
        Ok(self
            .kv()
            .scan(
                Space::Sys,
                &crate::kv::KeyRange::new(start, end),
                crate::kv::Direction::Forward,
                limit,
            )?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k[skip..]).into_owned(), v))
            .collect())
    }

    /// Writes `put` and removes `delete` in one atomic commit (a job's checkpoint that also
    /// retires the state of work it finished).
    pub fn update_worker_states(&self, put: &[(String, Vec<u8>)], delete: &[String]) -> Result<()> {
        let mut b = Batch::default();
        for (name, value) in put {
            b.put(Space::Sys, worker_key(name), value.clone());
        }
        for name in delete {
            b.delete(Space::Sys, worker_key(name));
        }
        self.kv().commit(b)
    }

    pub fn get_worker_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.kv().get(Space::Sys, &worker_key(name))
    }

    /// Every worker state whose name starts with `prefix`, as (name, value).
    pub fn worker_states(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let start = worker_key(prefix);
        let skip = worker_key("").len();
        Ok(self
            .scan_all(Space::Sys, start)?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k[skip..]).into_owned(), v))
            .collect())
    }
}

fn worker_key(name: &str) -> Vec<u8> {
    let mut k = b"worker/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}
