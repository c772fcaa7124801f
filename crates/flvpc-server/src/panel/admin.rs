//! Superadmin pages: users, namespaces, the audit log.

use super::form::{form_error, with_status, Failed};
use super::layout::{self, csrf_field, danger_button, page, seg, time, Nav};
use super::session::CsrfForm;
use super::user::{redirect_with, Flash};
use super::PanelUser;
use crate::core::{self, Action, CoreError, CoreResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use maud::html;
use serde::Deserialize;

/// The refusal page for anyone but the superadmin; None for the superadmin.
pub(super) fn superadmin_refusal(user: &PanelUser) -> Option<Response> {
    user.caller.principal().superadmin().err().map(|d| layout::error_page(d.into()))
}

/// Redirects to `to` with a success message, or shows the users page again with the refusal next
/// to the form that was sent.
async fn finish_users<T>(
    state: &AppState,
    user: PanelUser,
    result: CoreResult<T>,
    ok: impl FnOnce(T) -> String,
    failed: impl FnOnce(&CoreError) -> Failed,
) -> Response {
    match result {
        Ok(value) => redirect_with(state, "/admin/users", Flash::ok(ok(value))),
        Err(err) => {
            let user = user.refused(failed(&err));
            with_status(&err, users_page(state, &user).await)
        }
    }
}

/// GET /admin/users.
pub async fn users(State(state): State<AppState>, user: PanelUser) -> Response {
    users_page(&state, &user).await
}

async fn users_page(state: &AppState, user: &PanelUser) -> Response {
    if let Some(denied) = superadmin_refusal(user) {
        return denied;
    }
    let list = match core::list_users(state, user.caller.principal()).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let body = html! {
        h1 { "Users" }
        table {
            thead { tr { th { "Login" } th { "Namespaces" } th { "Created" } th {} } }
            tbody {
                @for u in &list {
                    tr {
                        td { (u.login.as_str()) @if u.superadmin { " " span.badge.super { "superadmin" } } }
                        td {
                            @if u.namespaces.is_empty() { span.muted { "none" } }
                            @for (ns, role) in &u.namespaces {
                                a.chip href={ "/namespaces/" (seg(ns.as_str())) } { (ns.as_str()) " · " (role.as_str()) } " "
                            }
                        }
                        td { (time(u.created_at)) }
                        td.actions {
                            @let reset = format!("/admin/users/{}/password", seg(u.login.as_str()));
                            // Open when its form was refused, so the refusal inside it is seen.
                            details.inline open[user.failed_at(&reset)] {
                                summary { "Reset password" }
                                form.row method="post" action=(reset) {
                                    (csrf_field(user))
                                    (form_error(user, &reset))
                                    input name="password" type="password" placeholder="new password" minlength="8" required autocomplete="new-password";
                                    button type="submit" { "Set" }
                                }
                            }
                            @if !u.superadmin {
                                (danger_button(user, &format!("/admin/users/{}/delete", seg(u.login.as_str())), "Delete",
                                    &format!("Delete the user {}", u.login.as_str()),
                                    &format!("Delete {}? Their memberships, keys and tokens go too, and they are signed out at once.", u.login.as_str())))
                            }
                        }
                    }
                }
            }
        }
        @if list.len() <= 1 { p.empty { "Only you so far. Create the people of your team below, then give them roles on a namespace page." } }
        h2 { "New user" }
        form.card.row method="post" action="/admin/users" {
            (csrf_field(user))
            (form_error(user, "/admin/users"))
            label { "Login" input name="login" required pattern="[a-z][a-z0-9._\\-]{0,31}" title="a lowercase letter, then up to 31 of a-z 0-9 . _ -"
                value=[user.typed("/admin/users", "login")]; }
            label { "Password" input name="password" type="password" required minlength="8" autocomplete="new-password"; }
            button.primary type="submit" { "Create user" }
        }
    };
    page(state, user, "Users", Nav::Users, body)
}

/// The new-user form.
#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    _csrf: String,
    login: String,
    password: String,
}

/// POST /admin/users.
pub async fn create_user(State(state): State<AppState>, user: PanelUser, Form(form): Form<NewUserForm>) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::CreateUser { login: form.login.clone(), password: form.password };
    let result = user.act(&state, action).await.and_then(|o| o.into_user());
    let ok = |u: flvpc_store::User| {
        format!("User {} created. Add them to a namespace to give them a role.", u.login.as_str())
    };
    // The login is typed back; the password never is.
    finish_users(&state, user, result, ok, |err| Failed::new("/admin/users", err).typed("login", &form.login)).await
}

