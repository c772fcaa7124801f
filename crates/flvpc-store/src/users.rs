//! Users, their passwords and SSH keys, and loading the principal of a request.

use crate::passwords::dummy_hash;
use crate::{now_ms, Store, StoreError};
use flvpc_model::{password, KeyName, Login, NamespaceName, Principal, PublicKey, Role, SuperadminGrant, UserGrant};
use sqlx::Row;
use std::collections::BTreeMap;

/// A user as listed to the superadmin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login.
    pub login: Login,
    /// Whether this is the superadmin.
    pub superadmin: bool,
    /// When the account was made (ms since the epoch).
    pub created_at: i64,
    /// Memberships, by namespace.
    pub namespaces: Vec<(NamespaceName, Role)>,
}

/// One of a user's SSH public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The key's name, unique per user.
    pub name: KeyName,
    /// The whole key line, `TYPE BASE64 [COMMENT]`.
    pub public_key: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// When it was added (ms since the epoch).
    pub created_at: i64,
}

fn login_of(raw: String) -> Result<Login, StoreError> {
    Login::parse(&raw).map_err(StoreError::Invalid)
}

impl Store {
    /// Whether a superadmin exists (the panel explains `flvpc admin init` when not).
    pub async fn superadmin_exists(&self) -> Result<bool, StoreError> {
        let n: i64 = crate::sql::query_scalar(self.dialect, "SELECT COUNT(*) FROM users WHERE superadmin = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Creates the single superadmin. Refused when one exists; the database's
    /// unique index makes this hold even for two concurrent calls.
    pub async fn init_superadmin(&self, login: &Login, password: &str) -> Result<(), StoreError> {
        if let Some(existing) =
            crate::sql::query_scalar::<String>(self.dialect, "SELECT login FROM users WHERE superadmin = 1")
                .fetch_optional(&self.pool)
                .await?
        {
            return Err(StoreError::Conflict(format!("a superadmin already exists (login {existing:?})")));
        }
        password::check_new("password", password)?;
        let hash = self.hash(password).await?;
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "INSERT INTO users (login, password_hash, superadmin, created_at) VALUES ($1, $2, 1, $3)",
        )
        .bind(login.as_str())
        .bind(hash)
        .bind(now_ms())
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| {
            StoreError::unique(e, || {
                format!("a superadmin or a user named {:?} already exists: choose another login", login.as_str())
            })
        })?;
        tx.commit().await
    }

