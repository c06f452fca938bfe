//! Multipart uploads: create, parts, list parts, complete (one batch), abort.

use crate::gc::{stage_consume_intents, stage_consume_key};
use crate::keys::{self, Stamp, now_ms};
use crate::kv::{self, Batch, Direction, KeyRange, Space};
use crate::store::{FORMAT, decode, decode_body, encode, encode_into, etag_eq};
use crate::{
    KeyClass, KeyRef, ListPartsPage, MetaError, MetaStore, PartRecord, Precondition, PutOutcome,
    Result, Segment, UploadRecord, VersionRecord,
};

/// Minimum size of every part but the last (S3: 5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Upload value: format byte, a change tag (fresh on every part write, so complete/abort see
/// any concurrent part), then the record.
pub(crate) fn encode_upload(tag: &Stamp, rec: &UploadRecord) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend_from_slice(tag);
    encode_into(&mut out, rec);
    out
}

pub(crate) fn decode_upload(raw: &[u8]) -> Result<UploadRecord> {
    if raw.first() != Some(&FORMAT) || raw.len() < 17 {
        return Err(MetaError::Corrupt("upload record".into()));
    }
    decode_body(&raw[17..])
}

/// The upload's data key as a key-store reference.
pub(crate) fn upload_key_ref(u: &UploadRecord) -> Option<KeyRef> {
    u.dek_slot.map(|slot| KeyRef {
        class: KeyClass::Dek,
        slot,
        id: u.dek_id.clone(),
    })
}

