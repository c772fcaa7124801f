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
use flvpc_bench::{free_port, login, run, Flvpc, Killed};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// CPU time (user + system) a process has used, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
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
    let gw = free_port()?;
    let gw_listen = format!("127.0.0.1:{gw}");
    let server = Flvpc::start(
        &flvpc,
        data,
        &[
            "--ssh-listen",
            &gw_listen,
            "--publish-address",
            "127.0.0.1",
            "--port-range",
            "27000-27099",
            "--ssh-max-connections-per-user",
            "1000",
        ],
    )
    .await?;
    use reqwest::Method;
    let admin = server.admin.clone();
    server
        .call(&admin, Method::POST, "/api/v1/users", Some(json!({"login": "bench", "password": "bench-password"})))
        .await?;
    server.call(&admin, Method::POST, "/api/v1/namespaces", Some(json!({"name": "gwbench"}))).await?;
    server
        .call(&admin, Method::PUT, "/api/v1/namespaces/gwbench/members/bench", Some(json!({"role": "admin"})))
        .await?;
    let user = login(&server.client, &server.base, "bench", "bench-password").await?;
    server
        .call(&user, Method::POST, "/api/v1/keys", Some(json!({"name": "bench", "public_key": public.trim()})))
        .await?;
    let spec = "machines:\n- count: 1\n  spec:\n    name: m%d\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 2, memory: 1GB}\n";
    server.put_spec(&user, "gwbench", spec.to_owned()).await?;
    server.act(&user, "/api/v1/namespaces/gwbench/cluster/create").await?;
    let machines = server.call(&user, Method::GET, "/api/v1/namespaces/gwbench/machines", None).await?;
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
    // The flvpc server's CPU per stream: unlike throughput, it hardly depends on what else
    // runs on the host, so it shows a change of the relay even on a busy machine.
    let mut gateway_cpu: Vec<f64> = Vec::new();
    let pid = server.process.0.id();
    for _ in 0..runs {
        // Interleaved so that all three see the same machine noise.
        for (i, path) in paths.iter().enumerate() {
            setup[i].push(setup_time(&client_config, path)?.as_secs_f64() * 1000.0);
            let before = cpu_time(pid);
            speed[i].push(throughput(&client_config, path, mib)?);
            if i == 2 {
                if let (Some(before), Some(after)) = (before, cpu_time(pid)) {
                    gateway_cpu.push(after.saturating_sub(before).as_secs_f64() * 1000.0);
                }
            }
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

    if !gateway_cpu.is_empty() {
        let runs: Vec<String> = gateway_cpu.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "flvpc server CPU per {mib} MiB stream: median {:.0} ms ({})",
            median_f(gateway_cpu.clone()),
            runs.join(" ")
        );
    }

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
    server.act(&user, "/api/v1/namespaces/gwbench/cluster/delete").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}
