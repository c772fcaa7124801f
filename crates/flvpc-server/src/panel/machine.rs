//! A machine's own page, for the people of its namespace: its state (kept live by the page's
//! script from the event stream), its error, what runs it and with what resources, the last
//! hour's graphs, ports and SSH commands, the last lines of its console, its operations, and
//! the actions the caller may take (the table's own forms and routes).

use super::chart::machine_charts;
use super::form::{form_error, with_status, Failed};
use super::layout::{self, copyable, csrf_field, page, seg, time, Nav};
use super::user::{redirect_with, Flash};
use super::PanelUser;
use crate::access::server_host;
use crate::core::view::{MachineView, Reach};
use crate::core::{self, machines as ops, CoreError, CoreResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use flvpc_model::{Observed, OperationState};
use flvpc_store::{Desired, MachineRecord, Operation};
use maud::{html, Markup};
use std::time::Duration;

/// Console lines shown inline (the console page shows more, refreshed).
const CONSOLE_LINES: usize = 20;
/// Lines of a microVM's console shown with its error: the last words of a boot that failed.
const ERROR_LINES: usize = 8;
/// A console that cannot be read this fast does not hold the page up; the console page waits longer.
const CONSOLE_WAIT: Duration = Duration::from_secs(3);
/// The namespace's operations searched for this machine's (newest first) and how many are shown.
const OPERATIONS_READ: i64 = 100;
const OPERATIONS_SHOWN: usize = 10;
/// The value of the hidden `back` field of the page's action forms: come back here, not to the table.
pub const BACK_HERE: &str = "machine";

/// GET /namespaces/{ns}/machines/{name}: members see it; others get the panel's 404 page.
pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    render(&state, &user, &headers, &ns, &name).await
}

/// GET /namespaces/{ns}/machines/{name}/charts: the page's charts alone (an HTML fragment), for
/// its script to redraw them with the sampler's newest points (members; others the 404 page).
pub async fn charts(
    State(state): State<AppState>,
    user: PanelUser,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let machines = match ops::list(&state, user.caller.principal(), &ns).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let Some(record) = machines.iter().find(|m| m.name.as_str() == name) else {
        return layout::error_page(CoreError::NotFound(format!("machine {name:?} in namespace {ns:?}")));
    };
    let points = state.usage.points(&ns, &name);
    axum::response::IntoResponse::into_response(axum::response::Html(
        machine_charts(&points, record.memory_mb).into_string(),
    ))
}

/// This page's path.
pub fn path(ns: &str, name: &str) -> String {
    format!("/namespaces/{}/machines/{}", seg(ns), seg(name))
}

/// After an action posted from this page: back here with its message, or this page again with
/// the refusal inside the form that was sent.
pub async fn finish(
    state: &AppState,
    user: PanelUser,
    headers: &HeaderMap,
    (ns, name): (&str, &str),
    result: CoreResult<String>,
    failed: impl FnOnce(&CoreError) -> Failed,
) -> Response {
    match result {
        Ok(message) => redirect_with(state, &path(ns, name), Flash::ok(message)),
        Err(err) => {
            let user = user.refused(failed(&err));
            with_status(&err, render(state, &user, headers, ns, name).await)
        }
    }
}

/// The page of machine `name` of namespace `ns` for `user`.
pub async fn render(state: &AppState, user: &PanelUser, headers: &HeaderMap, ns: &str, name: &str) -> Response {
    let principal = user.caller.principal();
    let (namespace, _role) = match core::get_namespace(state, principal, ns).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(err),
    };
    let machines = match ops::list(state, principal, ns).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let Some(record) = machines.iter().find(|m| m.name.as_str() == name) else {
        return layout::error_page(CoreError::NotFound(format!("machine {name:?} in namespace {ns:?}")));
    };
    let host = server_host(headers);
    let reach =
        Reach { login: principal.login().as_str(), host: &host, ssh_port: state.config.ssh_port, hosts: &state.hosts };
    let view = MachineView::new(record, reach, &state.usage);
    // The operations whose targets include this machine: the store keeps them per namespace.
    let operations: Vec<Operation> = match principal.namespace_member(&namespace.name) {
        Ok(grant) => state.store.namespace_operations(&grant, OPERATIONS_READ).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
    .into_iter()
    .filter(|op| {
        op.targets.iter().any(|t| t.as_str() == name) || op.machine.as_ref().is_some_and(|m| m.as_str() == name)
    })
    .take(OPERATIONS_SHOWN)
    .collect();
    let console = read_console(state, user, ns, name).await;
    let points = state.usage.points(ns, name);
    let body = html! {
        p { a href={ "/namespaces/" (seg(ns)) "#machines" } { "← " (ns) } }
        section #machine data-namespace=(ns) data-machine=(name) {
            div.title-row {
                h1 { (name) }
                span class={ "state " (view.state) } data-state data-engine=(view.engine) { (view.state_word()) }
                @if view.engine == "microvm" { span.badge title="a microVM: its own kernel" { "VM" } }
                div.actions { (actions(user, ns, &view)) }
            }
            (error_box(view.error.as_deref(), view.engine == "microvm", &console))
            (facts(record, &view))
            h2 { "Last hour" }
            (machine_charts(&points, view.memory_mb))
            h2 { "Access" }
            (access(&view))
            // A root shell is for the namespace's members (the superadmin's role elsewhere is not one).
            @if principal.role_in(&namespace.name).is_some() {
                p { a href={ (path(ns, name)) "/terminal" } data-terminal-link { "Open a terminal" } " — a root shell on " (name) " in this browser." }
            }
            h2 { "Console" }
            (console_section(ns, name, &console))
            h2 { "Operations" }
            (operations_table(&operations))
        }
    };
    page(state, user, &format!("{name} · {ns}"), Nav::Namespace, body)
}

