//! Fuzz target: `FrameCodec` decoding arbitrary bytes with every `FrameConfig` variant
//! (picked by the first input byte) never panics, consumes exactly what the frames it hands
//! out add up to, and re-encoding each frame reproduces the bytes it came from.
#![no_main]

#[path = "../common/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frame(data));
