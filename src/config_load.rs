//! Reading a configuration: TOML text to a checked `Config` (`Config::load`, `parse`,
//! `embedded`), each error located as `file:line:column: key: message`, and the stand-in
//! policy file. The checks beyond syntax that need no cross-reference live in `sanity`.
//! May import: crate::config, crate::config::sanity, crate::iso.

use std::path::Path;

use serde::Deserialize;

use super::sanity;
use super::{Config, ConfigError, DEFAULT_TOML, StandInConfig};
use crate::iso::spec;

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Config {
        // The embedded text is part of the program and covered by a test.
        match Config::parse("<embedded>", DEFAULT_TOML) {
            Ok(c) => c,
            Err(e) => unreachable!("embedded configuration: {e}"),
        }
    }

    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::parse(&file, &text)
    }

    /// Parse and check configuration text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        cfg.check(file, text)?;
        Ok(cfg)
    }

    fn check(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        sanity::check_empty(file, text)?;
        let bad = |key: &str, value: &str, message: String| {
            let (line, column) = locate(text, key, value);
            ConfigError::Invalid { file: file.to_string(), line, column, key: key.to_string(), message }
        };
        for l in &self.listeners {
            if spec::shipped(&l.spec).is_none() && !Path::new(&l.spec).exists() {
                return Err(bad("spec", &l.spec, format!("unknown spec `{}`", l.spec)));
            }
            if l.mac.is_some() && l.keys.is_none() {
                return Err(bad("mac", "", "MAC verification needs a key file (keys = ...)".into()));
            }
            if l.max_connections == Some(0) {
                return Err(bad("max_connections", "", "must be at least 1".into()));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for i in &self.issuers {
            if names.contains(&i.name.as_str()) {
                return Err(bad("name", &i.name, format!("issuer `{}` defined twice", i.name)));
            }
            names.push(&i.name);
            if i.links.is_empty() {
                return Err(bad("name", &i.name, format!("issuer `{}` has no [[issuer.link]]", i.name)));
            }
            if i.match_key.is_empty() {
                return Err(bad("match_key", "", "needs at least one field".into()));
            }
            for k in &i.match_key {
                match k.parse::<usize>() {
                    Ok(n) if (2..=128).contains(&n) => {}
                    _ => return Err(bad("match_key", k, format!("`{k}` is not a field number 2-128"))),
                }
            }
            for link in &i.links {
                if spec::shipped(&link.spec).is_none() && !Path::new(&link.spec).exists() {
                    return Err(bad("spec", &link.spec, format!("unknown spec `{}`", link.spec)));
                }
                if link.window == 0 {
                    return Err(bad("window", "", "must be at least 1".into()));
                }
                if link.deadline_ms == 0 {
                    return Err(bad("deadline_ms", "", "must be at least 1".into()));
                }
            }
        }
        for r in &self.routes {
            if r.prefix.is_empty() || !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("prefix", &r.prefix, format!("`{}` is not a digit prefix", r.prefix)));
            }
            if !names.contains(&r.issuer.as_str()) {
                return Err(bad("issuer", &r.issuer, format!("no issuer named `{}`", r.issuer)));
            }
        }
        if let Some(d) = &self.default_issuer
            && !names.contains(&d.as_str())
        {
            return Err(bad("default_issuer", d, format!("no issuer named `{d}`")));
        }
        if let Some(addr) = self.admin
            && self.admin_token.as_deref().is_none_or(|t| t.len() < 16)
        {
            let (line, column) = sanity::at(text, &[("admin_token", ""), ("admin", "")]);
            let mut message = "the admin API needs a bearer token of at least 16 characters".to_string();
            if !addr.ip().is_loopback() {
                message.push_str(&format!(" (and {addr} is reachable from other hosts)"));
            }
            let (file, key) = (file.to_string(), "admin_token".to_string());
            return Err(ConfigError::Invalid { file, line, column, key, message });
        }
        if !(1..=60_000).contains(&self.journal_budget_ms) {
            let v = self.journal_budget_ms.to_string();
            return Err(bad("journal_budget_ms", &v, "must be between 1 and 60000 (milliseconds)".into()));
        }
        if self.journal_sync != "full" && self.journal_sync != "normal" {
            return Err(bad("journal_sync", &self.journal_sync, "must be \"full\" or \"normal\"".into()));
        }
        if let Some(k) = &self.pan_key
            && (k.len() < 32 || k.len() % 2 != 0 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("pan_key", "", "must be at least 32 hex characters (16 bytes)".into()));
        }
        if let Some(dir) = &self.rules
            && !dir.is_dir()
        {
            return Err(bad("rules", "", format!("{} is not a directory", dir.display())));
        }
        if let Some(k) = &self.saf.key
            && (k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            // The value itself is a secret: the message does not repeat it.
            return Err(bad("key", "", "must be 64 hex digits (an AES-256 key)".into()));
        }
        if self.saf.retry_min_ms == 0 || self.saf.retry_max_ms < self.saf.retry_min_ms {
            let (line, column) = sanity::at(text, &[("retry_max_ms", ""), ("retry_min_ms", "")]);
            let (file, key) = (file.to_string(), "retry_max_ms".to_string());
            let message = "needs 0 < retry_min_ms <= retry_max_ms".to_string();
            return Err(ConfigError::Invalid { file, line, column, key, message });
        }
        check_standin(&self.standin, &names, &bad)?;
        if !(10..=3_600_000).contains(&self.saf.indoubt_rotate_ms) {
            let v = self.saf.indoubt_rotate_ms.to_string();
            return Err(bad("indoubt_rotate_ms", &v, "must be between 10 and 3600000".into()));
        }
        sanity::check_retention(self, file, text)?;
        sanity::check(self, file, text)
    }

    /// Settings that work but deserve a word at start (one line each).
    pub fn warnings(&self) -> Vec<String> {
        sanity::warnings(self)
    }
}

