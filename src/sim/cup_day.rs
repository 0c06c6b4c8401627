//! A day of one UnionPay-style POS terminal (`sim-terminal --scenario cup-day`): it signs on
//! with the 60.3 code it is configured for (001, 003 or 004), reads field 62 in that code's
//! layout and checks the working keys' check values, then runs purchases with MAC and PIN, a void,
//! a refund, a pre-authorisation and its completion, a balance inquiry, a PIN under a wrong
//! key and a tampered message, a purchase the issuer does not answer (the terminal gives up,
//! reconnects and reverses it before anything else), batch settlement with field 48
//! totals of what it believes approved, a purchase still in the settled batch (77) and one
//! in the next, and sign-off. Every reply's response code is compared with what
//! the day expects and every MACed reply's MAC is verified. An edge module: it may import
//! the codec, framing, the key types and tokio.
//! May import: crate::frame, crate::iso, crate::keys, crate::time.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::frame::{Frame, FrameCodec, FrameConfig, Tpdu};
use crate::iso::{Message, Spec};
use crate::keys::{
    DesKey, KeyLayout, MacAlgorithm, WorkingKeys, compute_mac, mac_input, pin, pin_block_format0,
};

/// Who the terminal is and what its day looks like.
#[derive(Debug, Clone)]
pub struct CupDayConfig {
    pub connect: SocketAddr,
    pub terminal: String,
    /// 15 characters.
    pub merchant: String,
    /// Terminal master key (the one the switch's key file holds for this terminal).
    pub tmk: DesKey,
    pub mac: MacAlgorithm,
    /// The key layout the sign-on asks for (60.3 = 001, 003 or 004).
    pub sign_on: KeyLayout,
    pub pan: String,
    pub pin: String,
    /// The batch the terminal starts in (60.2).
    pub batch: u32,
    /// The first trace number (field 11).
    pub first_trace: u32,
    /// Amount of the purchase the issuer does not answer (arranged with the issuer).
    pub silent_amount: u64,
    /// How long the terminal waits for that purchase before it gives up and reverses it.
    pub give_up: Duration,
    /// How long it waits for any other reply.
    pub reply_timeout: Duration,
}

impl CupDayConfig {
    /// Defaults that match `sim-issuer --silent-amount 6800` and a key file with this TMK.
    pub fn new(connect: SocketAddr, tmk: DesKey) -> CupDayConfig {
        CupDayConfig {
            connect,
            terminal: "10000001".into(),
            merchant: "898340158120001".into(),
            tmk,
            mac: MacAlgorithm::CupEcbDes,
            sign_on: KeyLayout::Single,
            pan: "6222021234567890128".into(),
            pin: "123456".into(),
            batch: 1,
            first_trace: 1,
            silent_amount: 6_800,
            give_up: Duration::from_millis(500),
            reply_timeout: Duration::from_secs(5),
        }
    }
}

/// One exchange of the day: a step of the scenario and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayStep {
    pub name: &'static str,
    pub stan: u32,
    /// The response code the day expects; `None` for the step expected to go unanswered.
    pub want: Option<&'static str>,
    /// What came back (`None`: nothing in time).
    pub rc: Option<String>,
    /// The reply carried a MAC that verified (or the reply is not MACed by design).
    pub mac_ok: bool,
    /// Field 37 and 38 of the reply.
    pub rrn: Option<String>,
    pub auth: Option<String>,
}

impl DayStep {
    pub fn ok(&self) -> bool {
        self.rc.as_deref() == self.want && self.mac_ok
    }
}

/// The day's outcome.
#[derive(Debug, Clone, Default)]
pub struct CupDayReport {
    pub steps: Vec<DayStep>,
    /// Field 48 of the settlement reply.
    pub settlement_48: Option<String>,
    /// Field 62 of the sign-on reply as received (keys under the TMK and check values), for
    /// checks independent of this terminal's reading of it.
    pub sign_on_62: Option<Vec<u8>>,
}

impl CupDayReport {
    /// Every step answered as expected and settlement balanced (result digit 1).
    pub fn ok(&self) -> bool {
        self.steps.iter().all(DayStep::ok) && self.balanced()
    }

    pub fn balanced(&self) -> bool {
        self.settlement_48.as_deref().and_then(|f| f.get(30..31)) == Some("1")
    }

    pub fn step(&self, name: &str) -> Option<&DayStep> {
        self.steps.iter().find(|s| s.name == name)
    }
}

impl std::fmt::Display for CupDayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "{:<22} trace {:06}  rc {:<4} want {:<4} mac {}  {}",
                s.name,
                s.stan,
                s.rc.as_deref().unwrap_or("-"),
                s.want.unwrap_or("-"),
                if s.mac_ok { "ok" } else { "BAD" },
                if s.ok() { "ok" } else { "UNEXPECTED" }
            )?;
        }
        write!(f, "settlement: {}", if self.balanced() { "balanced" } else { "NOT balanced" })
    }
}

