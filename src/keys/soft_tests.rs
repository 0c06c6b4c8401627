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

/// What a terminal does with the sign-on reply: unwrap the keys and check their KCVs.
fn terminal_keys(wk: &WorkingKeys) -> (DesKey, DesKey) {
    let clear = wk.open(&DesKey::from_hex(TMK).unwrap()).expect("check values match");
    (clear.pin, clear.mac)
}

/// Each layout: the keys have the layout's lengths (single-length MAC key always), the store
/// holds exactly the keys whose check values it sent, and only 004 has a track key.
#[test]
fn sign_on_layouts_hold_what_was_sent() {
    let s = store();
    for layout in KeyLayout::ALL {
        let wk = s.sign_on("10000001", layout).unwrap();
        assert_eq!(wk.field62().len(), layout.field_len());
        let clear = wk.open(&DesKey::from_hex(TMK).unwrap()).unwrap();
        assert_eq!(clear.mac.left(), clear.mac.right(), "single-length MAC key in {layout:?}");
        assert_eq!(clear.pin.left() != clear.pin.right(), layout.double_pin(), "{layout:?}");
        assert_eq!(clear.track.is_some(), layout.has_track());
        let held = s.check_values("10000001").unwrap();
        assert_eq!(held.layout, layout);
        assert_eq!(held.pin, wk.pin_key.check_value);
        assert_eq!(held.mac, wk.mac_key.check_value);
        assert_eq!(held.track, wk.track_key.as_ref().map(|t| t.check_value));
        let data = b"some message bytes";
        for alg in [MacAlgorithm::CupEcbDes, MacAlgorithm::X99, MacAlgorithm::X919, MacAlgorithm::CupEcb3Des]
        {
            s.verify_mac("10000001", alg, data, &compute(alg, &clear.mac, data).0).unwrap();
        }
    }
    assert!(matches!(s.check_values("99999999"), Err(KeyError::UnknownTerminal { .. })));
}

#[test]
fn sign_on_mac_and_tamper() {
    let s = store();
    let wk = s.sign_on("10000001", KeyLayout::Double).unwrap();
    assert_eq!(WorkingKeys::from_field62(KeyLayout::Double, &wk.field62()), Some(wk.clone()));
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
    s.sign_on("10000001", KeyLayout::Single).unwrap();
    assert!(s.verify_mac("10000001", MacAlgorithm::X919, &data, &old.0).is_err());
}

#[test]
fn pin_translation_and_wrong_key() {
    let s = store();
    let wk = s.sign_on("10000001", KeyLayout::Single).unwrap();
    let (pin_key, mac_key) = terminal_keys(&wk);
    let clear = pin_block_format0("1234", PAN).unwrap();
    let sent = pin::encrypt(&pin_key, &clear);
    let out = s.translate_pin("10000001", "bank-a", &sent, PAN).unwrap();
    assert_eq!(pin::decrypt(&DesKey::from_hex(ZPK).unwrap(), &out), clear);
    // Encrypted under the wrong key (the MAC key, the TMK, or stale keys): refused, never output.
    let tmk = DesKey::from_hex(TMK).unwrap();
    for wrong in [&mac_key, &tmk] {
        let e = s.translate_pin("10000001", "bank-a", &pin::encrypt(wrong, &clear), PAN).unwrap_err();
        assert!(matches!(e, KeyError::PinRefused { .. }), "{e}");
    }
    s.sign_on("10000001", KeyLayout::Double).unwrap();
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
    assert!(matches!(s.sign_on("99999999", KeyLayout::Single), Err(KeyError::UnknownTerminal { .. })));
    assert!(matches!(s.generate_mac("10000001", MacAlgorithm::X99, b"x"), Err(KeyError::NotSignedOn { .. })));
    assert!(matches!(
        s.verify_mac("99999999", MacAlgorithm::X99, b"x", &[0; 8]),
        Err(KeyError::UnknownTerminal { .. })
    ));
    s.sign_on("10000001", KeyLayout::Single).unwrap();
    let b = PinBlock::new([0; 8]);
    assert!(matches!(s.translate_pin("10000001", "bank-z", &b, PAN), Err(KeyError::UnknownZone { .. })));
}

