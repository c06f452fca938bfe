//! Lifecycle: the persisted form of a bucket's lifecycle configuration (S3-free; the gateway
//! translates S3's XML into it and back, the engine evaluates it), and the per-bucket version
//! walk the lifecycle worker resumes from a cursor.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::kv::{Direction, KeyRange, Space};
use crate::store::decode;
use crate::{MetaError, MetaStore, Result, VersionRef};

/// A bucket's lifecycle configuration, as validated by the engine (`strata_engine::lifecycle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LifecycleConfig {
    pub rules: Vec<LifecycleRule>,
    /// S3's `x-amz-transition-default-minimum-object-size`: `all_storage_classes_128K`
    /// (default) or `varies_by_storage_class`.
    #[serde(default)]
    pub transition_min_size: Option<String>,
    /// When the configuration was stored (Unix ms).
    #[serde(default)]
    pub updated: i64,
}

/// How the filter was written, so that GET returns the shape the user sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FilterForm {
    /// `<Filter/>` (or `<Filter><Prefix></Prefix></Filter>`): every object.
    #[default]
    Empty,
    Prefix,
    Tag,
    SizeGreaterThan,
    SizeLessThan,
    And,
    /// The legacy rule-level `<Prefix>` (no `<Filter>`).
    LegacyPrefix,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuleFilter {
    pub form: FilterForm,
    pub prefix: String,
    pub tags: Vec<(String, String)>,
    /// Object size must be strictly greater than this (bytes).
    pub size_greater_than: Option<u64>,
    /// Object size must be strictly less than this (bytes).
    pub size_less_than: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExpirationAction {
    pub days: Option<u32>,
    /// Midnight UTC, Unix ms.
    pub date: Option<i64>,
    pub expired_object_delete_marker: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    pub noncurrent_days: Option<u32>,
    /// Keep this many newer noncurrent versions whatever their age.
    pub newer_noncurrent_versions: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionAction {
    pub days: Option<u32>,
    pub date: Option<i64>,
    pub storage_class: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentTransition {
    pub noncurrent_days: Option<u32>,
    pub newer_noncurrent_versions: Option<u32>,
    pub storage_class: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    pub filter: RuleFilter,
    pub expiration: Option<ExpirationAction>,
    pub noncurrent_expiration: Option<NoncurrentExpiration>,
    /// `AbortIncompleteMultipartUpload/DaysAfterInitiation`.
    pub abort_multipart_days: Option<u32>,
    pub transitions: Vec<TransitionAction>,
    pub noncurrent_transitions: Vec<NoncurrentTransition>,
}

impl MetaStore {
    /// Up to `limit` versions of `bucket` in key order (key, newest version first) after the
    /// opaque cursor `after` (`None`: from the bucket's first key). Returns the cursor to
    /// continue from, `None` when the bucket's walk is complete.
    pub fn scan_bucket_versions(
        &self,
        bucket: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<VersionRef>, Option<Vec<u8>>)> {
        if limit == 0 {
            return Ok((Vec::new(), after.map(<[u8]>::to_vec)));
        }
        let bp = keys::bucket_prefix(bucket);
        let whole = KeyRange::prefix(&bp);
        let start = match after {
            Some(c) if c.starts_with(&bp) => [c, &[0]].concat(),
            Some(_) => return Err(MetaError::Invalid("cursor of another bucket".into())),
            None => bp.clone(),
        };
        let rows = self.kv().scan(
            Space::Versions,
            &KeyRange::new(start, whole.end),
            Direction::Forward,
            limit,
        )?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let (key, _) = keys::split_object_key(&k, bucket.len())?;
            out.push(VersionRef {
                bucket: bucket.to_string(),
                key,
                version: decode(&v)?,
            });
        }
        Ok((out, next))
    }
}
