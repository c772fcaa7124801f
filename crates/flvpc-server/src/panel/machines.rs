//! The machines part of a namespace page: the machine table with live state,
//! cluster and machine actions fitted to the role, operation progress, and the
//! cluster spec editor (as a form and as YAML).

use super::form::{form_error, Failed};
use super::layout::{copyable, csrf_field, seg, time};
use super::namespace::{confirmation_refusal, finish};
use super::user::{redirect_with, Flash};
use super::PanelUser;
use crate::access::server_host;
use crate::core::machines as ops;
use crate::core::view::{MachineView, Reach};
use crate::core::{Action, CoreError, CoreResult, SavedSpec};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use flvpc_model::{NamespaceName, Role};
use flvpc_store::{Desired, Operation};
use maud::{html, Markup};
use serde::Deserialize;

/// A starting point for a namespace without a spec: footloose's format.
const EXAMPLE_SPEC: &str = "machines:\n- count: 2\n  spec:\n    name: node%d\n    image: flvpc/debian:12\n    portMappings:\n    - containerPort: 22\n    ignite:\n      cpus: 1\n      memory: 512MB\n      diskSize: 4GB\n";

/// Renders the machines section of `/namespaces/{ns}`.
pub async fn section(
    state: &AppState,
    user: &PanelUser,
    headers: &HeaderMap,
    ns: &NamespaceName,
    role: Role,
) -> Markup {
    let principal = user.caller.principal();
    let base = format!("/namespaces/{}", seg(ns.as_str()));
    let host = server_host(headers);
    let reach =
        Reach { login: principal.login().as_str(), host: &host, ssh_port: state.config.ssh_port, hosts: &state.hosts };
    let machines = ops::list(state, principal, ns.as_str()).await.unwrap_or_default();
    let spec = ops::get_spec(state, principal, ns.as_str()).await.ok().flatten();
    let operations: Vec<Operation> = match principal.namespace_member(ns) {
        Ok(grant) => state.store.namespace_operations(&grant, 5).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let admin = role == Role::Admin;
    // A one-button form; `aria` names the machine where the label alone ("Stop") does not, and a
    // button that cannot apply is disabled rather than left to fail.
    let action = |path: &str, label: &str, class: &str, confirm: Option<&str>, aria: Option<&str>, disabled: bool| {
        let target = format!("{base}/{path}");
        html! {
            form.inline method="post" action=(target) data-confirm=[confirm] {
                (csrf_field(user))
                (form_error(user, &target))
                button class=(class) type="submit" aria-label=[aria] disabled[disabled] { (label) }
            }
        }
    };
    let views: Vec<MachineView> = machines.iter().map(|m| MachineView::new(m, reach, &state.usage)).collect();
    let running = views.iter().filter(|m| m.state == "running").count();
    let all_running = running == views.len() && views.iter().all(|m| m.desired == Desired::Running);
    let none_running = running == 0 && views.iter().all(|m| m.desired != Desired::Running);
    let stop_all =
        format!("Stop all {} machines of {}? Their processes end; their disks stay.", views.len(), ns.as_str());
    let delete_all = format!("{base}/cluster/delete");
    html! {
        section #machines data-namespace=(ns.as_str()) {
            div.title-row {
                h2 { "Machines" }
                div.actions {
                    @if admin && spec.is_some() { (action("cluster/create", "Create / apply spec", "primary", None, None, false)) }
                    @if !machines.is_empty() {
                        (action("cluster/start", "Start all", "", None, None, all_running))
                        (action("cluster/stop", "Stop all", "", Some(&stop_all), None, none_running))
                        @if admin {
                            details.inline.delete-machines open[user.failed_at(&delete_all)] {
                                summary { "Delete machines…" }
                                form.card.stack method="post" action=(delete_all) {
                                    (csrf_field(user))
                                    (form_error(user, &delete_all))
                                    p { "Deletes all " strong { (views.len()) " machine" @if views.len() != 1 { "s" } } " of " strong { (ns.as_str()) }
                                        " and their disks. The cluster spec stays." }
                                    label { span { "Type " strong { (ns.as_str()) } " to confirm" }
                                        input name="confirm" required autocomplete="off" spellcheck="false" value=[user.typed(&delete_all, "confirm")]; }
                                    button.danger type="submit" { "Delete " (views.len()) " machine" @if views.len() != 1 { "s" } }
                                }
                            }
                        }
                    }
                }
            }
            @for op in operations.iter().filter(|o| !o.state.is_finished()).take(3) {
                (progress(op))
            }
            @if let Some(failed) = operations.first().filter(|o| o.state == flvpc_model::OperationState::Failed) {
                p.flash.error { "Last operation (" (failed.kind) ") failed: " (failed.error.clone().unwrap_or_default()) }
            }
            @if machines.is_empty() {
                div.empty {
                    p { "No machines yet." }
                    @if admin {
                        p.muted { @if spec.is_some() { "Press “Create / apply spec” to create the machines of the spec below." } @else { "Define the cluster below (footloose.yaml format), save it, then create it." } }
                    } @else {
                        p.muted { "A namespace admin defines and creates the machines; you can then start, stop and log in to them." }
                    }
                }
            } @else {
                @let selected = format!("{base}/machines");
                form.inline #selected-machines method="post" action=(selected) data-confirm="Apply this to every selected machine?" {
                    (csrf_field(user))
                    (form_error(user, &selected))
                    label { "With the selected machines: "
                        select name="action" {
                            option value="start" { "Start" }
                            option value="stop" { "Stop" }
                            option value="restart" { "Restart" }
                        }
                    }
                    " "
                    button type="submit" { "Apply" }
                }
                table.machines {
                    thead { tr {
                        th.select { input type="checkbox" data-select-all aria-label="Select every machine"; }
                        th { "Machine" } th { "State" } th { "Host" } th { "IP" } th { "Resources" } th { "Ports" } th { "SSH" } th {}
                    } }
                    tbody {
                        @for out in &views {
                            tr data-machine=(out.name) {
                                td.select { input type="checkbox" name="machine" value=(out.name) form="selected-machines" aria-label={ "Select " (out.name) }; }
                                td {
                                    strong { a href=(super::machine::path(ns.as_str(), &out.name)) aria-label={ "Machine " (out.name) ": state, graphs, console, operations" } { (out.name) } }
                                    br; span.muted { (out.image) }
                                    @if out.engine == "microvm" { " " span.badge title="a microVM: its own kernel" { "VM" } }
                                    br; a.small href={ (base) "/machines/" (seg(&out.name)) "/console" } { "Console" }
                                }
                                td { span class={ "state " (out.state) } data-state data-engine=(out.engine) { (out.state_word()) } @if let Some(e) = &out.error { br; span.error-text { (e) } } }
                                td data-host { (out.host) }
                                td data-ip { (out.ip.clone().unwrap_or_else(|| "—".into())) }
                                td.muted {
                                    (out.cpus) " CPU" @if let Some(cap) = out.cpu_cap { " (cap " (cap) ")" } " · " (out.memory_mb) " MB"
                                    @if out.oom_kills > 0 { br; span.error-text title="processes killed for exceeding the memory limit" { (out.oom_kills) " OOM kill(s)" } }
                                    (super::capacity::machine_graphs(&state.usage.points(ns.as_str(), &out.name)))
                                }
                                td { @for p in &out.ports { code { (p.host_port) "→" (p.container_port) "/" (p.protocol) } " " } }
                                // SSH commands only while the machine runs (the page's script shows
                                // and hides them as the state changes).
                                @let up = out.state == "running";
                                td.ssh {
                                    div data-ssh hidden[!up] {
                                        @if let Some(direct) = &out.ssh.direct { (copyable(direct, true, None)) }
                                        (copyable(&out.ssh.jump, true, Some("through the flvpc SSH gateway")))
                                    }
                                    span.muted data-ssh-off hidden[up] { "when running" }
                                }
                                td.actions {
                                    @let mbase = format!("machines/{}", seg(&out.name));
                                    @let restart = format!("Restart {}? Its processes are stopped and started again.", out.name);
                                    @if out.desired == Desired::Running {
                                        (action(&format!("{mbase}/restart"), "Restart", "", Some(&restart), Some(&format!("Restart {}", out.name)), false))
                                        (action(&format!("{mbase}/stop"), "Stop", "", None, Some(&format!("Stop {}", out.name)), false))
                                    } @else if out.desired == Desired::Stopped {
                                        (action(&format!("{mbase}/start"), "Start", "", None, Some(&format!("Start {}", out.name)), false))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #spec {
            h2 { "Cluster spec" }
            @if let Some(s) = &spec { p.muted { "Saved by " (s.updated_by) ", " (time(s.updated_at)) ". footloose.yaml compatible." } }
            @if admin {
                @let quick = format!("{base}/cluster/form");
                @let yaml = format!("{base}/cluster");
                // A refused form comes back with what was typed in it; else it shows the saved
                // spec when that is one group (what the form writes), else the defaults.
                @let saved_values = spec.as_ref().and_then(|s| quick_values(&s.spec, ns)).unwrap_or_default();
                @let field = |name: &str, default: &'static str| {
                    user.typed(&quick, name).map(str::to_owned).or_else(|| saved_values.get(name).cloned()).unwrap_or_else(|| default.to_owned())
                };
                details.card open[spec.is_none() || user.failed_at(&quick)] {
                    summary { "Quick form: one group of identical machines" }
                    form.row #quick-form method="post" action=(quick) data-sync-yaml {
                        (csrf_field(user))
                        (form_error(user, &quick))
                        label { "Count" input name="count" type="number" min="0" max="256" value=(field("count", "2")) required; }
                        label { "Name" input name="name" value=(field("name", "node%d")) required title="must contain %d"; }
                        label { "Image" input name="image" value=(field("image", "flvpc/debian:12")) required; }
                        @let backend = field("backend", "docker");
                        label { "Backend"
                            select name="backend" {
                                option value="docker" selected[backend == "docker"] { "container" }
                                option value="microvm" selected[backend == "microvm"] { "microVM (own kernel)" }
                            }
                        }
                        label { "CPUs" input name="cpus" type="number" min="1" max="256" value=(field("cpus", "1")) required; }
                        label { "Memory (MB)" input name="memory_mb" type="number" min="64" value=(field("memory_mb", "512")) required; }
                        label { "Disk (GB)" input name="disk_gb" type="number" min="1" value=(field("disk_gb", "4")) required; }
                        label { "SSH host port" input name="ssh_port" type="number" min="0" max="65535" value=(field("ssh_port", "0")) title="0: allocated automatically; N: node i gets N+i"; }
                        button.primary type="submit" { "Save spec" }
                    }
                }
                form.stack method="post" action=(yaml) {
                    (csrf_field(user))
                    (form_error(user, &yaml))
                    textarea.code name="spec" rows="14" spellcheck="false" aria-label="Cluster spec (YAML)" {
                        (user.typed(&yaml, "spec").or(spec.as_ref().map(|s| s.spec.as_str())).unwrap_or(EXAMPLE_SPEC)) }
                    div.row {
                        button.primary type="submit" { "Save YAML" }
                        button type="submit" formaction={ (base) "/cluster/preview" } { "Preview what applying it changes" }
                    }
                }
            } @else if let Some(s) = &spec {
                pre.code tabindex="0" { (s.spec) }
            } @else {
                p.empty { "No cluster spec yet." }
            }
        }
    }
}

fn progress(op: &Operation) -> Markup {
    let percent = if op.total > 0 { op.done * 100 / op.total } else { 0 };
    html! {
        div.card.progress data-operation=(op.id) {
            span { (op.kind) " — " span data-done { (op.done) } " of " (op.total) " machines" }
            progress max="100" value=(percent) { (percent) "%" }
        }
    }
}

/// The YAML editor form.
#[derive(Deserialize)]
pub struct SpecForm {
    #[serde(default)]
    _csrf: String,
    spec: String,
    /// `1` from the preview page's "Save and apply": the save is followed by a create.
    #[serde(default)]
    apply: String,
}

/// A refused spec, shown in the YAML form with the spec as it was typed.
fn spec_refused(ns: &str, err: &CoreError, spec: &str) -> Failed {
    Failed::new(format!("/namespaces/{}/cluster", seg(ns)), err).typed("spec", spec)
}

/// POST /namespaces/{ns}/cluster: saves the YAML.
pub async fn save_yaml(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<SpecForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::SaveSpec { ns: ns.clone(), spec: ops::parse(&form.spec, true) };
    let result = user.act(&state, action).await.and_then(|o| o.into_spec());
    let failed = |err: &CoreError| spec_refused(&ns, err, &form.spec);
    if form.apply == "1" && result.is_ok() {
        // "Save and apply" from the preview: the create follows the save, as the button said.
        let applied = user.act(&state, Action::CreateCluster { ns: ns.clone() }).await.and_then(|o| o.into_operation());
        let to = format!("/namespaces/{}#machines", seg(&ns));
        let ok = |op: Operation| format!("Spec saved; {} started ({} machine(s)).", op.kind, op.total);
        return finish(&state, user, &headers, &ns, &to, applied.map(ok), failed).await;
    }
    saved(&state, user, &headers, &ns, result, failed).await
}

/// POST /namespaces/{ns}/cluster/preview: what saving and applying the YAML would create, change
/// and remove, shown before anything is saved (a refusal comes back in the YAML form).
pub async fn preview_yaml(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<SpecForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    match ops::preview(&state, user.caller.principal(), &ns, &form.spec).await {
        Ok(preview) => super::preview::page(&state, &user, &ns, &form.spec, &preview),
        Err(err) => saved(&state, user, &headers, &ns, Err(err), |e| spec_refused(&ns, e, &form.spec)).await,
    }
}

async fn saved(
    state: &AppState,
    user: PanelUser,
    headers: &HeaderMap,
    ns: &str,
    result: CoreResult<SavedSpec>,
    failed: impl FnOnce(&CoreError) -> Failed,
) -> Response {
    let to = format!("/namespaces/{}#spec", seg(ns));
    let said = |s: &SavedSpec| {
        let mut message = format!("Spec saved: {} machine(s): {}.", s.machines.len(), s.machines.join(", "));
        if !s.warnings.is_empty() {
            message.push_str(&format!(" Warnings: {}.", s.warnings.join("; ")));
        }
        message.push_str(" Press “Create / apply spec” to make it so.");
        message
    };
    match result {
        // Saved, but with warnings: shown as a warning, not as plain success.
        Ok(s) if !s.warnings.is_empty() => redirect_with(state, &to, Flash::warning(said(&s))),
        result => finish(state, user, headers, ns, &to, result.map(|s| said(&s)), failed).await,
    }
}

/// The quick form's fields as the saved `spec` sets them, when it is one group of machines (the
/// shape the form writes); `None` for anything else (the form then shows its defaults).
fn quick_values(
    spec: &str,
    ns: &flvpc_model::NamespaceName,
) -> Option<std::collections::HashMap<&'static str, String>> {
    let parsed = ops::parse(spec, true).ok()?;
    let [group] = parsed.machines.as_slice() else { return None };
    let validated = parsed.validate(ns).ok()?;
    let first = validated.machines.first();
    let ssh_port = group
        .spec
        .port_mappings
        .iter()
        .find(|p| p.container_port == 22)
        .and_then(|p| p.host_port)
        .map_or_else(|| "0".to_owned(), |p| p.to_string());
    let mut values = std::collections::HashMap::from([
        ("count", group.count.to_string()),
        ("name", group.spec.name.clone()),
        ("ssh_port", ssh_port),
    ]);
    if let Some(m) = first {
        values.insert("image", m.image.clone());
        values.insert("backend", m.backend.as_str().to_owned());
        values.insert("cpus", m.cpus.to_string());
        values.insert("memory_mb", m.memory_mb.to_string());
        values.insert("disk_gb", m.disk_gb.to_string());
    }
    Some(values)
}

/// The quick form.
#[derive(Deserialize)]
pub struct QuickForm {
    #[serde(default)]
    _csrf: String,
    /// `docker` or `microvm`.
    #[serde(default)]
    backend: String,
    count: String,
    name: String,
    image: String,
    cpus: String,
    memory_mb: String,
    disk_gb: String,
    #[serde(default)]
    ssh_port: String,
}

/// POST /namespaces/{ns}/cluster/form: builds a one-group spec from the form, then validates it like any other.
pub async fn save_form(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Form(form): Form<QuickForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let number = |field: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| CoreError::from(flvpc_model::Invalid::new("form", format!("{field} must be a whole number"))))
    };
    let spec = (|| {
        let count = number("count", &form.count)?;
        let cpus = number("CPUs", &form.cpus)?;
        let memory = number("memory", &form.memory_mb)?;
        let disk = number("disk", &form.disk_gb)?;
        let port = if form.ssh_port.trim().is_empty() { 0 } else { number("SSH host port", &form.ssh_port)? };
        // Built as JSON values, so whatever was typed is data, never YAML syntax.
        let mut mapping = serde_json::json!({"containerPort": 22});
        if port > 0 {
            mapping["hostPort"] = port.into();
        }
        let backend = if form.backend.is_empty() { "docker" } else { form.backend.as_str() };
        let doc = serde_json::json!({"machines": [{"count": count, "spec": {
            "name": form.name, "image": form.image, "backend": backend, "portMappings": [mapping],
            "ignite": {"cpus": cpus, "memory": format!("{memory}MB"), "diskSize": format!("{disk}GB")}}}]});
        ops::parse(&doc.to_string(), false)
    })();
    let result = user.act(&state, Action::SaveSpec { ns: ns.clone(), spec }).await.and_then(|o| o.into_spec());
    let failed = |err: &CoreError| {
        Failed::new(format!("/namespaces/{}/cluster/form", seg(&ns)), err)
            .typed("count", &form.count)
            .typed("name", &form.name)
            .typed("image", &form.image)
            .typed("cpus", &form.cpus)
            .typed("memory_mb", &form.memory_mb)
            .typed("disk_gb", &form.disk_gb)
            .typed("ssh_port", &form.ssh_port)
            .typed("backend", &form.backend)
    };
    saved(&state, user, &headers, &ns, result, failed).await
}

/// A cluster action's form: the namespace's name, typed to confirm a deletion.
#[derive(Deserialize)]
pub struct ClusterForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    confirm: String,
}

