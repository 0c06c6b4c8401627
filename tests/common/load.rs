//! Terminal load for the reliability suites: several connections, each keeping up to
//! `pipeline` requests in flight with its own STANs, until told to stop (then it waits
//! for what is outstanding) or until its connection ends. Every reply is checked against
//! the request it names by STAN: response MTI, amount, RRN and terminal must be the ones
//! sent (a reply for another terminal's request, or twice for one request, is a mismatch).
//! Every loop is bounded in count and time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig, FrameError};
use isoswitch::iso::{Message, spec};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Builds request number `seq` (1-based; also its STAN) of connection `conn`.
pub type Maker = Arc<dyn Fn(usize, u32) -> Message + Send + Sync>;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Told to stop, everything outstanding answered.
    Stopped,
    /// Sent its `max` requests, everything answered.
    Done,
    /// The switch closed the connection in order (FIN).
    Eof,
    /// The connection was reset or failed.
    Error(String),
    /// No reply for the reply bound while requests were outstanding.
    Silent,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub amount: u64,
    pub rrn: String,
    pub terminal: String,
    /// Unix milliseconds when written.
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub rc: String,
    pub at: Instant,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct ConnReport {
    pub conn: usize,
    pub terminal: String,
    pub sent: HashMap<u32, Sent>,
    pub answers: HashMap<u32, Answer>,
    pub mismatches: Vec<String>,
    pub end: End,
}

impl ConnReport {
    pub fn unanswered(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.sent.keys().filter(|s| !self.answers.contains_key(s)).copied().collect();
        v.sort_unstable();
        v
    }
}

pub struct LoadConfig {
    pub addr: SocketAddr,
    pub connections: usize,
    pub pipeline: usize,
    /// Requests per connection at most.
    pub max: u32,
    /// No reply for this long with requests outstanding ends the connection as `Silent`.
    pub reply_bound: Duration,
    /// Hard bound of the whole run.
    pub run_bound: Duration,
    pub make: Maker,
}

/// A running load.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    /// Replies received so far, all connections.
    pub answered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<ConnReport>>,
}

pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

