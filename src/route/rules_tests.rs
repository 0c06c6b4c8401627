//! Table-driven tests of whole decisions on the example estate (`config/examples/rules`).

use std::path::PathBuf;

use super::*;
use crate::civil::Date;
use crate::iso::spec::shipped;
use crate::route::decision::FeeSplit;
use crate::route::routes::CardType;

pub(crate) fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules")
}

fn rules() -> RuleSet {
    RuleSet::load_dir(&example_dir()).unwrap()
}

/// 2026-11-24 10:00 in China (02:00 UTC): no peak window.
fn now() -> UnixMs {
    UnixMs::from_utc(Date::parse("2026-11-24").unwrap(), 2, 0)
}

const DEBIT: &str = "6222020200112230";
const CREDIT: &str = "6225880123456783";
const RANGE: &str = "6227000012345678";
const QR: &str = "6234560012345672";
const OTHER: &str = "5500000000000004";
const REST: (&str, &str) = ("10000001", "898340158120001");
const MARKET: (&str, &str) = ("10000002", "898340154110001");
const HOSPITAL: (&str, &str) = ("10000003", "898340180620001");
const JEWEL: (&str, &str) = ("10000004", "898340159440001");
const CORNER: (&str, &str) = ("10000006", "898340159990001");

fn msg(
    mti: &str,
    pc: &str,
    pan: Option<&str>,
    amount: Option<u64>,
    term: (&str, &str),
    extra: &[(usize, &str)],
) -> Message {
    let mut m = Message::new(shipped("iso87ascii").unwrap(), mti).unwrap();
    m.set(3, pc).unwrap();
    if let Some(p) = pan {
        m.set(2, p).unwrap();
    }
    if let Some(a) = amount {
        m.set_number(4, a).unwrap();
    }
    m.set(7, "1124100000").unwrap().set(11, "000123").unwrap();
    m.set(41, &format!("{:<8}", term.0)).unwrap().set(42, &format!("{:<15}", term.1)).unwrap();
    for (n, v) in extra {
        m.set(*n, v).unwrap();
    }
    m
}

fn purchase(pan: &str, amount: u64, term: (&str, &str)) -> Message {
    msg("0200", "000000", Some(pan), Some(amount), term, &[])
}

fn fwd(
    issuer: &'static str,
    backup: Option<&'static str>,
    class: Class,
    fee: i64,
    card: CardType,
    txn: TxnType,
) -> Decision {
    Decision::Forward(Forward {
        issuer,
        backup,
        class,
        fee,
        split: FeeSplit::default(),
        card_type: card,
        txn_type: txn,
        plan: None,
    })
}

/// Compare ignoring the split and plan (checked separately).
fn same(a: &Decision, b: &Decision) -> bool {
    match (a, b) {
        (Decision::Forward(x), Decision::Forward(y)) => {
            Forward { split: FeeSplit::default(), plan: None, ..x.clone() }
                == Forward { split: FeeSplit::default(), plan: None, ..y.clone() }
        }
        _ => a == b,
    }
}

fn decline(rc: &str, reason: Reason) -> Decision {
    Decision::Decline { rc: ResponseCode::parse(rc).unwrap(), reason, field44: None }
}

