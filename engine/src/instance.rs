//! This process as the metadata tier knows it: an instance record with a lease. Write intents
//! name their owner instance, and the sweep of interrupted writes takes only the intents of
//! instances whose lease has run out, so a process never collects another live process's upload.
//!
//! The lease worker renews the lease every 10 s (30 s lease). If the lease was lost anyway (the
//! process was suspended past it, and another process may already have swept its intents), the
//! engine takes a fresh instance id for new writes. Writes still in flight under the old id are
//! safe either way: their commit is conditioned on their intent, so it fails (`WriteAborted`) if
//! the intent was swept, and succeeds otherwise.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use strata_metadata::MetaError;

use crate::workers::{WorkState, Worker};
use crate::{Engine, now_ms};

/// How long an instance stays alive without renewal.
pub const LEASE_MS: i64 = 30_000;
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A new random instance id (128 bits, hex).
pub fn new_instance_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The id new writes are owned by; replaced when the lease is lost.
#[derive(Clone)]
pub struct InstanceId(Arc<RwLock<String>>);

impl InstanceId {
    pub fn new(id: String) -> Self {
        InstanceId(Arc::new(RwLock::new(id)))
    }

    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, id: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = id;
    }
}

pub struct LeaseWorker {
    engine: Engine,
    renewals: u64,
    lost: u64,
}

impl LeaseWorker {
    pub fn new(engine: Engine) -> Self {
        LeaseWorker {
            engine,
            renewals: 0,
            lost: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for LeaseWorker {
    fn name(&self) -> &'static str {
        "instance-lease"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let id = self.engine.instance().get();
        let renewed = {
            let id = id.clone();
            self.engine
                .meta_call(move |m| m.renew_instance(&id, LEASE_MS, now_ms()))
                .await
        };
        match renewed {
            Ok(()) => {
                self.renewals += 1;
                Ok(WorkState::Idle)
            }
            Err(crate::EngineError::Meta(MetaError::InstanceExpired(_))) => {
                self.lost += 1;
                let fresh = new_instance_id();
                let f = fresh.clone();
                self.engine
                    .meta_call(move |m| m.register_instance(&f, LEASE_MS, now_ms()))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::error!(old = %id, new = %fresh, "instance lease was lost (process suspended?); new writes use a fresh instance id");
                self.engine.instance().set(fresh);
                Ok(WorkState::Idle)
            }
            // A transient failure: the lease outlives a few missed renewals.
            Err(e) => Err(format!("could not renew the instance lease: {e}")),
        }
    }

    fn status(&self) -> Value {
        json!({
            "instance": self.engine.instance().get(),
            "renewals": self.renewals,
            "leases_lost": self.lost,
            "lease_ms": LEASE_MS,
        })
    }

    fn idle_interval(&self) -> Duration {
        RENEW_EVERY
    }
}
