//! Where a namespace may publish machine ports on the host: the superadmin's rules, checked
//! against a validated spec before anything is recorded.
//!
//! A host port is something the whole server shares, so a namespace admin may not take one the
//! host's own services live on. A host port a spec names must be inside the allocation range
//! (`--port-range`) or the explicit allow-list (`--allow-host-ports`); the server's own ports
//! (panel, SSH gateway) are refused always. So ports below 1024 (ssh, http, …) are refused unless
//! the superadmin put them in one of those. A mapping's `address:` must be one the superadmin
//! allows (`--publish-address`, and `--allow-publish-addresses`).

use super::error::Problems;
use super::{SpecError, Validated};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Host ports below this are the host's services (ssh, http, …): never allowed by default.
const PRIVILEGED_BELOW: u16 = 1024;

/// A set of host ports, written `80,443,8000-8099`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList {
    /// Inclusive ranges, in the order written.
    ranges: Vec<(u16, u16)>,
}

/// Most entries a port list may have: a list is typed by a person, and checked per port.
const MAX_LIST_ENTRIES: usize = 256;

impl PortList {
    /// The ports `first..=last`.
    pub fn range(first: u16, last: u16) -> Self {
        Self { ranges: vec![(first.min(last), first.max(last))] }
    }

    /// Reads `80,443,8000-8099` (spaces allowed around entries; empty text is the empty list).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if ranges.len() == MAX_LIST_ENTRIES {
                return Err(format!("at most {MAX_LIST_ENTRIES} entries; use ranges such as 8000-8099"));
            }
            let (first, last) = entry.split_once('-').unwrap_or((entry, entry));
            let port = |p: &str| -> Result<u16, String> {
                match p.trim().parse::<u16>() {
                    Ok(port) if port > 0 => Ok(port),
                    _ => Err(format!("{:?} is not a port number (1 to 65535)", p.trim())),
                }
            };
            let (first, last) = (port(first)?, port(last)?);
            if first > last {
                return Err(format!("{entry:?} is not a range: write FIRST-LAST with FIRST <= LAST"));
            }
            ranges.push((first, last));
        }
        Ok(Self { ranges })
    }

    /// Whether `port` is in the list.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|(first, last)| (*first..=*last).contains(&port))
    }

    /// Whether the list has no ports.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (first, last)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

/// A port the server itself listens on, and what listens there (for the refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedPort {
    /// The port.
    pub port: u16,
    /// What uses it, e.g. "flvpc's panel and API (--listen)".
    pub what: String,
}

/// The superadmin's rules for host ports and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRules {
    /// The range ports are allocated from when a spec names none (`--port-range`); explicit
    /// ports inside it are allowed too.
    pub range: (u16, u16),
    /// Further host ports a spec may name (`--allow-host-ports`), below 1024 included.
    pub allowed: PortList,
    /// The server's own ports: refused always, whatever the lists say.
    pub reserved: Vec<ReservedPort>,
    /// Where ports are published when a mapping gives no `address:` (`--publish-address`).
    pub default_address: IpAddr,
    /// Further addresses a mapping may name (`--allow-publish-addresses`).
    pub addresses: Vec<IpAddr>,
}

