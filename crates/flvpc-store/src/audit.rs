//! The audit log: every state change, who made it, from where, and how it ended.

use crate::{now_ms, Store, StoreError};
use flvpc_model::{NamespaceAdminGrant, SuperadminGrant};
use sqlx::Row;

/// A new audit record, as the server writes it.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    /// The login of who acted, if known (None for a failed login of an unknown user).
    pub actor: Option<String>,
    /// What was done, e.g. `user.create`.
    pub action: String,
    /// What it was done to, e.g. the login or namespace.
    pub target: String,
    /// The namespace concerned, if any (lets namespace admins read their own log).
    pub namespace: Option<String>,
    /// The source address of the request.
    pub source: Option<String>,
    /// `ok`, or the error code of a refusal or failure.
    pub outcome: String,
    /// Extra detail, e.g. the role given.
    pub detail: Option<String>,
}

/// A stored audit record.
pub type AuditRecord = AuditEntry;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id; pass as `before` to page back.
    pub id: i64,
    /// When (ms since the epoch).
    pub at: i64,
    /// Who acted.
    pub actor: Option<String>,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: String,
    /// In which namespace.
    pub namespace: Option<String>,
    /// From which address.
    pub source: Option<String>,
    /// `ok` or an error code.
    pub outcome: String,
    /// Extra detail.
    pub detail: Option<String>,
}

/// Which audit records to read: every field left `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only what this login did.
    pub actor: Option<String>,
    /// Only this action (`machine.start`), or every action of a family given with a trailing
    /// dot (`machine.`).
    pub action: Option<String>,
    /// `ok`, `error` (every refusal and failure), or one error code (`forbidden`).
    pub outcome: Option<String>,
    /// Only records at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Only records before this time (ms since the epoch).
    pub until: Option<i64>,
}

/// The `outcome` filter that stands for every record that did not end `ok`.
pub const OUTCOME_ERROR: &str = "error";

/// Longest text kept in any audit field: hostile input must not bloat the log.
const MAX_FIELD: usize = 512;

/// Bounds a field and writes control characters as escapes: hostile input must neither
/// bloat the log nor keep a record out of it (PostgreSQL refuses NUL in text), nor fake
/// new lines in an export.
fn clip(value: String) -> String {
    let value = if value.chars().any(char::is_control) {
        value.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
    } else {
        value
    };
    if value.len() <= MAX_FIELD {
        return value;
    }
    let mut end = MAX_FIELD;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

impl Store {
    /// Appends a record to the audit log.
    pub async fn record_audit(&self, entry: NewAudit) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "INSERT INTO audit (at, actor, action, target, namespace, source, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now_ms())
        .bind(entry.actor.map(clip))
        .bind(clip(entry.action))
        .bind(clip(entry.target))
        .bind(entry.namespace.map(clip))
        .bind(entry.source.map(clip))
        .bind(clip(entry.outcome))
        .bind(entry.detail.map(clip))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The whole audit log, newest first, `limit` records older than `before`.
    pub async fn audit_all(
        &self,
        _: &SuperadminGrant,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_query(None, filter, before, limit).await
    }

    /// One namespace's audit log, newest first.
    pub async fn audit_namespace(
        &self,
        grant: &NamespaceAdminGrant,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_query(Some(grant.namespace().as_str()), filter, before, limit).await
    }

    async fn audit_query(
        &self,
        namespace: Option<&str>,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Every condition is a bound value, so a filter is data, never SQL. An action family
        // (`machine.`) is compared as a prefix with substr rather than LIKE, where `_` and `%`
        // would be patterns (and rather than a range, which collations order differently).
        let (exact, family) = match filter.action.as_deref() {
            Some(family) if family.ends_with('.') => (None, Some(family)),
            other => (other, None),
        };
        let (outcome, not_ok) = match filter.outcome.as_deref() {
            Some(OUTCOME_ERROR) => (None, 1_i64),
            other => (other, 0_i64),
        };
        // Each value is bound where it is used, in order (`sql.rs`): the optional ones twice. The
        // family's length is counted here in characters, as substr counts on every dialect
        // (MySQL's length() counts bytes).
        let family_chars = family.map(|f| i32::try_from(f.chars().count()).unwrap_or(i32::MAX));
        let rows = crate::sql::query(
            self.dialect,
            "SELECT id, at, actor, action, target, namespace, source, outcome, detail FROM audit \
             WHERE ($1 IS NULL OR namespace = $2) AND id < $3 \
             AND ($4 IS NULL OR actor = $5) \
             AND ($6 IS NULL OR action = $7) AND ($8 IS NULL OR substr(action, 1, $9) = $10) \
             AND ($11 IS NULL OR outcome = $12) AND ($13 = 0 OR outcome <> 'ok') \
             AND at >= $14 AND at < $15 \
             ORDER BY id DESC LIMIT $16",
        )
        .bind(namespace)
        .bind(namespace)
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.actor.as_deref())
        .bind(filter.actor.as_deref())
        .bind(exact)
        .bind(exact)
        .bind(family)
        .bind(family_chars)
        .bind(family)
        .bind(outcome)
        .bind(outcome)
        .bind(not_ok)
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    target: row.try_get(4)?,
                    namespace: row.try_get(5)?,
                    source: row.try_get(6)?,
                    outcome: row.try_get(7)?,
                    detail: row.try_get(8)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_fields_bounded() {
        assert_eq!(clip("bob\0\n".into()), "bob\\u{0}\\n");
        assert_eq!(clip("plain".into()), "plain");
        let long = clip("é".repeat(600));
        assert!(long.len() <= MAX_FIELD + "…".len());
    }
}
