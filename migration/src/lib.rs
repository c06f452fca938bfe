//! Migration jobs (`strata admin migration ...`): bulk import into a Strata bucket from any S3
//! endpoint (AWS S3, MinIO, Garage, another Strata), run in the server as the `migration`
//! worker: resumable after pause, restart or kill -9, rate-limited, every object verified,
//! every failure and skip in the report. See docs/migration.md.
//!
//! A crate of its own because it carries an S3 client (to the source), which the engine does
//! not; the gateway's admin verbs and the server start it.

pub mod copy;
pub mod export;
pub mod export_dir;
pub mod export_remote;
pub mod job;
pub mod parts;
pub mod ranges;
pub mod report;
pub mod source;
pub mod worker;

pub use worker::MigrationWorker;

/// Starts the migration worker on the engine's worker runner: a singleton, on the leader only.
pub fn spawn(engine: &strata_engine::Engine) {
    // A master rotation re-seals job source secrets too (on every process: any may lead).
    engine.add_resealer(std::sync::Arc::new(job::JobSecrets));
    engine.workers().spawn_singleton(
        MigrationWorker::new(engine.clone()),
        0,
        engine.leader_gate(),
    );
}
