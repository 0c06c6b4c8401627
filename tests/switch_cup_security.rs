//! A UnionPay-style terminal through the switch, over TPDU framing on 127.0.0.1: for each
//! sign-on code (60.3 = 001, 003, 004) field 62 of the reply has that code's layout, read by
//! an independent table of offsets with check values recomputed by the `des` crate
//! (`common/cup_keys.rs`); a purchase MACed with the MAC key whose check value was sent and
//! carrying a PIN under the PIN key sent is approved, reaches the issuer under its zone key,
//! and its reply echoes field 60 and carries a valid MAC; a tampered or unMACed purchase is
//! refused with A0 and never reaches the issuer; an unregistered terminal is told 97. The
//! working keys survive a restart of the switch, and a new sign-on replaces them. The
//! README's worked examples of field 62 are computed here.

mod common;
#[path = "common/cup_keys.rs"]
mod cup_keys;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{MockIssuer, Mode, PAN, Terminal};
use isoswitch::acceptor::security::terminal_mac;
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameConfig, Tpdu};
use isoswitch::iso::{Message, spec};
use isoswitch::keys::pin::{decrypt, encrypt};
use isoswitch::keys::{ClearKeys, DesKey, KeyLayout, MacAlgorithm, PinBlock, WorkingKeys, pin_block_format0};
use isoswitch::switch::serve;
use tokio_util::sync::CancellationToken;

const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";
const ALG: MacAlgorithm = MacAlgorithm::CupEcbDes;

fn cup(mti: &str, tid: &str, stan: u32) -> Message {
    let mut m = Message::new(spec::shipped("cup-pos").unwrap(), mti).unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(41, tid).unwrap();
    m.set(42, "898340158120001").unwrap();
    m
}

fn purchase(tid: &str, stan: u32, amount: u64) -> Message {
    let mut m = cup("0200", tid, stan);
    m.set(2, PAN).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, amount).unwrap();
    m.set(22, "051").unwrap();
    m.set(25, "00").unwrap();
    m.set(49, "156").unwrap();
    m.set(60, "22000001000").unwrap();
    m
}

/// Send with the TPDU and 6-byte header these terminals put before every message.
async fn exchange(t: &mut Terminal, m: &Message) -> Message {
    let f = Frame {
        tpdu: Some(Tpdu { id: 0x60, dst: 0x0003, src: 0x0000 }),
        header: bytes::Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00]),
        body: m.to_bytes().unwrap(),
    };
    t.send_frame(f).await;
    tokio::time::timeout(Duration::from_secs(5), t.recv()).await.expect("a reply in time").expect("a reply")
}

fn sign(m: &mut Message, key: &DesKey) {
    m.set_bytes(64, &[0u8; 8]).unwrap();
    let mac = terminal_mac(ALG, key, m).unwrap();
    m.set_bytes(64, &mac).unwrap();
}

