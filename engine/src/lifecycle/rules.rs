//! The lifecycle rule language without S3 types: the gateway turns the XML it received into
//! [`RuleDraft`]s (fields as sent, nothing checked), [`validate`] applies S3's rules and errors
//! and yields the persisted configuration, and [`filter_matches`] decides which versions a rule
//! covers.

use std::collections::HashSet;

use strata_metadata::VersionRecord;
use strata_metadata::lifecycle::{
    ExpirationAction, FilterForm, LifecycleConfig, LifecycleRule, NoncurrentExpiration,
    NoncurrentTransition, RuleFilter, TransitionAction,
};

use crate::error::{EngineError, Rejection};

/// At most this many rules per configuration (S3's limit, not adjustable).
pub const MAX_RULES: usize = 1000;
/// Longest rule ID.
pub const MAX_ID_LEN: usize = 255;
/// Objects below this size do not transition under `all_storage_classes_128K`.
pub const DEFAULT_MIN_TRANSITION_SIZE: u64 = 128 * 1024;
pub const MIN_SIZE_ALL_128K: &str = "all_storage_classes_128K";
pub const MIN_SIZE_VARIES: &str = "varies_by_storage_class";

/// Storage classes a Transition may name.
pub const TRANSITION_CLASSES: [&str; 6] = [
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
];

/// How cold a class is: a transition only ever goes to a colder class.
pub fn class_rank(class: &str) -> u8 {
    match class {
        "STANDARD" | "REDUCED_REDUNDANCY" => 0,
        "INTELLIGENT_TIERING" => 1,
        "STANDARD_IA" => 2,
        "ONEZONE_IA" => 3,
        "GLACIER_IR" => 4,
        "GLACIER" => 5,
        "DEEP_ARCHIVE" => 6,
        _ => 0,
    }
}