/// Why the day could not run.
#[derive(Debug, thiserror::Error)]
pub enum DayError {
    #[error("connect {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("connection: {0}")]
    Io(String),
    #[error("building a message: {0}")]
    Build(#[from] crate::iso::EncodeError),
    #[error("sign-on: {0}")]
    SignOn(String),
    #[error("the cup-pos spec is missing")]
    Spec,
}

type Conn = Framed<TcpStream, FrameCodec>;

struct Terminal {
    cfg: CupDayConfig,
    spec: std::sync::Arc<Spec>,
    conn: Conn,
    trace: u32,
    tpk: Option<DesKey>,
    tak: Option<DesKey>,
    date: String,
    report: CupDayReport,
}

async fn connect(addr: SocketAddr) -> Result<Conn, DayError> {
    let tcp = TcpStream::connect(addr).await.map_err(|source| DayError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    Ok(Framed::new(tcp, FrameCodec::new(FrameConfig::cup_pos())))
}

/// Today as MMDD and hhmmss (UTC).
fn today() -> (String, String) {
    let c = crate::time::now().civil(0);
    let (m, d, secs) = (c.date.month, c.date.day, c.second_of_day);
    (format!("{m:02}{d:02}"), format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60))
}

impl Terminal {
    fn next_trace(&mut self) -> u32 {
        let t = self.trace;
        self.trace = if self.trace >= 999_999 { 1 } else { self.trace + 1 };
        t
    }

    fn base(
        &mut self,
        mti: &str,
        pc: Option<&str>,
        amount: Option<u64>,
        f60: &str,
    ) -> Result<Message, DayError> {
        let mut m = Message::new(self.spec.clone(), mti)?;
        let trace = self.next_trace();
        if let Some(pc) = pc {
            m.set(2, &self.cfg.pan)?.set(3, pc)?;
        }
        if let Some(a) = amount {
            m.set_number(4, a)?;
        }
        let (date, time) = today();
        m.set_number(11, u64::from(trace))?.set(12, &time)?.set(13, &date)?;
        m.set(41, &self.cfg.terminal)?.set(42, &self.cfg.merchant)?;
        if pc.is_some() {
            m.set(49, "156")?;
        }
        m.set(60, f60)?;
        Ok(m)
    }

    fn f60(&self, code: &str, network: &str) -> String {
        format!("{code}{:06}{network}", self.cfg.batch)
    }

    /// Adds field 52: the PIN under `key` (the terminal's PIN key unless told otherwise).
    fn with_pin(&self, m: &mut Message, key: Option<&DesKey>) -> Result<(), DayError> {
        let Some(k) = key.or(self.tpk.as_ref()) else { return Err(DayError::SignOn("no PIN key".into())) };
        let clear = pin_block_format0(&self.cfg.pin, &self.cfg.pan)
            .map_err(|e| DayError::SignOn(format!("PIN block: {e}")))?;
        m.set(22, "021")?.set(26, "12")?;
        m.set_bytes(52, pin::encrypt(k, &clear).bytes())?;
        Ok(())
    }

    fn mac(&self, m: &mut Message) -> Result<(), DayError> {
        let Some(k) = &self.tak else { return Err(DayError::SignOn("no MAC key".into())) };
        m.set_bytes(64, &[0u8; 8])?;
        let input = mac_input(m).map_err(|e| DayError::SignOn(e.to_string()))?;
        m.set_bytes(64, &compute_mac(self.cfg.mac, k, &input).0)?;
        Ok(())
    }

    fn reply_mac_ok(&self, rep: &Message) -> bool {
        let (Some(k), Some(got)) = (&self.tak, rep.raw(64)) else { return false };
        let mut check = rep.clone();
        if check.set_bytes(64, &[0u8; 8]).is_err() {
            return false;
        }
        mac_input(&check).is_ok_and(|input| compute_mac(self.cfg.mac, k, &input).matches(got))
    }

    async fn send(&mut self, m: &Message) -> Result<(), DayError> {
        let frame = Frame {
            tpdu: Some(Tpdu { id: 0x60, dst: 0x0003, src: 0x0000 }),
            header: bytes::Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00]),
            body: m.to_bytes()?,
        };
        self.conn.send(frame).await.map_err(|e| DayError::Io(e.to_string()))
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<Message>, DayError> {
        match tokio::time::timeout(within, self.conn.next()).await {
            Err(_) => Ok(None),
            Ok(None) => Err(DayError::Io("the switch closed the connection".into())),
            Ok(Some(Err(e))) => Err(DayError::Io(e.to_string())),
            Ok(Some(Ok(f))) => {
                Message::decode(&self.spec, f.body).map(Some).map_err(|e| DayError::Io(e.to_string()))
            }
        }
    }

