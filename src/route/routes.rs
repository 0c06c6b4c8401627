//! BIN routing as `routes.toml` says it (`Routes::load`): the card number's check digit
//! (Luhn), then the longest matching route.
//! A route is either a PAN prefix (1 to 19 digits) or a range `low..=high` on the first
//! 6 to 8 digits; a prefix is treated as the range `[p, p]` on its own length, so every
//! route is a range on `n` digits. At load the routes are grouped by `n` and sorted; the
//! routes of one length may not overlap (refused with file, line and key). Each length has
//! an index on the first four digits (10,001 positions), so a lookup tries the lengths from
//! longest to shortest with one short binary search inside one bucket each: the most
//! specific route wins and 1,000 routes cost a handful of comparisons. When nothing matches, the
//! `[default]` route applies, if there is one. Each route names its issuer, an optional
//! backup issuer and the card product (debit / credit / QR) the fee plans price.
//! Of the codec it uses `eight_digits` (ASCII digits read in one word).
//! May import: crate::iso, crate::route::error, crate::route::intern.

use serde::{Deserialize, Serialize};

use super::error::{RuleError, Source};
use super::intern::intern;

/// The card product a route carries, for fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardType {
    Debit,
    Credit,
    Qr,
}

/// Where a card's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub issuer: &'static str,
    pub backup: Option<&'static str>,
    pub card_type: CardType,
}

#[derive(Debug, Clone, Default)]
struct Level {
    digits: u8,
    /// (low, high, route index), sorted by `low`, non-overlapping.
    ranges: Vec<(u64, u64, u32)>,
    /// `index[b]` is the first range whose `low` starts with the leading digits `b` (the
    /// first 4, or all when the level is shorter) or a later prefix, so that a lookup
    /// searches only the few ranges of one bucket.
    index: Vec<u32>,
}

/// Digits of a level that pick its bucket.
const BUCKET_DIGITS: u8 = 4;

impl Level {
    fn bucket_digits(&self) -> u8 {
        self.digits.min(BUCKET_DIGITS)
    }

    fn build_index(&mut self) {
        let scale = 10u64.pow(u32::from(self.digits - self.bucket_digits()));
        let buckets = 10u64.pow(u32::from(self.bucket_digits()));
        self.index = (0..=buckets)
            .map(|b| self.ranges.partition_point(|&(low, _, _)| low < b * scale) as u32)
            .collect();
    }

    /// The range holding the number `digits` spell (levels longer than `FLAT_DIGITS`, and
    /// numbers too short for the folded table).
    fn find(&self, digits: &[u8]) -> Option<u32> {
        let (head, _) = digits.split_at_checked(self.bucket_digits() as usize)?;
        self.find_in(value(head) as usize, value(digits))
    }

    /// The range holding `key`, a number of `self.digits` digits (at load: this divides).
    fn find_key(&self, key: u64) -> Option<u32> {
        let scale = 10u64.pow(u32::from(self.digits - self.bucket_digits()));
        self.find_in((key / scale) as usize, key)
    }

    /// The range holding `key`, whose bucket is `b`.
    fn find_in(&self, b: usize, key: u64) -> Option<u32> {
        let start = self.index.get(b).copied()? as usize;
        let end = self.index.get(b + 1).copied()? as usize;
        // A range that starts in an earlier bucket may reach into this one.
        let slice = self.ranges.get(start.saturating_sub(1)..end)?;
        let i = slice.partition_point(|&(low, _, _)| low <= key);
        let &(_, high, idx) = slice.get(i.checked_sub(1)?)?;
        (key <= high).then_some(idx)
    }
}

/// Every level of at most this many digits is also folded into one table on the first
/// `FLAT_DIGITS` digits (longest level winning), so that a PAN needs one search for them.
const FLAT_DIGITS: u8 = 8;

