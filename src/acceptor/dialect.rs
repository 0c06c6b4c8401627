//! A listener's dialect: which estate rules its terminals follow beyond plain ISO 8583.
//! Decided once, when the listener starts (from its `dialect` setting, else from its
//! spec), and read by the handlers as a field of the listener, never by comparing spec
//! names on the request path.
//! May import: config, the codec's `Spec`.

use crate::config::DialectName;
use crate::iso::Spec;

/// The estate rules a listener's terminals follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Plain ISO 8583: voids, refunds and completions go to the issuer as they come;
    /// batch settlement compares the totals of fields 74 to 89.
    Generic,
    /// UnionPay-style POS estates: batches named by 60.2 (a request in a batch already
    /// settled is refused with 77), voids, refunds and completions matched to their
    /// original through fields 37, 38 and 61 (25 when there is none), settlement totals
    /// in field 48 and answered there.
    UnionPay,
}

impl Dialect {
    /// The dialect of a listener: the one configured, else the one its spec is made for
    /// (the shipped `cup-pos` spec is UnionPay-style, any other generic).
    pub fn of(configured: Option<DialectName>, spec: &Spec) -> Dialect {
        match configured {
            Some(DialectName::Generic) => Dialect::Generic,
            Some(DialectName::Unionpay) => Dialect::UnionPay,
            None if spec.name == "cup-pos" => Dialect::UnionPay,
            None => Dialect::Generic,
        }
    }

    /// Whether terminals of this dialect name their batch (60.2) and their originals (61).
    #[inline]
    pub fn is_unionpay(self) -> bool {
        self == Dialect::UnionPay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    #[test]
    fn the_configured_dialect_wins_over_the_spec() {
        let cup = shipped("cup-pos").unwrap();
        let ascii = shipped("iso87ascii").unwrap();
        assert_eq!(Dialect::of(None, &cup), Dialect::UnionPay);
        assert_eq!(Dialect::of(None, &ascii), Dialect::Generic);
        assert_eq!(Dialect::of(Some(DialectName::Generic), &cup), Dialect::Generic);
        assert_eq!(Dialect::of(Some(DialectName::Unionpay), &ascii), Dialect::UnionPay);
    }
}