    /// Send `m` (MACed when `mac`), wait for its reply, and record the step.
    async fn step(
        &mut self,
        name: &'static str,
        mut m: Message,
        mac: bool,
        want: &'static str,
    ) -> Result<Option<Message>, DayError> {
        if mac {
            self.mac(&mut m)?;
        }
        self.send(&m).await?;
        let rep = self.recv(self.cfg.reply_timeout).await?;
        let text = |n: usize| rep.as_ref().and_then(|r| r.text(n).map(|t| t.into_owned()));
        let rc = text(39);
        // Replies to refused MACs (A0) cannot be MACed with a key the terminal must renew.
        let mac_ok =
            !mac || rc.as_deref() == Some("A0") || rep.as_ref().is_some_and(|r| self.reply_mac_ok(r));
        let stan = m.stan().unwrap_or(0);
        self.report.steps.push(DayStep {
            name,
            stan,
            want: Some(want),
            rc,
            mac_ok,
            rrn: text(37),
            auth: text(38),
        });
        Ok(rep)
    }

    async fn sign_on(&mut self) -> Result<(), DayError> {
        let layout = self.cfg.sign_on;
        let m = self.base("0800", None, None, &self.f60("00", layout.code()))?;
        let rep = self.step("sign-on", m, false, "00").await?;
        let f62 = rep.as_ref().and_then(|r| r.bytes(62).map(|b| b.into_owned()));
        self.report.sign_on_62.clone_from(&f62);
        let wk = f62.as_deref().and_then(|b| WorkingKeys::from_field62(layout, b)).ok_or_else(|| {
            DayError::SignOn(format!(
                "field 62 is not the {}-byte layout {}",
                layout.field_len(),
                layout.code()
            ))
        })?;
        let keys = wk
            .open(&self.cfg.tmk)
            .ok_or_else(|| DayError::SignOn("a working key's check value does not match".into()))?;
        self.tpk = Some(keys.pin);
        self.tak = Some(keys.mac);
        Ok(())
    }
}

fn field61(batch: u32, trace: u32, date: Option<&str>) -> String {
    format!("{batch:06}{trace:06}{}", date.unwrap_or(""))
}

