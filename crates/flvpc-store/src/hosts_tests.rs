//! Hosts, placement over hosts, ports per host and moves, on every dialect under test (SQLite
//! always; PostgreSQL and MariaDB when `FLVPC_TEST_POSTGRES` and `FLVPC_TEST_MYSQL` name servers).

use crate::machines_tests::databases;
use crate::{
    Desired, HostCandidate, HostState, HostTls, MachinePlan, NewHost, Operation, PortRange, PortRequest, Store,
    StoreError,
};
use flvpc_model::policy::system;
use flvpc_model::quota::{HostCapacity, HostCaps};
use flvpc_model::spec::{Backend, Protocol};
use flvpc_model::{EngineKind, HostName, Login, MachineKey, MachineName, NamespaceName, Placement, Principal};
use std::collections::BTreeMap;

fn root() -> Principal {
    Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new())
}

fn host(name: &str) -> HostName {
    HostName::parse(name).expect("host name")
}

fn ns(name: &str) -> NamespaceName {
    NamespaceName::parse(name).expect("namespace")
}

fn new_host(name: &str) -> NewHost {
    NewHost {
        name: host(name),
        engine: format!("tcp://{name}.example:2376"),
        address: "10.0.0.2".parse().expect("address"),
        tls: Some(HostTls {
            ca: "/etc/flvpc/ca.pem".into(),
            cert: "/etc/flvpc/c.pem".into(),
            key: "/etc/flvpc/k.pem".into(),
        }),
    }
}

/// A container host with `memory_mb` of memory, no overcommit.
fn candidate(name: &str, memory_mb: u64) -> HostCandidate {
    HostCandidate {
        host: host(name),
        engines: vec![EngineKind::Container],
        caps: HostCaps { capacity: HostCapacity { cpus: 16, memory_mb }, cpu_ratio: None, memory_ratio: Some(1.0) },
    }
}

/// Machine `name` of group `group`, 512 MB, with the given host ports (TCP 80 inside).
fn plan(name: &str, group: &str, pin: Option<&str>, host_ports: &[Option<u16>]) -> MachinePlan {
    MachinePlan {
        name: MachineName::parse(name).expect("machine name"),
        image: "flvpc/debian:12".into(),
        backend: Backend::Docker,
        placement: Placement::default(),
        pin: pin.map(host),
        group: group.into(),
        cpus: 1,
        cpu_cap_milli: None,
        memory_mb: 512,
        disk_gb: 1,
        spec_hash: "h".into(),
        ports: host_ports
            .iter()
            .map(|p| PortRequest { container_port: 80, host_port: *p, protocol: Protocol::Tcp, address: None })
            .collect(),
    }
}

const RANGE: PortRange = PortRange { first: 42000, last: 42009 };

async fn apply(
    store: &Store,
    namespace: &str,
    plans: &[MachinePlan],
    candidates: &[HostCandidate],
) -> Result<Operation, StoreError> {
    let admin = root().namespace_admin(&ns(namespace)).expect("admin");
    let free = |_: &HostName, _: Option<std::net::IpAddr>, _: u16, _: Protocol| true;
    store.apply_cluster(&admin, plans, candidates, &HostCaps::default(), RANGE, &free, None, root().login()).await
}

/// A store with namespaces `team` and `other`, and hosts `a` and `b` recorded.
async fn store_with_hosts(url: &str) -> Store {
    let store = Store::open(url).await.expect("open");
    let superadmin = root().superadmin().expect("superadmin");
    for n in ["team", "other"] {
        store.create_namespace(&superadmin, &ns(n)).await.expect("namespace");
    }
    for h in ["b", "a"] {
        store.add_host(&superadmin, &new_host(h), root().login()).await.expect("add host");
    }
    store
}

/// Where each machine of `namespace` is, by machine name.
async fn hosts_of(store: &Store, namespace: &str) -> BTreeMap<String, String> {
    let member = root().namespace_member(&ns(namespace)).expect("member");
    store
        .machines(&member)
        .await
        .expect("machines")
        .iter()
        .map(|m| (m.name.to_string(), m.placement.host.to_string()))
        .collect()
}

