//! [`Layout`]: the geometry one chunk was written with (which disks, RS(k, m)), named by a number
//! the metadata tier records per segment. The store serves any number of layouts at once; a
//! layout is never edited, only superseded, so a chunk is always read with the geometry it was
//! written with.
//!
//! Layouts arrive over the node's HTTP API (header `x-strata-layout`, see [`Layout::to_wire`]),
//! so [`Layout::parse_wire`] is strict and [`Layout::validate`] runs at every store entry point.

use serde::{Deserialize, Serialize};
use strata_erasure::disk_for_shard;

use crate::{ChunkId, NodeError};

/// Longest disk name accepted.
pub const MAX_DISK_NAME_LEN: usize = 64;
/// Most disks one layout may place shards on (bounds the wire form and validation cost).
pub const MAX_LAYOUT_DISKS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Layout {
    /// Recorded in every shard header, so a shard file says which layout it belongs to.
    pub id: u32,
    /// Disk *names* (e.g. `disk3`), resolved by the store to the directories it was opened with.
    /// A name the store does not know is an unavailable disk. Shard `i` of a chunk goes to
    /// `disks[disk_for_shard(chunk, i, disks.len())]`, so the order matters and never changes.
    pub disks: Vec<String>,
    pub data_shards: u8,
    pub parity_shards: u8,
}

/// Disk names are short ASCII words: they appear in paths of nothing, but in logs, reports and
/// the wire form, which must stay unambiguous (no separators, no whitespace). A cluster disk is
/// `<node>/<disk>`, two such words.
pub fn valid_disk_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((node, disk)) => valid_word(node) && valid_word(disk),
        None => valid_word(name),
    }
}

/// One word of a disk name (a local disk name, a node id): `[A-Za-z0-9_-]{1,64}`.
pub fn valid_word(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DISK_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid(why: impl Into<String>) -> NodeError {
    NodeError::Invalid(format!("layout: {}", why.into()))
}

impl Layout {
    /// A validated layout.
    pub fn new(
        id: u32,
        disks: Vec<String>,
        data_shards: u8,
        parity_shards: u8,
    ) -> Result<Self, NodeError> {
        let layout = Self {
            id,
            disks,
            data_shards,
            parity_shards,
        };
        layout.validate()?;
        Ok(layout)
    }

    pub fn total_shards(&self) -> usize {
        usize::from(self.data_shards) + usize::from(self.parity_shards)
    }

    /// k >= 1, m >= 1, k + m <= 255, at least k + m distinct disks (each shard of a chunk on its
    /// own disk), at most [`MAX_LAYOUT_DISKS`], every name valid.
    pub fn validate(&self) -> Result<(), NodeError> {
        let total = self.total_shards();
        if self.data_shards == 0
            || self.parity_shards == 0
            || total > strata_erasure::MAX_TOTAL_SHARDS
        {
            return Err(invalid(format!(
                "RS({}, {}) is not a valid geometry",
                self.data_shards, self.parity_shards
            )));
        }
        if self.disks.len() < total || self.disks.len() > MAX_LAYOUT_DISKS {
            return Err(invalid(format!(
                "{} disks for RS({}, {}): need {total}..={MAX_LAYOUT_DISKS}",
                self.disks.len(),
                self.data_shards,
                self.parity_shards
            )));
        }
        if let Some(bad) = self.disks.iter().find(|d| !valid_disk_name(d)) {
            return Err(invalid(format!(
                "bad disk name {:?}",
                crate::truncated(bad, 80)
            )));
        }
        let mut sorted: Vec<&str> = self.disks.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("a disk is listed twice"));
        }
        Ok(())
    }

    /// Name of the disk holding shard `shard` of `id`. The placement function is fixed forever
    /// for existing data (see docs/on-disk-format.md).
    pub fn disk_for_shard(&self, id: ChunkId, shard: usize) -> &str {
        &self.disks[disk_for_shard(&crate::chunk_key(id), shard, self.disks.len())]
    }

    /// Compact form for the HTTP API: `<id>:<k>+<m>:<disk>,<disk>,...`, e.g.
    /// `7:4+2:disk0,disk1,disk2,disk3,disk4,disk5`.
    pub fn to_wire(&self) -> String {
        format!(
            "{}:{}+{}:{}",
            self.id,
            self.data_shards,
            self.parity_shards,
            self.disks.join(",")
        )
    }

    /// Strict inverse of [`to_wire`](Self::to_wire): canonical decimals only (no sign, no leading
    /// zeros), valid and distinct disk names, a valid geometry. Anything else is `Invalid`.
    pub fn parse_wire(text: &str) -> Result<Self, NodeError> {
        // Longest possible valid form, so a huge value is refused before it is split.
        const MAX_LEN: usize = 10 + 1 + 3 + 1 + 3 + 1 + MAX_LAYOUT_DISKS * (MAX_DISK_NAME_LEN + 1);
        if text.len() > MAX_LEN {
            return Err(invalid("too long"));
        }
        let mut parts = text.splitn(3, ':');
        let (Some(id), Some(geometry), Some(disks)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected <id>:<k>+<m>:<disks>"));
        };
        let (k, m) = geometry
            .split_once('+')
            .ok_or_else(|| invalid("expected <k>+<m>"))?;
        let layout = Self {
            id: canonical(id).ok_or_else(|| invalid("bad id"))?,
            data_shards: canonical(k).ok_or_else(|| invalid("bad k"))?,
            parity_shards: canonical(m).ok_or_else(|| invalid("bad m"))?,
            disks: disks.split(',').map(str::to_owned).collect(),
        };
        layout.validate()?;
        Ok(layout)
    }
}

