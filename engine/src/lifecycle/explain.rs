//! `strata admin lifecycle explain` (which rule applies to a version, when it is due, and why
//! nothing happened yet) and `preview` (what the rules would do in the next N days), computed
//! exactly as the worker decides, without doing anything.

use serde_json::{Value, json};
use strata_metadata::lifecycle::LifecycleConfig;
use strata_metadata::{BucketRecord, MetaError, VersionRecord, VersionRef, VersioningState};

use super::due::{ActionKind, VersionCtx, decide, rule_candidates};
use super::rules::{class_rank, filter_matches};
use crate::{Engine, EngineError, now_ms};

/// Walk facts of one version: (is_latest, noncurrent_since, newer_noncurrent, lone marker).
type Facts = (bool, Option<i64>, u32, bool);

/// The facts of every version of a run of versions in walk order (key, newest first). The run
/// must hold every version of each key it contains.
fn facts(rows: &[VersionRef]) -> Vec<Facts> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let latest = i == 0 || rows[i - 1].key != r.key;
        if latest {
            let lone = r.version.is_delete_marker && rows.get(i + 1).is_none_or(|n| n.key != r.key);
            out.push((true, None, 0, lone));
        } else {
            let prev: &Facts = &out[i - 1];
            let newer_noncurrent = if prev.0 { 0 } else { prev.2 + 1 };
            out.push((
                false,
                Some(rows[i - 1].version.last_modified),
                newer_noncurrent,
                false,
            ));
        }
    }
    out
}

fn ctx<'a>(key: &'a str, v: &'a VersionRecord, f: Facts) -> VersionCtx<'a> {
    VersionCtx {
        key,
        version: v,
        is_latest: f.0,
        noncurrent_since: f.1,
        newer_noncurrent: f.2,
        lone_delete_marker: f.3,
    }
}

async fn config(
    engine: &Engine,
    bucket: &str,
) -> Result<(BucketRecord, LifecycleConfig), EngineError> {
    let b = engine
        .bucket(bucket)
        .await?
        .ok_or(EngineError::Meta(MetaError::NoSuchBucket))?;
    let cfg = b.lifecycle.clone().unwrap_or_default();
    Ok((b, cfg))
}

/// Every version of one key, newest first (bounded: 10 000).
async fn key_versions(
    engine: &Engine,
    bucket: &str,
    key: &str,
) -> Result<Vec<VersionRef>, EngineError> {
    let page = engine
        .list_versions(
            bucket,
            strata_metadata::ListVersionsParams {
                prefix: key.to_string(),
                max_keys: 10_000,
                ..Default::default()
            },
        )
        .await?;
    Ok(page
        .entries
        .into_iter()
        .filter(|e| e.key == key)
        .map(|e| VersionRef {
            bucket: bucket.to_string(),
            key: e.key,
            version: e.version,
        })
        .collect())
}

