//! Test helpers for the switch path: a small async issuer that can approve, decline,
//! answer out of order, never answer, and be stopped and restarted; a terminal client;
//! configurations on 127.0.0.1 port 0; and a throwaway PKI made with rcgen.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, Spec, spec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

pub const PAN: &str = "4761739001010119";
pub const PAN2: &str = "5413330089600010";

pub fn ascii() -> Arc<Spec> {
    spec::shipped("iso87ascii").unwrap()
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the mock issuer answers financial requests (0800 is always answered 00).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Approve, except amounts ending in 51 (declined 51).
    Approve,
    /// Never answer.
    Silent,
    /// Hold requests until `n` have arrived on a connection, then answer them newest first.
    Batch(usize),
    /// Approve after this many milliseconds.
    Delay(u64),
    /// Answer the sign-on, then nothing at all (not even echoes): a hung host.
    Mute,
}

pub struct MockIssuer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    /// Financial requests received.
    pub requests: Arc<AtomicUsize>,
    /// STANs the issuer saw (the switch's, not the terminals').
    pub stans: Arc<Mutex<Vec<u32>>>,
    /// Connections accepted and sign-ons (0800, field 70 = 001) received.
    pub stats: Arc<Stats>,
}

#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub sign_ons: AtomicUsize,
    /// Field 52 of each financial request that carried one, as received.
    pub pin_blocks: Mutex<Vec<Vec<u8>>>,
    /// Amounts (minor units) whose requests are never answered.
    pub silent_amounts: Mutex<Vec<u64>>,
    /// Amounts of the financial requests received, in order.
    pub amounts: Mutex<Vec<u64>>,
}

impl MockIssuer {
    pub async fn start(mode: Mode) -> MockIssuer {
        Self::start_at("127.0.0.1:0".parse().unwrap(), mode, None).await
    }

    pub async fn start_at(
        addr: SocketAddr,
        mode: Mode,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> MockIssuer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let requests = Arc::new(AtomicUsize::new(0));
        let stans = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Stats::default());
        let (s, r, st, sx) = (stop.clone(), requests.clone(), stans.clone(), stats.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (s, r, st, tls, sx) = (s.clone(), r.clone(), st.clone(), tls.clone(), sx.clone());
                sx.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        None => Box::new(tcp),
                        Some(acc) => match acc.accept(tcp).await {
                            Ok(t) => Box::new(t),
                            Err(_) => return,
                        },
                    };
                    tokio::select! {
                        _ = s.cancelled() => {}
                        _ = issuer_conn(io, mode, r, st, sx) => {}
                    }
                });
            }
        });
        MockIssuer { addr, stop, requests, stans, stats }
    }

    /// Close the listener and every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn answer(req: &Message) -> Message {
    let mut r = req.clone();
    let mti = isoswitch::issuer::response_mti(req.mti().as_bytes()).unwrap_or(*b"0210");
    r.set_mti(std::str::from_utf8(&mti).unwrap()).unwrap();
    let decline = req.amount().is_some_and(|a| a % 100 == 51);
    r.set(39, if decline { "51" } else { "00" }).unwrap();
    if !decline && req.mti() != "0800" {
        r.set(38, "AUTH01").unwrap();
    }
    r
}

