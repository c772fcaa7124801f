//! The control plane's REST API, in process, on SQLite and on PostgreSQL:
//! users, the superadmin, namespaces, memberships, SSH keys, API tokens, sign-in
//! and its throttling, passwords, the audit log, health and metrics, and hostile
//! input (issue 2, items 4-8 and "Bad input").

mod common;

use common::{
    fresh_db, password_of, quick_throttle, ssh_keygen, standard_fixture, start, start_with_throttle, Backend, Reply,
    TestServer, ROOT_PASSWORD,
};
use flvpc_server::throttle::{Limits, LoginThrottle};
use flvpc_store::{Store, StoreError, TokenKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Asserts the status and that the body is exactly `{"error":{"code","message"}}` with `code`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, context: &str) {
    assert_eq!(reply.status.as_u16(), status, "{context}: {:?}", reply.body);
    assert_error_shape(reply, context);
    assert_eq!(reply.body["error"]["code"], code, "{context}: {:?}", reply.body);
}

/// Asserts that the body is exactly `{"error":{"code","message"}}`.
#[track_caller]
fn assert_error_shape(reply: &Reply, context: &str) {
    let top = reply.body.as_object().unwrap_or_else(|| panic!("{context}: not a JSON object: {:?}", reply.body));
    let error =
        reply.body["error"].as_object().unwrap_or_else(|| panic!("{context}: no error object: {:?}", reply.body));
    assert_eq!(top.len(), 1, "{context}: extra top-level fields: {:?}", reply.body);
    assert_eq!(error.len(), 2, "{context}: error must have exactly code and message: {:?}", reply.body);
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{context}: code is not snake_case: {:?}",
        reply.body
    );
    assert!(error["message"].as_str().is_some_and(|m| !m.trim().is_empty()), "{context}: empty message");
}

/// Asserts an invalid-input refusal whose message names `field`.
#[track_caller]
fn assert_invalid(reply: &Reply, field: &str, context: &str) {
    assert_error(reply, 422, "invalid", context);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("{field}:")), "{context}: message does not name {field}: {message:?}");
}

/// A request with full control over the content type and the bytes of the body.
async fn raw(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", server.base)).body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let response = req.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

async fn put(server: &TestServer, path: &str, token: &str, body: Value) -> Reply {
    server.call(Method::PUT, path, Some(token), Some(body)).await
}

async fn delete(server: &TestServer, path: &str, token: &str) -> Reply {
    server.call(Method::DELETE, path, Some(token), None).await
}

async fn login_attempt(server: &TestServer, login: &str, password: &str) -> Reply {
    server.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"login": login, "password": password}))).await
}

