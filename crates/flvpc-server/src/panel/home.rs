//! The dashboard.

use super::layout::{self, page, seg, time, Nav};
use super::PanelUser;
use crate::access::server_host;
use crate::core as ops;
use crate::core::view::{MachineView, Reach};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};

/// What a namespace's tile says about its machines: counts by state and their use now.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    running: usize,
    stopped: usize,
    other: usize,
    /// CPU in use by the running machines, in percent of one CPU (the sampler's unit).
    cpu_percent: f64,
    memory_used_mb: f64,
    memory_mb: u64,
    /// How many machines the sampler has measured: usage is only shown once it has.
    sampled: usize,
}

impl Tally {
    fn of(machines: &[MachineView]) -> Self {
        let mut t = Tally::default();
        for m in machines {
            t.add(&m.state, m.cpu_percent, m.memory_used_mb, m.memory_mb);
        }
        t
    }

    /// Counts one machine in `state`; its use (known while it runs) and, when it runs, its memory.
    fn add(&mut self, state: &str, cpu_percent: Option<f64>, memory_used_mb: Option<f64>, memory_mb: u64) {
        match state {
            "running" => {
                self.running += 1;
                self.memory_mb += memory_mb;
            }
            "stopped" => self.stopped += 1,
            _ => self.other += 1,
        }
        if cpu_percent.is_some() || memory_used_mb.is_some() {
            self.sampled += 1;
        }
        self.cpu_percent += cpu_percent.unwrap_or(0.0);
        self.memory_used_mb += memory_used_mb.unwrap_or(0.0);
    }

    fn total(&self) -> usize {
        self.running + self.stopped + self.other
    }

    fn markup(&self) -> Markup {
        html! {
            @if self.total() == 0 {
                p.muted.counts { "No machines yet" }
            } @else {
                p.counts aria-label="machines by state" {
                    span.state.running data-count="running" { (self.running) " running" } " "
                    span.state.stopped data-count="stopped" { (self.stopped) " stopped" } " "
                    @if self.other > 0 { span.state data-count="other" { (self.other) " other" } }
                }
                @if self.running > 0 && self.sampled == 0 {
                    p.usage.muted { "Use not measured yet" }
                } @else if self.running > 0 {
                    p.usage.muted data-usage {
                        "CPU " strong { (format!("{:.0}", self.cpu_percent)) "%" }
                        " · memory " strong { (format!("{:.0}", self.memory_used_mb)) " MB" } " of " (self.memory_mb) " MB"
                    }
                }
            }
        }
    }
}

/// GET /: my namespaces with my role, their machines by state and their use now; for the
/// superadmin every namespace and recent activity.
pub async fn dashboard(State(state): State<AppState>, user: PanelUser, headers: HeaderMap) -> Response {
    let principal = user.caller.principal();
    let namespaces = match ops::visible_namespaces(&state, principal).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(err),
    };
    let host = server_host(&headers);
    let reach =
        Reach { login: principal.login().as_str(), host: &host, ssh_port: state.config.ssh_port, hosts: &state.hosts };
    let mut tallies = Vec::with_capacity(namespaces.len());
    for (ns, _) in &namespaces {
        let machines = ops::machines::list(&state, principal, ns.name.as_str()).await.unwrap_or_default();
        let views: Vec<MachineView> = machines.iter().map(|m| MachineView::new(m, reach, &state.usage)).collect();
        tallies.push(Tally::of(&views));
    }
    let keys = ops::list_keys(&state, principal).await.map(|k| k.len()).unwrap_or(0);
    let activity = if principal.is_superadmin() {
        ops::audit_log(&state, principal, None, &Default::default(), None, 8).await.unwrap_or_default()
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
                    @for ((ns, role), tally) in namespaces.iter().zip(&tallies) {
                        a.card.tile href={ "/namespaces/" (seg(ns.name.as_str())) } data-namespace=(ns.name.as_str()) {
                            h3 { (ns.name.as_str()) }
                            p { span class={ "badge " (role.as_str()) } { (role.as_str()) } " "
                                span.muted { (ns.members) " member" @if ns.members != 1 { "s" } } }
                            (tally.markup())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_counts_machines_by_state_and_adds_their_use() {
        let mut t = Tally::default();
        t.add("running", Some(12.5), Some(100.0), 512);
        t.add("running", Some(7.5), Some(50.0), 512);
        t.add("stopped", None, None, 512);
        t.add("error", None, None, 512);
        assert_eq!((t.running, t.stopped, t.other), (2, 1, 1));
        assert_eq!((t.cpu_percent, t.memory_used_mb, t.memory_mb), (20.0, 150.0, 1024));
        let text = t.markup().into_string();
        assert!(text.contains("2 running") && text.contains("1 stopped") && text.contains("1 other"), "{text}");
        assert!(text.contains("CPU <strong>20%</strong>"), "{text}");
        let mut unmeasured = Tally::default();
        unmeasured.add("running", None, None, 512);
        let text = unmeasured.markup().into_string();
        assert!(text.contains("not measured yet") && !text.contains("CPU"), "no invented zero: {text}");
    }
}
