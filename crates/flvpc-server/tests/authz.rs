//! The authorization matrix (issue 2, item 6): every route of the API, every
//! other HTTP route and every panel route, against five callers — anonymous,
//! the superadmin (root), a namespace admin (alice, admin of `red`), a namespace
//! user (bob, user of `red`) and a member of another namespace only (carol, admin
//! of `blue`) — each case on a fresh server, with the exact expected status.
//!
//! The list of API operations comes from the running server's
//! `/api/v1/openapi.json`, the panel's from `src/panel/mod.rs` and the other
//! routes from `src/lib.rs`: a route added without a row here fails the test.
//!
//! Speed: the standard fixture (argon2 hashes, real ssh-keygen keys) is built
//! once per test into a SQLite template; every case then runs on its own server
//! over a fresh copy of that file, so destructive calls never interfere.

mod common;

use common::{password_of, ssh_keygen, standard_fixture, Backend, ROOT_PASSWORD};
use flvpc_server::throttle::LoginThrottle;
use flvpc_server::{AppState, Config};
use flvpc_store::{Store, TokenKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Column, Connection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Root,
    Alice,
    Bob,
    Carol,
}

use Who::{Alice, Anonymous, Bob, Carol, Root};

const CALLERS: [Who; 5] = [Anonymous, Root, Alice, Bob, Carol];
const SIGNED_IN: [Who; 4] = [Root, Alice, Bob, Carol];

impl Who {
    fn index(self) -> usize {
        self as usize
    }

    /// The login this caller signs in with (anonymous tries one that does not exist).
    fn login(self) -> &'static str {
        match self {
            Anonymous => "nobody",
            Root => "root",
            Alice => "alice",
            Bob => "bob",
            Carol => "carol",
        }
    }

    fn password(self) -> String {
        match self {
            Root => ROOT_PASSWORD.to_owned(),
            other => password_of(other.login()),
        }
    }
}

// ---------------------------------------------------------------------------
// The template fixture and fresh servers over copies of it
// ---------------------------------------------------------------------------

/// The standard fixture, saved once as a SQLite file, plus the secrets in it.
struct Template {
    _dir: tempfile::TempDir,
    db: PathBuf,
    /// API login tokens (`None` for anonymous).
    bearer: [Option<String>; 5],
    /// Panel sessions: (cookie secret, CSRF token).
    panel: [Option<(String, String)>; 5],
    /// A valid public key that nobody has added yet.
    spare_key: String,
}

impl Template {
    fn bearer(&self, who: Who) -> Option<&str> {
        self.bearer[who.index()].as_deref()
    }

    fn session(&self, who: Who) -> Option<&(String, String)> {
        self.panel[who.index()].as_ref()
    }

    fn csrf(&self, who: Who) -> String {
        self.session(who).map(|(_, csrf)| csrf.clone()).unwrap_or_default()
    }
}

/// root; red and blue; alice admin of red, bob user of red, carol admin of blue; dave in none;
/// every signed-in caller has an API login token, a panel session, a key `k1` and a token `t1`.
async fn template() -> Arc<Template> {
    let server = common::start(Backend::Sqlite).await;
    let people = standard_fixture(&server).await;
    let bearer = [None, Some(people.root), Some(people.alice), Some(people.bob), Some(people.carol)];
    let mut panel: [Option<(String, String)>; 5] = std::array::from_fn(|_| None);
    for who in SIGNED_IN {
        let token = bearer[who.index()].as_deref().expect("signed-in callers have a token");
        let key = ssh_keygen("ed25519", None, &format!("{}@k1", who.login()));
        let r = server.post("/api/v1/keys", token, json!({"name": "k1", "public_key": key})).await;
        assert_eq!(r.status, StatusCode::CREATED, "fixture key of {who:?}: {:?}", r.body);
        let r = server.post("/api/v1/tokens", token, json!({"name": "t1"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "fixture token of {who:?}: {:?}", r.body);
        let id = server
            .state
            .store
            .check_password(who.login(), &who.password())
            .await
            .expect("check password")
            .expect("fixture user exists");
        let issued = server.state.store.create_session(id, TokenKind::Panel, 3_600_000).await.expect("panel session");
        let csrf = issued.csrf.expect("a panel session has a CSRF token");
        panel[who.index()] = Some((issued.secret, csrf));
    }
    let spare_key = ssh_keygen("ed25519", None, "spare@key");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("template.db");
    let mut conn = sqlx::SqliteConnection::connect(&server.db.url).await.expect("open fixture database");
    sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{}'", db.display())))
        .execute(&mut conn)
        .await
        .expect("copy fixture database");
    conn.close().await.expect("close");
    // A cluster for `red`: a saved spec, one machine n0, and an operation alice started.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("open template");
    for statement in [
        "INSERT INTO cluster_specs (namespace_id, spec, updated_at, updated_by) \
         SELECT id, 'machines:\n- count: 1\n  spec:\n    name: n%d\n', 0, 'alice' FROM namespaces WHERE name = 'red'",
        "INSERT INTO machines (namespace_id, name, image, backend, cpus, memory_mb, disk_gb, spec_hash, desired, observed, \
         created_at, updated_at) SELECT id, 'n0', 'flvpc/debian:12', 'docker', 1, 256, 4, 'fixture', 'running', \
         'not_created', 0, 0 FROM namespaces WHERE name = 'red'",
        "INSERT INTO operations (id, kind, namespace, machine, goal, targets, state, done, total, created_by, created_at) \
         VALUES ('op-fixture', 'cluster.create', 'red', NULL, 'apply', 'n0', 'succeeded', 1, 1, 'alice', 0)",
    ] {
        sqlx::query(statement).execute(&mut conn).await.expect("template cluster");
    }
    conn.close().await.expect("close");
    Arc::new(Template { _dir: dir, db, bearer, panel, spare_key })
}

/// A server of its own over a fresh copy of the template database.
struct Instance {
    base: String,
    url: String,
    _state: AppState,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn instance(template: &Template) -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flvpc.db");
    std::fs::copy(&template.db, &path).expect("copy template database");
    let url = format!("sqlite://{}", path.display());
    forget_instance_id(&url).await;
    let store = Store::open(&url).await.expect("open store");
    let config = Config { data_dir: dir.path().to_owned(), max_body_bytes: 64 * 1024, ..Config::default() };
    // Authorization is the subject here, so machines live in the recording fake engine;
    // tests/machines.rs drives the real Docker engine.
    let engine = flvpc_host::FakeEngine::new();
    engine.add_image("flvpc/debian:12");
    let state = AppState::with_parts(store, config, LoginThrottle::default(), Arc::new(engine)).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serving = state.clone();
    tokio::spawn(async move {
        let _ = flvpc_server::serve(listener, serving, async {
            let _ = rx.await;
        })
        .await;
    });
    Instance { base, url, _state: state, _dir: dir, shutdown: Some(tx) }
}

/// Makes a copy of the template its own server instance: the instance id (which
/// labels the Docker objects a server owns) must not be shared between servers.
async fn forget_instance_id(url: &str) {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open copied database");
    let has_settings: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'server_settings'")
            .fetch_one(&mut conn)
            .await
            .expect("look for server_settings");
    if has_settings > 0 {
        sqlx::query("DELETE FROM server_settings WHERE key = 'instance_id'")
            .execute(&mut conn)
            .await
            .expect("forget the template's instance id");
    }
    conn.close().await.expect("close");
}

/// Columns the reconciler writes in the background (observed state, operation
/// progress): a request's own effect is judged on everything else.
const RECONCILER_COLUMNS: &[(&str, &str)] = &[
    ("machines", "observed"),
    ("machines", "observed_at"),
    ("machines", "ip"),
    ("machines", "error"),
    ("operations", "state"),
    ("operations", "done"),
    ("operations", "error"),
    ("operations", "finished_at"),
];

/// Everything in the database, table by table, as sorted text rows. `last_used_at`
/// is left out (reading with a token records its use); `audit` only when asked.
async fn snapshot(url: &str, with_audit: bool) -> BTreeMap<String, Vec<String>> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open test database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for table in tables {
        if table == "schema_migrations" || (table == "audit" && !with_audit) {
            continue;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\"")))
            .fetch_all(&mut conn)
            .await
            .expect("read table");
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .filter(|c| !RECONCILER_COLUMNS.contains(&(table.as_str(), c.name())) && c.name() != "last_used_at")
                    .map(|c| format!("{}={}", c.name(), cell(row, c.ordinal())))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        out.insert(table, lines);
    }
    conn.close().await.expect("close");
    out
}

