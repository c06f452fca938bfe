//! Offline verification of an export (docs/destruction-log.md, "How an auditor verifies").
//!
//! Everything in the directory is untrusted: every line is size-capped, every parsed file must
//! be exactly the canonical form the exporter writes (so any byte change is caught, not only the
//! ones that change a value), record lines are hashed as they are, and the first problem is
//! reported with the record (or checkpoint) it concerns.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::export::{
    self, CHECKPOINTS, CONSISTENCY, ConsistencyLine, MANIFEST, Manifest, PROOFS, ProofLine, RECORDS,
};
use crate::frame::MAX_PAYLOAD;
use crate::keys::{self, SignedCheckpoint, decode_signature, parse_hash, parse_public_key_pem};
use crate::merkle::{self, Hash, MAX_TREE_SIZE};
use crate::record::decode_leaf;
use crate::record::{DestructionRecord, LogRecord};

const MAX_MANIFEST: usize = 64 << 20;
const MAX_CHECKPOINT_LINE: usize = 4 << 10;
// A path has at most 48 hashes below MAX_TREE_SIZE: 48 * 67 bytes plus the rest.
const MAX_PROOF_LINE: usize = 8 << 10;
const MAX_PATH: usize = 64;

/// What a successful verification established.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub origin: String,
    /// The latest checkpoint, which every record was proven against.
    pub tree_size: u64,
    pub root_hash: String,
    pub timestamp_ms: i64,
    /// Checkpoints checked (signature, and consistency with the one before).
    pub checkpoints: u64,
    /// Records checked (inclusion in the latest checkpoint's tree).
    pub records: u64,
    pub since_ms: Option<i64>,
    pub bucket: Option<String>,
    pub until_ms: Option<i64>,
    pub user: Option<String>,
    /// The export holds every record of the tree (no filter, or one that matched all).
    pub complete: bool,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
}

/// How a record is wrong.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordProblem {
    /// Its bytes are not the ones the log signed (or its line is not a record at all).
    Altered,
    /// The signed manifest lists it, the export does not hold it.
    Removed,
    /// It is not where its index says it belongs.
    Reordered,
    /// A line the signed manifest does not account for.
    Inserted,
    /// Its inclusion proof is missing or malformed.
    BadProof,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Altered => "altered",
            Self::Removed => "removed",
            Self::Reordered => "reordered",
            Self::Inserted => "inserted",
            Self::BadProof => "bad inclusion proof",
        })
    }
}

/// The first problem found; verification stops there.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifyError {
    #[error("public key: {reason}")]
    PublicKey { reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("manifest.json: {reason}")]
    Manifest { reason: String },
    /// `number` is the checkpoint's 1-based position (its line in checkpoints.jsonl).
    #[error("checkpoint {number} (checkpoints.jsonl line {number}): {reason}")]
    Checkpoint { number: u64, reason: String },
    /// `line` is 1-based, in `file` (records.jsonl or proofs.jsonl).
    #[error("record {index} ({file} line {line}): {problem}: {reason}")]
    Record {
        index: u64,
        file: String,
        line: u64,
        problem: RecordProblem,
        reason: String,
    },
}

fn file_err(file: &str, reason: impl fmt::Display) -> VerifyError {
    VerifyError::File {
        file: file.into(),
        reason: reason.to_string(),
    }
}

/// Where the export's files come from: a directory, or memory (fuzzing).
pub(crate) trait Source {
    fn open(&self, name: &str) -> Result<Box<dyn BufRead + '_>, VerifyError>;
}

struct DirSource<'a>(&'a Path);

impl Source for DirSource<'_> {
    fn open(&self, name: &str) -> Result<Box<dyn BufRead + '_>, VerifyError> {
        let f = File::open(self.0.join(name)).map_err(|e| file_err(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
    }
}

pub(crate) struct MemSource(pub HashMap<&'static str, Vec<u8>>);

impl Source for MemSource {
    fn open(&self, name: &str) -> Result<Box<dyn BufRead + '_>, VerifyError> {
        let bytes = self.0.get(name).ok_or_else(|| file_err(name, "missing"))?;
        Ok(Box::new(io::Cursor::new(bytes.as_slice())))
    }
}

/// Newline-terminated lines, each at most `max` bytes. A line that is too long or not
/// terminated comes back as `Err(reason)`; after a too-long line the reader stops.
struct Lines<'a> {
    r: Box<dyn BufRead + 'a>,
    file: &'static str,
    max: usize,
    done: bool,
}

