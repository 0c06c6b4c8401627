//! Cost of the security operations a cup-pos transaction pays: MAC verification over a typical
//! purchase (mac_input + verify) and PIN translation, through the software key store. The setup
//! is checked before timing: the MAC verifies and the PIN block translates.
//!
//! `cargo bench --bench keys -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use isoswitch::iso::{Message, spec};
use isoswitch::keys::{
    DesKey, KeyLayout, KeyStore, MacAlgorithm, SoftKeyStore, WorkingKeys, compute_mac, mac_input, pin,
    pin_block_format0,
};

const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
const FILE: &str = "[terminals]\n\"10000001\" = \"0123456789ABCDEFFEDCBA9876543210\"\n[zones]\nbank-a = \"89ABCDEF0123456776543210FEDCBA98\"\n";
const PAN: &str = "6222021234567890128";

fn bench(c: &mut Criterion) {
    let store = SoftKeyStore::parse("bench-keys.toml", FILE).expect("key file");
    let wk = store.sign_on("10000001", KeyLayout::Double).expect("sign-on");
    let wk = WorkingKeys::from_field62(KeyLayout::Double, &wk.field62()).expect("field 62");
    let tmk = DesKey::from_hex(TMK).expect("tmk");
    let clear = wk.open(&tmk).expect("check values");
    let (mac_key, pin_key) = (clear.mac, clear.pin);

    let spec = spec::shipped("cup-pos").expect("spec");
    let mut m = Message::new(spec.clone(), "0200").expect("mti");
    m.set(2, PAN).unwrap().set(3, "000000").unwrap().set(4, "000000010000").unwrap();
    m.set(11, "000001").unwrap().set(22, "021").unwrap().set(25, "00").unwrap();
    m.set(35, "6222021234567890128=3012101000000000").unwrap();
    m.set(41, "10000001").unwrap().set(42, "123456789012345").unwrap().set(49, "156").unwrap();
    m.set(60, "22000001000").unwrap();
    let enc_pin = pin::encrypt(&pin_key, &pin_block_format0("123456", PAN).expect("pin"));
    m.set_bytes(52, enc_pin.bytes()).unwrap();
    for alg in [MacAlgorithm::CupEcbDes, MacAlgorithm::X919] {
        let mac = compute_mac(alg, &mac_key, &mac_input(&m).expect("mac input"));
        let mut signed = m.clone();
        signed.set_bytes(64, &mac.0).unwrap();
        let wire = signed.to_bytes().expect("encode");
        let rx = Message::decode(&spec, wire).expect("decode");
        // Check the setup before timing: the MAC verifies.
        store.verify_mac("10000001", alg, &mac_input(&rx).unwrap(), rx.raw(64).unwrap()).expect("verifies");
        c.bench_function(&format!("verify_mac_{alg:?}"), |b| {
            b.iter(|| {
                let data = mac_input(black_box(&rx)).unwrap();
                store.verify_mac("10000001", alg, &data, rx.raw(64).unwrap()).unwrap()
            })
        });
    }
    store.translate_pin("10000001", "bank-a", &enc_pin, PAN).expect("translates");
    c.bench_function("translate_pin", |b| {
        b.iter(|| store.translate_pin("10000001", "bank-a", black_box(&enc_pin), PAN).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
