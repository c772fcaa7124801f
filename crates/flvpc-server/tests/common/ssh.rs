//! SSH clients for gateway tests: the real OpenSSH client for legitimate users, a russh
//! client for floods (many channels over one connection), and the process's own counters
//! (the server runs in this process, so its descriptors and memory are ours).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An OpenSSH client config that uses only `key`, trusts the throwaway host keys of the
/// test and, with `bind`, connects from that local address.
pub fn client_config(dir: &Path, name: &str, key: &Path, bind: Option<IpAddr>) -> PathBuf {
    let path = dir.join(format!("{name}.config"));
    let mut text = format!(
        "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
         LogLevel ERROR\n  BatchMode yes\n  ConnectTimeout 10\n",
        key.display()
    );
    if let Some(bind) = bind {
        text.push_str(&format!("  BindAddress {bind}\n"));
    }
    std::fs::write(&path, text).expect("write ssh config");
    path
}

/// What a legitimate user saw: how long the command took and its output or error.
#[derive(Debug)]
pub struct Seen {
    pub took: Duration,
    pub result: Result<String, String>,
}

/// `ssh -F config -J login@127.0.0.1:gw root@target command`, timed.
pub fn jump(config: &Path, login: &str, gw: u16, target: &str, command: &str) -> Seen {
    let started = Instant::now();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-J", &format!("{login}@127.0.0.1:{gw}"), &format!("root@{target}"), command])
        .output();
    let result = match out {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    Seen { took: started.elapsed(), result }
}

/// `ssh -F config -p gw login@127.0.0.1`: a plain login to the gateway, which answers with help.
pub fn login(config: &Path, login: &str, gw: u16) -> Seen {
    let started = Instant::now();
    let out =
        Command::new("ssh").arg("-F").arg(config).args(["-p", &gw.to_string(), &format!("{login}@127.0.0.1")]).output();
    let result = match out {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    Seen { took: started.elapsed(), result }
}

/// Open file descriptors of this process (the in-process server's among them).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count()
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Descriptors and memory at one moment, for the test's report.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub fds: usize,
    pub rss_kib: u64,
}

pub fn usage() -> Usage {
    Usage { fds: fd_count(), rss_kib: rss_kib() }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} fds, RSS {:.1} MiB", self.fds, self.rss_kib as f64 / 1024.0)
    }
}

/// Polls until this process holds at most `max` descriptors; returns the count then.
pub async fn fds_settle_at_most(max: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = fd_count();
        if now <= max {
            return now;
        }
        assert!(Instant::now() < deadline, "open fds stayed at {now}, above {max}, for {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A russh client that trusts the test's throwaway host key.
pub struct Trusting;

impl russh::client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A signed-in russh client connection and a second handle on its socket, to cut it off
/// abruptly (no SSH disconnect, as when a laptop drops off the network).
pub struct FloodClient {
    pub handle: russh::client::Handle<Trusting>,
    socket: std::net::TcpStream,
}

impl FloodClient {
    /// Connects to the gateway at `gw` and signs in as `login` with the private key at `key`.
    pub async fn connect(gw: SocketAddr, login: &str, key: &Path) -> FloodClient {
        let socket = std::net::TcpStream::connect(gw).expect("connect to the gateway");
        let kept = socket.try_clone().expect("clone the socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let stream = tokio::net::TcpStream::from_std(socket).expect("tokio socket");
        // Keepalives keep the connection busy while a channel idles, as an interactive client does.
        let config = russh::client::Config { keepalive_interval: Some(Duration::from_secs(1)), ..Default::default() };
        let mut handle =
            russh::client::connect_stream(Arc::new(config), stream, Trusting).await.expect("SSH handshake");
        let key = russh::keys::load_secret_key(key, None).expect("load the private key");
        let auth = handle
            .authenticate_publickey(login, russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("authenticate");
        assert!(auth.success(), "{login} signs in");
        FloodClient { handle, socket: kept }
    }

    /// Opens a `direct-tcpip` channel to `host:port`, as `ssh -J` and `ssh -L` do.
    pub async fn forward(&self, host: &str, port: u32) -> Result<russh::Channel<russh::client::Msg>, russh::Error> {
        self.handle.channel_open_direct_tcpip(host, port, "127.0.0.1", 40000).await
    }

    /// Cuts the connection off without a goodbye.
    pub fn vanish(self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads a channel's messages until `want` says stop, the channel closes, or `within`
/// passes. Returns what arrived and whether the channel was closed.
pub async fn channel_until(
    channel: &mut russh::Channel<russh::client::Msg>,
    within: Duration,
    mut want: impl FnMut(&russh::ChannelMsg) -> bool,
) -> (Vec<russh::ChannelMsg>, bool) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, channel.wait()).await {
            Ok(Some(msg)) => {
                let closed = matches!(msg, russh::ChannelMsg::Close);
                let stop = want(&msg);
                seen.push(msg);
                if closed || stop {
                    return (seen, closed);
                }
            }
            Ok(None) => return (seen, true),
            Err(_) => return (seen, false),
        }
    }
}