impl<'a> Lines<'a> {
    fn open(src: &'a dyn Source, file: &'static str, max: usize) -> Result<Self, VerifyError> {
        Ok(Self {
            r: src.open(file)?,
            file,
            max,
            done: false,
        })
    }

    #[allow(clippy::type_complexity)]
    fn next(&mut self) -> Result<Option<Result<Vec<u8>, String>>, VerifyError> {
        if self.done {
            return Ok(None);
        }
        let mut buf = Vec::new();
        let n = (&mut self.r)
            .take(self.max as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| file_err(self.file, e))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            return Ok(Some(Ok(buf)));
        }
        self.done = true;
        if buf.len() > self.max {
            Ok(Some(Err(format!("line longer than {} bytes", self.max))))
        } else {
            Ok(Some(Err("last line is not terminated by a newline".into())))
        }
    }
}

/// Parses `bytes` as `T` and insists they are exactly how the exporter writes `T`.
fn parse_canonical<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let v: T = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
    if serde_json::to_vec(&v).expect("serializes") != bytes {
        return Err("not in the exporter's exact form (spacing, escapes, field order)".into());
    }
    Ok(v)
}

fn parse_path(path: &[String]) -> Result<Vec<Hash>, String> {
    if path.len() > MAX_PATH {
        return Err(format!("proof of {} hashes is too long", path.len()));
    }
    path.iter().map(|s| parse_hash(s)).collect()
}

/// The record indices the manifest lists, as ranges with prefix counts.
struct IndexSet {
    ranges: Vec<[u64; 2]>,
    before: Vec<u64>,
    total: u64,
}

impl IndexSet {
    fn new(ranges: &[[u64; 2]], tree_size: u64, records: u64) -> Result<Self, String> {
        let mut before = Vec::with_capacity(ranges.len());
        let mut total = 0u64;
        let mut prev_end: Option<u64> = None;
        for r in ranges {
            if r[0] >= r[1] || r[1] > tree_size {
                return Err(format!(
                    "range {r:?} is empty or beyond the tree size {tree_size}"
                ));
            }
            if prev_end.is_some_and(|e| e >= r[0]) {
                return Err(format!("range {r:?} overlaps or touches the one before"));
            }
            before.push(total);
            total += r[1] - r[0];
            prev_end = Some(r[1]);
        }
        if total != records {
            return Err(format!(
                "ranges hold {total} records, the manifest says {records}"
            ));
        }
        Ok(Self {
            ranges: ranges.to_vec(),
            before,
            total,
        })
    }

    /// The k-th listed index (k < total).
    fn at(&self, k: u64) -> u64 {
        let r = self.before.partition_point(|&b| b <= k) - 1;
        self.ranges[r][0] + (k - self.before[r])
    }

    /// Where `index` is in the list, if listed.
    fn position(&self, index: u64) -> Option<u64> {
        let r = self.ranges.partition_point(|r| r[1] <= index);
        let range = self.ranges.get(r)?;
        (range[0] <= index).then(|| self.before[r] + (index - range[0]))
    }
}

/// Verifies the destruction-log export in `dir` against the log's public key (PEM), offline.
pub fn verify_export(dir: &Path, public_key_pem: &str) -> Result<VerifyReport, VerifyError> {
    verify_export_of::<DestructionRecord>(dir, public_key_pem)
}

/// Verifies an export of a log of records `R` (e.g. the audit log) in `dir`, offline.
pub fn verify_export_of<R: LogRecord>(
    dir: &Path,
    public_key_pem: &str,
) -> Result<VerifyReport, VerifyError> {
    let key =
        parse_public_key_pem(public_key_pem).map_err(|reason| VerifyError::PublicKey { reason })?;
    verify_source_of::<R>(&DirSource(dir), &key)
}

pub(crate) fn verify_source(
    src: &dyn Source,
    key: &VerifyingKey,
) -> Result<VerifyReport, VerifyError> {
    verify_source_of::<DestructionRecord>(src, key)
}

