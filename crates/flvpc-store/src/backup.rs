//! Backups: a consistent online snapshot of the database into one SQLite file, and its restore
//! into an empty SQLite data dir or an empty PostgreSQL or MySQL/MariaDB database.
//!
//! The backup format (version [`FORMAT`]) is a SQLite database with flvpc's schema, its
//! `schema_migrations` rows, and one table `flvpc_backup` (format, source dialect, time). From
//! SQLite it is `VACUUM INTO` (one read transaction: online, never torn); from PostgreSQL and
//! MySQL it is a logical export by flvpc itself, every table read in one REPEATABLE READ
//! transaction (on MySQL started WITH CONSISTENT SNAPSHOT, so the snapshot is taken at once, not
//! at the first table read). So a backup of any dialect restores into any. Restore runs the migrations after, so a backup
//! of an older schema comes up to date, and keeps the instance id, so the restored server adopts
//! the machines (their containers carry the instance label).

use crate::{create_private_file, io_error, now_ms, redact, sql, sqlite_path, Dialect, Store, StoreError};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The backup file format this flvpc writes and reads.
pub const FORMAT: i64 = 1;

/// Every table of the schema, parents before children (the order rows are copied in).
/// `backup_tests.rs` checks that it names every table the migrations create.
pub(crate) const TABLES: &[&str] = &[
    "users",
    "namespaces",
    "memberships",
    "ssh_keys",
    "tokens",
    "audit",
    "cluster_specs",
    "hosts",
    "machines",
    "host_ports",
    "operations",
    "server_settings",
    "namespace_quotas",
];

/// Tables with a generated `id`, whose PostgreSQL identity must continue after the copied rows
/// (MySQL's AUTO_INCREMENT moves past the ids written by itself).
const IDENTITY_TABLES: &[&str] = &["users", "namespaces", "ssh_keys", "tokens", "audit", "machines"];

/// What a backup or restore wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Rows per table, in [`TABLES`] order.
    pub tables: Vec<(String, u64)>,
    /// The newest schema migration in the written database.
    pub schema_version: i64,
    /// Size of the backup file.
    pub bytes: u64,
}

impl BackupSummary {
    /// All rows together.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Writes a snapshot of the database at `database_url` into `file`, which must not exist.
pub async fn backup(database_url: &str, file: &Path) -> Result<BackupSummary, StoreError> {
    sqlx::any::install_default_drivers();
    let dialect = dialect_of(database_url)?;
    check_file_name(file)?;
    if dialect == Dialect::Sqlite {
        // Store::open would create an empty database: a backup of nothing helps nobody.
        let path = sqlite_path(database_url)
            .ok_or_else(|| StoreError::Config("an in-memory SQLite database cannot be backed up".into()))?;
        if !path.exists() {
            return Err(StoreError::Config(format!(
                "no database at {}: give the data dir of the flvpc to back up (--data-dir) or its --database-url",
                path.display()
            )));
        }
    }
    create_new_private(file)?;
    let result = write_backup(database_url, dialect, file).await;
    if result.is_err() {
        // Half a backup must not be mistaken for one.
        let _ = std::fs::remove_file(file);
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(crate::suffixed(file, suffix));
        }
    }
    result
}

async fn write_backup(database_url: &str, dialect: Dialect, file: &Path) -> Result<BackupSummary, StoreError> {
    // The source is opened as it is, never migrated: the server that owns it may be an older flvpc.
    match dialect {
        Dialect::Sqlite => {
            let live =
                sqlite_path(database_url).ok_or_else(|| StoreError::Config("no SQLite file to back up".into()))?;
            let source = single_connection(&format!("{}?mode=rw", sqlite_url(&live))).await?;
            // The server may hold the write lock a moment; wait for it as the server's own connections do.
            source.execute("PRAGMA busy_timeout = 5000").await?;
            check_schema(&source, database_url).await?;
            let path = file.to_str().ok_or_else(|| {
                StoreError::Config(format!("{} is not valid UTF-8: name the backup file in UTF-8", file.display()))
            })?;
            // One read transaction, so a consistent snapshot; the file name is a bound value, no
            // path reaches the SQL text.
            sqlx::query("VACUUM INTO $1").bind(path).execute(&source).await?;
            source.close().await;
        }
        Dialect::Postgres | Dialect::Mysql => {
            let source = single_connection(database_url).await?;
            let version = check_schema(&source, database_url).await?;
            // The backup gets the schema the source has; restore migrates it later.
            let target = single_connection(&format!("{}?mode=rwc", sqlite_url(file))).await?;
            crate::apply_migrations(&target, Dialect::Sqlite, version).await?;
            let mut src = source.acquire().await?;
            let mut dst = target.acquire().await?;
            // Every table read from one snapshot, while the server goes on writing.
            let mut read = if dialect == Dialect::Mysql {
                // Sets the next transaction's level (the session's is READ COMMITTED, `dialect.rs`).
                src.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
                src.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await?
            } else {
                let mut read = src.begin().await?;
                read.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
                read
            };
            let mut write = dst.begin().await?;
            for table in TABLES {
                copy_table(&mut read, &mut write, Dialect::Sqlite, table).await?;
            }
            write.commit().await?;
            read.rollback().await?;
            drop((src, dst));
            target.close().await;
            source.close().await;
        }
    }
    let summary = finish_backup_file(file, dialect).await?;
    Ok(summary)
}

