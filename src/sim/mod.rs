//! Load simulators: a simulated bank host ([`issuer`]) and simulated terminals
//! ([`terminal`]), fast enough to load a switch doing 100,000 authorisations a second
//! on a small machine, and strict enough to notice a reply that does not belong to its
//! request. Both speak ISO 8583 through the codec and the framing layer, so they run
//! with any shipped spec and framing. This is an edge module: it may import the codec
//! (`crate::iso`), framing (`crate::frame`), the key types (`crate::keys`), the TLS
//! policy (`crate::tls`) and tokio;
//! nothing in the switch imports it. [`cup_day`] is a scripted day of one UnionPay-style
//! terminal rather than a load.
//! May import: nothing.

pub mod cup_day;
pub mod histogram;
pub mod issuer;
pub mod report;
mod requests;
pub mod terminal;
mod util;

pub use histogram::LatencyHistogram;
pub use issuer::{SimIssuerConfig, SimIssuerStats, run_issuer};
pub use report::SimReport;
pub use requests::{is_test_pan, luhn_valid};
pub use terminal::{SimStop, SimTerminalConfig, SimTls, run_terminals};
