//! Fee plans (merchant discount rate): data, not code. A plan maps MCC groups and card
//! types to a rate with an optional cap and floor, and carries the cost-side components
//! (issuer, network) so that settlement can report the split; the acquirer keeps the rest.
//!
//! - **Rates** are written in basis points: an integer (`bp = 60`) or a decimal string with
//!   at most two decimals (`bp = "6.5"` for 0.065%). Internally they are parts per million.
//! - **Rounding**: fee = amount x rate, rounded half-up on the fraction of a minor unit
//!   (0.5 fen and above rounds up), computed in 128-bit integers; then raised to the floor,
//!   lowered to the cap, and never more than the amount itself. No floats anywhere.
//! - **Precedence** for one merchant (its MCC) and one card type, most specific first:
//!   the group's rate for that card type (`[plan.group.cards]`), the group's rate
//!   (`rate`), the plan's rate for the card type (`[plan.cards]`, i.e. merchants in no
//!   group), the plan's rate (`rate`). A plan must price every card type. An `exempt`
//!   group (public welfare) pays nothing and its components are zero too.
//! - **Effective dates**: a plan id may appear several times with different
//!   `effective_from` dates (local business dates); the version in force on a day is the
//!   latest one that has started. A merchant whose plan has no version in force yet is
//!   priced by plan `default`, and if that is missing too, at zero.
//! - **Sign**: purchases and pre-auth completions are charged (positive); voids and refunds
//!   give the fee back (negative, computed by the same rule on the returned amount, so a
//!   full refund returns exactly the fee charged). Other types carry no fee.
//!
//! May import: crate::civil, crate::route::routes, crate::route::decision, crate::route::error,
//! crate::route::intern.

use std::collections::HashMap;

use serde::Deserialize;

use super::decision::FeeSplit;
use super::error::{RuleError, Source};
use super::intern::intern;
use super::routes::CardType;
use crate::civil::Date;

/// The shipped default plan.
pub const DEFAULT_PLAN: &str = include_str!("../../specs/fees-default.toml");

/// One rate: parts per million of the amount, with optional cap and floor (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub ppm: u32,
    pub cap: Option<u64>,
    pub floor: Option<u64>,
}

impl Rate {
    /// The fee on `amount` minor units under the module's rounding rule.
    pub fn fee(&self, amount: u64) -> u64 {
        // 64-bit when the product fits (every real amount), 128-bit otherwise.
        let mut fee = match amount.checked_mul(u64::from(self.ppm)).and_then(|x| x.checked_add(500_000)) {
            Some(x) => x / 1_000_000,
            None => {
                let exact = u128::from(amount) * u128::from(self.ppm);
                u64::try_from((exact + 500_000) / 1_000_000).unwrap_or(u64::MAX)
            }
        };
        if let Some(f) = self.floor {
            fee = fee.max(f);
        }
        if let Some(c) = self.cap {
            fee = fee.min(c);
        }
        fee.min(amount)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Components {
    issuer: Rate,
    network: Rate,
}

#[derive(Debug, Clone)]
struct Group {
    rate: Option<Rate>,
    cards: [Option<Rate>; 3],
    exempt: bool,
}

/// No fee group (never a group index: a plan has far fewer groups).
const NO_GROUP: u16 = u16::MAX;

/// One version of one plan.
#[derive(Debug, Clone)]
struct Version {
    from_day: i64,
    rate: Option<Rate>,
    cards: [Option<Rate>; 3],
    groups: Vec<Group>,
    /// Group index by MCC (`NO_GROUP` when the MCC is in none); empty when the plan has no
    /// groups. A direct table: one load per decision instead of a search.
    group_of: Box<[u16]>,
    components: [Components; 3],
}

/// All versions of one plan id, latest first.
#[derive(Debug, Clone)]
struct Series {
    id: &'static str,
    versions: Vec<Version>,
}

/// Every fee plan of a rule set.
#[derive(Debug, Clone, Default)]
pub struct FeeBook {
    series: Vec<Series>,
    by_id: HashMap<String, usize>,
}

/// A priced transaction (unsigned; the caller applies the sign of the transaction type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Priced {
    pub total: u64,
    pub issuer: u64,
    pub network: u64,
}

impl Priced {
    /// Signed amounts: `sign` is +1 (charged), -1 (given back) or 0.
    pub fn signed(&self, sign: i64) -> (i64, FeeSplit) {
        let t = i64::try_from(self.total).unwrap_or(i64::MAX) * sign;
        let i = i64::try_from(self.issuer).unwrap_or(i64::MAX) * sign;
        let n = i64::try_from(self.network).unwrap_or(i64::MAX) * sign;
        (t, FeeSplit { issuer: i, network: n, acquirer: t.saturating_sub(i).saturating_sub(n) })
    }
}

fn card_index(c: CardType) -> usize {
    match c {
        CardType::Debit => 0,
        CardType::Credit => 1,
        CardType::Qr => 2,
    }
}

impl FeeBook {
    /// The index of a plan id, for merchants to hold.
    pub fn plan_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Price `amount` for a merchant on plan `plan` (index), on local day `day`.
    pub fn price(
        &self,
        plan: usize,
        day: i64,
        mcc: u16,
        card: CardType,
        amount: u64,
    ) -> Option<(Priced, &'static str)> {
        fn in_force(s: &Series, day: i64) -> Option<&Version> {
            s.versions.iter().find(|v| v.from_day <= day)
        }
        let (series, version) = match self.series.get(plan).and_then(|s| in_force(s, day).map(|v| (s, v))) {
            Some(x) => x,
            None => {
                let s = self.series.get(self.plan_index("default")?)?;
                (s, in_force(s, day)?)
            }
        };
        let ci = card_index(card);
        let group = version.group_of.get(usize::from(mcc)).and_then(|&g| version.groups.get(usize::from(g)));
        if group.is_some_and(|g| g.exempt) {
            return Some((Priced::default(), series.id));
        }
        let rate = group
            .and_then(|g| g.cards.get(ci).copied().flatten().or(g.rate))
            .or_else(|| version.cards.get(ci).copied().flatten())
            .or(version.rate)
            .unwrap_or_default();
        let comp = version.components.get(ci).copied().unwrap_or_default();
        let priced = Priced {
            total: rate.fee(amount),
            issuer: comp.issuer.fee(amount),
            network: comp.network.fee(amount),
        };
        Some((priced, series.id))
    }