/// The schema version of an flvpc database, refused when it is not one or is newer than this flvpc.
async fn check_schema(pool: &AnyPool, database_url: &str) -> Result<i64, StoreError> {
    let version: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await;
    let newest = crate::migrations::MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    match version {
        Ok(Some(version)) if version <= newest => Ok(version),
        Ok(Some(version)) => Err(StoreError::Config(format!(
            "the database {} has schema version {version}, newer than this flvpc's {newest}: use the flvpc that runs it",
            redact(database_url)
        ))),
        Ok(None) | Err(_) => Err(StoreError::Config(format!(
            "the database {} holds no flvpc schema: give the data dir or --database-url of an flvpc server",
            redact(database_url)
        ))),
    }
}

/// Marks the file as a backup and makes it one self-contained file (no WAL beside it).
async fn finish_backup_file(file: &Path, source: Dialect) -> Result<BackupSummary, StoreError> {
    let pool = single_connection(&format!("{}?mode=rw", sqlite_url(file))).await?;
    pool.execute("PRAGMA journal_mode = DELETE").await?;
    pool.execute(
        "CREATE TABLE flvpc_backup (format BIGINT NOT NULL, source TEXT NOT NULL, created_at BIGINT NOT NULL)",
    )
    .await?;
    sqlx::query("INSERT INTO flvpc_backup (format, source, created_at) VALUES ($1, $2, $3)")
        .bind(FORMAT)
        .bind(source.word())
        .bind(now_ms())
        .execute(&pool)
        .await?;
    let mut summary = summarize(&pool, Dialect::Sqlite).await?;
    pool.close().await;
    summary.bytes = std::fs::metadata(file).map_err(|e| io_error("read", file, e))?.len();
    Ok(summary)
}

/// Puts the backup `file` into the empty database at `database_url` (for SQLite, a file that
/// does not exist yet), then migrates it.
pub async fn restore(file: &Path, database_url: &str) -> Result<BackupSummary, StoreError> {
    let mut summary = restore_checked(file, database_url).await?;
    summary.bytes = std::fs::metadata(file).map_err(|e| io_error("read", file, e))?.len();
    Ok(summary)
}

async fn restore_checked(file: &Path, database_url: &str) -> Result<BackupSummary, StoreError> {
    sqlx::any::install_default_drivers();
    let dialect = dialect_of(database_url)?;
    check_file_name(file)?;
    check_backup(file).await?;
    match dialect {
        Dialect::Sqlite => {
            let path = sqlite_path(database_url)
                .ok_or_else(|| StoreError::Config("restore needs a database file, not an in-memory one".into()))?;
            for existing in [path.clone(), crate::suffixed(&path, "-wal")] {
                if existing.exists() {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    return Err(StoreError::Config(format!(
                        "the data dir already holds {name} ({}): restore into an empty one",
                        existing.display()
                    )));
                }
            }
            // Copied beside the target and renamed into place only when whole.
            let partial = crate::suffixed(&path, ".restoring");
            let _ = std::fs::remove_file(&partial);
            create_new_private(&partial)?;
            let copied = copy_into_partial(file, &partial).await;
            if let Err(err) = copied {
                let _ = std::fs::remove_file(&partial);
                return Err(err);
            }
            std::fs::rename(&partial, &path).map_err(|e| io_error("rename into place", &partial, e))?;
            let store = Store::open(database_url).await?;
            let summary = summarize(&store.pool, Dialect::Sqlite).await?;
            store.close().await;
            Ok(summary)
        }
        Dialect::Postgres | Dialect::Mysql => {
            let target_pool = single_connection(database_url).await?;
            // Empty means no flvpc row: a database whose schema an earlier, failed restore (or a
            // server started once) made is still empty.
            let rows = summarize(&target_pool, dialect).await?.rows();
            target_pool.close().await;
            if rows > 0 {
                return Err(StoreError::Config(format!(
                    "the database {} already holds flvpc data ({rows} rows): restore into an empty one",
                    redact(database_url)
                )));
            }
            // Migrate a private copy first, so old and new schemas meet at this flvpc's version.
            let scratch =
                std::env::temp_dir().join(format!("flvpc-restore-{}.db", hex::encode(rand::random::<[u8; 8]>())));
            create_new_private(&scratch)?;
            let result = restore_into_server(file, &scratch, database_url, dialect).await;
            for path in [scratch.clone(), crate::suffixed(&scratch, "-wal"), crate::suffixed(&scratch, "-shm")] {
                let _ = std::fs::remove_file(path);
            }
            result
        }
    }
}

