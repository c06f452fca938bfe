//! Access checks of the S3 operations. Every operation asks the one decision,
//! [`strata_engine::authz::authorize`], through these helpers with the caller (a user, or
//! anonymous for an unsigned request), the S3 action, the resource (bucket, key, version) and
//! the request's condition keys; `AccessDenied` (403) when it denies.
//!
//! Unsigned requests reach the handlers only without a body, or with the body of a write a grant
//! allows: [`check_anonymous_body`] runs before s3s reads any byte of a body.

use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use strata_engine::Engine;
use strata_engine::authz::{self, Action, ConditionKeys, Decision, Principal};
use strata_metadata::{BucketRecord, VersionRecord};

use super::StrataS3;
use crate::auth::Caller;
use crate::errors;

/// The caller of one request and its condition keys (`aws:SourceIp`, `aws:SecureTransport`,
/// `aws:CurrentTime`, `aws:username`, ... and the operation's own, e.g. `s3:prefix`).
pub(crate) struct Who {
    pub caller: Caller,
    pub conditions: ConditionKeys,
}

impl std::ops::Deref for Who {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl Who {
    /// Adds an operation's condition key (`s3:prefix`, `s3:x-amz-acl`, ...) when it is set.
    pub fn condition(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.conditions.insert(key.to_string(), vec![v.to_string()]);
        }
    }

    /// The condition keys an object write's headers give (S3's): `s3:x-amz-acl`,
    /// `s3:x-amz-server-side-encryption`, `s3:x-amz-server-side-encryption-aws-kms-key-id`,
    /// `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` (from `x-amz-tagging`; a
    /// malformed header is refused later by the write itself), `s3:if-none-match`.
    pub fn write_conditions(&mut self, w: WriteHeaders<'_>) {
        self.condition("s3:x-amz-acl", w.acl);
        self.condition("s3:x-amz-server-side-encryption", w.sse);
        self.condition("s3:x-amz-server-side-encryption-aws-kms-key-id", w.kms_key);
        self.condition("s3:if-none-match", w.if_none_match);
        if let Some(tags) = w
            .tagging
            .and_then(|t| super::common::parse_tag_header(t).ok())
        {
            self.request_tags(&tags);
        }
    }

    /// `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` of the tags a request sets.
    pub fn request_tags(&mut self, tags: &[(String, String)]) {
        for (k, v) in tags {
            self.conditions
                .insert(format!("s3:RequestObjectTag/{k}"), vec![v.clone()]);
        }
        if !tags.is_empty() {
            self.conditions.insert(
                "s3:RequestObjectTagKeys".into(),
                tags.iter().map(|(k, _)| k.clone()).collect(),
            );
        }
    }

    /// Who a delete's records name: the user's id, or `anonymous`.
    pub fn actor(&self) -> &str {
        if self.caller.is_anonymous() {
            "anonymous"
        } else {
            &self.caller.id
        }
    }

    /// The owner a write by this caller records: the caller, or the bucket's owner for an
    /// anonymous write (an unsigned writer has no id to own anything by).
    pub fn writer<'a>(&'a self, bucket: &'a BucketRecord) -> &'a str {
        if self.caller.is_anonymous() {
            &bucket.owner
        } else {
            &self.caller.id
        }
    }
}

/// The headers of an object write that bucket policies can condition on.
#[derive(Default)]
pub(crate) struct WriteHeaders<'a> {
    pub acl: Option<&'a str>,
    pub sse: Option<&'a str>,
    pub kms_key: Option<&'a str>,
    pub tagging: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
}

/// `If-None-Match` as a condition value (`*`, or the ETag).
pub(crate) fn if_none_match_value(c: &Option<s3s::dto::ETagCondition>) -> Option<String> {
    match c.as_ref()? {
        s3s::dto::ETagCondition::Any => Some("*".into()),
        s3s::dto::ETagCondition::ETag(e) => Some(e.value().to_string()),
    }
}

fn conditions(caller: &Caller, ext: &http::Extensions) -> ConditionKeys {
    let mut c = ConditionKeys::new();
    let mut set = |k: &str, v: String| {
        c.insert(k.to_string(), vec![v]);
    };
    if let Some(info) = ext.get::<crate::http::lockout::EdgeInfo>() {
        set("aws:SourceIp", info.peer.ip().to_string());
    }
    set(
        "aws:SecureTransport",
        super::sse::is_secure(ext).to_string(),
    );
    let now = time::OffsetDateTime::now_utc();
    if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
        set("aws:CurrentTime", t);
    }
    set("aws:EpochTime", now.unix_timestamp().to_string());
    if caller.is_anonymous() {
        set("aws:PrincipalType", "Anonymous".into());
    } else {
        set("aws:PrincipalType", "User".into());
        set("aws:username", caller.user.clone());
        set("aws:userid", caller.id.clone());
        set(
            "aws:PrincipalArn",
            strata_engine::policy::principal_arn(&caller.id, &caller.user),
        );
    }
    c
}

