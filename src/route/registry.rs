//! The terminal and merchant registry: terminal id -> merchant, status and allowed
//! transaction types; merchant id -> name, MCC, fee plan, settlement cycle, priority group
//! and risk group. Loaded from `registry.toml`; references to fee plans and risk groups are
//! checked by the rule set once every file is loaded. An optional `[unknown]` merchant
//! template makes an open estate: terminals not listed are accepted as that merchant (the
//! embedded default configuration uses it). The terminal table is a hash table keyed by
//! the id packed into a `u64` and mixed by one multiplication: its keys are read-only after
//! load, so flooding it is not possible. Each entry is one aligned cache line that also
//! carries what a decision reads of the terminal's merchant ([`Hot`], copied in once the
//! rule set has resolved plans and risk groups), so that a decision touches one line of
//! the registry, not the entry and then the merchant's record.
//! May import: crate::route::error, crate::route::open_table, crate::route::txn.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::error::{RuleError, Source};
use super::open_table::{Keyed, OpenTable};
use super::txn::TxnType;

/// A fast hasher for read-only keys: FNV-1a over bytes, one multiply-and-fold for a `u64`.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
    fn write_u64(&mut self, n: u64) {
        let m = u128::from(n ^ self.0) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// When a merchant is paid: the same day, at the settlement cut-offs (T+0), or the next
/// day (T+1). Written `T+0` / `T+1` in the registry, `T0` / `T1` in the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum SettleCycle {
    #[serde(rename = "T+0")]
    T0,
    #[serde(rename = "T+1")]
    #[default]
    T1,
}

impl SettleCycle {
    /// The journal's text (`settle_cycle` column, settlement CSV and JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            SettleCycle::T0 => "T0",
            SettleCycle::T1 => "T1",
        }
    }

    /// The journal's text read back: `T0`, or `T1` for anything else (the column's default).
    pub fn parse(s: &str) -> SettleCycle {
        if s == "T0" { SettleCycle::T0 } else { SettleCycle::T1 }
    }
}

impl Serialize for SettleCycle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether a terminal may transact.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminalStatus {
    #[default]
    Active,
    Suspended,
}

/// One merchant, with its references resolved by the rule set. The fields every decision
/// reads come first (`repr(C)` keeps them together, on one cache line).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Merchant {
    pub id: Arc<str>,
    /// The id's bytes held inline (ids have at most 15), compared with field 42 without
    /// following `id`'s pointer.
    pub(crate) id_inline: InlineId,
    pub mcc: u16,
    pub(crate) priority: bool,
    /// Resolved at rule-set load.
    pub(crate) plan_idx: usize,
    pub(crate) risk_idx: usize,
    pub name: String,
    pub plan: String,
    pub settlement: SettleCycle,
    pub priority_group: Option<String>,
    pub risk_group: String,
    /// Line in the registry file, for errors found across files.
    pub(crate) line: usize,
}

/// Up to 15 bytes, zero-padded, and their count in the last byte: two ids compare as one
/// 128-bit number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InlineId(u128);

impl InlineId {
    /// `None` for more than 15 bytes. Read as two overlapping words, without a copy
    /// through memory (which would make the 128-bit load wait on the bytes just stored).
    pub(crate) fn of(id: &[u8]) -> Option<InlineId> {
        let n = id.len();
        if n > 15 {
            return None;
        }
        let word =
            |s: Option<&[u8]>| s.and_then(|s| <[u8; 8]>::try_from(s).ok()).map_or(0, u64::from_le_bytes);
        let (lo, hi) = if n >= 8 {
            // The last eight bytes, less those already in `lo`.
            let tail = word(id.get(n - 8..));
            (word(id.get(..8)), tail.checked_shr(8 * (16 - n) as u32).unwrap_or(0))
        } else {
            (id.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b)), 0)
        };
        Some(InlineId(u128::from(lo) | (u128::from(hi | (n as u64) << 56) << 64)))
    }

    fn new(id: &str) -> InlineId {
        let b = id.as_bytes();
        InlineId::of(b.get(..15).unwrap_or(b)).unwrap_or_default()
    }
}

/// What a decision reads of a merchant, copied next to each of its terminals.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hot {
    pub(crate) id: InlineId,
    pub(crate) plan_idx: u32,
    pub(crate) risk_idx: u32,
    pub(crate) mcc: u16,
    pub(crate) priority: bool,
}

