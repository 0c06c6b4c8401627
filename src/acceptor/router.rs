//! The minimal router: network management is answered locally, a PAN prefix picks the
//! issuer (longest prefix wins), a default issuer takes the rest. Behind the small
//! `Router` trait so that the full routing core can take its place. Pure and
//! synchronous. May import: the codec and config.

use crate::config::Config;
use crate::iso::Message;

/// What to do with one terminal request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward to the issuer at this index of `Config::issuers`.
    Forward { issuer: usize },
    /// Answer at once with this response code.
    Decline([u8; 2]),
    /// Answer locally with 00 (echo, sign-on).
    Local,
}

/// Decides where a request goes; must be cheap and never block.
pub trait Router: Send + Sync + 'static {
    fn decide(&self, msg: &Message) -> Decision;
}

/// PAN prefix → issuer, a default issuer, 08xx answered locally.
#[derive(Debug, Clone)]
pub struct PrefixRouter {
    /// (prefix, issuer index), longest prefixes first.
    routes: Vec<(String, usize)>,
    default: Option<usize>,
}

impl PrefixRouter {
    /// Routes from the configuration (names already checked by `Config::parse`).
    pub fn from_config(cfg: &Config) -> PrefixRouter {
        let index = |name: &str| cfg.issuers.iter().position(|i| i.name == name);
        let mut routes: Vec<(String, usize)> =
            cfg.routes.iter().filter_map(|r| Some((r.prefix.clone(), index(&r.issuer)?))).collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let default = match &cfg.default_issuer {
            Some(d) => index(d),
            None if cfg.issuers.len() == 1 => Some(0),
            None => None,
        };
        PrefixRouter { routes, default }
    }
}

/// The PAN: field 2, else the digits of track 2 before its separator.
fn pan_digits(msg: &Message) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(p) = msg.pan() {
        return Some(p);
    }
    let t2 = msg.text(35)?;
    let end = t2.find(['=', 'D', 'd']).unwrap_or(t2.len());
    Some(std::borrow::Cow::Owned(t2.get(..end)?.to_string()))
}

impl Router for PrefixRouter {
    fn decide(&self, msg: &Message) -> Decision {
        if msg.mti().starts_with("08") {
            return Decision::Local;
        }
        let Some(pan) = pan_digits(msg) else {
            return match self.default {
                Some(issuer) => Decision::Forward { issuer },
                None => Decision::Decline(*b"14"),
            };
        };
        for (prefix, issuer) in &self.routes {
            if pan.starts_with(prefix.as_str()) {
                return Decision::Forward { issuer: *issuer };
            }
        }
        match self.default {
            Some(issuer) => Decision::Forward { issuer },
            None => Decision::Decline(*b"14"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec;

    #[test]
    fn longest_prefix_then_default_then_local() {
        let text = r#"
default_issuer = "b"
[[issuer]]
name = "a"
[[issuer.link]]
addr = "127.0.0.1:1"
[[issuer]]
name = "b"
[[issuer.link]]
addr = "127.0.0.1:2"
[[route]]
prefix = "4"
issuer = "b"
[[route]]
prefix = "41"
issuer = "a"
"#;
        let r = PrefixRouter::from_config(&Config::parse("t", text).unwrap());
        let s = spec::shipped("iso87ascii").unwrap();
        let msg = |mti: &str, pan: &str| {
            let mut m = Message::new(s.clone(), mti).unwrap();
            m.set(2, pan).unwrap();
            m
        };
        assert_eq!(r.decide(&msg("0200", "4111111111111111")), Decision::Forward { issuer: 0 });
        assert_eq!(r.decide(&msg("0200", "4211111111111111")), Decision::Forward { issuer: 1 });
        assert_eq!(r.decide(&msg("0200", "5211111111111111")), Decision::Forward { issuer: 1 });
        assert_eq!(r.decide(&msg("0800", "5211111111111111")), Decision::Local);
        let mut none = PrefixRouter::from_config(&Config::parse("t", text).unwrap());
        none.default = None;
        assert_eq!(none.decide(&msg("0200", "5211111111111111")), Decision::Decline(*b"14"));
    }
}