/// The decision for `who` doing `action` on `bucket` (and, for object actions, the version).
pub(crate) fn decide(
    engine: &Engine,
    who: &Principal,
    conditions: &ConditionKeys,
    action: Action,
    bucket: &BucketRecord,
    key: Option<&str>,
    version: Option<&VersionRecord>,
) -> Decision {
    let bucket_acl = authz::bucket_acl(bucket);
    let object_acl = version.map(|v| authz::version_acl(bucket, v));
    // Parsed once per stored document (the cache compares the document read just now).
    let policy = engine.bucket_policy(bucket);
    // s3:ExistingObjectTag/<key>: the tags of the version the action is on.
    let with_tags;
    let conditions = match version {
        Some(v) if !v.tags.is_empty() && policy.is_some() => {
            let mut c = conditions.clone();
            for (k, val) in &v.tags {
                c.insert(format!("s3:ExistingObjectTag/{k}"), vec![val.clone()]);
            }
            with_tags = c;
            &with_tags
        }
        _ => conditions,
    };
    authz::authorize(
        who,
        action,
        &authz::Resource {
            bucket: &bucket.name,
            key,
            version_id: version.map(|v| v.version_id.as_str()),
            bucket_owner: &bucket.owner,
            bucket_acl: &bucket_acl,
            object_acl: object_acl.as_ref(),
            public_access_block: bucket.public_access_block.unwrap_or_default(),
            ownership: bucket.ownership,
        },
        conditions,
        policy.as_deref(),
    )
}

fn access_denied() -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, "Access Denied")
}

fn denied(user: &str, action: Action, bucket: &str) -> S3Error {
    tracing::info!(user = %user, action = action.name(), bucket = %bucket, "access denied");
    access_denied()
}

impl StrataS3 {
    /// The caller of a request: the user of the verified access key, or anonymous when the
    /// request is unsigned (it may then do only what a grant to AllUsers allows).
    pub(crate) async fn who(
        &self,
        creds: &Option<s3s::auth::Credentials>,
        ext: &http::Extensions,
    ) -> S3Result<Who> {
        let caller = match creds {
            None => Caller::anonymous(),
            Some(c) => self
                .ctx
                .engine
                .caller(&c.access_key)
                .await
                .map_err(errors::engine)?
                .ok_or_else(|| s3_error!(InvalidAccessKeyId))?,
        };
        let conditions = conditions(&caller, ext);
        Ok(Who { caller, conditions })
    }

    /// Operations on no bucket (ListBuckets, CreateBucket) need a signed caller.
    pub(crate) fn signed(&self, who: &Who) -> S3Result<()> {
        if who.is_anonymous() {
            return Err(access_denied());
        }
        Ok(())
    }

    /// The bucket, if it exists (`NoSuchBucket`) and `who` may do the bucket-level `action`
    /// on it (`AccessDenied`).
    pub(crate) async fn authorized_bucket(
        &self,
        who: &Who,
        name: &str,
        action: Action,
    ) -> S3Result<BucketRecord> {
        self.authorized_key(who, name, None, action).await
    }

    /// The same for an object-level action decided without the object's version (writes,
    /// deletes, tagging, ...): `key` names the resource a policy matches
    /// (`arn:aws:s3:::bucket/key`).
    pub(crate) async fn authorized_key(
        &self,
        who: &Who,
        name: &str,
        key: Option<&str>,
        action: Action,
    ) -> S3Result<BucketRecord> {
        let b = self
            .ctx
            .engine
            .bucket(name)
            .await
            .map_err(errors::engine)?
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        match decide(
            &self.ctx.engine,
            &who.principal(),
            &who.conditions,
            action,
            &b,
            key,
            None,
        ) {
            Decision::Allow => Ok(b),
            Decision::Deny => Err(denied(&who.user, action, name)),
        }
    }

    /// The bucket, for an object-level action whose decision needs the object's version (read
    /// with [`StrataS3::authorized_version`]): only its existence is checked here.
    pub(crate) async fn existing_bucket(&self, name: &str) -> S3Result<BucketRecord> {
        self.ctx
            .engine
            .bucket(name)
            .await
            .map_err(errors::engine)?
            .ok_or_else(|| s3_error!(NoSuchBucket))
    }

