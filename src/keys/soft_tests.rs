use super::*;
use crate::keys::des::hex_upper;
use crate::keys::mac_input;
use crate::keys::pin::{self, pin_block_format0};

const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";
const FILE: &str = "[terminals]\n\"10000001\" = \"0123456789ABCDEFFEDCBA9876543210\"\n[zones]\nbank-a = \"89ABCDEF0123456776543210FEDCBA98\"\n";
const PAN: &str = "4111111111111111";

fn store() -> SoftKeyStore {
    SoftKeyStore::parse("keys.toml", FILE).unwrap()
}

/// What a terminal does with the sign-on reply: unwrap both keys and check their KCVs.
fn terminal_keys(wk: &WorkingKeys) -> (Key, Key) {
    let tmk = Key::from_hex(TMK).unwrap();
    let pin = Key::unwrap_under(&tmk, &wk.pin_key.under_tmk);
    let mac = Key::unwrap_under(&tmk, &wk.mac_key.under_tmk);
    assert_eq!(pin.check_value(), wk.pin_key.check_value);
    assert_eq!(mac.check_value(), wk.mac_key.check_value);
    (pin, mac)
}

#[test]
fn sign_on_mac_and_tamper() {
    let s = store();
    let wk = s.sign_on("10000001").unwrap();
    assert_eq!(WorkingKeys::from_field62(&wk.field62()), Some(wk.clone()));
    let (_, mac_key) = terminal_keys(&wk);
    let data = b"\x02\x00 purchase of 100.00 at terminal 10000001".to_vec();
    for alg in [MacAlgorithm::CupEcbDes, MacAlgorithm::CupEcb3Des, MacAlgorithm::X99, MacAlgorithm::X919] {
        let m = compute(alg, &mac_key, &data);
        s.verify_mac("10000001", alg, &data, &m.0).unwrap();
        assert_eq!(s.generate_mac("10000001", alg, &data).unwrap(), m);
        let mut tampered = data.clone();
        tampered[10] ^= 0x01;
        let e = s.verify_mac("10000001", alg, &tampered, &m.0).unwrap_err();
        assert!(matches!(e, KeyError::MacMismatch { .. }), "{alg:?}");
    }
    // A new sign-on replaces the keys: the old MAC no longer verifies.
    let old = compute(MacAlgorithm::X919, &mac_key, &data);
    s.sign_on("10000001").unwrap();
    assert!(s.verify_mac("10000001", MacAlgorithm::X919, &data, &old.0).is_err());
}

#[test]
fn pin_translation_and_wrong_key() {
    let s = store();
    let wk = s.sign_on("10000001").unwrap();
    let (pin_key, mac_key) = terminal_keys(&wk);
    let clear = pin_block_format0("1234", PAN).unwrap();
    let sent = pin::encrypt(&pin_key, &clear);
    let out = s.translate_pin("10000001", "bank-a", &sent, PAN).unwrap();
    assert_eq!(pin::decrypt(&Key::from_hex(ZPK).unwrap(), &out), clear);
    // Encrypted under the wrong key (the MAC key, the TMK, or stale keys): refused, never output.
    let tmk = Key::from_hex(TMK).unwrap();
    for wrong in [&mac_key, &tmk] {
        let e = s.translate_pin("10000001", "bank-a", &pin::encrypt(wrong, &clear), PAN).unwrap_err();
        assert!(matches!(e, KeyError::PinRefused { .. }), "{e}");
    }
    s.sign_on("10000001").unwrap();
    assert!(s.translate_pin("10000001", "bank-a", &sent, PAN).is_err());
    // Random blocks almost never pass the format check; 500 tries, all refused.
    let rng = SystemRandom::new();
    for _ in 0..500 {
        let mut b = [0u8; 8];
        rng.fill(&mut b).unwrap();
        assert!(s.translate_pin("10000001", "bank-a", &PinBlock::new(b), PAN).is_err());
    }
}

#[test]
fn unknown_and_unsigned() {
    let s = store();
    assert!(matches!(s.sign_on("99999999"), Err(KeyError::UnknownTerminal { .. })));
    assert!(matches!(s.generate_mac("10000001", MacAlgorithm::X99, b"x"), Err(KeyError::NotSignedOn { .. })));
    assert!(matches!(
        s.verify_mac("99999999", MacAlgorithm::X99, b"x", &[0; 8]),
        Err(KeyError::UnknownTerminal { .. })
    ));
    s.sign_on("10000001").unwrap();
    let b = PinBlock::new([0; 8]);
    assert!(matches!(s.translate_pin("10000001", "bank-z", &b, PAN), Err(KeyError::UnknownZone { .. })));
}

