//! The account page: my SSH keys, API tokens and password.

use super::form::{form_error, with_status, Failed};
use super::layout::{self, copyable, csrf_field, danger_button, page, seg, time, Nav};
use super::session::CsrfForm;
use super::user::{redirect_with, Flash};
use super::PanelUser;
use crate::access::server_host;
use crate::core::{self, Action, CoreError, CoreResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

/// Redirects to `to` with a success message, or shows the account page again with the refusal
/// next to the form that was sent (`failed` names it and keeps what was typed).
async fn finish<T>(
    state: &AppState,
    user: PanelUser,
    headers: &HeaderMap,
    to: &str,
    result: CoreResult<T>,
    ok: impl FnOnce(T) -> String,
    failed: impl FnOnce(&CoreError) -> Failed,
) -> Response {
    match result {
        Ok(value) => redirect_with(state, to, Flash::ok(ok(value))),
        Err(err) => {
            let user = user.refused(failed(&err));
            with_status(&err, render(state, &user, &server_host(headers), None).await)
        }
    }
}

async fn render(state: &AppState, user: &PanelUser, host: &str, new_token: Option<(String, String)>) -> Response {
    let principal = user.caller.principal();
    let (keys, tokens) = match (core::list_keys(state, principal).await, core::list_tokens(state, principal).await) {
        (Ok(k), Ok(t)) => (k, t),
        (Err(e), _) | (_, Err(e)) => return layout::error_page(e),
    };
    let ssh_config = crate::access::ssh_config_for(state, principal, host).await.unwrap_or_default();
    let body = html! {
        h1 { "Account" }
        section #keys {
            h2 { "SSH keys" }
            p.muted { "Every machine of your namespaces accepts these keys for root." }
            @if keys.is_empty() { p.empty { "No keys yet — add the contents of your " code { "~/.ssh/id_ed25519.pub" } "." } } @else {
                table {
                    thead { tr { th { "Name" } th { "Fingerprint" } th { "Added" } th {} } }
                    tbody {
                        @for key in &keys {
                            tr {
                                td { (key.name.as_str()) }
                                td { code.fingerprint title=(key.public_key) { (key.fingerprint) } }
                                td { (time(key.created_at)) }
                                td.actions { (danger_button(user, &format!("/account/keys/{}/delete", seg(key.name.as_str())), "Remove",
                                    &format!("Remove the key {}", key.name.as_str()),
                                    &format!("Remove the key {}? Machines stop accepting it.", key.name.as_str()))) }
                            }
                        }
                    }
                }
            }
            form.card.stack method="post" action="/account/keys" {
                (csrf_field(user))
                (form_error(user, "/account/keys"))
                label { "Name" input name="name" placeholder="laptop" required maxlength="64" value=[user.typed("/account/keys", "name")]; }
                label { "Public key" textarea name="public_key" rows="3" required placeholder="ssh-ed25519 AAAA… you@laptop" {
                    (user.typed("/account/keys", "public_key").unwrap_or_default()) } }
                button.primary type="submit" { "Add key" }
            }
        }
        section #tokens {
            h2 { "API tokens" }
            p.muted { "For scripts and the " code { "flvpc" } " CLI: send as " code { "Authorization: Bearer <token>" } "." }
            @if let Some((name, secret)) = &new_token {
                div.card.reveal role="status" {
                    p { "Token " strong { (name) } " created. Copy it now — it will not be shown again:" }
                    (copyable(secret, false, None))
                }
            }
            @if tokens.is_empty() { p.empty { "No API tokens." } } @else {
                table {
                    thead { tr { th { "Name" } th { "Created" } th { "Last used" } th {} } }
                    tbody {
                        @for t in &tokens {
                            tr {
                                td { (t.name.as_str()) }
                                td { (time(t.created_at)) }
                                td { @if let Some(used) = t.last_used_at { (time(used)) } @else { "never" } }
                                td.actions { (danger_button(user, &format!("/account/tokens/{}/delete", seg(t.name.as_str())), "Revoke",
                                    &format!("Revoke the token {}", t.name.as_str()),
                                    &format!("Revoke the token {}? Scripts using it stop working.", t.name.as_str()))) }
                            }
                        }
                    }
                }
            }
            form.card.row method="post" action="/account/tokens" {
                (csrf_field(user))
                (form_error(user, "/account/tokens"))
                label { "Name" input name="name" placeholder="ci-script" required maxlength="64" value=[user.typed("/account/tokens", "name")]; }
                button.primary type="submit" { "Create token" }
            }
        }
        section #ssh {
            h2 { "SSH access" }
            p.muted { "The flvpc SSH gateway on port " (state.config.ssh_port) " takes you to your machines with your keys: "
                code { "ssh -J " (principal.login().as_str()) "@" (host) ":" (state.config.ssh_port) " root@<machine>.<namespace>" } "." }
            @if let Some((fingerprint, _)) = &state.config.ssh_host_key { p { "Gateway host key: " code.fingerprint { (fingerprint) } } }
            p { "Or put this in " code { "~/.ssh/config" } " and run " code { "ssh <machine>.<namespace>" } " (also printed by " code { "flvpc ssh-config" } "):" }
            (copyable(&ssh_config, false, None))
        }
        section #password { h2 { "Password" } (password_form(user)) }
    };
    page(state, user, "Account", Nav::Account, body)
}

