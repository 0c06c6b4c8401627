//! Logging: `tracing` events to stderr, filtered by `RUST_LOG` (default `info`). Log
//! lines never carry a PAN, track data or PIN block: callers log messages through
//! `Message`'s masking `Debug` or log no field values at all. May import: anything.

use tracing_subscriber::EnvFilter;

/// Install the stderr subscriber; harmless if one is already installed.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
