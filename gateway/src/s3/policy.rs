//! Bucket policies: Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus. The language and its
//! evaluation are the engine's (`strata_engine::policy`, evaluated inside `authz::authorize`);
//! this module checks documents (`MalformedPolicy`) and stores them as put.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_engine::policy;

use super::StrataS3;
use crate::errors;

impl StrataS3 {
    pub(crate) async fn op_put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(&who, &input.bucket, Action::OwnerOnly("s3:PutBucketPolicy"))
            .await?;
        let parsed = match policy::parse(input.policy.as_bytes(), &b.name) {
            Ok(p) => p,
            Err(why) => {
                tracing::info!(bucket = %b.name, reason = %why, "bucket policy refused");
                return Err(S3Error::with_message(S3ErrorCode::MalformedPolicy, why));
            }
        };
        if b.public_access_block.is_some_and(|p| p.block_public_policy) && parsed.is_public() {
            tracing::info!(bucket = %b.name, "public bucket policy refused: BlockPublicPolicy");
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "Access Denied",
            ));
        }
        self.ctx
            .engine
            .set_bucket_policy(&b.name, Some(input.policy))
            .await
            .map_err(errors::engine)?;
        tracing::info!(bucket = %b.name, user = %who.user, "bucket policy set");
        // S3 answers PutBucketPolicy with 204 No Content.
        let mut resp = S3Response::new(PutBucketPolicyOutput {});
        resp.extensions
            .insert(super::StatusOverride(http::StatusCode::NO_CONTENT));
        Ok(resp)
    }

    pub(crate) async fn op_get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketPolicy"),
            )
            .await?;
        let Some(p) = b.policy else {
            return Err(s3_error!(
                NoSuchBucketPolicy,
                "The bucket policy does not exist"
            ));
        };
        Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(p) }))
    }

    pub(crate) async fn op_delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:DeleteBucketPolicy"),
            )
            .await?;
        self.ctx
            .engine
            .set_bucket_policy(&b.name, None)
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    pub(crate) async fn op_get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketPolicyStatus"),
            )
            .await?;
        let Some(doc) = b.policy else {
            return Err(s3_error!(
                NoSuchBucketPolicy,
                "The bucket policy does not exist"
            ));
        };
        let public = policy::parse(doc.as_bytes(), &b.name).is_ok_and(|p| p.is_public());
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(public),
            }),
        }))
    }
}
