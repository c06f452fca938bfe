//! When a rule's action falls due for a version, as S3 computes it, and which action wins.
//!
//! S3 adds the rule's days to the version's creation time (for noncurrent actions: to the time
//! it became noncurrent, i.e. the creation of the next newer version) and rounds the result up
//! to the next midnight UTC. A `Date` action is due from that midnight on. In the scaled mode
//! (`--lifecycle-day-secs N`) one day lasts N seconds and nothing is rounded; dates stay dates.

use serde::Serialize;
use strata_metadata::VersionRecord;
use strata_metadata::lifecycle::{LifecycleConfig, LifecycleRule};

use super::rules::{DEFAULT_MIN_TRANSITION_SIZE, MIN_SIZE_VARIES, class_rank, filter_matches};

pub const DAY_MS: i64 = 86_400_000;

/// The length of a lifecycle day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayClock {
    /// `Some(ms)`: the scaled mode, a day lasts `ms` and nothing is rounded.
    scaled_ms: Option<i64>,
}

impl Default for DayClock {
    fn default() -> Self {
        DayClock::real()
    }
}

/// The next midnight UTC at or after `t` (Unix ms).
pub fn ceil_midnight(t: i64) -> i64 {
    t.div_euclid(DAY_MS) * DAY_MS + if t.rem_euclid(DAY_MS) == 0 { 0 } else { DAY_MS }
}

impl DayClock {
    pub fn real() -> Self {
        DayClock { scaled_ms: None }
    }

    /// One day lasts `secs` seconds (at least 1).
    pub fn scaled(secs: u64) -> Self {
        DayClock {
            scaled_ms: Some((secs.max(1) as i64).saturating_mul(1000)),
        }
    }

    pub fn is_scaled(&self) -> bool {
        self.scaled_ms.is_some()
    }

    pub fn day_ms(&self) -> i64 {
        self.scaled_ms.unwrap_or(DAY_MS)
    }

    /// `base` plus `days` lifecycle days (rounded up to midnight UTC in real days).
    pub fn after_days(&self, base: i64, days: u32) -> i64 {
        match self.scaled_ms {
            Some(d) => base.saturating_add(d.saturating_mul(days as i64)),
            None => ceil_midnight(base.saturating_add(DAY_MS.saturating_mul(days as i64))),
        }
    }
}

/// What a rule may do to one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ActionKind {
    /// Expiration of the current version (delete marker in a versioned bucket, removal in an
    /// unversioned one).
    Expire,
    /// NoncurrentVersionExpiration: the version is removed.
    ExpireNoncurrent,
    /// ExpiredObjectDeleteMarker: a delete marker with no versions behind it is removed.
    RemoveDeleteMarker,
    Transition {
        storage_class: String,
    },
    NoncurrentTransition {
        storage_class: String,
    },
}

impl ActionKind {
    pub fn is_expiration(&self) -> bool {
        matches!(
            self,
            ActionKind::Expire | ActionKind::ExpireNoncurrent | ActionKind::RemoveDeleteMarker
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Expire => "expire",
            ActionKind::ExpireNoncurrent => "expire_noncurrent",
            ActionKind::RemoveDeleteMarker => "remove_delete_marker",
            ActionKind::Transition { .. } => "transition",
            ActionKind::NoncurrentTransition { .. } => "noncurrent_transition",
        }
    }

    fn class(&self) -> Option<&str> {
        match self {
            ActionKind::Transition { storage_class }
            | ActionKind::NoncurrentTransition { storage_class } => Some(storage_class),
            _ => None,
        }
    }
}

/// One action a rule would take, and from when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub rule_id: String,
    pub kind: ActionKind,
    pub due: i64,
}

/// Where a version stands among its object's versions (the walk knows it: versions come newest
/// first).
#[derive(Clone, Debug)]
pub struct VersionCtx<'a> {
    pub key: &'a str,
    pub version: &'a VersionRecord,
    pub is_latest: bool,
    /// When it became noncurrent (the next newer version's creation), if it is noncurrent.
    pub noncurrent_since: Option<i64>,
    /// Noncurrent versions newer than this one.
    pub newer_noncurrent: u32,
    /// A latest delete marker with no other version of the key.
    pub lone_delete_marker: bool,
}

/// May a transition to `class` move this version (S3's default minimum size)?
fn transition_allowed(
    cfg: &LifecycleConfig,
    rule: &LifecycleRule,
    v: &VersionRecord,
    class: &str,
) -> bool {
    if class_rank(class) <= class_rank(&v.storage_class) {
        return false;
    }
    let size_filtered =
        rule.filter.size_greater_than.is_some() || rule.filter.size_less_than.is_some();
    if v.size >= DEFAULT_MIN_TRANSITION_SIZE || size_filtered {
        return true;
    }
    cfg.transition_min_size.as_deref() == Some(MIN_SIZE_VARIES)
        && matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}