impl Merchant {
    pub(crate) fn hot(&self) -> Hot {
        Hot {
            id: self.id_inline,
            plan_idx: u32::try_from(self.plan_idx).unwrap_or(u32::MAX),
            risk_idx: u32::try_from(self.risk_idx).unwrap_or(u32::MAX),
            mcc: self.mcc,
            priority: self.priority,
        }
    }
}

/// One slot of the terminal table: the packed id, the terminal and its merchant's `Hot`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Entry {
    key: u64,
    pub(crate) terminal: Terminal,
    pub(crate) merchant: Hot,
}

/// One terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    pub merchant: u32,
    pub status: TerminalStatus,
    /// Bit set of `TxnType::bit`.
    pub allowed: u16,
}

/// The registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub merchants: Vec<Merchant>,
    /// Keyed by the id space-padded to 8 bytes as a `u64`: no pointer to chase, and a
    /// lookup usually reads the entry's one cache line only (`open_table`).
    terminals: OpenTable<Entry>,
    merchant_ids: FnvMap<Arc<str>, u32>,
    /// The merchant that unknown terminals are served as, when the estate is open.
    pub unknown: Option<Merchant>,
    /// Local time offset of the estate, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    utc_offset: Option<String>,
    #[serde(default)]
    unknown: Option<toml::Spanned<RawMerchant>>,
    #[serde(default)]
    merchant: Vec<toml::Spanned<RawMerchant>>,
    #[serde(default)]
    terminal: Vec<toml::Spanned<RawTerminal>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMerchant {
    #[serde(default)]
    id: String,
    name: String,
    mcc: u16,
    #[serde(default = "default_plan")]
    plan: String,
    #[serde(default = "default_settlement")]
    settlement: SettleCycle,
    #[serde(default)]
    priority_group: Option<String>,
    #[serde(default = "default_plan")]
    risk_group: String,
}

fn default_plan() -> String {
    "default".to_string()
}

