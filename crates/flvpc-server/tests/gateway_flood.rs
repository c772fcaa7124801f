//! The SSH gateway cannot be used to exhaust the server (issue 8): a member flooding one
//! connection with channels, anyone flooding the port with connections that never sign
//! in, and relays whose other side went quiet or away. Real server (in this process, so
//! its open descriptors are this process's), real Docker machine, real OpenSSH client for
//! the legitimate user, a russh client for the floods. Every loop is bounded.
//!
//! Numbers (descriptors, memory, what the legitimate user saw) are printed with
//! `--nocapture`.

mod common;

use common::docker::*;
use common::ssh::*;
use common::Backend;
use flvpc_server::gateway::{self, GatewayConfig};
use reqwest::StatusCode;
use russh::{ChannelMsg, ChannelOpenFailure};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Descriptors that may come and go on their own (database pool, Docker client pool).
const SLACK: usize = 12;

/// The tests measure this process's descriptors: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Port of a listener in the machine that accepts and holds every connection, silent.
const HOLD: u32 = 7000;
/// Port of a listener in the machine that says hello, closes its sending side and holds on.
const HELLO_EOF: u32 = 7001;

/// A server with one running machine `n0` in a fresh namespace, a member `alice` (the
/// legitimate user) and a member `mallory` (the flooder), and two listeners in the machine.
struct Setup {
    server: common::TestServer,
    _cleanup: DockerCleanup,
    ns: String,
    root: String,
    alice: KeyPair,
    mallory: KeyPair,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        require_docker();
        let ns = unique("fl");
        let cleanup = DockerCleanup(vec![ns.clone()]);
        let server = common::start(Backend::Sqlite).await;
        let root = server.init_root().await;
        let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": ns})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let (alice, mallory) = (keypair("alice"), keypair("mallory"));
        let alice_token = user(&server, &root, "alice", &ns, "admin", &alice).await;
        user(&server, &root, "mallory", &ns, "user", &mallory).await;
        let spec = "machines:\n- count: 1\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB}\n";
        assert_eq!(put_spec(&server, &alice_token, &ns, spec).await.status(), StatusCode::OK);
        act(&server, &alice_token, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;
        let machine = machines(&server, &alice_token, &ns).await.remove(0);
        let direct = ssh_port(&machine);
        eventually(Duration::from_secs(90), "sshd in n0", || ssh(&alice.private, direct, "true").is_ok()).await;
        // Two small listeners (perl is part of every Debian) run as units of the machine's systemd.
        let hold =
            "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 7000, Listen => 1024, ReuseAddr => 1) \
                    or die $!; my @held; while (my $c = $s->accept) { push @held, $c }";
        let hello = "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 7001, Listen => 64, ReuseAddr => 1) \
                     or die $!; my @held; while (my $c = $s->accept) { print $c \"hello\\n\"; $c->shutdown(1); push @held, $c }";
        for (unit, script) in [("fl-hold", hold), ("fl-hello", hello)] {
            ssh(&alice.private, direct, &format!("systemd-run --unit={unit} perl -e '{script}'"))
                .expect("start a listener");
        }
        eventually(Duration::from_secs(30), "the listeners in n0", || {
            ssh(&alice.private, direct, "ss -Htln").is_ok_and(|out| out.contains(":7000") && out.contains(":7001"))
        })
        .await;
        let dir = tempfile::tempdir().expect("dir");
        Setup { server, _cleanup: cleanup, ns, root, alice, mallory, dir }
    }

    async fn gateway(&self, config: GatewayConfig) -> SocketAddr {
        let host_key = gateway::load_or_create_host_key(self.dir.path()).expect("host key");
        let (addr, _task) =
            gateway::spawn("127.0.0.1:0".parse().expect("addr"), self.server.state.clone(), config, host_key)
                .await
                .expect("gateway");
        addr
    }

    fn machine(&self) -> String {
        format!("n0.{}", self.ns)
    }

