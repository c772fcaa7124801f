//! Test fixture: a real flvpc server on a loopback port, in this process, over
//! SQLite (a temp file), PostgreSQL (a fresh database on the server named by
//! FLVPC_TEST_POSTGRES) or MariaDB/MySQL (a fresh database on the server named by
//! FLVPC_TEST_MYSQL), with a known set of people.
#![allow(dead_code)]

pub mod docker;
pub mod ssh;

use flvpc_server::throttle::{Limits, LoginThrottle};
use flvpc_server::{AppState, Config};
use flvpc_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

/// Runs each listed async test function on every database backend (the name stayed from when
/// there were two): SQLite, PostgreSQL and MariaDB/MySQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Postgres).await } )*
        }
        mod mysql {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::common::Backend::Mysql).await } )*
        }
    };
}

/// A database made for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The admin URL of the PostgreSQL server used by tests. Required: the test
/// command (`scripts/dev.sh test`) starts PostgreSQL and sets it.
pub fn postgres_admin_url() -> String {
    std::env::var("FLVPC_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "FLVPC_TEST_POSTGRES is not set: PostgreSQL tests need a server. \
             Run `bash scripts/dev.sh test`, which installs and starts one, or set \
             FLVPC_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1/postgres"
        )
    })
}

/// The admin URL of the MariaDB/MySQL server used by tests: a user that may create databases
/// named `flvpc_test*`. Required: the test command (`scripts/dev.sh test`) starts MariaDB and sets it.
pub fn mysql_admin_url() -> String {
    std::env::var("FLVPC_TEST_MYSQL").unwrap_or_else(|_| {
        panic!(
            "FLVPC_TEST_MYSQL is not set: MariaDB/MySQL tests need a server. \
             Run `bash scripts/dev.sh test`, which installs and starts one, or set \
             FLVPC_TEST_MYSQL=mysql://USER:PASSWORD@127.0.0.1/DB for a user that may create databases named flvpc_test*"
        )
    })
}

/// A fresh, empty database.
pub async fn fresh_db(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("flvpc.db").display());
            TestDb { url, _dir: Some(dir) }
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let admin = postgres_admin_url();
            let name = format!("flvpc_test_{}", hex::encode(rand::random::<[u8; 6]>()));
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL server");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
            TestDb { url: format!("{base}/{name}"), _dir: None }
        }
        Backend::Mysql => {
            use sqlx::Connection;
            let admin = mysql_admin_url();
            let name = format!("flvpc_test_{}", hex::encode(rand::random::<[u8; 6]>()));
            let mut conn = sqlx::MySqlConnection::connect(&admin).await.expect("connect to the test MySQL server");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
            TestDb { url: format!("{base}/{name}"), _dir: None }
        }
    }
}

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub base: String,
    /// A client that reaches `base` (over TLS: trusting exactly the server's certificate).
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a server on 127.0.0.1:0 over a fresh database.
pub async fn start(backend: Backend) -> TestServer {
    start_with_throttle(backend, LoginThrottle::default()).await
}

/// A block of 100 host ports of its own for one test server: servers in one test process do
/// not see each other's allocations, and the kernel's ephemeral range (32768+) is avoided.
pub fn own_port_range() -> flvpc_store::PortRange {
    // A counter, not a random pick: two servers of one test process must never share a block
    // (a random pick collided once in 120). The process id spreads different test binaries.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let block = u16::try_from((std::process::id().wrapping_mul(7).wrapping_add(n)) % 120).unwrap_or(0);
    let first = 20000 + block * 100;
    flvpc_store::PortRange { first, last: first + 99 }
}

/// Starts a server with its own settings and engine.
pub async fn start_with(
    backend: Backend,
    config: Config,
    engine: std::sync::Arc<dyn flvpc_host::Engine>,
) -> TestServer {
    let db = fresh_db(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    let state = AppState::with_parts(store, config, LoginThrottle::default(), engine).await.expect("state");
    serve_state(state, db).await
}

async fn serve_state(state: AppState, db: TestDb) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    serve_on(listener.into(), base, reqwest::Client::new(), state, db)
}

/// Serves `state` on `listener` (plain or TLS: the same router either way) until the server is dropped.
fn serve_on(
    listener: flvpc_server::Listener,
    base: String,
    client: reqwest::Client,
    state: AppState,
    db: TestDb,
) -> TestServer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serving = state.clone();
    tokio::spawn(async move {
        let _ = flvpc_server::serve(listener, serving, async {
            let _ = rx.await;
        })
        .await;
    });
    TestServer { base, client, state, db, shutdown: Some(tx) }
}

/// Starts a server on the real Docker engine with its own settings and login throttling.
pub async fn start_configured(backend: Backend, config: Config, throttle: LoginThrottle) -> TestServer {
    let db = fresh_db(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    let config = Config { port_range: own_port_range(), ..config };
    let state = AppState::with_throttle(store, config, throttle).await.expect("state");
    serve_state(state, db).await
}

/// Starts a server on the real Docker engine whose browser terminal has its own key, made in the
/// returned data dir (which must outlive the server).
pub async fn start_with_terminal(backend: Backend) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let key = flvpc_server::terminal::TerminalKey::load_or_create(dir.path()).expect("terminal key");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        max_body_bytes: 64 * 1024,
        terminal_key: Some(key),
        ..Config::default()
    };
    (start_configured(backend, config, LoginThrottle::default()).await, dir)
}

