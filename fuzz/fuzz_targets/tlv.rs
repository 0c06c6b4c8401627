//! Fuzz target: `tlv::parse` never panics; what it parses are slices of the input, and
//! building the items back and parsing again gives the same items.
#![no_main]

#[path = "../common/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tlv(data));
