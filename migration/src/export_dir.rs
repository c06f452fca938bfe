//! The on-disk format of an export to a directory (`strata admin export start --to-dir DIR`):
//! files a customer reads without Strata, and `strata admin export verify DIR` (offline).
//!
//! ```text
//! DIR/data/<encoded key segments>/@<encoded version id>   one file per version's bytes
//! DIR/manifest/0000000001.jsonl                           one JSON line per version or marker
//! DIR/manifest.json                                       the summary, written last
//! ```
//!
//! A key is split at `/` and every segment percent-encoded (only `A-Z a-z 0-9 - _ . ~` are
//! kept; a leading `.` is encoded, so no segment is `.` or `..`; an empty segment is `%`; a
//! segment longer than 200 bytes continues in a subdirectory, every piece but the last ending in
//! `+`): no key can name a path outside `DIR/data`, and two keys never share a file. A version
//! file is `@` and the encoded version id inside the key's directory (`@` is always encoded in a
//! segment, so a version file is never a key's directory).
//!
//! Durability: every file is written under `DIR/.partial`, fsynced, renamed into place and its
//! directory fsynced; a manifest segment is written the same way only after the files it names,
//! and `manifest.json` only when every segment is; so a crash never leaves a manifest naming a
//! partial file.

use std::collections::HashSet;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;

pub const FORMAT: &str = "strata-export/1";
pub const DATA_DIR: &str = "data";
pub const MANIFEST_DIR: &str = "manifest";
pub const SUMMARY: &str = "manifest.json";
pub const PARTIAL_DIR: &str = ".partial";
/// Encoded bytes of one path component at most (NAME_MAX is 255 on common file systems).
const MAX_PIECE: usize = 200;

fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~".contains(&b)
}

/// One key segment (or a version id) as a path component or a few (see the module doc).
fn encode_segment(seg: &str, out: &mut PathBuf) {
    if seg.is_empty() {
        out.push("%");
        return;
    }
    let mut piece = String::new();
    for (i, b) in seg.bytes().enumerate() {
        let enc = if keep(b) && !(i == 0 && b == b'.') {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        };
        if piece.len() + enc.len() > MAX_PIECE {
            piece.push('+');
            out.push(&piece);
            piece.clear();
            // A continued piece starting with `.` must not read as `.` or `..`.
            if enc == "." {
                piece.push_str("%2E");
                continue;
            }
        }
        piece.push_str(&enc);
    }
    out.push(&piece);
}

/// The relative path (under DIR) of the bytes of `key`'s version `version_id`.
pub fn version_path(key: &str, version_id: &str) -> PathBuf {
    let mut p = PathBuf::from(DATA_DIR);
    for seg in key.split('/') {
        encode_segment(seg, &mut p);
    }
    let mut id = PathBuf::new();
    encode_segment(version_id, &mut id);
    // A version id is short (Strata's, AWS's: well under 200 bytes); a longer one is encoded
    // whole in a single component, which the file system may refuse (then the copy fails).
    let id = id.to_string_lossy().replace('/', "");
    p.push(format!("@{id}"));
    p
}

/// The relative path of manifest segment `seq` (1-based).
pub fn segment_path(seq: u64) -> PathBuf {
    PathBuf::from(MANIFEST_DIR).join(format!("{seq:010}.jsonl"))
}

/// One manifest line: a version or a delete marker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ManifestEntry {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    /// Relative to DIR, `/`-separated; `None` for a delete marker.
    pub path: Option<String>,
    pub size: u64,
    pub etag: String,
    /// Hex SHA-256 of the file's bytes (computed while writing it).
    pub sha256: Option<String>,
    /// The checksum the object was stored with (`x-amz-checksum-*`): algorithm, base64 value,
    /// FULL_OBJECT or COMPOSITE.
    pub checksum_algorithm: Option<String>,
    pub checksum: Option<String>,
    pub checksum_type: Option<String>,
    /// ISO 8601, milliseconds, UTC.
    pub last_modified: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix, in the order they were written.
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub storage_class: String,
    /// What an import recorded of this version's source (`strata admin migration origins`).
    pub origin: Option<Value>,
}

/// The summary, `DIR/manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Summary {
    pub format: String,
    pub job: String,
    pub bucket: String,
    pub prefix: String,
    /// Every version and delete marker (true), or current versions only.
    pub versions: bool,
    pub segments: u64,
    /// Manifest lines: versions with a file, delete markers.
    pub files: u64,
    pub delete_markers: u64,
    pub bytes: u64,
    /// Objects the job could not export (see `strata admin export report NAME`).
    pub failed: u64,
    pub started_ms: Option<i64>,
    pub finished_ms: i64,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors under `root`, each made durable in its parent.
pub fn create_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    // Bounded by the path's depth.
    while !cur.is_dir() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if p.starts_with(root) => cur = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent() {
            sync_dir(p)?;
        }
    }
    Ok(())
}