/// [`start_with_terminal`] served over HTTPS, as `flvpc serve` does by default: the self-signed
/// certificate made in the data dir, `Config::tls` on, and `base` an https URL whose client trusts
/// exactly that certificate.
pub async fn start_with_terminal_tls(backend: Backend) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let key = flvpc_server::terminal::TerminalKey::load_or_create(dir.path()).expect("terminal key");
    let (identity, _) =
        flvpc_server::tls::load_or_create_self_signed(dir.path(), None, &[]).expect("self-signed certificate");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        max_body_bytes: 64 * 1024,
        terminal_key: Some(key),
        tls: true,
        port_range: own_port_range(),
        ..Config::default()
    };
    let db = fresh_db(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    let state = AppState::with_throttle(store, config, LoginThrottle::default()).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    // 127.0.0.1 is one of the certificate's names.
    let base = format!("https://{}", listener.local_addr().expect("addr"));
    let pem = std::fs::read(dir.path().join("tls/cert.pem")).expect("the certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
        .build()
        .expect("client");
    let server = serve_on(flvpc_server::Listener::Tls(listener, identity.config), base, client, state, db);
    (server, dir)
}

/// The secret of a new panel session of `login` (the `flvpc_session` cookie's value).
pub async fn panel_session(server: &TestServer, login: &str, password: &str) -> String {
    let id = server.state.store.check_password(login, password).await.expect("check password").expect("user exists");
    let issued =
        server.state.store.create_session(id, flvpc_store::TokenKind::Panel, 3_600_000).await.expect("panel session");
    issued.secret
}

/// Starts a server with custom login throttling.
pub async fn start_with_throttle(backend: Backend, throttle: LoginThrottle) -> TestServer {
    let db = fresh_db(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    let dir = std::env::temp_dir();
    let config = Config { data_dir: dir, max_body_bytes: 64 * 1024, port_range: own_port_range(), ..Config::default() };
    let state = AppState::with_throttle(store, config, throttle).await.expect("state");
    serve_state(state, db).await
}

/// Small limits so throttling tests run fast.
pub fn quick_throttle() -> LoginThrottle {
    LoginThrottle::new(
        Limits { free_failures: 3, base_delay: Duration::from_secs(30) },
        Limits { free_failures: 6, base_delay: Duration::from_secs(30) },
    )
}

pub const ROOT_PASSWORD: &str = "root-password-1";

/// A response: status and parsed JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl TestServer {
    /// Sends one request with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Signs in through the API; panics unless it works.
    pub async fn login(&self, login: &str, password: &str) -> String {
        let reply = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(json!({"login": login, "password": password})))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login {login}: {:?}", reply.body);
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates the superadmin `root` and returns its token.
    pub async fn init_root(&self) -> String {
        let login = flvpc_model::Login::parse("root").expect("login");
        self.state.store.init_superadmin(&login, ROOT_PASSWORD).await.expect("init superadmin");
        self.login("root", ROOT_PASSWORD).await
    }
}

/// The people of the standard fixture.
pub struct People {
    pub root: String,
    /// admin of `red`
    pub alice: String,
    /// user of `red`
    pub bob: String,
    /// admin of `blue`, no role in `red`
    pub carol: String,
}

/// Password of every fixture user but root: `<login>-password`.
pub fn password_of(login: &str) -> String {
    format!("{login}-password")
}

/// root; namespaces red and blue; alice admin of red, bob user of red, carol admin of blue; dave in none.
pub async fn standard_fixture(server: &TestServer) -> People {
    let root = server.init_root().await;
    for ns in ["red", "blue"] {
        let r = server.post("/api/v1/namespaces", &root, json!({"name": ns})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    for login in ["alice", "bob", "carol", "dave"] {
        let r = server.post("/api/v1/users", &root, json!({"login": login, "password": password_of(login)})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    for (ns, login, role) in [("red", "alice", "admin"), ("red", "bob", "user"), ("blue", "carol", "admin")] {
        let r = server
            .call(
                Method::PUT,
                &format!("/api/v1/namespaces/{ns}/members/{login}"),
                Some(&root),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    People {
        root,
        alice: server.login("alice", &password_of("alice")).await,
        bob: server.login("bob", &password_of("bob")).await,
        carol: server.login("carol", &password_of("carol")).await,
    }
}

/// A fresh OpenSSH public key made by the real ssh-keygen.
pub fn ssh_keygen(kind: &str, bits: Option<u32>, comment: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key");
    let mut cmd = std::process::Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", comment, "-t", kind, "-f"]).arg(&path);
    if let Some(bits) = bits {
        cmd.args(["-b", &bits.to_string()]);
    }
    let status = cmd.status().expect("ssh-keygen must be installed (openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    std::fs::read_to_string(path.with_extension("pub")).expect("read public key").trim().to_owned()
}
