//! One issuer's stand-in policy, and the rules of it that depend on the request alone:
//! when the policy applies, which transaction types, card types and merchant categories
//! it covers, the per-transaction amount cap, the never-list, and the PIN rule (the
//! switch cannot verify a PIN block, so a request carrying one is never stood in for).
//! The daily limits and the exposure cap need counters: see `limits` and the issuer's
//! advice book. Pure: no clock, no I/O.
//! May import: crate::config, crate::route.

use std::collections::HashSet;

use crate::config::StandInConfig;
use crate::route::routes::CardType;
use crate::route::txn::TxnType;

/// Why the switch would stand in now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every link of the issuer (and of the route's backup) is down.
    Down,
    /// The issuer did not answer by the deadline (the request was reversed first).
    Timeout,
    /// The operator said "stand in now" for this issuer.
    Forced,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Down => "down",
            Trigger::Timeout => "timeout",
            Trigger::Forced => "forced",
        }
    }
}

/// Why a request was not stood in for (stable names for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TxnType,
    PinBlock,
    CardType,
    Mcc,
    NoAmount,
    OverAmount,
    Never,
    NoCard,
    CardCount,
    CardAmount,
    MerchantAmount,
    Exposure,
    /// The switch could not make the approval durable (advice or journal).
    Unrecordable,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TxnType => "transaction type",
            Refusal::PinBlock => "PIN block the switch cannot verify",
            Refusal::CardType => "card type",
            Refusal::Mcc => "merchant category",
            Refusal::NoAmount => "no amount",
            Refusal::OverAmount => "over the per-transaction cap",
            Refusal::Never => "never-list",
            Refusal::NoCard => "no card number",
            Refusal::CardCount => "card's daily count",
            Refusal::CardAmount => "card's daily amount",
            Refusal::MerchantAmount => "merchant's daily amount",
            Refusal::Exposure => "issuer's exposure cap",
            Refusal::Unrecordable => "could not be recorded",
        }
    }
}

/// What the stand-in policy's request-only rules look at (the routing core's stateful rules
/// read `route::risk_state::Facts`).
#[derive(Debug, Clone, Copy)]
pub struct StandinFacts<'a> {
    pub txn: TxnType,
    pub card_type: CardType,
    /// Field 18.
    pub mcc: Option<&'a str>,
    /// Field 4, minor units.
    pub amount: Option<i64>,
    /// Field 52 present.
    pub pin_block: bool,
    pub pan: Option<&'a str>,
    /// The keyed PAN hash (journal `pan_hash`).
    pub pan_hash: Option<&'a str>,
}

/// An issuer's stand-in policy, with every default applied.
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub max_amount: i64,
    pub on_down: bool,
    pub on_timeout: bool,
    pub purchase: bool,
    pub preauth: bool,
    pub card_types: Vec<CardType>,
    pub mcc: Vec<String>,
    pub exclude_mcc: Vec<String>,
    pub card_daily_count: u32,
    pub card_daily_amount: i64,
    pub merchant_daily_amount: Option<i64>,
    pub max_exposure: i64,
    pub never: Vec<String>,
    pub never_hash: HashSet<String>,
    pub advice_mti: Option<String>,
}

