//! A namespace's page: its members (managed by the superadmin), its machines and its activity.

use super::admin::audit_table;
use super::form::{form_error, with_status, Failed};
use super::layout::{self, csrf_field, danger_button, page, seg, time, Nav};
use super::session::CsrfForm;
use super::user::{redirect_with, Flash};
use super::PanelUser;
use crate::core::{self, Action, CoreError, CoreResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use flvpc_model::Role;
use maud::{html, Markup};
use serde::Deserialize;

/// GET /namespaces/{ns}: members see it; others are told it does not exist.
pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    render(&state, &user, &headers, &name).await
}

/// Redirects to `to` with the success message `result` holds, or shows the namespace page `ns` again with the
/// refusal next to the form that was sent (`failed` names it and keeps what was typed). Every
/// form of the namespace page (members, machines, spec, quota) ends here.
pub async fn finish(
    state: &AppState,
    user: PanelUser,
    headers: &HeaderMap,
    ns: &str,
    to: &str,
    result: CoreResult<String>,
    failed: impl FnOnce(&CoreError) -> Failed,
) -> Response {
    match result {
        Ok(message) => redirect_with(state, to, Flash::ok(message)),
        Err(err) => {
            let user = user.refused(failed(&err));
            with_status(&err, render(state, &user, headers, ns).await)
        }
    }
}

