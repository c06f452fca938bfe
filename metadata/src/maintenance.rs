//! Backup, restore and the consistency check (`verify`).

use crate::keys;
use crate::kv::Space;
use crate::multipart::decode_upload;
use crate::store::{Head, decode};
use crate::{MetaError, MetaStore, NULL_VERSION, Result, VersionRecord};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// What `MetaStore::verify` found. `problems` is empty for a consistent store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub buckets: usize,
    pub objects: usize,
    pub versions: usize,
    pub uploads: usize,
    pub parts: usize,
    pub gc_items: usize,
    pub problems: Vec<String>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> MetaError {
    MetaError::Db(format!("{what} {}: {e}", path.display()))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

/// Copies the flat directory of a RocksDB checkpoint, fsyncing every file and the directory.
fn copy_dir_synced(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).map_err(|e| io_err("create", to, e))?;
    for entry in fs::read_dir(from).map_err(|e| io_err("read", from, e))? {
        let entry = entry.map_err(|e| io_err("read", from, e))?;
        let src = entry.path();
        let meta = entry.metadata().map_err(|e| io_err("stat", &src, e))?;
        if !meta.is_file() {
            return Err(MetaError::Db(format!(
                "unexpected non-file in backup: {}",
                src.display()
            )));
        }
        let dst = to.join(entry.file_name());
        fs::copy(&src, &dst).map_err(|e| io_err("copy", &src, e))?;
        fs::File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("fsync", &dst, e))?;
    }
    fsync_dir(to)
}

fn sibling(path: &Path, suffix: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| MetaError::Db(format!("not a directory path: {}", path.display())))?;
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

impl MetaStore {
    /// Every key-store key a record references: bucket KEKs (current and being rotated out),
    /// KMS keys' KEKs, version and upload DEKs, keys of write intents and of queued GC items,
    /// the archive KEK, as (slot, key id).
    /// Reads the whole store (restore uses it to destroy keys nothing references).
    pub fn referenced_keys(&self) -> Result<BTreeSet<(u64, String)>> {
        let mut out = BTreeSet::new();
        for (_, v) in self.scan_all(Space::Buckets, Vec::new())? {
            let b: crate::BucketRecord = decode(&v)?;
            out.extend(b.kek_ref().map(|k| (k.slot, k.id)));
            out.extend(b.previous_keks.into_iter().map(|k| (k.slot, k.id)));
        }
        for (_, v) in self.scan_all(Space::Versions, Vec::new())? {
            let r: VersionRecord = decode(&v)?;
            out.extend(r.data.dek_ref().map(|k| (k.slot, k.id)));
        }
        for (_, v) in self.scan_all(Space::Uploads, Vec::new())? {
            let u = decode_upload(&v)?;
            out.extend(crate::multipart::upload_key_ref(&u).map(|k| (k.slot, k.id)));
        }
        for (_, v) in self.scan_all(Space::Gc, Vec::new())? {
            let item: crate::GcItem = decode(&v)?;
            out.extend(item.keys.into_iter().map(|k| (k.slot, k.id)));
        }
        for k in self.list_kms_keys()? {
            out.extend(k.kek_ref().map(|k| (k.slot, k.id)));
        }
        out.extend(self.intent_keys()?.into_iter().map(|k| (k.slot, k.id)));
        out.extend(self.archive_kek()?.map(|k| (k.slot, k.id)));
        Ok(out)
    }

    // ----- backup -----

