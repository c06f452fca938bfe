//! A bucket policy document as PutBucketPolicy receives it (untrusted JSON): the parser must
//! never panic, and any policy it accepts must evaluate without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_engine::policy::fuzz_policy(data);
});
