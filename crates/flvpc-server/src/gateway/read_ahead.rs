//! Reading the client's socket ahead of russh.
//!
//! russh reads each SSH packet with two exact reads (its length, then the rest), and
//! the socket underneath is unbuffered: two `recv` calls per packet, 16 to 32 KiB each
//! on a bulk stream. Reading ahead into a buffer takes whatever the kernel holds in one
//! call. The buffer exists only while a bulk transfer runs: when the socket has nothing
//! more after a small read (typing, keepalives, the end of a transfer), it is freed, so
//! an idle connection holds none for long. It is kept when a bulk sender merely paused:
//! allocating (and zeroing) it again at every pause would cost more than it saves.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much is read from the socket at once.
const AHEAD: usize = 64 * 1024;

/// A read of less than this is not bulk traffic.
const SMALL: usize = 4 * 1024;

/// A socket whose small reads are served from a read-ahead buffer; writes go straight through.
pub(super) struct ReadAhead<S> {
    inner: S,
    /// Empty while idle, else `AHEAD` bytes of which `start..end` are not handed out yet.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Whether the last read from the socket was small.
    last_small: bool,
}

impl<S> ReadAhead<S> {
    pub(super) fn new(inner: S) -> Self {
        Self { inner, buffer: Vec::new(), start: 0, end: 0, last_small: true }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end {
            // A read as large as the buffer gains nothing from it.
            if out.remaining() >= AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buffer.is_empty() {
                this.buffer = vec![0; AHEAD];
            }
            let mut ahead = ReadBuf::new(&mut this.buffer);
            match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
                Poll::Ready(Ok(())) => {
                    (this.start, this.end) = (0, ahead.filled().len());
                    this.last_small = this.end < SMALL;
                    // Nothing read is the end of the stream: so it is for the caller too.
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    if this.last_small {
                        this.buffer = Vec::new();
                    }
                    return Poll::Pending;
                }
            }
        }
        let ready = this.buffer.get(this.start..this.end).unwrap_or_default();
        let n = ready.len().min(out.remaining());
        out.put_slice(ready.get(..n).unwrap_or_default());
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small and large reads, across refills, give back the stream byte for byte, and the
    /// end of the stream still reads as the end.
    #[tokio::test]
    async fn reads_the_stream_unchanged() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (mut writer, reader) = tokio::io::duplex(8 * 1024);
        let sent = data.clone();
        let feeder = tokio::spawn(async move {
            writer.write_all(&sent).await.expect("write");
        });
        let mut ahead = ReadAhead::new(reader);
        let mut got = Vec::new();
        let mut sizes = [4usize, 1, 70_000, 33, 65_536, 17].into_iter().cycle();
        loop {
            let mut chunk = vec![0; sizes.next().expect("cycle")];
            let n = ahead.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(chunk.get(..n).expect("n fits"));
        }
        feeder.await.expect("feeder");
        assert_eq!(got, data);
    }

    /// Once the socket has nothing to give after a small read, the buffer is gone (an idle
    /// connection holds none); after a large read it stays for the rest of the transfer.
    #[tokio::test]
    async fn drops_the_buffer_when_idle() {
        let (mut writer, reader) = tokio::io::duplex(128 * 1024);
        let mut ahead = ReadAhead::new(reader);
        writer.write_all(b"hello").await.expect("write");
        let mut four = [0u8; 4];
        ahead.read_exact(&mut four).await.expect("read");
        assert_eq!(&four, b"hell");
        assert_eq!(ahead.buffer.len(), AHEAD);
        let mut one = [0u8; 1];
        ahead.read_exact(&mut one).await.expect("read");
        let read = futures::FutureExt::now_or_never(ahead.read(&mut one));
        assert!(read.is_none(), "nothing was sent, so the read waits");
        assert!(ahead.buffer.is_empty(), "the buffer is freed while the socket is idle");

        writer.write_all(&[7; 10_000]).await.expect("write");
        let mut some = [0u8; 4];
        ahead.read_exact(&mut some).await.expect("read");
        let mut rest = vec![0u8; 9_996];
        ahead.read_exact(&mut rest).await.expect("read");
        assert!(futures::FutureExt::now_or_never(ahead.read(&mut one)).is_none(), "the read waits");
        assert_eq!(ahead.buffer.len(), AHEAD, "a bulk sender's pause keeps the buffer");
    }
}
