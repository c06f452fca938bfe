//! What every request handler shares: the object engine and the S3 front's own settings.

use strata_engine::Engine;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub region: String,
    /// Base domain for virtual-hosted-style addressing (`bucket.DOMAIN`), if enabled.
    pub domain: Option<String>,
    /// SSE-C over plain HTTP (S3 refuses it: the key travels in the clear). Only for an
    /// operator who terminates TLS in front of the gateway, or for tests on loopback.
    pub allow_sse_c_over_http: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            region: "us-east-1".into(),
            domain: None,
            allow_sse_c_over_http: false,
        }
    }
}

pub struct Context {
    pub engine: Engine,
    pub cfg: GatewayConfig,
}
