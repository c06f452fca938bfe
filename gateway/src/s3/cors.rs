//! Bucket CORS configuration: Put/Get/DeleteBucketCors, with S3's rules for the document. The
//! rules are applied at the HTTP edge (`http/cors.rs`: preflight OPTIONS and the
//! `Access-Control-*` headers of actual responses).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use strata_engine::authz::Action;
use strata_metadata::CorsRule as StoredRule;

use super::StrataS3;
use crate::errors;

/// S3's limit on rules per configuration.
const MAX_RULES: usize = 100;
/// Methods a CORS rule may allow.
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// S3's checks of a CORS configuration.
pub(crate) fn validate_cors(rules: &[StoredRule]) -> S3Result<()> {
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(s3_error!(MalformedXML));
    }
    for r in rules {
        if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
            return Err(s3_error!(MalformedXML));
        }
        if let Some(m) = r
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {}",
                m.chars().take(32).collect::<String>()
            ));
        }
        if let Some(o) = r
            .allowed_origins
            .iter()
            .find(|o| o.matches('*').count() > 1)
        {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedOrigin \"{}\" can not have more than one wildcard.",
                o.chars().take(256).collect::<String>()
            ));
        }
        if let Some(h) = r
            .allowed_headers
            .iter()
            .find(|h| h.matches('*').count() > 1)
        {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedHeader \"{}\" can not have more than one wildcard.",
                h.chars().take(256).collect::<String>()
            ));
        }
        if r.expose_headers.iter().any(|h| h.contains('*')) {
            return Err(s3_error!(
                InvalidRequest,
                "ExposeHeader \"*\" contains wildcard. We currently do not support wildcard for ExposeHeader."
            ));
        }
        if r.id.as_ref().is_some_and(|id| id.len() > 255) {
            return Err(s3_error!(
                InvalidArgument,
                "The ID must be at most 255 characters"
            ));
        }
    }
    Ok(())
}

impl StrataS3 {
    pub(crate) async fn op_put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let input = req.input;
        let b = self
            .authorized_bucket(&who, &input.bucket, Action::OwnerOnly("s3:PutBucketCORS"))
            .await?;
        let rules: Vec<StoredRule> = input
            .cors_configuration
            .cors_rules
            .into_iter()
            .map(|r| StoredRule {
                id: r.id,
                allowed_origins: r.allowed_origins,
                allowed_methods: r.allowed_methods,
                allowed_headers: r.allowed_headers.unwrap_or_default(),
                expose_headers: r.expose_headers.unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
            .collect();
        validate_cors(&rules)?;
        self.ctx
            .engine
            .update_bucket(&b.name, move |rec| {
                rec.cors = rules.clone();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(crate) async fn op_get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:GetBucketCORS"),
            )
            .await?;
        if b.cors.is_empty() {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        }
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(
                b.cors
                    .into_iter()
                    .map(|r| CORSRule {
                        id: r.id,
                        allowed_origins: r.allowed_origins,
                        allowed_methods: r.allowed_methods,
                        allowed_headers: (!r.allowed_headers.is_empty())
                            .then_some(r.allowed_headers),
                        expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
                        max_age_seconds: r.max_age_seconds,
                    })
                    .collect(),
            ),
        }))
    }

    pub(crate) async fn op_delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let who = self.who(&req.credentials, &req.extensions).await?;
        let b = self
            .authorized_bucket(
                &who,
                &req.input.bucket,
                Action::OwnerOnly("s3:PutBucketCORS"),
            )
            .await?;
        self.ctx
            .engine
            .update_bucket(&b.name, |rec| {
                rec.cors.clear();
                Ok(())
            })
            .await
            .map_err(errors::engine)?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}
