//! Checks shared by the fuzz targets and by `tests/regressions.rs`, which replays kept
//! crash inputs through exactly these functions. A failed check panics, which libFuzzer
//! reports as a crash and keeps the input.

use bytes::{Bytes, BytesMut};
use isoswitch::acceptor::read_request_fields;
use isoswitch::frame::{FrameCodec, LengthHeader};
use isoswitch::iso::spec::{BitmapEncoding, Spec, shipped};
use isoswitch::iso::{Message, json, tlv};
use isoswitch::rc::ResponseCode;
use isoswitch::route::RiskState;
use isoswitch::route::rules::{RuleSet, RuleTexts};
use isoswitch::route::txn::TxnTable;
use isoswitch::time::UnixMs;
use tokio_util::codec::{Decoder, Encoder};

#[path = "frame_config.rs"]
mod frame_config;

#[allow(dead_code)]
pub const SPECS: [&str; 5] = ["iso87ascii", "iso87binbitmap", "iso87bcd", "iso93ascii", "cup-pos"];

fn spec(name: &str) -> std::sync::Arc<Spec> {
    shipped(name).expect("shipped spec")
}

/// Decode; on success read every field through every accessor.
#[allow(dead_code)]
pub fn decode_and_read(name: &str, data: &[u8]) {
    let s = spec(name);
    let _ = Message::peek_mti(&s, data);
    let Ok(m) = Message::decode(&s, Bytes::copy_from_slice(data)) else { return };
    for n in m.fields() {
        let _ = (m.text(n), m.bytes(n), m.number(n), m.masked_text(n), m.units(n));
        assert!(m.raw(n).is_some());
        // The journal row's allocation-free reader says what `text` says.
        let mut pushed = String::new();
        assert!(m.push_text(n, &mut pushed));
        assert_eq!(Some(pushed.as_str()), m.text(n).as_deref(), "field {n}");
    }
    // Field 39 as the switch reads an issuer's answer.
    let _ = m.response_code().as_deref().and_then(ResponseCode::parse);
    let _ = m.raw(39).and_then(ResponseCode::from_bytes);
    let _ = (m.pan(), m.amount(), m.stan(), m.mcc(), m.terminal_id(), m.currency());
    let _ = format!("{m:?}");
    let _ = json::to_json(&m, true);
    // What the switch reads next from a request: its transaction type (60.1/60.3 rows for
    // cup-pos) and, for the UnionPay-style estate, the batch and original it names.
    static TXN: std::sync::OnceLock<TxnTable> = std::sync::OnceLock::new();
    let _ = TXN.get_or_init(|| TxnTable::default_table().expect("shipped table")).classify(&m);
    let _ = read_request_fields(&m);
    // And its routing decision, with the risk counters: the rules read fields 2, 4, 7, 11,
    // 41 and 42 with their own word-at-a-time readers (Luhn, card key, terminal and
    // merchant ids), which must hold on any length and any bytes.
    static RULES: std::sync::OnceLock<(RuleSet, RiskState)> = std::sync::OnceLock::new();
    let (rules, risk) = RULES.get_or_init(|| {
        let rules = RuleSet::from_texts(&RuleTexts {
            registry: Some(("registry.toml", ESTATE)),
            routes: Some(("routes.toml", ROUTES)),
            risk: Some(("risk.toml", RISK)),
            ..RuleTexts::default()
        })
        .expect("fuzz rule set");
        (rules, RiskState::new())
    });
    let _ = rules.decide_with(&m, UnixMs(1_795_485_600_000), risk);
}

/// A small estate for the routing check: terminals with 8-character and shorter ids,
/// a BIN prefix and a range, and every stateful risk rule on.
const ESTATE: &str = "[[merchant]]\nid = \"898340158120001\"\nname = \"M\"\nmcc = 5812\n\n\
    [[terminal]]\nid = \"10000001\"\nmerchant = \"898340158120001\"\n\n\
    [[terminal]]\nid = \"T1\"\nmerchant = \"898340158120001\"\n";
const ROUTES: &str = "[default]\nissuer = \"a\"\ncard_type = \"debit\"\n\n\
    [[route]]\nprefix = \"622202\"\nissuer = \"b\"\ncard_type = \"credit\"\n\n\
    [[route]]\nlow = \"47617390\"\nhigh = \"47617399\"\nissuer = \"b\"\ncard_type = \"credit\"\n";
const RISK: &str = "duplicate_window_s = 300\ncard_frequency = { count = 10, window_s = 60 }\n\
    terminal_frequency = { count = 600, window_s = 60 }\n\n\
    [[group]]\nname = \"default\"\nper_txn_max = 5000000\ncard_daily_max = 20000000\n\
    supplementary = { above = 1000000, fields = [61] }\n";

fn read_bitmap(s: &Spec, b: &[u8]) -> u64 {
    match s.bitmap {
        BitmapEncoding::Hex => {
            let text = std::str::from_utf8(b).expect("an accepted hex bitmap is ASCII");
            u64::from_str_radix(text, 16).expect("an accepted hex bitmap is hex")
        }
        BitmapEncoding::Binary => u64::from_be_bytes(b.try_into().expect("8 bytes")),
    }
}

