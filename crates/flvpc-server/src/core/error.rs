//! Why the core refused or failed an action, in words a person can act on, with a stable code
//! for scripts. The doors decide how a refusal looks (the API's status and JSON body in
//! `crate::error`, the panel's message); the codes are the same through every door and are
//! what the audit log records as an action's outcome.

use flvpc_model::{Denied, Invalid};
use flvpc_store::StoreError;
use std::time::Duration;

/// A refused or failed action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A value breaks a rule; the message names the field and the rule.
    Invalid(String),
    /// The input could not be read at all (a spec body that is not text).
    Unreadable(String),
    /// The cluster spec is invalid (syntax, a rule of the spec, or the server's publish rules).
    InvalidSpec(String),
    /// The spec names an image this host does not have.
    UnknownImage(String),
    /// The spec asks for a machine backend this server does not offer.
    BackendUnavailable(String),
    /// The change does not fit the namespace's quota or the host's overcommit cap.
    QuotaExceeded(String),
    /// The thing does not exist or the actor may not see it (the two look the same on purpose).
    NotFound(String),
    /// The actor sees the thing, but their role does not allow the action.
    Forbidden,
    /// The change clashes with what exists (a taken name, a taken host port).
    Conflict(String),
    /// The namespace has no saved cluster spec to create machines from.
    NoSpec,
    /// A namespace's machines could not all be removed yet, so the namespace stays.
    MachinesRemain,
    /// The current password given with a password change is wrong.
    WrongPassword,
    /// A sign-in's login or password is wrong (which one is not said).
    WrongCredentials,
    /// Too many failed sign-ins for this login or source: wait, then try again.
    TooManyAttempts(Duration),
    /// The server is busy checking other passwords: wait a moment, then try again.
    TooManyRequests(Duration),
    /// The container engine cannot be reached.
    EngineUnavailable(String),
    /// The action needs a signed-in actor and there is none.
    Unauthenticated,
    /// The server itself failed; the cause was logged, the person only learns it was not them.
    Internal(String),
}

/// Result of a core function.
pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    /// Every code the core can answer, in the order of the variants (stable: scripts and the
    /// audit log rely on them).
    pub const CODES: &'static [&'static str] = &[
        "invalid",
        "bad_request",
        "invalid_spec",
        "unknown_image",
        "backend_unavailable",
        "quota_exceeded",
        "not_found",
        "forbidden",
        "conflict",
        "no_spec",
        "machines_remain",
        "wrong_password",
        "wrong_credentials",
        "too_many_attempts",
        "too_many_requests",
        "engine_unavailable",
        "unauthenticated",
        "internal",
    ];

    /// A stable snake_case code for scripts and for the audit log's outcome.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Unreadable(_) => "bad_request",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::UnknownImage(_) => "unknown_image",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::NotFound(_) => "not_found",
            Self::Forbidden => "forbidden",
            Self::Conflict(_) => "conflict",
            Self::NoSpec => "no_spec",
            Self::MachinesRemain => "machines_remain",
            Self::WrongPassword => "wrong_password",
            Self::WrongCredentials => "wrong_credentials",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::EngineUnavailable(_) => "engine_unavailable",
            Self::Unauthenticated => "unauthenticated",
            Self::Internal(_) => "internal",
        }
    }

    /// A sentence for people: what went wrong and what to do.
    pub fn message(&self) -> String {
        match self {
            Self::Invalid(m)
            | Self::Unreadable(m)
            | Self::InvalidSpec(m)
            | Self::UnknownImage(m)
            | Self::BackendUnavailable(m)
            | Self::QuotaExceeded(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::EngineUnavailable(m) => m.clone(),
            Self::Forbidden => "your role does not allow this".into(),
            Self::NoSpec => {
                "this namespace has no cluster spec yet: PUT one to /api/v1/namespaces/{ns}/cluster first".into()
            }
            Self::MachinesRemain => {
                "the namespace's machines could not all be removed yet (is the Docker engine up?); try again".into()
            }
            Self::WrongPassword => "the current password is wrong".into(),
            Self::WrongCredentials => "wrong login or password".into(),
            Self::TooManyAttempts(wait) => {
                format!("too many failed sign-ins; try again in {} seconds", wait.as_secs().max(1))
            }
            Self::TooManyRequests(_) => "the server is busy checking other passwords; try again in a moment".into(),
            Self::Unauthenticated => "sign in first".into(),
            Self::Internal(_) => "the server failed; the error was logged, try again".into(),
        }
    }

    /// How long to wait before trying again, where the refusal is only for now.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyAttempts(wait) | Self::TooManyRequests(wait) => Some(*wait),
            _ => None,
        }
    }

    /// A failure of the server's own, logged here so that the person's message can stay generic.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {err}");
        Self::Internal(err.to_string())
    }
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for CoreError {}

impl From<Invalid> for CoreError {
    fn from(err: Invalid) -> Self {
        Self::Invalid(err.to_string())
    }
}

