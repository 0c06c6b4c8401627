//! Priority classes, their weights and peak windows. Every forwarded message gets a class:
//! reversals and advices first, then network management, then authorisations from priority
//! merchant groups, then ordinary authorisations, then batch uploads. The weights tell the
//! scheduler (`sched`) how to share an issuer's window among waiting classes; peak windows
//! (a date range, days of the month, the last days of a month, a time of day, or a mix:
//! every condition given must hold, the day conditions being alternatives) replace some
//! weights while they are open. The first open peak window wins. The file also sets each
//! issuer queue's window and bounds.
//! May import: crate::civil, crate::route::error, crate::route::txn, crate::time.

use serde::{Deserialize, Serialize};

use super::error::{RuleError, Source};
use super::txn::TxnType;
use crate::civil::{Date, parse_hhmm};
use crate::time::Civil;

/// A priority class, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Reversal,
    Network,
    Priority,
    Ordinary,
    Batch,
}

impl Class {
    pub const ALL: [Class; 5] =
        [Class::Reversal, Class::Network, Class::Priority, Class::Ordinary, Class::Batch];

    pub fn index(self) -> usize {
        self as usize
    }

    /// Label for metrics (`isoswitch_shed_total{class}`).
    pub fn name(self) -> &'static str {
        match self {
            Class::Reversal => "reversal",
            Class::Network => "network",
            Class::Priority => "priority",
            Class::Ordinary => "ordinary",
            Class::Batch => "batch",
        }
    }

    /// The class of a message: advices (x2x0/x2x1) and reversals share the first class,
    /// since both are repeated until acknowledged and must not be lost.
    pub fn of(mti: &str, txn: TxnType, priority_merchant: bool) -> Class {
        Class::of_bytes(mti.as_bytes(), txn, priority_merchant)
    }

    /// `of` for the MTI as bytes.
    pub fn of_bytes(b: &[u8], txn: TxnType, priority_merchant: bool) -> Class {
        if txn == TxnType::Reversal {
            Class::Reversal
        } else if txn == TxnType::BatchUpload {
            Class::Batch
        } else if b.get(2) == Some(&b'2') {
            Class::Reversal
        } else if b.get(1) == Some(&b'8') || txn.is_local() {
            Class::Network
        } else if priority_merchant {
            Class::Priority
        } else {
            Class::Ordinary
        }
    }
}

/// Weights by class index.
pub type Weights = [u32; 5];

/// Queue sizes in front of each issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Requests in flight at the issuer at most; the issuer connector also caps it by the
    /// sum of the issuer's link windows, which decide alone when the file sets none.
    pub window: usize,
    /// Bound of each class's queue, by class index; reversals have their own (larger) bound
    /// and overflow to store-and-forward instead of being shed.
    pub bounds: [usize; 5],
    /// Expected issuer latency in microseconds, until completions measure it.
    pub latency_us: u64,
}

#[derive(Debug, Clone)]
struct Peak {
    name: String,
    dates: Option<(Date, Date)>,
    days_of_month: Vec<u8>,
    last_days: u8,
    time: Option<(u16, u16)>,
    weights: Weights,
}

/// Classes, weights and peak windows.
#[derive(Debug, Clone)]
pub struct Priorities {
    pub weights: Weights,
    pub priority_groups: Vec<String>,
    pub queue: QueueConfig,
    peaks: Vec<Peak>,
}

impl Default for Priorities {
    fn default() -> Self {
        Priorities {
            weights: [16, 8, 6, 3, 1],
            priority_groups: Vec::new(),
            queue: QueueConfig { window: 100_000, bounds: [4096, 256, 512, 1024, 256], latency_us: 200_000 },
            peaks: Vec::new(),
        }
    }
}

impl Priorities {
    /// The weights in force at a local civil time, and the open peak window's name.
    pub fn weights_at(&self, c: &Civil) -> (Weights, Option<&str>) {
        for p in &self.peaks {
            if p.open(c) {
                return (p.weights, Some(&p.name));
            }
        }
        (self.weights, None)
    }

    pub fn is_priority_group(&self, group: &str) -> bool {
        self.priority_groups.iter().any(|g| g == group)
    }