    pub(crate) fn load(src: &Source<'_>) -> Result<FeeBook, RuleError> {
        let mut book = FeeBook::default();
        book.extend(src)?;
        Ok(book)
    }

    /// Add the plans of another file.
    pub(crate) fn extend(&mut self, src: &Source<'_>) -> Result<(), RuleError> {
        let book = self;
        let raw: RawBook = src.parse()?;
        for spanned in raw.plan {
            let at = spanned.span().start;
            let p = spanned.into_inner();
            let version = compile(src, at, &p)?;
            let from = Date::parse(&p.effective_from)
                .ok_or_else(|| src.err(at, "plan.effective_from", "expected a date YYYY-MM-DD"))?;
            let version = Version { from_day: from.to_days(), ..version };
            if p.id.trim().is_empty() {
                return Err(src.err(at, "plan.id", "plan id must not be empty"));
            }
            let i = match book.by_id.get(&p.id) {
                Some(&i) => i,
                None => {
                    book.series.push(Series { id: intern(&p.id), versions: Vec::new() });
                    book.by_id.insert(p.id.clone(), book.series.len() - 1);
                    book.series.len() - 1
                }
            };
            let series = book.series.get_mut(i).ok_or_else(|| src.err(at, "plan.id", "internal index"))?;
            if series.versions.iter().any(|v| v.from_day == version.from_day) {
                return Err(src.err(
                    at,
                    "plan.effective_from",
                    format!("plan `{}` already has a version from this date", p.id),
                ));
            }
            series.versions.push(version);
            series.versions.sort_by_key(|v| std::cmp::Reverse(v.from_day));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook {
    #[serde(default)]
    plan: Vec<toml::Spanned<RawPlan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    effective_from: String,
    #[serde(default)]
    rate: Option<RawRate>,
    #[serde(default)]
    cards: RawCards,
    #[serde(default)]
    group: Vec<RawGroup>,
    #[serde(default)]
    components: RawComponentsByCard,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCards {
    debit: Option<RawRate>,
    credit: Option<RawRate>,
    qr: Option<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    mcc: Vec<u16>,
    #[serde(default)]
    rate: Option<RawRate>,
    #[serde(default)]
    cards: RawCards,
    #[serde(default)]
    exempt: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawComponentsByCard {
    debit: Option<RawComponents>,
    credit: Option<RawComponents>,
    qr: Option<RawComponents>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawComponents {
    issuer: Option<RawRate>,
    network: Option<RawRate>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRate {
    bp: RawBp,
    #[serde(default)]
    cap: Option<u64>,
    #[serde(default)]
    floor: Option<u64>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawBp {
    Int(u32),
    Text(String),
}

/// Basis points (integer, or decimal text with at most two decimals) to parts per million.
fn parse_bp(bp: &RawBp) -> Option<u32> {
    let ppm = match bp {
        RawBp::Int(n) => n.checked_mul(100)?,
        RawBp::Text(t) => {
            let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
            if whole.is_empty()
                || frac.len() > 2
                || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let w: u32 = whole.parse().ok()?;
            let f: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().ok()? };
            w.checked_mul(100)?.checked_add(f)?
        }
    };
    (ppm <= 1_000_000).then_some(ppm)
}

fn rate(src: &Source<'_>, at: usize, key: &str, r: &RawRate) -> Result<Rate, RuleError> {
    let ppm = parse_bp(&r.bp).ok_or_else(|| {
        src.err(at, key, "bp must be 0..=10000, an integer or a decimal with at most two decimals")
    })?;
    if let (Some(c), Some(f)) = (r.cap, r.floor)
        && f > c
    {
        return Err(src.err(at, key, "floor is above cap"));
    }
    Ok(Rate { ppm, cap: r.cap, floor: r.floor })
}

fn cards(src: &Source<'_>, at: usize, key: &str, c: &RawCards) -> Result<[Option<Rate>; 3], RuleError> {
    let one = |r: &Option<RawRate>, k: &str| -> Result<Option<Rate>, RuleError> {
        r.as_ref().map(|r| rate(src, at, &format!("{key}.{k}"), r)).transpose()
    };
    Ok([one(&c.debit, "debit")?, one(&c.credit, "credit")?, one(&c.qr, "qr")?])
}

fn compile(src: &Source<'_>, at: usize, b: &RawPlan) -> Result<Version, RuleError> {
    let plan_rate = b.rate.as_ref().map(|r| rate(src, at, "plan.rate", r)).transpose()?;
    let plan_cards = cards(src, at, "plan.cards", &b.cards)?;
    if plan_rate.is_none() && plan_cards.iter().any(Option::is_none) {
        return Err(src.err(
            at,
            "plan.cards",
            "a plan needs `rate` or a rate for each of debit, credit and qr",
        ));
    }
    let mut groups = Vec::with_capacity(b.group.len());
    let mut mcc: Vec<(u16, u16)> = Vec::new();
    for (gi, g) in b.group.iter().enumerate() {
        let key = format!("plan.group.{}", g.name);
        let gr = g.rate.as_ref().map(|r| rate(src, at, &format!("{key}.rate"), r)).transpose()?;
        let gc = cards(src, at, &format!("{key}.cards"), &g.cards)?;
        if gr.is_none() && gc.iter().all(Option::is_none) && !g.exempt {
            return Err(src.err(at, &key, "a group needs `rate`, `cards` or `exempt = true`"));
        }
        for &m in &g.mcc {
            if m > 9999 {
                return Err(src.err(at, &format!("{key}.mcc"), format!("{m} is not a 4-digit MCC")));
            }
            if mcc.iter().any(|&(x, _)| x == m) {
                return Err(src.err(at, &format!("{key}.mcc"), format!("MCC {m} is in two groups")));
            }
            mcc.push((m, gi as u16));
        }
        groups.push(Group { rate: gr, cards: gc, exempt: g.exempt });
    }
    let mut group_of = Vec::new();
    if !mcc.is_empty() {
        group_of = vec![NO_GROUP; 10_000];
        for &(m, g) in &mcc {
            if let Some(slot) = group_of.get_mut(usize::from(m)) {
                *slot = g;
            }
        }
    }
    let group_of = group_of.into_boxed_slice();
    let comp = |c: &Option<RawComponents>, k: &str| -> Result<Components, RuleError> {
        let Some(c) = c else { return Ok(Components::default()) };
        let r = |x: &Option<RawRate>, n: &str| {
            x.as_ref().map(|x| rate(src, at, &format!("plan.components.{k}.{n}"), x)).transpose()
        };
        Ok(Components {
            issuer: r(&c.issuer, "issuer")?.unwrap_or_default(),
            network: r(&c.network, "network")?.unwrap_or_default(),
        })
    };
    let components = [
        comp(&b.components.debit, "debit")?,
        comp(&b.components.credit, "credit")?,
        comp(&b.components.qr, "qr")?,
    ];
    Ok(Version { from_day: 0, rate: plan_rate, cards: plan_cards, groups, group_of, components })
}

#[cfg(test)]
#[path = "fees_tests.rs"]
mod tests;
