//! The install playbook (`iac/ansible/main.yml`) against a real systemd host: a container of the
//! target image (`flvpc/ansible-target:1`, the machine image plus the Debian packages the playbook
//! installs, built by `scripts/dev.sh test`), started like flvpc starts machines (systemd as PID 1,
//! no `--privileged`, cgroups read-only but its own subtree), sshd published on loopback, root
//! reached with a key made here. A container cannot run its own dockerd without `--privileged`,
//! so the host's Docker socket is bound into it and the playbook is told the engine is external.
//!
//! The playbook runs exactly as people run it (`ansible-playbook -i INVENTORY -b main.yml`) with
//! this build's binary, and the test checks what an operator would: the unit is active, its
//! journal has flvpc's start lines, the panel answers, the superadmin signs in through the API, a
//! second run changes nothing, a changed setting restarts flvpc with it, and a host that says it
//! is another OS is refused in one line before anything changes. A second target gets flvpc's own
//! PostgreSQL database (and the operator's certificate), a third its own MariaDB database. Targets are
//! removed at the end, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;
use support::{docker, BIN};

use flvpc_host::cgroup::CgroupLayout;
use flvpc_model::MachineKey;

/// The target image, built by `scripts/dev.sh test` (`build_ansible_target`).
const TARGET_IMAGE: &str = "flvpc/ansible-target:1";
/// The superadmin the playbook creates.
const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "ansible-admin-password";
/// What the refusal of another OS says (iac/ansible/roles/flvpc/tasks/preflight.yml).
const WRONG_OS_LINE: &str = "flvpc installs on Debian 12 (bookworm) on x86_64 only";

/// A systemd host in a container, removed (with its cgroups) when dropped.
struct Target {
    name: String,
    key: MachineKey,
    cgroups: CgroupLayout,
}