impl Load {
    pub fn start(cfg: LoadConfig) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let cfg = Arc::new(cfg);
        let tasks = (0..cfg.connections)
            .map(|c| tokio::spawn(connection(cfg.clone(), c, stop.clone(), answered.clone())))
            .collect();
        Load { stop, answered, tasks }
    }

    /// Stop sending and collect every connection's report.
    pub async fn finish(self) -> Vec<ConnReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.join().await
    }

    /// Collect the reports without telling the connections to stop.
    pub async fn join(self) -> Vec<ConnReport> {
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

async fn connection(
    cfg: Arc<LoadConfig>,
    conn: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> ConnReport {
    let first = cfg.make.clone()(conn, 1);
    let terminal = first.text(41).unwrap_or_default().trim_end().to_string();
    let mut rep = ConnReport {
        conn,
        terminal,
        sent: HashMap::new(),
        answers: HashMap::new(),
        mismatches: Vec::new(),
        end: End::Stopped,
    };
    let tcp = match TcpStream::connect(cfg.addr).await {
        Ok(t) => t,
        Err(e) => {
            rep.end = End::Error(format!("connect: {e}"));
            return rep;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (r, w) = tcp.into_split();
    let mut rd = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let mut wr = FramedWrite::new(w, FrameCodec::new(FrameConfig::default()));
    let spec = spec::shipped("iso87ascii").unwrap();
    let until = Instant::now() + cfg.run_bound;
    let mut seq = 0u32;
    let mut write_failed: Option<String> = None;
    loop {
        // After a failed write only the replies already on their way are read.
        let stopping = stop.load(Ordering::SeqCst) || Instant::now() >= until || write_failed.is_some();
        let outstanding = rep.sent.len() - rep.answers.len();
        if !stopping && seq < cfg.max && outstanding < cfg.pipeline {
            let mut wrote = 0;
            while seq < cfg.max && rep.sent.len() - rep.answers.len() < cfg.pipeline {
                seq += 1;
                let m = (cfg.make)(conn, seq);
                rep.sent.insert(
                    seq,
                    Sent {
                        amount: m.amount().unwrap_or(0),
                        rrn: m.text(37).unwrap_or_default().into_owned(),
                        terminal: rep.terminal.clone(),
                        at_ms: unix_ms(),
                    },
                );
                if let Err(e) = wr.feed(Frame::plain(m.to_bytes().unwrap())).await {
                    write_failed = Some(format!("write: {e}"));
                    break;
                }
                wrote += 1;
            }
            if write_failed.is_none()
                && wrote > 0
                && let Err(e) = wr.flush().await
            {
                write_failed = Some(format!("write: {e}"));
            }
            continue;
        }
        if rep.sent.len() == rep.answers.len() && (stopping || seq >= cfg.max) {
            rep.end = match write_failed {
                Some(e) => End::Error(e),
                None if stopping => End::Stopped,
                None => End::Done,
            };
            return rep;
        }
        let next = tokio::time::timeout(cfg.reply_bound, rd.next()).await;
        let frame = match next {
            Err(_) => {
                rep.end = End::Silent;
                return rep;
            }
            Ok(None) => {
                rep.end = write_failed.map_or(End::Eof, End::Error);
                return rep;
            }
            Ok(Some(Err(FrameError::Io(e)))) => {
                rep.end = End::Error(format!(
                    "{}{:?}: {e}",
                    write_failed.map(|w| w + "; ").unwrap_or_default(),
                    e.kind()
                ));
                return rep;
            }
            Ok(Some(Err(e))) => {
                rep.end = End::Error(e.to_string());
                return rep;
            }
            Ok(Some(Ok(f))) => f,
        };
        let msg = match Message::decode(&spec, frame.body) {
            Ok(m) => m,
            Err(e) => {
                rep.mismatches.push(format!("undecodable reply: {e}"));
                continue;
            }
        };
        let stan = msg.stan().unwrap_or(0);
        let Some(s) = rep.sent.get(&stan) else {
            rep.mismatches.push(format!("reply for STAN {stan} never sent on this connection"));
            continue;
        };
        let rrn = msg.text(37).unwrap_or_default().into_owned();
        let term = msg.text(41).unwrap_or_default().trim_end().to_string();
        if msg.mti() != "0210" || msg.amount() != Some(s.amount) || rrn != s.rrn || term != s.terminal {
            rep.mismatches.push(format!(
                "STAN {stan}: reply {} amount {:?} rrn {rrn} terminal {term}, sent amount {} rrn {} terminal {}",
                msg.mti(),
                msg.amount(),
                s.amount,
                s.rrn,
                s.terminal
            ));
        }
        let rc = msg.text(39).unwrap_or_default().into_owned();
        let a = Answer { rc, at: Instant::now(), at_ms: unix_ms() };
        if rep.answers.insert(stan, a).is_some() {
            rep.mismatches.push(format!("STAN {stan} answered twice"));
        }
        answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// A purchase of `amount` from terminal `tid` with STAN `stan`, as a terminal sends it.
pub fn purchase(pan: &str, tid: &str, mid: &str, stan: u32, amount: u64) -> Message {
    let mut m = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
    m.set(2, pan).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, amount).unwrap();
    // Field 7 is the time of sending, as a terminal's clock gives it: the switch's field 90
    // (and the journal's uniqueness) rely on it together with the STAN.
    let secs = unix_ms() / 1000 % 86_400;
    m.set(7, &format!("1124{:02}{:02}{:02}", secs / 3600, secs % 3600 / 60, secs % 60)).unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(12, "103000").unwrap();
    m.set(13, "1124").unwrap();
    // Unique per terminal and STAN: the terminal id's last four characters, then the STAN.
    let tail = &tid[tid.len().saturating_sub(4)..];
    m.set(37, &format!("{tail:0>4}{stan:08}")).unwrap();
    m.set(41, tid).unwrap();
    m.set(42, mid).unwrap();
    m.set(49, "156").unwrap();
    m
}

/// Rc → count over all connections.
pub fn rc_counts(reports: &[ConnReport]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in reports {
        for a in r.answers.values() {
            *out.entry(a.rc.clone()).or_insert(0) += 1;
        }
    }
    out
}
