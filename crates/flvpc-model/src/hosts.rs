//! How flvpc reaches the Docker engine of a host: an [`EngineEndpoint`] the operator gives.
//!
//! Only two forms are accepted, both written the way Docker writes `DOCKER_HOST`:
//! `unix:///absolute/path` (an engine on this machine) and `tcp://IP:PORT` (an engine on another
//! machine, always with TLS client certificates unless the address is loopback). A host *name*
//! is refused on purpose: the operator gives an address, so what flvpc connects to never depends
//! on a resolver.

use crate::Invalid;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The field name refusals carry.
const FIELD: &str = "endpoint";

/// What a refusal of plain TCP says (the CLI's flags are named so the operator knows what to add).
pub const PLAIN_TCP_REFUSED: &str =
    "never plain TCP beyond loopback: give --tls-ca/--tls-cert/--tls-key (the engine's CA, a client certificate \
     and its key) or reach the engine over a unix socket";

/// Longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where a Docker engine listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EngineEndpoint {
    /// A unix socket on this machine, by its absolute path (`unix:///var/run/docker.sock`).
    Unix(String),
    /// A TCP address (`tcp://192.0.2.7:2376`, `tcp://[2001:db8::7]:2376`).
    Tcp(SocketAddr),
}

impl EngineEndpoint {
    /// The local engine's usual socket.
    pub fn local() -> Self {
        Self::Unix("/var/run/docker.sock".to_owned())
    }

    /// Parses `unix:///absolute/path` or `tcp://IP:PORT`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if let Some(path) = value.strip_prefix("unix://") {
            check_socket_path(path)?;
            return Ok(Self::Unix(path.to_owned()));
        }
        if let Some(addr) = value.strip_prefix("tcp://") {
            let addr = addr.strip_suffix('/').unwrap_or(addr);
            let socket: SocketAddr = addr.parse().map_err(|_| {
                Invalid::new(
                    FIELD,
                    format!(
                        "{addr:?} is not an IP address and port (tcp://192.0.2.7:2376 or tcp://[2001:db8::7]:2376; \
                         host names are not accepted: give the engine's address)"
                    ),
                )
            })?;
            let ip = socket.ip();
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(Invalid::new(FIELD, format!("{ip} is not the address of one host")));
            }
            if socket.port() == 0 {
                return Err(Invalid::new(
                    FIELD,
                    "port 0 is not a port an engine listens on (Docker's TLS port is 2376)",
                ));
            }
            return Ok(Self::Tcp(socket));
        }
        Err(Invalid::new(FIELD, format!("{value:?} is neither unix:///absolute/path/to/docker.sock nor tcp://IP:PORT")))
    }

    /// Whether this endpoint must be reached with TLS client certificates: TCP beyond loopback.
    /// (A unix socket is guarded by its file mode; loopback never leaves the machine.)
    pub fn needs_tls(&self) -> bool {
        match self {
            Self::Unix(_) => false,
            Self::Tcp(addr) => !addr.ip().is_loopback(),
        }
    }

    /// Checks the transport: `with_tls` says whether TLS files were given. TCP beyond loopback
    /// without them is refused; TLS files for a unix socket are refused too (they would be ignored).
    pub fn check_transport(&self, with_tls: bool) -> Result<(), Invalid> {
        match self {
            Self::Unix(_) if with_tls => Err(Invalid::new(
                FIELD,
                "TLS files were given for a unix socket, which does not use them: drop --tls-ca/--tls-cert/--tls-key",
            )),
            _ if self.needs_tls() && !with_tls => Err(Invalid::new(FIELD, format!("{self}: {PLAIN_TCP_REFUSED}"))),
            _ => Ok(()),
        }
    }

    /// Whether the engine runs on this machine's kernel (a unix socket): only then can flvpc's
    /// nftables wall guard its bridges.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Unix(_))
    }
}