    /// Consistent online snapshot (RocksDB checkpoint) into `dir`, which must not exist.
    /// Every commit acknowledged before the call is in the snapshot; writers keep running.
    pub fn backup(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            return Err(MetaError::AlreadyExists);
        }
        self.kv().checkpoint(dir)?;
        fsync_dir(dir)
    }

    /// Replaces the store at `db_dir` with the snapshot in `backup_dir` (server stopped).
    ///
    /// The snapshot is copied next to `db_dir` and opened (and `verify`-checked) there first, so
    /// a bad backup never replaces a good store; the previous store is kept, renamed to
    /// `<db_dir>.before-restore-<unix ms>`, never deleted. The backup itself is not modified.
    pub fn restore(backup_dir: &Path, db_dir: &Path) -> Result<()> {
        if !backup_dir.join("CURRENT").is_file() {
            return Err(MetaError::Db(format!(
                "{} is not a metadata backup (no CURRENT file)",
                backup_dir.display()
            )));
        }
        let staging = sibling(db_dir, ".restoring")?;
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| io_err("remove", &staging, e))?;
        }
        copy_dir_synced(backup_dir, &staging)?;
        {
            let store = MetaStore::open(&staging)?;
            let report = store.verify()?;
            if !report.problems.is_empty() {
                return Err(MetaError::Corrupt(format!(
                    "backup is inconsistent: {}",
                    report.problems.join("; ")
                )));
            }
        }
        if db_dir.exists() {
            let old = sibling(db_dir, &format!(".before-restore-{}", keys::now_ms()))?;
            fs::rename(db_dir, &old).map_err(|e| io_err("rename", db_dir, e))?;
        }
        fs::rename(&staging, db_dir).map_err(|e| io_err("rename", &staging, e))?;
        if let Some(parent) = db_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    /// Checks the invariants that atomic batches maintain: every object with versions has a
    /// head and vice versa, the head's null pointer names the one `null` version, every version
    /// id matches its key, every part belongs to an upload, every record decodes. Reads the
    /// whole store: an operator tool and a test oracle, not a request path.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut r = VerifyReport::default();
        let bucket_rows = self.scan_all(Space::Buckets, Vec::new())?;
        r.buckets = bucket_rows.len();
        let buckets: BTreeSet<String> = bucket_rows
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        for (k, v) in &bucket_rows {
            if let Err(e) = decode::<crate::BucketRecord>(v) {
                r.problems.push(format!("bucket {k:?}: {e}"));
            }
        }
        let split_bucket = |k: &[u8]| -> Option<String> {
            let end = k.iter().position(|&b| b == 0)?;
            String::from_utf8(k[..end].to_vec()).ok()
        };
        // Heads and versions, object by object.
        let heads = self.scan_all(Space::Heads, Vec::new())?;
        r.objects = heads.len();
        let mut head_map = std::collections::BTreeMap::new();
        for (k, v) in heads {
            match Head::decode(&v) {
                Ok(h) => {
                    head_map.insert(k, h);
                }
                Err(e) => r.problems.push(format!("head {k:?}: {e}")),
            }
        }
        let versions = self.scan_all(Space::Versions, Vec::new())?;
        r.versions = versions.len();
        let mut objects_with_versions = BTreeSet::new();
        // Blobs that committed records reference: none may be queued for GC or still have a
        // write intent.
        let mut referenced: BTreeSet<crate::BlobId> = BTreeSet::new();
        for (k, v) in &versions {
            let Some(bucket) = split_bucket(k) else {
                r.problems.push(format!("version key without bucket {k:?}"));
                continue;
            };
            if !buckets.contains(&bucket) {
                r.problems
                    .push(format!("version in missing bucket {bucket}"));
            }
            let (key, suffix) = match keys::split_object_key(k, bucket.len()) {
                Ok(x) => x,
                Err(e) => {
                    r.problems.push(format!("version key {k:?}: {e}"));
                    continue;
                }
            };
            let okey = keys::object_key(&bucket, &key);
            let stamp = match keys::stamp_from_suffix(suffix) {
                Ok(s) => s,
                Err(e) => {
                    r.problems.push(format!("{bucket}/{key}: {e}"));
                    continue;
                }
            };
            let rec: VersionRecord = match decode(v) {
                Ok(rec) => rec,
                Err(e) => {
                    r.problems.push(format!("{bucket}/{key}: {e}"));
                    continue;
                }
            };
            let head = head_map.get(&okey);
            if head.is_none() {
                r.problems
                    .push(format!("{bucket}/{key}: versions without a head"));
            }
            let is_null_slot = head.is_some_and(|h| h.null_stamp == Some(stamp));
            if rec.version_id == NULL_VERSION {
                if !is_null_slot {
                    r.problems
                        .push(format!("{bucket}/{key}: stray null version"));
                }
            } else if keys::decode_id(&rec.version_id) != Some(stamp) {
                r.problems
                    .push(format!("{bucket}/{key}: version id does not match its key"));
            }
            referenced.extend(rec.data.segments.iter().map(|s| s.blob));
            objects_with_versions.insert(okey);
        }
        for (okey, head) in &head_map {
            if !objects_with_versions.contains(okey) {
                r.problems.push(format!("head {okey:?} without versions"));
            }
            if let Some(ns) = head.null_stamp {
                let present = versions.binary_search_by(|(k, _)| {
                    let mut want = okey.clone();
                    want.extend(ns.iter().map(|b| !b));
                    k.cmp(&want)
                });
                if present.is_err() {
                    r.problems
                        .push(format!("head {okey:?} names a missing null version"));
                }
            }
        }
        // Uploads and parts.
        let uploads = self.scan_all(Space::Uploads, Vec::new())?;
        r.uploads = uploads.len();
        let mut upload_ids = BTreeSet::new();
        for (k, v) in &uploads {
            match decode_upload(v) {
                Ok(u) => {
                    let bucket = split_bucket(k).unwrap_or_default();
                    if keys::upload_key(&bucket, &u.key, &u.upload_id) != *k {
                        r.problems
                            .push(format!("upload {} stored under a wrong key", u.upload_id));
                    }
                    upload_ids.insert(keys::part_prefix(&bucket, &u.upload_id));
                }
                Err(e) => r.problems.push(format!("upload {k:?}: {e}")),
            }
        }
        let parts = self.scan_all(Space::Parts, Vec::new())?;
        r.parts = parts.len();
        for (k, v) in &parts {
            if k.len() < 4 || !upload_ids.contains(&k[..k.len() - 4]) {
                r.problems.push(format!("part {k:?} without its upload"));
            }
            match decode::<crate::PartRecord>(v) {
                Ok(p) => {
                    referenced.insert(p.segment.blob);
                }
                Err(e) => r.problems.push(format!("part {k:?}: {e}")),
            }
        }
        let gc = self.scan_all(Space::Gc, Vec::new())?;
        r.gc_items = gc.len();
        for (k, v) in &gc {
            match decode::<crate::GcItem>(v) {
                Ok(item) if item.seq.to_be_bytes().as_slice() != k.as_slice() => {
                    r.problems.push(format!("gc item {k:?} with a wrong seq"))
                }
                Ok(item) => {
                    for s in &item.segments {
                        if referenced.contains(&s.blob) {
                            r.problems.push(format!(
                                "gc item {} queues blob {} that a record references",
                                item.seq,
                                hex::encode(s.blob)
                            ));
                        }
                    }
                }
                Err(e) => r.problems.push(format!("gc item {k:?}: {e}")),
            }
        }
        for (k, _) in self.scan_all(Space::Sys, crate::gc::INTENT_PREFIX.to_vec())? {
            let blob = &k[crate::gc::INTENT_PREFIX.len()..];
            if let Ok(blob) = crate::BlobId::try_from(blob)
                && referenced.contains(&blob)
            {
                r.problems.push(format!(
                    "write intent of blob {} that a record references",
                    hex::encode(blob)
                ));
            }
        }
        Ok(r)
    }
}
