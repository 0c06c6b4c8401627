//! The link task: connect (TCP or TLS) with capped exponential backoff and jitter that
//! survives refused connects, sign on (0800, field 70 = 001), echo (0800, 70 = 301) when
//! nothing has been received for the echo interval, and per connection a reader task that
//! hands each frame to the link (`Link::on_frame`) while the batching writer (`writer`)
//! drains what is queued; the connection is closed hard when a write stalls or an echo goes
//! unanswered. A connection ends with a reason (`link_state::LinkFault`); the
//! link's health (`link_state::LinkHealth`) decides what of it reaches the log: one WARN
//! when the link goes down, a reminder while it stays down, one INFO when it is up again.
//! What a request does on the link (prepare, write, wait, reverse on timeout) is `link`'s.
//! May import: crate::frame, crate::iso, crate::issuer::clock, crate::issuer::indoubt,
//! crate::issuer::link, crate::issuer::link_state, crate::issuer::outcome, crate::issuer::writer,
//! crate::metrics, crate::rc.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use metrics::counter;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::clock::transmission_time;
use super::indoubt::SegmentWriter;
use super::link::{Kind, Link};
use super::link_state::{DownReport, LinkFault, LinkHealth};
use super::outcome::Outcome;
use super::writer::{Ended, Outgoing, Writer, write_loop};
use crate::frame::FrameCodec;
use crate::iso::Message;
use crate::metrics as m;
use crate::rc::ResponseCode;

type Reader = Box<dyn AsyncRead + Send + Unpin>;

impl Link {
    async fn connect(&self) -> Result<(Reader, Writer), LinkFault> {
        let ms = self.timeouts.connect_ms;
        let tcp = tokio::time::timeout(Duration::from_millis(ms), TcpStream::connect(self.cfg.addr))
            .await
            .map_err(|_| LinkFault::ConnectTimeout { ms })?
            .map_err(LinkFault::Connect)?;
        tcp.set_nodelay(true).map_err(LinkFault::Connect)?;
        match &self.tls {
            None => {
                let (r, w) = tcp.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
            Some((cc, name)) => {
                let name = rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| LinkFault::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
                let connector = tokio_rustls::TlsConnector::from(cc.clone());
                let ms = self.timeouts.handshake_ms;
                let tls = tokio::time::timeout(Duration::from_millis(ms), connector.connect(name, tcp))
                    .await
                    .map_err(|_| LinkFault::TlsTimeout { ms })?
                    .map_err(LinkFault::Tls)?;
                let (r, w) = tokio::io::split(tls);
                Ok((Box::new(r), Box::new(w)))
            }
        }
    }

    fn network_message(&self, code: &str) -> Option<Message> {
        let mut msg = Message::new(self.spec.clone(), "0800").ok()?;
        // Dialects without fields 7 or 70 (UnionPay-style POS) get the message without them.
        if self.spec.field(7).is_some() {
            msg.set(7, &transmission_time()).ok()?;
        }
        if self.spec.field(70).is_some() {
            msg.set(70, code).ok()?;
        }
        Some(msg)
    }

    /// A sign-on (`001`) or echo (`301`) exchange: `Ok` when answered 0810 with 00.
    async fn network(&self, code: &str) -> Result<(), LinkFault> {
        let what = if code == "001" { "sign-on" } else { "echo" };
        let Some(msg) = self.network_message(code) else { return Err(LinkFault::NotExchanged { what }) };
        match self.exchange(&msg, Kind::Network).await {
            Outcome::Reply(r) => {
                let rc = r.response_code();
                if r.mti() == "0810"
                    && rc.as_deref().and_then(ResponseCode::parse).is_some_and(ResponseCode::is_approved)
                {
                    Ok(())
                } else {
                    Err(LinkFault::Declined { what, mti: r.mti().to_string(), rc: rc.map(|c| c.to_string()) })
                }
            }
            Outcome::Timeout => Err(LinkFault::Unanswered { what, ms: self.cfg.deadline_ms }),
            _ => Err(LinkFault::NotExchanged { what }),
        }
    }

    /// Log the end of an attempt or of a connection, as `health` decides.
    fn report_down(&self, health: &mut LinkHealth, fault: LinkFault) {
        let reason = fault.to_string();
        let (issuer, link, addr) = (&*self.issuer, self.id, self.cfg.addr);
        match health.down(Instant::now(), fault) {
            DownReport::WentDown => {
                tracing::warn!(issuer, link, %addr, reason, "issuer link down");
            }
            DownReport::Reminder { down_for, attempts, reason_changed } => {
                let down_for_s = down_for.as_secs();
                tracing::warn!(issuer, link, %addr, reason, reason_changed, down_for_s, attempts,
                    "issuer link still down");
            }
            DownReport::Quiet => tracing::debug!(issuer, link, %addr, reason, "issuer link attempt failed"),
        }
    }

    /// The link is serving (connected, signed on where configured).
    fn report_up(&self, health: &mut LinkHealth) {
        let (issuer, link, addr) = (&*self.issuer, self.id, self.cfg.addr);
        match health.up(Instant::now()) {
            Some((down_for, attempts)) => {
                let down_for_ms = down_for.as_millis() as u64;
                tracing::info!(issuer, link, %addr, down_for_ms, attempts, "issuer link up again");
            }
            None => tracing::info!(issuer, link, %addr, "issuer link up"),
        }
    }
}

/// The link task: connect, sign on, serve, and reconnect until `shutdown`.
pub async fn run(
    link: Arc<Link>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut log: Option<SegmentWriter>,
    shutdown: CancellationToken,
) {
    let cap = Duration::from_millis(link.timeouts.reconnect_max_ms.max(100));
    let mut backoff = Duration::from_millis(50);
    let mut health = LinkHealth::new(Duration::from_millis(link.timeouts.down_reminder_ms.max(1)));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = link.connect() => c,
        };
        let fault = match conn {
            Ok((r, w)) => {
                counter!(m::LINK_CONNECTS_TOTAL, "issuer" => link.issuer.to_string()).increment(1);
                tracing::debug!(issuer = %link.issuer, link = link.id, addr = %link.cfg.addr, "issuer link connected");
                let (signed_on, fault) = serve(&link, &mut rx, &mut log, r, w, &shutdown, &mut health).await;
                if signed_on {
                    backoff = Duration::from_millis(50);
                }
                if shutdown.is_cancelled() {
                    return;
                }
                fault
            }
            Err(fault) => fault,
        };
        link.report_down(&mut health, fault);
        // Jitter keeps many links from reconnecting in step.
        let jitter = Duration::from_millis(u64::from(link.born.elapsed().subsec_nanos() % 50));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(cap);
    }
}

