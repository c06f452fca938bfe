//! `strata admin audit ...` (docs/audit.md). `export` and `search` ask the server (admin API);
//! `verify` and `public-key` need no server: `verify` checks an export with nothing but the audit
//! log's public key, `public-key` reads it from the log's key file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{Value, json};
use strata_destruction_log::public_key_pem_of;
use strata_engine::audit::{AUDIT_DIR_NAME, AuditRecord, SegmentState, verify_audit_export};

#[derive(Subcommand)]
pub enum AuditVerb {
    /// Writes the audit records, checkpoints and proofs into OUT (a new directory on the
    /// server's machine).
    Export {
        out: PathBuf,
        /// Records at or after T: Unix ms, RFC 3339 (2026-01-31T00:00:00Z), or an age (90s,
        /// 15m, 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Records before T (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Recent records, newest first (at most 1000).
    Search {
        /// Only failed authentications (bad signature, unknown key, lockout).
        #[arg(long)]
        failed_auth: bool,
        /// Records at or after T (same forms as export's --since); default: the last hour.
        #[arg(long, default_value = "1h")]
        since: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Verify an export directory offline: signatures, checkpoint consistency, every record's
    /// inclusion; names the first bad record. Exit status 1 when it does not verify.
    Verify {
        out: PathBuf,
        /// The audit log's public key (PEM), obtained from the operator beforehand.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Print the audit log's public key (PEM) for auditors, from the data directory.
    PublicKey {
        #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// `s` as Unix ms: an age before now (`90s`, `15m`, `1h`, `7d`), Unix ms or RFC 3339.
pub fn parse_when(s: &str) -> anyhow::Result<i64> {
    let unit = match s.chars().last() {
        Some('s') => Some(1_000),
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        _ => None,
    };
    if let Some(unit) = unit
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        return Ok(strata_engine::now_ms() - n.saturating_mul(unit));
    }
    crate::admin_keys::parse_time_ms(s)
}

/// The admin verb and body of a server-side verb; `None` for the offline ones.
pub fn request(verb: &AuditVerb) -> anyhow::Result<Option<(&'static str, Value)>> {
    Ok(match verb {
        AuditVerb::Export {
            out,
            since,
            until,
            user,
            bucket,
        } => {
            let out = std::path::absolute(out)?;
            let since = since.as_deref().map(parse_when).transpose()?;
            let until = until.as_deref().map(parse_when).transpose()?;
            Some((
                "audit-export",
                json!({"out": out, "since_ms": since, "until_ms": until, "user": user, "bucket": bucket}),
            ))
        }
        AuditVerb::Search {
            failed_auth,
            since,
            user,
            bucket,
            limit,
        } => Some((
            "audit-search",
            json!({"failed_auth": failed_auth, "since_ms": parse_when(since)?, "user": user,
                   "bucket": bucket, "limit": limit}),
        )),
        AuditVerb::Verify { .. } | AuditVerb::PublicKey { .. } => None,
    })
}

/// Runs an offline verb (`verify`, `public-key`). A failed verification prints its finding and
/// exits with status 1.
pub fn run_offline(verb: AuditVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        AuditVerb::Verify { out, public_key } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("reading the public key {}", public_key.display()))?;
            match verify_audit_export(&out, &pem) {
                Ok(report) if json => println!("{}", json!({"ok": true, "report": report})),
                Ok(r) => {
                    println!("OK: {} verifies (log {})", out.display(), r.origin);
                    println!("  records: {} (each proven included)", r.records);
                    for s in &r.segments {
                        let state = match s.state {
                            SegmentState::Active => "active",
                            SegmentState::Sealed => "sealed",
                            SegmentState::Deleting => "deleting",
                            SegmentState::Deleted => "deleted",
                        };
                        if s.exported {
                            println!(
                                "  segment {} ({state}): records from {}, {} exported, \
                                 checkpoint {} records, root {}",
                                s.id, s.first_index, s.records, s.tree_size, s.root_hash
                            );
                        } else {
                            println!(
                                "  segment {} ({state}, not in the export): anchor {} records \
                                 from {}, root {}, signed at {}{}",
                                s.id,
                                s.tree_size,
                                s.first_index,
                                s.root_hash,
                                s.timestamp_ms,
                                if s.deletion_record {
                                    ", deletion record found"
                                } else {
                                    ""
                                }
                            );
                        }
                    }
                }
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
        AuditVerb::PublicKey { data_dir } => {
            let pem = public_key_pem_of(&data_dir.join(AUDIT_DIR_NAME))?;
            if json {
                let origin = strata_destruction_log::origin_of_log::<AuditRecord>(&pem)?;
                println!("{}", json!({"public_key_pem": pem, "origin": origin}));
            } else {
                print!("{pem}");
            }
        }
        _ => anyhow::bail!("export and search go through the server"),
    }
    Ok(())
}

/// One line per record of a search answer.
pub fn render_search(v: &Value) -> String {
    let mut s = String::new();
    for item in v.as_array().into_iter().flatten() {
        let r = &item["record"];
        let f = |k: &str| match &r[k] {
            Value::Null => "-".to_string(),
            Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        s += &format!(
            "{} {} {} user={} key={} {} {}/{} {} {}\n",
            f("time_ms"),
            f("request_id"),
            f("remote"),
            f("user"),
            f("access_key"),
            f("operation"),
            f("bucket"),
            f("key"),
            f("status"),
            f("error_code"),
        );
    }
    if s.is_empty() {
        s = "no matching records\n".into();
    }
    s
}
