//! A listener's dialect: which estate rules its terminals follow beyond plain ISO 8583.
//! Decided once, from the listener's spec when it starts, and read by the handlers as a
//! field of the listener, never by comparing spec names on the request path.
//! May import: crate::iso.

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
    /// The dialect a listener's spec is made for: the shipped `cup-pos` spec is
    /// UnionPay-style, any other generic. (The journal reads the batch number 60.2 of
    /// `cup-pos` messages only, so a UnionPay-style estate is one on that spec.)
    pub fn of(spec: &Spec) -> Dialect {
        if spec.name == "cup-pos" { Dialect::UnionPay } else { Dialect::Generic }
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
    fn the_dialect_follows_the_listeners_spec() {
        assert_eq!(Dialect::of(&shipped("cup-pos").unwrap()), Dialect::UnionPay);
        for name in ["iso87ascii", "iso87bcd", "iso87binbitmap", "iso93ascii"] {
            assert_eq!(Dialect::of(&shipped(name).unwrap()), Dialect::Generic, "{name}");
        }
        assert!(Dialect::UnionPay.is_unionpay() && !Dialect::Generic.is_unionpay());
    }
}