#[test]
fn every_rule_decides_as_documented() {
    use CardType::*;
    use Class::{Batch, Ordinary, Priority};
    use TxnType::*;
    let r = rules();
    let a = Some("issuer-b");
    let b = Some("issuer-a");
    let missing = |rc: &str, text: &str| Decision::Decline {
        rc: ResponseCode::parse(rc).unwrap(),
        reason: Reason::SupplementaryMissing,
        field44: Some(text.to_string()),
    };
    let cases: Vec<(&str, Message, Decision)> = vec![
        (
            "restaurant, debit",
            purchase(DEBIT, 100_000, REST),
            fwd("issuer-a", a, Ordinary, 600, Debit, Purchase),
        ),
        (
            "supermarket is a priority merchant",
            purchase(CREDIT, 100_000, MARKET),
            fwd("issuer-b", None, Priority, 380, Credit, Purchase),
        ),
        (
            "hospital is exempt",
            purchase(RANGE, 100_000, HOSPITAL),
            fwd("issuer-b", b, Ordinary, 0, Debit, Purchase),
        ),
        (
            "QR at a restaurant",
            purchase(QR, 100_000, REST),
            fwd("issuer-a", None, Ordinary, 380, Qr, Purchase),
        ),
        ("default route", purchase(OTHER, 100_000, REST), fwd("issuer-a", a, Ordinary, 600, Debit, Purchase)),
        (
            "merchant plan, debit 45 bp",
            purchase(DEBIT, 100_000, CORNER),
            fwd("issuer-a", a, Ordinary, 450, Debit, Purchase),
        ),
        (
            "merchant plan, debit cap",
            purchase(DEBIT, 1_000_000, CORNER),
            fwd("issuer-a", a, Ordinary, 2_000, Debit, Purchase),
        ),
        (
            "refund gives the fee back",
            msg("0200", "200000", Some(DEBIT), Some(100_000), REST, &[]),
            fwd("issuer-a", a, Ordinary, -600, Debit, Refund),
        ),
        (
            "void gives the fee back",
            msg("0200", "020000", Some(DEBIT), Some(100_000), REST, &[]),
            fwd("issuer-a", a, Ordinary, -600, Debit, Void),
        ),
        (
            "pre-auth has no fee",
            msg("0100", "030000", Some(DEBIT), Some(100_000), REST, &[]),
            fwd("issuer-a", a, Ordinary, 0, Debit, PreAuth),
        ),
        (
            "completion is charged",
            msg("0200", "000000", Some(DEBIT), Some(100_000), REST, &[(25, "06")]),
            fwd("issuer-a", a, Ordinary, 600, Debit, PreAuthCompletion),
        ),
        (
            "completion advice",
            msg("0220", "000000", Some(DEBIT), Some(100_000), REST, &[]),
            fwd("issuer-a", a, Class::Reversal, 600, Debit, PreAuthCompletion),
        ),
        (
            "balance inquiry",
            msg("0200", "310000", Some(CREDIT), None, REST, &[]),
            fwd("issuer-b", None, Ordinary, 0, Credit, BalanceInquiry),
        ),
        (
            "reversal",
            msg("0400", "000000", Some(DEBIT), Some(100_000), REST, &[]),
            fwd("issuer-a", a, Class::Reversal, 0, Debit, TxnType::Reversal),
        ),
        (
            "reversal without PAN takes the default",
            msg("0400", "000000", None, Some(100_000), REST, &[]),
            fwd("issuer-a", a, Class::Reversal, 0, Debit, TxnType::Reversal),
        ),
        (
            "batch upload",
            msg("0320", "000000", Some(CREDIT), Some(100_000), REST, &[]),
            fwd("issuer-b", None, Batch, 0, Credit, BatchUpload),
        ),
        (
            "track 2 only",
            msg(
                "0200",
                "000000",
                None,
                Some(100_000),
                REST,
                &[(35, "6225880123456783=30121010000000000000")],
            ),
            fwd("issuer-b", None, Ordinary, 600, Credit, Purchase),
        ),
        (
            "echo from anyone",
            msg("0800", "990000", None, None, ("99999999", "X"), &[(70, "301")]),
            Decision::Local { rc: ResponseCode::APPROVED, txn_type: Echo },
        ),
        (
            "sign-on",
            msg("0800", "990000", None, None, REST, &[(70, "001")]),
            Decision::Local { rc: ResponseCode::APPROVED, txn_type: SignOn },
        ),
        (
            "settlement",
            msg("0500", "920000", None, None, REST, &[]),
            Decision::Local { rc: ResponseCode::APPROVED, txn_type: BatchSettlement },
        ),
        (
            "unknown type",
            msg("0200", "990000", Some(DEBIT), Some(100), REST, &[]),
            decline("12", Reason::UnknownTxnType),
        ),
        (
            "unknown terminal",
            purchase(DEBIT, 100, ("99999999", "898340158120001")),
            decline("03", Reason::UnknownTerminal),
        ),
        (
            "sign-on from an unknown terminal",
            msg("0800", "990000", None, None, ("99999999", "X"), &[(70, "001")]),
            decline("03", Reason::UnknownTerminal),
        ),
        (
            "terminal of another merchant",
            purchase(DEBIT, 100, ("10000001", "898340154110001")),
            decline("03", Reason::UnknownMerchant),
        ),
        (
            "suspended terminal",
            purchase(DEBIT, 100, ("10000009", "898340158120001")),
            decline("58", Reason::TerminalSuspended),
        ),
        (
            "type not allowed",
            msg("0100", "030000", Some(DEBIT), Some(100), HOSPITAL, &[]),
            decline("58", Reason::TxnNotAllowed),
        ),
        ("Luhn", purchase("6222020200112231", 100, REST), decline("14", Reason::LuhnFailed)),
        ("no PAN", msg("0200", "000000", None, Some(100), REST, &[]), decline("14", Reason::MissingPan)),
        (
            "reversal from a suspended terminal",
            msg("0400", "000000", Some(DEBIT), Some(100), ("10000009", "898340158120001"), &[]),
            fwd("issuer-a", a, Class::Reversal, 0, Debit, TxnType::Reversal),
        ),
        (
            "reversal from an unknown terminal",
            msg("0400", "000000", Some(DEBIT), Some(100), ("99999999", "898340158120001"), &[]),
            decline("03", Reason::UnknownTerminal),
        ),
        (
            "no amount: field 4 is required of a purchase",
            msg("0200", "000000", Some(DEBIT), None, REST, &[]),
            decline("30", Reason::MissingField(4)),
        ),
        ("zero amount", purchase(DEBIT, 0, REST), decline("13", Reason::MissingAmount)),
        (
            "no field 7: a transaction without its transmission time has no identity",
            {
                let mut m = purchase(DEBIT, 100, REST);
                m.remove(7);
                m
            },
            decline("30", Reason::MissingField(7)),
        ),
        (
            "no STAN",
            {
                let mut m = purchase(DEBIT, 100, REST);
                m.remove(11);
                m
            },
            decline("30", Reason::MissingField(11)),
        ),
        (
            "a reversal without its terminal",
            {
                let mut m = msg("0400", "000000", Some(DEBIT), Some(100), REST, &[]);
                m.remove(41);
                m
            },
            decline("30", Reason::MissingField(41)),
        ),
        (
            "over the per-transaction limit",
            purchase(DEBIT, 5_000_001, REST),
            decline("61", Reason::AmountLimit),
        ),
        ("large, no supplementary data", purchase(DEBIT, 1_000_001, REST), missing("01", "MISSING FIELD 61")),
        (
            "large, blank supplementary data",
            msg("0200", "000000", Some(DEBIT), Some(1_000_001), REST, &[(61, "   ")]),
            missing("01", "MISSING FIELD 61"),
        ),
        (
            "large, with supplementary data",
            msg("0200", "000000", Some(DEBIT), Some(1_000_001), REST, &[(61, "ID110101199003074512")]),
            fwd("issuer-a", a, Ordinary, 6_000, Debit, Purchase),
        ),
        (
            "at the threshold",
            purchase(DEBIT, 1_000_000, REST),
            fwd("issuer-a", a, Ordinary, 6_000, Debit, Purchase),
        ),
        (
            "jewellery, one field of two",
            msg("0200", "000000", Some(CREDIT), Some(6_000_000), JEWEL, &[(61, "ID1")]),
            missing("01", "MISSING FIELD 48"),
        ),
        ("jewellery, none", purchase(CREDIT, 6_000_000, JEWEL), missing("01", "MISSING FIELDS 48,61")),
        (
            "jewellery, both",
            msg("0200", "000000", Some(CREDIT), Some(6_000_000), JEWEL, &[(48, "V"), (61, "ID1")]),
            fwd("issuer-b", None, Ordinary, 36_000, Credit, Purchase),
        ),
    ];
    for (name, m, want) in cases {
        let got = r.decide(&m, now());
        assert!(same(&got, &want), "{name}: got {got:?}, want {want:?}");
    }
}