impl From<Denied> for CoreError {
    fn from(err: Denied) -> Self {
        match err {
            Denied::NotFound => Self::NotFound("no such namespace, or you are not a member of it".into()),
            Denied::Forbidden => Self::Forbidden,
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict(message) => Self::Conflict(message),
            StoreError::Invalid(invalid) => invalid.into(),
            StoreError::Exceeded(exceeded) => Self::QuotaExceeded(exceeded.to_string()),
            StoreError::WrongPassword => Self::WrongPassword,
            StoreError::Busy(wait) => Self::TooManyRequests(wait),
            other => Self::internal(other),
        }
    }
}

impl From<flvpc_model::spec::SpecError> for CoreError {
    fn from(err: flvpc_model::spec::SpecError) -> Self {
        Self::InvalidSpec(err.to_string())
    }
}

impl From<flvpc_host::EngineError> for CoreError {
    fn from(err: flvpc_host::EngineError) -> Self {
        Self::EngineUnavailable(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant; the match in `index` has no wildcard, so a new variant does not
    /// compile until it is listed here (and given a code in `CODES`).
    fn every_variant() -> Vec<CoreError> {
        let wait = Duration::from_millis(1500);
        let all = vec![
            CoreError::Invalid("x".into()),
            CoreError::Unreadable("x".into()),
            CoreError::InvalidSpec("x".into()),
            CoreError::UnknownImage("x".into()),
            CoreError::BackendUnavailable("x".into()),
            CoreError::QuotaExceeded("x".into()),
            CoreError::NotFound("x".into()),
            CoreError::Forbidden,
            CoreError::Conflict("x".into()),
            CoreError::NoSpec,
            CoreError::MachinesRemain,
            CoreError::WrongPassword,
            CoreError::WrongCredentials,
            CoreError::TooManyAttempts(wait),
            CoreError::TooManyRequests(wait),
            CoreError::EngineUnavailable("x".into()),
            CoreError::Unauthenticated,
            CoreError::Internal("x".into()),
        ];
        for (i, err) in all.iter().enumerate() {
            assert_eq!(index(err), i, "every_variant lists the variants in declaration order");
        }
        all
    }

    fn index(err: &CoreError) -> usize {
        match err {
            CoreError::Invalid(_) => 0,
            CoreError::Unreadable(_) => 1,
            CoreError::InvalidSpec(_) => 2,
            CoreError::UnknownImage(_) => 3,
            CoreError::BackendUnavailable(_) => 4,
            CoreError::QuotaExceeded(_) => 5,
            CoreError::NotFound(_) => 6,
            CoreError::Forbidden => 7,
            CoreError::Conflict(_) => 8,
            CoreError::NoSpec => 9,
            CoreError::MachinesRemain => 10,
            CoreError::WrongPassword => 11,
            CoreError::WrongCredentials => 12,
            CoreError::TooManyAttempts(_) => 13,
            CoreError::TooManyRequests(_) => 14,
            CoreError::EngineUnavailable(_) => 15,
            CoreError::Unauthenticated => 16,
            CoreError::Internal(_) => 17,
        }
    }

    #[test]
    fn the_code_table_is_complete_and_stable() {
        let all = every_variant();
        let codes: Vec<&str> = all.iter().map(CoreError::code).collect();
        // Written out again on purpose: changing a code breaks scripts and old audit records.
        assert_eq!(
            codes,
            [
                "invalid",
                "bad_request",
                "invalid_spec",
                "unknown_image",
                "backend_unavailable",
                "quota_exceeded",
                "not_found",
                "forbidden",
                "conflict",
                "no_spec",
                "machines_remain",
                "wrong_password",
                "wrong_credentials",
                "too_many_attempts",
                "too_many_requests",
                "engine_unavailable",
                "unauthenticated",
                "internal",
            ]
        );
        assert_eq!(codes, CoreError::CODES, "CODES lists every variant's code in order");
        let mut distinct = codes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), codes.len(), "no two variants share a code");
    }

    #[test]
    fn messages_are_sentences_and_waits_are_kept() {
        for err in every_variant() {
            let message = err.message();
            assert!(!message.is_empty(), "{} has a message", err.code());
            assert!(!message.contains("Internal(") && !message.contains("{:?}"), "no Debug text in {message:?}");
            let waits = matches!(err, CoreError::TooManyAttempts(_) | CoreError::TooManyRequests(_));
            assert_eq!(err.retry_after().is_some(), waits, "{} has a wait exactly when it is for now", err.code());
        }
        assert_eq!(
            CoreError::TooManyAttempts(Duration::from_millis(1500)).retry_after(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            CoreError::Internal("db exploded".into()).message(),
            "the server failed; the error was logged, try again"
        );
    }

    #[test]
    fn store_and_policy_refusals_keep_their_codes() {
        assert_eq!(CoreError::from(Denied::NotFound).code(), "not_found");
        assert_eq!(CoreError::from(Denied::Forbidden).code(), "forbidden");
        assert_eq!(CoreError::from(StoreError::WrongPassword).code(), "wrong_password");
        assert_eq!(CoreError::from(StoreError::Busy(Duration::from_secs(1))).code(), "too_many_requests");
        assert_eq!(CoreError::from(StoreError::Conflict("taken".into())).code(), "conflict");
        assert_eq!(CoreError::from(StoreError::NotFound("user \"x\"".into())).message(), "user \"x\" not found");
        assert_eq!(CoreError::from(StoreError::Config("bad".into())).code(), "internal");
    }
}
