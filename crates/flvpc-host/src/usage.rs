//! What a running machine uses, read straight from the kernel: the container's
//! cgroup v1 counters (CPU time, memory, OOM kills) and its network namespace's
//! interface counters. Cheap enough to read every few seconds for every machine.

use std::path::{Path, PathBuf};

/// Counters of one machine at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawUsage {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use (without reclaimable page cache), in bytes.
    pub memory_bytes: u64,
    /// Bytes received on the machine's interfaces (loopback excluded).
    pub net_rx_bytes: u64,
    /// Bytes sent.
    pub net_tx_bytes: u64,
    /// Processes the kernel killed for exceeding the memory limit.
    pub oom_kills: u64,
    /// How often the machine's memory reached its limit (`memory.failcnt`): an OOM kill
    /// caused by the limit moves it, so an unchanged count lets a reading skip the OOM walk.
    pub limit_hits: u64,
}

/// Where a container's cgroup directory is in one controller's hierarchy: where the kernel
/// says its PID 1 is (`/proc/<pid>/cgroup`; machines live under flvpc's own parent), else
/// Docker's default places for the cgroupfs driver (`docker/<id>`) or its systemd driver
/// (`system.slice/docker-<id>.scope`).
fn cgroup_dir(root: &Path, controller: &str, container_id: &str, proc_cgroup: Option<&str>) -> Option<PathBuf> {
    let from_proc =
        proc_cgroup.and_then(|text| controller_path(text, controller)).filter(|rel| rel.contains(container_id));
    from_proc
        .into_iter()
        .chain([format!("docker/{container_id}"), format!("system.slice/docker-{container_id}.scope")])
        .map(|rel| root.join(controller).join(rel.trim_start_matches('/')))
        .find(|p| p.is_dir())
}

/// The path of `controller` in a `/proc/<pid>/cgroup` text (`4:memory:/flvpc/m-1/abc`).
fn controller_path(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then(|| path.to_owned())
    })
}

fn read_u64(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sums received and sent bytes over the interfaces of `/proc/<pid>/net/dev`, loopback excluded,
/// and a microVM runner's bridge and tap too: a VM's traffic crosses its runner's `eth0` once and
/// the tap again (machine containers cannot make interfaces: they have no `NET_ADMIN`).
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let skipped = ["lo", crate::vm::runner::BRIDGE, crate::vm::runner::TAP];
    text.lines().skip(2).fold((0, 0), |(rx, tx), line| {
        let Some((name, counters)) = line.split_once(':') else { return (rx, tx) };
        if skipped.contains(&name.trim()) {
            return (rx, tx);
        }
        let fields: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        match (fields.first(), fields.get(8)) {
            (Some(r), Some(t)) => (rx + r, tx + t),
            _ => (rx, tx),
        }
    })
}

/// OOM kills in a memory cgroup and every cgroup below it. cgroup v1 counts a kill only in
/// the cgroup of the killed process, and the machine's systemd puts processes in child
/// cgroups (`system.slice`, `user.slice`), so the whole subtree is summed (depth-bounded).
fn oom_kills_under(dir: &Path, depth: usize) -> u64 {
    let own = std::fs::read_to_string(dir.join("memory.oom_control"))
        .ok()
        .and_then(|s| stat_value(&s, "oom_kill"))
        .unwrap_or(0);
    if depth >= 6 {
        return own;
    }
    let children = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| oom_kills_under(&e.path(), depth + 1))
                .sum::<u64>()
        })
        .unwrap_or(0);
    own + children
}

/// Whether `pid` is still the PID 1 of the container `container_id`: the kernel has it in a
/// cgroup of that container and it is PID 1 in its own PID namespace. Lets a sampler keep a
/// PID between rounds instead of asking the engine again; a restarted container fails this.
pub fn is_container_init(pid: u32, container_id: &str) -> bool {
    let in_container =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| text.contains(container_id));
    in_container
        && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|ids| ids.split_whitespace().last())
                == Some("1")
        })
}