    /// The version an object-level `action` addresses, if `who` may do it on it. A key or
    /// version that does not exist is `404` only to a caller who may list the bucket, `403`
    /// otherwise (S3: no listing through error codes).
    pub(crate) async fn authorized_version(
        &self,
        who: &Who,
        bucket: &BucketRecord,
        key: &str,
        version_id: &Option<String>,
        action: Action,
    ) -> S3Result<VersionRecord> {
        let principal = who.principal();
        match self.readable_version(bucket, key, version_id).await {
            Ok(v) => match decide(
                &self.ctx.engine,
                &principal,
                &who.conditions,
                action,
                bucket,
                Some(key),
                Some(&v),
            ) {
                Decision::Allow => Ok(v),
                Decision::Deny => Err(denied(&who.user, action, &bucket.name)),
            },
            Err(e)
                if matches!(
                    e.code(),
                    S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion
                ) && decide(
                    &self.ctx.engine,
                    &principal,
                    &who.conditions,
                    Action::ListBucket,
                    bucket,
                    None,
                    None,
                ) == Decision::Deny =>
            {
                Err(denied(&who.user, action, &bucket.name))
            }
            Err(e) => Err(e),
        }
    }
}

/// GetObject, or GetObjectVersion for a read by version id.
pub(crate) fn read_action(version_id: &Option<String>) -> Action {
    if version_id.is_some() {
        Action::GetObjectVersion
    } else {
        Action::GetObject
    }
}

/// The action of an operation an unsigned request may send a body with, by s3s operation name;
/// `None`: an anonymous body is never accepted for it.
fn anonymous_write_action(op: &str, versioned: bool) -> Option<Action> {
    Some(match op {
        "PutObject" | "UploadPart" | "CompleteMultipartUpload" => Action::PutObject,
        "DeleteObjects" => Action::DeleteObject,
        "PutBucketAcl" => Action::PutBucketAcl,
        "PutObjectAcl" if versioned => Action::PutObjectVersionAcl,
        "PutObjectAcl" => Action::PutObjectAcl,
        _ => return None,
    })
}

/// Run for an unsigned request that may carry a body, before s3s reads it: allowed only where a
/// grant (ACL or bucket policy) allows that write to anonymous callers. Costs one bucket lookup (and one version
/// lookup for PutObjectAcl), never a byte of the body.
pub(crate) async fn check_anonymous_body(
    engine: &Engine,
    op: &str,
    path: (Option<&str>, Option<&str>),
    uri: &http::Uri,
    ext: &http::Extensions,
) -> S3Result<()> {
    let (Some(bucket), key) = path else {
        return Err(access_denied());
    };
    let version_id = crate::http::signed_headers::query_pairs(uri.query())
        .into_iter()
        .find(|(k, _)| k == "versionId")
        .map(|(_, v)| v);
    let Some(action) = anonymous_write_action(op, version_id.is_some()) else {
        tracing::info!(
            op,
            "anonymous request with a body refused before reading it"
        );
        return Err(access_denied());
    };
    let b = engine
        .bucket(bucket)
        .await
        .map_err(errors::engine)?
        .ok_or_else(|| s3_error!(NoSuchBucket))?;
    let version = match (action, key) {
        (Action::PutObjectAcl | Action::PutObjectVersionAcl, Some(k)) => engine
            .version(&b.name, k, version_id.as_deref())
            .await
            .ok()
            .filter(|v| !v.is_delete_marker),
        _ => None,
    };
    let object_action = matches!(action, Action::PutObjectAcl | Action::PutObjectVersionAcl);
    if object_action && version.is_none() {
        // No such object: without a listing grant nobody anonymous learns that.
        return Err(access_denied());
    }
    match decide(
        engine,
        &Principal::Anonymous,
        &conditions(&Caller::anonymous(), ext),
        action,
        &b,
        key,
        version.as_ref(),
    ) {
        Decision::Allow => Ok(()),
        Decision::Deny => Err(denied("anonymous", action, bucket)),
    }
}

/// The bucket and key an s3s path names.
pub(crate) fn path_parts(path: &s3s::path::S3Path) -> (Option<String>, Option<String>) {
    match path {
        s3s::path::S3Path::Root => (None, None),
        s3s::path::S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
        s3s::path::S3Path::Object { bucket, key } => {
            (Some(bucket.to_string()), Some(key.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_bodies_only_for_grantable_writes() {
        assert_eq!(
            anonymous_write_action("PutObject", false),
            Some(Action::PutObject)
        );
        assert_eq!(
            anonymous_write_action("PutObjectAcl", true),
            Some(Action::PutObjectVersionAcl)
        );
        for op in [
            "PutBucketPolicy",
            "PutBucketLifecycleConfiguration",
            "PutBucketCors",
            "CreateBucket",
            "PutObjectTagging",
            "PutBucketVersioning",
        ] {
            assert_eq!(anonymous_write_action(op, false), None, "{op}");
        }
    }
}
