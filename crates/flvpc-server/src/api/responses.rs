//! The error responses most routes share, written once: a route lists `Unauthenticated`
//! instead of repeating its status, sentence and body. These types only describe responses in
//! the OpenAPI document; the server answers with `ApiError`, whose body is `ErrorBody`.
//! Route-specific refusals (a 409 that says which name is taken) stay written at the route.

// Never constructed: they exist for their `IntoResponses` implementation.
#![allow(dead_code)]

use super::wire::ErrorBody;
use utoipa::IntoResponses;

/// No valid credentials (`unauthenticated`)
#[derive(IntoResponses)]
#[response(status = 401)]
pub struct Unauthenticated(ErrorBody);

/// Your role does not allow this (`forbidden`)
#[derive(IntoResponses)]
#[response(status = 403)]
pub struct Forbidden(ErrorBody);

/// No such thing, or you may not see it (`not_found`)
#[derive(IntoResponses)]
#[response(status = 404)]
pub struct NotFound(ErrorBody);

/// A value breaks a rule (`invalid`); the message names the field and the rule
#[derive(IntoResponses)]
#[response(status = 422)]
pub struct Invalid(ErrorBody);

/// The body or query is unreadable or has the wrong shape (`malformed_json`, `bad_request`)
#[derive(IntoResponses)]
#[response(status = 400)]
pub struct Malformed(ErrorBody);

/// The body is too large (`payload_too_large`)
#[derive(IntoResponses)]
#[response(status = 413)]
pub struct PayloadTooLarge(ErrorBody);

/// The body is not sent as JSON (`unsupported_media_type`)
#[derive(IntoResponses)]
#[response(status = 415)]
pub struct UnsupportedMediaType(ErrorBody);