    pub(crate) fn load(src: &Source<'_>) -> Result<Priorities, RuleError> {
        let raw: RawPriorities = src.parse()?;
        let base = Priorities::default();
        let weights = merge(src, 0, "weights", base.weights, &raw.weights)?;
        let q = raw.queue.unwrap_or_default();
        let d = base.queue;
        let queue = QueueConfig {
            window: q.window.unwrap_or(d.window),
            bounds: [
                q.reversal_bound.unwrap_or(d.bounds[0]),
                q.network_bound.unwrap_or(d.bounds[1]),
                q.priority_bound.unwrap_or(d.bounds[2]),
                q.ordinary_bound.unwrap_or(d.bounds[3]),
                q.batch_bound.unwrap_or(d.bounds[4]),
            ],
            latency_us: q.latency_ms.map_or(d.latency_us, |ms| ms.saturating_mul(1000)),
        };
        if queue.window == 0 || queue.window > 100_000 || queue.bounds.iter().any(|&b| b > 1_000_000) {
            return Err(src.whole("queue", "window must be 1..=100000 and bounds at most 1000000"));
        }
        let mut peaks = Vec::with_capacity(raw.peak.len());
        for spanned in raw.peak {
            let at = spanned.span().start;
            let p = spanned.into_inner();
            let dates = match &p.dates {
                None => None,
                Some([a, b]) => {
                    let a = Date::parse(a).ok_or_else(|| src.err(at, "peak.dates", "expected YYYY-MM-DD"))?;
                    let b = Date::parse(b).ok_or_else(|| src.err(at, "peak.dates", "expected YYYY-MM-DD"))?;
                    if b < a {
                        return Err(src.err(at, "peak.dates", "the range ends before it starts"));
                    }
                    Some((a, b))
                }
            };
            if p.days_of_month.iter().any(|&d| d == 0 || d > 31) {
                return Err(src.err(at, "peak.days_of_month", "days are 1..=31"));
            }
            if p.last_days_of_month > 31 {
                return Err(src.err(at, "peak.last_days_of_month", "at most 31"));
            }
            let time = match (&p.from, &p.to) {
                (None, None) => None,
                (Some(f), Some(t)) => {
                    let f = parse_hhmm(f).ok_or_else(|| src.err(at, "peak.from", "expected HH:MM"))?;
                    let t = parse_hhmm(t).ok_or_else(|| src.err(at, "peak.to", "expected HH:MM"))?;
                    if t <= f {
                        return Err(src.err(at, "peak.to", "`to` must be after `from`"));
                    }
                    Some((f, t))
                }
                _ => return Err(src.err(at, "peak.from", "give both `from` and `to`")),
            };
            if dates.is_none() && p.days_of_month.is_empty() && p.last_days_of_month == 0 && time.is_none() {
                return Err(src.err(at, "peak", "a peak window needs dates, days or a time of day"));
            }
            let weights = merge(src, at, "peak.weights", weights, &p.weights)?;
            peaks.push(Peak {
                name: p.name,
                dates,
                days_of_month: p.days_of_month,
                last_days: p.last_days_of_month,
                time,
                weights,
            });
        }
        Ok(Priorities { weights, priority_groups: raw.priority_groups, queue, peaks })
    }
}

impl Peak {
    fn open(&self, c: &Civil) -> bool {
        let any_day_rule = self.dates.is_some() || !self.days_of_month.is_empty() || self.last_days > 0;
        let day_ok = !any_day_rule
            || self.dates.is_some_and(|(a, b)| a <= c.date && c.date <= b)
            || self.days_of_month.contains(&c.date.day)
            || (self.last_days > 0 && c.date.day + self.last_days > c.date.days_in_month());
        let time_ok = self.time.is_none_or(|(f, t)| f <= c.minute_of_day && c.minute_of_day < t);
        day_ok && time_ok
    }
}

