//! isoswitch: an ISO 8583 terminal transaction switch.
//!
//! Map of the crate, layered so that imports go one way only:
//!
//! - [`iso`]: the codec. Specs as data; the field codec, one file per axis (length prefix,
//!   content encoding, character class, fixed-field fill); `Message` (its layout and its
//!   edits); EMV TLV, masking. Pure.
//! - [`frame`]: length headers, TPDU and application header; tokio-util codecs.
//! - [`route`]: the routing core: registry, BIN routes, fees, priorities, risk → a `Decision`. Pure.
//! - [`keys`]: DES/3DES keys, MACs, PIN blocks and the key store seam (HSM or software). Pure.
//! - [`journal`]: the durable transaction log (SQLite or PostgreSQL) with group commit, and its
//!   retention (settled days exported to a file each and purged online).
//! - [`settle`]: terminal batch totals and merchant settlement from the journal.
//! - [`issuer`]: links to bank hosts, a pure protocol session per link (switch STAN/RRN,
//!   the session table, late replies), deadlines, sign-on and echo.
//! - [`acceptor`]: terminal listeners, one handler per kind of request (its module doc maps
//!   each kind to its file), and the switch's entry point [`acceptor::serve`].
//! - [`admin`]: the admin HTTP API (look-ups, suspend/activate, reload, readiness), which
//!   reaches the running switch through [`admin::SwitchControl`] only.
//! - [`opsport`]: the HTTP server (hyper) of the operations ports (`/metrics`, admin API).
//! - [`accept`], [`fdlimit`]: listeners that back off instead of spinning when accepts fail,
//!   and the descriptor budget their connection caps are fitted into.
//! - [`config`], [`metrics`], [`telemetry`], [`tls`]: the edges (configuration, metric names,
//!   logging, TLS policy).
//! - [`civil`]: calendar arithmetic (days since 1970 to dates and back), shared by the
//!   issuer clock, the routing clock, the journal's business dates and retention, the admin
//!   API, settlement and the simulators.
//! - [`rc`]: response codes per dialect (generic codes mapped to what terminals display), as data.
//! - [`sim`]: load simulators, a simulated issuer and simulated terminals.
//! - `cli`: the command-line subcommands (decode, encode, ...), built on the layers below.
//!
//! Each module's doc ends with the crate modules it may use (`May import:`);
//! `tests/module_imports.rs` holds every file to its clause and refuses import cycles.
//! May import: nothing.
#![forbid(unsafe_code)]

pub mod accept;
pub mod acceptor;
pub mod admin;
pub mod civil;
pub mod cli;
pub mod config;
pub mod fdlimit;
pub mod frame;
pub mod iso;
pub mod issuer;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod opsport;
pub mod rc;
pub mod route;
pub mod settle;
pub mod sim;
pub mod telemetry;
pub mod tls;
