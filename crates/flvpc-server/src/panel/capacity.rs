//! Capacity and quotas in the panel: the superadmin's capacity page (bars a person reads
//! at a glance), a namespace's quota vs allocated vs used, and small usage graphs.

use super::form::{form_error, Failed};
use super::layout::{self, csrf_field, page, seg, Nav};
use super::namespace::finish;
use super::PanelUser;
use crate::state::AppState;
use crate::usage::UsagePoint;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use flvpc_model::quota::{Quota, Resources};
use flvpc_model::NamespaceName;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

/// A horizontal bar: `value` of `max`, with a label and the amounts as `shown`; red when over.
fn bar(label: &str, value: f64, max: f64, shown: String) -> Markup {
    let percent = if max > 0.0 { (value / max * 100.0).min(100.0) } else { 0.0 };
    let over = max > 0.0 && value > max;
    html! {
        div.meter {
            div.meter-label { span { (label) } span.muted { (shown) } }
            // A native <progress>: no inline style, which the panel's CSP forbids.
            progress class=[over.then_some("over")] max="100" value=(format!("{percent:.1}")) { (format!("{percent:.0}")) "%" }
        }
    }
}

/// A sparkline of `values` (oldest first) as inline SVG; no script needed.
pub fn sparkline(values: &[f64], title: &str) -> Markup {
    if values.len() < 2 {
        return html! { span.muted { "—" } };
    }
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let (w, h) = (120.0, 28.0);
    let step = w / (values.len() - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, h - v / max * (h - 2.0) - 1.0))
        .collect();
    let svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\"><title>{}</title>\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        maud::html! { (title) }.into_string(),
        points.join(" ")
    );
    html! { (PreEscaped(svg)) }
}

/// The usage graphs of one machine (memory and CPU over the last hour).
pub fn machine_graphs(points: &[UsagePoint]) -> Markup {
    let memory: Vec<f64> = points.iter().map(|p| p.memory_mb).collect();
    let cpu: Vec<f64> = points.iter().map(|p| p.cpu_percent).collect();
    html! {
        div.graphs {
            div { span.muted { "mem" } (sparkline(&memory, "memory (MB), last hour")) }
            div { span.muted { "cpu" } (sparkline(&cpu, "CPU (%), last hour")) }
        }
    }
}

/// A measured amount (CPUs busy, memory used) against a whole: one decimal where it has them.
fn measured(value: f64, max: f64, decimals: usize, unit: &str) -> String {
    format!("{value:.decimals$} / {max:.0}{unit}")
}

/// A counted amount (machines, CPUs and memory promised) against a namespace's quota, or, when the
/// namespace has none, said as "no quota" in words (with a bar of the share of `host`, where there is
/// a host amount): whole numbers, never a made-up limit.
fn counted(label: &str, value: u64, quota: Option<u64>, host: Option<u64>, unit: &str) -> Markup {
    match (quota, host) {
        (Some(q), _) => bar(label, value as f64, q as f64, format!("{value} / {q}{unit}")),
        // The bar then shows the share of the host's own amount.
        (None, Some(h)) => bar(label, value as f64, h as f64, format!("{value}{unit} · no quota")),
        (None, None) => html! {
            div.meter { div.meter-label { span { (label) } span.muted { (value) (unit) " · no quota" } } }
        },
    }
}

fn limit(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "unlimited".into())
}

/// A namespace's quota vs allocated vs used, and (superadmin) the form to change the quota.
pub async fn namespace_section(state: &AppState, user: &PanelUser, ns: &NamespaceName) -> Markup {
    // The page around this section already refused non-members; a refusal here shows an empty
    // section rather than anything of a namespace the caller may not see.
    let report = crate::core::capacity::namespace_resources(state, user.caller.principal(), ns.as_str()).await.ok();
    let (quota, a, used) = report.map(|r| (r.quota, r.allocated, r.used)).unwrap_or((
        Quota::default(),
        Resources::default(),
        Default::default(),
    ));
    let (cpu_used, mem_used) = (used.cpus, used.memory_mb);
    let rows = [
        ("Machines", quota.machines, a.machines, None),
        ("CPUs", quota.cpus, a.cpus, Some(format!("{cpu_used:.2} busy"))),
        ("Memory (MB)", quota.memory_mb, a.memory_mb, Some(format!("{mem_used:.0} MB"))),
        ("Disk (GB)", quota.disk_gb, a.disk_gb, Some("not enforced by this host's storage driver".into())),
        ("Host ports", quota.host_ports, a.host_ports, None),
    ];
    let base = format!("/namespaces/{}", seg(ns.as_str()));
    html! {
        section #resources {
            h2 { "Resources" }
            table {
                thead { tr { th { "Resource" } th { "Quota" } th { "Allocated" } th { "Used now" } } }
                tbody {
                    @for (name, q, alloc, used) in rows {
                        tr class=[q.is_some_and(|q| alloc > q).then_some("over")] {
                            td { (name) } td { (limit(q)) } td { (alloc) } td.muted { (used.unwrap_or_default()) }
                        }
                    }
                }
            }
            @if user.caller.principal().is_superadmin() {
                @let action = format!("{base}/quota");
                form.card.row method="post" action=(action) {
                    (csrf_field(user))
                    (form_error(user, &action))
                    @for (field, label, value) in [("machines", "Machines", quota.machines), ("cpus", "CPUs", quota.cpus),
                        ("memory_mb", "Memory (MB)", quota.memory_mb), ("disk_gb", "Disk (GB)", quota.disk_gb), ("host_ports", "Host ports", quota.host_ports)] {
                        @let shown = match user.typed(&action, field) { Some(typed) => Some(typed.to_owned()), None => value.map(|v| v.to_string()) };
                        label { (label) input name=(field) type="number" min="0" placeholder="unlimited" value=[shown]; }
                    }
                    button.primary type="submit" { "Set quota" }
                }
            }
        }
    }
}

