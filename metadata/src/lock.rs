//! Object Lock rules and the only ways to change a version's retention, legal hold and tags.
//!
//! The rules live here, in the tier that removes versions, so that no caller can skip them:
//! `delete_object` and null-version replacement refuse a version for which
//! [`VersionRecord::is_locked`] holds, and retention / legal hold change only through
//! [`MetaStore::set_retention`] and [`MetaStore::set_legal_hold`], each a compare-and-set on the
//! exact version record (which `delete_object` also conditions on, so a hold can never be lost
//! to a racing delete).

use crate::kv::{Batch, Space};
use crate::store::encode;
use crate::{DefaultRetention, LockMode, MetaError, MetaStore, Result, Retention, VersionRecord};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// S3's bounds for a bucket's default retention.
pub const MAX_DEFAULT_DAYS: u32 = 36_500;
pub const MAX_DEFAULT_YEARS: u32 = 100;

impl DefaultRetention {
    /// Exactly one of `days` (1..=36500) or `years` (1..=100), as S3 accepts
    /// (`InvalidRetentionPeriod` otherwise, S3's code for a bad Days/Years).
    pub fn new(mode: LockMode, days: Option<u32>, years: Option<u32>) -> Result<Self> {
        let bad = |m: &str| Err(MetaError::InvalidRetentionPeriod(m.into()));
        match (days, years) {
            (Some(_), Some(_)) => return bad("specify either Days or Years, not both"),
            (None, None) => return bad("specify Days or Years"),
            (Some(d), None) if !(1..=MAX_DEFAULT_DAYS).contains(&d) => {
                return bad("Days must be between 1 and 36500");
            }
            (None, Some(y)) if !(1..=MAX_DEFAULT_YEARS).contains(&y) => {
                return bad("Years must be between 1 and 100");
            }
            _ => {}
        }
        Ok(DefaultRetention { mode, days, years })
    }

    /// The retain-until date of a version created at `now` (a year is 365 days). `None` when
    /// the record is out of range (a stored value that `new` would refuse): never a panic.
    pub fn retain_until(&self, now: i64) -> Option<i64> {
        let days = match (self.days, self.years) {
            (Some(d), None) if (1..=MAX_DEFAULT_DAYS).contains(&d) => i64::from(d),
            (None, Some(y)) if (1..=MAX_DEFAULT_YEARS).contains(&y) => {
                i64::from(y).checked_mul(365)?
            }
            _ => return None,
        };
        now.checked_add(days.checked_mul(DAY_MS)?)
    }
}

impl VersionRecord {
    /// True while Object Lock forbids deleting this version (legal hold, or retention in the
    /// future). `bypass_governance` lets a GOVERNANCE retention be bypassed; COMPLIANCE never can.
    pub fn is_locked(&self, now: i64, bypass_governance: bool) -> bool {
        if self.legal_hold {
            return true;
        }
        match &self.retention {
            Some(r) if r.retain_until > now => match r.mode {
                LockMode::Compliance => true,
                LockMode::Governance => !bypass_governance,
            },
            _ => false,
        }
    }
}

/// Object Lock's rules for changing a version's retention: COMPLIANCE can only be extended (by
/// anyone, never shortened, removed or weakened); GOVERNANCE can be extended in the same mode by
/// anyone, but shortened, removed or changed to another mode (COMPLIANCE included) only with the
/// bypass flag, as S3 does. An expired retention imposes nothing. Refusal:
/// `RetentionDenied { compliance }` (the current mode).
pub fn check_retention_change(
    current: Option<&Retention>,
    wanted: Option<&Retention>,
    now: i64,
    bypass_governance: bool,
) -> Result<()> {
    let Some(cur) = current.filter(|c| c.retain_until > now) else {
        return Ok(());
    };
    let extends = |w: &Retention| w.mode == cur.mode && w.retain_until >= cur.retain_until;
    match wanted {
        Some(w) if extends(w) => Ok(()),
        _ if cur.mode == LockMode::Governance && bypass_governance => Ok(()),
        _ => Err(MetaError::RetentionDenied {
            compliance: cur.mode == LockMode::Compliance,
        }),
    }
}