/// Copies the backup, migrated in `scratch`, into the PostgreSQL or MySQL database at `database_url`.
async fn restore_into_server(
    file: &Path,
    scratch: &Path,
    database_url: &str,
    dialect: Dialect,
) -> Result<BackupSummary, StoreError> {
    copy_into_partial(file, scratch).await?;
    let source = Store::open(&sqlite_url(scratch)).await?;
    let target = Store::open(database_url).await?;
    let mut src = source.pool.acquire().await?;
    let mut dst = target.pool.acquire().await?;
    let mut write = dst.begin().await?;
    for table in TABLES {
        copy_table(&mut src, &mut write, dialect, table).await?;
    }
    for table in IDENTITY_TABLES.iter().filter(|_| dialect == Dialect::Postgres) {
        // Table names are this module's constants, never input.
        write
            .execute(sqlx::AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )))
            .await?;
    }
    write.commit().await?;
    drop((src, dst));
    let summary = summarize(&target.pool, dialect).await?;
    source.close().await;
    target.close().await;
    Ok(summary)
}

/// Copies the backup's bytes into `partial` (already created, private) and removes the marker.
async fn copy_into_partial(file: &Path, partial: &Path) -> Result<(), StoreError> {
    let bytes = std::fs::read(file).map_err(|e| io_error("read", file, e))?;
    std::fs::write(partial, bytes).map_err(|e| io_error("write", partial, e))?;
    let pool = single_connection(&format!("{}?mode=rw", sqlite_url(partial))).await?;
    pool.execute("DROP TABLE flvpc_backup").await?;
    pool.close().await;
    Ok(())
}

/// Refuses a file that is not an flvpc backup of a format this flvpc reads, before anything is written.
async fn check_backup(file: &Path) -> Result<(), StoreError> {
    let not_backup = |why: &str| {
        StoreError::Config(format!(
            "{} is not an flvpc backup ({why}): give a file written by `flvpc backup`",
            file.display()
        ))
    };
    let mut header = [0u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(|e| io_error("open", file, e))?;
        f.read_exact(&mut header).map_err(|_| not_backup("too short to be a SQLite file"))?;
    }
    if &header != b"SQLite format 3\0" {
        return Err(not_backup("not a SQLite file"));
    }
    let pool = single_connection(&format!("{}?mode=ro", sqlite_url(file))).await?;
    let format: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT format FROM flvpc_backup").fetch_optional(&pool).await;
    pool.close().await;
    match format {
        Ok(Some(FORMAT)) => {
            let pool = single_connection(&format!("{}?mode=ro", sqlite_url(file))).await?;
            let schema = check_schema(&pool, &sqlite_url(file)).await;
            pool.close().await;
            schema.map(|_| ())
        }
        Ok(Some(other)) => Err(StoreError::Config(format!(
            "{} is a backup of format {other}, and this flvpc reads format {FORMAT}: restore it with a newer flvpc",
            file.display()
        ))),
        Ok(None) | Err(_) => Err(not_backup("a SQLite file without flvpc's backup marker")),
    }
}

