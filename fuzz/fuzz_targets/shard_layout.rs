//! Arbitrary bytes as an `x-strata-layout` header value (the node API's layout parser): must
//! never panic, and whatever parses must be valid and re-encode to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage_node::layout::fuzz_layout_wire(data);
});
