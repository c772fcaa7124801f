//! bench/cluster-create: time from the API call until every machine of an
//! N-machine cluster answers SSH (a real `ssh … true` with a member's key, tried once the
//! create operation has succeeded, as the floor's after `docker run` returned), for
//! N = 1, 10 and 30, next to the floor measured in the same run: `docker network
//! create` and plain `docker run` of the same image with the same settings, all
//! at once, the key copied in with `docker cp`, waited for in the same way.
//! Then stopping and deleting the same cluster (`POST …/cluster/stop`, `…/cluster/delete`
//! until the operation succeeds) next to `docker stop` and `docker rm -f` + `docker network
//! rm` of the floor's containers.
//!
//! `--hosts 2` (issue 13) measures N = 10 (or `--sizes`) spread over two hosts instead: a testbed
//! of two extra Docker engines in network namespaces, flvpc on the first with the second added as
//! a host, each machine reached at its host's address and published port; next to the one-host
//! run of the same N (this program's usual flvpc on the main engine) and the floor, interleaved.
//! Everything it made goes at the end, also on an error (see `two_hosts.rs`).
//!
//! `--compare-images OLD,NEW` measures only the floor, with two images interleaved in one
//! run: wall time until every machine answers SSH and the CPU their containers used by then
//! (from their cgroups), which is how a change of the image recipe is judged.
//!
//! Usage (as root, dockerd running, image flvpc/debian:12 built):
//!   cargo run --release -p flvpc-bench --bin cluster-create -- [--runs 3] [--sizes 1,10,30] [--flvpc target/release/flvpc]
//!     [--image IMAGE] [--compare-images OLD,NEW] [--hosts 2]
//! Traffic goes only to 127.0.0.1 and to the containers the benchmark creates.

use anyhow::{bail, Context, Result};
use flvpc_bench::{login, run, Flvpc};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_IMAGE: &str = "flvpc/debian:12";
const PORT_BASE: u16 = 25000;
const FLOOR_PORT_BASE: u16 = 26000;

#[path = "../../crates/flvpc-host/tests/support/testbed.rs"]
mod testbed;
#[path = "two_hosts.rs"]
mod two_hosts;

struct Options {
    runs: usize,
    sizes: Vec<usize>,
    flvpc: PathBuf,
    image: String,
    compare: Option<(String, String)>,
    /// `--hosts 2`: the two-host comparison instead of the one-host sizes.
    two_hosts: bool,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        runs: 3,
        sizes: vec![1, 10, 30],
        flvpc: PathBuf::from("target/release/flvpc"),
        image: DEFAULT_IMAGE.to_owned(),
        compare: None,
        two_hosts: false,
    };
    let mut sizes_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => opts.runs = args.next().context("--runs N")?.parse()?,
            "--sizes" => {
                sizes_given = true;
                opts.sizes =
                    args.next().context("--sizes 1,10,30")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--flvpc" => opts.flvpc = PathBuf::from(args.next().context("--flvpc PATH")?),
            "--image" => opts.image = args.next().context("--image IMAGE")?,
            "--compare-images" => {
                let both = args.next().context("--compare-images OLD,NEW")?;
                let (old, new) = both.split_once(',').context("--compare-images OLD,NEW")?;
                opts.compare = Some((old.to_owned(), new.to_owned()));
            }
            "--hosts" => match args.next().as_deref() {
                Some("1") => opts.two_hosts = false,
                Some("2") => opts.two_hosts = true,
                _ => bail!("--hosts 1 or --hosts 2 (a testbed of two engines)"),
            },
            other => bail!("unknown argument {other:?}"),
        }
    }
    if opts.two_hosts && !sizes_given {
        // Issue 13's size: enough machines to spread, few enough for a small host.
        opts.sizes = vec![10];
    }
    if opts.two_hosts && opts.compare.is_some() {
        bail!("--hosts 2 and --compare-images measure different things: give one of them");
    }
    if opts.compare.is_none() && !opts.flvpc.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p flvpc) or pass --flvpc PATH",
            opts.flvpc.display()
        );
    }
    Ok(opts)
}

