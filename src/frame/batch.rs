//! The write side of a framed connection, shared by terminal connections and issuer
//! links: whatever is already queued is encoded into one buffer (up to `BATCH` bytes) and
//! written with one write and flush, so a busy connection costs a syscall per batch, not
//! per message; a write that fails or stalls past its bound ends the loop. An encoder can
//! act once a batch is complete and before it is written (the issuer links log the
//! batch's requests there; see `issuer::indoubt`).
//! May import: nothing.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Encoding stops taking queued items once the buffer holds this much.
const BATCH: usize = 64 * 1024;

/// How a batching write loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every sender is gone and everything queued was written.
    Closed,
    /// A write failed or did not finish within its bound.
    WriteFailed,
}

/// What a batching write loop does with each item: append its frame to the batch buffer
/// (or nothing). Any `FnMut(T, &mut BytesMut)` is one.
pub trait BatchEncoder<T> {
    fn encode(&mut self, item: T, buf: &mut BytesMut);
    /// The batch in `buf` is complete and about to be written.
    fn before_write(&mut self) {}
}

impl<T, F: FnMut(T, &mut BytesMut)> BatchEncoder<T> for F {
    fn encode(&mut self, item: T, buf: &mut BytesMut) {
        self(item, buf)
    }
}

/// Write everything `rx` yields to `w`, in batches: each item is passed to `encode`
/// with the batch buffer (it appends the item's frame, or nothing), then the batch is
/// written and flushed within `bound`.
pub async fn write_batches<T, W: AsyncWrite + Unpin>(
    rx: &mut mpsc::Receiver<T>,
    w: &mut W,
    bound: Duration,
    mut buf: BytesMut,
    mut encode: impl BatchEncoder<T>,
) -> Ended {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            encode.encode(item, &mut buf);
            if buf.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        encode.before_write();
        let write = async {
            w.write_all(&buf).await?;
            w.flush().await
        };
        match tokio::time::timeout(bound, write).await {
            Ok(Ok(())) => buf.clear(),
            _ => return Ended::WriteFailed,
        }
    }
    Ended::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_items_go_out_in_one_batch_and_a_stalled_peer_ends_the_loop() {
        let (tx, mut rx) = mpsc::channel::<&'static [u8]>(8);
        for part in [&b"ab"[..], b"cd", b"ef"] {
            tx.send(part).await.unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        let ended = write_batches(
            &mut rx,
            &mut out,
            Duration::from_secs(1),
            BytesMut::new(),
            |p: &[u8], b: &mut BytesMut| b.extend_from_slice(p),
        )
        .await;
        assert_eq!((ended, out.as_slice()), (Ended::Closed, &b"abcdef"[..]));

        // A peer that never reads: the write stalls and the loop ends after its bound.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
        let (mut near, _far) = tokio::io::duplex(16);
        tx.send(vec![7u8; 64]).await.unwrap();
        let ended = write_batches(
            &mut rx,
            &mut near,
            Duration::from_millis(50),
            BytesMut::new(),
            |p: Vec<u8>, b: &mut BytesMut| b.extend_from_slice(&p),
        )
        .await;
        assert_eq!(ended, Ended::WriteFailed);
    }
}
