//! The `completed-uploads` worker: drops the records that let a retried
//! CompleteMultipartUpload answer 200 with its first result, once they expired
//! (`strata_metadata::COMPLETED_UPLOAD_TTL_MS`). A bounded page per unit, cursor persisted in
//! the worker state, so a restart resumes where it was; a full pass ends idle for a minute.

use std::time::Duration;

use serde_json::{Value, json};

use crate::workers::{WorkState, Worker};
use crate::{Engine, now_ms};

/// Records looked at per unit of work.
const PAGE: usize = 256;
const STATE: &str = "completed-uploads";

pub struct CompletionCleaner {
    engine: Engine,
    dropped: u64,
    passes: u64,
}

impl CompletionCleaner {
    pub fn new(engine: Engine) -> Self {
        CompletionCleaner {
            engine,
            dropped: 0,
            passes: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for CompletionCleaner {
    fn name(&self) -> &'static str {
        "completed-uploads"
    }

    async fn work(&mut self) -> Result<WorkState, String> {
        let (dropped, next) = self
            .engine
            .meta_call(|m| {
                let cursor = m.get_worker_state(STATE)?;
                let (dropped, next) =
                    m.expire_completed_uploads(now_ms(), cursor.as_deref(), PAGE)?;
                m.put_worker_state(STATE, next.as_deref().unwrap_or_default())?;
                Ok((dropped, next))
            })
            .await
            .map_err(|e| e.to_string())?;
        self.dropped += dropped as u64;
        Ok(match next {
            Some(_) => WorkState::Busy,
            None => {
                self.passes += 1;
                WorkState::Idle
            }
        })
    }

    fn status(&self) -> Value {
        json!({"dropped": self.dropped, "passes": self.passes})
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(60)
    }
}