fn ssh_ok(key: &Path, address: &str, port: u16) -> bool {
    Command::new("ssh")
        .args(["-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string())
        .arg(format!("root@{address}"))
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The SSH targets of ports published on loopback.
fn loopback(ports: impl Iterator<Item = u16>) -> Vec<(String, u16)> {
    ports.map(|port| ("127.0.0.1".to_owned(), port)).collect()
}

/// Waits until every (address, port) answers a real SSH login, polling them concurrently.
async fn wait_all_ssh(key: &Path, targets: &[(String, u16)], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut tasks = Vec::new();
    for (address, port) in targets.iter().cloned() {
        let key = key.to_path_buf();
        tasks.push(tokio::task::spawn_blocking(move || {
            while Instant::now() < deadline {
                if ssh_ok(&key, &address, port) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        }));
    }
    for task in tasks {
        if !task.await? {
            bail!("a machine did not answer SSH within {timeout:?}");
        }
    }
    Ok(())
}

/// Create, stop and delete times of one cluster.
#[derive(Clone, Copy)]
struct Times {
    create: Duration,
    stop: Duration,
    delete: Duration,
}

/// flvpc: from POST create until every machine answers SSH; then stop and delete, each
/// from the POST until its operation succeeded.
async fn flvpc_once(server: &Flvpc, token: &str, ns: &str, n: usize, key: &Path, image: &str) -> Result<Times> {
    let spec = format!(
        "machines:\n- count: {n}\n  spec:\n    name: m%d\n    image: {image}\n    portMappings:\n    - containerPort: 22\n      hostPort: {PORT_BASE}\n    ignite: {{cpus: 1, memory: 256MB}}\n"
    );
    server.put_spec(token, ns, spec).await?;
    let started = Instant::now();
    let op =
        server.call(token, reqwest::Method::POST, &format!("/api/v1/namespaces/{ns}/cluster/create"), None).await?;
    // As a person watching the panel would (and as the floor does after `docker run` returned):
    // SSH is tried once flvpc says the machines run. Tried from the moment of the POST, one probe
    // lands in Docker's start window, where a connection to the published port hangs for about a
    // second, so N = 1 measured the probe, not flvpc (1.33 s against 0.69 s on a quiet host).
    server.wait_op(token, op["operation"].as_str().context("operation id")?).await?;
    let targets = loopback((0..n).map(|i| PORT_BASE + i as u16));
    wait_all_ssh(key, &targets, Duration::from_secs(300)).await?;
    let create = started.elapsed();
    let started = Instant::now();
    server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/stop")).await?;
    let stop = started.elapsed();
    let started = Instant::now();
    server.act(token, &format!("/api/v1/namespaces/{ns}/cluster/delete")).await?;
    let delete = started.elapsed();
    Ok(Times { create, stop, delete })
}

/// The CPU time a container has used so far, from its cgroup (cgroup v2, the hybrid
/// layout's unified tree, or v1's cpuacct); `None` where none of them is found.
fn container_cpu(id: &str) -> Option<Duration> {
    let v2 = [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
        format!("/sys/fs/cgroup/unified/docker/{id}/cpu.stat"),
        format!("/sys/fs/cgroup/unified/system.slice/docker-{id}.scope/cpu.stat"),
    ];
    for path in &v2 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())?;
            return Some(Duration::from_micros(usec));
        }
    }
    let v1 = [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
    ];
    v1.iter().find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok()).map(Duration::from_nanos)
}

/// One floor run: its times and the CPU its containers used until they all answered SSH.
struct Floor {
    times: Times,
    cpu: Option<Duration>,
}

/// The cgroups a floor machine gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FloorCgroups {
    /// footloose's way: the host's cgroup tree read-only, so systemd in the machine makes none
    /// of its own (and boots faster than a machine that does).
    Footloose,
    /// flvpc's own settings: the machine's delegated cgroup subtree (prepared as flvpc does, with
    /// `flvpc_host::cgroup`), its cgroup parent and flvpc's default PID limit; what plain Docker
    /// costs for exactly the machine flvpc makes.
    Flvpc,
}