impl MetaStore {
    /// Records a new upload. Its data key (`dek_slot`) was written under a key-only intent
    /// (`begin_key`), consumed here (`WriteAborted` if it was swept).
    pub fn create_upload(&self, bucket: &str, upload: UploadRecord) -> Result<()> {
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            if brec.closing.is_some() {
                return Err(MetaError::BucketClosing);
            }
            let ukey = keys::upload_key(bucket, &upload.key, &upload.upload_id);
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            if self.kv().get(Space::Uploads, &ukey)?.is_some() {
                return Err(MetaError::AlreadyExists);
            }
            b.absent(Space::Uploads, &ukey);
            b.put(
                Space::Uploads,
                ukey,
                encode_upload(&self.inner.stamps.next(), &upload),
            );
            let consumed = match upload_key_ref(&upload) {
                Some(k) => vec![stage_consume_key(&mut b, &k)?],
                None => Vec::new(),
            };
            self.commit_consuming(b, &consumed)
        })
    }

    fn read_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(Vec<u8>, Vec<u8>, UploadRecord)> {
        self.require_bucket(bucket)?;
        let ukey = keys::upload_key(bucket, key, upload_id);
        let raw = self
            .kv()
            .get(Space::Uploads, &ukey)?
            .ok_or(MetaError::NoSuchUpload)?;
        let rec = decode_upload(&raw)?;
        Ok((ukey, raw, rec))
    }

    fn read_parts(&self, bucket: &str, upload_id: &str) -> Result<Vec<(Vec<u8>, PartRecord)>> {
        self.scan_all(Space::Parts, keys::part_prefix(bucket, upload_id))?
            .into_iter()
            .map(|(k, v)| decode(&v).map(|p| (k, p)))
            .collect()
    }

    pub fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        self.read_upload(bucket, key, upload_id)
            .map(|(_, _, rec)| rec)
    }
    /// Stores a part; a part with the same number is replaced and its data queued for GC. The
    /// part's blob is new: its write intent is consumed (`WriteAborted` if it was swept).
    pub fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: PartRecord,
    ) -> Result<()> {
        self.retry(|| {
            if self.read_bucket(bucket)?.1.closing.is_some() {
                return Err(MetaError::BucketClosing);
            }
            let (ukey, uraw, urec) = self.read_upload(bucket, key, upload_id)?;
            let pkey = keys::part_key(bucket, upload_id, part.part_number);
            let old_raw = self.kv().get(Space::Parts, &pkey)?;
            let mut b = Batch::default();
            b.equals(Space::Uploads, &ukey, &uraw);
            // A fresh tag: a completion or abort that read the parts before this one fails.
            b.put(
                Space::Uploads,
                ukey,
                encode_upload(&self.inner.stamps.next(), &urec),
            );
            b.unchanged(Space::Parts, &pkey, old_raw.as_deref());
            if let Some(old_raw) = &old_raw {
                let old: PartRecord = decode(old_raw)?;
                self.stage_gc(&mut b, vec![old.segment], "part-replaced", now_ms());
            }
            let new = std::slice::from_ref(&part.segment);
            stage_consume_intents(&mut b, new);
            b.put(Space::Parts, pkey, encode(&part));
            self.commit_consuming(b, new)
        })
    }
    /// Parts numbered above `part_number_marker`, at most `max_parts`. `next_part_number_marker`
    /// is the last part number returned (as S3 reports it), `None` when none is returned.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<ListPartsPage> {
        self.read_upload(bucket, key, upload_id)?;
        let mut page = ListPartsPage::default();
        let Some(first) = part_number_marker.checked_add(1) else {
            return Ok(page);
        };
        let range = KeyRange::new(
            keys::part_key(bucket, upload_id, first),
            kv::prefix_successor(&keys::part_prefix(bucket, upload_id)),
        );
        let rows = self.kv().scan(
            Space::Parts,
            &range,
            Direction::Forward,
            max_parts.saturating_add(1),
        )?;
        page.is_truncated = rows.len() > max_parts;
        for (_, v) in rows.into_iter().take(max_parts) {
            page.parts.push(decode(&v)?);
        }
        page.next_part_number_marker = page.parts.last().map(|p| p.part_number);
        Ok(page)
    }
    /// CompleteMultipartUpload: checks `requested` (part number, ETag without quotes) against the
    /// stored parts (`InvalidPart`, `InvalidPartOrder`, `EntityTooSmall` for a non-last part under
    /// `MIN_PART_SIZE`), builds the version with `build(upload, chosen_parts)`, writes it like
    /// `put_version` (same versioning/precondition/default-retention rules), queues unused parts
    /// for GC and removes the upload — all in one batch. (The parts' intents were consumed by
    /// `put_part`.)
    pub fn complete_upload<F>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        requested: &[(u32, String)],
        precondition: &Precondition,
        build: F,
    ) -> Result<PutOutcome>
    where
        F: FnOnce(&UploadRecord, &[PartRecord]) -> Result<VersionRecord>,
    {
        if requested.is_empty() {
            return Err(MetaError::InvalidPart("no parts given".into()));
        }
        if requested.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(MetaError::InvalidPartOrder);
        }
        // `build` is FnOnce: build once, then retry only the commit with re-validated state.
        let mut build = Some(build);
        let mut built: Option<(Vec<PartRecord>, VersionRecord)> = None;
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            let (ukey, uraw, urec) = self.read_upload(bucket, key, upload_id)?;
            let stored = self.read_parts(bucket, upload_id)?;
            let by_number: std::collections::BTreeMap<u32, &PartRecord> =
                stored.iter().map(|(_, p)| (p.part_number, p)).collect();
            let mut chosen = Vec::with_capacity(requested.len());
            for (i, (number, etag)) in requested.iter().enumerate() {
                let part = by_number
                    .get(number)
                    .filter(|p| etag_eq(&p.etag, etag))
                    .ok_or_else(|| MetaError::InvalidPart(format!("part {number}")))?;
                if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
                    return Err(MetaError::EntityTooSmall(*number));
                }
                chosen.push((*part).clone());
            }
            let version = match &built {
                // Rebuilt only if the parts changed under us (a racing put_part).
                Some((parts, v)) if *parts == chosen => v.clone(),
                _ => {
                    // A part was replaced between our reads: the client raced itself.
                    let f = build.take().ok_or_else(|| {
                        MetaError::InvalidPart("parts changed during completion".into())
                    })?;
                    let v = f(&urec, &chosen)?;
                    built = Some((chosen.clone(), v.clone()));
                    v
                }
            };
            let st = self.read_object(bucket, key)?;
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            b.equals(Space::Uploads, &ukey, &uraw);
            let out =
                self.stage_new_version(&mut b, bucket, &brec, key, &st, version, precondition)?;
            let used: std::collections::BTreeSet<u32> =
                chosen.iter().map(|p| p.part_number).collect();
            let unused: Vec<Segment> = stored
                .iter()
                .filter(|(_, p)| !used.contains(&p.part_number))
                .map(|(_, p)| p.segment.clone())
                .collect();
            self.stage_gc(&mut b, unused, "multipart-unused-part", now_ms());
            for (pkey, _) in &stored {
                b.delete(Space::Parts, pkey.clone());
            }
            b.delete(Space::Uploads, ukey);
            self.kv().commit(b)?;
            Ok(out)
        })
    }
    /// Removes the upload and queues all its parts for GC.
    pub fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.retry(|| {
            let (ukey, uraw, urec) = self.read_upload(bucket, key, upload_id)?;
            let stored = self.read_parts(bucket, upload_id)?;
            let mut b = Batch::default();
            b.equals(Space::Uploads, &ukey, &uraw);
            let segments = stored.iter().map(|(_, p)| p.segment.clone()).collect();
            // The upload's key goes with its parts: no version was made with it.
            let keys = upload_key_ref(&urec).into_iter().collect();
            self.stage_gc_item(&mut b, segments, keys, None, "abort", now_ms());
            for (pkey, _) in stored {
                b.delete(Space::Parts, pkey);
            }
            b.delete(Space::Uploads, ukey);
            self.kv().commit(b)
        })
    }
}
