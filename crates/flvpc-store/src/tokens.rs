//! Sessions (panel cookies and API logins) and named API tokens.
//!
//! Only a SHA-256 of each secret is stored: a copy of the database does not let
//! anyone sign in.

use crate::passwords::{new_secret, secret_hash};
use crate::{now_ms, Store, StoreError};
use flvpc_model::{Principal, TokenName};
use sqlx::any::AnyRow;
use sqlx::Row;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A panel session: sent as an HttpOnly cookie, carries a CSRF token.
    Panel,
    /// A bearer token from `POST /api/v1/auth/login`; expires.
    Login,
    /// A named API token for scripts; lasts until deleted.
    Api,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Panel => "panel",
            TokenKind::Login => "login",
            TokenKind::Api => "api",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "panel" => Some(TokenKind::Panel),
            "login" => Some(TokenKind::Login),
            "api" => Some(TokenKind::Api),
            _ => None,
        }
    }
}

/// A secret just issued: shown once, never stored in clear.
#[derive(Clone)]
pub struct IssuedToken {
    /// The row id (for logout).
    pub id: i64,
    /// The secret to hand to the client.
    pub secret: String,
    /// The CSRF token for panel sessions.
    pub csrf: Option<String>,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_at: Option<i64>,
}

/// Never prints the secret or the CSRF token: an issued token can end up in a log line
/// through the `Debug` of what carries it.
impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("csrf", &self.csrf.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An authenticated session: who, and through which token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token's row id.
    pub token_id: i64,
    /// How the user signed in.
    pub kind: TokenKind,
    /// The CSRF token of a panel session.
    pub csrf: Option<String>,
    /// The user, with memberships read now.
    pub principal: Principal,
}

/// A named API token as listed to its owner (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its name, unique per user.
    pub name: TokenName,
    /// When it was made.
    pub created_at: i64,
    /// When it was last used, if ever.
    pub last_used_at: Option<i64>,
}

/// A valid session as the store's read cache keeps it: with when it expires (checked on every
/// use, cached or not) and when its use was last recorded.
#[derive(Debug, Clone)]
pub(crate) struct CachedSession {
    session: Session,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

/// Whether a use at `now` is to be written: at most once a minute per token, to keep reads from
/// becoming writes.
fn use_to_record(last_used_at: Option<i64>, now: i64) -> bool {
    last_used_at.is_none_or(|t| now - t > 60_000)
}

/// A token with its user's login and superadmin flag (columns 6 and 7), then `$tail`: one query
/// where the token and then its user took two on every request (issue 9). A macro so the SQL
/// stays a literal. A user's tokens go with the user (ON DELETE CASCADE), so the join loses none.
macro_rules! select_session {
    ($tail:literal) => {
        concat!(
            "SELECT t.id, t.user_id, t.kind, t.csrf, t.expires_at, t.last_used_at, u.login, u.superadmin \
             FROM tokens t JOIN users u ON u.id = t.user_id ",
            $tail
        )
    };
}

impl Store {
    /// Starts a session of `kind` for a user who just proved their password.
    pub async fn create_session(&self, user_id: i64, kind: TokenKind, ttl_ms: i64) -> Result<IssuedToken, StoreError> {
        let secret = new_secret("flvpc_s_");
        let csrf = (kind == TokenKind::Panel).then(|| new_secret(""));
        let now = now_ms();
        let expires_at = now.saturating_add(ttl_ms);
        let mut tx = self.begin_write().await?;
        let id: i64 = crate::sql::query_scalar(
            self.dialect,
            "INSERT INTO tokens (user_id, kind, secret_hash, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(secret_hash(&secret))
        .bind(csrf.clone())
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut *tx.tx)
        .await?;
        // Expired sessions are cleaned here, on the write path, so no timer is needed.
        crate::sql::query(self.dialect, "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(IssuedToken { id, secret, csrf, expires_at: Some(expires_at) })
    }

    /// Finds the session or API token behind `secret`, if it is valid now.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Session>, StoreError> {
        if secret.len() > 256 {
            return Ok(None);
        }
        let hash = secret_hash(secret);
        // Taken before the query: see `cache.rs` for why this order keeps answers fresh.
        let generation = self.cache.generation();
        if let Some(cached) = self.sessions.get(&hash, generation) {
            let now = now_ms();
            if cached.expires_at.is_some_and(|t| t < now) {
                return Ok(None);
            }
            if !use_to_record(cached.last_used_at, now) {
                return Ok(Some(cached.session));
            }
        }
        let row = crate::sql::query(self.dialect, select_session!("WHERE t.secret_hash = $1"))
            .bind(hash.clone())
            .fetch_optional(&self.pool)
            .await?;
        let Some(valid) = self.session_of(row, true).await? else { return Ok(None) };
        let session = valid.session.clone();
        // Filed under the generation read before the query: if the use was just recorded, that
        // write makes this answer stale at once and the next request reads the new one.
        self.sessions.put(hash, generation, valid);
        Ok(Some(session))
    }