/// POST /namespaces/{ns}/cluster/{action}; `delete` only when the namespace's name was typed.
pub async fn cluster_action(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path((ns, verb)): Path<(String, String)>,
    Form(form): Form<ClusterForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = match verb.as_str() {
        "create" => Action::CreateCluster { ns: ns.clone() },
        "start" => Action::StartCluster { ns: ns.clone() },
        "stop" => Action::StopCluster { ns: ns.clone() },
        "delete" => Action::DeleteCluster { ns: ns.clone() },
        _ => return redirect_with(&state, &format!("/namespaces/{}", seg(&ns)), Flash::error("unknown action")),
    };
    let unconfirmed = if verb == "delete" {
        confirmation_refusal(&form.confirm, &ns, &format!("every machine of {ns}"))
    } else {
        None
    };
    let result = match unconfirmed {
        Some(refusal) => Err(refusal),
        None => user.act(&state, action).await.and_then(|o| o.into_operation()),
    };
    let to = format!("/namespaces/{}#machines", seg(&ns));
    let ok = |op: Operation| format!("{} started ({} machines).", op.kind, op.total);
    let failed = |err: &CoreError| {
        Failed::new(format!("/namespaces/{}/cluster/{}", seg(&ns), seg(&verb)), err).typed("confirm", &form.confirm)
    };
    finish(&state, user, &headers, &ns, &to, result.map(ok), failed).await
}

