//! Fuzz target: `tlv::parse` never panics; what it parses covers the input (padding aside)
//! and building the items back and parsing again gives the same items.
#![no_main]

use isoswitch::iso::tlv;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(items) = tlv::parse(data) else { return };
    let value_bytes: usize = items.iter().map(|t| t.value.len()).sum();
    assert!(value_bytes <= data.len());
    for t in &items {
        // Each value is a slice of the input.
        let start = t.value.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + t.value.len() <= data.len());
        let _ = t.constructed();
    }
    let built = tlv::build(&items);
    let again = tlv::parse(&built).expect("built TLV parses");
    assert_eq!(again, items);
    assert_eq!(tlv::build(&again), built);
});