/// The floor: `docker run` of the same image and settings, all at once, key copied in with
/// `docker cp`; then `docker stop` and `docker rm -f` of all of them (each one command, which
/// Docker's client runs in parallel) and `docker network rm`.
async fn floor_once(n: usize, key: &Path, authorized_keys: &Path, image: &str, cgroups: FloorCgroups) -> Result<Floor> {
    let layout = flvpc_host::cgroup::CgroupLayout::detect();
    let machine = |i: usize| flvpc_model::MachineKey::parse("benchfloor", &format!("m{i}"));
    let mut cgroup_args: Vec<Vec<String>> = Vec::new();
    for i in 0..n {
        let mut args = Vec::new();
        match cgroups {
            FloorCgroups::Footloose => args.extend(["-v".into(), "/sys/fs/cgroup:/sys/fs/cgroup:ro".into()]),
            FloorCgroups::Flvpc => {
                let machine = machine(i)?;
                layout.prepare(&machine).context("prepare the floor machine's cgroups (run as root)")?;
                if let Some(parent) = layout.parent(&machine) {
                    args.extend(["--cgroup-parent".into(), parent]);
                }
                for bind in layout.binds(&machine) {
                    args.extend(["-v".into(), bind]);
                }
                args.extend(["--pids-limit".into(), flvpc_server::reconcile::DEFAULT_PIDS_LIMIT.to_string()]);
                args.extend(["-e".into(), "container=docker".into()]);
            }
        }
        cgroup_args.push(args);
    }
    let network = "flvpc-bench-floor";
    let _ = Command::new("docker").args(["network", "rm", network]).output();
    // The network is part of the work (flvpc makes one per namespace), so it is timed too.
    let started = Instant::now();
    run(Command::new("docker").args(["network", "create", network]))?;
    let mut tasks = Vec::new();
    for i in 0..n {
        let authorized_keys = authorized_keys.to_path_buf();
        let image = image.to_owned();
        let cgroup_args = cgroup_args[i].clone();
        tasks.push(tokio::task::spawn_blocking(move || -> Result<String> {
            let name = format!("flvpc-bench-floor-{i}");
            let port = FLOOR_PORT_BASE + i as u16;
            let id = run(Command::new("docker")
                .args([
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--hostname",
                    &format!("m{i}"),
                    "--network",
                    network,
                    "--tmpfs",
                    "/run",
                    "--tmpfs",
                    "/run/lock",
                    "--tmpfs",
                    "/tmp",
                    "--cpu-shares",
                    "1024",
                    "--memory",
                    "256m",
                    "--memory-swap",
                    "256m",
                    "--stop-signal",
                    "SIGRTMIN+3",
                    "-p",
                    &format!("127.0.0.1:{port}:22"),
                ])
                .args(&cgroup_args)
                .args([&image, "/sbin/init"]))?;
            run(Command::new("docker")
                .arg("cp")
                .arg(&authorized_keys)
                .arg(format!("{name}:/root/.ssh/authorized_keys")))?;
            Ok(id.trim().to_owned())
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await??);
    }
    let targets = loopback((0..n).map(|i| FLOOR_PORT_BASE + i as u16));
    wait_all_ssh(key, &targets, Duration::from_secs(300)).await?;
    let create = started.elapsed();
    let cpu = ids.iter().map(|id| container_cpu(id)).sum::<Option<Duration>>();
    let names: Vec<String> = (0..n).map(|i| format!("flvpc-bench-floor-{i}")).collect();
    // flvpc's default stop timeout is 10 s; Docker's own default is the same.
    let started = Instant::now();
    run(Command::new("docker").args(["stop", "-t", "10"]).args(&names))?;
    let stop = started.elapsed();
    let started = Instant::now();
    run(Command::new("docker").args(["rm", "-f"]).args(&names))?;
    run(Command::new("docker").args(["network", "rm", network]))?;
    let delete = started.elapsed();
    if cgroups == FloorCgroups::Flvpc {
        for i in 0..n {
            // Best effort, after the timing: the kernel may still hold an emptied cgroup a moment.
            let machine = machine(i)?;
            for _ in 0..20 {
                if layout.cleanup(&machine) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(Floor { times: Times { create, stop, delete }, cpu })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn secs(values: &[Duration]) -> String {
    values.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" ")
}

/// One line of the table: medians, their ratio, and every run.
fn row(label: &str, ours: &[Duration], floor: &[Duration]) {
    let (m_ours, m_floor) = (median(ours.to_vec()), median(floor.to_vec()));
    println!(
        "{label:>12}  {:>11.2}s  {:>11.2}s  {:>6.2}x   {} / {}",
        m_ours.as_secs_f64(),
        m_floor.as_secs_f64(),
        m_ours.as_secs_f64() / m_floor.as_secs_f64(),
        secs(ours),
        secs(floor)
    );
}

/// `--compare-images`: the floor with two images, interleaved, at each size.
async fn compare_images(opts: &Options, old: &str, new: &str, key: &Path, authorized_keys: &Path) -> Result<()> {
    println!(
        "image floors: `docker run` of N machines at once until each answers `ssh root@… true`; runs: {}",
        opts.runs
    );
    println!("old = {old}, new = {new}; CPU = what the containers used by then (cgroups)");
    println!(
        "{:>4}  {:>10}  {:>10}  {:>6}  {:>10}  {:>10}  {:>6}   old runs / new runs (s)",
        "N", "old wall", "new wall", "ratio", "old CPU", "new CPU", "ratio"
    );
    for &n in &opts.sizes {
        let (mut wall_old, mut wall_new, mut cpu_old, mut cpu_new) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..opts.runs {
            // Interleaved, so both see the same machine noise.
            let a = floor_once(n, key, authorized_keys, old, FloorCgroups::Footloose).await?;
            let b = floor_once(n, key, authorized_keys, new, FloorCgroups::Footloose).await?;
            wall_old.push(a.times.create);
            wall_new.push(b.times.create);
            cpu_old.extend(a.cpu);
            cpu_new.extend(b.cpu);
        }
        let (w_old, w_new) = (median(wall_old.clone()), median(wall_new.clone()));
        let cpu = |v: &Vec<Duration>| (!v.is_empty()).then(|| median(v.clone()));
        let (c_old, c_new) = (cpu(&cpu_old), cpu(&cpu_new));
        let show = |c: Option<Duration>| c.map_or("n/a".to_owned(), |c| format!("{:.2}s", c.as_secs_f64()));
        let ratio = match (c_old, c_new) {
            (Some(o), Some(n)) => format!("{:.2}x", n.as_secs_f64() / o.as_secs_f64()),
            _ => "n/a".to_owned(),
        };
        println!(
            "{n:>4}  {:>9.2}s  {:>9.2}s  {:>5.2}x  {:>10}  {:>10}  {:>6}   {} / {}",
            w_old.as_secs_f64(),
            w_new.as_secs_f64(),
            w_new.as_secs_f64() / w_old.as_secs_f64(),
            show(c_old),
            show(c_new),
            ratio,
            secs(&wall_old),
            secs(&wall_new)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = options()?;
    let images: Vec<&str> = match &opts.compare {
        Some((old, new)) => vec![old, new],
        None => vec![&opts.image],
    };
    for image in &images {
        run(Command::new("docker").args(["image", "inspect", image]))
            .with_context(|| format!("image {image} not found: build it first (flvpc image build)"))?;
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let key = data.join("id");
    run(Command::new("ssh-keygen").args(["-q", "-N", "", "-t", "ed25519", "-f"]).arg(&key))?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let authorized_keys = data.join("authorized_keys");
    std::fs::write(&authorized_keys, &public)?;
    if let Some((old, new)) = &opts.compare {
        return compare_images(&opts, old, new, &key, &authorized_keys).await;
    }

    if opts.two_hosts {
        two_hosts::check_tools()?;
    }
    let server = Flvpc::start(&opts.flvpc, data, &["--publish-address", "127.0.0.1"]).await?;
    let admin = server.admin.clone();
    use reqwest::Method;
    let user = bench_user(&server, &public).await?;
    if opts.two_hosts {
        let far_data = data.join("two-hosts");
        std::fs::create_dir_all(&far_data)?;
        let two = two_hosts::TwoHosts::start(&opts.flvpc, &far_data, &opts.image, &public).await?;
        let measured = compare_hosts(&opts, &server, &user, &two, &key, &authorized_keys).await;
        two.cleanup().await;
        if measured.is_err() {
            leave_main_engine_clean(&opts, &server, &user).await;
        }
        return measured;
    }

    let image = opts.image.as_str();
    println!("cluster-create: API call until every machine answers `ssh root@… true`; runs per size: {}", opts.runs);
    println!("floor: `docker run` of {image}, same settings, all at once, key via `docker cp`, same SSH wait");
    println!("  (same settings: flvpc's delegated cgroup subtree, cgroup parent and PID limit; the `create ro` row");
    println!("  compares with footloose's way instead, the host's cgroups read-only, where systemd makes none)");
    println!("then stop (floor: one `docker stop -t 10`) and delete (floor: one `docker rm -f`, `docker network rm`)");
    println!(
        "{:>12}  {:>12}  {:>12}  {:>7}   flvpc runs / floor runs (s)",
        "N / step", "flvpc median", "floor median", "ratio"
    );
    for &n in &opts.sizes {
        let ns = format!("bench{n}");
        bench_namespace(&server, &ns).await?;
        let mut ours = Vec::new();
        let mut floor = Vec::new();
        let mut footloose = Vec::new();
        for _ in 0..opts.runs {
            // Interleaved, so all three see the same machine noise.
            ours.push(flvpc_once(&server, &user, &ns, n, &key, image).await?);
            floor.push(floor_once(n, &key, &authorized_keys, image, FloorCgroups::Flvpc).await?.times);
            footloose.push(floor_once(n, &key, &authorized_keys, image, FloorCgroups::Footloose).await?.times);
        }
        let pick = |v: &[Times], f: fn(&Times) -> Duration| v.iter().map(f).collect::<Vec<_>>();
        row(&format!("{n} create"), &pick(&ours, |t| t.create), &pick(&floor, |t| t.create));
        row(&format!("{n} stop"), &pick(&ours, |t| t.stop), &pick(&floor, |t| t.stop));
        row(&format!("{n} delete"), &pick(&ours, |t| t.delete), &pick(&floor, |t| t.delete));
        row(&format!("{n} create ro"), &pick(&ours, |t| t.create), &pick(&footloose, |t| t.create));
        server.call(&admin, Method::DELETE, &format!("/api/v1/namespaces/{ns}"), None).await?;
    }
    Ok(())
}

/// A user `bench` with the key `public`, signed in: its token.
async fn bench_user(server: &Flvpc, public: &str) -> Result<String> {
    let admin = &server.admin;
    let body = json!({"login": "bench", "password": "bench-password"});
    server.call(admin, reqwest::Method::POST, "/api/v1/users", Some(body)).await?;
    let user = login(&server.client, &server.base, "bench", "bench-password").await?;
    let body = json!({"name": "bench", "public_key": public.trim()});
    server.call(&user, reqwest::Method::POST, "/api/v1/keys", Some(body)).await?;
    Ok(user)
}

/// A namespace `ns` with `bench` as its admin.
async fn bench_namespace(server: &Flvpc, ns: &str) -> Result<()> {
    let admin = &server.admin;
    server.call(admin, reqwest::Method::POST, "/api/v1/namespaces", Some(json!({"name": ns}))).await?;
    let member = format!("/api/v1/namespaces/{ns}/members/bench");
    server.call(admin, reqwest::Method::PUT, &member, Some(json!({"role": "admin"}))).await?;
    Ok(())
}

/// `--hosts 2`: at each size, flvpc over two hosts, flvpc on one host (the main engine) and the
/// floor, interleaved so all three see the same machine noise.
async fn compare_hosts(
    opts: &Options,
    server: &Flvpc,
    user: &str,
    two: &two_hosts::TwoHosts,
    key: &Path,
    authorized_keys: &Path,
) -> Result<()> {
    let image = opts.image.as_str();
    println!("cluster-create --hosts 2: API call until every machine answers `ssh root@… true`; runs: {}", opts.runs);
    println!("two-host: flvpc on testbed engine 0 with engine 1 added as host `far` (each in its own network");
    println!("  namespace), machines reached at their host's address and published port (`ssh.direct`)");
    println!("one-host: flvpc on the main engine, machines at 127.0.0.1 (this program's usual run)");
    println!("floor: `docker run` of {image} on the main engine, flvpc's settings, all at once");
    for &n in &opts.sizes {
        let (ns_one, ns_two) = (format!("bench{n}"), format!("bench{n}h2"));
        bench_namespace(server, &ns_one).await?;
        bench_namespace(&two.server, &ns_two).await?;
        let (mut one, mut far, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=opts.runs {
            one.push(flvpc_once(server, user, &ns_one, n, key, image).await?);
            let (times, notes) = two.once(&ns_two, n, key, image).await?;
            println!(
                "  N = {n}, run {run}: two-host placement {}; no container left {:.2} s after the delete succeeded",
                show_placement(&notes.placement),
                notes.delete_settled.as_secs_f64()
            );
            for failure in &notes.delete_failures {
                println!("    two-host cluster/delete failed and was asked again: {failure}");
            }
            if notes.placement.len() < 2 {
                bail!("the cluster of {n} was not spread over both hosts: {:?}", notes.placement);
            }
            far.push(times);
            floor.push(floor_once(n, key, authorized_keys, image, FloorCgroups::Flvpc).await?.times);
        }
        println!(
            "{:>12}  {:>12}  {:>12}  {:>7}   two-host runs / one-host runs (s)",
            "N / step", "two-host med", "one-host med", "ratio"
        );
        let pick = |v: &[Times], f: fn(&Times) -> Duration| v.iter().map(f).collect::<Vec<_>>();
        row(&format!("{n} create"), &pick(&far, |t| t.create), &pick(&one, |t| t.create));
        row(&format!("{n} stop"), &pick(&far, |t| t.stop), &pick(&one, |t| t.stop));
        row(&format!("{n} delete"), &pick(&far, |t| t.delete), &pick(&one, |t| t.delete));
        println!(
            "{:>12}  {:>12}  {:>12}  {:>7}   one-host runs / floor runs (s)",
            "N / step", "one-host med", "floor median", "ratio"
        );
        row(&format!("{n} create"), &pick(&one, |t| t.create), &pick(&floor, |t| t.create));
        row(&format!("{n} stop"), &pick(&one, |t| t.stop), &pick(&floor, |t| t.stop));
        row(&format!("{n} delete"), &pick(&one, |t| t.delete), &pick(&floor, |t| t.delete));
        server.call(&server.admin, reqwest::Method::DELETE, &format!("/api/v1/namespaces/{ns_one}"), None).await?;
        let path = format!("/api/v1/namespaces/{ns_two}");
        two.server.call(&two.server.admin, reqwest::Method::DELETE, &path, None).await?;
    }
    Ok(())
}

/// `local 5, far 5`.
fn show_placement(placement: &BTreeMap<String, usize>) -> String {
    placement.iter().map(|(host, count)| format!("{host} {count}")).collect::<Vec<_>>().join(", ")
}

/// After a failed `--hosts 2` run, best effort: what it made on the main engine goes (the one-host
/// clusters, the floor's containers and network); the testbed is cleaned by its own code.
async fn leave_main_engine_clean(opts: &Options, server: &Flvpc, user: &str) {
    for &n in &opts.sizes {
        let _ = server.act(user, &format!("/api/v1/namespaces/bench{n}/cluster/delete")).await;
        let names: Vec<String> = (0..n).map(|i| format!("flvpc-bench-floor-{i}")).collect();
        let _ = Command::new("docker").args(["rm", "-f"]).args(&names).output();
    }
    let _ = Command::new("docker").args(["network", "rm", "flvpc-bench-floor"]).output();
}
