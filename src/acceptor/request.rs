//! One terminal request on its way through the switch, as a named value: the decoded
//! message, the frame it came in, when and on which connection it arrived, what the
//! switch plans to do with it (`Plan`, whose kind picks its handler) and what it holds
//! while it is handled (its terminal key, its place among the requests in flight).
//! May import: crate::acceptor::inflight, crate::acceptor::repeats, crate::frame, crate::iso,
//! crate::journal, crate::rc, crate::route.

use crate::frame::Frame;
use crate::iso::Message;
use crate::journal::RowType;
use crate::rc::ResponseCode;
use crate::route;

use super::inflight::InFlight;
use super::repeats::{Answer, Claim};

/// A decoded request that waits for something (an issuer, the journal, an original in
/// flight) before it is answered. Boxed by the connection: a pointer moves into the
/// handler's future, not the message.
pub struct Request {
    /// What the switch does with it; its kind picks the handler.
    pub plan: Plan,
    /// The decoded message.
    pub msg: Message,
    /// The frame it came in: the reply goes back in the same framing.
    pub frame: Frame,
    /// When and on which connection it arrived.
    pub arrival: Arrival,
    /// Whether its MAC was verified (its reply gets one).
    pub mac: bool,
    /// The terminal key it holds in flight: finished with the terminal's answer.
    pub claim: Option<Claim>,
    /// Its terminal (field 41, trimmed), filled in only where the connection's hold of a
    /// reversing terminal's requests needs it.
    pub terminal: String,
    /// A forwarded request, known in flight by terminal and STAN until it is answered.
    pub inflight: Option<InFlight>,
}

/// What the connection does with one request.
pub enum Plan {
    /// Answer now with this code (network management; answered by the connection).
    Local(ResponseCode),
    /// Decline, journalled (`handlers/decline.rs`).
    Decline { rc: ResponseCode, field44: Option<String>, txn: RowType },
    /// Forward to the issuer at this index of `Config::issuers` (or its backup when all of
    /// its links are down) (`handlers/forward.rs`).
    Forward { issuer: usize, fwd: Box<route::Forward> },
    /// A terminal's reversal: matched to its original in the journal and queued for the
    /// issuer through store-and-forward (`handlers/reversal.rs`).
    Reversal { fwd: Box<route::Forward> },
    /// Batch settlement against the journal (`handlers/settle.rs`).
    Settle,
    /// Batch upload (0320): what the terminal says it did, recorded and acknowledged
    /// (`handlers/upload.rs`).
    Upload,
    /// A repeat of a request still in flight: answered with the original's answer
    /// (`handlers/repeat.rs`, as are the two below).
    Repeat(tokio::sync::watch::Receiver<Option<Answer>>),
    /// A repeat of a request answered before (found in the journal).
    Answered(Answer),
    /// Memory cannot prove the request's terminal key new: the journal is asked first
    /// (`handlers::repeat::lookup`), then the request is planned.
    Lookup,
}

/// When a request arrived: in Unix milliseconds (for the rules and the journal) and as the
/// instant its reply deadline counts from; and on which terminal connection (`source`,
/// for admission's fairness between connections).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: i64,
    pub instant: std::time::Instant,
    pub source: u64,
}
