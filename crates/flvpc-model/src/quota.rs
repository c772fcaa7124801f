//! Quotas and admission: whether a change that adds resources fits a
//! namespace's quota and the host's overcommit cap. Pure arithmetic, no IO.

use std::fmt;

/// Resources: asked for, in use, or allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Machines.
    pub machines: u64,
    /// CPUs (as promised by specs; CPU shares, not a cap).
    pub cpus: u64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk in GiB.
    pub disk_gb: u64,
    /// Published host ports.
    pub host_ports: u64,
}

impl Resources {
    /// The sum of two amounts.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            machines: self.machines.saturating_add(other.machines),
            cpus: self.cpus.saturating_add(other.cpus),
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            disk_gb: self.disk_gb.saturating_add(other.disk_gb),
            host_ports: self.host_ports.saturating_add(other.host_ports),
        }
    }

    /// What `after` has more than `self`, field by field (nothing for what shrinks): the growth
    /// admission checks, so that a namespace over a lowered limit may still shrink.
    pub fn growth_to(self, after: Resources) -> Resources {
        Resources {
            machines: after.machines.saturating_sub(self.machines),
            cpus: after.cpus.saturating_sub(self.cpus),
            memory_mb: after.memory_mb.saturating_sub(self.memory_mb),
            disk_gb: after.disk_gb.saturating_sub(self.disk_gb),
            host_ports: after.host_ports.saturating_sub(self.host_ports),
        }
    }
}

/// A namespace's limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Machines.
    pub machines: Option<u64>,
    /// CPUs.
    pub cpus: Option<u64>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// Disk in GiB.
    pub disk_gb: Option<u64>,
    /// Published host ports.
    pub host_ports: Option<u64>,
}

impl fmt::Display for Quota {
    /// Plain words for people and the audit log ("machines 4, CPUs unlimited, …"), never the
    /// struct's Debug text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Quota::default() {
            return f.write_str("no quota (everything unlimited)");
        }
        let fields = [
            ("machines", self.machines, ""),
            ("CPUs", self.cpus, ""),
            ("memory", self.memory_mb, " MB"),
            ("disk", self.disk_gb, " GB"),
            ("host ports", self.host_ports, ""),
        ];
        for (i, (name, limit, unit)) in fields.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match limit {
                Some(limit) => write!(f, "{sep}{name} {limit}{unit}")?,
                None => write!(f, "{sep}{name} unlimited")?,
            }
        }
        Ok(())
    }
}

/// Which resource a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Machines.
    Machines,
    /// CPUs.
    Cpus,
    /// Memory.
    Memory,
    /// Disk.
    Disk,
    /// Host ports.
    HostPorts,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Machines => "machines",
            Resource::Cpus => "cpus",
            Resource::Memory => "memory",
            Resource::Disk => "disk",
            Resource::HostPorts => "host ports",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Resource::Memory => " MB",
            Resource::Disk => " GB",
            _ => "",
        }
    }
}

/// A change that does not fit: the resource, the limit, what is in use and what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Exceeded {
    /// The resource.
    pub resource: Resource,
    /// Whose limit: a namespace's quota, or the host's overcommit cap.
    pub scope: String,
    /// The limit.
    pub limit: u64,
    /// In use before the change (by what the change does not replace).
    pub in_use: u64,
    /// Asked for by the change.
    pub asked: u64,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.resource.unit();
        write!(
            f,
            "{}: {} allows {}{unit}, {}{unit} are in use and {}{unit} more were asked for",
            self.resource.name(),
            self.scope,
            self.limit,
            self.in_use,
            self.asked
        )
    }
}

fn check(resource: Resource, scope: &str, limit: Option<u64>, in_use: u64, asked: u64) -> Result<(), Exceeded> {
    match limit {
        // Asking for nothing more always passes: a namespace over a lowered limit may still shrink.
        Some(limit) if asked > 0 && in_use.saturating_add(asked) > limit => {
            Err(Exceeded { resource, scope: scope.to_owned(), limit, in_use, asked })
        }
        _ => Ok(()),
    }
}

/// Admits `asked` on top of `in_use` under `quota` (of the namespace named `scope`).
/// Exactly at the limit is allowed; a change that asks for nothing always is, so a
/// namespace over a newly lowered quota can still shrink.
pub fn admit(scope: &str, quota: &Quota, in_use: Resources, asked: Resources) -> Result<(), Exceeded> {
    let scope = format!("the quota of namespace {scope}");
    check(Resource::Machines, &scope, quota.machines, in_use.machines, asked.machines)?;
    check(Resource::Cpus, &scope, quota.cpus, in_use.cpus, asked.cpus)?;
    check(Resource::Memory, &scope, quota.memory_mb, in_use.memory_mb, asked.memory_mb)?;
    check(Resource::Disk, &scope, quota.disk_gb, in_use.disk_gb, asked.disk_gb)?;
    check(Resource::HostPorts, &scope, quota.host_ports, in_use.host_ports, asked.host_ports)
}

/// The host's capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCapacity {
    /// CPUs.
    pub cpus: u64,
    /// Memory in MiB.
    pub memory_mb: u64,
}

