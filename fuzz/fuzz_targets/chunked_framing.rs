//! The aws-chunked framing watcher (`strata_gateway::framing::Scan`) over arbitrary bytes split at
//! an arbitrary point: must never panic nor loop. Its stable counterpart is the
//! `random_bytes_never_panic` unit test in gateway/src/framing.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_gateway::framing::Scan;

fuzz_target!(|data: &[u8]| {
    let (cut, body) = match data.split_first() {
        Some((c, rest)) => (*c as usize % (rest.len() + 1), rest),
        None => return,
    };
    let _ = Scan::START.feed(&body[..cut]).feed(&body[cut..]);
});
