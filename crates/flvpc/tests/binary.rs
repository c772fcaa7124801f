//! Black-box tests of the real `flvpc` binary: `admin init`, `serve` on a
//! loopback port, the client commands, and clean shutdown on SIGTERM.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, listens_within, output, Server, BIN};

fn flvpc(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    output(Command::new(BIN).args(args).env("FLVPC_DATA_DIR", data).env("XDG_CONFIG_HOME", data.join("config")), stdin)
}

fn start_server(data: &Path, port: u16) -> Server {
    let server = Server(
        Command::new(BIN)
            // Its own SSH gateway port too, so that servers of tests running side by side never collide.
            .args(["serve", "--plain-http", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ssh-listen", &format!("127.0.0.1:{}", free_port())])
            .env("FLVPC_DATA_DIR", data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(listens_within(port, 30), "flvpc serve did not listen on {port} within 30 s");
    server
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn admin_init_serve_and_client_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();

    // The single superadmin: created once, refused the second time with one clear line.
    let out = flvpc(data, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("flvpc.db").exists(), "SQLite database in the data dir");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.join("flvpc.db")).expect("db").permissions());
    assert_eq!(mode & 0o777, 0o600, "the database holds password hashes: readable by its owner only");
    let out = flvpc(data, &["admin", "init", "--login", "other", "--password-stdin"], Some("other-password\n"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("a superadmin already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    let out = flvpc(data, &["admin", "init", "--login", "Bad Login", "--password-stdin"], Some("x\n"));
    assert!(!out.status.success());

    let port = free_port();
    let mut server = start_server(data, port);
    let url = format!("http://127.0.0.1:{port}");

    // Health and the panel's sign-in page from the real binary.
    let health = http::blocking_get(&format!("{url}/healthz"));
    assert_eq!(health, (200, "ok\n".to_owned()));
    let (status, login_page) = http::blocking_get(&format!("{url}/login"));
    assert_eq!(status, 200);
    assert!(login_page.contains("Sign in"), "{login_page}");

    // Client commands: sign in, make a namespace, look at it.
    let out =
        flvpc(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flvpc(data, &["ns", "create", "team1"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flvpc(data, &["ns", "list"], None);
    assert!(stdout(&out).contains("\"team1\""), "{}", stdout(&out));
    let out = flvpc(data, &["ns", "create", "Team_1"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("name: must start with a lowercase letter (HTTP 422)"), "{}", stderr(&out));
    let out = flvpc(data, &["me"], None);
    assert!(stdout(&out).contains("\"superadmin\": true"), "{}", stdout(&out));
    let out =
        flvpc(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("wrong-password\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wrong login or password"), "{}", stderr(&out));

    // SIGTERM stops the server cleanly.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_a_busy_port_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("FLVPC_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")), "{}", stderr(&out));
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = flvpc(
        dir.path(),
        &["--database-url", "mssql://x", "admin", "init", "--login", "a", "--password-stdin"],
        Some("p\n"),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unsupported database URL"), "{}", stderr(&out));
}

/// A MariaDB/MySQL URL that cannot work (nothing at the port, a wrong password, a database that
/// does not exist) stops `serve` before anything listens, with what to fix and no password.
#[test]
fn a_wrong_mysql_url_names_what_to_fix_before_anything_listens() {
    let admin = std::env::var("FLVPC_TEST_MYSQL").expect(
        "FLVPC_TEST_MYSQL is not set: run `bash scripts/dev.sh test`, or set \
         FLVPC_TEST_MYSQL=mysql://USER:PASSWORD@127.0.0.1/DB",
    );
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a database");
    let (scheme_user, server) = base.rsplit_once('@').expect("admin URL names a user");
    let userinfo = scheme_user.strip_prefix("mysql://").expect("FLVPC_TEST_MYSQL starts with mysql://");
    let user = userinfo.split_once(':').map(|(user, _)| user).unwrap_or(userinfo);
    // Nothing listens on a port just freed.
    let closed = free_port();
    let cases = [
        (format!("mysql://{user}:hunter2-wrong@127.0.0.1:{closed}/flvpc"), "check the host and port"),
        (format!("mysql://{user}:hunter2-wrong@{server}/flvpc_test"), "check the user and password"),
        (format!("{base}/flvpc_test_missing_database"), "create the database first"),
    ];
    for (url, hint) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let out = output(
            Command::new(BIN)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--ssh-listen", &format!("127.0.0.1:{}", free_port())])
                .env("FLVPC_DATA_DIR", dir.path())
                .env("FLVPC_DATABASE_URL", &url),
            None,
        );
        assert!(!out.status.success(), "{url}");
        let said = stderr(&out);
        assert!(said.contains("cannot open database") && said.contains(hint), "{url}: {said}");
        assert!(!said.contains("hunter2"), "the password is never shown: {said}");
        // The line serve logs once it listens.
        assert!(!said.contains("panel and API on") && !stdout(&out).contains("panel and API on"), "{said}");
    }
}

#[test]
fn a_data_dir_owned_by_someone_else_is_refused_before_anything_listens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    // nobody's, as a data dir copied or unpacked by another user would be.
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).expect("chown (the tests run as root)");
    let port = free_port();
    let out = flvpc(&data, &["serve", "--listen", &format!("127.0.0.1:{port}")], None);
    assert!(!out.status.success(), "serve started on a data dir it does not own");
    let said = stderr(&out);
    assert!(said.contains("is owned by uid 65534") && said.contains("chown -R"), "{said}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens");
}

#[test]
fn progress_into_a_pipe_is_plain_lines_without_escape_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let out = flvpc(data, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let port = free_port();
    let _server = start_server(data, port);
    let url = format!("http://127.0.0.1:{port}");
    let out =
        flvpc(data, &["login", "--server", &url, "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flvpc(data, &["ns", "create", "team1"], None);
    assert!(out.status.success(), "{}", stderr(&out));

    // Real operations followed to their end (an empty namespace needs no Docker), stdout and
    // stderr both pipes, as in CI logs and `… 2>&1 | tee log`.
    for (action, kind) in [("stop", "cluster.stop"), ("start", "cluster.start"), ("delete", "cluster.delete")] {
        let out = flvpc(data, &["cluster", action, "team1"], None);
        assert!(out.status.success(), "cluster {action}: {}", stderr(&out));
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(!bytes.contains(&0x1b), "cluster {action}: ESC in {stream}: {:?}", String::from_utf8_lossy(bytes));
            assert!(!bytes.contains(&b'\r'), "cluster {action}: CR in {stream}: {:?}", String::from_utf8_lossy(bytes));
        }
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with('[') && last.ends_with(&format!("] {kind} 0/0 succeeded")), "{err}");
        assert!(err.lines().all(|l| l.starts_with('[') && l.contains(kind)), "one plain line per step: {err}");
    }
}

#[test]
fn image_build_into_a_pipe_is_plain_lines_without_escape_codes() {
    // The image is there (scripts/dev.sh builds it before the tests, with its output in the CI log),
    // so this is the path every later `flvpc image build` takes; it needs the Docker engine.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = flvpc(dir.path(), &["image", "build", "debian-12"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!bytes.contains(&0x1b), "ESC in {stream}: {:?}", String::from_utf8_lossy(bytes));
        assert!(!bytes.contains(&b'\r'), "CR in {stream}: {:?}", String::from_utf8_lossy(bytes));
    }
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.starts_with('[') && l.ends_with("] Done flvpc/debian:12 is already present")),
        "{err}"
    );
    assert!(stdout(&out).starts_with("flvpc/debian:12 ready"), "{}", stdout(&out));
}

/// A tiny blocking HTTP GET over a raw socket (keeps reqwest's async client out of a sync test).
mod http {
    use std::io::{Read, Write};

    pub fn blocking_get(url: &str) -> (u16, String) {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
        let mut stream = std::net::TcpStream::connect(host).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }
}
