//! The server-side-encryption API as the engine sees it. Every version is encrypted at rest under
//! its own DEK (wrapped by the bucket KEK, `keys.rs`); the SSE mode decides which *other* key a
//! reader must also have, by binding the DEK to a second secret (`DataKey::bound_to`, HKDF):
//!
//! - SSE-S3 (`AES256`): no binding; the DEK alone.
//! - SSE-KMS (`aws:kms`): the DEK bound to a secret derived from an operator-managed KMS key's
//!   KEK (`kms.rs`) and the request's encryption context. A disabled KMS key refuses writes and
//!   reads of its versions.
//! - SSE-C: the DEK bound to the customer's key, which is never stored; only a salted MAC
//!   (HMAC-SHA256 with a random per-version salt) recognises it. Without the customer key the
//!   server cannot read the version; with it but without the DEK (destroyed) nobody can.
//!
//! Stored DEKs are unchanged by any mode: destruction of a version's DEK works the same for all.

use std::sync::Arc;

use strata_metadata::{BucketRecord, SseMode, SseRecord, VersionRecord};
use strata_storage_node::keys::{DataKey, customer_key_mac, customer_key_matches};
use zeroize::Zeroizing;

use crate::Engine;
use crate::error::{Rejection, Result};

/// An SSE-C key as the client sent it (32 bytes, checked against its MD5 by the gateway).
#[derive(Clone)]
pub struct CustomerKey(Arc<Zeroizing<[u8; 32]>>);

impl CustomerKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        CustomerKey(Arc::new(Zeroizing::new(bytes)))
    }
    fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

/// What a write asks for.
#[derive(Clone, Debug)]
pub enum SseRequest {
    S3,
    /// `key`: a KMS key id, ARN or alias (`None`: the default key `aws/s3`, made on first use).
    Kms {
        key: Option<String>,
        context: Option<String>,
        bucket_key: bool,
    },
    Customer(CustomerKey),
}

/// The second secret a version's DEK is bound to (none for SSE-S3).
#[derive(Clone, Default)]
pub enum KeyBinding {
    #[default]
    None,
    Bound {
        secret: Arc<Zeroizing<Vec<u8>>>,
        info: Vec<u8>,
    },
}

impl KeyBinding {
    /// The key the version's chunks are encrypted with.
    pub fn apply(&self, dek: Arc<DataKey>) -> Arc<DataKey> {
        match self {
            KeyBinding::None => dek,
            KeyBinding::Bound { secret, info } => Arc::new(dek.bound_to(secret, info)),
        }
    }
}

fn kms_info(kms_id: &str, context: Option<&str>) -> Vec<u8> {
    format!("strata/sse-kms/v1/{kms_id}/{}", context.unwrap_or("")).into_bytes()
}

const CUSTOMER_INFO: &[u8] = b"strata/sse-c/v1";

impl Engine {
    /// The record to store and the binding to write with, for a write that asks for `req`.
    pub async fn prepare_sse(&self, req: SseRequest) -> Result<(SseRecord, KeyBinding)> {
        match req {
            SseRequest::S3 => Ok((SseRecord::default(), KeyBinding::None)),
            SseRequest::Kms {
                key,
                context,
                bucket_key,
            } => {
                let rec = self.kms_key_for_write(key.as_deref()).await?;
                let r = rec.clone();
                let secret = self.key_call(move |k| k.kms_binding_secret(&r)).await?;
                let info = kms_info(&rec.id, context.as_deref());
                Ok((
                    SseRecord {
                        mode: SseMode::Kms,
                        kms_key_id: Some(rec.id),
                        kms_context: context,
                        bucket_key,
                        ..Default::default()
                    },
                    KeyBinding::Bound {
                        secret: Arc::new(secret),
                        info,
                    },
                ))
            }
            SseRequest::Customer(key) => {
                let mut salt = vec![0u8; 16];
                rand::fill(&mut salt[..]);
                let mac = customer_key_mac(&salt, key.bytes()).to_vec();
                Ok((
                    SseRecord {
                        mode: SseMode::Customer,
                        customer_salt: salt,
                        customer_mac: mac,
                        ..Default::default()
                    },
                    customer_binding(&key),
                ))
            }
        }
    }

