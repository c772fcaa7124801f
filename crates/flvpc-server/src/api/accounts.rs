//! Sign-in, the caller's own account (keys, tokens, password) and users (superadmin).

use super::responses::{
    Forbidden, Invalid, Malformed, NotFound, PayloadTooLarge, Unauthenticated, UnsupportedMediaType,
};
use super::wire::*;
use super::{act, ApiJson};
use crate::auth::{Caller, ClientAddr};
use crate::core::{self, Action, Actor};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use flvpc_store::TokenKind;

/// Sign in with login and password; returns a bearer token. Throttled: 429 with Retry-After
/// (`too_many_attempts` after failed guesses, `too_many_requests` when the server is busy checking passwords).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: a bearer token", body = LoginResponse),
        Malformed,
        (status = 401, description = "Wrong login or password (`wrong_credentials`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        (status = 429, description = "Too many failed sign-ins (`too_many_attempts`) or the server is busy checking passwords (`too_many_requests`); see Retry-After", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let action = Action::SignIn { login: body.login, password: body.password, kind: TokenKind::Login };
    let signed_in = core::dispatch(&state, &Actor::anonymous(source), action).await?.into_signed_in()?;
    Ok(Json(LoginResponse {
        token: signed_in.token.secret,
        expires_at: signed_in.token.expires_at.map(rfc3339).unwrap_or_default(),
    }))
}

/// End the session of the token used for this call; a named API token used here is revoked.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out: the token no longer works"),
        Unauthenticated,
    ))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::SignOut).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who you are and your namespaces.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "You and your namespaces", body = Me),
        Unauthenticated,
    ))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let principal = caller.principal();
    let namespaces = core::visible_namespaces(&state, principal).await?;
    Ok(Json(Me {
        login: principal.login().to_string(),
        superadmin: principal.is_superadmin(),
        namespaces: namespaces
            .into_iter()
            .map(|(ns, role)| NamespaceRole { name: ns.name.to_string(), role: role.to_string() })
            .collect(),
    }))
}

/// All users (superadmin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user", body = Vec<UserOut>),
        Unauthenticated,
        Forbidden,
    ))]
pub async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<UserOut>>> {
    Ok(Json(core::list_users(&state, caller.principal()).await?.into_iter().map(UserOut::from).collect()))
}

/// Create a user (superadmin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserOut),
        Malformed,
        Unauthenticated,
        Forbidden,
        (status = 409, description = "That login is taken (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    let user =
        act(&state, &caller, Action::CreateUser { login: body.login, password: body.password }).await?.into_user()?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Delete a user with their memberships, keys and tokens (superadmin).
#[utoipa::path(delete, path = "/api/v1/users/{login}", tag = "users", security(("bearer" = [])),
    params(("login" = super::rules::Login, Path, description = "The user's login")),
    responses(
        (status = 204, description = "Deleted"),
        Unauthenticated,
        Forbidden,
        NotFound,
        Invalid,
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::DeleteUser { login }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a password: your own (send current_password) or anyone's (superadmin). Every session
/// and named API token of the user ends, except the session (not a named token) used for one's own change.
#[utoipa::path(put, path = "/api/v1/users/{login}/password", tag = "users", security(("bearer" = [])),
    params(("login" = super::rules::Login, Path, description = "The user's login")), request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        Malformed,
        Unauthenticated,
        (status = 403, description = "Not your account and you are not the superadmin (`forbidden`), or the current password is wrong (`wrong_password`)", body = ErrorBody),
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
        (status = 429, description = "The server is busy checking other passwords (`too_many_requests`); see Retry-After", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let action = Action::SetPassword { login, current: body.current_password, new: body.password };
    act(&state, &caller, action).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your SSH keys.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    responses(
        (status = 200, description = "Your keys", body = Vec<KeyOut>),
        Unauthenticated,
    ))]
pub async fn list_keys(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<KeyOut>>> {
    Ok(Json(core::list_keys(&state, caller.principal()).await?.into_iter().map(KeyOut::from).collect()))
}

/// Add an SSH public key (OpenSSH format: ed25519, ecdsa, or rsa of 2048 bits or more).
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])), request_body = NewKey,
    responses(
        (status = 201, description = "Added", body = KeyOut),
        Malformed,
        Unauthenticated,
        (status = 409, description = "You have a key of that name or that key already (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn add_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewKey>,
) -> ApiResult<(StatusCode, Json<KeyOut>)> {
    let key =
        act(&state, &caller, Action::AddKey { name: body.name, public_key: body.public_key }).await?.into_key()?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// Remove one of your SSH keys.
#[utoipa::path(delete, path = "/api/v1/keys/{name}", tag = "keys", security(("bearer" = [])),
    params(("name" = super::rules::KeyName, Path, description = "The key's name")),
    responses(
        (status = 204, description = "Removed"),
        Unauthenticated,
        NotFound,
        Invalid,
    ))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::DeleteKey { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your named API tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "Your tokens", body = Vec<TokenOut>),
        Unauthenticated,
    ))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<TokenOut>>> {
    Ok(Json(core::list_tokens(&state, caller.principal()).await?.into_iter().map(TokenOut::from).collect()))
}

/// Make a named API token; its secret is shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])), request_body = NewToken,
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = CreatedToken),
        Malformed,
        Unauthenticated,
        (status = 409, description = "You have a token of that name (`conflict`)", body = ErrorBody),
        PayloadTooLarge,
        UnsupportedMediaType,
        Invalid,
    ))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let (name, issued) = act(&state, &caller, Action::CreateToken { name: body.name }).await?.into_token()?;
    Ok((StatusCode::CREATED, Json(CreatedToken { name: name.to_string(), token: issued.secret })))
}

/// Revoke one of your API tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", security(("bearer" = [])),
    params(("name" = super::rules::TokenName, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked"),
        Unauthenticated,
        NotFound,
        Invalid,
    ))]
pub async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    act(&state, &caller, Action::DeleteToken { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}
