//! The identity of a machine: which namespace it belongs to and its name there.
//!
//! A machine is always addressed by a [`MachineKey`], never by a container name or a
//! loose pair of strings: two machines are the same machine exactly when their keys are
//! equal. Backends derive their object names from the key with [`MachineKey::object_name`],
//! which is injective (no two different keys give the same name), so a machine of one
//! namespace can never be mistaken for, or collide with, a machine of another.

use crate::names::NamespaceName;
use crate::Invalid;
use std::fmt;

/// A machine's name inside its namespace: it is the machine's host name and DNS alias,
/// so an RFC 1123 label: 1–63 of `a-z 0-9 -`, not starting or ending with `-`. It never
/// contains a `.`, which is what makes [`MachineKey::object_name`] injective.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineName(String);

impl MachineName {
    /// Validates a machine name.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        const RULE: &str = "1-63 of a-z 0-9 -, not starting or ending with -";
        if value.is_empty() || value.len() > 63 {
            return Err(Invalid::new("machine", format!("must be {RULE}")));
        }
        if let Some(bad) = value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(Invalid::new("machine", format!("may not contain {bad:?} ({RULE})")));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(Invalid::new("machine", format!("must not start or end with - ({RULE})")));
        }
        Ok(Self(value.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MachineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MachineName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One machine: its namespace and its name in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineKey {
    /// The namespace that owns the machine.
    pub namespace: NamespaceName,
    /// The machine's name in that namespace.
    pub name: MachineName,
}

impl MachineKey {
    /// The key of machine `name` in `namespace`.
    pub fn new(namespace: NamespaceName, name: MachineName) -> Self {
        Self { namespace, name }
    }

    /// Validates both parts.
    pub fn parse(namespace: &str, name: &str) -> Result<Self, Invalid> {
        Ok(Self { namespace: NamespaceName::parse(namespace)?, name: MachineName::parse(name)? })
    }

    /// The name a backend gives the machine's objects (container, cgroup): `<name>.<namespace>`,
    /// the same as the address users reach it by through the SSH gateway.
    ///
    /// Injective: neither part may contain a `.`, so the one dot splits the name back into
    /// exactly one key. (The earlier `<namespace>-<name>` was not: `sx` + `b-node0` and
    /// `sx-b` + `node0` were both `sx-b-node0`.)
    pub fn object_name(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// The key back from an [`object_name`](Self::object_name), if `object` is one.
    pub fn from_object_name(object: &str) -> Option<Self> {
        let (name, namespace) = object.split_once('.')?;
        Self::parse(namespace, name).ok()
    }
}

impl fmt::Display for MachineKey {
    /// `namespace/name`, as the CLI and the logs write a machine.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the reconciler last saw of a machine on its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Observed {
    /// No container (yet, or any more).
    NotCreated,
    /// Being created or restarted.
    Creating,
    /// Running.
    Running,
    /// Stopped (created but not started counts as stopped).
    Stopped,
    /// The last reconcile failed; the machine's error says why.
    Error,
    /// The machine's host does not answer: whatever it was doing is not known. Not stopped and not
    /// deleted: nothing is recreated elsewhere, and the machine is adopted when its host is back.
    Unknown,
}

impl Observed {
    /// Every state, in a stable order.
    pub const ALL: [Observed; 6] = [
        Observed::NotCreated,
        Observed::Creating,
        Observed::Running,
        Observed::Stopped,
        Observed::Error,
        Observed::Unknown,
    ];

    /// The word stored in the database and shown in the API (`not_created`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Observed::NotCreated => "not_created",
            Observed::Creating => "creating",
            Observed::Running => "running",
            Observed::Stopped => "stopped",
            Observed::Error => "error",
            Observed::Unknown => "unknown",
        }
    }

    /// The state a stored word names; `None` for a word this version does not know.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an operation (a create, a start, a restart, …) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationState {
    /// Recorded, no machine reached its goal yet.
    Pending,
    /// Some machines are on their way.
    Running,
    /// Every target reached its goal.
    Succeeded,
    /// A target failed; the operation's error says which and why.
    Failed,
}

impl OperationState {
    /// The word stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }

    /// The state a stored word names; `None` for a word this version does not know.
    pub fn parse(word: &str) -> Option<Self> {
        [OperationState::Pending, OperationState::Running, OperationState::Succeeded, OperationState::Failed]
            .into_iter()
            .find(|s| s.as_str() == word)
    }

    /// Whether the operation has ended (succeeded or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, OperationState::Succeeded | OperationState::Failed)
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> MachineKey {
        MachineKey::parse(ns, name).expect("valid key")
    }

    #[test]
    fn machine_names_are_host_name_labels() {
        for good in ["node0", "0", "a-b", &"x".repeat(63)] {
            assert!(MachineName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a b", &"x".repeat(64), "ñ"] {
            assert!(MachineName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_that_collided_as_ns_dash_name_are_distinct() {
        let a = key("sx", "b-node0");
        let b = key("sx-b", "node0");
        assert_ne!(a.object_name(), b.object_name());
        assert_eq!(a.object_name(), "b-node0.sx");
        assert_eq!(b.object_name(), "node0.sx-b");
    }

    #[test]
    fn object_names_round_trip_so_they_are_injective() {
        // Every way of cutting one dash-joined string into namespace and name gives a
        // different object name, and each object name gives back its own key.
        let joined = "ab-cd-ef-gh";
        let mut seen = std::collections::HashSet::new();
        for (i, _) in joined.match_indices('-') {
            let k = key(&joined[..i], &joined[i + 1..]);
            let object = k.object_name();
            assert_eq!(MachineKey::from_object_name(&object), Some(k));
            assert!(seen.insert(object), "two keys gave one object name");
        }
        assert_eq!(MachineKey::from_object_name("no-dot"), None);
        assert_eq!(MachineKey::from_object_name("a.b.c"), None);
    }

    #[test]
    fn states_round_trip_through_their_words() {
        for s in Observed::ALL {
            assert_eq!(Observed::parse(s.as_str()), Some(s));
        }
        for s in [OperationState::Pending, OperationState::Running, OperationState::Succeeded, OperationState::Failed] {
            assert_eq!(OperationState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Observed::parse("deleting"), None);
        assert!(OperationState::Failed.is_finished() && !OperationState::Running.is_finished());
    }

    #[test]
    fn displays_as_namespace_slash_name() {
        assert_eq!(key("team1", "node0").to_string(), "team1/node0");
    }
}
