//! bench/ssh-gateway: the flvpc SSH gateway as a jump host, measured in one run on
//! loopback against OpenSSH's sshd as the jump host (Debian's openssh-server,
//! started here on a loopback port with a temporary config) and against a direct
//! connection to the machine's host port. Throughput of a 256 MiB stream into
//! the machine (`cat > /dev/null`) and connection setup (`ssh … true`), medians
//! and ratios. All three use the same OpenSSH client and options.
//!
//! Usage (as root, dockerd running, image built, openssh-server installed):
//!   cargo run --release -p flvpc-bench --bin ssh-gateway -- [--runs 5] [--mib 256] [--flvpc target/release/flvpc]
//!     [--idle 300]  (idle gateway connections for the memory check; 0 skips it)

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
    let fields = stat_fields(&format!("/proc/{pid}/stat"))?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of a process and of its children that ended and were reaped (sshd's connections).
fn tree_cpu_time(pid: u32) -> Option<Duration> {
    let fields = stat_fields(&format!("/proc/{pid}/stat"))?;
    let ticks = fields.get(11..15)?.iter().map(|f| f.parse::<u64>().ok()).sum::<Option<u64>>()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The fields of a /proc stat file after the command name (which is in parentheses and may
/// contain spaces): index 0 is the state, 1 the parent's PID.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// The PIDs whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(&format!("/proc/{pid}/stat")).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

/// The CPU time a container has used so far, from the cgroup of its first process (v1's
/// cpuacct, or v2): flvpc puts machines under a cgroup parent of its own.
fn container_cpu(init_pid: u32) -> Option<Duration> {
    let cgroups = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "cpuacct") {
            let usage = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")).ok()?;
            return usage.trim().parse::<u64>().ok().map(Duration::from_nanos);
        }
        if controllers.is_empty() {
            if let Ok(text) = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.stat")) {
                let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())?;
                return Some(Duration::from_micros(usec));
            }
        }
    }
    None
}

/// The first process of the running container with this IP address.
fn container_with_ip(ip: &str) -> Result<u32> {
    let ids = run(Command::new("docker").args(["ps", "-q", "--no-trunc"]))?;
    for id in ids.split_whitespace() {
        let found = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            id,
        ]))?;
        let mut words = found.split_whitespace();
        let pid = words.next().and_then(|p| p.parse::<u32>().ok());
        if let (Some(pid), true) = (pid, words.any(|x| x == ip)) {
            return Ok(pid);
        }
    }
    bail!("no running container has the address {ip}")
}

/// Where the CPU of one stream went, in milliseconds.
#[derive(Default, Clone, Copy)]
struct StreamCpu {
    /// The client's `ssh` process itself (sampled every 20 ms while it runs).
    inner: f64,
    /// The jump's `ssh -W` process (sampled every 20 ms while it runs; 0 for the direct path).
    outer: f64,
    /// The machine's container: its sshd and `cat`.
    machine: f64,
}

