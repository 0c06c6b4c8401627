//! The configuration's sanity checks beyond its syntax: values that parse but cannot work
//! (a frame size the length header cannot carry, a zero timeout that would close every
//! connection at once, an empty file) are refused with `file:line:column: key: message`,
//! and risky ones that work are returned as one warning line each. Also where a key is
//! written in the text, for those messages.
//! May import: crate::config, crate::frame.

use super::{Config, ConfigError};
use crate::frame::FrameConfig;

/// Bytes of the smallest message worth framing (MTI, bitmap, a STAN and a little more);
/// a `max_frame` below this (plus TPDU and header) refuses every real request.
pub const MIN_MESSAGE: usize = 32;

/// The first place in `text` where one of `candidates` (key, value) is written, tried in
/// order; the start of the file when none is.
pub(super) fn at(text: &str, candidates: &[(&str, &str)]) -> (usize, usize) {
    candidates.iter().find_map(|(k, v)| find(text, k, v)).unwrap_or((1, 1))
}

/// Where `key` is given `value`: the first `key = value` whose value is exactly `value`
/// (quotes aside), else whose line contains it, else any `key = ...`; a key inside an
/// inline table (`frame = { max_frame = 0 }`) counts. 1-based line and column.
pub(super) fn find(text: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    // (line, column, the value as written, the rest of the line)
    let mut seen: Vec<(usize, usize, &str, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        for (at, _) in code.match_indices(key) {
            let before = code.get(..at).and_then(|b| b.chars().next_back());
            if !before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ',') {
                continue;
            }
            let rest = code.get(at + key.len()..).unwrap_or("");
            let Some(after) = rest.trim_start().strip_prefix('=') else { continue };
            let written = after.split([',', '}']).next().unwrap_or("").trim().trim_matches('"');
            seen.push((i + 1, at + 1, written, rest));
        }
    }
    let exact = seen.iter().find(|s| !value.is_empty() && s.2 == value);
    let contains = || seen.iter().find(|s| !value.is_empty() && s.3.contains(value));
    exact.or_else(contains).or_else(|| seen.first()).map(|s| (s.0, s.1))
}

/// An empty file (nothing but blanks and comments) is refused: run on the embedded
/// default by leaving `--config` out, not by an empty file that may be a failed deploy.
pub(super) fn check_empty(file: &str, text: &str) -> Result<(), ConfigError> {
    let empty = text.lines().all(|l| l.split('#').next().unwrap_or("").trim().is_empty());
    if !empty {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        file: file.to_string(),
        line: 1,
        column: 1,
        key: "(document)".to_string(),
        message: "the file is empty: no listener, no issuer (omit --config to run on the embedded default)"
            .to_string(),
    })
}