/// Copies every row of `table` from one connection to another (any dialects), all columns by
/// name (quoted: `key` is a reserved word in MySQL), each value as the integer or text its
/// declared type says.
async fn copy_table(
    src: &mut AnyConnection,
    dst: &mut AnyConnection,
    dst_dialect: Dialect,
    table: &str,
) -> Result<u64, StoreError> {
    let columns = table_columns(dst, dst_dialect, table).await?;
    if columns.is_empty() {
        // A table of a newer schema than this database's (both sides have the same version).
        return Ok(0);
    }
    let names: Vec<String> = columns.iter().map(|(name, _)| format!("\"{name}\"")).collect();
    // Table and column names come from TABLES and the schema itself, never from input.
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let insert = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), placeholders.join(", "));
    let insert = sql::dynamic(dst_dialect, insert);
    let rows: Vec<AnyRow> = sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(&mut *src).await?;
    for row in &rows {
        let mut query = sqlx::query(insert.clone());
        for (i, (_, integer)) in columns.iter().enumerate() {
            query = if *integer {
                query.bind(row.try_get::<Option<i64>, _>(i)?)
            } else {
                query.bind(row.try_get::<Option<String>, _>(i)?)
            };
        }
        query.execute(&mut *dst).await?;
    }
    Ok(rows.len() as u64)
}

/// A table's columns and whether each holds integers, read from the connection's own schema.
pub(crate) async fn table_columns(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
) -> Result<Vec<(String, bool)>, StoreError> {
    let columns: Vec<(String, String)> = match dialect {
        Dialect::Sqlite => {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1)").bind(table).fetch_all(&mut *conn).await?
        }
        Dialect::Postgres => {
            sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?
        }
        // Generated columns (the stand-ins for partial indexes, `migrations.rs`) are computed, never written.
        Dialect::Mysql => {
            sql::query_as(
                Dialect::Mysql,
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = $1 AND is_generated = 'NEVER' \
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    Ok(columns.into_iter().map(|(name, kind)| (name, kind.to_ascii_uppercase().contains("INT"))).collect())
}

/// Rows per table and the schema version of the database behind `pool`.
async fn summarize(pool: &AnyPool, dialect: Dialect) -> Result<BackupSummary, StoreError> {
    let present: Vec<String> = match dialect {
        Dialect::Sqlite => {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await?
        }
        Dialect::Postgres => {
            sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(pool)
            .await?
        }
        Dialect::Mysql => {
            sqlx::query_scalar("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
                .fetch_all(pool)
                .await?
        }
    };
    let mut tables = Vec::new();
    // Tables of a newer schema than the database's are left out.
    for table in TABLES.iter().filter(|t| present.iter().any(|p| p == *t)) {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(pool).await?;
        tables.push(((*table).to_owned(), count.max(0) as u64));
    }
    let schema_version: Option<i64> = if present.iter().any(|p| p == "schema_migrations") {
        sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await?
    } else {
        None
    };
    Ok(BackupSummary { tables, schema_version: schema_version.unwrap_or(0), bytes: 0 })
}

fn dialect_of(url: &str) -> Result<Dialect, StoreError> {
    Dialect::of_url(url)
}

/// A SQLite URL of a file whose name `check_file_name` accepted.
fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The backup file's name goes into a SQLite URL (and, for `VACUUM INTO`, a bound value): it
/// must be UTF-8 without the characters a URL gives a meaning to.
fn check_file_name(file: &Path) -> Result<(), StoreError> {
    match file.to_str() {
        Some(name) if !name.is_empty() && !name.contains(['?', '#', '\0']) => Ok(()),
        _ => Err(StoreError::Config(format!(
            "{:?} cannot be a backup file name: use a UTF-8 path without '?' or '#'",
            file.display()
        ))),
    }
}

async fn single_connection(url: &str) -> Result<AnyPool, StoreError> {
    let dialect = Dialect::of_url(url)?;
    let options = AnyConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid database URL {:?}: {e}", redact(url))))?;
    AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _meta| Box::pin(async move { dialect.set_up_session(conn).await }))
        .connect_with(options)
        .await
        .map_err(|e| crate::dialect::cannot_open(url, &e))
}

/// Creates `path` empty with mode 0600, refusing an existing file (never overwrites a backup).
fn create_new_private(path: &Path) -> Result<PathBuf, StoreError> {
    if path.exists() {
        return Err(StoreError::Config(format!(
            "{} already exists: name a new file (a backup never overwrites one)",
            path.display()
        )));
    }
    create_private_file(path)?;
    Ok(path.to_path_buf())
}
