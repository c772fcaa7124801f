//! The control core behind every door (the REST API, the panel, the SSH gateway): what a person
//! may do and what it does, whichever way they came in.
//!
//! Every state change asked for on a request is one [`Action`] through one [`dispatch`], which
//! validates the input, asks `flvpc_model::policy` for a grant, acts through the store and the
//! reconciler, and writes one audit record, in that order, for success and refusal alike.
//! Reads (lists, gets) change and audit nothing: they stay typed functions ([`reads`],
//! [`machines`], [`capacity`]). Refusals are [`CoreError`]s with stable codes; how they look is
//! each door's business.
//!
//! Architecture Invariant: the core knows no HTTP, HTML or SSH type (no axum, http, maud,
//! russh or utoipa; `tests/tidy.rs` checks), so a door is only a translation of its input into
//! actions and of outcomes into its output.

mod accounts;
pub mod action;
pub mod audit;
pub mod capacity;
pub mod error;
pub mod hosts;
pub mod machines;
mod reads;
pub mod terminal;
pub mod view;

pub use action::Action;
pub use error::{CoreError, CoreResult};
pub use reads::*;

use flvpc_model::{Login, NamespaceName, Principal, TokenName};
use flvpc_store::{IssuedToken, Namespace, NewAudit, Operation, Session, SshKey, User};
use std::net::IpAddr;

use crate::state::AppState;

/// Who asks for an action, whichever door they came through.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The signed-in person; None before sign-in.
    principal: Option<Principal>,
    /// The session or token row they used (a sign-out ends it; a password change keeps it).
    pub session: Option<i64>,
    /// Where the request came from, when known.
    pub source: Option<IpAddr>,
}

impl Actor {
    /// Someone not signed in yet (only [`Action::SignIn`] is open to them).
    pub fn anonymous(source: Option<IpAddr>) -> Self {
        Self { principal: None, session: None, source }
    }

    /// The person of an authenticated session.
    pub fn signed_in(session: &Session, source: Option<IpAddr>) -> Self {
        Self { principal: Some(session.principal.clone()), session: Some(session.token_id), source }
    }

    /// The signed-in person, or the refusal an anonymous actor gets.
    pub fn principal(&self) -> CoreResult<&Principal> {
        self.principal.as_ref().ok_or(CoreError::Unauthenticated)
    }
}

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The token or session secret.
    pub token: IssuedToken,
    /// Who signed in.
    pub login: Login,
}

/// What a saved spec expands to.
#[derive(Debug)]
pub struct SavedSpec {
    /// The canonical YAML.
    pub yaml: String,
    /// The spec.
    pub spec: flvpc_model::spec::ClusterSpec,
    /// Machine names it describes.
    pub machines: Vec<String>,
    /// footloose features flvpc does not honour.
    pub warnings: Vec<String>,
}

/// What a successful action gives back.
#[derive(Debug)]
pub enum Outcome {
    /// Done; nothing to show.
    Done,
    /// A session was opened.
    SignedIn(SignedIn),
    /// A user was created.
    User(User),
    /// A namespace was created.
    Namespace(Namespace),
    /// A member was set: added (true) or their role changed.
    Member {
        /// Whether the member is new.
        added: bool,
    },
    /// An SSH key was added.
    Key(SshKey),
    /// An API token was made; its secret is shown once.
    Token {
        /// Its name.
        name: TokenName,
        /// The secret.
        issued: IssuedToken,
    },
    /// A spec was saved.
    Spec(SavedSpec),
    /// An operation was started: poll it.
    Operation(Operation),
}

/// The outcome a door expected of its action but did not get: a bug, reported as one.
fn unexpected(outcome: Outcome) -> CoreError {
    CoreError::internal(format!("an action ended with an outcome its door did not expect: {outcome:?}"))
}

