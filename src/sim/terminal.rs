//! Simulated terminals: `C` connections, each pipelining up to `K` requests in flight,
//! for a duration or a total count. One task per connection writes a batch of requests
//! (one write for the batch), then reads whatever replies have arrived, decodes them all,
//! and refills the window: no locks and no channels on the hot path.
//!
//! Every request's STAN (field 11, one sequence per connection), RRN (37), terminal id
//! (41), amount (4) and MTI are remembered, and every reply is checked against them: the
//! reply's MTI must be the request's plus 10 and the other fields must be equal, else it
//! counts as a mismatch. Latency runs from the write of the request's batch to the read
//! of the reply's batch. A request unanswered after `timeout` counts as an error.
//! With [`SimTls`] every connection is TLS (the handshake inside the connect timeout,
//! outside the latency). Imports the codec, framing, the TLS policy and the simulators'
//! helpers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::{Decoder, Encoder};

use super::histogram::LatencyHistogram;
use super::report::SimReport;
use super::requests::{Requests, Sent, terminal_id};
use super::util::{ReadBuf, Stamp};
use crate::frame::{Frame, FrameCodec, FrameConfig, Tpdu};
use crate::iso::{Message, Spec};

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStop {
    /// After this many requests in all, shared out evenly among the connections.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// TLS for the simulated terminals: the client configuration (the switch's CA, and a
/// client certificate for mutual TLS) and the name the switch's certificate must carry.
#[derive(Clone)]
pub struct SimTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for SimTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl SimTls {
    /// Trust the certificates in `ca`; present `cert_key` when given; expect the switch's
    /// certificate to name `server_name` (a DNS name or an IP address).
    pub fn new(
        ca: &std::path::Path,
        cert_key: Option<(&std::path::Path, &std::path::Path)>,
        server_name: &str,
    ) -> Result<SimTls, String> {
        let config = crate::tls::client_config(ca, cert_key).map_err(|e| e.to_string())?;
        let server_name = rustls_pki_types::ServerName::try_from(server_name.to_string()).map_err(|_| {
            format!("`{server_name}` is not a valid TLS server name (DNS name or IP address)")
        })?;
        Ok(SimTls { config: Arc::new(config), server_name })
    }
}

/// How to run the simulated terminals.
#[derive(Debug, Clone)]
pub struct SimTerminalConfig {
    pub connect: SocketAddr,
    pub spec: Arc<Spec>,
    pub frame: FrameConfig,
    /// Connections (terminals), at least 1.
    pub connections: usize,
    /// Requests in flight per connection, at least 1.
    pub pipeline: usize,
    pub stop: SimStop,
    /// A request unanswered for this long is counted as an error and forgotten.
    pub timeout: Duration,
    /// Requests per second in all, shared out evenly among the connections; `None` sends
    /// as fast as replies free the pipeline window. Paced runs measure latency at a given
    /// load (a connection whose window is full still waits for a reply).
    pub rate: Option<f64>,
    /// Connect over TLS.
    pub tls: Option<SimTls>,
}

impl SimTerminalConfig {
    /// One connection, 8 in flight, 1000 requests, 5 s timeout, default framing.
    pub fn new(connect: SocketAddr, spec: Arc<Spec>) -> Self {
        SimTerminalConfig {
            connect,
            spec,
            frame: FrameConfig::default(),
            connections: 1,
            pipeline: 8,
            stop: SimStop::Count(1000),
            timeout: Duration::from_secs(5),
            rate: None,
            tls: None,
        }
    }
}

/// A request in flight.
struct Pending {
    sent: Sent,
    at: Instant,
}

/// What one connection saw.
#[derive(Default)]
struct ConnStats {
    sent: u64,
    received: u64,
    mismatches: u64,
    timeouts: u64,
    lost: u64,
    late: u64,
    connect_failures: u64,
    /// Why the first failed connect failed.
    connect_error: Option<String>,
    closed: u64,
    reordered: u64,
    last_reply: Option<Instant>,
    latency: LatencyHistogram,
    rc: HashMap<[u8; 2], u64>,
}

/// Run the simulated terminals to completion and report what they saw.
pub async fn run_terminals(cfg: SimTerminalConfig) -> io::Result<SimReport> {
    let connections = cfg.connections.max(1);
    // Build every connection's templates up front so a spec that cannot carry the
    // requests fails the run at once.
    let mut factories = Vec::with_capacity(connections);
    for c in 0..connections {
        factories.push(Requests::new(&cfg.spec, c)?);
    }
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let end = match cfg.stop {
        SimStop::Duration(d) => Some(start + d),
        SimStop::Count(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (c, requests) in factories.into_iter().enumerate() {
        let quota = match cfg.stop {
            SimStop::Count(n) => {
                let c64 = c as u64;
                let per = n / connections as u64;
                Some(per + u64::from(c64 < n % connections as u64))
            }
            SimStop::Duration(_) => None,
        };
        let conn = Connection::new(c, cfg.clone(), requests, quota, end);
        tasks.spawn(conn.run());
    }
    let mut report = SimReport { connections: connections as u64, ..SimReport::default() };
    let mut rc: HashMap<[u8; 2], u64> = HashMap::new();
    let mut last = None;
    while let Some(joined) = tasks.join_next().await {
        let s = joined.map_err(io::Error::other)?;
        report.sent += s.sent;
        report.received += s.received;
        report.mismatches += s.mismatches;
        report.timeouts += s.timeouts;
        report.lost += s.lost;
        report.late += s.late;
        report.connect_failures += s.connect_failures;
        if report.connect_error.is_none() {
            report.connect_error = s.connect_error;
        }
        report.closed += s.closed;
        report.reordered += s.reordered;
        report.latency.merge(&s.latency);
        for (k, v) in s.rc {
            *rc.entry(k).or_insert(0) += v;
        }
        last = last.max(s.last_reply);
    }
    report.elapsed = last.unwrap_or_else(Instant::now).saturating_duration_since(start);
    report.rc = rc
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect::<BTreeMap<_, _>>();
    Ok(report)
}

/// A terminal's connection, plain or TLS.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

struct Connection {
    id: usize,
    cfg: Arc<SimTerminalConfig>,
    requests: Requests,
    /// Requests this connection may still send (`None`: until `end`).
    quota: Option<u64>,
    end: Option<Instant>,
    tid: [u8; 8],
    tpdu: Option<Tpdu>,
    header: Bytes,
    pending: HashMap<u32, Pending>,
    /// STANs in the order they were sent; answered ones are popped lazily from the front.
    order: VecDeque<u32>,
    /// Recently timed-out STANs, so that a late reply is told apart from a stray one.
    expired: HashSet<u32>,
    seq: u64,
    stan: u32,
    /// Requests per second on this connection, and when pacing started.
    pace: Option<(f64, Instant)>,
    stats: ConnStats,
}

impl Connection {
    fn new(
        id: usize,
        cfg: Arc<SimTerminalConfig>,
        requests: Requests,
        quota: Option<u64>,
        end: Option<Instant>,
    ) -> Self {
        let tpdu = cfg.frame.tpdu.then_some(Tpdu { id: 0x60, dst: 0x0003, src: 0x0000 });
        // UnionPay-style terminals send 60 31 00 31 00 00; other lengths get zeros.
        let header = if cfg.frame.header_len == 6 {
            Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00])
        } else {
            Bytes::from(vec![0u8; cfg.frame.header_len])
        };
        let k = cfg.pipeline.max(1);
        Connection {
            id,
            requests,
            quota,
            end,
            tid: terminal_id(id),
            tpdu,
            header,
            pending: HashMap::with_capacity(k * 2),
            order: VecDeque::with_capacity(k * 2),
            expired: HashSet::new(),
            seq: 0,
            stan: 0,
            pace: cfg
                .rate
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| (r / cfg.connections.max(1) as f64, Instant::now())),
            stats: ConnStats::default(),
            cfg,
        }
    }

    fn may_send(&self, now: Instant) -> bool {
        self.quota.is_none_or(|q| q > 0) && self.end.is_none_or(|e| now < e) && self.paced_budget(now) > 0
    }

    /// Requests the pace allows now (the first one at once).
    fn paced_budget(&self, now: Instant) -> u64 {
        match self.pace {
            None => u64::MAX,
            Some((rate, start)) => {
                let due = (now.saturating_duration_since(start).as_secs_f64() * rate) as u64 + 1;
                due.saturating_sub(self.seq)
            }
        }
    }

    /// When a paced connection may send its next request, if it is waiting only for that.
    fn next_paced_send(&self, now: Instant, window: usize) -> Option<Instant> {
        let (rate, start) = self.pace?;
        let more = self.quota.is_none_or(|q| q > 0) && self.end.is_none_or(|e| now < e);
        (more && self.pending.len() < window).then(|| start + Duration::from_secs_f64(self.seq as f64 / rate))
    }

    async fn run(mut self) -> ConnStats {
        let ended = match self.open().await {
            Ok(Stream::Tcp(s)) => self.drive(s).await,
            Ok(Stream::Tls(s)) => self.drive(*s).await,
            Err(e) => {
                self.stats.connect_failures += 1;
                self.stats.connect_error = Some(e);
                return self.stats;
            }
        };
        if let Err(e) = ended {
            tracing::debug!(conn = self.id, error = %e, "simulated terminal connection ended");
            self.stats.closed += 1;
            self.stats.lost += self.pending.len() as u64;
        }
        self.stats
    }

    /// Connect (and shake hands, with TLS) within the timeout; the error says which failed.
    async fn open(&self) -> Result<Stream, String> {
        let addr = self.cfg.connect;
        let stream = match timeout(self.cfg.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
            Err(_) => return Err(format!("connect to {addr}: timed out")),
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.cfg.tls else { return Ok(Stream::Tcp(stream)) };
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        match timeout(self.cfg.timeout, connector.connect(tls.server_name.clone(), stream)).await {
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
            Ok(Err(e)) => Err(format!("TLS handshake with {addr}: {e}")),
            Err(_) => Err(format!("TLS handshake with {addr}: timed out")),
        }
    }

    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(&mut self, mut stream: S) -> io::Result<()> {
        let mut codec = FrameCodec::new(self.cfg.frame);
        // Small to start with: a run may open thousands of connections.
        let mut scratch = BytesMut::with_capacity(4 * 1024);
        let mut wbuf = BytesMut::with_capacity(4 * 1024);
        let mut rbuf = ReadBuf::new();
        let window = self.cfg.pipeline.max(1);
        loop {
            let now = Instant::now();
            self.expire(now);
            if self.may_send(now) && self.pending.len() < window {
                let stamp = Stamp::now();
                let mut batch = 0;
                while self.pending.len() < window && self.may_send(now) {
                    self.send_one(&stamp, now, &mut scratch, &mut wbuf, &mut codec)?;
                    batch += 1;
                }
                // Latency runs from the write, not from the start of encoding the batch;
                // stamped just before the write so that a preempted thread can only
                // overstate it.
                let writing = Instant::now();
                for stan in self.order.iter().rev().take(batch) {
                    if let Some(p) = self.pending.get_mut(stan) {
                        p.at = writing;
                    }
                }
                // A peer that stops reading must not hold the run past the timeout.
                match timeout(self.cfg.timeout, stream.write_all(&wbuf)).await {
                    Ok(written) => written?,
                    Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")),
                }
                wbuf.clear();
            }
            let oldest =
                self.order.front().map(|s| self.pending.get(s).map_or(now, |p| p.at + self.cfg.timeout));
            let deadline = match (oldest, self.next_paced_send(now, window)) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                // Nothing in flight and nothing more to send.
                (None, None) => return Ok(()),
            };
            match timeout_at(deadline, stream.read_buf(rbuf.prepare())).await {
                Err(_) => continue,
                Ok(Ok(0)) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")),
                Ok(Ok(n)) => {
                    rbuf.filled(n);
                    let t = Instant::now();
                    while let Some(frame) = codec.decode(&mut rbuf.buf).map_err(io::Error::other)? {
                        self.on_reply(frame.body, t);
                    }
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    fn send_one(
        &mut self,
        stamp: &Stamp,
        now: Instant,
        scratch: &mut BytesMut,
        wbuf: &mut BytesMut,
        codec: &mut FrameCodec,
    ) -> io::Result<()> {
        // One STAN sequence per connection, 1..=999999, skipping STANs still in flight.
        loop {
            self.stan = if self.stan >= 999_999 { 1 } else { self.stan + 1 };
            if !self.pending.contains_key(&self.stan) {
                break;
            }
        }
        let sent = self
            .requests
            .encode(self.seq, self.stan, stamp, scratch)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let body = scratch.split().freeze();
        let frame = Frame { tpdu: self.tpdu, header: self.header.clone(), body };
        codec.encode(frame, wbuf).map_err(io::Error::other)?;
        self.seq += 1;
        if let Some(q) = self.quota.as_mut() {
            *q -= 1;
        }
        self.stats.sent += 1;
        self.expired.remove(&self.stan);
        self.pending.insert(self.stan, Pending { sent, at: now });
        self.order.push_back(self.stan);
        Ok(())
    }

    /// Forget requests unanswered for longer than the timeout.
    fn expire(&mut self, now: Instant) {
        while let Some(&stan) = self.order.front() {
            match self.pending.get(&stan) {
                None => {
                    self.order.pop_front();
                }
                Some(p) if now >= p.at + self.cfg.timeout => {
                    self.pending.remove(&stan);
                    self.order.pop_front();
                    self.stats.timeouts += 1;
                    if self.expired.len() >= 4096 {
                        self.expired.clear();
                    }
                    self.expired.insert(stan);
                }
                Some(_) => break,
            }
        }
    }

    fn on_reply(&mut self, body: Bytes, at: Instant) {
        // Borrowed from the result rather than moved out: a `Message` is a few kilobytes.
        let decoded = Message::decode(&self.cfg.spec, body);
        let Ok(m) = &decoded else {
            self.stats.mismatches += 1;
            return;
        };
        let Some(stan) = m.stan() else {
            self.stats.mismatches += 1;
            return;
        };
        let Some(p) = self.pending.remove(&stan) else {
            if self.expired.remove(&stan) {
                self.stats.late += 1;
            } else {
                self.stats.mismatches += 1;
            }
            return;
        };
        if self.order.front() != Some(&stan) {
            self.stats.reordered += 1;
        }
        while self.order.front().is_some_and(|s| !self.pending.contains_key(s)) {
            self.order.pop_front();
        }
        self.stats.received += 1;
        self.stats.last_reply = Some(at);
        self.stats.latency.record(at.saturating_duration_since(p.at).as_nanos() as u64);
        let mut want_mti = p.sent.mti;
        want_mti[2] += 1;
        let rc = m.response_code().and_then(|r| <[u8; 2]>::try_from(r.as_bytes()).ok());
        let ok = m.mti().as_bytes() == want_mti
            && m.terminal_id().is_some_and(|t| t.as_bytes() == self.tid)
            && p.sent.rrn.is_none_or(|r| m.rrn().is_some_and(|x| x.as_bytes() == r))
            && p.sent.amount.is_none_or(|a| m.amount() == Some(a))
            && rc.is_some();
        if !ok {
            self.stats.mismatches += 1;
        }
        if let Some(rc) = rc {
            *self.stats.rc.entry(rc).or_insert(0) += 1;
        }
    }
}
