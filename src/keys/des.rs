//! DES and two-key triple DES on single 8-byte blocks, and the key type that carries their keys.
//! Built on the RustCrypto `des` crate; uses nothing else from the crate.
//! May import: nothing.

use des::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2};
use zeroize::Zeroize;

/// One 8-byte cipher block.
pub type Block = [u8; 8];

/// A double-length (16-byte) DES key: left half K1, right half K2; 3DES is E(K1) D(K2) E(K1).
/// A single-length key is stored with K2 = K1, which makes 3DES equal single DES.
/// Its bytes never appear in `Debug` and are wiped when the value is dropped. Equality is not
/// constant-time: it is for tests and set-up, never for checking a received value.
#[derive(Clone, PartialEq, Eq)]
pub struct DesKey([u8; 16]);

impl Drop for DesKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl DesKey {
    /// A double-length key from its 16 bytes.
    pub fn double(bytes: [u8; 16]) -> DesKey {
        DesKey(bytes)
    }

    /// A single-length key, held as K1 = K2.
    pub fn single(bytes: [u8; 8]) -> DesKey {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&bytes);
        k[8..].copy_from_slice(&bytes);
        DesKey(k)
    }

    /// A key from 16 hex digits (single) or 32 (double); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<DesKey> {
        let mut buf = [0u8; 16];
        match hex.len() {
            16 => {
                decode_hex(hex, &mut buf[..8])?;
                let (l, r) = buf.split_at_mut(8);
                r.copy_from_slice(l);
            }
            32 => decode_hex(hex, &mut buf)?,
            _ => return None,
        }
        let k = DesKey(buf);
        buf.zeroize();
        Some(k)
    }

    /// The left half K1.
    pub fn left(&self) -> Block {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        b
    }

    /// The right half K2.
    pub fn right(&self) -> Block {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[8..]);
        b
    }

    /// The 16 key bytes, for handing to a terminal after encryption or to tests.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Two-key 3DES (EDE) encryption of one block.
    pub fn encrypt(&self, block: &Block) -> Block {
        let c = TdesEde2::new(&Array::from(self.0));
        let mut b = Array::from(*block);
        c.encrypt_block(&mut b);
        b.into()
    }

    /// Two-key 3DES (EDE) decryption of one block.
    pub fn decrypt(&self, block: &Block) -> Block {
        let c = TdesEde2::new(&Array::from(self.0));
        let mut b = Array::from(*block);
        c.decrypt_block(&mut b);
        b.into()
    }

    /// Key check value: the first 4 bytes of the key encrypting 8 zero bytes (3DES; equal to
    /// single DES for a single-length key).
    pub fn check_value(&self) -> [u8; 4] {
        let e = self.encrypt(&[0u8; 8]);
        [e[0], e[1], e[2], e[3]]
    }

    /// This key encrypted under `kek` (3DES ECB on each half), as sent to a terminal.
    pub fn wrap(&self, kek: &DesKey) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&kek.encrypt(&self.left()));
        out[8..].copy_from_slice(&kek.encrypt(&self.right()));
        out
    }

    /// The key that `wrapped` carries under `kek` (the terminal's side of [`DesKey::wrap`]).
    pub fn unwrap_under(kek: &DesKey, wrapped: &[u8; 16]) -> DesKey {
        let mut l = [0u8; 8];
        let mut r = [0u8; 8];
        l.copy_from_slice(&wrapped[..8]);
        r.copy_from_slice(&wrapped[8..]);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&kek.decrypt(&l));
        k[8..].copy_from_slice(&kek.decrypt(&r));
        let key = DesKey(k);
        k.zeroize();
        key
    }
}

/// Single-DES encryption of one block with an 8-byte key.
pub fn des_encrypt(key: &Block, block: &Block) -> Block {
    let c = Des::new(&Array::from(*key));
    let mut b = Array::from(*block);
    c.encrypt_block(&mut b);
    b.into()
}

/// Single-DES decryption of one block with an 8-byte key.
pub fn des_decrypt(key: &Block, block: &Block) -> Block {
    let c = Des::new(&Array::from(*key));
    let mut b = Array::from(*block);
    c.decrypt_block(&mut b);
    b.into()
}

