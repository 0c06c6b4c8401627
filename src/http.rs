//! The little HTTP/1.1 the switch speaks on its operations ports (`/metrics`, the admin
//! API): read one request head with a size bound, write one response, close. No keep-alive,
//! no request bodies. May import: nothing but tokio.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
