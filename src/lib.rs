//! isoswitch: an ISO 8583 terminal transaction switch.
//!
//! Map of the crate, layered so that imports go one way only:
//!
//! - [`switch`]: the composition root on top. [`switch::serve`] builds the running switch
//!   from its configuration (services, in-doubt reconciliation, issuers, retention, the
//!   metrics and admin ports, the acceptor's listeners) and stops it in order: stop
//!   accepting, drain, then close the issuer links. Its module doc lists the order.
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
//! - [`acceptor`]: terminals only: listeners prepared and started by the root, the accept
//!   loop, connections, one handler per kind of request (its module doc maps each kind to
//!   its file).
//! - [`admin`]: the admin HTTP API (look-ups, suspend/activate, reload, readiness), a
//!   sibling of the acceptor under the root; it reaches the running switch through
//!   [`admin::SwitchControl`] only, which the root implements.
//! - [`opsport`]: the HTTP server (hyper) of the operations ports (`/metrics`, admin API):
//!   one serve loop for both, each started by the root.
//! - [`accept`], [`fdlimit`]: listeners that back off instead of spinning when accepts fail,
//!   and the descriptor budget their connection caps are fitted into.
//! - [`config`], [`metrics`], [`telemetry`], [`tls`]: the edges (configuration, metric names,
//!   logging, TLS policy).
//! - [`time`]: wall-clock time in one place: `UnixMs` (an instant, milliseconds since 1970)
//!   and the one `now()`; pure code takes a `UnixMs` as an argument.
//! - [`civil`]: calendar arithmetic (days since 1970 to dates and back, `Date`, `HH:MM`),
//!   under `time`, shared by the routing core, the issuer's field 7, the journal's business
//!   dates and retention, the admin API, settlement and the simulators.
//! - [`rc`]: the response code, one type ([`rc::ResponseCode`], a named constant for each code
//!   the switch produces) from the routing core's decision to the reply and the journal, and
//!   its mapping per dialect (generic codes to what terminals display), as data.
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
pub mod switch;
pub mod telemetry;
pub mod time;
pub mod tls;
