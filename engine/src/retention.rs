//! Retention presets: the periods the operator's rules name, applied to a bucket (or a prefix)
//! as a lifecycle expiration, and optionally as the bucket's default Object Lock retention so
//! that nothing is destroyed before the period ends either.
//!
//! The presets are stored in the bucket record (`retention_rules`) and merged into the bucket's
//! lifecycle configuration as rules with reserved ids (`strata-retention-...`), which the
//! lifecycle engine executes like any other; their expirations are destructions with reason
//! `retention_end` and the rule id. The bucket owner sees them in GetBucketLifecycleConfiguration
//! but cannot replace or delete them: [`Engine::set_lifecycle`] keeps them.

use serde_json::{Value, json};
use strata_metadata::lifecycle::{
    ExpirationAction, FilterForm, LifecycleConfig, LifecycleRule, NoncurrentExpiration, RuleFilter,
};
use strata_metadata::{BucketRecord, DefaultRetention, LockMode, MetaError, RetentionRule};

use crate::{Engine, Result, now_ms};

/// Ids of the rules retention presets make start with this; user rules may not.
pub const RULE_ID_PREFIX: &str = "strata-retention-";

/// S3's limit on rules per configuration.
const MAX_RULES: usize = 1000;

/// (name, days, what it is for).
pub const PRESETS: &[(&str, u32, &str)] = &[
    ("login-records", 90, "login records: 3 months"),
    (
        "advertising-records",
        180,
        "advertising / marketing records: 6 months",
    ),
    ("fraud-records", 365, "fraud investigation records: 1 year"),
    (
        "consumer-disputes",
        1095,
        "consumer complaint and dispute records: 3 years",
    ),
    (
        "contracts-payments",
        1825,
        "contract, withdrawal, payment and delivery records: 5 years",
    ),
];

pub fn preset_days(name: &str) -> Option<u32> {
    PRESETS.iter().find(|p| p.0 == name).map(|p| p.1)
}

/// The id of the rule a preset makes for `prefix`: stable, so applying a preset to the same
/// prefix again replaces its rule instead of adding one.
pub fn rule_id(preset: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("{RULE_ID_PREFIX}{preset}")
    } else {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(prefix.as_bytes()));
        format!("{RULE_ID_PREFIX}{preset}-{}", &h[..12])
    }
}

/// Noncurrent versions go one day after they became noncurrent when Object Lock keeps every
/// version for the period anyway, else the full period after (never earlier than the period
/// after creation). The noncurrent action is always present: a bucket may become versioned later.
fn noncurrent_days(rule: &RetentionRule, locked: bool) -> u32 {
    if locked { 1 } else { rule.days }
}

