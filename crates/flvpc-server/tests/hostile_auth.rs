//! Hostile callers against sign-in and credentials (issue 8): parallel guesses are counted
//! exactly, strangers at other addresses cannot lock an owner out, junk logins cannot flush
//! the throttle's memory of a target, a login flood keeps memory flat, every kind of
//! credential ends when it should (event streams too), /metrics names no tenant to strangers,
//! strangers' probes stay out of a namespace's audit view, and the database files are private.
//!
//! A real server on loopback (SQLite, and PostgreSQL where cheap). Other source addresses
//! are other loopback addresses (127.0.0.0/8 all reach the server). The /metrics test
//! drives the real Docker engine.

mod common;

use common::docker::{act, put_spec, require_docker, unique, DockerCleanup};
use common::{password_of, standard_fixture, start, start_with_throttle, Backend, TestServer};
use flvpc_server::throttle::{Limits, LoginThrottle};
use flvpc_store::TokenKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The memory test measures this process's RSS, so it runs alone: it takes this lock for
/// writing, every other test of this file for reading.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn limits(free: u32) -> Limits {
    Limits { free_failures: free, base_delay: Duration::from_secs(60) }
}

/// A client whose connections come from `source`.
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::from(source)).build().expect("client")
}

async fn try_login(client: &reqwest::Client, server: &TestServer, login: &str, password: &str) -> reqwest::Response {
    client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .expect("login request")
}

/// The error code of a JSON error response.
async fn code_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["error"]["code"].as_str().unwrap_or_default().to_owned()
}

