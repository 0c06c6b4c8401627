//! The stateful risk rules through `Router`, and reload.

use std::path::{Path, PathBuf};

use super::*;
use crate::route::Router;

fn router() -> Router {
    Router::new(rules())
}

fn secs(n: u64) -> UnixMs {
    UnixMs(now().0 + n * 1000)
}

fn with_stan(mut m: Message, stan: u32) -> Message {
    m.set_number(11, u64::from(stan)).unwrap();
    m
}

#[test]
fn duplicates_are_refused_within_the_window() {
    let r = router();
    let m = purchase(DEBIT, 100, REST);
    assert!(matches!(r.decide(&m, now()), Decision::Forward(_)));
    assert_eq!(r.decide(&m, secs(1)), decline("94", Reason::Duplicate));
    assert_eq!(r.decide(&m, secs(250)), decline("94", Reason::Duplicate));
    // Another STAN, or another terminal, is not a duplicate.
    assert!(matches!(r.decide(&with_stan(m.clone(), 124), secs(2)), Decision::Forward(_)));
    assert!(matches!(r.decide(&purchase(DEBIT, 100, MARKET), secs(3)), Decision::Forward(_)));
    // Past the 300 s window it is forgotten.
    assert!(matches!(r.decide(&m, secs(400)), Decision::Forward(_)));
    // Repeated reversals and advices are expected, never duplicates.
    let rev = msg("0400", "000000", Some(DEBIT), Some(100), REST, &[]);
    for k in 0..3 {
        assert!(matches!(r.decide(&rev, secs(k)), Decision::Forward(_)));
    }
}

#[test]
fn card_frequency_and_daily_amount_limits() {
    let r = router();
    // Ten per card per minute pass, the eleventh is refused.
    for stan in 0..10 {
        let d = r.decide(&with_stan(purchase(CREDIT, 100, REST), stan), secs(u64::from(stan)));
        assert!(matches!(d, Decision::Forward(_)), "{stan}: {d:?}");
    }
    assert_eq!(
        r.decide(&with_stan(purchase(CREDIT, 100, REST), 10), secs(10)),
        decline("65", Reason::CardFrequency)
    );
    // Another card is not affected; a minute later the card passes again.
    assert!(matches!(r.decide(&with_stan(purchase(DEBIT, 100, REST), 11), secs(11)), Decision::Forward(_)));
    assert!(matches!(r.decide(&with_stan(purchase(CREDIT, 100, REST), 12), secs(80)), Decision::Forward(_)));

    // 200,000 yuan per card per day: four of 50,000 pass, the fifth is refused.
    let big = |stan: u32| {
        with_stan(msg("0200", "000000", Some(RANGE), Some(5_000_000), REST, &[(61, "ID1")]), stan)
    };
    for k in 0..4 {
        assert!(matches!(r.decide(&big(100 + k), secs(u64::from(k) * 100)), Decision::Forward(_)), "{k}");
    }
    assert_eq!(r.decide(&big(200), secs(500)), decline("61", Reason::DailyAmountLimit));
    // A refund does not count; the next local day starts afresh (now is 10:00 in China).
    assert!(matches!(
        r.decide(&with_stan(msg("0200", "200000", Some(RANGE), Some(100), REST, &[]), 201), secs(600)),
        Decision::Forward(_)
    ));
    assert!(matches!(r.decide(&big(202), secs(14 * 3600 + 60)), Decision::Forward(_)));
}

#[test]
fn terminal_frequency_limit() {
    let mut rules = rules();
    rules.risk.terminal_frequency = Some(crate::route::risk::Frequency { count: 3, window_ms: 8_000 });
    rules.risk.card_frequency = None;
    let r = Router::new(rules);
    let cards = [DEBIT, CREDIT, RANGE, QR];
    for (k, pan) in cards.iter().enumerate().take(3) {
        assert!(matches!(
            r.decide(&with_stan(purchase(pan, 100, REST), k as u32), secs(k as u64)),
            Decision::Forward(_)
        ));
    }
    assert_eq!(
        r.decide(&with_stan(purchase(QR, 100, REST), 9), secs(3)),
        decline("65", Reason::TerminalFrequency)
    );
    assert!(matches!(r.decide(&with_stan(purchase(QR, 100, MARKET), 9), secs(3)), Decision::Forward(_)));
    assert!(matches!(r.decide(&with_stan(purchase(QR, 100, REST), 10), secs(20)), Decision::Forward(_)));
}

