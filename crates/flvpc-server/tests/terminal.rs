//! The browser terminal's WebSocket, driven by a WebSocket client as a browser would (its cookie,
//! its Origin), against a real server, the real Docker engine and a machine's real sshd: a shell
//! that runs commands, a foreign Origin refused, the per-user cap, a stopped machine's reason,
//! and the audit records of it all.

mod common;

use common::docker::{act, keypair, put_spec, require_docker, unique, user, DockerCleanup};
use common::{panel_session, password_of, Backend};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the terminal WebSocket of `path` with the session `cookie` and `origin`.
async fn open(base: &str, path: &str, cookie: &str, origin: &str) -> Result<Socket, WsError> {
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("cookie", format!("flvpc_session={cookie}").parse().expect("cookie"));
    request.headers_mut().insert("origin", origin.parse().expect("origin"));
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// What the terminal sends until `want` appears in it (binary frames), or the close frame's
/// reason if the server closes first; gives up after `within`.
async fn read_until(socket: &mut Socket, want: &str, within: Duration) -> Result<String, String> {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains(want) {
                    return Ok(seen);
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame.map(|f| f.reason.to_string()).unwrap_or_default());
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => return Err(format!("error: {err}")),
            Ok(None) => return Err("closed without a close frame".into()),
            Err(_) => return Err(format!("no {want:?} within {within:?}; saw {seen:?}")),
        }
    }
}

