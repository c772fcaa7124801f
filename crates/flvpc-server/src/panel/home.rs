//! The dashboard.

use super::layout::{self, page, seg, time, Nav};
use super::PanelUser;
use crate::core as ops;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use maud::html;

/// GET /: my namespaces with my role; for the superadmin every namespace and recent activity.
pub async fn dashboard(State(state): State<AppState>, user: PanelUser) -> Response {
    let principal = user.caller.principal();
    let namespaces = match ops::visible_namespaces(&state, principal).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let keys = ops::list_keys(&state, principal).await.map(|k| k.len()).unwrap_or(0);
    let activity = if principal.is_superadmin() {
        ops::audit_log(&state, principal, None, None, 8).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { "Dashboard" }
        @if keys == 0 {
            div.card.hint {
                strong { "Add an SSH key" }
                p { "Machines accept the SSH keys of every member of their namespace. " a href="/account#keys" { "Add your public key" } " to be able to log in." }
            }
        }
        section {
            h2 { @if principal.is_superadmin() { "All namespaces" } @else { "My namespaces" } }
            @if namespaces.is_empty() {
                div.empty {
                    @if principal.is_superadmin() {
                        p { "No namespaces yet." }
                        p { a.button.primary href="/admin/namespaces" { "Create the first namespace" } }
                    } @else {
                        p { "You are not a member of any namespace yet." }
                        p.muted { "Ask the superadmin to add you to one." }
                    }
                }
            } @else {
                div.grid {
                    @for (ns, role) in &namespaces {
                        a.card.tile href={ "/namespaces/" (seg(ns.name.as_str())) } {
                            h3 { (ns.name.as_str()) }
                            p { span class={ "badge " (role.as_str()) } { (role.as_str()) } }
                            p.muted { (ns.members) " member" @if ns.members != 1 { "s" } }
                        }
                    }
                }
            }
        }
        @if principal.is_superadmin() {
            section {
                h2 { "Recent activity" }
                @if activity.is_empty() { p.empty { "Nothing yet." } } @else {
                    table {
                        thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Outcome" } } }
                        tbody {
                            @for a in &activity {
                                tr {
                                    td { (time(a.at)) }
                                    td { (a.actor.as_deref().unwrap_or("—")) }
                                    td { code { (a.action) } }
                                    td { (a.target) }
                                    td { span class={ "outcome " @if a.outcome == "ok" { "ok" } @else { "bad" } } { (a.outcome) } }
                                }
                            }
                        }
                    }
                    p { a href="/admin/audit" { "The whole audit log →" } }
                }
            }
        }
    };
    page(&state, &user, "Dashboard", Nav::Home, body)
}
