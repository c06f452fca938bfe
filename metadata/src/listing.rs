//! Listings (ListObjects v1/v2, ListObjectVersions, ListMultipartUploads) as range scans.
//!
//! All three share one walk: entries of a key space in encoded order, restricted to a bucket and
//! prefix, starting at a marker. A key that rolls up into a common prefix makes the walk SEEK to
//! the first key after that prefix, and a key whose latest version has been read makes it seek
//! past the older versions, so the cost of a page is bounded by what the page returns, not by how
//! many keys a common prefix or a key's history holds.

use crate::keys;
use crate::kv::{Direction, KeyRange, Space};
use crate::multipart::decode_upload;
use crate::store::decode;
use crate::{
    ListObjectsPage, ListObjectsParams, ListUploadsPage, ListUploadsParams, ListVersionsPage,
    ListVersionsParams, MetaError, MetaStore, NULL_VERSION, Result, VersionEntry, VersionRecord,
};
use std::collections::VecDeque;

/// Largest read from the KV in one scan.
const MAX_BATCH: usize = 1024;

/// One entry of the walk: (object key, rest of the encoded key after the object part, value).
type Entry = (String, Vec<u8>, Vec<u8>);

struct Walker<'a> {
    store: &'a MetaStore,
    space: Space,
    bucket_len: usize,
    /// Next position to read from the KV when `buf` runs out.
    pos: Vec<u8>,
    end: Vec<u8>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    exhausted: bool,
    batch: usize,
}

impl<'a> Walker<'a> {
    fn new(
        store: &'a MetaStore,
        space: Space,
        bucket: &str,
        start: Vec<u8>,
        end: Vec<u8>,
        hint: usize,
    ) -> Self {
        Walker {
            store,
            space,
            bucket_len: bucket.len(),
            pos: start,
            end,
            buf: VecDeque::new(),
            exhausted: false,
            batch: hint.clamp(16, MAX_BATCH),
        }
    }

    fn next(&mut self) -> Result<Option<Entry>> {
        if self.buf.is_empty() {
            if self.exhausted || self.pos >= self.end {
                return Ok(None);
            }
            let range = KeyRange::new(self.pos.clone(), Some(self.end.clone()));
            let rows = self
                .store
                .kv()
                .scan(self.space, &range, Direction::Forward, self.batch)?;
            self.exhausted = rows.len() < self.batch;
            // Reads after a refill are likely to continue: grow towards MAX_BATCH.
            self.batch = (self.batch * 2).min(MAX_BATCH);
            if let Some((last, _)) = rows.last() {
                self.pos = last.clone();
                self.pos.push(0);
            }
            self.buf.extend(rows);
        }
        let Some((k, v)) = self.buf.pop_front() else {
            return Ok(None);
        };
        let (key, rest) = keys::split_object_key(&k, self.bucket_len)?;
        Ok(Some((key, rest.to_vec(), v)))
    }

    /// Continue at the first encoded key >= `target`. Entries already buffered are dropped in
    /// memory; if the buffer runs out the next read starts AT `target` (a real seek).
    fn seek(&mut self, target: Vec<u8>) {
        while self.buf.front().is_some_and(|(k, _)| *k < target) {
            self.buf.pop_front();
        }
        if self.buf.is_empty() && target > self.pos {
            self.pos = target;
            self.exhausted = false;
        }
    }
}

/// Size of the first read. Without a delimiter a page needs about `max + 1` entries. With one,
/// the first entries may all roll into one common prefix that the walk then seeks past, so
/// start small and let the walker double the batch as needed.
fn first_batch(delimiter: Option<&str>, max: usize) -> usize {
    match delimiter {
        Some(_) => 32.min(max + 1),
        None => max + 1,
    }
}

/// The common prefix `key` rolls up into, if any.
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])
}

