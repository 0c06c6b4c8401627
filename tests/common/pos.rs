//! A UnionPay-style POS terminal on one connection (spec `cup-pos`, TPDU and 6-byte
//! header), for the suites that drive the estate's transaction set through a switch.

// Each suite uses some of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameConfig, Tpdu};
use isoswitch::iso::Message;
use isoswitch::iso::spec::{self, Spec};
use isoswitch::switch::{RunningSwitch as Switch, serve};

use tokio_util::sync::CancellationToken;

use super::common::{MockIssuer, Terminal};

/// The card every request carries.
pub const PAN: &str = "6222021234567890128";

/// One terminal on one connection, sending UnionPay-style requests.
pub struct Pos {
    pub t: Terminal,
    pub spec: Arc<Spec>,
    pub tid: &'static str,
}

impl Pos {
    pub async fn connect(addr: SocketAddr, tid: &'static str) -> Pos {
        let spec = spec::shipped("cup-pos").unwrap();
        let t = Terminal::connect_with(addr, spec.clone(), FrameConfig::cup_pos()).await;
        Pos { t, spec, tid }
    }

    /// A request with its trace (11), terminal (41), merchant (42) and field 60.
    pub fn base(&self, mti: &str, stan: u32, f60: &str) -> Message {
        let mut m = Message::new(self.spec.clone(), mti).unwrap();
        m.set_number(11, u64::from(stan)).unwrap().set(41, self.tid).unwrap();
        m.set(42, "898340158120001").unwrap().set(60, f60).unwrap();
        m
    }

    /// A card request: `mti`, 60.1 = `kind` in `batch`, processing code `pc`.
    pub fn card(&self, mti: &str, kind: &str, stan: u32, batch: u32, pc: &str, amount: u64) -> Message {
        let mut m = self.base(mti, stan, &format!("{kind}{batch:06}000"));
        m.set(2, PAN).unwrap().set(3, pc).unwrap().set_number(4, amount).unwrap();
        m.set(25, "00").unwrap().set(49, "156").unwrap();
        m
    }

    pub fn purchase(&self, stan: u32, batch: u32, amount: u64) -> Message {
        self.card("0200", "22", stan, batch, "000000", amount)
    }

    /// A purchase void in `batch` naming trace `trace` of batch `of_batch` in field 61.
    pub fn void(&self, stan: u32, batch: u32, amount: u64, of_batch: u32, trace: u32) -> Message {
        let mut m = self.card("0200", "23", stan, batch, "200000", amount);
        m.set(61, &format!("{of_batch:06}{trace:06}")).unwrap();
        m
    }

    /// Batch settlement of `batch` with these domestic debit totals.
    pub fn settle(&self, stan: u32, batch: u32, debit_amount: u64, debit_count: u32) -> Message {
        let mut m = self.base("0500", stan, &format!("00{batch:06}201"));
        let f48 = format!("{debit_amount:012}{debit_count:03}{:012}{:03}0{}", 0, 0, "0".repeat(31));
        m.set(48, &f48).unwrap().set(49, "156").unwrap();
        m
    }

    /// Send `m` and return the reply.
    pub async fn send(&mut self, m: &Message) -> Message {
        self.t
            .send_frame(Frame {
                tpdu: Some(Tpdu { id: 0x60, dst: 0x0003, src: 0x0000 }),
                header: bytes::Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00]),
                body: m.to_bytes().unwrap(),
            })
            .await;
        let r = self.t.recv().await.expect("a reply");
        assert_eq!(r.stan(), m.stan(), "the reply answers the request");
        r
    }

    /// Send `m` and return the reply's response code.
    pub async fn rc(&mut self, m: &Message) -> String {
        self.send(m).await.text(39).unwrap().into_owned()
    }
}

/// A switch with one `cup-pos` listener, a SQLite journal and SAF key in `dir`, and `issuer`.
pub async fn switch(dir: &Path, issuer: &MockIssuer) -> (Switch, CancellationToken) {
    let text = format!(
        "journal = {:?}\n[saf]\nkey_file = {:?}\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\nspec = \"cup-pos\"\nframe = {{ tpdu = true, header_len = 6 }}\n\
         [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n",
        dir.join("journal.db"),
        dir.join("saf.key"),
        issuer.addr
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("cup-batch.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    (sw, stop)
}

/// A fresh temporary directory named after the test and the process.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isoswitch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