impl MetaStore {
    /// PutObjectRetention: sets (or with `None` removes) the retention of a version (`None` id:
    /// the latest), following [`check_retention_change`]. `ObjectLockNotEnabled` if the bucket
    /// has no Object Lock.
    pub fn set_retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        wanted: Option<Retention>,
        bypass_governance: bool,
        now: i64,
    ) -> Result<VersionRecord> {
        self.change_version(bucket, key, version_id, true, |v| {
            check_retention_change(
                v.retention.as_ref(),
                wanted.as_ref(),
                now,
                bypass_governance,
            )?;
            v.retention = wanted.clone();
            Ok(())
        })
    }

    /// PutObjectLegalHold. `ObjectLockNotEnabled` if the bucket has no Object Lock.
    pub fn set_legal_hold(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        on: bool,
    ) -> Result<VersionRecord> {
        self.change_version(bucket, key, version_id, true, |v| {
            v.legal_hold = on;
            Ok(())
        })
    }

    /// PutObjectTagging / DeleteObjectTagging (empty `tags`). Tags are validated by the gateway.
    pub fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Result<VersionRecord> {
        self.change_version(bucket, key, version_id, false, |v| {
            v.tags = tags.clone();
            Ok(())
        })
    }

    /// PutObjectAcl: replaces a version's ACL (`None`: back to `private` for its owner). The
    /// ACL is validated by the engine.
    pub fn set_version_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: Option<crate::acl::Acl>,
    ) -> Result<VersionRecord> {
        self.change_version(bucket, key, version_id, false, |v| {
            v.acl = acl.clone();
            Ok(())
        })
    }

    /// Compare-and-set of one version record. `None` id: the latest version, and a latest delete
    /// marker is `NoSuchKey`; by id, a delete marker is `IsDeleteMarker`.
    fn change_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        needs_lock: bool,
        mut change: impl FnMut(&mut VersionRecord) -> Result<()>,
    ) -> Result<VersionRecord> {
        self.retry(|| {
            let (_, brec) = self.read_bucket(bucket)?;
            if needs_lock && !brec.object_lock_enabled {
                return Err(MetaError::ObjectLockNotEnabled);
            }
            let (vkey, raw, rec) = self.locate_version(bucket, key, version_id)?;
            if rec.is_delete_marker {
                return Err(match version_id {
                    None => MetaError::NoSuchKey,
                    Some(_) => MetaError::IsDeleteMarker {
                        version_id: rec.version_id,
                        last_modified: rec.last_modified,
                    },
                });
            }
            let mut new = rec.clone();
            change(&mut new)?;
            let mut b = Batch::default();
            b.equals(Space::Versions, &vkey, &raw);
            b.put(Space::Versions, vkey, encode(&new));
            self.kv().commit(b)?;
            Ok(new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: LockMode, until: i64) -> Retention {
        Retention {
            mode,
            retain_until: until,
        }
    }

    const DENIED_C: Result<()> = Err(MetaError::RetentionDenied { compliance: true });
    const DENIED_G: Result<()> = Err(MetaError::RetentionDenied { compliance: false });

    #[test]
    fn compliance_can_only_be_extended() {
        let cur = r(LockMode::Compliance, 1000);
        let c = Some(&cur);
        assert_eq!(
            check_retention_change(c, Some(&r(LockMode::Compliance, 2000)), 10, false),
            Ok(())
        );
        assert_eq!(
            check_retention_change(c, Some(&r(LockMode::Compliance, 500)), 10, true),
            DENIED_C
        );
        assert_eq!(check_retention_change(c, None, 10, true), DENIED_C);
        assert_eq!(
            check_retention_change(c, Some(&r(LockMode::Governance, 5000)), 10, true),
            DENIED_C
        );
        // Once expired, anything goes.
        assert_eq!(check_retention_change(c, None, 2000, false), Ok(()));
    }

    #[test]
    fn governance_needs_bypass_to_shorten() {
        let cur = r(LockMode::Governance, 1000);
        let g = Some(&cur);
        assert_eq!(
            check_retention_change(g, Some(&r(LockMode::Governance, 500)), 10, false),
            DENIED_G
        );
        assert_eq!(
            check_retention_change(g, Some(&r(LockMode::Governance, 500)), 10, true),
            Ok(())
        );
        assert_eq!(check_retention_change(g, None, 10, false), DENIED_G);
        assert_eq!(check_retention_change(g, None, 10, true), Ok(()));
        // Changing the mode of a GOVERNANCE retention (even to COMPLIANCE) needs the bypass.
        assert_eq!(
            check_retention_change(g, Some(&r(LockMode::Compliance, 1000)), 10, false),
            DENIED_G
        );
        assert_eq!(
            check_retention_change(g, Some(&r(LockMode::Compliance, 2000)), 10, true),
            Ok(())
        );
        assert_eq!(
            check_retention_change(g, Some(&r(LockMode::Governance, 2000)), 10, false),
            Ok(())
        );
        assert_eq!(check_retention_change(None, None, 10, false), Ok(()));
    }

    #[test]
    fn default_retention_is_bounded_and_never_overflows() {
        let g = LockMode::Governance;
        assert!(DefaultRetention::new(g, Some(1), None).is_ok());
        assert!(DefaultRetention::new(g, Some(36_500), None).is_ok());
        assert!(DefaultRetention::new(g, None, Some(100)).is_ok());
        for (d, y) in [
            (Some(0), None),
            (Some(36_501), None),
            (None, Some(0)),
            (None, Some(101)),
            (None, Some(2_147_483_647)),
            (Some(1), Some(1)),
            (None, None),
        ] {
            assert!(
                matches!(
                    DefaultRetention::new(g, d, y),
                    Err(MetaError::InvalidRetentionPeriod(_))
                ),
                "{d:?} {y:?}"
            );
        }
        let one_day = DefaultRetention::new(g, Some(1), None).unwrap();
        assert_eq!(one_day.retain_until(1000), Some(1000 + DAY_MS));
        let century = DefaultRetention::new(g, None, Some(100)).unwrap();
        assert_eq!(century.retain_until(0), Some(36_500 * DAY_MS));
        // A stored record that `new` would refuse (e.g. from before the bounds) gives None.
        let bad = DefaultRetention {
            mode: g,
            days: None,
            years: Some(u32::MAX),
        };
        assert_eq!(bad.retain_until(0), None);
        assert_eq!(century.retain_until(i64::MAX), None);
    }
}
