//! The leader lease: exactly one flvpc process sharing a database reconciles at a time.
//!
//! The lock lives as long as what holds it, never on a timer: a process killed mid-work loses it
//! with its connection (or its file descriptor), which is the handover; a process that lives
//! holds it for good. PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on one
//! connection of its own, outside the pool (a pooled connection would be shared, recycled and
//! reopened, and the lock with it). MariaDB: a named lock (`GET_LOCK`) the same way; its names
//! are server-wide, so the name includes the database's. SQLite: an exclusive `flock` on
//! `<database file>.<name>.leader` (one machine, one file); an in-memory database is always the leader
//! (nothing else can open it).

use crate::{Dialect, Store, StoreError};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection};
use std::path::PathBuf;
use std::time::Duration;

/// How long the lock's connection may take to answer before the lease counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A lease that at most one holder has at a time, among every process using the database.
pub struct LeaderLease {
    lock: Lock,
    held: bool,
}

enum Lock {
    /// PostgreSQL or MariaDB: the lock belongs to `conn`'s session.
    Session { url: String, dialect: Dialect, name: String, conn: Option<AnyConnection> },
    /// SQLite file: the lock belongs to the open file.
    File { path: PathBuf, file: Option<std::fs::File> },
    /// In-memory SQLite: no other process can share it.
    Always,
}

impl Store {
    /// A lease named `name` on this database (not yet tried: see [`LeaderLease::try_acquire`]).
    pub fn leader_lease(&self, name: &str) -> LeaderLease {
        let lock = match self.dialect {
            Dialect::Postgres | Dialect::Mysql => {
                Lock::Session { url: self.url.clone(), dialect: self.dialect, name: name.to_owned(), conn: None }
            }
            Dialect::Sqlite => match crate::sqlite_path(&self.url) {
                Some(db) => {
                    // One file per lease name, beside the database (`flvpc.db.reconciler.leader`);
                    // the name is made safe for a file name.
                    let safe: String =
                        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
                    let mut path = db.into_os_string();
                    path.push(format!(".{safe}.leader"));
                    Lock::File { path: PathBuf::from(path), file: None }
                }
                None => Lock::Always,
            },
        };
        LeaderLease { lock, held: false }
    }
}

/// PostgreSQL's advisory lock key of a lease: 64 bits of a digest of its name.
fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("flvpc-leader:{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl LeaderLease {
    /// Takes the lease if nobody holds it; true when this lease holds it (already or now).
    /// Cheap when held. An error (the database does not answer) means not held.
    pub async fn try_acquire(&mut self) -> Result<bool, StoreError> {
        if self.held && self.still_held().await {
            return Ok(true);
        }
        self.held = match &mut self.lock {
            Lock::Always => true,
            Lock::File { path, file } => {
                let opened = open_lock_file(path)?;
                match opened.try_lock() {
                    Ok(()) => {
                        *file = Some(opened);
                        true
                    }
                    Err(std::fs::TryLockError::WouldBlock) => false,
                    Err(std::fs::TryLockError::Error(e)) => return Err(crate::io_error("lock", path, e)),
                }
            }
            Lock::Session { url, dialect, name, conn } => {
                if conn.is_none() {
                    let opened = tokio::time::timeout(crate::CONNECT_TIMEOUT, AnyConnection::connect(url))
                        .await
                        .map_err(|_| crate::dialect::cannot_open(url, &sqlx::Error::PoolTimedOut))?
                        .map_err(|e| crate::dialect::cannot_open(url, &e))?;
                    *conn = Some(opened);
                }
                let Some(c) = conn.as_mut() else { return Ok(false) };
                let taken = match dialect {
                    Dialect::Postgres => {
                        crate::sql::query(*dialect, "SELECT 1 WHERE pg_try_advisory_lock($1)")
                            .bind(advisory_key(name))
                            .fetch_optional(&mut *c)
                            .await
                    }
                    _ => {
                        crate::sql::query(
                            *dialect,
                            "SELECT 1 FROM DUAL WHERE GET_LOCK(SHA1(CONCAT(DATABASE(), '/', $1)), 0) = 1",
                        )
                        .bind(name.as_str())
                        .fetch_optional(&mut *c)
                        .await
                    }
                };
                match taken {
                    Ok(row) => row.is_some(),
                    Err(e) => {
                        // A broken connection is opened anew at the next try.
                        *conn = None;
                        return Err(e.into());
                    }
                }
            }
        };
        Ok(self.held)
    }

    /// Whether this lease still holds the lock: a `SELECT 1` on its connection (a connection
    /// that is gone took the lock with it). False once lost, until `try_acquire` takes it again.
    pub async fn still_held(&mut self) -> bool {
        if !self.held {
            return false;
        }
        if let Lock::Session { conn, .. } = &mut self.lock {
            let alive = match conn.as_mut() {
                Some(c) => {
                    let dialect = Dialect::of(c);
                    let answer = crate::sql::query(dialect, "SELECT 1").fetch_optional(&mut *c);
                    matches!(tokio::time::timeout(ANSWER_TIMEOUT, answer).await, Ok(Ok(Some(_))))
                }
                None => false,
            };
            if !alive {
                *conn = None;
                self.held = false;
            }
        }
        self.held
    }

    /// Gives the lease up now, for another process to take at its next try.
    pub async fn release(mut self) {
        if let Lock::Session { dialect, name, conn, .. } = &mut self.lock {
            if let Some(mut c) = conn.take() {
                if self.held {
                    // Closing the connection releases it too; unlocking first says so at once.
                    let unlocked = match dialect {
                        Dialect::Postgres => {
                            crate::sql::query(*dialect, "SELECT 1 WHERE pg_advisory_unlock($1)")
                                .bind(advisory_key(name))
                                .fetch_optional(&mut c)
                                .await
                        }
                        _ => {
                            crate::sql::query(*dialect, "SELECT RELEASE_LOCK(SHA1(CONCAT(DATABASE(), '/', $1)))")
                                .bind(name.as_str())
                                .fetch_optional(&mut c)
                                .await
                        }
                    };
                    if let Err(err) = unlocked {
                        tracing::warn!("could not release the leader lease explicitly ({err}); closing its connection");
                    }
                }
                let _ = c.close().await;
            }
        }
        // A file lock ends when the file is closed, with `self`.
    }
}

/// Opens (creating, readable by the owner only) the file a SQLite lease locks.
fn open_lock_file(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::io_error("open", path, e))
}
