//! The garbage collector: deletes the chunks of data no version references any more. It works
//! from the metadata tier's durable queue, so a crash only delays deletion, never loses it.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::datapath::delete_segments;

/// Deletes up to `limit` queued items; returns how many were completed.
pub async fn run_once(ctx: &Context, limit: usize) -> usize {
    let items = match ctx.meta.gc_pending(limit) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "gc: cannot read the queue");
            return 0;
        }
    };
    let mut done = Vec::with_capacity(items.len());
    for item in &items {
        // TODO(engine): each segment's recorded layout.
        match delete_segments(&ctx.chunks, &ctx.cfg.layout, &item.segments).await {
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

/// A write intent older than this belongs to a writer that is surely gone (no request lives a
/// day), even when several gateways share the metadata store.
const STALE_INTENT_MS: i64 = 24 * 3600 * 1000;

/// Runs the collector forever: drains the queue in batches, then sleeps a little. Every few
/// minutes it also sweeps write intents whose writers died.
pub fn spawn(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_sweep = std::time::Instant::now();
        loop {
            if last_sweep.elapsed() > Duration::from_secs(600) {
                last_sweep = std::time::Instant::now();
                let cutoff = crate::context::now_ms() - STALE_INTENT_MS;
                if let Err(e) = ctx.meta.sweep_interrupted_writes(cutoff) {
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
