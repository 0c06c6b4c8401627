//! isoswitch: an ISO 8583 terminal transaction switch.
//!
//! Map of the crate, layered so that imports go one way only:
//!
//! - [`iso`]: the codec. Specs as data, `Message`, encodings, EMV TLV, masking. Pure.
//! - [`frame`]: length headers, TPDU and application header; tokio-util codecs.
//! - `cli`: the command-line subcommands (decode, encode, ...), built on the layers below.
#![forbid(unsafe_code)]

pub mod cli;
pub mod frame;
pub mod iso;
pub mod route;
