//! flvpc's persistence: one code path over SQLite (the embedded default),
//! PostgreSQL and MySQL/MariaDB, through sqlx's `Any` driver.
//!
//! Architecture Invariant: this is the only crate that knows SQL. Queries are
//! written once with `$N` placeholders, numbered in order (`sql.rs` turns them
//! into MySQL's `?`); every value is bound, never formatted into SQL. What differs
//! between dialects lives in `migrations.rs` (types), `dialect.rs` (sessions,
//! connection errors), `quotas.rs` (the admission lock) and `backup.rs`. Methods that reveal or change
//! protected state take a grant from `flvpc_model::policy`, so the permission
//! check cannot be skipped by a caller.

mod audit;
#[cfg(test)]
mod audit_tests;
mod backup;
#[cfg(test)]
mod backup_tests;
mod cache;
mod dialect;
#[cfg(test)]
mod dialect_tests;
mod error;
mod hosts;
#[cfg(test)]
mod hosts_tests;
mod instance;
mod leader;
#[cfg(test)]
mod leader_tests;
mod machines;
#[cfg(test)]
mod machines_tests;
mod migrations;
mod moves;
mod namespaces;
mod operations;
mod passwords;
mod placement;
mod ports;
mod quotas;
mod specs;
mod sql;
mod tokens;
mod users;

pub use audit::{AuditEntry, AuditFilter, AuditRecord, NewAudit, OUTCOME_ERROR};
pub use backup::{backup, restore, BackupSummary};
pub use error::StoreError;
pub use hosts::{HostLoad, HostRecord, HostState, HostTls, NewHost};
pub use leader::LeaderLease;
pub use machines::{Desired, MachinePlan, MachineRecord};
pub use namespaces::{Member, Namespace};
pub use operations::Operation;
pub use placement::HostCandidate;
pub use ports::{IsFree, PortRange, PortRecord, PortRequest};
pub use quotas::NamespaceUsage;
pub use specs::StoredSpec;
pub use tokens::{ApiToken, IssuedToken, Session, TokenKind};
pub use users::{SshKey, User};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

pub use dialect::Dialect;

/// How long opening a connection may take before the database counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The database: a connection pool and the dialect it speaks.
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// The URL it was opened with (the leader lease opens its own connection or lock file from it).
    url: String,
    /// SQLite allows one writer at a time; taking this lock before a write
    /// transaction turns "database is locked" errors into a short wait.
    sqlite_writer: Mutex<()>,
    /// Bounds concurrent argon2 work (memory and CPU); see `passwords.rs`.
    hashing: passwords::Hashing,
    /// The generation of this process's writes, which the cached answers below are checked against.
    cache: cache::ReadCache,
    /// Valid sessions by secret hash (`authenticate`).
    sessions: cache::Answers<String, tokens::CachedSession>,
    /// Namespaces' machine lists (`machines`).
    machine_lists: cache::Answers<flvpc_model::NamespaceName, std::sync::Arc<Vec<MachineRecord>>>,
    /// Namespaces' members' public keys (`namespace_keys`, the reconciler's).
    namespace_keys: cache::Answers<flvpc_model::NamespaceName, Vec<String>>,
}

impl Store {
    /// Opens `url` (`sqlite://PATH`, `postgres://…` or `mysql://…`), creating a SQLite file if
    /// needed, and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let sqlite_file = (dialect == Dialect::Sqlite).then(|| sqlite_path(&url)).flatten();
        if let Some(path) = &sqlite_file {
            create_private_file(path)?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database URL {:?}: {e}", redact(&url))))?;
        if dialect != Dialect::Sqlite {
            // One connection first, on its own: the pool would retry a refused or unreachable
            // server until its timeout and then report only that it timed out.
            use sqlx::{ConnectOptions, Connection};
            let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                .await
                .map_err(|_| dialect::cannot_open(&url, &sqlx::Error::PoolTimedOut))?
                .map_err(|e| dialect::cannot_open(&url, &e))?;
            probe.close().await.map_err(|e| dialect::cannot_open(&url, &e))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 10 })
            .acquire_timeout(CONNECT_TIMEOUT)
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
                    dialect.set_up_session(conn).await
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| dialect::cannot_open(&url, &e))?;
        let store = Self {
            pool,
            dialect,
            url: url.clone(),
            sqlite_writer: Mutex::new(()),
            hashing: passwords::Hashing::default(),
            cache: cache::ReadCache::default(),
            sessions: cache::Answers::default(),
            machine_lists: cache::Answers::default(),
            namespace_keys: cache::Answers::default(),
        };
        if dialect == Dialect::Mysql {
            dialect::check_mariadb(&store.pool, &url).await?;
        }
        store.migrate().await?;
        if let Some(path) = &sqlite_file {
            // After migrating, so the -wal and -shm files exist: all three hold password and token hashes.
            for file in [path.clone(), suffixed(path, "-wal"), suffixed(path, "-shm")] {
                make_private(&file, 0o600)?;
            }
        }
        Ok(store)
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Checks the database answers (for /healthz).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sql::query(self.dialect, "SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let _writer = self.sqlite_writer.lock().await;
        apply_migrations(&self.pool, self.dialect, i64::MAX).await
    }

    /// Begins a write transaction, serialising writers on SQLite.
    async fn begin_write(&self) -> Result<WriteTx<'_>, StoreError> {
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.sqlite_writer.lock().await),
            Dialect::Postgres | Dialect::Mysql => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _guard: guard, cache: &self.cache })
    }
}

