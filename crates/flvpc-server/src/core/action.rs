//! Every state change flvpc makes on a request, as one closed list.
//!
//! A door (the REST API, the panel) reads its input into an [`Action`] and hands it to
//! [`super::dispatch`], which validates, authorizes, acts and audits. An action carries the
//! values as the person sent them: they are parsed into the model's types at the start of
//! dispatch, so that a refused value is audited too (clipped, as it was sent).
//!
//! Reads (lists, gets) are not actions: they change and audit nothing, and stay typed functions
//! of the core. The SSH gateway's channel and port-forward records (`gateway.*`) are not here
//! either, nor the browser terminal's sessions (`machine.terminal`, `terminal.rs`): they record a
//! connection's life, not a request to change state.

use super::error::CoreError;
use flvpc_model::quota::Quota;
use flvpc_model::spec::ClusterSpec;
use flvpc_store::TokenKind;

/// A state change asked for by a person. Each variant's doc says who may do it (the policy
/// grant asked for), what it changes, and what the audit record says (its action name, target,
/// namespace and detail). Every record also has the actor, the source address and the outcome
/// (`ok` or the refusal's code).
pub enum Action {
    /// Sign in with a login and password (anyone; throttled per login and per source).
    /// Opens a session of `kind`. Audits `auth.login`, target the login as sent, detail `api` or
    /// `panel`; the actor is the login only when the sign-in succeeded.
    SignIn {
        /// The login as sent.
        login: String,
        /// The password as sent.
        password: String,
        /// A panel session or an API login token.
        kind: TokenKind,
    },
    /// End the session or token the actor used (the actor themself). A named API token used
    /// for this is revoked. Audits `auth.logout`, target the actor's login.
    SignOut,
    /// Create a user (superadmin grant). Audits `user.create`, target the login.
    CreateUser {
        /// The new login.
        login: String,
        /// The new password.
        password: String,
    },
    /// Delete a user with their memberships, keys and tokens (superadmin grant); their keys
    /// leave the machines. Audits `user.delete`, target the login.
    DeleteUser {
        /// The login.
        login: String,
    },
    /// Change a password: one's own with the current one, or reset anyone's without it
    /// (self-or-superadmin grant). Every session and token of the user ends but the one used
    /// for one's own change. Audits `user.password`, target the login.
    SetPassword {
        /// Whose password.
        login: String,
        /// The current password, for one's own change.
        current: Option<String>,
        /// The new password.
        new: String,
    },
    /// Create a namespace, with a quota when one is given (superadmin grant). Audits
    /// `namespace.create`, target and namespace the name.
    CreateNamespace {
        /// The new namespace's name.
        name: String,
        /// Its quota, if not unlimited.
        quota: Option<Quota>,
    },
    /// Set a namespace's quota (superadmin grant); machines already there stay. Audits
    /// `namespace.quota`, target and namespace the name, detail the quota.
    SetQuota {
        /// The namespace.
        ns: String,
        /// The new quota.
        quota: Quota,
    },
    /// Delete a namespace after removing its machines, network and ports (superadmin grant).
    /// Audits `namespace.delete`, target and namespace the name.
    DeleteNamespace {
        /// The namespace.
        ns: String,
    },
    /// Add a member to a namespace or change their role (superadmin grant); the namespace's
    /// machines get the new key set. Audits `member.set`, target the login, namespace, detail
    /// `role=…`.
    SetMember {
        /// The namespace.
        ns: String,
        /// The member's login.
        login: String,
        /// `admin` or `user`.
        role: String,
    },
    /// Remove a member from a namespace (superadmin grant); their keys leave its machines.
    /// Audits `member.remove`, target the login, namespace.
    RemoveMember {
        /// The namespace.
        ns: String,
        /// The member's login.
        login: String,
    },
    /// Add an SSH key of the actor's own (any signed-in person); the machines of their
    /// namespaces accept it. Audits `key.add`, target the key's name, detail the fingerprint.
    AddKey {
        /// The key's name.
        name: String,
        /// The OpenSSH public key.
        public_key: String,
    },
    /// Remove an SSH key of the actor's own (any signed-in person). Audits `key.delete`,
    /// target the key's name.
    DeleteKey {
        /// The key's name.
        name: String,
    },
    /// Make a named API token of the actor's own (any signed-in person); the secret is in the
    /// outcome, once. Audits `token.create`, target the token's name.
    CreateToken {
        /// The token's name.
        name: String,
    },
    /// Revoke a named API token of the actor's own (any signed-in person). Audits
    /// `token.delete`, target the token's name.
    DeleteToken {
        /// The token's name.
        name: String,
    },
    /// Save a namespace's cluster spec (namespace-admin grant) after validating it against the
    /// server's rules, images, backends and quota; machines change only on `CreateCluster`.
    /// Audits `cluster.spec`, target and namespace the namespace.
    SaveSpec {
        /// The namespace.
        ns: String,
        /// The spec as the door read it, or why it could not be read (still audited).
        spec: Result<ClusterSpec, CoreError>,
    },
    /// Create the saved spec's missing machines, re-create changed ones and remove ones no
    /// longer in it (namespace-admin grant), admitted against quota and host caps. Audits
    /// `cluster.create`, target and namespace the namespace, detail the operation id.
    CreateCluster {
        /// The namespace.
        ns: String,
    },
    /// Start every machine of a namespace (namespace-member grant), admitted against the
    /// host's caps. Audits `cluster.start`, target and namespace the namespace, detail the
    /// operation id.
    StartCluster {
        /// The namespace.
        ns: String,
    },
    /// Stop every machine of a namespace (namespace-member grant). Audits `cluster.stop`,
    /// target and namespace the namespace, detail the operation id.
    StopCluster {
        /// The namespace.
        ns: String,
    },
    /// Remove every machine of a namespace, its network and ports; the spec stays
    /// (namespace-admin grant). Audits `cluster.delete`, target and namespace the namespace,
    /// detail the operation id.
    DeleteCluster {
        /// The namespace.
        ns: String,
    },
    /// Start one machine (namespace-member grant), admitted against the host's caps. Audits
    /// `machine.start`, target `ns/name`, namespace, detail the operation id.
    StartMachine {
        /// The namespace.
        ns: String,
        /// The machine.
        name: String,
    },
    /// Stop one machine (namespace-member grant). Audits `machine.stop`, target `ns/name`,
    /// namespace, detail the operation id.
    StopMachine {
        /// The namespace.
        ns: String,
        /// The machine.
        name: String,
    },
    /// Restart one machine, starting it when stopped (namespace-member grant), admitted
    /// against the host's caps. Audits `machine.restart`, target `ns/name`, namespace, detail
    /// the operation id.
    RestartMachine {
        /// The namespace.
        ns: String,
        /// The machine.
        name: String,
    },
    /// Add a host with its Docker engine (superadmin grant): the endpoint and TLS files are
    /// checked and the engine must answer before anything is recorded; the hosts then form a
    /// swarm. Audits `host.add`, target the host's name, detail the endpoint.
    AddHost {
        /// The host's name.
        name: String,
        /// `unix:///path` or `tcp://IP:PORT`.
        engine: String,
        /// The address its published ports are reached at.
        address: String,
        /// TLS files for a tcp engine: CA, client certificate, client key.
        tls: Option<[String; 3]>,
    },
    /// Make a host take new machines (`active`) or none (`draining`; what it runs stays)
    /// (superadmin grant). Audits `host.state`, target the host, detail the state.
    SetHostState {
        /// The host.
        name: String,
        /// `active` or `draining`.
        state: String,
    },
    /// Remove a host that holds no machine (superadmin grant). Audits `host.remove`, target the
    /// host.
    RemoveHost {
        /// The host.
        name: String,
    },
    /// Move a stopped machine to another host (superadmin grant): made again there from its
    /// image (its disk does not move), removed from the old host. Audits `machine.move`, target
    /// `ns/name`, namespace, detail the operation id.
    MoveMachine {
        /// The namespace.
        ns: String,
        /// The machine.
        name: String,
        /// The host it goes to.
        host: String,
    },
}

