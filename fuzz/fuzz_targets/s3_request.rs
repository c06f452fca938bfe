//! Arbitrary bytes as one S3 request through the real gateway service (SigV4 header/query parsing,
//! aws-chunked decoding with trailers, XML request bodies): must never panic. The input layout and
//! the modes (raw, signed XML body, signed aws-chunked upload) are documented in
//! `strata_fuzz_harness`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use strata_fuzz_harness::FuzzHarness;

/// One gateway (runtime, temp dir, RocksDB, chunk store, user, bucket) for the whole fuzz run.
static HARNESS: LazyLock<FuzzHarness> =
    LazyLock::new(|| FuzzHarness::new().expect("fuzz harness setup"));

fuzz_target!(|data: &[u8]| {
    HARNESS.run(data);
});
