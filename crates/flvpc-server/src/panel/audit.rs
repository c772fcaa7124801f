//! The superadmin's audit log page: filtered on the server by user, namespace, action, outcome
//! and time, paged, and exported (the same filter) as CSV or JSON.

use super::admin::{audit_table, superadmin_refusal};
use super::layout::{self, page, seg, Nav};
use super::PanelUser;
use crate::core::{self, audit::AuditQuery, CoreResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flvpc_store::{AuditEntry, AuditFilter};
use maud::html;
use serde::Deserialize;

/// Records on one page of the log.
const PAGE: i64 = 50;
/// Most records one export holds: a bound on the work and the size of a download.
const EXPORT_MAX: usize = 20_000;

/// The audit page's query: its filter (as typed in the form), paging and the export format.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    before: Option<i64>,
    user: Option<String>,
    namespace: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    format: Option<String>,
}

impl AuditParams {
    fn filter(&self) -> CoreResult<AuditFilter> {
        AuditQuery {
            user: self.user.as_deref(),
            action: self.action.as_deref(),
            outcome: self.outcome.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        }
        .filter()
    }

    /// The namespace to read, if one was asked for.
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().map(str::trim).filter(|n| !n.is_empty())
    }

    /// The filter's fields that were filled in, as a query string (without paging or format),
    /// for the Older and export links.
    fn query(&self) -> String {
        let fields = [
            ("user", &self.user),
            ("namespace", &self.namespace),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ];
        let filled =
            fields.iter().filter_map(|(k, v)| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(|v| (k, v)));
        filled.map(|(k, v)| format!("{k}={}", seg(v))).collect::<Vec<_>>().join("&")
    }
}

/// What was typed in a field of the filter.
fn typed(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

/// GET /admin/audit.
pub async fn audit(State(state): State<AppState>, user: PanelUser, Query(q): Query<AuditParams>) -> Response {
    if let Some(denied) = superadmin_refusal(&user) {
        return denied;
    }
    let principal = user.caller.principal();
    let read = match q.filter() {
        Ok(filter) => core::audit_log(&state, principal, q.namespace(), &filter, q.before, PAGE).await,
        Err(err) => Err(err),
    };
    // A filter that cannot be read is said next to the filter, with what was typed kept.
    let (entries, refusal) = match read {
        Ok(list) => (list, None),
        Err(err) => (Vec::new(), Some(err)),
    };
    let users = core::list_users(&state, principal).await.unwrap_or_default();
    let namespaces = core::visible_namespaces(&state, principal).await.unwrap_or_default();
    let query = q.query();
    let and = if query.is_empty() { String::new() } else { format!("&{query}") };
    let outcome = typed(&q.outcome);
    let filtered = !query.is_empty();
    let body = html! {
        h1 { "Audit log" }
        p.muted { "Every change and sign-in: who, what, when, from where, and how it ended." }
        form.card.row.audit-filter method="get" action="/admin/audit" role="search" aria-label="Filter the audit log" {
            @if let Some(err) = &refusal {
                p.form-error id=(super::form::ERROR_ID) role="alert" { (super::user::say(err)) }
            }
            label { "User"
                input name="user" list="audit-users" value=(typed(&q.user)) autocomplete="off";
                datalist #audit-users { @for u in &users { option value=(u.login.as_str()) {} } }
            }
            label { "Namespace"
                select name="namespace" {
                    option value="" { "any" }
                    @for (ns, _) in &namespaces {
                        option value=(ns.name.as_str()) selected[q.namespace() == Some(ns.name.as_str())] { (ns.name.as_str()) }
                    }
                }
            }
            label { "Action"
                input name="action" value=(typed(&q.action)) placeholder="machine.start, or machine." title="one action, or a family of them ending with a dot";
            }
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any" }
                    @for (value, label) in [("ok", "ok"), ("error", "refused or failed"), ("forbidden", "forbidden"), ("not_found", "not found"),
                        ("invalid", "invalid"), ("quota_exceeded", "quota exceeded"), ("conflict", "conflict"), ("wrong_credentials", "wrong credentials")] {
                        option value=(value) selected[outcome == value] { (label) }
                    }
                }
            }
            label { "From (UTC)" input name="since" type="datetime-local" value=(typed(&q.since)); }
            label { "Until (UTC)" input name="until" type="datetime-local" value=(typed(&q.until)); }
            div.filter-buttons {
                button.primary type="submit" { "Filter" }
                @if filtered { a.button href="/admin/audit" { "Clear" } }
            }
        }
        p.export {
            span.muted { @if filtered { "Export these records: " } @else { "Export the whole log: " } }
            a.button href={ "/admin/audit/export?format=csv" (and) } download { "CSV" } " "
            a.button href={ "/admin/audit/export?format=json" (and) } download { "JSON" }
        }
        @if refusal.is_none() {
            @if entries.is_empty() && filtered { p.empty { "No record matches this filter." } } @else { (audit_table(&entries)) }
            @if let Some(last) = entries.last().filter(|_| entries.len() as i64 == PAGE) {
                p { a.button href={ "/admin/audit?before=" (last.id) (and) } { "Older →" } }
            }
        }
    };
    let response = page(&state, &user, "Audit log", Nav::Audit, body);
    match &refusal {
        Some(err) => super::form::with_status(err, response),
        None => response,
    }
}

