//! The S3 gateway: the front door of Strata. It authenticates (SigV4 via s3s), speaks S3, and
//! translates every operation into a call of the object engine (`strata_engine`), which owns the
//! data path, the metadata and the background work. S3 types stop here. The gateway keeps no
//! state of its own, so any number of gateways can serve one cluster.
//!
//! - [`s3`]: the S3 operations, one module per operation family.
//! - [`http`]: connections and their limits, request ids, refusals before s3s (SigV2 checks, unsigned
//!   headers, form POSTs, oversized bodies), error bodies, auth-failure lockout, access log.
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
pub mod post_policy;
pub mod s3;

use std::sync::Arc;

pub use context::{Context, GatewayConfig};

/// Builds the HTTP front with the default edge limits.
pub fn build_front(ctx: Arc<Context>, node: Option<Arc<dyn admin::NodeAdmin>>) -> Arc<http::Front> {
    build_front_with(ctx, node, http::EdgeConfig::default())
}

/// Builds the HTTP front (s3s service with our auth, access check, admin route and host
/// parsing) with the given edge limits.
pub fn build_front_with(
    ctx: Arc<Context>,
    node: Option<Arc<dyn admin::NodeAdmin>>,
    edge: http::EdgeConfig,
) -> Arc<http::Front> {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3::StrataS3::new(ctx.clone()));
    // s3s buffers XML bodies up to this; the front refuses larger ones before s3s reads them.
    let mut s3s_cfg = s3s::config::S3Config::default();
    s3s_cfg.xml_max_body_size = usize::try_from(edge.max_xml_body).unwrap_or(usize::MAX);
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        s3s_cfg,
    ))));
    builder.set_access(http::lockout::LockoutAccess {
        engine: ctx.engine.clone(),
    });
    builder.set_auth(auth::EngineAuth {
        engine: ctx.engine.clone(),
    });
    let metrics = Arc::new(metrics::Metrics::default());
    let _ = metrics.engine.set(ctx.engine.clone());
    builder.set_route(admin::AdminRoute {
        ctx: ctx.clone(),
        node,
        metrics: metrics.clone(),
    });
    let mut host = None;
    if let Some(domain) = &ctx.cfg.domain {
        match s3s::host::MultiDomain::new([domain.as_str()]) {
            Ok(h) => {
                builder.set_host(h);
                host = s3s::host::MultiDomain::new([domain.as_str()]).ok();
            }
            Err(e) => {
                tracing::error!(error = %e, %domain, "invalid virtual-host domain; using path-style only")
            }
        }
    }
    // Cluster mode: the failed-signature limits are cluster-wide (tags keyed by a secret every
    // gateway derives from the shared master key; counts merged through the metadata tier).
    let limiter = if ctx.engine.meta_blocking().backend() == "etcd" {
        let secret = ctx
            .engine
            .keys()
            .derived_secret(http::lockout_sync::TAG_PURPOSE);
        let l = Arc::new(http::AuthLimiter::shared(&secret));
        ctx.engine.workers().spawn(
            http::lockout_sync::LockoutSync::new(ctx.engine.clone(), l.clone()),
            0,
        );
        l
    } else {
        Default::default()
    };
    Arc::new(http::Front {
        s3: builder.build(),
        limiter,
        metrics,
        edge,
        host,
        engine: ctx.engine.clone(),
        s3_ops: s3::StrataS3::new(ctx.clone()),
        region: ctx.cfg.region.clone(),
    })
}
