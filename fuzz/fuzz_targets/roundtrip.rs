//! Fuzz target: decode -> encode -> decode gives an equal message and identical bytes,
//! and the first encoding is the input in canonical form. The first input byte picks the
//! spec, so every shipped spec is reached.
#![no_main]

#[path = "../common/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        let name = checks::SPECS[usize::from(pick) % checks::SPECS.len()];
        checks::round_trip(name, rest);
    }
});