impl PublishRules {
    /// Whether a spec may name `port` as a host port.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.reserved_for(port).is_none() && (self.in_range(port) || self.allowed.contains(port))
    }

    /// What of the server's own uses `port`, if anything.
    pub fn reserved_for(&self, port: u16) -> Option<&ReservedPort> {
        self.reserved.iter().find(|r| r.port == port)
    }

    /// Whether a mapping may publish on `address`.
    pub fn address_allowed(&self, address: IpAddr) -> bool {
        address == self.default_address || self.addresses.contains(&address)
    }

    fn in_range(&self, port: u16) -> bool {
        (self.range.0..=self.range.1).contains(&port)
    }

    /// The ports a spec may name, for messages: `20000-29999 (--port-range), 80,443 (--allow-host-ports)`.
    fn allowed_ports_text(&self) -> String {
        let mut text = format!("{}-{} (--port-range)", self.range.0, self.range.1);
        if !self.allowed.is_empty() {
            text.push_str(&format!(" and {} (--allow-host-ports)", self.allowed));
        }
        text
    }

    fn addresses_text(&self) -> String {
        let mut all = vec![self.default_address];
        all.extend(self.addresses.iter().filter(|a| **a != self.default_address));
        all.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
    }

    /// Checks every host port (each machine's, after footloose's offsets) and every address of
    /// `spec` against the rules. Each refusal names its field, once per mapping, with a count of
    /// the further machines it concerns.
    pub fn check(&self, spec: &Validated) -> Result<(), SpecError> {
        // (group, mapping, field) → first message and how many more machines.
        let mut found: BTreeMap<(usize, usize, &'static str), (String, usize)> = BTreeMap::new();
        let mut note = |key, message: String| {
            found.entry(key).and_modify(|(_, more)| *more += 1).or_insert((message, 0));
        };
        for machine in &spec.machines {
            for (mapping, port) in machine.ports.iter().enumerate() {
                if let Some(host_port) = port.host_port {
                    if let Some(message) = self.port_refusal(host_port, &machine.name) {
                        note((machine.group, mapping, "hostPort"), message);
                    }
                }
                if let Some(address) = port.address.filter(|a| !self.address_allowed(*a)) {
                    note(
                        (machine.group, mapping, "address"),
                        format!(
                            "{address} is not an address this server publishes ports on; allowed: {} \
                             (--publish-address, --allow-publish-addresses). Leave address out to use {}, or ask \
                             the superadmin to allow it",
                            self.addresses_text(),
                            self.default_address
                        ),
                    );
                }
            }
        }
        let mut problems = Problems::default();
        for ((group, mapping, field), (message, more)) in found {
            let path = format!("machines[{group}].spec.portMappings[{mapping}].{field}");
            let message =
                if more == 0 { message } else { format!("{message} (and {more} more machines of this group)") };
            problems.error(&path, message);
        }
        problems.finish(())
    }

    fn port_refusal(&self, port: u16, machine: &str) -> Option<String> {
        if let Some(reserved) = self.reserved_for(port) {
            return Some(format!(
                "{machine} would get host port {port}, which is {}; pick another, or leave hostPort out to get a \
                 free port",
                reserved.what
            ));
        }
        if self.port_allowed(port) {
            return None;
        }
        let why = if port < PRIVILEGED_BELOW {
            format!("is below {PRIVILEGED_BELOW}, where the host's own services live")
        } else {
            "is outside the ports this server hands out".to_owned()
        };
        Some(format!(
            "{machine} would get host port {port}, which {why}; this server allows {}. Leave hostPort out to get a \
             free port, or ask the superadmin to allow it",
            self.allowed_ports_text()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_yaml;
    use crate::NamespaceName;

    fn rules() -> PublishRules {
        PublishRules {
            range: (20000, 20099),
            allowed: PortList::parse("80, 443,8000-8009").expect("list"),
            reserved: vec![
                ReservedPort { port: 5555, what: "flvpc's panel and API (--listen)".into() },
                ReservedPort { port: 8001, what: "flvpc's SSH gateway (--ssh-listen)".into() },
            ],
            default_address: IpAddr::from([127, 0, 0, 1]),
            addresses: vec![IpAddr::from([10, 0, 0, 1])],
        }
    }

    fn validated(yaml: &str) -> Validated {
        let ns = NamespaceName::parse("team1").expect("name");
        parse_yaml(yaml).expect("parses").validate(&ns).expect("valid")
    }

    #[test]
    fn port_lists() {
        let list = PortList::parse(" 80,443 , 8000-8099").expect("list");
        assert!(list.contains(80) && list.contains(8050) && !list.contains(81) && !list.contains(8100));
        assert_eq!(list.to_string(), "80,443,8000-8099");
        assert_eq!(PortList::parse("").expect("empty"), PortList::default());
        for bad in ["0", "70000", "90-80", "http", "1-2-3"] {
            assert!(PortList::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn range_and_allow_list_decide_reserved_always_refused() {
        let r = rules();
        for port in [20000, 20099, 80, 443, 8000, 8009] {
            assert!(r.port_allowed(port), "{port}");
        }
        for port in [22, 81, 1023, 19999, 20100, 5555, 8001] {
            assert!(!r.port_allowed(port), "{port}");
        }
    }

    #[test]
    fn every_expanded_port_is_checked_with_its_path() {
        // count 3 with hostPort 20098: 20098, 20099 pass, 20100 (the third machine) is outside.
        let v = validated(
            "machines:\n- count: 3\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 80\n      hostPort: 20098\n    - containerPort: 22\n      hostPort: 22\n",
        );
        let err = rules().check(&v).expect_err("refused");
        assert!(err.has_path("machines[0].spec.portMappings[0].hostPort"), "{err}");
        assert!(err.to_string().contains("n2 would get host port 20100"), "{err}");
        let ssh = err.errors.iter().find(|e| e.path == "machines[0].spec.portMappings[1].hostPort").expect("22");
        assert!(ssh.message.contains("below 1024") && ssh.message.contains("and 2 more machines"), "{}", ssh.message);
        assert!(ssh.message.contains("20000-20099 (--port-range) and 80,443,8000-8009"), "{}", ssh.message);
    }

    #[test]
    fn own_ports_are_named_and_refused_even_when_listed() {
        let v = validated(
            "machines:\n- count: 1\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 80\n      hostPort: 8001\n",
        );
        let err = rules().check(&v).expect_err("refused");
        assert!(err.to_string().contains("SSH gateway"), "{err}");
    }

    #[test]
    fn addresses_must_be_allowed() {
        let spec = |address: &str| {
            format!(
                "machines:\n- count: 1\n  spec:\n    name: n%d\n    portMappings:\n    - containerPort: 80\n      address: '{address}'\n"
            )
        };
        assert_eq!(rules().check(&validated(&spec("127.0.0.1"))), Ok(()));
        assert_eq!(rules().check(&validated(&spec("10.0.0.1"))), Ok(()));
        let err = rules().check(&validated(&spec("0.0.0.0"))).expect_err("refused");
        assert!(err.has_path("machines[0].spec.portMappings[0].address"), "{err}");
        assert!(err.to_string().contains("allowed: 127.0.0.1, 10.0.0.1"), "{err}");
        let v = validated(&spec("0.0.0.0"));
        assert_eq!(v.machines[0].ports[0].address, Some(IpAddr::from([0, 0, 0, 0])));
    }
}
