//! The operations behind both the REST API and the panel: parse and validate
//! input, ask the policy, act through the store, write the audit log.
//!
//! Handlers in `api` and `panel` only translate between their wire format and
//! these functions, so a rule is enforced the same way whichever door is used.

pub mod capacity;
pub mod machines;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::StatusCode;
use flvpc_model::{KeyName, Login, NamespaceName, Principal, PublicKey, Role, TokenName};
use flvpc_store::{ApiToken, AuditEntry, IssuedToken, Member, Namespace, NewAudit, SshKey, TokenKind, User};
use std::net::IpAddr;

/// A namespace name from a request where a name that cannot exist must look like a namespace
/// the caller cannot see: 404, as for non-members, so a refusal tells nothing either way.
pub(crate) fn namespace_or_not_found(ns: &str) -> Result<NamespaceName, ApiError> {
    NamespaceName::parse(ns).map_err(|_| ApiError::from(flvpc_model::Denied::NotFound))
}

/// Writes one audit record for an attempted change and passes the result through.
async fn audited<T>(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    namespace: Option<&str>,
    detail: Option<String>,
    result: ApiResult<T>,
) -> ApiResult<T> {
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.code.to_owned(),
    };
    let entry = NewAudit {
        actor: Some(caller.principal().login().to_string()),
        action: action.to_owned(),
        target: target.to_owned(),
        namespace: namespace.filter(|ns| result.is_ok() || may_see(caller.principal(), ns)).map(str::to_owned),
        source: caller.source.map(|a| a.to_string()),
        outcome,
        detail,
    };
    if let Err(err) = state.store.record_audit(entry).await {
        tracing::error!("could not write audit record for {action} {target}: {err}");
    }
    result
}

