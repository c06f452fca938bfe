//! Put/Get/DeleteBucketLifecycleConfiguration: S3's XML (as s3s parsed it) to the engine's rule
//! drafts and back. Validation is the engine's (`strata_engine::lifecycle::rules::validate`),
//! with S3's error codes; this module only translates, plus the `x-amz-expiration` header.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_engine::lifecycle::rules::{
    AndDraft, ExpirationDraft, FilterDraft, MIN_SIZE_ALL_128K, NoncurrentDraft, RuleDraft,
    TransitionDraft, validate,
};
use strata_metadata::lifecycle::{FilterForm, LifecycleConfig};
use strata_metadata::{BucketRecord, VersionRecord};

use super::StrataS3;
use super::common::{fmt_http_date, ts, ts_to_ms};
use crate::errors;

fn tag_pair(t: &Tag) -> (String, String) {
    (
        t.key.clone().unwrap_or_default(),
        t.value.clone().unwrap_or_default(),
    )
}

fn draft(r: &LifecycleRule) -> RuleDraft {
    RuleDraft {
        id: r.id.clone(),
        status: r.status.as_str().to_string(),
        prefix: r.prefix.clone(),
        filter: r.filter.as_ref().map(|f| FilterDraft {
            prefix: f.prefix.clone(),
            tag: f.tag.as_ref().map(tag_pair),
            size_greater_than: f.object_size_greater_than,
            size_less_than: f.object_size_less_than,
            and: f.and.as_ref().map(|a| AndDraft {
                prefix: a.prefix.clone(),
                tags: a
                    .tags
                    .as_ref()
                    .map(|t| t.iter().map(tag_pair).collect())
                    .unwrap_or_default(),
                size_greater_than: a.object_size_greater_than,
                size_less_than: a.object_size_less_than,
            }),
        }),
        expiration: r.expiration.as_ref().map(|e| ExpirationDraft {
            days: e.days.map(i64::from),
            date: e.date.as_ref().map(ts_to_ms),
            expired_object_delete_marker: e.expired_object_delete_marker,
        }),
        noncurrent_expiration: r
            .noncurrent_version_expiration
            .as_ref()
            .map(|n| NoncurrentDraft {
                noncurrent_days: n.noncurrent_days.map(i64::from),
                newer_noncurrent_versions: n.newer_noncurrent_versions.map(i64::from),
                storage_class: None,
            }),
        abort_multipart: r
            .abort_incomplete_multipart_upload
            .as_ref()
            .map(|a| a.days_after_initiation.map(i64::from)),
        transitions: r
            .transitions
            .iter()
            .flatten()
            .map(|t| TransitionDraft {
                days: t.days.map(i64::from),
                date: t.date.as_ref().map(ts_to_ms),
                storage_class: t.storage_class.as_ref().map(|c| c.as_str().to_string()),
            })
            .collect(),
        noncurrent_transitions: r
            .noncurrent_version_transitions
            .iter()
            .flatten()
            .map(|t| NoncurrentDraft {
                noncurrent_days: t.noncurrent_days.map(i64::from),
                newer_noncurrent_versions: t.newer_noncurrent_versions.map(i64::from),
                storage_class: t.storage_class.as_ref().map(|c| c.as_str().to_string()),
            })
            .collect(),
    }
}

fn tag_dto((k, v): &(String, String)) -> Tag {
    Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    }
}

fn size_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| n.min(i64::MAX as u64) as i64)
}

