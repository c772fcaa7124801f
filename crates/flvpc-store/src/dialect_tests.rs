//! What the dialects must agree on beyond the queries: uniqueness (also where SQLite and
//! PostgreSQL use partial indexes and MySQL generated columns), text compared byte by byte, and
//! MySQL's migrations safe to run again. SQLite always, PostgreSQL and MySQL/MariaDB when
//! `FLVPC_TEST_POSTGRES` and `FLVPC_TEST_MYSQL` name servers.

use crate::machines_tests::databases;
use crate::migrations::MIGRATIONS;
use crate::{Dialect, Store, StoreError};
use flvpc_model::{Login, Principal, TokenName};
use sqlx::Executor;
use std::collections::BTreeMap;

#[tokio::test]
async fn uniqueness_and_case_hold_alike_on_every_dialect() {
    for (url, _dir) in databases().await {
        let store = Store::open(&url).await.expect("open");
        store.init_superadmin(&Login::parse("root").expect("login"), "root-password").await.expect("superadmin");
        let root_id = store.check_password("root", "root-password").await.expect("check").expect("root's id");
        let root = Principal::new(root_id, Login::parse("root").expect("login"), true, BTreeMap::new());

        // At most one superadmin, held by the database itself; ordinary users are many.
        let insert = "INSERT INTO users (login, password_hash, superadmin, created_at) VALUES ($1, 'x', $2, 0)";
        for (login, superadmin) in [("u1", 0_i64), ("u2", 0)] {
            crate::sql::query(store.dialect, insert)
                .bind(login)
                .bind(superadmin)
                .execute(&store.pool)
                .await
                .expect("ordinary user");
        }
        let second = crate::sql::query(store.dialect, insert).bind("boss").bind(1_i64).execute(&store.pool).await;
        assert!(
            matches!(&second, Err(sqlx::Error::Database(e)) if e.is_unique_violation()),
            "{url}: a second superadmin: {second:?}"
        );

        // Token names are unique per user among API tokens, compared byte by byte; sessions
        // (no name) are not covered by that rule.
        for name in ["build", "Build"] {
            store.create_api_token(&root, &TokenName::parse(name).expect("name")).await.expect("token");
        }
        let again = store.create_api_token(&root, &TokenName::parse("build").expect("name")).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{url}: {again:?}");
        for _ in 0..2 {
            store.create_session(root_id, crate::TokenKind::Login, 60_000).await.expect("session");
        }
        let names: Vec<String> =
            store.list_api_tokens(&root).await.expect("list").into_iter().map(|t| t.name.as_str().to_owned()).collect();
        assert_eq!(names.len(), 2, "{url}: {names:?}");
        assert!(names.contains(&"build".to_owned()) && names.contains(&"Build".to_owned()), "{url}: {names:?}");

        // Trailing spaces count, as every other byte does.
        let padded: i64 = crate::sql::query_scalar(store.dialect, "SELECT COUNT(*) FROM users WHERE login = $1")
            .bind("root ")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(padded, 0, "{url}: 'root ' is not 'root'");
        store.close().await;
    }
}

#[tokio::test]
async fn mysql_migrations_run_again_without_harm() {
    let newest = MIGRATIONS.iter().map(|m| m.version).max().expect("migrations");
    for (url, _dir) in databases().await {
        if Dialect::of_url(&url).expect("dialect") != Dialect::Mysql {
            continue;
        }
        let store = Store::open(&url).await.expect("open");
        // As after a crash between a migration's statements (each commits on its own in MySQL)
        // and its record: every statement runs again.
        for migration in MIGRATIONS {
            for statement in migration.statements(Dialect::Mysql) {
                store.pool.execute(*statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
        }
        let locks: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM admission_lock").fetch_one(&store.pool).await.expect("count");
        assert_eq!(locks, 1, "one admission lock row");
        store.close().await;
        let store = Store::open(&url).await.expect("reopen");
        let version: i64 =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&store.pool).await.expect("v");
        assert_eq!(version, newest);
        store.close().await;
    }
}