fn cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> String {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return format!("{v:?}");
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return format!("{v:?}");
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return format!("{v:?}");
    }
    "<undecodable>".to_owned()
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

enum Payload {
    Nothing,
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

struct Answer {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The kind of flash message the response sets, if any.
    fn flash(&self) -> Flash {
        let value = self.set_cookies.iter().find_map(|c| c.strip_prefix("flvpc_flash=")).map(|v| {
            let v = v.split(';').next().unwrap_or_default();
            v.chars().next()
        });
        match value {
            // A success with warnings is a success.
            Some(Some('o' | 'w')) => Flash::Ok,
            Some(Some('e')) => Flash::Error,
            _ => Flash::None,
        }
    }
}

async fn send(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    cookie: Option<String>,
    payload: Payload,
) -> Answer {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client");
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(cookie) = cookie {
        req = req.header(reqwest::header::COOKIE, cookie);
    }
    req = match payload {
        Payload::Nothing => req,
        Payload::Json(value) => req.json(&value),
        Payload::Form(fields) => req.form(&fields),
    };
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let location = header(reqwest::header::LOCATION);
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let set_cookies = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    // An event stream never ends: its status and headers are the answer.
    let body = if content_type.starts_with("text/event-stream") {
        String::new()
    } else {
        response.text().await.expect("body")
    };
    Answer { status, location, set_cookies, content_type, body }
}

/// Runs `cases` at most `limit` at a time; returns every failure message.
async fn run_bounded<F>(cases: Vec<F>, limit: usize) -> Vec<String>
where
    F: Future<Output = Vec<String>> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut set = tokio::task::JoinSet::new();
    for case in cases {
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        set.spawn(async move {
            let failures = case.await;
            drop(permit);
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = set.join_next().await {
        failures.extend(done.expect("a case panicked"));
    }
    failures.sort();
    failures
}

const PARALLEL: usize = 8;

/// Checks that `path` is `route` with its `{params}` filled in.
fn fills(route: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (a, b): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(r, p)| (r.starts_with('{') && r.ends_with('}') && !p.is_empty()) || r == p)
}

/// Routes registered with `.route("PATH", handlers)` in a router source file, with
/// the methods its handlers accept (`ANY` for `any(…)`).
fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let start = chunk.find('"').expect("route path literal") + 1;
        let rest = &chunk[start..];
        let end = rest.find('"').expect("end of route path literal");
        let path = rest[..end].to_owned();
        let handlers = &rest[end + 1..];
        let mut found = false;
        for (needle, method) in
            [("get(", "GET"), ("post(", "POST"), ("put(", "PUT"), ("delete(", "DELETE"), ("any(", "ANY")]
        {
            if handlers.contains(needle) {
                out.insert((method.to_owned(), path.clone()));
                found = true;
            }
        }
        assert!(found, "cannot tell the methods of route {path}: update routes_in_source");
    }
    out
}

// ---------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------

/// One expectation for an API operation: the request and the status per caller.
struct ApiRow {
    method: &'static str,
    /// The path template exactly as in the OpenAPI document.
    route: &'static str,
    /// What the row checks, for messages.
    what: &'static str,
    path: fn(Who) -> String,
    body: fn(Who, &Template) -> Option<Value>,
    /// Sends the caller's bearer token (not for sign-in).
    bearer: bool,
    /// Status for anonymous, root, alice, bob, carol.
    expect: [u16; 5],
    /// Error codes other than the usual 401 unauthenticated / 403 forbidden / 404 not_found.
    codes: &'static [(Who, &'static str)],
}

fn no_body(_: Who, _: &Template) -> Option<Value> {
    None
}

fn row(method: &'static str, route: &'static str, path: fn(Who) -> String, expect: [u16; 5]) -> ApiRow {
    ApiRow { method, route, what: "", path, body: no_body, bearer: true, expect, codes: &[] }
}

impl ApiRow {
    fn body(mut self, body: fn(Who, &Template) -> Option<Value>) -> Self {
        self.body = body;
        self
    }
    fn what(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }
    fn without_bearer(mut self) -> Self {
        self.bearer = false;
        self
    }
    fn codes(mut self, codes: &'static [(Who, &'static str)]) -> Self {
        self.codes = codes;
        self
    }
}

