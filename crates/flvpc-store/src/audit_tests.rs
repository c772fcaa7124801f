//! The audit log's filters on a real database: SQLite always, PostgreSQL and MySQL/MariaDB when
//! `FLVPC_TEST_POSTGRES` and `FLVPC_TEST_MYSQL` name servers.

use crate::machines_tests::databases;
use crate::{AuditFilter, NewAudit, Store};
use flvpc_model::{Login, NamespaceName, Principal};
use std::collections::BTreeMap;

fn record(actor: &str, action: &str, namespace: Option<&str>, outcome: &str) -> NewAudit {
    NewAudit {
        actor: Some(actor.into()),
        action: action.into(),
        target: namespace.unwrap_or("-").into(),
        namespace: namespace.map(str::to_owned),
        source: None,
        outcome: outcome.into(),
        detail: None,
    }
}

/// The actions of the records `filter` selects, newest first.
async fn actions(store: &Store, filter: AuditFilter) -> Vec<String> {
    let root = Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new());
    let grant = root.superadmin().expect("superadmin");
    let found = store.audit_all(&grant, &filter, None, 100).await.expect("read the audit log");
    found.into_iter().map(|e| format!("{} {} {}", e.actor.unwrap_or_default(), e.action, e.outcome)).collect()
}

#[tokio::test]
async fn audit_records_are_filtered_by_user_action_outcome_time_and_namespace() {
    for (url, _dir) in databases().await {
        let store = Store::open(&url).await.expect("open");
        let log = [
            record("ann", "machine.start", Some("red"), "ok"),
            record("bob", "machine.stop", Some("red"), "forbidden"),
            record("ann", "machines_x.start", Some("blue"), "ok"),
            record("bob", "user.create", None, "conflict"),
            record("ann", "machine.start", Some("blue"), "ok"),
        ];
        for entry in log {
            store.record_audit(entry).await.expect("record");
        }
        // Times 1000, 2000, … in insertion order, so a range picks known records.
        sqlx::query("UPDATE audit SET at = id * 1000").execute(&store.pool).await.expect("set times");

        let all = actions(&store, AuditFilter::default()).await;
        assert_eq!(all.len(), 5, "{all:?}");
        let by = |actor: &str| AuditFilter { actor: Some(actor.into()), ..Default::default() };
        assert_eq!(actions(&store, by("bob")).await, ["bob user.create conflict", "bob machine.stop forbidden"]);
        assert!(actions(&store, by("b%")).await.is_empty(), "a login is matched exactly, not as a pattern");

        let action = |a: &str| AuditFilter { action: Some(a.into()), ..Default::default() };
        assert_eq!(
            actions(&store, action("machine.start")).await,
            ["ann machine.start ok", "ann machine.start ok"],
            "one action exactly"
        );
        assert_eq!(
            actions(&store, action("machine.")).await,
            ["ann machine.start ok", "bob machine.stop forbidden", "ann machine.start ok"],
            "a family: machines_x.start is not in it"
        );
        assert!(actions(&store, action("machine_.")).await.is_empty(), "_ is a character, not a pattern");

        let outcome = |o: &str| AuditFilter { outcome: Some(o.into()), ..Default::default() };
        assert_eq!(actions(&store, outcome("error")).await, ["bob user.create conflict", "bob machine.stop forbidden"]);
        assert_eq!(actions(&store, outcome("forbidden")).await, ["bob machine.stop forbidden"]);
        assert_eq!(actions(&store, outcome("ok")).await.len(), 3);

        let range = AuditFilter { since: Some(2000), until: Some(4000), ..Default::default() };
        assert_eq!(actions(&store, range).await, ["ann machines_x.start ok", "bob machine.stop forbidden"]);

        // Filters combine, and a namespace admin's read keeps to the namespace.
        let both = AuditFilter {
            actor: Some("ann".into()),
            outcome: Some("ok".into()),
            since: Some(3000),
            ..Default::default()
        };
        assert_eq!(actions(&store, both).await, ["ann machine.start ok", "ann machines_x.start ok"]);
        let admin = Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new())
            .namespace_admin(&NamespaceName::parse("red").expect("name"))
            .expect("admin");
        let red = store.audit_namespace(&admin, &outcome("ok"), None, 100).await.expect("red's log");
        assert_eq!(red.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["machine.start"]);
    }
}