/// The host-wide overcommit caps: `ratio × capacity` of what all running machines together are
/// promised. The default has no cap (as in the original).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostCaps {
    /// The host's capacity.
    pub capacity: HostCapacity,
    /// CPU cap as a multiple of the host's CPUs; `None`: no cap.
    pub cpu_ratio: Option<f64>,
    /// Memory cap as a multiple of the host's memory; `None`: no cap.
    pub memory_ratio: Option<f64>,
}

impl HostCaps {
    /// Admits `asked` more running resources on top of `running` (all namespaces together).
    pub fn admit(&self, running: Resources, asked: Resources) -> Result<(), Exceeded> {
        admit_host(self.capacity, self.cpu_ratio, self.memory_ratio, running, asked)
    }
}

/// Admits `asked` running resources on top of `running` under the host-wide caps
/// `ratio × capacity` (`None`: no cap, as in the original).
pub fn admit_host(
    capacity: HostCapacity,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    running: Resources,
    asked: Resources,
) -> Result<(), Exceeded> {
    let cap = |ratio: Option<f64>, base: u64| ratio.map(|r| (r * base as f64).floor().max(0.0) as u64);
    let scope = "the host's overcommit cap";
    check(Resource::Cpus, scope, cap(cpu_ratio, capacity.cpus), running.cpus, asked.cpus)?;
    check(Resource::Memory, scope, cap(memory_ratio, capacity.memory_mb), running.memory_mb, asked.memory_mb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(machines: u64, cpus: u64, memory_mb: u64) -> Resources {
        Resources { machines, cpus, memory_mb, disk_gb: 0, host_ports: 0 }
    }

    #[test]
    fn a_quota_reads_as_words_not_as_a_struct() {
        let quota = Quota { machines: Some(4), memory_mb: Some(2048), ..Quota::default() };
        assert_eq!(
            quota.to_string(),
            "machines 4, CPUs unlimited, memory 2048 MB, disk unlimited, host ports unlimited"
        );
        assert_eq!(Quota::default().to_string(), "no quota (everything unlimited)");
    }

    #[test]
    fn exactly_at_the_limit_is_allowed() {
        let quota = Quota { machines: Some(3), cpus: Some(4), memory_mb: Some(4096), ..Quota::default() };
        assert_eq!(admit("team1", &quota, r(2, 2, 2048), r(1, 2, 2048)), Ok(()));
        let err = admit("team1", &quota, r(2, 2, 2048), r(1, 2, 2049)).expect_err("one MB over");
        assert_eq!(err.resource, Resource::Memory);
        assert_eq!(
            err.to_string(),
            "memory: the quota of namespace team1 allows 4096 MB, 2048 MB are in use and 2049 MB more were asked for"
        );
    }

    #[test]
    fn unlimited_is_unlimited() {
        assert_eq!(admit("x", &Quota::default(), r(u64::MAX, u64::MAX, u64::MAX), r(5, 5, 5)), Ok(()));
    }

    #[test]
    fn shrinking_under_a_lowered_quota_is_allowed() {
        // Quota lowered to 2 machines while 5 exist: asking for nothing more passes,
        // asking for one more is refused and says so.
        let quota = Quota { machines: Some(2), ..Quota::default() };
        assert_eq!(admit("x", &quota, r(5, 0, 0), r(0, 0, 0)), Ok(()));
        let err = admit("x", &quota, r(1, 0, 0), r(2, 0, 0)).expect_err("3 > 2");
        assert_eq!((err.limit, err.in_use, err.asked), (2, 1, 2));
    }

    #[test]
    fn host_overcommit_caps() {
        let host = HostCapacity { cpus: 2, memory_mb: 1000 };
        assert_eq!(admit_host(host, None, None, r(0, 100, 100_000), r(0, 100, 100_000)), Ok(()));
        assert_eq!(admit_host(host, Some(4.0), Some(1.5), r(0, 6, 1000), r(0, 2, 500)), Ok(()));
        let err = admit_host(host, Some(4.0), None, r(0, 6, 0), r(0, 3, 0)).expect_err("9 > 8");
        assert_eq!((err.resource, err.limit), (Resource::Cpus, 8));
        assert!(err.to_string().contains("the host's overcommit cap allows 8"));
    }

    #[test]
    fn growth_counts_only_what_grows() {
        assert_eq!(r(2, 4, 100).growth_to(r(3, 2, 100)), r(1, 0, 0));
        let caps =
            HostCaps { capacity: HostCapacity { cpus: 2, memory_mb: 0 }, cpu_ratio: Some(1.0), memory_ratio: None };
        assert!(caps.admit(r(0, 1, 0), r(0, 1, 0)).is_ok());
        assert!(caps.admit(r(0, 1, 0), r(0, 2, 0)).is_err());
        assert!(HostCaps::default().admit(r(0, 1000, 1000), r(0, 1000, 1000)).is_ok());
    }

    #[test]
    fn sums_saturate() {
        assert_eq!(r(u64::MAX, 1, 1).plus(r(1, 1, 1)).machines, u64::MAX);
    }
}