/// An absolute path without `..`, without control characters, short enough for a socket.
fn check_socket_path(path: &str) -> Result<(), Invalid> {
    if !path.starts_with('/') {
        return Err(Invalid::new(
            FIELD,
            format!("unix socket path {path:?} must be absolute (unix:///var/run/docker.sock)"),
        ));
    }
    if path.len() > MAX_SOCKET_PATH {
        return Err(Invalid::new(
            FIELD,
            format!("unix socket path is longer than {MAX_SOCKET_PATH} bytes, the kernel's limit"),
        ));
    }
    if let Some(bad) = path.chars().find(|c| c.is_control()) {
        return Err(Invalid::new(FIELD, format!("unix socket path may not contain {bad:?}")));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(Invalid::new(FIELD, format!("unix socket path {path:?} may not contain `..`")));
    }
    Ok(())
}

impl fmt::Display for EngineEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{path}"),
            // SocketAddr's Display brackets IPv6 addresses, as the URL form needs.
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl FromStr for EngineEndpoint {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> EngineEndpoint {
        EngineEndpoint::parse(s).expect(s)
    }

    fn refusal(s: &str) -> String {
        EngineEndpoint::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn both_forms_round_trip_through_display() {
        for text in
            ["unix:///var/run/docker.sock", "tcp://192.0.2.7:2376", "tcp://[2001:db8::7]:2376", "tcp://127.0.0.1:2375"]
        {
            assert_eq!(parse(text).to_string(), text);
            assert_eq!(text.parse::<EngineEndpoint>().expect("parses"), parse(text));
        }
        assert_eq!(EngineEndpoint::local(), parse("unix:///var/run/docker.sock"));
        assert_eq!(parse("tcp://192.0.2.7:2376/").to_string(), "tcp://192.0.2.7:2376");
    }

    #[test]
    fn bad_socket_paths_are_refused_with_the_reason() {
        assert!(refusal("unix://var/run/docker.sock").contains("must be absolute"));
        assert!(refusal("unix:///var/run/../docker.sock").contains("`..`"));
        assert!(refusal("unix:///var/run/dock\ner.sock").contains("may not contain"));
        assert!(refusal(&format!("unix:///{}", "a".repeat(120))).contains("kernel's limit"));
        assert!(refusal("unix://").contains("absolute"));
    }

    #[test]
    fn tcp_takes_addresses_not_names() {
        assert!(refusal("tcp://docker.example:2376").contains("host names are not accepted"));
        assert!(refusal("tcp://192.0.2.7").contains("not an IP address and port"));
        assert!(refusal("tcp://0.0.0.0:2376").contains("not the address of one host"));
        assert!(refusal("tcp://[ff02::1]:2376").contains("not the address of one host"));
        assert!(refusal("tcp://192.0.2.7:0").contains("port 0"));
        assert!(refusal("http://192.0.2.7:2376").contains("neither"));
        assert!(refusal("ssh://root@host").contains("neither"));
        assert_eq!(EngineEndpoint::parse("tcp://x").expect_err("refused").field, "endpoint");
    }

    #[test]
    fn plain_tcp_is_for_loopback_only() {
        let remote = parse("tcp://192.0.2.7:2376");
        assert!(remote.needs_tls());
        let refused = remote.check_transport(false).expect_err("plain TCP beyond loopback");
        assert!(refused.to_string().contains("never plain TCP beyond loopback: give --tls-ca/--tls-cert/--tls-key"));
        assert!(remote.check_transport(true).is_ok());
        for loopback in ["tcp://127.0.0.1:2375", "tcp://[::1]:2375"] {
            let endpoint = parse(loopback);
            assert!(!endpoint.needs_tls(), "{loopback}");
            assert!(endpoint.check_transport(false).is_ok() && endpoint.check_transport(true).is_ok());
        }
        let unix = EngineEndpoint::local();
        assert!(!unix.needs_tls() && unix.is_local() && !remote.is_local());
        assert!(unix.check_transport(false).is_ok());
        assert!(unix.check_transport(true).expect_err("tls on a socket").to_string().contains("does not use them"));
    }
}
