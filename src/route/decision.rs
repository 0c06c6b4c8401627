//! The routing core's output: what to do with one message. A `Decision` is journal-ready
//! (`Debug`, `Clone`, `Serialize`) and carries no PAN.
//! May import: crate::rc, crate::route::routes, crate::route::priority, crate::route::txn.

use serde::Serialize;

use super::priority::Class;
use super::routes::CardType;
use super::txn::TxnType;
use crate::rc::ResponseCode;

/// Why a message was declined (stable names for the journal and logs). Not a response code:
/// the terminal sees the decision's `rc`, which several reasons share (an unknown terminal and
/// an unknown merchant both answer 03, a card's and a terminal's frequency limit both 65).
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
        rc: ResponseCode,
        reason: Reason,
        field44: Option<String>,
    },
    /// Answered by the switch itself (echo, sign-on/off, batch settlement). For batch
    /// settlement `rc` is provisional: the settlement layer compares totals and sets it.
    Local {
        rc: ResponseCode,
        txn_type: TxnType,
    },
}

impl Decision {
    pub(crate) fn decline(rc: ResponseCode, reason: Reason) -> Decision {
        Decision::Decline { rc, reason, field44: None }
    }

    /// The response code the terminal gets from the switch, if the switch answers.
    pub fn rc(&self) -> Option<ResponseCode> {
        match self {
            Decision::Forward(_) => None,
            Decision::Decline { rc, .. } | Decision::Local { rc, .. } => Some(*rc),
        }
    }
}
