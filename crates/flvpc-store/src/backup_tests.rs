//! Backup and restore on real databases: SQLite always, PostgreSQL and MySQL/MariaDB too when
//! `FLVPC_TEST_POSTGRES` and `FLVPC_TEST_MYSQL` name servers; every backup restored into every dialect.

use crate::backup::TABLES;
use crate::machines_tests::databases;
use crate::{backup, restore, NewAudit, PortRange, Store, TokenKind};
use flvpc_model::quota::HostCaps;
use flvpc_model::spec::{Backend, Protocol};
use flvpc_model::{EngineKind, HostName, Login, MachineName, NamespaceName, Placement, Principal};
use sqlx::any::AnyPoolOptions;
use sqlx::Row;
use std::collections::BTreeMap;

fn root() -> Principal {
    Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new())
}

/// A database with a superadmin and a user, a namespace with its spec and machines, a key, a
/// session, audit records and the instance id.
async fn populate(store: &Store) -> String {
    store.init_superadmin(&Login::parse("root").expect("login"), "root-password").await.expect("superadmin");
    let superadmin = root().superadmin().expect("grant");
    store.create_user(&superadmin, &Login::parse("alice").expect("login"), "alice-password").await.expect("user");
    let alice = store.check_password("alice", "alice-password").await.expect("check").expect("alice's id");
    let ns = NamespaceName::parse("team").expect("namespace");
    store.create_namespace(&superadmin, &ns).await.expect("namespace");
    let admin = root().namespace_admin(&ns).expect("admin");
    store.save_cluster_spec(&admin, "cluster:\n  name: team\n", root().login()).await.expect("spec");
    let plans: Vec<_> = ["web", "db"]
        .into_iter()
        .map(|n| crate::MachinePlan {
            name: MachineName::parse(n).expect("name"),
            image: "flvpc/debian:12".into(),
            backend: Backend::Docker,
            placement: Placement::new(HostName::local(), EngineKind::Container),
            pin: None,
            group: "g".into(),
            cpus: 1,
            cpu_cap_milli: None,
            memory_mb: 256,
            disk_gb: 1,
            spec_hash: "h".into(),
            ports: vec![crate::PortRequest {
                container_port: 22,
                host_port: None,
                protocol: Protocol::Tcp,
                address: None,
            }],
        })
        .collect();
    // A second host, so that the hosts table and a port held per host round-trip too.
    let far = crate::NewHost {
        name: HostName::parse("far").expect("host"),
        engine: "tcp://10.0.0.2:2376".into(),
        address: "10.0.0.2".parse().expect("address"),
        tls: Some(crate::HostTls {
            ca: "/etc/flvpc/ca.pem".into(),
            cert: "/etc/flvpc/cert.pem".into(),
            key: "/etc/flvpc/key.pem".into(),
        }),
    };
    store.add_host(&superadmin, &far, root().login()).await.expect("host");
    let free = |_: &HostName, _: Option<std::net::IpAddr>, _: u16, _: Protocol| true;
    store
        .apply_cluster(
            &admin,
            &plans,
            &[],
            &HostCaps::default(),
            PortRange { first: 41000, last: 41099 },
            &free,
            None,
            root().login(),
        )
        .await
        .expect("apply");
    let db = MachineName::parse("db").expect("name");
    store
        .set_desired(
            &root().namespace_member(&ns).expect("member"),
            Some(&db),
            crate::Desired::Stopped,
            &HostCaps::default(),
            "machine.stop",
            root().login(),
        )
        .await
        .expect("stop");
    let key = flvpc_model::MachineKey::new(ns.clone(), db);
    store
        .move_machine(&superadmin, &key, &far.name, PortRange { first: 41000, last: 41099 }, &free, root().login())
        .await
        .expect("move to the far host");
    crate::sql::query(
        store.dialect,
        "INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at) VALUES ($1, 'laptop', 'ssh-ed25519 AAAA', 'SHA256:x', 1)",
    )
    .bind(alice)
    .execute(&store.pool)
    .await
    .expect("key");
    store.create_session(alice, TokenKind::Login, 3_600_000).await.expect("session");
    for outcome in ["ok", "forbidden"] {
        store
            .record_audit(NewAudit {
                actor: Some("root".into()),
                action: "user.create".into(),
                target: "alice".into(),
                namespace: None,
                source: Some("127.0.0.1".into()),
                outcome: outcome.into(),
                detail: None,
            })
            .await
            .expect("audit");
    }
    store.instance_id().await.expect("instance id")
}

