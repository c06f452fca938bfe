//! Parsing of the command-line value languages: sizes, size distributions and op mixes.

use anyhow::{Context, Result, bail};
use rand::{Rng, RngExt};
use std::fmt;
use std::str::FromStr;

/// Parses a byte size: `4096`, `4KiB`, `1MiB`, `2GiB` (binary), `4KB`, `1MB` (decimal),
/// and the short forms `4k`, `1m`, `1g` which are binary like most storage tools read them.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        bail!("size {text:?} has no number");
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => bail!("size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"),
    };
    let bytes = if number.contains('.') {
        let value: f64 = number.parse().with_context(|| format!("size {text:?}"))?;
        (value * multiplier as f64).round() as u64
    } else {
        let value: u64 = number.parse().with_context(|| format!("size {text:?}"))?;
        value
            .checked_mul(multiplier)
            .with_context(|| format!("size {text:?} overflows"))?
    };
    Ok(bytes)
}

/// Human form of a byte count, binary units, exact when possible (`4KiB`, `1.5MiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return format!("{}{name}", bytes / unit);
            }
            return format!("{:.1}{name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes}B")
}

/// How object sizes are drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum SizeDist {
    /// Every object has this size: `4KiB`.
    Fixed(u64),
    /// Uniform over an inclusive range: `1KiB..1MiB`.
    Uniform { low: u64, high: u64 },
    /// Log-uniform over an inclusive range, so small sizes are as common per decade as large
    /// ones, which is closer to real buckets: `log:1KiB..64MiB`.
    LogUniform { low: u64, high: u64 },
    /// Weighted choice among fixed sizes: `4KiB=80,1MiB=15,64MiB=5`.
    Weighted(Vec<(u64, u32)>),
}

impl FromStr for SizeDist {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.contains('=') {
            let mut choices = Vec::new();
            for part in text.split(',') {
                let (size, weight) = part
                    .split_once('=')
                    .with_context(|| format!("size choice {part:?} must be SIZE=WEIGHT"))?;
                let weight: u32 = weight
                    .trim()
                    .parse()
                    .with_context(|| format!("weight in {part:?}"))?;
                if weight > 0 {
                    choices.push((parse_size(size)?, weight));
                }
            }
            if choices.is_empty() {
                bail!("size distribution {text:?} has no choice with a weight above 0");
            }
            return Ok(SizeDist::Weighted(choices));
        }
        let (log, range) = match text.strip_prefix("log:") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if let Some((low, high)) = range.split_once("..") {
            let (low, high) = (parse_size(low)?, parse_size(high)?);
            if low > high {
                bail!("size range {text:?} is empty (low > high)");
            }
            if log {
                if low == 0 {
                    bail!("log size range {text:?} must start above 0");
                }
                return Ok(SizeDist::LogUniform { low, high });
            }
            return Ok(SizeDist::Uniform { low, high });
        }
        if log {
            bail!("log: needs a range, e.g. log:1KiB..64MiB");
        }
        Ok(SizeDist::Fixed(parse_size(text)?))
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(size) => write!(f, "{}", format_size(*size)),
            SizeDist::Uniform { low, high } => {
                write!(f, "{}..{}", format_size(*low), format_size(*high))
            }
            SizeDist::LogUniform { low, high } => {
                write!(f, "log:{}..{}", format_size(*low), format_size(*high))
            }
            SizeDist::Weighted(choices) => {
                let parts: Vec<String> = choices
                    .iter()
                    .map(|(size, weight)| format!("{}={weight}", format_size(*size)))
                    .collect();
                write!(f, "{}", parts.join(","))
            }
        }
    }
}

impl SizeDist {
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        match self {
            SizeDist::Fixed(size) => *size,
            SizeDist::Uniform { low, high } => rng.random_range(*low..=*high),
            SizeDist::LogUniform { low, high } => {
                let (ln_low, ln_high) = ((*low as f64).ln(), (*high as f64).ln());
                let drawn = (ln_low + rng.random::<f64>() * (ln_high - ln_low)).exp();
                (drawn.round() as u64).clamp(*low, *high)
            }
            SizeDist::Weighted(choices) => {
                let total: u64 = choices.iter().map(|(_, weight)| u64::from(*weight)).sum();
                let mut ticket = rng.random_range(0..total);
                for (size, weight) in choices {
                    if ticket < u64::from(*weight) {
                        return *size;
                    }
                    ticket -= u64::from(*weight);
                }
                unreachable!("ticket is below the total weight")
            }
        }
    }

    pub fn max(&self) -> u64 {
        match self {
            SizeDist::Fixed(size) => *size,
            SizeDist::Uniform { high, .. } | SizeDist::LogUniform { high, .. } => *high,
            SizeDist::Weighted(choices) => choices.iter().map(|(size, _)| *size).max().unwrap_or(0),
        }
    }
}

/// The S3 operations the generator drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Put,
    Get,
    List,
    Delete,
    Multipart,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Put,
        OpKind::Get,
        OpKind::List,
        OpKind::Delete,
        OpKind::Multipart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::List => "list",
            OpKind::Delete => "delete",
            OpKind::Multipart => "multipart",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl FromStr for OpKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        OpKind::ALL
            .into_iter()
            .find(|op| op.name() == text.trim().to_ascii_lowercase())
            .with_context(|| format!("unknown op {text:?} (put, get, list, delete, multipart)"))
    }
}