#[derive(Clone, Debug, Default)]
pub struct AndDraft {
    pub prefix: Option<String>,
    pub tags: Vec<(String, String)>,
    pub size_greater_than: Option<i64>,
    pub size_less_than: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct FilterDraft {
    pub prefix: Option<String>,
    pub tag: Option<(String, String)>,
    pub size_greater_than: Option<i64>,
    pub size_less_than: Option<i64>,
    pub and: Option<AndDraft>,
}

#[derive(Clone, Debug, Default)]
pub struct ExpirationDraft {
    pub days: Option<i64>,
    /// Unix ms.
    pub date: Option<i64>,
    pub expired_object_delete_marker: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct NoncurrentDraft {
    pub noncurrent_days: Option<i64>,
    pub newer_noncurrent_versions: Option<i64>,
    pub storage_class: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct TransitionDraft {
    pub days: Option<i64>,
    pub date: Option<i64>,
    pub storage_class: Option<String>,
}

/// One rule as received.
#[derive(Clone, Debug, Default)]
pub struct RuleDraft {
    pub id: Option<String>,
    pub status: String,
    /// The legacy rule-level `<Prefix>`.
    pub prefix: Option<String>,
    pub filter: Option<FilterDraft>,
    pub expiration: Option<ExpirationDraft>,
    pub noncurrent_expiration: Option<NoncurrentDraft>,
    /// `Some(days)` when `AbortIncompleteMultipartUpload` is present (`days` may be absent).
    pub abort_multipart: Option<Option<i64>>,
    pub transitions: Vec<TransitionDraft>,
    pub noncurrent_transitions: Vec<NoncurrentDraft>,
}

fn err(code: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::Rejected(Rejection::InvalidLifecycle {
        code,
        message: message.into(),
    })
}

fn invalid(m: impl Into<String>) -> EngineError {
    err("InvalidArgument", m)
}

fn malformed() -> EngineError {
    err(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

const DAY_MS: i64 = 86_400_000;

fn check_date(d: i64) -> Result<i64, EngineError> {
    if d.rem_euclid(DAY_MS) != 0 {
        return Err(invalid("'Date' must be at midnight GMT"));
    }
    Ok(d)
}

fn positive_days(d: i64, what: &str) -> Result<u32, EngineError> {
    if d <= 0 || d > i32::MAX as i64 {
        return Err(invalid(format!("'{what}' must be a positive integer")));
    }
    Ok(d as u32)
}

fn non_negative_days(d: i64, what: &str) -> Result<u32, EngineError> {
    if !(0..=i32::MAX as i64).contains(&d) {
        return Err(invalid(format!("'{what}' must be a non-negative integer")));
    }
    Ok(d as u32)
}

fn size(v: Option<i64>) -> Result<Option<u64>, EngineError> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(invalid("Object size filters must be non-negative")),
        Some(n) => Ok(Some(n as u64)),
    }
}

fn newer_versions(v: Option<i64>) -> Result<Option<u32>, EngineError> {
    match v {
        None => Ok(None),
        Some(n) if (1..=100).contains(&n) => Ok(Some(n as u32)),
        Some(_) => Err(invalid(
            "'NewerNoncurrentVersions' must be an integer between 1 and 100",
        )),
    }
}

fn transition_class(c: &Option<String>) -> Result<String, EngineError> {
    match c.as_deref() {
        None | Some("") => Err(malformed()),
        Some(c) if TRANSITION_CLASSES.contains(&c) => Ok(c.to_string()),
        Some(_) => Err(malformed()),
    }
}

/// S3's minimum ages for the infrequent-access classes.
fn check_min_days(class: &str, days: u32, what: &str) -> Result<(), EngineError> {
    if matches!(class, "STANDARD_IA" | "ONEZONE_IA") && days < 30 {
        return Err(invalid(format!(
            "'{what}' in Transition action must be greater than or equal to 30 for storageClass '{class}'"
        )));
    }
    Ok(())
}

fn filter(rule: &RuleDraft) -> Result<RuleFilter, EngineError> {
    match (&rule.prefix, &rule.filter) {
        (Some(_), Some(_)) => Err(malformed()),
        (Some(p), None) => Ok(RuleFilter {
            form: FilterForm::LegacyPrefix,
            prefix: p.clone(),
            ..Default::default()
        }),
        (None, None) => Ok(RuleFilter::default()),
        (None, Some(f)) => {
            let given = f.prefix.is_some() as u8
                + f.tag.is_some() as u8
                + f.size_greater_than.is_some() as u8
                + f.size_less_than.is_some() as u8
                + f.and.is_some() as u8;
            if given > 1 {
                return Err(malformed());
            }
            let mut out = RuleFilter::default();
            if let Some(p) = &f.prefix {
                out.form = if p.is_empty() {
                    FilterForm::Empty
                } else {
                    FilterForm::Prefix
                };
                out.prefix = p.clone();
            } else if let Some(t) = &f.tag {
                out.form = FilterForm::Tag;
                out.tags = vec![t.clone()];
            } else if f.size_greater_than.is_some() {
                out.form = FilterForm::SizeGreaterThan;
                out.size_greater_than = size(f.size_greater_than)?;
            } else if f.size_less_than.is_some() {
                out.form = FilterForm::SizeLessThan;
                out.size_less_than = size(f.size_less_than)?;
            } else if let Some(a) = &f.and {
                out.form = FilterForm::And;
                out.prefix = a.prefix.clone().unwrap_or_default();
                out.tags = a.tags.clone();
                out.size_greater_than = size(a.size_greater_than)?;
                out.size_less_than = size(a.size_less_than)?;
                let conditions = a.prefix.is_some() as usize
                    + a.tags.len()
                    + out.size_greater_than.is_some() as usize
                    + out.size_less_than.is_some() as usize;
                if conditions < 2 {
                    // And combines two or more predicates (two tags count as two).
                    return Err(malformed());
                }
                let mut seen = HashSet::new();
                if !a.tags.iter().all(|(k, _)| seen.insert(k)) {
                    return Err(invalid("Duplicate Tag Keys are not allowed."));
                }
            }
            if let (Some(gt), Some(lt)) = (out.size_greater_than, out.size_less_than)
                && lt <= gt
            {
                return Err(invalid(
                    "ObjectSizeLessThan must be greater than ObjectSizeGreaterThan",
                ));
            }
            for (k, v) in &out.tags {
                if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                    return Err(invalid(
                        "The TagKey or TagValue you have provided is invalid",
                    ));
                }
            }
            Ok(out)
        }
    }
}

fn rule(d: &RuleDraft) -> Result<LifecycleRule, EngineError> {
    let enabled = match d.status.as_str() {
        "Enabled" => true,
        "Disabled" => false,
        _ => return Err(malformed()),
    };
    let id = match &d.id {
        Some(id) if id.chars().count() > MAX_ID_LEN => {
            return Err(invalid("ID length should not exceed allowed limit of 255"));
        }
        Some(id) if !id.is_empty() => id.clone(),
        // S3 names a rule without an ID itself.
        _ => {
            let mut b = [0u8; 12];
            rand::fill(&mut b);
            hex::encode(b)
        }
    };
    let filter = filter(d)?;
    let expiration = match &d.expiration {
        None => None,
        Some(e) => {
            let eodm = e.expired_object_delete_marker.unwrap_or(false);
            let n = e.days.is_some() as u8 + e.date.is_some() as u8;
            if n > 1 {
                return Err(malformed());
            }
            if e.expired_object_delete_marker.is_some() && n > 0 {
                return Err(invalid(
                    "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy",
                ));
            }
            if n == 0 && e.expired_object_delete_marker.is_none() {
                return Err(malformed());
            }
            Some(ExpirationAction {
                days: e
                    .days
                    .map(|d| positive_days(d, "Days' for Expiration action"))
                    .transpose()
                    .map_err(|_| {
                        invalid("'Days' for Expiration action must be a positive integer")
                    })?,
                date: e.date.map(check_date).transpose()?,
                expired_object_delete_marker: eodm,
            })
        }
    };
    let noncurrent_expiration = match &d.noncurrent_expiration {
        None => None,
        Some(n) => {
            let days = n.noncurrent_days.ok_or_else(malformed)?;
            Some(NoncurrentExpiration {
                noncurrent_days: Some(positive_days(days, "NoncurrentDays").map_err(|_| {
                    invalid("'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer")
                })?),
                newer_noncurrent_versions: newer_versions(n.newer_noncurrent_versions)?,
            })
        }
    };
    let abort_multipart_days = match d.abort_multipart {
        None => None,
        Some(None) => return Err(malformed()),
        Some(Some(days)) => Some(positive_days(days, "DaysAfterInitiation").map_err(|_| {
            invalid("'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer")
        })?),
    };
    let mut transitions = Vec::new();
    for t in &d.transitions {
        let class = transition_class(&t.storage_class)?;
        let n = t.days.is_some() as u8 + t.date.is_some() as u8;
        if n != 1 {
            return Err(malformed());
        }
        let days = t
            .days
            .map(|d| non_negative_days(d, "Days' in Transition action"))
            .transpose()?;
        if let Some(days) = days {
            check_min_days(&class, days, "Days")?;
        }
        transitions.push(TransitionAction {
            days,
            date: t.date.map(check_date).transpose()?,
            storage_class: class,
        });
    }
    let mut noncurrent_transitions = Vec::new();
    for t in &d.noncurrent_transitions {
        let class = transition_class(&t.storage_class)?;
        let days = t.noncurrent_days.ok_or_else(malformed)?;
        let days = non_negative_days(days, "NoncurrentDays")?;
        check_min_days(&class, days, "NoncurrentDays")?;
        noncurrent_transitions.push(NoncurrentTransition {
            noncurrent_days: Some(days),
            newer_noncurrent_versions: newer_versions(t.newer_noncurrent_versions)?,
            storage_class: class,
        });
    }
    // Two transitions of one kind to the same class make no sense to S3 either.
    for list in [
        transitions
            .iter()
            .map(|t| t.storage_class.as_str())
            .collect::<Vec<_>>(),
        noncurrent_transitions
            .iter()
            .map(|t| t.storage_class.as_str())
            .collect(),
    ] {
        let mut seen = HashSet::new();
        if !list.iter().all(|c| seen.insert(*c)) {
            return Err(invalid(
                "'StorageClass' must be different for 'Transition' actions in same 'Rule'",
            ));
        }
    }
    let has_action = expiration.is_some()
        || noncurrent_expiration.is_some()
        || abort_multipart_days.is_some()
        || !transitions.is_empty()
        || !noncurrent_transitions.is_empty();
    if !has_action {
        return Err(malformed());
    }
    if !filter.tags.is_empty() {
        if expiration
            .as_ref()
            .is_some_and(|e| e.expired_object_delete_marker)
        {
            return Err(err(
                "InvalidRequest",
                "ExpiredObjectDeleteMarker cannot be specified with tag-based filters",
            ));
        }
        if abort_multipart_days.is_some() {
            return Err(err(
                "InvalidRequest",
                "AbortIncompleteMultipartUpload cannot be specified with Tags",
            ));
        }
    }
    if abort_multipart_days.is_some()
        && (filter.size_greater_than.is_some() || filter.size_less_than.is_some())
    {
        return Err(err(
            "InvalidRequest",
            "AbortIncompleteMultipartUpload cannot be specified with an object size filter",
        ));
    }
    Ok(LifecycleRule {
        id,
        enabled,
        filter,
        expiration,
        noncurrent_expiration,
        abort_multipart_days,
        transitions,
        noncurrent_transitions,
    })
}

/// Applies S3's rules to a configuration as received. `transition_min_size` is the request's
/// `x-amz-transition-default-minimum-object-size`, if any.
pub fn validate(
    drafts: &[RuleDraft],
    transition_min_size: Option<&str>,
    now: i64,
) -> Result<LifecycleConfig, EngineError> {
    if drafts.is_empty() || drafts.len() > MAX_RULES {
        return Err(malformed());
    }
    let min = match transition_min_size {
        None => None,
        Some(s @ (MIN_SIZE_ALL_128K | MIN_SIZE_VARIES)) => Some(s.to_string()),
        Some(_) => {
            return Err(invalid(
                "Invalid value for x-amz-transition-default-minimum-object-size",
            ));
        }
    };
    let mut rules = Vec::with_capacity(drafts.len());
    let mut ids = HashSet::new();
    for d in drafts {
        let r = rule(d)?;
        if !ids.insert(r.id.clone()) {
            return Err(invalid(
                "Rule ID must be unique. Found same ID for more than one rule",
            ));
        }
        rules.push(r);
    }
    Ok(LifecycleConfig {
        rules,
        transition_min_size: min,
        updated: now,
    })
}

/// Why a rule's filter does not cover a version (for `explain`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterMiss {
    Prefix,
    Tag,
    SizeNotGreater,
    SizeNotLess,
}

/// Does `f` cover this version of `key`? Delete markers have no size or tags: a tag or size
/// condition never covers them.
pub fn filter_matches(f: &RuleFilter, key: &str, v: &VersionRecord) -> Result<(), FilterMiss> {
    if !key.starts_with(&f.prefix) {
        return Err(FilterMiss::Prefix);
    }
    for (k, val) in &f.tags {
        if v.is_delete_marker || !v.tags.iter().any(|(tk, tv)| tk == k && tv == val) {
            return Err(FilterMiss::Tag);
        }
    }
    if let Some(gt) = f.size_greater_than
        && (v.is_delete_marker || v.size <= gt)
    {
        return Err(FilterMiss::SizeNotGreater);
    }
    if let Some(lt) = f.size_less_than
        && (v.is_delete_marker || v.size >= lt)
    {
        return Err(FilterMiss::SizeNotLess);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: EngineError) -> &'static str {
        match e {
            EngineError::Rejected(Rejection::InvalidLifecycle { code, .. }) => code,
            e => panic!("unexpected {e}"),
        }
    }

