//! `flvpc serve` over TLS with the real binary and the real CLI: the self-signed certificate made
//! once in the data dir (its fingerprint as `openssl x509` computes it), kept across restarts,
//! pinned by `flvpc login --fingerprint`; a certificate and key given as files (a private CA's,
//! an RSA PKCS#1 key, an EC key); HSTS and Secure cookies; a plain request to the TLS port; and
//! every bad certificate input refused before anything listens.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port, listens_within, output, Server, BIN};

fn flvpc(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    output(
        Command::new(BIN)
            .args(args)
            .env("FLVPC_DATA_DIR", data)
            .env("XDG_CONFIG_HOME", data.join("config"))
            .env_remove("FLVPC_DATABASE_URL")
            .env_remove("FLVPC_SERVER"),
        stdin,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `flvpc serve` on `port` with `extra` flags, its log (no colours) written to `log`; returns once
/// the port answers.
fn serve(data: &Path, port: u16, extra: &[&str], log: &Path) -> Server {
    let file = std::fs::File::create(log).expect("log file");
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ssh-listen", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .env("FLVPC_DATA_DIR", data)
            .env("NO_COLOR", "1")
            .env_remove("FLVPC_LOG")
            .env_remove("FLVPC_DATABASE_URL")
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start flvpc serve"),
    );
    assert!(
        listens_within(port, 30),
        "flvpc serve did not listen on {port} within 30 s: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    server
}

/// The fingerprint the server logged at start (`… SHA-256 fingerprint AA:BB:…`).
fn logged_fingerprint(log: &Path) -> String {
    let text = std::fs::read_to_string(log).expect("read the log");
    let line = text.lines().find(|l| l.contains("panel and API on https://")).unwrap_or_else(|| panic!("{text}"));
    let after = line.split("fingerprint ").nth(1).unwrap_or_else(|| panic!("no fingerprint in {line}"));
    after.chars().take(95).collect()
}

/// `openssl x509 -fingerprint -sha256` of the first certificate of a PEM file.
fn openssl_fingerprint(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    line.trim().split_once('=').map(|(_, fp)| fp.to_owned()).unwrap_or_else(|| panic!("{line}"))
}

/// An HTTPS GET that trusts exactly `cert` (a PEM file): status and headers.
fn https_head(port: u16, path: &str, cert: &Path) -> (u16, reqwest::header::HeaderMap) {
    let pem = std::fs::read(cert).expect("read the certificate");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("a PEM certificate")])
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let response = client.get(format!("https://127.0.0.1:{port}{path}")).send().await.expect("HTTPS GET");
        (response.status().as_u16(), response.headers().clone())
    })
}

/// A plain-HTTP request to the TLS port: what came back, within a bounded time.
fn plain_request(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    let started = Instant::now();
    let _ = stream.read_to_string(&mut answer);
    assert!(started.elapsed() < Duration::from_secs(10), "the plain request hung");
    answer
}

