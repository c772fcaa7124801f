//! The SQL engines flvpc runs on, and what differs in how it talks to each: which URL names
//! which, the session settings a connection starts with, and what a failed connection means.
//!
//! The rest of the differences: placeholders in `sql.rs`, types in `migrations.rs`, the
//! admission lock in `quotas.rs`, schema queries and snapshots in `backup.rs`.

use crate::{redact, StoreError};
use sqlx::{AnyConnection, Executor};

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, a file in the data dir (WAL mode).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MariaDB 10.5 or newer, through sqlx's MySQL driver (`mysql://` or `mariadb://`). MySQL
    /// itself has no `INSERT … RETURNING`, `ADD COLUMN IF NOT EXISTS` nor `CREATE INDEX IF NOT
    /// EXISTS`, which flvpc uses: it is refused at start ([`check_mariadb`]).
    Mysql,
}

/// The URL forms flvpc takes, for error messages.
const URL_FORMS: &str =
    "sqlite://PATH, postgres://USER:PASSWORD@HOST[:PORT]/DB or mysql://USER:PASSWORD@HOST[:PORT]/DB";

impl Dialect {
    /// The dialect a database URL names.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" if url.contains("://") => Ok(Dialect::Postgres),
            // sqlx's MySQL driver takes both schemes.
            "mysql" | "mariadb" if url.contains("://") => Ok(Dialect::Mysql),
            _ => Err(StoreError::Config(format!("unsupported database URL {:?}: use {URL_FORMS}", redact(url)))),
        }
    }

    /// The dialect of an open connection (for the functions that get only a connection).
    pub(crate) fn of(conn: &AnyConnection) -> Self {
        match conn.backend_name() {
            "PostgreSQL" => Dialect::Postgres,
            "MySQL" => Dialect::Mysql,
            _ => Dialect::Sqlite,
        }
    }

    /// The word a backup records as its source.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// Settings every new connection gets, so that one query text means the same everywhere.
    ///
    /// MySQL: `ANSI_QUOTES`, so `"key"` quotes an identifier as in SQLite and PostgreSQL (`key`
    /// is a reserved word there); READ COMMITTED, PostgreSQL's default, so a statement sees what
    /// committed before it (InnoDB's REPEATABLE READ would keep reading the transaction's first
    /// snapshot after an admission lock was granted: see `quotas.rs`). Backups ask for their
    /// own snapshot explicitly.
    pub(crate) async fn set_up_session(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self == Dialect::Mysql {
            conn.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").await?;
            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
        }
        Ok(())
    }
}

/// Refuses a MySQL-protocol server that is not MariaDB 10.5 or newer, before any migration.
pub(crate) async fn check_mariadb(pool: &sqlx::AnyPool, url: &str) -> Result<(), StoreError> {
    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(pool).await?;
    if mariadb_is_new_enough(&version) {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "the database server at {:?} is version {version:?}: flvpc needs MariaDB 10.5 or newer (Debian 12's \
         mariadb-server is 10.11; MySQL lacks INSERT … RETURNING)",
        redact(url)
    )))
}

/// Whether `SELECT VERSION()` names MariaDB 10.5 or newer (`10.11.19-MariaDB-0+deb12u1`).
fn mariadb_is_new_enough(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    // Some servers and proxies still show the old "5.5.5-" replication prefix first.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut numbers = version.split(['.', '-']).map(|part| part.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (10, 5),
        _ => false,
    }
}

/// A connection that failed at start, said with what to check (the password redacted).
pub(crate) fn cannot_open(url: &str, err: &sqlx::Error) -> StoreError {
    let shown = redact(url);
    let hint = match err {
        sqlx::Error::Database(db) => {
            let mysql = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|e| e.number());
            match (mysql, db.code().as_deref()) {
                // MySQL/MariaDB: access denied for the user (with a password, or without one for a
                // user that logs in otherwise), or to the database; unknown database.
                (Some(1045 | 1698), _) => "check the user and password in --database-url".to_owned(),
                (Some(1044), _) => "grant the user all privileges on the database, or name one it may use".to_owned(),
                (Some(1049), _) => format!(
                    "create the database first (CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin), \
                     or name an existing one",
                    database_name(url).unwrap_or("DB")
                ),
                // PostgreSQL: wrong password or unknown role; unknown database.
                (None, Some("28P01" | "28000")) => "check the user and password in --database-url".to_owned(),
                (None, Some("3D000")) => format!(
                    "create the database first (createdb {}), or name an existing one",
                    database_name(url).unwrap_or("DB")
                ),
                _ => "check --database-url".to_owned(),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            "check the host and port in --database-url, and that the database server runs and accepts connections there"
                .to_owned()
        }
        sqlx::Error::Configuration(_) => format!("write it as {URL_FORMS}"),
        _ => "check --database-url".to_owned(),
    };
    StoreError::Config(format!("cannot open database {shown:?}: {err}; {hint}"))
}

/// The database name at the end of a server URL, when it is a plain name.
fn database_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_dialect() {
        assert_eq!(Dialect::of_url("sqlite:///d/flvpc.db").ok(), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("sqlite::memory:").ok(), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("postgres://u@h/db").ok(), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("postgresql://u@h/db").ok(), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("mysql://u:p@h:3306/db").ok(), Some(Dialect::Mysql));
        assert_eq!(Dialect::of_url("mariadb://u:p@h/db").ok(), Some(Dialect::Mysql));
        let err = Dialect::of_url("oracle://u:secret@h/db").expect_err("unsupported");
        assert!(err.to_string().contains("mysql://USER:PASSWORD@HOST"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn only_mariadb_10_5_or_newer_is_taken() {
        assert!(mariadb_is_new_enough("10.11.19-MariaDB-0+deb12u1"));
        assert!(mariadb_is_new_enough("10.5.0-MariaDB"));
        assert!(mariadb_is_new_enough("11.4.2-MariaDB-ubu2404"));
        assert!(!mariadb_is_new_enough("10.4.34-MariaDB"));
        assert!(!mariadb_is_new_enough("8.0.36"));
        assert!(mariadb_is_new_enough("5.5.5-10.11.6-MariaDB-x"), "the old replication prefix is not read as 5.5");
    }

    #[test]
    fn database_names_for_hints() {
        assert_eq!(database_name("mysql://u:p@h:3306/flvpc"), Some("flvpc"));
        assert_eq!(database_name("mysql://u:p@h/flvpc?ssl-mode=required"), Some("flvpc"));
        assert_eq!(database_name("mysql://u:p@h/"), None);
        assert_eq!(database_name("mysql://u:p@h/x;drop"), None);
    }
}