impl Outcome {
    /// The session of a [`Action::SignIn`].
    pub fn into_signed_in(self) -> CoreResult<SignedIn> {
        match self {
            Self::SignedIn(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The user of a [`Action::CreateUser`].
    pub fn into_user(self) -> CoreResult<User> {
        match self {
            Self::User(u) => Ok(u),
            other => Err(unexpected(other)),
        }
    }

    /// The namespace of a [`Action::CreateNamespace`].
    pub fn into_namespace(self) -> CoreResult<Namespace> {
        match self {
            Self::Namespace(ns) => Ok(ns),
            other => Err(unexpected(other)),
        }
    }

    /// Whether a [`Action::SetMember`] added the member.
    pub fn into_added(self) -> CoreResult<bool> {
        match self {
            Self::Member { added } => Ok(added),
            other => Err(unexpected(other)),
        }
    }

    /// The key of a [`Action::AddKey`].
    pub fn into_key(self) -> CoreResult<SshKey> {
        match self {
            Self::Key(k) => Ok(k),
            other => Err(unexpected(other)),
        }
    }

    /// The name and secret of a [`Action::CreateToken`].
    pub fn into_token(self) -> CoreResult<(TokenName, IssuedToken)> {
        match self {
            Self::Token { name, issued } => Ok((name, issued)),
            other => Err(unexpected(other)),
        }
    }

    /// The saved spec of a [`Action::SaveSpec`].
    pub fn into_spec(self) -> CoreResult<SavedSpec> {
        match self {
            Self::Spec(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The operation a cluster or machine action started.
    pub fn into_operation(self) -> CoreResult<Operation> {
        match self {
            Self::Operation(op) => Ok(op),
            other => Err(unexpected(other)),
        }
    }

    /// What the result adds to the audit record: a key's fingerprint, an operation's id.
    fn audit_detail(&self) -> Option<String> {
        match self {
            Self::Key(key) => Some(key.fingerprint.clone()),
            Self::Operation(op) => Some(op.id.clone()),
            _ => None,
        }
    }
}

/// Does `action` for `actor`: validates its input, asks the policy, acts, and writes its one
/// audit record (outcome `ok` or the refusal's code), in that order. The one way a request
/// changes state.
pub async fn dispatch(state: &AppState, actor: &Actor, action: Action) -> CoreResult<Outcome> {
    let name = action.audit_name();
    let actor_login = actor.principal.as_ref().map(|p| p.login().to_string());
    let target = action.audit_target(actor_login.as_deref().unwrap_or_default());
    let result = run(state, actor, action).await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(err) => err.code().to_owned(),
    };
    let who = match &result {
        // A sign-in's actor is known once it succeeded; a refused one names nobody.
        Ok(Outcome::SignedIn(signed_in)) => Some(signed_in.login.to_string()),
        _ => actor_login,
    };
    let entry = NewAudit {
        actor: who,
        action: name.to_owned(),
        target: target.target,
        namespace: target.namespace.filter(|ns| result.is_ok() || may_see(actor.principal.as_ref(), ns)),
        source: actor.source.map(|a| a.to_string()),
        outcome,
        detail: result.as_ref().ok().and_then(Outcome::audit_detail).or(target.detail),
    };
    if let Err(err) = state.store.record_audit(entry).await {
        tracing::error!("could not write audit record for {name}: {err}");
    }
    result
}

/// Validates, authorizes and acts: the part of [`dispatch`] each action has of its own.
async fn run(state: &AppState, actor: &Actor, action: Action) -> CoreResult<Outcome> {
    use machines::MachineAction;
    let kind = action.audit_name();
    match action {
        Action::SignIn { login, password, kind } => accounts::sign_in(state, actor, &login, &password, kind).await,
        Action::SignOut => accounts::sign_out(state, actor).await,
        Action::CreateUser { login, password } => accounts::create_user(state, actor, &login, &password).await,
        Action::DeleteUser { login } => accounts::delete_user(state, actor, &login).await,
        Action::SetPassword { login, current, new } => {
            accounts::set_password(state, actor, &login, current.as_deref(), &new).await
        }
        Action::CreateNamespace { name, quota } => accounts::create_namespace(state, actor, &name, quota).await,
        Action::SetQuota { ns, quota } => accounts::set_quota(state, actor, &ns, quota).await,
        Action::DeleteNamespace { ns } => accounts::delete_namespace(state, actor, &ns).await,
        Action::SetMember { ns, login, role } => accounts::set_member(state, actor, &ns, &login, &role).await,
        Action::RemoveMember { ns, login } => accounts::remove_member(state, actor, &ns, &login).await,
        Action::AddKey { name, public_key } => accounts::add_key(state, actor, &name, &public_key).await,
        Action::DeleteKey { name } => accounts::delete_key(state, actor, &name).await,
        Action::CreateToken { name } => accounts::create_token(state, actor, &name).await,
        Action::DeleteToken { name } => accounts::delete_token(state, actor, &name).await,
        Action::SaveSpec { ns, spec } => machines::put_spec(state, actor, &ns, spec).await,
        Action::CreateCluster { ns } => machines::create(state, actor, &ns).await,
        Action::StartCluster { ns } => {
            machines::set_cluster(state, actor, &ns, flvpc_store::Desired::Running, kind).await
        }
        Action::StopCluster { ns } => {
            machines::set_cluster(state, actor, &ns, flvpc_store::Desired::Stopped, kind).await
        }
        Action::DeleteCluster { ns } => {
            machines::set_cluster(state, actor, &ns, flvpc_store::Desired::Deleted, kind).await
        }
        Action::StartMachine { ns, name } => {
            machines::machine_action(state, actor, &ns, &name, MachineAction::Start, kind).await
        }
        Action::StopMachine { ns, name } => {
            machines::machine_action(state, actor, &ns, &name, MachineAction::Stop, kind).await
        }
        Action::RestartMachine { ns, name } => {
            machines::machine_action(state, actor, &ns, &name, MachineAction::Restart, kind).await
        }
        Action::AddHost { name, engine, address, tls } => {
            hosts::add(state, actor, &name, &engine, &address, tls.as_ref()).await
        }
        Action::SetHostState { name, state: wanted } => hosts::set_state(state, actor, &name, &wanted).await,
        Action::RemoveHost { name } => hosts::remove(state, actor, &name).await,
        Action::MoveMachine { ns, name, host } => hosts::move_machine(state, actor, &ns, &name, &host).await,
    }
}

/// Whether a refusal in namespace `ns` may be filed under it: only for its members and the
/// superadmin. A stranger's probe stays out of the namespace's audit view (its admins must not
/// see strangers' requests attributed to them, and the log must not confirm that a name exists);
/// the superadmin still sees it in the whole log, with the name in the target.
fn may_see(principal: Option<&Principal>, ns: &str) -> bool {
    let Some(principal) = principal else { return false };
    principal.is_superadmin() || NamespaceName::parse(ns).is_ok_and(|name| principal.memberships().contains_key(&name))
}

/// A namespace name from a request where a name that cannot exist must look like a namespace
/// the caller cannot see: not found, as for non-members, so a refusal tells nothing either way.
pub(crate) fn namespace_or_not_found(ns: &str) -> CoreResult<NamespaceName> {
    NamespaceName::parse(ns).map_err(|_| CoreError::from(flvpc_model::Denied::NotFound))
}

/// After keys or memberships changed: rewrite authorized_keys on the running machines of
/// `namespaces` (all namespaces when None), in the background so the request returns at once.
fn keys_changed(state: &AppState, namespaces: Option<Vec<NamespaceName>>) {
    let reconciler = state.reconciler.clone();
    tokio::spawn(async move {
        match namespaces {
            Some(list) => {
                for ns in list {
                    reconciler.resync_namespace(&ns).await;
                }
            }
            None => reconciler.resync().await,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Config;
    use crate::throttle::LoginThrottle;
    use flvpc_store::{Store, TokenKind};

    struct Fixture {
        state: AppState,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("flvpc.db").display());
        let store = Store::open(&url).await.expect("open store");
        store.init_superadmin(&Login::parse("root").expect("login"), "root-password").await.expect("superadmin");
        let engine = std::sync::Arc::new(flvpc_host::FakeEngine::new());
        let state =
            AppState::with_parts(store, Config::default(), LoginThrottle::default(), engine).await.expect("state");
        Fixture { state, _dir: dir }
    }

    /// Signs in through dispatch and reads the session back, as a door would.
    async fn actor(state: &AppState, login: &str, password: &str) -> Actor {
        let source = Some(IpAddr::from([127, 0, 0, 1]));
        let action = Action::SignIn { login: login.into(), password: password.into(), kind: TokenKind::Login };
        let signed_in = dispatch(state, &Actor::anonymous(source), action)
            .await
            .and_then(Outcome::into_signed_in)
            .expect("sign in");
        let session = state.store.authenticate(&signed_in.token.secret).await.expect("read").expect("session");
        Actor::signed_in(&session, source)
    }

    async fn records(state: &AppState, root: &Actor, action: &str) -> Vec<flvpc_store::AuditEntry> {
        let grant = root.principal().expect("root").superadmin().expect("superadmin");
        let all = state.store.audit_all(&grant, &Default::default(), None, 1000).await.expect("audit log");
        all.into_iter().filter(|e| e.action == action).collect()
    }

    #[tokio::test]
    async fn a_refused_action_writes_exactly_one_record_with_its_code() {
        let Fixture { state, _dir } = fixture().await;
        let root = actor(&state, "root", "root-password").await;
        let created =
            dispatch(&state, &root, Action::CreateUser { login: "bob".into(), password: "bob-password".into() })
                .await
                .and_then(Outcome::into_user)
                .expect("root creates bob");
        assert_eq!(created.login.as_str(), "bob");
        let bob = actor(&state, "bob", "bob-password").await;

        // Refused by the policy: bob is not the superadmin.
        let refused = dispatch(&state, &bob, Action::CreateNamespace { name: "red".into(), quota: None }).await;
        let err = refused.expect_err("bob may not create namespaces");
        assert_eq!(err, CoreError::Forbidden);
        let log = records(&state, &root, "namespace.create").await;
        assert_eq!(log.len(), 1, "one record for one refusal: {log:?}");
        assert_eq!(log[0].outcome, "forbidden");
        assert_eq!(log[0].actor.as_deref(), Some("bob"));
        assert_eq!(log[0].target, "red");
        assert_eq!(log[0].source.as_deref(), Some("127.0.0.1"));
        // A stranger's refusal is not filed under the namespace (see may_see).
        assert_eq!(log[0].namespace, None);

        // Refused by validation: the value is recorded as sent, clipped.
        let bad = "Bad Key ".repeat(20);
        let err = dispatch(&state, &bob, Action::DeleteKey { name: bad.clone() }).await.expect_err("invalid name");
        assert_eq!(err.code(), "invalid");
        let log = records(&state, &root, "key.delete").await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].outcome, "invalid");
        assert_eq!(log[0].target, bad.chars().take(64).collect::<String>());

        // A wrong password: the sign-in record names nobody.
        let wrong = Action::SignIn { login: "bob".into(), password: "nope-nope".into(), kind: TokenKind::Panel };
        let err = dispatch(&state, &Actor::anonymous(None), wrong).await.expect_err("wrong password");
        assert_eq!(err, CoreError::WrongCredentials);
        let log = records(&state, &root, "auth.login").await;
        let failed: Vec<_> = log.iter().filter(|e| e.outcome != "ok").collect();
        assert_eq!(failed.len(), 1, "{log:?}");
        assert_eq!(failed[0].outcome, "wrong_credentials");
        assert_eq!(failed[0].actor, None);
        assert_eq!(failed[0].detail.as_deref(), Some("panel"));
        assert_eq!(log.iter().filter(|e| e.outcome == "ok").count(), 2, "root and bob signed in");
    }

    #[tokio::test]
    async fn an_anonymous_actor_may_only_sign_in() {
        let Fixture { state, _dir } = fixture().await;
        let err = dispatch(&state, &Actor::anonymous(None), Action::SignOut).await.expect_err("nobody to sign out");
        assert_eq!(err, CoreError::Unauthenticated);
        let root = actor(&state, "root", "root-password").await;
        let log = records(&state, &root, "auth.logout").await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, "unauthenticated");
    }
}
