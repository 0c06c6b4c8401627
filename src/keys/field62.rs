//! Working keys as field 62 of a UnionPay-style sign-on reply carries them. The terminal asks
//! for a layout with the network-management code in 60.3 of its sign-on, and rejects the
//! sign-on when the field has another length or a check value does not match, so the layout
//! decides both the bytes sent and the keys the switch then uses (the MAC key is single-length
//! in every layout). Every key travels encrypted under the terminal master key (TMK, 3DES ECB
//! per 8-byte half); its check value is the first 4 bytes of the clear key encrypting 8 zero
//! bytes (single DES for a single-length key, 3DES for a double-length one).
//!
//! ```text
//! 001 (24 bytes)  | PIN key 8 | kcv 4 | MAC key 8 | kcv 4 |
//! 003 (40 bytes)  | PIN key 16       | kcv 4 | MAC key 8 | 00 x 8 | kcv 4 |
//! 004 (60 bytes)  | as 003 (40)                                     | track key 16 | kcv 4 |
//! ```
//!
//! Pure; uses the key type beside it, `nom` (reading the field) and `subtle` (a check value
//! is compared in constant time).
//! May import: crate::keys::des.

use nom::Parser;
use nom::bytes::complete::take;
use nom::combinator::{all_consuming, cond, verify};
use subtle::ConstantTimeEq;

use super::des::{Block, DesKey};

/// The field 62 layout a terminal asks for with 60.3 of its sign-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyLayout {
    /// 001: single-length PIN and MAC keys, 24 bytes.
    Single,
    /// 003: double-length PIN key, single-length MAC key padded with 8 zero bytes, 40 bytes.
    Double,
    /// 004: as 003 plus a double-length track key, 60 bytes.
    DoubleTrack,
}

impl KeyLayout {
    /// Every layout, in code order.
    pub const ALL: [KeyLayout; 3] = [KeyLayout::Single, KeyLayout::Double, KeyLayout::DoubleTrack];

    /// The layout of a 60.3 code (`001`, `003`, `004`).
    pub fn from_code(code: &str) -> Option<KeyLayout> {
        match code {
            "001" => Some(KeyLayout::Single),
            "003" => Some(KeyLayout::Double),
            "004" => Some(KeyLayout::DoubleTrack),
            _ => None,
        }
    }

    /// The 60.3 code that asks for this layout.
    pub fn code(self) -> &'static str {
        match self {
            KeyLayout::Single => "001",
            KeyLayout::Double => "003",
            KeyLayout::DoubleTrack => "004",
        }
    }

    /// Length of field 62 in this layout.
    pub fn field_len(self) -> usize {
        match self {
            KeyLayout::Single => 24,
            KeyLayout::Double => 40,
            KeyLayout::DoubleTrack => 60,
        }
    }

    /// Whether the PIN key (and the track key) are double-length.
    pub fn double_pin(self) -> bool {
        !matches!(self, KeyLayout::Single)
    }

    /// Whether the layout carries a track key.
    pub fn has_track(self) -> bool {
        matches!(self, KeyLayout::DoubleTrack)
    }
}

/// A working key as sent to a terminal: encrypted under its TMK, with the clear key's check
/// value. A single-length key fills the first 8 bytes of `under_tmk`; the other 8 are zero.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub under_tmk: [u8; 16],
    /// First 4 bytes of the clear key encrypting 8 zero bytes.
    pub check_value: [u8; 4],
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey(kcv {:02X?})", self.check_value)
    }
}

impl WrappedKey {
    /// `key` under `tmk`, as `double` (16 bytes) or single-length (8 bytes then zeros).
    fn of(key: &DesKey, tmk: &DesKey, double: bool) -> WrappedKey {
        let under_tmk = if double {
            key.wrap(tmk)
        } else {
            let mut u = [0u8; 16];
            u[..8].copy_from_slice(&tmk.encrypt(&key.left()));
            u
        };
        WrappedKey { under_tmk, check_value: key.check_value() }
    }

    /// The clear key under `tmk`, when its check value matches.
    fn open(&self, tmk: &DesKey, double: bool) -> Option<DesKey> {
        let key = if double {
            DesKey::unwrap_under(tmk, &self.under_tmk)
        } else {
            let mut b: Block = [0u8; 8];
            b.copy_from_slice(&self.under_tmk[..8]);
            DesKey::single(tmk.decrypt(&b))
        };
        // Constant-time: the check value is the terminal's to choose.
        bool::from(key.check_value().ct_eq(&self.check_value)).then_some(key)
    }
}

/// Clear working keys, inside a key store or a terminal: a PIN key (single-length in layout
/// 001, double otherwise), a single-length MAC key, and a double-length track key in 004.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearKeys {
    pub pin: DesKey,
    pub mac: DesKey,
    pub track: Option<DesKey>,
}

/// The working keys issued to a terminal at sign-on, in the layout it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingKeys {
    pub layout: KeyLayout,
    pub pin_key: WrappedKey,
    pub mac_key: WrappedKey,
    /// Present in layout 004 only.
    pub track_key: Option<WrappedKey>,
}

impl WorkingKeys {
    /// `clear` encrypted under `tmk` for `layout`. The keys must have the layout's lengths
    /// (a single-length key is one whose halves are equal); a track key is dropped unless
    /// the layout has one.
    pub fn wrap(layout: KeyLayout, tmk: &DesKey, clear: &ClearKeys) -> WorkingKeys {
        let double = layout.double_pin();
        WorkingKeys {
            layout,
            pin_key: WrappedKey::of(&clear.pin, tmk, double),
            mac_key: WrappedKey::of(&clear.mac, tmk, false),
            track_key: clear
                .track
                .as_ref()
                .filter(|_| layout.has_track())
                .map(|t| WrappedKey::of(t, tmk, true)),
        }
    }

