//! Where a new machine goes when there are several hosts: chosen inside `apply_cluster`'s
//! admission transaction, so two applies at once see each other's machines and cannot both
//! fill the last room of a host.
//!
//! For each new machine, in plan order: the candidates (active hosts, listed by the caller) that
//! have the machine's engine kind and whose caps admit it on top of everything allocated there
//! (running or stopped: a stopped machine may start at any time); among them the host with the
//! fewest machines of the same namespace and group (spread), then the lowest allocated memory
//! fraction (least allocated), then the name. A machine placed once keeps its host.

use crate::StoreError;
use flvpc_model::quota::{HostCaps, Resources};
use flvpc_model::{EngineKind, HostName, Placement};
use std::collections::BTreeMap;

/// A host new machines may go to, with what it offers.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCandidate {
    /// The host.
    pub host: HostName,
    /// The engine kinds it runs.
    pub engines: Vec<EngineKind>,
    /// Its capacity and overcommit caps, checked against what is allocated there.
    pub caps: HostCaps,
}

/// What placement knows while one apply runs: what each host has allocated and how many
/// machines of each group of the applying namespace it holds, both updated as machines are placed.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    /// Allocated resources per host (other namespaces' machines, and this namespace's as planned).
    pub allocated: BTreeMap<HostName, Resources>,
    /// Machines of (host, group) of the applying namespace.
    pub groups: BTreeMap<(HostName, String), u64>,
}

impl Hosts {
    /// Counts one machine of `group` with `resources` on `host`.
    pub fn add(&mut self, host: &HostName, group: &str, resources: Resources) {
        let allocated = self.allocated.entry(host.clone()).or_default();
        *allocated = allocated.plus(resources);
        *self.groups.entry((host.clone(), group.to_owned())).or_default() += 1;
    }

    /// Picks the host of a new machine (see the module's rules). `fallback` is the plan's own
    /// placement, used when the caller gave no candidates (`None`: a single-host server); `pin`
    /// is the host the spec asks for.
    pub fn choose(
        &self,
        machine: &str,
        group: &str,
        resources: Resources,
        fallback: &Placement,
        pin: Option<&HostName>,
        candidates: Option<&[HostCandidate]>,
    ) -> Result<HostName, StoreError> {
        let Some(candidates) = candidates else {
            return match pin {
                Some(pin) if pin != &fallback.host => Err(unavailable(pin)),
                _ => Ok(fallback.host.clone()),
            };
        };
        let engine = fallback.engine;
        let considered: Vec<&HostCandidate> = match pin {
            Some(pin) => {
                let pinned: Vec<_> = candidates.iter().filter(|c| &c.host == pin).collect();
                if pinned.is_empty() {
                    return Err(unavailable(pin));
                }
                pinned
            }
            None => candidates.iter().collect(),
        };
        let mut refusals = Vec::new();
        if considered.is_empty() {
            refusals.push("no host is active".to_owned());
        }
        let mut best: Option<(u64, f64, &HostName)> = None;
        for candidate in considered {
            if !candidate.engines.contains(&engine) {
                refusals.push(format!("{} has no {engine} engine", candidate.host));
                continue;
            }
            let allocated = self.allocated.get(&candidate.host).copied().unwrap_or_default();
            if let Err(full) = candidate.caps.admit(allocated, resources) {
                refusals.push(format!("{} is full ({full})", candidate.host));
                continue;
            }
            let same_group = self.groups.get(&(candidate.host.clone(), group.to_owned())).copied().unwrap_or(0);
            // Capacity 0 (not known) compares absolute memory: still the least allocated first.
            let fraction = allocated.memory_mb as f64 / candidate.caps.capacity.memory_mb.max(1) as f64;
            let better = match &best {
                None => true,
                Some((g, f, name)) => (same_group, fraction, &candidate.host) < (*g, *f, *name),
            };
            if better {
                best = Some((same_group, fraction, &candidate.host));
            }
        }
        best.map(|(_, _, host)| host.clone()).ok_or_else(|| {
            StoreError::Conflict(format!(
                "no host can take machine {machine} ({} CPUs, {} MB memory, {} GB disk): {}; free room on a host, \
                 add a host, or ask for less",
                resources.cpus,
                resources.memory_mb,
                resources.disk_gb,
                refusals.join("; ")
            ))
        })
    }
}

