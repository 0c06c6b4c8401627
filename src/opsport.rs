//! The server of the operations ports (`/metrics`, the admin API): HTTP/1.1 by hyper, one
//! request per connection, no request bodies read. [`serve`] is the accept loop both ports
//! share, with the bounds a port open to scrapers and scripts needs so that it cannot take
//! from the terminals:
//!
//! - a small cap on open connections; the excess is closed as soon as it is accepted, so
//!   idle connections cannot take the process's descriptors from the terminals;
//! - a backoff on accept errors ([`crate::accept::Backoff`]);
//! - the request head must be complete within `read_timeout` of the accept (hyper's
//!   header read timeout, which runs from the connection's start: a peer that sends
//!   nothing, or trickles its head a byte at a time, is closed at the same moment);
//! - the head is at most `head_limit` bytes and [`MAX_HEADERS`] header lines (answered
//!   431 past either); a request's body is never read, so it costs nothing;
//! - the whole connection, answer included (a peer that does not read it too), is closed
//!   at `read_timeout + answer_timeout`.
//!
//! May import: crate::accept, crate::telemetry.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accept::Backoff;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// Bytes a connection's read buffer holds at most (hyper's smallest): the bound on what
/// one connection can make the port keep in memory.
const READ_BUFFER: usize = 8192;

/// Header lines a request may carry.
pub const MAX_HEADERS: usize = 32;

/// A whole answer: the operations ports answer small bodies made at once.
pub type Answer = Response<Full<Bytes>>;

/// The bounds of one operations port.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The request head must arrive within this (from the accept), or the connection is closed.
    pub read_timeout: Duration,
    /// Bytes of request head (request line and headers) at most; at most 8192.
    pub head_limit: usize,
    /// The answer (made and written) is bounded by this after the read timeout.
    pub answer_timeout: Duration,
}

/// The counters an operations port feeds (handles made by the caller, which owns the names).
pub struct Counters {
    /// Connections closed at the cap.
    pub refused: metrics::Counter,
    /// Failed accepts.
    pub accept_errors: metrics::Counter,
}

/// An answer with `status`, a `content_type` and `body`.
pub fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Serve the port `name` (`admin`, `metrics`) on `listener` until `shutdown`: each
/// connection's one request is handed to `handler`, whose answer is written back before
/// the connection is closed.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    limits: Limits,
    counters: Counters,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    static AT_CAP: Throttle = Throttle::new(THROTTLE_INTERVAL);
    let cap = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(cap));
    let handler = Arc::new(handler);
    let mut backoff = Backoff::new(name, counters.accept_errors);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .keep_alive(false)
        .max_buf_size(READ_BUFFER)
        .max_header_size(limits.head_limit.min(READ_BUFFER))
        .max_headers(MAX_HEADERS);
    let whole = limits.read_timeout.saturating_add(limits.answer_timeout);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff.accepted();
                s
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            counters.refused.increment(1);
            if let Some(suppressed) = AT_CAP.hit() {
                tracing::warn!(
                    port = name,
                    cap,
                    suppressed,
                    "operations port at its connection cap; connection closed"
                );
            }
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let answer = handler(req);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            // A protocol error or a timeout has nobody to be told: the peer is gone or
            // misbehaving, and the connection is closed either way.
            let _ = tokio::time::timeout(whole, conn).await;
        });
    }
}
