//! ISO 9564-1 format 0 PIN blocks (also ANSI X9.8, VISA-1): building, checking, and the
//! translation step from one key to another. Clear blocks live only inside these functions and
//! the key store's operations. Uses the DES key type beside it.
//! May import: crate::keys::des.

use zeroize::Zeroize;

use super::des::{Block, DesKey};

/// An 8-byte PIN block, clear or encrypted. `Debug` prints `PinBlock(..)`; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct PinBlock([u8; 8]);

impl Drop for PinBlock {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for PinBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinBlock(..)")
    }
}

impl PinBlock {
    /// Wraps 8 bytes (as taken from field 52).
    pub fn new(bytes: [u8; 8]) -> PinBlock {
        PinBlock(bytes)
    }

    /// From field 52's raw bytes; `None` unless exactly 8.
    pub fn from_slice(bytes: &[u8]) -> Option<PinBlock> {
        let b: [u8; 8] = bytes.try_into().ok()?;
        Some(PinBlock(b))
    }

    /// The 8 bytes, to put into field 52.
    pub fn bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

/// Why a PIN, PAN or clear PIN block was refused. Carries no digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinFault {
    #[error("PIN must be 4 to 12 decimal digits")]
    Pin,
    #[error("PAN must be 13 to 19 decimal digits")]
    Pan,
    #[error("PIN block is not format 0")]
    Format,
    #[error("PIN length in the PIN block is outside 4..=12")]
    Length,
    #[error("PIN block holds a non-decimal PIN digit")]
    Digits,
    #[error("PIN block filler is not F")]
    Filler,
}

