//! Risk rules as data (`risk.toml`): blocked terminals and merchants (58), per-transaction
//! and per-card-per-day amount limits by risk group (61), frequency limits per card and per
//! terminal in a sliding window (65), duplicate detection on terminal + STAN + transmission
//! time (94), and the supplementary-data rule: above a risk group's threshold a message must
//! carry the configured fields (present and not blank), else it is declined with the
//! configured code (default 01) and field 44 names what is missing. The pure checks live
//! here; the counters live in `risk_state`. A group named `default` always exists (no limits
//! unless the file says otherwise).
//! May import: crate::iso, crate::rc, crate::route::decision, crate::route::error.

use std::collections::HashSet;

use serde::Deserialize;

use super::decision::{Decision, Reason};
use super::error::{RuleError, Source};
use crate::iso::Message;
use crate::rc::ResponseCode;

/// A frequency limit: at most `count` requests in any `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frequency {
    pub count: u32,
    pub window_ms: u64,
}

/// Required supplementary data above a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supplementary {
    /// Amounts strictly above this (minor units) need the fields.
    pub above: u64,
    pub fields: Vec<u16>,
    pub rc: ResponseCode,
}

/// One risk group's limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RiskGroup {
    pub name: String,
    pub per_txn_max: Option<u64>,
    pub card_daily_max: Option<u64>,
    pub supplementary: Option<Supplementary>,
}

/// All risk rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskRules {
    pub groups: Vec<RiskGroup>,
    pub blocked_terminals: HashSet<String>,
    pub blocked_merchants: HashSet<String>,
    pub card_frequency: Option<Frequency>,
    pub terminal_frequency: Option<Frequency>,
    /// 0 turns duplicate detection off.
    pub duplicate_window_ms: u64,
    /// Bounds on the counters `RiskState` keeps (see there).
    pub max_cards: usize,
    pub max_terminals: usize,
    pub max_duplicates: usize,
}

impl Default for RiskRules {
    fn default() -> Self {
        RiskRules {
            groups: vec![RiskGroup { name: "default".into(), ..RiskGroup::default() }],
            blocked_terminals: HashSet::new(),
            blocked_merchants: HashSet::new(),
            card_frequency: None,
            terminal_frequency: None,
            duplicate_window_ms: 0,
            max_cards: 1 << 20,
            max_terminals: 1 << 17,
            max_duplicates: 1 << 20,
        }
    }
}

impl RiskRules {
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    /// Per-transaction limit and supplementary data for a financial message.
    pub fn check_amount(&self, group: usize, amount: u64, msg: &Message) -> Option<Decision> {
        let g = self.groups.get(group)?;
        if g.per_txn_max.is_some_and(|max| amount > max) {
            return Some(Decision::decline(ResponseCode::AMOUNT_LIMIT, Reason::AmountLimit));
        }
        let s = g.supplementary.as_ref()?;
        if amount <= s.above {
            return None;
        }
        let missing: Vec<u16> = s
            .fields
            .iter()
            .copied()
            .filter(|&n| !msg.raw(n as usize).is_some_and(|v| v.iter().any(|&b| b != b' ' && b != 0)))
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(Decision::Decline {
            rc: s.rc,
            reason: Reason::SupplementaryMissing,
            field44: Some(field44(&missing)),
        })
    }

