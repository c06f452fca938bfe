//! Helpers shared by the S3 operations: access checks, conversions between stored records and
//! S3 wire types, and request validation that several operations need.

use s3s::dto::{ETag, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use strata_metadata::{BucketRecord, ContentHeaders, NULL_VERSION, VersionRecord, VersioningState};

use crate::auth::Caller;

/// Longest object key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest single PUT (5 GiB) and object (5 TiB).
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_PARTS: u32 = 10_000;
/// User metadata limit (all `x-amz-meta-*` names and values together), as S3.
pub const MAX_USER_METADATA: usize = 2 * 1024;

pub fn ts(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

pub fn ts_to_ms(t: &Timestamp) -> i64 {
    let t: time::OffsetDateTime = t.clone().into();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn etag(v: &str) -> ETag {
    ETag::Strong(v.to_string())
}

/// The version id S3 shows for a version: none in a bucket that never had versioning.
pub fn shown_version_id(bucket: &BucketRecord, v: &VersionRecord) -> Option<String> {
    if bucket.versioning == VersioningState::Unversioned && v.version_id == NULL_VERSION {
        None
    } else {
        Some(v.version_id.clone())
    }
}

/// A version id from a request: `null` is the null version; anything else must look like ours.
pub fn requested_version(v: &Option<String>) -> S3Result<Option<&str>> {
    match v.as_deref() {
        None => Ok(None),
        Some("") => Err(s3_error!(
            InvalidArgument,
            "Version id cannot be the empty string"
        )),
        Some(s) if s == NULL_VERSION => Ok(Some(s)),
        Some(s) if s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(s)),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

pub fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "Object key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError));
    }
    if key.contains('\0') {
        return Err(s3_error!(
            InvalidArgument,
            "Object key must not contain NUL"
        ));
    }
    Ok(())
}

pub fn user_metadata(m: &Option<s3s::dto::Metadata>) -> S3Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = m
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    let size: usize = out.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3_error!(MetadataTooLarge));
    }
    Ok(out)
}

pub fn metadata_dto(v: &[(String, String)]) -> Option<s3s::dto::Metadata> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().cloned().collect())
    }
}

pub fn content_headers(
    content_type: &Option<s3s::dto::ContentType>,
    content_encoding: &Option<String>,
    content_disposition: &Option<String>,
    content_language: &Option<String>,
    cache_control: &Option<String>,
    expires: &Option<Timestamp>,
) -> ContentHeaders {
    ContentHeaders {
        content_type: content_type.as_ref().map(|c| c.to_string()),
        content_encoding: content_encoding.as_deref().and_then(strip_aws_chunked),
        content_disposition: content_disposition.clone(),
        content_language: content_language.clone(),
        cache_control: cache_control.clone(),
        expires: expires.as_ref().map(fmt_http_date),
        sse: None,
    }
}

/// Removes the `aws-chunked` token S3 clients add to Content-Encoding for streaming uploads.
pub fn strip_aws_chunked(v: &str) -> Option<String> {
    let rest: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

pub fn fmt_http_date(t: &Timestamp) -> String {
    let mut buf = Vec::new();
    let _ = t.format(s3s::dto::TimestampFormat::HttpDate, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, s).ok()
}

/// Parses an `x-amz-tagging` header / query-encoded tag set (`k1=v1&k2=v2`).
pub fn parse_tag_header(s: &str) -> S3Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = urlencoding::decode(&k.replace('+', " "))
            .map_err(|_| s3_error!(InvalidTag))?
            .into_owned();
        let v = urlencoding::decode(&v.replace('+', " "))
            .map_err(|_| s3_error!(InvalidTag))?
            .into_owned();
        tags.push((k, v));
    }
    validate_tags(&tags)?;
    Ok(tags)
}

/// S3's tag rules: at most 10 per object, keys 1..=128 chars, values <= 256, keys unique.
pub fn validate_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > 10 {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidTag,
            "Object tags cannot be greater than 10",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey or TagValue you have provided is invalid"
            ));
        }
        if !seen.insert(k) {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    Ok(())
}

/// Decodes Content-MD5 (base64 of 16 bytes) or answers InvalidDigest.
pub fn content_md5(v: &Option<String>) -> S3Result<Option<[u8; 16]>> {
    match v {
        None => Ok(None),
        Some(s) => match strata_engine::checksum::decode_b64(s).map(<[u8; 16]>::try_from) {
            Some(Ok(d)) => Ok(Some(d)),
            _ => Err(s3_error!(InvalidDigest)),
        },
    }
}

