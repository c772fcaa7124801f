//! The SSH client side of a browser terminal: a russh session to a machine's sshd as root, with a
//! pty and a login shell.

use super::TerminalKey;
use russh::client::{self, Handle, Msg};
use russh::keys::PrivateKeyWithHashAlg;
use russh::Channel;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Accepts the machine's host key without a known_hosts check: the address is the machine's own
/// on its namespace's isolated network (from the machine's record, never from the browser), which
/// nothing but that machine can answer on; a machine makes new host keys when it is created, so
/// there is nothing stable to pin.
struct MachineSshd;

impl client::Handler for MachineSshd {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An open shell on a machine: its channel and the SSH connection under it.
pub struct Shell {
    /// The session channel: terminal bytes both ways, window changes.
    pub channel: Channel<Msg>,
    /// Hangs the connection up when the terminal ends.
    pub connection: Connection,
}

/// The SSH connection of a [`Shell`].
pub struct Connection(Handle<MachineSshd>);

impl Connection {
    /// Ends the SSH connection (the machine's sshd ends the login), whatever the channel's state.
    pub async fn hang_up(self) {
        let _ = self.0.disconnect(russh::Disconnect::ByApplication, "the browser terminal closed", "en").await;
    }
}

/// Signs in to the sshd at `addr` as root with the terminal key, asks for an `xterm-256color`
/// pty of `cols` × `rows` and a shell. Errors are sentences for the person at the terminal.
pub async fn open_shell(
    key: &TerminalKey,
    addr: SocketAddr,
    (cols, rows): (u32, u32),
    timeout: Duration,
) -> Result<Shell, String> {
    let opened = tokio::time::timeout(timeout, async {
        let config = client::Config {
            // The connection must not outlive a quiet browser by much: the terminal's own idle
            // timeout closes it, keepalives notice a machine that went away.
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        };
        let mut connection = client::connect(Arc::new(config), addr, MachineSshd)
            .await
            .map_err(|e| format!("cannot reach the machine's SSH server at {addr}: {e}"))?;
        let auth = connection
            .authenticate_publickey("root", PrivateKeyWithHashAlg::new(key.private.clone(), None))
            .await
            .map_err(|e| format!("signing in to the machine failed: {e}"))?;
        if !auth.success() {
            return Err("the machine does not accept the server's terminal key yet (its keys are written \
                        within seconds of a start): try again in a moment"
                .to_owned());
        }
        let channel =
            connection.channel_open_session().await.map_err(|e| format!("the machine refused a session: {e}"))?;
        channel
            .request_pty(false, "xterm-256color", cols, rows, 0, 0, &[])
            .await
            .map_err(|e| format!("the machine refused a terminal: {e}"))?;
        channel.request_shell(false).await.map_err(|e| format!("the machine refused a shell: {e}"))?;
        Ok(Shell { channel, connection: Connection(connection) })
    })
    .await;
    opened.unwrap_or_else(|_| Err(format!("the machine's SSH server did not answer within {}s", timeout.as_secs())))
}