fn merge(
    src: &Source<'_>,
    at: usize,
    key: &str,
    base: Weights,
    w: &RawWeights,
) -> Result<Weights, RuleError> {
    let mut out = base;
    let given = [w.reversal, w.network, w.priority, w.ordinary, w.batch];
    for ((slot, v), class) in out.iter_mut().zip(given).zip(Class::ALL) {
        if let Some(v) = v {
            if !(1..=1000).contains(&v) {
                return Err(src.err(at, &format!("{key}.{}", class.name()), "weights are 1..=1000"));
            }
            *slot = v;
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriorities {
    #[serde(default)]
    weights: RawWeights,
    #[serde(default)]
    priority_groups: Vec<String>,
    #[serde(default)]
    queue: Option<RawQueue>,
    #[serde(default)]
    peak: Vec<toml::Spanned<RawPeak>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeights {
    reversal: Option<u32>,
    network: Option<u32>,
    priority: Option<u32>,
    ordinary: Option<u32>,
    batch: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    window: Option<usize>,
    latency_ms: Option<u64>,
    reversal_bound: Option<usize>,
    network_bound: Option<usize>,
    priority_bound: Option<usize>,
    ordinary_bound: Option<usize>,
    batch_bound: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeak {
    name: String,
    #[serde(default)]
    dates: Option<[String; 2]>,
    #[serde(default)]
    days_of_month: Vec<u8>,
    #[serde(default)]
    last_days_of_month: u8,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    weights: RawWeights,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UnixMs;

    const TEXT: &str = r#"
priority_groups = ["vip"]

[weights]
reversal = 20
priority = 6
ordinary = 3

[queue]
window = 8
ordinary_bound = 100

[[peak]]
name = "singles-day"
dates = ["2026-11-11", "2026-11-12"]
weights = { priority = 12, ordinary = 2 }

[[peak]]
name = "month-end-evening"
last_days_of_month = 2
days_of_month = [1]
from = "18:00"
to = "22:00"
weights = { priority = 10 }
"#;

    fn at(date: &str, h: u32, m: u32) -> Civil {
        // Build in local time directly: offset 0.
        UnixMs::from_utc(Date::parse(date).unwrap(), h, m).civil(0)
    }

    #[test]
    fn peak_windows_change_the_weights() {
        let p = Priorities::load(&Source { file: "priority.toml", text: TEXT }).unwrap();
        assert_eq!(p.queue.window, 8);
        assert_eq!(p.queue.bounds[Class::Ordinary.index()], 100);
        let base: Weights = [20, 8, 6, 3, 1];
        let cases = [
            ("2026-11-10", 12, 0, base, None),
            ("2026-11-11", 0, 0, [20, 8, 12, 2, 1], Some("singles-day")),
            ("2026-11-12", 23, 59, [20, 8, 12, 2, 1], Some("singles-day")),
            ("2026-11-13", 12, 0, base, None),
            ("2026-11-30", 18, 0, [20, 8, 10, 3, 1], Some("month-end-evening")),
            ("2026-11-29", 21, 59, [20, 8, 10, 3, 1], Some("month-end-evening")),
            ("2026-11-28", 19, 0, base, None),
            ("2026-11-30", 22, 0, base, None),
            ("2026-12-01", 20, 0, [20, 8, 10, 3, 1], Some("month-end-evening")),
            ("2027-02-27", 19, 0, [20, 8, 10, 3, 1], Some("month-end-evening")),
            ("2026-11-30", 17, 59, base, None),
        ];
        for (date, h, m, w, name) in cases {
            let (got, open) = p.weights_at(&at(date, h, m));
            assert_eq!((got, open), (w, name), "{date} {h}:{m}");
        }
    }

    #[test]
    fn classes_follow_the_message() {
        use TxnType::*;
        let cases = [
            ("0400", Reversal, false, Class::Reversal),
            ("0220", Refund, false, Class::Reversal),
            ("0800", Echo, false, Class::Network),
            ("0200", Purchase, true, Class::Priority),
            ("0200", Purchase, false, Class::Ordinary),
            ("0320", BatchUpload, true, Class::Batch),
        ];
        for (mti, t, vip, c) in cases {
            assert_eq!(Class::of(mti, t, vip), c, "{mti}");
        }
    }

    #[test]
    fn bad_priorities_are_refused_with_line_and_key() {
        let cases = [
            ("[weights]\nordinary = 0\n", None, "weights.ordinary"),
            ("[[peak]]\nname = \"x\"\nfrom = \"18:00\"\nto = \"17:00\"\n", Some(1), "peak.to"),
            ("[[peak]]\nname = \"x\"\n", Some(1), "peak"),
            ("[[peak]]\nname = \"x\"\ndates = [\"2026-11-12\", \"2026-11-11\"]\n", Some(1), "peak.dates"),
            ("[[peak]]\nname = \"x\"\ndays_of_month = [32]\n", Some(1), "peak.days_of_month"),
            ("[weights]\nordinary = \"3\"\n", Some(2), "ordinary"),
        ];
        for (text, line, key) in cases {
            let e = Priorities::load(&Source { file: "priority.toml", text }).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            if let Some(l) = line {
                assert_eq!(e.line, Some(l), "{e}");
            }
        }
    }
}