/// Every row of every table, as text, in a stable order: two databases with the same dump hold
/// the same state. Every column flvpc writes (MySQL's generated stand-ins for partial indexes,
/// `migrations.rs`, are left out).
async fn dump(url: &str) -> BTreeMap<String, Vec<String>> {
    let dialect = crate::Dialect::of_url(url).expect("dialect");
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    let mut all = BTreeMap::new();
    for table in TABLES {
        let mut conn = pool.acquire().await.expect("connection");
        let columns = crate::backup::table_columns(&mut conn, dialect, table).await.expect("columns");
        drop(conn);
        let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
        // `key` is reserved in MySQL; backticks there, double quotes (standard) elsewhere.
        let quote = if dialect == crate::Dialect::Mysql { "`" } else { "\"" };
        let list = names.iter().map(|n| format!("{quote}{n}{quote}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {list} FROM {table}")))
            .fetch_all(&pool)
            .await
            .expect("select");
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<i64>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<String>, _>(i).map(|v| format!("{v:?}")))
                            .expect("integer or text")
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        all.insert((*table).to_owned(), lines);
    }
    pool.close().await;
    all
}

#[tokio::test]
async fn a_backup_restores_every_row_into_either_dialect() {
    for (source, _dir) in databases().await {
        let store = Store::open(&source).await.expect("open");
        let instance = populate(&store).await;
        store.close().await;
        let before = dump(&source).await;
        assert_eq!(before["machines"].len(), 2, "{source}");

        let out = tempfile::tempdir().expect("temp dir");
        let file = out.path().join("flvpc.backup");
        let summary = backup(&source, &file).await.expect("backup");
        assert_eq!(summary.tables.iter().find(|(t, _)| t == "users").map(|(_, n)| *n), Some(2), "{source}");
        assert!(summary.bytes > 0);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777, 0o600);
        let again = backup(&source, &file).await.expect_err("an existing file is never overwritten");
        assert!(again.to_string().contains("already exists"), "{again}");

        for (target, _target_dir) in databases().await {
            if !target.starts_with("sqlite") {
                // A database with flvpc's tables but no rows (a failed restore made them) is empty.
                Store::open(&target).await.expect("schema only").close().await;
            }
            let restored = restore(&file, &target).await.expect("restore");
            assert_eq!(restored.rows(), summary.rows(), "{source} -> {target}");
            assert_eq!(dump(&target).await, before, "{source} -> {target}");
            let store = Store::open(&target).await.expect("open restored");
            assert_eq!(store.instance_id().await.expect("id"), instance, "the instance id is kept");
            assert!(store.check_password("alice", "alice-password").await.expect("check").is_some());
            // New rows get fresh ids after the restored ones (PostgreSQL's identities continue).
            store
                .create_namespace(&root().superadmin().expect("grant"), &NamespaceName::parse("later").expect("ns"))
                .await
                .expect("new namespace");
            store.close().await;

            let refused = restore(&file, &target).await.expect_err("a restore into a non-empty database is refused");
            assert!(refused.to_string().contains("restore into an empty one"), "{refused}");
            assert_eq!(dump(&target).await.get("namespaces").map(Vec::len), Some(2), "the refusal changed nothing");
        }
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_backup_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("sqlite://{}", dir.path().join("flvpc.db").display());
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database at all, just some text").expect("write");
    let err = restore(&text, &target).await.expect_err("text refused");
    assert!(err.to_string().contains("is not an flvpc backup (not a SQLite file)"), "{err}");
    // A live flvpc database is SQLite but not a backup.
    let live = dir.path().join("live.db");
    Store::open(&format!("sqlite://{}", live.display())).await.expect("open").close().await;
    let err = restore(&live, &target).await.expect_err("database refused");
    assert!(err.to_string().contains("without flvpc's backup marker"), "{err}");
    assert!(!dir.path().join("flvpc.db").exists(), "nothing written");
}