/// No error or Debug output carries key bytes, PIN blocks or PINs.
#[test]
fn nothing_secret_in_errors_or_debug() {
    let s = store();
    let wk = s.sign_on("10000001").unwrap();
    let (pin_key, mac_key) = terminal_keys(&wk);
    let clear = pin_block_format0("1234", PAN).unwrap();
    let sent = pin::encrypt(&mac_key, &clear);
    let mut secrets: Vec<String> = vec![TMK.into(), ZPK.into(), "1234".into(), PAN.into()];
    for k in [&pin_key, &mac_key] {
        secrets.push(String::from_utf8(hex_upper(k.bytes())).unwrap());
        secrets.push(String::from_utf8(hex_upper(&k.bytes()[..8])).unwrap());
    }
    for b in [&clear, &sent] {
        secrets.push(String::from_utf8(hex_upper(b.bytes())).unwrap());
    }
    let mut shown =
        vec![format!("{s:?}"), format!("{wk:?}"), format!("{pin_key:?} {mac_key:?} {clear:?} {sent:?}")];
    let errors = [
        s.translate_pin("10000001", "bank-a", &sent, PAN).unwrap_err(),
        s.verify_mac("10000001", MacAlgorithm::X919, b"data", &[0; 8]).unwrap_err(),
        SoftKeyStore::parse("k.toml", "[terminals]\nt1 = \"0123456789ABCDEFFEDCBA987654321G\"\n")
            .unwrap_err(),
        SoftKeyStore::parse("k.toml", "[terminals]\nt1 = \"0123456789ABCDEFFEDCBA98765432\"\n").unwrap_err(),
        SoftKeyStore::parse("k.toml", "[terminals]\nt1 = \"0123456789ABCDEFFEDCBA9876543210\n").unwrap_err(),
        SoftKeyStore::parse("k.toml", "[terminals]\nt1 = 0123456789ABCDEFFEDCBA9876543210\n").unwrap_err(),
    ];
    for e in &errors {
        shown.push(format!("{e}"));
        shown.push(format!("{e:?}"));
    }
    for text in &shown {
        for secret in &secrets {
            let t = text.to_uppercase();
            assert!(!t.contains(&secret.to_uppercase()), "{text:?} shows a secret");
        }
        for fragment in ["0123456789ABCDEF", "FEDCBA98765432"] {
            assert!(!text.to_uppercase().contains(fragment), "{text:?} shows key material");
        }
    }
}

#[test]
fn file_errors_name_file_line_and_key() {
    let cases = [
        ("[terminals]\n\"t1\" = \"00\"\n", 2, "t1", "expected 32 hex digits, found 2"),
        ("[zones]\n\nbank = \"0123456789ABCDEFFEDCBA987654321X\"\n", 3, "bank", "not hex digits"),
        ("[terminals]\nt1 = 5\n", 2, "t1", "expected a string"),
        ("[keys]\nx = \"\"\n", 1, "keys", "unknown section"),
    ];
    for (text, line, key, msg) in cases {
        let e = SoftKeyStore::parse("/etc/isoswitch/keys.toml", text).unwrap_err().to_string();
        assert!(e.starts_with(&format!("/etc/isoswitch/keys.toml:{line}: {key}: ")), "{e}");
        assert!(e.contains(msg), "{e}");
    }
    let e = SoftKeyStore::parse("k.toml", "[terminals\n").unwrap_err().to_string();
    assert!(e.starts_with("k.toml:1: (document): "), "{e}");
}

#[cfg(unix)]
#[test]
fn refuses_a_readable_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("isoswitch-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.toml");
    std::fs::write(&path, FILE).unwrap();
    for mode in [0o644, 0o604, 0o640] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = SoftKeyStore::load(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("readable by group or others"), "{e}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(SoftKeyStore::load(&path).unwrap().terminals(), 1);
    let e = SoftKeyStore::load(&dir.join("missing.toml")).unwrap_err().to_string();
    assert!(e.contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The wire path: a cup-pos terminal MACs its 0200 over `mac_input`, the switch decodes the
/// frame and verifies; a changed amount on the wire fails. The sign-on reply carries field 62.
#[test]
fn cup_pos_message_round_trip() {
    use crate::iso::{Message, spec};
    let spec = spec::shipped("cup-pos").unwrap();
    let s = store();
    let wk = s.sign_on("10000001").unwrap();
    let mut reply = Message::new(spec.clone(), "0810").unwrap();
    reply.set_bytes(62, &wk.field62()).unwrap();
    let reply = Message::decode(&spec, reply.to_bytes().unwrap()).unwrap();
    let got = WorkingKeys::from_field62(reply.raw(62).unwrap()).unwrap();
    let (_, mac_key) = terminal_keys(&got);

    let mut m = Message::new(spec.clone(), "0200").unwrap();
    m.set(3, "000000").unwrap().set(4, "000000010000").unwrap().set(11, "000001").unwrap();
    m.set(41, "10000001").unwrap().set(42, "123456789012345").unwrap();
    let mac = compute(MacAlgorithm::CupEcbDes, &mac_key, &mac_input(&m).unwrap());
    m.set_bytes(64, &mac.0).unwrap();
    let wire = m.to_bytes().unwrap();

    let rx = Message::decode(&spec, wire.clone()).unwrap();
    let alg = MacAlgorithm::CupEcbDes;
    s.verify_mac("10000001", alg, &mac_input(&rx).unwrap(), rx.raw(64).unwrap()).unwrap();

    let mut tampered = wire.to_vec();
    let at = tampered.windows(6).position(|w| w == [0, 0, 0, 1, 0, 0]).unwrap(); // amount 100.00
    tampered[at + 3] = 0x09;
    let rx = Message::decode(&spec, tampered.into()).unwrap();
    assert_eq!(rx.amount(), Some(90000));
    let e = s.verify_mac("10000001", alg, &mac_input(&rx).unwrap(), rx.raw(64).unwrap()).unwrap_err();
    assert!(matches!(e, KeyError::MacMismatch { .. }));
}