/// The checks that refuse values which parse but cannot work.
pub(super) fn check(cfg: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    let refuse = |candidates: &[(&str, &str)], message: String| {
        let (line, column) = at(text, candidates);
        let key = candidates.first().map_or("(document)", |c| c.0).to_string();
        Err(ConfigError::Invalid { file: file.to_string(), line, column, key, message })
    };
    let t = &cfg.timeouts;
    let zero_timeouts = [
        ("connect_ms", t.connect_ms),
        ("handshake_ms", t.handshake_ms),
        ("write_ms", t.write_ms),
        ("drain_ms", t.drain_ms),
        ("reconnect_max_ms", t.reconnect_max_ms),
        ("down_reminder_ms", t.down_reminder_ms),
    ];
    for (key, v) in zero_timeouts {
        if v == 0 {
            return refuse(&[(key, "0")], "must be at least 1 (0 would end every attempt at once)".into());
        }
    }
    for l in &cfg.listeners {
        frame(&l.frame).map_or(Ok(()), |(k, m)| {
            refuse(&[(k, &value_of(&l.frame, k)), ("header_len", ""), ("frame", "")], m)
        })?;
        if l.idle_timeout_ms == 0 {
            return refuse(
                &[("idle_timeout_ms", "0")],
                "must be at least 1 (0 would close every terminal at once)".into(),
            );
        }
        if l.max_inflight_per_connection == 0 {
            return refuse(&[("max_inflight_per_connection", "0")], "must be at least 1".into());
        }
    }
    for link in cfg.issuers.iter().flat_map(|i| &i.links) {
        frame(&link.frame).map_or(Ok(()), |(k, m)| {
            refuse(&[(k, &value_of(&link.frame, k)), ("header_len", ""), ("frame", "")], m)
        })?;
        if link.echo_interval_ms == 0 {
            return refuse(
                &[("echo_interval_ms", "0")],
                "must be at least 1 (0 would echo without pause)".into(),
            );
        }
    }
    let saf = &cfg.saf;
    let zero_saf = [
        ("late_memory_ms", saf.late_memory_ms),
        ("late_capacity", saf.late_capacity as u64),
        ("batch", saf.batch as u64),
    ];
    for (key, v) in zero_saf {
        if v == 0 {
            return refuse(&[(key, "0")], "must be at least 1".into());
        }
    }
    if cfg.ops.max_connections == 0 {
        return refuse(&[("max_connections", "0")], "must be at least 1".into());
    }
    if cfg.ops.read_timeout_ms == 0 {
        return refuse(
            &[("read_timeout_ms", "0")],
            "must be at least 1 (0 would close every request)".into(),
        );
    }
    Ok(())
}

/// What is wrong with a frame configuration: (key, message), or `None` when it can work.
fn frame(f: &FrameConfig) -> Option<(&'static str, String)> {
    let own = if f.length_includes_header { f.length.size() } else { 0 };
    let largest = f.length.largest().saturating_sub(own);
    if f.max_frame > largest {
        return Some((
            "max_frame",
            format!(
                "{} bytes cannot be carried by a {} length header (at most {largest})",
                f.max_frame, f.length
            ),
        ));
    }
    let smallest = f.prelude().saturating_add(MIN_MESSAGE);
    if smallest > largest {
        return Some((
            "header_len",
            format!(
                "a header of {} bytes leaves no room for a message under a {} length header",
                f.header_len, f.length
            ),
        ));
    }
    if f.max_frame < smallest {
        return Some((
            "max_frame",
            format!(
                "{} bytes is below the smallest message with its TPDU and header ({smallest})",
                f.max_frame
            ),
        ));
    }
    None
}

/// The value of a frame key as it would be written, to find its line.
fn value_of(f: &FrameConfig, key: &str) -> String {
    match key {
        "header_len" => f.header_len.to_string(),
        _ => f.max_frame.to_string(),
    }
}

/// Settings that work but deserve one line at start.
pub(super) fn warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(addr) = cfg.admin
        && !addr.ip().is_loopback()
    {
        out.push(format!(
            "admin API on {addr}, reachable from other hosts: only its bearer token protects suspend, \
             reload and the transaction look-ups; prefer a loopback address"
        ));
    }
    out
}

