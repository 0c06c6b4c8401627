//! isoswitch: an ISO 8583 terminal transaction switch.
//!
//! Map of the crate, layered so that imports go one way only:
//!
//! - [`iso`]: the codec. Specs as data, `Message`, encodings, EMV TLV, masking. Pure.
//! - [`frame`]: length headers, TPDU and application header; tokio-util codecs.
//! - [`journal`]: the durable transaction log (SQLite or PostgreSQL) with group commit.
//! - [`settle`]: terminal batch totals and merchant settlement from the journal.
//! - `cli`: the command-line subcommands (decode, encode, ...), built on the layers below.
#![forbid(unsafe_code)]

pub mod cli;
pub mod frame;
pub mod iso;
pub mod journal;
pub mod settle;
