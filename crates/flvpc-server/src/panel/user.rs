//! The signed-in person a panel page is for, and the one-line message ("flash") an action leaves
//! for the next page in a short-lived cookie. Both the page frame (`layout`) and the sign-in code
//! (`session`) use these; keeping them here lets neither of those import the other's internals.

use crate::auth::Caller;
use crate::core::{Action, CoreError, CoreResult, Outcome};
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie that carries a [`Flash`] to the next page.
pub(super) const FLASH_COOKIE: &str = "flvpc_flash";

/// A signed-in person using the panel.
pub struct PanelUser {
    /// The same caller the API would see: principal, session and source address.
    pub caller: Caller,
    /// The message left by the previous action, if any.
    pub flash: Option<Flash>,
    /// The form this request sent and the core refused, when the page is rendered again for it.
    pub failed: Option<super::form::Failed>,
}

impl PanelUser {
    /// Does `action` for this person through the core's one dispatch (which audits it).
    pub async fn act(&self, state: &AppState, action: Action) -> CoreResult<Outcome> {
        crate::core::dispatch(state, &self.caller.actor(), action).await
    }

    /// The CSRF token to put in every form.
    pub fn csrf(&self) -> &str {
        self.caller.session.csrf.as_deref().unwrap_or_default()
    }

    /// The refusal of a form whose CSRF token is not this session's; None when it is.
    pub fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        match self.caller.session.csrf.as_deref() {
            Some(expected) if !sent.is_empty() && constant_time_eq(expected.as_bytes(), sent.as_bytes()) => None,
            _ => Some(
                (
                    StatusCode::FORBIDDEN,
                    "The form expired or came from another site. Go back, reload the page and try again.",
                )
                    .into_response(),
            ),
        }
    }
}

/// What the panel tells a person about a refusal: the core's sentence, except where that
/// sentence speaks of the API rather than of the page the person is on.
pub fn say(err: &CoreError) -> String {
    match err {
        CoreError::NoSpec => "this namespace has no cluster spec yet: save one below first".into(),
        CoreError::Unauthenticated => "your session ended; sign in again".into(),
        other => other.message(),
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A one-line message shown on the next page after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// True for a failure.
    pub error: bool,
    /// True for a success that comes with warnings (shown as a warning, not as plain success).
    pub warning: bool,
    /// The message.
    pub message: String,
}

impl Flash {
    /// A success message.
    pub fn ok(message: impl Into<String>) -> Self {
        Self { error: false, warning: false, message: message.into() }
    }

    /// A success with warnings (a spec saved with keys it ignores, say).
    pub fn warning(message: impl Into<String>) -> Self {
        Self { error: false, warning: true, message: message.into() }
    }

    /// A failure message.
    pub fn error(message: impl Into<String>) -> Self {
        Self { error: true, warning: false, message: message.into() }
    }

    /// Cookie-safe form: a kind letter and the message in hex.
    pub fn encode(&self) -> String {
        let clipped: String = self.message.chars().take(600).collect();
        let kind = match (self.error, self.warning) {
            (true, _) => 'e',
            (false, true) => 'w',
            (false, false) => 'o',
        };
        format!("{kind}{}", hex::encode(clipped))
    }

    /// Reads a flash cookie value; None when it is not ours.
    pub fn decode(value: &str) -> Option<Self> {
        let (kind, rest) = value.split_at_checked(1)?;
        let message = String::from_utf8(hex::decode(rest).ok()?).ok()?;
        match kind {
            "o" => Some(Self::ok(message)),
            "w" => Some(Self::warning(message)),
            "e" => Some(Self::error(message)),
            _ => None,
        }
    }
}

pub(super) fn cookie_header(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies || state.config.tls { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("flvpc_invalid=1"))
}

/// A redirect after a successful POST, carrying a message for the next page.
pub fn redirect_with(state: &AppState, to: &str, flash: Flash) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie_header(state, FLASH_COOKIE, &flash.encode(), 60));
    response
}

/// Clears the flash cookie once its message has been shown.
pub fn clear_flash(state: &AppState, mut response: Response) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie_header(state, FLASH_COOKIE, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_round_trips_and_rejects_garbage() {
        let flash = Flash::error("bad <script> \"x\"");
        assert_eq!(Flash::decode(&flash.encode()), Some(flash));
        for flash in [Flash::ok("saved"), Flash::warning("saved; warnings: copyFiles ignored")] {
            assert_eq!(Flash::decode(&flash.encode()), Some(flash));
        }
        assert!(Flash::warning("w").encode().starts_with('w'));
        assert_eq!(Flash::decode("zzz"), None);
        assert_eq!(Flash::decode(""), None);
        assert_eq!(Flash::decode("o4g"), None);
    }
}