/// A machine action's form; `back` is set by the machine's own page, to be answered there.
#[derive(Deserialize)]
pub struct MachineActionForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    back: String,
}

/// POST /namespaces/{ns}/machines/{name}/{action}.
/// The most machines one request of the table's selection acts on.
const MAX_SELECTED: usize = 256;

/// POST /namespaces/{ns}/machines: start, stop or restart every machine ticked in the table,
/// each through the core like its own button (each authorized and audited on its own).
pub async fn selected_action(
    State(state): State<AppState>,
    user: PanelUser,
    Path(ns): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // Repeated `machine` fields: read the form by hand (the Form extractor takes one value per name).
    let (mut csrf, mut verb, mut names) = (String::new(), String::new(), Vec::new());
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "_csrf" => csrf = value.into_owned(),
            "action" => verb = value.into_owned(),
            "machine" if names.len() <= MAX_SELECTED => names.push(value.into_owned()),
            _ => {}
        }
    }
    if let Some(refused) = user.csrf_refusal(&csrf) {
        return refused;
    }
    // Someone outside the namespace is told it does not exist, as by every other page of it.
    if let Err(err) = crate::core::get_namespace(&state, user.caller.principal(), &ns).await {
        return super::layout::error_page(err);
    }
    let to = format!("/namespaces/{}#machines", seg(&ns));
    // The verb once: its word and the action it makes for one machine.
    type Make = fn(String, String) -> Action;
    let (said, make): (&str, Make) = match verb.as_str() {
        "start" => ("Start", |ns, name| Action::StartMachine { ns, name }),
        "stop" => ("Stop", |ns, name| Action::StopMachine { ns, name }),
        "restart" => ("Restart", |ns, name| Action::RestartMachine { ns, name }),
        _ => {
            return redirect_with(&state, &to, Flash::error("choose Start, Stop or Restart for the selected machines"))
        }
    };
    if names.is_empty() {
        return redirect_with(
            &state,
            &to,
            Flash::error("select machines first: tick the boxes at the start of their rows"),
        );
    }
    if names.len() > MAX_SELECTED {
        return redirect_with(&state, &to, Flash::error(format!("select at most {MAX_SELECTED} machines at once")));
    }
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for name in names {
        match user.act(&state, make(ns.clone(), name.clone())).await.and_then(|o| o.into_operation()) {
            Ok(_) => done.push(name),
            Err(err) => refused.push(format!("{name}: {}", super::user::say(&err))),
        }
    }
    let flash = if refused.is_empty() {
        Flash::ok(format!("{said} of {} started.", done.join(", ")))
    } else if done.is_empty() {
        Flash::error(format!("{said} refused for every selected machine: {}", refused.join("; ")))
    } else {
        Flash::error(format!("{said} of {} started; refused: {}", done.join(", "), refused.join("; ")))
    };
    redirect_with(&state, &to, flash)
}

pub async fn machine_action(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path((ns, name, action)): Path<(String, String, String)>,
    Form(form): Form<MachineActionForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let (ns_, name_) = (ns.clone(), name.clone());
    let target = format!("/namespaces/{}/machines/{}/{}", seg(&ns), seg(&name), seg(&action));
    let action = match action.as_str() {
        "start" => Action::StartMachine { ns: ns_, name: name_ },
        "stop" => Action::StopMachine { ns: ns_, name: name_ },
        "restart" => Action::RestartMachine { ns: ns_, name: name_ },
        _ => return redirect_with(&state, &format!("/namespaces/{}", seg(&ns)), Flash::error("unknown action")),
    };
    let result = user.act(&state, action).await.and_then(|o| o.into_operation());
    let ok = |op: Operation| format!("{} of {name} started.", op.kind);
    if form.back == super::machine::BACK_HERE {
        let result = result.map(ok);
        return super::machine::finish(&state, user, &headers, (&ns, &name), result, |err| Failed::new(target, err))
            .await;
    }
    let to = format!("/namespaces/{}#machines", seg(&ns));
    finish(&state, user, &headers, &ns, &to, result.map(ok), |err| Failed::new(target, err)).await
}