    /// Field 62 of the sign-on reply, laid out as the module documentation draws it.
    pub fn field62(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.layout.field_len());
        let pin_len = if self.layout.double_pin() { 16 } else { 8 };
        v.extend_from_slice(&self.pin_key.under_tmk[..pin_len]);
        v.extend_from_slice(&self.pin_key.check_value);
        // Layouts 003 and 004 pad the single-length MAC key with 8 zero bytes.
        v.extend_from_slice(&self.mac_key.under_tmk[..pin_len]);
        v.extend_from_slice(&self.mac_key.check_value);
        if let Some(t) = self.track_key.as_ref().filter(|_| self.layout.has_track()) {
            v.extend_from_slice(&t.under_tmk);
            v.extend_from_slice(&t.check_value);
        }
        v
    }

    /// Reads field 62 in `layout` (the terminal's side): `None` when the length is not the
    /// layout's or the MAC key's padding is not zero.
    pub fn from_field62(layout: KeyLayout, bytes: &[u8]) -> Option<WorkingKeys> {
        let key_len = if layout.double_pin() { 16 } else { 8 };
        let keys = (wrapped(key_len, 0), wrapped(8, key_len - 8), cond(layout.has_track(), wrapped(16, 0)));
        let (_, (pin_key, mac_key, track_key)) = all_consuming(keys).parse(bytes).ok()?;
        Some(WorkingKeys { layout, pin_key, mac_key, track_key })
    }

    /// The clear keys under `tmk` (what a terminal does with the reply), `None` unless every
    /// check value matches.
    pub fn open(&self, tmk: &DesKey) -> Option<ClearKeys> {
        let pin = self.pin_key.open(tmk, self.layout.double_pin())?;
        let mac = self.mac_key.open(tmk, false)?;
        let track = match (&self.track_key, self.layout.has_track()) {
            (Some(t), true) => Some(t.open(tmk, true)?),
            (None, false) => None,
            _ => return None,
        };
        Some(ClearKeys { pin, mac, track })
    }
}

/// A wrapped key of `len` bytes, then `zeros` bytes of zero padding, then its check value.
fn wrapped<'a>(len: usize, zeros: usize) -> impl Parser<&'a [u8], Output = WrappedKey, Error = ()> {
    (take(len), verify(take(zeros), |z: &[u8]| z.iter().all(|&b| b == 0)), take(4usize)).map(
        move |(key, _, kcv)| {
            let mut under_tmk = [0u8; 16];
            under_tmk[..len].copy_from_slice(key);
            let mut check_value = [0u8; 4];
            check_value.copy_from_slice(kcv);
            WrappedKey { under_tmk, check_value }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";

    fn clear() -> ClearKeys {
        ClearKeys {
            pin: DesKey::from_hex("1111111111111111").unwrap(),
            mac: DesKey::from_hex("2222222222222222").unwrap(),
            track: None,
        }
    }

    /// Each layout round-trips through field 62 at its length; lengths, codes and the MAC
    /// key's zero padding are checked on the way in; a wrong TMK fails the check values.
    #[test]
    fn layouts_round_trip_and_are_checked() {
        let tmk = DesKey::from_hex(TMK).unwrap();
        for layout in KeyLayout::ALL {
            assert_eq!(KeyLayout::from_code(layout.code()), Some(layout));
            let mut c = clear();
            if layout.double_pin() {
                c.pin = DesKey::from_hex("0123456789ABCDEF1111111111111111").unwrap();
            }
            if layout.has_track() {
                c.track = Some(DesKey::from_hex("FEDCBA98765432100123456789ABCDEF").unwrap());
            }
            let wk = WorkingKeys::wrap(layout, &tmk, &c);
            let f62 = wk.field62();
            assert_eq!(f62.len(), layout.field_len(), "{layout:?}");
            let back = WorkingKeys::from_field62(layout, &f62).unwrap();
            assert_eq!(back, wk);
            assert_eq!(back.open(&tmk), Some(c.clone()), "{layout:?}");
            for other in KeyLayout::ALL.into_iter().filter(|&o| o != layout) {
                assert!(WorkingKeys::from_field62(other, &f62).is_none(), "{layout:?} read as {other:?}");
            }
            assert!(WorkingKeys::from_field62(layout, &f62[1..]).is_none());
            if layout.double_pin() {
                let mut padded = f62.clone();
                padded[20 + 8] = 1;
                assert!(WorkingKeys::from_field62(layout, &padded).is_none(), "padding must be zero");
            }
            let wrong = DesKey::from_hex("00000000000000001111111111111111").unwrap();
            assert!(wk.open(&wrong).is_none());
            // One bit off in any check value (the last byte, where a short-cut compare
            // would look last) refuses the keys.
            let mut bad = wk.clone();
            bad.mac_key.check_value[3] ^= 1;
            assert!(bad.open(&tmk).is_none(), "{layout:?}");
            let mut bad = wk.clone();
            bad.pin_key.check_value[3] ^= 0x80;
            assert!(bad.open(&tmk).is_none(), "{layout:?}");
        }
        assert_eq!(KeyLayout::from_code("002"), None);
    }
}