/// Run the day against a switch; the report says what each step got.
pub async fn run_cup_day(cfg: CupDayConfig) -> Result<CupDayReport, DayError> {
    let spec = crate::iso::spec::shipped("cup-pos").ok_or(DayError::Spec)?;
    let conn = connect(cfg.connect).await?;
    let trace = cfg.first_trace.clamp(1, 999_999);
    let date = today().0;
    let mut t =
        Terminal { cfg, spec, conn, trace, tpk: None, tak: None, date, report: CupDayReport::default() };
    t.sign_on().await?;
    let batch = t.cfg.batch;
    let (mut debits, mut credits) = ((0u64, 0u64), (0u64, 0u64));

    // Two purchases with PIN.
    let mut m = t.base("0200", Some("000000"), Some(10_000), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.with_pin(&mut m, None)?;
    let a = t.step("purchase", m, true, "00").await?;
    count(&mut debits, 10_000, &a);
    let a_trace = t.report.steps.last().map_or(0, |s| s.stan);
    let mut m = t.base("0200", Some("000000"), Some(20_000), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.with_pin(&mut m, None)?;
    let b = t.step("purchase-to-void", m, true, "00").await?;
    let b_trace = t.report.steps.last().map_or(0, |s| s.stan);

    // Void of the second: 37, 38 and 61 name it.
    let mut m = t.base("0200", Some("200000"), Some(20_000), &t.f60("23", "000"))?;
    m.set(25, "00")?;
    copy_names(&mut m, b.as_ref())?;
    m.set(61, &field61(batch, b_trace, None))?;
    t.step("void", m, true, "00").await?;

    // A void of something that never happened: 25.
    let mut m = t.base("0200", Some("200000"), Some(20_000), &t.f60("23", "000"))?;
    m.set(25, "00")?.set(37, "999999999999")?;
    m.set(61, &field61(batch, 999_998, None))?;
    t.step("void-unknown", m, true, "25").await?;

    // Partial refund of the first, with its date.
    let mut m = t.base("0220", Some("200000"), Some(3_000), &t.f60("25", "000"))?;
    m.set(25, "00")?;
    copy_names(&mut m, a.as_ref())?;
    let d = t.date.clone();
    m.set(61, &field61(batch, a_trace, Some(&d)))?;
    let r = t.step("refund", m, true, "00").await?;
    count(&mut credits, 3_000, &r);

    // Pre-authorisation and its completion.
    let mut m = t.base("0100", Some("030000"), Some(50_000), &t.f60("10", "000"))?;
    m.set(25, "06")?;
    t.with_pin(&mut m, None)?;
    let p = t.step("pre-auth", m, true, "00").await?;
    let p_trace = t.report.steps.last().map_or(0, |s| s.stan);
    let mut m = t.base("0200", Some("000000"), Some(45_000), &t.f60("20", "000"))?;
    m.set(25, "06")?;
    if let Some(auth) = p.as_ref().and_then(|r| r.text(38)) {
        m.set(38, &auth)?;
    }
    m.set(61, &field61(batch, p_trace, Some(&d)))?;
    let c = t.step("completion", m, true, "00").await?;
    count(&mut debits, 45_000, &c);

    // Balance inquiry with PIN.
    let mut m = t.base("0200", Some("310000"), None, &t.f60("01", "000"))?;
    m.set(25, "00")?;
    t.with_pin(&mut m, None)?;
    t.step("balance", m, true, "00").await?;

    // A PIN under a key that is not the terminal's: refused, never forwarded.
    let mut m = t.base("0200", Some("000000"), Some(1_200), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    let wrong = DesKey::double([0x5Bu8; 16]);
    t.with_pin(&mut m, Some(&wrong))?;
    t.step("wrong-pin-key", m, true, "99").await?;

    // Tampered after MACing: A0.
    let mut m = t.base("0200", Some("000000"), Some(1_300), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.mac(&mut m)?;
    m.set_number(4, 991_300)?;
    t.step("tampered", m, false, "A0").await?;

    // A purchase the issuer does not answer: the terminal gives up, reconnects and reverses
    // it before its next transaction.
    let mut m = t.base("0200", Some("000000"), Some(t.cfg.silent_amount), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.with_pin(&mut m, None)?;
    t.mac(&mut m)?;
    let saved = m.clone();
    t.send(&m).await?;
    let late = t.recv(t.cfg.give_up).await?;
    t.report.steps.push(DayStep {
        name: "timeout",
        stan: saved.stan().unwrap_or(0),
        want: None,
        rc: late.as_ref().and_then(|r| r.text(39).map(|x| x.into_owned())),
        mac_ok: true,
        rrn: None,
        auth: None,
    });
    t.conn = connect(t.cfg.connect).await?;
    let mut rev = Message::new(t.spec.clone(), "0400")?;
    for n in [2, 3, 4, 11, 12, 13, 22, 25, 41, 42, 49, 60] {
        rev.copy_from(&saved, n)?;
    }
    rev.set(39, "98")?;
    t.step("reversal", rev, true, "00").await?;

    // The next purchase, after the reversal.
    let mut m = t.base("0200", Some("000000"), Some(8_800), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.with_pin(&mut m, None)?;
    let n = t.step("purchase-after-reversal", m, true, "00").await?;
    count(&mut debits, 8_800, &n);

    // Batch settlement with the terminal's own totals.
    let mut m = t.base("0500", None, None, &t.f60("00", "201"))?;
    let f48 = format!("{:012}{:03}{:012}{:03}0{}", debits.0, debits.1, credits.0, credits.1, "0".repeat(31));
    m.set(48, &f48)?.set(49, "156")?;
    let s = t.step("settlement", m, true, "00").await?;
    t.report.settlement_48 = s.as_ref().and_then(|r| r.text(48).map(|x| x.into_owned()));

    // The settled batch is closed: a purchase still in it is refused (77), the next batch
    // is open.
    let mut m = t.base("0200", Some("000000"), Some(1_400), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.step("settled-batch", m, true, "77").await?;
    t.cfg.batch += 1;
    let mut m = t.base("0200", Some("000000"), Some(1_500), &t.f60("22", "000"))?;
    m.set(25, "00")?;
    t.step("next-batch", m, true, "00").await?;

    // Sign-off ends the day.
    let m = t.base("0800", None, None, &t.f60("00", "002"))?;
    t.step("sign-off", m, false, "00").await?;
    Ok(t.report)
}

/// Adds an approved amount to the terminal's totals.
fn count(tot: &mut (u64, u64), amount: u64, rep: &Option<Message>) {
    if rep.as_ref().and_then(|r| r.text(39)).as_deref() == Some("00") {
        tot.0 += amount;
        tot.1 += 1;
    }
}

/// Fields 37 and 38 of an original's reply, into a request that names it.
fn copy_names(m: &mut Message, original: Option<&Message>) -> Result<(), DayError> {
    if let Some(o) = original {
        for n in [37, 38] {
            if let Some(v) = o.text(n) {
                m.set(n, &v)?;
            }
        }
    }
    Ok(())
}
