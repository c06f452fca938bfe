//! The valid export the fuzz body mutates: a real log (fixed test key, a few records and
//! checkpoints) exported once per process into memory.

use std::collections::HashMap;
use std::sync::OnceLock;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::export::FILES;
use crate::keys::KEY_FILE;
use crate::record::{Actor, DestructionRecord, Reason};
use crate::{DestructionLog, LogOptions};

pub(crate) struct Fixture {
    pub files: HashMap<&'static str, Vec<u8>>,
    pub key: VerifyingKey,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(build)
}

fn build() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "strata-dlog-fuzz-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir).expect("temp dir");
    // A fixed, test-only key (never a production key).
    let signing = SigningKey::from_bytes(&[0x5a; 32]);
    let pem = signing.to_pkcs8_pem(LineEnding::LF).expect("encodes");
    std::fs::write(log_dir.join(KEY_FILE), pem.as_bytes()).expect("key file");
    let log = DestructionLog::open_with_options(
        &log_dir,
        LogOptions {
            sync_every: 3,
            ..Default::default()
        },
    )
    .expect("fixture log opens");
    log.checkpoint(1_000).expect("checkpoint");
    for i in 0..7u64 {
        log.append(record(i)).expect("append");
        if i % 3 == 1 {
            log.checkpoint(2_000 + i as i64).expect("checkpoint");
        }
    }
    let out = dir.join("export");
    log.export(None, None, &out).expect("fixture export");
    let files = FILES
        .iter()
        .map(|&name| (name, std::fs::read(out.join(name)).expect("export file")))
        .collect();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Fixture {
        files,
        key: signing.verifying_key(),
    }
}

fn record(i: u64) -> DestructionRecord {
    DestructionRecord {
        op_id: format!("fuzz-op-{i}"),
        bucket: "b".into(),
        key: format!("k/{i}"),
        version_id: format!("v{i}"),
        size: i * 100,
        etag: format!("\"{i:032x}\""),
        checksum: None,
        storage_class: "STANDARD".into(),
        written_ms: 10,
        destroyed_ms: 20 + i as i64,
        reason: Reason::RetentionEnd {
            rule_id: "r".into(),
        },
        actor: Actor {
            engine: Some("lifecycle".into()),
            ..Actor::default()
        },
        key_id: format!("{i:032x}"),
        shards_removed: 6,
        verification: "read after destruction failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{MemSource, fuzz_verify_export, verify_source};

    #[test]
    fn fixture_verifies() {
        let fx = fixture();
        let report = verify_source(&MemSource(fx.files.clone()), &fx.key).unwrap();
        assert_eq!((report.records, report.tree_size), (7, 7));
        assert!(report.complete);
        assert_eq!(report.checkpoints, 4);
    }

    /// The fuzz body on stable: random inputs in every mode, and mutations of the real files,
    /// so a panic in a parser fails `cargo test` too.
    #[test]
    fn fuzz_body_survives_random_and_mutated_inputs() {
        use rand::RngExt as _;
        let fx = fixture();
        let mut rng = rand::rng();
        for i in 0..3000u32 {
            let mut input = vec![rng.random::<u8>()];
            match i % 3 {
                // Replace a file by a mutation of the real one (truncated, bytes changed).
                0 => {
                    let name = FILES[(input[0] as usize / 4) % FILES.len()];
                    input[0] &= !3;
                    let mut body = fx.files[name].clone();
                    if !body.is_empty() {
                        let cut = rng.random_range(0..=body.len());
                        body.truncate(cut.max(body.len() / 2));
                        for _ in 0..rng.random_range(0..4) {
                            let len = body.len().max(1);
                            let p = rng.random_range(0..len);
                            if p < body.len() {
                                body[p] = rng.random();
                            }
                        }
                    }
                    input.extend(body);
                }
                // Edits at random positions.
                1 => {
                    input[0] = 2;
                    input.push(rng.random());
                    for _ in 0..rng.random_range(1..5) * 3 {
                        input.push(rng.random());
                    }
                }
                // Plain noise (also as a public key).
                _ => {
                    for _ in 0..rng.random_range(0..300) {
                        input.push(rng.random());
                    }
                }
            }
            fuzz_verify_export(&input);
        }
        // The real public key through the key path verifies.
        let pem = crate::keys::public_key_pem(&fx.key);
        let mut input = vec![3u8];
        input.extend(pem.as_bytes());
        fuzz_verify_export(&input);
    }
}
