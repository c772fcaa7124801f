//! What can go wrong in the store.

use flvpc_model::Invalid;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(String),
    /// The change clashes with existing state (a duplicate name, a second superadmin).
    #[error("{0}")]
    Conflict(String),
    /// The input broke a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The change does not fit a namespace's quota or the host's overcommit cap.
    #[error(transparent)]
    Exceeded(#[from] flvpc_model::quota::Exceeded),
    /// A password did not match.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The database URL or file cannot be used.
    #[error("{0}")]
    Config(String),
    /// Password hashing failed (it does not, short of memory exhaustion).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Too many password checks at once: the caller should try again after the given time.
    #[error("too many password checks at once; try again in {}s", .0.as_secs().max(1))]
    Busy(std::time::Duration),
    /// The database itself failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Maps a unique-constraint violation to a conflict with `message`, other errors as they are.
    pub(crate) fn unique(err: sqlx::Error, message: impl FnOnce() -> String) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
            _ => StoreError::Database(err),
        }
    }
}
