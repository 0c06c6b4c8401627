//! The security core for terminal estates: DES/3DES keys, MACs, ISO 9564 PIN blocks, and the
//! [`KeyStore`] trait behind which terminal master keys, working keys and issuer zone keys live.
//! Pure and synchronous; of the crate, only MAC input building reads the codec (`crate::iso`).
//!
//! # The key store seam
//!
//! [`KeyStore`] is where a hardware security module plugs in. An HSM adapter must offer these
//! operations, each keyed by terminal id or zone name, with no clear key or clear PIN block ever
//! crossing the interface:
//!
//! | operation | HSM command it corresponds to |
//! |---|---|
//! | [`KeyStore::sign_on`] | generate a PIN key, a MAC key and (layout 004) a track key of the lengths the terminal's layout asks for, return each encrypted under the terminal master key (TMK) with its 4-byte check value, and keep them (or their host-encrypted form) for that terminal, replacing the previous set at once and durably |
//! | [`KeyStore::check_values`] | the check values and layout of the working keys held for a terminal (what it was sent) |
//! | [`KeyStore::generate_mac`] | generate a MAC over data with the terminal's MAC key, algorithm chosen by the caller |
//! | [`KeyStore::verify_mac`] | verify a received MAC the same way (a refusal is [`KeyError::MacMismatch`]) |
//! | [`KeyStore::translate_pin`] | PIN translate: decrypt a format-0 block with the terminal's PIN key, check it, re-encrypt under an issuer zone PIN key (ZPK); a block that does not check is refused and never returned |
//!
//! The calls are synchronous. A network HSM adapter blocks, so the switch calls it from a
//! blocking-allowed task; [`SoftKeyStore`] answers in microseconds.
//!
//! # Field 62 on sign-on
//!
//! [`WorkingKeys::field62`] lays the keys out as the terminal asked with 60.3 of its sign-on
//! ([`KeyLayout`]: 001 24 bytes, 003 40 bytes, 004 60 bytes with a track key; see
//! [`field62`]). The MAC key is single-length in every layout, so every MAC algorithm runs
//! with exactly the key whose check value the terminal verified.
//!
//! Nothing here logs. Keys ([`DesKey`]) and PIN blocks ([`PinBlock`]) print as `Key(..)` and
//! `PinBlock(..)`, are wiped when dropped, and no error carries their bytes.
//! May import: nothing.

pub mod des;
mod error;
pub mod field62;
pub mod mac;
pub mod pin;
mod soft;
mod working_file;

pub use des::DesKey;
pub use error::KeyError;
pub use field62::{ClearKeys, KeyLayout, WorkingKeys, WrappedKey};
pub use mac::{Mac, MacAlgorithm, compute as compute_mac, mac_input};
pub use pin::{PinBlock, PinFault, pin_block_format0};
pub use soft::SoftKeyStore;

/// What a key store holds for a terminal, by check value (a check value is not secret: it
/// travels in clear in field 62).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKeys {
    pub layout: KeyLayout,
    pub pin: [u8; 4],
    pub mac: [u8; 4],
    pub track: Option<[u8; 4]>,
}

/// The security operations the switch needs; see the module documentation for the HSM contract.
pub trait KeyStore: Send + Sync {
    /// Generates fresh working keys for `terminal` in `layout`, replacing any it had (all of
    /// them at once, and durably where the store persists keys), and returns them encrypted
    /// under its TMK with check values.
    fn sign_on(&self, terminal: &str, layout: KeyLayout) -> Result<WorkingKeys, KeyError>;

    /// The layout and check values of the working keys `terminal` holds now.
    fn check_values(&self, terminal: &str) -> Result<HeldKeys, KeyError>;

    /// The MAC of `data` under `terminal`'s MAC key.
    fn generate_mac(&self, terminal: &str, alg: MacAlgorithm, data: &[u8]) -> Result<Mac, KeyError>;

    /// Checks `received` (field 64) against the MAC of `data`; [`KeyError::MacMismatch`] if not.
    fn verify_mac(
        &self,
        terminal: &str,
        alg: MacAlgorithm,
        data: &[u8],
        received: &[u8],
    ) -> Result<(), KeyError>;

    /// Re-encrypts `pin_block` from `terminal`'s PIN key to zone `zone`'s PIN key, for `pan`.
    /// A block that does not decrypt to a valid format-0 block is [`KeyError::PinRefused`].
    fn translate_pin(
        &self,
        terminal: &str,
        zone: &str,
        pin_block: &PinBlock,
        pan: &str,
    ) -> Result<PinBlock, KeyError>;
}
