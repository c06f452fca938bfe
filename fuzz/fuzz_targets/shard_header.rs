//! Arbitrary bytes as a shard file: header parse + body verification must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage_node::format::fuzz_shard_header(data);
});
