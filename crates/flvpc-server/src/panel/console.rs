//! A machine's console for the people of its namespace: a microVM's serial console (boot
//! messages, login prompt, a failed boot's last words), a container machine's journal. The text
//! is the tenant's own output: rendered as escaped text only, refreshed by the page's script
//! through the API (same authorization) while the page is open.

use super::layout::{self, page, seg, Nav};
use super::PanelUser;
use crate::core::{self, machines as ops};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use flvpc_model::EngineKind;
use maud::html;

/// Lines shown (and refreshed).
const LINES: usize = 200;

/// GET /namespaces/{ns}/machines/{name}/console.
pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let principal = user.caller.principal();
    if let Err(err) = core::get_namespace(&state, principal, &ns).await {
        return layout::error_page(err);
    }
    let machines = match ops::list(&state, principal, &ns).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let Some(machine) = machines.iter().find(|m| m.name.as_str() == name) else {
        return layout::error_page(core::CoreError::NotFound(format!("machine {name:?}")));
    };
    let vm = machine.placement.engine == EngineKind::MicroVm;
    let read = ops::console(&state, principal, &ns, &name, LINES).await;
    let url = format!("/api/v1/namespaces/{}/machines/{}/console?lines={LINES}", seg(&ns), seg(&name));
    let back = format!("/namespaces/{}#machines", seg(&ns));
    let page_of_machine = format!("/namespaces/{}/machines/{}", seg(&ns), seg(&name));
    let body = html! {
        p { a href=(back) { "← " (ns) } " · " a href=(page_of_machine) { "machine " (name) } }
        div.title-row {
            h1 { "Console of " (name) }
            span.badge title="what runs this machine" { @if vm { "microVM" } @else { "container" } }
            span class={ "state " (machine.observed.as_str()) } { (machine.observed.as_str()) }
        }
        @if vm {
            p.muted {
                "The VM's serial console (ttyS0): kernel and boot messages, then the login prompt. "
                @match &state.microvm.accelerator {
                    Some(accel) => { "Accelerator: " strong { (accel.to_uppercase()) } @if accel == "tcg" { " (software emulation: boots take about a minute)" } "." }
                    None => { "MicroVMs are not available on this server now." }
                }
            }
        } @else {
            p.muted { "The machine's system journal since its boot (systemd in a container logs there, not to a console)." }
        }
        @if let Some(error) = &machine.error {
            div.flash.error role="alert" { (error) }
        }
        @match read {
            Ok((_, text)) => {
                pre.console #console data-console-url=(url) aria-live="off" tabindex="0" aria-label={ "Console of " (name) } {
                    (if text.is_empty() { "(nothing yet)".to_owned() } else { text })
                }
                p.muted #console-status { "Refreshed every 2 seconds while this page is open." }
            }
            Err(err) => {
                p.empty role="status" { (super::user::say(&err)) }
            }
        }
    };
    page(&state, &user, &format!("Console of {name}"), Nav::Namespace, body)
}
