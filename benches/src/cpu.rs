//! Server CPU time read from /proc, so a run can report CPU per operation of the server under
//! test (utime + stime of the whole process, dead threads included, over the measured phase).

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::Duration;

/// Linux reports utime/stime in USER_HZ ticks, which the kernel ABI fixes at 100 per second on
/// every architecture we run on (x86_64, aarch64), whatever CONFIG_HZ is.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) the process `pid` has used so far.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted after the last ')'.
pub fn parse_stat_ticks(text: &str) -> Result<u64> {
    let Some(end) = text.rfind(')') else {
        bail!("no ')' after the command name");
    };
    // After ')': field 3 (state) is the first; utime is field 14, stime field 15.
    let fields: Vec<&str> = text[end + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let value = fields
            .get(n - 3)
            .with_context(|| format!("field {n} missing"))?;
        value
            .parse::<u64>()
            .with_context(|| format!("field {n} is not a number: {value:?}"))
    };
    Ok(field(14)? + field(15)?)
}

/// The server's CPU over the measured phase, per operation and per MiB moved.
#[derive(Serialize, Debug, Clone)]
pub struct ServerCpu {
    pub pid: u32,
    pub cpu_s: f64,
    /// CPU seconds per wall second (2.0 = two cores busy).
    pub cores_busy: f64,
    pub cpu_us_per_op: f64,
    pub cpu_ms_per_mib: f64,
}

impl ServerCpu {
    pub fn new(pid: u32, cpu: Duration, seconds: f64, ops: u64, bytes: u64) -> Self {
        let cpu_s = cpu.as_secs_f64();
        let mib = bytes as f64 / (1024.0 * 1024.0);
        ServerCpu {
            pid,
            cpu_s,
            cores_busy: if seconds > 0.0 { cpu_s / seconds } else { 0.0 },
            cpu_us_per_op: if ops > 0 {
                cpu_s * 1e6 / ops as f64
            } else {
                0.0
            },
            cpu_ms_per_mib: if mib > 0.0 { cpu_s * 1e3 / mib } else { 0.0 },
        }
    }

    pub fn line(&self) -> String {
        format!(
            "server CPU (pid {}): {:.2} s, {:.2} cores busy, {:.0} us/op, {:.2} ms/MiB\n",
            self.pid, self.cpu_s, self.cores_busy, self.cpu_us_per_op, self.cpu_ms_per_mib
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a ')' inside must not shift the fields.
        let line = "4242 (strata (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ticks(line).unwrap(), 1234 + 567);
        assert!(parse_stat_ticks("4242 (short) S 1 2").is_err());
        assert!(parse_stat_ticks("no parenthesis").is_err());
    }

    #[test]
    fn own_process_cpu_is_readable_and_grows() {
        // Burn CPU until /proc shows at least 50 ms more (at most 10 s of wall time on a busy
        // machine): reading fields other than utime/stime would never get there.
        let before = process_cpu(std::process::id()).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut grown = Duration::ZERO;
        while grown < Duration::from_millis(50) && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
            grown = process_cpu(std::process::id())
                .unwrap()
                .saturating_sub(before);
        }
        assert!(
            grown >= Duration::from_millis(50),
            "CPU time grew by {grown:?} only"
        );
    }

    #[test]
    fn per_op_and_per_mib() {
        let cpu = ServerCpu::new(1, Duration::from_secs(2), 4.0, 1000, 2 * 1024 * 1024);
        assert_eq!(cpu.cores_busy, 0.5);
        assert_eq!(cpu.cpu_us_per_op, 2000.0);
        assert_eq!(cpu.cpu_ms_per_mib, 1000.0);
    }
}
