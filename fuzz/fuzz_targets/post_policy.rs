//! A PostObject policy document (untrusted: the `policy` field of an HTML form, base64 JSON):
//! parsing and checking it against a form must never panic. Its stable counterpart is
//! `post_policy::tests::fuzz_body_on_stable` in gateway/src/post_policy.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_gateway::post_policy::fuzz_policy(data);
});