/// Values of `[retention]` that parse but cannot work.
pub(super) fn check_retention(cfg: &Config, file: &str, text: &str) -> Result<(), ConfigError> {
    let Some(r) = &cfg.retention else { return Ok(()) };
    let refuse = |key: &str, value: &str, message: String| {
        let (line, column) = at(text, &[(key, value), ("retention", "")]);
        Err(ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            key: format!("retention.{key}"),
            message,
        })
    };
    let no_file = cfg.journal.as_ref().is_none_or(|p| p.as_os_str() == "off");
    if no_file && cfg.journal_url.is_none() {
        return refuse("export_dir", "", "retention needs a journal (journal or journal_url)".into());
    }
    if r.export_dir.as_os_str().is_empty() {
        return refuse("export_dir", "", "must name a directory".into());
    }
    if r.keep_days == 0 {
        return refuse(
            "keep_days",
            "0",
            "must be at least 1 (today and yesterday stay: the retransmission window and the default settlement day)"
                .into(),
        );
    }
    if let Some(w) = cfg.repeats.window_s
        && w > u64::from(r.keep_days) * 86_400
    {
        return refuse(
            "keep_days",
            &r.keep_days.to_string(),
            format!(
                "keeps less than the [repeats] window_s of {w} s: the keys of kept requests would be purged"
            ),
        );
    }
    if r.at_minute().is_none() {
        return refuse("at", &r.at, format!("`{}` is not a time of day as HH:MM", r.at));
    }
    if !(1..=100_000).contains(&r.batch_rows) {
        return refuse("batch_rows", &r.batch_rows.to_string(), "must be between 1 and 100000".into());
    }
    if r.pause_ms > 60_000 {
        return refuse("pause_ms", &r.pause_ms.to_string(), "must be at most 60000".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &str = "[[listener]]\naddr = \"127.0.0.1:1\"\n";
    const I: &str = "[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:2\"\n";

    #[test]
    fn values_that_cannot_work_are_refused_with_their_location() {
        // (text, line, column, key, part of the message)
        let cases: Vec<(String, usize, usize, &str, &str)> = vec![
            (format!("{L}frame = {{ max_frame = 0 }}\n"), 3, 11, "max_frame", "below the smallest"),
            (
                format!("{L}frame = {{ max_frame = 1000000 }}\n"),
                3,
                11,
                "max_frame",
                "binary2 length header (at most 65535)",
            ),
            (
                format!("{L}frame = {{ length = \"bcd2\", max_frame = 10000 }}\n"),
                3,
                28,
                "max_frame",
                "bcd2 length header (at most 9999)",
            ),
            (
                format!("{L}frame = {{ length = \"ascii4\", max_frame = 10000 }}\n"),
                3,
                30,
                "max_frame",
                "(at most 9999)",
            ),
            (
                format!("{L}frame = {{ length_includes_header = true, max_frame = 65535 }}\n"),
                3,
                42,
                "max_frame",
                "(at most 65533)",
            ),
            (format!("{L}frame = {{ tpdu = true, header_len = 70000 }}\n"), 3, 24, "header_len", "no room"),
            (
                format!("{L}frame = {{ tpdu = true, header_len = 9000 }}\n"),
                3,
                24,
                "max_frame",
                "below the smallest",
            ),
            (format!("{I}frame = {{ max_frame = 70000 }}\n"), 5, 11, "max_frame", "at most 65535"),
            (
                format!("{L}idle_timeout_ms = 600\n{L}idle_timeout_ms = 0\n"),
                6,
                1,
                "idle_timeout_ms",
                "close every terminal",
            ),
            (
                format!("{L}max_inflight_per_connection = 0\n"),
                3,
                1,
                "max_inflight_per_connection",
                "at least 1",
            ),
            ("[timeouts]\nconnect_ms = 0\n".into(), 2, 1, "connect_ms", "at least 1"),
            ("[timeouts]\nhandshake_ms = 0\n".into(), 2, 1, "handshake_ms", "at least 1"),
            ("[timeouts]\nwrite_ms = 10\ndrain_ms = 0\n".into(), 3, 1, "drain_ms", "at least 1"),
            ("[timeouts]\n  write_ms = 0\n".into(), 2, 3, "write_ms", "at least 1"),
            ("[timeouts]\nreconnect_max_ms = 0\n".into(), 2, 1, "reconnect_max_ms", "at least 1"),
            ("[timeouts]\ndown_reminder_ms = 0\n".into(), 2, 1, "down_reminder_ms", "at least 1"),
            (format!("{I}deadline_ms = 0\n"), 5, 1, "deadline_ms", "at least 1"),
            (format!("{I}window = 0\n"), 5, 1, "window", "at least 1"),
            (format!("{I}echo_interval_ms = 0\n"), 5, 1, "echo_interval_ms", "without pause"),
            ("[saf]\nbatch = 0\n".into(), 2, 1, "batch", "at least 1"),
            ("[saf]\nlate_capacity = 0\n".into(), 2, 1, "late_capacity", "at least 1"),
            ("[saf]\nlate_memory_ms = 0\n".into(), 2, 1, "late_memory_ms", "at least 1"),
            ("[saf]\nretry_min_ms = 0\n".into(), 2, 1, "retry_max_ms", "retry_min_ms <= retry_max_ms"),
            (
                format!("{L}max_connections = 5\n[ops]\nmax_connections = 0\n"),
                5,
                1,
                "max_connections",
                "at least 1",
            ),
            ("[ops]\nread_timeout_ms = 0\n".into(), 2, 1, "read_timeout_ms", "at least 1"),
            (String::new(), 1, 1, "(document)", "the file is empty"),
            ("# nothing but a comment\n\n   \n".into(), 1, 1, "(document)", "the file is empty"),
            (
                "metrics = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:9584\"\n".into(),
                2,
                1,
                "admin_token",
                "bearer token",
            ),
            ("admin = \"0.0.0.0:9584\"\n".into(), 1, 1, "admin_token", "reachable from other hosts"),
            (
                "admin = \"0.0.0.0:9584\"\nadmin_token = \"short\"\n".into(),
                2,
                1,
                "admin_token",
                "at least 16 characters",
            ),
        ];
        for (text, line, column, key, part) in &cases {
            let e = Config::parse("bad.toml", text).expect_err(text).to_string();
            let want = format!("bad.toml:{line}:{column}: {key}: ");
            assert!(e.starts_with(&want), "{text:?}\n  got  {e}\n  want {want}...");
            assert!(e.contains(part), "{text:?}\n  got {e}\n  want it to say {part:?}");
        }
    }

    #[test]
    fn sane_values_pass() {
        let cases = [
            format!("{L}frame = {{ max_frame = 65535 }}\n"),
            format!("{L}frame = {{ length = \"bcd2\", max_frame = 9999 }}\n"),
            format!("{L}frame = {{ tpdu = true, header_len = 6, max_frame = 43 }}\n"),
            format!("{L}idle_timeout_ms = 1\n{I}echo_interval_ms = 1\n"),
            "[ops]\nmax_connections = 1\nread_timeout_ms = 1\n".into(),
        ];
        for text in &cases {
            assert!(
                Config::parse("ok.toml", text).is_ok(),
                "{text:?}: {:?}",
                Config::parse("ok.toml", text).err()
            );
        }
    }

    #[test]
    fn an_admin_api_off_loopback_with_a_token_is_warned_about() {
        let token = "admin_token = \"0123456789abcdef\"\n";
        let open = Config::parse("t.toml", &format!("admin = \"0.0.0.0:9584\"\n{token}")).unwrap();
        let w = open.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("0.0.0.0:9584") && w[0].contains("other hosts"), "{w:?}");
        let local = Config::parse("t.toml", &format!("admin = \"127.0.0.1:9584\"\n{token}")).unwrap();
        assert!(local.warnings().is_empty());
    }

    #[test]
    fn keys_are_found_where_they_are_written() {
        let text =
            "a = 1\n[x]\nframe = { max_frame = 10, length = \"bcd2\" } # max_frame = 3\nmax_frame = 10\n";
        assert_eq!(find(text, "max_frame", "10"), Some((3, 11)));
        assert_eq!(find(text, "max_frame", "3"), Some((3, 11)), "comments are not values");
        assert_eq!(find(text, "length", "bcd2"), Some((3, 27)));
        assert_eq!(find(text, "frame", ""), Some((3, 1)));
        assert_eq!(find(text, "nope", ""), None);
        assert_eq!(at(text, &[("nope", ""), ("a", "")]), (1, 1));
    }
}
