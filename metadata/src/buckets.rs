//! Buckets: create, read, list, update (read-modify-write), delete when empty.

use crate::keys;
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{BucketRecord, MetaError, MetaStore, Result};

impl MetaStore {
    /// `BucketAlreadyExists` if the name is taken (the gateway maps it to
    /// BucketAlreadyOwnedByYou when the caller owns it). Name validity is checked by the gateway.
    pub fn create_bucket(&self, rec: BucketRecord) -> Result<()> {
        let mut b = Batch::default();
        b.absent(Space::Buckets, rec.name.as_bytes());
        b.put(Space::Buckets, rec.name.as_bytes().to_vec(), encode(&rec));
        match self.kv().commit(b) {
            Err(MetaError::Conflict) => Err(MetaError::BucketAlreadyExists),
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
    /// `BucketNotEmpty` while any version or delete marker remains. Incomplete multipart
    /// uploads do not keep a bucket alive (as S3): they are aborted first, their parts queued for
    /// GC, a bounded page at a time; the final batch is conditioned on no version and no upload
    /// being left, so an upload that races in makes it retry (and abort that one too).
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        /// Uploads aborted per round; rounds are bounded by the retry loop.
        const ABORT_PAGE: usize = 64;
        self.retry(|| {
            let (raw, _) = self.read_bucket(name)?;
            let objects = KeyRange::prefix(&keys::bucket_prefix(name));
            if !self
                .kv()
                .scan(Space::Heads, &objects, Direction::Forward, 1)?
                .is_empty()
            {
                return Err(MetaError::BucketNotEmpty);
            }
            let uploads =
                self.kv()
                    .scan(Space::Uploads, &objects, Direction::Forward, ABORT_PAGE)?;
            if !uploads.is_empty() {
                for (k, _) in uploads {
                    let (key, rest) = keys::split_object_key(&k, name.len())?;
                    let upload_id = String::from_utf8(rest.to_vec())
                        .map_err(|_| MetaError::Corrupt("upload id".into()))?;
                    match self.abort_upload(name, &key, &upload_id) {
                        Ok(()) | Err(MetaError::NoSuchUpload) => {}
                        Err(e) => return Err(e),
                    }
                }
                // Another round (the retry loop bounds how many).
                return Err(MetaError::Conflict);
            }
            let mut b = Batch::default();
            b.equals(Space::Buckets, name.as_bytes(), &raw);
            // Checked again at commit: a write that raced in makes this a conflict, and the
            // retry then answers BucketNotEmpty (or aborts the new upload).
            b.range_empty(Space::Heads, objects.clone());
            b.range_empty(Space::Uploads, objects);
            b.delete(Space::Buckets, name.as_bytes().to_vec());
            self.kv().commit(b)
        })
    }
}