/// Reads the counters of the container `container_id` whose PID 1 is `pid` on the host,
/// under the cgroup root `root` (normally `/sys/fs/cgroup`). None when the container is gone.
///
/// The OOM kill count walks the machine's whole cgroup subtree; with the `previous` reading of
/// the same container it is walked only if the machine hit its memory limit since (the kills
/// its limit causes), else `previous`'s count is kept. Kills by the host's own OOM killer do not
/// move that counter: callers pass no `previous` now and then to count those too.
pub fn read_usage(root: &Path, container_id: &str, pid: Option<u32>, previous: Option<&RawUsage>) -> Option<RawUsage> {
    let proc_cgroup = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok());
    let cpu = cgroup_dir(root, "cpuacct", container_id, proc_cgroup.as_deref())?;
    let memory = cgroup_dir(root, "memory", container_id, proc_cgroup.as_deref())?;
    read_usage_in(&cpu, &memory, pid, previous)
}

/// A container's init process as a sampler keeps it between rounds: the PID with its start
/// time, and the container's cgroup directories, found once. A PID and its start time name one
/// process for good, so a restarted container (a new init) or a reused PID is noticed by
/// [`ContainerInit::is_current`], which reads one short file where finding took three reads and
/// two lookups (issue 9: the sampler's file reads were a quarter of an idle server's CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInit {
    pid: u32,
    started: u64,
    cpu: PathBuf,
    memory: PathBuf,
}

impl ContainerInit {
    /// `pid` (as the engine reported it) if it is the PID 1 of the container `container_id`, with
    /// the container's cgroup directories under `root`.
    pub fn find(root: &Path, container_id: &str, pid: u32) -> Option<Self> {
        let started = start_time(pid)?;
        if !is_container_init(pid, container_id) {
            return None;
        }
        let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok();
        let cpu = cgroup_dir(root, "cpuacct", container_id, proc_cgroup.as_deref())?;
        let memory = cgroup_dir(root, "memory", container_id, proc_cgroup.as_deref())?;
        // Read again after the checks: a process that ended meanwhile is not taken for the init.
        (start_time(pid) == Some(started)).then_some(Self { pid, started, cpu, memory })
    }

    /// The process's PID on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process found is still there (its PID not ended, nor reused since).
    pub fn is_current(&self) -> bool {
        start_time(self.pid) == Some(self.started)
    }

