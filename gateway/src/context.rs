//! What every request handler shares: the object engine and the S3 front's own settings.

use strata_engine::Engine;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub region: String,
    /// Base domain for virtual-hosted-style addressing (`bucket.DOMAIN`), if enabled.
    pub domain: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            region: "us-east-1".into(),
            domain: None,
        }
    }
}

pub struct Context {
    pub engine: Engine,
    pub cfg: GatewayConfig,
}