    /// The binding to read (or add parts to) something written with `sse`, given the customer
    /// key the request carries: SSE-C needs the right key (`SseCustomerKeyRequired`,
    /// `SseCustomerKeyMismatch`), other modes refuse one (`SseCustomerKeyUnexpected`); SSE-KMS
    /// needs its key enabled.
    pub async fn sse_binding(
        &self,
        sse: Option<&SseRecord>,
        customer: Option<&CustomerKey>,
    ) -> Result<KeyBinding> {
        let mode = sse.map(|s| s.mode).unwrap_or_default();
        match (mode, customer) {
            (SseMode::Customer, None) => Err(Rejection::SseCustomerKeyRequired.into()),
            (SseMode::Customer, Some(k)) => {
                let s = sse.expect("mode came from the record");
                if customer_key_matches(&s.customer_salt, k.bytes(), &s.customer_mac) {
                    Ok(customer_binding(k))
                } else {
                    Err(Rejection::SseCustomerKeyMismatch.into())
                }
            }
            (_, Some(_)) => Err(Rejection::SseCustomerKeyUnexpected.into()),
            (SseMode::S3, None) => Ok(KeyBinding::None),
            (SseMode::Kms, None) => {
                let s = sse.expect("mode came from the record");
                let id = s.kms_key_id.clone().unwrap_or_default();
                let rec = self.kms_key_enabled(&id).await?;
                let r = rec.clone();
                let secret = self.key_call(move |k| k.kms_binding_secret(&r)).await?;
                Ok(KeyBinding::Bound {
                    secret: Arc::new(secret),
                    info: kms_info(&rec.id, s.kms_context.as_deref()),
                })
            }
        }
    }

    /// The key a version's chunks are encrypted under, for background jobs (archive repack,
    /// restore, compaction): its DEK with the server-held binding applied. SSE-C versions never
    /// reach the archive tier (see [`check_class`]); a disabled KMS key fails, so the job retries.
    pub async fn server_chunk_key(
        &self,
        bucket: &BucketRecord,
        v: &VersionRecord,
    ) -> Result<(Arc<DataKey>, KeyBinding)> {
        let binding = self.sse_binding(v.content.sse.as_ref(), None).await?;
        let dek = self.version_key(bucket, &v.data).await?;
        Ok((binding.apply(dek), binding))
    }

    /// The binding background jobs (rebalance) may use for a version: `None` for SSE-C, whose
    /// key the server does not hold, and for SSE-KMS under a disabled (or missing) key, which
    /// the operator has closed: such versions are left where they are.
    pub async fn server_binding(&self, v: &VersionRecord) -> Result<Option<KeyBinding>> {
        if v.content.sse.as_ref().map(|s| s.mode) == Some(SseMode::Customer) {
            return Ok(None);
        }
        match self.sse_binding(v.content.sse.as_ref(), None).await {
            Ok(b) => Ok(Some(b)),
            Err(crate::EngineError::Rejected(
                Rejection::KmsKeyDisabled(_) | Rejection::KmsKeyNotFound(_),
            )) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Refuses SSE-C in an archive storage class: repack and restore run in the background and would
/// need the customer's key, which the server never holds.
pub fn check_class(sse: Option<&SseRecord>, storage_class: &str) -> Result<()> {
    if sse.map(|s| s.mode) == Some(SseMode::Customer)
        && strata_metadata::archive::is_archive_class(storage_class)
    {
        return Err(Rejection::SseCustomerArchiveClass.into());
    }
    Ok(())
}

fn customer_binding(key: &CustomerKey) -> KeyBinding {
    KeyBinding::Bound {
        secret: Arc::new(Zeroizing::new(key.bytes().to_vec())),
        info: CUSTOMER_INFO.to_vec(),
    }
}