fn write_bitmap(s: &Spec, v: u64, out: &mut Vec<u8>) {
    match s.bitmap {
        BitmapEncoding::Hex => out.extend_from_slice(format!("{v:016X}").as_bytes()),
        BitmapEncoding::Binary => out.extend_from_slice(&v.to_be_bytes()),
    }
}

/// The canonical form of an accepted input: the same MTI and field bytes, hex bitmaps
/// in uppercase, an all-zero secondary or tertiary bitmap dropped with its announcing bit.
fn canonical(s: &Spec, input: &[u8]) -> Vec<u8> {
    let (ml, bl) = (s.mti_len(), s.bitmap_len());
    let mut pos = ml;
    let mut maps = [0u64; 3];
    maps[0] = read_bitmap(s, &input[pos..pos + bl]);
    pos += bl;
    if maps[0] >> 63 == 1 {
        maps[1] = read_bitmap(s, &input[pos..pos + bl]);
        pos += bl;
        if s.tertiary && maps[1] >> 63 == 1 {
            maps[2] = read_bitmap(s, &input[pos..pos + bl]);
            pos += bl;
        }
    }
    if s.tertiary && maps[2] == 0 {
        maps[1] &= !(1 << 63);
    }
    if maps[1] == 0 {
        maps[0] &= !(1 << 63);
    }
    let mut out = input[..ml].to_vec();
    for (i, &m) in maps.iter().enumerate() {
        if i == 0 || m != 0 {
            write_bitmap(s, m, &mut out);
        }
    }
    out.extend_from_slice(&input[pos..]);
    out
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode(&mut out).expect("a decoded message encodes");
    out.to_vec()
}

/// decode -> encode -> decode: equal messages, identical bytes, canonical first encoding.
#[allow(dead_code)]
pub fn round_trip(name: &str, data: &[u8]) {
    let s = spec(name);
    let Ok(m) = Message::decode(&s, Bytes::copy_from_slice(data)) else { return };
    let first = encode(&m);
    assert_eq!(first, canonical(&s, data), "{name}: re-encoding is not the canonical input");
    let m2 = Message::decode(&s, Bytes::from(first.clone())).expect("own encoding decodes");
    assert_eq!(m2, m, "{name}: decode(encode(m)) != m");
    assert_eq!(encode(&m2), first, "{name}: second encoding differs");
    for n in m.fields() {
        assert_eq!(m.text(n), m2.text(n), "{name}: field {n}");
    }
}

/// `FrameCodec` with the configuration the first byte picks: never panics, consumes exactly
/// what the frames it hands out add up to, and re-encoding a frame gives its bytes back.
#[allow(dead_code)]
pub fn frame(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let cfg = frame_config::config(pick);
    let hl = match cfg.length {
        LengthHeader::Binary2 | LengthHeader::Bcd2 => 2,
        LengthHeader::Ascii4 => 4,
    };
    let mut codec = FrameCodec::new(cfg);
    let mut src = BytesMut::from(rest);
    let mut consumed = 0usize;
    // Each frame consumes at least the length header, so this ends; bounded all the same.
    for _ in 0..=rest.len() {
        let before = src.len();
        match codec.decode(&mut src) {
            Ok(Some(frame)) => {
                let used = before - src.len();
                let tpdu_len = if frame.tpdu.is_some() { 5 } else { 0 };
                assert_eq!(frame.tpdu.is_some(), cfg.tpdu);
                assert_eq!(frame.header.len(), cfg.header_len);
                assert_eq!(used, hl + tpdu_len + frame.header.len() + frame.body.len());
                assert!(used - hl <= cfg.max_frame);
                let mut again = BytesMut::new();
                codec.encode(frame, &mut again).expect("a decoded frame encodes");
                assert_eq!(&again[..], &rest[consumed..consumed + used]);
                consumed += used;
            }
            Ok(None) => {
                assert_eq!(src.len(), before, "a partial frame is left in place");
                break;
            }
            Err(_) => break,
        }
    }
}

/// `tlv::parse` never panics; its items are slices of the input, and building them back
/// and parsing again gives the same items and the same bytes.
#[allow(dead_code)]
pub fn tlv(data: &[u8]) {
    let Ok(items) = tlv::parse(data) else { return };
    let value_bytes: usize = items.iter().map(|t| t.value.len()).sum();
    assert!(value_bytes <= data.len());
    let range = data.as_ptr_range();
    for t in &items {
        let r = t.value.as_ptr_range();
        assert!(range.start <= r.start && r.end <= range.end, "a value outside the input");
        let _ = t.constructed();
    }
    let built = tlv::build(&items);
    let again = tlv::parse(&built).expect("built TLV parses");
    assert_eq!(again, items);
    assert_eq!(tlv::build(&again), built);
}