/// Every action `rule` would take on this version, with its due time (whether the filter and
/// the rule's status allow it is the caller's business).
pub fn rule_candidates(
    cfg: &LifecycleConfig,
    rule: &LifecycleRule,
    clock: &DayClock,
    c: &VersionCtx<'_>,
) -> Vec<Candidate> {
    let v = c.version;
    let mut out = Vec::new();
    let mut push = |kind: ActionKind, due: i64| {
        out.push(Candidate {
            rule_id: rule.id.clone(),
            kind,
            due,
        })
    };
    if c.is_latest && !v.is_delete_marker {
        if let Some(e) = &rule.expiration {
            if let Some(d) = e.days {
                push(ActionKind::Expire, clock.after_days(v.last_modified, d));
            } else if let Some(date) = e.date {
                push(ActionKind::Expire, date);
            }
        }
        for t in &rule.transitions {
            if !transition_allowed(cfg, rule, v, &t.storage_class) {
                continue;
            }
            let kind = ActionKind::Transition {
                storage_class: t.storage_class.clone(),
            };
            if let Some(d) = t.days {
                push(kind, clock.after_days(v.last_modified, d));
            } else if let Some(date) = t.date {
                push(kind, date);
            }
        }
    }
    if c.is_latest
        && c.lone_delete_marker
        && rule
            .expiration
            .as_ref()
            .is_some_and(|e| e.expired_object_delete_marker)
    {
        push(ActionKind::RemoveDeleteMarker, v.last_modified);
    }
    if let (false, Some(since)) = (c.is_latest, c.noncurrent_since) {
        if let Some(n) = &rule.noncurrent_expiration
            && n.newer_noncurrent_versions
                .is_none_or(|keep| c.newer_noncurrent >= keep)
        {
            push(
                ActionKind::ExpireNoncurrent,
                clock.after_days(since, n.noncurrent_days.unwrap_or(0)),
            );
        }
        if !v.is_delete_marker {
            for t in &rule.noncurrent_transitions {
                if !transition_allowed(cfg, rule, v, &t.storage_class)
                    || t.newer_noncurrent_versions
                        .is_some_and(|keep| c.newer_noncurrent < keep)
                {
                    continue;
                }
                push(
                    ActionKind::NoncurrentTransition {
                        storage_class: t.storage_class.clone(),
                    },
                    clock.after_days(since, t.noncurrent_days.unwrap_or(0)),
                );
            }
        }
    }
    out
}

/// Every action of every enabled rule whose filter covers the version.
pub fn candidates(cfg: &LifecycleConfig, clock: &DayClock, c: &VersionCtx<'_>) -> Vec<Candidate> {
    cfg.rules
        .iter()
        .filter(|r| r.enabled && filter_matches(&r.filter, c.key, c.version).is_ok())
        .flat_map(|r| rule_candidates(cfg, r, clock, c))
        .collect()
}

/// The action to take at `now`, if any: an expiration that is due wins over any transition;
/// among due transitions the coldest class wins (S3 resolves conflicts the cheaper way), and
/// among equals the earliest due.
pub fn decide(cands: &[Candidate], now: i64) -> Option<Candidate> {
    let due: Vec<&Candidate> = cands.iter().filter(|c| c.due <= now).collect();
    if let Some(e) = due
        .iter()
        .filter(|c| c.kind.is_expiration())
        .min_by_key(|c| c.due)
    {
        return Some((*e).clone());
    }
    due.iter()
        .max_by(|a, b| {
            let ra = class_rank(a.kind.class().unwrap_or(""));
            let rb = class_rank(b.kind.class().unwrap_or(""));
            ra.cmp(&rb).then(b.due.cmp(&a.due))
        })
        .map(|c| (*c).clone())
}

/// The `x-amz-expiration` answer for the current version: the earliest expiration of an
/// enabled rule whose filter covers it, computed in real days (the header does not follow the
/// scaled mode). (expiry time, rule id).
pub fn expiration_header(
    cfg: &LifecycleConfig,
    key: &str,
    v: &VersionRecord,
) -> Option<(i64, String)> {
    let clock = DayClock::real();
    let c = VersionCtx {
        key,
        version: v,
        is_latest: true,
        noncurrent_since: None,
        newer_noncurrent: 0,
        lone_delete_marker: false,
    };
    candidates(cfg, &clock, &c)
        .into_iter()
        .filter(|c| c.kind == ActionKind::Expire)
        .min_by_key(|c| c.due)
        .map(|c| (c.due, c.rule_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_up_to_midnight_utc() {
        // 2014-01-15 10:30 UTC + 3 days -> 2014-01-19 00:00 UTC (S3's own example).
        let created = 1_389_781_800_000;
        let due = DayClock::real().after_days(created, 3);
        assert_eq!(due, 1_390_089_600_000);
        // exactly midnight stays
        assert_eq!(ceil_midnight(1_390_089_600_000), 1_390_089_600_000);
        // scaled: no rounding
        assert_eq!(DayClock::scaled(2).after_days(1_000, 3), 7_000);
    }
}