/// POST /admin/users/{login}/delete.
pub async fn delete_user(
    State(state): State<AppState>,
    user: PanelUser,
    Path(login): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = user.act(&state, Action::DeleteUser { login: login.clone() }).await.map(drop);
    let action = format!("/admin/users/{}/delete", seg(&login));
    finish_users(&state, user, result, |()| format!("User {login} deleted."), |err| Failed::new(action, err)).await
}

/// The reset-password form.
#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    _csrf: String,
    password: String,
}

/// POST /admin/users/{login}/password.
pub async fn reset_password(
    State(state): State<AppState>,
    user: PanelUser,
    Path(login): Path<String>,
    Form(form): Form<ResetForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::SetPassword { login: login.clone(), current: None, new: form.password };
    let result = user.act(&state, action).await.map(drop);
    let action = format!("/admin/users/{}/password", seg(&login));
    let ok = |()| format!("Password of {login} set; their sessions were signed out and their API tokens revoked.");
    finish_users(&state, user, result, ok, |err| Failed::new(action, err)).await
}

/// GET /admin/namespaces.
pub async fn namespaces(State(state): State<AppState>, user: PanelUser) -> Response {
    namespaces_page(&state, &user).await
}

async fn namespaces_page(state: &AppState, user: &PanelUser) -> Response {
    if let Some(denied) = superadmin_refusal(user) {
        return denied;
    }
    let list = match core::visible_namespaces(state, user.caller.principal()).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let body = html! {
        h1 { "Namespaces" }
        @if list.is_empty() {
            div.empty { p { "No namespaces yet. A namespace is a team's own cluster of machines, network and members." } }
        } @else {
            table {
                thead { tr { th { "Name" } th { "Members" } th { "Created" } } }
                tbody {
                    @for (ns, _) in &list {
                        tr {
                            td { a href={ "/namespaces/" (seg(ns.name.as_str())) } { (ns.name.as_str()) } }
                            td { (ns.members) }
                            td { (time(ns.created_at)) }
                        }
                    }
                }
            }
        }
        h2 { "New namespace" }
        form.card.row method="post" action="/admin/namespaces" {
            (csrf_field(user))
            (form_error(user, "/admin/namespaces"))
            label { "Name" input name="name" required pattern="[a-z][a-z0-9\\-]{0,30}" title="a lowercase letter, then up to 30 of a-z 0-9 -" placeholder="team1"
                value=[user.typed("/admin/namespaces", "name")]; }
            button.primary type="submit" { "Create namespace" }
        }
    };
    page(state, user, "Namespaces", Nav::Namespaces, body)
}

/// The new-namespace form.
#[derive(Deserialize)]
pub struct NewNamespaceForm {
    #[serde(default)]
    _csrf: String,
    name: String,
}

/// POST /admin/namespaces.
pub async fn create_namespace(
    State(state): State<AppState>,
    user: PanelUser,
    Form(form): Form<NewNamespaceForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    match user
        .act(&state, Action::CreateNamespace { name: form.name.clone(), quota: None })
        .await
        .and_then(|o| o.into_namespace())
    {
        Ok(ns) => super::user::redirect_with(
            &state,
            &format!("/namespaces/{}", seg(ns.name.as_str())),
            super::user::Flash::ok(format!("Namespace {} created. Add its members below.", ns.name.as_str())),
        ),
        Err(err) => {
            let user = user.refused(Failed::new("/admin/namespaces", &err).typed("name", &form.name));
            with_status(&err, namespaces_page(&state, &user).await)
        }
    }
}

/// A table of audit records (also used on namespace pages).
pub fn audit_table(entries: &[flvpc_store::AuditEntry]) -> maud::Markup {
    html! {
        @if entries.is_empty() { p.empty { "Nothing recorded yet." } } @else {
            table.audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "From" } th { "Outcome" } } }
                tbody {
                    @for a in entries {
                        tr {
                            td { (time(a.at)) }
                            td { (a.actor.as_deref().unwrap_or("—")) }
                            td { code { (a.action) } @if let Some(d) = &a.detail { " " span.muted { (d) } } }
                            td { (a.target) }
                            td { (a.source.as_deref().unwrap_or("—")) }
                            td { span class={ "outcome " @if a.outcome == "ok" { "ok" } @else { "bad" } } { (a.outcome) } }
                        }
                    }
                }
            }
        }
    }
}
