//! The leader lease on every dialect under test: one holder at a time, handed over when the
//! holder goes, lost (and known lost) when its connection is killed.

use crate::machines_tests::databases;
use crate::{Dialect, LeaderLease, Store};
use sqlx::{Connection, Executor};

/// Tries `lease` until it acquires, a bounded number of times: a dropped holder's connection is
/// closed by the database server a moment after the client lets go of it.
async fn acquires_soon(lease: &mut LeaderLease) -> bool {
    for _ in 0..100 {
        if lease.try_acquire().await.expect("try") {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn one_lease_holds_at_a_time_and_hands_over_when_the_holder_goes() {
    for (url, _dir) in databases().await {
        let store = Store::open(&url).await.expect("open");
        let mut first = store.leader_lease("reconciler");
        let mut second = store.leader_lease("reconciler");
        assert!(first.try_acquire().await.expect("try"), "the first takes it: {url}");
        assert!(first.try_acquire().await.expect("try again"), "and keeps it: {url}");
        assert!(!second.try_acquire().await.expect("try"), "only one holds it: {url}");
        assert!(first.still_held().await, "{url}");
        assert!(!second.still_held().await, "{url}");
        // Another name is another lease.
        let mut other = store.leader_lease("something-else");
        assert!(other.try_acquire().await.expect("try"), "{url}");

        drop(first);
        assert!(acquires_soon(&mut second).await, "the holder gone, the other takes it: {url}");
        let mut third = store.leader_lease("reconciler");
        assert!(!third.try_acquire().await.expect("try"), "{url}");
        second.release().await;
        assert!(third.try_acquire().await.expect("try"), "released: taken at the next try: {url}");
        third.release().await;
        other.release().await;
        store.close().await;
    }
}

#[tokio::test]
async fn a_lease_whose_connection_is_killed_knows_it_lost_the_lock() {
    for (url, _dir) in databases().await {
        let dialect = Dialect::of_url(&url).expect("dialect");
        if dialect == Dialect::Sqlite {
            // A file lock has no connection to kill: it ends with the process (the test above).
            continue;
        }
        let store = Store::open(&url).await.expect("open");
        let mut holder = store.leader_lease("reconciler");
        assert!(holder.try_acquire().await.expect("try"), "{url}");
        let mut admin = sqlx::AnyConnection::connect(&url).await.expect("admin connection");
        let kill = match dialect {
            // The only advisory lock of this fresh database is the lease's.
            Dialect::Postgres => "SELECT pg_terminate_backend(l.pid)::text FROM pg_locks l \
                                  JOIN pg_database d ON d.oid = l.database \
                                  WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
                .to_owned(),
            _ => {
                let id: i64 = sqlx::query_scalar(
                    "SELECT CAST(IS_USED_LOCK(SHA1(CONCAT(DATABASE(), '/', 'reconciler'))) AS SIGNED)",
                )
                .fetch_one(&mut admin)
                .await
                .expect("the lease's connection id");
                format!("KILL {id}")
            }
        };
        admin.execute(sqlx::AssertSqlSafe(kill)).await.expect("kill the lease's connection");
        let mut lost = false;
        for _ in 0..100 {
            if !holder.still_held().await {
                lost = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(lost, "a killed connection's lease reports it is not held: {url}");
        let mut next = store.leader_lease("reconciler");
        assert!(acquires_soon(&mut next).await, "another takes it: {url}");
        assert!(!holder.try_acquire().await.expect("try"), "the old holder reconnects and waits: {url}");
        next.release().await;
        admin.close().await.expect("close");
        store.close().await;
    }
}
