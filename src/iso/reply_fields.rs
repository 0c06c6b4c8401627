//! What a dialect says about replies, as data in its spec file (`[reply]`): the fields an
//! issuer's reply must echo unchanged before it is believed (`echo`), and the fields of an
//! issuer's reply that may reach a terminal of the dialect (`from_issuer`), beside those the
//! terminal's own request supplies, and the fields every reply to a terminal of the dialect
//! carries as its request had them beside the fixed list (`from_request`). All are small bit
//! sets, read per authorisation without allocating. Pure; may import the spec's error type only.
//!
//! ```toml
//! [reply]
//! echo = [2, 3, 4, 11, 41, 49]          # the default when [reply] or a key is absent
//! from_issuer = [37, 38, 39, 54, 55]    # the default; 35, 36, 45, 52, 53, 64, 128 refused
//! from_request = [60]                   # default none; the same fields and 39 refused
//! ```
//! May import: crate::iso::error, crate::iso::field_set.

use serde::Deserialize;

use super::error::SpecError;
pub use super::field_set::FieldSet;

/// Track data, PIN data, security control and MACs: never handed from an issuer to a
/// terminal (the switch recomputes a terminal's MAC itself).
pub const NEVER_FROM_ISSUER: FieldSet = FieldSet::of(&[35, 36, 45, 52, 53, 64, 128]);

/// The fields an issuer must echo when the dialect does not say: PAN, processing code,
/// amount, STAN, terminal and currency (each where it was sent).
pub const DEFAULT_ECHO: FieldSet = FieldSet::of(&[2, 3, 4, 11, 41, 49]);

/// The issuer fields a terminal gets when the dialect does not say: the RRN (where the
/// terminal sent none), authorisation code, response code, additional amounts, ICC data.
pub const DEFAULT_FROM_ISSUER: FieldSet = FieldSet::of(&[37, 38, 39, 54, 55]);

/// A dialect's reply rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFields {
    /// Fields an issuer's reply must carry unchanged (by value) where the request had them.
    pub echo: FieldSet,
    /// Fields of an issuer's reply a terminal of this dialect may receive.
    pub from_issuer: FieldSet,
    /// Fields every reply to a terminal of this dialect carries as its request had them.
    pub from_request: FieldSet,
}

impl Default for ReplyFields {
    fn default() -> Self {
        ReplyFields { echo: DEFAULT_ECHO, from_issuer: DEFAULT_FROM_ISSUER, from_request: FieldSet::of(&[]) }
    }
}

/// `[reply]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReply {
    echo: Option<toml::Spanned<Vec<usize>>>,
    from_issuer: Option<toml::Spanned<Vec<usize>>>,
    from_request: Option<toml::Spanned<Vec<usize>>>,
}

impl RawReply {
    /// Check the lists against the dialect's field count; `line_of` turns a byte offset of
    /// `text` into its line for the error.
    pub(super) fn validate(
        self,
        origin: &str,
        limit: usize,
        line_of: impl Fn(usize) -> usize,
    ) -> Result<ReplyFields, SpecError> {
        let mut out = ReplyFields::default();
        let list = |raw: toml::Spanned<Vec<usize>>, key: &'static str| {
            let line = Some(line_of(raw.span().start));
            let err = |message: String| SpecError {
                file: origin.to_string(),
                line,
                field: None,
                key: Some(key),
                message,
            };
            let mut set = FieldSet::default();
            for n in raw.into_inner() {
                if !(2..=limit).contains(&n) {
                    return Err(err(format!("{n} is not a data field number 2-{limit}")));
                }
                if key == "reply.from_issuer" && NEVER_FROM_ISSUER.contains(n) {
                    return Err(err(format!(
                        "field {n} (track, PIN, security control or MAC) never goes from an issuer to a terminal"
                    )));
                }
                if key == "reply.from_request" && (NEVER_FROM_ISSUER.contains(n) || n == 39) {
                    return Err(err(format!(
                        "field {n} (response code, track, PIN, security control or MAC) is never echoed to a terminal"
                    )));
                }
                if key == "reply.echo" && n == 37 {
                    return Err(err(
                        "field 37 is the switch's own RRN toward the issuer; it cannot be an echo check"
                            .into(),
                    ));
                }
                set.insert(n);
            }
            Ok(set)
        };
        if let Some(e) = self.echo {
            out.echo = list(e, "reply.echo")?;
        }
        if let Some(f) = self.from_issuer {
            out.from_issuer = list(f, "reply.from_issuer")?;
        }
        if let Some(f) = self.from_request {
            out.from_request = list(f, "reply.from_request")?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_they_are_given() {
        let s = FieldSet::of(&[2, 64, 65, 128, 192, 0, 193]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![2, 64, 65, 128, 192]);
        assert!(!s.contains(0) && !s.contains(193) && !s.contains(3));
        assert!(NEVER_FROM_ISSUER.iter().all(|n| !DEFAULT_FROM_ISSUER.contains(n)));
    }

    const HEAD: &str = "name = \"t\"\nsource = \"test\"\n[mti]\nencoding = \"ascii\"\n[bitmap]\nencoding = \"hex\"\n[fields]\n2 = { name = \"PAN\", class = \"n\", length = \"ll\", max = 19 }\n[reply]\n";

    #[test]
    fn reply_rules_load_with_defaults_and_refuse_what_must_not_pass() {
        use crate::iso::Spec;
        let s = Spec::from_toml("t.toml", HEAD).unwrap();
        assert_eq!(s.reply, ReplyFields::default());
        let s = Spec::from_toml("t.toml", &format!("{HEAD}echo = [4, 11]\n")).unwrap();
        assert_eq!(s.reply.echo.iter().collect::<Vec<_>>(), [4, 11]);
        assert_eq!(s.reply.from_issuer, DEFAULT_FROM_ISSUER);
        for (line, key) in [
            ("from_issuer = [38, 39, 52]", "reply.from_issuer"),
            ("from_issuer = [35]", "reply.from_issuer"),
            ("from_issuer = [128]", "reply.from_issuer"),
            ("echo = [4, 37]", "reply.echo"),
            ("from_request = [52]", "reply.from_request"),
            ("from_request = [39]", "reply.from_request"),
            ("echo = [1]", "reply.echo"),
            ("echo = [129]", "reply.echo"),
        ] {
            let e = Spec::from_toml("t.toml", &format!("{HEAD}{line}\n")).unwrap_err();
            assert_eq!((e.key, e.line), (Some(key), Some(10)), "{line}: {e}");
        }
        for (name, text) in crate::iso::spec::SHIPPED {
            let s = Spec::from_toml(name, text).unwrap();
            assert!(
                s.reply.echo.contains(4) && s.reply.echo.contains(11) && s.reply.from_issuer.contains(38),
                "{name}"
            );
        }
    }
}