#[test]
fn blocked_terminals_and_merchants() {
    let mut rules = rules();
    rules.risk.blocked_terminals.insert("10000001".into());
    rules.risk.blocked_merchants.insert("898340154110001".into());
    let r = Router::new(rules);
    assert_eq!(r.decide(&purchase(DEBIT, 100, REST), now()), decline("58", Reason::TerminalBlocked));
    assert_eq!(r.decide(&purchase(DEBIT, 100, MARKET), now()), decline("58", Reason::MerchantBlocked));
    assert!(matches!(r.decide(&purchase(DEBIT, 100, HOSPITAL), now()), Decision::Forward(_)));
    let rev = msg("0400", "000000", Some(DEBIT), Some(100), REST, &[]);
    assert!(matches!(r.decide(&rev, now()), Decision::Forward(_)));
}

#[test]
fn peak_weights_follow_the_estate_clock() {
    let r = rules();
    // 2026-11-10 16:30 UTC is already Singles' Day in China.
    let at = |d: &str, h: u32, m: u32| UnixMs::from_utc(Date::parse(d).unwrap(), h, m);
    assert_eq!(r.weights_at(at("2026-11-10", 16, 30)), ([16, 8, 16, 2, 1], Some("singles-day")));
    assert_eq!(r.weights_at(at("2026-11-10", 15, 59)), ([16, 8, 6, 3, 1], None));
    // Month end, 09:00 to 22:00 China time.
    assert_eq!(r.weights_at(at("2026-11-30", 1, 0)), ([16, 8, 12, 3, 1], Some("month-end")));
    assert_eq!(r.weights_at(at("2026-11-30", 14, 0)), ([16, 8, 6, 3, 1], None));
    let s: crate::route::sched::Scheduler<u8> = r.scheduler(now());
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn counters_stay_bounded_and_fail_open() {
    let mut rules = rules();
    rules.risk.max_duplicates = 16; // one entry per shard
    rules.risk.card_frequency = None;
    let r = Router::new(rules);
    for stan in 0..200u32 {
        let d = r.decide(&with_stan(purchase(DEBIT, 100, REST), stan), secs(0));
        assert!(matches!(d, Decision::Forward(_)) || d == decline("61", Reason::DailyAmountLimit), "{d:?}");
    }
    assert!(r.risk().saturated() > 0);
    assert!(!format!("{:?}", r.risk()).contains(DEBIT));
}

#[test]
fn stale_cards_make_room_on_a_new_day() {
    let mut rules = rules();
    rules.risk.max_cards = 16; // one card per shard
    rules.risk.card_frequency = None;
    rules.risk.duplicate_window_ms = 0;
    let r = Router::new(rules);
    let big = |pan: &str| msg("0200", "000000", Some(pan), Some(5_000_000), REST, &[(61, "ID1")]);
    // Day one: 300 cards fill every shard; most go untracked.
    for k in 0..300 {
        assert!(matches!(r.decide(&big(&luhn_pan(k)), now()), Decision::Forward(_)));
    }
    assert!(r.risk().saturated() > 0);
    // Day two: yesterday's cards are swept, so a new card is tracked and its limit holds.
    let day2 = secs(86_400);
    for _ in 0..4 {
        assert!(matches!(r.decide(&big(DEBIT), day2), Decision::Forward(_)));
    }
    assert_eq!(r.decide(&big(DEBIT), day2), decline("61", Reason::DailyAmountLimit));
}

/// A valid 16-digit PAN in the 622202 range, never equal to `DEBIT`.
fn luhn_pan(k: u32) -> String {
    let body = format!("6222029{k:08}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 { [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][d as usize] } else { d }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn copy_examples(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isoswitch-rules-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(example_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let p = dir.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from));
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn reload_swaps_atomically_and_refuses_bad_files() {
    let dir = copy_examples("reload");
    let r = Router::new(RuleSet::load_dir(&dir).unwrap());
    let suspended = purchase(DEBIT, 100, ("10000009", "898340158120001"));
    assert_eq!(r.decide(&suspended, now()).rc(), Some(ResponseCode::NOT_PERMITTED));

    // A bad file: refused with file, line and key; the running rules stay.
    edit(&dir, "registry.toml", "status = \"suspended\"", "status = \"paused\"");
    let e = r.reload(&dir).unwrap_err();
    assert!(e.file.ends_with("registry.toml"), "{e}");
    assert_eq!((e.line.is_some(), e.key.as_deref()), (true, Some("status")), "{e}");
    let text = std::fs::read_to_string(dir.join("registry.toml")).unwrap();
    let line = text.lines().position(|l| l.contains("paused")).unwrap() + 1;
    assert_eq!(e.line, Some(line));
    assert_eq!(r.decide(&with_stan(suspended.clone(), 1), now()).rc(), Some(ResponseCode::NOT_PERMITTED));

    // A good file: swapped in.
    edit(&dir, "registry.toml", "status = \"paused\"", "status = \"active\"");
    let summary = r.reload(&dir).unwrap();
    assert_eq!((summary.terminals, summary.merchants, summary.routes), (7, 6, 5));
    assert!(matches!(r.decide(&with_stan(suspended, 2), now()), Decision::Forward(_)));

    // A bad fee file is refused too.
    edit(&dir, "fees.toml", "bp = 45", "bp = -45");
    let e = r.reload(&dir).unwrap_err();
    assert!(e.file.ends_with("fees.toml") && e.line.is_some(), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn router_is_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Router>();
    shared::<crate::route::RuleSet>();
    shared::<crate::route::Decision>();
}

mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(' '),
                Just('='),
                Just('D'),
                proptest::char::range('0', '9'),
                proptest::char::range('A', 'Z')
            ],
            0..=max,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Whatever a terminal puts in the fields the rules read, a decision comes back.
        #[test]
        fn any_message_gets_a_decision(
            mti in prop::sample::select(vec!["0100", "0200", "0220", "0320", "0400", "0421", "0500", "0800", "0600"]),
            pan in prop_oneof![Just(DEBIT.to_string()), Just(CREDIT.to_string()), "[0-9]{0,19}"],
            pc in "[0-9]{6}",
            amount in any::<u64>().prop_map(|a| a % 1_000_000_000_000),
            f25 in "[0-9]{2}",
            track in text(37),
            tid in prop_oneof![
                prop::sample::select(vec!["10000001", "10000002", "10000003", "10000004", "10000006", "10000009"]).prop_map(String::from),
                text(8),
            ],
            set42 in any::<bool>(),
            mid in text(15),
            f61 in text(20),
            f70 in "[0-9]{3}",
            offset in 0u64..100_000,
        ) {
            let r = router();
            let mut m = Message::new(shipped("iso87ascii").unwrap(), mti).unwrap();
            m.set(3, &pc).unwrap().set_number(4, amount).unwrap().set(25, &f25).unwrap();
            if !pan.is_empty() {
                m.set(2, &pan).unwrap();
            }
            let track = track.replace(' ', "0");
            if !track.is_empty() && track.chars().all(|c| c.is_ascii_digit() || c == '=' || c == 'D') {
                m.set(35, &track).unwrap();
            }
            m.set(41, &format!("{tid:<8}")).unwrap();
            if set42 {
                m.set(42, &format!("{mid:<15}")).unwrap();
            }
            if !f61.is_empty() {
                m.set(61, &f61).unwrap();
            }
            m.set(70, &f70).unwrap().set(7, "1124100000").unwrap().set(11, "000001").unwrap();
            let d = r.decide(&m, secs(offset));
            let json = serde_json::to_string(&d).unwrap();
            prop_assert!(pan.len() < 12 || !json.contains(&pan));
        }
    }
}