fn amount(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Policy {
    /// The policy a checked `[[standin]]` table describes.
    pub fn from_config(c: &StandInConfig) -> Policy {
        let max_amount = amount(c.max_amount);
        let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
        Policy {
            issuer: c.issuer.clone(),
            max_amount,
            on_down: has(&c.when, "down"),
            on_timeout: has(&c.when, "timeout"),
            purchase: has(&c.types, "purchase"),
            preauth: has(&c.types, "preauth"),
            card_types: c
                .card_types
                .iter()
                .filter_map(|t| match t.as_str() {
                    "debit" => Some(CardType::Debit),
                    "credit" => Some(CardType::Credit),
                    "qr" => Some(CardType::Qr),
                    _ => None,
                })
                .collect(),
            mcc: c.mcc.clone(),
            exclude_mcc: c.exclude_mcc.clone(),
            card_daily_count: c.card_daily_count.unwrap_or(3),
            card_daily_amount: c.card_daily_amount.map_or(max_amount.saturating_mul(3), amount),
            merchant_daily_amount: c.merchant_daily_amount.map(amount),
            max_exposure: c.max_exposure.map_or(max_amount.saturating_mul(1000), amount),
            never: c.never.clone(),
            never_hash: c.never_hash.iter().map(|h| h.to_ascii_lowercase()).collect(),
            advice_mti: c.advice_mti.clone(),
        }
    }

    /// Whether the policy covers this trigger (the operator's is always covered).
    pub fn applies(&self, t: Trigger) -> bool {
        match t {
            Trigger::Down => self.on_down,
            Trigger::Timeout => self.on_timeout,
            Trigger::Forced => true,
        }
    }

    /// The request-only rules, in order; the amount (minor units) when they all pass.
    pub fn admits(&self, f: &StandinFacts<'_>) -> Result<i64, Refusal> {
        let type_ok = match f.txn {
            TxnType::Purchase => self.purchase,
            TxnType::PreAuth => self.preauth,
            _ => false,
        };
        if !type_ok {
            return Err(Refusal::TxnType);
        }
        if f.pin_block {
            return Err(Refusal::PinBlock);
        }
        if !self.card_types.is_empty() && !self.card_types.contains(&f.card_type) {
            return Err(Refusal::CardType);
        }
        let mcc = f.mcc.unwrap_or("");
        if (!self.mcc.is_empty() && !self.mcc.iter().any(|m| m == mcc))
            || self.exclude_mcc.iter().any(|m| m == mcc)
        {
            return Err(Refusal::Mcc);
        }
        let amount = f.amount.ok_or(Refusal::NoAmount)?;
        if amount <= 0 {
            return Err(Refusal::NoAmount);
        }
        if amount > self.max_amount {
            return Err(Refusal::OverAmount);
        }
        let (Some(pan), Some(hash)) = (f.pan, f.pan_hash) else { return Err(Refusal::NoCard) };
        if self.never.iter().any(|p| pan.starts_with(p.as_str())) || self.never_hash.contains(hash) {
            return Err(Refusal::Never);
        }
        Ok(amount)
    }

    /// The MTI of the advice reporting a stand-in approval of a request with `mti`.
    pub fn advice_mti(&self, mti: &str) -> &str {
        match &self.advice_mti {
            Some(m) => m,
            None if mti.starts_with("01") => "0120",
            None => "0220",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[[issuer]]\nname = \"b\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n\
             [[standin]]\nissuer = \"b\"\nmax_amount = 10000\n{extra}"
        );
        let cfg = crate::config::Config::parse("t.toml", &text).unwrap();
        Policy::from_config(&cfg.standin[0])
    }

    const PAN: &str = "6222020000000001";

    fn facts(txn: TxnType, amount: i64) -> StandinFacts<'static> {
        StandinFacts {
            txn,
            card_type: CardType::Debit,
            mcc: Some("5411"),
            amount: Some(amount),
            pin_block: false,
            pan: Some(PAN),
            pan_hash: Some("00112233445566778899aabbccddeeff"),
        }
    }

    #[test]
    fn the_two_required_keys_stand_in_for_purchases_when_down() {
        let p = policy("");
        assert!(p.applies(Trigger::Down) && !p.applies(Trigger::Timeout) && p.applies(Trigger::Forced));
        assert_eq!(p.admits(&facts(TxnType::Purchase, 5000)), Ok(5000));
        assert_eq!(p.admits(&facts(TxnType::PreAuth, 5000)), Err(Refusal::TxnType));
        assert_eq!((p.card_daily_count, p.card_daily_amount, p.max_exposure), (3, 30_000, 10_000_000));
        assert_eq!(p.merchant_daily_amount, None);
        assert_eq!((p.advice_mti("0200"), p.advice_mti("0100")), ("0220", "0120"));
    }

    #[test]
    fn each_request_rule_refuses_on_its_own() {
        let p = policy(
            "when = [\"down\", \"timeout\"]\ntypes = [\"purchase\", \"preauth\"]\ncard_types = [\"debit\"]\n\
             mcc = [\"5411\", \"5812\"]\nexclude_mcc = [\"5812\"]\nnever = [\"622203\", \"6222020000000009\"]\n\
             never_hash = [\"FFEEDDCCBBAA99887766554433221100\"]\nadvice_mti = \"0120\"\n",
        );
        let ok = facts(TxnType::PreAuth, 10_000);
        assert_eq!(p.admits(&ok), Ok(10_000), "at the cap is within it");
        assert!(p.applies(Trigger::Timeout));
        let cases: Vec<(StandinFacts<'static>, Refusal)> = vec![
            (facts(TxnType::Refund, 100), Refusal::TxnType),
            (facts(TxnType::BalanceInquiry, 100), Refusal::TxnType),
            (facts(TxnType::Void, 100), Refusal::TxnType),
            (StandinFacts { pin_block: true, ..ok }, Refusal::PinBlock),
            (StandinFacts { card_type: CardType::Credit, ..ok }, Refusal::CardType),
            (StandinFacts { mcc: Some("7995"), ..ok }, Refusal::Mcc),
            (StandinFacts { mcc: Some("5812"), ..ok }, Refusal::Mcc),
            (StandinFacts { mcc: None, ..ok }, Refusal::Mcc),
            (StandinFacts { amount: None, ..ok }, Refusal::NoAmount),
            (StandinFacts { amount: Some(0), ..ok }, Refusal::NoAmount),
            (StandinFacts { amount: Some(10_001), ..ok }, Refusal::OverAmount),
            (StandinFacts { pan: Some("6222030000000002"), ..ok }, Refusal::Never),
            (StandinFacts { pan: Some("6222020000000009"), ..ok }, Refusal::Never),
            (StandinFacts { pan_hash: Some("ffeeddccbbaa99887766554433221100"), ..ok }, Refusal::Never),
            (StandinFacts { pan: None, ..ok }, Refusal::NoCard),
        ];
        for (f, want) in cases {
            assert_eq!(p.admits(&f), Err(want), "{f:?}");
        }
        assert_eq!(p.advice_mti("0200"), "0120", "configured advice MTI wins");
    }

    #[test]
    fn bad_policies_are_refused_with_the_key_named() {
        let base = "[[issuer]]\nname = \"b\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n[[standin]]\n";
        for (extra, key) in [
            ("issuer = \"zz\"\nmax_amount = 1\n", "issuer"),
            ("issuer = \"b\"\nmax_amount = 0\n", "max_amount"),
            ("issuer = \"b\"\nmax_amount = 5\ntypes = [\"refund\"]\n", "types"),
            ("issuer = \"b\"\nmax_amount = 5\nwhen = [\"always\"]\n", "when"),
            ("issuer = \"b\"\nmax_amount = 5\ncard_types = [\"gold\"]\n", "card_types"),
            ("issuer = \"b\"\nmax_amount = 5\nmcc = [\"54\"]\n", "mcc"),
            ("issuer = \"b\"\nmax_amount = 5\nnever = [\"62x\"]\n", "never"),
            ("issuer = \"b\"\nmax_amount = 5\nnever_hash = [\"abc\"]\n", "never_hash"),
            ("issuer = \"b\"\nmax_amount = 5\nadvice_mti = \"0200\"\n", "advice_mti"),
            ("issuer = \"b\"\nmax_amount = 5\ncard_daily_count = 0\n", "issuer"),
            ("issuer = \"b\"\n", "missing field `max_amount`"),
        ] {
            let err =
                crate::config::Config::parse("s.toml", &format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.starts_with("s.toml:") && err.contains(key), "{extra}: {err}");
        }
        let twice =
            format!("{base}issuer = \"b\"\nmax_amount = 5\n[[standin]]\nissuer = \"b\"\nmax_amount = 6\n");
        let err = crate::config::Config::parse("s.toml", &twice).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let never = format!("{base}issuer = \"b\"\nmax_amount = 5\nnever = [\"6222020000000001x\"]\n");
        let err = crate::config::Config::parse("s.toml", &never).unwrap_err().to_string();
        assert!(!err.contains("6222020000000001"), "a card number is not repeated: {err}");
    }
}
