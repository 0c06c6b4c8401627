//! Simulated terminals: `C` connections, each pipelining up to `K` requests in flight,
//! for a duration or a total count. One task per connection writes a batch of requests
//! (one write for the batch), then reads whatever replies have arrived, decodes them all,
//! and refills the window: no locks and no channels on the hot path.
//!
//! Each connection is one terminal: the simulator's own (`SIM00000`, `SIM00001`, ...) or,
//! with `terminals`, an estate's registered ones taken in turn (with `merchants` for field
//! 42). Connections that share a terminal id share its STAN space: each takes every n-th
//! STAN, so that no two requests of one terminal carry the same STAN at once.
//!
//! Every request's STAN (field 11, one sequence per connection), RRN (37), terminal id
//! (41), amount (4) and MTI are remembered, and every reply is checked against them: the
//! reply's MTI must be the request's plus 10 and the other fields must be equal, else it
//! counts as a mismatch. Latency runs from the write of the request's batch to the read
//! of the reply's batch. A request unanswered after `timeout` counts as an error.
//! With [`SimTls`] every connection is TLS (the handshake inside the connect timeout,
//! outside the latency). Imports the codec, framing, the TLS policy and the simulators'
//! helpers.
//! May import: crate::frame, crate::iso, crate::sim::histogram, crate::sim::report,
//! crate::sim::requests, crate::sim::util, crate::tls.

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
use super::requests::{Identity, Requests, Sent, terminal_id};
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
    /// Terminal ids (field 41) of an estate, taken in turn by the connections; empty: the
    /// simulator's own (`SIM00000`, ...), which only an open estate accepts.
    pub terminals: Vec<String>,
    /// Merchant ids (field 42): one for every terminal, or one per terminal in the same
    /// order; empty: `SIMMERCHANT0001` for the simulator's terminals, and no field 42 for an
    /// estate's (the switch then takes the registry's merchant).
    pub merchants: Vec<String>,
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
            terminals: Vec::new(),
            merchants: Vec::new(),
        }
    }

    /// Connection `conn`'s identity and STAN lane (first STAN, step), or what is wrong
    /// with the terminals and merchants asked for.
    fn identity(&self, conn: usize) -> io::Result<(Identity, u32, u32)> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let n = self.terminals.len();
        if n == 0 {
            if !self.merchants.is_empty() {
                return Err(bad("a merchant id needs the terminal ids it belongs to".into()));
            }
            return Ok((Identity::simulated(conn), 1, 1));
        }
        let merchant = match self.merchants.len() {
            0 => None,
            1 => self.merchants.first(),
            m if m == n => self.merchants.get(conn % n),
            m => {
                return Err(bad(format!(
                    "{m} merchant ids for {n} terminal ids: give one, or one per terminal"
                )));
            }
        };
        let terminal = self.terminals.get(conn % n).map_or("", String::as_str);
        let who = Identity::of(terminal, merchant.map(String::as_str)).map_err(bad)?;
        // Connections c, c + n, c + 2n, ... are the same terminal: lane `c / n` of `sharing`.
        let connections = self.connections.max(1);
        let sharing = (connections - conn % n).div_ceil(n).max(1);
        let per_lane = 999_999 / sharing;
        if per_lane <= self.pipeline.max(1) {
            return Err(bad(format!(
                "{sharing} connections share terminal {terminal}: too few STANs each for {} in flight",
                self.pipeline
            )));
        }
        let (first, step) = ((conn / n) as u32 + 1, sharing as u32);
        Ok((who, first, step))
    }
}