    async fn audit(&self) -> Vec<Value> {
        let log = self.server.get("/api/v1/audit?limit=1000", &self.root).await.body;
        log.as_array().cloned().unwrap_or_default()
    }

    /// Waits for an audit record that `matches`, which a relay writes once it has ended.
    async fn audit_record(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.audit().await.into_iter().find(|e| matches(e)) {
                return found;
            }
            assert!(std::time::Instant::now() < deadline, "no audit record: {what}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Makes the database pool and the HTTP side reach their working size, so that the
    /// baseline already holds what they keep open anyway.
    async fn warm_up(&self, gw: u16, config: &std::path::Path) {
        let seen = jump(config, "alice", gw, &self.machine(), "hostname");
        assert_eq!(seen.result, Ok("n0".into()), "alice reaches n0 before the flood");
        let calls: Vec<_> = (0..8).map(|_| self.audit()).collect();
        futures::future::join_all(calls).await;
    }
}

fn is_refused_for_resources(result: &Result<russh::Channel<russh::client::Msg>, russh::Error>) -> bool {
    matches!(result, Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ResourceShortage)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_flood_is_capped_per_connection_and_per_user_and_released_when_the_client_goes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let setup = Setup::new().await;
    let config = GatewayConfig { max_forwards_per_user: 100, ..GatewayConfig::default() };
    let per_connection = config.max_channels_per_connection;
    assert_eq!(per_connection, 64, "the default cap");
    let addr = setup.gateway(config).await;
    let gw = addr.port();
    let alice_cfg = client_config(setup.dir.path(), "alice", &setup.alice.private, None);
    setup.warm_up(gw, &alice_cfg).await;
    let target = setup.machine();
    let before = usage();

    // One connection opens channels to a listener that never closes, until refused.
    let first = FloodClient::connect(addr, "mallory", &setup.mallory.private).await;
    let mut held = Vec::new();
    let mut refusal = None;
    for _ in 0..500 {
        match first.forward(&target, HOLD).await {
            Ok(channel) => held.push(channel),
            Err(err) => {
                refusal = Some(Err(err));
                break;
            }
        }
    }
    assert_eq!(held.len(), per_connection, "the cap of one connection");
    let refusal = refusal.expect("a refusal");
    assert!(is_refused_for_resources(&refusal), "refused as a resource shortage: {:?}", refusal.err());
    // Further attempts are refused too, and each costs the server nothing lasting.
    for _ in 0..100 {
        assert!(is_refused_for_resources(&first.forward(&target, HOLD).await));
    }
    // Sessions count toward the same cap.
    assert!(is_refused_for_resources(&first.handle.channel_open_session().await), "a session over the cap");
    // The connection stays usable: closing a channel makes room for the next one.
    let closed = held.pop().expect("a channel");
    closed.close().await.expect("close a channel");
    drop(closed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reopened = loop {
        match first.forward(&target, HOLD).await {
            Ok(channel) => break channel,
            Err(_) => assert!(std::time::Instant::now() < deadline, "a closed channel's place came back"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    held.push(reopened);

    // A second connection of the same user gets only what is left of the user's cap.
    let second = FloodClient::connect(addr, "mallory", &setup.mallory.private).await;
    let mut second_held = Vec::new();
    let mut second_refusal = None;
    for _ in 0..500 {
        match second.forward(&target, HOLD).await {
            Ok(channel) => second_held.push(channel),
            Err(err) => {
                second_refusal = Some(Err(err));
                break;
            }
        }
    }
    assert_eq!(second_held.len(), 100 - per_connection, "the user's cap over both connections");
    assert!(is_refused_for_resources(&second_refusal.expect("a refusal")));
    let during = usage();
    eprintln!(
        "channel flood: before {before}; during ({} channels held open) {during}",
        held.len() + second_held.len()
    );
    // Each held channel is one socket to the machine; nothing else grows with the flood.
    assert!(during.fds >= before.fds + 90, "the relays' sockets are counted: {before} -> {during}");
    assert!(during.fds <= before.fds + 100 + 4 + SLACK, "descriptors stay bounded: {before} -> {during}");

    // Meanwhile the legitimate user logs in and reaches the machine, and the API answers.
    let seen = jump(&alice_cfg, "alice", gw, &target, "hostname");
    eprintln!("channel flood: alice's `ssh -J ... hostname` took {:?}: {:?}", seen.took, seen.result);
    assert_eq!(seen.result, Ok("n0".into()));
    let health = reqwest::get(format!("{}/healthz", setup.server.base)).await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);

    // The refusals are audited with the reason and the flag, but not one record per attempt.
    let log = setup.audit().await;
    let refusals: Vec<_> = log
        .iter()
        .filter(|e| e["action"] == "gateway.forward" && e["outcome"] == "too_many_channels" && e["actor"] == "mallory")
        .collect();
    assert!(!refusals.is_empty() && refusals.len() <= 2 * 16, "{} refusal records", refusals.len());
    assert!(refusals.iter().any(|e| e["detail"]
        .as_str()
        .is_some_and(|d| d.contains("64 channels are open on this connection (--ssh-max-channels-per-connection)"))));
    assert!(refusals.iter().any(|e| e["detail"].as_str().is_some_and(|d| d.contains("--ssh-max-forwards-per-user"))));

    // The flooder vanishes without a goodbye: every relay ends and its socket is closed.
    first.vanish();
    second.vanish();
    drop((held, second_held));
    let after = fds_settle_at_most(before.fds + SLACK, Duration::from_secs(60)).await;
    let after = Usage { fds: after, rss_kib: rss_kib() };
    eprintln!("channel flood: after the client went {after}");
    // And the user's places are free again.
    let again = FloodClient::connect(addr, "mallory", &setup.mallory.private).await;
    let channel = again.forward(&target, HOLD).await.expect("a channel after the flood");
    drop(channel);
    let _ = again.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_end_on_half_close_on_a_vanished_client_and_when_idle() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let setup = Setup::new().await;
    let addr = setup.gateway(GatewayConfig::default()).await;
    let alice_cfg = client_config(setup.dir.path(), "alice", &setup.alice.private, None);
    setup.warm_up(addr.port(), &alice_cfg).await;
    let target = setup.machine();
    let before = usage();

    // The machine says hello and closes its side: the client gets the data and the EOF, the
    // channel stays open for the client's side; the client's EOF then ends the relay.
    let client = FloodClient::connect(addr, "mallory", &setup.mallory.private).await;
    let mut channel = client.forward(&target, HELLO_EOF).await.expect("a channel");
    let (seen, closed) = channel_until(&mut channel, Duration::from_secs(30), |m| matches!(m, ChannelMsg::Eof)).await;
    let data: Vec<u8> = seen
        .iter()
        .filter_map(|m| if let ChannelMsg::Data { data } = m { Some(data.to_vec()) } else { None })
        .flatten()
        .collect();
    assert_eq!(data, b"hello\n");
    assert!(matches!(seen.last(), Some(ChannelMsg::Eof)), "the machine's EOF reaches the client: {seen:?}");
    assert!(!closed, "half-closed, not closed");
    channel.data_bytes(&b"still here"[..]).await.expect("the client's side still works");
    channel.eof().await.expect("send EOF");
    let (_, closed) = channel_until(&mut channel, Duration::from_secs(30), |_| false).await;
    assert!(closed, "both sides done: the gateway closes the channel");
    setup
        .audit_record("the half-closed relay ended", |e| {
            e["target"] == format!("{target}:{HELLO_EOF}")
                && e["outcome"] == "ok"
                && e["detail"].as_str().is_some_and(|d| d.contains("up=10B down=6B") && !d.contains("ended:"))
        })
        .await;

    // The client sends its EOF to a silent machine, then vanishes: the relay must not wait
    // for the machine. Another channel vanishes without even an EOF.
    let quiet = client.forward(&target, HOLD).await.expect("a channel");
    quiet.data_bytes(&b"ping"[..]).await.expect("send");
    quiet.eof().await.expect("EOF");
    let silent = client.forward(&target, HOLD).await.expect("a channel");
    let held = usage();
    client.vanish();
    drop((quiet, silent, channel));
    for (what, up) in [("after its EOF", "up=4B"), ("without an EOF", "up=0B")] {
        setup
            .audit_record(&format!("the relay of a vanished client {what}"), |e| {
                e["target"] == format!("{target}:{HOLD}")
                    && e["detail"].as_str().is_some_and(|d| d.contains(up) && d.contains("ended:"))
            })
            .await;
    }
    let after = fds_settle_at_most(before.fds + SLACK, Duration::from_secs(60)).await;
    eprintln!("half-close: before {before}; two relays held {held}; after the client vanished {after} fds");

    // A channel nobody uses is closed after the idle timeout, though its connection lives.
    let idle_gw =
        setup.gateway(GatewayConfig { idle_timeout: Duration::from_secs(3), ..GatewayConfig::default() }).await;
    let client = FloodClient::connect(idle_gw, "mallory", &setup.mallory.private).await;
    let mut idle = client.forward(&target, HOLD).await.expect("a channel");
    let (_, closed) = channel_until(&mut idle, Duration::from_secs(60), |_| false).await;
    assert!(closed, "the idle channel is closed by the gateway");
    setup
        .audit_record("the idle relay ended", |e| {
            e["target"] == format!("{target}:{HOLD}")
                && e["detail"].as_str().is_some_and(|d| d.contains("ended: idle for 3s"))
        })
        .await;
    assert!(!client.handle.is_closed(), "the connection itself stays");
    let next = client.forward(&target, HOLD).await;
    assert!(next.is_ok(), "and opens channels: {:?}", next.err());
    drop(next);
    let _ = client.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    fds_settle_at_most(before.fds + SLACK, Duration::from_secs(60)).await;
}

/// Opens a TCP connection to `gw` from `from` and tells whether the gateway kept it: a kept
/// one gets the SSH banner at once, a refused one is closed before any byte.
async fn idle_connection(from: IpAddr, gw: SocketAddr) -> (tokio::net::TcpStream, bool) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind the client side");
    let mut stream = socket.connect(gw).await.expect("connect");
    let mut banner = [0u8; 4];
    let kept = match tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut banner)).await {
        Ok(Ok(_)) => {
            assert_eq!(&banner, b"SSH-");
            true
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("neither a banner nor a close from the gateway"),
    };
    (stream, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_sign_in_cannot_lock_others_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = common::start(Backend::Sqlite).await;
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": "team"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let alice = keypair("alice");
    user(&server, &root, "alice", "team", "user", &alice).await;
    let dir = tempfile::tempdir().expect("dir");
    let host_key = gateway::load_or_create_host_key(dir.path()).expect("host key");
    // The default caps (1000 connections, 200 still signing in, 10 per address), and a long
    // auth timeout so that the flood is held by the caps, not ended by the timeout.
    let config = GatewayConfig { auth_timeout: Duration::from_secs(120), ..GatewayConfig::default() };
    let (per_address, unauthenticated) = (config.max_unauthenticated_per_address, config.max_unauthenticated);
    assert_eq!((per_address, unauthenticated, config.max_connections), (10, 200, 1000));
    let (gw, _task) = gateway::spawn("127.0.0.1:0".parse().expect("addr"), server.state.clone(), config, host_key)
        .await
        .expect("gateway");
    let from = |last: u8| IpAddr::from([127, 0, 0, last]);
    let alice_from = |last: u8| client_config(dir.path(), &format!("alice{last}"), &alice.private, Some(from(last)));
    let seen = login(&alice_from(2), "alice", gw.port());
    assert!(seen.result.is_ok(), "alice signs in before the flood: {:?}", seen.result);
    // The database pool at its working size, so the baseline holds what it keeps open anyway.
    futures::future::join_all((0..8).map(|_| server.get("/api/v1/audit?limit=100", &root))).await;
    let before = usage();

    // 1000 idle connections from one address (what filled the gateway before): 10 are kept,
    // the rest are closed before any byte. The test lets go of its ends of the refused ones,
    // so the count below is the gateway's held sockets and the test's ends of them.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        match idle_connection(from(1), gw).await {
            (stream, true) => flood.push(stream),
            (_, false) => refused += 1,
        }
    }
    assert_eq!((flood.len(), refused), (per_address, 1000 - per_address), "the per-address cap");
    let during = usage();
    eprintln!("unauthenticated flood (1000 from 127.0.0.1, {} kept): before {before}; during {during}", flood.len());

    // Someone from another address signs in meanwhile.
    let seen = login(&alice_from(2), "alice", gw.port());
    eprintln!("unauthenticated flood: alice's login from 127.0.0.2 took {:?}, ok: {}", seen.took, seen.result.is_ok());
    assert!(seen.result.as_ref().is_ok_and(|help| help.contains("Hello alice")), "{:?}", seen.result);

    // Flooding from 20 more addresses stops at the cap for all unauthenticated connections.
    let mut more = Vec::new();
    for last in 3..23 {
        for _ in 0..per_address {
            match idle_connection(from(last), gw).await {
                (stream, true) => more.push(stream),
                (_, false) => refused += 1,
            }
        }
    }
    assert_eq!(more.len(), unauthenticated - per_address, "{unauthenticated} unauthenticated at most");
    let during = usage();
    eprintln!(
        "unauthenticated flood from 21 addresses ({} held in all, {refused} refused at accept): {during}",
        flood.len() + more.len()
    );

    // A connection that signs in gives its unauthenticated place back at once: with
    // 127.0.0.1 full, one of its flood connections closing lets alice in from there, and her
    // signed-in connection leaves the place to the next one.
    drop(flood.pop());
    // The server notices the close on its own time: until then alice is refused and retries.
    let spawn_alice = || {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(alice_from(1))
            .args(["-N", "-p", &gw.port().to_string(), "alice@127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ssh -N")
    };
    let mut held = KillOnDrop(spawn_alice());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.get("/api/v1/audit?limit=100", &root).await.body;
        let signed_in = log.as_array().is_some_and(|a| {
            a.iter().any(|e| e["action"] == "gateway.login" && e["outcome"] == "ok" && e["source"] == "127.0.0.1")
        });
        if signed_in {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "alice did not sign in from 127.0.0.1");
        if held.0.try_wait().ok().flatten().is_some() {
            held = KillOnDrop(spawn_alice());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_next, kept) = idle_connection(from(1), gw).await;
    assert!(kept, "the signed-in connection's unauthenticated place was given back");
    held.kill();

    // When the flood ends, everything is given back.
    drop((flood, more, _next));
    fds_settle_at_most(before.fds + SLACK, Duration::from_secs(60)).await;
    // The gateway notices the closes on its own time; then the address's places are free.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !idle_connection(from(1), gw).await.1 {
        assert!(std::time::Instant::now() < deadline, "the address's places did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("unauthenticated flood: after it ended {}", usage());

    // A client that starts the handshake, then neither reads nor closes: told to go at the
    // auth timeout, it is cut off soon after and its place is free (one place per address here).
    let host_key = gateway::load_or_create_host_key(dir.path()).expect("host key");
    let strict = GatewayConfig {
        auth_timeout: Duration::from_secs(1),
        max_unauthenticated_per_address: 1,
        ..GatewayConfig::default()
    };
    let (strict_gw, _task) =
        gateway::spawn("127.0.0.1:0".parse().expect("addr"), server.state.clone(), strict, host_key)
            .await
            .expect("gateway");
    let (mut stalled, kept) = idle_connection(from(40), strict_gw).await;
    assert!(kept);
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"SSH-2.0-stalled\r\n").await.expect("send an SSH id");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !idle_connection(from(40), strict_gw).await.1 {
        assert!(std::time::Instant::now() < deadline, "a stalled client kept its place");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stalled);
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