/// Moves a written, fsynced temporary file to `rel` under `root`, durably.
pub fn install(root: &Path, tmp: &Path, rel: &Path) -> std::io::Result<()> {
    let dest = root.join(rel);
    let parent = dest.parent().expect("a relative path under root");
    create_dirs(root, parent)?;
    std::fs::rename(tmp, &dest)?;
    sync_dir(parent)
}

/// A fresh temporary file name under `root/.partial`.
pub fn temp_path(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(PARTIAL_DIR);
    create_dirs(root, &dir)?;
    let mut r = [0u8; 12];
    rand::fill(&mut r);
    Ok(dir.join(hex::encode(r)))
}

/// Writes `bytes` to `rel` under `root` durably (write, fsync, rename, fsync the directory).
pub fn write_file(root: &Path, rel: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(root)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    install(root, &tmp, rel)
}

/// Writes manifest segment `seq` with `entries` (one JSON line each).
pub fn write_segment(root: &Path, seq: u64, entries: &[ManifestEntry]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    write_file(root, &segment_path(seq), &out)
}

/// Writes the summary (last: an export without it is not complete) and removes `.partial`.
pub fn write_summary(root: &Path, s: &Summary) -> std::io::Result<()> {
    let raw = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    write_file(root, Path::new(SUMMARY), &raw)?;
    let partial = root.join(PARTIAL_DIR);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
        sync_dir(root)?;
    }
    Ok(())
}

