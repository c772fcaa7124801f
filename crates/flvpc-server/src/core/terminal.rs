//! Browser terminals as the core sees them: which machine a member may open one on and where it
//! is, and the one audit record of a terminal session. Like the SSH gateway's channel records,
//! a session records a connection's life, not a request to change state, so it is not an
//! [`super::Action`]; its action name is `machine.terminal`.

use super::{Actor, CoreError, CoreResult};
use crate::state::AppState;
use flvpc_model::{Observed, Principal};
use flvpc_store::NewAudit;
use std::time::Duration;

/// The audit action name of a browser terminal session.
pub const AUDIT_ACTION: &str = "machine.terminal";

/// Where a terminal on a machine can go, or why it cannot now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The machine runs at this address on its namespace's network.
    At(std::net::SocketAddr),
    /// The machine exists but cannot take a terminal now: the sentence says why and what to do.
    Unavailable(String),
}

/// The machine `name` of `ns` for a terminal of `caller`: members of the namespace (admins and
/// users) only; anyone else gets not-found. The superadmin too, unless a member: a terminal is a
/// root shell, which the machine's sshd gives only to members' keys (the gateway forwards the
/// superadmin to a machine, but sshd there still wants a member's key), and the terminal key must
/// not be a way around that. Read afresh for every terminal: a removed membership takes effect
/// for the next one.
pub async fn target(state: &AppState, caller: &Principal, ns: &str, name: &str) -> CoreResult<Target> {
    let namespace = super::namespace_or_not_found(ns)?;
    if caller.role_in(&namespace).is_none() {
        return Err(flvpc_model::Denied::NotFound.into());
    }
    let machines = super::machines::list(state, caller, ns).await?;
    let machine = machines
        .iter()
        .find(|m| m.name.as_str() == name)
        .ok_or_else(|| CoreError::NotFound(format!("machine {name:?}")))?;
    if machine.observed != Observed::Running {
        return Ok(Target::Unavailable(format!(
            "machine {name} is {}, not running: start it, then reload this page",
            machine.observed.as_str()
        )));
    }
    match crate::access::machine_socket(state, machine, 22) {
        Ok(addr) => Ok(Target::At(addr)),
        Err(why) => Ok(Target::Unavailable(format!("{why}; then reload this page"))),
    }
}

/// How a terminal session went, for its audit record.
#[derive(Debug, Clone)]
pub struct Session {
    /// `ok` for a session that ran, else why none did (`not_running`, `too_many_terminals`,
    /// `connect_failed`).
    pub outcome: &'static str,
    /// How long it was open.
    pub duration: Duration,
    /// Bytes typed in the browser, sent to the machine.
    pub up: u64,
    /// Bytes the machine sent to the browser.
    pub down: u64,
    /// Why it ended or was refused, when known.
    pub reason: Option<String>,
}

impl Session {
    /// The record's detail, in the gateway's words (`up=…B down=…B duration=…s ended: …`).
    pub fn detail(&self) -> String {
        let mut detail = format!("up={}B down={}B duration={:.1}s", self.up, self.down, self.duration.as_secs_f64());
        if let Some(reason) = &self.reason {
            let word = if self.outcome == "ok" { "ended" } else { "refused" };
            detail.push_str(&format!(" {word}: {reason}"));
        }
        detail
    }
}

/// Writes the one audit record of a terminal session (or of one refused after the handshake):
/// who, the machine (`ns/name`), the namespace, the source, the outcome and the detail.
pub async fn record(state: &AppState, actor: &Actor, ns: &str, name: &str, session: &Session) {
    let entry = NewAudit {
        actor: actor.principal.as_ref().map(|p| p.login().to_string()),
        action: AUDIT_ACTION.to_owned(),
        target: format!("{}/{}", super::action::shown(ns), super::action::shown(name)),
        namespace: Some(super::action::shown(ns)),
        source: actor.source.map(|a| a.to_string()),
        outcome: session.outcome.to_owned(),
        detail: Some(session.detail()),
    };
    if let Err(err) = state.store.record_audit(entry).await {
        tracing::error!("could not write the audit record of a terminal on {ns}/{name}: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_speaks_the_gateways_words() {
        let ended = Session {
            outcome: "ok",
            duration: Duration::from_millis(1500),
            up: 9,
            down: 120,
            reason: Some("the browser closed the terminal".into()),
        };
        assert_eq!(ended.detail(), "up=9B down=120B duration=1.5s ended: the browser closed the terminal");
        let refused = Session { outcome: "too_many_terminals", reason: Some("full".into()), ..ended };
        assert!(refused.detail().ends_with("refused: full"));
    }
}
