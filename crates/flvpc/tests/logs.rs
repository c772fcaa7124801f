//! `flvpc serve --log-format json`: one JSON line per HTTP request with its method, path (no
//! query), status, duration and request id, the id taken from `X-Request-Id` and echoed back.

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;
use support::{free_port, Server, BIN};

/// A GET with optional request id: (status line and headers, body).
fn get(port: u16, path: &str, request_id: Option<&str>) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let id = request_id.map(|id| format!("X-Request-Id: {id}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{id}Connection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    (head.to_ascii_lowercase(), body.to_owned())
}

/// The first log line (a JSON object) whose `request_id` is `id`, waiting up to 20 s.
fn line_with_id(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else { continue };
        seen.push(line.clone());
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        if json["request_id"] == id {
            return json;
        }
    }
    panic!("no log line with request_id {id} within 20 s; lines: {seen:#?}");
}

#[test]
fn json_logs_have_one_line_per_request_with_its_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--plain-http",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--ssh-listen", &format!("127.0.0.1:{}", free_port())])
        .env("FLVPC_DATA_DIR", dir.path())
        .env_remove("FLVPC_LOG")
        .env_remove("FLVPC_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flvpc serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "flvpc serve did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut seen = Vec::new();

    // The caller's id is echoed and logged; the query (which may carry a token) is not.
    let (head, _) = get(port, "/healthz?token=secret-in-query", Some("trace-abc-123"));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nx-request-id: trace-abc-123"), "{head}");
    let line = line_with_id(&lines, &mut seen, "trace-abc-123");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/healthz", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");

    // Without an id (or with one that is not short and printable) the server makes one.
    let (head, _) = get(port, "/api/v1/no-such-route", Some(&"x".repeat(100)));
    let made = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a generated id in the response")
        .trim()
        .to_owned();
    assert!(made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    let line = line_with_id(&lines, &mut seen, &made);
    assert_eq!(line["status"], 404, "{line}");
    assert_eq!(line["path"], "/api/v1/no-such-route", "{line}");
    assert!(seen.iter().all(|l| !l.contains("secret-in-query")), "the query string never reaches the log");
    drop(server);
}
