//! An independent reading of field 62 of a UnionPay-style sign-on reply, as a terminal does
//! it: the layout of each 60.3 code is a table of offsets written from the public description
//! (`../shared/CUP-POS.md`, "Working keys in field 62"), keys are decrypted under the terminal
//! master key and check values recomputed with the `des` crate directly, never with the
//! switch's own field 62 code or key type. Included by path by the suites that need it.

#![allow(dead_code)]

use des::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2};

/// One key in field 62: where it starts, how long it is, how many zero bytes follow it
/// before its 4-byte check value, and whether it is double-length (3DES check value).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub name: &'static str,
    pub at: usize,
    pub len: usize,
    pub zeros: usize,
    pub double: bool,
}

const fn slot(name: &'static str, at: usize, len: usize, zeros: usize, double: bool) -> Slot {
    Slot { name, at, len, zeros, double }
}

/// 60.3 code, field 62 length, keys in order.
pub const LAYOUTS: [(&str, usize, &[Slot]); 3] = [
    ("001", 24, &[slot("pin", 0, 8, 0, false), slot("mac", 12, 8, 0, false)]),
    ("003", 40, &[slot("pin", 0, 16, 0, true), slot("mac", 20, 8, 8, false)]),
    ("004", 60, &[slot("pin", 0, 16, 0, true), slot("mac", 20, 8, 8, false), slot("track", 40, 16, 0, true)]),
];

/// The table row of `code`.
pub fn layout(code: &str) -> (usize, &'static [Slot]) {
    let (_, len, slots) = LAYOUTS.iter().find(|(c, _, _)| *c == code).expect("a known 60.3 code");
    (*len, slots)
}

fn tdes(key: &[u8]) -> TdesEde2 {
    let k: [u8; 16] = key.try_into().unwrap();
    TdesEde2::new(&Array::from(k))
}

/// Check value: first 4 bytes of the clear key encrypting 8 zero bytes, single DES for a
/// single-length key, two-key 3DES for a double-length one.
pub fn kcv(key: &[u8]) -> [u8; 4] {
    let mut b = Array::from([0u8; 8]);
    match key.len() {
        8 => Des::new(&Array::from(<[u8; 8]>::try_from(key).unwrap())).encrypt_block(&mut b),
        16 => tdes(key).encrypt_block(&mut b),
        n => panic!("a {n}-byte key"),
    }
    [b[0], b[1], b[2], b[3]]
}

/// A key encrypted under `tmk` (16 bytes), ECB per 8-byte block.
pub fn under(tmk: &[u8], key: &[u8]) -> Vec<u8> {
    let c = tdes(tmk);
    key.chunks(8)
        .flat_map(|blk| {
            let mut b = Array::from(<[u8; 8]>::try_from(blk).unwrap());
            c.encrypt_block(&mut b);
            <[u8; 8]>::from(b)
        })
        .collect()
}

/// Reads `f62` as the terminal that sent `code` would, checking its length, the zero padding
/// and every check value; the clear keys by name. Panics (the test fails) on any mismatch.
pub fn read(code: &str, tmk: &[u8], f62: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let (len, slots) = layout(code);
    assert_eq!(f62.len(), len, "field 62 for {code} is {len} bytes");
    let c = tdes(tmk);
    let mut out = Vec::new();
    for s in slots {
        let mut clear = Vec::with_capacity(s.len);
        for blk in f62[s.at..s.at + s.len].chunks(8) {
            let mut b = Array::from(<[u8; 8]>::try_from(blk).unwrap());
            c.decrypt_block(&mut b);
            clear.extend_from_slice(&<[u8; 8]>::from(b));
        }
        let pad = &f62[s.at + s.len..s.at + s.len + s.zeros];
        assert!(pad.iter().all(|&b| b == 0), "{code} {}: {} zero bytes after the key", s.name, s.zeros);
        let at = s.at + s.len + s.zeros;
        assert_eq!(&f62[at..at + 4], &kcv(&clear), "{code} {}: check value", s.name);
        if s.double {
            assert_ne!(clear[..8], clear[8..], "{code} {}: a double-length key has two halves", s.name);
        }
        out.push((s.name, clear));
    }
    // The slots cover the field exactly.
    let end = slots.iter().map(|s| s.at + s.len + s.zeros + 4).max().unwrap();
    assert_eq!(end, len, "{code}: the table covers the field");
    out
}

/// The clear key called `name` in a [`read`] result.
pub fn key<'a>(keys: &'a [(&'static str, Vec<u8>)], name: &str) -> &'a [u8] {
    &keys.iter().find(|(n, _)| *n == name).expect("the key is in the layout").1
}

pub fn hex(b: &[u8]) -> String {
    hex::encode_upper(b)
}