/// The quota form; empty fields are unlimited.
#[derive(Deserialize)]
pub struct QuotaForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    machines: String,
    #[serde(default)]
    cpus: String,
    #[serde(default)]
    memory_mb: String,
    #[serde(default)]
    disk_gb: String,
    #[serde(default)]
    host_ports: String,
}

/// POST /namespaces/{ns}/quota.
pub async fn set_quota(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<QuotaForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let field = |name: &'static str, v: &str| -> Result<Option<u64>, crate::core::CoreError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<u64>()
            .map(Some)
            .map_err(|_| flvpc_model::Invalid::new(name, "must be a whole number, or empty for unlimited").into())
    };
    let quota = (|| {
        Ok(Quota {
            machines: field("machines", &form.machines)?,
            cpus: field("cpus", &form.cpus)?,
            memory_mb: field("memory_mb", &form.memory_mb)?,
            disk_gb: field("disk_gb", &form.disk_gb)?,
            host_ports: field("host_ports", &form.host_ports)?,
        })
    })();
    let result = match quota {
        Ok(quota) => user.act(&state, crate::core::Action::SetQuota { ns: ns.clone(), quota }).await.map(drop),
        Err(err) => Err(err),
    };
    let to = format!("/namespaces/{}#resources", seg(&ns));
    let action = format!("/namespaces/{}/quota", seg(&ns));
    finish(&state, user, &headers, &ns, &to, result.map(|()| "Quota set.".into()), |err| {
        let failed = Failed::new(action, err);
        [
            ("machines", &form.machines),
            ("cpus", &form.cpus),
            ("memory_mb", &form.memory_mb),
            ("disk_gb", &form.disk_gb),
            ("host_ports", &form.host_ports),
        ]
        .into_iter()
        .fold(failed, |failed, (field, value)| failed.typed(field, value))
    })
    .await
}