/// GET /admin/audit/export?format=csv|json: the records the filter selects, newest first, as a
/// download.
pub async fn export(State(state): State<AppState>, user: PanelUser, Query(q): Query<AuditParams>) -> Response {
    if let Some(denied) = superadmin_refusal(&user) {
        return denied;
    }
    let csv = match q.format.as_deref() {
        Some("csv") | None => true,
        Some("json") => false,
        Some(_) => {
            let err = core::CoreError::Invalid("format: use csv or json".into());
            return layout::error_page(err);
        }
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(err) => return layout::error_page(err),
    };
    let mut all: Vec<AuditEntry> = Vec::new();
    let mut before = q.before;
    // Page through the log (newest first) until it ends or the export is full.
    while all.len() < EXPORT_MAX {
        let batch = match core::audit_log(&state, user.caller.principal(), q.namespace(), &filter, before, 1000).await {
            Ok(b) => b,
            Err(err) => return layout::error_page(err),
        };
        let full = batch.len() == 1000;
        before = batch.last().map(|e| e.id);
        all.extend(batch);
        if !full {
            break;
        }
    }
    all.truncate(EXPORT_MAX);
    if csv {
        let body = to_csv(&all);
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"flvpc-audit.csv\""),
            ],
            body,
        )
            .into_response()
    } else {
        let body = to_json(&all);
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"flvpc-audit.json\""),
            ],
            body,
        )
            .into_response()
    }
}

const COLUMNS: [&str; 9] = ["id", "at", "actor", "action", "target", "namespace", "source", "outcome", "detail"];

fn cells(e: &AuditEntry) -> [String; 9] {
    let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.id.to_string(),
        core::view::rfc3339(e.at),
        or_empty(&e.actor),
        e.action.clone(),
        e.target.clone(),
        or_empty(&e.namespace),
        or_empty(&e.source),
        e.outcome.clone(),
        or_empty(&e.detail),
    ]
}

/// One CSV cell: quoted, and a text a spreadsheet would run as a formula (=, +, -, @, or a tab
/// or carriage return before one) starts with ' so it is shown as text.
fn csv_cell(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    format!("\"{}\"", value.replace('"', "\"\""))
}

fn to_csv(entries: &[AuditEntry]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for e in entries {
        let row: Vec<String> = cells(e).iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn to_json(entries: &[AuditEntry]) -> String {
    let records: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id, "at": core::view::rfc3339(e.at), "actor": e.actor, "action": e.action, "target": e.target,
                "namespace": e.namespace, "source": e.source, "outcome": e.outcome, "detail": e.detail,
            })
        })
        .collect();
    serde_json::to_string_pretty(&records).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            id: 7,
            at: 0,
            actor: Some(actor.into()),
            action: "user.create".into(),
            target: "x,y".into(),
            namespace: None,
            source: None,
            outcome: "ok".into(),
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text() {
        let csv = to_csv(&[entry("=HYPERLINK(\"x\")", "@SUM(A1)"), entry("-1+2", "+cmd")]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "id,at,actor,action,target,namespace,source,outcome,detail");
        assert_eq!(
            lines[1],
            "\"7\",\"1970-01-01T00:00:00Z\",\"'=HYPERLINK(\"\"x\"\")\",\"user.create\",\"x,y\",\"\",\"\",\"ok\",\"'@SUM(A1)\""
        );
        assert!(lines[2].contains("\"'-1+2\"") && lines[2].ends_with("\"'+cmd\""), "{}", lines[2]);
    }

    #[test]
    fn json_export_is_the_records_with_rfc3339_times() {
        let json: serde_json::Value = serde_json::from_str(&to_json(&[entry("ann", "d")])).expect("json");
        assert_eq!(json[0]["actor"], "ann");
        assert_eq!(json[0]["at"], "1970-01-01T00:00:00Z");
        assert_eq!(json[0]["namespace"], serde_json::Value::Null);
    }

    #[test]
    fn the_filter_travels_in_the_links_without_blanks() {
        let q = AuditParams {
            user: Some("ann".into()),
            action: Some(String::new()),
            since: Some("2026-12-01T08:30".into()),
            before: Some(9),
            ..Default::default()
        };
        assert_eq!(q.query(), "user=ann&since=2026-12-01T08%3A30");
    }
}
