//! Where a machine lives: on which host, run by which kind of engine.
//!
//! Every machine record names its [`Placement`], so that nothing downstream has to assume
//! there is a single engine or a single host. Today there is one host (`local`) with one
//! engine (containers); the next engines (QEMU microVMs) and hosts (several servers sharing one
//! PostgreSQL) add entries, not special cases.

use crate::names::check_namespace_like;
use crate::spec::Backend;
use crate::Invalid;
use std::fmt;

/// The kind of engine that runs a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineKind {
    /// A systemd container in Docker (the spec's `backend: docker`).
    Container,
    /// A QEMU microVM (the spec's `backend: microvm` or `ignite`). A server without the microVM
    /// engine (no VM artifacts or runner image) refuses specs that ask for it (`backend_unavailable`).
    MicroVm,
}

impl EngineKind {
    /// Every kind, in a stable order.
    pub const ALL: [EngineKind; 2] = [EngineKind::Container, EngineKind::MicroVm];

    /// The engine a spec's backend runs on: the one place a backend becomes an engine.
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Docker => EngineKind::Container,
            Backend::MicroVm => EngineKind::MicroVm,
        }
    }

    /// The word stored in the database and shown in the API (`container`, `microvm`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Container => "container",
            EngineKind::MicroVm => "microvm",
        }
    }

    /// The kind a stored word names; `None` for a word this version does not know.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a host that runs machines: `^[a-z][a-z0-9-]{0,30}$`, the namespace rule, so it
/// is safe in labels, file names and log lines. [`HostName::local`] is the one host today.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// The id of the server's own host, and of every machine recorded before hosts were named.
    pub const LOCAL: &'static str = "local";

    /// Validates a host id.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_namespace_like("host", value)?;
        Ok(Self(value.to_owned()))
    }

    /// The server's own host, `local`.
    pub fn local() -> Self {
        Self(Self::LOCAL.to_owned())
    }

    /// The validated id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for HostName {
    fn default() -> Self {
        Self::local()
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where one machine lives: a host and the kind of engine on it. Recorded with the machine when
/// it is first created and read by the reconciler to pick the engine that acts on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Placement {
    /// The host.
    pub host: HostName,
    /// The engine on that host.
    pub engine: EngineKind,
}

impl Placement {
    /// `engine` on `host`.
    pub fn new(host: HostName, engine: EngineKind) -> Self {
        Self { host, engine }
    }

    /// Where a machine whose spec asks for `backend` goes on `host`.
    pub fn for_backend(host: HostName, backend: Backend) -> Self {
        Self::new(host, EngineKind::for_backend(backend))
    }
}

impl Default for Placement {
    /// The container engine on the local host: where every machine lived before placements.
    fn default() -> Self {
        Self::new(HostName::local(), EngineKind::Container)
    }
}

impl fmt::Display for Placement {
    /// `container on host local`, as error messages and logs say it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on host {}", self.engine, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_map_to_engines() {
        assert_eq!(EngineKind::for_backend(Backend::Docker), EngineKind::Container);
        assert_eq!(EngineKind::for_backend(Backend::MicroVm), EngineKind::MicroVm);
        let p = Placement::for_backend(HostName::local(), Backend::MicroVm);
        assert_eq!(p.to_string(), "microvm on host local");
        assert_eq!(Placement::default().to_string(), "container on host local");
    }

    #[test]
    fn engine_kinds_round_trip_through_their_words() {
        for k in EngineKind::ALL {
            assert_eq!(EngineKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EngineKind::parse("docker"), None);
        assert_eq!(EngineKind::parse(""), None);
    }

    #[test]
    fn host_names_follow_the_namespace_rule() {
        assert_eq!(HostName::parse("local").expect("local"), HostName::local());
        for good in ["h", "host-2", &"a".repeat(31)] {
            assert!(HostName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Local", "1host", "a.b", "a_b", "../x", "a b", &"a".repeat(32)] {
            let err = HostName::parse(bad).expect_err(bad);
            assert_eq!(err.field, "host", "{bad:?}");
        }
    }
}