/// A switch with a cup-pos listener holding keys in `dir` (key file written when absent).
async fn start(
    dir: &std::path::Path,
    issuer: &MockIssuer,
) -> (isoswitch::switch::RunningSwitch, CancellationToken) {
    let keys = dir.join("keys.toml");
    if !keys.exists() {
        std::fs::write(&keys, format!("[terminals]\n\"10000001\" = \"{TMK}\"\n[zones]\nbank = \"{ZPK}\"\n"))
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nspec = \"cup-pos\"\nframe = {{ tpdu = true, header_len = 6 }}\n\
         keys = {keys:?}\nmac = \"cup-ecb-des\"\n\
         [[issuer]]\nname = \"bank\"\npin_zone = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\n",
        issuer.addr
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("cup.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    (sw, stop)
}

async fn connect(sw: &isoswitch::switch::RunningSwitch) -> Terminal {
    Terminal::connect_with(sw.listen_addrs()[0], spec::shipped("cup-pos").unwrap(), FrameConfig::cup_pos())
        .await
}

/// Sign on with 60.3 = `code`; the keys as the independent reader finds them in field 62.
async fn sign_on(t: &mut Terminal, code: &str, stan: u32) -> Vec<(&'static str, Vec<u8>)> {
    let mut on = cup("0800", "10000001", stan);
    on.set(60, &format!("00000001{code}")).unwrap();
    let rep = exchange(t, &on).await;
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0810", Some("00")), "sign-on {code}");
    assert_eq!(rep.text(60), on.text(60), "the sign-on reply echoes field 60");
    let f62 = rep.bytes(62).expect("working keys in field 62").into_owned();
    cup_keys::read(code, &DesKey::from_hex(TMK).unwrap().bytes()[..], &f62)
}

fn single(k: &[u8]) -> DesKey {
    DesKey::single(k.try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_on_keys_and_macs_through_the_switch() {
    let issuer = MockIssuer::start(Mode::Approve).await;
    let dir = std::env::temp_dir().join(format!("isoswitch-cup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sw, stop) = start(&dir, &issuer).await;
    let mut t = connect(&sw).await;
    let zpk = DesKey::from_hex(ZPK).unwrap();
    let mut stan = 1;
    let mut approved = 0;
    for (code, _, _) in cup_keys::LAYOUTS {
        let keys = sign_on(&mut t, code, stan).await;
        let mak = single(cup_keys::key(&keys, "mac"));
        let pik = match cup_keys::key(&keys, "pin") {
            k if k.len() == 8 => single(k),
            k => DesKey::double(k.try_into().unwrap()),
        };
        // A purchase MACed with the MAC key sent and with a PIN under the PIN key sent.
        let mut p = purchase("10000001", stan + 1, 12_300);
        let clear = pin_block_format0("123456", PAN).unwrap();
        p.set(22, "021").unwrap().set_bytes(52, encrypt(&pik, &clear).bytes()).unwrap();
        sign(&mut p, &mak);
        let rep = exchange(&mut t, &p).await;
        assert_eq!(rep.text(39).as_deref(), Some("00"), "purchase after sign-on {code}");
        approved += 1;
        assert_eq!(rep.text(60), p.text(60), "the 0210 echoes field 60");
        let got = rep.raw(64).expect("the reply is MACed").to_vec();
        let mut check = rep.clone();
        sign(&mut check, &mak);
        assert_eq!(check.raw(64).unwrap(), &got[..], "reply MAC under the key sent with {code}");
        let blocks = issuer.stats.pin_blocks.lock().unwrap().clone();
        let last = PinBlock::from_slice(blocks.last().expect("a PIN block reached the issuer")).unwrap();
        assert_eq!(decrypt(&zpk, &last), clear, "the PIN key used is the one sent with {code}");
        stan += 2;
    }
    assert_eq!(issuer.requests.load(Ordering::SeqCst), approved);

    // Tampered after MACing, or not MACed at all: A0, and the issuer never sees it.
    let keys = sign_on(&mut t, "003", 20).await;
    let mak = single(cup_keys::key(&keys, "mac"));
    let mut tampered = purchase("10000001", 21, 100);
    sign(&mut tampered, &mak);
    tampered.set_number(4, 999_900).unwrap();
    let refused = exchange(&mut t, &tampered).await;
    assert_eq!(refused.text(39).as_deref(), Some("A0"));
    assert_eq!(refused.text(60), tampered.text(60), "a reply the switch makes echoes field 60 too");
    let bare = purchase("10000001", 22, 100);
    assert_eq!(exchange(&mut t, &bare).await.text(39).as_deref(), Some("A0"));
    assert_eq!(issuer.requests.load(Ordering::SeqCst), approved);

    // An unregistered terminal's sign-on: 97 on these terminals.
    let mut stranger = cup("0800", "99999999", 23);
    stranger.set(60, "00000001001").unwrap();
    assert_eq!(exchange(&mut t, &stranger).await.text(39).as_deref(), Some("97"));
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The keys a terminal signed on with still verify after the switch restarts; a new sign-on
/// then replaces them (the old MAC key gets A0, the new one 00), and that too survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_keys_survive_a_restart_and_a_new_sign_on_replaces_them() {
    let issuer = MockIssuer::start(Mode::Approve).await;
    let dir = std::env::temp_dir().join(format!("isoswitch-cup-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sw, stop) = start(&dir, &issuer).await;
    let mut t = connect(&sw).await;
    let old = single(cup_keys::key(&sign_on(&mut t, "004", 1).await, "mac"));
    drop(t);
    stop.cancel();
    sw.join().await;

    let maced = |stan: u32, key: &DesKey| {
        let mut p = purchase("10000001", stan, 1_000 + u64::from(stan));
        sign(&mut p, key);
        p
    };
    let (sw, stop) = start(&dir, &issuer).await;
    let mut t = connect(&sw).await;
    assert_eq!(
        exchange(&mut t, &maced(2, &old)).await.text(39).as_deref(),
        Some("00"),
        "keys survive a restart"
    );
    let new = single(cup_keys::key(&sign_on(&mut t, "001", 3).await, "mac"));
    assert_eq!(
        exchange(&mut t, &maced(4, &old)).await.text(39).as_deref(),
        Some("A0"),
        "the old key is gone"
    );
    assert_eq!(exchange(&mut t, &maced(5, &new)).await.text(39).as_deref(), Some("00"));
    drop(t);
    stop.cancel();
    sw.join().await;

    let (sw, stop) = start(&dir, &issuer).await;
    let mut t = connect(&sw).await;
    assert_eq!(exchange(&mut t, &maced(6, &new)).await.text(39).as_deref(), Some("00"));
    assert_eq!(exchange(&mut t, &maced(7, &old)).await.text(39).as_deref(), Some("A0"));
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's worked examples: fixed clear keys under the README's TMK, field 62 as the
/// switch lays it out, equal to the bytes built from the independent table and to the hex
/// the README prints.
#[test]
fn readme_worked_examples_of_field_62() {
    let tmk = DesKey::from_hex(TMK).unwrap();
    let k = |h: &str| DesKey::from_hex(h).unwrap();
    let cases = [
        (KeyLayout::Single, "A1B2C3D4E5F60718", "1F2E3D4C5B6A7980", None, README_001),
        (KeyLayout::Double, "A1B2C3D4E5F607181F2E3D4C5B6A7980", "0F1E2D3C4B5A6978", None, README_003),
        (
            KeyLayout::DoubleTrack,
            "A1B2C3D4E5F607181F2E3D4C5B6A7980",
            "0F1E2D3C4B5A6978",
            Some("C1D0E3F2A5B487961032547698BADCFE"),
            README_004,
        ),
    ];
    for (layout, pin, mac, track, want) in cases {
        let clear = ClearKeys { pin: k(pin), mac: k(mac), track: track.map(k) };
        let f62 = WorkingKeys::wrap(layout, &tmk, &clear).field62();
        println!("{} {}", layout.code(), cup_keys::hex(&f62));
        // Built again from the table alone.
        let (_, slots) = cup_keys::layout(layout.code());
        let mut by_table = vec![0u8; layout.field_len()];
        for s in slots {
            let hex = match s.name {
                "pin" => pin,
                "mac" => mac,
                _ => track.unwrap(),
            };
            let key: Vec<u8> = hex::decode(hex).unwrap();
            by_table[s.at..s.at + s.len].copy_from_slice(&cup_keys::under(&tmk.bytes()[..], &key));
            let at = s.at + s.len + s.zeros;
            by_table[at..at + 4].copy_from_slice(&cup_keys::kcv(&key));
        }
        assert_eq!(cup_keys::hex(&f62), cup_keys::hex(&by_table), "{}", layout.code());
        cup_keys::read(layout.code(), &tmk.bytes()[..], &f62);
        assert_eq!(cup_keys::hex(&f62), want, "the README's example for {}", layout.code());
    }
}

const README_001: &str = "FD7AF640961CDB8B5FFE0009731D32AD4B4AE4C9210E0B48";
const README_003: &str = "FD7AF640961CDB8B731D32AD4B4AE4C9C918D258BDBE59C77CF564150000000000000000BFADEE68";
const README_004: &str = "FD7AF640961CDB8B731D32AD4B4AE4C9C918D258BDBE59C77CF564150000000000000000BFADEE689896E9D733E473EB4F17866366ACA0F656BCEBA6";