impl Target {
    /// Starts the target the way flvpc's Docker engine starts a machine (see flvpc-host's
    /// `container_body`), plus the host's Docker socket, sshd and the panel published on loopback.
    fn start(tag: &str) -> Target {
        let id = format!("{tag}-{}", std::process::id());
        let key = MachineKey::parse("ansible-test", &format!("target-{id}")).expect("a valid key");
        let cgroups = CgroupLayout::detect();
        cgroups.prepare(&key).expect("prepare the target's cgroups");
        let target = Target { name: format!("flvpc-ansible-target-{id}"), key, cgroups };
        docker(&["rm", "-f", "-v", &target.name]);
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &target.name,
            "--hostname",
            "flvpc-target",
            "--label",
            "flvpc.test=ansible",
            "--env",
            "container=docker",
            "--stop-signal",
            "SIGRTMIN+3",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp:rw,exec,nosuid,nodev,mode=1777",
            "--pids-limit",
            "4096",
            "--publish",
            "127.0.0.1::22",
            "--publish",
            "127.0.0.1::5555",
            "--volume",
            "/var/run/docker.sock:/var/run/docker.sock",
        ]
        .map(String::from)
        .to_vec();
        if let Some(parent) = target.cgroups.parent(&target.key) {
            args.extend(["--cgroup-parent".to_owned(), parent]);
        }
        for bind in target.cgroups.binds(&target.key) {
            args.extend(["--volume".to_owned(), bind]);
        }
        args.extend([TARGET_IMAGE.to_owned(), "/sbin/init".to_owned()]);
        let out = Command::new("docker").args(&args).output().expect("run docker");
        assert!(out.status.success(), "docker run of the target failed: {}", String::from_utf8_lossy(&out.stderr));
        target
    }

    /// `systemctl`, `journalctl`… run in the target (fixed argv, no shell): its standard output.
    fn exec(&self, argv: &[&str]) -> String {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend(argv);
        docker(&args)
    }

    /// The loopback address Docker published the target's `port` on.
    fn published(&self, port: u16) -> String {
        let out = docker(&["port", &self.name, &format!("{port}/tcp")]);
        let addr = out.lines().find(|l| l.starts_with("127.0.0.1:")).unwrap_or_default();
        assert!(!addr.is_empty(), "port {port} of the target is not published on loopback: {out:?}");
        addr.to_owned()
    }

    /// Copies a file of this host into the target (Docker's archive API: no shell in the target).
    fn copy_in(&self, from: &Path, to: &str) {
        let out = Command::new("docker")
            .args(["cp", &from.display().to_string(), &format!("{}:{to}", self.name)])
            .output()
            .expect("run docker cp");
        assert!(out.status.success(), "docker cp to {to} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits (bounded) until the target's sshd runs, then lets root in with `public_key` and
    /// returns the known_hosts line of its host key.
    fn open_ssh(&self, public_key: &Path, ssh_addr: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.exec(&["systemctl", "is-active", "ssh"]).trim() != "active" {
            assert!(Instant::now() < deadline, "sshd did not start in the target within 90 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        self.copy_in(public_key, "/root/.ssh/authorized_keys");
        let host_key = self.exec(&["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]);
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        assert_eq!(host_key.len(), 2, "the target has no ed25519 host key: {host_key:?}");
        let (host, port) = ssh_addr.rsplit_once(':').expect("host:port");
        format!("[{host}]:{port} {} {}\n", host_key[0], host_key[1])
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        docker(&["rm", "-f", "-v", &self.name]);
        // The kernel may still hold the removed container's cgroups for a moment.
        for _ in 0..100 {
            if self.cgroups.cleanup(&self.key) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The one way this test reaches the installed panel/API: an HTTPS request on `addr` (the
/// target's :5555 published on loopback) that trusts only `cert_pem` (the certificate flvpc
/// serves: its self-signed one, or the one the test gave the playbook; it names 127.0.0.1),
/// answering (status, body), or the request's error.
fn panel(
    addr: &str,
    cert_pem: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let cert = reqwest::Certificate::from_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tls_certs_only([cert])
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = client.request(method, format!("https://{addr}{path}"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = json {
            request = request.header("Content-Type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    })
}

/// The SHA-256 fingerprint of a PEM certificate as `openssl x509 -fingerprint -sha256` prints it.
fn openssl_fingerprint(pem: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, pem).expect("write cert");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &file.display().to_string()])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl x509: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.trim().rsplit_once('=').map(|(_, f)| f.to_owned()).expect("a fingerprint line")
}

/// `ansible-playbook -i inventory -b iac/ansible/main.yml`, with Ansible's own files in `dir`.
fn run_playbook(dir: &Path, inventory: &Path) -> Output {
    let playbook = repo_root().join("iac/ansible/main.yml");
    Command::new("ansible-playbook")
        .args(["-i", &inventory.display().to_string(), "-b", &playbook.display().to_string()])
        .current_dir(dir)
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("cp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
        .env_remove("ANSIBLE_CONFIG")
        .output()
        .expect("run ansible-playbook")
}

/// The `changed=N` and `failed=N` of the play recap's line for the target.
fn recap(out: &Output) -> (u32, u32) {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.starts_with("target"))
        .unwrap_or_else(|| panic!("no play recap for the target in:\n{text}"));
    let count = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the recap line {line:?}"))
    };
    (count("changed"), count("failed"))
}

fn show(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// Stops with what to do when what this test needs is not there.
fn require_tools() {
    let ansible = Command::new("ansible-playbook").arg("--version").output();
    assert!(
        ansible.is_ok_and(|o| o.status.success()),
        "ansible-playbook is not on PATH: install Debian's ansible package (scripts/dev.sh test does)"
    );
    assert!(
        !docker(&["image", "ls", "-q", TARGET_IMAGE]).trim().is_empty(),
        "the test target image {TARGET_IMAGE} is missing: run scripts/dev.sh test (it builds it)"
    );
    // The playbook raises these kernel settings only where they are lower, and a container cannot
    // (its /proc/sys is read-only): the host must have them already, as scripts/dev.sh sets them.
    let instances = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances").unwrap_or_default();
    assert!(
        instances.trim().parse::<u64>().is_ok_and(|n| n >= 8192),
        "fs.inotify.max_user_instances is {instances:?} on this host, below what the playbook sets: run \
         scripts/dev.sh test (it raises it), or sysctl -w fs.inotify.max_user_instances=8192 and the other \
         settings of /etc/sysctl.d/60-flvpc.conf"
    );
}

/// A target reachable by Ansible: its container, an SSH key root accepts, its host key known,
/// and a directory for the inventory and Ansible's own files.
struct Install {
    dir: tempfile::TempDir,
    target: Target,
    panel_addr: String,
    /// The inventory's host entry (address, key, known hosts).
    host: serde_json::Value,
    inventory: PathBuf,
    /// The certificate the test gave the playbook (`flvpc_tls_cert`), if any.
    given_cert: Option<PathBuf>,
}

impl Install {
    /// Starts a target and writes an inventory for it with these playbook variables (on top of
    /// the test's binary, the external engine and the superadmin).
    fn new(tag: &str, vars: serde_json::Value) -> Install {
        require_tools();
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("id_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "flvpc-ansible-test", "-f", &key.display().to_string()])
            .output()
            .expect("run ssh-keygen");
        assert!(keygen.status.success(), "ssh-keygen failed: {}", show(&keygen));

        let target = Target::start(tag);
        let ssh_addr = target.published(22);
        let panel_addr = target.published(5555);
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, target.open_ssh(&key.with_extension("pub"), &ssh_addr))
            .expect("write known_hosts");

        let (ssh_host, ssh_port) = ssh_addr.rsplit_once(':').expect("host:port");
        let host = serde_json::json!({
            "ansible_host": ssh_host,
            "ansible_port": ssh_port.parse::<u16>().expect("port"),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": key,
            "ansible_ssh_common_args": format!("-o UserKnownHostsFile={}", known_hosts.display()),
            "ansible_python_interpreter": "/usr/bin/python3",
        });
        let inventory = dir.path().join("inventory.yml");
        let install = Install { dir, target, panel_addr, host, inventory, given_cert: None };
        install.write_inventory(vars);
        install
    }

    /// (Re)writes the inventory with these playbook variables on top of the test's binary, the
    /// external engine and the superadmin.
    fn write_inventory(&self, vars: serde_json::Value) {
        let mut all_vars = serde_json::json!({
            "flvpc_binary": BIN,
            "flvpc_docker_external": true,
            "flvpc_admin_login": ADMIN,
            "flvpc_admin_password": ADMIN_PASSWORD,
        });
        if let (Some(all), Some(more)) = (all_vars.as_object_mut(), vars.as_object()) {
            all.extend(more.clone());
        }
        let inventory_text = serde_json::json!({
            "all": { "hosts": { "target": self.host }, "vars": all_vars }
        });
        // JSON is YAML: the inventory needs no YAML writer.
        std::fs::write(&self.inventory, inventory_text.to_string()).expect("write the inventory");
    }

    fn run(&self) -> Output {
        run_playbook(self.dir.path(), &self.inventory)
    }

    /// Runs the playbook, which must succeed, and returns its output and recap's changed count.
    fn run_ok(&self, what: &str) -> (Output, u32) {
        let out = self.run();
        assert!(out.status.success(), "the {what} run failed:\n{}", show(&out));
        let (changed, failed) = recap(&out);
        assert_eq!(failed, 0, "{}", show(&out));
        (out, changed)
    }

    /// The flvpc service's main PID in the target.
    fn main_pid(&self) -> String {
        self.target.exec(&["systemctl", "show", "flvpc", "-p", "MainPID", "--value"])
    }

    /// The certificate flvpc serves: the one given to the playbook, or the self-signed one flvpc
    /// made in its data dir.
    fn served_cert(&self) -> String {
        match &self.given_cert {
            Some(path) => std::fs::read_to_string(path).expect("the given certificate"),
            None => self.target.exec(&["cat", "/var/lib/flvpc/tls/cert.pem"]),
        }
    }

    /// Waits (bounded) for the panel's sign-in page over HTTPS, then signs the superadmin in
    /// through the API and checks who the token belongs to.
    fn superadmin_signs_in(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let login_page = loop {
            let cert = self.served_cert();
            match panel(&self.panel_addr, &cert, "GET", "/login", None, None) {
                Ok((200, body)) => break body,
                other => assert!(Instant::now() < deadline, "the panel did not answer within 30 s: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(login_page.contains("Sign in"), "{login_page}");
        let credentials = serde_json::json!({ "login": ADMIN, "password": ADMIN_PASSWORD }).to_string();
        let cert = self.served_cert();
        let (status, body) =
            panel(&self.panel_addr, &cert, "POST", "/api/v1/auth/login", None, Some(&credentials)).expect("sign in");
        assert_eq!(status, 200, "{body}");
        let token: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
        let token = token["token"].as_str().expect("a token");
        let (status, me) = panel(&self.panel_addr, &cert, "GET", "/api/v1/me", Some(token), None).expect("me");
        assert_eq!(status, 200, "{me}");
        let me: serde_json::Value = serde_json::from_str(&me).expect("JSON");
        assert_eq!(me["login"], ADMIN, "{me}");
        assert_eq!(me["superadmin"], true, "{me}");
    }

    /// Runs the playbook again: it must change nothing and leave flvpc running as it was.
    fn second_run_changes_nothing(&self) {
        let pid = self.main_pid();
        let (second, changed) = self.run_ok("second");
        assert_eq!(changed, 0, "the second run changed something:\n{}", show(&second));
        assert_eq!(self.main_pid(), pid, "flvpc was restarted");
    }

    /// Removes the target and checks that nothing of it is left.
    fn remove(self) {
        let name = self.target.name.clone();
        drop(self.target);
        assert!(docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]).trim().is_empty(), "the target is gone");
    }
}

#[test]
fn the_playbook_installs_flvpc_as_a_systemd_service_and_changes_nothing_the_second_time() {
    let install = Install::new("sqlite", serde_json::json!({ "flvpc_log_format": "json" }));
    let target = &install.target;

    // First run: installs and starts flvpc.
    let (first, changed) = install.run_ok("first");
    assert!(changed > 0, "a first run installs something:\n{}", show(&first));
    let first_text = String::from_utf8_lossy(&first.stdout);
    assert!(first_text.contains("has no /dev/net/tun"), "the missing tun device is a warning:\n{first_text}");

    // The unit runs, with its hardening and fd limit, and logs to the journal.
    assert_eq!(target.exec(&["systemctl", "is-active", "flvpc"]).trim(), "active");
    assert_eq!(target.exec(&["systemctl", "is-enabled", "flvpc"]).trim(), "enabled");
    let props = target.exec(&[
        "systemctl",
        "show",
        "flvpc",
        "-p",
        "NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,ReadWritePaths,Restart,LimitNOFILE,Environment",
    ]);
    for want in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/flvpc",
        "Restart=on-failure",
        "LimitNOFILE=1048576",
        "Environment=NO_COLOR=1",
    ] {
        assert!(props.lines().any(|l| l == want), "{want} not in the unit's properties:\n{props}");
    }
    assert_eq!(target.exec(&["stat", "-c", "%a %U", "/var/lib/flvpc"]).trim(), "700 root");
    assert_eq!(target.exec(&["stat", "-c", "%a %U", "/etc/flvpc/flvpc.env"]).trim(), "600 root");
    assert!(
        target.exec(&["cat", "/etc/sysctl.d/60-flvpc.conf"]).contains("fs.inotify.max_user_instances = 8192"),
        "the sysctls are kept for the next boot"
    );
    let journal = target.exec(&["journalctl", "-u", "flvpc", "--no-pager", "-o", "cat"]);
    let started = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.contains("panel and API on")));
    assert!(started.is_some(), "no JSON start line of flvpc in its journal:\n{journal}");
    // The superadmin's password went on standard input of a no_log task: nowhere in the logs.
    let everything = target.exec(&["journalctl", "--no-pager", "-o", "cat"]);
    assert!(!everything.contains(ADMIN_PASSWORD), "the superadmin's password is in the target's journal");
    assert!(!String::from_utf8_lossy(&first.stdout).contains(ADMIN_PASSWORD), "the password is in Ansible's output");

    // HTTPS by default, with the self-signed certificate flvpc made and named in its journal.
    let served = install.served_cert();
    let fingerprint = openssl_fingerprint(&served);
    assert!(
        journal.contains(&format!("SHA-256 fingerprint {fingerprint}")),
        "the journal does not name the self-signed certificate's fingerprint {fingerprint}:\n{journal}"
    );
    // The panel answers, and the superadmin the playbook made signs in through the API.
    install.superadmin_signs_in();
    install.second_run_changes_nothing();

    // A changed setting restarts flvpc with it: text lines in the journal, without colour codes.
    let pid = install.main_pid();
    install.write_inventory(serde_json::json!({ "flvpc_log_format": "text" }));
    let (third, changed) = install.run_ok("third");
    assert!(changed > 0, "the new setting was not written:\n{}", show(&third));
    assert_ne!(install.main_pid(), pid, "flvpc was not restarted with the new setting");
    assert_eq!(target.exec(&["systemctl", "is-active", "flvpc"]).trim(), "active");
    let journal = target.exec(&["journalctl", "-u", "flvpc", "--no-pager", "-o", "cat"]);
    let started: Vec<&str> = journal.lines().filter(|l| l.contains("panel and API on")).collect();
    assert_eq!(started.len(), 2, "two starts in the journal:\n{journal}");
    assert!(!started[1].starts_with('{') && !started[1].contains('\u{1b}'), "a plain text line: {:?}", started[1]);
    install.superadmin_signs_in();

    // A host that says it is another OS: refused in one line, before anything changes.
    let os_release = install.dir.path().join("os-release");
    std::fs::write(
        &os_release,
        "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\n\
         VERSION=\"24.04 LTS (Noble Numbat)\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n",
    )
    .expect("write os-release");
    target.exec(&["rm", "-f", "/etc/os-release"]);
    target.copy_in(&os_release, "/etc/os-release");
    let refused = install.run();
    assert!(!refused.status.success(), "the playbook went on on another OS:\n{}", show(&refused));
    assert_eq!(recap(&refused), (0, 1), "{}", show(&refused));
    let refused_text = String::from_utf8_lossy(&refused.stdout);
    let lines: Vec<&str> = refused_text.lines().filter(|l| l.contains(WRONG_OS_LINE)).collect();
    assert_eq!(lines.len(), 1, "one line says why:\n{refused_text}");
    assert!(lines[0].contains("Ubuntu 24.04"), "{}", lines[0]);
    assert!(!refused_text.contains("Install the flvpc binary"), "it stopped at the first task:\n{refused_text}");

    // Everything the test made goes: the target (flvpc in it made no container or network).
    install.remove();
}

/// `flvpc_database: postgresql`: the playbook makes flvpc's database and user (with a password that
/// needs encoding in a URL), the service and `admin init` use it, and a second run changes nothing.
#[test]
fn the_playbook_gives_flvpc_its_own_postgresql_database() {
    let password = "pg p@ss/w:rd%?#";
    // This target also gets a certificate of the operator's (`flvpc_tls_cert`/`flvpc_tls_key`).
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=flvpc-ansible-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA (what `req -x509` makes by default), or rustls refuses it.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", &key.display().to_string(), "-out", &cert.display().to_string()])
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl req: {}", show(&made));
    let mut install = Install::new(
        "postgresql",
        serde_json::json!({
            "flvpc_database": "postgresql",
            "flvpc_db_password": password,
            "flvpc_tls_cert": cert,
            "flvpc_tls_key": key,
        }),
    );
    install.given_cert = Some(cert.clone());
    let target = &install.target;
    let (first, _) = install.run_ok("first");
    // flvpc serves the operator's certificate, not one of its own.
    let journal = target.exec(&["journalctl", "-u", "flvpc", "--no-pager", "-o", "cat"]);
    let fingerprint = openssl_fingerprint(&std::fs::read_to_string(&cert).expect("cert"));
    assert!(
        journal.contains(&format!("certificate SHA-256 fingerprint {fingerprint}")),
        "flvpc does not say it serves the given certificate ({fingerprint}):\n{journal}"
    );
    assert!(target.exec(&["ls", "/var/lib/flvpc"]).lines().all(|f| f != "tls"), "no self-signed certificate made");
    assert!(!String::from_utf8_lossy(&first.stdout).contains(password), "the password is in Ansible's output");
    assert_eq!(target.exec(&["systemctl", "is-active", "flvpc"]).trim(), "active");
    assert!(
        !target.exec(&["systemctl", "show", "flvpc", "-p", "ExecStart"]).contains("postgres://"),
        "the database URL stays out of the command line"
    );
    // The superadmin lives in PostgreSQL, in flvpc's database, owned by flvpc's user.
    let owner = target.exec(&[
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-tA",
        "-d",
        "flvpc",
        "-c",
        "SELECT tableowner FROM pg_tables WHERE tablename = 'users'",
    ]);
    assert_eq!(owner.trim(), "flvpc", "flvpc's tables are its user's");
    let superadmin = target.exec(&[
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-tA",
        "-d",
        "flvpc",
        "-c",
        "SELECT login FROM users WHERE superadmin = 1",
    ]);
    assert_eq!(superadmin.trim(), ADMIN);
    assert!(target.exec(&["ls", "/var/lib/flvpc"]).lines().all(|f| !f.starts_with("flvpc.db")), "no SQLite file");
    install.superadmin_signs_in();
    install.second_run_changes_nothing();
    install.remove();
}

/// `flvpc_database: mariadb`: the playbook makes flvpc's MariaDB database and a user allowed from
/// this host only (the password needs encoding in a URL), the service and `admin init` use it,
/// and a second run changes nothing.
#[test]
fn the_playbook_gives_flvpc_its_own_mariadb_database() {
    let password = "maria p@ss/w:rd%?#";
    let install = Install::new(
        "mariadb",
        serde_json::json!({
            "flvpc_database": "mariadb",
            "flvpc_db_password": password,
        }),
    );
    let target = &install.target;
    let (first, _) = install.run_ok("first");
    assert!(!String::from_utf8_lossy(&first.stdout).contains(password), "the password is in Ansible's output");
    assert_eq!(target.exec(&["systemctl", "is-active", "flvpc"]).trim(), "active");
    assert!(
        !target.exec(&["systemctl", "show", "flvpc", "-p", "ExecStart"]).contains("mysql://"),
        "the database URL stays out of the command line"
    );
    // The superadmin lives in MariaDB, in flvpc's database; flvpc's user may come from 127.0.0.1 only.
    let superadmin =
        target.exec(&["mariadb", "-N", "-B", "flvpc", "-e", "SELECT login FROM users WHERE superadmin = 1"]);
    assert_eq!(superadmin.trim(), ADMIN);
    let hosts = target.exec(&["mariadb", "-N", "-B", "-e", "SELECT host FROM mysql.user WHERE user = 'flvpc'"]);
    assert_eq!(hosts.trim(), "127.0.0.1", "flvpc's database user is local only");
    assert!(target.exec(&["ls", "/var/lib/flvpc"]).lines().all(|f| !f.starts_with("flvpc.db")), "no SQLite file");
    install.superadmin_signs_in();
    install.second_run_changes_nothing();
    install.remove();
}