#[test]
fn bcd_dialects_decide_the_same() {
    let r = rules();
    for spec in ["iso87bcd", "cup-pos", "iso87binbitmap"] {
        let spec = shipped(spec).unwrap();
        let mut m = Message::new(spec.clone(), "0200").unwrap();
        m.set(2, CREDIT).unwrap().set(3, "000000").unwrap().set_number(4, 100_000).unwrap();
        m.set(11, "000123").unwrap().set(41, REST.0).unwrap().set(42, REST.1).unwrap();
        // The field that dates the transaction: 7, or on UnionPay-style terminals 60.
        if spec.field(7).is_some() {
            m.set(7, "1124100000").unwrap();
        } else {
            m.set(60, "22000001000").unwrap();
        }
        let m = Message::decode(&spec, m.to_bytes().unwrap()).unwrap();
        let d = r.decide(&m, now());
        assert!(
            same(&d, &fwd("issuer-b", None, Class::Ordinary, 600, CardType::Credit, TxnType::Purchase)),
            "{}: {d:?}",
            spec.name
        );
    }
}

#[test]
fn forwards_carry_the_fee_split_and_plan() {
    let r = rules();
    let Decision::Forward(f) = r.decide(&purchase(DEBIT, 100_000, REST), now()) else { panic!() };
    assert_eq!(f.split, FeeSplit { issuer: 350, network: 65, acquirer: 185 });
    assert_eq!(f.plan, Some("default"));
    let Decision::Forward(f) = r.decide(&msg("0200", "200000", Some(DEBIT), Some(100_000), REST, &[]), now())
    else {
        panic!()
    };
    assert_eq!((f.fee, f.split), (-600, FeeSplit { issuer: -350, network: -65, acquirer: -185 }));
    // The decision serialises for the journal, without the PAN.
    let json = serde_json::to_string(&Decision::Forward(f)).unwrap();
    assert!(json.contains("\"decision\":\"forward\"") && json.contains("\"fee\":-600"), "{json}");
    assert!(!json.contains(DEBIT));
}