/// A TOML parse or type error of `text`, located: file, line, column and key.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            // A type error's span is the value: name the key written before it.
            let key = key_before(text, span.start)
                .unwrap_or_else(|| text.get(span.clone()).unwrap_or("").trim().trim_matches('"').to_string());
            (l, c, key)
        }
        None => (1, 1, String::new()),
    };
    let key = if key.is_empty() || key.len() > 60 { "(document)".to_string() } else { key };
    ConfigError::Invalid { file: file.to_string(), line, column, key, message: e.message().to_string() }
}

/// The `[[standin]]` tables of a rule directory's `standin.toml`: each replaces the
/// switch configuration's policy for its issuer, and they reload with the rules. Checked
/// as in the configuration (`issuers`: the configured issuer names).
pub fn parse_standin_file(
    file: &str,
    text: &str,
    issuers: &[&str],
) -> Result<Vec<StandInConfig>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StandInFile {
        #[serde(default)]
        standin: Vec<StandInConfig>,
    }
    let parsed: StandInFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let bad = |key: &str, value: &str, message: String| {
        let (line, column) = locate(text, key, value);
        ConfigError::Invalid { file: file.to_string(), line, column, key: key.to_string(), message }
    };
    check_standin(&parsed.standin, issuers, &bad)?;
    Ok(parsed.standin)
}

/// Every `[[standin]]` names a configured issuer once, with values it can work with.
fn check_standin(
    list: &[StandInConfig],
    issuers: &[&str],
    bad: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    for s in list {
        if !issuers.contains(&s.issuer.as_str()) {
            return Err(bad("issuer", &s.issuer, format!("[[standin]]: no issuer named `{}`", s.issuer)));
        }
        if seen.contains(&s.issuer.as_str()) {
            return Err(bad("issuer", &s.issuer, format!("[[standin]] for `{}` given twice", s.issuer)));
        }
        seen.push(&s.issuer);
        if s.max_amount == 0 || i64::try_from(s.max_amount).is_err() {
            return Err(bad("max_amount", "", "must be a positive amount in minor units".into()));
        }
        for w in &s.when {
            if !matches!(w.as_str(), "down" | "timeout") {
                return Err(bad("when", w, format!("`{w}`: stand in when \"down\" or \"timeout\"")));
            }
        }
        for t in &s.types {
            if !matches!(t.as_str(), "purchase" | "preauth") {
                return Err(bad(
                    "types",
                    t,
                    format!("`{t}`: only \"purchase\" and \"preauth\" can be stood in for"),
                ));
            }
        }
        for c in &s.card_types {
            if !matches!(c.as_str(), "debit" | "credit" | "qr") {
                return Err(bad("card_types", c, format!("`{c}`: card types are debit, credit, qr")));
            }
        }
        for m in s.mcc.iter().chain(&s.exclude_mcc) {
            if !digits(m, 4, 4) {
                return Err(bad("mcc", m, format!("`{m}` is not a 4-digit merchant category")));
            }
        }
        for n in &s.never {
            if !digits(n, 1, 19) {
                // May be a card number: not repeated in the message.
                return Err(bad("never", "", "entries are BINs or card numbers: 1 to 19 digits".into()));
            }
        }
        for h in &s.never_hash {
            if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("never_hash", h, "a PAN hash is 32 hex digits (journal pan_hash)".into()));
            }
        }
        if let Some(m) = &s.advice_mti
            && m != "0120"
            && m != "0220"
        {
            return Err(bad("advice_mti", m, "must be \"0120\" or \"0220\"".into()));
        }
        let amounts = [s.card_daily_amount, s.merchant_daily_amount, s.max_exposure];
        if amounts.iter().flatten().any(|&a| a == 0 || i64::try_from(a).is_err())
            || s.card_daily_count == Some(0)
        {
            return Err(bad("issuer", &s.issuer, "[[standin]] limits must be positive".into()));
        }
    }
    Ok(())
}

/// The dotted key whose value starts at `offset` (`issuer.link.window` for `window = "big"`
/// under `[[issuer.link]]`, `listener.frame.length` for an inline table), when the line
/// reads `key = ` up to there; `None` when `offset` is at a key, not a value.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let prefix = before.get(line_start..)?;
    let ident = |s: &str| {
        let s = s.trim().trim_matches('"');
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
            .then(|| s.to_string())
    };
    // Every `name =` on the line before the value: an inline table nests its keys.
    let mut keys = Vec::new();
    let mut rest = prefix;
    while let Some(eq) = rest.find('=') {
        let name = rest.get(..eq)?.rsplit(['{', ',']).next()?;
        keys.push(ident(name)?);
        rest = rest.get(eq + 1..)?;
    }
    if keys.is_empty()
        || !rest.trim().trim_start_matches('{').trim().is_empty() && !rest.trim().ends_with('[')
    {
        return None;
    }
    // The table the line is in: the last `[name]` or `[[name]]` header above it.
    let table = before.get(..line_start)?.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    let table = table.map(|h| h.trim_matches(['[', ']']).trim().to_string()).filter(|h| !h.is_empty());
    Some(table.into_iter().chain(keys).collect::<Vec<_>>().join("."))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, column)
}

/// The line and column where `key` is given `value` (or just `key` when value is empty);
/// the start of the file when the key is not written in it.
fn locate(text: &str, key: &str, value: &str) -> (usize, usize) {
    sanity::at(text, &[(key, value)])
}
