//! Copying between a forwarded SSH channel and the machine's TCP socket.
//!
//! A relay must never outlive either side: a half-closed link, a silent machine or a
//! client that vanished would otherwise hold a socket and a task forever, and enough of
//! them take the whole server down (no descriptors left for the API or new logins).

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
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

/// Hands what the client sends to the machine until the client's EOF (or the channel's
/// end), then shuts down the machine's write side so it sees the EOF (the other direction
/// goes on). Each SSH data packet is written as russh decoded it: no copy into a buffer of
/// ours on the way. An error ends it at once.
async fn pump_up(
    mut from: ChannelReadHalf,
    mut to: impl AsyncWrite + Unpin,
    bytes: &AtomicU64,
    activity: &Activity,
) -> Result<(), String> {
    while let Some(msg) = from.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                activity.touch();
                to.write_all(&data).await.map_err(|e| e.to_string())?;
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                activity.touch();
            }
            ChannelMsg::Eof => break,
            // Requests, window changes and extended data mean nothing on a forwarded channel.
            _ => {}
        }
    }
    // The peer may already be gone; then there is nobody left to tell.
    let _ = to.shutdown().await;
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
