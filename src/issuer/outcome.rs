//! How a forwarded request ends (`Outcome`, with the issuer replies not believed,
//! `Rejected`) and why the issuer connector could not start or store (`IssuerError`): the
//! vocabulary the hub, its links, store-and-forward and the in-doubt log share, kept in a
//! file of its own so that none of them needs another to name it.
//! May import: crate::iso, crate::issuer::reversal, crate::issuer::verify, crate::rc, crate::tls.

use crate::iso::Message;
use crate::rc::ResponseCode;

use super::{reversal, verify};

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The issuer answered.
    Reply(Box<Message>),
    /// No reply before the deadline (the terminal gets 68).
    Timeout,
    /// No link up, or the window is full (91).
    Unavailable,
    /// The link broke while the request was in flight; the issuer may have seen it (68).
    LinkLost,
    /// The request could not be converted or encoded for the issuer (96).
    Failed,
    /// The issuer answered, but its reply is not believed (96; reversed when it may
    /// have approved). Counted and logged where it was refused.
    Rejected(Rejected),
}

/// An issuer reply that was not believed, and what reversing its request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub why: verify::Rejection,
    /// Field 11 as the switch wrote it to the issuer (field 90 of the reversal names it).
    pub switch_stan: u32,
}

impl Outcome {
    /// The response code the switch answers with when this is not a reply.
    pub fn switch_rc(&self) -> Option<ResponseCode> {
        match self {
            Outcome::Reply(_) => None,
            Outcome::Timeout | Outcome::LinkLost => Some(ResponseCode::LATE_RESPONSE),
            Outcome::Unavailable => Some(ResponseCode::ISSUER_UNAVAILABLE),
            Outcome::Failed | Outcome::Rejected(_) => Some(ResponseCode::SYSTEM_MALFUNCTION),
        }
    }
}

/// Why the issuer connector could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer {issuer}: spec {spec}: {message}")]
    Spec { issuer: String, spec: String, message: String },
    #[error("issuer {issuer}: {source}")]
    Tls { issuer: String, source: crate::tls::TlsError },
    #[error("issuer {issuer}: {source}")]
    Reversal { issuer: String, source: reversal::ReversalError },
    /// The store-and-forward store failed (the message never carries row data).
    #[error("store-and-forward: {0}")]
    Saf(String),
    /// The in-doubt log could not be written or read (the file is named, never a request).
    #[error("in-doubt log {file}: {message}")]
    InDoubt { file: String, message: String },
}