/// The stored configuration as S3 returns it (filters in the shape they were sent).
fn rules_dto(cfg: &LifecycleConfig) -> Vec<LifecycleRule> {
    cfg.rules
        .iter()
        .map(|r| {
            let f = &r.filter;
            let (prefix, filter) = match f.form {
                FilterForm::LegacyPrefix => (Some(f.prefix.clone()), None),
                FilterForm::Empty => (
                    None,
                    Some(LifecycleRuleFilter {
                        prefix: Some(String::new()),
                        ..Default::default()
                    }),
                ),
                FilterForm::Prefix => (
                    None,
                    Some(LifecycleRuleFilter {
                        prefix: Some(f.prefix.clone()),
                        ..Default::default()
                    }),
                ),
                FilterForm::Tag => (
                    None,
                    Some(LifecycleRuleFilter {
                        tag: f.tags.first().map(tag_dto),
                        ..Default::default()
                    }),
                ),
                FilterForm::SizeGreaterThan => (
                    None,
                    Some(LifecycleRuleFilter {
                        object_size_greater_than: size_i64(f.size_greater_than),
                        ..Default::default()
                    }),
                ),
                FilterForm::SizeLessThan => (
                    None,
                    Some(LifecycleRuleFilter {
                        object_size_less_than: size_i64(f.size_less_than),
                        ..Default::default()
                    }),
                ),
                FilterForm::And => (
                    None,
                    Some(LifecycleRuleFilter {
                        and: Some(LifecycleRuleAndOperator {
                            prefix: (!f.prefix.is_empty()).then(|| f.prefix.clone()),
                            tags: (!f.tags.is_empty())
                                .then(|| f.tags.iter().map(tag_dto).collect()),
                            object_size_greater_than: size_i64(f.size_greater_than),
                            object_size_less_than: size_i64(f.size_less_than),
                        }),
                        ..Default::default()
                    }),
                ),
            };
            LifecycleRule {
                id: Some(r.id.clone()),
                status: ExpirationStatus::from(
                    if r.enabled { "Enabled" } else { "Disabled" }.to_string(),
                ),
                prefix,
                filter,
                expiration: r.expiration.as_ref().map(|e| LifecycleExpiration {
                    days: e.days.map(|d| d as i32),
                    date: e.date.map(ts),
                    expired_object_delete_marker: e.expired_object_delete_marker.then_some(true),
                }),
                noncurrent_version_expiration: r.noncurrent_expiration.as_ref().map(|n| {
                    NoncurrentVersionExpiration {
                        noncurrent_days: n.noncurrent_days.map(|d| d as i32),
                        newer_noncurrent_versions: n.newer_noncurrent_versions.map(|d| d as i32),
                    }
                }),
                abort_incomplete_multipart_upload: r.abort_multipart_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: Some(d as i32),
                    }
                }),
                transitions: (!r.transitions.is_empty()).then(|| {
                    r.transitions
                        .iter()
                        .map(|t| Transition {
                            days: t.days.map(|d| d as i32),
                            date: t.date.map(ts),
                            storage_class: Some(TransitionStorageClass::from(
                                t.storage_class.clone(),
                            )),
                        })
                        .collect()
                }),
                noncurrent_version_transitions: (!r.noncurrent_transitions.is_empty()).then(|| {
                    r.noncurrent_transitions
                        .iter()
                        .map(|t| NoncurrentVersionTransition {
                            noncurrent_days: t.noncurrent_days.map(|d| d as i32),
                            newer_noncurrent_versions: t
                                .newer_noncurrent_versions
                                .map(|d| d as i32),
                            storage_class: Some(TransitionStorageClass::from(
                                t.storage_class.clone(),
                            )),
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

fn min_size_dto(cfg: &LifecycleConfig) -> TransitionDefaultMinimumObjectSize {
    TransitionDefaultMinimumObjectSize::from(
        cfg.transition_min_size
            .clone()
            .unwrap_or_else(|| MIN_SIZE_ALL_128K.to_string()),
    )
}

/// `x-amz-expiration` for the current version of `key`, if a rule will expire it.
pub(crate) fn expiration_header(
    bucket: &BucketRecord,
    key: &str,
    v: &VersionRecord,
) -> Option<String> {
    let cfg = bucket.lifecycle.as_ref()?;
    let (due, rule) = strata_engine::lifecycle::due::expiration_header(cfg, key, v)?;
    let rule = rule.replace('\\', "\\\\").replace('"', "\\\"");
    Some(format!(
        "expiry-date=\"{}\", rule-id=\"{rule}\"",
        fmt_http_date(&ts(due))
    ))
}

impl StrataS3 {
    pub(crate) async fn op_put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutLifecycleConfiguration"),
            )
            .await?;
        let Some(conf) = req.input.lifecycle_configuration else {
            return Err(s3_error!(MalformedXML));
        };
        let drafts: Vec<RuleDraft> = conf.rules.iter().map(draft).collect();
        let min = req
            .input
            .transition_default_minimum_object_size
            .as_ref()
            .map(|m| m.as_str().to_string());
        let cfg = validate(&drafts, min.as_deref(), strata_engine::now_ms()).map_err(|e| {
            tracing::info!(bucket = %b.name, error = %e.to_string().chars().take(200).collect::<String>(), "lifecycle configuration refused");
            errors::engine(e)
        })?;
        let out = PutBucketLifecycleConfigurationOutput {
            transition_default_minimum_object_size: Some(min_size_dto(&cfg)),
        };
        let rules = cfg.rules.len();
        self.ctx
            .engine
            .set_lifecycle(&b.name, Some(cfg))
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, rules, "lifecycle configuration stored");
        Ok(S3Response::new(out))
    }

    pub(crate) async fn op_get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetLifecycleConfiguration"),
            )
            .await?;
        let Some(cfg) = b.lifecycle.as_ref().filter(|c| !c.rules.is_empty()) else {
            return Err(s3_error!(
                NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist"
            ));
        };
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules_dto(cfg)),
            transition_default_minimum_object_size: Some(min_size_dto(cfg)),
        }))
    }

    pub(crate) async fn op_delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutLifecycleConfiguration"),
            )
            .await?;
        if b.lifecycle.is_some() {
            // The operator's retention rules stay (docs/retention.md).
            self.ctx
                .engine
                .set_lifecycle(&b.name, None)
                .await
                .map_err(errors::engine)?;
            tracing::info!(bucket = %b.name, "lifecycle configuration removed");
        }
        let mut resp = S3Response::new(DeleteBucketLifecycleOutput {});
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }
}
