//! Property tests of the codec over every shipped spec.
//!
//! 1. Messages generated from the spec itself (each field a value of its class and a
//!    length the spec allows) encode, decode back to an equal message with the same field
//!    texts, and encode again to identical bytes.
//! 2. `Message::decode` on arbitrary bytes, and on valid messages with bytes flipped,
//!    inserted or cut, never panics; when it accepts the input, re-encoding gives back the
//!    input in canonical form: hex bitmaps in uppercase, and an all-zero secondary or
//!    tertiary bitmap dropped together with the bit that announced it. Nothing else may
//!    change: the MTI and every field byte come back exactly.
//! 3. A decoded message changed with `set` (fields replaced by values of the same length or
//!    not, fields added or removed) and then encoded, plain or with `encode_with`
//!    overrides, gives the bytes of the same message built field by field. A decoded
//!    message encodes its fields as a copy of its frame with the replaced values written
//!    over; this holds that copy to the field-by-field encoding.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use isoswitch::iso::Message;
use isoswitch::iso::spec::{BitmapEncoding, CharClass, Encoding, FieldSpec, Length, Spec, shipped};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const SPECS: [&str; 5] = ["iso87ascii", "iso87binbitmap", "iso87bcd", "iso93ascii", "cup-pos"];

/// A value as given to the builder.
#[derive(Debug, Clone)]
enum Val {
    /// Characters, through `set`.
    Text(String),
    /// A binary field as uppercase hex, through `set`.
    Hex(Vec<u8>),
    /// A binary field as raw bytes, through `set_bytes`.
    Raw(Vec<u8>),
}

const DIGITS: &[u8] = b"0123456789";
const PRINTABLE: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
/// Track characters: digits, separators and sentinels.
const TRACK: &[u8] = b"0123456789=D;?";
/// Packed BCD has a nibble for digits and the separator only.
const TRACK_BCD: &[u8] = b"0123456789=D";

fn spec(name: &str) -> Arc<Spec> {
    shipped(name).unwrap_or_else(|| panic!("shipped spec {name}"))
}

/// Mostly short values, sometimes anything up to the maximum.
fn length(lo: usize, hi: usize) -> BoxedStrategy<usize> {
    if lo == hi { Just(lo).boxed() } else { prop_oneof![4 => lo..=hi.min(lo + 24), 1 => lo..=hi].boxed() }
}

fn chars(alphabet: &'static [u8], len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(select(alphabet), len).prop_map(|v| String::from_utf8(v).unwrap())
}

/// A valid value for one field of a spec.
fn value(fs: &FieldSpec) -> BoxedStrategy<Val> {
    let max = fs.max as usize;
    let fixed = fs.length == Length::Fixed;
    match fs.class {
        CharClass::Binary => {
            // Hex-encoded binary fields count characters, two per byte.
            let max_bytes = if fs.encoding == Encoding::Hex { max / 2 } else { max };
            let len = if fixed { Just(max_bytes).boxed() } else { length(0, max_bytes) };
            len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
                .prop_flat_map(|b| prop_oneof![Just(Val::Hex(b.clone())), Just(Val::Raw(b))])
                .boxed()
        }
        CharClass::SignedAmount => {
            // The sign is one of the units, so a value has at least one.
            let len = if fixed { Just(max).boxed() } else { length(1, max) };
            len.prop_flat_map(|n| (select(&b"CD"[..]), chars(DIGITS, n - 1)))
                .prop_map(|(s, d)| Val::Text(format!("{}{d}", s as char)))
                .boxed()
        }
        class => {
            let alphabet = match class {
                CharClass::Numeric => DIGITS,
                CharClass::Track if fs.encoding == Encoding::Bcd => TRACK_BCD,
                CharClass::Track => TRACK,
                _ => PRINTABLE,
            };
            let len = if fixed { Just(max).boxed() } else { length(0, max) };
            len.prop_flat_map(move |n| chars(alphabet, n)).prop_map(Val::Text).boxed()
        }
    }
}

/// An MTI and a random subset of the spec's fields with valid values.
fn message(spec: &Spec) -> BoxedStrategy<(String, Vec<(usize, Val)>)> {
    let per_field: Vec<BoxedStrategy<(usize, Val)>> = spec
        .fields()
        .map(|fs| {
            let n = fs.number as usize;
            value(fs).prop_map(move |v| (n, v)).boxed()
        })
        .collect();
    let count = per_field.len();
    (chars(DIGITS, 4), subsequence(per_field, 0..=count))
        .prop_flat_map(|(mti, chosen)| (Just(mti), chosen))
        .boxed()
}