    fn expire(days: i64) -> RuleDraft {
        RuleDraft {
            id: Some("r".into()),
            status: "Enabled".into(),
            filter: Some(FilterDraft::default()),
            expiration: Some(ExpirationDraft {
                days: Some(days),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn s3_errors_for_bad_configurations() {
        assert!(validate(&[expire(1)], None, 0).is_ok());
        assert_eq!(
            code(validate(&[expire(0)], None, 0).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(
            code(validate(&[expire(-3)], None, 0).unwrap_err()),
            "InvalidArgument"
        );
        let mut long = expire(1);
        long.id = Some("x".repeat(256));
        assert_eq!(
            code(validate(&[long], None, 0).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(
            code(validate(&[expire(1), expire(2)], None, 0).unwrap_err()),
            "InvalidArgument"
        );
        let mut status = expire(1);
        status.status = "enabled".into();
        assert_eq!(
            code(validate(&[status], None, 0).unwrap_err()),
            "MalformedXML"
        );
        let mut both = expire(1);
        both.expiration.as_mut().unwrap().date = Some(DAY_MS);
        assert_eq!(
            code(validate(&[both], None, 0).unwrap_err()),
            "MalformedXML"
        );
        let mut date = expire(1);
        date.expiration = Some(ExpirationDraft {
            date: Some(DAY_MS + 1000),
            ..Default::default()
        });
        assert_eq!(
            code(validate(&[date], None, 0).unwrap_err()),
            "InvalidArgument"
        );
        let mut none = expire(1);
        none.expiration = None;
        assert_eq!(
            code(validate(&[none], None, 0).unwrap_err()),
            "MalformedXML"
        );
        let mut no_class = expire(1);
        no_class.transitions.push(TransitionDraft {
            days: Some(1),
            ..Default::default()
        });
        assert_eq!(
            code(validate(&[no_class], None, 0).unwrap_err()),
            "MalformedXML"
        );
        let mut tag_dm = expire(1);
        tag_dm.filter = Some(FilterDraft {
            tag: Some(("k".into(), "v".into())),
            ..Default::default()
        });
        tag_dm.expiration = Some(ExpirationDraft {
            expired_object_delete_marker: Some(true),
            ..Default::default()
        });
        assert_eq!(
            code(validate(&[tag_dm.clone()], None, 0).unwrap_err()),
            "InvalidRequest"
        );
        tag_dm.expiration = Some(ExpirationDraft {
            days: Some(1),
            ..Default::default()
        });
        tag_dm.abort_multipart = Some(Some(1));
        assert_eq!(
            code(validate(&[tag_dm], None, 0).unwrap_err()),
            "InvalidRequest"
        );
        let many: Vec<RuleDraft> = (0..1001)
            .map(|i| {
                let mut r = expire(1);
                r.id = Some(format!("r{i}"));
                r
            })
            .collect();
        assert_eq!(code(validate(&many, None, 0).unwrap_err()), "MalformedXML");
        assert!(validate(&many[..1000], None, 0).is_ok());
    }
}
