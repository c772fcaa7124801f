//! The role a user holds in one namespace.

use std::fmt;

/// A user's role in one namespace. One user may hold different roles in different namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May define, create, change, start, stop and delete the namespace's machines.
    Admin,
    /// May use the machines and start/stop them, not change them.
    User,
}

impl Role {
    /// The wire and database spelling: `admin` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// Parses `admin` or `user`.
    pub fn parse(value: &str) -> Result<Self, crate::Invalid> {
        match value {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            _ => Err(crate::Invalid::new("role", "must be \"admin\" or \"user\"")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