fn verify_source_of<R: LogRecord>(
    src: &dyn Source,
    key: &VerifyingKey,
) -> Result<VerifyReport, VerifyError> {
    let manifest = read_manifest::<R>(src, key)?;
    let body = &manifest.body;
    let latest = &body.checkpoint;
    let n = latest.tree_size;
    let root = latest.root_bytes();
    let unfiltered = body.since_ms.is_none()
        && body.bucket.is_none()
        && body.until_ms.is_none()
        && body.user.is_none();
    let set = IndexSet::new(&body.ranges, n, body.records)
        .map_err(|reason| VerifyError::Manifest { reason })?;
    if unfiltered && set.total != n {
        return Err(VerifyError::Manifest {
            reason: format!(
                "an unfiltered export must hold all {n} records, it lists {}",
                set.total
            ),
        });
    }
    let checkpoints = check_checkpoints::<R>(src, key, latest, body.checkpoints)?;
    check_records::<R>(src, &set, n, &root)?;
    Ok(VerifyReport {
        origin: body.origin.clone(),
        tree_size: n,
        root_hash: latest.root_hash.clone(),
        timestamp_ms: latest.timestamp_ms,
        checkpoints,
        records: set.total,
        since_ms: body.since_ms,
        bucket: body.bucket.clone(),
        until_ms: body.until_ms,
        user: body.user.clone(),
        complete: set.total == n,
        first_index: (set.total > 0).then(|| set.at(0)),
        last_index: (set.total > 0).then(|| set.at(set.total - 1)),
    })
}

fn read_manifest<R: LogRecord>(
    src: &dyn Source,
    key: &VerifyingKey,
) -> Result<Manifest, VerifyError> {
    let bad = |reason: String| VerifyError::Manifest { reason };
    let mut lines = Lines::open(src, MANIFEST, MAX_MANIFEST)?;
    let line = lines
        .next()?
        .ok_or_else(|| bad("empty".into()))?
        .map_err(bad)?;
    if lines.next()?.is_some() {
        return Err(bad("more than one line".into()));
    }
    let m: Manifest = parse_canonical(&line).map_err(bad)?;
    if m.body.format != R::EXPORT_FORMAT {
        return Err(bad(format!("unknown format {:?}", m.body.format)));
    }
    let want = keys::origin_named(R::LOG_NAME, key);
    if m.body.origin != want {
        return Err(bad(format!(
            "made by log {:?}, not by the log of this key ({want:?})",
            m.body.origin
        )));
    }
    let sig = decode_signature(&m.signature).map_err(bad)?;
    let msg = [
        R::EXPORT_FORMAT.as_bytes(),
        b"\n",
        &serde_json::to_vec(&m.body).expect("serializes"),
    ]
    .concat();
    key.verify_strict(&msg, &sig)
        .map_err(|_| bad("bad signature (not signed by this log's key, or edited)".into()))?;
    m.body
        .checkpoint
        .verify_in(R::LOG_NAME, key)
        .map_err(|e| bad(format!("its checkpoint: {e}")))?;
    if m.body.checkpoint.tree_size > MAX_TREE_SIZE {
        return Err(bad("tree size beyond the limit".into()));
    }
    Ok(m)
}