fn password_form(user: &PanelUser) -> Markup {
    html! {
        form.card.stack method="post" action="/account/password" {
            (csrf_field(user))
            (form_error(user, "/account/password"))
            label { "Current password" input name="current_password" type="password" autocomplete="current-password" required; }
            label { "New password" input name="password" type="password" autocomplete="new-password" required minlength="8"; }
            button.primary type="submit" { "Change password" }
        }
    }
}

/// GET /account.
pub async fn show(State(state): State<AppState>, user: PanelUser, headers: axum::http::HeaderMap) -> Response {
    render(&state, &user, &server_host(&headers), None).await
}

/// The add-key form.
#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    _csrf: String,
    name: String,
    public_key: String,
}

/// POST /account/keys.
pub async fn add_key(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let action = Action::AddKey { name: form.name.clone(), public_key: form.public_key.clone() };
    let result = user.act(&state, action).await.and_then(|o| o.into_key());
    let ok = |k: flvpc_store::SshKey| format!("Key {} added ({}).", k.name.as_str(), k.fingerprint);
    finish(&state, user, &headers, "/account#keys", result, ok, |err| {
        Failed::new("/account/keys", err).typed("name", &form.name).typed("public_key", &form.public_key)
    })
    .await
}

/// POST /account/keys/{name}/delete.
pub async fn delete_key(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = user.act(&state, Action::DeleteKey { name: name.clone() }).await.map(drop);
    let action = format!("/account/keys/{}/delete", seg(&name));
    let ok = |()| format!("Key {name} removed.");
    finish(&state, user, &headers, "/account#keys", result, ok, |err| Failed::new(action, err)).await
}

/// The create-token form.
#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    _csrf: String,
    name: String,
}

/// POST /account/tokens: shows the new secret on the page itself, once.
pub async fn create_token(
    State(state): State<AppState>,
    user: PanelUser,
    headers: axum::http::HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let form_name = form.name.clone();
    match user.act(&state, Action::CreateToken { name: form.name }).await.and_then(|o| o.into_token()) {
        Ok((name, issued)) => {
            render(&state, &user, &server_host(&headers), Some((name.to_string(), issued.secret))).await
        }
        Err(err) => {
            let user = user.refused(Failed::new("/account/tokens", &err).typed("name", &form_name));
            with_status(&err, render(&state, &user, &server_host(&headers), None).await)
        }
    }
}

/// POST /account/tokens/{name}/delete.
pub async fn delete_token(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let result = user.act(&state, Action::DeleteToken { name: name.clone() }).await.map(drop);
    let action = format!("/account/tokens/{}/delete", seg(&name));
    let ok = |()| format!("Token {name} revoked.");
    finish(&state, user, &headers, "/account#tokens", result, ok, |err| Failed::new(action, err)).await
}

/// The password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    _csrf: String,
    current_password: String,
    password: String,
}

/// POST /account/password.
pub async fn change_password(
    State(state): State<AppState>,
    user: PanelUser,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&form._csrf) {
        return refused;
    }
    let login = user.caller.principal().login().to_string();
    let action = Action::SetPassword { login, current: Some(form.current_password), new: form.password };
    let result = user.act(&state, action).await.map(drop);
    let ok = |()| "Password changed. Your other sessions were signed out and your API tokens revoked.".into();
    // Passwords are never typed back into a page.
    finish(&state, user, &headers, "/account#password", result, ok, |err| Failed::new("/account/password", err)).await
}