/// Serve one connection until it breaks; returns whether it was signed on, and why it ended.
async fn serve(
    link: &Arc<Link>,
    rx: &mut mpsc::Receiver<Outgoing>,
    log: &mut Option<SegmentWriter>,
    r: Reader,
    w: Writer,
    shutdown: &CancellationToken,
    health: &mut LinkHealth,
) -> (bool, LinkFault) {
    // Messages queued for a previous connection belong to requests already failed.
    while rx.try_recv().is_ok() {}
    let reader_link = link.clone();
    let reply_tx = link.tx.clone();
    let codec = FrameCodec::new(link.cfg.frame);
    let mut reader = tokio::spawn(async move {
        let mut frames = FramedRead::new(r, codec);
        loop {
            match frames.next().await {
                Some(Ok(frame)) => reader_link.on_frame(frame.body, &reply_tx),
                Some(Err(e)) => return LinkFault::ReadFailed(e.to_string()),
                None => return LinkFault::Closed,
            }
        }
    });
    let mut signed_on = false;
    let write_bound = Duration::from_millis(link.timeouts.write_ms);
    let control = async {
        if link.cfg.sign_on
            && let Err(fault) = link.network("001").await
        {
            return fault;
        }
        signed_on = true;
        link.up.store(true, Ordering::Release);
        link.up_gauge.link_up();
        link.report_up(health);
        let every = Duration::from_millis(link.cfg.echo_interval_ms.max(10));
        loop {
            tokio::time::sleep(every / 4).await;
            let now = link.born.elapsed().as_millis() as u64;
            if now.saturating_sub(link.last_rx_ms.load(Ordering::Relaxed)) >= every.as_millis() as u64
                && let Err(fault) = link.network("301").await
            {
                return fault;
            }
        }
    };
    let fault = tokio::select! {
        ended = &mut reader => ended.unwrap_or(LinkFault::Closed),
        ended = write_loop(&link.issuer, link.id, link.cfg.frame, write_bound, rx, log, w) => match ended {
            Ended::WriteFailed => LinkFault::WriteFailed,
            Ended::Closed => LinkFault::Closed,
        },
        fault = control => fault,
        _ = shutdown.cancelled() => LinkFault::Closed,
    };
    reader.abort();
    if link.up.swap(false, Ordering::AcqRel) {
        link.up_gauge.link_down();
    }
    let lost = link.session.purge();
    if lost > 0 {
        link.inflight.fetch_sub(lost.min(link.inflight()), Ordering::Relaxed);
        link.inflight_gauge.decrement(lost as f64);
        tracing::warn!(issuer = %link.issuer, link = link.id, lost, "requests in flight on a lost link");
    }
    (signed_on, fault)
}