/// Sets odd parity in every byte, as DES keys conventionally carry.
pub fn set_odd_parity(bytes: &mut [u8]) {
    for b in bytes {
        let ones = (*b & 0xFE).count_ones();
        *b = (*b & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// Decodes hex digits (either case) into `out`; `None` when the length or a digit is wrong.
pub(crate) fn decode_hex(hex: &str, out: &mut [u8]) -> Option<()> {
    hex::decode_to_slice(hex, out).ok()
}

/// Uppercase hex of `bytes` as ASCII bytes.
pub(crate) fn hex_upper(bytes: &[u8]) -> Vec<u8> {
    hex::encode_upper(bytes).into_bytes()
}

/// Uppercase hex of one block, on the stack (the MAC path makes two per message).
pub(crate) fn hex_upper_block(b: &Block) -> [u8; 16] {
    let mut out = [b'0'; 16];
    // 16 characters for 8 bytes: the sizes agree, the encoding cannot fail.
    let _sizes_agree = hex::encode_to_slice(b, &mut out);
    out.make_ascii_uppercase();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h8(s: &str) -> Block {
        let mut b = [0u8; 8];
        decode_hex(s, &mut b).unwrap();
        b
    }

    /// Single DES known answers.
    /// - "Now is the time for all " block 1 under 0123456789ABCDEF → 3FA40E8A984D4815: the
    ///   classic example of FIPS 81 (DES modes of operation), Appendix B, ECB mode.
    /// - 0123456789ABCDEF / 133457799BBCDFF1 → 85E813540F0AB405: the worked example widely
    ///   reproduced from FIPS 46 tutorials (J. Orlin Grabbe, "The DES Algorithm Illustrated").
    /// - NIST SP 800-17 Table A.1 (variable plaintext), key 0101010101010101, plaintext
    ///   8000000000000000 → 95F8A5E5DD31D900.
    #[test]
    fn des_known_answers() {
        let cases = [
            ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
            ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
            ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),
        ];
        for (k, p, c) in cases {
            assert_eq!(des_encrypt(&h8(k), &h8(p)), h8(c), "key {k}");
            assert_eq!(des_decrypt(&h8(k), &h8(c)), h8(p), "key {k}");
        }
    }

    /// Two-key 3DES with K1 = K2 is single DES; with distinct halves, decrypt inverts encrypt.
    #[test]
    fn tdes_degenerates_and_inverts() {
        let k = DesKey::from_hex("0123456789ABCDEF").unwrap();
        assert_eq!(k.encrypt(&h8("4E6F772069732074")), h8("3FA40E8A984D4815"));
        let k2 = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let c = k2.encrypt(&h8("4E6F772069732074"));
        assert_eq!(k2.decrypt(&c), h8("4E6F772069732074"));
        // E(K1) D(K2) E(K1) by hand from single DES.
        let by_hand = des_encrypt(
            &k2.left(),
            &des_decrypt(&k2.right(), &des_encrypt(&k2.left(), &h8("4E6F772069732074"))),
        );
        assert_eq!(c, by_hand);
    }

    /// Check values from published sources:
    /// - DES key 0123456789ABCDEF → KCV D5D44F(F7...) (the standard example quoted in key
    ///   management tools and Q&A threads on KCVs; the first 3 bytes are what is usually shown).
    /// - double-length key E6F1081FEA4C402CC192B65DE367EC3E → 212CF915 (crypto.stackexchange.com
    ///   question 37379, a KCV printed by a key-component tool).
    #[test]
    fn check_values() {
        let k = DesKey::from_hex("0123456789ABCDEF").unwrap();
        assert_eq!(&k.check_value()[..3], &[0xD5, 0xD4, 0x4F]);
        let k = DesKey::from_hex("E6F1081FEA4C402CC192B65DE367EC3E").unwrap();
        assert_eq!(k.check_value(), [0x21, 0x2C, 0xF9, 0x15]);
    }

    /// A working key wrapped under a terminal master key, from a published UnionPay POS MAC
    /// walk-through (blog.csdn.net article 80005341, "MAC算法演示"): TMK
    /// 70F2A84CCBC2AE8625CBB0F2C22AB923, TAK under TMK 96D605EA176B7E9E, clear C24A8FB57AA20123.
    #[test]
    fn working_key_under_tmk() {
        let tmk = DesKey::from_hex("70F2A84CCBC2AE8625CBB0F2C22AB923").unwrap();
        assert_eq!(tmk.decrypt(&h8("96D605EA176B7E9E")), h8("C24A8FB57AA20123"));
        let tak = DesKey::from_hex("C24A8FB57AA20123").unwrap();
        let wrapped = tak.wrap(&tmk);
        assert_eq!(&wrapped[..8], &h8("96D605EA176B7E9E"));
        assert_eq!(DesKey::unwrap_under(&tmk, &wrapped), tak);
    }

    #[test]
    fn debug_hides_bytes_and_hex_is_checked() {
        let k = DesKey::from_hex("0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(format!("{k:?}"), "Key(..)");
        assert!(DesKey::from_hex("0123").is_none());
        assert!(DesKey::from_hex("0123456789ABCDEG").is_none());
        assert!(DesKey::from_hex("é123456789ABCDE").is_none());
        let mut b = [0x00u8, 0x01, 0xFE];
        set_odd_parity(&mut b);
        assert_eq!(b, [0x01, 0x01, 0xFE]);
    }
}