/// Changes to a decoded message: new values for any of the spec's fields (added, or
/// replacing), fields to remove, and new values for the overrides.
type Changes = (Vec<(usize, Val)>, Vec<usize>, Vec<(usize, Val)>);

/// An MTI, the fields of a message, and changes to it.
type Changed = (String, Vec<(usize, Val)>, Changes);

/// A message, changes to it, and overrides for its encoding. Replacements of fields the
/// message has are likelier than additions, so that the frame copy's patches are tested.
fn changed(spec: &Arc<Spec>) -> BoxedStrategy<Changed> {
    let s = spec.clone();
    message(spec)
        .prop_flat_map(move |(mti, fields)| {
            let again: Vec<BoxedStrategy<(usize, Val)>> = fields
                .iter()
                .map(|(n, _)| {
                    let n = *n;
                    value(s.field(n).unwrap()).prop_map(move |v| (n, v)).boxed()
                })
                .collect();
            let present: Vec<usize> = fields.iter().map(|(n, _)| *n).collect();
            let count = again.len();
            // Overrides: text fields of fixed length (what the switch overrides: STAN, RRN).
            let over: Vec<BoxedStrategy<(usize, Val)>> = fields
                .iter()
                .filter(|(n, _)| {
                    let fs = s.field(*n).unwrap();
                    fs.length == Length::Fixed && fs.class != CharClass::Binary
                })
                .map(|(n, _)| {
                    let n = *n;
                    value(s.field(n).unwrap()).prop_map(move |v| (n, v)).boxed()
                })
                .collect();
            let over_count = over.len();
            let extra = message(&s).prop_map(|(_, f)| f);
            (
                Just(mti),
                Just(fields),
                subsequence(again, 0..=count),
                prop_oneof![3 => Just(Vec::new()), 1 => extra],
                prop_oneof![3 => Just(Vec::new()), 1 => subsequence(present, 0..=count.min(2))],
                subsequence(over, 0..=over_count.min(3)),
            )
        })
        .prop_flat_map(|(mti, fields, again, extra, removed, over)| {
            (Just(mti), Just(fields), again, Just(extra), Just(removed), over)
        })
        .prop_map(|(mti, fields, again, extra, removed, over)| {
            let mut changes = again;
            changes.extend(extra.into_iter().take(3));
            (mti, fields, (changes, removed, over))
        })
        .boxed()
}

fn hex_upper(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn build(spec: &Arc<Spec>, mti: &str, fields: &[(usize, Val)]) -> Message {
    let mut m = Message::new(spec.clone(), mti).unwrap();
    for (n, v) in fields {
        let r = match v {
            Val::Text(s) => m.set(*n, s).map(|_| ()),
            Val::Hex(b) => m.set(*n, &hex_upper(b)).map(|_| ()),
            Val::Raw(b) => m.set_bytes(*n, b).map(|_| ()),
        };
        if let Err(e) = r {
            panic!("{}: the builder refused a valid value for field {n}: {e}", spec.name);
        }
    }
    m
}

/// The text form the codec shows for a value it was given.
fn expected_text(fs: &FieldSpec, v: &Val) -> String {
    match v {
        Val::Text(s) if fs.class == CharClass::Track && fs.encoding == Encoding::Bcd => s.replace('D', "="),
        Val::Text(s) => s.clone(),
        Val::Hex(b) | Val::Raw(b) => hex_upper(b),
    }
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&mut out).unwrap();
    out.to_vec()
}

/// Property 1 for one spec.
fn check_built(spec: &Arc<Spec>, mti: &str, fields: &[(usize, Val)]) -> Result<(), TestCaseError> {
    let built = build(spec, mti, fields);
    let wire = encode(&built);
    let decoded = Message::decode(spec, Bytes::from(wire.clone()))
        .map_err(|e| TestCaseError::fail(format!("{}: own encoding refused: {e}", spec.name)))?;
    prop_assert_eq!(&decoded, &built);
    prop_assert_eq!(decoded.mti(), mti);
    prop_assert_eq!(decoded.field_count(), fields.len());
    for (n, v) in fields {
        let fs = spec.field(*n).unwrap();
        let got = decoded.text(*n).map(|t| t.into_owned());
        prop_assert_eq!(got, Some(expected_text(fs, v)), "field {}", n);
    }
    prop_assert_eq!(encode(&decoded), wire);
    Ok(())
}

