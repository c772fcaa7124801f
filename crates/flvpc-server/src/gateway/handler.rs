//! One gateway connection: authentication, the help session, forwarded channels.

use super::caps::{ForwardSlot, UnauthenticatedSlot, UserSlot};
use super::relay::relay;
use super::Shared;
use flvpc_model::{sshkey, NamespaceName};
use flvpc_store::NewAudit;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Who authenticated on this connection.
struct SignedIn {
    user_id: i64,
    login: String,
    fingerprint: String,
    /// This connection's place among the user's connections.
    _slot: UserSlot,
}

/// A channel open on this connection.
enum OpenChannel {
    /// A session (the help text); closed by the gateway once the help is sent.
    Session,
    /// A forwarded channel. Dropping the sender tells its relay that the client closed the
    /// channel or went away; the relay ending drops the receiver, which marks it closed here.
    Forward(oneshot::Sender<()>),
}

/// Refusals over a channel cap audited one by one per connection; the rest are counted
/// and audited together when the connection ends, so a client cannot flood the audit log.
const AUDITED_REFUSALS: u64 = 16;

/// The handler of one connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    authenticated: Arc<AtomicBool>,
    /// A place among the unauthenticated connections, given back when the client signs in.
    unauthenticated: Option<UnauthenticatedSlot>,
    user: Option<SignedIn>,
    /// The last login and key tried, for the audit record of a failed login.
    attempt: Option<(String, String)>,
    /// Channels open now. Dropped with the connection, which ends every relay.
    channels: HashMap<ChannelId, OpenChannel>,
    /// Channels refused over a cap on this connection.
    refusals: u64,
}