fn default_settlement() -> SettleCycle {
    SettleCycle::T1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerminal {
    id: String,
    merchant: String,
    #[serde(default = "active")]
    status: TerminalStatus,
    #[serde(default)]
    types: Option<Vec<TxnType>>,
}

fn active() -> TerminalStatus {
    TerminalStatus::Active
}

impl Keyed for Entry {
    fn key(&self) -> u64 {
        self.key
    }
    fn keyed(key: u64) -> Self {
        Entry { key, ..Entry::default() }
    }
    fn home(key: u64) -> u64 {
        slot_hash(key)
    }
}

/// The table hash of a packed terminal id: one multiply-and-fold (its low bits pick the
/// home slot). Terminal ids come from the operator's registry, so the hash need not be keyed:
/// an id from the wire can only land on the clusters the registry made.
#[inline]
fn slot_hash(key: u64) -> u64 {
    let m = u128::from(key) * 0x9e37_79b9_7f4a_7c15;
    (m as u64) ^ ((m >> 64) as u64)
}

/// A terminal id (1 to 8 characters) space-padded to 8 bytes, as field 41 carries it, read
/// as one number.
pub(crate) fn terminal_key(id: &[u8]) -> Option<u64> {
    // The usual id fills all 8 bytes: one load, no copy of a variable length.
    if let Ok(k) = <[u8; 8]>::try_from(id) {
        return Some(u64::from_le_bytes(k));
    }
    let mut k = [b' '; 8];
    k.get_mut(..id.len())?.copy_from_slice(id);
    Some(u64::from_le_bytes(k))
}

/// `+08:00`, `-05:30`, `Z`.
fn parse_offset(s: &str) -> Option<i32> {
    if s == "Z" {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s.get(1..)?.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

fn merchant(src: &Source<'_>, at: usize, m: RawMerchant, need_id: bool) -> Result<Merchant, RuleError> {
    if need_id && (m.id.is_empty() || m.id.len() > 15) {
        return Err(src.err(at, "merchant.id", "merchant id must be 1 to 15 characters"));
    }
    if m.mcc > 9999 {
        return Err(src.err(at, "merchant.mcc", "an MCC has four digits"));
    }
    Ok(Merchant {
        id_inline: InlineId::new(&m.id),
        id: m.id.into(),
        name: m.name,
        mcc: m.mcc,
        plan: m.plan,
        settlement: m.settlement,
        priority_group: m.priority_group,
        risk_group: m.risk_group,
        plan_idx: 0,
        risk_idx: 0,
        priority: false,
        line: src.line_of(at),
    })
}

impl Registry {
    pub(crate) fn load(src: &Source<'_>) -> Result<Registry, RuleError> {
        let raw: RawRegistry = src.parse()?;
        let utc_offset_minutes = match &raw.utc_offset {
            None => 0,
            Some(s) => {
                parse_offset(s).ok_or_else(|| src.whole("utc_offset", "expected +HH:MM, -HH:MM or Z"))?
            }
        };
        let unknown = match raw.unknown {
            Some(s) => {
                let at = s.span().start;
                Some(merchant(src, at, s.into_inner(), false)?)
            }
            None => None,
        };
        let mut reg = Registry { unknown, utc_offset_minutes, ..Registry::default() };
        for spanned in raw.merchant {
            let at = spanned.span().start;
            let m = merchant(src, at, spanned.into_inner(), true)?;
            let idx = u32::try_from(reg.merchants.len()).map_err(|_| src.err(at, "merchant", "too many"))?;
            if reg.merchant_ids.insert(m.id.clone(), idx).is_some() {
                return Err(src.err(at, "merchant.id", format!("merchant `{}` is listed twice", m.id)));
            }
            reg.merchants.push(m);
        }
        for spanned in raw.terminal {
            let at = spanned.span().start;
            let t = spanned.into_inner();
            if t.id.is_empty() || t.id.len() > 8 {
                return Err(src.err(at, "terminal.id", "terminal id must be 1 to 8 characters"));
            }
            let merchant = *reg
                .merchant_ids
                .get(t.merchant.as_str())
                .ok_or_else(|| src.err(at, "terminal.merchant", format!("no merchant `{}`", t.merchant)))?;
            let allowed = match &t.types {
                None => TxnType::ALL.iter().fold(0, |a, t| a | t.bit()),
                Some(list) if list.is_empty() => {
                    return Err(src.err(
                        at,
                        "terminal.types",
                        "an empty list allows nothing; omit it to allow all",
                    ));
                }
                Some(list) => list.iter().fold(0, |a, t| a | t.bit()),
            };
            let terminal = Terminal { merchant, status: t.status, allowed };
            let key = terminal_key(t.id.as_bytes()).unwrap_or(0);
            if reg.entry(key).is_some() {
                return Err(src.err(at, "terminal.id", format!("terminal `{}` is listed twice", t.id)));
            }
            let hot = reg.merchants.get(merchant as usize).map(Merchant::hot).unwrap_or_default();
            if let Some(e) = reg.terminals.insert_new(key) {
                e.terminal = terminal;
                e.merchant = hot;
            }
        }
        Ok(reg)
    }

    /// An open estate: every terminal is accepted as `merchant`.
    pub fn open(merchant_name: &str, mcc: u16) -> Registry {
        Registry {
            unknown: Some(Merchant {
                id: "".into(),
                id_inline: InlineId::default(),
                name: merchant_name.to_string(),
                mcc,
                plan: default_plan(),
                settlement: SettleCycle::T1,
                priority_group: None,
                risk_group: default_plan(),
                plan_idx: 0,
                risk_idx: 0,
                priority: false,
                line: 0,
            }),
            ..Registry::default()
        }
    }

    /// A terminal by id (the characters of field 41, trailing spaces removed).
    pub fn terminal(&self, id: &[u8]) -> Option<&Terminal> {
        self.entry(terminal_key(id)?).map(|e| &e.terminal)
    }

    /// The table entry of a packed terminal id.
    #[inline]
    fn entry(&self, key: u64) -> Option<&Entry> {
        self.terminals.find(key)
    }

    /// A terminal by id with its merchant's `Hot`, from one cache line.
    #[inline]
    pub(crate) fn terminal_entry(&self, id: &[u8]) -> Option<&Entry> {
        self.entry(terminal_key(id)?)
    }

    /// Copy each merchant's `Hot` (its plan and risk group resolved) into its terminals' entries.
    pub(crate) fn refresh_hot(&mut self) {
        let merchants = &self.merchants;
        for e in self.terminals.iter_mut() {
            e.merchant = merchants.get(e.terminal.merchant as usize).map(Merchant::hot).unwrap_or_default();
        }
    }

    pub fn merchant(&self, idx: u32) -> Option<&Merchant> {
        self.merchants.get(idx as usize)
    }

    pub fn merchant_by_id(&self, id: &str) -> Option<&Merchant> {
        self.merchant_ids.get(id).and_then(|&i| self.merchant(i))
    }

    pub fn terminal_count(&self) -> usize {
        self.terminals.len()
    }

    /// Every merchant record, the open-estate template included, for resolving references.
    pub(crate) fn all_merchants_mut(&mut self) -> impl Iterator<Item = &mut Merchant> {
        self.merchants.iter_mut().chain(self.unknown.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_registries_are_refused_with_line_and_key() {
        let m = "[[merchant]]\nid = \"M1\"\nname = \"Shop\"\nmcc = 5411\n";
        let cases = [
            (format!("{m}\n[[terminal]]\nid = \"T1\"\nmerchant = \"M2\"\n"), Some(6), "terminal.merchant"),
            (
                format!("{m}\n[[terminal]]\nid = \"T1\"\nmerchant = \"M1\"\nstatus = \"asleep\"\n"),
                Some(9),
                "status",
            ),
            (format!("{m}\n{m}"), Some(6), "merchant.id"),
            (format!("{m}settlement = \"T+2\"\n"), Some(5), "settlement"),
            (format!("{m}\n[[terminal]]\nid = \"TERMINAL99\"\nmerchant = \"M1\"\n"), Some(6), "terminal.id"),
            (
                format!(
                    "{m}\n[[terminal]]\nid = \"T1\"\nmerchant = \"M1\"\n[[terminal]]\nid = \"T1\"\nmerchant = \"M1\"\n"
                ),
                Some(9),
                "terminal.id",
            ),
            (format!("utc_offset = \"+8\"\n{m}"), None, "utc_offset"),
            (
                format!("{m}\n[[terminal]]\nid = \"T1\"\nmerchant = \"M1\"\ntypes = [\"teleport\"]\n"),
                Some(9),
                "types",
            ),
        ];
        for (text, line, key) in cases {
            let e = Registry::load(&Source { file: "registry.toml", text: &text }).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (line, Some(key)), "{e}\n{text}");
        }
    }

    #[test]
    fn an_entry_is_one_cache_line_and_ids_compare_whole() {
        assert_eq!((std::mem::size_of::<Entry>(), std::mem::align_of::<Entry>()), (64, 64));
        let id = InlineId::of(b"898340100000321").unwrap();
        assert_eq!(InlineId::new("898340100000321"), id);
        assert_ne!(InlineId::of(b"89834010000032"), Some(id));
        assert_ne!(InlineId::of(b"89834010000032\0"), Some(id));
        assert_eq!(InlineId::of(b"8983401000003210"), None);
        assert_eq!(InlineId::of(b""), Some(InlineId::default()));
        // Every length against the bytes laid out one by one.
        let text = b"ABCDEFGHIJKLMNO";
        for n in 0..=15 {
            let mut bytes = [0u8; 16];
            bytes[..n].copy_from_slice(&text[..n]);
            bytes[15] = n as u8;
            assert_eq!(InlineId::of(&text[..n]), Some(InlineId(u128::from_le_bytes(bytes))), "{n}");
        }
    }

    #[test]
    fn loads_terminals_and_merchants() {
        let text = "utc_offset = \"+08:00\"\n[[merchant]]\nid = \"M1\"\nname = \"Shop\"\nmcc = 5411\nsettlement = \"T+0\"\n\n[[terminal]]\nid = \"T1\"\nmerchant = \"M1\"\ntypes = [\"purchase\", \"refund\"]\n";
        let r = Registry::load(&Source { file: "registry.toml", text }).unwrap();
        assert_eq!(r.utc_offset_minutes, 480);
        let t = r.terminal(b"T1").unwrap();
        assert_eq!(t.allowed, TxnType::Purchase.bit() | TxnType::Refund.bit());
        let m = r.merchant(t.merchant).unwrap();
        assert_eq!((m.mcc, m.settlement, m.plan.as_str()), (5411, SettleCycle::T0, "default"));
        assert!(r.terminal(b"T2").is_none());
        // The entry carries the merchant's `Hot` (refreshed once plans are resolved).
        let e = r.terminal_entry(b"T1").unwrap();
        assert_eq!((e.merchant.mcc, e.merchant.id), (5411, InlineId::new("M1")));
    }
}