#[test]
fn a_merchant_rate_change_applies_from_its_date() {
    let r = rules();
    let at = |d: &str| UnixMs::from_utc(Date::parse(d).unwrap(), 2, 0);
    let fee = |d: &str| match r.decide(&purchase(DEBIT, 100_000, CORNER), at(d)) {
        Decision::Forward(f) => f.fee,
        other => panic!("{other:?}"),
    };
    assert_eq!(fee("2026-12-31"), 450);
    assert_eq!(fee("2027-01-01"), 500);
    // 2026-12-31 16:30 UTC is already 2027-01-01 in China.
    let m = purchase(DEBIT, 100_000, CORNER);
    let Decision::Forward(f) = r.decide(&m, UnixMs::from_utc(Date::parse("2026-12-31").unwrap(), 16, 30))
    else {
        panic!()
    };
    assert_eq!(f.fee, 500);
}

#[test]
fn the_embedded_default_accepts_every_terminal() {
    let r = RuleSet::open_default("issuer-0").unwrap();
    let d = r.decide(&purchase(DEBIT, 100_000, ("ANY00001", "ANYMERCHANT")), now());
    assert!(
        same(&d, &fwd("issuer-0", None, Class::Ordinary, 500, CardType::Debit, TxnType::Purchase)),
        "{d:?}"
    );
    assert_eq!(
        r.decide(&purchase("6222020200112231", 1, REST), now()).rc(),
        Some(ResponseCode::INVALID_CARD)
    );
}

#[test]
fn references_across_files_are_checked() {
    let reg = "[[merchant]]\nid = \"M1\"\nname = \"A\"\nmcc = 5411\n\n[[merchant]]\nid = \"M2\"\nname = \"B\"\nmcc = 5411\nplan = \"gold\"\n";
    let e = RuleSet::from_texts(&RuleTexts { registry: Some(("reg.toml", reg)), ..Default::default() })
        .unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line, e.key.as_deref()),
        ("reg.toml", Some(6), Some("merchant.plan")),
        "{e}"
    );
    let reg = "[[merchant]]\nid = \"M1\"\nname = \"A\"\nmcc = 5411\nrisk_group = \"x\"\n";
    let e = RuleSet::from_texts(&RuleTexts { registry: Some(("reg.toml", reg)), ..Default::default() })
        .unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("merchant.risk_group")), "{e}");
}

#[path = "rules_state_tests.rs"]
mod state;

#[test]
fn terminal_entries_carry_their_merchants_resolved_plan_and_risk_group() {
    let r = rules();
    for (tid, _) in [REST, MARKET, HOSPITAL, JEWEL, CORNER] {
        let e = r.registry.terminal_entry(tid.as_bytes()).unwrap();
        let m = r.registry.merchant(e.terminal.merchant).unwrap();
        let (hot, want) = (e.merchant, m.hot());
        assert_eq!(
            (hot.id, hot.plan_idx, hot.risk_idx, hot.mcc, hot.priority),
            (want.id, m.plan_idx as u32, m.risk_idx as u32, m.mcc, m.priority),
            "{tid}"
        );
    }
}
