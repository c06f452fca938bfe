//! Object versions: writing a version under the bucket's versioning state, finding one, deleting
//! (delete markers, null versions, explicit versions), and per-version updates.

use crate::gc::{new_op_id, stage_consume_intents};
use crate::keys::{self, Stamp, decode_id, encode_id, now_ms};
use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::store::{Head, ObjectState, decode, encode, etag_eq};
use crate::{
    BucketRecord, DeleteActor, DeleteOutcome, DeleteReason, DestroyedVersion, MetaError, MetaStore,
    NULL_VERSION, Precondition, PutOutcome, Result, Retention, VersionRecord, VersioningState,
};

/// What a conditional delete must still find: the version a decision was made for, unchanged
/// (same id, ETag and last-modified time), and still current or still noncurrent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionExpect {
    pub version_id: String,
    pub etag: String,
    pub last_modified: i64,
    /// `Some(true)`: it must be the latest version; `Some(false)`: it must not be.
    pub latest: Option<bool>,
}

impl VersionExpect {
    pub fn of(v: &VersionRecord, latest: Option<bool>) -> Self {
        VersionExpect {
            version_id: v.version_id.clone(),
            etag: v.etag.clone(),
            last_modified: v.last_modified,
            latest,
        }
    }

    fn same(&self, v: &VersionRecord) -> bool {
        v.version_id == self.version_id
            && v.etag == self.etag
            && v.last_modified == self.last_modified
    }

    /// `latest`: the object's latest version now; `target`: the record the delete would remove
    /// (by version id), if any.
    pub(crate) fn check(
        &self,
        latest: Option<&VersionRecord>,
        target: Option<&VersionRecord>,
    ) -> Result<()> {
        let is_latest = latest.is_some_and(|l| self.same(l));
        let ok = match self.latest {
            Some(true) => is_latest,
            Some(false) => !is_latest && target.is_some_and(|t| self.same(t)),
            None => is_latest || target.is_some_and(|t| self.same(t)),
        };
        if ok { Ok(()) } else { Err(MetaError::Stale) }
    }
}

