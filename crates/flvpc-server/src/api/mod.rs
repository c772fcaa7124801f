//! The REST API under `/api/v1` (reference: docs/api.md). Routes and their OpenAPI
//! description come from the same registration (utoipa-axum), so
//! `/api/v1/openapi.json` lists exactly the routes that exist.

mod accounts;
mod hosts;
mod machines;
mod namespaces;
mod rendered;
mod responses;
pub mod rules;
pub mod wire;

use crate::auth::Caller;
use crate::core::{self, Action, Outcome};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "flvpc", description = "A self-hosted private cloud for one Linux server: namespaces, users, roles, machines."),
    modifiers(&BearerAuth),
    // The rules are listed because path parameters, unlike bodies, do not register the schemas they name.
    components(schemas(wire::ErrorBody, rules::Login, rules::NamespaceName, rules::KeyName, rules::TokenName,
        rules::MachineName, rules::NewPassword, rules::Role))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes and their OpenAPI document.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::delete_user))
        .routes(routes!(accounts::change_password))
        .routes(routes!(accounts::list_keys, accounts::add_key))
        .routes(routes!(accounts::delete_key))
        .routes(routes!(accounts::list_tokens, accounts::create_token))
        .routes(routes!(accounts::delete_token))
        .routes(routes!(namespaces::list_namespaces, namespaces::create_namespace))
        .routes(routes!(namespaces::get_namespace, namespaces::delete_namespace))
        .routes(routes!(namespaces::list_members))
        .routes(routes!(namespaces::set_member, namespaces::remove_member))
        .routes(routes!(namespaces::audit))
        .routes(routes!(namespaces::set_quota))
        .routes(routes!(namespaces::namespace_resources))
        .routes(routes!(namespaces::capacity))
        .routes(routes!(machines::get_cluster, machines::put_cluster))
        .routes(routes!(machines::create_cluster))
        .routes(routes!(machines::start_cluster))
        .routes(routes!(machines::stop_cluster))
        .routes(routes!(machines::delete_cluster))
        .routes(routes!(machines::list_machines))
        .routes(routes!(machines::start_machine))
        .routes(routes!(machines::stop_machine))
        .routes(routes!(machines::restart_machine))
        .routes(routes!(machines::get_operation))
        .routes(routes!(machines::events))
        .routes(routes!(machines::ssh_config))
        .routes(routes!(machines::machine_metrics))
        .routes(routes!(machines::machine_console))
        .routes(routes!(hosts::move_machine))
        .routes(routes!(hosts::list_hosts, hosts::add_host))
        .routes(routes!(hosts::set_host_state))
        .routes(routes!(hosts::remove_host))
        .layer(axum::Extension(std::sync::Arc::new(rendered::RenderedLists::default())))
        .split_for_parts()
}

/// Does `action` for the caller through the core's one dispatch (which audits it).
async fn act(state: &AppState, caller: &Caller, action: Action) -> ApiResult<Outcome> {
    Ok(core::dispatch(state, &caller.actor(), action).await?)
}

/// JSON body extractor whose refusals use the API's error format:
/// 400 for unreadable JSON, 413 for oversized bodies, 415 without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {}", source_of(&e)),
            )),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad_request(format!("the body has the wrong shape: {}", source_of(&e))))
            }
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large"))
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// The innermost error message (serde's), without axum's prefix.
fn source_of(err: &dyn std::error::Error) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
