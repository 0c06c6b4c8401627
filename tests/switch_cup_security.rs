//! A UnionPay-style terminal through the switch, over TPDU framing on 127.0.0.1: sign-on
//! returns working keys in field 62 (encrypted under the terminal master key, with check
//! values the terminal can verify); a purchase MACed with the MAC key is approved and its
//! reply carries a valid MAC; a tampered or unMACed purchase is refused with A0 and never
//! reaches the issuer; an unregistered terminal is told 97.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{MockIssuer, Mode, PAN, Terminal};
use isoswitch::acceptor::{security::terminal_mac, serve};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameConfig, Tpdu};
use isoswitch::iso::{Message, spec};
use isoswitch::keys::{Key, MacAlgorithm, WorkingKeys};
use tokio_util::sync::CancellationToken;

const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
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

fn sign(m: &mut Message, key: &Key) {
    m.set_bytes(64, &[0u8; 8]).unwrap();
    let mac = terminal_mac(ALG, key, m).unwrap();
    m.set_bytes(64, &mac).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_on_keys_and_macs_through_the_switch() {
    let issuer = MockIssuer::start(Mode::Approve).await;
    let dir = std::env::temp_dir().join(format!("isoswitch-cup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.toml");
    std::fs::write(&keys, format!("[terminals]\n\"10000001\" = \"{TMK}\"\n[zones]\nbank = \"{TMK}\"\n"))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nspec = \"cup-pos\"\nframe = {{ tpdu = true, header_len = 6 }}\n\
         keys = {keys:?}\nmac = \"cup-ecb-des\"\n\
         [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\n",
        issuer.addr
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("cup.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let frame = FrameConfig::cup_pos();
    let mut t = Terminal::connect_with(sw.listen_addrs()[0], spec::shipped("cup-pos").unwrap(), frame).await;

    // Sign-on: keys under the TMK, with check values that match what the terminal unwraps.
    let mut on = cup("0800", "10000001", 1);
    on.set(60, "00000001001").unwrap();
    let rep = exchange(&mut t, &on).await;
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0810", Some("00")));
    let f62 = rep.bytes(62).expect("working keys in field 62").into_owned();
    let wk = WorkingKeys::from_field62(&f62).expect("40-byte key block");
    let tmk = Key::from_hex(TMK).unwrap();
    let mak = Key::unwrap_under(&tmk, &wk.mac_key.under_tmk);
    assert_eq!(mak.check_value(), wk.mac_key.check_value, "MAC key check value");
    let pik = Key::unwrap_under(&tmk, &wk.pin_key.under_tmk);
    assert_eq!(pik.check_value(), wk.pin_key.check_value, "PIN key check value");

    // A MACed purchase is approved and the reply's MAC verifies.
    let mut p = purchase("10000001", 2, 12_300);
    sign(&mut p, &mak);
    let rep = exchange(&mut t, &p).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    let got = rep.raw(64).expect("the reply is MACed").to_vec();
    let mut check = rep.clone();
    sign(&mut check, &mak);
    assert_eq!(check.raw(64).unwrap(), &got[..], "reply MAC");
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);

    // Tampered after MACing, or not MACed at all: A0, and the issuer never sees it.
    let mut tampered = purchase("10000001", 3, 100);
    sign(&mut tampered, &mak);
    tampered.set_number(4, 999_900).unwrap();
    assert_eq!(exchange(&mut t, &tampered).await.text(39).as_deref(), Some("A0"));
    let bare = purchase("10000001", 4, 100);
    assert_eq!(exchange(&mut t, &bare).await.text(39).as_deref(), Some("A0"));
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);

    // An unregistered terminal's sign-on: 97 on these terminals.
    let mut stranger = cup("0800", "99999999", 5);
    stranger.set(60, "00000001001").unwrap();
    assert_eq!(exchange(&mut t, &stranger).await.text(39).as_deref(), Some("97"));
    stop.cancel();
    sw.join().await;
    let _ = std::fs::remove_dir_all(&dir);
}
