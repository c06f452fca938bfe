//! The S3 gateway: the front door of Strata. It authenticates (SigV4 via s3s), speaks S3,
//! asks the metadata tier what exists, and streams object bytes as chunks to the chunk service.
//! It keeps no state of its own, so any number of gateways can serve one cluster.
//!
//! - [`s3`]: the S3 operations (one module per area).
//! - [`datapath`]: chunking request bodies into the chunk service and streaming them back.
//! - [`http`]: connections, request ids, error bodies, auth-failure lockout, access log.
//! - [`admin`]: the operator API behind `strata admin`.
//! - [`gc`]: deletes chunks that no version references any more.

pub mod admin;
pub mod auth;
pub mod checksum;
pub mod context;
pub mod datapath;
pub mod errors;
pub mod fuzzing;
pub mod gc;
pub mod http;
pub mod metrics;
pub mod s3;

use std::sync::Arc;

pub use context::{Context, GatewayConfig};

/// Builds the HTTP front (s3s service with our auth, admin route and host parsing).
pub fn build_front(ctx: Arc<Context>, node: Option<Arc<dyn admin::NodeAdmin>>) -> Arc<http::Front> {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3::StrataS3::new(ctx.clone()));
    builder.set_auth(auth::MetaAuth {
        meta: ctx.meta.clone(),
        master: ctx.master.clone(),
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
