//! The page frame shared by every panel page, and small rendering helpers.

use super::user::{clear_flash, PanelUser};
use crate::core::CoreError;
use crate::state::AppState;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

fn head(title: &str) -> Markup {
    html! {
        (DOCTYPE)
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · flvpc" }
        link rel="stylesheet" href="/static/app.css";
        script src="/static/app.js" defer {}
    }
}

/// A page without navigation (sign-in).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(html! { (head(title)) body.bare { main { (body) } } }.into_string())
}

/// Which item of the navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The dashboard.
    Home,
    /// A namespace page.
    Namespace,
    /// Account settings.
    Account,
    /// Admin: users.
    Users,
    /// Admin: namespaces.
    Namespaces,
    /// Admin: audit log.
    Audit,
    /// Admin: capacity.
    Capacity,
}

/// A full page for a signed-in person: navigation fitted to their role, the flash message, the body.
pub fn page(state: &AppState, user: &PanelUser, title: &str, nav: Nav, body: Markup) -> Response {
    let principal = user.caller.principal();
    let item = |target: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == target).then_some("current")] { (label) } }
    };
    let markup = html! {
        (head(title))
        body {
            header.top {
                a.logo href="/" { "flvpc" }
                nav {
                    (item(Nav::Home, "/", "Dashboard"))
                    @if principal.is_superadmin() {
                        (item(Nav::Namespaces, "/admin/namespaces", "Namespaces"))
                        (item(Nav::Users, "/admin/users", "Users"))
                        (item(Nav::Capacity, "/admin/capacity", "Capacity"))
                        (item(Nav::Audit, "/admin/audit", "Audit log"))
                    }
                    (item(Nav::Account, "/account", "Account"))
                }
                div.who {
                    span { (principal.login().as_str()) @if principal.is_superadmin() { " " span.badge.super { "superadmin" } } }
                    form method="post" action="/logout" {
                        input type="hidden" name="_csrf" value=(user.csrf());
                        button.link type="submit" { "Sign out" }
                    }
                }
            }
            main {
                @if let Some(flash) = &user.flash {
                    p class=(if flash.error { "flash error" } else { "flash ok" }) role="status" { (flash.message) }
                }
                (body)
            }
        }
    };
    let response = Html(markup.into_string()).into_response();
    if user.flash.is_some() {
        clear_flash(state, response)
    } else {
        response
    }
}

/// A page that says what failed, with the right status.
pub fn error_page(err: CoreError) -> Response {
    let body = html! {
        div.card {
            h1 { "Something went wrong" }
            p { (super::user::say(&err)) }
            p { a href="/" { "Back to the dashboard" } }
        }
    };
    (crate::error::http_status(&err), bare("Error", body)).into_response()
}

/// An RFC 3339 time that the page's script shows in the reader's zone.
pub fn time(ms: i64) -> Markup {
    let iso = crate::core::view::rfc3339(ms);
    let shown = iso.get(..16).map(|s| s.replace('T', " ")).unwrap_or_default();
    html! { time datetime=(iso) { (shown) " UTC" } }
}

/// A hidden CSRF field.
pub fn csrf_field(user: &PanelUser) -> Markup {
    html! { input type="hidden" name="_csrf" value=(user.csrf()); }
}

/// A one-button form that posts to `action` after the person confirms.
pub fn danger_button(user: &PanelUser, action: &str, label: &str, confirm: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(confirm) {
            (csrf_field(user))
            button.danger type="submit" { (label) }
        }
    }
}

/// The panel's URL path segment for a name (names are validated, but escape anyway).
pub fn seg(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("team-1"), "team-1");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
