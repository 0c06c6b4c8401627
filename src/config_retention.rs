//! `[retention]`: the switch exports settled business days of its journal to a file per
//! day and purges them, once a day, beside the running writer (see
//! `journal::retention`). Absent: the journal keeps everything.
//!
//! ```toml
//! [retention]
//! export_dir = "/var/lib/isoswitch/exports"  # one isoswitch-journal-YYYYMMDD.jsonl per day
//! keep_days = 7                 # complete days kept before today (estate's time zone); >= 1
//! at = "03:30"                  # local time of the daily pass (estate's time zone)
//! first_run_after_s = 300       # also once this long after start (a switch restarted daily)
//! batch_rows = 500              # rows deleted per transaction
//! pause_ms = 100                # rest after each batch (at least 3x what it took)
//! ```
//! The checks of its values are with the configuration's other checks (`sanity`).
//! May import: nothing.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub export_dir: PathBuf,
    pub keep_days: u32,
    #[serde(default = "default_at")]
    pub at: String,
    #[serde(default = "default_first_run")]
    pub first_run_after_s: u64,
    #[serde(default = "default_batch_rows")]
    pub batch_rows: u32,
    #[serde(default = "default_pause_ms")]
    pub pause_ms: u64,
}

fn default_at() -> String {
    "03:30".into()
}
fn default_first_run() -> u64 {
    300
}
fn default_batch_rows() -> u32 {
    500
}
fn default_pause_ms() -> u64 {
    100
}

impl RetentionConfig {
    /// Minutes past local midnight of `at` (checked at load).
    pub fn at_minute(&self) -> Option<u32> {
        parse_hhmm(&self.at)
    }
}

/// `HH:MM` as minutes past midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    const BASE: &str = "journal = \"j.db\"\n[[listener]]\naddr = \"127.0.0.1:0\"\n[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n";

    #[test]
    fn a_retention_table_parses_with_its_defaults() {
        let text = format!("{BASE}[retention]\nexport_dir = \"/x\"\nkeep_days = 7\n");
        let c = Config::parse("s.toml", &text).unwrap();
        let r = c.retention.unwrap();
        assert_eq!((r.keep_days, r.at_minute(), r.batch_rows, r.pause_ms), (7, Some(210), 500, 100));
        assert!(Config::parse("s.toml", BASE).unwrap().retention.is_none());
    }

    #[test]
    fn values_that_cannot_work_are_refused_with_their_line_and_key() {
        let cases = [
            ("export_dir = \"/x\"\nkeep_days = 0\n", "retention.keep_days", 10),
            ("export_dir = \"/x\"\nkeep_days = 2\nat = \"25:00\"\n", "retention.at", 11),
            ("export_dir = \"/x\"\nkeep_days = 2\nbatch_rows = 0\n", "retention.batch_rows", 11),
            ("export_dir = \"\"\nkeep_days = 2\n", "retention.export_dir", 9),
        ];
        for (table, key, line) in cases {
            let text = format!("{BASE}[retention]\n{table}");
            match Config::parse("s.toml", &text) {
                Err(ConfigError::Invalid { key: k, line: l, .. }) => {
                    assert_eq!((k.as_str(), l), (key, line), "{table}")
                }
                other => panic!("{table}: {other:?}"),
            }
        }
        let text =
            format!("{BASE}[repeats]\nwindow_s = 200000\n[retention]\nexport_dir = \"/x\"\nkeep_days = 2\n");
        assert!(matches!(Config::parse("s.toml", &text), Err(ConfigError::Invalid { .. })));
        let no_journal = BASE.replace("journal = \"j.db\"\n", "");
        let text = format!("{no_journal}[retention]\nexport_dir = \"/x\"\nkeep_days = 2\n");
        assert!(matches!(Config::parse("s.toml", &text), Err(ConfigError::Invalid { .. })));
        assert_eq!(parse_hhmm("03:30"), Some(210));
        for bad in ["3:30", "24:00", "12:60", "1230", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }
}