async fn issuer_conn(
    io: Box<dyn Io>,
    mode: Mode,
    requests: Arc<AtomicUsize>,
    stans: Arc<Mutex<Vec<u32>>>,
    stats: Arc<Stats>,
) {
    let mut framed = Framed::new(io, FrameCodec::new(FrameConfig::default()));
    let spec = ascii();
    let mut held = Vec::new();
    while let Some(Ok(frame)) = framed.next().await {
        let Ok(req) = Message::decode(&spec, frame.body) else { continue };
        if req.mti() == "0800" {
            let sign_on = req.text(70).as_deref() == Some("001");
            if sign_on {
                stats.sign_ons.fetch_add(1, Ordering::SeqCst);
            }
            if mode == Mode::Mute && !sign_on {
                continue;
            }
            let _ = framed.send(Frame::plain(answer(&req).to_bytes().unwrap())).await;
            continue;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        stans.lock().unwrap().push(req.stan().unwrap_or(0));
        if let Some(b) = req.bytes(52) {
            stats.pin_blocks.lock().unwrap().push(b.into_owned());
        }
        let amount = req.amount().unwrap_or(0);
        stats.amounts.lock().unwrap().push(amount);
        if req.mti() != "0400" && stats.silent_amounts.lock().unwrap().contains(&amount) {
            continue;
        }
        match mode {
            Mode::Approve => {
                let _ = framed.send(Frame::plain(answer(&req).to_bytes().unwrap())).await;
            }
            Mode::Silent | Mode::Mute => {}
            Mode::Delay(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = framed.send(Frame::plain(answer(&req).to_bytes().unwrap())).await;
            }
            Mode::Batch(n) => {
                held.push(req);
                if held.len() >= n {
                    while let Some(r) = held.pop() {
                        let _ = framed.feed(Frame::plain(answer(&r).to_bytes().unwrap())).await;
                    }
                    let _ = framed.flush().await;
                }
            }
        }
    }
}

/// A terminal connection.
pub struct Terminal {
    framed: Framed<Box<dyn Io>, FrameCodec>,
    spec: Arc<Spec>,
    /// The last reply's frame (TPDU and header).
    pub last: Option<Frame>,
}

impl Terminal {
    pub async fn connect(addr: SocketAddr) -> Terminal {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Terminal::over(Box::new(tcp))
    }

    pub fn over(io: Box<dyn Io>) -> Terminal {
        let frame = FrameConfig { max_frame: 60_000, ..FrameConfig::default() };
        Terminal { framed: Framed::new(io, FrameCodec::new(frame)), spec: ascii(), last: None }
    }

    /// A terminal speaking another spec and framing.
    pub async fn connect_with(addr: SocketAddr, spec: Arc<Spec>, frame: FrameConfig) -> Terminal {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Terminal { framed: Framed::new(Box::new(tcp), FrameCodec::new(frame)), spec, last: None }
    }

    pub async fn send_frame(&mut self, f: Frame) {
        self.framed.send(f).await.unwrap();
    }

    pub async fn send(&mut self, msg: &Message) {
        self.framed.send(Frame::plain(msg.to_bytes().unwrap())).await.unwrap();
    }

    pub async fn send_raw(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.framed
            .send(Frame::plain(bytes::Bytes::copy_from_slice(body)))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The next reply, or None on close, error or 5 s of silence.
    pub async fn recv(&mut self) -> Option<Message> {
        match tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await {
            Ok(Some(Ok(f))) => {
                let m = Message::decode(&self.spec, f.body.clone()).unwrap();
                self.last = Some(f);
                Some(m)
            }
            _ => None,
        }
    }

    pub async fn exchange(&mut self, msg: &Message) -> Message {
        self.send(msg).await;
        self.recv().await.expect("a reply")
    }
}

/// A 0200 authorisation as a terminal sends it.
pub fn auth(pan: &str, stan: u32, amount: u64) -> Message {
    let mut m = Message::new(ascii(), "0200").unwrap();
    m.set(2, pan).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, amount).unwrap();
    m.set(7, "1124103000").unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(12, "103000").unwrap();
    m.set(13, "1124").unwrap();
    m.set(37, &format!("T{stan:011}")).unwrap();
    m.set(41, "TERM0001").unwrap();
    m.set(42, "MERCHANT0000001").unwrap();
    m.set(49, "156").unwrap();
    m
}

/// The fields the terminal must get back exactly.
pub fn assert_echoed(req: &Message, rep: &Message) {
    assert_eq!(rep.mti(), "0210");
    for n in [2, 3, 4, 7, 11, 12, 13, 37, 41, 42, 49] {
        assert_eq!(req.raw(n), rep.raw(n), "field {n}");
    }
}

/// A configuration with one listener and one issuer whose links go to `links`.
pub fn config_text(links: &[SocketAddr], deadline_ms: u64, extra_link: &str) -> String {
    let mut t = String::from(
        "metrics = \"127.0.0.1:0\"\n[timeouts]\nreconnect_max_ms = 200\ndrain_ms = 1000\nconnect_ms = 500\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\nframe = { max_frame = 2048 }\nidle_timeout_ms = 60000\n\
         [[issuer]]\nname = \"bank\"\n",
    );
    for a in links {
        t.push_str(&format!("[[issuer.link]]\naddr = \"{a}\"\ndeadline_ms = {deadline_ms}\necho_interval_ms = 60000\n{extra_link}\n"));
    }
    t
}

pub fn config(links: &[SocketAddr], deadline_ms: u64) -> Config {
    Config::parse("test.toml", &config_text(links, deadline_ms, "")).unwrap()
}

/// A port that nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// HTTP GET on loopback; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A throwaway PKI in a temp directory.
pub struct Pki {
    pub dir: PathBuf,
}

pub struct CaFiles {
    pub cert: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "isoswitch-pki-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    pub fn ca(&self, name: &str) -> CaFiles {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let issuer = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        let cert = self.dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        CaFiles { cert, issuer }
    }

    /// A leaf certificate for `localhost` signed by `ca`: (cert, key) files.
    pub fn leaf(&self, ca: &CaFiles, name: &str) -> (PathBuf, PathBuf) {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.issuer).unwrap();
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}-key.pem")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything the process logs, at debug level and above, kept for a test to search (for
/// a test PAN, say). `capture` installs the global subscriber: once per test binary.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A rule directory for admission tests: an ordinary shop (`TERM0001` at
/// `MERCHANT0000001`, mcc 5999) and a priority shop in group `vip` (`TERM0002` at
/// `MERCHANTVIP0001`, mcc 5411), every card routed to one issuer as debit, and a
/// `priority.toml` the test gives. Removed when dropped.
pub struct ShopRules(pub PathBuf);

const SHOPS: &str = r#"utc_offset = "+00:00"
[[merchant]]
id = "MERCHANT0000001"
name = "Ordinary shop"
mcc = 5999
[[merchant]]
id = "MERCHANTVIP0001"
name = "Priority shop"
mcc = 5411
priority_group = "vip"
[[terminal]]
id = "TERM0001"
merchant = "MERCHANT0000001"
[[terminal]]
id = "TERM0002"
merchant = "MERCHANTVIP0001"
"#;

impl ShopRules {
    /// Rules routing every card to `issuer` (each test its own name: metrics are per process).
    pub fn new(issuer: &str, priority: &str) -> ShopRules {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("isoswitch-shops-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("registry.toml"), SHOPS).unwrap();
        let routes = format!("[default]\nissuer = \"{issuer}\"\ncard_type = \"debit\"\n");
        std::fs::write(dir.join("routes.toml"), routes).unwrap();
        let r = ShopRules(dir);
        r.priority(priority);
        r
    }

    /// Replace `priority.toml`.
    pub fn priority(&self, text: &str) {
        std::fs::write(self.0.join("priority.toml"), text).unwrap();
    }
}

impl Drop for ShopRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
