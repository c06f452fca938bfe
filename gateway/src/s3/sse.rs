//! The server-side-encryption API at the edge: S3's SSE headers on writes, reads, copies and
//! multipart uploads (validated with S3's codes, turned into `strata_engine::sse` requests), the
//! headers S3 answers with, and Put/Get/DeleteBucketEncryption. The keys and bindings are the
//! engine's (`engine/src/sse.rs`, `engine/src/kms.rs`); see `docs/sse.md`.

use base64::Engine as _;
use md5::Digest as _;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_engine::kms::kms_key_arn;
use strata_engine::sse::{CustomerKey, KeyBinding, SseRequest};
use strata_metadata::{BucketEncryption, BucketRecord, SseMode, SseRecord};

use super::StrataS3;
use crate::errors;

/// The SSE-C triple of a request (`x-amz-server-side-encryption-customer-*`, or the
/// `x-amz-copy-source-` ones of a copy source).
pub(crate) struct CustomerHeaders<'a> {
    pub algorithm: &'a Option<String>,
    pub key: &'a Option<String>,
    pub key_md5: &'a Option<String>,
    /// The request came over TLS ([`crate::http::Transport`]).
    pub secure: bool,
}

/// Whether the request these extensions belong to came over TLS.
pub(crate) fn is_secure(ext: &http::Extensions) -> bool {
    ext.get::<crate::http::Transport>()
        .is_some_and(|t| t.secure)
}

/// A validated customer key and the MD5 S3 echoes for it.
pub(crate) struct Customer {
    pub key: CustomerKey,
    pub key_md5: String,
}

fn invalid_arg(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg.to_string())
}

impl StrataS3 {
    /// S3's checks of an SSE-C triple: all three or none, AES256, a 256-bit key whose MD5 matches,
    /// and a secure connection (plain HTTP only when the operator allowed it).
    pub(crate) fn customer_key(&self, h: CustomerHeaders<'_>) -> S3Result<Option<Customer>> {
        if h.algorithm.is_none() && h.key.is_none() && h.key_md5.is_none() {
            return Ok(None);
        }
        if !h.secure && !self.ctx.cfg.allow_sse_c_over_http {
            return Err(s3_error!(
                InvalidRequest,
                "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
            ));
        }
        match h.algorithm.as_deref() {
            Some("AES256") => {}
            None => {
                return Err(invalid_arg(
                    "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
                ));
            }
            Some(_) => {
                return Err(invalid_arg(
                    "The requested encryption algorithm is not valid, must be AES256.",
                ));
            }
        }
        let key = h.key.as_deref().ok_or_else(|| {
            invalid_arg(
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
            )
        })?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                invalid_arg("The secret key was invalid for the specified algorithm.")
            })?;
        let key_md5 = h.key_md5.as_deref().ok_or_else(|| {
            invalid_arg(
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.",
            )
        })?;
        let computed = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(raw));
        if computed != key_md5.trim() {
            return Err(invalid_arg(
                "The calculated MD5 hash of the key did not match the hash that was provided.",
            ));
        }
        Ok(Some(Customer {
            key: CustomerKey::new(raw),
            key_md5: computed,
        }))
    }

    /// What a write asks for: its SSE headers, else the bucket's default encryption, else
    /// SSE-S3 (as S3, every object is encrypted).
    pub(crate) fn write_sse_request(
        &self,
        bucket: &BucketRecord,
        sse: &Option<ServerSideEncryption>,
        kms_key: &Option<String>,
        context: &Option<String>,
        bucket_key: Option<bool>,
        customer: Option<&Customer>,
    ) -> S3Result<SseRequest> {
        if let Some(c) = customer {
            if sse.is_some() || kms_key.is_some() {
                return Err(invalid_arg(
                    "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
                ));
            }
            return Ok(SseRequest::Customer(c.key.clone()));
        }
        match sse.as_ref().map(|s| s.as_str()) {
            None if kms_key.is_some() || context.is_some() => Err(invalid_arg(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            )),
            None => Ok(match &bucket.encryption {
                Some(BucketEncryption {
                    mode: SseMode::Kms,
                    kms_key_id,
                    bucket_key: bk,
                }) => SseRequest::Kms {
                    key: kms_key_id.clone(),
                    context: None,
                    bucket_key: bucket_key.unwrap_or(*bk),
                },
                _ => SseRequest::S3,
            }),
            Some("AES256") if kms_key.is_some() || context.is_some() => Err(invalid_arg(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            )),
            Some("AES256") => Ok(SseRequest::S3),
            Some("aws:kms") | Some("aws:kms:dsse") => {
                if let Some(c) = context {
                    check_context(c)?;
                }
                let default_bk = bucket
                    .encryption
                    .as_ref()
                    .is_some_and(|e| e.mode == SseMode::Kms && e.bucket_key);
                Ok(SseRequest::Kms {
                    key: kms_key.clone().filter(|k| !k.is_empty()),
                    context: context.clone(),
                    bucket_key: bucket_key.unwrap_or(default_bk),
                })
            }
            Some(_) => Err(invalid_arg(
                "The encryption method specified is not supported",
            )),
        }
    }

    /// The record to store and the binding to write with.
    pub(crate) async fn prepare_sse(&self, req: SseRequest) -> S3Result<(SseRecord, KeyBinding)> {
        self.ctx
            .engine
            .prepare_sse(req)
            .await
            .map_err(errors::engine)
    }

    /// The binding to read `sse` with, given the request's customer key (S3's errors for a
    /// missing, wrong or unexpected key; a disabled KMS key).
    pub(crate) async fn read_binding(
        &self,
        sse: Option<&SseRecord>,
        customer: Option<&Customer>,
    ) -> S3Result<KeyBinding> {
        self.ctx
            .engine
            .sse_binding(sse, customer.map(|c| &c.key))
            .await
            .map_err(errors::engine)
    }

    /// The SSE headers S3 answers with for a version or upload.
    pub(crate) fn sse_out(&self, sse: Option<&SseRecord>, customer_md5: Option<&str>) -> SseOut {
        let rec = sse.cloned().unwrap_or_default();
        match rec.mode {
            SseMode::S3 => SseOut {
                sse: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AES256,
                )),
                ..Default::default()
            },
            SseMode::Kms => SseOut {
                sse: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AWS_KMS,
                )),
                kms_key: rec
                    .kms_key_id
                    .as_deref()
                    .map(|id| kms_key_arn(&self.ctx.cfg.region, id)),
                context: rec.kms_context.clone(),
                bucket_key: rec.bucket_key.then_some(true),
                ..Default::default()
            },
            SseMode::Customer => SseOut {
                customer_algorithm: Some("AES256".into()),
                customer_key_md5: customer_md5.map(str::to_string),
                ..Default::default()
            },
        }
    }
}

