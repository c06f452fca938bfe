//! Parallel listing of an import: the source's key space (under the job's prefix) is split
//! into ranges at the job's first step, and each range is listed with its own persisted cursor,
//! up to `concurrency` ranges at a time.
//!
//! A range is `(after, through]`: the keys greater than `after` (from the start of the prefix
//! when `None`) and at most `through` (to the end when `None`), listed with ListObjectsV2
//! `start-after`. The ranges are built from sorted, distinct boundaries, so every key belongs
//! to exactly one range whatever the boundaries are: the split only decides the balance, never
//! what is copied.
//!
//! The boundaries come from cheap probes (ListObjectsV2 with `max-keys=1`): starting from the
//! prefix, each node is replaced by its children, the distinct characters that follow it in the
//! source's keys, until there are enough nodes. This splits `p0/ p1/ ...` prefixes and flat
//! keys (`obj-000001 ...` descends to the digits) alike, at a bounded cost ([`MAX_PROBES`]).

use serde::{Deserialize, Serialize};

use crate::source::{Source, SourceError};

/// Probe requests a split may make, at most.
pub const MAX_PROBES: usize = 256;
/// Ranges of one job, at most (each is a few strings in the job's progress record).
pub const MAX_RANGES: usize = 64;
/// How deep the split descends into keys sharing a prefix.
const MAX_DEPTH: usize = 24;

/// One range of the source's keys and how far it is copied.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Range {
    /// Keys after this one (exclusive); `None`: from the start of the prefix.
    #[serde(default)]
    pub after: Option<String>,
    /// Keys up to this one (inclusive); `None`: to the end.
    #[serde(default)]
    pub through: Option<String>,
    /// The last key of the range whose outcome is recorded; its listing resumes after it.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The last key counted in `objects_listed` (a page listed again is not counted twice).
    #[serde(default)]
    pub listed_through: Option<String>,
    #[serde(default)]
    pub done: bool,
}

impl Range {
    /// Where the range's next listing starts (`start-after`).
    pub fn start_after(&self) -> Option<&str> {
        self.cursor.as_deref().or(self.after.as_deref())
    }

    /// Whether `key` (listed after `start_after`) is still in the range.
    pub fn holds(&self, key: &str) -> bool {
        self.through.as_deref().is_none_or(|t| key <= t)
    }
}

/// Ranges from sorted boundaries: `(None, b1], (b1, b2], ..., (bn, None)`.
pub fn from_boundaries(boundaries: &[String]) -> Vec<Range> {
    let mut out = Vec::with_capacity(boundaries.len() + 1);
    let mut after: Option<String> = None;
    for b in boundaries {
        out.push(Range {
            after: after.clone(),
            through: Some(b.clone()),
            ..Range::default()
        });
        after = Some(b.clone());
    }
    out.push(Range {
        after,
        ..Range::default()
    });
    out
}

/// `want` evenly spread picks of `nodes` (sorted) as boundaries: at most `want` ranges. The
/// first node is not a boundary (the first range starts at the prefix).
pub fn pick_boundaries(nodes: &[String], want: usize) -> Vec<String> {
    let want = want.clamp(1, MAX_RANGES);
    let n = nodes.len();
    let mut out: Vec<String> = if n <= want {
        nodes.iter().skip(1).cloned().collect()
    } else {
        (1..want).map(|i| nodes[i * n / want].clone()).collect()
    };
    out.dedup();
    out
}

/// The distinct one-character extensions of `node` that start a key under it (`node` + c).
async fn children(
    source: &Source,
    bucket: &str,
    node: &str,
    probes: &mut usize,
) -> Result<Vec<String>, SourceError> {
    let mut kids = Vec::new();
    let mut after: Option<String> = None;
    while *probes < MAX_PROBES {
        *probes += 1;
        let page = source.list(bucket, node, after.as_deref(), 1).await?;
        let Some(first) = page.objects.into_iter().next() else {
            break;
        };
        // A source that ignores the prefix gives no split.
        let Some(rest) = first.key.strip_prefix(node) else {
            break;
        };
        let Some(c) = rest.chars().next() else {
            // The key is the node itself: look after it.
            after = Some(first.key);
            continue;
        };
        let kid = format!("{node}{c}");
        // Past every key that starts with `kid` (but those continuing with U+10FFFF, which
        // only makes the split coarser).
        after = Some(format!("{kid}{}", char::MAX));
        kids.push(kid);
    }
    Ok(kids)
}

/// Boundaries splitting the keys under `prefix` into about `want` ranges (none for an empty or
/// small key space, or when the probes find no split).
pub async fn plan(
    source: &Source,
    bucket: &str,
    prefix: &str,
    want: usize,
) -> Result<Vec<String>, SourceError> {
    let want = want.clamp(1, MAX_RANGES);
    if want == 1 {
        return Ok(Vec::new());
    }
    let mut nodes = vec![prefix.to_string()];
    let mut probes = 0;
    for _ in 0..MAX_DEPTH {
        if nodes.len() >= want || probes >= MAX_PROBES {
            break;
        }
        let mut next = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if probes >= MAX_PROBES {
                next.extend(nodes[i..].iter().cloned());
                break;
            }
            let kids = children(source, bucket, node, &mut probes).await?;
            if kids.is_empty() {
                next.push(node.clone());
            } else {
                next.extend(kids);
            }
        }
        if next == nodes {
            break;
        }
        nodes = next;
    }
    Ok(pick_boundaries(&nodes, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_every_key_once() {
        let b: Vec<String> = ["b", "d/", "d/x"].map(String::from).to_vec();
        let ranges = from_boundaries(&b);
        assert_eq!(ranges.len(), 4);
        for key in [
            "", "a", "b", "b0", "c", "d/", "d/a", "d/x", "d/xa", "zz", "ключ",
        ] {
            let holding = ranges
                .iter()
                .filter(|r| r.start_after().is_none_or(|a| key > a) && r.holds(key))
                .count();
            assert_eq!(holding, 1, "{key:?}");
        }
    }

    #[test]
    fn boundaries_are_spread_and_bounded() {
        let nodes: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        let b = pick_boundaries(&nodes, 4);
        assert_eq!(b, ["k025", "k050", "k075"]);
        assert_eq!(pick_boundaries(&nodes[..3], 8), ["k001", "k002"]);
        assert!(pick_boundaries(&nodes, 1).is_empty());
        assert_eq!(pick_boundaries(&nodes, 1000).len(), MAX_RANGES - 1);
    }
}