    /// Creates a user who belongs to no namespace yet.
    pub async fn create_user(&self, _: &SuperadminGrant, login: &Login, password: &str) -> Result<User, StoreError> {
        password::check_new("password", password)?;
        let hash = self.hash(password).await?;
        let created_at = now_ms();
        let mut tx = self.begin_write().await?;
        crate::sql::query(
            self.dialect,
            "INSERT INTO users (login, password_hash, superadmin, created_at) VALUES ($1, $2, 0, $3)",
        )
        .bind(login.as_str())
        .bind(hash)
        .bind(created_at)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| {
            StoreError::unique(e, || format!("a user named {:?} already exists: choose another login", login.as_str()))
        })?;
        tx.commit().await?;
        Ok(User { login: login.clone(), superadmin: false, created_at, namespaces: Vec::new() })
    }

    /// Every user with their memberships, by login.
    pub async fn list_users(&self, _: &SuperadminGrant) -> Result<Vec<User>, StoreError> {
        let rows =
            crate::sql::query(self.dialect, "SELECT id, login, superadmin, created_at FROM users ORDER BY login")
                .fetch_all(&self.pool)
                .await?;
        let member_rows = crate::sql::query(
            self.dialect,
            "SELECT m.user_id, n.name, m.role FROM memberships m JOIN namespaces n ON n.id = m.namespace_id ORDER BY n.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_user: BTreeMap<i64, Vec<(NamespaceName, Role)>> = BTreeMap::new();
        for row in member_rows {
            let ns = NamespaceName::parse(&row.try_get::<String, _>(1)?)?;
            let role = Role::parse(&row.try_get::<String, _>(2)?)?;
            by_user.entry(row.try_get(0)?).or_default().push((ns, role));
        }
        rows.into_iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                Ok(User {
                    login: login_of(row.try_get(1)?)?,
                    superadmin: row.try_get::<i64, _>(2)? == 1,
                    created_at: row.try_get(3)?,
                    namespaces: by_user.remove(&id).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Deletes a user with their memberships, keys, sessions and tokens, at once.
    /// The superadmin cannot be deleted: the server would have no one to run it.
    pub async fn delete_user(&self, _: &SuperadminGrant, login: &Login) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = crate::sql::query(self.dialect, "SELECT id, superadmin FROM users WHERE login = $1")
            .bind(login.as_str())
            .fetch_optional(&mut *tx.tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {:?}", login.as_str())))?;
        let id: i64 = row.try_get(0)?;
        if row.try_get::<i64, _>(1)? == 1 {
            return Err(StoreError::Conflict("the superadmin cannot be deleted".into()));
        }
        // Explicit deletes, not only ON DELETE CASCADE: correct even where foreign keys are off.
        for statement in [
            "DELETE FROM tokens WHERE user_id = $1",
            "DELETE FROM ssh_keys WHERE user_id = $1",
            "DELETE FROM memberships WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            crate::sql::query(self.dialect, statement).bind(id).execute(&mut *tx.tx).await?;
        }
        tx.commit().await
    }

    /// Checks a login and password. Returns the user's id, or None for a wrong
    /// login or password (the two take the same time and look the same).
    pub async fn check_password(&self, login: &str, password: &str) -> Result<Option<i64>, StoreError> {
        let row = match Login::parse(login) {
            Ok(login) => {
                crate::sql::query(self.dialect, "SELECT id, password_hash FROM users WHERE login = $1")
                    .bind(login.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
            Err(_) => None,
        };
        let (id, hash) = match row {
            Some(row) => (Some(row.try_get::<i64, _>(0)?), row.try_get::<String, _>(1)?),
            None => (None, dummy_hash().to_owned()),
        };
        let matches = self.verify(password, hash).await?;
        Ok(if matches { id } else { None })
    }

    /// Changes a password. The user themself must give the current one; the
    /// superadmin resetting someone else's does not. Every session and every named API
    /// token of the user ends, except `keep_token` when it is a session (panel or API login)
    /// of this user: the person who just proved the current password keeps the session they
    /// used, so they are not signed out by their own change. A named API token is never kept.
    pub async fn set_password(
        &self,
        grant: &UserGrant,
        current: Option<&str>,
        new: &str,
        keep_token: Option<i64>,
    ) -> Result<(), StoreError> {
        password::check_new("password", new)?;
        let row = crate::sql::query(self.dialect, "SELECT id, password_hash FROM users WHERE login = $1")
            .bind(grant.login().as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {:?}", grant.login().as_str())))?;
        let id: i64 = row.try_get(0)?;
        if !grant.by_superadmin() {
            let hash: String = row.try_get(1)?;
            if !self.verify(current.unwrap_or_default(), hash).await? {
                return Err(StoreError::WrongPassword);
            }
        }
        let hash = self.hash(new).await?;
        let mut tx = self.begin_write().await?;
        crate::sql::query(self.dialect, "UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&mut *tx.tx)
            .await?;
        crate::sql::query(self.dialect, "DELETE FROM tokens WHERE user_id = $1 AND NOT (id = $2 AND kind <> 'api')")
            .bind(id)
            .bind(keep_token.unwrap_or(-1))
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Loads the principal for a user id: login, superadmin flag and memberships, fresh from the database.
    pub async fn principal(&self, user_id: i64) -> Result<Option<Principal>, StoreError> {
        let Some(row) = crate::sql::query(self.dialect, "SELECT login, superadmin FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        self.principal_of(user_id, row.try_get(0)?, row.try_get(1)?).await.map(Some)
    }

    /// The principal of a user whose login and superadmin flag were just read (with the token
    /// that authenticated the request, in the same query): its memberships, fresh.
    pub(crate) async fn principal_of(
        &self,
        user_id: i64,
        login: String,
        superadmin: i64,
    ) -> Result<Principal, StoreError> {
        let login = login_of(login)?;
        let superadmin = superadmin == 1;
        let rows = crate::sql::query(
            self.dialect,
            "SELECT n.name, m.role FROM memberships m JOIN namespaces n ON n.id = m.namespace_id WHERE m.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut memberships = BTreeMap::new();
        for row in rows {
            memberships.insert(
                NamespaceName::parse(&row.try_get::<String, _>(0)?)?,
                Role::parse(&row.try_get::<String, _>(1)?)?,
            );
        }
        Ok(Principal::new(user_id, login, superadmin, memberships))
    }

    /// The user `login` if `fingerprint` is one of their keys (the SSH gateway's check). Like
    /// [`Store::check_password`], authentication needs no grant: it finds out who the caller is.
    pub async fn user_with_key(&self, login: &str, fingerprint: &str) -> Result<Option<i64>, StoreError> {
        if Login::parse(login).is_err() {
            return Ok(None);
        }
        Ok(crate::sql::query_scalar(
            self.dialect,
            "SELECT u.id FROM users u JOIN ssh_keys k ON k.user_id = u.id WHERE u.login = $1 AND k.fingerprint = $2",
        )
        .bind(login)
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The caller's own SSH keys, by name.
    pub async fn list_keys(&self, me: &Principal) -> Result<Vec<SshKey>, StoreError> {
        let rows = crate::sql::query(
            self.dialect,
            "SELECT name, public_key, fingerprint, created_at FROM ssh_keys WHERE user_id = $1 ORDER BY name",
        )
        .bind(me.user_id())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(SshKey {
                    name: KeyName::parse(&row.try_get::<String, _>(0)?)?,
                    public_key: row.try_get(1)?,
                    fingerprint: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Adds one of the caller's SSH keys. Names are unique per user; the same key may not be added twice.
    pub async fn add_key(&self, me: &Principal, name: &KeyName, key: &PublicKey) -> Result<SshKey, StoreError> {
        let fingerprint = key.fingerprint();
        let mut tx = self.begin_write().await?;
        let same: Option<String> =
            crate::sql::query_scalar(self.dialect, "SELECT name FROM ssh_keys WHERE user_id = $1 AND fingerprint = $2")
                .bind(me.user_id())
                .bind(&fingerprint)
                .fetch_optional(&mut *tx.tx)
                .await?;
        if let Some(existing) = same {
            return Err(StoreError::Conflict(format!("this key is already added as {existing:?}")));
        }
        let created_at = now_ms();
        crate::sql::query(
            self.dialect,
            "INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(me.user_id())
        .bind(name.as_str())
        .bind(key.to_openssh())
        .bind(&fingerprint)
        .bind(created_at)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("you already have a key named {:?}", name.as_str())))?;
        tx.commit().await?;
        Ok(SshKey { name: name.clone(), public_key: key.to_openssh(), fingerprint, created_at })
    }

    /// Removes one of the caller's keys by name (never another user's).
    pub async fn delete_key(&self, me: &Principal, name: &KeyName) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = crate::sql::query(self.dialect, "DELETE FROM ssh_keys WHERE user_id = $1 AND name = $2")
            .bind(me.user_id())
            .bind(name.as_str())
            .execute(&mut *tx.tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key {:?}", name.as_str())));
        }
        tx.commit().await
    }
}
