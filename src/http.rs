//! The little HTTP/1.1 the switch speaks on its operations ports (`/metrics`, the admin
//! API): read one request head with a size and a time bound, write one response, close.
//! No keep-alive, no request bodies. [`serve`] is the accept loop of such a port: a small
//! cap on open connections (the excess closed at once, so idle connections cannot take
//! the process's descriptors from the terminals) and a backoff on accept errors.
//! May import: tokio, `metrics` (the crate), [`crate::accept`], [`crate::telemetry`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::accept::Backoff;
use crate::telemetry::{THROTTLE_INTERVAL, Throttle};

/// The bounds of one operations port.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The request head must arrive within this, or the connection is closed.
    pub read_timeout: Duration,
    /// Bytes of request head read at most.
    pub head_limit: usize,
    /// The whole answer (head read excluded) is bounded by this.
    pub answer_timeout: Duration,
}

/// The counters an operations port feeds (handles made by the caller, which owns the names).
pub struct Counters {
    /// Connections closed at the cap.
    pub refused: metrics::Counter,
    /// Failed accepts.
    pub accept_errors: metrics::Counter,
}

/// Serve the port `name` (`admin`, `metrics`) on `listener` until `shutdown`: each
/// connection's request head is read (bounded) and handed to `answer` with the stream.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    limits: Limits,
    counters: Counters,
    shutdown: CancellationToken,
    answer: F,
) where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    static AT_CAP: Throttle = Throttle::new(THROTTLE_INTERVAL);
    let cap = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(cap));
    let answer = Arc::new(answer);
    let mut backoff = Backoff::new(name, counters.accept_errors);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let mut stream = match accepted {
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
        let answer = answer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let head =
                tokio::time::timeout(limits.read_timeout, read_head(&mut stream, limits.head_limit)).await;
            let Ok(Ok(head)) = head else { return };
            let _ = tokio::time::timeout(limits.answer_timeout, answer(stream, head)).await;
        });
    }
}

/// Read a request head (up to the blank line) of at most `limit` bytes; what does not fit
/// is left unread and the head is judged on what came.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, limit: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; limit];
    let mut n = 0;
    while n < buf.len() {
        let got = stream.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Write a whole response (`status` is e.g. `"200 OK"`) and close the write side.
pub async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    respond_with(stream, status, content_type, &[], body).await
}

/// As [`respond`], with extra header lines (`("allow", "POST")` on a 405).
pub async fn respond_with<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