impl MetaStore {
    /// ListObjects (v1/v2) core: keys in UTF-8 byte order, latest versions only, delete markers
    /// skipped, common prefixes rolled up (and skipped over by seeking, not key by key).
    ///
    /// The result is the sorted union of keys and common prefixes that are strictly greater than
    /// `start_after`, cut at `max_keys` (a common prefix counts as one). `max_keys == 0` gives an
    /// empty, untruncated page.
    pub fn list_objects(&self, bucket: &str, p: &ListObjectsParams) -> Result<ListObjectsPage> {
        self.require_bucket(bucket)?;
        let mut page = ListObjectsPage::default();
        if p.max_keys == 0 {
            return Ok(page);
        }
        let delimiter = p.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut start = keys::key_prefix(bucket, &p.prefix);
        if let Some(sa) = &p.start_after {
            start = start.max(keys::after_object(bucket, sa));
        }
        let end = keys::after_prefix(bucket, &p.prefix);
        let mut walk = Walker::new(
            self,
            Space::Versions,
            bucket,
            start,
            end,
            first_batch(delimiter, p.max_keys),
        );
        let mut count = 0;
        while let Some((key, _, value)) = walk.next()? {
            let cp = common_prefix(&key, &p.prefix, delimiter);
            // Keys after `start_after` can roll into a prefix that sorts before it.
            if let Some(cp) = cp
                && p.start_after.as_deref().is_some_and(|sa| cp <= sa)
            {
                walk.seek(keys::after_prefix(bucket, cp));
                continue;
            }
            // The first entry of a key is its latest version; skip its history by seeking.
            walk.seek(keys::after_object(bucket, &key));
            let version: VersionRecord = decode(&value)?;
            // A deleted key shows neither itself nor (on its own) its common prefix, as in S3.
            if version.is_delete_marker {
                continue;
            }
            if count == p.max_keys {
                page.is_truncated = true;
                break;
            }
            count += 1;
            if let Some(cp) = cp {
                // One live key is enough: jump over everything else under the prefix.
                walk.seek(keys::after_prefix(bucket, cp));
                page.common_prefixes.push(cp.to_string());
                page.next_marker = Some(cp.to_string());
            } else {
                page.next_marker = Some(key.clone());
                page.objects.push((key, version));
            }
        }
        if !page.is_truncated {
            page.next_marker = None;
        }
        Ok(page)
    }

