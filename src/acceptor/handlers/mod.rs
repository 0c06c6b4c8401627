//! One handler per kind of request, each a straight-line async function that reads top
//! down: what is checked, what is sent, what is journalled, what is answered. The
//! connection (`conn.rs`) picks the handler by the kind of the request's `Plan`:
//!
//! | plan | handler |
//! |------|---------|
//! | `Forward` | [`forward::forward`]: to an issuer, with stand-in and the estate's checks |
//! | `Reversal` | [`reversal::reversal`]: matched in the journal, queued for the issuer |
//! | `Settle` | [`settle::settle`]: batch totals against the journal (0500) |
//! | `Upload` | [`upload::upload`]: batch upload recorded (0320) |
//! | `Decline` | [`decline::decline`]: the switch's own declines |
//! | `Repeat`, `Answered`, `Lookup` | [`repeat`]: answered as the original was |
//!
//! Every handler makes its journal row with the services' `Recorder` and its reply with
//! `reply.rs`; none touches a socket.
//! May import: nothing.

pub mod decline;
pub mod forward;
pub mod repeat;
pub mod reversal;
pub mod settle;
pub mod upload;