/// Applies the migrations not yet recorded, up to and including version `up_to` (a backup of a
/// PostgreSQL or MySQL database gets the schema the database has, not a newer one).
///
/// MySQL commits each schema statement on its own (DDL is not transactional there), so its
/// statements are written to be run again (`IF NOT EXISTS`): a migration cut short completes at
/// the next start instead of failing on what it already made.
async fn apply_migrations(pool: &AnyPool, dialect: Dialect, up_to: i64) -> Result<(), StoreError> {
    pool.execute(migrations::SCHEMA_MIGRATIONS).await?;
    let applied: Vec<i64> = sql::query_scalar(dialect, "SELECT version FROM schema_migrations").fetch_all(pool).await?;
    for migration in migrations::MIGRATIONS.iter().filter(|m| m.version <= up_to) {
        if applied.contains(&migration.version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        for statement in migration.statements(dialect) {
            (&mut *tx).execute(*statement).await?;
        }
        sql::query(dialect, "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
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

/// A write transaction and, on SQLite, the writer lock held until it ends.
struct WriteTx<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// Told after the commit, so that no cached answer outlives what this wrote.
    cache: &'a cache::ReadCache,
}

impl WriteTx<'_> {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        self.cache.written();
        Ok(())
    }
}

/// Milliseconds since the Unix epoch: the one time format in the database.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The file of a `sqlite://PATH[?options]` URL; None for in-memory databases.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Config(format!("cannot {what} {}: {err}; check the owner and permissions", path.display()))
}

/// Creates the database file readable by its owner only, before SQLite creates it with the
/// umask's mode (SQLite gives the -wal and -shm files the database file's mode).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_error("create", dir, e))?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("create", path, e)),
    }
}

/// Takes group and other permissions away from `path` if it exists, with a log line when it
/// changed something (an older flvpc left the file readable by everyone).
fn make_private(path: &Path, mode: u32) -> Result<(), StoreError> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let old = meta.permissions().mode() & 0o777;
    if old & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_error("chmod", path, e))?;
    tracing::warn!("{} was readable by others (mode {old:o}); set its mode to {mode:o}", path.display());
    Ok(())
}

/// Creates the data dir (and missing parents) readable by its owner only, or takes group and
/// other permissions away from an existing one, with a log line: it holds the database and the
/// gateway's host key.
///
/// A data dir owned by another user is refused before anything else happens: flvpc would share
/// its keys and database with that user (or fail later, half started).
pub fn private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| io_error("create", path, e))?;
    // `/proc/self` belongs to the process's effective user: no unsafe call needed to learn it.
    if let (Ok(dir), Ok(me)) = (std::fs::metadata(path), std::fs::metadata("/proc/self")) {
        if dir.uid() != me.uid() {
            return Err(StoreError::Config(format!(
                "the data dir {} is owned by uid {}, not by uid {} that runs flvpc: give it to this user \
                 (chown -R {} {}) or run flvpc as its owner",
                path.display(),
                dir.uid(),
                me.uid(),
                me.uid(),
                path.display()
            )));
        }
    }
    make_private(path, 0o700)
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

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite:///tmp/x/flvpc.db?mode=rwc"), Some(PathBuf::from("/tmp/x/flvpc.db")));
        assert_eq!(sqlite_path("sqlite://data/flvpc.db"), Some(PathBuf::from("data/flvpc.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(suffixed(Path::new("/d/flvpc.db"), "-wal"), PathBuf::from("/d/flvpc.db-wal"));
    }

    #[tokio::test]
    async fn database_files_and_data_dir_are_private() {
        let base = tempfile::tempdir().expect("temp dir");
        let dir = base.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("private dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("flvpc.db");
        let store = Store::open(&format!("sqlite://{}", db.display())).await.expect("open");
        for file in [db.clone(), suffixed(&db, "-wal"), suffixed(&db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        store.close().await;
        // An older flvpc's world-readable files are tightened at open.
        for file in [db.clone(), suffixed(&db, "-wal"), suffixed(&db, "-shm")] {
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            }
        }
        let store = Store::open(&format!("sqlite://{}", db.display())).await.expect("reopen");
        for file in [db.clone(), suffixed(&db, "-wal"), suffixed(&db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        store.close().await;
    }
}
