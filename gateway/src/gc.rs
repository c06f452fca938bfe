//! The garbage collector: deletes the chunks of data no version references any more. It works
//! from the metadata tier's durable queue, so a crash only delays deletion, never loses it.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::datapath::delete_segments;

/// Deletes up to `limit` queued items; returns how many were completed.
pub async fn run_once(ctx: &Context, limit: usize) -> usize {
    let items = match ctx.meta.gc_pending(crate::context::now_ms(), limit) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "gc: cannot read the queue");
            return 0;
        }
    };
    let mut done = Vec::with_capacity(items.len());
    for item in &items {
        match delete_segments(&ctx.chunks, &item.segments).await {
            Ok(()) => done.push(item.seq),
            Err(e) => {
                tracing::warn!(error = %e, seq = item.seq, "gc: chunk deletion failed; will retry")
            }
        }
    }
    if !done.is_empty() {
        if let Err(e) = ctx.meta.gc_ack(&done) {
            tracing::error!(error = %e, "gc: cannot acknowledge deleted items");
            return 0;
        }
        tracing::debug!(count = done.len(), "gc: deleted unreferenced data");
    }
    done.len()
}

/// Runs the collector forever: drains the due part of the queue in batches, then sleeps a
/// little. Every few minutes it also sweeps write intents whose owner instance is dead (safe
/// with several gateways: a live instance's intents are never taken).
pub fn spawn(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_sweep = std::time::Instant::now();
        loop {
            if last_sweep.elapsed() > Duration::from_secs(600) {
                last_sweep = std::time::Instant::now();
                // TODO(engine): in cluster mode only the elected process runs the sweep.
                if let Err(e) = ctx.meta.sweep_interrupted_writes(crate::context::now_ms()) {
                    tracing::error!(error = %e, "gc: cannot sweep interrupted writes");
                }
            }
            let n = run_once(&ctx, 256).await;
            if n < 256 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}