/// Relative weights of operations in a mixed run: `get=70,put=20,list=5,delete=5`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
    total: u32,
}

impl FromStr for Mix {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in text.split(',').filter(|part| !part.trim().is_empty()) {
            let (op, weight) = part
                .split_once('=')
                .with_context(|| format!("mix entry {part:?} must be OP=WEIGHT"))?;
            let op: OpKind = op.parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("weight in mix entry {part:?}"))?;
            if weights.iter().any(|(seen, _)| *seen == op) {
                bail!("mix names {} twice", op.name());
            }
            if weight > 0 {
                weights.push((op, weight));
            }
        }
        let total = weights
            .iter()
            .try_fold(0u32, |sum, (_, weight)| sum.checked_add(*weight))
            .context("mix weights overflow")?;
        if total == 0 {
            bail!("mix {text:?} has no op with a weight above 0");
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(op, weight)| format!("{}={weight}", op.name()))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

impl Mix {
    pub fn pick(&self, rng: &mut impl Rng) -> OpKind {
        let mut ticket = rng.random_range(0..self.total);
        for (op, weight) in &self.weights {
            if ticket < *weight {
                return *op;
            }
            ticket -= weight;
        }
        unreachable!("ticket is below the total weight")
    }

    /// Share of this op in the mix, 0.0..=1.0.
    pub fn share(&self, op: OpKind) -> f64 {
        let weight = self
            .weights
            .iter()
            .find(|(seen, _)| *seen == op)
            .map_or(0, |(_, weight)| *weight);
        f64::from(weight) / f64::from(self.total)
    }
}

/// Parses a duration: `30s`, `5m`, `1h`, `500ms`, or bare seconds `30`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("duration {text:?} has no number"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("duration {text:?}: unknown unit {other:?} (ms, s, m, h)"),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        bail!("duration {text:?} is out of range");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4KB").unwrap(), 4000);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size(" 0 ").unwrap(), 0);
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("99999999999999TiB").is_err());
    }

    #[test]
    fn sizes_format_back_to_readable_units() {
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(3 << 19), "1.5MiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn size_distributions_parse_and_sample_within_bounds() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        assert_eq!(
            "1MiB".parse::<SizeDist>().unwrap(),
            SizeDist::Fixed(1 << 20)
        );

        let uniform: SizeDist = "1KiB..4KiB".parse().unwrap();
        assert_eq!(
            uniform,
            SizeDist::Uniform {
                low: 1024,
                high: 4096
            }
        );
        let draws: Vec<u64> = (0..2000).map(|_| uniform.sample(&mut rng)).collect();
        assert!(draws.iter().all(|size| (1024..=4096).contains(size)));
        assert!(draws.iter().any(|size| *size < 1500) && draws.iter().any(|size| *size > 3500));

        let log: SizeDist = "log:1KiB..1GiB".parse().unwrap();
        let draws: Vec<u64> = (0..4000).map(|_| log.sample(&mut rng)).collect();
        assert!(draws.iter().all(|size| (1024..=1 << 30).contains(size)));
        // Log-uniform over 2^10..2^30: the median is 2^20, so about half the draws fall below 1 MiB.
        let below_one_mib = draws.iter().filter(|size| **size < 1 << 20).count();
        assert!((1600..2400).contains(&below_one_mib), "{below_one_mib}");

        let weighted: SizeDist = "4KiB=90,1MiB=10".parse().unwrap();
        let small = (0..10_000)
            .filter(|_| weighted.sample(&mut rng) == 4096)
            .count();
        assert!((8700..9300).contains(&small), "{small}");
        assert_eq!(weighted.max(), 1 << 20);
        assert_eq!(weighted.to_string(), "4KiB=90,1MiB=10");

        assert!("4KiB..1KiB".parse::<SizeDist>().is_err());
        assert!("log:0..1KiB".parse::<SizeDist>().is_err());
        assert!("4KiB=0".parse::<SizeDist>().is_err());
    }

    #[test]
    fn mixes_parse_and_pick_in_proportion() {
        let mix: Mix = "get=70,put=20,list=5,delete=5".parse().unwrap();
        assert_eq!(mix.to_string(), "get=70,put=20,list=5,delete=5");
        assert!((mix.share(OpKind::Get) - 0.7).abs() < 1e-9);
        assert_eq!(mix.share(OpKind::Multipart), 0.0);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut counts = [0usize; 5];
        for _ in 0..20_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert!(
            (13_600..14_400).contains(&counts[OpKind::Get.index()]),
            "{counts:?}"
        );
        assert!(
            (3_700..4_300).contains(&counts[OpKind::Put.index()]),
            "{counts:?}"
        );
        assert_eq!(counts[OpKind::Multipart.index()], 0);

        assert!("get=0".parse::<Mix>().is_err());
        assert!("get=1,get=2".parse::<Mix>().is_err());
        assert!("copy=5".parse::<Mix>().is_err());
        assert!("get".parse::<Mix>().is_err());
    }

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