/// GET /admin/capacity.
pub async fn capacity_page(State(state): State<AppState>, user: PanelUser) -> Response {
    let report = match crate::core::capacity::capacity(&state, user.caller.principal()).await {
        Ok(report) => report,
        Err(err) => return layout::error_page(err),
    };
    let hosts = crate::core::hosts::list(&state, user.caller.principal()).await.unwrap_or_default();
    let host = report.host;
    let (running, allocated) = (report.running, report.allocated);
    let (cpu_used, mem_used) = (report.used.cpus, report.used.memory_mb);
    let cap = |ratio: Option<f64>, base: u64| ratio.map(|r| r * base as f64).unwrap_or(base as f64);
    let body = html! {
        h1 { "Capacity" }
        p.muted { "Host: " (host.cpus) " CPUs, " (host.memory_mb) " MB memory, " (host.disk_gb) " GB disk for Docker. "
            "CPUs are shares (a weight when busy), so they can be promised many times over; memory limits are hard. "
            @match (state.config.overcommit_cpu, state.config.overcommit_memory) {
                (None, None) => { "No overcommit cap is set (--overcommit-cpu / --overcommit-memory)." }
                (c, m) => { "Caps: CPUs × " (c.map(|c| c.to_string()).unwrap_or("∞".into())) ", memory × " (m.map(|m| m.to_string()).unwrap_or("∞".into())) "." }
            }
        }
        div.card {
            h2 { "Whole host" }
            @let cpu_cap = cap(state.config.overcommit_cpu, host.cpus);
            @let memory_cap = cap(state.config.overcommit_memory, host.memory_mb);
            (bar("CPUs promised to running machines", running.cpus as f64, cpu_cap, measured(running.cpus as f64, cpu_cap, 0, "")))
            (bar("CPUs busy now", cpu_used, host.cpus as f64, measured(cpu_used, host.cpus as f64, 1, "")))
            (bar("Memory promised to running machines", running.memory_mb as f64, memory_cap, measured(running.memory_mb as f64, memory_cap, 0, " MB")))
            (bar("Memory used now", mem_used, host.memory_mb as f64, measured(mem_used, host.memory_mb as f64, 0, " MB")))
            p.muted { (allocated.machines) " machines in all, " (running.machines) " meant to run. Disk sizes are recorded and counted against quotas, but this host's storage driver (overlay2) cannot enforce them for containers; a microVM's disk is its own and enforced." }
        }
        div.card #microvms {
            h2 { "MicroVMs" }
            @match &report.microvm.accelerator {
                Some(accel) => {
                    p { "Available. Accelerator: " strong data-accelerator=(accel) { (accel.to_uppercase()) }
                        @if accel == "tcg" { " — software emulation: a VM boots in about a minute and runs several times slower than under KVM." } }
                    p.muted { "Probe: " (report.microvm.detail) }
                }
                None => { p { "Not available: " (report.microvm.detail) } }
            }
        }
        (hosts_card(&state, &hosts))
        h2 { "Namespaces" }
        @if report.namespaces.is_empty() { p.empty { "No namespaces yet." } }
        div.grid {
            @for ns in &report.namespaces {
                @let u = ns;
                @let q = ns.quota;
                @let (c, m) = (ns.used.cpus, ns.used.memory_mb);
                div.card {
                    h3 { a href={ "/namespaces/" (seg(ns.name.as_str())) "#resources" } { (ns.name.as_str()) } }
                    (counted("Machines", u.allocated.machines, q.machines, None, ""))
                    (counted("CPUs allocated", u.allocated.cpus, q.cpus, Some(host.cpus), ""))
                    (counted("Memory allocated", u.allocated.memory_mb, q.memory_mb, Some(host.memory_mb), " MB"))
                    p.muted { "Now: " (format!("{c:.2}")) " CPUs busy, " (format!("{m:.0}")) " MB used. "
                        @if q == Quota::default() { "No quota." } }
                }
            }
        }
    };
    page(&state, &user, "Capacity", Nav::Capacity, body)
}

/// The hosts that run machines: health, engine, size and what is placed there (`flvpc host …`
/// adds, drains and removes them).
fn hosts_card(state: &AppState, hosts: &[crate::core::hosts::HostReport]) -> Markup {
    html! {
        div.card #hosts {
            h2 { "Hosts" }
            @if hosts.len() <= 1 {
                p.muted { "One host: this server. Add another with " code { "flvpc host add NAME --engine … --address …" } "." }
            }
            table.hosts {
                thead { tr { th { "Host" } th { "State" } th { "Health" } th { "Address" } th { "Docker" } th { "Size" } th { "Machines" } th { "Allocated" } } }
                tbody {
                    @for h in hosts {
                        @let info = h.view.status.info.as_ref();
                        tr data-host=(h.view.name.as_str()) {
                            td { strong { (h.view.name.as_str()) }
                                @if h.view.name.as_str() == flvpc_model::HostName::LOCAL {
                                    " " span.badge title="this server's own host" { "this server" }
                                }
                                @if h.view.name.as_str() == flvpc_model::HostName::LOCAL && state.microvm.available {
                                    " " span.badge title="microVMs run here" { "VM " (state.microvm.accelerator.clone().unwrap_or_default().to_uppercase()) }
                                }
                                br; span.muted.small { (h.view.engine) } }
                            td { (h.view.state.as_str()) }
                            td {
                                @if h.view.status.reachable { span.state.running { "ok" } }
                                @else { span.state.unknown { "unreachable" } }
                                @if let Some(detail) = &h.view.status.detail { br; span.error-text { (detail) } }
                            }
                            td { (h.view.address.map(|a| a.to_string()).unwrap_or_else(|| "—".into())) }
                            td { (info.map(|i| i.engine_version.clone()).filter(|v| !v.is_empty()).unwrap_or_else(|| "—".into())) }
                            td { @if let Some(i) = info { (i.cpus) " CPUs · " (i.memory_bytes / (1024 * 1024)) " MB" } @else { "—" } }
                            td { (h.load.machines) }
                            td { (h.load.allocated.cpus) " CPUs · " (h.load.allocated.memory_mb) " MB" }
                        }
                    }
                }
            }
        }
    }
}