/// The last `lines` lines of `name`'s console, or why not, within [`CONSOLE_WAIT`].
async fn read_console(state: &AppState, user: &PanelUser, ns: &str, name: &str) -> Result<String, String> {
    let read = ops::console(state, user.caller.principal(), ns, name, CONSOLE_LINES);
    match tokio::time::timeout(CONSOLE_WAIT, read).await {
        Ok(Ok((_, text))) => Ok(text),
        Ok(Err(err)) => Err(super::user::say(&err)),
        Err(_) => Err(format!("the console was not read within {} s: open the console page", CONSOLE_WAIT.as_secs())),
    }
}

/// The machine's error, if any (kept in the page, hidden, for the script to fill in live); a
/// microVM's with the last lines of its console, where a boot that failed says why.
fn error_box(error: Option<&str>, vm: bool, console: &Result<String, String>) -> Markup {
    let tail = match (error, console) {
        (Some(_), Ok(text)) if vm => last_lines(text, ERROR_LINES),
        _ => String::new(),
    };
    html! {
        div.flash.error role="alert" data-error hidden[error.is_none()] {
            span data-error-text { (error.unwrap_or_default()) }
            @if !tail.is_empty() {
                p { "The console's last lines:" }
                pre.console.small tabindex="0" { (tail) }
            }
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Start, stop, restart, as in the machines table (the same routes, confirmations and labels),
/// with `back` so the answer comes back to this page.
fn actions(user: &PanelUser, ns: &str, view: &MachineView) -> Markup {
    let button = |verb: &str, label: &str, confirm: Option<String>| {
        let target = format!("{}/{verb}", path(ns, &view.name));
        html! {
            form.inline method="post" action=(target) data-confirm=[confirm] {
                (csrf_field(user))
                input type="hidden" name="back" value=(BACK_HERE);
                (form_error(user, &target))
                button type="submit" aria-label={ (label) " " (view.name) } { (label) }
            }
        }
    };
    let restart = format!("Restart {}? Its processes are stopped and started again.", view.name);
    html! {
        @if view.desired == Desired::Running {
            (button("restart", "Restart", Some(restart)))
            (button("stop", "Stop", None))
        } @else if view.desired == Desired::Stopped {
            (button("start", "Start", None))
        }
    }
}

/// What the machine is: engine, image, resources, address, how long it has been up.
fn facts(record: &MachineRecord, view: &MachineView) -> Markup {
    let engine =
        if view.engine == "microvm" { "microVM (its own kernel, in QEMU)" } else { "container (systemd in Docker)" };
    let up = (record.observed == Observed::Running && record.observed_at > 0).then_some(record.observed_at);
    html! {
        dl.facts {
            div { dt { "State" } dd { span data-state-text data-engine=(view.engine) { (view.state_word()) } " · meant to be " (view.desired.as_str()) } }
            div { dt { "Up since" } dd data-uptime {
                @match up {
                    Some(at) => { (time(at)) " (" (for_how_long(at)) ")" }
                    None => { "—" }
                }
            } }
            div { dt { "Engine" } dd { (engine) } }
            div { dt { "Image" } dd { code { (view.image) } } }
            div { dt { "CPUs" } dd { (view.cpus) @if let Some(cap) = view.cpu_cap { " (capped at " (cap) ")" } } }
            div { dt { "Memory" } dd {
                (view.memory_mb) " MB"
                @if let Some(used) = view.memory_used_mb { span.muted { " · " (format!("{used:.0}")) " MB used" } }
                @if view.oom_kills > 0 { br; span.error-text { (view.oom_kills) " process(es) killed for exceeding it" } }
            } }
            div { dt { "Disk" } dd {
                (view.disk_gb) " GB "
                @if view.disk_enforced { span.muted { "(its own disk: a hard limit)" } }
                @else { span.muted { "(recorded, not enforced by this host's storage driver)" } }
            } }
            div { dt { "IP" } dd data-ip { (view.ip.clone().unwrap_or_else(|| "—".into())) } }
            div { dt { "Host" } dd { (view.host) } }
        }
    }
}

/// "5 min", "3 h 12 min", "2 days".
fn for_how_long(since_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(since_ms);
    let minutes = (now - since_ms).max(0) / 60_000;
    match minutes {
        0 => "less than a minute".to_owned(),
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days", m / (24 * 60)),
    }
}

/// Ports, and SSH commands while the machine runs (the script shows and hides them live).
fn access(view: &MachineView) -> Markup {
    let up = view.state == "running";
    html! {
        @if view.ports.is_empty() {
            p.muted { "No published ports." }
        } @else {
            p { "Ports (host → machine): "
                @for p in &view.ports { code { (p.host_port) "→" (p.container_port) "/" (p.protocol) } " " } }
        }
        div.ssh data-ssh hidden[!up] {
            @if let Some(direct) = &view.ssh.direct { (copyable(direct, false, Some("straight to the machine's SSH port"))) }
            (copyable(&view.ssh.jump, false, Some("through the flvpc SSH gateway")))
        }
        p.muted data-ssh-off hidden[up] { "SSH commands are shown while the machine runs." }
    }
}

fn console_section(ns: &str, name: &str, console: &Result<String, String>) -> Markup {
    html! {
        p.muted { "The last " (CONSOLE_LINES) " lines. "
            a href={ (path(ns, name)) "/console" } { "Open the console" } " (more lines, refreshed while open)." }
        @match console {
            Ok(text) => pre.console #console-tail tabindex="0" aria-label={ "Last lines of the console of " (name) } {
                (if text.trim().is_empty() { "(nothing yet)".to_owned() } else { last_lines(text, CONSOLE_LINES) })
            },
            Err(why) => p.empty role="status" { (why) },
        }
    }
}

fn operations_table(operations: &[Operation]) -> Markup {
    html! {
        @if operations.is_empty() {
            p.empty { "No operations on this machine yet." }
        } @else {
            table.operations {
                thead { tr { th { "Started" } th { "Operation" } th { "By" } th { "State" } th { "Finished" } } }
                tbody {
                    @for op in operations {
                        tr data-operation-row=(op.id) {
                            td data-label="Started" { (time(op.created_at)) }
                            td data-label="Operation" { code { (op.kind) } @if op.total > 1 { span.muted { " (" (op.total) " machines)" } } }
                            td data-label="By" { (op.created_by) }
                            td data-label="State" {
                                span class={ "outcome " (outcome(op.state)) } data-op-state { (op.state.as_str()) }
                                @if let Some(e) = &op.error { br; span.error-text { (e) } }
                            }
                            td data-label="Finished" { @if let Some(at) = op.finished_at { (time(at)) } @else { "—" } }
                        }
                    }
                }
            }
        }
    }
}

fn outcome(state: OperationState) -> &'static str {
    match state {
        OperationState::Succeeded => "ok",
        OperationState::Failed => "bad",
        _ => "open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_are_the_newest() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn a_vm_that_failed_shows_its_console_last_lines_as_text() {
        let console: Result<String, String> =
            Ok((1..=30).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n") + "\n<script>x</script>\n");
        let vm = error_box(Some("the VM did not boot within 300 s"), true, &console).into_string();
        assert!(vm.contains("the VM did not boot within 300 s") && vm.contains("The console's last lines:"), "{vm}");
        assert!(vm.contains("line 24") && !vm.contains("line 23\n"), "the last {ERROR_LINES} lines: {vm}");
        assert!(vm.contains("&lt;script&gt;") && !vm.contains("<script>"), "escaped: {vm}");
        assert!(!vm.contains("hidden"), "shown: {vm}");
        let container = error_box(Some("port taken"), false, &console).into_string();
        assert!(container.contains("port taken") && !container.contains("line 30"), "{container}");
        let fine = error_box(None, true, &console).into_string();
        assert!(fine.contains("hidden") && !fine.contains("line 30"), "kept hidden for the script: {fine}");
        let unread = error_box(Some("did not boot"), true, &Err("no console".into())).into_string();
        assert!(unread.contains("did not boot") && !unread.contains("last lines"), "{unread}");
    }

    #[test]
    fn the_console_tail_is_escaped_text() {
        let html = console_section("team", "web0", &Ok("<b>boot</b>\n".into())).into_string();
        assert!(
            html.contains("&lt;b&gt;boot&lt;/b&gt;") && html.contains("/namespaces/team/machines/web0/console"),
            "{html}"
        );
        let refused = console_section("team", "web0", &Err("start it first".into())).into_string();
        assert!(refused.contains("start it first") && !refused.contains("<pre"), "{refused}");
    }

    #[test]
    fn durations_read_as_words() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
        assert_eq!(for_how_long(now), "less than a minute");
        assert_eq!(for_how_long(now - 5 * 60_000 - 1000), "5 min");
        assert_eq!(for_how_long(now - 192 * 60_000 - 1000), "3 h 12 min");
        assert_eq!(for_how_long(now - 3 * 24 * 3_600_000), "3 days");
    }
}
