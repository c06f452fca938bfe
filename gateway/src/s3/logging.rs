//! Bucket logging configuration: Put/GetBucketLogging. Delivery is the engine's `access-log`
//! worker (`engine/src/access_log.rs`); the request facts come from the front
//! (`http/access_log.rs`).

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use strata_engine::authz::Action;
use strata_metadata::LoggingConfig;

use super::StrataS3;
use crate::errors;

/// Longest target prefix kept (S3 keys are at most 1024 bytes, the log key adds 37).
const MAX_PREFIX: usize = 900;

fn bad_target(msg: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidTargetBucketForLogging, msg.to_string())
}

impl StrataS3 {
    pub(crate) async fn op_put_bucket_logging(
        &self,
        req: S3Request<PutBucketLoggingInput>,
    ) -> S3Result<S3Response<PutBucketLoggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(
                &who,
                &input.bucket,
                Action::OwnerOnly("s3:PutBucketLogging"),
            )
            .await?;
        let config = match input.bucket_logging_status.logging_enabled {
            None => None,
            Some(le) => {
                // S3: the target must exist, belong to the same owner and live in the same region.
                let target = self
                    .ctx
                    .engine
                    .bucket(&le.target_bucket)
                    .await
                    .map_err(errors::engine)?
                    .ok_or_else(|| bad_target("The target bucket for logging does not exist"))?;
                if target.owner != b.owner {
                    return Err(bad_target(
                        "The owner for the bucket to be logged and the target bucket must be the same.",
                    ));
                }
                if target.region != b.region {
                    return Err(bad_target(
                        "The target bucket for logging must be in the same region as the source bucket.",
                    ));
                }
                if le.target_prefix.len() > MAX_PREFIX {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        "The target prefix is too long.",
                    ));
                }
                Some(LoggingConfig {
                    target_bucket: le.target_bucket,
                    target_prefix: le.target_prefix,
                })
            }
        };
        let name = b.name.clone();
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.logging = config.clone();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        self.ctx.engine.forget_logging_target(&name);
        tracing::info!(bucket = %name, user = %who.user, "bucket logging configured");
        Ok(S3Response::new(PutBucketLoggingOutput::default()))
    }

    pub(crate) async fn op_get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketLogging"),
            )
            .await?;
        Ok(S3Response::new(GetBucketLoggingOutput {
            logging_enabled: b.logging.map(|l| LoggingEnabled {
                target_bucket: l.target_bucket,
                target_prefix: l.target_prefix,
                target_grants: None,
                target_object_key_format: None,
            }),
        }))
    }
}
