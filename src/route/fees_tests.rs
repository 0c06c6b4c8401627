//! Table-driven tests of fee plans: rounding, cap and floor, precedence, effective dates,
//! components and load errors.

use super::*;

fn book(text: &str) -> FeeBook {
    FeeBook::load(&Source { file: "fees.toml", text }).unwrap()
}

fn day(s: &str) -> i64 {
    Date::parse(s).unwrap().to_days()
}

#[test]
fn rounding_is_half_up_then_floor_then_cap() {
    let r = Rate { ppm: 6_000, cap: Some(2_000), floor: Some(100) };
    let bare = Rate { ppm: 6_000, cap: None, floor: None };
    let cases = [
        // (rate, amount, fee)
        (bare, 100_000, 600),
        (bare, 83, 0),                         // 0.498 rounds down
        (bare, 84, 1),                         // 0.504 rounds up
        (Rate { ppm: 2_000, ..bare }, 250, 1), // exactly 0.5 rounds up
        (Rate { ppm: 2_000, ..bare }, 249, 0),
        (r, 10_000, 100),      // 60 raised to the floor
        (r, 16_583, 100),      // 99.498 -> 99 -> floor
        (r, 16_750, 101),      // 100.5 -> 101, above the floor
        (r, 333_333, 2_000),   // 1999.998 -> 2000, at the cap
        (r, 333_250, 2_000),   // 1999.5 -> 2000, rounding reaches the cap
        (r, 333_249, 1_999),   // 1999.494 -> 1999
        (r, 1_000_000, 2_000), // 6000 capped
        (r, 50, 50),           // the floor never exceeds the amount
        (r, 0, 0),
        (bare, u64::MAX, u64::MAX / 1_000_000 * 6_000 + 6_000 * (u64::MAX % 1_000_000) / 1_000_000 + 1),
    ];
    for (rate, amount, fee) in cases {
        assert_eq!(rate.fee(amount), fee, "{rate:?} on {amount}");
    }
}

#[test]
fn default_plan_follows_the_published_rates() {
    let b = FeeBook::load(&Source { file: "specs/fees-default.toml", text: DEFAULT_PLAN }).unwrap();
    let p = b.plan_index("default").unwrap();
    let d = day("2026-11-24");
    use CardType::*;
    // (mcc, card, amount, total, issuer, network)
    let cases = [
        (5812, Credit, 100_000, 600, 450, 65), // restaurant, standard 60 bp
        (5812, Debit, 100_000, 600, 350, 65),  // group rate wins over the debit rate
        (5812, Qr, 100_000, 380, 350, 65),     // QR at a standard merchant
        (5944, Credit, 1_000_000, 6_000, 4_500, 650), // jewellery; network capped 6.5 yuan
        (5411, Debit, 100_000, 380, 350, 65),  // supermarket, livelihood 38 bp
        (4900, Credit, 100_000, 380, 450, 65), // utilities
        (6513, Qr, 100_000, 380, 350, 65),     // property fees
        (4214, Debit, 100_000, 380, 350, 65),  // logistics
        (8062, Credit, 100_000, 0, 0, 0),      // public hospital, exempt
        (8211, Debit, 100_000, 0, 0, 0),       // school
        (8398, Qr, 100_000, 0, 0, 0),          // charity
        (5999, Debit, 100_000, 500, 350, 65),  // no group: by card type
        (5999, Credit, 100_000, 600, 450, 65),
        (5999, Qr, 100_000, 380, 350, 65),
        (5999, Debit, 1_000_000, 5_000, 1_300, 650), // issuer debit capped at 13 yuan
    ];
    for (mcc, card, amount, total, issuer, network) in cases {
        let (p, id) = b.price(p, d, mcc, card, amount).unwrap();
        assert_eq!((p.total, p.issuer, p.network), (total, issuer, network), "{mcc} {card:?} {amount}");
        assert_eq!(id, "default");
    }
    // The split adds up, and a refund gives everything back.
    let (priced, _) = b.price(p, d, 5812, Credit, 100_000).unwrap();
    let (fee, split) = priced.signed(1);
    assert_eq!((fee, split.acquirer), (600, 600 - 450 - 65));
    let (back, split) = priced.signed(-1);
    assert_eq!((back, split.issuer, split.network, split.acquirer), (-600, -450, -65, -85));
}

const DATED: &str = r#"
[[plan]]
id = "default"
effective_from = "2016-09-06"
rate = { bp = 60 }

[[plan]]
id = "default"
effective_from = "2026-12-01"
rate = { bp = 55 }

[[plan]]
id = "promo"
effective_from = "2026-11-01"
rate = { bp = 20, floor = 1 }
"#;

#[test]
fn a_rate_change_takes_effect_on_its_date() {
    let b = book(DATED);
    let def = b.plan_index("default").unwrap();
    let promo = b.plan_index("promo").unwrap();
    let cases = [
        (def, "2026-11-30", 600, "default"),
        (def, "2026-12-01", 550, "default"),
        (def, "2027-06-01", 550, "default"),
        (def, "2016-09-06", 600, "default"),
        (promo, "2026-11-01", 200, "promo"),
        // Before the merchant's own plan starts, the default plan prices it.
        (promo, "2026-10-31", 600, "default"),
    ];
    for (plan, date, fee, id) in cases {
        let (p, used) = b.price(plan, day(date), 5999, CardType::Debit, 100_000).unwrap();
        assert_eq!((p.total, used), (fee, id), "{date}");
    }
    assert!(b.price(def, day("2016-09-05"), 5999, CardType::Debit, 100).is_none());
}

#[test]
fn bad_plans_are_refused_with_line_and_key() {
    let head = "[[plan]]\nid = \"p\"\neffective_from = \"2026-01-01\"\n";
    let cases = [
        (format!("{head}rate = {{ bp = \"6.555\" }}\n"), 1, "plan.rate"),
        (format!("{head}rate = {{ bp = 60, cap = 10, floor = 20 }}\n"), 1, "plan.rate"),
        (format!("{head}cards = {{ debit = {{ bp = 50 }} }}\n"), 1, "plan.cards"),
        (
            "[[plan]]\nid = \"p\"\neffective_from = \"2026-02-30\"\nrate = { bp = 1 }\n".to_string(),
            1,
            "plan.effective_from",
        ),
        (
            format!(
                "{head}rate = {{ bp = 1 }}\n[[plan.group]]\nname = \"a\"\nmcc = [5411]\nrate = {{ bp = 2 }}\n[[plan.group]]\nname = \"b\"\nmcc = [5411]\nrate = {{ bp = 3 }}\n"
            ),
            1,
            "plan.group.b.mcc",
        ),
        (
            format!(
                "{head}rate = {{ bp = 1 }}\n\n[[plan]]\nid = \"p\"\neffective_from = \"2026-01-01\"\nrate = {{ bp = 2 }}\n"
            ),
            6,
            "plan.effective_from",
        ),
        (format!("{head}rate = {{ bp = 1, cpa = 3 }}\n"), 4, "rate"),
    ];
    for (text, line, key) in cases {
        let e = FeeBook::load(&Source { file: "fees.toml", text: &text }).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}\n{text}");
        assert_eq!(e.file, "fees.toml");
    }
}