    /// [`read_usage`] of this container, from the directories found.
    pub fn read_usage(&self, previous: Option<&RawUsage>) -> Option<RawUsage> {
        read_usage_in(&self.cpu, &self.memory, Some(self.pid), previous)
    }
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, in clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Counted after the command name's closing parenthesis: the name may hold spaces.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn read_usage_in(cpu: &Path, memory: &Path, pid: Option<u32>, previous: Option<&RawUsage>) -> Option<RawUsage> {
    let cpu_ns = read_u64(cpu.join("cpuacct.usage"))?;
    let usage = read_u64(memory.join("memory.usage_in_bytes")).unwrap_or(0);
    // As `docker stats` does: page cache that can be dropped is not "used".
    let inactive = std::fs::read_to_string(memory.join("memory.stat"))
        .ok()
        .and_then(|s| stat_value(&s, "total_inactive_file"))
        .unwrap_or(0);
    let limit_hits = read_u64(memory.join("memory.failcnt")).unwrap_or(0);
    let oom_kills = match previous {
        Some(p) if p.limit_hits == limit_hits => p.oom_kills,
        _ => oom_kills_under(memory, 0),
    };
    let (net_rx_bytes, net_tx_bytes) = pid
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
        .map(|t| parse_net_dev(&t))
        .unwrap_or((0, 0));
    Some(RawUsage {
        cpu_ns,
        memory_bytes: usage.saturating_sub(inactive),
        net_rx_bytes,
        net_tx_bytes,
        oom_kills,
        limit_hits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_that_is_not_a_containers_init_is_refused() {
        // This test process is PID 1 of no container; a PID that does not exist is refused too.
        assert!(!is_container_init(std::process::id(), "0123456789abcdef"));
        assert!(!is_container_init(u32::MAX, "0123456789abcdef"));
    }

    #[test]
    fn a_process_start_time_is_read_and_a_missing_process_has_none() {
        let mine = start_time(std::process::id()).expect("this process has a start time");
        assert_eq!(start_time(std::process::id()), Some(mine), "the same process, the same time");
        assert_eq!(start_time(u32::MAX), None);
        // Not a container's init: never found, so never kept.
        assert_eq!(ContainerInit::find(Path::new("/sys/fs/cgroup"), "0123456789abcdef", std::process::id()), None);
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    \
                    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                    eth0:    5000      10    0    0    0     0          0         0     7000      12    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (5000, 7000));
        assert_eq!(parse_net_dev(""), (0, 0));
        let runner = format!(
            "{text}    br0:      40       1    0    0    0     0          0         0       40       1    0    0    0     0       0          0\n  \
             tap0:    6900      11    0    0    0     0          0         0     4900       9    0    0    0     0       0          0\n"
        );
        assert_eq!(parse_net_dev(&runner), (5000, 7000), "a VM's traffic counted once, at its runner's eth0");
    }

    #[test]
    fn finds_a_controller_in_proc_cgroup() {
        let text =
            "9:name=systemd:/flvpc/m-1/abc/init.scope\n4:memory:/flvpc/m-1/abc\n2:cpu,cpuacct:/flvpc/m-1/abc\n0::/x\n";
        assert_eq!(controller_path(text, "memory").as_deref(), Some("/flvpc/m-1/abc"));
        assert_eq!(controller_path(text, "cpuacct").as_deref(), Some("/flvpc/m-1/abc"));
        assert_eq!(controller_path(text, "pids"), None);
    }

    #[test]
    fn reads_a_fake_cgroup_tree() {
        let root = tempfile::tempdir().expect("dir");
        let id = "abc123";
        let cpu = root.path().join("cpuacct/docker").join(id);
        let mem = root.path().join("memory/docker").join(id);
        std::fs::create_dir_all(&cpu).expect("mkdir");
        std::fs::create_dir_all(&mem).expect("mkdir");
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").expect("write");
        std::fs::write(mem.join("memory.usage_in_bytes"), "10000000\n").expect("write");
        std::fs::write(mem.join("memory.stat"), "cache 5\ntotal_inactive_file 2000000\n").expect("write");
        std::fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        let session = mem.join("user.slice/session-1.scope");
        std::fs::create_dir_all(&session).expect("mkdir");
        std::fs::write(session.join("memory.oom_control"), "oom_kill_disable 0\noom_kill 2\n").expect("write");
        std::fs::write(mem.join("memory.failcnt"), "7\n").expect("write");
        let usage = read_usage(root.path(), id, None, None).expect("usage");
        assert_eq!(
            usage,
            RawUsage {
                cpu_ns: 123_456_789,
                memory_bytes: 8_000_000,
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                oom_kills: 5,
                limit_hits: 7
            }
        );
        assert_eq!(read_usage(root.path(), "missing", None, None), None);

        // A kill while the limit was not hit again is seen at the next full reading only;
        // one that hit the limit (failcnt moved) at once.
        std::fs::write(session.join("memory.oom_control"), "oom_kill_disable 0\noom_kill 3\n").expect("write");
        assert_eq!(read_usage(root.path(), id, None, Some(&usage)).expect("usage").oom_kills, 5);
        assert_eq!(read_usage(root.path(), id, None, None).expect("usage").oom_kills, 6);
        std::fs::write(mem.join("memory.failcnt"), "8\n").expect("write");
        assert_eq!(read_usage(root.path(), id, None, Some(&usage)).expect("usage").oom_kills, 6);
    }
}