/// Every checkpoint signed by the key, sizes and times never going back, each consistent with
/// the one before (RFC 6962 consistency proof), the last one the manifest's. Returns the count.
fn check_checkpoints<R: LogRecord>(
    src: &dyn Source,
    key: &VerifyingKey,
    latest: &SignedCheckpoint,
    listed: u64,
) -> Result<u64, VerifyError> {
    let mut cps = Lines::open(src, CHECKPOINTS, MAX_CHECKPOINT_LINE)?;
    let mut cons = Lines::open(src, CONSISTENCY, MAX_PROOF_LINE)?;
    let mut prev: Option<SignedCheckpoint> = None;
    let mut number = 0u64;
    while let Some(line) = cps.next()? {
        number += 1;
        let bad = |reason: String| VerifyError::Checkpoint { number, reason };
        let cp: SignedCheckpoint = line.and_then(|l| parse_canonical(&l)).map_err(bad)?;
        cp.verify_in(R::LOG_NAME, key).map_err(bad)?;
        if cp.tree_size > MAX_TREE_SIZE {
            return Err(bad("tree size beyond the limit".into()));
        }
        if cp.tree_size == 0 && cp.root_bytes() != merkle::empty_root() {
            return Err(bad("an empty tree's root must be SHA-256 of nothing".into()));
        }
        if let Some(p) = &prev {
            if cp.tree_size < p.tree_size {
                return Err(bad(format!(
                    "tree size went down from {} to {}",
                    p.tree_size, cp.tree_size
                )));
            }
            if cp.timestamp_ms < p.timestamp_ms {
                return Err(bad("its time is before the previous checkpoint's".into()));
            }
            let proof_line = number - 1;
            let cbad = |reason: String| VerifyError::Checkpoint {
                number,
                reason: format!("consistency.jsonl line {proof_line}: {reason}"),
            };
            let cl: ConsistencyLine = cons
                .next()?
                .ok_or_else(|| cbad("missing".into()))?
                .and_then(|l| parse_canonical(&l))
                .map_err(cbad)?;
            if cl.from_size != p.tree_size || cl.to_size != cp.tree_size {
                return Err(cbad(format!(
                    "proof is for sizes {} -> {}, not {} -> {}",
                    cl.from_size, cl.to_size, p.tree_size, cp.tree_size
                )));
            }
            let path = parse_path(&cl.path).map_err(cbad)?;
            merkle::verify_consistency(
                p.tree_size,
                &p.root_bytes(),
                cp.tree_size,
                &cp.root_bytes(),
                &path,
            )
            .map_err(|e| {
                bad(format!(
                    "not consistent with checkpoint {} (tree size {}): {e}",
                    number - 1,
                    p.tree_size
                ))
            })?;
        }
        prev = Some(cp);
    }
    if number == 0 {
        return Err(file_err(CHECKPOINTS, "no checkpoint"));
    }
    if cons.next()?.is_some() {
        return Err(file_err(
            CONSISTENCY,
            format!("more than the {} proofs between checkpoints", number - 1),
        ));
    }
    if prev.as_ref() != Some(latest) {
        return Err(VerifyError::Checkpoint {
            number,
            reason: "the last checkpoint is not the one the signed manifest names".into(),
        });
    }
    if number != listed {
        return Err(VerifyError::Manifest {
            reason: format!("lists {listed} checkpoints, checkpoints.jsonl holds {number}"),
        });
    }
    Ok(number)
}