fn api_rows() -> Vec<ApiRow> {
    const ANY_USER: [u16; 5] = [401, 200, 200, 200, 200];
    const SUPERADMIN: [u16; 5] = [401, 200, 403, 403, 403];
    const MEMBERS: [u16; 5] = [401, 200, 200, 200, 404];
    const NS_ADMIN: [u16; 5] = [401, 200, 200, 403, 404];
    const NS_ADMIN_202: [u16; 5] = [401, 202, 202, 403, 404];
    const MEMBERS_202: [u16; 5] = [401, 202, 202, 202, 404];
    vec![
        row("POST", "/api/v1/auth/login", |_| "/api/v1/auth/login".into(), [401, 200, 200, 200, 200])
            .what("own credentials")
            .without_bearer()
            .body(|w, _| Some(json!({"login": w.login(), "password": w.password()})))
            .codes(&[(Anonymous, "wrong_credentials")]),
        row("POST", "/api/v1/auth/login", |_| "/api/v1/auth/login".into(), [401; 5])
            .what("wrong password")
            .without_bearer()
            .body(|w, _| Some(json!({"login": w.login(), "password": "not-the-password"})))
            .codes(&[
                (Anonymous, "wrong_credentials"),
                (Root, "wrong_credentials"),
                (Alice, "wrong_credentials"),
                (Bob, "wrong_credentials"),
                (Carol, "wrong_credentials"),
            ]),
        row("POST", "/api/v1/auth/logout", |_| "/api/v1/auth/logout".into(), [401, 204, 204, 204, 204]),
        row("GET", "/api/v1/me", |_| "/api/v1/me".into(), ANY_USER),
        row("GET", "/api/v1/users", |_| "/api/v1/users".into(), SUPERADMIN),
        row("POST", "/api/v1/users", |_| "/api/v1/users".into(), [401, 201, 403, 403, 403])
            .body(|_, _| Some(json!({"login": "erin", "password": "erin-password"}))),
        row("DELETE", "/api/v1/users/{login}", |_| "/api/v1/users/dave".into(), [401, 204, 403, 403, 403]),
        row(
            "PUT",
            "/api/v1/users/{login}/password",
            |w| format!("/api/v1/users/{}/password", if w == Anonymous { "bob" } else { w.login() }),
            [401, 204, 204, 204, 204],
        )
        .what("own password, with current_password")
        .body(|w, _| Some(json!({"current_password": w.password(), "password": "a-brand-new-password"}))),
        row(
            "PUT",
            "/api/v1/users/{login}/password",
            |_| "/api/v1/users/bob/password".into(),
            [401, 204, 403, 403, 403],
        )
        .what("bob's password, without current_password")
        .body(|_, _| Some(json!({"password": "a-brand-new-password"})))
        .codes(&[(Bob, "wrong_password")]),
        row("GET", "/api/v1/keys", |_| "/api/v1/keys".into(), ANY_USER),
        row("POST", "/api/v1/keys", |_| "/api/v1/keys".into(), [401, 201, 201, 201, 201])
            .body(|_, t| Some(json!({"name": "k2", "public_key": t.spare_key}))),
        row("DELETE", "/api/v1/keys/{name}", |_| "/api/v1/keys/k1".into(), [401, 204, 204, 204, 204]),
        row("GET", "/api/v1/tokens", |_| "/api/v1/tokens".into(), ANY_USER),
        row("POST", "/api/v1/tokens", |_| "/api/v1/tokens".into(), [401, 201, 201, 201, 201])
            .body(|_, _| Some(json!({"name": "t2"}))),
        row("DELETE", "/api/v1/tokens/{name}", |_| "/api/v1/tokens/t1".into(), [401, 204, 204, 204, 204]),
        row("GET", "/api/v1/namespaces", |_| "/api/v1/namespaces".into(), ANY_USER),
        row("POST", "/api/v1/namespaces", |_| "/api/v1/namespaces".into(), [401, 201, 403, 403, 403])
            .body(|_, _| Some(json!({"name": "green"}))),
        row("GET", "/api/v1/namespaces/{ns}", |_| "/api/v1/namespaces/red".into(), MEMBERS),
        row("DELETE", "/api/v1/namespaces/{ns}", |_| "/api/v1/namespaces/red".into(), [401, 204, 403, 403, 403]),
        row("GET", "/api/v1/namespaces/{ns}/members", |_| "/api/v1/namespaces/red/members".into(), MEMBERS),
        row(
            "PUT",
            "/api/v1/namespaces/{ns}/members/{login}",
            |_| "/api/v1/namespaces/red/members/dave".into(),
            [401, 201, 403, 403, 403],
        )
        .body(|_, _| Some(json!({"role": "user"}))),
        row(
            "DELETE",
            "/api/v1/namespaces/{ns}/members/{login}",
            |_| "/api/v1/namespaces/red/members/bob".into(),
            [401, 204, 403, 403, 403],
        ),
        row("GET", "/api/v1/audit", |_| "/api/v1/audit".into(), SUPERADMIN).what("whole log"),
        row("GET", "/api/v1/audit", |_| "/api/v1/audit?namespace=red".into(), [401, 200, 200, 403, 404])
            .what("?namespace=red"),
        row("GET", "/api/v1/namespaces/{ns}/cluster", |_| "/api/v1/namespaces/red/cluster".into(), MEMBERS),
        row("PUT", "/api/v1/namespaces/{ns}/cluster", |_| "/api/v1/namespaces/red/cluster".into(), NS_ADMIN)
            .body(|_, _| Some(json!({"machines": [{"count": 2, "spec": {"name": "n%d"}}]}))),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/cluster/create",
            |_| "/api/v1/namespaces/red/cluster/create".into(),
            NS_ADMIN_202,
        ),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/cluster/start",
            |_| "/api/v1/namespaces/red/cluster/start".into(),
            MEMBERS_202,
        ),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/cluster/stop",
            |_| "/api/v1/namespaces/red/cluster/stop".into(),
            MEMBERS_202,
        ),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/cluster/delete",
            |_| "/api/v1/namespaces/red/cluster/delete".into(),
            NS_ADMIN_202,
        ),
        row("GET", "/api/v1/namespaces/{ns}/machines", |_| "/api/v1/namespaces/red/machines".into(), MEMBERS),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/machines/{name}/start",
            |_| "/api/v1/namespaces/red/machines/n0/start".into(),
            MEMBERS_202,
        ),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/machines/{name}/stop",
            |_| "/api/v1/namespaces/red/machines/n0/stop".into(),
            MEMBERS_202,
        ),
        row(
            "POST",
            "/api/v1/namespaces/{ns}/machines/{name}/restart",
            |_| "/api/v1/namespaces/red/machines/n0/restart".into(),
            MEMBERS_202,
        ),
        // Operations are seen by who started them (alice) and the superadmin.
        row("GET", "/api/v1/operations/{id}", |_| "/api/v1/operations/op-fixture".into(), [401, 200, 200, 404, 404]),
        row("GET", "/api/v1/events", |_| "/api/v1/events".into(), ANY_USER).what("event stream (headers only)"),
        row("GET", "/api/v1/ssh-config", |_| "/api/v1/ssh-config".into(), ANY_USER),
        row(
            "PUT",
            "/api/v1/namespaces/{ns}/quota",
            |_| "/api/v1/namespaces/red/quota".into(),
            [401, 200, 403, 403, 403],
        )
        .body(|_, _| Some(json!({"machines": 5, "memory_mb": 4096}))),
        row("GET", "/api/v1/namespaces/{ns}/resources", |_| "/api/v1/namespaces/red/resources".into(), MEMBERS),
        row("GET", "/api/v1/capacity", |_| "/api/v1/capacity".into(), SUPERADMIN),
        row(
            "GET",
            "/api/v1/namespaces/{ns}/machines/{name}/metrics",
            |_| "/api/v1/namespaces/red/machines/n0/metrics".into(),
            MEMBERS,
        ),
        row(
            "GET",
            "/api/v1/namespaces/{ns}/machines/{name}/console",
            |_| "/api/v1/namespaces/red/machines/n0/console".into(),
            MEMBERS,
        ),
        // Hosts are the superadmin's; a running machine does not move, an engine that does not
        // answer is not added, a host that is not there is not found.
        row(
            "POST",
            "/api/v1/namespaces/{ns}/machines/{name}/move",
            |_| "/api/v1/namespaces/red/machines/n0/move".into(),
            [401, 409, 403, 403, 403],
        )
        .body(|_, _| Some(json!({"host": "local"})))
        .codes(&[(Root, "conflict")]),
        row("GET", "/api/v1/hosts", |_| "/api/v1/hosts".into(), SUPERADMIN),
        row("POST", "/api/v1/hosts", |_| "/api/v1/hosts".into(), [401, 503, 403, 403, 403])
            .body(|_, _| {
                Some(json!({"name": "far", "engine": "unix:///nonexistent/docker.sock", "address": "192.0.2.7"}))
            })
            .codes(&[(Root, "engine_unavailable")]),
        row("PUT", "/api/v1/hosts/{host}/state", |_| "/api/v1/hosts/far/state".into(), [401, 404, 403, 403, 403])
            .body(|_, _| Some(json!({"state": "draining"}))),
        row("DELETE", "/api/v1/hosts/{host}", |_| "/api/v1/hosts/far".into(), [401, 404, 403, 403, 403]),
    ]
}