/// Text of a non-JSON route.
async fn text(server: &TestServer, path: &str) -> (StatusCode, String) {
    let response = reqwest::get(format!("{}{path}", server.base)).await.expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

/// One counter of /metrics, e.g. `flvpc_logins_total{outcome="failed"}`.
async fn metric(server: &TestServer, series: &str) -> u64 {
    let (status, body) = text(server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    body.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("/metrics has no {series}:\n{body}"))
        .trim()
        .parse()
        .expect("counter value")
}

/// Percent-encodes everything but unreserved characters, for hostile path segments.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `field` of every object in a JSON array, in order.
fn field_of(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .map(|item| item[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `[{"name","role"}]` of a list of namespaces, as pairs.
fn names_and_roles(list: &Value) -> Vec<(String, String)> {
    field_of(list, "name").into_iter().zip(field_of(list, "role")).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Rows of `table` that belong to `user_id`, read straight from the database.
async fn rows_of_user(server: &TestServer, table: &str, user_id: i64) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&server.db.url).await.expect("connect to the test database");
    // MySQL takes only `?` placeholders.
    let placeholder = if server.db.url.starts_with("mysql:") { "?" } else { "$1" };
    let count: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE user_id = {placeholder}")))
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .expect("count rows");
    conn.close().await.expect("close");
    count
}

/// The whole audit log as root sees it, newest first.
async fn audit_log(server: &TestServer, root: &str) -> Vec<Value> {
    let r = server.get("/api/v1/audit?limit=1000", root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().expect("audit list").clone()
}

/// The newest audit record with this action, target and outcome.
#[track_caller]
fn find_audit<'a>(log: &'a [Value], action: &str, target: &str, outcome: &str) -> &'a Value {
    log.iter().find(|e| e["action"] == action && e["target"] == target && e["outcome"] == outcome).unwrap_or_else(
        || {
            let lines: Vec<String> = log
                .iter()
                .map(|e| format!("{} {} {} {}", e["action"], e["target"], e["outcome"], e["actor"]))
                .collect();
            panic!("no audit record {action} {target:?} {outcome}; the log has:\n{}", lines.join("\n"))
        },
    )
}

/// Checks who, where and from where of an audit record.
#[track_caller]
fn assert_audit(entry: &Value, actor: Option<&str>, namespace: Option<&str>) {
    assert_eq!(entry["actor"], actor.map_or(Value::Null, |a| json!(a)), "actor of {entry}");
    assert_eq!(entry["namespace"], namespace.map_or(Value::Null, |n| json!(n)), "namespace of {entry}");
    assert_eq!(entry["source"], "127.0.0.1", "source of {entry}");
    let at = entry["at"].as_str().unwrap_or_default();
    assert!(at.len() >= 20 && at.contains('T') && at.ends_with('Z'), "time of {entry}");
}

/// A key made by ssh-keygen, and its fingerprint as `ssh-keygen -lf` prints it.
fn keygen_with_fingerprint(kind: &str, bits: Option<u32>, comment: &str) -> (String, String) {
    let line = ssh_keygen(kind, bits, comment);
    (line.clone(), fingerprint_by_ssh_keygen(&line))
}

fn fingerprint_by_ssh_keygen(line: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key.pub");
    std::fs::write(&path, format!("{line}\n")).expect("write key");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(&path)
        .output()
        .expect("ssh-keygen -lf");
    assert!(out.status.success(), "ssh-keygen -lf: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    printed.split_whitespace().nth(1).expect("fingerprint field").to_owned()
}

/// Hostile strings for every field and path segment.
fn hostile_strings() -> Vec<String> {
    vec![
        "\0".into(),
        "bob\0".into(),
        "a\nb".into(),
        "bob\r\nX-Injected: 1".into(),
        "x".repeat(10 * 1024),
        "é".repeat(40),
        "ünïcødé-名前-😀".into(),
        "\u{202e}nimda".into(),
        "' OR 1=1 --".into(),
        "'; DROP TABLE users; --".into(),
        "red' OR '1'='1".into(),
        "%2e%2e%2f".into(),
        "../../etc/passwd".into(),
        "..".into(),
        "<script>alert(1)</script>".into(),
        "$(reboot)".into(),
        "`id`".into(),
        "a b".into(),
        " ".into(),
        "".into(),
    ]
}

/// A throttle that never kicks in (for tests that fail many logins on purpose).
fn no_throttle() -> LoginThrottle {
    let lenient = Limits { free_failures: 1_000_000, base_delay: Duration::from_millis(1) };
    LoginThrottle::new(lenient, lenient)
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

async fn users_are_created_once_and_validated(backend: Backend) {
    let server = start(backend).await;
    let root = server.init_root().await;

    let r = server.post("/api/v1/users", &root, json!({"login": "erin", "password": "erin-password"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!((r.body["login"].clone(), r.body["superadmin"].clone()), (json!("erin"), json!(false)));
    assert_eq!(r.body["namespaces"], json!([]));
    let r = server.post("/api/v1/users", &root, json!({"login": "erin", "password": "other-password"})).await;
    assert_error(&r, 409, "conflict", "duplicate login");
    let r = server.post("/api/v1/users", &root, json!({"login": "root", "password": "other-password"})).await;
    assert_error(&r, 409, "conflict", "the superadmin's login");

    let long = "a".repeat(200);
    for bad in ["Bob", "1x", "a b", "x;rm -rf", long.as_str(), "", "-x", "bob/../x", "bob\n", "ünï"] {
        let r = server.post("/api/v1/users", &root, json!({"login": bad, "password": "long-enough-password"})).await;
        assert_invalid(&r, "login", &format!("login {bad:?}"));
    }
    let r = server.post("/api/v1/users", &root, json!({"login": "frank", "password": "short"})).await;
    assert_invalid(&r, "password", "short password");
    let r = server.post("/api/v1/users", &root, json!({"login": "frank", "password": "x".repeat(2000)})).await;
    assert_invalid(&r, "password", "2000-byte password");

    let json_ct = Some("application/json");
    let r = raw(&server, Method::POST, "/api/v1/users", Some(&root), json_ct, r#"{"login": "frank","#).await;
    assert_error(&r, 400, "malformed_json", "truncated JSON");
    let r = raw(&server, Method::POST, "/api/v1/users", Some(&root), json_ct, "").await;
    assert_error(&r, 400, "malformed_json", "empty body");
    let r = raw(&server, Method::POST, "/api/v1/users", Some(&root), json_ct, "login=frank").await;
    assert_error(&r, 400, "malformed_json", "not JSON at all");
    for (body, what) in [
        (json!({"login": 5, "password": "long-enough-password"}), "number for a string"),
        (json!({"login": ["frank"], "password": "long-enough-password"}), "array for a string"),
        (json!({"login": null, "password": "long-enough-password"}), "null for a string"),
        (json!({"login": "frank"}), "missing password"),
        (json!({"login": "frank", "password": "long-enough-password", "superadmin": true}), "unknown field"),
        (json!("frank"), "a string for an object"),
    ] {
        let r = server.post("/api/v1/users", &root, body).await;
        assert_error(&r, 400, "bad_request", what);
    }
    let valid = r#"{"login": "frank", "password": "long-enough-password"}"#;
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let r = raw(&server, Method::POST, "/api/v1/users", Some(&root), ct, valid).await;
        assert_error(&r, 415, "unsupported_media_type", &format!("content type {ct:?}"));
    }
    let huge = json!({"login": "frank", "password": "x".repeat(70 * 1024)}).to_string();
    assert!(huge.len() > 64 * 1024);
    let r = raw(&server, Method::POST, "/api/v1/users", Some(&root), json_ct, huge).await;
    assert_error(&r, 413, "payload_too_large", "body over the limit");

    // Only erin was created.
    let r = server.get("/api/v1/users", &root).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(field_of(&r.body, "login"), ["erin", "root"]);
    let erin = r.body.as_array().and_then(|l| l.iter().find(|u| u["login"] == "erin")).expect("erin listed");
    assert_eq!(erin["superadmin"], false);
    assert!(erin["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{erin}");
    server.login("erin", "erin-password").await;
}

async fn deleting_a_user_removes_everything_at_once(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let bob_id = server.state.store.check_password("bob", &password_of("bob")).await.expect("check").expect("bob");
    let r = put(&server, "/api/v1/namespaces/blue/members/bob", &people.root, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = ssh_keygen("ed25519", None, "bob@laptop");
    assert_eq!(
        server.post("/api/v1/keys", &people.bob, json!({"name": "laptop", "public_key": key})).await.status,
        201
    );
    let r = server.post("/api/v1/tokens", &people.bob, json!({"name": "ci"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let api_token = r.body["token"].as_str().expect("token").to_owned();
    let panel = server.state.store.create_session(bob_id, TokenKind::Panel, 3_600_000).await.expect("panel session");
    for table in ["memberships", "ssh_keys", "tokens"] {
        assert!(rows_of_user(&server, table, bob_id).await > 0, "bob has {table} before");
    }
    assert_eq!(server.get("/api/v1/me", &api_token).await.status, StatusCode::OK);

    assert_eq!(delete(&server, "/api/v1/users/bob", &people.root).await.status, StatusCode::NO_CONTENT);

    // Every way bob had in stops working at once.
    assert_error(&server.get("/api/v1/me", &people.bob).await, 401, "unauthenticated", "bob's login token");
    assert_error(&server.get("/api/v1/me", &api_token).await, 401, "unauthenticated", "bob's API token");
    assert!(
        server.state.store.authenticate(&panel.secret).await.expect("authenticate").is_none(),
        "bob's panel session"
    );
    assert_error(&login_attempt(&server, "bob", &password_of("bob")).await, 401, "wrong_credentials", "bob signs in");
    for table in ["memberships", "ssh_keys", "tokens"] {
        assert_eq!(rows_of_user(&server, table, bob_id).await, 0, "bob's {table} after deletion");
    }
    let members = server.get("/api/v1/namespaces/red/members", &people.root).await;
    assert_eq!(field_of(&members.body, "login"), ["alice"]);
    let users = server.get("/api/v1/users", &people.root).await;
    assert_eq!(field_of(&users.body, "login"), ["alice", "carol", "dave", "root"]);

    assert_error(&delete(&server, "/api/v1/users/bob", &people.root).await, 404, "not_found", "deleted twice");
    assert_error(&delete(&server, "/api/v1/users/root", &people.root).await, 409, "conflict", "delete the superadmin");
    assert_eq!(server.get("/api/v1/me", &people.root).await.status, StatusCode::OK, "root still signed in");
    assert_error(&delete(&server, "/api/v1/users/carol", &people.alice).await, 403, "forbidden", "alice deletes carol");
    assert_eq!(server.get("/api/v1/me", &people.carol).await.status, StatusCode::OK, "carol still exists");

    // A new bob starts with nothing.
    let r = server.post("/api/v1/users", &people.root, json!({"login": "bob", "password": "new-bob-password"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = server.login("bob", "new-bob-password").await;
    assert_eq!(server.get("/api/v1/me", &bob).await.body["namespaces"], json!([]));
    assert_eq!(server.get("/api/v1/keys", &bob).await.body, json!([]));
    assert_eq!(server.get("/api/v1/tokens", &bob).await.body, json!([]));
}

async fn the_superadmin_is_created_once_even_concurrently(backend: Backend) {
    let login = |l: &str| flvpc_model::Login::parse(l).expect("login");
    let db = fresh_db(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    assert!(!store.superadmin_exists().await.expect("exists"));
    let err = store.init_superadmin(&login("admin"), "short").await.expect_err("short password");
    assert!(matches!(err, StoreError::Invalid(ref i) if i.field == "password"), "{err:?}");
    store.init_superadmin(&login("admin"), "admin-password").await.expect("first init");
    assert!(store.superadmin_exists().await.expect("exists"));
    for second in ["admin", "other"] {
        let err = store.init_superadmin(&login(second), "other-password").await.expect_err("second init");
        assert!(matches!(err, StoreError::Conflict(_)), "second init as {second}: {err:?}");
    }
    assert!(store.check_password("other", "other-password").await.expect("check").is_none());
    store.close().await;

    // Two `flvpc admin init` at the same moment: exactly one wins, on every try.
    for round in 0..3 {
        let db = fresh_db(backend).await;
        let store = Arc::new(Store::open(&db.url).await.expect("open store"));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let attempt = |name: &'static str| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.init_superadmin(&flvpc_model::Login::parse(name).expect("login"), "racing-password").await
            })
        };
        let (a, b) = (attempt("first"), attempt("second"));
        let results = [a.await.expect("task"), b.await.expect("task")];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results.iter().any(|r| matches!(r, Err(StoreError::Conflict(_)))),
            "round {round}: the loser must get a conflict: {results:?}"
        );
        let superadmins = [
            store.check_password("first", "racing-password").await.expect("check"),
            store.check_password("second", "racing-password").await.expect("check"),
        ];
        assert_eq!(superadmins.iter().flatten().count(), 1, "round {round}: exactly one account exists");
        store.close().await;
    }

    // Without a superadmin the panel tells how to make one, and nobody can sign in.
    let server = start(backend).await;
    let (status, page) = text(&server, "/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("flvpc admin init"), "{page}");
    assert!(!page.contains("name=\"password\""), "no sign-in form without a superadmin");
}

// ---------------------------------------------------------------------------
// Namespaces and memberships
// ---------------------------------------------------------------------------

async fn namespaces_are_validated_and_scoped(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let root = &people.root;

    let r = server.post("/api/v1/namespaces", root, json!({"name": "green"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!((r.body["name"].clone(), r.body["members"].clone()), (json!("green"), json!(0)));
    assert_error(&server.post("/api/v1/namespaces", root, json!({"name": "red"})).await, 409, "conflict", "dup");
    let long = "a".repeat(32);
    for bad in ["../x", "Team", long.as_str(), "", "1team", "te_am", "te.am", "a b", "-x", "red\n", "rouge-é"] {
        let r = server.post("/api/v1/namespaces", root, json!({"name": bad})).await;
        assert_invalid(&r, "name", &format!("namespace {bad:?}"));
    }
    let longest = "a".repeat(31);
    assert_eq!(server.post("/api/v1/namespaces", root, json!({"name": longest})).await.status, 201);
    assert_error(&server.post("/api/v1/namespaces", root, json!({"name": 7})).await, 400, "bad_request", "number");

    // The superadmin sees all; others only their own, with their role.
    let all = server.get("/api/v1/namespaces", root).await;
    let expected_all = [longest.as_str(), "blue", "green", "red"];
    assert_eq!(field_of(&all.body, "name"), expected_all);
    assert!(field_of(&all.body, "role").iter().all(|r| r == "admin"));
    for (token, expected) in [
        (&people.alice, pairs(&[("red", "admin")])),
        (&people.bob, pairs(&[("red", "user")])),
        (&people.carol, pairs(&[("blue", "admin")])),
    ] {
        let mine = server.get("/api/v1/namespaces", token).await;
        assert_eq!(names_and_roles(&mine.body), expected);
    }
    let dave = server.login("dave", &password_of("dave")).await;
    assert_eq!(server.get("/api/v1/namespaces", &dave).await.body, json!([]));

    let red = server.get("/api/v1/namespaces/red", &people.alice).await;
    assert_eq!(red.status, StatusCode::OK);
    assert_eq!((red.body["role"].clone(), red.body["members"].clone()), (json!("admin"), json!(2)));
    assert_eq!(server.get("/api/v1/namespaces/red", &people.bob).await.body["role"], "user");

    // A foreign namespace looks exactly like one that does not exist.
    let foreign = server.get("/api/v1/namespaces/red", &people.carol).await;
    assert_error(&foreign, 404, "not_found", "carol reads red");
    let missing = server.get("/api/v1/namespaces/nosuch", &people.carol).await;
    assert_eq!(foreign.body, missing.body, "names must not leak");
    let foreign_members = server.get("/api/v1/namespaces/red/members", &people.carol).await;
    assert_eq!(foreign_members.body, foreign.body);
    assert_error(&server.get("/api/v1/namespaces/nosuch", root).await, 404, "not_found", "root reads nosuch");
    assert_error(&server.get("/api/v1/namespaces/Not%20Valid", root).await, 404, "not_found", "invalid name in path");

    // Deleting takes the memberships with it.
    assert_eq!(delete(&server, "/api/v1/namespaces/green", root).await.status, StatusCode::NO_CONTENT);
    assert_error(&delete(&server, "/api/v1/namespaces/green", root).await, 404, "not_found", "deleted twice");
    assert_eq!(delete(&server, "/api/v1/namespaces/red", root).await.status, StatusCode::NO_CONTENT);
    assert_eq!(server.get("/api/v1/me", &people.alice).await.body["namespaces"], json!([]));
    assert_error(&server.get("/api/v1/namespaces/red", &people.alice).await, 404, "not_found", "after delete");
    let r = server.post("/api/v1/namespaces", root, json!({"name": "red"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "the name is free again");
    assert_eq!(r.body["members"], 0, "old memberships do not come back");
}

async fn memberships_roles_and_removal(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let root = &people.root;

    let r = put(&server, "/api/v1/namespaces/red/members/dave", root, json!({"role": "user"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body, json!({"login": "dave", "role": "user"}));
    let r = put(&server, "/api/v1/namespaces/red/members/dave", root, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::OK, "a role change is 200: {:?}", r.body);
    let members = server.get("/api/v1/namespaces/red/members", &people.bob).await;
    assert_eq!(
        members.body,
        json!([
            {"login": "alice", "role": "admin"},
            {"login": "bob", "role": "user"},
            {"login": "dave", "role": "admin"}
        ])
    );
    for bad in ["owner", "Admin", "", "admin "] {
        let r = put(&server, "/api/v1/namespaces/red/members/dave", root, json!({"role": bad})).await;
        assert_invalid(&r, "role", &format!("role {bad:?}"));
    }
    let r = put(&server, "/api/v1/namespaces/red/members/zed", root, json!({"role": "user"})).await;
    assert_error(&r, 404, "not_found", "unknown user");
    let r = put(&server, "/api/v1/namespaces/nosuch/members/dave", root, json!({"role": "user"})).await;
    assert_error(&r, 404, "not_found", "unknown namespace");
    let r = put(&server, "/api/v1/namespaces/red/members/Dave", root, json!({"role": "user"})).await;
    assert_invalid(&r, "login", "invalid login in the path");
    let r = put(&server, "/api/v1/namespaces/red/members/dave", root, json!({"role": "user", "extra": 1})).await;
    assert_error(&r, 400, "bad_request", "unknown field");

    // bob: user of red, admin of blue.
    let r = put(&server, "/api/v1/namespaces/blue/members/bob", root, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let me = server.get("/api/v1/me", &people.bob).await;
    assert_eq!(me.body["login"], "bob");
    assert_eq!(me.body["superadmin"], false);
    assert_eq!(names_and_roles(&me.body["namespaces"]), pairs(&[("blue", "admin"), ("red", "user")]));
    // Admin rights only where held.
    assert_eq!(server.get("/api/v1/audit?namespace=blue", &people.bob).await.status, StatusCode::OK);
    let r = server.get("/api/v1/audit?namespace=red", &people.bob).await;
    assert_error(&r, 403, "forbidden", "bob reads red's audit log as a user");
    let me = server.get("/api/v1/me", root).await;
    assert_eq!(me.body["superadmin"], true);
    assert_eq!(names_and_roles(&me.body["namespaces"]), pairs(&[("blue", "admin"), ("red", "admin")]));

    // Changes take effect on the next request with the same token.
    let r = put(&server, "/api/v1/namespaces/red/members/bob", root, json!({"role": "admin"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(server.get("/api/v1/audit?namespace=red", &people.bob).await.status, StatusCode::OK);
    assert_eq!(delete(&server, "/api/v1/namespaces/blue/members/bob", root).await.status, StatusCode::NO_CONTENT);
    assert_error(&server.get("/api/v1/namespaces/blue", &people.bob).await, 404, "not_found", "removed from blue");
    assert_error(&server.get("/api/v1/audit?namespace=blue", &people.bob).await, 404, "not_found", "blue's log");
    let me = server.get("/api/v1/me", &people.bob).await;
    assert_eq!(names_and_roles(&me.body["namespaces"]), pairs(&[("red", "admin")]));
    let r = delete(&server, "/api/v1/namespaces/blue/members/bob", root).await;
    assert_error(&r, 404, "not_found", "removed twice");
    let r = delete(&server, "/api/v1/namespaces/blue/members/bob", &people.carol).await;
    assert_error(&r, 403, "forbidden", "a namespace admin cannot manage members");
}

// ---------------------------------------------------------------------------
// SSH keys
// ---------------------------------------------------------------------------

async fn real_ssh_keys_are_stored_intact(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let alice = &people.alice;
    let kinds: [(&str, Option<u32>); 6] = [
        ("ed25519", None),
        ("ecdsa", Some(256)),
        ("ecdsa", Some(384)),
        ("ecdsa", Some(521)),
        ("rsa", Some(2048)),
        ("rsa", Some(4096)),
    ];
    let mut expected = Vec::new();
    for (kind, bits) in kinds {
        let name = format!("{kind}-{}", bits.unwrap_or(256));
        let (line, fingerprint) = keygen_with_fingerprint(kind, bits, &format!("alice@{name}"));
        let r = server.post("/api/v1/keys", alice, json!({"name": name, "public_key": line})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {:?}", r.body);
        assert_eq!(r.body["public_key"], line.as_str(), "{name}");
        assert_eq!(r.body["fingerprint"], fingerprint.as_str(), "{name}");
        expected.push((name, line, fingerprint));
    }
    // A key pasted with the trailing newline of the .pub file is accepted and stored without it.
    let (line, fingerprint) = keygen_with_fingerprint("ed25519", None, "alice@pasted");
    let r = server.post("/api/v1/keys", alice, json!({"name": "pasted", "public_key": format!("{line}\n")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    expected.push(("pasted".into(), line, fingerprint));
    expected.sort();

    let listed = server.get("/api/v1/keys", alice).await;
    assert_eq!(listed.status, StatusCode::OK);
    let mut got: Vec<(String, String, String)> = listed
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|k| {
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (s("name"), s("public_key"), s("fingerprint"))
        })
        .collect();
    got.sort();
    assert_eq!(got, expected, "keys come back exactly as added, with ssh-keygen's fingerprints");
    assert_eq!(server.get("/api/v1/keys", &people.bob).await.body, json!([]), "bob sees none of alice's keys");
}

async fn bad_ssh_keys_are_refused(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let alice = &people.alice;
    let good = ssh_keygen("ed25519", None, "alice@laptop");
    let other = ssh_keygen("ed25519", None, "alice@desktop");
    let rsa1024 = ssh_keygen("rsa", Some(1024), "alice@old");
    let dsa = ssh_keygen("dsa", None, "alice@older");
    let private = {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("id");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", "ed25519", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        std::fs::read_to_string(&path).expect("private key")
    };
    let data = good.split_whitespace().nth(1).expect("key data").to_owned();
    let rsa_data = rsa1024.split_whitespace().nth(1).expect("key data").to_owned();
    let cases: Vec<(&str, String)> = vec![
        ("rsa 1024", rsa1024.clone()),
        ("dsa", dsa),
        ("garbage", "not a key at all".into()),
        ("empty", String::new()),
        ("type only", "ssh-ed25519".into()),
        ("two keys on two lines", format!("{good}\n{other}")),
        ("command option", format!("command=\"echo pwned\" {good}")),
        ("several options", format!("no-pty,from=\"10.0.0.1\" {good}")),
        ("private key", private.clone()),
        ("private key, one line", private.replace('\n', " ")),
        ("truncated data", format!("ssh-ed25519 {}", &data[..data.len() - 8])),
        ("bad base64", format!("ssh-ed25519 {}!!", &data[..20])),
        ("type and data disagree", format!("ssh-rsa {data}")),
        ("rsa data as ed25519", format!("ssh-ed25519 {rsa_data}")),
        ("NUL in comment", format!("{good}\0evil")),
        ("huge", format!("{good} {}", "c".repeat(60 * 1024))),
    ];
    for (what, key) in cases {
        let r = server.post("/api/v1/keys", alice, json!({"name": "k", "public_key": key})).await;
        if what == "huge" {
            assert!(r.status == 422 || r.status == 413, "{what}: {:?}", r.body);
            assert_error_shape(&r, what);
            continue;
        }
        assert_invalid(&r, "public_key", what);
        if what == "rsa 1024" {
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("1024") && message.contains("2048"), "says why: {message}");
        }
    }
    for bad in ["a b", ".x", "<script>", "k'", &"k".repeat(65), ""] {
        let r = server.post("/api/v1/keys", alice, json!({"name": bad, "public_key": good})).await;
        assert_invalid(&r, "name", &format!("key name {bad:?}"));
    }
    assert_eq!(server.get("/api/v1/keys", alice).await.body, json!([]), "nothing was stored");
}

async fn key_names_are_unique_per_user(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let (alice, bob) = (&people.alice, &people.bob);
    let key_a = ssh_keygen("ed25519", None, "alice@laptop");
    let key_b = ssh_keygen("ecdsa", Some(256), "bob@laptop");

    assert_eq!(server.post("/api/v1/keys", alice, json!({"name": "laptop", "public_key": key_a})).await.status, 201);
    let r = server.post("/api/v1/keys", alice, json!({"name": "laptop", "public_key": key_b})).await;
    assert_error(&r, 409, "conflict", "same name twice for alice");
    let r = server.post("/api/v1/keys", alice, json!({"name": "again", "public_key": key_a})).await;
    assert_error(&r, 409, "conflict", "same key twice for alice");
    let r = server.post("/api/v1/keys", bob, json!({"name": "laptop", "public_key": key_b})).await;
    assert_eq!(r.status, StatusCode::CREATED, "the same name for another user: {:?}", r.body);

    // bob deleting "laptop" removes his own only.
    assert_eq!(delete(&server, "/api/v1/keys/laptop", bob).await.status, StatusCode::NO_CONTENT);
    assert_eq!(server.get("/api/v1/keys", bob).await.body, json!([]));
    let alices = server.get("/api/v1/keys", alice).await;
    assert_eq!(field_of(&alices.body, "public_key").as_slice(), std::slice::from_ref(&key_a));
    assert_error(&delete(&server, "/api/v1/keys/laptop", bob).await, 404, "not_found", "bob deletes again");
    assert_error(&delete(&server, "/api/v1/keys/desktop", alice).await, 404, "not_found", "no such key");
    assert_invalid(&delete(&server, "/api/v1/keys/a%20b", alice).await, "name", "invalid name in the path");
    // Once deleted, bob may add the same name again.
    let r = server.post("/api/v1/keys", bob, json!({"name": "laptop", "public_key": key_b})).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

// ---------------------------------------------------------------------------
// API tokens, sign-in, sign-out, passwords
// ---------------------------------------------------------------------------

async fn api_tokens_are_shown_once_and_revocable(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let alice = &people.alice;

    let r = server.post("/api/v1/tokens", alice, json!({"name": "ci"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["name"], "ci");
    let secret = r.body["token"].as_str().expect("the secret, once").to_owned();
    assert!(secret.len() >= 40, "a long random secret: {secret}");

    let me = server.get("/api/v1/me", &secret).await;
    assert_eq!((me.status, me.body["login"].clone()), (StatusCode::OK, json!("alice")), "works as bearer");

    let listed = server.get("/api/v1/tokens", alice).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(field_of(&listed.body, "name"), ["ci"]);
    let entry = &listed.body[0];
    let mut keys: Vec<&String> = entry.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "last_used_at", "name"], "no secret in the list");
    assert!(entry["last_used_at"].is_string(), "use is recorded: {entry}");
    assert!(!listed.body.to_string().contains(&secret[8..]), "the secret is never shown again");

    assert_error(&server.post("/api/v1/tokens", alice, json!({"name": "ci"})).await, 409, "conflict", "dup");
    let r = server.post("/api/v1/tokens", &people.bob, json!({"name": "ci"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "names are per user");
    let bobs = r.body["token"].as_str().expect("token").to_owned();
    for bad in ["", "a b", "<x>", &"t".repeat(65)] {
        assert_invalid(&server.post("/api/v1/tokens", alice, json!({"name": bad})).await, "name", bad);
    }

    assert_eq!(delete(&server, "/api/v1/tokens/ci", alice).await.status, StatusCode::NO_CONTENT);
    assert_error(&server.get("/api/v1/me", &secret).await, 401, "unauthenticated", "revoked token");
    assert_error(&delete(&server, "/api/v1/tokens/ci", alice).await, 404, "not_found", "revoked twice");
    assert_eq!(server.get("/api/v1/me", &bobs).await.status, StatusCode::OK, "bob's ci is untouched");
    assert_eq!(server.get("/api/v1/tokens", alice).await.body, json!([]));
}

async fn sign_in_failures_look_the_same_and_logout_ends_the_token(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;

    let ok = login_attempt(&server, "alice", &password_of("alice")).await;
    assert_eq!(ok.status, StatusCode::OK);
    let expires = ok.body["expires_at"].as_str().unwrap_or_default();
    assert!(expires.contains('T') && expires.ends_with('Z'), "expires_at is RFC 3339: {expires}");
    let token = ok.body["token"].as_str().expect("token").to_owned();

    let wrong = login_attempt(&server, "alice", "not-her-password").await;
    assert_error(&wrong, 401, "wrong_credentials", "wrong password");
    for (login, password) in [("zed", "any-password"), ("Not Valid", "any-password"), ("alice", "")] {
        let r = login_attempt(&server, login, password).await;
        assert_eq!((r.status, &r.body), (wrong.status, &wrong.body), "{login:?} must look like a wrong password");
    }
    let r = server.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"login": "alice"}))).await;
    assert_error(&r, 400, "bad_request", "no password");

    assert_eq!(server.post("/api/v1/auth/logout", &token, json!({})).await.status, StatusCode::NO_CONTENT);
    assert_error(&server.get("/api/v1/me", &token).await, 401, "unauthenticated", "after logout");
    let again = server.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_error(&again, 401, "unauthenticated", "logout twice");
    assert_eq!(server.get("/api/v1/me", &people.alice).await.status, StatusCode::OK, "her other session stays");
}

async fn failed_logins_are_throttled_per_login_and_per_address(backend: Backend) {
    // quick_throttle: 3 free failures per login (and address), 6 per address, then 30 s and more.
    // Each guess is counted before its check, so exactly the free failures reach the password check.
    let server = start_with_throttle(backend, quick_throttle()).await;
    standard_fixture(&server).await;

    for attempt in 1..=3 {
        let r = login_attempt(&server, "bob", "wrong-password").await;
        assert_error(&r, 401, "wrong_credentials", &format!("bob's failure {attempt}"));
    }
    // bob is locked, even with the right password; the address is not yet.
    let r = login_attempt(&server, "bob", &password_of("bob")).await;
    assert_error(&r, 429, "too_many_attempts", "bob with the right password while locked");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("seconds"), "says how long to wait: {message}");
    assert_error(&login_attempt(&server, "bob", "wrong-password").await, 429, "too_many_attempts", "still locked");
    server.login("alice", &password_of("alice")).await;

    // Two more failures of another login: five from this address, still allowed.
    for _ in 0..2 {
        assert_error(&login_attempt(&server, "dave", "wrong").await, 401, "wrong_credentials", "dave");
    }
    server.login("alice", &password_of("alice")).await;
    // The sixth failure from this address locks it for every login.
    assert_error(&login_attempt(&server, "zed", "wrong").await, 401, "wrong_credentials", "6th failure");
    for login in ["alice", "carol", "root"] {
        let password = if login == "root" { ROOT_PASSWORD.to_owned() } else { password_of(login) };
        let r = login_attempt(&server, login, &password).await;
        assert_error(&r, 429, "too_many_attempts", &format!("{login} from the locked address"));
    }
    assert_eq!(metric(&server, "flvpc_logins_total{outcome=\"failed\"}").await, 6);
    assert_eq!(metric(&server, "flvpc_logins_total{outcome=\"throttled\"}").await, 5);
}

async fn passwords_change_and_other_sessions_end(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let alice = &people.alice;
    let other_session = server.login("alice", &password_of("alice")).await;
    let alice_id = server.state.store.check_password("alice", &password_of("alice")).await.expect("check").expect("id");
    let panel = server.state.store.create_session(alice_id, TokenKind::Panel, 3_600_000).await.expect("panel session");
    let path = "/api/v1/users/alice/password";

    let r =
        put(&server, path, alice, json!({"current_password": "wrong-password", "password": "alice-new-pass"})).await;
    assert_error(&r, 403, "wrong_password", "wrong current password");
    let r = put(&server, path, alice, json!({"password": "alice-new-pass"})).await;
    assert_error(&r, 403, "wrong_password", "no current password");
    let r = put(&server, path, alice, json!({"current_password": password_of("alice"), "password": "short"})).await;
    assert_invalid(&r, "password", "too short");
    let r = put(&server, path, &people.bob, json!({"current_password": password_of("bob"), "password": "bobs-choice"}))
        .await;
    assert_error(&r, 403, "forbidden", "bob changes alice's password");
    server.login("alice", &password_of("alice")).await;

    let r = put(&server, path, alice, json!({"current_password": password_of("alice"), "password": "alice-new-pass"}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_error(&login_attempt(&server, "alice", &password_of("alice")).await, 401, "wrong_credentials", "old");
    server.login("alice", "alice-new-pass").await;
    assert_eq!(server.get("/api/v1/me", alice).await.status, StatusCode::OK, "the session used stays");
    assert_error(&server.get("/api/v1/me", &other_session).await, 401, "unauthenticated", "other session ends");
    assert!(server.state.store.authenticate(&panel.secret).await.expect("auth").is_none(), "panel session ends");

    // The superadmin resets bob's without knowing it; bob's sessions end.
    let r = put(&server, "/api/v1/users/bob/password", &people.root, json!({"password": "reset-by-root"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_error(&server.get("/api/v1/me", &people.bob).await, 401, "unauthenticated", "bob's old session");
    assert_error(&login_attempt(&server, "bob", &password_of("bob")).await, 401, "wrong_credentials", "bob old");
    server.login("bob", "reset-by-root").await;
    let r = put(&server, "/api/v1/users/zed/password", &people.root, json!({"password": "whatever-pass"})).await;
    assert_error(&r, 404, "not_found", "unknown user");
    // Their own password needs the current one, even for the superadmin.
    let r = put(&server, "/api/v1/users/root/password", &people.root, json!({"password": "root-new-pass"})).await;
    assert_error(&r, 403, "wrong_password", "root without current_password");
}

// ---------------------------------------------------------------------------
// The audit log
// ---------------------------------------------------------------------------

async fn audit_log_records_changes_and_refusals(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let root = &people.root;

    // Changes.
    assert_eq!(
        server.post("/api/v1/users", root, json!({"login": "erin", "password": "erin-password"})).await.status,
        201
    );
    assert_eq!(server.post("/api/v1/namespaces", root, json!({"name": "green"})).await.status, 201);
    assert_eq!(put(&server, "/api/v1/namespaces/green/members/erin", root, json!({"role": "admin"})).await.status, 201);
    let erin = server.login("erin", "erin-password").await;
    let key = ssh_keygen("ed25519", None, "erin@laptop");
    let fingerprint = fingerprint_by_ssh_keygen(&key);
    assert_eq!(server.post("/api/v1/keys", &erin, json!({"name": "laptop", "public_key": key})).await.status, 201);
    assert_eq!(server.post("/api/v1/tokens", &erin, json!({"name": "ci"})).await.status, 201);
    assert_eq!(delete(&server, "/api/v1/tokens/ci", &erin).await.status, 204);
    assert_eq!(delete(&server, "/api/v1/keys/laptop", &erin).await.status, 204);
    let body = json!({"current_password": "erin-password", "password": "erin-new-password"});
    assert_eq!(put(&server, "/api/v1/users/erin/password", &erin, body).await.status, 204);
    assert_eq!(delete(&server, "/api/v1/namespaces/green/members/erin", root).await.status, 204);
    assert_eq!(server.post("/api/v1/auth/logout", &erin, json!({})).await.status, 204);
    assert_eq!(delete(&server, "/api/v1/users/erin", root).await.status, 204);
    assert_eq!(delete(&server, "/api/v1/namespaces/green", root).await.status, 204);

    // Refusals.
    assert_eq!(
        server
            .post("/api/v1/users", &people.alice, json!({"login": "mallory", "password": "mallory-pass"}))
            .await
            .status,
        403
    );
    assert_eq!(
        server.post("/api/v1/users", root, json!({"login": "Bad Login", "password": "long-enough"})).await.status,
        422
    );
    assert_eq!(
        server.post("/api/v1/users", root, json!({"login": "alice", "password": "long-enough"})).await.status,
        409
    );
    assert_eq!(login_attempt(&server, "alice", "wrong-password").await.status, 401);
    let body = json!({"current_password": "wrong-password", "password": "bob-new-password"});
    assert_eq!(put(&server, "/api/v1/users/bob/password", &people.bob, body).await.status, 403);
    assert_eq!(
        put(&server, "/api/v1/namespaces/red/members/dave", &people.carol, json!({"role": "admin"})).await.status,
        403
    );
    assert_eq!(delete(&server, "/api/v1/namespaces/red", &people.alice).await.status, 403);

    let log = audit_log(&server, root).await;
    let ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, ids decreasing: {ids:?}");

    for (action, target, actor, namespace) in [
        ("user.create", "erin", "root", None),
        ("namespace.create", "green", "root", Some("green")),
        ("member.set", "erin", "root", Some("green")),
        ("auth.login", "erin", "erin", None),
        ("key.add", "laptop", "erin", None),
        ("token.create", "ci", "erin", None),
        ("token.delete", "ci", "erin", None),
        ("key.delete", "laptop", "erin", None),
        ("user.password", "erin", "erin", None),
        ("member.remove", "erin", "root", Some("green")),
        ("auth.logout", "erin", "erin", None),
        ("user.delete", "erin", "root", None),
        ("namespace.delete", "green", "root", Some("green")),
        // From the fixture.
        ("member.set", "alice", "root", Some("red")),
        ("member.set", "carol", "root", Some("blue")),
    ] {
        let entry = find_audit(&log, action, target, "ok");
        assert_audit(entry, Some(actor), namespace);
    }
    assert_eq!(find_audit(&log, "member.set", "erin", "ok")["detail"], "role=admin");
    assert_eq!(find_audit(&log, "key.add", "laptop", "ok")["detail"], fingerprint.as_str());

    for (action, target, outcome, actor, namespace) in [
        ("user.create", "mallory", "forbidden", Some("alice"), None),
        ("user.create", "Bad Login", "invalid", Some("root"), None),
        ("user.create", "alice", "conflict", Some("root"), None),
        ("auth.login", "alice", "wrong_credentials", None, None),
        ("user.password", "bob", "wrong_password", Some("bob"), None),
        // carol is no member of red: her refusal is not filed under red (red's admins do not see it).
        ("member.set", "dave", "forbidden", Some("carol"), None),
        ("namespace.delete", "red", "forbidden", Some("alice"), Some("red")),
    ] {
        let entry = find_audit(&log, action, target, outcome);
        assert_audit(entry, actor, namespace);
    }
    // Reads are not changes: nothing is recorded for them.
    for path in ["/api/v1/me", "/api/v1/users", "/api/v1/namespaces", "/api/v1/namespaces/red/members", "/api/v1/keys"]
    {
        assert_eq!(server.get(path, root).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(audit_log(&server, root).await, log, "reading wrote to the audit log");
}

async fn audit_log_pages_and_namespace_scope(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let root = &people.root;
    // Some activity in both namespaces.
    for (ns, login, role) in [("red", "dave", "user"), ("blue", "dave", "admin"), ("red", "dave", "admin")] {
        let r = put(&server, &format!("/api/v1/namespaces/{ns}/members/{login}"), root, json!({"role": role})).await;
        assert!(r.status.is_success());
    }
    let all = audit_log(&server, root).await;
    assert!(all.len() >= 12, "{all:#?}");

    // Paging back with `before` and `limit` walks the whole log exactly once.
    let mut paged = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("/api/v1/audit?limit=5&before={id}"),
            None => "/api/v1/audit?limit=5".to_owned(),
        };
        let page = server.get(&path, root).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let entries = page.body.as_array().expect("list").clone();
        assert!(entries.len() <= 5);
        if entries.is_empty() {
            break;
        }
        before = entries.last().and_then(|e| e["id"].as_i64());
        paged.extend(entries);
    }
    assert_eq!(paged, all, "pages add up to the whole log");
    let first_two = server.get("/api/v1/audit?limit=2", root).await;
    assert_eq!(first_two.body.as_array().map(Vec::len), Some(2));

    // alice, admin of red, reads red's log only.
    let red: Vec<Value> = all.iter().filter(|e| e["namespace"] == "red").cloned().collect();
    assert!(red.len() >= 4, "{red:#?}");
    let alices = server.get("/api/v1/audit?namespace=red", &people.alice).await;
    assert_eq!(alices.status, StatusCode::OK);
    assert_eq!(alices.body.as_array().expect("list"), &red);
    let alices_page =
        server.get(&format!("/api/v1/audit?namespace=red&limit=1&before={}", red[0]["id"]), &people.alice).await;
    assert_eq!(alices_page.body, json!([red[1].clone()]));
    assert_error(&server.get("/api/v1/audit?namespace=blue", &people.alice).await, 404, "not_found", "alice, blue");
    assert_error(&server.get("/api/v1/audit", &people.alice).await, 403, "forbidden", "alice, everything");
    assert_error(&server.get("/api/v1/audit?namespace=red", &people.bob).await, 403, "forbidden", "bob, red");
    let carols = server.get("/api/v1/audit?namespace=blue", &people.carol).await;
    assert!(carols.body.as_array().expect("list").iter().all(|e| e["namespace"] == "blue"));
    let r = server.get("/api/v1/audit?limit=abc", root).await;
    assert_error(&r, 400, "bad_request", "a limit that is not a number");
    let r = server.get("/api/v1/audit?limit=100000", root).await;
    assert_eq!(r.status, StatusCode::OK, "a huge limit is capped, not an error");
}

async fn audit_log_is_filtered_by_user_action_outcome_and_time(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let root = &people.root;
    // A refusal of alice's and one of root's, beside the fixture's successes.
    assert_eq!(
        server.post("/api/v1/users", &people.alice, json!({"login": "zed", "password": "zed-password"})).await.status,
        403
    );
    assert_eq!(
        server.post("/api/v1/users", root, json!({"login": "alice", "password": "alice-password"})).await.status,
        409
    );
    let all = audit_log(&server, root).await;
    let only = |pick: &dyn Fn(&Value) -> bool| -> Vec<Value> { all.iter().filter(|e| pick(e)).cloned().collect() };
    let get = |query: &'static str| {
        let server = &server;
        async move {
            let r = server.get(&format!("/api/v1/audit?limit=1000&{query}"), root).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
            r.body.as_array().expect("list").clone()
        }
    };

    let alices = get("user=alice").await;
    assert!(!alices.is_empty());
    assert_eq!(alices, only(&|e| e["actor"] == "alice"), "user=alice");
    let refused = get("outcome=error").await;
    assert_eq!(refused, only(&|e| e["outcome"] != "ok"), "outcome=error: every refusal");
    assert!(refused.iter().any(|e| e["outcome"] == "forbidden") && refused.iter().any(|e| e["outcome"] == "conflict"));
    assert_eq!(get("outcome=conflict").await, only(&|e| e["outcome"] == "conflict"));
    let members = get("action=member.").await;
    assert!(members.len() >= 3, "{members:#?}");
    assert_eq!(members, only(&|e| e["action"].as_str().is_some_and(|a| a.starts_with("member."))), "a family");
    assert_eq!(
        get("action=member.set&user=root&outcome=ok").await,
        only(&|e| e["action"] == "member.set" && e["actor"] == "root" && e["outcome"] == "ok")
    );
    assert_eq!(get("user=root&action=user.create&outcome=error").await.len(), 1, "combined");

    // Time: everything is from today; nothing is from before 2000 or after the year 9000.
    assert_eq!(get("since=2000-01-01").await, all);
    assert!(get("until=2000-01-01T00:00:00Z").await.is_empty());
    assert!(get("since=9000-01-01").await.is_empty());
    let newest = all[0]["at"].as_str().expect("time").to_owned();
    let from_newest = server.get(&format!("/api/v1/audit?since={}", newest.replace('+', "%2B")), root).await;
    assert!(
        from_newest.body.as_array().expect("list").iter().any(|e| e["id"] == all[0]["id"]),
        "since includes its instant"
    );

    // A namespace admin's filtered read stays in the namespace.
    let r = server.get("/api/v1/audit?namespace=red&action=member.set", &people.alice).await;
    assert_eq!(r.status, StatusCode::OK);
    let reds = r.body.as_array().expect("list");
    assert!(
        !reds.is_empty() && reds.iter().all(|e| e["namespace"] == "red" && e["action"] == "member.set"),
        "{reds:#?}"
    );

    // Filters that are not of their form say which one and how to write it.
    let r = server.get("/api/v1/audit?since=yesterday", root).await;
    assert_error(&r, 422, "invalid", "since=yesterday");
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| m.contains("since") && m.contains("2026-12-01")),
        "{:?}",
        r.body
    );
    assert_error(
        &server.get("/api/v1/audit?since=2026-12-02&until=2026-12-01", root).await,
        422,
        "invalid",
        "backwards",
    );
    assert_error(&server.get("/api/v1/audit?outcome=ok%27%20OR%201%3D1", root).await, 422, "invalid", "outcome");
    assert_eq!(audit_log(&server, root).await, all, "reading wrote nothing");
}

// ---------------------------------------------------------------------------
// Health, metrics, unknown routes
// ---------------------------------------------------------------------------

async fn health_metrics_and_unknown_routes(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    let (status, body) = text(&server, "/healthz").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "ok"));

    assert_eq!(metric(&server, "flvpc_logins_total{outcome=\"failed\"}").await, 0);
    for _ in 0..3 {
        assert_eq!(login_attempt(&server, "alice", "wrong-password").await.status, 401);
    }
    let (status, metrics) = text(&server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for series in [
        "flvpc_http_responses_total{class=\"2xx\"}",
        "flvpc_http_responses_total{class=\"4xx\"}",
        "flvpc_uptime_seconds",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert_eq!(metric(&server, "flvpc_logins_total{outcome=\"failed\"}").await, 3);
    assert_eq!(metric(&server, "flvpc_logins_total{outcome=\"ok\"}").await, 4, "the fixture's four sign-ins");
    assert!(metric(&server, "flvpc_http_responses_total{class=\"4xx\"}").await >= 3);

    for (method, path, status, code) in [
        (Method::GET, "/api/v1/nope", 404, "not_found"),
        (Method::POST, "/api/v1/nope", 404, "not_found"),
        (Method::GET, "/api/v2/namespaces", 404, "not_found"),
        (Method::GET, "/api/v1/namespaces/red/nope", 404, "not_found"),
        (Method::DELETE, "/api/v1/me", 405, "method_not_allowed"),
        (Method::PATCH, "/api/v1/users", 405, "method_not_allowed"),
        (Method::GET, "/api/v1/auth/login", 405, "method_not_allowed"),
        (Method::POST, "/api/v1/namespaces/red/members", 405, "method_not_allowed"),
    ] {
        let r = server.call(method.clone(), path, Some(&people.root), None).await;
        assert_error(&r, status, code, &format!("{method} {path}"));
    }
    assert_eq!(metric(&server, "flvpc_http_responses_total{class=\"5xx\"}").await, 0);
}

/// Checks `text` is a well-formed Prometheus text exposition (format 0.0.4): every sample line is
/// `name{labels} value` or `name value`, and belongs to a family announced before it by exactly one
/// HELP and one TYPE line. Returns each series (`name{labels}`) with its value.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    fn is_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    /// `k="v",k="v"` with `\\`, `\"` and `\n` escapes; false when anything else is there.
    fn labels_are_well_formed(mut labels: &str) -> bool {
        while !labels.is_empty() {
            let Some((key, rest)) = labels.split_once("=\"") else { return false };
            if !is_name(key) {
                return false;
            }
            let mut escaped = false;
            let Some(end) = rest.char_indices().find_map(|(i, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes.then_some(i)
            }) else {
                return false;
            };
            labels = &rest[end + 1..];
            if let Some(more) = labels.strip_prefix(',') {
                labels = more;
            } else if !labels.is_empty() {
                return false;
            }
        }
        true
    }
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut series = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline:\n{text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, words) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(is_name(name) && !words.trim().is_empty(), "bad HELP line: {line}");
            assert!(help.insert(name.to_owned()), "second HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without a type: {line}"));
            assert!(is_name(name) && ["counter", "gauge"].contains(&kind), "bad TYPE line: {line}");
            assert!(help.contains(name), "TYPE before HELP for {name}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "second TYPE for {name}");
        } else {
            assert!(!line.starts_with('#') && !line.trim().is_empty(), "stray line: {line:?}");
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without a value: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a number: {line}"));
            let name = match key.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    assert!(labels_are_well_formed(labels), "bad labels: {line}");
                    name
                }
                None => key,
            };
            assert!(is_name(name), "bad metric name: {line}");
            assert!(types.contains_key(name), "no HELP/TYPE before the sample: {line}");
            if types[name] == "counter" {
                assert!(name.ends_with("_total") && value >= 0.0, "counter: {line}");
            }
            assert!(series.insert(key.to_owned(), value).is_none(), "series twice: {line}");
        }
    }
    series
}

async fn metrics_exposition_parses(backend: Backend) {
    let server = start(backend).await;
    let people = standard_fixture(&server).await;
    assert_eq!(login_attempt(&server, "alice", "wrong-password").await.status, 401);
    let (status, anonymous) = text(&server, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let series = parse_exposition(&anonymous);
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        assert!(series.contains_key(&format!("flvpc_http_responses_total{{class=\"{class}\"}}")), "{anonymous}");
    }
    assert_eq!(series["flvpc_logins_total{outcome=\"ok\"}"], 4.0, "the fixture's four sign-ins");
    assert_eq!(series["flvpc_logins_total{outcome=\"failed\"}"], 1.0);
    assert_eq!(series["flvpc_logins_total{outcome=\"throttled\"}"], 0.0);
    for gauge in ["flvpc_uptime_seconds", "flvpc_usage_sampler_round_microseconds", "flvpc_machines_sampled"] {
        assert!(series.contains_key(gauge), "{gauge} missing:\n{anonymous}");
    }
    assert!(anonymous.contains("# TYPE flvpc_logins_total counter\n"), "{anonymous}");
    assert!(anonymous.contains("# TYPE flvpc_uptime_seconds gauge\n"), "{anonymous}");
    assert!(anonymous.contains("# HELP flvpc_logins_total Sign-in attempts by outcome.\n"), "{anonymous}");
    assert!(!anonymous.contains("flvpc_machine_"), "anonymous readers get aggregates only:\n{anonymous}");

    // The superadmin's view parses too. No machine runs here, so it holds the same series (the
    // per-machine families, empty, are left out; tests with machines check those).
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&people.root)
        .send()
        .await
        .expect("metrics as the superadmin");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let full = response.text().await.expect("text");
    let full_series = parse_exposition(&full);
    let names = |s: &BTreeMap<String, f64>| s.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&full_series), names(&series), "{full}");
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

async fn hostile_input_is_refused_without_500_and_creates_nothing(backend: Backend) {
    let server = start_with_throttle(backend, no_throttle()).await;
    let people = standard_fixture(&server).await;
    let (root, alice) = (&people.root, &people.alice);
    let key = ssh_keygen("ed25519", None, "alice@laptop");
    let users_before = server.get("/api/v1/users", root).await.body;
    let namespaces_before = server.get("/api/v1/namespaces", root).await.body;
    let members_before = server.get("/api/v1/namespaces/red/members", root).await.body;
    let root_id = server.state.store.check_password("root", ROOT_PASSWORD).await.expect("check").expect("root");
    let panel = server.state.store.create_session(root_id, TokenKind::Panel, 3_600_000).await.expect("panel session");
    let csrf = panel.csrf.clone().expect("csrf");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let mut failures = Vec::new();
    for h in hostile_strings() {
        let e = enc(&h);
        let shown: String = h.chars().take(24).collect();
        let mut calls: Vec<(String, Reply)> = Vec::new();
        let mut record = |what: &str, reply: Reply| calls.push((format!("{what} with {shown:?}"), reply));
        let long_enough = "long-enough-password";
        record("create user", server.post("/api/v1/users", root, json!({"login": h, "password": long_enough})).await);
        record("create namespace", server.post("/api/v1/namespaces", root, json!({"name": h})).await);
        record("add key name", server.post("/api/v1/keys", alice, json!({"name": h, "public_key": key})).await);
        record("add key line", server.post("/api/v1/keys", alice, json!({"name": "k", "public_key": h})).await);
        record("create token", server.post("/api/v1/tokens", alice, json!({"name": h})).await);
        record("set role", put(&server, "/api/v1/namespaces/red/members/dave", root, json!({"role": h})).await);
        record(
            "set member",
            put(&server, &format!("/api/v1/namespaces/red/members/{e}"), root, json!({"role": "user"})).await,
        );
        record(
            "set member ns",
            put(&server, &format!("/api/v1/namespaces/{e}/members/dave"), root, json!({"role": "user"})).await,
        );
        record("get namespace", server.get(&format!("/api/v1/namespaces/{e}"), root).await);
        record("get members", server.get(&format!("/api/v1/namespaces/{e}/members"), root).await);
        record("audit of", server.get(&format!("/api/v1/audit?namespace={e}"), root).await);
        record("delete user", delete(&server, &format!("/api/v1/users/{e}"), root).await);
        record("delete namespace", delete(&server, &format!("/api/v1/namespaces/{e}"), root).await);
        record("delete member", delete(&server, &format!("/api/v1/namespaces/red/members/{e}"), root).await);
        record("delete key", delete(&server, &format!("/api/v1/keys/{e}"), alice).await);
        record("delete token", delete(&server, &format!("/api/v1/tokens/{e}"), alice).await);
        record(
            "password of",
            put(&server, &format!("/api/v1/users/{e}/password"), root, json!({"password": long_enough})).await,
        );
        record("login", login_attempt(&server, &h, &h).await);
        record("login as root", login_attempt(&server, "root", &h).await);
        for (what, reply) in calls {
            let expected_login = what.starts_with("login") && reply.status != StatusCode::UNAUTHORIZED;
            let bad_shape = reply.body["error"]["code"].as_str().is_none();
            if !reply.status.is_client_error() || expected_login || bad_shape {
                failures.push(format!("{what}: {} {:.200}", reply.status, reply.body.to_string()));
            }
        }
        // The panel's forms get the same input.
        for (path, field) in
            [("/admin/users", "login"), ("/admin/namespaces", "name"), ("/namespaces/red/members", "login")]
        {
            let form = [("_csrf", csrf.as_str()), (field, h.as_str()), ("password", long_enough), ("role", "user")];
            let response = browser
                .post(format!("{}{path}", server.base))
                .header(reqwest::header::COOKIE, format!("flvpc_session={}", panel.secret))
                .form(&form)
                .send()
                .await
                .expect("request");
            // Refused on the form's own page: a 4xx, the refusal announced in the form, and what was
            // typed shown back only as escaped text.
            let status = response.status();
            let page = response.text().await.expect("page");
            let alert = page.contains(r#"role="alert""#);
            if !status.is_client_error() || !alert || page.contains("<script>alert(1)") {
                failures.push(format!("panel {path} with {shown:?}: {status}, refusal shown {alert}"));
            }
        }
    }
    // Raw path tricks that a client library would not produce by itself.
    for path in [
        "/api/v1/namespaces/%2e%2e%2f",
        "/api/v1/namespaces/..%2F..%2Fetc",
        "/api/v1/namespaces/red%2Fmembers",
        "/api/v1/keys/%00",
        "/api/v1/namespaces/%ZZ",
    ] {
        let r = server.get(path, root).await;
        if !r.status.is_client_error() || r.body["error"]["code"].as_str().is_none() {
            failures.push(format!("GET {path}: {} {:?}", r.status, r.body));
        }
    }
    assert!(failures.is_empty(), "hostile input was not refused cleanly:\n{}", failures.join("\n"));

    assert_eq!(server.get("/api/v1/users", root).await.body, users_before, "no user was created");
    assert_eq!(server.get("/api/v1/namespaces", root).await.body, namespaces_before, "no namespace was created");
    assert_eq!(server.get("/api/v1/namespaces/red/members", root).await.body, members_before, "no member changed");
    assert_eq!(server.get("/api/v1/keys", alice).await.body, json!([]), "no key was added");
    assert_eq!(server.get("/api/v1/tokens", alice).await.body, json!([]), "no token was made");
    assert_eq!(metric(&server, "flvpc_http_responses_total{class=\"5xx\"}").await, 0, "no 5xx at all");
    assert_eq!(server.get("/healthz", root).await.status, StatusCode::OK);
}

/// A refused attempt is audited whatever it contains: the log is where an
/// administrator looks for attacks, so hostile input must not slip past it.
async fn refused_hostile_attempts_are_audited(backend: Backend) {
    let server = start_with_throttle(backend, no_throttle()).await;
    let people = standard_fixture(&server).await;
    let hostile = ["' OR 1=1 --", "<script>alert(1)</script>", "a\nb", "ünïcødé-😀", "bob\0", "\0"];
    for h in hostile {
        let r =
            server.post("/api/v1/users", &people.alice, json!({"login": h, "password": "long-enough-password"})).await;
        assert_error(&r, 403, "forbidden", &format!("alice creates {h:?}"));
        assert_eq!(login_attempt(&server, h, "whatever-password").await.status, 401);
    }
    let log = audit_log(&server, &people.root).await;
    for h in hostile {
        // Every attempt is recorded, NUL or not (PostgreSQL refuses NUL in text, so the
        // store writes control characters as escapes: "a\nb" is kept as `a\nb`).
        let shown: String =
            h.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect();
        let entry = find_audit(&log, "user.create", &shown, "forbidden");
        assert_audit(entry, Some("alice"), None);
        let entry = find_audit(&log, "auth.login", &shown, "wrong_credentials");
        assert_audit(entry, None, None);
    }
}

/// The audit log's `outcome` is "`ok` or the error code" (wire::AuditOut), and the
/// code of a throttled sign-in is `too_many_attempts`.
async fn throttled_sign_ins_are_audited_with_their_error_code(backend: Backend) {
    let server = start_with_throttle(backend, quick_throttle()).await;
    let people = standard_fixture(&server).await;
    for _ in 0..3 {
        assert_eq!(login_attempt(&server, "bob", "wrong-password").await.status, 401);
    }
    let r = login_attempt(&server, "bob", &password_of("bob")).await;
    assert_error(&r, 429, "too_many_attempts", "locked");
    let log = audit_log(&server, &people.root).await;
    let newest_login = log.iter().find(|e| e["action"] == "auth.login").expect("a login record");
    assert_eq!(newest_login["target"], "bob");
    assert_eq!(newest_login["source"], "127.0.0.1");
    // Recorded under the code the client got, like every other refusal.
    assert_eq!(newest_login["outcome"], "too_many_attempts", "{newest_login}");
}

on_both_backends!(
    users_are_created_once_and_validated,
    deleting_a_user_removes_everything_at_once,
    the_superadmin_is_created_once_even_concurrently,
    namespaces_are_validated_and_scoped,
    memberships_roles_and_removal,
    real_ssh_keys_are_stored_intact,
    bad_ssh_keys_are_refused,
    key_names_are_unique_per_user,
    api_tokens_are_shown_once_and_revocable,
    sign_in_failures_look_the_same_and_logout_ends_the_token,
    failed_logins_are_throttled_per_login_and_per_address,
    passwords_change_and_other_sessions_end,
    audit_log_records_changes_and_refusals,
    audit_log_pages_and_namespace_scope,
    audit_log_is_filtered_by_user_action_outcome_and_time,
    health_metrics_and_unknown_routes,
    metrics_exposition_parses,
    hostile_input_is_refused_without_500_and_creates_nothing,
    refused_hostile_attempts_are_audited,
    throttled_sign_ins_are_audited_with_their_error_code,
);