/// Streams `mib` MiB into `cat > /dev/null` on the machine: MiB/s and where the CPU went.
fn throughput(config: &Path, path: &Path3, mib: usize, container: u32) -> Result<(f64, StreamCpu)> {
    let machine_before = container_cpu(container);
    let mut child = ssh(config, path).arg("cat > /dev/null").stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    // The jump's own ssh runs as a child of the client: its CPU is sampled until it ends.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, parent) = (done.clone(), child.id());
        std::thread::spawn(move || {
            let mut last: std::collections::HashMap<u32, Duration> = Default::default();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in std::iter::once(parent).chain(children_of(parent)) {
                    if let Some(cpu) = cpu_time(pid) {
                        last.insert(pid, cpu);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let inner = last.remove(&parent).unwrap_or_default();
            (inner, last.values().sum::<Duration>())
        })
    };
    let chunk = vec![0x5au8; 1024 * 1024];
    let started = Instant::now();
    {
        let mut stdin = child.stdin.take().context("stdin")?;
        for _ in 0..mib {
            stdin.write_all(&chunk)?;
        }
    }
    let status = child.wait()?;
    let speed = mib as f64 / started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (inner, outer) = sampler.join().unwrap_or_default();
    if !status.success() {
        bail!("{}: the stream failed", path.name);
    }
    let ms = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() * 1000.0,
        _ => f64::NAN,
    };
    let cpu = StreamCpu {
        inner: inner.as_secs_f64() * 1000.0,
        outer: outer.as_secs_f64() * 1000.0,
        machine: ms(machine_before, container_cpu(container)),
    };
    Ok((speed, cpu))
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
    let mut idle = 300usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--mib" => mib = args.next().context("--mib N")?.parse()?,
            "--flvpc" => flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            "--idle" => idle = args.next().context("--idle N")?.parse()?,
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
    let container = container_with_ip(&ip)?;
    let mut setup: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut speed: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut cpu: Vec<Vec<StreamCpu>> = vec![Vec::new(); 3];
    // The flvpc server's CPU per stream: unlike throughput, it hardly depends on what else
    // runs on the host, so it shows a change of the relay even on a busy machine.
    let mut gateway_cpu: Vec<f64> = Vec::new();
    // OpenSSH's sshd as jump host: its connection processes, reaped by the listening one.
    let mut sshd_cpu: Vec<f64> = Vec::new();
    let pid = server.process.0.id();
    let sshd_pid = _sshd.0.id();
    for _ in 0..runs {
        // Interleaved so that all three see the same machine noise.
        for (i, path) in paths.iter().enumerate() {
            setup[i].push(setup_time(&client_config, path)?.as_secs_f64() * 1000.0);
            let (before, sshd_before) = (cpu_time(pid), tree_cpu_time(sshd_pid));
            let (mib_s, used) = throughput(&client_config, path, mib, container)?;
            speed[i].push(mib_s);
            cpu[i].push(used);
            if i == 2 {
                if let (Some(before), Some(after)) = (before, cpu_time(pid)) {
                    gateway_cpu.push(after.saturating_sub(before).as_secs_f64() * 1000.0);
                }
            }
            if i == 1 {
                // Time for sshd to reap the connection's processes, which counts their CPU.
                std::thread::sleep(Duration::from_millis(300));
                if let (Some(before), Some(after)) = (sshd_before, tree_cpu_time(sshd_pid)) {
                    sshd_cpu.push(after.saturating_sub(before).as_secs_f64() * 1000.0);
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

    // Where the CPU of a stream goes: a jump adds the client's second ssh (a second encryption)
    // and the jump host's decryption to the direct path's two processes; the direct path's
    // stages leave a core partly idle, which is what lets a jump come near it on 2 cores.
    println!("CPU per {mib} MiB stream, medians (ms): the client's ssh, the jump's ssh -W, the machine (sshd + cat), the jump host");
    let mut totals = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let med = |f: fn(&StreamCpu) -> f64| median_f(cpu[i].iter().map(f).collect());
        let (inner, outer, machine) = (med(|c| c.inner), med(|c| c.outer), med(|c| c.machine));
        let jump = match i {
            2 if !gateway_cpu.is_empty() => median_f(gateway_cpu.clone()),
            1 if !sshd_cpu.is_empty() => median_f(sshd_cpu.clone()),
            _ => 0.0,
        };
        let total = inner + outer + machine + jump;
        totals.push(total);
        println!(
            "{:<12} ssh {inner:>5.0} | ssh -W {outer:>5.0} | machine {machine:>5.0} | jump host {jump:>5.0} | total {total:>5.0}",
            path.name
        );
    }
    println!(
        "CPU per stream vs direct: sshd jump {:.2}x, flvpc jump {:.2}x (with every core busy, throughput would follow 1 / this)",
        totals[1] / totals[0],
        totals[2] / totals[0]
    );
    if !gateway_cpu.is_empty() {
        let runs: Vec<String> = gateway_cpu.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "flvpc server CPU per {mib} MiB stream: median {:.0} ms ({})",
            median_f(gateway_cpu.clone()),
            runs.join(" ")
        );
    }

    if idle > 0 {
        // Memory with many idle, authenticated connections: the server's resident set before and after.
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
    }
    server.act(&user, "/api/v1/namespaces/gwbench/cluster/delete").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}
