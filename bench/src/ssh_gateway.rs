//! bench/ssh-gateway: the flvpc SSH gateway as a jump host, measured in one run on
//! loopback against OpenSSH's sshd as the jump host (Debian's openssh-server,
//! started here on a loopback port with a temporary config) and against a direct
//! connection to the machine's host port. Throughput of a 256 MiB stream into
//! the machine (`cat > /dev/null`) and connection setup (`ssh … true`), medians
//! and ratios. All three use the same OpenSSH client and options.
//!
//! Usage (as root, dockerd running, image built, openssh-server installed):
//!   cargo run --release -p flvpc-bench --bin ssh-gateway -- [--runs 5] [--mib 256] [--flvpc target/release/flvpc]

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One way to reach the machine: the ssh arguments before the remote command.
struct Path3 {
    name: &'static str,
    args: Vec<String>,
}

fn ssh(config: &Path, path: &Path3) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config).args(&path.args);
    cmd
}

fn setup_time(config: &Path, path: &Path3) -> Result<Duration> {
    let started = Instant::now();
    run(ssh(config, path).arg("true"))?;
    Ok(started.elapsed())
}

fn throughput(config: &Path, path: &Path3, mib: usize) -> Result<f64> {
    let mut child = ssh(config, path).arg("cat > /dev/null").stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    let chunk = vec![0x5au8; 1024 * 1024];
    let started = Instant::now();
    {
        let mut stdin = child.stdin.take().context("stdin")?;
        for _ in 0..mib {
            stdin.write_all(&chunk)?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{}: the stream failed", path.name);
    }
    Ok(mib as f64 / started.elapsed().as_secs_f64())
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn api(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = client.request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{path}: HTTP {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut runs = 5usize;
    let mut mib = 256usize;
    let mut flvpc = PathBuf::from("target/release/flvpc");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--mib" => mib = args.next().context("--mib N")?.parse()?,
            "--flvpc" => flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let key = data.join("id");
    run(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(&key))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;

    // flvpc with its gateway, a user, a namespace and one machine.
    let mut init = Command::new(&flvpc)
        .args(["admin", "init", "--login", "admin", "--password-stdin"])
        .env("FLVPC_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    init.stdin.take().context("stdin")?.write_all(b"admin-password\n")?;
    init.wait()?;
    let (http, gw) = (free_port()?, free_port()?);
    let _server = Killed(
        Command::new(&flvpc)
            .args(["serve", "--listen", &format!("127.0.0.1:{http}"), "--ssh-listen", &format!("127.0.0.1:{gw}")])
            .args(["--publish-address", "127.0.0.1", "--port-range", "27000-27099"])
            .args(["--ssh-max-connections-per-user", "1000"])
            .env("FLVPC_DATA_DIR", data)
            .env("FLVPC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("flvpc serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = |l: &'static str, p: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let v: Value = client
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"login": l, "password": p}))
                .send()
                .await?
                .json()
                .await?;
            Ok::<String, anyhow::Error>(v["token"].as_str().context("token")?.to_owned())
        }
    };
    use reqwest::Method;
    let admin = login("admin", "admin-password").await?;
    api(
        &client,
        &base,
        &admin,
        Method::POST,
        "/api/v1/users",
        Some(json!({"login": "bench", "password": "bench-password"})),
    )
    .await?;
    api(&client, &base, &admin, Method::POST, "/api/v1/namespaces", Some(json!({"name": "gwbench"}))).await?;
    api(
        &client,
        &base,
        &admin,
        Method::PUT,
        "/api/v1/namespaces/gwbench/members/bench",
        Some(json!({"role": "admin"})),
    )
    .await?;
    let user = login("bench", "bench-password").await?;
    api(
        &client,
        &base,
        &user,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"name": "bench", "public_key": public.trim()})),
    )
    .await?;
    let spec = "machines:\n- count: 1\n  spec:\n    name: m%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 2, memory: 1GB}\n";
    let resp = client
        .put(format!("{base}/api/v1/namespaces/gwbench/cluster"))
        .bearer_auth(&user)
        .header("content-type", "application/yaml")
        .body(spec)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("spec: {}", resp.text().await?);
    }
    let op = api(&client, &base, &user, Method::POST, "/api/v1/namespaces/gwbench/cluster/create", None).await?;
    let op_id = op["operation"].as_str().context("op")?.to_owned();
    loop {
        let op = api(&client, &base, &user, Method::GET, &format!("/api/v1/operations/{op_id}"), None).await?;
        if op["state"] == "succeeded" {
            break;
        }
        if op["state"] == "failed" {
            bail!("create failed: {op}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let machines = api(&client, &base, &user, Method::GET, "/api/v1/namespaces/gwbench/machines", None).await?;
    let machine = &machines[0];
    let ip = machine["ip"].as_str().context("ip")?.to_owned();
    let host_port = machine["ports"][0]["host_port"].as_u64().context("port")?;

    // OpenSSH's sshd as the jump host, on loopback, with a temporary config.
    let sshd_port = free_port()?;
    let host_key = data.join("sshd_host_key");
    run(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(&host_key))?;
    let authorized = data.join("authorized_keys");
    std::fs::write(&authorized, &public)?;
    let sshd_config = data.join("sshd_config");
    std::fs::write(
        &sshd_config,
        format!(
            "Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             AllowTcpForwarding yes\nPidFile {}\n",
            host_key.display(),
            authorized.display(),
            data.join("sshd.pid").display()
        ),
    )?;
    // sshd's privilege separation directory; Debian makes it at boot only when sshd runs as a service.
    std::fs::create_dir_all("/run/sshd").context("create /run/sshd")?;
    let _sshd = Killed(
        Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&sshd_config)
            .stderr(Stdio::null())
            .spawn()
            .context("start /usr/sbin/sshd (apt-get install openssh-server)")?,
    );

    let client_config = data.join("ssh_config");
    std::fs::write(
        &client_config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n  BatchMode yes\n  ControlMaster no\n",
            key.display()
        ),
    )?;
    let paths = [
        Path3 { name: "direct", args: vec!["-p".into(), host_port.to_string(), "root@127.0.0.1".into()] },
        Path3 {
            name: "sshd jump",
            args: vec!["-J".into(), format!("root@127.0.0.1:{sshd_port}"), format!("root@{ip}")],
        },
        Path3 {
            name: "flvpc jump",
            args: vec!["-J".into(), format!("bench@127.0.0.1:{gw}"), "root@m0.gwbench".into()],
        },
    ];
    // Wait until every path works.
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in &paths {
        while setup_time(&client_config, path).is_err() {
            if Instant::now() > deadline {
                bail!("{} does not work", path.name);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let mut setup: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut speed: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..runs {
        // Interleaved so that all three see the same machine noise.
        for (i, path) in paths.iter().enumerate() {
            setup[i].push(setup_time(&client_config, path)?.as_secs_f64() * 1000.0);
            speed[i].push(throughput(&client_config, path, mib)?);
        }
    }
    println!("ssh-gateway: {runs} runs, {mib} MiB into `cat > /dev/null` on the machine; same OpenSSH client for all");
    println!("{:<12} {:>14} {:>16}   runs (ms | MiB/s)", "path", "setup median", "throughput med");
    let med_setup: Vec<f64> = setup.iter().map(|v| median_f(v.clone())).collect();
    let med_speed: Vec<f64> = speed.iter().map(|v| median_f(v.clone())).collect();
    for (i, path) in paths.iter().enumerate() {
        let s: Vec<String> = setup[i].iter().map(|x| format!("{x:.0}")).collect();
        let t: Vec<String> = speed[i].iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "{:<12} {:>11.0} ms {:>11.0} MiB/s   {} | {}",
            path.name,
            med_setup[i],
            med_speed[i],
            s.join(" "),
            t.join(" ")
        );
    }
    println!(
        "flvpc vs sshd jump: throughput {:.2}x, setup {:.2}x (lower is better); flvpc vs direct: throughput {:.2}x, setup {:.2}x",
        med_speed[2] / med_speed[1],
        med_setup[2] / med_setup[1],
        med_speed[2] / med_speed[0],
        med_setup[2] / med_setup[0]
    );

    // Memory with many idle, authenticated connections: the server's resident set before and after.
    let idle = 300usize;
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let pid = _server.0.id();
    let before = rss(pid);
    let mut held = Vec::new();
    for _ in 0..idle {
        held.push(Killed(
            Command::new("ssh")
                .arg("-F")
                .arg(&client_config)
                .args(["-N", "-p", &gw.to_string(), "bench@127.0.0.1"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ));
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let alive = held.iter_mut().map(|c| c.0.try_wait()).filter(|w| matches!(w, Ok(None))).count();
    let after = rss(pid);
    println!(
        "idle connections: {alive} of {idle} held open; flvpc RSS {} MiB -> {} MiB ({:.0} KiB per connection)",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / alive.max(1) as f64
    );
    drop(held);
    api(&client, &base, &user, Method::POST, "/api/v1/namespaces/gwbench/cluster/delete", None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}
