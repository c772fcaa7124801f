//! A refused form, shown again where it was.
//!
//! A refusal is not a redirect with a message at the top of the next page: the handler renders
//! the page again (with the refusal's status), the message sits inside the form that was sent, in
//! a `role="alert"` element that screen readers announce, and the fields hold what the person
//! typed (never passwords). Forms are told apart by their `action` path, which is unique on a page.
//! When the form that failed is not on the page (a role that does not see it), the page frame
//! shows the message at the top instead (`layout::page`), so no refusal is ever silent.

use super::user::say;
use super::PanelUser;
use crate::core::CoreError;
use axum::response::Response;
use maud::{html, Markup};
use std::sync::atomic::{AtomicBool, Ordering};

/// The id of the one refusal message on a page (fields point to it with `aria-describedby`).
pub const ERROR_ID: &str = "form-error";

/// A form the core refused: which one, why, and what was typed in it.
#[derive(Debug)]
pub struct Failed {
    /// The form's `action` path, exactly as the page renders it.
    action: String,
    /// The refusal in plain words.
    message: String,
    /// What was typed, by field name.
    typed: Vec<(&'static str, String)>,
    /// Set once a form has shown the message (atomic: a `PanelUser` lives across awaits).
    shown: AtomicBool,
}

impl Failed {
    /// The refusal `err` of the form posted to `action`.
    pub fn new(action: impl Into<String>, err: &CoreError) -> Self {
        Self { action: action.into(), message: say(err), typed: Vec::new(), shown: AtomicBool::new(false) }
    }

    /// Keeps what was typed in `field`, to fill it in again.
    pub fn typed(mut self, field: &'static str, value: &str) -> Self {
        self.typed.push((field, value.to_owned()));
        self
    }

    /// The refusal's message.
    pub fn text(&self) -> &str {
        &self.message
    }

    /// True when this is the refusal of the form posted to `action`.
    pub fn is_for(&self, action: &str) -> bool {
        self.action == action
    }

    /// What was typed in `field` of the form posted to `action`, when that is this form.
    pub fn value(&self, action: &str, field: &str) -> Option<&str> {
        let typed = if self.is_for(action) { self.typed.as_slice() } else { &[] };
        typed.iter().find(|(name, _)| *name == field).map(|(_, value)| value.as_str())
    }

    /// The message inside the form posted to `action`, when that is this form (and then the frame
    /// need not show it again).
    fn inside(&self, action: &str) -> Markup {
        if !self.is_for(action) {
            return html! {};
        }
        self.shown.store(true, Ordering::Relaxed);
        html! { p.form-error id=(ERROR_ID) role="alert" { (self.message) } }
    }

    /// True when no form on the page has shown the message.
    pub fn unshown(&self) -> bool {
        !self.shown.load(Ordering::Relaxed)
    }
}

impl PanelUser {
    /// What was typed in `field` of the form posted to `action`, when that form was refused.
    pub fn typed(&self, action: &str, field: &str) -> Option<&str> {
        self.failed.as_ref()?.value(action, field)
    }

    /// True when the form posted to `action` is the one refused.
    pub fn failed_at(&self, action: &str) -> bool {
        self.failed.as_ref().is_some_and(|f| f.is_for(action))
    }

    /// Renders the page again for the refused form `failed`: the frame must not repeat an old flash.
    pub fn refused(mut self, failed: Failed) -> Self {
        self.flash = None;
        self.failed = Some(failed);
        self
    }
}

/// The refusal message inside the form posted to `action`, if that is the form refused.
pub fn form_error(user: &PanelUser, action: &str) -> Markup {
    user.failed.as_ref().map(|failed| failed.inside(action)).unwrap_or_default()
}

/// The page answering a refused form, with the refusal's status (a 4xx, not a redirect).
pub fn with_status(err: &CoreError, mut page: Response) -> Response {
    // A page that is itself an error (the namespace is gone) keeps its own status.
    if page.status().is_success() {
        *page.status_mut() = crate::error::http_status(err);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_refused_form_gets_the_message_and_the_typed_values() {
        let err = CoreError::Invalid("public_key: not a key <b>".into());
        let failed = Failed::new("/account/keys", &err).typed("name", "laptop").typed("public_key", "ssh-ed25519 x");
        assert_eq!(failed.value("/account/keys", "name"), Some("laptop"));
        assert_eq!(failed.value("/account/keys", "public_key"), Some("ssh-ed25519 x"));
        assert_eq!(failed.value("/account/keys", "password"), None, "only what was kept");
        assert_eq!(failed.value("/account/tokens", "name"), None, "another form keeps its defaults");

        // Another form shows nothing, and the frame still has to show the message.
        assert_eq!(failed.inside("/account/tokens").into_string(), "");
        assert!(failed.unshown());
        // The refused form shows it, announced and escaped; the frame then does not repeat it.
        let shown = failed.inside("/account/keys").into_string();
        assert_eq!(shown, r#"<p class="form-error" id="form-error" role="alert">public_key: not a key &lt;b&gt;</p>"#);
        assert!(!failed.unshown());
    }
}