/// Property 3 for one spec.
fn check_changed(
    spec: &Arc<Spec>,
    mti: &str,
    fields: &[(usize, Val)],
    (changes, removed, over): &Changes,
) -> Result<(), TestCaseError> {
    let wire = encode(&build(spec, mti, fields));
    let mut decoded = Message::decode(spec, Bytes::from(wire)).unwrap();
    // The same message built field by field: the final value of every field.
    let mut finals: Vec<(usize, Val)> = fields.to_vec();
    for (n, v) in changes {
        let one = build(spec, "0000", std::slice::from_ref(&(*n, v.clone())));
        decoded.copy_from(&one, *n).unwrap();
        match finals.iter_mut().find(|(m, _)| m == n) {
            Some(slot) => slot.1 = v.clone(),
            None => finals.push((*n, v.clone())),
        }
    }
    for n in removed {
        decoded.remove(*n);
        finals.retain(|(m, _)| m != n);
    }
    finals.sort_by_key(|(n, _)| *n);
    let built = build(spec, mti, &finals);
    prop_assert_eq!(encode(&decoded), encode(&built));
    // Overrides only of fields still present, as text.
    let over: Vec<(usize, String)> = over
        .iter()
        .filter(|(n, _)| decoded.has(*n))
        .map(|(n, v)| match v {
            Val::Text(t) => (*n, t.clone()),
            Val::Hex(b) | Val::Raw(b) => (*n, hex_upper(b)),
        })
        .collect();
    let refs: Vec<(usize, &str)> = over.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut with = BytesMut::new();
    decoded.encode_with(&refs, &mut with).unwrap();
    let mut expected = built.clone();
    for (n, v) in &refs {
        expected.set(*n, v).unwrap();
    }
    prop_assert_eq!(with.to_vec(), encode(&expected));
    // encode_with leaves the message as it was.
    prop_assert_eq!(encode(&decoded), encode(&built));
    Ok(())
}

fn read_bitmap(spec: &Spec, b: &[u8]) -> u64 {
    match spec.bitmap {
        BitmapEncoding::Hex => u64::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap(),
        BitmapEncoding::Binary => u64::from_be_bytes(b.try_into().unwrap()),
    }
}

fn write_bitmap(spec: &Spec, v: u64, out: &mut Vec<u8>) {
    match spec.bitmap {
        BitmapEncoding::Hex => out.extend_from_slice(format!("{v:016X}").as_bytes()),
        BitmapEncoding::Binary => out.extend_from_slice(&v.to_be_bytes()),
    }
}

/// The canonical form of an input the decoder accepted, computed without the codec:
/// same MTI and field bytes; bitmaps uppercase; all-zero secondary/tertiary dropped.
fn canonical(spec: &Spec, input: &[u8]) -> Vec<u8> {
    let (ml, bl) = (spec.mti_len(), spec.bitmap_len());
    let mut pos = ml;
    let mut maps = [0u64; 3];
    maps[0] = read_bitmap(spec, &input[pos..pos + bl]);
    pos += bl;
    if maps[0] >> 63 == 1 {
        maps[1] = read_bitmap(spec, &input[pos..pos + bl]);
        pos += bl;
        if spec.tertiary && maps[1] >> 63 == 1 {
            maps[2] = read_bitmap(spec, &input[pos..pos + bl]);
            pos += bl;
        }
    }
    if spec.tertiary && maps[2] == 0 {
        maps[1] &= !(1 << 63);
    }
    if maps[1] == 0 {
        maps[0] &= !(1 << 63);
    }
    let mut out = input[..ml].to_vec();
    write_bitmap(spec, maps[0], &mut out);
    if maps[1] != 0 {
        write_bitmap(spec, maps[1], &mut out);
    }
    if maps[2] != 0 {
        write_bitmap(spec, maps[2], &mut out);
    }
    out.extend_from_slice(&input[pos..]);
    out
}

