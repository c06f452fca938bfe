//! Arbitrary shard sets through decode + verify + decrypt: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage_node::pipeline::fuzz_shard_decode(data);
});