/// A request in flight.
struct Outstanding {
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
        let (who, first, step) = cfg.identity(c)?;
        factories.push((Requests::with_identity(&cfg.spec, c, who)?, who.terminal, first, step));
    }
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let end = match cfg.stop {
        SimStop::Duration(d) => Some(start + d),
        SimStop::Count(_) => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (c, (requests, tid, first, step)) in factories.into_iter().enumerate() {
        let quota = match cfg.stop {
            SimStop::Count(n) => {
                let c64 = c as u64;
                let per = n / connections as u64;
                Some(per + u64::from(c64 < n % connections as u64))
            }
            SimStop::Duration(_) => None,
        };
        let mut conn = Connection::new(c, cfg.clone(), requests, quota, end);
        (conn.tid, conn.stan_first, conn.stan_step) = (tid, first, step);
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

/// The STAN after `stan` in the lane `first`, `first + step`, ... up to 999999 (0: none yet).
fn next_stan(stan: u32, first: u32, step: u32) -> u32 {
    match stan.checked_add(step) {
        _ if stan == 0 => first,
        Some(next) if next <= 999_999 => next,
        _ => first,
    }
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
    pending: HashMap<u32, Outstanding>,
    /// STANs in the order they were sent; answered ones are popped lazily from the front.
    order: VecDeque<u32>,
    /// Recently timed-out STANs, so that a late reply is told apart from a stray one.
    expired: HashSet<u32>,
    seq: u64,
    stan: u32,
    /// This connection's STANs: `stan_first`, then every `stan_step`-th up to 999999.
    stan_first: u32,
    stan_step: u32,
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
            stan_first: 1,
            stan_step: 1,
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
        // One STAN sequence per connection within 1..=999999 (its lane of the terminal's
        // STANs), skipping STANs still in flight; a lane holds more STANs than the window.
        loop {
            self.stan = next_stan(self.stan, self.stan_first, self.stan_step);
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
        self.pending.insert(self.stan, Outstanding { sent, at: now });
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
            && m.terminal_id().is_some_and(|t| t.trim_end().as_bytes() == self.tid.trim_ascii_end())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;

    fn cfg(connections: usize, terminals: &[&str], merchants: &[&str]) -> SimTerminalConfig {
        let mut c = SimTerminalConfig::new("127.0.0.1:9".parse().unwrap(), shipped("iso87ascii").unwrap());
        c.connections = connections;
        c.terminals = terminals.iter().map(|s| s.to_string()).collect();
        c.merchants = merchants.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn connections_sharing_a_terminal_take_disjoint_stans() {
        let c = cfg(5, &["A", "B"], &["M1", "M2"]);
        let ids: Vec<_> = (0..5).map(|i| c.identity(i).unwrap()).collect();
        let lanes: Vec<(u8, u32, u32)> = ids.iter().map(|(w, f, s)| (w.terminal[0], *f, *s)).collect();
        // Connections 0, 2, 4 are terminal A (three lanes); 1 and 3 are B (two lanes).
        assert_eq!(lanes, [(b'A', 1, 3), (b'B', 1, 2), (b'A', 2, 3), (b'B', 2, 2), (b'A', 3, 3)]);
        assert_eq!(ids[1].0.merchant, Some(*b"M2             "));
        // Each lane stays in its residue class, across the wrap at 999999 too, so the
        // three lanes of terminal A never meet.
        let mut owner = HashMap::new();
        for (first, step) in [(1, 3), (2, 3), (3, 3)] {
            let mut s = 0;
            let mut wrapped = false;
            for _ in 0..(999_999 / 3 + 5) {
                let next = next_stan(s, first, step);
                wrapped |= next < s;
                s = next;
                assert!((1..=999_999).contains(&s) && (s - 1) % 3 == first - 1, "{s}");
                assert!(*owner.entry(s).or_insert(first) == first, "STAN {s} in two lanes");
            }
            assert!(wrapped, "lane {first} wrapped");
        }
        assert_eq!(owner.len(), 999_999);
        // The simulator's own terminals keep every STAN.
        let own = cfg(2, &[], &[]).identity(1).unwrap();
        assert_eq!((&own.0.terminal, own.1, own.2), (b"SIM00001", 1, 1));
    }

    #[test]
    fn terminals_and_merchants_that_cannot_work_are_refused() {
        let e = cfg(2, &["A", "B"], &["M1", "M2", "M3"]).identity(0).unwrap_err().to_string();
        assert!(e.contains("3 merchant ids for 2 terminal ids"), "{e}");
        let e = cfg(1, &[], &["M1"]).identity(0).unwrap_err().to_string();
        assert!(e.contains("needs the terminal ids"), "{e}");
        let e = cfg(1, &["TERMINAL9"], &[]).identity(0).unwrap_err().to_string();
        assert!(e.contains("TERMINAL9"), "{e}");
        let mut c = cfg(1000, &["A"], &[]);
        c.pipeline = 1000;
        let e = c.identity(0).unwrap_err().to_string();
        assert!(e.contains("1000 connections share terminal A"), "{e}");
    }
}
