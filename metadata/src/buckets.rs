//! Buckets: create, read, list, update (read-modify-write), delete when empty.

use crate::gc::stage_consume_key;
use crate::keys::{self, now_ms};
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{BucketRecord, KekRef, KeyClass, KeyRef, MetaError, MetaStore, Result};

fn kek_key_ref(k: &KekRef) -> KeyRef {
    KeyRef {
        class: KeyClass::Kek,
        slot: k.slot,
        id: k.id.clone(),
    }
}

impl BucketRecord {
    /// The bucket's current KEK, if it has one in the key store.
    pub fn kek_ref(&self) -> Option<KekRef> {
        self.kek_slot.map(|slot| KekRef {
            id: self.kek_id.clone(),
            slot,
        })
    }
}

impl MetaStore {
    /// `BucketAlreadyExists` if the name is taken (the gateway maps it to
    /// BucketAlreadyOwnedByYou when the caller owns it). Name validity is checked by the gateway.
    ///
    /// The bucket's KEK (`kek_slot`) was written to the key store under a key-only intent
    /// (`begin_key`), which this consumes (`WriteAborted` if the sweep took it).
    pub fn create_bucket(&self, rec: BucketRecord) -> Result<()> {
        let mut b = Batch::default();
        b.absent(Space::Buckets, rec.name.as_bytes());
        b.put(Space::Buckets, rec.name.as_bytes().to_vec(), encode(&rec));
        let consumed = match rec.kek_ref() {
            Some(k) => vec![stage_consume_key(&mut b, &kek_key_ref(&k))?],
            None => Vec::new(),
        };
        match self.commit_consuming(b, &consumed) {
            Err(MetaError::Conflict) => {
                if self
                    .kv()
                    .get(Space::Buckets, rec.name.as_bytes())?
                    .is_some()
                {
                    Err(MetaError::BucketAlreadyExists)
                } else {
                    Err(MetaError::Conflict)
                }
            }
            other => other,
        }
    }
    pub fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        self.kv()
            .get(Space::Buckets, name.as_bytes())?
            .map(|raw| decode(&raw))
            .transpose()
    }
    /// All buckets in name order.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.scan_all(Space::Buckets, Vec::new())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
    /// Read-modify-write of a bucket record, atomic (retried on conflict).
    pub fn update_bucket<F>(&self, name: &str, mut f: F) -> Result<BucketRecord>
    where
        F: FnMut(&mut BucketRecord) -> Result<()>,
    {
        self.retry(|| {
            let (raw, mut rec) = self.read_bucket(name)?;
            f(&mut rec)?;
            // The name is the key; a renamed record would be unreachable.
            rec.name = name.to_string();
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            b.put(Space::Buckets, name.as_bytes().to_vec(), encode(&rec));
            self.kv().commit(b)?;
            Ok(rec)
        })
    }
    /// `BucketNotEmpty` while any version, delete marker or multipart upload remains;
    /// `BucketClosing` for a bucket being destroyed (its purge removes it).
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        self.delete_bucket_inner(name, false)
    }

    /// The last step of a bucket's destruction: removes the (empty, closing) bucket and queues
    /// its KEKs for destruction in the same batch.
    pub fn delete_purged_bucket(&self, name: &str) -> Result<()> {
        self.delete_bucket_inner(name, true)
    }

    fn delete_bucket_inner(&self, name: &str, purge: bool) -> Result<()> {
        self.retry(|| {
            let (raw, rec) = self.read_bucket(name)?;
            if rec.closing.is_some() != purge {
                return Err(if purge {
                    MetaError::Invalid(format!("bucket {name} is not being purged"))
                } else {
                    MetaError::BucketClosing
                });
            }
            let objects = KeyRange::prefix(&keys::bucket_prefix(name));
            for space in [Space::Heads, Space::Uploads] {
                if !self
                    .kv()
                    .scan(space, &objects, Direction::Forward, 1)?
                    .is_empty()
                {
                    return Err(MetaError::BucketNotEmpty);
                }
            }
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            // Checked again at commit: a write that raced in makes this a conflict, and the
            // retry then answers BucketNotEmpty.
            b.range_empty(Space::Heads, objects.clone());
            b.range_empty(Space::Uploads, objects);
            b.delete(Space::Buckets, name.as_bytes().to_vec());
            let keks: Vec<KeyRef> = rec
                .kek_ref()
                .iter()
                .chain(&rec.previous_keks)
                .map(kek_key_ref)
                .collect();
            self.stage_gc_item(&mut b, Vec::new(), keks, None, "bucket-deleted", now_ms());
            self.kv().commit(b)
        })
    }

    /// Sets or clears a bucket's closing state (purge, account closure), whatever else the
    /// record holds (unlike `update_bucket`, used by the operator verbs only).
    pub fn set_bucket_closing(
        &self,
        name: &str,
        closing: Option<crate::BucketClosing>,
    ) -> Result<BucketRecord> {
        self.retry(|| {
            let (raw, mut rec) = self.read_bucket(name)?;
            rec.closing = closing.clone();
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            b.put(Space::Buckets, name.as_bytes().to_vec(), encode(&rec));
            self.kv().commit(b)?;
            Ok(rec)
        })
    }

    /// Starts a KEK rotation: `new` (written under a key-only intent, consumed here) becomes the
    /// bucket's current KEK and the current one moves to `previous_keks` until its DEKs are
    /// re-wrapped ([`MetaStore::retire_kek`]). One rotation at a time per bucket.
    pub fn rotate_bucket_kek(&self, name: &str, new: &KekRef) -> Result<BucketRecord> {
        self.retry(|| {
            let (raw, mut rec) = self.read_bucket(name)?;
            if rec.closing.is_some() {
                return Err(MetaError::BucketClosing);
            }
            if rec.kek_id == new.id {
                return Ok(rec);
            }
            if !rec.previous_keks.is_empty() {
                return Err(MetaError::Invalid(format!(
                    "a KEK rotation of bucket {name} is still in progress"
                )));
            }
            let old = rec
                .kek_ref()
                .ok_or_else(|| MetaError::Invalid(format!("bucket {name} has no KEK slot")))?;
            rec.previous_keks.push(old);
            rec.kek_id = new.id.clone();
            rec.kek_slot = Some(new.slot);
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            b.put(Space::Buckets, name.as_bytes().to_vec(), encode(&rec));
            let consumed = vec![stage_consume_key(&mut b, &kek_key_ref(new))?];
            self.commit_consuming(b, &consumed)?;
            Ok(rec)
        })
    }

    /// Ends a KEK rotation: KEK `id` (no DEK is wrapped by it any more) leaves `previous_keks`
    /// and is queued for destruction (after the GC grace, so reads that resolved it finish).
    pub fn retire_kek(&self, name: &str, id: &str) -> Result<()> {
        self.retry(|| {
            let (raw, mut rec) = self.read_bucket(name)?;
            let Some(pos) = rec.previous_keks.iter().position(|k| k.id == id) else {
                return Ok(());
            };
            let old = rec.previous_keks.remove(pos);
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            b.put(Space::Buckets, name.as_bytes().to_vec(), encode(&rec));
            self.stage_gc_item(
                &mut b,
                Vec::new(),
                vec![kek_key_ref(&old)],
                None,
                "kek-rotated",
                now_ms(),
            );
            self.kv().commit(b)
        })
    }
}
