//! One gateway connection: authentication, the help session, forwarded channels.

use super::Shared;
use flvpc_model::NamespaceName;
use flvpc_store::NewAudit;
use russh::keys::ssh_key::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Who authenticated on this connection.
struct SignedIn {
    user_id: i64,
    login: String,
    fingerprint: String,
}

/// The handler of one connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    authenticated: Arc<AtomicBool>,
    user: Option<SignedIn>,
    /// The last login and key tried, for the audit record of a failed login.
    attempt: Option<(String, String)>,
}

impl Connection {
    pub(super) fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        authenticated: Arc<AtomicBool>,
    ) -> Self {
        Self { shared, peer, local, authenticated, user: None, attempt: None }
    }

    fn audit(&self, action: &str, target: String, namespace: Option<String>, outcome: &str, detail: Option<String>) {
        let entry = NewAudit {
            actor: self.user.as_ref().map(|u| u.login.clone()),
            action: action.to_owned(),
            target,
            namespace,
            source: Some(self.peer.ip().to_string()),
            outcome: outcome.to_owned(),
            detail,
        };
        let store = self.shared.state.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.record_audit(entry).await {
                tracing::error!("gateway: cannot write an audit record: {err}");
            }
        });
    }

    /// The user whose key this is, if `login` names them.
    async fn owner(&self, login: &str, fingerprint: &str) -> Option<i64> {
        match self.shared.state.store.user_with_key(login, fingerprint).await {
            Ok(found) => found,
            Err(err) => {
                tracing::error!("gateway: cannot check a key: {err}");
                None
            }
        }
    }

    /// Where a forwarded channel to `host:port` goes, or why it may not.
    async fn target(&self, host: &str, port: u32) -> Result<(NamespaceName, String, SocketAddr), &'static str> {
        let user = self.user.as_ref().ok_or("not signed in")?;
        let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or("no such port")?;
        let (machine, ns) = host.split_once('.').ok_or("not a machine: use <machine>.<namespace>")?;
        let ns = NamespaceName::parse(ns).map_err(|_| "not a machine: use <machine>.<namespace>")?;
        if flvpc_host::engine::check_machine_name(machine).is_err() {
            return Err("not a machine: use <machine>.<namespace>");
        }
        // Checked again for every channel: a removed key, membership or user takes effect at once.
        if self.owner(&user.login, &user.fingerprint).await != Some(user.user_id) {
            return Err("your key or account was removed");
        }
        let principal =
            self.shared.state.store.principal(user.user_id).await.ok().flatten().ok_or("your account was removed")?;
        // The API's policy: members of the namespace, and the superadmin (see README, SSH gateway).
        let grant =
            principal.namespace_member(&ns).map_err(|_| "no such machine, or you are not a member of its namespace")?;
        let record = self
            .shared
            .state
            .store
            .namespace_machine(&grant, machine)
            .await
            .ok()
            .flatten()
            .ok_or("no such machine, or you are not a member of its namespace")?;
        if record.observed != "running" {
            return Err("the machine is not running");
        }
        let ip = record.ip.as_deref().and_then(|ip| ip.parse().ok()).ok_or("the machine has no address yet")?;
        Ok((ns, machine.to_owned(), SocketAddr::new(ip, port)))
    }

    async fn help_text(&self) -> String {
        let Some(user) = &self.user else { return String::new() };
        let host = self.local.map(|a| a.ip().to_string()).unwrap_or_else(|| "SERVER".into());
        let port = self.local.map(|a| a.port()).unwrap_or(2222);
        let mut text = format!(
            "Hello {login}. This is the flvpc SSH gateway: it opens no shell, it takes you to your machines.\r\n\r\n",
            login = user.login
        );
        let principal = self.shared.state.store.principal(user.user_id).await.ok().flatten();
        let mut any = false;
        if let Some(principal) = principal {
            for (ns, role) in principal.memberships() {
                let Ok(grant) = principal.namespace_member(ns) else { continue };
                let machines = self.shared.state.store.machines(&grant).await.unwrap_or_default();
                text.push_str(&format!("Namespace {ns} ({role}):\r\n"));
                let running: Vec<_> = machines.iter().filter(|m| m.observed == "running").collect();
                if running.is_empty() {
                    text.push_str("  no running machines\r\n");
                }
                for m in running {
                    any = true;
                    text.push_str(&format!("  ssh -J {}@{host}:{port} root@{}.{ns}\r\n", user.login, m.name));
                }
            }
            if principal.memberships().is_empty() {
                text.push_str("You are not a member of any namespace yet.\r\n");
            }
        }
        if any {
            text.push_str(&format!(
                "\r\nOr add this to ~/.ssh/config and run `ssh <machine>.<namespace>`:\r\n\r\n\
                 Host flvpc-gateway\r\n    HostName {host}\r\n    Port {port}\r\n    User {login}\r\n\
                 Host *.{{namespace}}\r\n    User root\r\n    ProxyJump flvpc-gateway\r\n\r\n\
                 (`flvpc ssh-config` prints it with your namespaces filled in.)\r\n",
                login = user.login
            ));
        }
        text
    }

    async fn send_help(&self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        let text = self.help_text().await;
        session.data(channel, text.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        match &self.user {
            Some(user) => self.shared.counters.leave_user(user.user_id),
            None => {
                if let Some((login, fingerprint)) = self.attempt.take() {
                    self.audit("gateway.login", login, None, "wrong_credentials", Some(fingerprint));
                }
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        let login: String = user.chars().take(64).collect();
        let known = self.owner(user, &fingerprint).await.is_some();
        self.attempt = Some((login, fingerprint));
        // Unknown users and unknown keys get the same answer.
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let login: String = user.chars().take(64).collect();
        let Some(user_id) = self.owner(user, &fingerprint).await else {
            self.attempt = Some((login, fingerprint));
            return Ok(Auth::reject());
        };
        if !self.shared.counters.try_enter_user(user_id, self.shared.config.max_connections_per_user) {
            self.attempt = None;
            self.audit("gateway.login", login, None, "too_many_connections", Some(fingerprint));
            return Ok(Auth::reject());
        }
        self.user = Some(SignedIn { user_id, login: login.clone(), fingerprint: fingerprint.clone() });
        self.attempt = None;
        self.authenticated.store(true, Ordering::Release);
        self.audit("gateway.login", login, None, "ok", Some(fingerprint));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.send_help(channel, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.send_help(channel, session).await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let shown = format!("{}:{port_to_connect}", host_to_connect.chars().take(128).collect::<String>());
        let (ns, machine, addr) = match self.target(host_to_connect, port_to_connect).await {
            Ok(target) => target,
            Err(reason) => {
                self.audit("gateway.forward", shown, None, "refused", Some(reason.to_owned()));
                reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
                return Ok(());
            }
        };
        let tcp = match tokio::time::timeout(self.shared.config.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                self.audit("gateway.forward", shown, Some(ns.to_string()), "connect_failed", Some(err.to_string()));
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
            Err(_) => {
                self.audit("gateway.forward", shown, Some(ns.to_string()), "connect_failed", Some("timed out".into()));
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        let _ = tcp.set_nodelay(true);
        reply.accept().await;
        let started = Instant::now();
        let store = self.shared.state.store.clone();
        let actor = self.user.as_ref().map(|u| u.login.clone());
        let source = self.peer.ip().to_string();
        let target = format!("{machine}.{ns}:{port_to_connect}");
        tokio::spawn(async move {
            let (up, down, ended) = relay(channel, tcp).await;
            let mut detail = format!("up={up}B down={down}B duration={:.1}s", started.elapsed().as_secs_f64());
            if let Some(err) = ended {
                detail.push_str(&format!(" ended: {err}"));
            }
            let entry = NewAudit {
                actor,
                action: "gateway.forward".into(),
                target,
                namespace: Some(ns.to_string()),
                source: Some(source),
                outcome: "ok".into(),
                detail: Some(detail),
            };
            if let Err(err) = store.record_audit(entry).await {
                tracing::error!("gateway: cannot write an audit record: {err}");
            }
        });
        Ok(())
    }
}

/// Copies both ways between the SSH channel and the machine until both sides are done.
/// Returns the bytes sent to the machine, the bytes sent back, and the error that ended
/// it early, if any (a client that just disconnects is the usual end, not a failure).
async fn relay(channel: Channel<Msg>, tcp: tokio::net::TcpStream) -> (u64, u64, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_client, mut to_client) = tokio::io::split(channel.into_stream());
    let (mut from_machine, mut to_machine) = tcp.into_split();
    let up = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = to_machine.write_all(&buf[..n]).await {
                        return (total, Some(e.to_string()));
                    }
                    total += n as u64;
                }
                Err(e) => return (total, Some(e.to_string())),
            }
        }
        let _ = to_machine.shutdown().await;
        (total, None)
    };
    let down = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match from_machine.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = to_client.write_all(&buf[..n]).await {
                        return (total, Some(e.to_string()));
                    }
                    total += n as u64;
                }
                Err(e) => return (total, Some(e.to_string())),
            }
        }
        let _ = to_client.shutdown().await;
        (total, None)
    };
    let ((up, e1), (down, e2)) = tokio::join!(up, down);
    (up, down, e1.or(e2))
}