impl MetaStore {
    /// Stages a new version of `key` into `b` following the bucket's versioning state (shared
    /// by `put_version` and `complete_upload`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage_new_version(
        &self,
        b: &mut Batch,
        bucket: &str,
        bucket_rec: &BucketRecord,
        key: &str,
        st: &ObjectState,
        mut version: VersionRecord,
        precondition: &Precondition,
    ) -> Result<PutOutcome> {
        if bucket_rec.closing.is_some() {
            return Err(MetaError::BucketClosing);
        }
        let current = st
            .latest
            .as_ref()
            .map(|(_, v)| v)
            .filter(|v| !v.is_delete_marker);
        match precondition {
            Precondition::None => {}
            Precondition::IfNoneMatchStar => {
                if current.is_some() {
                    return Err(MetaError::PreconditionFailed);
                }
            }
            Precondition::IfMatch(etag) => match current {
                Some(v) if etag.trim() == "*" || etag_eq(&v.etag, etag) => {}
                _ => return Err(MetaError::PreconditionFailed),
            },
        }
        let now = now_ms();
        // Every writer gets the bucket's default retention (S3 applies it at creation).
        if version.retention.is_none()
            && !version.is_delete_marker
            && bucket_rec.object_lock_enabled
            && let Some(d) = &bucket_rec.default_retention
        {
            let retain_until = d.retain_until(now).ok_or_else(|| {
                MetaError::InvalidRetention("the bucket's default retention is out of range".into())
            })?;
            version.retention = Some(Retention {
                mode: d.mode,
                retain_until,
            });
        }
        let okey = keys::object_key(bucket, key);
        let mut head = Head {
            tag: self.inner.stamps.next(),
            null_stamp: st.head.as_ref().and_then(|h| h.null_stamp),
        };
        let mut replaced = None;
        let stamp = if bucket_rec.versioning == VersioningState::Enabled {
            match decode_id(&version.version_id) {
                Some(s) => s,
                None => {
                    // Not one of ours (or empty): give it a fresh id rather than fail the write.
                    let s = self.inner.stamps.next();
                    version.version_id = encode_id(&s);
                    s
                }
            }
        } else {
            version.version_id = NULL_VERSION.to_string();
            if let Some(old_stamp) = head.null_stamp {
                let old_key = keys::version_key(bucket, key, &old_stamp);
                if let Some(old_raw) = self.kv().get(Space::Versions, &old_key)? {
                    let old: VersionRecord = decode(&old_raw)?;
                    if old.is_locked(now, false) {
                        return Err(MetaError::ObjectLocked);
                    }
                    b.equals(Space::Versions, &old_key, &old_raw);
                    b.delete(Space::Versions, old_key);
                    // The replaced content's key and chunks are destroyed; no destruction record:
                    // the version (`null`) still exists (docs/keys.md).
                    self.stage_gc_item(
                        b,
                        old.data.segments.clone(),
                        old.data.dek_ref().into_iter().collect(),
                        None,
                        "overwrite",
                        now,
                    );
                    replaced = Some(old);
                }
            }
            // The null version takes its place in time: it becomes the newest.
            let s = self.inner.stamps.next();
            head.null_stamp = Some(s);
            s
        };
        let vkey = keys::version_key(bucket, key, &stamp);
        b.absent(Space::Versions, &vkey);
        MetaStore::stage_new_archive_version(b, &vkey, &mut version);
        let version_id = version.version_id.clone();
        b.put(Space::Versions, vkey, encode(&version));
        b.unchanged(Space::Heads, &okey, st.head_raw.as_deref());
        b.put(Space::Heads, okey, head.encode());
        Ok(PutOutcome {
            version_id,
            replaced,
        })
    }

    /// Writes a new version of `key` following the bucket's versioning state: `Enabled` adds a
    /// version with `version.version_id` (which the caller set with `new_version_id`);
    /// `Unversioned`/`Suspended` force the id to `"null"` and replace any existing null version
    /// (its data is queued for GC in the same batch). `precondition` is checked atomically.
    /// A locked null version (Object Lock) cannot be replaced: `ObjectLocked`.
    ///
    /// In an `Enabled` bucket a version id that `new_version_id` did not produce is replaced by
    /// a fresh one (returned in `PutOutcome::version_id`). Versions are ordered by their id, i.e.
    /// by the time the id was generated (S3: the request with the latest timestamp wins).
    ///
    /// A version without retention in a bucket with a default retention gets it here. Every
    /// segment of `version` is a new blob: its write intent (`begin_write`) must still exist and
    /// is consumed in the same batch; if the sweep took it, `WriteAborted` and nothing changes.
    pub fn put_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionRecord,
        precondition: &Precondition,
    ) -> Result<PutOutcome> {
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            let st = self.read_object(bucket, key)?;
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            let out = self.stage_new_version(
                &mut b,
                bucket,
                &brec,
                key,
                &st,
                version.clone(),
                precondition,
            )?;
            let new_blobs = version.data.new_blobs();
            stage_consume_intents(&mut b, &new_blobs);
            self.commit_consuming(b, &new_blobs)?;
            Ok(out)
        })
    }

    /// Finds a version: `None` = latest. Returns (encoded key, raw value, record).
    pub(crate) fn locate_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(Vec<u8>, Vec<u8>, VersionRecord)> {
        let okey = keys::object_key(bucket, key);
        match version_id {
            None => {
                let (k, raw) = self
                    .kv()
                    .scan(
                        Space::Versions,
                        &KeyRange::prefix(&okey),
                        Direction::Forward,
                        1,
                    )?
                    .into_iter()
                    .next()
                    .ok_or(MetaError::NoSuchKey)?;
                let rec = decode(&raw)?;
                Ok((k, raw, rec))
            }
            Some(id) => {
                // The null version can move between the head read and the get: retry a little.
                for _ in 0..3 {
                    let head = self
                        .kv()
                        .get(Space::Heads, &okey)?
                        .map(|r| Head::decode(&r))
                        .transpose()?;
                    let Some(head) = head else {
                        return Err(MetaError::NoSuchKey);
                    };
                    let stamp = self
                        .stamp_of(Some(&head), id)
                        .ok_or(MetaError::NoSuchVersion)?;
                    let vkey = keys::version_key(bucket, key, &stamp);
                    if let Some(raw) = self.kv().get(Space::Versions, &vkey)? {
                        let rec: VersionRecord = decode(&raw)?;
                        // A null stamp must hold the null version and an id stamp its own id.
                        if rec.version_id == id {
                            return Ok((vkey, raw, rec));
                        }
                        return Err(MetaError::NoSuchVersion);
                    }
                    if id != NULL_VERSION {
                        return Err(MetaError::NoSuchVersion);
                    }
                }
                Err(MetaError::NoSuchVersion)
            }
        }
    }

    /// The version with this id, or the latest version (possibly a delete marker) when `None`.
    /// `NoSuchBucket`, `NoSuchKey` (no versions at all / latest requested but none),
    /// `NoSuchVersion`.
    pub fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<VersionRecord> {
        self.require_bucket(bucket)?;
        self.locate_version(bucket, key, version_id)
            .map(|(_, _, rec)| rec)
    }

    /// DeleteObject semantics. Without a version id: Enabled adds a delete marker with a new id;
    /// Suspended removes the null version (if any) and adds a null delete marker; Unversioned
    /// removes the null version (success if there is none). With a version id: removes exactly
    /// that version (`NoSuchVersion` is not an error in S3: returns Ok with `removed: None`).
    /// A removed version's data goes to the GC queue in the same batch. Removing a version
    /// that `is_locked(now, bypass_governance)` fails with `ObjectLocked` and changes nothing.
    ///
    /// `removed` is the record that was removed (a real version or a delete marker); only a
    /// real version has data to queue.
    pub fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        owner: &str,
        now: i64,
        bypass_governance: bool,
    ) -> Result<DeleteOutcome> {
        let actor = DeleteActor {
            user: Some(owner.to_string()),
            ..Default::default()
        };
        let reason = DeleteReason::UserRequest { request_id: None };
        self.delete_object_for(
            bucket,
            key,
            version_id,
            owner,
            now,
            bypass_governance,
            &reason,
            &actor,
            None,
            None,
        )
    }

    /// [`MetaStore::delete_object`] conditioned on the version a job decided for (`expect`, see
    /// [`MetaStore::delete_object_for`]), as a user request.
    #[allow(clippy::too_many_arguments)]
    pub fn delete_object_if(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        owner: &str,
        now: i64,
        bypass_governance: bool,
        expect: Option<&VersionExpect>,
    ) -> Result<DeleteOutcome> {
        let actor = DeleteActor {
            user: Some(owner.to_string()),
            ..Default::default()
        };
        let reason = DeleteReason::UserRequest { request_id: None };
        self.delete_object_for(
            bucket,
            key,
            version_id,
            owner,
            now,
            bypass_governance,
            &reason,
            &actor,
            expect,
            None,
        )
    }

    /// [`MetaStore::delete_object`] with why and by whom, and optionally conditioned.
    ///
    /// - `reason` / `actor`: a removed version's GC item carries its destruction record
    ///   (written once its key and chunks are destroyed). A closing bucket (purge, account
    ///   closure) accepts only deletes whose reason is its own destruction.
    /// - `expect`: checked in the same atomic cycle: the version must still be there as the job
    ///   saw it, else `Stale` and nothing changes (an object overwritten, deleted or re-versioned
    ///   meanwhile is never expired on the strength of an old decision).
    /// - `if_match`: S3's conditional delete (an ETag, or `*`), evaluated against the current
    ///   version in the same compare-and-set as the delete (the head): no current version
    ///   (absent, or a delete marker) is `NoSuchKey`, another ETag is `PreconditionFailed`, and
    ///   nothing changes.
    #[allow(clippy::too_many_arguments)]
    pub fn delete_object_for(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        owner: &str,
        now: i64,
        bypass_governance: bool,
        reason: &DeleteReason,
        actor: &DeleteActor,
        expect: Option<&VersionExpect>,
        if_match: Option<&str>,
    ) -> Result<DeleteOutcome> {
        self.retry(|| {
            let (braw, brec) = self.read_bucket(bucket)?;
            if brec.closing.is_some() && !reason.is_purge() {
                return Err(MetaError::BucketClosing);
            }
            let st = self.read_object(bucket, key)?;
            if let Some(want) = if_match {
                match &st.latest {
                    Some((_, v)) if !v.is_delete_marker => {
                        if want != "*" && !etag_eq(&v.etag, want) {
                            return Err(MetaError::PreconditionFailed);
                        }
                    }
                    _ => return Err(MetaError::NoSuchKey),
                }
            }
            let okey = keys::object_key(bucket, key);
            let mut b = Batch::default();
            b.equals(Space::Buckets, bucket.as_bytes(), &braw);
            b.unchanged(Space::Heads, &okey, st.head_raw.as_deref());
            let mut head = Head {
                tag: self.inner.stamps.next(),
                null_stamp: st.head.as_ref().and_then(|h| h.null_stamp),
            };
            // The version to remove, if any: (stamp, raw value, record).
            let read_at = |stamp: Stamp| -> Result<Option<(Stamp, Vec<u8>, VersionRecord)>> {
                self.kv()
                    .get(Space::Versions, &keys::version_key(bucket, key, &stamp))?
                    .map(|raw| decode::<VersionRecord>(&raw).map(|v| (stamp, raw, v)))
                    .transpose()
            };
            let target = match version_id {
                Some(id) => match self.stamp_of(st.head.as_ref(), id) {
                    Some(stamp) => read_at(stamp)?.filter(|(_, _, v)| v.version_id == id),
                    None => None,
                },
                None if brec.versioning == VersioningState::Enabled => None,
                None => match head.null_stamp {
                    Some(stamp) => read_at(stamp)?,
                    None => None,
                },
            };
            if let Some(x) = expect {
                x.check(
                    st.latest.as_ref().map(|(_, v)| v),
                    target.as_ref().map(|t| &t.2),
                )?;
            }
            let mut removed = None;
            let mut remaining_versions = st.latest.is_some() as usize;
            if let Some((stamp, raw, rec)) = target {
                if rec.is_locked(now, bypass_governance) {
                    return Err(MetaError::ObjectLocked);
                }
                let vkey = keys::version_key(bucket, key, &stamp);
                // Exactly the record the lock check saw: a retention or legal-hold change
                // (which does not touch the head) that lands first makes this a conflict, and
                // the retry checks the lock again.
                b.equals(Space::Versions, &vkey, &raw);
                b.delete(Space::Versions, vkey);
                // A delete marker has no data: removing it destroys nothing.
                let destroyed = (!rec.is_delete_marker).then(|| DestroyedVersion {
                    op_id: new_op_id(),
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    version_id: rec.version_id.clone(),
                    size: rec.size,
                    etag: rec.etag.clone(),
                    checksum: rec.checksum.clone(),
                    storage_class: rec.storage_class.clone(),
                    written_ms: rec.last_modified,
                    removed_ms: now,
                    reason: reason.clone(),
                    actor: actor.clone(),
                    archive_extent: rec.archive.as_ref().and_then(|a| a.extent.clone()),
                });
                // A restored copy of an archived version is destroyed with it (the restore
                // worker later finds the version gone and queues it again: a no-op).
                let mut segments = rec.data.segments.clone();
                segments.extend(
                    rec.archive
                        .as_ref()
                        .and_then(|a| a.restore.as_ref())
                        .map(|r| r.segments.clone())
                        .unwrap_or_default(),
                );
                self.stage_gc_item(
                    &mut b,
                    segments,
                    rec.data.dek_ref().into_iter().collect(),
                    destroyed,
                    "delete",
                    now,
                );
                if head.null_stamp == Some(stamp) {
                    head.null_stamp = None;
                }
                // Does another version remain? (Decides whether the head goes.)
                let okr = KeyRange::prefix(&okey);
                remaining_versions = self
                    .kv()
                    .scan(Space::Versions, &okr, Direction::Forward, 2)?
                    .len()
                    .saturating_sub(1);
                removed = Some(rec);
            }
            let mut outcome = DeleteOutcome {
                version_id: version_id.map(str::to_string),
                delete_marker: removed.as_ref().is_some_and(|r| r.is_delete_marker),
                removed: removed.clone(),
            };
            if version_id.is_none() && brec.versioning != VersioningState::Unversioned {
                // Enabled: a new marker id; Suspended: a null marker in the newest position.
                let stamp = self.inner.stamps.next();
                let marker_id = if brec.versioning == VersioningState::Enabled {
                    encode_id(&stamp)
                } else {
                    head.null_stamp = Some(stamp);
                    NULL_VERSION.to_string()
                };
                let marker =
                    VersionRecord::delete_marker(marker_id.clone(), owner.to_string(), now);
                let vkey = keys::version_key(bucket, key, &stamp);
                b.absent(Space::Versions, &vkey);
                b.put(Space::Versions, vkey, encode(&marker));
                remaining_versions += 1;
                outcome.version_id = Some(marker_id);
                outcome.delete_marker = true;
            }
            if b.ops.is_empty() {
                // Nothing to remove and nothing to add (unversioned, absent key, unknown id).
                return Ok(outcome);
            }
            if remaining_versions == 0 {
                b.delete(Space::Heads, okey);
            } else {
                b.put(Space::Heads, okey, head.encode());
            }
            self.kv().commit(b)?;
            Ok(outcome)
        })
    }
}
