//! The routing core's output: what to do with one message. A `Decision` is journal-ready
//! (`Debug`, `Clone`, `Serialize`) and carries no PAN.
//! May import: crate::route::bins, crate::route::priority, crate::route::txn.

use std::fmt;

use serde::{Serialize, Serializer};

use super::bins::CardType;
use super::priority::Class;
use super::txn::TxnType;

/// A two-character ISO 8583 response code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rc(pub [u8; 2]);

impl Rc {
    pub const APPROVED: Rc = Rc(*b"00");
    pub const INVALID_MERCHANT: Rc = Rc(*b"03");
    pub const INVALID_TXN: Rc = Rc(*b"12");
    pub const INVALID_AMOUNT: Rc = Rc(*b"13");
    pub const INVALID_CARD: Rc = Rc(*b"14");
    pub const FORMAT_ERROR: Rc = Rc(*b"30");
    pub const NOT_PERMITTED: Rc = Rc(*b"58");
    pub const AMOUNT_LIMIT: Rc = Rc(*b"61");
    pub const FREQUENCY_LIMIT: Rc = Rc(*b"65");
    pub const ISSUER_UNAVAILABLE: Rc = Rc(*b"91");
    pub const DUPLICATE: Rc = Rc(*b"94");
    /// The supplementary-data decline unless configured otherwise.
    pub const SUPPLEMENTARY_DEFAULT: Rc = Rc(*b"01");

    /// Two ASCII letters or digits.
    pub fn parse(s: &str) -> Option<Rc> {
        let b: [u8; 2] = s.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_alphanumeric).then_some(Rc(b))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("96")
    }
}

impl fmt::Debug for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a message was declined (stable names for the journal and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    UnknownTxnType,
    UnknownTerminal,
    UnknownMerchant,
    TerminalSuspended,
    TxnNotAllowed,
    TerminalBlocked,
    MerchantBlocked,
    LuhnFailed,
    MissingPan,
    NoRoute,
    MissingAmount,
    AmountLimit,
    DailyAmountLimit,
    CardFrequency,
    TerminalFrequency,
    Duplicate,
    SupplementaryMissing,
    /// A field the transaction type requires (`[[required]]` in the type table) is absent.
    MissingField(u8),
}

/// How a merchant's fee splits between the parties (signed minor units; all negative
/// when the fee is given back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeeSplit {
    pub issuer: i64,
    pub network: i64,
    /// What is left for the acquirer: total - issuer - network (may be negative when a
    /// plan prices below cost).
    pub acquirer: i64,
}

/// Forward to an issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub issuer: &'static str,
    pub backup: Option<&'static str>,
    pub class: Class,
    /// Merchant fee in minor units: positive when charged, negative when given back.
    pub fee: i64,
    pub split: FeeSplit,
    pub card_type: CardType,
    pub txn_type: TxnType,
    /// The fee plan (id) that priced it, for settlement reports.
    pub plan: Option<&'static str>,
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    Forward(Forward),
    /// Answer the terminal with `rc`; `field44`, when set, goes in the reply's field 44.
    Decline {
        rc: Rc,
        reason: Reason,
        field44: Option<String>,
    },
    /// Answered by the switch itself (echo, sign-on/off, batch settlement). For batch
    /// settlement `rc` is provisional: the settlement layer compares totals and sets it.
    Local {
        rc: Rc,
        txn_type: TxnType,
    },
}

impl Decision {
    pub(crate) fn decline(rc: Rc, reason: Reason) -> Decision {
        Decision::Decline { rc, reason, field44: None }
    }

    /// The response code the terminal gets from the switch, if the switch answers.
    pub fn rc(&self) -> Option<Rc> {
        match self {
            Decision::Forward(_) => None,
            Decision::Decline { rc, .. } | Decision::Local { rc, .. } => Some(*rc),
        }
    }
}