fn admin_init(data: &Path) {
    let out = flvpc(data, &["admin", "init", "--login", "admin", "--password-stdin"], Some("admin-password\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn login(data: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["login", url, "--login", "admin", "--password-stdin"];
    args.extend(extra);
    flvpc(data, &args, Some("admin-password\n"))
}

#[test]
fn the_self_signed_certificate_is_kept_pinned_and_served_strictly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    admin_init(data);
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let log = data.join("serve.log");
    let server = serve(data, port, &[], &log);

    // Made in the data dir, private, and the fingerprint logged is the one openssl computes.
    let cert = data.join("tls/cert.pem");
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("exists").permissions());
    assert_eq!(mode(&data.join("tls")) & 0o777, 0o700);
    assert_eq!(mode(&data.join("tls/key.pem")) & 0o777, 0o600);
    let fingerprint = openssl_fingerprint(&cert);
    assert_eq!(logged_fingerprint(&log), fingerprint);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains(&format!("on {url}")), "the URL is printed: {logged}");

    // HSTS and Secure cookies over TLS; the certificate names 127.0.0.1 (verified by reqwest).
    let (status, headers) = https_head(port, "/login", &cert);
    assert_eq!(status, 200);
    assert_eq!(headers.get("strict-transport-security").map(|v| v.as_bytes()), Some(&b"max-age=31536000"[..]));
    let cookies: Vec<String> =
        headers.get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.ends_with("; Secure")), "{cookies:?}");

    // A plain request to the TLS port: a 400 that says to use https, then the connection closes.
    let answer = plain_request(port);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(&format!("use https://127.0.0.1:{port}/")), "{answer}");

    // The CLI: refused without a pin (the password is not sent), with the fingerprint to check;
    // a wrong fingerprint refused; the right one pinned.
    let out = login(data, &url, &[]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("not signed by an authority this system trusts") && said.contains(&fingerprint), "{said}");
    assert!(said.contains(&format!("--fingerprint {fingerprint}")), "{said}");
    let wrong = format!("00{}", &fingerprint[2..]);
    let out = login(data, &url, &["--fingerprint", &wrong]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains(&format!("fingerprint {fingerprint}, not the pinned {wrong}")), "{said}");
    let out = login(data, &url, &["--fingerprint", &fingerprint.to_lowercase()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = flvpc(data, &["ns", "create", "team1"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A restart keeps the certificate: the pinned CLI goes on working.
    drop(server);
    let server = serve(data, port, &[], &log);
    assert_eq!(logged_fingerprint(&log), fingerprint, "the same certificate after a restart");
    assert_eq!(openssl_fingerprint(&cert), fingerprint);
    let out = flvpc(data, &["ns", "list"], None);
    assert!(text(&out.stdout).contains("\"team1\""), "{}{}", text(&out.stdout), text(&out.stderr));

    // A new certificate (the old one removed) is refused by the pinned CLI, which names both.
    drop(server);
    std::fs::remove_dir_all(data.join("tls")).expect("remove tls/");
    let _server = serve(data, port, &[], &log);
    let new = openssl_fingerprint(&cert);
    assert_ne!(new, fingerprint);
    let out = flvpc(data, &["me"], None);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains(&format!("fingerprint {new}, not the pinned {fingerprint}")), "{said}");
}

/// Test certificates made with the openssl CLI: a private CA, a server certificate it signed (an
/// RSA key in PKCS#1 form), and a self-signed EC (SEC1) certificate.
struct Certs {
    ca: PathBuf,
    chain: PathBuf,
    leaf: PathBuf,
    rsa_key: PathBuf,
    ec_cert: PathBuf,
    ec_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
}

fn make_certs(dir: &Path) -> Certs {
    let san = "subjectAltName=IP:127.0.0.1,DNS:localhost";
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=flvpc test CA",
        ],
    );
    openssl(dir, &["genrsa", "-traditional", "-out", "server.key", "2048"]);
    openssl(dir, &["req", "-new", "-key", "server.key", "-subj", "/CN=127.0.0.1", "-out", "server.csr"]);
    std::fs::write(dir.join("ext.cnf"), format!("{san}\n")).expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key"]);
    openssl(
        dir,
        &["req", "-x509", "-key", "ec.key", "-subj", "/CN=localhost", "-addext", san, "-days", "2", "-out", "ec.pem"],
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("read");
    // The chain file: the server's certificate, then the CA's.
    std::fs::write(dir.join("chain.pem"), format!("{}{}", read("server.pem"), read("ca.pem"))).expect("chain");
    assert!(read("server.key").contains("BEGIN RSA PRIVATE KEY"), "PKCS#1");
    assert!(read("ec.key").contains("BEGIN EC PRIVATE KEY"), "SEC1");
    Certs {
        ca: dir.join("ca.pem"),
        chain: dir.join("chain.pem"),
        leaf: dir.join("server.pem"),
        rsa_key: dir.join("server.key"),
        ec_cert: dir.join("ec.pem"),
        ec_key: dir.join("ec.key"),
    }
}

#[test]
fn given_certificates_are_served_and_bad_ones_refused_before_anything_listens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let certs_dir = dir.path().join("certs");
    std::fs::create_dir(&certs_dir).expect("certs dir");
    let certs = make_certs(&certs_dir);
    admin_init(&data);
    let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();

    // A private CA's chain and an RSA key: the CLI trusts it with --ca-cert, and not without.
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let server = serve(&data, port, &["--tls-cert", &path(&certs.chain), "--tls-key", &path(&certs.rsa_key)], &log);
    assert_eq!(logged_fingerprint(&log), openssl_fingerprint(&certs.leaf));
    assert!(!data.join("tls").exists(), "no self-signed certificate is made when one is given");
    let out = login(&data, &url, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--ca-cert FILE"), "{}", text(&out.stderr));
    let out = login(&data, &url, &["--ca-cert", &path(&certs.ca)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = flvpc(&data, &["me"], None);
    assert!(text(&out.stdout).contains("\"superadmin\": true"), "{}", text(&out.stderr));
    drop(server);

    // An EC key in SEC1 form, through the environment.
    let port = free_port();
    let file = std::fs::File::create(&log).expect("log");
    let _ec = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ssh-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .env("FLVPC_DATA_DIR", &data)
            .env("FLVPC_TLS_CERT", &certs.ec_cert)
            .env("FLVPC_TLS_KEY", &certs.ec_key)
            .env("NO_COLOR", "1")
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no listener: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let ec_fingerprint = openssl_fingerprint(&certs.ec_cert);
    let out = login(&data, &format!("https://127.0.0.1:{port}"), &["--fingerprint", &ec_fingerprint]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Bad input: each stops `flvpc serve` with one line naming the file and the fix; nothing listens.
    let missing = certs_dir.join("missing.pem");
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--tls-cert".into(), path(&missing), "--tls-key".into(), path(&certs.rsa_key)],
            vec![format!("cannot read the TLS certificate {}", path(&missing)), "--tls-cert".into()],
        ),
        (
            vec!["--tls-cert".into(), path(&certs.chain), "--tls-key".into(), path(&missing)],
            vec![format!("cannot read the TLS key {}", path(&missing))],
        ),
        (
            vec!["--tls-cert".into(), path(&certs.chain), "--tls-key".into(), path(&certs.ec_key)],
            vec![format!(
                "the TLS key {} does not belong to the certificate {}",
                path(&certs.ec_key),
                path(&certs.chain)
            )],
        ),
        (
            vec!["--tls-cert".into(), path(&certs.rsa_key), "--tls-key".into(), path(&certs.rsa_key)],
            vec![format!("the TLS certificate {} holds no certificate", path(&certs.rsa_key)), "swapped".into()],
        ),
        (vec!["--tls-cert".into(), path(&certs.chain)], vec!["was given without --tls-key: give both".into()]),
        (vec!["--tls-key".into(), path(&certs.rsa_key)], vec!["was given without --tls-cert: give both".into()]),
        (
            vec![
                "--plain-http".into(),
                "--tls-cert".into(),
                path(&certs.chain),
                "--tls-key".into(),
                path(&certs.rsa_key),
            ],
            vec!["--plain-http and --tls-cert/--tls-key contradict each other".into()],
        ),
    ];
    for (flags, expected) in cases {
        let (port, ssh_port) = (free_port(), free_port());
        let mut args = vec![
            "serve".to_owned(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--ssh-listen".into(),
            format!("127.0.0.1:{ssh_port}"),
        ];
        args.extend(flags.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = flvpc(&data, &args, None);
        assert!(!out.status.success(), "{flags:?} was accepted");
        assert!(started.elapsed() < Duration::from_secs(20), "{flags:?}: not fast");
        let said = text(&out.stderr);
        assert_eq!(said.trim().lines().count(), 1, "{flags:?}: one line: {said}");
        for part in &expected {
            assert!(said.contains(part.as_str()), "{flags:?}: {part:?} not in {said}");
        }
        for port in [port, ssh_port] {
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "{flags:?}: {port} listened");
        }
    }
}

/// On a terminal, `flvpc login` shows a certificate nobody vouches for and asks, as ssh does: "no"
/// signs nothing in, "yes" pins it. The terminal is a pty made by util-linux's `script`, whose
/// command line is this test's own binary path and loopback URL (no outside data reaches its shell).
#[test]
fn on_a_terminal_login_shows_the_fingerprint_and_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    admin_init(data);
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let log = data.join("serve.log");
    let _server = serve(data, port, &[], &log);
    let fingerprint = logged_fingerprint(&log);
    let on_terminal = |answer: &str| {
        let command = format!("{BIN} login {url} --login admin --password-stdin");
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("FLVPC_DATA_DIR", data)
            .env("XDG_CONFIG_HOME", data.join("config"))
            .env_remove("FLVPC_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("util-linux's script");
        // The password (standard input) and the answer (the terminal): one pty, line by line.
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("admin-password\n{answer}\n").as_bytes()).expect("type");
        let out = child.wait_with_output().expect("wait");
        drop(stdin);
        text(&out.stdout)
    };
    let screen = on_terminal("no");
    assert!(screen.contains(&fingerprint) && screen.contains("(yes/no)?"), "{screen}");
    assert!(screen.contains("not signed in"), "{screen}");
    assert!(!data.join("config/flvpc/config.json").exists(), "nothing kept after no");
    let screen = on_terminal("yes");
    assert!(screen.contains(&format!("its certificate {fingerprint} is pinned")), "{screen}");
    let out = flvpc(data, &["me"], None);
    assert!(text(&out.stdout).contains("\"superadmin\": true"), "{}", text(&out.stderr));
}
