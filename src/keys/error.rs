//! The key store's error: what a key operation refused, naming the terminal, zone or
//! file, and never a key's or PIN block's bytes.
//! May import: crate::keys::pin.

use super::pin::PinFault;

/// Errors of the security layer. None carries key bytes, PIN digits, PIN blocks or MAC inputs.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("terminal {terminal}: no terminal master key")]
    UnknownTerminal { terminal: String },
    #[error("zone {zone}: no zone PIN key")]
    UnknownZone { zone: String },
    #[error("terminal {terminal}: no working keys (not signed on)")]
    NotSignedOn { terminal: String },
    #[error("terminal {terminal}: MAC check failed")]
    MacMismatch { terminal: String },
    #[error("terminal {terminal}: PIN block refused: {fault}")]
    PinRefused { terminal: String, fault: PinFault },
    #[error("cannot build MAC input: {reason}")]
    MacInput { reason: String },
    #[error("random source failed")]
    Random,
    #[error("{file}: cannot read key file: {source}")]
    Read { file: String, source: std::io::Error },
    #[error(
        "{file}: key file is readable by group or others (mode {mode:o}); run `chmod 600 {file}` \
         (git keeps no file modes: a key file from a checkout needs it too)"
    )]
    Permissions { file: String, mode: u32 },
    #[error("{file}: cannot record working keys: {source}")]
    Persist { file: String, source: std::io::Error },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid { file: String, line: usize, key: String, message: String },
}
