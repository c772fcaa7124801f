//! A VM's serial console as the runner keeps it: QEMU writes the guest's ttyS0 to its
//! standard output, the runner copies it to its own (Docker's log of the runner container,
//! bounded by the log options every machine container gets, is what the panel's console
//! view reads) and keeps the last bytes in memory for error messages.
//!
//! Why not a file in the VM's volume: root in the guest can write to its console without
//! end, and a file nobody rotates would fill the host's disk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The last bytes of a console, at most `capacity`.
#[derive(Debug)]
pub struct ConsoleRing {
    bytes: Mutex<VecDeque<u8>>,
    capacity: usize,
}

impl ConsoleRing {
    /// An empty ring keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self { bytes: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))), capacity }
    }

    /// Appends `chunk`, dropping the oldest bytes beyond the capacity.
    pub fn push(&self, chunk: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        let overflow = (bytes.len() + chunk.len()).saturating_sub(self.capacity);
        bytes.drain(..overflow);
        bytes.extend(chunk);
    }

    /// The last `lines` lines (lossy UTF-8, carriage returns dropped).
    pub fn tail(&self, lines: usize) -> String {
        let bytes: Vec<u8> = self.bytes.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        last_lines(&String::from_utf8_lossy(&bytes), lines)
    }
}

/// The last `n` lines of `text`, without carriage returns (a serial console ends lines with
/// CR LF).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `text` without terminal escape sequences (colours, cursor moves: systemd colours its boot
/// status on a serial console), for showing it as plain text.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: parameters and intermediates up to a final byte in @..~.
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // A two-character escape (e.g. ESC c, ESC 7).
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out
}

/// Copies `from` into `ring` and `to` until `from` ends. A failing `to` is dropped, never
/// waited for: the console keeps draining, so the guest never blocks on it.
pub async fn forward(mut from: impl AsyncRead + Unpin, ring: Arc<ConsoleRing>, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut writing = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        ring.push(&buf[..n]);
        if writing && (to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err()) {
            writing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_bytes() {
        let ring = ConsoleRing::new(8);
        ring.push(b"abc\r\n");
        assert_eq!(ring.tail(5), "abc");
        ring.push(b"defgh\r\nij");
        assert_eq!(ring.tail(5), "efgh\nij", "only the last 8 bytes");
        ring.push(&[b'x'; 100]);
        assert_eq!(ring.tail(1), "xxxxxxxx");
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("[\u{1b}[0;32m  OK  \u{1b}[0m] Reached \u{1b}[0;1;39mbasic.target\u{1b}[0m\u{1b}[K."),
            "[  OK  ] Reached basic.target."
        );
        assert_eq!(strip_escapes("plain\u{1b}c text\u{1b}"), "plain text");
    }

    #[tokio::test]
    async fn forward_copies_and_keeps_draining_when_the_output_fails() {
        let ring = Arc::new(ConsoleRing::new(1 << 10));
        let mut out = Vec::new();
        forward(&b"boot\nlogin: "[..], Arc::clone(&ring), &mut out).await;
        assert_eq!(out, b"boot\nlogin: ");
        assert_eq!(ring.tail(2), "boot\nlogin: ");

        struct Broken;
        impl AsyncWrite for Broken {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let ring = Arc::new(ConsoleRing::new(1 << 10));
        forward(&b"one\ntwo\n"[..], Arc::clone(&ring), Broken).await;
        assert_eq!(ring.tail(5), "one\ntwo");
    }
}