/// What an audit record says about an action before it runs (the outcome and any detail the
/// result adds are filled in after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTarget {
    /// The target as sent, clipped.
    pub target: String,
    /// The namespace the action is in, as sent, clipped.
    pub namespace: Option<String>,
    /// What the request itself says worth keeping (a quota, a role, how one signed in).
    pub detail: Option<String>,
}

/// A value as sent, clipped for the audit log.
pub(super) fn shown(raw: &str) -> String {
    raw.chars().take(64).collect()
}

impl Action {
    /// The action's name in the audit log (and the kind of the operation it starts, for
    /// cluster and machine actions). The one list of these names: tests, the audit page and
    /// old records rely on them, so they never change.
    pub fn audit_name(&self) -> &'static str {
        match self {
            Self::SignIn { .. } => "auth.login",
            Self::SignOut => "auth.logout",
            Self::CreateUser { .. } => "user.create",
            Self::DeleteUser { .. } => "user.delete",
            Self::SetPassword { .. } => "user.password",
            Self::CreateNamespace { .. } => "namespace.create",
            Self::SetQuota { .. } => "namespace.quota",
            Self::DeleteNamespace { .. } => "namespace.delete",
            Self::SetMember { .. } => "member.set",
            Self::RemoveMember { .. } => "member.remove",
            Self::AddKey { .. } => "key.add",
            Self::DeleteKey { .. } => "key.delete",
            Self::CreateToken { .. } => "token.create",
            Self::DeleteToken { .. } => "token.delete",
            Self::SaveSpec { .. } => "cluster.spec",
            Self::CreateCluster { .. } => "cluster.create",
            Self::StartCluster { .. } => "cluster.start",
            Self::StopCluster { .. } => "cluster.stop",
            Self::DeleteCluster { .. } => "cluster.delete",
            Self::StartMachine { .. } => "machine.start",
            Self::StopMachine { .. } => "machine.stop",
            Self::RestartMachine { .. } => "machine.restart",
            Self::AddHost { .. } => "host.add",
            Self::SetHostState { .. } => "host.state",
            Self::RemoveHost { .. } => "host.remove",
            Self::MoveMachine { .. } => "machine.move",
        }
    }

    /// Target, namespace and request detail of the action's audit record; `actor_login` is the
    /// target of a sign-out.
    pub fn audit_target(&self, actor_login: &str) -> AuditTarget {
        let plain = |target: &str| AuditTarget { target: shown(target), namespace: None, detail: None };
        let in_namespace = |ns: &str| AuditTarget { target: shown(ns), namespace: Some(shown(ns)), detail: None };
        let machine = |ns: &str, name: &str| AuditTarget {
            target: format!("{}/{}", shown(ns), shown(name)),
            namespace: Some(shown(ns)),
            detail: None,
        };
        match self {
            Self::SignIn { login, kind, .. } => AuditTarget {
                detail: Some(if *kind == TokenKind::Panel { "panel" } else { "api" }.into()),
                ..plain(login)
            },
            Self::SignOut => plain(actor_login),
            Self::CreateUser { login, .. } | Self::DeleteUser { login } | Self::SetPassword { login, .. } => {
                plain(login)
            }
            Self::CreateNamespace { name, .. } => in_namespace(name),
            Self::SetQuota { ns, quota } => AuditTarget { detail: Some(quota.to_string()), ..in_namespace(ns) },
            Self::DeleteNamespace { ns } => in_namespace(ns),
            Self::SetMember { ns, login, role } => AuditTarget {
                target: shown(login),
                namespace: Some(shown(ns)),
                detail: Some(format!("role={}", role.chars().take(16).collect::<String>())),
            },
            Self::RemoveMember { ns, login } => {
                AuditTarget { target: shown(login), namespace: Some(shown(ns)), detail: None }
            }
            Self::AddKey { name, .. }
            | Self::DeleteKey { name }
            | Self::CreateToken { name }
            | Self::DeleteToken { name } => plain(name),
            Self::SaveSpec { ns, .. }
            | Self::CreateCluster { ns }
            | Self::StartCluster { ns }
            | Self::StopCluster { ns }
            | Self::DeleteCluster { ns } => in_namespace(ns),
            Self::StartMachine { ns, name } | Self::StopMachine { ns, name } | Self::RestartMachine { ns, name } => {
                machine(ns, name)
            }
            Self::AddHost { name, engine, .. } => AuditTarget { detail: Some(shown(engine)), ..plain(name) },
            Self::SetHostState { name, state } => AuditTarget { detail: Some(shown(state)), ..plain(name) },
            Self::RemoveHost { name } => plain(name),
            Self::MoveMachine { ns, name, host } => {
                AuditTarget { detail: Some(format!("to {}", shown(host))), ..machine(ns, name) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant; `index` has no wildcard, so a new variant does not compile until
    /// it is listed here too.
    fn every_action() -> Vec<Action> {
        let s = || "x".to_owned();
        let all = vec![
            Action::SignIn { login: s(), password: s(), kind: TokenKind::Login },
            Action::SignOut,
            Action::CreateUser { login: s(), password: s() },
            Action::DeleteUser { login: s() },
            Action::SetPassword { login: s(), current: None, new: s() },
            Action::CreateNamespace { name: s(), quota: None },
            Action::SetQuota { ns: s(), quota: Quota::default() },
            Action::DeleteNamespace { ns: s() },
            Action::SetMember { ns: s(), login: s(), role: s() },
            Action::RemoveMember { ns: s(), login: s() },
            Action::AddKey { name: s(), public_key: s() },
            Action::DeleteKey { name: s() },
            Action::CreateToken { name: s() },
            Action::DeleteToken { name: s() },
            Action::SaveSpec { ns: s(), spec: Ok(ClusterSpec::default()) },
            Action::CreateCluster { ns: s() },
            Action::StartCluster { ns: s() },
            Action::StopCluster { ns: s() },
            Action::DeleteCluster { ns: s() },
            Action::StartMachine { ns: s(), name: s() },
            Action::StopMachine { ns: s(), name: s() },
            Action::RestartMachine { ns: s(), name: s() },
            Action::AddHost { name: s(), engine: s(), address: s(), tls: None },
            Action::SetHostState { name: s(), state: s() },
            Action::RemoveHost { name: s() },
            Action::MoveMachine { ns: s(), name: s(), host: s() },
        ];
        for (i, action) in all.iter().enumerate() {
            assert_eq!(index(action), i, "every_action lists the variants in declaration order");
        }
        all
    }

    fn index(action: &Action) -> usize {
        match action {
            Action::SignIn { .. } => 0,
            Action::SignOut => 1,
            Action::CreateUser { .. } => 2,
            Action::DeleteUser { .. } => 3,
            Action::SetPassword { .. } => 4,
            Action::CreateNamespace { .. } => 5,
            Action::SetQuota { .. } => 6,
            Action::DeleteNamespace { .. } => 7,
            Action::SetMember { .. } => 8,
            Action::RemoveMember { .. } => 9,
            Action::AddKey { .. } => 10,
            Action::DeleteKey { .. } => 11,
            Action::CreateToken { .. } => 12,
            Action::DeleteToken { .. } => 13,
            Action::SaveSpec { .. } => 14,
            Action::CreateCluster { .. } => 15,
            Action::StartCluster { .. } => 16,
            Action::StopCluster { .. } => 17,
            Action::DeleteCluster { .. } => 18,
            Action::StartMachine { .. } => 19,
            Action::StopMachine { .. } => 20,
            Action::RestartMachine { .. } => 21,
            Action::AddHost { .. } => 22,
            Action::SetHostState { .. } => 23,
            Action::RemoveHost { .. } => 24,
            Action::MoveMachine { .. } => 25,
        }
    }

    #[test]
    fn every_action_has_a_distinct_audit_name() {
        let names: Vec<&str> = every_action().iter().map(Action::audit_name).collect();
        let mut distinct = names.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "two actions share an audit name: {names:?}");
        // Today's names, exactly: the audit page, old records and the tests read them.
        assert_eq!(
            names,
            [
                "auth.login",
                "auth.logout",
                "user.create",
                "user.delete",
                "user.password",
                "namespace.create",
                "namespace.quota",
                "namespace.delete",
                "member.set",
                "member.remove",
                "key.add",
                "key.delete",
                "token.create",
                "token.delete",
                "cluster.spec",
                "cluster.create",
                "cluster.start",
                "cluster.stop",
                "cluster.delete",
                "machine.start",
                "machine.stop",
                "machine.restart",
                "host.add",
                "host.state",
                "host.remove",
                "machine.move",
            ]
        );
    }

    #[test]
    fn audit_targets_are_clipped_and_name_the_namespace() {
        let long = "n".repeat(200);
        let t = Action::StartMachine { ns: "red".into(), name: long.clone() }.audit_target("alice");
        assert_eq!(t.target, format!("red/{}", "n".repeat(64)));
        assert_eq!(t.namespace.as_deref(), Some("red"));
        assert_eq!(Action::SignOut.audit_target("alice").target, "alice");
        let member = Action::SetMember { ns: "red".into(), login: "bob".into(), role: long }.audit_target("root");
        assert_eq!(member.detail, Some(format!("role={}", "n".repeat(16))));
    }
}