    /// The session or token with row id `token_id` if it is still valid now (not revoked, not
    /// expired, its user still there), with the principal read fresh. Long-lived responses
    /// (event streams) call this again and again to end when their credential ends.
    pub async fn session_by_id(&self, token_id: i64) -> Result<Option<Session>, StoreError> {
        let row = crate::sql::query(self.dialect, select_session!("WHERE t.id = $1"))
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(self.session_of(row, false).await?.map(|valid| valid.session))
    }

    async fn session_of(&self, row: Option<AnyRow>, record_use: bool) -> Result<Option<CachedSession>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let now = now_ms();
        let expires_at: Option<i64> = row.try_get(4)?;
        if expires_at.is_some_and(|t| t < now) {
            return Ok(None);
        }
        let token_id: i64 = row.try_get(0)?;
        let Some(kind) = TokenKind::parse(&row.try_get::<String, _>(2)?) else { return Ok(None) };
        let principal = self.principal_of(row.try_get(1)?, row.try_get(6)?, row.try_get(7)?).await?;
        let mut last_used_at: Option<i64> = row.try_get(5)?;
        if record_use && use_to_record(last_used_at, now) {
            let mut tx = self.begin_write().await?;
            crate::sql::query(self.dialect, "UPDATE tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token_id)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
            last_used_at = Some(now);
        }
        let session = Session { token_id, kind, csrf: row.try_get(3)?, principal };
        Ok(Some(CachedSession { session, expires_at, last_used_at }))
    }

    /// Ends the session or token a request was made with (logout): a named API token used
    /// for logout is revoked like a session.
    pub async fn delete_session(&self, token_id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        crate::sql::query(self.dialect, "DELETE FROM tokens WHERE id = $1").bind(token_id).execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// Makes a named API token for the caller; the secret is returned once.
    pub async fn create_api_token(&self, me: &Principal, name: &TokenName) -> Result<IssuedToken, StoreError> {
        let secret = new_secret("flvpc_t_");
        let mut tx = self.begin_write().await?;
        let id: i64 = crate::sql::query_scalar(
            self.dialect,
            "INSERT INTO tokens (user_id, kind, name, secret_hash, created_at) VALUES ($1, 'api', $2, $3, $4) RETURNING id",
        )
        .bind(me.user_id())
        .bind(name.as_str())
        .bind(secret_hash(&secret))
        .bind(now_ms())
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("you already have a token named {:?}", name.as_str())))?;
        tx.commit().await?;
        Ok(IssuedToken { id, secret, csrf: None, expires_at: None })
    }

    /// The caller's named API tokens.
    pub async fn list_api_tokens(&self, me: &Principal) -> Result<Vec<ApiToken>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            "SELECT name, created_at, last_used_at FROM tokens WHERE user_id = $1 AND kind = 'api' ORDER BY name",
        )
        .bind(me.user_id())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ApiToken {
                    name: TokenName::parse(&row.try_get::<String, _>(0)?)?,
                    created_at: row.try_get(1)?,
                    last_used_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Revokes one of the caller's named API tokens.
    pub async fn delete_api_token(&self, me: &Principal, name: &TokenName) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done =
            crate::sql::query(self.dialect, "DELETE FROM tokens WHERE user_id = $1 AND kind = 'api' AND name = $2")
                .bind(me.user_id())
                .bind(name.as_str())
                .execute(&mut *tx.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {:?}", name.as_str())));
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod debug_tests {
    use super::IssuedToken;

    #[test]
    fn an_issued_token_never_prints_its_secrets() {
        let token =
            IssuedToken { id: 7, secret: "s3cr3t-value".into(), csrf: Some("csrf-value".into()), expires_at: None };
        let shown = format!("{token:?}");
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("csrf-value"), "{shown}");
        assert!(shown.contains("id: 7"), "{shown}");
    }
}
