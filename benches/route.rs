//! One routing decision on a realistic estate: 10,000 terminals, 2,000 merchants across the
//! fee groups, 1,000 BIN routes (prefixes and 8-digit ranges), the default fee plan, and
//! risk rules with duplicate detection and frequency limits. The setup is generated here
//! and checked before timing: a known terminal and card route to the expected issuer.
//! Three lines: the pure rules on one message (all of it in cache), the pure rules over
//! 1,024 messages of different terminals and cards, and the full decision through `Router`
//! over the same messages with the risk counters updating (what one request pays).
//!
//! `cargo bench --bench route -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use isoswitch::iso::Message;
use isoswitch::iso::spec::shipped;
use isoswitch::route::rules::{RuleSet, RuleTexts};
use isoswitch::route::{Decision, Router};
use isoswitch::time::UnixMs;

const MCCS: [u16; 8] = [5812, 5944, 5411, 4900, 6513, 8062, 8211, 5999];

fn registry() -> String {
    let mut s = String::from("utc_offset = \"+08:00\"\n");
    for m in 0..2_000 {
        let mcc = MCCS[m % MCCS.len()];
        let vip = if m % 10 == 0 { "priority_group = \"vip\"\n" } else { "" };
        writeln!(s, "[[merchant]]\nid = \"8983401{m:08}\"\nname = \"Merchant {m}\"\nmcc = {mcc}\n{vip}")
            .unwrap();
    }
    for t in 0..10_000 {
        writeln!(s, "[[terminal]]\nid = \"{:08}\"\nmerchant = \"8983401{:08}\"\n", 10_000_000 + t, t % 2_000)
            .unwrap();
    }
    s
}

/// 600 six-digit prefixes and 400 eight-digit ranges, spread over ten issuers.
fn routes() -> String {
    let mut s = String::from("[default]\nissuer = \"issuer-0\"\ncard_type = \"debit\"\n\n");
    let types = ["debit", "credit", "qr"];
    for r in 0..600 {
        writeln!(
            s,
            "[[route]]\nprefix = \"{}\"\nissuer = \"issuer-{}\"\nbackup = \"issuer-{}\"\ncard_type = \"{}\"\n",
            620_000 + r * 7,
            r % 10,
            (r + 1) % 10,
            types[r % 3]
        )
        .unwrap();
    }
    for r in 0..400 {
        let low = 40_000_000 + r * 10_000;
        writeln!(
            s,
            "[[route]]\nlow = \"{low}\"\nhigh = \"{}\"\nissuer = \"issuer-{}\"\ncard_type = \"credit\"\n",
            low + 4_999,
            r % 10
        )
        .unwrap();
    }
    s
}

const RISK: &str = r#"
duplicate_window_s = 300
card_frequency = { count = 10, window_s = 60 }
terminal_frequency = { count = 600, window_s = 60 }

[[group]]
name = "default"
per_txn_max = 5000000
card_daily_max = 20000000
supplementary = { above = 1000000, fields = [61] }
"#;

/// A valid PAN on `prefix` (16 digits, Luhn check digit computed).
fn pan(prefix: u64, serial: u64) -> String {
    let body = format!("{prefix}{serial:0width$}", width = 15 - prefix.to_string().len());
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A purchase as a terminal sends it, decoded from its bytes (fields are frame slices).
fn purchase(terminal: u32, pan: &str, stan: u32) -> Message {
    let spec = shipped("iso87ascii").unwrap();
    let mut m = Message::new(spec.clone(), "0200").unwrap();
    m.set(2, pan).unwrap().set(3, "000000").unwrap().set_number(4, 12_345).unwrap();
    m.set(7, "1124100000").unwrap().set_number(11, u64::from(stan)).unwrap();
    m.set(12, "100000").unwrap().set(13, "1124").unwrap().set(22, "051").unwrap();
    m.set(25, "00").unwrap().set(41, &format!("{terminal:08}")).unwrap();
    m.set(42, &format!("8983401{:08}", (terminal - 10_000_000) % 2_000)).unwrap();
    m.set(49, "156").unwrap();
    Message::decode(&spec, m.to_bytes().unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let (reg, routes) = (registry(), routes());
    let rules = RuleSet::from_texts(&RuleTexts {
        registry: Some(("registry.toml", &reg)),
        routes: Some(("routes.toml", &routes)),
        risk: Some(("risk.toml", RISK)),
        ..RuleTexts::default()
    })
    .unwrap();
    let summary = rules.summary();
    assert_eq!((summary.terminals, summary.routes), (10_000, 1_000));
    // 2026-11-24 10:00 in China.
    let now = UnixMs(1_795_485_600_000);

    // Check the setup: route 300 is prefix 622100 -> issuer-0; range 40_000_000 + 17 * 10_000
    // -> issuer-7; terminal 10_004_321 belongs to merchant 321 (MCC 5812, standard, 60 bp).
    let cases = [
        (pan(622_100, 42), "issuer-0", 74),
        (pan(40_170_000, 42), "issuer-7", 74),
        (pan(999_999, 1), "issuer-0", 74),
    ];
    for (p, issuer, fee) in &cases {
        match rules.decide(&purchase(10_004_321, p, 1), now) {
            Decision::Forward(f) => assert_eq!((f.issuer, f.fee), (*issuer, *fee), "{p}"),
            other => panic!("setup: {other:?}"),
        }
    }

    let one = purchase(10_004_321, &pan(622_100, 42), 1);
    c.bench_function("route/decide (pure rules)", |b| {
        b.iter(|| black_box(rules.decide(black_box(&one), now)))
    });

    // Through the Router with the risk counters: 1,024 distinct cards, terminals and STANs,
    // the clock advancing 400 ms a decision so that no card or key repeats within its window
    // (a message repeats every 410 s; the duplicate window is 300 s, the card's 60 s).
    let msgs: Vec<Message> = (0..1_024u32)
        .map(|i| {
            let prefix = 620_000 + u64::from(i % 600) * 7;
            purchase(10_000_000 + (i * 7) % 10_000, &pan(prefix, u64::from(i)), i)
        })
        .collect();
    let check = Router::new(rules.clone());
    for (k, m) in msgs.iter().enumerate() {
        let d = check.decide(m, UnixMs(now.0 + k as u64 * 400));
        assert!(matches!(d, Decision::Forward(_)), "setup: message {k}: {d:?}");
    }
    // The same 1,024 messages without the counters: the difference to the line below is
    // what the counters cost, the difference to the line above what cold data costs.
    let tick = Cell::new(0u64);
    c.bench_function("route/decide (pure rules, 1,024 messages)", |b| {
        b.iter(|| {
            let k = tick.get();
            tick.set(k + 1);
            let m = &msgs[(k % 1_024) as usize];
            black_box(rules.decide(black_box(m), UnixMs(now.0 + k * 400)))
        })
    });

    let router = Router::new(rules);
    let tick = Cell::new(0u64);
    c.bench_function("route/router.decide (rules + risk counters)", |b| {
        b.iter(|| {
            let k = tick.get();
            tick.set(k + 1);
            let m = &msgs[(k % 1_024) as usize];
            black_box(router.decide(black_box(m), UnixMs(now.0 + k * 400)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