/// No error or Debug output carries key bytes, PIN blocks or PINs.
#[test]
fn nothing_secret_in_errors_or_debug() {
    let s = store();
    let wk = s.sign_on("10000001", KeyLayout::Double).unwrap();
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
        assert!(e.contains(&format!("run `chmod 600 {}`", path.display())), "says what to do: {e}");
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
    let wk = s.sign_on("10000001", KeyLayout::Single).unwrap();
    let mut reply = Message::new(spec.clone(), "0810").unwrap();
    reply.set_bytes(62, &wk.field62()).unwrap();
    let reply = Message::decode(&spec, reply.to_bytes().unwrap()).unwrap();
    let got = WorkingKeys::from_field62(KeyLayout::Single, reply.raw(62).unwrap()).unwrap();
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

/// Working keys survive a reload of the key file (a restart): the reloaded store holds the
/// keys last sent to each terminal; a new sign-on replaces them, and the reload after it has
/// the new ones only. A torn or foreign line is skipped, the file is compacted to one line per
/// terminal, created 0600, and refused when others may read it.
#[cfg(unix)]
#[test]
fn working_keys_survive_a_reload() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("isoswitch-keys-working-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.toml");
    std::fs::write(&path, FILE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let working = dir.join("keys.toml.working");
    let data = b"a message";

    let s = SoftKeyStore::load(&path).unwrap();
    assert_eq!(s.restored(), (0, 0));
    assert!(matches!(s.check_values("10000001"), Err(KeyError::NotSignedOn { .. })));
    let first = s.sign_on("10000001", KeyLayout::DoubleTrack).unwrap();
    let mode = std::fs::metadata(&working).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&working).unwrap();
    let (pin1, mac1) = terminal_keys(&first);
    for k in [&pin1, &mac1] {
        let clear = String::from_utf8(hex_upper(&k.bytes()[..8])).unwrap();
        assert!(!text.contains(&clear), "the file holds no clear key");
    }
    drop(s);

    let s = SoftKeyStore::load(&path).unwrap();
    assert_eq!(s.restored(), (1, 0));
    let held = s.check_values("10000001").unwrap();
    assert_eq!(held.layout, KeyLayout::DoubleTrack);
    assert_eq!(held.track, first.track_key.as_ref().map(|t| t.check_value), "the track key is kept");
    let mac = compute(MacAlgorithm::CupEcbDes, &mac1, data);
    s.verify_mac("10000001", MacAlgorithm::CupEcbDes, data, &mac.0).unwrap();
    let second = s.sign_on("10000001", KeyLayout::Single).unwrap();
    assert!(s.verify_mac("10000001", MacAlgorithm::CupEcbDes, data, &mac.0).is_err());
    drop(s);

    // A torn last line and a line for a terminal without a TMK: skipped.
    let mut f = std::fs::OpenOptions::new().append(true).open(&working).unwrap();
    std::io::Write::write_all(&mut f, b"003 0123 10000001\n001 00 nobody\n003 8E").unwrap();
    drop(f);
    let s = SoftKeyStore::load(&path).unwrap();
    assert_eq!(s.restored(), (1, 3));
    let held = s.check_values("10000001").unwrap();
    assert_eq!((held.layout, held.mac), (KeyLayout::Single, second.mac_key.check_value));
    let (_, mac2) = terminal_keys(&second);
    let mac = compute(MacAlgorithm::X99, &mac2, data);
    s.verify_mac("10000001", MacAlgorithm::X99, data, &mac.0).unwrap();
    drop(s);
    assert_eq!(std::fs::read_to_string(&working).unwrap().lines().count(), 1, "compacted");

    std::fs::set_permissions(&working, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = SoftKeyStore::load(&path).unwrap_err().to_string();
    assert!(e.contains("keys.toml.working") && e.contains("readable by group or others"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
