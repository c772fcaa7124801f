//! The HTTPS listener: accepts TCP connections, runs each TLS handshake in its own task (with a
//! deadline, and caps on those in flight, in all and per client address) and hands finished streams
//! to axum, so a slow or silent client never holds up the others. A plain-HTTP request gets a short 400 that says to use
//! https, then the connection is closed: it neither hangs nor sees a TLS alert it cannot read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

/// How long a client has to finish the handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;
/// Handshakes in flight from one address (an IPv4 address or an IPv6 /64): more are closed at once,
/// so that one client's silent connections cannot take every place of the others.
const MAX_HANDSHAKES_PER_ADDRESS: usize = 32;
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A bound TCP listener that yields TLS streams to `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The accept loop owns the socket: stopping it closes the port when the server stops.
        self.accept.abort();
    }
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accept = tokio::spawn(accept_loop(listener, tokio_rustls::TlsAcceptor::from(config), tx));
        Ok(Self { local, ready, accept })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop ended (it only does when aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let per_address = Arc::new(PerAddress::default());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors or similar: axum's own listener waits a second too.
                tracing::warn!("cannot accept an HTTPS connection: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(address_slot) = PerAddress::take(&per_address, peer.ip()) else {
            tracing::debug!("closed a connection from {peer}: {MAX_HANDSHAKES_PER_ADDRESS} handshakes in flight");
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _slots = (slot, address_slot);
            match tokio::time::timeout(HANDSHAKE_DEADLINE, handshake(stream, peer, &acceptor)).await {
                Ok(Some(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(None) => {}
                Err(_) => tracing::debug!("TLS handshake from {peer} did not finish within {HANDSHAKE_DEADLINE:?}"),
            }
        });
    }
}

/// Handshakes in flight per address key.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// A place among one address's handshakes, given back on drop.
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn take(counts: &Arc<PerAddress>, ip: IpAddr) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut map = counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        if *count >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: counts.clone(), key })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The IPv4 address, or the /64 of an IPv6 address (one host usually owns a whole /64), as the
/// SSH gateway's per-address cap counts.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
) -> Option<TlsStream<TcpStream>> {
    // Small writes (a WebSocket keystroke, an event) go out at once, not after a delayed ACK.
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(1) => {
            refuse_plain_http(stream).await;
            return None;
        }
        _ => return None,
    }
    match acceptor.accept(stream).await {
        Ok(tls) => Some(tls),
        Err(err) => {
            // Scanners and clients that refuse the certificate: not the server's problem.
            tracing::debug!("TLS handshake from {peer} failed: {err}");
            None
        }
    }
}

/// Answers a plain-HTTP request on the HTTPS port with a 400 that says what to do, then closes.
async fn refuse_plain_http(mut stream: TcpStream) {
    // Read the request's head (it may come in several writes) so that closing does not reset the
    // connection before the client has sent it all and read the answer; 4 KiB and a second at most.
    let mut request = Vec::with_capacity(1024);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut chunk = [0u8; 1024];
        while request.len() < 4096 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let host = host_header(&request).unwrap_or_else(|| "this-server".to_owned());
    let body = format!("This port speaks HTTPS: use https://{host}/ instead of http://\n");
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The `Host` header of a plain request, when it is a plain host[:port] (never echoed otherwise).
fn host_header(request: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(request).ok()?;
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim())
    })?;
    let plain = !value.is_empty()
        && value.len() <= 260
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    plain.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_a_bounded_number_of_handshakes_given_back_on_drop() {
        let counts = Arc::new(PerAddress::default());
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        let neighbour: IpAddr = "2001:db8::2".parse().expect("ip");
        let held: Vec<AddressSlot> =
            (0..MAX_HANDSHAKES_PER_ADDRESS).map(|_| PerAddress::take(&counts, ip).expect("a place")).collect();
        assert!(PerAddress::take(&counts, neighbour).is_none(), "the same /64 shares the cap");
        assert!(PerAddress::take(&counts, "192.0.2.1".parse().expect("ip")).is_some(), "others still get in");
        drop(held);
        assert!(PerAddress::take(&counts, ip).is_some());
        assert!(counts.0.lock().expect("lock").len() <= 1, "emptied entries are removed");
    }

    #[test]
    fn only_a_plain_host_is_echoed() {
        assert_eq!(host_header(b"GET / HTTP/1.1\r\nHost: vpc:5555\r\n\r\n").as_deref(), Some("vpc:5555"));
        assert_eq!(host_header(b"GET / HTTP/1.1\r\nhost: [::1]:5555\r\n\r\n").as_deref(), Some("[::1]:5555"));
        assert_eq!(host_header(b"GET / HTTP/1.1\r\nHost: <script>\r\n\r\n"), None);
        assert_eq!(host_header(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