/// Every (METHOD, path) of the OpenAPI document, and whether it declares bearer security.
async fn openapi_operations(base: &str) -> BTreeMap<(String, String), bool> {
    let answer = send(base, "GET", "/api/v1/openapi.json", None, None, Payload::Nothing).await;
    assert_eq!(answer.status, 200, "openapi.json: {}", answer.body);
    let doc = answer.json();
    let paths = doc["paths"].as_object().expect("openapi paths");
    let mut out = BTreeMap::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let method = method.to_ascii_uppercase();
            if ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"].contains(&method.as_str()) {
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                out.insert((method, path.clone()), secured);
            }
        }
    }
    assert!(out.len() >= 20, "suspiciously few operations in openapi.json: {out:?}");
    out
}

fn default_code(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("unauthenticated"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        _ => None,
    }
}

/// Every route the server has — each operation of openapi.json, each route of the
/// panel (src/panel/mod.rs) and each other route (src/lib.rs) — has rows in the
/// tables of this file, and every row names a route that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_an_expectation() {
    let server = common::start(Backend::Sqlite).await;
    let operations = openapi_operations(&server.base).await;
    let mut problems = Vec::new();
    let api: BTreeSet<(String, String)> =
        api_rows().iter().map(|r| (r.method.to_owned(), r.route.to_owned())).collect();
    for op in operations.keys().filter(|op| !api.contains(*op)) {
        problems.push(format!("API operation {} {} has no row in api_rows()", op.0, op.1));
    }
    for op in api.iter().filter(|op| !operations.contains_key(*op)) {
        problems.push(format!("api_rows() has a row for {} {}, which openapi.json does not list", op.0, op.1));
    }
    let panel_source = routes_in_source(include_str!("../src/panel/mod.rs"));
    let panel: BTreeSet<(String, String)> =
        panel_pages().iter().chain(panel_forms().iter()).map(|r| (r.method.to_owned(), r.route.to_owned())).collect();
    for op in panel_source.difference(&panel) {
        problems.push(format!("panel route {} {} has no row in panel_pages() / panel_forms()", op.0, op.1));
    }
    for op in panel.difference(&panel_source) {
        problems.push(format!("the panel tables have a row for {} {}, not in src/panel/mod.rs", op.0, op.1));
    }
    let other_source = routes_in_source(include_str!("../src/lib.rs"));
    let other: BTreeSet<(String, String)> =
        other_routes().iter().map(|(m, r, _, _)| (m.to_string(), r.to_string())).collect();
    for op in other_source.symmetric_difference(&other) {
        problems.push(format!("route {} {} is in src/lib.rs or other_routes() but not both", op.0, op.1));
    }
    assert!(problems.is_empty(), "routes and expectations differ:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_operation_against_every_caller() {
    let template = template().await;
    let rows = Arc::new(api_rows());
    let probe = instance(&template).await;
    let operations = openapi_operations(&probe.base).await;
    drop(probe);

    // Every row names a real operation (that every operation has a row is
    // every_route_has_an_expectation's job).
    for r in rows.iter() {
        let Some(&secured) = operations.get(&(r.method.to_owned(), r.route.to_owned())) else {
            panic!("row for {} {}, which openapi.json does not list", r.method, r.route);
        };
        assert_eq!(
            secured, r.bearer,
            "{} {}: bearer security in openapi.json and in the table differ",
            r.method, r.route
        );
        if secured {
            assert_eq!(r.expect[0], 401, "{} {}: anonymous must get 401 on a bearer route", r.method, r.route);
        }
        for who in CALLERS {
            let path = (r.path)(who);
            assert!(fills(r.route, &path), "{} {} as {who:?}: {path} does not fill the route", r.method, r.route);
        }
    }

    let mut cases = Vec::new();
    for index in 0..rows.len() {
        for who in CALLERS {
            let (rows, template) = (rows.clone(), template.clone());
            cases.push(async move { api_case(&rows[index], who, &template).await });
        }
    }
    let total = cases.len();
    let failures = run_bounded(cases, PARALLEL).await;
    assert!(failures.is_empty(), "{} of {total} API cases failed:\n{}", failures.len(), failures.join("\n"));
}

