//! Reads: lists and gets that change and audit nothing, so they are typed functions rather
//! than actions. Each asks the policy for the grant its store call needs.

use super::error::CoreResult;
use super::namespace_or_not_found;
use crate::state::AppState;
use flvpc_model::{Principal, Role};
use flvpc_store::{ApiToken, AuditEntry, AuditFilter, Member, Namespace, SshKey, User};

/// The namespaces the caller may see, with the caller's effective role.
pub async fn visible_namespaces(state: &AppState, caller: &Principal) -> CoreResult<Vec<(Namespace, Role)>> {
    if let Ok(grant) = caller.superadmin() {
        let all = state.store.list_namespaces(&grant).await?;
        return Ok(all.into_iter().map(|ns| (ns, Role::Admin)).collect());
    }
    Ok(state.store.member_namespaces(caller).await?)
}

/// Every user (superadmin).
pub async fn list_users(state: &AppState, caller: &Principal) -> CoreResult<Vec<User>> {
    let grant = caller.superadmin()?;
    Ok(state.store.list_users(&grant).await?)
}

/// One namespace the caller is a member of, with the caller's role there.
pub async fn get_namespace(state: &AppState, caller: &Principal, name: &str) -> CoreResult<(Namespace, Role)> {
    let name = namespace_or_not_found(name)?;
    let grant = caller.namespace_member(&name)?;
    Ok((state.store.get_namespace(&grant).await?, grant.role()))
}

/// The members of a namespace (members and superadmin).
pub async fn list_members(state: &AppState, caller: &Principal, ns: &str) -> CoreResult<Vec<Member>> {
    let ns = namespace_or_not_found(ns)?;
    let grant = caller.namespace_member(&ns)?;
    Ok(state.store.list_members(&grant).await?)
}

/// The caller's SSH keys.
pub async fn list_keys(state: &AppState, caller: &Principal) -> CoreResult<Vec<SshKey>> {
    Ok(state.store.list_keys(caller).await?)
}

/// The caller's named API tokens.
pub async fn list_tokens(state: &AppState, caller: &Principal) -> CoreResult<Vec<ApiToken>> {
    Ok(state.store.list_api_tokens(caller).await?)
}

/// The audit log, newest first, as `filter` selects: all of it for the superadmin, one namespace
/// for its admins.
pub async fn audit_log(
    state: &AppState,
    caller: &Principal,
    namespace: Option<&str>,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: i64,
) -> CoreResult<Vec<AuditEntry>> {
    match namespace {
        None => {
            let grant = caller.superadmin()?;
            Ok(state.store.audit_all(&grant, filter, before, limit).await?)
        }
        Some(ns) => {
            let ns = namespace_or_not_found(ns)?;
            let grant = caller.namespace_admin(&ns)?;
            Ok(state.store.audit_namespace(&grant, filter, before, limit).await?)
        }
    }
}