#[tokio::test]
async fn the_table_list_names_every_table_of_the_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("flvpc.db").display());
    let store = Store::open(&url).await.expect("open");
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'",
    )
    .fetch_all(&store.pool)
    .await
    .expect("tables");
    tables.sort();
    let mut listed: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(tables, listed, "a new table must be added to backup::TABLES (parents first)");
    store.close().await;
}

/// A database at schema version 6 (before placements), with one machine.
async fn old_database(url: &str) {
    let dialect = crate::Dialect::of_url(url).expect("dialect");
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    crate::apply_migrations(&pool, dialect, 6).await.expect("old migrations");
    sqlx::query("INSERT INTO namespaces (name, created_at) VALUES ('old', 0)").execute(&pool).await.expect("ns");
    sqlx::query(
        "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
         observed, created_at, updated_at) VALUES ((SELECT id FROM namespaces WHERE name = 'old'), 'a', \
         'flvpc/debian:12', 'docker', 1, 256, 1, 'h', 'running', 'running', 0, 0)",
    )
    .execute(&pool)
    .await
    .expect("machine");
    pool.close().await;
}

#[tokio::test]
async fn a_backup_of_an_older_schema_is_taken_as_it_is_and_restored_up_to_date() {
    let newest = crate::migrations::MIGRATIONS.iter().map(|m| m.version).max().expect("migrations");
    for (source, _dir) in databases().await {
        old_database(&source).await;
        let out = tempfile::tempdir().expect("temp dir");
        let file = out.path().join("old.backup");
        let summary = backup(&source, &file).await.expect("backup");
        assert_eq!(summary.schema_version, 6, "the source is backed up as it is, not migrated: {source}");
        let pool = AnyPoolOptions::new().max_connections(1).connect(&source).await.expect("connect");
        let version: i64 =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&pool).await.expect("version");
        assert_eq!(version, 6, "the live database was not migrated by the backup: {source}");
        pool.close().await;

        for (target, _target_dir) in databases().await {
            let restored = restore(&file, &target).await.expect("restore");
            assert_eq!(restored.schema_version, newest, "{source} -> {target}");
            let store = Store::open(&target).await.expect("open");
            let machine = store
                .machine(&flvpc_model::policy::system(), &flvpc_model::MachineKey::parse("old", "a").expect("key"))
                .await
                .expect("read")
                .expect("the machine");
            assert_eq!(machine.placement, Placement::new(HostName::local(), EngineKind::Container));
            store.close().await;
        }
    }
}

#[tokio::test]
async fn a_backup_of_a_newer_flvpc_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!("sqlite://{}", dir.path().join("flvpc.db").display());
    Store::open(&source).await.expect("open").close().await;
    let file = dir.path().join("flvpc.backup");
    backup(&source, &file).await.expect("backup");
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open backup");
    sqlx::query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (9999, 'future', 0)")
        .execute(&pool)
        .await
        .expect("future version");
    pool.close().await;
    let target = dir.path().join("restored.db");
    let err = restore(&file, &format!("sqlite://{}", target.display())).await.expect_err("newer refused");
    assert!(err.to_string().contains("newer than this flvpc's"), "{err}");
    assert!(!target.exists(), "nothing written");
}
