//! The `multipart/form-data` body of a PostObject (untrusted), read as the edge reads it (fields
//! capped before the file, the file streamed): must never panic nor loop. Its stable counterpart
//! is `http::post_form::tests::fuzz_body_on_stable` in gateway/src/http/post_form.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_gateway::http::post_form::fuzz_form(data);
});
