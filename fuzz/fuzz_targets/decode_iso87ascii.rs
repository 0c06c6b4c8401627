//! Fuzz target: `Message::decode` against the `iso87ascii` spec never panics, and every
//! accessor of a decoded message works on whatever it accepted.
#![no_main]

#[path = "../common/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::decode_and_read("iso87ascii", data));
