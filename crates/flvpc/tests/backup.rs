//! `flvpc backup` and `flvpc restore` with the real binary: a backup taken while the server
//! serves a loop of API writes is consistent, restores into an empty data dir with every row,
//! and the restored server serves it; refusals change nothing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod support;
use support::{free_port, listens_within, output, Server, BIN};

/// Where a server's database is: SQLite in its data dir, or a PostgreSQL or MySQL URL.
fn flvpc_on(data: &Path, database: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("FLVPC_DATA_DIR", data).env_remove("FLVPC_DATABASE_URL");
    if let Some(url) = database {
        command.env("FLVPC_DATABASE_URL", url);
    }
    output(&mut command, stdin)
}

fn flvpc(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    flvpc_on(data, None, args, stdin)
}

fn start_server(data: &Path, database: Option<&str>, port: u16) -> Server {
    let mut command = Command::new(BIN);
    command.env_remove("FLVPC_DATABASE_URL");
    if let Some(url) = database {
        command.env("FLVPC_DATABASE_URL", url);
    }
    let server = Server(
        command
            .args(["serve", "--plain-http", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ssh-listen", &format!("127.0.0.1:{}", free_port())])
            .env("FLVPC_DATA_DIR", data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(listens_within(port, 30), "flvpc serve did not listen on {port} within 30 s");
    server
}

/// One HTTP/1.1 request over a raw socket: (status, body).
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn login(port: u16) -> String {
    let (status, body) =
        request(port, "POST", "/api/v1/auth/login", None, Some(r#"{"login":"admin","password":"admin-password"}"#));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("login JSON");
    json["token"].as_str().expect("token").to_owned()
}

fn namespaces(port: u16, token: &str) -> Vec<String> {
    let (status, body) = request(port, "GET", "/api/v1/namespaces", Some(token), None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("namespaces JSON");
    let mut names: Vec<String> =
        json.as_array().expect("array").iter().map(|n| n["name"].as_str().expect("name").to_owned()).collect();
    names.sort();
    names
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Starts a server on `database` (SQLite in `data` when None) with a superadmin, backs it up into
/// `file` while a loop of API writes (a namespace and its audit record each) runs, and returns how
/// many namespaces were made.
fn backup_under_writes(data: &Path, database: Option<&str>, file: &Path) -> usize {
    let out =
        flvpc_on(data, database, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", text(&out));
    let port = free_port();
    let server = start_server(data, database, port);
    let token = login(port);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, token) = (stop.clone(), token.clone());
        std::thread::spawn(move || {
            let mut made = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && made < 2000 {
                let body = format!(r#"{{"name":"ns-{made:04}"}}"#);
                let (status, answer) = request(port, "POST", "/api/v1/namespaces", Some(&token), Some(&body));
                assert_eq!(status, 201, "{answer}");
                made += 1;
            }
            made
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = flvpc_on(data, database, &["backup", file.to_str().expect("utf-8")], None);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = writer.join().expect("writer");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&format!("backup written to {}", file.display())), "{said}");
    assert!(said.contains(" rows, ") && said.contains(" bytes"), "{said}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(file).expect("stat").permissions().mode() & 0o777, 0o600);
    let out = flvpc_on(data, database, &["backup", file.to_str().expect("utf-8")], None);
    assert!(!out.status.success() && text(&out).contains("already exists"), "{}", text(&out));
    drop(server);
    made
}

/// Starts a server on a restored database and checks it holds a whole prefix of the writes (the
/// snapshot is not torn) with their audit records; returns how many.
fn check_restored(data: &Path, database: Option<&str>, made: usize) -> usize {
    let port = free_port();
    let server = start_server(data, database, port);
    let token = login(port);
    let names = namespaces(port, &token);
    assert!(!names.is_empty() && names.len() <= made, "{} of {made}", names.len());
    let expected: Vec<String> = (0..names.len()).map(|i| format!("ns-{i:04}")).collect();
    assert_eq!(names, expected, "the snapshot holds the first writes and nothing torn");
    let (status, audit) = request(port, "GET", "/api/v1/audit?action=namespace.create&limit=1000", Some(&token), None);
    assert_eq!(status, 200, "{audit}");
    assert!(audit.contains("ns-0000"), "the audit rows came along: {audit}");
    drop(server);
    eprintln!("the snapshot holds {} of the {made} namespaces made around it", names.len());
    names.len()
}

#[test]
fn a_backup_taken_under_writes_restores_into_an_empty_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flvpc.backup");
    let made = backup_under_writes(&dir.path().join("data"), None, &file);

    let restored = dir.path().join("restored");
    let out = flvpc(&restored, &["restore", file.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("restored from"), "{}", text(&out));
    check_restored(&restored, None, made);

    // A restore into a data dir that holds a database is refused and changes nothing.
    let before = std::fs::read(restored.join("flvpc.db")).expect("read db");
    let out = flvpc(&restored, &["restore", file.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the data dir already holds flvpc.db") && text(&out).contains("restore into an empty one"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(restored.join("flvpc.db")).expect("read db"), before);

    // A file that is not a backup is refused with a clear line.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "hello").expect("write");
    let empty = dir.path().join("empty");
    let out = flvpc(&empty, &["restore", notes.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not an flvpc backup"), "{}", text(&out));
    assert!(!empty.join("flvpc.db").exists());
}

/// A fresh, empty PostgreSQL database on the test server (`FLVPC_TEST_POSTGRES`), made with psql.
fn fresh_postgres() -> String {
    let admin = std::env::var("FLVPC_TEST_POSTGRES").expect(
        "FLVPC_TEST_POSTGRES is not set: run `bash scripts/dev.sh test`, or set \
         FLVPC_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1/postgres",
    );
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    let name = format!("flvpc_test_backup_{}_{nanos}", std::process::id());
    let out = Command::new("psql")
        .args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "{}", text(&out));
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
    format!("{base}/{name}")
}

#[test]
fn a_postgres_backup_under_writes_goes_to_sqlite_and_back() {
    server_database_to_sqlite_and_back(fresh_postgres);
}

/// A backup of a server database (made by `fresh`) taken under a loop of API writes restores into
/// SQLite; a backup of that restores into a new server database, and not into the first one,
/// which holds flvpc's rows.
fn server_database_to_sqlite_and_back(fresh: fn() -> String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = fresh();
    let file = dir.path().join("from-server.backup");
    let made = backup_under_writes(&dir.path().join("data"), Some(&source), &file);

    // Server database -> SQLite.
    let sqlite = dir.path().join("sqlite");
    let out = flvpc(&sqlite, &["restore", file.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out));
    let kept = check_restored(&sqlite, None, made);

    // SQLite -> a new server database, and a refusal of the one that has flvpc's rows.
    let again = dir.path().join("from-sqlite.backup");
    let out = flvpc(&sqlite, &["backup", again.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out));
    let target = fresh();
    let data = dir.path().join("server-data");
    let out = flvpc_on(&data, Some(&target), &["restore", again.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(check_restored(&data, Some(&target), made), kept);
    let out = flvpc_on(&data, Some(&source), &["restore", again.to_str().expect("utf-8")], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds flvpc data"), "{}", text(&out));
}

/// A fresh, empty MariaDB/MySQL database on the test server (`FLVPC_TEST_MYSQL`, a user that may
/// create databases named flvpc_test*), made with the mysql client.
fn fresh_mysql() -> String {
    let admin = std::env::var("FLVPC_TEST_MYSQL").expect(
        "FLVPC_TEST_MYSQL is not set: run `bash scripts/dev.sh test`, or set \
         FLVPC_TEST_MYSQL=mysql://USER:PASSWORD@127.0.0.1/DB for a user that may create databases named flvpc_test*",
    );
    let rest = admin.strip_prefix("mysql://").expect("FLVPC_TEST_MYSQL starts with mysql://");
    let (userinfo, location) = rest.rsplit_once('@').expect("FLVPC_TEST_MYSQL names a user");
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let server = location.split('/').next().unwrap_or_default();
    let (host, port) = server.split_once(':').unwrap_or((server, "3306"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    let name = format!("flvpc_test_backup_{}_{nanos}", std::process::id());
    let out = Command::new("mysql")
        .args(["--protocol=tcp", "-h", host, "-P", port, "-u", user, "-e", &format!("CREATE DATABASE {name}")])
        .env("MYSQL_PWD", password)
        .output()
        .expect("run mysql");
    assert!(out.status.success(), "{}", text(&out));
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("admin URL has a database");
    format!("{base}/{name}")
}

#[test]
fn a_mysql_backup_under_writes_goes_to_sqlite_and_back() {
    server_database_to_sqlite_and_back(fresh_mysql);
}
