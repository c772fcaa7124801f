//! flvpc's persistence: one code path over SQLite (the embedded default) and
//! PostgreSQL, through sqlx's `Any` driver.
//!
//! Architecture Invariant: this is the only crate that knows SQL. Queries are
//! written once with `$N` placeholders, which both SQLite and PostgreSQL accept;
//! every value is bound, never formatted into SQL. Methods that reveal or change
//! protected state take a grant from `flvpc_model::policy`, so the permission
//! check cannot be skipped by a caller.

mod audit;
mod error;
mod machines;
mod migrations;
mod namespaces;
mod passwords;
mod quotas;
mod tokens;
mod users;

pub use audit::{AuditEntry, AuditRecord, NewAudit};
pub use error::StoreError;
pub use machines::{Desired, MachinePlan, MachineRecord, Operation, PortRange, PortRecord, PortRequest, StoredSpec};
pub use namespaces::{Member, Namespace};
pub use quotas::NamespaceUsage;
pub use tokens::{ApiToken, IssuedToken, Session, TokenKind};
pub use users::{SshKey, User};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, a file in the data dir (WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database: a connection pool and the dialect it speaks.
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite allows one writer at a time; taking this lock before a write
    /// transaction turns "database is locked" errors into a short wait.
    sqlite_writer: Mutex<()>,
}

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if
    /// needed, and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact(url)
            )));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database URL {:?}: {e}", redact(&url))))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 5000",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Config(format!("cannot open database {:?}: {e}", redact(&url))))?;
        let store = Self { pool, dialect, sqlite_writer: Mutex::new(()) };
        store.migrate().await?;
        Ok(store)
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Checks the database answers (for /healthz).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let _writer = self.sqlite_writer.lock().await;
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&self.pool).await?;
        for migration in migrations::MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            for statement in migration.statements(self.dialect) {
                sqlx::query(*statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(migration.description)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version = migration.version, "applied migration: {}", migration.description);
        }
        Ok(())
    }

    /// Begins a write transaction, serialising writers on SQLite.
    async fn begin_write(&self) -> Result<WriteTx<'_>, StoreError> {
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.sqlite_writer.lock().await),
            Dialect::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _guard: guard })
    }
}

/// A write transaction and, on SQLite, the writer lock held until it ends.
struct WriteTx<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch: the one time format in the database.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Hides a password in a database URL before it reaches an error message or a log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://flvpc:secret@127.0.0.1/flvpc"), "postgres://flvpc:***@127.0.0.1/flvpc");
        assert_eq!(redact("postgres://flvpc@127.0.0.1/flvpc"), "postgres://flvpc@127.0.0.1/flvpc");
        assert_eq!(redact("sqlite://data/flvpc.db"), "sqlite://data/flvpc.db");
    }
}