#[tokio::test]
async fn hosts_are_added_listed_drained_and_refused_by_name() {
    for (url, _dir) in databases().await {
        let store = store_with_hosts(&url).await;
        let superadmin = root().superadmin().expect("superadmin");
        let all = store.hosts(&system()).await.expect("hosts");
        assert_eq!(all.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), vec!["a", "b"], "by name: {url}");
        assert_eq!(all[0], {
            let mut expected = store.host(&system(), &host("a")).await.expect("read").expect("a");
            expected.created_at = all[0].created_at;
            expected
        });
        assert_eq!(
            (all[0].state, all[0].engine.as_str(), all[0].created_by.as_str()),
            (HostState::Active, "tcp://a.example:2376", "root")
        );
        assert_eq!(all[0].tls.as_ref().map(|t| t.key.clone()), Some("/etc/flvpc/k.pem".into()), "{url}");

        let again = store.add_host(&superadmin, &new_host("a"), root().login()).await.expect_err("duplicate");
        assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
        assert!(again.to_string().contains("host \"a\" already exists"), "{again}");
        let local = store.add_host(&superadmin, &new_host("local"), root().login()).await.expect_err("local");
        assert!(local.to_string().contains("\"local\" is the server's own host"), "{local}");
        assert_eq!(store.host(&system(), &HostName::local()).await.expect("read"), None, "local is never a row");

        store.set_host_state(&superadmin, &host("b"), HostState::Draining).await.expect("drain");
        // Setting the state it has is no error (MariaDB reports no changed row).
        store.set_host_state(&superadmin, &host("b"), HostState::Draining).await.expect("drain again");
        assert_eq!(store.host(&system(), &host("b")).await.expect("read").expect("b").state, HostState::Draining);
        let missing = store.set_host_state(&superadmin, &host("nope"), HostState::Active).await.expect_err("absent");
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_group_spreads_over_the_hosts_and_a_pin_is_honoured() {
    for (url, _dir) in databases().await {
        let store = store_with_hosts(&url).await;
        let both = [candidate("a", 8192), candidate("b", 8192)];
        let group: Vec<_> = (0..4).map(|i| plan(&format!("node{i}"), "node%d", None, &[])).collect();
        apply(&store, "team", &group, &both).await.expect("apply");
        let placed = hosts_of(&store, "team").await;
        let on = |h: &str| placed.values().filter(|v| *v == h).count();
        assert_eq!((on("a"), on("b")), (2, 2), "4 machines of one group spread 2+2: {placed:?} {url}");

        // A pin wins over the spread; re-applying moves nothing that exists.
        let mut with_pinned = group.clone();
        with_pinned.push(plan("db0", "db%d", Some("b"), &[]));
        with_pinned.push(plan("db1", "db%d", Some("b"), &[]));
        apply(&store, "team", &with_pinned, &both).await.expect("apply pinned");
        let after = hosts_of(&store, "team").await;
        assert_eq!((after["db0"].as_str(), after["db1"].as_str()), ("b", "b"), "{url}");
        for (name, h) in &placed {
            assert_eq!(&after[name], h, "a machine keeps its host: {url}");
        }

        // A second group in another namespace goes to the least allocated host first (a).
        apply(&store, "other", &[plan("x0", "x%d", None, &[])], &both).await.expect("other");
        assert_eq!(hosts_of(&store, "other").await["x0"], "a", "{url}");

        let loads = store.host_machine_counts(&root().superadmin().expect("superadmin")).await.expect("loads");
        assert_eq!(loads.keys().map(HostName::as_str).collect::<Vec<_>>(), vec!["a", "b"], "{url}");
        assert_eq!((loads[&host("a")].machines, loads[&host("b")].machines), (3, 4), "{url}");
        assert_eq!(loads[&host("b")].allocated.memory_mb, 4 * 512, "{url}");
        assert_eq!(loads[&host("b")].running.memory_mb, 4 * 512, "{url}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_draining_host_gets_nothing_and_a_full_one_is_skipped() {
    for (url, _dir) in databases().await {
        let store = store_with_hosts(&url).await;
        // b is drained after the caller listed it: the apply reads the hosts' state itself.
        let superadmin = root().superadmin().expect("superadmin");
        store.set_host_state(&superadmin, &host("b"), HostState::Draining).await.expect("drain b");
        let listed = [candidate("a", 8192), candidate("b", 8192)];
        let group: Vec<_> = (0..3).map(|i| plan(&format!("n{i}"), "n%d", None, &[])).collect();
        apply(&store, "team", &group, &listed).await.expect("apply");
        assert!(hosts_of(&store, "team").await.values().all(|h| h == "a"), "{url}");
        let pinned = apply(&store, "other", &[plan("p", "p", Some("b"), &[])], &listed).await.expect_err("pinned");
        assert!(pinned.to_string().contains("host b is draining or unknown"), "{pinned}");
        assert!(hosts_of(&store, "other").await.is_empty(), "a refused apply leaves nothing: {url}");
        // Hosts listed, none active: nothing is placed (never the plan's own host instead).
        let none = apply(&store, "other", &[plan("p", "p", None, &[])], &[candidate("b", 8192)]).await;
        assert!(none.expect_err("none active").to_string().contains("no host is active"), "{url}");
        store.set_host_state(&superadmin, &host("b"), HostState::Active).await.expect("activate b");

        // a holds 1536 of 2048 MB: a 1024 MB machine does not fit there any more.
        let small_a = [candidate("a", 2048), candidate("b", 8192)];
        let big =
            |name: &str, group: &str, pin: Option<&str>| MachinePlan { memory_mb: 1024, ..plan(name, group, pin, &[]) };
        let full = apply(&store, "other", &[big("g0", "g%d", Some("a"))], &small_a).await.expect_err("a is full");
        let text = full.to_string();
        assert!(text.contains("no host can take machine g0") && text.contains("a is full (memory"), "{text}");
        // The spread would pick a for g1 (b already has g0), but a is full: b takes it.
        apply(&store, "other", &[big("g0", "g%d", Some("b")), big("g1", "g%d", None)], &small_a).await.expect("apply");
        let placed = hosts_of(&store, "other").await;
        assert_eq!((placed["g0"].as_str(), placed["g1"].as_str()), ("b", "b"), "a full host is skipped: {url}");
        // A 512 MB machine of that group still fits on a, and the spread sends it there.
        let fits = [big("g0", "g%d", None), big("g1", "g%d", None), plan("g2", "g%d", None, &[])];
        apply(&store, "other", &fits, &small_a).await.expect("apply");
        assert_eq!(hosts_of(&store, "other").await["g2"], "a", "{url}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_port_is_held_once_per_host() {
    for (url, _dir) in databases().await {
        let store = store_with_hosts(&url).await;
        let both = [candidate("a", 8192), candidate("b", 8192)];
        apply(&store, "team", &[plan("w", "w", Some("a"), &[Some(8080), None])], &both).await.expect("on a");
        apply(&store, "other", &[plan("w", "w", Some("b"), &[Some(8080), None])], &both).await.expect("same on b");
        let member = |n: &str| root().namespace_member(&ns(n)).expect("member");
        let a = store.machines(&member("team")).await.expect("list");
        let b = store.machines(&member("other")).await.expect("list");
        let ports = |m: &crate::MachineRecord| m.ports.iter().map(|p| p.host_port).collect::<Vec<_>>();
        assert_eq!(ports(&a[0]), vec![8080, 42000], "{url}");
        assert_eq!(ports(&b[0]), vec![8080, 42000], "the same numbers on another host: {url}");

        let clash = apply(
            &store,
            "other",
            &[plan("w", "w", None, &[Some(8080), None]), plan("v", "v", Some("a"), &[Some(8080)])],
            &both,
        )
        .await
        .expect_err("clash on a");
        assert!(clash.to_string().contains("host port 8080/tcp for v is already taken"), "{clash}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_host_with_machines_is_not_removed_and_a_stopped_machine_moves() {
    for (url, _dir) in databases().await {
        let store = store_with_hosts(&url).await;
        let superadmin = root().superadmin().expect("superadmin");
        let both = [candidate("a", 8192), candidate("b", 8192)];
        apply(&store, "team", &[plan("w", "w", Some("a"), &[Some(8080), None])], &both).await.expect("on a");
        apply(&store, "other", &[plan("x", "x", Some("b"), &[Some(8080), Some(42000)])], &both).await.expect("on b");

        let refused = store.remove_host(&superadmin, &host("a")).await.expect_err("a has a machine");
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
        assert!(refused.to_string().contains("host a still has 1 machine: delete them or move them"), "{refused}");

        let key = MachineKey::parse("team", "w").expect("key");
        let free = |_: &HostName, _: Option<std::net::IpAddr>, _: u16, _: Protocol| true;
        let running =
            store.move_machine(&superadmin, &key, &host("b"), RANGE, &free, root().login()).await.expect_err("running");
        assert!(running.to_string().contains("only a stopped machine moves: stop it first"), "{running}");

        let member = root().namespace_member(&ns("team")).expect("member");
        store
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
        store.set_host_state(&superadmin, &host("b"), HostState::Draining).await.expect("drain b");
        let draining = store
            .move_machine(&superadmin, &key, &host("b"), RANGE, &free, root().login())
            .await
            .expect_err("draining");
        assert!(draining.to_string().contains("host b is draining"), "{draining}");
        store.set_host_state(&superadmin, &host("b"), HostState::Active).await.expect("activate b");

        let op = store.move_machine(&superadmin, &key, &host("b"), RANGE, &free, root().login()).await.expect("move");
        assert_eq!(
            (op.kind.as_str(), op.goal.as_str(), op.targets.clone()),
            ("machine.move", "stopped", vec![key.name.clone()])
        );
        let moved = store.machine(&system(), &key).await.expect("read").expect("w");
        assert_eq!(moved.placement.host, host("b"), "{url}");
        assert_eq!((moved.desired, moved.observed), (Desired::Stopped, flvpc_model::Observed::NotCreated), "{url}");
        // 8080 and 42000 are x's on b: both are new numbers from the range there.
        assert_eq!(moved.ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![42001, 42002], "{url}");

        store.remove_host(&superadmin, &host("a")).await.expect("a is empty now");
        assert_eq!(store.host(&system(), &host("a")).await.expect("read"), None, "{url}");
        let gone = store.remove_host(&superadmin, &host("a")).await.expect_err("already gone");
        assert!(matches!(gone, StoreError::NotFound(_)), "{gone:?}");

        // Back to the local host, where nothing holds 42001 or 42002: both numbers are kept.
        let op = store.move_machine(&superadmin, &key, &HostName::local(), RANGE, &free, root().login()).await;
        op.expect("move to local");
        let home = store.machine(&system(), &key).await.expect("read").expect("w");
        assert_eq!(home.placement.host, HostName::local(), "{url}");
        assert_eq!(home.ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![42001, 42002], "{url}");
        store.close().await;
    }
}

#[tokio::test]
async fn ports_held_before_hosts_stay_held_on_the_local_host() {
    for (url, _dir) in databases().await {
        // A database as flvpc left it at version 7: one machine holding host port 41000.
        let dialect = crate::Dialect::of_url(&url).expect("dialect");
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.expect("connect");
        crate::apply_migrations(&pool, dialect, 7).await.expect("old migrations");
        for statement in [
            "INSERT INTO namespaces (name, created_at) VALUES ('team', 0)",
            "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, \
             observed, created_at, updated_at) VALUES ((SELECT id FROM namespaces WHERE name = 'team'), 'old', \
             'flvpc/debian:12', 'docker', 1, 256, 1, 'h', 'running', 'running', 0, 0)",
            "INSERT INTO host_ports (host_port, protocol, machine_id, container_port) \
             VALUES (41000, 'tcp', (SELECT id FROM machines WHERE name = 'old'), 22)",
        ] {
            sqlx::query(statement).execute(&pool).await.expect("old row");
        }
        pool.close().await;

        let store = Store::open(&url).await.expect("migrate to the current version");
        let superadmin = root().superadmin().expect("superadmin");
        store.create_namespace(&superadmin, &ns("other")).await.expect("namespace");
        store.add_host(&superadmin, &new_host("a"), root().login()).await.expect("host");
        let old = store.machine(&system(), &MachineKey::parse("team", "old").expect("key")).await.expect("read");
        assert_eq!(old.expect("old").ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![41000], "{url}");
        let on_local = [plan("x", "x", None, &[Some(41000)])];
        let clash = apply(&store, "other", &on_local, &[]).await.expect_err("held on local");
        assert!(clash.to_string().contains("host port 41000/tcp for x is already taken"), "{clash}");
        apply(&store, "other", &[plan("x", "x", Some("a"), &[Some(41000)])], &[candidate("a", 8192)])
            .await
            .expect("free on host a");
        store.close().await;
    }
}
