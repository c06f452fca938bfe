//! Listings: ListObjects (v1), ListObjectsV2 and ListObjectVersions. The metadata tier does the
//! ordered scan; this layer maps S3's parameters, tokens and `encoding-type=url` onto it.

use base64::Engine as _;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_metadata::{ListObjectsParams, ListVersionsParams, VersionRecord};

use super::StrataS3;
use super::common::*;
use crate::errors;

pub(crate) fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "max-keys must be a non-negative integer"
        )),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

/// `encoding-type`: only `url` exists.
pub(crate) fn url_encoding(e: &Option<EncodingType>) -> S3Result<bool> {
    match e.as_ref().map(|e| e.as_str()) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

fn enc(url: bool, s: String) -> String {
    if url { url_encode_key(&s) } else { s }
}

fn delimiter(d: &Option<String>) -> Option<String> {
    d.clone().filter(|d| !d.is_empty())
}

fn token_encode(marker: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{marker}"))
}

fn token_decode(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").map(str::to_string))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn object_entry(
    names: &OwnerNames,
    key: String,
    v: &VersionRecord,
    fetch_owner: bool,
    url: bool,
) -> Object {
    Object {
        key: Some(enc(url, key)),
        e_tag: Some(etag(&v.etag)),
        last_modified: Some(ts(v.last_modified)),
        size: Some(v.size as i64),
        storage_class: Some(ObjectStorageClass::from(v.storage_class.clone())),
        owner: fetch_owner.then(|| names.owner(&v.owner)),
        checksum_algorithm: v
            .checksum
            .as_ref()
            .map(|(a, _)| vec![ChecksumAlgorithm::from(a.clone())]),
        checksum_type: v.checksum_type.clone().map(ChecksumType::from),
        restore_status: None,
    }
}

impl StrataS3 {
    pub(crate) async fn op_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        list_conditions(&mut who, &input.prefix, &input.delimiter, input.max_keys);
        let bucket = self
            .authorized_bucket(&who, &input.bucket, Action::ListBucket)
            .await?;
        let url = url_encoding(&input.encoding_type)?;
        let max = max_keys(input.max_keys)?;
        // An empty continuation token is no token (S3 answers the first page).
        let continuation_token = input.continuation_token.clone().filter(|t| !t.is_empty());
        let after = match &continuation_token {
            Some(t) => Some(token_decode(t)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let params = ListObjectsParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(&input.delimiter),
            start_after: after,
            max_keys: max,
        };
        let page = if max == 0 {
            Default::default()
        } else {
            self.ctx
                .engine
                .list_objects(&bucket.name, params.clone())
                .await
                .map_err(errors::engine)?
        };
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let mut names = OwnerNames::of_caller(&who);
        if fetch_owner {
            names
                .resolve(
                    &self.ctx.engine,
                    page.objects.iter().map(|(_, v)| v.owner.clone()).collect(),
                )
                .await;
        }
        let contents: Vec<Object> = page
            .objects
            .iter()
            .map(|(k, v)| object_entry(&names, k.clone(), v, fetch_owner, url))
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(url, p.clone())),
            })
            .collect();
        let key_count = (contents.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket.name.clone()),
            prefix: Some(enc(url, params.prefix)),
            delimiter: params.delimiter.map(|d| enc(url, d)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token,
            next_continuation_token: if page.is_truncated {
                page.next_marker.as_deref().map(token_encode)
            } else {
                None
            },
            is_truncated: Some(page.is_truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(|s| enc(url, s)),
            request_charged: None,
        }))
    }

    pub(crate) async fn op_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        list_conditions(&mut who, &input.prefix, &input.delimiter, input.max_keys);
        let bucket = self
            .authorized_bucket(&who, &input.bucket, Action::ListBucket)
            .await?;
        let url = url_encoding(&input.encoding_type)?;
        let max = max_keys(input.max_keys)?;
        let params = ListObjectsParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(&input.delimiter),
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys: max,
        };
        let page = if max == 0 {
            Default::default()
        } else {
            self.ctx
                .engine
                .list_objects(&bucket.name, params.clone())
                .await
                .map_err(errors::engine)?
        };
        let mut names = OwnerNames::of_caller(&who);
        names
            .resolve(
                &self.ctx.engine,
                page.objects.iter().map(|(_, v)| v.owner.clone()).collect(),
            )
            .await;
        let contents: Vec<Object> = page
            .objects
            .iter()
            .map(|(k, v)| object_entry(&names, k.clone(), v, true, url))
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(url, p.clone())),
            })
            .collect();
        // S3 returns NextMarker in v1 only when a delimiter was given; clients without one use
        // the last key as the next marker.
        let next_marker = if page.is_truncated && params.delimiter.is_some() {
            page.next_marker.map(|m| enc(url, m))
        } else {
            None
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(bucket.name.clone()),
            prefix: Some(enc(url, params.prefix)),
            delimiter: params.delimiter.map(|d| enc(url, d)),
            marker: Some(enc(url, input.marker.unwrap_or_default())),
            max_keys: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            next_marker,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    pub(crate) async fn op_list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let mut who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        list_conditions(&mut who, &input.prefix, &input.delimiter, input.max_keys);
        let bucket = self
            .authorized_bucket(&who, &input.bucket, Action::ListBucketVersions)
            .await?;
        let url = url_encoding(&input.encoding_type)?;
        let max = max_keys(input.max_keys)?;
        let key_marker = input.key_marker.clone().filter(|m| !m.is_empty());
        if input
            .version_id_marker
            .as_deref()
            .is_some_and(|v| !v.is_empty())
            && key_marker.is_none()
        {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let params = ListVersionsParams {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(&input.delimiter),
            key_marker,
            version_id_marker: input.version_id_marker.clone().filter(|m| !m.is_empty()),
            max_keys: max,
        };
        let page = if max == 0 {
            Default::default()
        } else {
            self.ctx
                .engine
                .list_versions(&bucket.name, params.clone())
                .await
                .map_err(errors::engine)?
        };

        let mut names = OwnerNames::of_caller(&who);
        names
            .resolve(
                &self.ctx.engine,
                page.entries
                    .iter()
                    .map(|e| e.version.owner.clone())
                    .collect(),
            )
            .await;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for e in page.entries {
            let vid = Some(e.version.version_id.clone());
            if e.version.is_delete_marker {
                markers.push(DeleteMarkerEntry {
                    key: Some(enc(url, e.key)),
                    version_id: vid,
                    is_latest: Some(e.is_latest),
                    last_modified: Some(ts(e.version.last_modified)),
                    owner: Some(names.owner(&e.version.owner)),
                });
            } else {
                versions.push(ObjectVersion {
                    key: Some(enc(url, e.key)),
                    version_id: vid,
                    is_latest: Some(e.is_latest),
                    last_modified: Some(ts(e.version.last_modified)),
                    e_tag: Some(etag(&e.version.etag)),
                    size: Some(e.version.size as i64),
                    storage_class: Some(ObjectVersionStorageClass::from(
                        e.version.storage_class.clone(),
                    )),
                    owner: Some(names.owner(&e.version.owner)),
                    checksum_algorithm: e
                        .version
                        .checksum
                        .as_ref()
                        .map(|(a, _)| vec![ChecksumAlgorithm::from(a.clone())]),
                    checksum_type: e.version.checksum_type.clone().map(ChecksumType::from),
                    restore_status: None,
                });
            }
        }
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(url, p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(bucket.name.clone()),
            prefix: Some(enc(url, params.prefix)),
            delimiter: params.delimiter.map(|d| enc(url, d)),
            key_marker: Some(enc(url, input.key_marker.unwrap_or_default())),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            next_key_marker: page.next_key_marker.map(|m| enc(url, m)),
            next_version_id_marker: page.next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }
}

/// The condition keys of a listing (`s3:prefix`, `s3:delimiter`, `s3:max-keys`).
fn list_conditions(
    who: &mut super::access::Who,
    prefix: &Option<String>,
    delimiter: &Option<String>,
    max_keys: Option<i32>,
) {
    who.condition("s3:prefix", prefix.as_deref());
    who.condition("s3:delimiter", delimiter.as_deref());
    who.condition("s3:max-keys", max_keys.map(|n| n.to_string()).as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for k in ["", "a", "dir/ключ with spaces", "\u{10FFFF}"] {
            assert_eq!(token_decode(&token_encode(k)).unwrap(), k);
        }
        assert!(token_decode("!!!").is_err());
        assert!(
            token_decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v2:x")).is_err()
        );
    }
}
