//! Retention presets: the periods the operator's rules name, applied to a bucket (or a prefix)
//! as a lifecycle expiration, and optionally as the bucket's default Object Lock retention so
//! that nothing is destroyed before the period ends either.
//!
//! The presets are stored in the bucket record (`retention_rules`) and rendered as S3 lifecycle
//! XML (`lifecycle_xml`), which is what the lifecycle engine executes; expirations then go
//! through the destruction path like any delete (one record per destroyed version).

use serde_json::{Value, json};
use strata_metadata::{
    BucketRecord, DefaultRetention, LockMode, MetaError, RetentionRule, VersioningState,
};

use crate::{Engine, Result, now_ms};

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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The S3 lifecycle rule of one preset. In a versioned bucket the current version expires after
/// `days` (a delete marker) and noncurrent versions are destroyed one day after they became
/// noncurrent when Object Lock keeps them `days` anyway, else `days` after.
pub fn rule_xml(rule: &RetentionRule, versioned: bool, locked: bool) -> String {
    let mut x = format!(
        "<Rule><ID>{}</ID><Filter><Prefix>{}</Prefix></Filter><Status>Enabled</Status>\
         <Expiration><Days>{}</Days></Expiration>",
        xml_escape(&rule.id),
        xml_escape(&rule.prefix),
        rule.days
    );
    if versioned {
        let noncurrent = if locked { 1 } else { rule.days };
        x.push_str(&format!(
            "<NoncurrentVersionExpiration><NoncurrentDays>{noncurrent}</NoncurrentDays>\
             </NoncurrentVersionExpiration>"
        ));
    }
    x.push_str("</Rule>");
    x
}

/// The whole lifecycle configuration the presets of `bucket` make.
pub fn lifecycle_xml(bucket: &BucketRecord) -> String {
    let versioned = bucket.versioning != VersioningState::Unversioned;
    let locked = bucket.default_retention.is_some();
    let mut x =
        String::from("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for r in &bucket.retention_rules {
        x.push_str(&rule_xml(r, versioned, locked));
    }
    x.push_str("</LifecycleConfiguration>");
    x
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
                b.retention_rules.retain(|r| r.prefix != prefix);
                let id = if prefix.is_empty() {
                    format!("strata-retention-{preset}")
                } else {
                    format!("strata-retention-{preset}-{}", b.retention_rules.len() + 1)
                };
                b.retention_rules.push(RetentionRule {
                    id,
                    preset: preset.clone(),
                    prefix: prefix.clone(),
                    days,
                    applied_ms: now_ms(),
                });
                b.lifecycle_xml = Some(lifecycle_xml(b));
                Ok(())
            })
            .await?;
        tracing::info!(target: "strata::audit", bucket, days, "retention preset applied");
        Ok(json!({
            "bucket": rec.name,
            "rules": rec.retention_rules,
            "default_retention": rec.default_retention.as_ref().map(|d| json!({"mode": format!("{:?}", d.mode).to_uppercase(), "days": d.days})),
            "lifecycle_xml": rec.lifecycle_xml,
        }))
    }
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
            let x = rule_xml(&r, true, false);
            assert!(x.contains(&format!("<Days>{days}</Days>")), "{x}");
            assert!(x.contains(&format!("<NoncurrentDays>{days}</NoncurrentDays>")));
            assert!(x.contains("<Prefix>logs/&lt;&amp;&gt;</Prefix>"));
            assert!(rule_xml(&r, true, true).contains("<NoncurrentDays>1</NoncurrentDays>"));
            assert!(!rule_xml(&r, false, false).contains("Noncurrent"));
        }
        assert_eq!(preset_days("contracts-payments"), Some(1825));
        assert_eq!(preset_days("nope"), None);
    }
}