/// S3's conditional-read rules (RFC 7232 as S3 applies them): If-Match / If-Unmodified-Since
/// give 412, If-None-Match / If-Modified-Since give 304; If-Match wins over If-Unmodified-Since and
/// If-None-Match over If-Modified-Since.
pub fn check_read_conditions(
    v: &VersionRecord,
    if_match: &Option<s3s::dto::ETagCondition>,
    if_none_match: &Option<s3s::dto::ETagCondition>,
    if_modified_since: &Option<Timestamp>,
    if_unmodified_since: &Option<Timestamp>,
) -> S3Result<()> {
    let matches = |c: &s3s::dto::ETagCondition| match c {
        s3s::dto::ETagCondition::Any => true,
        s3s::dto::ETagCondition::ETag(e) => e.value() == v.etag,
    };
    let modified_secs = v.last_modified / 1000;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(PreconditionFailed));
        }
    } else if let Some(t) = if_unmodified_since
        && modified_secs > ts_to_ms(t) / 1000
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(not_modified());
        }
    } else if let Some(t) = if_modified_since
        && modified_secs <= ts_to_ms(t) / 1000
    {
        return Err(not_modified());
    }
    Ok(())
}

pub fn not_modified() -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_status_code(http::StatusCode::NOT_MODIFIED);
    e
}

/// Percent-encodes a key for `encoding-type=url` listings (as S3: everything but unreserved
/// characters and `/`).
pub fn url_encode_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn storage_class(s: &Option<s3s::dto::StorageClass>) -> S3Result<String> {
    match s.as_ref().map(|c| c.as_str()) {
        None | Some("STANDARD") => Ok("STANDARD".into()),
        // Stored as named and served from the standard tier (GLACIER_IR is instant-retrieval:
        // readable without a restore).
        Some(
            c @ ("REDUCED_REDUNDANCY"
            | "STANDARD_IA"
            | "ONEZONE_IA"
            | "INTELLIGENT_TIERING"
            | "GLACIER_IR"),
        ) => Ok(c.into()),
        // Archive classes: repacked into archive containers, GET needs a RestoreObject.
        Some(c @ ("GLACIER" | "DEEP_ARCHIVE")) => Ok(c.into()),
        Some(_) => Err(s3_error!(InvalidStorageClass)),
    }
}

/// A delete-marker answer: 404 NoSuchKey (latest) or 405 MethodNotAllowed (by version id),
/// with the headers S3 sends.
pub(crate) fn delete_marker_error(
    bucket: &BucketRecord,
    v: &VersionRecord,
    by_version: bool,
) -> S3Error {
    let mut e = if by_version {
        let mut e = S3Error::with_message(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        );
        e.set_status_code(http::StatusCode::METHOD_NOT_ALLOWED);
        e
    } else {
        s3_error!(NoSuchKey)
    };
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Some(id) = shown_version_id(bucket, v)
        && let Ok(val) = http::HeaderValue::from_str(&id)
    {
        h.insert("x-amz-version-id", val);
    }
    if by_version && let Ok(val) = http::HeaderValue::from_str(&fmt_http_date(&ts(v.last_modified)))
    {
        h.insert("last-modified", val);
    }
    e.set_headers(h);
    e
}

/// How S3 shows the caller as an owner (ListBuckets).
pub fn owner_dto(who: &Caller, id: &str) -> s3s::dto::Owner {
    OwnerNames::of_caller(who).owner(id)
}

/// The display names (user names) of the owners one answer shows, by canonical id: the caller's
/// own, and each other owner looked up once per answer with [`OwnerNames::resolve`] (a page
/// names few distinct owners; at most one lookup per entry, bounded by the page size). An id
/// no user has any more is shown as its own name.
pub struct OwnerNames {
    names: std::collections::HashMap<String, String>,
}

impl OwnerNames {
    pub fn of_caller(who: &Caller) -> Self {
        let mut names = std::collections::HashMap::new();
        if !who.is_anonymous() {
            names.insert(who.id.clone(), who.user.clone());
        }
        OwnerNames { names }
    }

    /// Looks up the names of `ids` not known yet (one metadata read per distinct id).
    pub async fn resolve(&mut self, engine: &strata_engine::Engine, ids: Vec<String>) {
        for id in &ids {
            let id = id.as_str();
            if id.is_empty() || self.names.contains_key(id) {
                continue;
            }
            let name = match engine.user_by_id(id).await {
                Ok(Some(u)) => u.name,
                _ => id.to_string(),
            };
            self.names.insert(id.to_string(), name);
        }
    }

    pub fn owner(&self, id: &str) -> s3s::dto::Owner {
        s3s::dto::Owner {
            display_name: Some(
                self.names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string()),
            ),
            id: Some(id.to_string()),
        }
    }

    pub fn initiator(&self, id: &str) -> s3s::dto::Initiator {
        let o = self.owner(id);
        s3s::dto::Initiator {
            display_name: o.display_name,
            id: o.id,
        }
    }
}