/// Opens a terminal and runs `hostname` in it until the machine answers (its sshd may still be
/// starting right after the machine is reported running).
async fn shell(base: &str, path: &str, cookie: &str, origin: &str, host: &str) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut socket = open(base, path, cookie, origin).await.expect("handshake");
        socket.send(Message::Binary(b"hostname\n".to_vec().into())).await.expect("type");
        match read_until(&mut socket, &format!("{host}\r\n"), Duration::from_secs(15)).await {
            Ok(_) => return socket,
            Err(reason) => {
                assert!(Instant::now() < deadline, "no shell on {host}: {reason}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The audit records of browser terminals, newest first.
async fn terminal_records(server: &common::TestServer, root: &str) -> Vec<Value> {
    let r = server.get("/api/v1/audit?limit=200", root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body.as_array().expect("records").iter().filter(|e| e["action"] == "machine.terminal").cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_run_a_shell_refuse_foreign_origins_and_a_fifth_per_user() {
    require_docker();
    let ns = unique("tm");
    let _cleanup = DockerCleanup(vec![ns.clone()]);
    let (server, _data) = common::start_with_terminal(Backend::Sqlite).await;
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, json!({"name": ns})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = user(&server, &root, "bob", &ns, "user", &keypair("bob")).await;
    let spec = "machines:\n- count: 1\n  spec:\n    name: box%d\n    image: flvpc/debian:12\n    ignite: {cpus: 1, memory: 256MB, diskSize: 4GB}\n";
    assert_eq!(put_spec(&server, &root, &ns, spec).await.status(), StatusCode::OK);
    act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;

    let base = server.base.clone();
    let origin = base.clone();
    let path = format!("/namespaces/{ns}/machines/box0/terminal/ws");
    let cookie = panel_session(&server, "bob", &password_of("bob")).await;

    // Another site's page cannot open a terminal with bob's cookie.
    match open(&base, &path, &cookie, "http://evil.example").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign Origin must be refused 403, got {:?}", other.map(|_| "a WebSocket")),
    }
    // The superadmin is no member: a root shell is not theirs to open (the machine's sshd takes
    // only members' keys, and the terminal's key is no way around that).
    let root_cookie = panel_session(&server, "root", common::ROOT_PASSWORD).await;
    match open(&base, &path, &root_cookie, &origin).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("the superadmin must get 404, got {:?}", other.map(|_| "a WebSocket")),
    }
    // Without a session there is no terminal either (the panel sends strangers to sign in).
    match open(&base, &path, "not-a-session", &origin).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 303),
        other => panic!("no session must be refused, got {:?}", other.map(|_| "a WebSocket")),
    }

    // A root shell on the machine: commands run, a resize is taken.
    let mut first = shell(&base, &path, &cookie, &origin, "box0").await;
    first.send(Message::Text(r#"{"type":"resize","cols":132,"rows":43}"#.into())).await.expect("resize");
    first.send(Message::Binary(b"echo size=$(stty size) user=$(id -un)\n".to_vec().into())).await.expect("type");
    let seen = read_until(&mut first, "user=root", Duration::from_secs(15)).await.expect("output");
    assert!(seen.contains("size=43 132 user=root"), "{seen}");

    // Four terminals of one user at once; the fifth is refused with the reason.
    let mut open_ones = vec![first];
    for _ in 0..3 {
        open_ones.push(shell(&base, &path, &cookie, &origin, "box0").await);
    }
    let mut fifth = open(&base, &path, &cookie, &origin).await.expect("the handshake itself passes");
    let reason = read_until(&mut fifth, "never", Duration::from_secs(10)).await.expect_err("closed at once");
    assert!(reason.contains("4 terminals open"), "{reason}");

    // Closing one gives its place back.
    let mut closing = open_ones.pop().expect("a terminal");
    closing.close(None).await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let mut socket = open(&base, &path, &cookie, &origin).await.expect("handshake");
        socket.send(Message::Binary(b"hostname\n".to_vec().into())).await.expect("type");
        match read_until(&mut socket, "box0\r\n", Duration::from_secs(15)).await {
            Ok(_) => break socket,
            Err(reason) => assert!(Instant::now() < deadline, "no place after a close: {reason}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(again);
    for mut socket in open_ones {
        let _ = socket.close(None).await;
    }
    // Closed terminals leave no login behind on the machine: only this last one's is left.
    let mut last = shell(&base, &path, &cookie, &origin, "box0").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The typed line shows `…')-done`, the answer `logins=N-done`.
        let probe = b"echo logins=$(pgrep -fc 'sshd: root@pts')-done\n".to_vec();
        last.send(Message::Binary(probe.into())).await.expect("type");
        match read_until(&mut last, "logins=1-done", Duration::from_secs(3)).await {
            Ok(_) => break,
            Err(seen) => assert!(Instant::now() < deadline, "logins of closed terminals stay on the machine: {seen}"),
        }
    }
    last.close(None).await.expect("close");

    // The audit log has each session (who, machine, bytes each way) and the refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = terminal_records(&server, &root).await;
        let ok = records.iter().filter(|r| r["outcome"] == "ok").count();
        if ok >= 5 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ok: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "ok").collect();
    assert!(ok.len() >= 5, "five sessions ended: {records:?}");
    for record in &ok {
        assert_eq!(record["actor"], "bob");
        assert_eq!(record["target"], format!("{ns}/box0"));
        assert_eq!(record["namespace"], ns.as_str());
        let detail = record["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("up=") && !detail.starts_with("up=0B") && !detail.contains("down=0B"), "{detail}");
    }
    assert!(records.iter().any(|r| r["outcome"] == "too_many_terminals"), "the refusal: {records:?}");

    // A frame over 64 KiB ends the terminal (and is not passed on to the machine).
    let mut big = shell(&base, &path, &cookie, &origin, "box0").await;
    big.send(Message::Binary(vec![b'x'; 64 * 1024 + 1].into())).await.expect("send");
    let ended = read_until(&mut big, "never", Duration::from_secs(10)).await.expect_err("closed");
    assert!(!ended.starts_with("no \"never\""), "the terminal stays open after a 64 KiB + 1 frame: {ended}");

    // A stopped machine: the handshake passes and the close says why.
    act(&server, &bob, &format!("/api/v1/namespaces/{ns}/machines/box0/stop")).await;
    let mut stopped = open(&base, &path, &cookie, &origin).await.expect("handshake");
    let reason = read_until(&mut stopped, "never", Duration::from_secs(10)).await.expect_err("closed at once");
    assert!(reason.contains("not running"), "{reason}");
}