async fn api_case(r: &ApiRow, who: Who, template: &Template) -> Vec<String> {
    let server = instance(template).await;
    let before = snapshot(&server.url, false).await;
    let path = (r.path)(who);
    let bearer = if r.bearer { template.bearer(who) } else { None };
    let payload = match (r.body)(who, template) {
        Some(body) => Payload::Json(body),
        None => Payload::Nothing,
    };
    let answer = send(&server.base, r.method, &path, bearer, None, payload).await;
    let after = snapshot(&server.url, false).await;
    let label = format!("{} {path} [{}] as {who:?}", r.method, r.what);
    let mut failures = Vec::new();
    let want = r.expect[who.index()];
    if answer.status != want {
        failures.push(format!("{label}: status {} but expected {want}; body {}", answer.status, answer.body));
        return failures;
    }
    if want >= 400 {
        let body = answer.json();
        let code = r.codes.iter().find(|(w, _)| *w == who).map(|(_, c)| *c).or_else(|| default_code(want));
        let shape_ok = body["error"]["code"].is_string()
            && body["error"]["message"].as_str().is_some_and(|m| !m.is_empty())
            && body.as_object().is_some_and(|o| o.len() == 1);
        if !shape_ok {
            failures
                .push(format!("{label}: error body is not {{\"error\":{{\"code\",\"message\"}}}}: {}", answer.body));
        }
        if let Some(code) = code {
            if body["error"]["code"] != code {
                failures.push(format!("{label}: error code {} but expected {code}", body["error"]["code"]));
            }
        }
    }
    let changes = r.method != "GET" && want < 300;
    if changes && before == after {
        failures.push(format!("{label}: succeeded but changed nothing in the database"));
    }
    if !changes && before != after {
        failures.push(format!("{label}: changed the database: {}", diff(&before, &after)));
    }
    failures
}