    pub(crate) fn load(src: &Source<'_>) -> Result<RiskRules, RuleError> {
        let raw: RawRisk = src.parse()?;
        let d = RiskRules::default();
        let freq = |f: Option<RawFrequency>, key: &str| -> Result<Option<Frequency>, RuleError> {
            match f {
                None => Ok(None),
                Some(f) if f.count == 0 || f.window_s == 0 || f.window_s > 86_400 => {
                    Err(src.whole(key, "count must be at least 1 and window_s 1..=86400"))
                }
                Some(f) => Ok(Some(Frequency { count: f.count, window_ms: f.window_s * 1000 })),
            }
        };
        let mut groups: Vec<RiskGroup> = Vec::new();
        for spanned in raw.group {
            let at = spanned.span().start;
            let g = spanned.into_inner();
            if groups.iter().any(|x| x.name == g.name) {
                return Err(src.err(at, "group.name", format!("group `{}` is listed twice", g.name)));
            }
            let supplementary = match g.supplementary {
                None => None,
                Some(s) => {
                    if s.fields.is_empty() || s.fields.iter().any(|&n| !(2..=128).contains(&n)) {
                        return Err(src.err(at, "group.supplementary.fields", "list data fields 2..=128"));
                    }
                    let rc = match s.rc.as_deref() {
                        None => Some(ResponseCode::SUPPLEMENTARY_DEFAULT),
                        Some(rc) => ResponseCode::parse(rc).filter(|_| rc.len() == 2),
                    };
                    let rc =
                        rc.ok_or_else(|| src.err(at, "group.supplementary.rc", "two letters or digits"))?;
                    Some(Supplementary { above: s.above, fields: s.fields, rc })
                }
            };
            groups.push(RiskGroup {
                name: g.name,
                per_txn_max: g.per_txn_max,
                card_daily_max: g.card_daily_max,
                supplementary,
            });
        }
        if !groups.iter().any(|g| g.name == "default") {
            groups.push(RiskGroup { name: "default".into(), ..RiskGroup::default() });
        }
        let bound = |v: Option<usize>, dflt: usize, key: &str| -> Result<usize, RuleError> {
            match v {
                None => Ok(dflt),
                Some(n) if (16..=(1 << 26)).contains(&n) => Ok(n),
                Some(_) => Err(src.whole(key, "bounds are 16..=67108864 entries")),
            }
        };
        Ok(RiskRules {
            groups,
            blocked_terminals: raw.blocked_terminals.into_iter().collect(),
            blocked_merchants: raw.blocked_merchants.into_iter().collect(),
            card_frequency: freq(raw.card_frequency, "card_frequency")?,
            terminal_frequency: freq(raw.terminal_frequency, "terminal_frequency")?,
            duplicate_window_ms: raw.duplicate_window_s.unwrap_or(0).min(86_400) * 1000,
            max_cards: bound(raw.max_cards, d.max_cards, "max_cards")?,
            max_terminals: bound(raw.max_terminals, d.max_terminals, "max_terminals")?,
            max_duplicates: bound(raw.max_duplicates, d.max_duplicates, "max_duplicates")?,
        })
    }
}

/// Field 44 text, at most 25 characters (its size in the 1987 specs).
fn field44(missing: &[u16]) -> String {
    let list: Vec<String> = missing.iter().map(u16::to_string).collect();
    let mut s = if missing.len() == 1 {
        format!("MISSING FIELD {}", list.join(""))
    } else {
        format!("MISSING FIELDS {}", list.join(","))
    };
    s.truncate(25);
    s
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    #[serde(default)]
    blocked_terminals: Vec<String>,
    #[serde(default)]
    blocked_merchants: Vec<String>,
    #[serde(default)]
    card_frequency: Option<RawFrequency>,
    #[serde(default)]
    terminal_frequency: Option<RawFrequency>,
    #[serde(default)]
    duplicate_window_s: Option<u64>,
    #[serde(default)]
    max_cards: Option<usize>,
    #[serde(default)]
    max_terminals: Option<usize>,
    #[serde(default)]
    max_duplicates: Option<usize>,
    #[serde(default)]
    group: Vec<toml::Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrequency {
    count: u32,
    window_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    per_txn_max: Option<u64>,
    #[serde(default)]
    card_daily_max: Option<u64>,
    #[serde(default)]
    supplementary: Option<RawSupplementary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupplementary {
    above: u64,
    fields: Vec<u16>,
    #[serde(default)]
    rc: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field44_fits() {
        assert_eq!(field44(&[61]), "MISSING FIELD 61");
        assert_eq!(field44(&[48, 61]), "MISSING FIELDS 48,61");
        assert!(field44(&[48, 61, 62, 63, 100, 101]).len() <= 25);
    }

    #[test]
    fn bad_risk_files_are_refused_with_line_and_key() {
        let cases = [
            (
                "[[group]]\nname = \"g\"\nsupplementary = { above = 1, fields = [] }\n",
                Some(1),
                "group.supplementary.fields",
            ),
            (
                "[[group]]\nname = \"g\"\nsupplementary = { above = 1, fields = [61], rc = \"0\" }\n",
                Some(1),
                "group.supplementary.rc",
            ),
            ("[[group]]\nname = \"g\"\n[[group]]\nname = \"g\"\n", Some(3), "group.name"),
            ("card_frequency = { count = 0, window_s = 60 }\n", None, "card_frequency"),
            ("[[group]]\nname = \"g\"\nper_txn_max = -5\n", Some(3), "per_txn_max"),
        ];
        for (text, line, key) in cases {
            let e = RiskRules::load(&Source { file: "risk.toml", text }).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (line, Some(key)), "{e}");
        }
    }
}
