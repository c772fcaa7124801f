//! The page frame shared by every panel page, and small rendering helpers.

use super::form::form_error;
use super::user::{clear_flash, PanelUser};
use crate::core::CoreError;
use crate::state::AppState;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · flvpc" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

/// A whole document: `lang` tells screen readers which voice and rules to read it with.
fn document(title: &str, body: Markup) -> String {
    html! { (DOCTYPE) html lang="en" { (head(title)) (body) } }.into_string()
}

/// A page without navigation (sign-in).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(document(title, html! { body.bare { main { (body) } } }))
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
    // The current item is marked for screen readers (aria-current) and drawn as such by the CSS.
    let item = |target: Nav, href: &str, label: &str| {
        let current = nav == target;
        html! { a href=(href) class=[current.then_some("current")] aria-current=[current.then_some("page")] { (label) } }
    };
    // The body is rendered before the frame: a refused form it did not show is shown at the top.
    let unshown = user.failed.as_ref().filter(|f| f.unshown());
    let markup = html! {
        body {
            header.top {
                a.logo href="/" { "flvpc" }
                // On a narrow screen the script folds the menu behind this button; without the
                // script the menu wraps instead, so every item stays reachable either way.
                button.menu-toggle type="button" aria-expanded="false" aria-controls="site-menu" hidden { "Menu" }
                div.menu #site-menu {
                    nav aria-label="Main" {
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
            }
            main {
                @if let Some(failed) = unshown {
                    p.flash.error id=(super::form::ERROR_ID) role="alert" { (failed.text()) }
                }
                @if let Some(flash) = &user.flash {
                    @if flash.error {
                        p.flash.error role="alert" { (flash.message) }
                    } @else if flash.warning {
                        p.flash.warning role="status" { (flash.message) }
                    } @else {
                        p.flash.ok role="status" { (flash.message) }
                    }
                }
                (body)
            }
        }
    };
    let response = Html(document(title, markup)).into_response();
    if user.flash.is_some() {
        clear_flash(state, response)
    } else {
        response
    }
}

/// A breadcrumb trail for an inner page: the links above it (`(label, href)`, from the
/// dashboard down) and the page itself, marked as the current one.
pub fn crumbs(trail: &[(&str, &str)], here: &str) -> Markup {
    html! {
        nav.crumbs aria-label="Breadcrumb" {
            ol {
                li { a href="/" { "Dashboard" } }
                @for (label, href) in trail { li { a href=(href) { (label) } } }
                li { span aria-current="page" { (here) } }
            }
        }
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

/// A one-button form that posts to `action` after the person confirms; `aria_label` names what the
/// button acts on where the visible label alone ("Remove") does not.
pub fn danger_button(user: &PanelUser, action: &str, label: &str, aria_label: &str, confirm: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(confirm) {
            (csrf_field(user))
            (form_error(user, action))
            button.danger type="submit" aria-label=(aria_label) { (label) }
        }
    }
}

/// Text to copy (a command, a token), with a keyboard-reachable Copy button whose result is
/// announced in a live region. The button is hidden until the script can copy.
pub fn copyable(text: &str, small: bool, title: Option<&str>) -> Markup {
    html! {
        div.copyable {
            // Focusable: a long command scrolls sideways, and a keyboard must reach that too.
            pre.copy.small[small] title=[title] tabindex="0" { (text) }
            button.copy type="button" hidden { "Copy" }
            span.copied aria-live="polite" {}
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

    /// The body of the first CSS rule whose selector list is exactly `selector`.
    fn rule<'a>(css: &'a str, selector: &str) -> &'a str {
        let start = css.find(&format!("{selector} {{")).unwrap_or_else(|| panic!("no rule {selector}"));
        let body = &css[start + selector.len() + 2..];
        &body[..body.find('}').expect("rule ends")]
    }

    /// A colour of a declaration (`#rgb`, `#rrggbb`, or `var(--name)` resolved in `:root`) as
    /// linear-light relative luminance (WCAG 2.x).
    fn luminance(css: &str, value: &str) -> f64 {
        let value = match value.split("var(--").nth(1) {
            Some(rest) => {
                let name = &rest[..rest.find(')').expect("var ends")];
                let root = rule(css, ":root");
                let at = root.find(&format!("--{name}:")).unwrap_or_else(|| panic!("no --{name}"));
                root[at + name.len() + 3..].split([';', ' ', '}']).next().expect("value").to_owned()
            }
            None => value.to_owned(),
        };
        let hex = value[value.find('#').expect("a hex colour")..].trim_start_matches('#');
        let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
        let hex = if hex.len() == 3 { hex.chars().flat_map(|c| [c, c]).collect() } else { hex };
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }

    fn contrast(css: &str, a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(css, a), luminance(css, b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    fn declaration<'a>(css: &'a str, selector: &str, property: &str) -> &'a str {
        let body = rule(css, selector);
        let at = body.find(&format!("{property}:")).unwrap_or_else(|| panic!("{selector} has no {property}"));
        body[at + property.len() + 1..].split(';').next().expect("value").trim()
    }

    /// WCAG AA from the stylesheet's own values: 3:1 for the borders that show where a field is,
    /// 4.5:1 for the text of the state badges and of muted text.
    #[test]
    fn colours_reach_wcag_aa_contrast() {
        let css = include_str!("app.css");
        let field = "input, select, textarea";
        let border = contrast(css, declaration(css, field, "border"), declaration(css, field, "background"));
        assert!(border >= 3.0, "input borders {border:.2}:1");
        for badge in [".state.stopped, .state.not_created", ".state.creating, .state.deleting", ".state.unknown"] {
            let ratio = contrast(css, declaration(css, badge, "color"), declaration(css, badge, "background"));
            assert!(ratio >= 4.5, "{badge}: {ratio:.2}:1");
        }
        let muted = contrast(css, "var(--muted)", "var(--bg)");
        assert!(muted >= 4.5, "muted text on the page {muted:.2}:1");
        let error =
            contrast(css, declaration(css, ".form-error", "color"), declaration(css, ".form-error", "background"));
        assert!(error >= 4.5, "refusal messages {error:.2}:1");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("team-1"), "team-1");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
