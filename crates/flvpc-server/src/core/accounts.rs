//! The acts of the account actions: sign-in and -out, users, passwords, namespaces, quotas,
//! members, keys and tokens. Each validates its input, asks the policy for a grant and acts;
//! [`super::dispatch`] audits around them.

use super::error::{CoreError, CoreResult};
use super::{keys_changed, machines, Actor, Outcome, SignedIn};
use crate::state::AppState;
use flvpc_model::quota::Quota;
use flvpc_model::{KeyName, Login, NamespaceName, PublicKey, Role, TokenName};
use flvpc_store::TokenKind;

/// Checks a login and password (throttled) and opens a session of `kind`.
pub(super) async fn sign_in(
    state: &AppState,
    actor: &Actor,
    login: &str,
    password: &str,
    kind: TokenKind,
) -> CoreResult<Outcome> {
    use std::sync::atomic::Ordering::Relaxed;
    // The guess is counted before its password is checked (see throttle.rs).
    let attempt = state.throttle.begin(login, actor.source).map_err(|wait| {
        state.metrics.logins_throttled.fetch_add(1, Relaxed);
        CoreError::TooManyAttempts(wait)
    })?;
    let user_id = match state.store.check_password(login, password).await {
        Ok(Some(user_id)) => user_id,
        Ok(None) => {
            attempt.failed();
            state.metrics.logins_failed.fetch_add(1, Relaxed);
            return Err(CoreError::WrongCredentials);
        }
        Err(err) => {
            // No password was checked (the server was busy, or the database failed): not a guess.
            attempt.cancel();
            return Err(err.into());
        }
    };
    attempt.succeeded();
    state.metrics.logins_ok.fetch_add(1, Relaxed);
    let ttl = i64::try_from(state.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let token = state.store.create_session(user_id, kind, ttl).await?;
    let login = Login::parse(login)?;
    Ok(Outcome::SignedIn(SignedIn { token, login }))
}

/// Ends the session or token the actor used: a named API token used to log out is revoked.
pub(super) async fn sign_out(state: &AppState, actor: &Actor) -> CoreResult<Outcome> {
    let session = actor.session.ok_or(CoreError::Unauthenticated)?;
    state.store.delete_session(session).await?;
    Ok(Outcome::Done)
}

pub(super) async fn create_user(state: &AppState, actor: &Actor, login: &str, password: &str) -> CoreResult<Outcome> {
    let login = Login::parse(login);
    let grant = actor.principal()?.superadmin()?;
    Ok(Outcome::User(state.store.create_user(&grant, &login?, password).await?))
}

pub(super) async fn delete_user(state: &AppState, actor: &Actor, login: &str) -> CoreResult<Outcome> {
    let login = Login::parse(login);
    let grant = actor.principal()?.superadmin()?;
    state.store.delete_user(&grant, &login?).await?;
    keys_changed(state, None);
    Ok(Outcome::Done)
}

pub(super) async fn set_password(
    state: &AppState,
    actor: &Actor,
    login: &str,
    current: Option<&str>,
    new: &str,
) -> CoreResult<Outcome> {
    let login = Login::parse(login)?;
    let grant = actor.principal()?.self_or_superadmin(&login)?;
    // Every session and API token of the user ends but the session this change was made
    // with (when it is the user's own session; see Store::set_password).
    state.store.set_password(&grant, current, new, actor.session).await?;
    Ok(Outcome::Done)
}

pub(super) async fn create_namespace(
    state: &AppState,
    actor: &Actor,
    name: &str,
    quota: Option<Quota>,
) -> CoreResult<Outcome> {
    let name = NamespaceName::parse(name);
    let grant = actor.principal()?.superadmin()?;
    let name = name?;
    let ns = state.store.create_namespace(&grant, &name).await?;
    if let Some(quota) = quota {
        state.store.set_quota(&grant, &name, &quota).await?;
    }
    Ok(Outcome::Namespace(ns))
}

pub(super) async fn set_quota(state: &AppState, actor: &Actor, ns: &str, quota: Quota) -> CoreResult<Outcome> {
    let name = NamespaceName::parse(ns);
    let grant = actor.principal()?.superadmin()?;
    state.store.set_quota(&grant, &name?, &quota).await?;
    Ok(Outcome::Done)
}

pub(super) async fn delete_namespace(state: &AppState, actor: &Actor, ns: &str) -> CoreResult<Outcome> {
    let name = NamespaceName::parse(ns);
    let grant = actor.principal()?.superadmin()?;
    let name = name?;
    machines::drain_namespace(state, actor, &name).await?;
    state.store.delete_namespace(&grant, &name).await?;
    Ok(Outcome::Done)
}

pub(super) async fn set_member(
    state: &AppState,
    actor: &Actor,
    ns: &str,
    login: &str,
    role: &str,
) -> CoreResult<Outcome> {
    let (ns, login) = (NamespaceName::parse(ns), Login::parse(login));
    let grant = actor.principal()?.superadmin()?;
    let role = Role::parse(role)?;
    let ns = ns?;
    let added = state.store.set_member(&grant, &ns, &login?, role).await?;
    keys_changed(state, Some(vec![ns]));
    Ok(Outcome::Member { added })
}

pub(super) async fn remove_member(state: &AppState, actor: &Actor, ns: &str, login: &str) -> CoreResult<Outcome> {
    let (ns, login) = (NamespaceName::parse(ns), Login::parse(login));
    let grant = actor.principal()?.superadmin()?;
    let ns = ns?;
    state.store.remove_member(&grant, &ns, &login?).await?;
    keys_changed(state, Some(vec![ns]));
    Ok(Outcome::Done)
}

pub(super) async fn add_key(state: &AppState, actor: &Actor, name: &str, public_key: &str) -> CoreResult<Outcome> {
    let name = KeyName::parse(name)?;
    let key = PublicKey::parse(public_key)?;
    let principal = actor.principal()?;
    let added = state.store.add_key(principal, &name, &key).await?;
    keys_changed(state, Some(principal.memberships().keys().cloned().collect()));
    Ok(Outcome::Key(added))
}

pub(super) async fn delete_key(state: &AppState, actor: &Actor, name: &str) -> CoreResult<Outcome> {
    let name = KeyName::parse(name)?;
    let principal = actor.principal()?;
    state.store.delete_key(principal, &name).await?;
    keys_changed(state, Some(principal.memberships().keys().cloned().collect()));
    Ok(Outcome::Done)
}

pub(super) async fn create_token(state: &AppState, actor: &Actor, name: &str) -> CoreResult<Outcome> {
    let name = TokenName::parse(name)?;
    let issued = state.store.create_api_token(actor.principal()?, &name).await?;
    Ok(Outcome::Token { name, issued })
}

pub(super) async fn delete_token(state: &AppState, actor: &Actor, name: &str) -> CoreResult<Outcome> {
    let name = TokenName::parse(name)?;
    state.store.delete_api_token(actor.principal()?, &name).await?;
    Ok(Outcome::Done)
}