/// Whether `dir` may receive a new export: an absolute path outside `forbidden` (the server's
/// data directory), empty or not there yet. Returns the path to use.
pub fn check_target(dir: &str, forbidden: Option<&Path>) -> Result<PathBuf, String> {
    let p = Path::new(dir);
    if !p.is_absolute() {
        return Err(format!(
            "--to-dir must be an absolute path on the server's machine, not {dir:?}"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("--to-dir must not contain ..".into());
    }
    // The longest existing ancestor, resolved (symlinks included), and the rest as given.
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing
        .canonicalize()
        .map_err(|e| format!("--to-dir: {e}"))?;
    for n in rest.iter().rev() {
        resolved.push(n);
    }
    if let Some(f) = forbidden {
        let f = f.canonicalize().unwrap_or_else(|_| f.to_path_buf());
        if resolved.starts_with(&f) || f.starts_with(&resolved) {
            return Err(format!(
                "--to-dir must be outside the server's data directory ({})",
                f.display()
            ));
        }
    }
    if resolved.exists() {
        if !resolved.is_dir() {
            return Err(format!("--to-dir {dir:?} is not a directory"));
        }
        let mut it = std::fs::read_dir(&resolved).map_err(|e| format!("--to-dir: {e}"))?;
        if it.next().is_some() {
            return Err(format!(
                "--to-dir {dir:?} is not empty (an export gets a directory of its own)"
            ));
        }
    }
    Ok(resolved)
}

/// What `export verify` found wrong.
#[derive(Debug, Default)]
pub struct Verified {
    pub files: u64,
    pub bytes: u64,
    pub delete_markers: u64,
    pub problems: Vec<String>,
    pub summary: Option<Summary>,
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// A manifest path that stays inside DIR/data.
fn safe_rel(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok =
        path.starts_with(DATA_DIR) && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

/// Re-hashes every file of an export against its manifest; lists missing, altered and extra
/// files (and manifest segments). Memory: the set of manifest paths.
pub fn verify(root: &Path) -> std::io::Result<Verified> {
    let mut out = Verified::default();
    let summary: Summary = match std::fs::read(root.join(SUMMARY)) {
        Ok(raw) => serde_json::from_slice(&raw).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{SUMMARY}: {e}"))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.problems.push(format!(
                "incomplete: no {SUMMARY} (the export has not finished)"
            ));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    if summary.format != FORMAT {
        out.problems.push(format!(
            "unknown format {:?} (expected {FORMAT})",
            summary.format
        ));
        return Ok(out);
    }
    let mut named: HashSet<PathBuf> = HashSet::new();
    for seq in 1..=summary.segments {
        let rel = segment_path(seq);
        named.insert(rel.clone());
        let f = match std::fs::File::open(root.join(&rel)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.problems
                    .push(format!("missing: {} (manifest segment)", rel.display()));
                continue;
            }
            Err(e) => return Err(e),
        };
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line?;
            let e: ManifestEntry = match serde_json::from_str(&line) {
                Ok(e) => e,
                Err(err) => {
                    out.problems
                        .push(format!("altered: {} line {} ({err})", rel.display(), n + 1));
                    continue;
                }
            };
            if e.delete_marker {
                out.delete_markers += 1;
                continue;
            }
            let Some(p) = e.path.as_deref().and_then(safe_rel) else {
                out.problems.push(format!(
                    "altered: {} line {}: a path outside {DATA_DIR}/",
                    rel.display(),
                    n + 1
                ));
                continue;
            };
            named.insert(p.clone());
            match sha256_file(&root.join(&p)) {
                Ok((size, sha)) => {
                    if size != e.size || Some(&sha) != e.sha256.as_ref() {
                        out.problems.push(format!(
                            "altered: {} (key {:?} version {}: {size} bytes, sha256 {sha}; the manifest says {} bytes, sha256 {})",
                            p.display(),
                            e.key,
                            e.version_id,
                            e.size,
                            e.sha256.as_deref().unwrap_or("-"),
                        ));
                    } else {
                        out.files += 1;
                        out.bytes += size;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    out.problems.push(format!(
                        "missing: {} (key {:?} version {})",
                        p.display(),
                        e.key,
                        e.version_id
                    ))
                }
                Err(err) => out
                    .problems
                    .push(format!("unreadable: {} ({err})", p.display())),
            }
        }
    }
    // Every file under DIR must be named (the manifest itself aside).
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0u64;
    while let Some(rel) = stack.pop() {
        for ent in std::fs::read_dir(root.join(&rel))? {
            let ent = ent?;
            let r = rel.join(ent.file_name());
            seen += 1;
            if ent.file_type()?.is_dir() {
                stack.push(r);
            } else if r != Path::new(SUMMARY) && !named.contains(&r) {
                out.problems
                    .push(format!("extra: {} (not in the manifest)", r.display()));
            }
        }
    }
    let _ = seen;
    if out.problems.is_empty()
        && (out.files != summary.files || out.delete_markers != summary.delete_markers)
    {
        out.problems.push(format!(
            "the manifest lists {} files and {} delete markers, the summary says {} and {}",
            out.files, out.delete_markers, summary.files, summary.delete_markers
        ));
    }
    out.summary = Some(summary);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: PathBuf) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn keys_stay_inside_data_and_never_collide() {
        assert_eq!(s(version_path("a/b.txt", "v1")), "data/a/b.txt/@v1");
        assert_eq!(s(version_path("..", "null")), "data/%2E./@null");
        assert_eq!(
            s(version_path("../../etc/passwd", "x")),
            "data/%2E./%2E./etc/passwd/@x"
        );
        assert_eq!(s(version_path("/abs//x/", "x")), "data/%/abs/%/x/%/@x");
        assert_eq!(s(version_path("é @", "x")), "data/%C3%A9%20%40/@x");
        let long = "z".repeat(450);
        let p = version_path(&long, "x");
        assert!(p.components().all(|c| c.as_os_str().len() <= 201));
        for k in ["", "a", "a/", "a/b", "@v", "%", "%25", "a+", "."] {
            let p = version_path(k, "v");
            assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
            for other in ["", "a", "a/", "a/b", "@v", "%", "%25", "a+", "."] {
                if other != k {
                    assert_ne!(p, version_path(other, "v"), "{k:?} vs {other:?}");
                }
            }
        }
    }

    #[test]
    fn verify_finds_missing_extra_and_altered_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let e = |key: &str, bytes: &[u8]| {
            let rel = version_path(key, "v1");
            write_file(root, &rel, bytes).unwrap();
            ManifestEntry {
                key: key.into(),
                version_id: "v1".into(),
                path: Some(rel.to_string_lossy().into_owned()),
                size: bytes.len() as u64,
                sha256: Some(hex::encode(sha2::Sha256::digest(bytes))),
                ..Default::default()
            }
        };
        let entries = vec![e("a", b"hello"), e("b/c", b"")];
        write_segment(root, 1, &entries).unwrap();
        assert!(!verify(root).unwrap().problems.is_empty(), "no summary yet");
        let summary = Summary {
            format: FORMAT.into(),
            segments: 1,
            files: 2,
            ..Default::default()
        };
        write_summary(root, &summary).unwrap();
        let v = verify(root).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.files, 2);
        std::fs::write(root.join("data/a/@v1"), b"hellO").unwrap();
        let v = verify(root).unwrap();
        assert_eq!(v.problems.len(), 1);
        assert!(
            v.problems[0].starts_with("altered: data/a/@v1"),
            "{:?}",
            v.problems
        );
        std::fs::write(root.join("data/a/@v1"), b"hello").unwrap();
        std::fs::write(root.join("data/stray"), b"x").unwrap();
        std::fs::remove_file(root.join("data/b/c/@v1")).unwrap();
        let v = verify(root).unwrap();
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("missing: data/b/c/@v1"))
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("extra: data/stray"))
        );
    }

    #[test]
    fn targets_must_be_absolute_empty_and_outside_the_data_dir() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert!(check_target("rel/dir", Some(&data)).is_err());
        assert!(check_target(data.join("x").to_str().unwrap(), Some(&data)).is_err());
        assert!(check_target(d.path().to_str().unwrap(), Some(&data)).is_err());
        let ok = d.path().join("out/new");
        assert!(check_target(ok.to_str().unwrap(), Some(&data)).is_ok());
        assert!(check_target(&format!("{}/../data", ok.display()), Some(&data)).is_err());
    }
}
