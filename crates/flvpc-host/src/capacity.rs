//! The host's capacity: CPUs and memory, read from the kernel; and its name.

/// CPUs and memory of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Online CPUs.
    pub cpus: u64,
    /// Total memory in MiB.
    pub memory_mb: u64,
    /// Size of the file system holding Docker's data (`/var/lib/docker`, else `/`), in GiB.
    pub disk_gb: u64,
}

/// Reads the host's CPUs and memory (`/proc/meminfo`'s MemTotal).
pub fn host_capacity() -> Capacity {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
    let memory_mb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_total_mb(&t)).unwrap_or(0);
    let disk_gb = ["/var/lib/docker", "/"].into_iter().find_map(disk_size_gb).unwrap_or(0);
    Capacity { cpus, memory_mb, disk_gb }
}

/// Kernel limits that systemd machines run into, with the value each needs (`scripts/dev.sh` sets them).
const MACHINE_LIMITS: [(&str, u64); 3] = [
    ("fs/inotify/max_user_instances", 8192),
    ("fs/inotify/max_user_watches", 1_048_576),
    ("kernel/keys/maxkeys", 20_000),
];

/// Warnings for kernel limits too low for many systemd machines: Debian's defaults stop
/// machines from booting at about 30 of them.
pub fn host_limit_warnings() -> Vec<String> {
    limit_warnings(|key| std::fs::read_to_string(format!("/proc/sys/{key}")).ok()?.trim().parse().ok())
}

fn limit_warnings(read: impl Fn(&str) -> Option<u64>) -> Vec<String> {
    MACHINE_LIMITS
        .iter()
        .filter_map(|(key, want)| {
            let have = read(key)?;
            (have < *want).then(|| {
                let name = key.replace('/', ".");
                format!("{name} is {have}: systemd machines need more (about 30 machines at most); run `sysctl -w {name}={want}` (scripts/dev.sh does)")
            })
        })
        .collect()
}

/// The size of the file system at `path`, from coreutils' `df` (argv, no shell).
fn disk_size_gb(path: &str) -> Option<u64> {
    let out = std::process::Command::new("df").args(["--output=size", "-B1G", path]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

fn mem_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The host's name as the kernel knows it (`hostname`), when it has one: the self-signed TLS
/// certificate names it so that `https://<host name>:5555` matches.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_limits_are_named_with_the_fix() {
        let warnings = limit_warnings(|key| Some(if key.ends_with("max_user_instances") { 128 } else { 10_000_000 }));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("fs.inotify.max_user_instances is 128") && warnings[0].contains("sysctl -w"),
            "{warnings:?}"
        );
        assert!(limit_warnings(|_| None).is_empty(), "unreadable limits are not guessed at");
    }

    #[test]
    fn reads_meminfo() {
        assert_eq!(mem_total_mb("MemTotal:       24600000 kB\nMemFree: 1 kB\n"), Some(24023));
        assert_eq!(mem_total_mb("nothing"), None);
        let host = host_capacity();
        assert!(host.cpus >= 1 && host.memory_mb > 0 && host.disk_gb > 0, "{host:?}");
    }
}
