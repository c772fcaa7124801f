//! The preview of a cluster spec: what "Save and apply" would create, change and remove, shown
//! before anything is saved, with the button that does it (the YAML travels in a hidden field,
//! so what is applied is exactly what was previewed, checked again when saved).

use super::layout::{self, csrf_field, seg, Nav};
use super::PanelUser;
use crate::core::machines::ApplyPreview;
use crate::state::AppState;
use axum::response::Response;
use maud::{html, Markup};

/// The preview page of `spec` for `ns`.
pub fn page(state: &AppState, user: &PanelUser, ns: &str, spec: &str, preview: &ApplyPreview) -> Response {
    let base = format!("/namespaces/{}", seg(ns));
    let nothing = preview.create.is_empty() && preview.change.is_empty() && preview.remove.is_empty();
    let body = html! {
        p { a href={ (base) "#spec" } { "← back to " (ns) } }
        h1 { "Applying this spec to " (ns) }
        @if nothing {
            p.flash { "Nothing changes: every machine of the spec is there with these settings." }
        }
        div.grid {
            (group("Created", "new machines", &preview.create, "ok"))
            (group("Changed", "recreated with the new settings: what is on their disks is lost", &preview.change, "warn"))
            (group("Removed", "deleted with their disks", &preview.remove, "bad"))
            (group("Unchanged", "left as they are", &preview.keep, "muted"))
        }
        @if !preview.warnings.is_empty() {
            div.flash.warning role="status" {
                strong { "Warnings" }
                ul { @for w in &preview.warnings { li { (w) } } }
            }
        }
        form.row method="post" action={ (base) "/cluster" } data-confirm=[(!preview.remove.is_empty() || !preview.change.is_empty()).then_some("Machines will be removed or recreated, with their disks. Go on?")] {
            (csrf_field(user))
            input type="hidden" name="spec" value=(spec);
            input type="hidden" name="apply" value="1";
            button.primary type="submit" { "Save and apply" }
            a href={ (base) "#spec" } { "Back to editing" }
        }
        details {
            summary { "The spec" }
            pre.code tabindex="0" { (spec) }
        }
    };
    layout::page(state, user, &format!("Applying a spec to {ns}"), Nav::Namespace, body)
}

fn group(title: &str, meaning: &str, names: &[String], tone: &str) -> Markup {
    html! {
        div.card data-preview=(title.to_lowercase()) {
            h2 { (title) " " span class={ "badge " (tone) } { (names.len()) } }
            p.muted { (meaning) }
            @if names.is_empty() { p.empty { "none" } } @else {
                ul { @for n in names { li { code { (n) } } } }
            }
        }
    }
}
