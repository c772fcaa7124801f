//! Store tests on a real database: SQLite in a temp dir always, PostgreSQL and MySQL/MariaDB too
//! when `FLVPC_TEST_POSTGRES` and `FLVPC_TEST_MYSQL` name servers (a fresh database each time).

use crate::migrations::MIGRATIONS;
use crate::{Desired, Dialect, MachinePlan, PortRange, PortRequest, Store};
use flvpc_model::policy::system;
use flvpc_model::quota::HostCaps;
use flvpc_model::spec::{Backend, Protocol};
use flvpc_model::{EngineKind, HostName, Login, MachineKey, MachineName, NamespaceName, Placement, Principal};
use sqlx::any::AnyPoolOptions;
use sqlx::{Connection, Executor};
use std::collections::BTreeMap;

/// A fresh, empty database URL of each dialect under test (the temp dir lives as long as the URL
/// is used).
pub(crate) async fn databases() -> Vec<(String, Option<tempfile::TempDir>)> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = vec![(format!("sqlite://{}?mode=rwc", dir.path().join("flvpc.db").display()), Some(dir))];
    if let Ok(admin) = std::env::var("FLVPC_TEST_POSTGRES") {
        let name = format!("flvpc_store_{}", hex::encode(rand::random::<[u8; 6]>()));
        let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to the test PostgreSQL server");
        // The name is made here of hex digits only.
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
        all.push((format!("{base}/{name}"), None));
    }
    if let Ok(admin) = std::env::var("FLVPC_TEST_MYSQL") {
        // The test user may make databases named flvpc_test*.
        let name = format!("flvpc_test_store_{}", hex::encode(rand::random::<[u8; 6]>()));
        let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("connect to the test MySQL server");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
        all.push((format!("{base}/{name}"), None));
    }
    all
}

fn root() -> Principal {
    Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new())
}

fn ns(name: &str) -> NamespaceName {
    NamespaceName::parse(name).expect("namespace")
}

fn name(n: &str) -> MachineName {
    MachineName::parse(n).expect("machine name")
}

fn plan(n: &str, placement: Placement, hash: &str) -> MachinePlan {
    MachinePlan {
        name: name(n),
        image: "flvpc/debian:12".into(),
        backend: Backend::Docker,
        placement,
        pin: None,
        group: "g".into(),
        cpus: 1,
        cpu_cap_milli: None,
        memory_mb: 256,
        disk_gb: 1,
        spec_hash: hash.into(),
        ports: vec![PortRequest { container_port: 53, host_port: None, protocol: Protocol::Udp, address: None }],
    }
}

async fn apply(store: &Store, namespace: &str, plans: &[MachinePlan]) -> crate::Operation {
    let admin = root().namespace_admin(&ns(namespace)).expect("admin");
    let free = |_: &HostName, _: Option<std::net::IpAddr>, _: u16, _: Protocol| true;
    let range = PortRange { first: 41000, last: 41099 };
    store
        .apply_cluster(&admin, plans, &[], &HostCaps::default(), range, &free, None, &root().login().clone())
        .await
        .expect("apply")
}

#[tokio::test]
async fn machines_recorded_before_placements_live_on_the_local_container_engine() {
    for (url, _dir) in databases().await {
        // A database as flvpc left it at version 6, with one machine of each backend word.
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
        pool.execute(crate::migrations::SCHEMA_MIGRATIONS).await.expect("migrations table");
        let dialect = Dialect::of_url(&url).expect("dialect");
        for migration in MIGRATIONS.iter().filter(|m| m.version <= 6) {
            for statement in migration.statements(dialect) {
                pool.execute(*statement).await.expect("old migration");
            }
            crate::sql::query(
                dialect,
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, 0)",
            )
            .bind(migration.version)
            .bind(migration.description)
            .execute(&pool)
            .await
            .expect("record migration");
        }
        pool.execute("INSERT INTO namespaces (name, created_at) VALUES ('old', 0)").await.expect("namespace");
        for (machine, backend) in [("a", "docker"), ("b", "microvm")] {
            crate::sql::query(
                dialect,
                "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
                 observed, created_at, updated_at) VALUES ((SELECT id FROM namespaces WHERE name = 'old'), $1, \
                 'flvpc/debian:12', $2, 1, 256, 1, 'h', 'running', 'running', 0, 0)",
            )
            .bind(machine)
            .bind(backend)
            .execute(&pool)
            .await
            .expect("old machine");
        }
        pool.close().await;

        let store = Store::open(&url).await.expect("migrate to the current version");
        let a = store.machine(&system(), &MachineKey::parse("old", "a").expect("key")).await.expect("read");
        assert_eq!(a.expect("a").placement, Placement::new(HostName::local(), EngineKind::Container), "{url}");
        let b = store.machine(&system(), &MachineKey::parse("old", "b").expect("key")).await.expect("read");
        assert_eq!(b.expect("b").placement, Placement::new(HostName::local(), EngineKind::MicroVm), "{url}");
        store.close().await;
    }
}