/// Each listed record, in order, proven included in the latest tree; anything else is named.
fn check_records<R: LogRecord>(
    src: &dyn Source,
    set: &IndexSet,
    n: u64,
    root: &Hash,
) -> Result<(), VerifyError> {
    let expected = set.total;
    // Pass 1: which index each line claims (at most one line past the expected count), to tell
    // a removed, moved or inserted record from an altered one.
    let mut claims: Vec<Option<u64>> = Vec::new();
    let mut lines_of: HashMap<u64, Vec<u64>> = HashMap::new();
    {
        let mut lines = Lines::open(src, RECORDS, MAX_PAYLOAD as usize)?;
        while (claims.len() as u64) <= expected {
            let Some(line) = lines.next()? else { break };
            let claim = line
                .ok()
                .and_then(|l| decode_leaf::<R>(&l).ok())
                .map(|l| l.index);
            if let Some(c) = claim {
                lines_of.entry(c).or_default().push(claims.len() as u64);
            }
            claims.push(claim);
        }
    }
    let total_lines = claims.len() as u64;
    let claimed_after = |index: u64, k: u64| {
        lines_of
            .get(&index)
            .is_some_and(|v| v.iter().any(|&l| l > k))
    };
    let unclaimed = |index: u64| !lines_of.contains_key(&index);

    // Pass 2: records and proofs side by side.
    let mut recs = Lines::open(src, RECORDS, MAX_PAYLOAD as usize)?;
    let mut proofs = Lines::open(src, PROOFS, MAX_PROOF_LINE)?;
    for k in 0..expected {
        let e = set.at(k);
        let line = k + 1;
        let rec_err = |index: u64, problem: RecordProblem, reason: String| VerifyError::Record {
            index,
            file: RECORDS.into(),
            line,
            problem,
            reason,
        };
        let proof_err = |reason: String| VerifyError::Record {
            index: e,
            file: PROOFS.into(),
            line,
            problem: RecordProblem::BadProof,
            reason,
        };
        let proof: ProofLine = proofs
            .next()?
            .ok_or_else(|| proof_err("no inclusion proof for it".into()))?
            .and_then(|l| parse_canonical(&l))
            .map_err(proof_err)?;
        if proof.index != e || proof.tree_size != n {
            return Err(proof_err(format!(
                "the proof is for record {} in a tree of {}, not record {e} in the tree of {n}",
                proof.index, proof.tree_size
            )));
        }
        let path = parse_path(&proof.path).map_err(proof_err)?;

        let bytes = match recs.next()? {
            None => {
                return Err(rec_err(
                    e,
                    RecordProblem::Removed,
                    format!("records.jsonl ends after {k} of the {expected} listed records"),
                ));
            }
            Some(Err(reason)) => return Err(rec_err(e, RecordProblem::Altered, reason)),
            Some(Ok(b)) => b,
        };
        match claims.get(k as usize).copied().flatten() {
            Some(j) if j == e => {
                if let Err(why) = merkle::verify_inclusion(&bytes, e, n, root, &path) {
                    let dup = lines_of.get(&e).is_some_and(|v| v.len() > 1);
                    return Err(if dup && total_lines > expected {
                        rec_err(
                            e,
                            RecordProblem::Inserted,
                            format!("a second line claims record {e} and is not the logged one"),
                        )
                    } else {
                        rec_err(
                            e,
                            RecordProblem::Altered,
                            format!(
                                "the line does not match its inclusion proof against the \
                                 checkpoint of size {n}: the record or its proof ({PROOFS} \
                                 line {line}) was altered ({why})"
                            ),
                        )
                    });
                }
            }
            None => {
                return Err(if total_lines > expected && claimed_after(e, k) {
                    rec_err(
                        e,
                        RecordProblem::Inserted,
                        format!("the line before record {e} is not a record"),
                    )
                } else {
                    rec_err(
                        e,
                        RecordProblem::Altered,
                        format!("the line is not a {} record", R::LOG_NAME),
                    )
                });
            }
            Some(j) => {
                return Err(if unclaimed(e) && total_lines == expected {
                    rec_err(
                        e,
                        RecordProblem::Altered,
                        format!("the line claims index {j} where record {e} belongs"),
                    )
                } else if set.position(j).is_none() {
                    rec_err(
                        j,
                        RecordProblem::Inserted,
                        "the signed manifest does not list this record".into(),
                    )
                } else if lines_of.get(&j).is_some_and(|v| v[0] < k) {
                    rec_err(j, RecordProblem::Inserted, "it appears twice".into())
                } else if claimed_after(e, k) {
                    rec_err(
                        j,
                        RecordProblem::Reordered,
                        format!("it stands where record {e} belongs; record {e} comes later"),
                    )
                } else {
                    rec_err(
                        e,
                        RecordProblem::Removed,
                        format!("it is missing (the line holds record {j})"),
                    )
                });
            }
        }
    }
    if let Some(extra) = recs.next()? {
        let what = extra
            .ok()
            .and_then(|l| decode_leaf::<R>(&l).ok())
            .map_or("a line that is not a record".to_string(), |l| {
                format!("record {}", l.index)
            });
        return Err(file_err(
            RECORDS,
            format!(
                "line {}: inserted: {what} beyond the {expected} the signed manifest lists",
                expected + 1
            ),
        ));
    }
    if proofs.next()?.is_some() {
        return Err(file_err(
            PROOFS,
            format!("more than the {expected} proofs the signed manifest lists"),
        ));
    }
    Ok(())
}

/// Fuzz body (`fuzz/fuzz_targets/destruction_export.rs`): byte 0 picks what the rest of the
/// input does to a valid export held in memory — replace one file, overwrite bytes in one, or
/// stand for the public key — then the verifier runs. It must never panic, and any change to a
/// file must fail verification.
pub fn fuzz_verify_export(data: &[u8]) {
    let fx = crate::fuzzing::fixture();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut files = fx.files.clone();
    match sel % 4 {
        0 | 1 => {
            let name = export::FILES[(sel as usize / 4) % export::FILES.len()];
            let changed = files[name] != rest;
            files.insert(name, rest.to_vec());
            let res = verify_source(&MemSource(files), &fx.key);
            assert!(!changed || res.is_err(), "a replaced {name} verified");
        }
        2 => {
            let Some((&which, edits)) = rest.split_first() else {
                return;
            };
            let name = export::FILES[which as usize % export::FILES.len()];
            let file = files.get_mut(name).expect("fixture has every file");
            if file.is_empty() {
                return;
            }
            for e in edits.chunks_exact(3) {
                let pos = u16::from_le_bytes([e[0], e[1]]) as usize % file.len();
                file[pos] = e[2];
            }
            let changed = files[name] != fx.files[name];
            let res = verify_source(&MemSource(files), &fx.key);
            assert!(!changed || res.is_err(), "an edited {name} verified");
        }
        _ => {
            if let Ok(key) = parse_public_key_pem(&String::from_utf8_lossy(rest)) {
                let res = verify_source(&MemSource(files), &key);
                assert!(key == fx.key || res.is_err());
            }
        }
    }
}
