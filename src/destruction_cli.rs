//! `strata admin destruction ...`. `export` and `show` ask the server (admin API); `verify` and
//! `public-key` are the auditor's verbs that need no server: `verify` checks an export with
//! nothing but the log's public key, `public-key` reads it from the log's key file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;
use strata_destruction_log::{LOG_DIR_NAME, VerifyReport, public_key_pem_of, verify_export};

#[derive(Subcommand)]
pub enum DestructionVerb {
    /// Writes the destruction records, checkpoints and proofs into OUT (a new directory on the
    /// server's machine).
    Export {
        out: PathBuf,
        /// Only records destroyed at or after T (Unix ms, or RFC 3339 like 2026-01-31T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        bucket: Option<String>,
    },
    /// The destruction records of one object.
    Show { bucket: String, key: String },
    /// Verify an export directory offline: signatures, checkpoint consistency, every record's
    /// inclusion; names the first bad record. Exit status 1 when it does not verify.
    Verify {
        /// The export directory.
        out: PathBuf,
        /// The log's public key (PEM), obtained from the operator beforehand.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Print the destruction log's public key (PEM) for auditors, from the data directory.
    PublicKey {
        #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// Runs an offline verb (`verify`, `public-key`); `json` is the global `--json` (verify:
/// `{"ok": true, "report": ...}` or `{"ok": false, "error": ...}`; public-key:
/// `{"public_key_pem": ..., "origin": ...}`). A failed verification prints its finding and exits
/// with status 1. The server-side verbs are not handled here.
pub fn run(verb: DestructionVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        DestructionVerb::Export { .. } | DestructionVerb::Show { .. } => {
            anyhow::bail!("export and show go through the server")
        }
        DestructionVerb::Verify { out, public_key } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("reading the public key {}", public_key.display()))?;
            match verify_export(&out, &pem) {
                Ok(report) if json => {
                    println!("{}", json!({"ok": true, "report": report}));
                }
                Ok(report) => print!("{}", describe(&out, &report)),
                Err(e) if json => {
                    println!(
                        "{}",
                        json!({"ok": false, "error": e, "message": e.to_string()})
                    );
                    std::process::exit(1);
                }
                Err(e) => {
                    println!("FAILED: {} does not verify", out.display());
                    println!("  {e}");
                    std::process::exit(1);
                }
            }
        }
        DestructionVerb::PublicKey { data_dir } => {
            let dir = data_dir.join(LOG_DIR_NAME);
            let pem = public_key_pem_of(&dir)?;
            if json {
                let origin = strata_destruction_log::origin_of(&pem)?;
                println!("{}", json!({"public_key_pem": pem, "origin": origin}));
            } else {
                print!("{pem}");
            }
        }
    }
    Ok(())
}

fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn describe(out: &std::path::Path, r: &VerifyReport) -> String {
    let mut s = format!("OK: {} verifies (log {})\n", out.display(), r.origin);
    s += &format!(
        "  latest checkpoint: {} records, root {}, signed at {}\n",
        r.tree_size,
        r.root_hash,
        utc(r.timestamp_ms)
    );
    s += &format!(
        "  checkpoints: {} (each signed by the log key, each consistent with the one before)\n",
        r.checkpoints
    );
    let span = match (r.first_index, r.last_index) {
        (Some(a), Some(b)) => format!(" (indices {a}..={b})"),
        _ => String::new(),
    };
    s += &format!(
        "  records: {}{span}, each proven included in the latest checkpoint\n",
        r.records
    );
    let mut filter = Vec::new();
    if let Some(b) = &r.bucket {
        filter.push(format!("bucket {b}"));
    }
    if let Some(t) = r.since_ms {
        filter.push(format!("destroyed since {}", utc(t)));
    }
    s += &if r.complete {
        "  complete: every record of the log up to the latest checkpoint is in the export\n"
            .to_string()
    } else {
        format!(
            "  selection: {} (the signed manifest lists every record it holds)\n",
            filter.join(", ")
        )
    };
    s
}