/// A decimal number written the one canonical way.
fn canonical<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: T = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Fuzz body (`fuzz/fuzz_targets/shard_layout.rs`): arbitrary bytes as an `x-strata-layout`
/// value. Must not panic; whatever parses must be valid and re-encode to exactly the input.
pub fn fuzz_layout_wire(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(layout) = Layout::parse_wire(text) {
        assert!(layout.validate().is_ok());
        assert_eq!(layout.to_wire(), text, "parse/encode round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn six() -> Layout {
        Layout::new(7, (0..6).map(|i| format!("disk{i}")).collect(), 4, 2).unwrap()
    }

    #[test]
    fn wire_form_round_trips() {
        let layout = six();
        assert_eq!(
            layout.to_wire(),
            "7:4+2:disk0,disk1,disk2,disk3,disk4,disk5"
        );
        assert_eq!(Layout::parse_wire(&layout.to_wire()).unwrap(), layout);
        let wide = Layout::new(
            u32::MAX,
            (0..255).map(|i| format!("d-{i}_x")).collect(),
            200,
            55,
        )
        .unwrap();
        assert_eq!(Layout::parse_wire(&wide.to_wire()).unwrap(), wide);
    }

    #[test]
    fn wire_parser_refuses_everything_non_canonical_or_invalid() {
        let disks = "a,b,c,d,e,f";
        for bad in [
            String::new(),
            "7".into(),
            "7:4+2".into(),
            format!("07:4+2:{disks}"),
            format!("+7:4+2:{disks}"),
            format!("-7:4+2:{disks}"),
            format!(" 7:4+2:{disks}"),
            format!("7:4+2:{disks} "),
            format!("4294967296:4+2:{disks}"),
            format!("7:4-2:{disks}"),
            format!("7:4+02:{disks}"),
            format!("7:0+2:{disks}"),
            format!("7:4+0:{disks}"),
            format!("7:256+2:{disks}"),
            format!("7:200+56:{disks}"),
            "7:4+2:a,b,c,d,e".into(),         // fewer disks than shards
            "7:4+2:a,b,c,d,e,a".into(),       // duplicate
            "7:4+2:a,b,c,d,e,".into(),        // empty name
            "7:4+2:a,b,c,d,e,f:g".into(),     // ':' in a name
            "7:4+2:a,b,c,d,e,../x".into(),    // path-like name
            "7:4+2:a,b,c,d,e,f\u{e9}".into(), // non-ASCII
            format!("7:4+2:a,b,c,d,e,{}", "x".repeat(MAX_DISK_NAME_LEN + 1)),
            format!(
                "7:4+2:{}",
                (0..=MAX_LAYOUT_DISKS)
                    .map(|i| format!("d{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ] {
            assert!(
                matches!(Layout::parse_wire(&bad), Err(NodeError::Invalid(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn placement_uses_distinct_disks_of_the_layout() {
        let layout = six();
        for blob in 0..50u8 {
            let id = ChunkId {
                blob: [blob; 16],
                index: u32::from(blob) * 3,
            };
            let mut used: Vec<&str> = (0..6).map(|s| layout.disk_for_shard(id, s)).collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used.len(), 6);
        }
    }

    #[test]
    fn fuzz_body_survives_mutated_wire_forms() {
        let valid = six().to_wire().into_bytes();
        let mut state = 0x5eed_1a70_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5000 {
            let mut input = if round % 3 == 0 {
                (0..next() % 80).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            for _ in 0..(next() % 3) {
                if !input.is_empty() {
                    let at = (next() as usize) % input.len();
                    input[at] = b"0123456789:+,abc-_"[(next() % 18) as usize];
                }
            }
            fuzz_layout_wire(&input);
        }
        fuzz_layout_wire(&valid);
    }
}