fn diff(before: &BTreeMap<String, Vec<String>>, after: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = Vec::new();
    for (table, rows) in after {
        let old = before.get(table).cloned().unwrap_or_default();
        for line in rows.iter().filter(|l| !old.contains(l)) {
            out.push(format!("+{table}: {line}"));
        }
        for line in old.iter().filter(|l| !rows.contains(l)) {
            out.push(format!("-{table}: {line}"));
        }
    }
    out.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bearer_tokens_get_401_on_every_secured_operation() {
    let template = template().await;
    let server = instance(&template).await;
    let operations = openapi_operations(&server.base).await;
    let rows = api_rows();
    // No token, a well-formed but unknown secret, garbage, an over-long one, an empty one.
    let fake = format!("flvpc_s_{}", "0".repeat(64));
    let long = "x".repeat(5000);
    let tokens = [None, Some(fake.as_str()), Some("garbage"), Some(long.as_str()), Some("")];
    let mut failures = Vec::new();
    let before = snapshot(&server.url, true).await;
    for ((method, route), secured) in &operations {
        if !secured {
            continue;
        }
        // The row's request when there is one; else the route with every parameter `red`.
        let row = rows.iter().find(|r| r.method == method && r.route == route);
        let path = match row {
            Some(r) => (r.path)(Root),
            None => {
                route.split('/').map(|seg| if seg.starts_with('{') { "red" } else { seg }).collect::<Vec<_>>().join("/")
            }
        };
        for token in tokens {
            let body = row.and_then(|r| (r.body)(Root, &template)).unwrap_or_else(|| json!({}));
            let payload = if method == "GET" { Payload::Nothing } else { Payload::Json(body) };
            let answer = send(&server.base, method, &path, token, None, payload).await;
            let code = answer.json()["error"]["code"].clone();
            if answer.status != 401 || code != "unauthenticated" {
                failures
                    .push(format!("{method} {path} with token {token:.20?}: {} {:.200}", answer.status, answer.body));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let after = snapshot(&server.url, true).await;
    assert_eq!(before, after, "requests with invalid tokens changed the database");
}

// ---------------------------------------------------------------------------
// Other HTTP routes: health, metrics, the OpenAPI document, the API's 404
// ---------------------------------------------------------------------------

/// The routes of src/lib.rs: (METHOD, route, request path, status for every caller).
fn other_routes() -> [(&'static str, &'static str, &'static str, u16); 4] {
    [
        ("GET", "/healthz", "/healthz", 200),
        ("GET", "/metrics", "/metrics", 200),
        ("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", 200),
        ("ANY", "/api/{*rest}", "/api/v1/nope", 404),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi_are_open_to_everyone() {
    let template = template().await;
    let mut cases = Vec::new();
    for (method, _, path, want) in other_routes() {
        for who in CALLERS {
            let template = template.clone();
            let method = if method == "ANY" { "GET" } else { method };
            cases.push(async move {
                let server = instance(&template).await;
                let answer = send(&server.base, method, path, template.bearer(who), None, Payload::Nothing).await;
                let mut failures = Vec::new();
                if answer.status != want {
                    failures.push(format!("{method} {path} as {who:?}: {} but expected {want}", answer.status));
                }
                let ok_body = match path {
                    "/healthz" => answer.body == "ok\n",
                    "/metrics" => answer.body.contains("flvpc_http_responses_total"),
                    "/api/v1/openapi.json" => answer.json()["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
                    _ => answer.json()["error"]["code"] == "not_found",
                };
                if !ok_body {
                    failures.push(format!("{method} {path} as {who:?}: unexpected body {:.200}", answer.body));
                }
                failures
            });
        }
    }
    let failures = run_bounded(cases, PARALLEL).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The panel
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flash {
    None,
    Ok,
    Error,
}

/// What a panel request should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// This status, no redirect.
    Status(u16),
    /// 303 See Other to this location, carrying this kind of flash message.
    Redirect(&'static str, Flash),
}

const TO_LOGIN: Want = Want::Redirect("/login", Flash::None);

struct PanelRow {
    method: &'static str,
    /// The route exactly as in src/panel/mod.rs.
    route: &'static str,
    path: &'static str,
    form: fn(Who, &Template) -> Vec<(&'static str, String)>,
    expect: [Want; 5],
}

fn no_form(_: Who, _: &Template) -> Vec<(&'static str, String)> {
    Vec::new()
}

fn page(route: &'static str, path: &'static str, expect: [Want; 5]) -> PanelRow {
    PanelRow { method: "GET", route, path, form: no_form, expect }
}

fn form(
    route: &'static str,
    path: &'static str,
    fields: fn(Who, &Template) -> Vec<(&'static str, String)>,
    expect: [Want; 5],
) -> PanelRow {
    PanelRow { method: "POST", route, path, form: fields, expect }
}

fn panel_pages() -> Vec<PanelRow> {
    use Want::{Redirect, Status};
    const OK: Want = Status(200);
    const ADMIN_ONLY: [Want; 5] = [TO_LOGIN, OK, Status(403), Status(403), Status(403)];
    vec![
        page("/", "/", [TO_LOGIN, OK, OK, OK, OK]),
        page(
            "/login",
            "/login",
            [
                OK,
                Redirect("/", Flash::None),
                Redirect("/", Flash::None),
                Redirect("/", Flash::None),
                Redirect("/", Flash::None),
            ],
        ),
        page("/account", "/account", [TO_LOGIN, OK, OK, OK, OK]),
        page("/admin/users", "/admin/users", ADMIN_ONLY),
        page("/admin/namespaces", "/admin/namespaces", ADMIN_ONLY),
        page("/admin/audit", "/admin/audit", ADMIN_ONLY),
        page("/admin/audit/export", "/admin/audit/export?format=csv&outcome=error", ADMIN_ONLY),
        page("/admin/capacity", "/admin/capacity", ADMIN_ONLY),
        page("/namespaces/{ns}", "/namespaces/red", [TO_LOGIN, OK, OK, OK, Status(404)]),
        page("/namespaces/{ns}/machines/{name}", "/namespaces/red/machines/n0", [TO_LOGIN, OK, OK, OK, Status(404)]),
        // A machine that does not exist is the same 404 for everyone (a member learns nothing more).
        page(
            "/namespaces/{ns}/machines/{name}",
            "/namespaces/red/machines/nope",
            [TO_LOGIN, Status(404), Status(404), Status(404), Status(404)],
        ),
        page(
            "/namespaces/{ns}/machines/{name}/charts",
            "/namespaces/red/machines/n0/charts",
            [TO_LOGIN, OK, OK, OK, Status(404)],
        ),
        page(
            "/namespaces/{ns}/machines/{name}/console",
            "/namespaces/red/machines/n0/console",
            [TO_LOGIN, OK, OK, OK, Status(404)],
        ),
        page(
            "/namespaces/{ns}/machines/{name}/terminal",
            "/namespaces/red/machines/n0/terminal",
            // A root shell is for members only: the superadmin, in no namespace, gets the 404 too.
            [TO_LOGIN, Status(404), OK, OK, Status(404)],
        ),
        page(
            "/namespaces/{ns}/machines/{name}/terminal",
            "/namespaces/red/machines/nope/terminal",
            [TO_LOGIN, Status(404), Status(404), Status(404), Status(404)],
        ),
        // A plain GET is no WebSocket handshake: members are told so (400), strangers get the 404
        // first. The handshake itself (Origin, caps) is tested in tests/terminal.rs.
        page(
            "/namespaces/{ns}/machines/{name}/terminal/ws",
            "/namespaces/red/machines/n0/terminal/ws",
            [TO_LOGIN, Status(404), Status(400), Status(400), Status(404)],
        ),
        page("/static/app.css", "/static/app.css", [OK; 5]),
        page("/static/app.js", "/static/app.js", [OK; 5]),
        page("/static/terminal.js", "/static/terminal.js", [OK; 5]),
        page("/static/xterm.js", "/static/xterm.js", [OK; 5]),
        page("/static/xterm.css", "/static/xterm.css", [OK; 5]),
        page("/static/addon-fit.js", "/static/addon-fit.js", [OK; 5]),
    ]
}

/// Panel forms, as a browser with a valid session and CSRF token sends them.
/// Refusals of the role are the form's page again with the refusal next to the form and the
/// refusal's status: 403, or 404 for someone outside the namespace (and no change).
fn panel_forms() -> Vec<PanelRow> {
    use Flash::Ok;
    use Want::{Redirect, Status};
    const FORBIDDEN: Want = Status(403);
    const NOT_FOUND: Want = Status(404);
    let signed_in = |to: &'static str| Redirect(to, Flash::None);
    let all_ok = |to: &'static str| [TO_LOGIN, Redirect(to, Ok), Redirect(to, Ok), Redirect(to, Ok), Redirect(to, Ok)];
    // Superadmin only; `outsider` is what Carol, in no namespace, is told.
    let admin_ok = |to: &'static str, outsider: Want| [TO_LOGIN, Redirect(to, Ok), FORBIDDEN, FORBIDDEN, outsider];
    let ns_admin_ok = |to: &'static str| [TO_LOGIN, Redirect(to, Ok), Redirect(to, Ok), FORBIDDEN, NOT_FOUND];
    let members_ok = |to: &'static str| [TO_LOGIN, Redirect(to, Ok), Redirect(to, Ok), Redirect(to, Ok), NOT_FOUND];
    vec![
        form(
            "/login",
            "/login",
            |w, _| vec![("login", w.login().to_owned()), ("password", w.password())],
            [Status(401), signed_in("/"), signed_in("/"), signed_in("/"), signed_in("/")],
        ),
        form(
            "/logout",
            "/logout",
            no_form,
            [TO_LOGIN, signed_in("/login"), signed_in("/login"), signed_in("/login"), signed_in("/login")],
        ),
        form(
            "/account/keys",
            "/account/keys",
            |_, t| vec![("name", "k2".into()), ("public_key", t.spare_key.clone())],
            all_ok("/account#keys"),
        ),
        form("/account/keys/{name}/delete", "/account/keys/k1/delete", no_form, all_ok("/account#keys")),
        // A new token's secret is shown on the page that answers the form, once: 200, not a redirect.
        form(
            "/account/tokens",
            "/account/tokens",
            |_, _| vec![("name", "t2".into())],
            [TO_LOGIN, Status(200), Status(200), Status(200), Status(200)],
        ),
        form("/account/tokens/{name}/delete", "/account/tokens/t1/delete", no_form, all_ok("/account#tokens")),
        form(
            "/account/password",
            "/account/password",
            |w, _| vec![("current_password", w.password()), ("password", "a-brand-new-password".into())],
            all_ok("/account#password"),
        ),
        form(
            "/admin/users",
            "/admin/users",
            |_, _| vec![("login", "erin".into()), ("password", "erin-password".into())],
            admin_ok("/admin/users", FORBIDDEN),
        ),
        form("/admin/users/{login}/delete", "/admin/users/dave/delete", no_form, admin_ok("/admin/users", FORBIDDEN)),
        form(
            "/admin/users/{login}/password",
            "/admin/users/bob/password",
            |_, _| vec![("password", "a-brand-new-password".into())],
            admin_ok("/admin/users", FORBIDDEN),
        ),
        form(
            "/admin/namespaces",
            "/admin/namespaces",
            |_, _| vec![("name", "green".into())],
            admin_ok("/namespaces/green", FORBIDDEN),
        ),
        // The namespace's name typed to confirm, as the form asks.
        form(
            "/namespaces/{ns}/delete",
            "/namespaces/red/delete",
            |_, _| vec![("confirm", "red".into())],
            admin_ok("/admin/namespaces", NOT_FOUND),
        ),
        form(
            "/namespaces/{ns}/members",
            "/namespaces/red/members",
            |_, _| vec![("login", "dave".into()), ("role", "user".into())],
            admin_ok("/namespaces/red", NOT_FOUND),
        ),
        form(
            "/namespaces/{ns}/members/{login}/delete",
            "/namespaces/red/members/bob/delete",
            no_form,
            admin_ok("/namespaces/red", NOT_FOUND),
        ),
        form(
            "/namespaces/{ns}/cluster",
            "/namespaces/red/cluster",
            |_, _| vec![("spec", "machines:\n- count: 2\n  spec:\n    name: n%d\n".into())],
            ns_admin_ok("/namespaces/red#spec"),
        ),
        form(
            "/namespaces/{ns}/cluster/form",
            "/namespaces/red/cluster/form",
            |_, _| {
                [
                    ("count", "2"),
                    ("name", "n%d"),
                    ("image", "flvpc/debian:12"),
                    ("cpus", "1"),
                    ("memory_mb", "256"),
                    ("disk_gb", "4"),
                    ("ssh_port", "0"),
                ]
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect()
            },
            ns_admin_ok("/namespaces/red#spec"),
        ),
        form(
            "/namespaces/{ns}/quota",
            "/namespaces/red/quota",
            |_, _| vec![("machines", "5".into()), ("memory_mb", "4096".into()), ("cpus", "".into())],
            admin_ok("/namespaces/red#resources", NOT_FOUND),
        ),
        form(
            "/namespaces/{ns}/cluster/preview",
            "/namespaces/red/cluster/preview",
            |_, _| vec![("spec", "machines:\n- count: 1\n  spec:\n    name: n%d\n".into())],
            [TO_LOGIN, Status(200), Status(200), FORBIDDEN, NOT_FOUND],
        ),
        form(
            "/namespaces/{ns}/machines",
            "/namespaces/red/machines",
            |_, _| vec![("action", "start".into()), ("machine", "n0".into())],
            members_ok("/namespaces/red#machines"),
        ),
        form(
            "/namespaces/{ns}/cluster/{action}",
            "/namespaces/red/cluster/start",
            no_form,
            members_ok("/namespaces/red#machines"),
        ),
        form(
            "/namespaces/{ns}/machines/{name}/{action}",
            "/namespaces/red/machines/n0/restart",
            no_form,
            members_ok("/namespaces/red#machines"),
        ),
        // Sent from the machine's own page: answered there.
        form(
            "/namespaces/{ns}/machines/{name}/{action}",
            "/namespaces/red/machines/n0/stop",
            |_, _| vec![("back", "machine".into())],
            members_ok("/namespaces/red/machines/n0"),
        ),
    ]
}

const LOGIN_CSRF: &str = "0123456789abcdef0123456789abcdef";

/// How the CSRF token is sent with a panel form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csrf {
    /// The session's own token (for /login: the value of the login CSRF cookie).
    Valid,
    /// No `_csrf` field.
    Missing,
    /// An empty `_csrf` field.
    Empty,
    /// Another session's token (for /login: a value other than the cookie's).
    Foreign,
}

/// Sends one panel request as `who`, with the session cookie of `who`.
async fn panel_request(server: &Instance, template: &Template, r: &PanelRow, who: Who, csrf: Csrf) -> Answer {
    let session = template.session(who).map(|(secret, _)| format!("flvpc_session={secret}"));
    if r.method == "GET" {
        return send(&server.base, "GET", r.path, None, session, Payload::Nothing).await;
    }
    let mut fields = (r.form)(who, template);
    let is_login = r.route == "/login";
    let own = if is_login { LOGIN_CSRF.to_owned() } else { template.csrf(who) };
    let foreign = if is_login {
        "fedcba9876543210fedcba9876543210".to_owned()
    } else {
        template.csrf(if who == Root { Alice } else { Root })
    };
    match csrf {
        Csrf::Valid => fields.push(("_csrf", own)),
        Csrf::Missing => {}
        Csrf::Empty => fields.push(("_csrf", String::new())),
        Csrf::Foreign => fields.push(("_csrf", foreign)),
    }
    let cookie = if is_login {
        Some(match session {
            Some(s) => format!("{s}; flvpc_login_csrf={LOGIN_CSRF}"),
            None => format!("flvpc_login_csrf={LOGIN_CSRF}"),
        })
    } else {
        session
    };
    send(&server.base, "POST", r.path, None, cookie, Payload::Form(fields)).await
}

fn check_want(label: &str, answer: &Answer, want: Want) -> Vec<String> {
    let mut failures = Vec::new();
    match want {
        Want::Status(status) => {
            if answer.status != status || answer.location.is_some() {
                failures.push(format!(
                    "{label}: {} (location {:?}) but expected {status}; body {:.200}",
                    answer.status, answer.location, answer.body
                ));
            } else if status == 200 && !answer.content_type.starts_with("text/") {
                failures.push(format!("{label}: 200 with content type {:?}", answer.content_type));
            }
        }
        Want::Redirect(to, flash) => {
            if answer.status != 303 || answer.location.as_deref() != Some(to) || answer.flash() != flash {
                failures.push(format!(
                    "{label}: {} to {:?} with flash {:?}, but expected 303 to {to:?} with flash {flash:?}; {:.200}",
                    answer.status,
                    answer.location,
                    answer.flash(),
                    answer.body
                ));
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_page_against_every_caller() {
    let template = template().await;
    let pages = Arc::new(panel_pages());
    let forms = panel_forms();
    for r in pages.iter().chain(forms.iter()) {
        assert!(fills(r.route, r.path), "{} does not fill {}", r.path, r.route);
    }

    let mut cases = Vec::new();
    for index in 0..pages.len() {
        for who in CALLERS {
            let (pages, template) = (pages.clone(), template.clone());
            cases.push(async move {
                let r = &pages[index];
                let server = instance(&template).await;
                let before = snapshot(&server.url, false).await;
                let answer = panel_request(&server, &template, r, who, Csrf::Valid).await;
                let mut failures = check_want(&format!("GET {} as {who:?}", r.path), &answer, r.expect[who.index()]);
                if before != snapshot(&server.url, false).await {
                    failures.push(format!("GET {} as {who:?} changed the database", r.path));
                }
                failures
            });
        }
    }
    let total = cases.len();
    let failures = run_bounded(cases, PARALLEL).await;
    assert!(failures.is_empty(), "{} of {total} panel page cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_form_against_every_caller() {
    let template = template().await;
    let forms = Arc::new(panel_forms());
    let mut cases = Vec::new();
    for index in 0..forms.len() {
        for who in CALLERS {
            let (forms, template) = (forms.clone(), template.clone());
            cases.push(async move {
                let r = &forms[index];
                let server = instance(&template).await;
                let before = snapshot(&server.url, false).await;
                let answer = panel_request(&server, &template, r, who, Csrf::Valid).await;
                let after = snapshot(&server.url, false).await;
                let want = r.expect[who.index()];
                let label = format!("POST {} as {who:?}", r.path);
                let mut failures = check_want(&label, &answer, want);
                // A preview is a POST (it carries a whole spec) that must change nothing.
                let read_only = r.route == "/namespaces/{ns}/cluster/preview";
                let changes = who != Anonymous
                    && !read_only
                    && match want {
                        Want::Status(s) => s < 300,
                        Want::Redirect(_, flash) => flash != Flash::Error,
                    };
                if changes && before == after {
                    failures.push(format!("{label}: succeeded but changed nothing"));
                }
                if !changes && before != after {
                    failures.push(format!("{label}: was refused but changed the database: {}", diff(&before, &after)));
                }
                failures
            });
        }
    }
    let total = cases.len();
    let failures = run_bounded(cases, PARALLEL).await;
    assert!(failures.is_empty(), "{} of {total} panel form cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_form_without_a_valid_csrf_token_is_403_and_changes_nothing() {
    let template = template().await;
    let forms = Arc::new(panel_forms());
    let mut cases = Vec::new();
    for index in 0..forms.len() {
        // Anonymous has no session to forge for; only /login is open to it.
        let callers: &[Who] = if forms[index].route == "/login" { &CALLERS } else { &SIGNED_IN };
        for &who in callers {
            for csrf in [Csrf::Missing, Csrf::Empty, Csrf::Foreign] {
                let (forms, template) = (forms.clone(), template.clone());
                cases.push(async move {
                    let r = &forms[index];
                    let server = instance(&template).await;
                    let before = snapshot(&server.url, true).await;
                    let answer = panel_request(&server, &template, r, who, csrf).await;
                    let after = snapshot(&server.url, true).await;
                    let label = format!("POST {} as {who:?} with {csrf:?} CSRF token", r.path);
                    let mut failures = check_want(&label, &answer, Want::Status(403));
                    if before != after {
                        failures.push(format!("{label}: changed the database: {}", diff(&before, &after)));
                    }
                    failures
                });
            }
        }
    }
    let total = cases.len();
    let failures = run_bounded(cases, PARALLEL).await;
    assert!(failures.is_empty(), "{} of {total} CSRF cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_authenticated_api_changes_need_the_csrf_header() {
    let template = template().await;
    let server = instance(&template).await;
    let (secret, csrf) = template.session(Root).cloned().expect("root's panel session");
    let cookie = || Some(format!("flvpc_session={secret}"));
    let body = || Payload::Json(json!({"name": "green"}));

    // Reading with the cookie is fine.
    let me = send(&server.base, "GET", "/api/v1/me", None, cookie(), Payload::Nothing).await;
    assert_eq!((me.status, me.json()["login"].clone()), (200, json!("root")), "{}", me.body);

    // A change without the header, or with another session's token, is refused and changes nothing.
    let before = snapshot(&server.url, true).await;
    let refused = send(&server.base, "POST", "/api/v1/namespaces", None, cookie(), body()).await;
    assert_eq!((refused.status, refused.json()["error"]["code"].clone()), (403, json!("csrf")), "{}", refused.body);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client");
    let foreign = client
        .post(format!("{}/api/v1/namespaces", server.base))
        .header(reqwest::header::COOKIE, format!("flvpc_session={secret}"))
        .header("x-csrf-token", template.csrf(Alice))
        .json(&json!({"name": "green"}))
        .send()
        .await
        .expect("request");
    assert_eq!(foreign.status().as_u16(), 403);
    assert_eq!(before, snapshot(&server.url, true).await, "refused cookie calls changed the database");

    // An API login token put in the cookie has no CSRF token: no change through it either.
    let login_token = template.bearer(Root).expect("root's token");
    let no_csrf = client
        .post(format!("{}/api/v1/namespaces", server.base))
        .header(reqwest::header::COOKIE, format!("flvpc_session={login_token}"))
        .header("x-csrf-token", "")
        .json(&json!({"name": "green"}))
        .send()
        .await
        .expect("request");
    assert_eq!(no_csrf.status().as_u16(), 403);

    // With the session's own token in the header it works.
    let accepted = client
        .post(format!("{}/api/v1/namespaces", server.base))
        .header(reqwest::header::COOKIE, format!("flvpc_session={secret}"))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "green"}))
        .send()
        .await
        .expect("request");
    assert_eq!(accepted.status().as_u16(), 201);
}