#[tokio::test]
async fn new_machines_are_placed_as_planned_and_keep_their_placement() {
    for (url, _dir) in databases().await {
        let store = Store::open(&url).await.expect("open");
        let superadmin = root().superadmin().expect("superadmin");
        store.create_namespace(&superadmin, &ns("team")).await.expect("namespace");
        let elsewhere = Placement::new(HostName::parse("host-2").expect("host"), EngineKind::MicroVm);
        let op =
            apply(&store, "team", &[plan("a", Placement::default(), "1"), plan("b", elsewhere.clone(), "1")]).await;
        assert_eq!(op.namespace, ns("team"));
        assert_eq!(op.targets, vec![name("a"), name("b")]);

        let member = root().namespace_member(&ns("team")).expect("member");
        let machines = store.machines(&member).await.expect("machines");
        let placements: Vec<_> = machines.iter().map(|m| (m.name.as_str(), m.placement.clone())).collect();
        assert_eq!(placements, vec![("a", Placement::default()), ("b", elsewhere.clone())], "{url}");
        assert_eq!(machines[0].ports[0].protocol, Protocol::Udp, "{url}");
        assert_eq!(machines[0].key(), MachineKey::parse("team", "a").expect("key"));

        // A machine is placed once: a changed spec (even one naming another placement) updates
        // its settings, never where it lives, so no engine is left with a machine nobody owns.
        apply(&store, "team", &[plan("a", elsewhere.clone(), "2"), plan("b", elsewhere.clone(), "2")]).await;
        let machines = store.machines(&member).await.expect("machines");
        assert_eq!(machines[0].placement, Placement::default(), "{url}");
        assert_eq!(machines[0].spec_hash, "2", "{url}");

        // The typed vocabulary round-trips through every machine method.
        let key = machines[1].key();
        let stop = store
            .set_desired(
                &member,
                Some(&key.name),
                Desired::Stopped,
                &HostCaps::default(),
                "machine.stop",
                root().login(),
            )
            .await
            .expect("stop");
        assert_eq!((stop.machine.as_ref(), stop.targets.as_slice()), (Some(&key.name), &[key.name.clone()][..]));
        store.set_observed(&system(), &key, flvpc_model::Observed::Stopped, None, None).await.expect("observe");
        let b = store.namespace_machine(&member, &key.name).await.expect("read").expect("b");
        assert_eq!((b.desired, b.observed), (Desired::Stopped, flvpc_model::Observed::Stopped), "{url}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_row_naming_an_unknown_engine_is_left_out_of_lists_and_an_error_alone() {
    for (url, _dir) in databases().await {
        let store = Store::open(&url).await.expect("open");
        let superadmin = root().superadmin().expect("superadmin");
        store.create_namespace(&superadmin, &ns("team")).await.expect("namespace");
        apply(&store, "team", &[plan("a", Placement::default(), "1"), plan("b", Placement::default(), "1")]).await;
        // As a newer flvpc with another engine would write it.
        sqlx::query("UPDATE machines SET engine = 'firecracker' WHERE name = 'b'")
            .execute(&store.pool)
            .await
            .expect("hand edit");
        let all = store.all_machines(&system()).await.expect("list");
        assert_eq!(all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec!["a"], "{url}");
        let err = store.machine(&system(), &MachineKey::parse("team", "b").expect("key")).await.expect_err("unknown");
        assert!(err.to_string().contains("\"firecracker\" is not an engine"), "{err}");
        store.close().await;
    }
}
