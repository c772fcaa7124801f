//! Panel sign-in, sign-out, the session cookie, CSRF and flash messages.

use super::layout;
use super::user::{constant_time_eq, cookie_header, Flash, PanelUser, FLASH_COOKIE};
use crate::auth::{cookie, Caller, ClientAddr, SESSION_COOKIE};
use crate::core::{self, Action, Actor, CoreError};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use flvpc_store::TokenKind;
use maud::html;
use serde::Deserialize;

const LOGIN_CSRF_COOKIE: &str = "flvpc_login_csrf";

impl FromRequestParts<AppState> for PanelUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let source = ClientAddr::from_request_parts(parts, state).await.map(|a| a.0).unwrap_or(None);
        let to_login = || Redirect::to("/login").into_response();
        let Some(secret) = cookie(parts, SESSION_COOKIE) else { return Err(to_login()) };
        let session = match state.store.authenticate(secret).await {
            Ok(Some(session)) if session.kind == TokenKind::Panel => session,
            Ok(_) => return Err(to_login()),
            Err(err) => return Err(layout::error_page(CoreError::from(err))),
        };
        let flash = cookie(parts, FLASH_COOKIE).and_then(Flash::decode);
        Ok(PanelUser { caller: Caller { session, source }, flash, failed: None })
    }
}

/// GET /login.
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = match headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        Some(raw) if raw.contains(SESSION_COOKIE) => {
            let secret = raw.split(';').filter_map(|p| p.trim().split_once('=')).find(|(k, _)| *k == SESSION_COOKIE);
            match secret {
                Some((_, s)) => matches!(state.store.authenticate(s).await, Ok(Some(_))),
                None => false,
            }
        }
        _ => false,
    };
    if signed_in {
        return Redirect::to("/").into_response();
    }
    render_login(&state, None, StatusCode::OK, "").await
}

/// The sign-in page; `login` is what was typed, kept after a refusal (the password never is).
async fn render_login(state: &AppState, error: Option<String>, status: StatusCode, login: &str) -> Response {
    let has_admin = match state.store.superadmin_exists().await {
        Ok(yes) => yes,
        Err(err) => return layout::error_page(err.into()),
    };
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let body = html! {
        div.login {
            h1 { span.logo { "flvpc" } }
            p.muted { "A private cloud on your own server." }
            @if !has_admin {
                div.card {
                    h2 { "Welcome — one step first" }
                    p { "This server has no superadmin yet. There is no registration page: on the server, as the user that runs flvpc, create one with" }
                    (layout::copyable("flvpc admin init --login admin --password-stdin", false, None))
                    p.muted { "Type the password and press Enter, then reload this page." }
                }
            } @else {
                form.card method="post" action="/login" {
                    @if let Some(error) = &error { p.flash.error role="alert" { (error) } }
                    input type="hidden" name="_csrf" value=(csrf);
                    label { "Login" input name="login" autocomplete="username" required autofocus value=[(!login.is_empty()).then_some(login)]; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button.primary type="submit" { "Sign in" }
                }
            }
        }
    };
    let mut response = (status, layout::bare("Sign in", body)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie_header(state, LOGIN_CSRF_COOKIE, &csrf, 3600));
    response
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    #[serde(default)]
    _csrf: String,
}

/// POST /login.
pub async fn login_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // Login CSRF: the form must carry the random value this browser got with the form.
    let expected = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == LOGIN_CSRF_COOKIE)
        .map(|(_, v)| v.to_owned());
    if expected
        .as_deref()
        .is_none_or(|e| form._csrf.is_empty() || !constant_time_eq(e.as_bytes(), form._csrf.as_bytes()))
    {
        let expired = Some("The form expired; please sign in again.".into());
        return render_login(&state, expired, StatusCode::FORBIDDEN, &form.login).await;
    }
    let action = Action::SignIn { login: form.login.clone(), password: form.password, kind: TokenKind::Panel };
    match core::dispatch(&state, &Actor::anonymous(source), action).await.and_then(|o| o.into_signed_in()) {
        Ok(signed_in) => {
            let mut response = Redirect::to("/").into_response();
            let max_age = i64::try_from(state.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie_header(&state, SESSION_COOKIE, &signed_in.token.secret, max_age));
            response.headers_mut().append(header::SET_COOKIE, cookie_header(&state, LOGIN_CSRF_COOKIE, "", 0));
            response
        }
        Err(err) => {
            render_login(&state, Some(super::user::say(&err)), crate::error::http_status(&err), &form.login).await
        }
    }
}

/// The CSRF field of a small form.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub _csrf: String,
}

/// POST /logout.
pub async fn logout(State(state): State<AppState>, user: PanelUser, Form(form): Form<CsrfForm>) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    if let Err(err) = user.act(&state, Action::SignOut).await {
        return layout::error_page(err);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie_header(&state, SESSION_COOKIE, "", 0));
    response
}
