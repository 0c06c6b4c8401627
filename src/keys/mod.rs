//! The security core for terminal estates: DES/3DES keys, MACs, ISO 9564 PIN blocks, and the
//! [`KeyStore`] trait behind which terminal master keys, working keys and issuer zone keys live.
//! Pure and synchronous; may import the codec (`crate::iso`) and nothing else of the crate.
//!
//! # The key store seam
//!
//! [`KeyStore`] is where a hardware security module plugs in. An HSM adapter must offer these
//! operations, each keyed by terminal id or zone name, with no clear key or clear PIN block ever
//! crossing the interface:
//!
//! | operation | HSM command it corresponds to |
//! |---|---|
//! | [`KeyStore::sign_on`] | generate a PIN key and a MAC key for a terminal, return each encrypted under the terminal master key (TMK) with its 4-byte check value, and keep them (or their host-encrypted form) for that terminal |
//! | [`KeyStore::generate_mac`] | generate a MAC over data with the terminal's MAC key, algorithm chosen by the caller |
//! | [`KeyStore::verify_mac`] | verify a received MAC the same way (a refusal is [`KeyError::MacMismatch`]) |
//! | [`KeyStore::translate_pin`] | PIN translate: decrypt a format-0 block with the terminal's PIN key, check it, re-encrypt under an issuer zone PIN key (ZPK); a block that does not check is refused and never returned |
//!
//! The calls are synchronous. A network HSM adapter blocks, so the switch calls it from a
//! blocking-allowed task; [`SoftKeyStore`] answers in microseconds.
//!
//! # Field 62 on sign-on
//!
//! [`WorkingKeys::field62`] lays the keys out as the common double-length layout: PIN key under
//! TMK (16) + its check value (4) + MAC key under TMK (16) + its check value (4) = 40 bytes.
//! Estates whose terminals take a single-length MAC key read the first 8 MAC key bytes.
//!
//! Nothing here logs. Keys ([`Key`]) and PIN blocks ([`PinBlock`]) print as `Key(..)` and
//! `PinBlock(..)`, are wiped when dropped, and no error carries their bytes.

pub mod des;
pub mod mac;
pub mod pin;
mod soft;

pub use des::Key;
pub use mac::{Mac, MacAlgorithm, compute as compute_mac, mac_input};
pub use pin::{PinBlock, PinFault, pin_block_format0};
pub use soft::SoftKeyStore;

/// A working key as sent to a terminal: encrypted under its TMK, with the clear key's check value.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key encrypted under the terminal master key (3DES ECB per half).
    pub under_tmk: [u8; 16],
    /// First 4 bytes of the clear key encrypting 8 zero bytes.
    pub check_value: [u8; 4],
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey(kcv {:02X?})", self.check_value)
    }
}

/// The working keys issued to a terminal at sign-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingKeys {
    pub pin_key: WrappedKey,
    pub mac_key: WrappedKey,
}

impl WorkingKeys {
    /// Field 62 of the sign-on reply: PIN key (16) + KCV (4) + MAC key (16) + KCV (4).
    pub fn field62(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&self.pin_key.under_tmk);
        v.extend_from_slice(&self.pin_key.check_value);
        v.extend_from_slice(&self.mac_key.under_tmk);
        v.extend_from_slice(&self.mac_key.check_value);
        v
    }

    /// Reads [`WorkingKeys::field62`] back (the terminal's side); `None` unless 40 bytes.
    pub fn from_field62(bytes: &[u8]) -> Option<WorkingKeys> {
        if bytes.len() != 40 {
            return None;
        }
        let wk = |b: &[u8]| -> Option<WrappedKey> {
            Some(WrappedKey {
                under_tmk: b.get(..16)?.try_into().ok()?,
                check_value: b.get(16..20)?.try_into().ok()?,
            })
        };
        Some(WorkingKeys { pin_key: wk(bytes.get(..20)?)?, mac_key: wk(bytes.get(20..40)?)? })
    }
}

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
    #[error("{file}: key file is readable by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { file: String, mode: u32 },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid { file: String, line: usize, key: String, message: String },
}

/// The security operations the switch needs; see the module documentation for the HSM contract.
pub trait KeyStore: Send + Sync {
    /// Generates fresh PIN and MAC keys for `terminal`, replacing any it had, and returns them
    /// encrypted under its TMK with check values.
    fn sign_on(&self, terminal: &str) -> Result<WorkingKeys, KeyError>;

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
