//! The routing core's one error type: a rule file refused at load or reload, naming the
//! file, the line and the key, plus the TOML helpers every loader shares (spans to lines).
//! May import: nothing.

use std::fmt;

use serde::de::DeserializeOwned;

/// A rule file refused, with where. The running rules stay in force when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// File name (or the origin given for embedded text).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key at fault, when known (`terminal.status`, `route.low`, ...).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The text of one rule file and its name, so that validation errors can name lines.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// Parse the whole file; a syntax or type error names its line and, when the line
    /// reads `key = value`, the key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, RuleError> {
        toml::from_str(self.text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(s) => (Some(self.line_of(s.start)), self.key_at(s.start)),
                None => (None, None),
            };
            RuleError { file: self.file.to_string(), line, key, message: e.message().to_string() }
        })
    }

    /// An error at a byte offset (from a `toml::Spanned`).
    pub fn err(&self, offset: usize, key: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            file: self.file.to_string(),
            line: Some(self.line_of(offset)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// An error about the file as a whole.
    pub fn whole(&self, key: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            file: self.file.to_string(),
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    pub fn line_of(&self, offset: usize) -> usize {
        self.text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
    }

    /// The key written before `=` on the line holding `offset`, if that line has one.
    fn key_at(&self, offset: usize) -> Option<String> {
        let start = self.text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text.get(start..)?.lines().next()?;
        let (k, _) = line.split_once('=')?;
        let k = k.trim().trim_start_matches('{').trim();
        let k = k.rsplit([',', '{']).next().unwrap_or(k).trim();
        (!k.is_empty() && !k.starts_with('#')).then(|| k.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        b: String,
    }

    #[test]
    fn type_errors_name_line_and_key() {
        let s = Source { file: "x.toml", text: "a = 1\nb = 2\n" };
        let e = s.parse::<T>().unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("b")), "{e}");
        assert!(e.to_string().starts_with("x.toml:2: key `b`"), "{e}");
    }
}