/// Property 2: decoding never panics (a panic fails the test case) and an accepted input
/// re-encodes to its canonical form, which decodes to the same message.
fn check_decode(spec: &Arc<Spec>, input: &[u8]) -> Result<bool, TestCaseError> {
    let Ok(m) = Message::decode(spec, Bytes::copy_from_slice(input)) else {
        return Ok(false);
    };
    let again = encode(&m);
    prop_assert_eq!(&again, &canonical(spec, input), "{}: re-encoding", &spec.name);
    let m2 = Message::decode(spec, Bytes::from(again.clone()))
        .map_err(|e| TestCaseError::fail(format!("{}: re-encoding refused: {e}", spec.name)))?;
    prop_assert_eq!(&m2, &m);
    prop_assert_eq!(encode(&m2), again);
    Ok(true)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    /// Replace a digit with another digit: mostly keeps the message valid, so that the
    /// accepted branch is exercised with changed content too.
    SetDigit(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0..10u8).prop_map(|(i, d)| Mutation::SetDigit(i, d)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = b.len();
        match *m {
            Mutation::Set(i, x) if len > 0 => b[i % len] = x,
            Mutation::SetDigit(i, d) if len > 0 && b[i % len].is_ascii_digit() => b[i % len] = b'0' + d,
            Mutation::Insert(i, x) => b.insert(i % (len + 1), x),
            Mutation::Remove(i) if len > 0 => {
                b.remove(i % len);
            }
            Mutation::Truncate(i) => b.truncate(i % (len + 1)),
            _ => {}
        }
    }
    b
}

macro_rules! per_spec {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        mod $test {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(192))]

                #[test]
                fn built_messages_round_trip((mti, fields) in message(&spec($name))) {
                    check_built(&spec($name), &mti, &fields)?;
                }

                #[test]
                fn changed_decoded_messages_encode_as_built((mti, fields, changes) in changed(&spec($name))) {
                    check_changed(&spec($name), &mti, &fields, &changes)?;
                }

                #[test]
                fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200)) {
                    check_decode(&spec($name), &input)?;
                }

                #[test]
                fn mutated_messages_never_panic(
                    (mti, fields) in message(&spec($name)),
                    muts in proptest::collection::vec(mutation(), 1..4),
                ) {
                    let s = spec($name);
                    let wire = encode(&build(&s, &mti, &fields));
                    check_decode(&s, &mutate(wire, &muts))?;
                }
            }
        }
    )*};
}

per_spec! {
    iso87ascii => "iso87ascii",
    iso87binbitmap => "iso87binbitmap",
    iso87bcd => "iso87bcd",
    iso93ascii => "iso93ascii",
    cup_pos => "cup-pos",
}

#[test]
fn every_shipped_spec_is_covered() {
    let shipped_names: Vec<&str> = isoswitch::iso::spec::SHIPPED.iter().map(|(n, _)| *n).collect();
    assert_eq!(shipped_names, SPECS);
}

/// The canonicalisation is real, not vacuous: lowercase bitmaps and all-zero secondary and
/// tertiary bitmaps are accepted and come back canonical.
#[test]
fn canonicalisation_cases() {
    for name in SPECS {
        let s = spec(name);
        let mut m = Message::new(s.clone(), "0200").unwrap();
        // Fields 13, 14 and 15 make the letter E in a hex bitmap.
        for n in [3, 11, 13, 14, 15] {
            m.set_number(n, 1).unwrap();
        }
        let wire = encode(&m);
        let (ml, bl) = (s.mti_len(), s.bitmap_len());
        let primary = read_bitmap(&s, &wire[ml..ml + bl]);

        // A zero secondary bitmap announced by bit 1.
        let mut padded = wire[..ml].to_vec();
        write_bitmap(&s, primary | 1 << 63, &mut padded);
        write_bitmap(&s, 0, &mut padded);
        padded.extend_from_slice(&wire[ml + bl..]);
        assert!(check_decode(&s, &padded).unwrap(), "{name}: zero secondary refused");
        assert_eq!(encode(&Message::decode(&s, Bytes::from(padded)).unwrap()), wire, "{name}");

        if s.tertiary {
            // A secondary that only announces an all-zero tertiary bitmap.
            let mut padded = wire[..ml].to_vec();
            write_bitmap(&s, primary | 1 << 63, &mut padded);
            write_bitmap(&s, 1 << 63, &mut padded);
            write_bitmap(&s, 0, &mut padded);
            padded.extend_from_slice(&wire[ml + bl..]);
            assert!(check_decode(&s, &padded).unwrap(), "{name}: zero tertiary refused");
            assert_eq!(encode(&Message::decode(&s, Bytes::from(padded)).unwrap()), wire, "{name}");
        }
        if s.bitmap == BitmapEncoding::Hex {
            let mut lower = wire.clone();
            lower[ml..ml + bl].make_ascii_lowercase();
            assert_ne!(lower, wire, "{name}: the bitmap has letters to lowercase");
            assert!(check_decode(&s, &lower).unwrap(), "{name}: lowercase bitmap refused");
        }
    }
}