    /// ListObjectVersions core: keys in order, versions newest first, delete markers included.
    ///
    /// `key_marker` alone resumes after every version of that key; with `version_id_marker` it
    /// resumes after that version of that key (`"null"` for the null version). A
    /// `version_id_marker` this store cannot have produced is `NoSuchVersion` (S3 answers
    /// InvalidArgument). When truncated, the next markers are the last entry returned (a common
    /// prefix gives `next_version_id_marker: None`).
    pub fn list_versions(&self, bucket: &str, p: &ListVersionsParams) -> Result<ListVersionsPage> {
        self.require_bucket(bucket)?;
        let mut page = ListVersionsPage::default();
        if p.max_keys == 0 {
            return Ok(page);
        }
        let delimiter = p.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut start = keys::key_prefix(bucket, &p.prefix);
        // The key whose newest entries were returned on an earlier page.
        let mut previous_key: Option<String> = None;
        if let Some(km) = &p.key_marker {
            let resume = match p.version_id_marker.as_deref().filter(|v| !v.is_empty()) {
                Some(vm) => {
                    let stamp = if vm == NULL_VERSION {
                        let head = self
                            .kv()
                            .get(Space::Heads, &keys::object_key(bucket, km))?
                            .map(|r| crate::store::Head::decode(&r))
                            .transpose()?;
                        head.and_then(|h| h.null_stamp)
                    } else {
                        Some(keys::decode_id(vm).ok_or(MetaError::NoSuchVersion)?)
                    };
                    match stamp {
                        Some(stamp) => {
                            previous_key = Some(km.clone());
                            let mut k = keys::version_key(bucket, km, &stamp);
                            k.push(0);
                            k
                        }
                        // The null version is gone: nothing of this key is left to resume.
                        None => keys::after_object(bucket, km),
                    }
                }
                None => keys::after_object(bucket, km),
            };
            start = start.max(resume);
        }
        let end = keys::after_prefix(bucket, &p.prefix);
        let mut walk = Walker::new(
            self,
            Space::Versions,
            bucket,
            start,
            end,
            first_batch(delimiter, p.max_keys),
        );
        let mut count = 0;
        while let Some((key, _, value)) = walk.next()? {
            if let Some(cp) = common_prefix(&key, &p.prefix, delimiter) {
                walk.seek(keys::after_prefix(bucket, cp));
                if p.key_marker.as_deref().is_some_and(|km| cp <= km) {
                    continue;
                }
                if count == p.max_keys {
                    page.is_truncated = true;
                    break;
                }
                page.common_prefixes.push(cp.to_string());
                page.next_key_marker = Some(cp.to_string());
                page.next_version_id_marker = None;
                count += 1;
                continue;
            }
            if count == p.max_keys {
                page.is_truncated = true;
                break;
            }
            let version: VersionRecord = decode(&value)?;
            let is_latest = previous_key.as_deref() != Some(key.as_str());
            previous_key = Some(key.clone());
            page.next_key_marker = Some(key.clone());
            page.next_version_id_marker = Some(version.version_id.clone());
            page.entries.push(VersionEntry {
                key,
                is_latest,
                version,
            });
            count += 1;
        }
        if !page.is_truncated {
            page.next_key_marker = None;
            page.next_version_id_marker = None;
        }
        Ok(page)
    }

    /// ListMultipartUploads core: uploads by key, then by initiation (upload ids are
    /// time-ordered), common prefixes rolled up. `upload_id_marker` counts only with `key_marker`.
    pub fn list_uploads(&self, bucket: &str, p: &ListUploadsParams) -> Result<ListUploadsPage> {
        self.require_bucket(bucket)?;
        let mut page = ListUploadsPage::default();
        if p.max_uploads == 0 {
            return Ok(page);
        }
        let delimiter = p.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut start = keys::key_prefix(bucket, &p.prefix);
        if let Some(km) = &p.key_marker {
            let resume = match p.upload_id_marker.as_deref().filter(|u| !u.is_empty()) {
                Some(um) => {
                    let mut k = keys::upload_key(bucket, km, um);
                    k.push(0);
                    k
                }
                None => keys::after_object(bucket, km),
            };
            start = start.max(resume);
        }
        let end = keys::after_prefix(bucket, &p.prefix);
        let mut walk = Walker::new(
            self,
            Space::Uploads,
            bucket,
            start,
            end,
            first_batch(delimiter, p.max_uploads),
        );
        let mut count = 0;
        while let Some((key, _, value)) = walk.next()? {
            if let Some(cp) = common_prefix(&key, &p.prefix, delimiter) {
                walk.seek(keys::after_prefix(bucket, cp));
                if p.key_marker.as_deref().is_some_and(|km| cp <= km) {
                    continue;
                }
                if count == p.max_uploads {
                    page.is_truncated = true;
                    break;
                }
                page.common_prefixes.push(cp.to_string());
                page.next_key_marker = Some(cp.to_string());
                page.next_upload_id_marker = None;
                count += 1;
                continue;
            }
            if count == p.max_uploads {
                page.is_truncated = true;
                break;
            }
            let upload = decode_upload(&value)?;
            page.next_key_marker = Some(key);
            page.next_upload_id_marker = Some(upload.upload_id.clone());
            page.uploads.push(upload);
            count += 1;
        }
        if !page.is_truncated {
            page.next_key_marker = None;
            page.next_upload_id_marker = None;
        }
        Ok(page)
    }
}