impl Connection {
    pub(super) fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        authenticated: Arc<AtomicBool>,
        unauthenticated: UnauthenticatedSlot,
    ) -> Self {
        Self {
            shared,
            peer,
            local,
            authenticated,
            unauthenticated: Some(unauthenticated),
            user: None,
            attempt: None,
            channels: HashMap::new(),
            refusals: 0,
        }
    }

    /// Channels open on this connection. Forwarded channels whose relay has ended are
    /// forgotten here first (their close reached the client without passing the handler).
    fn open_channels(&mut self) -> usize {
        self.channels.retain(|_, open| match open {
            OpenChannel::Session => true,
            OpenChannel::Forward(tx) => !tx.is_closed(),
        });
        self.channels.len()
    }

    /// Whether one more channel fits in this connection's cap; audits the refusal when not.
    fn channel_fits(&mut self, action: &str, target: &str) -> bool {
        let max = self.shared.config.max_channels_per_connection;
        if self.open_channels() < max {
            return true;
        }
        let reason = format!(
            "{max} channels are open on this connection (--ssh-max-channels-per-connection): \
             close some, or open another connection"
        );
        self.refuse_over_cap(action, target, reason);
        false
    }

    /// A place among the signed-in user's forwarded channels; audits the refusal when none is left.
    fn forward_slot(&mut self, target: &str) -> Option<ForwardSlot> {
        let user = self.user.as_ref()?.user_id;
        let max = self.shared.config.max_forwards_per_user;
        let slot = self.shared.counters.try_enter_forward(user, max);
        if slot.is_none() {
            let reason = format!(
                "{max} forwarded channels of yours are open over all your connections \
                 (--ssh-max-forwards-per-user): close some"
            );
            self.refuse_over_cap("gateway.forward", target, reason);
        }
        slot
    }

    /// Audits a channel refused over a cap, the first few one by one.
    fn refuse_over_cap(&mut self, action: &str, target: &str, reason: String) {
        self.refusals += 1;
        if self.refusals <= AUDITED_REFUSALS {
            self.audit(action, target.to_owned(), None, "too_many_channels", Some(reason));
        }
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
    async fn target(&self, host: &str, port: u32) -> Result<(NamespaceName, String, SocketAddr), String> {
        let user = self.user.as_ref().ok_or("not signed in")?;
        let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or("no such port")?;
        let (machine, ns) = host.split_once('.').ok_or("not a machine: use <machine>.<namespace>")?;
        let ns = NamespaceName::parse(ns).map_err(|_| "not a machine: use <machine>.<namespace>")?;
        let name = flvpc_model::MachineName::parse(machine).map_err(|_| "not a machine: use <machine>.<namespace>")?;
        // Checked again for every channel: a removed key, membership or user takes effect at once.
        if self.owner(&user.login, &user.fingerprint).await != Some(user.user_id) {
            return Err("your key or account was removed".into());
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
            .namespace_machine(&grant, &name)
            .await
            .ok()
            .flatten()
            .ok_or("no such machine, or you are not a member of its namespace")?;
        if record.observed != flvpc_model::Observed::Running {
            return Err("the machine is not running".into());
        }
        let addr = crate::access::machine_socket(&self.shared.state, &record, port)?;
        Ok((ns, machine.to_owned(), addr))
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
        let mut namespaces = Vec::new();
        if let Some(principal) = principal {
            for (ns, role) in principal.memberships() {
                namespaces.push(ns.to_string());
                let Ok(grant) = principal.namespace_member(ns) else { continue };
                let machines = self.shared.state.store.machines(&grant).await.unwrap_or_default();
                text.push_str(&format!("Namespace {ns} ({role}):\r\n"));
                let running: Vec<_> =
                    machines.iter().filter(|m| m.observed == flvpc_model::Observed::Running).collect();
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
            // The same blocks as `flvpc ssh-config` and the panel print, one `Host *.<ns>` per
            // namespace, with the terminal's line ends.
            let config = crate::access::ssh_config_text(
                &user.login,
                &host,
                port,
                self.shared.state.config.ssh_host_key.as_ref(),
                &namespaces,
            );
            text.push_str("\r\nOr add this to ~/.ssh/config and run `ssh <machine>.<namespace>`:\r\n\r\n");
            text.push_str(&config.replace('\n', "\r\n"));
        }
        text
    }

    async fn send_help(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        let text = self.help_text().await;
        session.data(channel, text.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        // The client's answering close does not reach the handler once the gateway closed it.
        self.channels.remove(&channel);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.user.is_none() {
            if let Some((login, fingerprint)) = self.attempt.take() {
                self.audit("gateway.login", login, None, "wrong_credentials", Some(fingerprint));
            }
        }
        if self.refusals > AUDITED_REFUSALS {
            let more = self.refusals - AUDITED_REFUSALS;
            let detail = format!("{more} more channels were refused over a cap on this connection");
            self.audit("gateway.forward", "(many)".into(), None, "too_many_channels", Some(detail));
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // The same function the model used when the key was stored, so the two always agree.
        let fingerprint = sshkey::fingerprint(offer.public_key);
        let login: String = user.chars().take(64).collect();
        let known = self.owner(user, &fingerprint).await.is_some();
        self.attempt = Some((login, fingerprint));
        // Unknown users and unknown keys get the same answer.
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = sshkey::fingerprint(key.public_key);
        let login: String = user.chars().take(64).collect();
        let Some(user_id) = self.owner(user, &fingerprint).await else {
            self.attempt = Some((login, fingerprint));
            return Ok(Auth::reject());
        };
        let Some(slot) = self.shared.counters.try_enter_user(user_id, self.shared.config.max_connections_per_user)
        else {
            self.attempt = None;
            self.audit("gateway.login", login, None, "too_many_connections", Some(fingerprint));
            return Ok(Auth::reject());
        };
        self.user = Some(SignedIn { user_id, login: login.clone(), fingerprint: fingerprint.clone(), _slot: slot });
        self.attempt = None;
        self.authenticated.store(true, Ordering::Release);
        // Signed in: the place among the unauthenticated connections is free for the next one.
        self.unauthenticated = None;
        self.audit("gateway.login", login, None, "ok", Some(fingerprint));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.channel_fits("gateway.session", "session") {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(channel.id(), OpenChannel::Session);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        // For a forwarded channel, dropping the sender ends its relay.
        self.channels.remove(&channel);
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
        // The caps come first: a refused channel costs no database work and no socket.
        if !self.channel_fits("gateway.forward", &shown) {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let Some(forward_slot) = self.forward_slot(&shown) else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
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
        let (client_gone_tx, client_gone) = oneshot::channel();
        self.channels.insert(channel.id(), OpenChannel::Forward(client_gone_tx));
        reply.accept().await;
        let started = Instant::now();
        let store = self.shared.state.store.clone();
        let actor = self.user.as_ref().map(|u| u.login.clone());
        let source = self.peer.ip().to_string();
        let target = format!("{machine}.{ns}:{port_to_connect}");
        let idle = self.shared.config.idle_timeout;
        tokio::spawn(async move {
            let end = relay(channel, tcp, idle, client_gone).await;
            // The user's place is free as soon as the sockets are, not after the audit write.
            drop(forward_slot);
            let mut detail =
                format!("up={}B down={}B duration={:.1}s", end.up, end.down, started.elapsed().as_secs_f64());
            if let Some(reason) = end.reason {
                detail.push_str(&format!(" ended: {reason}"));
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