/// One level on `FLAT_DIGITS` digits that answers as the levels of `FLAT_DIGITS` digits or
/// fewer would, tried longest first: each route becomes the range of the 8-digit numbers
/// it covers, the boundaries of all of them cut the number line into segments, and each
/// segment takes the route of the longest level that covers it.
fn flatten(levels: &[Level]) -> Flat {
    let short: Vec<&Level> = levels.iter().filter(|l| l.digits <= FLAT_DIGITS).collect();
    let scale = |l: &Level| 10u64.pow(u32::from(FLAT_DIGITS - l.digits));
    let mut cuts: Vec<u64> = Vec::new();
    for l in &short {
        for &(low, high, _) in &l.ranges {
            cuts.push(low * scale(l));
            cuts.push((high + 1) * scale(l));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut ranges: Vec<(u64, u64, u32)> = Vec::new();
    for pair in cuts.windows(2) {
        let &[from, to] = pair else { continue };
        // `short` is longest first: the first level covering the segment wins.
        let Some(idx) = short.iter().find_map(|l| l.find_key(from / scale(l))) else { continue };
        match ranges.last_mut() {
            Some(last) if last.2 == idx && last.1 + 1 == from => last.1 = to - 1,
            _ => ranges.push((from, to - 1, idx)),
        }
    }
    Flat::new(&ranges)
}

/// The folded level as a lookup table. The 8-digit number line is cut into segments, each
/// held as its start and its route in one word (`start << 32 | route`, `NO_ROUTE` for a
/// stretch no route covers). Over it lies one word per 6-digit prefix (a cell of 100
/// numbers) from the first routed cell to the last: the route itself, flagged `UNIFORM`,
/// when one segment covers the whole cell (nearly every cell of a real BIN table), else
/// the segment holding the cell's first number, from which a short scan finds the one
/// holding the key. A lookup reads one word, or two when a cell is cut.
#[derive(Debug, Clone, Default)]
struct Flat {
    segments: Vec<u64>,
    cells: Vec<u32>,
    /// The cell `cells[0]` stands for.
    first_cell: u64,
}

/// A route index that stands for no route (route indexes stay below it).
const NO_ROUTE: u32 = (1 << 31) - 1;
/// Flags a cell word that is the cell's route.
const UNIFORM: u32 = 1 << 31;
/// Numbers of 8 digits in one cell (one 6-digit prefix).
const CELL: u64 = 100;

impl Flat {
    /// From non-overlapping `(low, high, route)` ranges sorted by `low`.
    fn new(ranges: &[(u64, u64, u32)]) -> Flat {
        let (Some(&(first, ..)), Some(&(.., last, _))) = (ranges.first(), ranges.last()) else {
            return Flat::default();
        };
        let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut next = 0u64;
        for &(low, high, idx) in ranges {
            if low > next {
                segments.push(next << 32 | u64::from(NO_ROUTE));
            }
            segments.push(low << 32 | u64::from(idx));
            next = high + 1;
        }
        segments.push(next << 32 | u64::from(NO_ROUTE));
        let start = |j: usize| segments.get(j).map_or(u64::MAX, |&s| s >> 32);
        let (first_cell, last_cell) = (first / CELL, last / CELL);
        let mut cells = Vec::with_capacity((last_cell - first_cell + 1) as usize);
        let mut j = 0;
        for cell in first_cell..=last_cell {
            let low = cell * CELL;
            while start(j + 1) <= low {
                j += 1;
            }
            cells.push(if start(j + 1) > low + CELL - 1 {
                UNIFORM | segments.get(j).map_or(NO_ROUTE, |&s| s as u32)
            } else {
                j as u32
            });
        }
        Flat { segments, cells, first_cell }
    }

    /// The route of the first eight digits of a PAN.
    fn find(&self, digits: &[u8]) -> Option<u32> {
        let key = crate::iso::eight_digits(digits)?;
        let cell = *self.cells.get(usize::try_from((key / CELL).checked_sub(self.first_cell)?).ok()?)?;
        let route = if cell & UNIFORM != 0 {
            cell & !UNIFORM
        } else {
            // The segments from the one holding the cell's first number: at most a cell's
            // worth start within it, and the last of them at or before `key` holds it.
            let from = cell as usize;
            let segs = self.segments.get(from..)?;
            let n = segs.iter().take(CELL as usize + 1).take_while(|&&s| s >> 32 <= key).count();
            *segs.get(n.checked_sub(1)?)? as u32
        };
        (route != NO_ROUTE).then_some(route)
    }
}

/// The number spelt by ASCII digits (at most 19, checked by the caller).
fn value(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |v, d| v.wrapping_mul(10).wrapping_add(u64::from(d.wrapping_sub(b'0'))))
}

/// The compiled route table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    /// Longest first.
    levels: Vec<Level>,
    /// The levels of up to `FLAT_DIGITS` digits as one (see `flatten`).
    flat: Flat,
    default: Option<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutes {
    #[serde(default)]
    default: Option<RawTarget>,
    #[serde(default)]
    route: Vec<toml::Spanned<RawRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    issuer: String,
    #[serde(default)]
    backup: Option<String>,
    card_type: CardType,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    low: Option<String>,
    #[serde(default)]
    high: Option<String>,
    issuer: String,
    #[serde(default)]
    backup: Option<String>,
    card_type: CardType,
}

/// The number a string of digits spells, when it is 1 to 19 ASCII digits.
fn digits_value(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn target(src: &Source<'_>, at: usize, t: RawTarget) -> Result<Route, RuleError> {
    if t.issuer.trim().is_empty() {
        return Err(src.err(at, "issuer", "issuer must not be empty"));
    }
    if t.backup.as_deref() == Some(t.issuer.as_str()) {
        return Err(src.err(at, "backup", "backup issuer is the route's own issuer"));
    }
    Ok(Route { issuer: intern(&t.issuer), backup: t.backup.as_deref().map(intern), card_type: t.card_type })
}

impl Routes {
    /// Every issuer (and backup) a route or the default names, once each.
    pub fn issuer_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for r in self.routes.iter().chain(self.default.iter()) {
            for n in std::iter::once(r.issuer).chain(r.backup) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }

    pub(crate) fn load(src: &Source<'_>) -> Result<Routes, RuleError> {
        let raw: RawRoutes = src.parse()?;
        let default = match raw.default {
            Some(t) => Some(target(src, 0, t)?),
            None => None,
        };
        let mut routes = Vec::with_capacity(raw.route.len());
        // (digits, low, high, index, offset in the file)
        let mut spans: Vec<(u8, u64, u64, u32, usize)> = Vec::with_capacity(raw.route.len());
        for spanned in raw.route {
            let at = spanned.span().start;
            let r = spanned.into_inner();
            let (n, low, high) = match (r.prefix, r.low, r.high) {
                (Some(p), None, None) => {
                    let v = digits_value(&p)
                        .ok_or_else(|| src.err(at, "route.prefix", format!("`{p}` is not 1 to 19 digits")))?;
                    (p.len() as u8, v, v)
                }
                (None, Some(lo), Some(hi)) => {
                    if lo.len() != hi.len() || !(6..=8).contains(&lo.len()) {
                        return Err(src.err(at, "route.low", "low and high must both have 6, 7 or 8 digits"));
                    }
                    let l = digits_value(&lo).ok_or_else(|| src.err(at, "route.low", "not digits"))?;
                    let h = digits_value(&hi).ok_or_else(|| src.err(at, "route.high", "not digits"))?;
                    if l > h {
                        return Err(src.err(at, "route.high", "high is below low"));
                    }
                    (lo.len() as u8, l, h)
                }
                _ => {
                    return Err(src.err(
                        at,
                        "route.prefix",
                        "a route has either `prefix` or both `low` and `high`",
                    ));
                }
            };
            let idx = u32::try_from(routes.len())
                .ok()
                .filter(|&i| i < NO_ROUTE)
                .ok_or_else(|| src.err(at, "route", "too many routes"))?;
            routes.push(target(
                src,
                at,
                RawTarget { issuer: r.issuer, backup: r.backup, card_type: r.card_type },
            )?);
            spans.push((n, low, high, idx, at));
        }
        spans.sort_by_key(|&(n, low, ..)| (std::cmp::Reverse(n), low));
        let mut levels: Vec<Level> = Vec::new();
        let mut prev: Option<(u8, u64)> = None;
        for (n, low, high, idx, at) in spans {
            if let Some((pn, phigh)) = prev
                && pn == n
                && low <= phigh
            {
                return Err(src.err(at, "route", format!("overlaps another route on the first {n} digits")));
            }
            prev = Some((n, high));
            match levels.last_mut() {
                Some(l) if l.digits == n => l.ranges.push((low, high, idx)),
                _ => levels.push(Level { digits: n, ranges: vec![(low, high, idx)], ..Level::default() }),
            }
        }
        levels.iter_mut().for_each(Level::build_index);
        let flat = flatten(&levels);
        Ok(Routes { routes, levels, flat, default })
    }

    /// Routes every card to one issuer.
    pub fn single(issuer: &str, card_type: CardType) -> Routes {
        Routes {
            routes: Vec::new(),
            levels: Vec::new(),
            flat: flatten(&[]),
            default: Some(Route { issuer: intern(issuer), backup: None, card_type }),
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a PAN (ASCII digits, already checked), most specific first, then the
    /// default.
    pub fn lookup(&self, pan: &[u8]) -> Option<&Route> {
        let flat = pan.get(..FLAT_DIGITS as usize);
        for level in &self.levels {
            if let Some(digits) = flat
                && level.digits <= FLAT_DIGITS
            {
                return self
                    .flat
                    .find(digits)
                    .and_then(|i| self.routes.get(i as usize))
                    .or(self.default.as_ref());
            }
            let Some(digits) = pan.get(..level.digits as usize) else { continue };
            if let Some(idx) = level.find(digits) {
                return self.routes.get(idx as usize);
            }
        }
        self.default.as_ref()
    }
}

/// A PAN is 12 to 19 ASCII digits whose Luhn check digit is right.
///
/// Eight digits at a time: the PAN is read right-aligned in 24 bytes behind `0`s (a leading
/// zero adds nothing to the sum), so the digits to double are the even bytes of each
/// little-endian word. Each word is checked for digits, its even bytes doubled less 9 where
/// that makes two digits (a digit of 5 or more), and all bytes summed by one
/// multiplication (at most 24 nines, so a byte holds the sum).
pub fn luhn_ok(pan: &[u8]) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const SIX: u64 = 0x0606_0606_0606_0606;
    const EVEN: u64 = 0x00FF_00FF_00FF_00FF;
    const THREE: u64 = 0x0003_0003_0003_0003;
    const ONE: u64 = 0x0001_0001_0001_0001;
    let n = pan.len();
    if !(12..=19).contains(&n) {
        return false;
    }
    let word = |from: usize| {
        pan.get(from..from + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes)
    };
    // `w` moved up by `k` bytes, `0`s in the bytes it leaves (`k` from 1 to 8).
    let shift_in = |w: u64, k: usize| {
        let bits = 8 * k as u32;
        w.checked_shl(bits).unwrap_or(0) | (ZEROS & !u64::MAX.checked_shl(bits).unwrap_or(0))
    };
    // The three words by overlapping loads, with no copy of a variable length.
    let (Some(head), Some(last)) = (word(0), word(n - 8)) else {
        return false;
    };
    let words = if n >= 16 {
        let Some(mid) = word(n - 16) else {
            return false;
        };
        [shift_in(head, 24 - n), mid, last]
    } else {
        [ZEROS, shift_in(head, 16 - n), last]
    };
    let (mut sum, mut bad) = (0u64, 0u64);
    for w in words {
        // Each byte 0x30..=0x39: high nibble 3, and still 3 after adding 6.
        bad |= ((w & HIGH) ^ ZEROS) | ((w.wrapping_add(SIX) & HIGH) ^ ZEROS);
        let d = w.wrapping_sub(ZEROS);
        let (even, odd) = (d & EVEN, d & !EVEN);
        // Bit 3 of `digit + 3` is set for the digits 5 to 9.
        // (Wrapping: a non-digit makes garbage here, and `bad` refuses it.)
        let big = (even.wrapping_add(THREE) >> 3) & ONE;
        sum = sum.wrapping_add((even << 1).wrapping_sub(big * 9).wrapping_add(odd));
    }
    bad == 0 && (sum.wrapping_mul(0x0101_0101_0101_0101) >> 56).is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[default]
issuer = "bank-d"
card_type = "debit"

[[route]]
prefix = "4"
issuer = "visa-host"
card_type = "credit"

[[route]]
prefix = "411111"
issuer = "bank-a"
backup = "bank-b"
card_type = "debit"

[[route]]
low = "62220000"
high = "62229999"
issuer = "bank-c"
card_type = "debit"

[[route]]
low = "622200"
high = "622299"
issuer = "bank-e"
card_type = "credit"
"#;

    #[test]
    fn luhn() {
        for (pan, ok) in [
            ("4111111111111111", true),
            ("4111111111111112", false),
            ("6222020200112233", false),
            ("6222020200112230", true),
            ("79927398713", false), // valid check digit but too short
            ("411111111111111a", false),
            ("12345678903", false),
            ("123456789012", false),
            ("1234567890128", true),
        ] {
            assert_eq!(luhn_ok(pan.as_bytes()), ok, "{pan}");
        }
    }

    #[test]
    fn luhn_agrees_with_the_digit_by_digit_rule() {
        let reference = |pan: &str| {
            let sum: u32 = pan
                .bytes()
                .rev()
                .enumerate()
                .map(|(i, c)| {
                    let d = u32::from(c - b'0') * if i % 2 == 1 { 2 } else { 1 };
                    if d > 9 { d - 9 } else { d }
                })
                .sum();
            (12..=19).contains(&pan.len()) && sum.is_multiple_of(10)
        };
        for k in 0..30_000u64 {
            let len = 12 + (k % 8) as usize;
            let pan =
                format!("{:0len$}", k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 10u64.pow(len.min(19) as u32));
            assert_eq!(luhn_ok(pan.as_bytes()), reference(&pan), "{pan}");
        }
        // A non-digit anywhere is refused, however the sum comes out.
        let good = b"4111111111111111";
        for i in 0..good.len() {
            for c in [b'/', b':', b'?', b' ', 0, 0x80, 0xB1, 0xFF, b'a'] {
                let mut bad = *good;
                bad[i] = c;
                assert!(!luhn_ok(&bad), "{i} {c}");
            }
        }
        assert!(luhn_ok(b"0000000000000000000") && luhn_ok(b"9999999999999999998"));
    }

    #[test]
    fn longest_match_then_default() {
        let r = Routes::load(&Source { file: "routes.toml", text: TEXT }).unwrap();
        for (pan, issuer) in [
            ("4111111111111111", "bank-a"),
            ("4000000000000002", "visa-host"),
            ("6222020200112230", "bank-c"),
            ("6222990000000000", "bank-c"),
            ("6222000000000000", "bank-c"),
            ("6223000000000000", "bank-d"),
            ("5500000000000004", "bank-d"),
        ] {
            assert_eq!(r.lookup(pan.as_bytes()).unwrap().issuer, issuer, "{pan}");
        }
        let a = r.lookup(b"4111111111111111").unwrap();
        assert_eq!(a.backup, Some("bank-b"));
        assert_eq!(a.card_type, CardType::Debit);
    }

    #[test]
    fn indexed_lookup_agrees_with_a_linear_scan() {
        let mut text = String::from("[default]\nissuer = \"d\"\ncard_type = \"debit\"\n");
        let mut spans = Vec::new();
        for r in 0..300u64 {
            // Ranges of uneven widths, some crossing a 3-digit bucket, plus 6-digit prefixes.
            let low = 10_000_000 + r * 331_337 % 89_000_000 / 1000 * 1000;
            let high = low + (r % 7) * 150_000 + 999;
            if spans.iter().any(|&(l, h, _): &(u64, u64, String)| low <= h && l <= high) {
                continue;
            }
            text += &format!(
                "[[route]]\nlow = \"{low}\"\nhigh = \"{high}\"\nissuer = \"r{r}\"\ncard_type = \"debit\"\n"
            );
            spans.push((low, high, format!("r{r}")));
        }
        let routes = Routes::load(&Source { file: "routes.toml", text: &text }).unwrap();
        for k in 0..20_000u64 {
            let key = 10_000_000 + k * 4_999 % 90_000_000;
            let want = spans.iter().find(|(l, h, _)| *l <= key && key <= *h).map_or("d", |s| s.2.as_str());
            let pan = format!("{key}00000000");
            assert_eq!(routes.lookup(pan.as_bytes()).unwrap().issuer, want, "{key}");
        }
    }

    #[test]
    fn a_cell_cut_into_single_numbers_and_the_edges_of_the_cell_table() {
        let mut text = String::from("[default]\nissuer = \"d\"\ncard_type = \"debit\"\n");
        // Every other number of the 6-digit prefix 622200 is a route of its own: the cell is
        // cut a hundred times. A wide range starts and ends inside other cells.
        for i in (0..100).step_by(2) {
            text += &format!("[[route]]\nprefix = \"622200{i:02}\"\nissuer = \"r{i}\"\ncard_type = \"qr\"\n");
        }
        text +=
            "[[route]]\nlow = \"62230050\"\nhigh = \"62240049\"\nissuer = \"w\"\ncard_type = \"credit\"\n";
        let routes = Routes::load(&Source { file: "routes.toml", text: &text }).unwrap();
        let issuer = |head: &str| routes.lookup(format!("{head}12345678").as_bytes()).unwrap().issuer;
        for i in 0..100 {
            let want = if i % 2 == 0 { format!("r{i}") } else { "d".to_string() };
            assert_eq!(issuer(&format!("622200{i:02}")), want, "{i}");
        }
        for (head, want) in [
            ("62230049", "d"),
            ("62230050", "w"),
            ("62235000", "w"),
            ("62240049", "w"),
            ("62240050", "d"),
            ("62219999", "d"),
            ("62220100", "d"),
            ("10000000", "d"),
            ("99999999", "d"),
            ("00000000", "d"),
        ] {
            assert_eq!(issuer(head), want, "{head}");
        }
    }

    #[test]
    fn folded_levels_agree_with_longest_match() {
        // Nested and partly overlapping routes on 1 to 10 digits.
        let mut text = String::from("[default]\nissuer = \"d\"\ncard_type = \"debit\"\n");
        let mut spans: Vec<(usize, u64, u64, String)> = Vec::new();
        let mut add = |n: usize, low: u64, high: u64| {
            let name = format!("r{}", spans.len());
            if spans.iter().any(|&(m, l, h, _)| m == n && low <= h && l <= high) {
                return;
            }
            text += &if low == high {
                format!("[[route]]\nprefix = \"{low:0n$}\"\nissuer = \"{name}\"\ncard_type = \"qr\"\n")
            } else {
                format!(
                    "[[route]]\nlow = \"{low:0n$}\"\nhigh = \"{high:0n$}\"\nissuer = \"{name}\"\ncard_type = \"qr\"\n"
                )
            };
            spans.push((n, low, high, name));
        };
        add(1, 6, 6);
        add(2, 62, 62);
        add(4, 6222, 6222);
        add(4, 4000, 4000);
        for r in 0..200u64 {
            let p6 = 600_000 + r * 2_741 % 40_000;
            add(6, p6, p6);
            let l6 = 620_000 + r * 97 % 9_000;
            add(6, l6, l6 + r % 5);
            let l7 = 6_200_000 + r * 1_013 % 90_000;
            add(7, l7, l7 + r % 40);
            let l8 = 62_000_000 + r * 7_919 % 900_000;
            add(8, l8, l8 + r % 3_000);
        }
        add(10, 6_222_000_000, 6_222_000_000);
        let routes = Routes::load(&Source { file: "routes.toml", text: &text }).unwrap();
        let mut routed = 0;
        for k in 0..10_000u64 {
            let head = 60_000_000 + k * 104_729 % 40_000_000;
            let pan = if k % 50 == 0 { format!("6222000000{k:06}") } else { format!("{head}{k:08}") };
            let want = (1..=19)
                .rev()
                .find_map(|n| {
                    let v: u64 = pan.get(..n)?.parse().ok()?;
                    spans.iter().find(|&&(m, l, h, _)| m == n && l <= v && v <= h)
                })
                .map_or("d", |s| s.3.as_str());
            assert_eq!(routes.lookup(pan.as_bytes()).unwrap().issuer, want, "{pan}");
            routed += usize::from(want != "d");
            // A number too short for the folded table takes the level-by-level path.
            let short = &pan[..7];
            let want = (1..=7)
                .rev()
                .find_map(|n| {
                    let v: u64 = short.get(..n)?.parse().ok()?;
                    spans.iter().find(|&&(m, l, h, _)| m == n && l <= v && v <= h)
                })
                .map_or("d", |s| s.3.as_str());
            assert_eq!(routes.lookup(short.as_bytes()).unwrap().issuer, want, "{short}");
        }
        assert!(routed > 1_000, "{routed}");
    }

    #[test]
    fn bad_routes_are_refused_with_line_and_key() {
        let cases = [
            ("[[route]]\nprefix = \"41x\"\nissuer = \"a\"\ncard_type = \"debit\"\n", 1, "route.prefix"),
            (
                "[[route]]\nlow = \"622200\"\nhigh = \"6222\"\nissuer = \"a\"\ncard_type = \"debit\"\n",
                1,
                "route.low",
            ),
            (
                "[[route]]\nlow = \"622299\"\nhigh = \"622200\"\nissuer = \"a\"\ncard_type = \"debit\"\n",
                1,
                "route.high",
            ),
            (
                "[[route]]\nprefix = \"4111\"\nissuer = \"a\"\ncard_type = \"debit\"\n\n[[route]]\nprefix = \"4111\"\nissuer = \"b\"\ncard_type = \"debit\"\n",
                6,
                "route",
            ),
            ("[[route]]\nprefix = \"4111\"\nissuer = \"a\"\ncard_type = \"gold\"\n", 4, "card_type"),
        ];
        for (text, line, key) in cases {
            let e = Routes::load(&Source { file: "routes.toml", text }).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}");
        }
    }
}