/// The lifecycle rule of one preset.
pub fn lifecycle_rule(rule: &RetentionRule, locked: bool) -> LifecycleRule {
    LifecycleRule {
        id: rule.id.clone(),
        enabled: true,
        filter: RuleFilter {
            form: FilterForm::Prefix,
            prefix: rule.prefix.clone(),
            ..Default::default()
        },
        expiration: Some(ExpirationAction {
            days: Some(rule.days),
            ..Default::default()
        }),
        noncurrent_expiration: Some(NoncurrentExpiration {
            noncurrent_days: Some(noncurrent_days(rule, locked)),
            newer_noncurrent_versions: None,
        }),
        abort_multipart_days: None,
        transitions: vec![],
        noncurrent_transitions: vec![],
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The same rule as S3 lifecycle XML (what the operator is shown and docs/retention.md lists).
pub fn rule_xml(rule: &RetentionRule, locked: bool) -> String {
    format!(
        "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>Enabled</Status>\
         <Expiration><Days>{}</Days></Expiration>\
         <NoncurrentVersionExpiration><NoncurrentDays>{}</NoncurrentDays>\
         </NoncurrentVersionExpiration></Rule>",
        xml_escape(&rule.id),
        xml_escape(&rule.prefix),
        rule.days,
        noncurrent_days(rule, locked)
    )
}

/// Whether `rule_id` names one of `bucket`'s retention rules (its expirations are retention
/// ends, not user lifecycle).
pub fn is_retention_rule(bucket: &BucketRecord, rule_id: &str) -> bool {
    bucket.retention_rules.iter().any(|r| r.id == rule_id)
}

/// `user` (the owner's rules, `None` for none) plus the bucket's retention rules: the
/// configuration the lifecycle engine runs. `None` when there is no rule at all.
pub fn merged_lifecycle(
    bucket: &BucketRecord,
    user: Option<LifecycleConfig>,
) -> strata_metadata::Result<Option<LifecycleConfig>> {
    let locked = bucket.default_retention.is_some();
    let mut cfg = user.unwrap_or_default();
    if let Some(r) = cfg.rules.iter().find(|r| r.id.starts_with(RULE_ID_PREFIX)) {
        return Err(MetaError::Invalid(format!(
            "rule id {:?}: ids starting with {RULE_ID_PREFIX:?} are reserved for the operator's retention rules",
            r.id.chars().take(64).collect::<String>()
        )));
    }
    cfg.rules.extend(
        bucket
            .retention_rules
            .iter()
            .map(|r| lifecycle_rule(r, locked)),
    );
    if cfg.rules.len() > MAX_RULES {
        return Err(MetaError::Invalid(format!(
            "a lifecycle configuration holds at most {MAX_RULES} rules (with the bucket's retention rules)"
        )));
    }
    cfg.updated = now_ms();
    Ok((!cfg.rules.is_empty()).then_some(cfg))
}

/// The owner's part of a bucket's lifecycle configuration (without the retention rules).
pub fn user_rules(bucket: &BucketRecord) -> Option<LifecycleConfig> {
    let mut cfg = bucket.lifecycle.clone()?;
    cfg.rules.retain(|r| !is_retention_rule(bucket, &r.id));
    (!cfg.rules.is_empty()).then_some(cfg)
}

impl Engine {
    /// Applies retention preset `preset` to `bucket` (or to the keys under `prefix`): records
    /// the rule and writes the bucket's lifecycle configuration; with `lock`, also the bucket's
    /// default Object Lock retention of the same length (the bucket must have Object Lock).
    pub async fn apply_retention(
        &self,
        bucket: &str,
        preset: &str,
        prefix: &str,
        lock: Option<LockMode>,
    ) -> Result<Value> {
        let days = preset_days(preset).ok_or_else(|| {
            MetaError::Invalid(format!(
                "unknown retention preset {preset:?}; known: {}",
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if prefix.len() > 1024 {
            return Err(MetaError::Invalid("prefix longer than 1024 bytes".into()).into());
        }
        let default = match lock {
            Some(mode) => Some(DefaultRetention::new(mode, Some(days), None)?),
            None => None,
        };
        let (preset, prefix) = (preset.to_string(), prefix.to_string());
        let rec = self
            .update_bucket(bucket, move |b| {
                if let Some(d) = &default {
                    if !b.object_lock_enabled {
                        return Err(MetaError::ObjectLockNotEnabled);
                    }
                    b.default_retention = Some(d.clone());
                }
                let user = user_rules(b);
                b.retention_rules.retain(|r| r.prefix != prefix);
                b.retention_rules.push(RetentionRule {
                    id: rule_id(&preset, &prefix),
                    preset: preset.clone(),
                    prefix: prefix.clone(),
                    days,
                    applied_ms: now_ms(),
                });
                b.lifecycle = merged_lifecycle(b, user)?;
                Ok(())
            })
            .await?;
        tracing::info!(target: "strata::audit", bucket, days, "retention preset applied");
        Ok(json!({
            "bucket": rec.name,
            "rules": rec.retention_rules,
            "default_retention": rec.default_retention.as_ref().map(|d| json!({"mode": format!("{:?}", d.mode).to_uppercase(), "days": d.days})),
            "lifecycle_xml": lifecycle_xml(&rec),
        }))
    }

    /// Stores the owner's lifecycle configuration (`None`: removes it), keeping the bucket's
    /// retention rules, which only the operator changes.
    pub async fn set_lifecycle(
        &self,
        bucket: &str,
        user: Option<LifecycleConfig>,
    ) -> Result<BucketRecord> {
        // Checked first so the owner gets S3's InvalidArgument; the update checks again.
        if let Some(b) = self.bucket(bucket).await? {
            merged_lifecycle(&b, user.clone()).map_err(|e| {
                crate::EngineError::Rejected(crate::Rejection::InvalidLifecycle {
                    code: "InvalidArgument",
                    message: e.to_string(),
                })
            })?;
        }
        self.update_bucket(bucket, move |b| {
            b.lifecycle = merged_lifecycle(b, user.clone())?;
            Ok(())
        })
        .await
    }
}

/// The retention rules of `bucket` as one S3 lifecycle XML document.
pub fn lifecycle_xml(bucket: &BucketRecord) -> String {
    let locked = bucket.default_retention.is_some();
    let mut x =
        String::from("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for r in &bucket.retention_rules {
        x.push_str(&rule_xml(r, locked));
    }
    x.push_str("</LifecycleConfiguration>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_renders_a_rule_with_its_days() {
        for (name, days, _) in PRESETS {
            let r = RetentionRule {
                id: format!("strata-retention-{name}"),
                preset: name.to_string(),
                prefix: "logs/<&>".into(),
                days: *days,
                applied_ms: 0,
            };
            let x = rule_xml(&r, false);
            assert!(x.contains(&format!("<Days>{days}</Days>")), "{x}");
            assert!(x.contains(&format!("<NoncurrentDays>{days}</NoncurrentDays>")));
            assert!(x.contains("<Prefix>logs/&lt;&amp;&gt;</Prefix>"));
            assert!(rule_xml(&r, true).contains("<NoncurrentDays>1</NoncurrentDays>"));
            let rule = lifecycle_rule(&r, false);
            assert_eq!(rule.expiration.unwrap().days, Some(*days));
            assert_eq!(rule.filter.prefix, "logs/<&>");
        }
        assert_eq!(preset_days("contracts-payments"), Some(1825));
        assert_eq!(preset_days("nope"), None);
    }

    fn bucket_with(rules: Vec<RetentionRule>) -> BucketRecord {
        let mut b: BucketRecord = serde_json::from_value(json!({
            "name": "b", "owner": "u", "created": 0, "region": "r", "versioning": "Enabled",
            "object_lock_enabled": false, "default_retention": null, "lifecycle_xml": null,
            "tags": [], "kek_id": "", "wrapped_kek": [],
        }))
        .unwrap();
        b.retention_rules = rules;
        b
    }

    #[test]
    fn retention_rules_survive_the_owners_configuration_changes() {
        let r = RetentionRule {
            id: rule_id("login-records", "auth/"),
            preset: "login-records".into(),
            prefix: "auth/".into(),
            days: 90,
            applied_ms: 0,
        };
        assert_eq!(r.id, rule_id("login-records", "auth/"), "stable per prefix");
        assert_ne!(r.id, rule_id("login-records", "auth2/"));
        let mut b = bucket_with(vec![r.clone()]);
        let mine = LifecycleConfig {
            rules: vec![LifecycleRule {
                id: "mine".into(),
                ..lifecycle_rule(&r, false)
            }],
            ..Default::default()
        };
        b.lifecycle = merged_lifecycle(&b, Some(mine)).unwrap();
        let ids: Vec<_> = b
            .lifecycle
            .as_ref()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(ids, vec!["mine".to_string(), r.id.clone()]);
        assert!(is_retention_rule(&b, &r.id) && !is_retention_rule(&b, "mine"));
        assert_eq!(user_rules(&b).unwrap().rules.len(), 1);
        // The owner deletes the configuration: the retention rule stays.
        b.lifecycle = merged_lifecycle(&b, None).unwrap();
        assert_eq!(b.lifecycle.as_ref().unwrap().rules.len(), 1);
        assert!(user_rules(&b).is_none());
        // Reserved ids are refused.
        let forged = LifecycleConfig {
            rules: vec![lifecycle_rule(&r, false)],
            ..Default::default()
        };
        assert!(matches!(
            merged_lifecycle(&b, Some(forged)),
            Err(MetaError::Invalid(_))
        ));
        // Nothing at all: no configuration.
        assert!(
            merged_lifecycle(&bucket_with(vec![]), None)
                .unwrap()
                .is_none()
        );
    }
}