/// Whether a refusal in namespace `ns` may be filed under it: only for its members and the
/// superadmin. A stranger's probe stays out of the namespace's audit view (its admins must not
/// see strangers' requests attributed to them, and the log must not confirm that a name exists);
/// the superadmin still sees it in the whole log, with the name in the target.
fn may_see(principal: &Principal, ns: &str) -> bool {
    principal.is_superadmin() || NamespaceName::parse(ns).is_ok_and(|name| principal.memberships().contains_key(&name))
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

/// A validated value, or the raw text (clipped) for the audit log when invalid.
fn parsed<T>(raw: &str, parse: impl FnOnce(&str) -> Result<T, flvpc_model::Invalid>) -> (String, ApiResult<T>) {
    let shown: String = raw.chars().take(64).collect();
    (shown, parse(raw).map_err(ApiError::from))
}

/// A successful sign-in.
pub struct SignedIn {
    /// The token or session secret.
    pub token: IssuedToken,
    /// Who signed in.
    pub login: Login,
}

/// Checks a login and password (throttled) and opens a session of `kind`.
pub async fn sign_in(
    state: &AppState,
    login: &str,
    password: &str,
    source: Option<IpAddr>,
    kind: TokenKind,
) -> ApiResult<SignedIn> {
    use std::sync::atomic::Ordering::Relaxed;
    let shown: String = login.chars().take(64).collect();
    let audit = |outcome: &str, actor: Option<String>| NewAudit {
        actor,
        action: "auth.login".into(),
        target: shown.clone(),
        namespace: None,
        source: source.map(|a| a.to_string()),
        outcome: outcome.into(),
        detail: Some(if kind == TokenKind::Panel { "panel" } else { "api" }.into()),
    };
    // The guess is counted before its password is checked (see throttle.rs).
    let attempt = match state.throttle.begin(login, source) {
        Ok(attempt) => attempt,
        Err(wait) => {
            state.metrics.logins_throttled.fetch_add(1, Relaxed);
            let _ = state.store.record_audit(audit("too_many_attempts", None)).await;
            return Err(ApiError::too_many(
                "too_many_attempts",
                format!("too many failed sign-ins; try again in {} seconds", wait.as_secs().max(1)),
                wait,
            ));
        }
    };
    let user_id = match state.store.check_password(login, password).await {
        Ok(Some(user_id)) => user_id,
        Ok(None) => {
            attempt.failed();
            state.metrics.logins_failed.fetch_add(1, Relaxed);
            let _ = state.store.record_audit(audit("wrong_credentials", None)).await;
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong_credentials", "wrong login or password"));
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
    let _ = state.store.record_audit(audit("ok", Some(login.to_string()))).await;
    Ok(SignedIn { token, login })
}

/// Ends the session or token the caller used: a named API token used to log out is revoked.
pub async fn sign_out(state: &AppState, caller: &Caller) -> ApiResult<()> {
    let result = state.store.delete_session(caller.session.token_id).await.map_err(ApiError::from);
    audited(state, caller, "auth.logout", caller.principal().login().as_str(), None, None, result).await
}

/// The namespaces the caller may see, with the caller's effective role.
pub async fn visible_namespaces(state: &AppState, caller: &Principal) -> ApiResult<Vec<(Namespace, Role)>> {
    if let Ok(grant) = caller.superadmin() {
        let all = state.store.list_namespaces(&grant).await?;
        return Ok(all.into_iter().map(|ns| (ns, Role::Admin)).collect());
    }
    Ok(state.store.member_namespaces(caller).await?)
}

/// Every user (superadmin).
pub async fn list_users(state: &AppState, caller: &Caller) -> ApiResult<Vec<User>> {
    let grant = caller.principal().superadmin()?;
    Ok(state.store.list_users(&grant).await?)
}

/// Creates a user (superadmin).
pub async fn create_user(state: &AppState, caller: &Caller, login: &str, password: &str) -> ApiResult<User> {
    let (shown, login) = parsed(login, Login::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        Ok(state.store.create_user(&grant, &login?, password).await?)
    }
    .await;
    audited(state, caller, "user.create", &shown, None, None, result).await
}

/// Deletes a user with everything that is theirs (superadmin).
pub async fn delete_user(state: &AppState, caller: &Caller, login: &str) -> ApiResult<()> {
    let (shown, login) = parsed(login, Login::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        state.store.delete_user(&grant, &login?).await?;
        keys_changed(state, None);
        Ok(())
    }
    .await;
    audited(state, caller, "user.delete", &shown, None, None, result).await
}

/// Changes a password: one's own (with the current one) or anyone's (superadmin).
pub async fn change_password(
    state: &AppState,
    caller: &Caller,
    login: &str,
    current: Option<&str>,
    new: &str,
) -> ApiResult<()> {
    let (shown, login) = parsed(login, Login::parse);
    let result = async {
        let login = login?;
        let grant = caller.principal().self_or_superadmin(&login)?;
        // Every session and API token of the user ends but the session this change was made
        // with (when it is the user's own session; see Store::set_password).
        Ok(state.store.set_password(&grant, current, new, Some(caller.session.token_id)).await?)
    }
    .await;
    audited(state, caller, "user.password", &shown, None, None, result).await
}

/// Creates a namespace (superadmin), with a quota when one is given.
pub async fn create_namespace(
    state: &AppState,
    caller: &Caller,
    name: &str,
    quota: Option<flvpc_model::quota::Quota>,
) -> ApiResult<Namespace> {
    let (shown, name) = parsed(name, NamespaceName::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        let name = name?;
        let ns = state.store.create_namespace(&grant, &name).await?;
        if let Some(quota) = quota {
            state.store.set_quota(&grant, &name, &quota).await?;
        }
        Ok(ns)
    }
    .await;
    audited(state, caller, "namespace.create", &shown, Some(&shown), None, result).await
}

/// Sets a namespace's quota (superadmin). Machines already there stay, even over it.
pub async fn set_quota(state: &AppState, caller: &Caller, ns: &str, quota: flvpc_model::quota::Quota) -> ApiResult<()> {
    let (shown, name) = parsed(ns, NamespaceName::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        Ok(state.store.set_quota(&grant, &name?, &quota).await?)
    }
    .await;
    let detail = Some(format!("{quota:?}"));
    audited(state, caller, "namespace.quota", &shown, Some(&shown), detail, result).await
}

/// One namespace the caller is a member of, with the caller's role there.
pub async fn get_namespace(state: &AppState, caller: &Principal, name: &str) -> ApiResult<(Namespace, Role)> {
    let name = namespace_or_not_found(name)?;
    let grant = caller.namespace_member(&name)?;
    Ok((state.store.get_namespace(&grant).await?, grant.role()))
}

/// Deletes a namespace (superadmin), its machines, network and ports first.
pub async fn delete_namespace(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    let (shown, name) = parsed(name, NamespaceName::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        let name = name?;
        machines::drain_namespace(state, caller, &name).await?;
        Ok(state.store.delete_namespace(&grant, &name).await?)
    }
    .await;
    audited(state, caller, "namespace.delete", &shown, Some(&shown), None, result).await
}

/// The members of a namespace (members and superadmin).
pub async fn list_members(state: &AppState, caller: &Principal, ns: &str) -> ApiResult<Vec<Member>> {
    let ns = namespace_or_not_found(ns)?;
    let grant = caller.namespace_member(&ns)?;
    Ok(state.store.list_members(&grant).await?)
}

/// Adds a member or changes their role (superadmin). Returns true when added.
pub async fn set_member(state: &AppState, caller: &Caller, ns: &str, login: &str, role: &str) -> ApiResult<bool> {
    let (shown_ns, ns) = parsed(ns, NamespaceName::parse);
    let (shown, login) = parsed(login, Login::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        let role = Role::parse(role)?;
        let ns = ns?;
        let added = state.store.set_member(&grant, &ns, &login?, role).await?;
        keys_changed(state, Some(vec![ns]));
        Ok(added)
    }
    .await;
    let detail = Some(format!("role={}", role.chars().take(16).collect::<String>()));
    audited(state, caller, "member.set", &shown, Some(&shown_ns), detail, result).await
}

/// Removes a member (superadmin).
pub async fn remove_member(state: &AppState, caller: &Caller, ns: &str, login: &str) -> ApiResult<()> {
    let (shown_ns, ns) = parsed(ns, NamespaceName::parse);
    let (shown, login) = parsed(login, Login::parse);
    let result = async {
        let grant = caller.principal().superadmin()?;
        let ns = ns?;
        state.store.remove_member(&grant, &ns, &login?).await?;
        keys_changed(state, Some(vec![ns]));
        Ok(())
    }
    .await;
    audited(state, caller, "member.remove", &shown, Some(&shown_ns), None, result).await
}

/// The caller's SSH keys.
pub async fn list_keys(state: &AppState, caller: &Principal) -> ApiResult<Vec<SshKey>> {
    Ok(state.store.list_keys(caller).await?)
}

/// Adds an SSH key of the caller's.
pub async fn add_key(state: &AppState, caller: &Caller, name: &str, public_key: &str) -> ApiResult<SshKey> {
    let (shown, name) = parsed(name, KeyName::parse);
    let result = async {
        let name = name?;
        let key = PublicKey::parse(public_key)?;
        let added = state.store.add_key(caller.principal(), &name, &key).await?;
        keys_changed(state, Some(caller.principal().memberships().keys().cloned().collect()));
        Ok(added)
    }
    .await;
    let detail = result.as_ref().ok().map(|k| k.fingerprint.clone());
    audited(state, caller, "key.add", &shown, None, detail, result).await
}

/// Removes an SSH key of the caller's.
pub async fn delete_key(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    let (shown, name) = parsed(name, KeyName::parse);
    let result = async {
        state.store.delete_key(caller.principal(), &name?).await?;
        keys_changed(state, Some(caller.principal().memberships().keys().cloned().collect()));
        Ok(())
    }
    .await;
    audited(state, caller, "key.delete", &shown, None, None, result).await
}

/// The caller's named API tokens.
pub async fn list_tokens(state: &AppState, caller: &Principal) -> ApiResult<Vec<ApiToken>> {
    Ok(state.store.list_api_tokens(caller).await?)
}

/// Makes a named API token; the secret is in the result, once.
pub async fn create_token(state: &AppState, caller: &Caller, name: &str) -> ApiResult<(TokenName, IssuedToken)> {
    let (shown, name) = parsed(name, TokenName::parse);
    let result = async {
        let name = name?;
        let issued = state.store.create_api_token(caller.principal(), &name).await?;
        Ok((name, issued))
    }
    .await;
    audited(state, caller, "token.create", &shown, None, None, result).await
}

/// Revokes a named API token of the caller's.
pub async fn delete_token(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    let (shown, name) = parsed(name, TokenName::parse);
    let result = async { Ok(state.store.delete_api_token(caller.principal(), &name?).await?) }.await;
    audited(state, caller, "token.delete", &shown, None, None, result).await
}

/// The audit log: all of it for the superadmin, one namespace for its admins.
pub async fn audit_log(
    state: &AppState,
    caller: &Principal,
    namespace: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> ApiResult<Vec<AuditEntry>> {
    match namespace {
        None => {
            let grant = caller.superadmin()?;
            Ok(state.store.audit_all(&grant, before, limit).await?)
        }
        Some(ns) => {
            let ns = namespace_or_not_found(ns)?;
            let grant = caller.namespace_admin(&ns)?;
            Ok(state.store.audit_namespace(&grant, before, limit).await?)
        }
    }
}
