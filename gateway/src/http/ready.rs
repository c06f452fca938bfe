//! `/_strata/ready`: the readiness probe for load balancers and orchestrators. `/_strata/health`
//! says the process is alive; this says it can serve: the metadata tier answers a point read
//! within a bounded time, and the local disks can take writes (the disk-watch worker's last
//! sample, `strata_engine::disks`). Unauthenticated, so the answer is cached for a second: a
//! flood of probes costs at most one metadata read per second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a probe waits for the metadata tier.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// `Ok` when the process can serve, else why not (a short, secret-free reason).
    pub async fn check(&self, engine: &strata_engine::Engine) -> Result<(), String> {
        if let Some((at, r)) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return r.clone();
        }
        // A point read of a name no bucket can have (upper case): found or not, the tier answered.
        let read = engine.meta_call(|m| m.get_bucket("READINESS-PROBE"));
        let r = match tokio::time::timeout(PROBE_TIMEOUT, read).await {
            Ok(Ok(_)) => match engine.disk_health().and_then(|h| h.write_problem()) {
                None => Ok(()),
                Some(why) => Err(truncate(&why)),
            },
            Ok(Err(e)) => Err(format!(
                "metadata tier unavailable: {}",
                truncate(&e.to_string())
            )),
            Err(_) => Err(format!(
                "metadata tier did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), r.clone()));
        r
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(400).collect()
}
