//! Request pieces that every write shares (PUT, copy, multipart): Object Lock headers, the
//! checksum to compute, and write preconditions.

use http::HeaderMap;
use s3s::S3Result;
use s3s::dto::*;
use s3s::s3_error;
use strata_metadata::{BucketRecord, Precondition, Retention};

use super::bucket::parse_mode;
use super::common::ts_to_ms;
use strata_engine::now_ms;

/// Object Lock settings requested on a write (headers), after bucket defaults are applied.
pub(crate) struct LockRequest {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

/// Reads `x-amz-object-lock-*` headers and applies the bucket's default retention.
pub(crate) fn lock_request(
    bucket: &BucketRecord,
    mode: &Option<ObjectLockMode>,
    until: &Option<Timestamp>,
    legal_hold: &Option<ObjectLockLegalHoldStatus>,
) -> S3Result<LockRequest> {
    let now = now_ms();
    let explicit = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => {
            let until = ts_to_ms(u);
            if until <= now {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Some(Retention {
                mode: parse_mode(m.as_str())?,
                retain_until: until,
            })
        }
        _ => {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
            ));
        }
    };
    let hold = match legal_hold.as_ref().map(|h| h.as_str()) {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "Legal Hold must be either of 'ON' or 'OFF'"
            ));
        }
    };
    if (explicit.is_some() || hold) && !bucket.object_lock_enabled {
        return Err(s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ));
    }
    let retention = explicit.or_else(|| {
        bucket.default_retention.as_ref().map(|d| {
            let day = 24 * 3600 * 1000i64;
            let span = d.days.map(|n| n as i64 * day).unwrap_or(0)
                + d.years.map(|n| n as i64 * 365 * day).unwrap_or(0);
            Retention {
                mode: d.mode,
                retain_until: now + span,
            }
        })
    });
    Ok(LockRequest {
        retention,
        legal_hold: hold,
    })
}

/// Which checksum to compute for an upload, and the value to check it against if already known.
pub(crate) fn checksum_plan(
    declared: Option<(String, String)>,
    sdk_algorithm: &Option<ChecksumAlgorithm>,
    headers: &HeaderMap,
) -> (Option<String>, Option<String>) {
    if let Some((alg, val)) = declared {
        return (Some(alg), Some(val));
    }
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .to_ascii_lowercase()
                .strip_prefix("x-amz-checksum-")
                .map(|a| a.to_ascii_uppercase())
        });
    if let Some(alg) = trailer {
        return (Some(alg), None);
    }
    if let Some(alg) = sdk_algorithm {
        return (Some(alg.as_str().to_ascii_uppercase()), None);
    }
    // S3 computes CRC64NVME for objects that arrive without a checksum.
    (Some("CRC64NVME".to_string()), None)
}

pub(crate) fn write_precondition(
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::IfNoneMatchStar),
        (Some(ETagCondition::ETag(e)), None) => Ok(Precondition::IfMatch(e.value().to_string())),
        (Some(ETagCondition::Any), None) => Ok(Precondition::IfMatch("*".into())),
        (None, Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes supports only '*'"
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported"
        )),
    }
}