/// An encryption context must be base64 of a JSON object of strings.
fn check_context(c: &str) -> S3Result<()> {
    let ok = base64::engine::general_purpose::STANDARD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| {
            v.as_object()
                .is_some_and(|o| o.values().all(|x| x.is_string()))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid_arg(
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map",
        ))
    }
}

/// The SSE fields of a response.
#[derive(Default, Clone)]
pub(crate) struct SseOut {
    pub sse: Option<ServerSideEncryption>,
    pub kms_key: Option<String>,
    pub context: Option<String>,
    pub bucket_key: Option<bool>,
    pub customer_algorithm: Option<String>,
    pub customer_key_md5: Option<String>,
}

/// Copies [`SseOut`] onto an S3 output with the usual field names; `ctx` only where the output
/// has `ssekms_encryption_context`, `c` only where it has the customer fields.
#[macro_export]
macro_rules! fill_sse {
    ($out:expr, $s:expr) => {{
        let s: $crate::s3::sse::SseOut = $s;
        $out.server_side_encryption = s.sse;
        $out.ssekms_key_id = s.kms_key;
        $out.bucket_key_enabled = s.bucket_key;
    }};
    ($out:expr, $s:expr, c) => {{
        let s: $crate::s3::sse::SseOut = $s;
        $out.sse_customer_algorithm = s.customer_algorithm.clone();
        $out.sse_customer_key_md5 = s.customer_key_md5.clone();
        $crate::fill_sse!($out, s);
    }};
    ($out:expr, $s:expr, c, ctx) => {{
        let s: $crate::s3::sse::SseOut = $s;
        $out.ssekms_encryption_context = s.context.clone();
        $crate::fill_sse!($out, s, c);
    }};
}

// ---- Put/Get/DeleteBucketEncryption ----------------------------------------------------------

impl StrataS3 {
    pub(crate) async fn op_put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(
                &who,
                &input.bucket,
                Action::OwnerOnly("s3:PutEncryptionConfiguration"),
            )
            .await?;
        let rules = input.server_side_encryption_configuration.rules;
        if rules.len() != 1 {
            return Err(s3_error!(MalformedXML));
        }
        let rule = &rules[0];
        let by_default = rule
            .apply_server_side_encryption_by_default
            .as_ref()
            .ok_or_else(|| s3_error!(MalformedXML))?;
        let bucket_key = rule.bucket_key_enabled.unwrap_or(false);
        let enc = match by_default.sse_algorithm.as_str() {
            "AES256" => {
                if by_default.kms_master_key_id.is_some() {
                    return Err(invalid_arg(
                        "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
                    ));
                }
                BucketEncryption {
                    mode: SseMode::S3,
                    kms_key_id: None,
                    bucket_key,
                }
            }
            "aws:kms" | "aws:kms:dsse" => {
                let key = match by_default.kms_master_key_id.as_deref() {
                    None | Some("") => None,
                    Some(spec) => Some(
                        self.ctx
                            .engine
                            .find_kms_key(spec)
                            .await
                            .map_err(errors::engine)?
                            .ok_or_else(|| {
                                errors::rejection(strata_engine::Rejection::KmsKeyNotFound(
                                    spec.to_string(),
                                ))
                            })?
                            .id,
                    ),
                };
                BucketEncryption {
                    mode: SseMode::Kms,
                    kms_key_id: key,
                    bucket_key,
                }
            }
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "The encryption method specified is not supported"
                ));
            }
        };
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.encryption = Some(enc.clone());
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    pub(crate) async fn op_get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetEncryptionConfiguration"),
            )
            .await?;
        // As S3 today: a bucket without a configuration has SSE-S3 as its base encryption.
        let enc = b.encryption.unwrap_or_default();
        let (alg, key) = match enc.mode {
            SseMode::Kms => (
                ServerSideEncryption::AWS_KMS,
                enc.kms_key_id
                    .map(|id| kms_key_arn(&self.ctx.cfg.region, &id)),
            ),
            _ => (ServerSideEncryption::AES256, None),
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        kms_master_key_id: key,
                        sse_algorithm: ServerSideEncryption::from_static(alg),
                    }),
                    bucket_key_enabled: Some(enc.bucket_key),
                }],
            }),
        }))
    }

    pub(crate) async fn op_delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutEncryptionConfiguration"),
            )
            .await?;
        self.ctx
            .engine
            .update_bucket(&b.name, |rec| {
                rec.encryption = None;
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }
}
