//! Operator-managed KMS keys for SSE-KMS (`strata admin kms create|list|disable NAME`). A KMS key
//! is a KEK of our hierarchy: a KEK record of the key store (random, wrapped by the master key,
//! re-wrapped by a master rotation like a bucket's), named by a [`KmsKeyRecord`] in the metadata
//! tier (slot + id, never key material); SSE-KMS versions bind their DEK to a secret derived from it
//! (`sse.rs`). Requests name a key by id, ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`), alias
//! (`alias/NAME`, `arn:...:alias/NAME`) or bare name. `aws:kms` without a key uses `aws/s3`,
//! created on first use as S3 creates its AWS managed key.

use strata_metadata::{KmsKeyRecord, MetaError};
use strata_storage_node::keys::new_key_id;

use crate::error::{EngineError, Rejection, Result};
use crate::{Engine, now_ms};

/// The key `aws:kms` uses when the request names none.
pub const DEFAULT_KMS_KEY: &str = "aws/s3";

/// Valid KMS key names: 1-256 of `A-Za-z0-9/_-` (AWS alias rules), not starting with `/`.
pub fn valid_kms_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && !n.starts_with('/')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
}

/// The ARN S3 shows for a KMS key.
pub fn kms_key_arn(region: &str, id: &str) -> String {
    format!("arn:aws:kms:{region}:000000000000:key/{id}")
}

enum KeyRef<'a> {
    Id(&'a str),
    Name(&'a str),
    Either(&'a str),
}

fn parse_ref(spec: &str) -> KeyRef<'_> {
    if let Some(rest) = spec.strip_prefix("arn:aws:kms:") {
        // REGION:ACCOUNT:key/ID or REGION:ACCOUNT:alias/NAME
        let tail = rest.splitn(3, ':').nth(2).unwrap_or("");
        if let Some(id) = tail.strip_prefix("key/") {
            return KeyRef::Id(id);
        }
        if let Some(name) = tail.strip_prefix("alias/") {
            return KeyRef::Name(name);
        }
        return KeyRef::Id(tail);
    }
    if let Some(name) = spec.strip_prefix("alias/") {
        return KeyRef::Name(name);
    }
    KeyRef::Either(spec)
}

impl Engine {
    /// Creates a KMS key named `name` (`AlreadyExists` if taken).
    pub async fn create_kms_key(&self, name: &str) -> Result<KmsKeyRecord> {
        if !valid_kms_name(name) {
            return Err(MetaError::Invalid(format!("invalid KMS key name {name:?}")).into());
        }
        let id = new_key_id();
        // Its KEK is a key of the key store under a key-only intent, consumed by the record.
        let kek = self.new_kek().await?;
        let rec = KmsKeyRecord {
            id,
            name: name.to_string(),
            created: now_ms(),
            enabled: true,
            disabled_at: None,
            kek_id: kek.id.clone(),
            kek_slot: Some(kek.slot),
        };
        let r = rec.clone();
        if let Err(e) = self.meta_call(move |m| m.create_kms_key(&r)).await {
            self.discard_key(kek.key_ref(), "kms-key-not-created").await;
            return Err(e);
        }
        self.note_key_event("kek", &rec.kek_id, "created", None)
            .await?;
        tracing::info!(target: "strata::audit", kms_key = %rec.id, name = %rec.name, "KMS key created");
        Ok(rec)
    }

    pub async fn list_kms_keys(&self) -> Result<Vec<KmsKeyRecord>> {
        self.meta_call(|m| m.list_kms_keys()).await
    }

    /// The key a request names, if it exists (enabled or not).
    pub async fn find_kms_key(&self, spec: &str) -> Result<Option<KmsKeyRecord>> {
        let spec = spec.to_string();
        self.meta_call(move |m| match parse_ref(&spec) {
            KeyRef::Id(id) => m.get_kms_key(id),
            KeyRef::Name(n) => m.kms_key_by_name(n),
            KeyRef::Either(s) => match m.get_kms_key(s)? {
                Some(k) => Ok(Some(k)),
                None => m.kms_key_by_name(s),
            },
        })
        .await
    }

    /// Enables or disables a key (by any of its names). `KmsKeyNotFound` if none.
    pub async fn set_kms_key_enabled(&self, spec: &str, enabled: bool) -> Result<KmsKeyRecord> {
        let rec = self
            .find_kms_key(spec)
            .await?
            .ok_or_else(|| Rejection::KmsKeyNotFound(spec.to_string()))?;
        let id = rec.id.clone();
        let rec = self
            .meta_call(move |m| m.set_kms_key_enabled(&id, enabled, now_ms()))
            .await?;
        tracing::info!(target: "strata::audit", kms_key = %rec.id, name = %rec.name, enabled, "KMS key state changed");
        Ok(rec)
    }

    /// An enabled key by id (reads of SSE-KMS versions).
    pub(crate) async fn kms_key_enabled(&self, id: &str) -> Result<KmsKeyRecord> {
        let i = id.to_string();
        let rec = self
            .meta_call(move |m| m.get_kms_key(&i))
            .await?
            .ok_or_else(|| Rejection::KmsKeyNotFound(id.to_string()))?;
        if !rec.enabled {
            return Err(Rejection::KmsKeyDisabled(rec.id).into());
        }
        Ok(rec)
    }

    /// The key a write names (or the default key), which must exist and be enabled.
    pub(crate) async fn kms_key_for_write(&self, spec: Option<&str>) -> Result<KmsKeyRecord> {
        let rec = match spec {
            Some(s) => self
                .find_kms_key(s)
                .await?
                .ok_or_else(|| Rejection::KmsKeyNotFound(s.to_string()))?,
            None => match self.find_kms_key(DEFAULT_KMS_KEY).await? {
                Some(k) => k,
                None => match self.create_kms_key(DEFAULT_KMS_KEY).await {
                    Ok(k) => k,
                    // Another request made it first.
                    Err(EngineError::Meta(MetaError::AlreadyExists)) => self
                        .find_kms_key(DEFAULT_KMS_KEY)
                        .await?
                        .ok_or_else(|| EngineError::internal("default KMS key vanished"))?,
                    Err(e) => return Err(e),
                },
            },
        };
        if !rec.enabled {
            return Err(Rejection::KmsKeyDisabled(rec.id).into());
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_references() {
        assert!(matches!(
            parse_ref("arn:aws:kms:us-east-1:000000000000:key/abc"),
            KeyRef::Id("abc")
        ));
        assert!(matches!(
            parse_ref("arn:aws:kms:us-east-1:1:alias/app"),
            KeyRef::Name("app")
        ));
        assert!(matches!(parse_ref("alias/aws/s3"), KeyRef::Name("aws/s3")));
        assert!(matches!(parse_ref("app"), KeyRef::Either("app")));
        assert!(valid_kms_name("aws/s3") && valid_kms_name("app-key_1"));
        assert!(!valid_kms_name("") && !valid_kms_name("/x") && !valid_kms_name("a b"));
    }
}