/// Why one version is or is not acted on.
pub async fn explain(
    engine: &Engine,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Value, EngineError> {
    let (b, cfg) = config(engine, bucket).await?;
    let rows = key_versions(engine, bucket, key).await?;
    let idx = match version_id {
        None => 0,
        Some(id) => rows
            .iter()
            .position(|r| r.version.version_id == id)
            .ok_or(EngineError::Meta(MetaError::NoSuchVersion))?,
    };
    let row = rows
        .get(idx)
        .ok_or(EngineError::Meta(MetaError::NoSuchKey))?;
    let f = facts(&rows)[idx];
    let clock = engine.lifecycle_clock();
    let now = now_ms();
    let v = &row.version;
    let c = ctx(key, v, f);
    let mut rules = Vec::new();
    let mut all = Vec::new();
    for r in &cfg.rules {
        let mut entry = json!({"rule_id": r.id, "enabled": r.enabled});
        let miss = filter_matches(&r.filter, key, v).err();
        entry["filter_matches"] = json!(miss.is_none());
        if let Some(m) = &miss {
            entry["filter_miss"] = json!(m);
        }
        let cands = rule_candidates(&cfg, r, &clock, &c);
        entry["actions"] = json!(
            cands
                .iter()
                .map(|c| json!({
                    "action": c.kind.name(),
                    "kind": c.kind,
                    "due": c.due,
                    "due_in_ms": c.due - now,
                    "is_due": c.due <= now,
                }))
                .collect::<Vec<_>>()
        );
        let mut why = Vec::new();
        if !r.enabled {
            why.push("rule disabled".to_string());
        }
        if let Some(m) = &miss {
            why.push(format!(
                "filter does not match ({})",
                serde_json::to_value(m)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            ));
        }
        if cands.is_empty() && miss.is_none() {
            why.push(no_action_reason(&cfg, r, &c));
        }
        entry["why_not"] = json!(why);
        if r.enabled && miss.is_none() {
            all.extend(cands);
        }
        rules.push(entry);
    }
    let decided = decide(&all, now);
    let next = all.iter().filter(|c| c.due > now).min_by_key(|c| c.due);
    let mut blocked = Vec::new();
    if let Some(d) = &decided {
        let removes = match d.kind {
            ActionKind::ExpireNoncurrent => true,
            ActionKind::Expire => b.versioning == VersioningState::Unversioned,
            _ => false,
        };
        if removes && v.is_locked(now, false) {
            if v.legal_hold {
                blocked.push("legal hold".to_string());
            }
            if let Some(r) = &v.retention
                && r.retain_until > now
            {
                blocked.push(format!("retention {:?} until {}", r.mode, r.retain_until));
            }
        }
    }
    Ok(json!({
        "bucket": bucket,
        "key": key,
        "version_id": v.version_id,
        "is_latest": f.0,
        "is_delete_marker": v.is_delete_marker,
        "noncurrent_since": f.1,
        "storage_class": v.storage_class,
        "size": v.size,
        "scaled_day_ms": clock.is_scaled().then(|| clock.day_ms()),
        "rules": rules,
        "due_now": decided.as_ref().map(|d| json!({"rule_id": d.rule_id, "action": d.kind.name(), "kind": d.kind, "due": d.due})),
        "blocked_by": blocked,
        "next": next.map(|n| json!({"rule_id": n.rule_id, "action": n.kind.name(), "due": n.due, "due_in_ms": n.due - now})),
        "note": if decided.is_some() && blocked.is_empty() {
            "due: the next lifecycle pass performs it"
        } else if !blocked.is_empty() {
            "due but blocked by Object Lock; retried every pass until the lock ends"
        } else if next.is_some() {
            "not due yet"
        } else {
            "no rule will act on this version"
        },
    }))
}

fn no_action_reason(
    cfg: &LifecycleConfig,
    r: &strata_metadata::lifecycle::LifecycleRule,
    c: &VersionCtx<'_>,
) -> String {
    let v = c.version;
    if c.is_latest && v.is_delete_marker {
        return if c.lone_delete_marker {
            "the rule has no ExpiredObjectDeleteMarker".into()
        } else {
            "delete marker with versions behind it".into()
        };
    }
    let has_current = r
        .expiration
        .as_ref()
        .is_some_and(|e| e.days.is_some() || e.date.is_some())
        || !r.transitions.is_empty();
    let has_noncurrent = r.noncurrent_expiration.is_some() || !r.noncurrent_transitions.is_empty();
    if c.is_latest && !has_current {
        return "the rule only acts on noncurrent versions (or uploads)".into();
    }
    if !c.is_latest && !has_noncurrent {
        return "the rule only acts on current versions".into();
    }
    if let Some(n) = &r.noncurrent_expiration
        && let Some(keep) = n.newer_noncurrent_versions
        && c.newer_noncurrent < keep
    {
        return format!("kept: one of the {keep} newest noncurrent versions");
    }
    let colder = r
        .transitions
        .iter()
        .any(|t| class_rank(&t.storage_class) > class_rank(&v.storage_class));
    if !colder && r.expiration.is_none() {
        return format!(
            "already in {} (transitions only go colder)",
            v.storage_class
        );
    }
    if v.size < super::rules::DEFAULT_MIN_TRANSITION_SIZE
        && cfg.transition_min_size.as_deref() != Some(super::rules::MIN_SIZE_VARIES)
    {
        return "smaller than the 128 KiB default minimum transition size".into();
    }
    "no action applies".into()
}

/// What the current rules would do within `days` lifecycle days from now, on at most `limit`
/// versions of the bucket (key order), without doing it.
pub async fn preview(
    engine: &Engine,
    bucket: &str,
    days: u32,
    limit: usize,
) -> Result<Value, EngineError> {
    let (b, cfg) = config(engine, bucket).await?;
    let clock = engine.lifecycle_clock();
    let now = now_ms();
    let horizon = now.saturating_add(clock.day_ms().saturating_mul(days as i64));
    let limit = limit.clamp(1, 1_000_000);
    let mut rows: Vec<VersionRef> = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    let mut complete = false;
    while rows.len() < limit {
        let (name, after) = (b.name.clone(), cursor.clone());
        let want = (limit - rows.len()).min(1000);
        let (page, next) = engine
            .meta_call(move |m| m.scan_bucket_versions(&name, after.as_deref(), want))
            .await?;
        rows.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => {
                complete = true;
                break;
            }
        }
    }
    if !complete {
        // The last key may be cut: leave it out so its facts are not wrong.
        if let Some(last) = rows.last().map(|r| r.key.clone()) {
            rows.retain(|r| r.key != last);
        }
    }
    let f = facts(&rows);
    let mut actions = Vec::new();
    for (r, f) in rows.iter().zip(f) {
        let c = ctx(&r.key, &r.version, f);
        let cands: Vec<_> = cfg
            .rules
            .iter()
            .filter(|x| x.enabled && filter_matches(&x.filter, &r.key, &r.version).is_ok())
            .flat_map(|x| rule_candidates(&cfg, x, &clock, &c))
            .collect();
        if let Some(d) = decide(&cands, horizon) {
            let locked = matches!(d.kind, ActionKind::ExpireNoncurrent)
                || (d.kind == ActionKind::Expire && b.versioning == VersioningState::Unversioned);
            actions.push(json!({
                "key": r.key,
                "version_id": r.version.version_id,
                "is_latest": f.0,
                "rule_id": d.rule_id,
                "action": d.kind.name(),
                "kind": d.kind,
                "due": d.due,
                "due_now": d.due <= now,
                "blocked_by_lock": locked && r.version.is_locked(d.due.max(now), false),
                "size": r.version.size,
            }));
        }
    }
    Ok(json!({
        "bucket": bucket,
        "days": days,
        "horizon": horizon,
        "versions_examined": rows.len(),
        "complete": complete,
        "actions": actions,
    }))
}
