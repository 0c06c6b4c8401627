//! A scripted issuer for the reliability suites: it approves financial requests (after an
//! optional delay), can drop some of them unanswered, acknowledges reversals only when
//! told to, and can be stopped (listener and every link closed at once) and started again
//! on the same port with the same records. It records every financial request it saw by
//! the field 90 a reversal of it would carry, whether it answered it, and per original
//! every reversal write (0400 / 0401) with its arrival time and the time of its own
//! acknowledgement, so a suite can prove that nothing is sent after the 0410.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::{Message, spec};
use isoswitch::issuer::reversal::field90;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// A financial request as the issuer saw it.
#[derive(Debug, Clone)]
pub struct Original {
    pub terminal: String,
    pub amount: u64,
    pub dropped: bool,
    /// Its approval was written to the link.
    pub answered: bool,
}

/// Every write of the reversals of one original.
#[derive(Debug, Clone, Default)]
pub struct Reversals {
    /// (arrival, MTI) in arrival order.
    pub arrivals: Vec<(Instant, String)>,
    /// When the issuer first decided to acknowledge (before its 0410 was written).
    pub acked_at: Option<Instant>,
    pub amount: u64,
    pub terminal: String,
}

impl Reversals {
    /// Writes that arrived after the acknowledgement.
    pub fn after_ack(&self) -> usize {
        self.acked_at.map_or(0, |a| self.arrivals.iter().filter(|(t, _)| *t > a).count())
    }
}

#[derive(Debug, Default)]
pub struct Log {
    /// By field 90 of the request's reversal.
    pub originals: HashMap<String, Original>,
    pub reversals: HashMap<String, Reversals>,
}

/// Behaviour and records, shared across restarts.
#[derive(Debug, Default)]
pub struct BankState {
    /// Drop every N-th financial request (0: none)...
    pub drop_every: AtomicUsize,
    /// ...among the first this many (0: all of them).
    pub drop_within: AtomicUsize,
    pub ack_reversals: AtomicBool,
    /// Added before each approval.
    pub delay_ms: AtomicU64,
    pub financial: AtomicUsize,
    pub dropped: AtomicUsize,
    /// Financial requests whose field 90 another request had already used.
    pub collisions: AtomicUsize,
    pub connections: AtomicUsize,
    pub sign_ons: AtomicUsize,
    pub log: Mutex<Log>,
}

impl BankState {
    pub fn new() -> Arc<BankState> {
        Arc::new(BankState::default())
    }

    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }
}

pub struct Bank {
    pub addr: SocketAddr,
    pub state: Arc<BankState>,
    stop: CancellationToken,
}

impl Bank {
    /// Listen on `addr` (port 0 for any) with `state`.
    pub async fn start(addr: SocketAddr, state: Arc<BankState>) -> Bank {
        // A restart on the same port may race the old listener's close: a bounded retry.
        let until = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < until, "bank cannot bind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (s, st) = (stop.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                let sock = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => match a { Ok((sock, _)) => sock, Err(_) => continue },
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(link(sock, st.clone(), s.clone()));
            }
        });
        Bank { addr, state, stop }
    }

    /// Close the listener and every link at once (a crash of the host, seen from the switch).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn reply(req: &Message, mti: &str) -> Message {
    let mut r = req.clone();
    r.remove(35).remove(52);
    r.set_mti(mti).unwrap();
    r.set(39, "00").unwrap();
    r
}

async fn link(sock: tokio::net::TcpStream, st: Arc<BankState>, stop: CancellationToken) {
    let spec = spec::shipped("iso87ascii").unwrap();
    let (r, w) = sock.into_split();
    let mut rd = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let mut wr = FramedWrite::new(w, FrameCodec::new(FrameConfig::default()));
    // (reply, field 90 of the original it approves)
    let (tx, mut rx) = mpsc::channel::<(Message, Option<String>)>(4096);
    let (wst, wstop) = (st.clone(), stop.clone());
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = wstop.cancelled() => return,
                n = rx.recv() => n,
            };
            let Some((m, f90)) = next else { return };
            if wr.send(Frame::plain(m.to_bytes().unwrap())).await.is_err() {
                return;
            }
            if let Some(f) = f90
                && let Some(o) = wst.log().originals.get_mut(&f)
            {
                o.answered = true;
            }
        }
    });
    loop {
        let f = tokio::select! {
            _ = stop.cancelled() => break,
            f = rd.next() => match f { Some(Ok(f)) => f, _ => break },
        };
        let Ok(req) = Message::decode(&spec, f.body) else { continue };
        match req.mti() {
            "0800" => {
                if req.text(70).as_deref() == Some("001") {
                    st.sign_ons.fetch_add(1, Ordering::SeqCst);
                }
                let _ = tx.send((reply(&req, "0810"), None)).await;
            }
            "0100" | "0200" => {
                let n = st.financial.fetch_add(1, Ordering::SeqCst) + 1;
                let (every, within) =
                    (st.drop_every.load(Ordering::SeqCst), st.drop_within.load(Ordering::SeqCst));
                let dropped = every > 0 && n.is_multiple_of(every) && (within == 0 || n <= within);
                let f90 = field90(&req);
                let old = st.log().originals.insert(
                    f90.clone(),
                    Original {
                        terminal: req.text(41).unwrap_or_default().trim_end().to_string(),
                        amount: req.amount().unwrap_or(0),
                        dropped,
                        answered: false,
                    },
                );
                if old.is_some() {
                    st.collisions.fetch_add(1, Ordering::SeqCst);
                }
                if dropped {
                    st.dropped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let mut r = reply(&req, if req.mti() == "0100" { "0110" } else { "0210" });
                r.set(38, "AUTH01").unwrap();
                let delay = st.delay_ms.load(Ordering::SeqCst);
                if delay == 0 {
                    let _ = tx.send((r, Some(f90))).await;
                } else {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = tx.send((r, Some(f90))).await;
                    });
                }
            }
            "0400" | "0401" => {
                let Some(f90) = req.text(90).map(|t| t.into_owned()) else { continue };
                let ack = st.ack_reversals.load(Ordering::SeqCst);
                {
                    let mut log = st.log();
                    let e = log.reversals.entry(f90).or_default();
                    let now = Instant::now();
                    e.arrivals.push((now, req.mti().to_string()));
                    e.amount = req.amount().unwrap_or(0);
                    e.terminal = req.text(41).unwrap_or_default().trim_end().to_string();
                    if ack && e.acked_at.is_none() {
                        e.acked_at = Some(now);
                    }
                }
                if ack {
                    let _ = tx.send((reply(&req, "0410"), None)).await;
                }
            }
            _ => {}
        }
    }
    drop(tx);
    // On a stop the writer ends at once; otherwise it writes what is queued first.
    let _ = writer.await;
}