async fn make_user(server: &TestServer, root: &str, login: &str) {
    let r = server.post("/api/v1/users", root, json!({"login": login, "password": password_of(login)})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

async fn metrics_text(server: &TestServer, token: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(format!("{}/metrics", server.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let response = req.send().await.expect("metrics");
    (response.status(), response.text().await.expect("text"))
}

async fn counter(server: &TestServer, series: &str) -> u64 {
    let (_, body) = metrics_text(server, None).await;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("/metrics has no {series}:\n{body}"))
}

// ---------------------------------------------------------------------------
// The throttle
// ---------------------------------------------------------------------------

async fn parallel_wrong_passwords_are_counted_exactly(backend: Backend) {
    let _shared = ALONE.read().await;
    let server = start_with_throttle(backend, LoginThrottle::new(limits(5), limits(1000))).await;
    let root = server.init_root().await;
    make_user(&server, &root, "bob").await;
    let client = reqwest::Client::new();
    let replies =
        futures::future::join_all((0..40).map(|_| try_login(&client, &server, "bob", "wrong-password"))).await;
    let (mut unauthorized, mut throttled) = (0, 0);
    for reply in replies {
        match reply.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                assert!(wait.as_deref().and_then(|w| w.parse::<u64>().ok()).is_some_and(|w| w >= 1), "{wait:?}");
                assert_eq!(code_of(reply).await, "too_many_attempts");
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((unauthorized, throttled), (5, 35), "exactly the 5 free guesses reach the password check");
    assert_eq!(counter(&server, "flvpc_logins_total{outcome=\"failed\"}").await, 5);
    let r = try_login(&client, &server, "bob", &password_of("bob")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "locked, even with the right password");
}

async fn strangers_cannot_lock_the_owner_out_of_their_address(backend: Backend) {
    let _shared = ALONE.read().await;
    // 3 free failures per login+address, 10 per login from everywhere.
    let throttle = LoginThrottle::with_limits(limits(3), limits(1000), limits(10), 10_000);
    let server = start_with_throttle(backend, throttle).await;
    let root = server.init_root().await;
    make_user(&server, &root, "bob").await;
    let owner = client_from([127, 0, 0, 1]);
    assert_eq!(try_login(&owner, &server, "bob", &password_of("bob")).await.status(), StatusCode::OK);

    // Strangers at five other addresses guess bob's password until every budget they touch is spent.
    let mut last = StatusCode::OK;
    for host in 2..=6 {
        let stranger = client_from([127, 0, 0, host]);
        for _ in 0..4 {
            last = try_login(&stranger, &server, "bob", "guess-password").await.status();
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "the strangers are stopped");
    let stranger = client_from([127, 0, 0, 2]);
    let r = try_login(&stranger, &server, "bob", &password_of("bob")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "a stranger's locked address gets no more tries");
    // The owner, from the address they signed in from before, is not kept out.
    let r = try_login(&owner, &server, "bob", &password_of("bob")).await;
    assert_eq!(r.status(), StatusCode::OK, "the owner signs in from their address");
    // A brand-new address shares the spent global budget: the documented price of stopping a botnet.
    let r = try_login(&client_from([127, 0, 0, 50]), &server, "bob", &password_of("bob")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other logins are untouched.
    assert_eq!(try_login(&stranger, &server, "root", common::ROOT_PASSWORD).await.status(), StatusCode::OK);
}

async fn junk_logins_do_not_flush_a_target(backend: Backend) {
    let _shared = ALONE.read().await;
    // Tables of 64 keys, so a flood fills them quickly.
    let throttle = LoginThrottle::with_limits(limits(3), limits(1_000_000), limits(1_000_000), 64);
    let server = start_with_throttle(backend, throttle).await;
    let root = server.init_root().await;
    make_user(&server, &root, "bob").await;
    let attacker = client_from([127, 0, 0, 9]);
    for _ in 0..3 {
        assert_eq!(try_login(&attacker, &server, "bob", "guess-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(try_login(&attacker, &server, "bob", "guess").await.status(), StatusCode::TOO_MANY_REQUESTS);

    let junk = client_from([127, 0, 0, 10]);
    let mut refused = 0;
    for i in 0..300 {
        if try_login(&junk, &server, &format!("junk{i}"), "junk-password").await.status()
            == StatusCode::TOO_MANY_REQUESTS
        {
            refused += 1;
        }
    }
    let (pairs, addresses, logins) = server.state.throttle.sizes();
    assert!(pairs <= 64 && addresses <= 64 && logins <= 64, "memory is bounded: {pairs} {addresses} {logins}");
    assert!(refused >= 200, "newcomers are refused once the tables are full: {refused} of 300");
    let r = try_login(&attacker, &server, "bob", &password_of("bob")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the flood did not reset bob's count");
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Peak RSS while `work` runs, sampled every few milliseconds on a thread of its own.
async fn peak_rss_during<F: std::future::Future>(work: F) -> (F::Output, u64) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kb());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let out = work.await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    (out, peak)
}

/// 150 parallel wrong sign-ins; returns how many were answered 401 and 429.
async fn login_flood(server: &TestServer) -> (usize, usize) {
    let client = reqwest::Client::new();
    let replies =
        futures::future::join_all((0..150).map(|_| try_login(&client, server, "bob", "wrong-password"))).await;
    let (mut unauthorized, mut busy) = (0, 0);
    for reply in replies {
        match reply.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(reply.headers().contains_key("retry-after"));
                assert_eq!(code_of(reply).await, "too_many_requests");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    (unauthorized, busy)
}

/// Floods of 150 parallel sign-ins with no throttle: argon2 (19 MiB each) runs a few at a
/// time on a few threads, so the process's memory stays flat; the excess waits briefly or
/// gets 429. (The test process is the server: its RSS is the server's plus the clients'.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_bounded() {
    let _alone = ALONE.write().await;
    let lenient = Limits { free_failures: 1_000_000, base_delay: Duration::from_millis(1) };
    let server = start_with_throttle(Backend::Sqlite, LoginThrottle::new(lenient, lenient)).await;
    let root = server.init_root().await;
    make_user(&server, &root, "bob").await;
    let before = rss_kb();
    let ((unauthorized, busy), peak) = peak_rss_during(login_flood(&server)).await;
    let after = rss_kb();
    let ((again_unauthorized, again_busy), peak_again) = peak_rss_during(login_flood(&server)).await;
    let after_again = rss_kb();
    eprintln!(
        "150 parallel logins: RSS before {} MB, peak {} MB, after {} MB ({unauthorized} answered 401, {busy} 429); \
         a second flood: peak {} MB, after {} MB ({again_unauthorized} 401, {again_busy} 429)",
        before / 1024,
        peak / 1024,
        after / 1024,
        peak_again / 1024,
        after_again / 1024,
    );
    assert_eq!(unauthorized + busy, 150);
    assert!(unauthorized >= 2, "password checks went on during the flood");
    assert!(peak.saturating_sub(before) < 400 * 1024, "memory grew by {} MB", (peak - before) / 1024);
    assert!(peak_again.saturating_sub(before) < 400 * 1024, "memory grew by {} MB", (peak_again - before) / 1024);
    assert!(!server.login("bob", &password_of("bob")).await.is_empty(), "bob still signs in");
}

// ---------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------

async fn me_with_bearer(server: &TestServer, token: &str) -> StatusCode {
    server.get("/api/v1/me", token).await.status
}

async fn me_with_cookie(server: &TestServer, secret: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/api/v1/me", server.base))
        .header("cookie", format!("flvpc_session={secret}"))
        .send()
        .await
        .expect("me")
        .status()
}

async fn named_token(server: &TestServer, token: &str, name: &str) -> String {
    let r = server.post("/api/v1/tokens", token, json!({"name": name})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["token"].as_str().expect("secret").to_owned()
}

async fn put(server: &TestServer, path: &str, token: &str, body: Value) -> StatusCode {
    server.call(Method::PUT, path, Some(token), Some(body)).await.status
}

async fn every_credential_kind_is_revoked(backend: Backend) {
    let _shared = ALONE.read().await;
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let store = &server.state.store;

    // alice: the API login she changes her password with, another API login, a panel session, a named token.
    let other_login = server.login("alice", &password_of("alice")).await;
    let alice_id = store.check_password("alice", &password_of("alice")).await.expect("check").expect("alice");
    let panel = store.create_session(alice_id, TokenKind::Panel, 3_600_000).await.expect("panel session");
    let named = named_token(&server, &people.alice, "ci").await;
    assert_eq!(me_with_cookie(&server, &panel.secret).await, StatusCode::OK);
    assert_eq!(me_with_bearer(&server, &named).await, StatusCode::OK);
    let change = json!({"current_password": password_of("alice"), "password": "alice-new-password"});
    assert_eq!(put(&server, "/api/v1/users/alice/password", &people.alice, change).await, StatusCode::NO_CONTENT);
    assert_eq!(me_with_bearer(&server, &people.alice).await, StatusCode::OK, "the session used stays");
    assert_eq!(me_with_bearer(&server, &other_login).await, StatusCode::UNAUTHORIZED, "other API login");
    assert_eq!(me_with_cookie(&server, &panel.secret).await, StatusCode::UNAUTHORIZED, "panel session");
    assert_eq!(me_with_bearer(&server, &named).await, StatusCode::UNAUTHORIZED, "named API token");

    // A change made with a named token revokes that token too: only a session is kept.
    let dave = server.login("dave", &password_of("dave")).await;
    let script = named_token(&server, &dave, "script").await;
    let change = json!({"current_password": password_of("dave"), "password": "dave-new-password"});
    assert_eq!(put(&server, "/api/v1/users/dave/password", &script, change).await, StatusCode::NO_CONTENT);
    assert_eq!(me_with_bearer(&server, &script).await, StatusCode::UNAUTHORIZED, "the named token used");
    assert_eq!(me_with_bearer(&server, &dave).await, StatusCode::UNAUTHORIZED, "dave's API login");

    // The superadmin's reset ends every credential of bob's.
    let bobs = named_token(&server, &people.bob, "ci").await;
    let bob_id = store.check_password("bob", &password_of("bob")).await.expect("check").expect("bob");
    let bob_panel = store.create_session(bob_id, TokenKind::Panel, 3_600_000).await.expect("panel session");
    let reset = json!({"password": "reset-by-root"});
    assert_eq!(put(&server, "/api/v1/users/bob/password", &people.root, reset).await, StatusCode::NO_CONTENT);
    assert_eq!(me_with_bearer(&server, &people.bob).await, StatusCode::UNAUTHORIZED, "bob's API login");
    assert_eq!(me_with_bearer(&server, &bobs).await, StatusCode::UNAUTHORIZED, "bob's named token");
    assert_eq!(me_with_cookie(&server, &bob_panel.secret).await, StatusCode::UNAUTHORIZED, "bob's panel session");
    assert_eq!(me_with_bearer(&server, &people.root).await, StatusCode::OK, "root's own session stays");

    // Logout with a named token revokes exactly that token.
    let (first, second) =
        (named_token(&server, &people.carol, "one").await, named_token(&server, &people.carol, "two").await);
    assert_eq!(server.post("/api/v1/auth/logout", &first, json!({})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(me_with_bearer(&server, &first).await, StatusCode::UNAUTHORIZED, "the token logged out with");
    assert_eq!(me_with_bearer(&server, &second).await, StatusCode::OK, "her other token");
    assert_eq!(me_with_bearer(&server, &people.carol).await, StatusCode::OK, "her API login");
    let listed = server.get("/api/v1/tokens", &people.carol).await;
    assert_eq!(listed.body.as_array().map(|l| l.len()), Some(1), "{:?}", listed.body);
}

async fn open_events(server: &TestServer, token: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/events", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// Whether the stream's body ends within `limit` (keep-alive comments are skipped).
async fn ends_within(stream: &mut reqwest::Response, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_end_when_their_credential_is_revoked() {
    let _shared = ALONE.read().await;
    let server = start(Backend::Sqlite).await;
    let people = standard_fixture(&server).await;
    let bobs = named_token(&server, &people.bob, "watch").await;
    let mut alice_stream = open_events(&server, &people.alice).await;
    let mut bob_stream = open_events(&server, &bobs).await;
    let mut carol_stream = open_events(&server, &people.carol).await;

    assert_eq!(server.post("/api/v1/auth/logout", &people.alice, json!({})).await.status, StatusCode::NO_CONTENT);
    let reset = json!({"password": "reset-by-root"});
    assert_eq!(put(&server, "/api/v1/users/bob/password", &people.root, reset).await, StatusCode::NO_CONTENT);
    assert!(ends_within(&mut alice_stream, Duration::from_secs(30)).await, "alice's stream ends after her logout");
    assert!(ends_within(&mut bob_stream, Duration::from_secs(30)).await, "bob's stream ends after the reset");
    assert!(!ends_within(&mut carol_stream, Duration::from_secs(6)).await, "carol's stream goes on");
}

// ---------------------------------------------------------------------------
// What leaks
// ---------------------------------------------------------------------------

/// Anonymous /metrics has aggregates only; the per-machine series, which name namespaces and
/// machines, need the scrape token or the superadmin's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_metrics_name_no_tenant() {
    let _shared = ALONE.read().await;
    require_docker();
    let ns = unique("mx");
    let _cleanup = DockerCleanup(vec![ns.clone()]);
    let config = flvpc_server::Config {
        metrics_token: Some("scrape-secret-0123456789".into()),
        sample_every: Duration::from_secs(1),
        data_dir: std::env::temp_dir(),
        ..flvpc_server::Config::default()
    };
    let server = common::start_configured(Backend::Sqlite, config, LoginThrottle::default()).await;
    let root = server.init_root().await;
    assert_eq!(server.post("/api/v1/namespaces", &root, json!({"name": ns})).await.status, StatusCode::CREATED);
    make_user(&server, &root, "eve").await;
    let eve = server.login("eve", &password_of("eve")).await;
    let spec = "machines:\n- count: 1\n  spec:\n    name: probe%d\n    image: flvpc/debian:12\n    ignite: {cpus: 1, memory: 128MB}\n";
    assert_eq!(put_spec(&server, &root, &ns, spec).await.status(), StatusCode::OK);
    act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;

    let series = format!("flvpc_machine_memory_bytes{{namespace=\"{ns}\",machine=\"probe0\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = metrics_text(&server, Some(&root)).await;
        assert_eq!(status, StatusCode::OK);
        if body.contains(&series) {
            break;
        }
        assert!(Instant::now() < deadline, "no per-machine series for the superadmin:\n{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, scraped) = metrics_text(&server, Some("scrape-secret-0123456789")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(scraped.contains(&series), "the scrape token sees the series:\n{scraped}");
    let (status, anonymous) = metrics_text(&server, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!anonymous.contains(&ns) && !anonymous.contains("probe0"), "names leak:\n{anonymous}");
    assert!(!anonymous.contains("flvpc_machine_"), "no per-machine series:\n{anonymous}");
    assert!(anonymous.contains("flvpc_machines_sampled 1"), "aggregates stay:\n{anonymous}");
    let (status, members) = metrics_text(&server, Some(&eve)).await;
    assert_eq!(status, StatusCode::OK, "a member's token gets the aggregates");
    assert!(!members.contains(&ns) && !members.contains("flvpc_machine_"), "names leak to a member:\n{members}");
    assert_eq!(metrics_text(&server, Some("wrong-token")).await.0, StatusCode::UNAUTHORIZED, "a wrong token");
}

async fn strangers_probes_stay_out_of_a_namespace_audit_view(backend: Backend) {
    let _shared = ALONE.read().await;
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let spec = "machines:\n- count: 1\n  spec:\n    name: n%d\n";
    // carol (admin of blue) probes red, and a namespace that does not exist yet.
    assert_eq!(put_spec(&server, &people.carol, "red", spec).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(put_spec(&server, &people.carol, "ghost", spec).await.status(), StatusCode::NOT_FOUND);
    let r = server.call(Method::POST, "/api/v1/namespaces/red/cluster/create", Some(&people.carol), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = put(&server, "/api/v1/namespaces/red/members/dave", &people.carol, json!({"role": "admin"})).await;
    assert_eq!(r, StatusCode::FORBIDDEN);
    // bob, a user of red, is refused in red: that is red's business.
    assert_eq!(put_spec(&server, &people.bob, "red", spec).await.status(), StatusCode::FORBIDDEN);

    let red = server.get("/api/v1/audit?namespace=red&limit=1000", &people.alice).await;
    assert_eq!(red.status, StatusCode::OK);
    let red = red.body.as_array().expect("list").clone();
    assert!(red.iter().all(|e| e["actor"] != "carol"), "a stranger's probe in red's view: {red:#?}");
    assert!(red.iter().any(|e| e["actor"] == "bob" && e["outcome"] == "forbidden"), "{red:#?}");
    // The superadmin still sees the probes, unfiled, with the name in the target.
    let all = server.get("/api/v1/audit?limit=1000", &people.root).await.body;
    let carols: Vec<&Value> =
        all.as_array().expect("list").iter().filter(|e| e["actor"] == "carol" && e["outcome"] != "ok").collect();
    assert_eq!(carols.len(), 4, "{carols:#?}");
    assert!(carols.iter().all(|e| e["namespace"].is_null()), "{carols:#?}");
    assert!(carols.iter().any(|e| e["target"] == "ghost"), "{carols:#?}");
    // Once "ghost" exists, the earlier probe is not attributed to it either.
    assert_eq!(server.post("/api/v1/namespaces", &people.root, json!({"name": "ghost"})).await.status, 201);
    let r = put(&server, "/api/v1/namespaces/ghost/members/carol", &people.root, json!({"role": "admin"})).await;
    assert_eq!(r, StatusCode::CREATED);
    let carol = server.login("carol", &password_of("carol")).await;
    let ghost = server.get("/api/v1/audit?namespace=ghost&limit=1000", &carol).await.body;
    assert!(ghost.as_array().expect("list").iter().all(|e| e["outcome"] == "ok"), "{ghost:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_and_data_dir_are_private() {
    let _shared = ALONE.read().await;
    use std::os::unix::fs::PermissionsExt;
    let server = start(Backend::Sqlite).await;
    let root = server.init_root().await;
    make_user(&server, &root, "bob").await;
    let db = server.db.url.strip_prefix("sqlite://").expect("sqlite url").to_owned();
    let mode = |p: &str| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        assert_eq!(mode(&file).expect("the file exists"), 0o600, "{file}");
    }
    // The data dir as `flvpc serve` and `flvpc admin init` prepare it: new ones 0700, old ones tightened.
    let base = tempfile::tempdir().expect("temp dir");
    let fresh = base.path().join("new/data");
    flvpc_store::private_dir(&fresh).expect("create");
    assert_eq!(mode(fresh.to_str().expect("utf-8")).expect("dir"), 0o700);
    let old = base.path().join("old");
    std::fs::create_dir(&old).expect("mkdir");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    flvpc_store::private_dir(&old).expect("tighten");
    assert_eq!(mode(old.to_str().expect("utf-8")).expect("dir"), 0o700);
}

on_both_backends!(
    parallel_wrong_passwords_are_counted_exactly,
    strangers_cannot_lock_the_owner_out_of_their_address,
    junk_logins_do_not_flush_a_target,
    every_credential_kind_is_revoked,
    strangers_probes_stay_out_of_a_namespace_audit_view,
);
