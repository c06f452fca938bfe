//! The destruction log (and, on the same machinery, the audit log: [`Log`] over any
//! [`LogRecord`]): one record per destroyed object version, in an append-only file under
//! an RFC 6962 (Certificate Transparency) Merkle tree, with Ed25519-signed checkpoints; exports
//! that a third party verifies offline with the log's public key. Format and auditor's steps:
//! docs/destruction-log.md.
//!
//! All calls block (fsync); async callers run them on the blocking pool.

mod export;
mod frame;
mod fuzzing;
mod keys;
mod log;
pub mod merkle;
mod record;
pub mod replicated;
pub mod service;
#[cfg(test)]
mod test_support;
mod verify;

pub use export::{ExportFilter, ExportSummary};
pub use keys::{SignedCheckpoint, parse_public_key_pem};
pub use log::{DestructionLog, LOG_DIR_NAME, Log, LogError, LogOptions, lock_dir};
pub use record::{Actor, DestructionRecord, LogRecord, Reason};
pub use service::LogHandle;
pub use verify::{
    RecordProblem, VerifyError, VerifyReport, fuzz_verify_export, verify_export, verify_export_of,
};

/// The public key (PEM) of the log in `dir`, read from its key file without opening the log
/// (works while a server holds it open); for `strata admin destruction public-key`.
pub fn public_key_pem_of(dir: &std::path::Path) -> Result<String, LogError> {
    keys::public_key_pem_of(dir).map_err(LogError::Key)
}

/// The log name (`strata.destruction-log/<fingerprint>`) that checkpoints signed by this public
/// key (PEM) carry.
pub fn origin_of(public_key_pem: &str) -> Result<String, LogError> {
    origin_of_log::<DestructionRecord>(public_key_pem)
}

/// The log name (`strata.<LOG_NAME>/<fingerprint>`) of a log of records `R` with this key.
pub fn origin_of_log<R: LogRecord>(public_key_pem: &str) -> Result<String, LogError> {
    parse_public_key_pem(public_key_pem)
        .map(|k| keys::origin_named(R::LOG_NAME, &k))
        .map_err(LogError::Key)
}

/// Names of the files of an export directory.
pub const EXPORT_FILES: [&str; 5] = export::FILES;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<DestructionLog>();
};
