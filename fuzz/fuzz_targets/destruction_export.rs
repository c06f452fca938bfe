//! A destruction-log export as an auditor receives it (untrusted files): the offline verifier's
//! parsers must never panic, and no changed file may verify.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_destruction_log::fuzz_verify_export(data);
});