fn unavailable(pin: &HostName) -> StoreError {
    StoreError::Conflict(format!(
        "host {pin} is draining or unknown, so no new machine can be placed there: pin an active host (see the \
         host list), or remove the pin"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flvpc_model::quota::HostCapacity;

    fn host(name: &str) -> HostName {
        HostName::parse(name).expect("host")
    }

    fn candidate(name: &str, memory_mb: u64) -> HostCandidate {
        HostCandidate {
            host: host(name),
            engines: vec![EngineKind::Container],
            caps: HostCaps { capacity: HostCapacity { cpus: 4, memory_mb }, cpu_ratio: None, memory_ratio: Some(1.0) },
        }
    }

    fn mb(memory_mb: u64) -> Resources {
        Resources { machines: 1, cpus: 1, memory_mb, disk_gb: 1, host_ports: 0 }
    }

    #[test]
    fn a_group_spreads_then_the_least_allocated_host_wins() {
        let cands = [candidate("a", 4096), candidate("b", 8192)];
        let mut hosts = Hosts::default();
        let mut placed = Vec::new();
        for i in 0..4 {
            let h = hosts
                .choose(&format!("n{i}"), "n%d", mb(512), &Placement::default(), None, Some(&cands))
                .expect("fits");
            hosts.add(&h, "n%d", mb(512));
            placed.push(h.to_string());
        }
        // Equal spread first; among equals, b is less allocated as a fraction of its memory.
        assert_eq!(placed, vec!["a", "b", "b", "a"].into_iter().map(str::to_owned).collect::<Vec<_>>());
    }

    #[test]
    fn no_candidate_names_every_refusal() {
        let mut vm_only = candidate("vms", 4096);
        vm_only.engines = vec![EngineKind::MicroVm];
        let cands = [candidate("small", 256), vm_only];
        let err =
            Hosts::default().choose("big", "g", mb(512), &Placement::default(), None, Some(&cands)).expect_err("full");
        let text = err.to_string();
        assert!(text.contains("no host can take machine big"), "{text}");
        assert!(text.contains("small is full (memory"), "{text}");
        assert!(text.contains("vms has no container engine"), "{text}");
    }

    /// A small deterministic generator (xorshift), so a failing case is the same at every run.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn placement_never_overfills_a_host_and_refuses_only_when_nothing_fits() {
        for seed in 1..=300u64 {
            let mut g = Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let cands: Vec<HostCandidate> = (0..1 + g.below(4))
                .map(|i| {
                    let mut c = candidate(&format!("h{i}"), 1024 * (1 + g.below(8)));
                    if g.below(4) == 0 {
                        c.engines = vec![EngineKind::MicroVm];
                    }
                    c
                })
                .collect();
            let mut hosts = Hosts::default();
            for m in 0..g.below(30) {
                let want = mb(256 * (1 + g.below(8)));
                let group = format!("g{}", g.below(3));
                match hosts.choose(&format!("m{m}"), &group, want, &Placement::default(), None, Some(&cands)) {
                    Ok(h) => {
                        let c = cands.iter().find(|c| c.host == h).expect("a candidate");
                        assert!(c.engines.contains(&EngineKind::Container), "seed {seed}");
                        hosts.add(&h, &group, want);
                        let allocated = hosts.allocated[&h].memory_mb;
                        assert!(allocated <= c.caps.capacity.memory_mb, "seed {seed}: {h} over its capacity");
                    }
                    Err(_) => {
                        let room = cands.iter().any(|c| {
                            let used = hosts.allocated.get(&c.host).map(|r| r.memory_mb).unwrap_or(0);
                            c.engines.contains(&EngineKind::Container)
                                && used + want.memory_mb <= c.caps.capacity.memory_mb
                        });
                        assert!(!room, "seed {seed}: refused while a host had room");
                    }
                }
            }
        }
    }

    #[test]
    fn with_room_everywhere_a_group_is_spread_evenly() {
        for hosts_n in 1..=5u64 {
            for machines in 0..=17u64 {
                let cands: Vec<_> = (0..hosts_n).map(|i| candidate(&format!("h{i}"), 1 << 20)).collect();
                let mut hosts = Hosts::default();
                for m in 0..machines {
                    let h = hosts.choose(&format!("m{m}"), "g", mb(512), &Placement::default(), None, Some(&cands));
                    hosts.add(&h.expect("room"), "g", mb(512));
                }
                let counts: Vec<u64> = cands
                    .iter()
                    .map(|c| hosts.groups.get(&(c.host.clone(), "g".into())).copied().unwrap_or(0))
                    .collect();
                let (min, max) = (counts.iter().min(), counts.iter().max());
                assert!(max.zip(min).is_none_or(|(a, b)| a - b <= 1), "{hosts_n} hosts, {machines}: {counts:?}");
            }
        }
    }

    #[test]
    fn without_candidates_the_plan_decides() {
        let got = Hosts::default().choose("x", "g", mb(1), &Placement::default(), None, None).expect("local");
        assert_eq!(got, HostName::local());
        let err = Hosts::default().choose("x", "g", mb(1), &Placement::default(), Some(&host("far")), None);
        assert!(err.expect_err("unknown pin").to_string().contains("host far is draining or unknown"));
    }
}
