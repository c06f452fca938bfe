//! Who is calling: s3s verifies SigV4 with the secret the engine opens for the claimed access key,
//! and a verified access key resolves to a user.

use s3s::auth::{Credentials, S3Auth, SecretKey};
use s3s::{S3Result, s3_error};
use strata_engine::Engine;
pub use strata_engine::identity::Caller;

pub struct EngineAuth {
    pub engine: Engine,
}

#[async_trait::async_trait]
impl S3Auth for EngineAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let secret = self
            .engine
            .access_secret(access_key)
            .await
            .map_err(crate::errors::engine)?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        // s3s checks the signature against this key: failures are counted against it.
        crate::http::lockout::note_key_lookup(access_key);
        let s = String::from_utf8(secret.to_vec()).map_err(|_| s3_error!(InternalError))?;
        Ok(SecretKey::from(s))
    }
}

/// The authenticated caller of a request; anonymous requests are refused.
pub async fn caller(engine: &Engine, creds: &Option<Credentials>) -> S3Result<Caller> {
    let Some(c) = creds else {
        return Err(s3_error!(AccessDenied, "Anonymous access is not allowed."));
    };
    engine
        .caller(&c.access_key)
        .await
        .map_err(crate::errors::engine)?
        .ok_or_else(|| s3_error!(InvalidAccessKeyId))
}
