//! Copying between a forwarded SSH channel and the machine's TCP socket.
//!
//! A relay must never outlive either side: a half-closed link, a silent machine or a
//! client that vanished would otherwise hold a socket and a task forever, and enough of
//! them take the whole server down (no descriptors left for the API or new logins).

use futures::FutureExt;
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Bytes read at once from the machine. A buffer exists only while a read is waiting
/// or its bytes are on their way to the client, so an idle relay pins little memory;
/// the client's direction needs no buffer of ours (russh hands over each packet).
const BUFFER: usize = 64 * 1024;

/// After the client closed the channel or went away, how long the relay may still spend
/// handing what it already received to the machine.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How a relay ended.
#[derive(Debug)]
pub(crate) struct RelayEnd {
    /// Bytes sent to the machine.
    pub up: u64,
    /// Bytes sent back to the client.
    pub down: u64,
    /// Why it ended early, if it did (both sides finishing is the normal end).
    pub reason: Option<String>,
}

/// When the last byte went either way.
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { started: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Release);
    }

    /// Resolves once nothing moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// At most this many bytes of data packets that are already waiting are gathered into one
/// write to the machine.
const BATCH: usize = 256 * 1024;

/// Hands what the client sends to the machine until the client's EOF (or the channel's
/// end), then shuts down the machine's write side so it sees the EOF (the other direction
/// goes on). Each SSH data packet is written as russh decoded it: no copy into a buffer of
/// ours on the way. Packets that are already waiting when one arrives go out with it in one
/// vectored write: a send per packet (16 to 32 KiB from OpenSSH) cost the gateway a syscall
/// and a wakeup of the machine's sshd each. An error ends it at once.
async fn pump_up(
    mut from: ChannelReadHalf,
    mut to: impl AsyncWrite + Unpin,
    bytes: &AtomicU64,
    activity: &Activity,
) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut next = from.wait().await;
    while let Some(msg) = next {
        next = None;
        let mut ended = false;
        if let ChannelMsg::Data { data } = msg {
            let mut size = data.len();
            batch.push(data);
            // Whatever is already queued, without waiting (dropping an unfinished `wait` loses
            // nothing: the channel's receiver is cancel-safe).
            while size < BATCH {
                match from.wait().now_or_never() {
                    None => break,
                    Some(Some(ChannelMsg::Data { data })) => {
                        size += data.len();
                        batch.push(data);
                    }
                    Some(Some(ChannelMsg::Eof)) | Some(None) => {
                        ended = true;
                        break;
                    }
                    // Requests, window changes and extended data mean nothing on a forwarded channel.
                    Some(Some(_)) => {}
                }
            }
            activity.touch();
            write_all_vectored(&mut to, &batch).await.map_err(|e| e.to_string())?;
            bytes.fetch_add(size as u64, Ordering::Relaxed);
            activity.touch();
            batch.clear();
        } else if let ChannelMsg::Eof = msg {
            ended = true;
        }
        if !ended {
            next = from.wait().await;
        }
    }
    // The peer may already be gone; then there is nobody left to tell.
    let _ = to.shutdown().await;
    Ok(())
}

/// Writes every buffer of `batch`, in order, with as few (vectored) writes as the socket takes.
async fn write_all_vectored<B: AsRef<[u8]>>(to: &mut (impl AsyncWrite + Unpin), batch: &[B]) -> std::io::Result<()> {
    // Position: the buffer being written and how much of it is written already.
    let (mut index, mut offset) = (0, 0);
    while let Some(first) = batch.get(index) {
        // An empty data packet is legal; writing nothing would look like a closed socket.
        if first.as_ref().len() == offset {
            (index, offset) = (index + 1, 0);
            continue;
        }
        let rest = batch.get(index + 1..).unwrap_or_default();
        let first = first.as_ref().get(offset..).unwrap_or_default();
        let slices: Vec<IoSlice<'_>> =
            std::iter::once(first).chain(rest.iter().map(AsRef::as_ref)).map(IoSlice::new).collect();
        let mut written = to.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while let Some(buffer) = batch.get(index) {
            let left = buffer.as_ref().len() - offset;
            if written < left {
                offset += written;
                break;
            }
            written -= left;
            (index, offset) = (index + 1, 0);
        }
    }
    Ok(())
}

