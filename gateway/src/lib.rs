//! The S3 gateway: the front door of Strata. It authenticates (SigV4 via s3s), speaks S3, and
//! translates every operation into a call of the object engine (`strata_engine`), which owns the
//! data path, the metadata and the background work. S3 types stop here. The gateway keeps no
//! state of its own, so any number of gateways can serve one cluster.
//!
//! - [`s3`]: the S3 operations, one module per operation family.
//! - [`http`]: connections, request ids, error bodies, auth-failure lockout, access log.
//! - [`admin`]: the operator API behind `strata admin`.
//! - [`body`], [`checksum`], [`errors`]: S3 <-> engine translation of bodies, checksums, errors.

pub mod admin;
pub mod auth;
pub mod body;
pub mod checksum;
pub mod context;
pub mod errors;
pub mod framing;
pub mod http;
pub mod metrics;
pub mod s3;

use std::sync::Arc;

pub use context::{Context, GatewayConfig};

/// Builds the HTTP front (s3s service with our auth, admin route and host parsing).
pub fn build_front(ctx: Arc<Context>, node: Option<Arc<dyn admin::NodeAdmin>>) -> Arc<http::Front> {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3::StrataS3::new(ctx.clone()));
    builder.set_auth(auth::EngineAuth {
        engine: ctx.engine.clone(),
    });
    builder.set_route(admin::AdminRoute {
        ctx: ctx.clone(),
        node,
    });
    if let Some(domain) = &ctx.cfg.domain {
        match s3s::host::MultiDomain::new([domain.as_str()]) {
            Ok(h) => builder.set_host(h),
            Err(e) => {
                tracing::error!(error = %e, %domain, "invalid virtual-host domain; using path-style only")
            }
        }
    }
    Arc::new(http::Front {
        s3: builder.build(),
        limiter: Default::default(),
        metrics: Default::default(),
    })
}