/// The namespace page `name` for `user` (with the refusal `user.failed`, if any).
pub async fn render(state: &AppState, user: &PanelUser, headers: &HeaderMap, name: &str) -> Response {
    let principal = user.caller.principal();
    let (ns, role) = match core::get_namespace(state, principal, name).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(err),
    };
    let members = match core::list_members(state, principal, name).await {
        Ok(m) => m,
        Err(err) => return layout::error_page(err),
    };
    let superadmin = principal.is_superadmin();
    let activity = if role == Role::Admin {
        core::audit_log(state, principal, Some(name), &Default::default(), None, 15).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let users = if superadmin { core::list_users(state, principal).await.unwrap_or_default() } else { Vec::new() };
    let base = format!("/namespaces/{}", seg(ns.name.as_str()));
    let machines_section = super::machines::section(state, user, headers, &ns.name, role).await;
    let resources_section = super::capacity::namespace_section(state, user, &ns.name).await;
    // What deleting the namespace destroys, counted when the page is drawn.
    let machine_count = if superadmin {
        core::machines::list(state, principal, name).await.map(|m| m.iter().count()).unwrap_or(0)
    } else {
        0
    };
    let delete_action = format!("{base}/delete");
    let body = html! {
        @if superadmin {
            (layout::crumbs(&[("Namespaces", "/admin/namespaces")], ns.name.as_str()))
        } @else {
            (layout::crumbs(&[], ns.name.as_str()))
        }
        div.title-row {
            h1 { (ns.name.as_str()) }
            span class={ "badge " (role.as_str()) } title="your role here" { (role.as_str()) }
            span.muted { "created " (time(ns.created_at)) }
        }
        (tabs(role == Role::Admin))
        (machines_section)
        (resources_section)
        section #members {
            h2 { "Members" }
            @if members.is_empty() { p.empty { "No members yet." } } @else {
                table {
                    thead { tr { th { "Login" } th { "Role" } @if superadmin { th {} } } }
                    tbody {
                        @for m in &members {
                            tr {
                                td { (m.login.as_str()) }
                                td { span class={ "badge " (m.role.as_str()) } { (m.role.as_str()) } }
                                @if superadmin {
                                    td.actions {
                                        form.inline method="post" action={ (base) "/members" } {
                                            (csrf_field(user))
                                            input type="hidden" name="login" value=(m.login.as_str());
                                            input type="hidden" name="role" value=(if m.role == Role::Admin { "user" } else { "admin" });
                                            button type="submit" aria-label={ "Make " (m.login.as_str()) " " (if m.role == Role::Admin { "a user" } else { "an admin" }) } {
                                                "Make " (if m.role == Role::Admin { "user" } else { "admin" }) }
                                        }
                                        (danger_button(user, &format!("{base}/members/{}/delete", seg(m.login.as_str())), "Remove",
                                            &format!("Remove {} from {}", m.login.as_str(), ns.name.as_str()),
                                            &format!("Remove {} from {}?", m.login.as_str(), ns.name.as_str())))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if superadmin {
                @let candidates: Vec<_> = users.iter().filter(|u| !u.superadmin && !members.iter().any(|m| m.login == u.login)).collect();
                @if candidates.is_empty() {
                    p.empty { "Every user is already a member. " a href="/admin/users" { "Create a user" } " to add someone new." }
                } @else {
                    form.card.row method="post" action={ (base) "/members" } {
                        (csrf_field(user))
                        (form_error(user, &format!("{base}/members")))
                        label { "User"
                            select name="login" required {
                                @for u in &candidates { option value=(u.login.as_str()) { (u.login.as_str()) } }
                            }
                        }
                        label { "Role"
                            select name="role" { option value="user" { "user — use, start and stop machines" } option value="admin" { "admin — also define, create and delete them" } }
                        }
                        button.primary type="submit" { "Add member" }
                    }
                }
            }
        }
        @if role == Role::Admin {
            section #activity { h2 { "Activity" } (audit_table(&activity)) }
        }
        @if superadmin {
            section.danger-zone #delete {
                h2 { "Delete namespace" }
                p {
                    "Deletes the namespace " strong { (ns.name.as_str()) } " and everything in it: "
                    strong { (machine_count) " machine" @if machine_count != 1 { "s" } }
                    " with their disks, its cluster spec, quota and memberships. This cannot be undone."
                }
                form.row method="post" action=(delete_action) {
                    (csrf_field(user))
                    (form_error(user, &delete_action))
                    label { span { "Type " strong { (ns.name.as_str()) } " to confirm" }
                        input name="confirm" required autocomplete="off" spellcheck="false" value=[user.typed(&delete_action, "confirm")]; }
                    button.danger type="submit" { "Delete namespace" }
                }
            }
        }
    };
    page(state, user, ns.name.as_str(), Nav::Namespace, body)
}

/// The namespace page's tabs: links to its sections (their ids are what other pages and the
/// forms' redirects link to); the script marks the one in view. Activity is only on the page of the namespace's admins.
fn tabs(admin: bool) -> Markup {
    let mut items =
        vec![("machines", "Machines"), ("spec", "Spec"), ("resources", "Resources"), ("members", "Members")];
    if admin {
        items.push(("activity", "Activity"));
    }
    html! {
        nav.tabs aria-label="Sections of this namespace" {
            @for (id, label) in items { a href={ "#" (id) } data-tab=(id) { (label) } }
        }
    }
}

/// The add/change member form.
#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    _csrf: String,
    login: String,
    role: String,
}

/// POST /namespaces/{ns}/members.
pub async fn set_member(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::SetMember { ns: ns.clone(), login: form.login.clone(), role: form.role.clone() };
    let result = user.act(&state, action).await.and_then(|o| o.into_added());
    let to = format!("/namespaces/{}", seg(&ns));
    let ok = |added| {
        if added {
            format!("{} added as {}.", form.login, form.role)
        } else {
            format!("{} is now {}.", form.login, form.role)
        }
    };
    let action = format!("{to}/members");
    finish(&state, user, &headers, &ns, &to, result.map(ok), |err| Failed::new(action, err)).await
}

/// POST /namespaces/{ns}/members/{login}/delete.
pub async fn remove_member(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path((ns, login)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = user.act(&state, Action::RemoveMember { ns: ns.clone(), login: login.clone() }).await.map(drop);
    let to = format!("/namespaces/{}", seg(&ns));
    let action = format!("{to}/members/{}/delete", seg(&login));
    let ok = |()| format!("{login} removed from {ns}.");
    finish(&state, user, &headers, &ns, &to, result.map(ok), |err| Failed::new(action, err)).await
}

/// The namespace deletion form: the namespace's name, typed to confirm.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    confirm: String,
}

/// The refusal of a deletion whose typed confirmation is not `name` (a namespace's, for its own
/// deletion or its cluster's): a form sent without it never deletes anything.
pub fn confirmation_refusal(typed: &str, name: &str, what: &str) -> Option<CoreError> {
    (typed.trim() != name).then(|| {
        CoreError::Invalid(format!(
            "nothing was deleted: to delete {what}, type the namespace's name, {name}, in the box and press the button again"
        ))
    })
}

/// POST /namespaces/{ns}/delete: deletes only when the namespace's name was typed.
pub async fn delete(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = match confirmation_refusal(&form.confirm, &ns, &format!("the namespace {ns} and all its machines")) {
        Some(refusal) => Err(refusal),
        None => user.act(&state, Action::DeleteNamespace { ns: ns.clone() }).await,
    };
    match result {
        Ok(_) => redirect_with(&state, "/admin/namespaces", Flash::ok(format!("Namespace {ns} deleted."))),
        Err(err) => {
            let action = format!("/namespaces/{}/delete", seg(&ns));
            let user = user.refused(Failed::new(action, &err).typed("confirm", &form.confirm));
            with_status(&err, render(&state, &user, &headers, &ns).await)
        }
    }
}
