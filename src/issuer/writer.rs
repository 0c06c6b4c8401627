//! A link's write side: the messages queued for an issuer are framed and written in
//! batches (`frame::batch`); with an in-doubt log, each batch's reversible requests are
//! logged as one record just before the batch goes to the socket.
//! May import: crate::frame, crate::issuer::indoubt.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;

use super::indoubt::SegmentWriter;
pub(super) use crate::frame::batch::Ended;
use crate::frame::batch::{BatchEncoder, write_batches};
use crate::frame::{Frame, FrameCodec, FrameConfig};

/// A link's write half (TCP or TLS).
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A message queued for a link's writer.
pub struct Outgoing {
    pub(super) body: Bytes,
    /// For a request the in-doubt log records: the terminal's STAN (text, at most 12
    /// bytes) and its length.
    pub(super) doubt: Option<([u8; 12], u8)>,
}

impl Outgoing {
    pub(super) fn plain(body: Bytes) -> Outgoing {
        Outgoing { body, doubt: None }
    }
}

/// The issuer writer's encoder: frames each message into the batch and collects the
/// batch's reversible requests for the in-doubt log, which gets them as one record just
/// before the batch is written.
struct LinkEncoder<'a> {
    codec: FrameCodec,
    log: &'a mut Option<SegmentWriter>,
    issuer: &'a str,
}

impl BatchEncoder<Outgoing> for LinkEncoder<'_> {
    fn encode(&mut self, out: Outgoing, buf: &mut BytesMut) {
        if let (Some(log), Some((stan, n))) = (self.log.as_mut(), out.doubt) {
            log.add(stan.get(..usize::from(n)).unwrap_or(&[]), &out.body);
        }
        if self.codec.encode(Frame::plain(out.body), buf).is_err() {
            tracing::warn!(issuer = %self.issuer, "message too large for the issuer's framing");
        }
    }

    fn before_write(&mut self) {
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
    }
}

/// Write what `rx` yields to `w` until a write fails or stalls past `bound` (`WriteFailed`,
/// for the link's down reason) or every sender is gone.
pub(super) async fn write_loop(
    issuer: &str,
    link: u32,
    frame: FrameConfig,
    bound: Duration,
    rx: &mut mpsc::Receiver<Outgoing>,
    log: &mut Option<SegmentWriter>,
    mut w: Writer,
) -> Ended {
    let buf = BytesMut::with_capacity(16 * 1024);
    let enc = LinkEncoder { codec: FrameCodec::new(frame), log, issuer };
    let ended = write_batches(rx, &mut w, bound, buf, enc).await;
    if ended == Ended::WriteFailed {
        tracing::debug!(issuer, link, "issuer write failed or stalled; closing link");
    }
    ended
}