/// The PAN field of format 0: `0000` then the 12 rightmost PAN digits before the check digit.
fn pan_field(pan: &str) -> Result<Block, PinFault> {
    let p = pan.as_bytes();
    if !(13..=19).contains(&p.len()) || !p.iter().all(u8::is_ascii_digit) {
        return Err(PinFault::Pan);
    }
    let body = &p[..p.len() - 1];
    let twelve = &body[body.len() - 12..];
    let mut out = [0u8; 8];
    for (i, pair) in twelve.chunks_exact(2).enumerate() {
        out[2 + i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    Ok(out)
}

/// The clear format-0 PIN block for `pin` and `pan`: (0, length, PIN digits, F filler) XOR the
/// PAN field.
pub fn pin_block_format0(pin: &str, pan: &str) -> Result<PinBlock, PinFault> {
    let d = pin.as_bytes();
    if !(4..=12).contains(&d.len()) || !d.iter().all(u8::is_ascii_digit) {
        return Err(PinFault::Pin);
    }
    let mut nibbles = [0x0Fu8; 16];
    nibbles[0] = 0;
    nibbles[1] = d.len() as u8; // 4..=12, checked above
    for (n, c) in nibbles[2..].iter_mut().zip(d) {
        *n = c - b'0';
    }
    let panf = pan_field(pan)?;
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ((nibbles[2 * i] << 4) | nibbles[2 * i + 1]) ^ panf[i];
    }
    nibbles.zeroize();
    Ok(PinBlock(out))
}

/// Checks a clear format-0 block against `pan` and returns the PIN length. The PIN digits are
/// not returned: nothing outside this module needs them.
pub fn check_format0(clear: &PinBlock, pan: &str) -> Result<usize, PinFault> {
    let panf = pan_field(pan)?;
    let mut field = [0u8; 8];
    for (i, f) in field.iter_mut().enumerate() {
        *f = clear.0[i] ^ panf[i];
    }
    let nib = |i: usize| if i.is_multiple_of(2) { field[i / 2] >> 4 } else { field[i / 2] & 0x0F };
    let result = (|| {
        if nib(0) != 0 {
            return Err(PinFault::Format);
        }
        let len = usize::from(nib(1));
        if !(4..=12).contains(&len) {
            return Err(PinFault::Length);
        }
        if (2..2 + len).any(|i| nib(i) > 9) {
            return Err(PinFault::Digits);
        }
        if (2 + len..16).any(|i| nib(i) != 0x0F) {
            return Err(PinFault::Filler);
        }
        Ok(len)
    })();
    field.zeroize();
    result
}

/// Re-encrypts a PIN block from `from` (the terminal's PIN key) to `to` (the issuer's zone PIN
/// key), refusing it unless it decrypts to a valid format-0 block for `pan`. This is the
/// software form of an HSM's PIN translate command; the clear block never leaves it.
pub fn translate(from: &DesKey, to: &DesKey, encrypted: &PinBlock, pan: &str) -> Result<PinBlock, PinFault> {
    let mut clear = PinBlock(from.decrypt(&encrypted.0));
    check_format0(&clear, pan)?;
    let out = PinBlock(to.encrypt(&clear.0));
    clear.0.zeroize();
    Ok(out)
}

/// Encrypts a clear block under `key` (what a terminal's PIN pad does).
pub fn encrypt(key: &DesKey, clear: &PinBlock) -> PinBlock {
    PinBlock(key.encrypt(&clear.0))
}

/// Decrypts a block under `key` (what an issuer's HSM does before verifying).
pub fn decrypt(key: &DesKey, encrypted: &PinBlock) -> PinBlock {
    PinBlock(key.decrypt(&encrypted.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format-0 clear blocks.
    /// - Published: PIN 1234, PAN 43219876543210987 → 0412AC89ABCDEF67 (ID TECH knowledge base,
    ///   "PIN block" article, ISO-0 example printed by a PIN-block tool).
    /// - Derived by hand from the format (no published example found for this PAN):
    ///   PIN 1234 → PIN field 041234FFFFFFFFFF; PAN 4111111111111111 → digits before the check
    ///   digit 411111111111111, rightmost 12 = 111111111111 → PAN field 0000111111111111;
    ///   XOR → 041225EEEEEEEEEE.
    /// - Derived by hand: PIN 92389, PAN 5413330089600010 (13-19 digit range) → PIN field
    ///   05 92 38 9F FF FF FF FF, PAN field 0000 3330 0896 0001 → 05 92 0B AF F7 69 FF FE.
    #[test]
    fn format0_known_answers() {
        let cases = [
            ("1234", "43219876543210987", [0x04, 0x12, 0xAC, 0x89, 0xAB, 0xCD, 0xEF, 0x67]),
            ("1234", "4111111111111111", [0x04, 0x12, 0x25, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE]),
            ("92389", "5413330089600010", [0x05, 0x92, 0x0B, 0xAF, 0xF7, 0x69, 0xFF, 0xFE]),
        ];
        for (pin, pan, want) in cases {
            let b = pin_block_format0(pin, pan).unwrap();
            assert_eq!(b.bytes(), &want, "{pin}");
            assert_eq!(check_format0(&b, pan), Ok(pin.len()));
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(pin_block_format0("123", "4111111111111111"), Err(PinFault::Pin));
        assert_eq!(pin_block_format0("1234567890123", "4111111111111111"), Err(PinFault::Pin));
        assert_eq!(pin_block_format0("12a4", "4111111111111111"), Err(PinFault::Pin));
        assert_eq!(pin_block_format0("1234", "411111111111"), Err(PinFault::Pan));
        assert_eq!(pin_block_format0("1234", "41111111111111111111"), Err(PinFault::Pan));
        let pan = "4111111111111111";
        let ok = pin_block_format0("1234", pan).unwrap();
        let bad = |f: fn(&mut [u8; 8])| {
            let mut b = *ok.bytes();
            f(&mut b);
            check_format0(&PinBlock::new(b), pan)
        };
        assert_eq!(bad(|b| b[0] ^= 0x10), Err(PinFault::Format));
        assert_eq!(bad(|b| b[0] ^= 0x07), Err(PinFault::Length)); // length 4 -> 3
        assert_eq!(bad(|b| b[1] ^= 0xB0), Err(PinFault::Digits)); // first digit 1 -> A
        assert_eq!(bad(|b| b[7] ^= 0x01), Err(PinFault::Filler));
        // Checked against another PAN the block is not a valid format-0 block.
        assert!(check_format0(&ok, "4000000000000002").is_err());
    }

    /// Translation: a block under the terminal key comes out under the zone key, and decrypts
    /// there to the same clear block; under the wrong source key it is refused.
    #[test]
    fn translate_and_wrong_key() {
        let tpk = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let zpk = DesKey::from_hex("89ABCDEF0123456776543210FEDCBA98").unwrap();
        let wrong = DesKey::from_hex("1111111111111111FEDCBA9876543210").unwrap();
        let pan = "4111111111111111";
        let clear = pin_block_format0("1234", pan).unwrap();
        let under_tpk = encrypt(&tpk, &clear);
        let under_zpk = translate(&tpk, &zpk, &under_tpk, pan).unwrap();
        assert_ne!(under_zpk, under_tpk);
        assert_eq!(decrypt(&zpk, &under_zpk), clear);
        assert!(translate(&wrong, &zpk, &under_tpk, pan).is_err());
        assert_eq!(format!("{clear:?}"), "PinBlock(..)");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any PIN of 4..=12 digits and any PAN of 13..=19 digits builds a block that checks
        /// with its PAN, survives translation, and comes out of the zone key unchanged.
        #[test]
        fn build_check_translate(pin in "[0-9]{4,12}", pan in "[0-9]{13,19}", k1 in any::<[u8; 16]>(), k2 in any::<[u8; 16]>()) {
            let clear = pin_block_format0(&pin, &pan).unwrap();
            prop_assert_eq!(check_format0(&clear, &pan), Ok(pin.len()));
            let (from, to) = (DesKey::double(k1), DesKey::double(k2));
            let out = translate(&from, &to, &encrypt(&from, &clear), &pan).unwrap();
            prop_assert_eq!(decrypt(&to, &out), clear);
        }

        /// Checking arbitrary bytes never panics.
        #[test]
        fn check_any_block(b in any::<[u8; 8]>(), pan in "[0-9]{0,22}") {
            let _ = check_format0(&PinBlock::new(b), &pan);
        }
    }
}