/// Hands what the machine sends to the client until the machine's EOF, then sends the
/// client an EOF. Reads land in a buffer that is handed to russh as it is (no copy), and
/// russh cuts it into packets as the client's window and packet size allow.
async fn pump_down(
    mut from: impl AsyncRead + Unpin,
    to: &ChannelWriteHalf<Msg>,
    bytes: &AtomicU64,
    activity: &Activity,
) -> Result<(), String> {
    loop {
        let mut buf = Vec::with_capacity(BUFFER);
        let n = from.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        activity.touch();
        to.data_bytes(buf).await.map_err(|e| e.to_string())?;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
    }
    let _ = to.eof().await;
    Ok(())
}

/// Relays between `channel` and `tcp` until both directions are done, either side fails,
/// nothing moves for `idle`, or `client_gone` fires (the client closed the channel or its
/// connection ended: its sender is dropped). Everything is dropped on return, which closes
/// the machine's socket and the channel.
pub(crate) async fn relay(
    channel: Channel<Msg>,
    tcp: tokio::net::TcpStream,
    idle: Duration,
    mut client_gone: oneshot::Receiver<()>,
) -> RelayEnd {
    let activity = Activity::new();
    let (up_bytes, down_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let (from_client, to_client) = channel.split();
    let (from_machine, to_machine) = tcp.into_split();
    // In a block of its own: the pumps borrow the channel's write half, which is closed after.
    let reason = {
        let up = pump_up(from_client, to_machine, &up_bytes, &activity);
        let down = pump_down(from_machine, &to_client, &down_bytes, &activity);
        tokio::pin!(up, down);
        // Armed when the client goes: it bounds the time left to drain toward the machine.
        let grace = tokio::time::sleep(Duration::from_secs(86400 * 365));
        tokio::pin!(grace);
        let (mut up_done, mut down_done, mut gone) = (false, false, false);
        loop {
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) if down_done => break None,
                    Ok(()) if gone => break Some("the client closed the channel".into()),
                    Ok(()) => up_done = true,
                    Err(e) => break Some(format!("client side: {e}")),
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) if up_done => break None,
                    Ok(()) => down_done = true,
                    Err(e) => break Some(format!("machine side: {e}")),
                },
                _ = &mut client_gone, if !gone => {
                    // The channel's reader drains what the client sent before it went, then ends:
                    // only that part is waited for, the machine's side is not.
                    if up_done {
                        break Some("the client closed the channel".into());
                    }
                    gone = true;
                    grace.as_mut().reset((Instant::now() + DRAIN_GRACE).into());
                },
                () = &mut grace, if gone => break Some("the client went away".into()),
                () = activity.idle_for(idle) => break Some(format!("idle for {}s", idle.as_secs())),
            }
        }
    };
    // The channel's halves do not close it when dropped (its stream did): close it here,
    // without waiting, since a client that reads nothing could hold this task otherwise.
    tokio::spawn(async move {
        let _ = to_client.close().await;
    });
    RelayEnd { up: up_bytes.load(Ordering::Relaxed), down: down_bytes.load(Ordering::Relaxed), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers cut anywhere by short writes, empty ones among them, arrive whole and in order.
    #[tokio::test]
    async fn vectored_writes_send_every_buffer_in_order() {
        let batch: Vec<Vec<u8>> = vec![vec![1; 5000], Vec::new(), vec![2; 3], vec![3; 20_000], Vec::new()];
        // A small pipe makes the writer take a part at a time.
        let (mut writer, mut reader) = tokio::io::duplex(1000);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.expect("read");
            got
        });
        write_all_vectored(&mut writer, &batch).await.expect("write");
        drop(writer);
        assert_eq!(reading.await.expect("reader"), batch.concat());
    }

    /// A batch of nothing but empty buffers writes nothing and is no error.
    #[tokio::test]
    async fn empty_buffers_are_no_error() {
        let (mut writer, _reader) = tokio::io::duplex(10);
        write_all_vectored(&mut writer, &[Vec::<u8>::new(), Vec::new()]).await.expect("nothing to write");
    }
}
