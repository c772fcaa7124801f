//! The permission policy: the one place that decides who may do what.
//!
//! Rights are types (as in lldap's access-control crate). A handler obtains a
//! grant from the [`Principal`] of the request, and the store's methods that
//! change or reveal protected state take that grant as an argument. A grant
//! cannot be built outside this module, so code that skipped the check does not
//! compile.
//!
//! | right                     | who holds it                                   |
//! |---------------------------|------------------------------------------------|
//! | [`SuperadminGrant`]       | the superadmin                                 |
//! | [`NamespaceGrant`]        | members of the namespace (any role), superadmin|
//! | [`NamespaceAdminGrant`]   | namespace admins, superadmin                   |
//! | [`UserGrant`]             | the user themself, superadmin                  |
//! | [`SystemGrant`]           | flvpc's own background work, never a request   |
//!
//! Every request path (API, panel, SSH gateway) gets its grant from the caller's
//! [`Principal`]: the gateway asks [`Principal::namespace_member`] for each forwarded channel,
//! as the API does for each request. Admission (quotas, the host's overcommit caps) is part of
//! the store's change under the namespace's grant: it reads the host-wide totals, never
//! another namespace's names. Authentication lookups (password, token, SSH key) need no grant:
//! they find out who the caller is, before there is a principal to ask.
//!
//! Denials come in two kinds: a person who is not a member of a namespace is told
//! it does not exist ([`Denied::NotFound`]), so namespace names do not leak; a
//! member who lacks the role is told so ([`Denied::Forbidden`]).

use crate::{Login, NamespaceName, Role};
use std::collections::BTreeMap;

/// Why a principal may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The target is invisible to this principal (not a member of the namespace).
    #[error("not found")]
    NotFound,
    /// The target is visible, but this principal's role does not allow the action.
    #[error("your role does not allow this")]
    Forbidden,
}

/// An authenticated person, with their memberships as read at the start of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user_id: i64,
    login: Login,
    superadmin: bool,
    memberships: BTreeMap<NamespaceName, Role>,
}

impl Principal {
    /// A principal as authenticated by the store (from a session, token or SSH key).
    pub fn new(user_id: i64, login: Login, superadmin: bool, memberships: BTreeMap<NamespaceName, Role>) -> Self {
        Self { user_id, login, superadmin, memberships }
    }

    /// The user's database id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The user's login.
    pub fn login(&self) -> &Login {
        &self.login
    }

    /// Whether this is the superadmin.
    pub fn is_superadmin(&self) -> bool {
        self.superadmin
    }

    /// The role held in `ns`, if a member.
    pub fn role_in(&self, ns: &NamespaceName) -> Option<Role> {
        self.memberships.get(ns).copied()
    }

    /// All memberships, by namespace name.
    pub fn memberships(&self) -> &BTreeMap<NamespaceName, Role> {
        &self.memberships
    }

    /// Right to manage users, namespaces, memberships and quotas, and to read everything.
    pub fn superadmin(&self) -> Result<SuperadminGrant, Denied> {
        if self.superadmin {
            Ok(SuperadminGrant { _sealed: () })
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// Right to see `ns` and use its machines (start/stop, SSH).
    pub fn namespace_member(&self, ns: &NamespaceName) -> Result<NamespaceGrant, Denied> {
        let role = if self.superadmin { Role::Admin } else { self.role_in(ns).ok_or(Denied::NotFound)? };
        Ok(NamespaceGrant { namespace: ns.clone(), role, _sealed: () })
    }

    /// Right to change `ns`: its cluster spec, machine creation and deletion, its audit log.
    pub fn namespace_admin(&self, ns: &NamespaceName) -> Result<NamespaceAdminGrant, Denied> {
        let member = self.namespace_member(ns)?;
        if member.role == Role::Admin {
            Ok(NamespaceAdminGrant { namespace: member.namespace, _sealed: () })
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// Right to act on the account `target` (change its password): the user themself or the superadmin.
    pub fn self_or_superadmin(&self, target: &Login) -> Result<UserGrant, Denied> {
        if self.superadmin || &self.login == target {
            Ok(UserGrant {
                login: target.clone(),
                by_superadmin: self.superadmin && &self.login != target,
                _sealed: (),
            })
        } else {
            Err(Denied::Forbidden)
        }
    }
}

/// Proof that flvpc itself acts (the reconciler, the usage sampler), not a person.
/// Made only by [`system`].
#[derive(Debug)]
pub struct SystemGrant {
    _sealed: (),
}

/// The grant of flvpc's own background work: reading every machine and writing observed state.
///
/// Only `flvpc serve`'s background work may call this (the reconciler, the usage sampler, the
/// construction of the server state). Request handlers never do: a request's rights come from
/// its caller's [`Principal`]. A test of the server crate (`tests/tidy.rs`) fails when this is
/// called anywhere else there.
pub fn system() -> SystemGrant {
    SystemGrant { _sealed: () }
}

/// Proof that the caller is the superadmin.
#[derive(Debug)]
pub struct SuperadminGrant {
    _sealed: (),
}

/// Proof that the caller may see and use a namespace.
#[derive(Debug)]
pub struct NamespaceGrant {
    namespace: NamespaceName,
    role: Role,
    _sealed: (),
}

impl NamespaceGrant {
    /// The namespace this grant is for.
    pub fn namespace(&self) -> &NamespaceName {
        &self.namespace
    }

    /// The effective role (the superadmin counts as admin).
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Proof that the caller may change a namespace.
#[derive(Debug)]
pub struct NamespaceAdminGrant {
    namespace: NamespaceName,
    _sealed: (),
}

impl NamespaceAdminGrant {
    /// The namespace this grant is for.
    pub fn namespace(&self) -> &NamespaceName {
        &self.namespace
    }
}

/// Proof that the caller may act on one account.
#[derive(Debug)]
pub struct UserGrant {
    login: Login,
    by_superadmin: bool,
    _sealed: (),
}

impl UserGrant {
    /// The account this grant is for.
    pub fn login(&self) -> &Login {
        &self.login
    }

    /// True when the superadmin acts on someone else's account (no current password needed).
    pub fn by_superadmin(&self) -> bool {
        self.by_superadmin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> NamespaceName {
        NamespaceName::parse(name).expect("valid")
    }

    fn person(login: &str, superadmin: bool, roles: &[(&str, Role)]) -> Principal {
        let memberships = roles.iter().map(|(n, r)| (ns(n), *r)).collect();
        Principal::new(1, Login::parse(login).expect("valid"), superadmin, memberships)
    }

    #[test]
    fn superadmin_may_do_everything() {
        let root = person("root", true, &[]);
        assert!(root.superadmin().is_ok());
        assert_eq!(root.namespace_member(&ns("any")).map(|g| g.role()), Ok(Role::Admin));
        assert!(root.namespace_admin(&ns("any")).is_ok());
        let grant = root.self_or_superadmin(&Login::parse("bob").expect("valid")).expect("granted");
        assert!(grant.by_superadmin());
    }

    #[test]
    fn one_user_different_roles() {
        let bob = person("bob", false, &[("red", Role::Admin), ("blue", Role::User)]);
        assert!(bob.namespace_admin(&ns("red")).is_ok());
        assert_eq!(bob.namespace_admin(&ns("blue")).err(), Some(Denied::Forbidden));
        assert_eq!(bob.namespace_member(&ns("blue")).map(|g| g.role()), Ok(Role::User));
        assert_eq!(bob.namespace_member(&ns("green")).err(), Some(Denied::NotFound));
        assert_eq!(bob.namespace_admin(&ns("green")).err(), Some(Denied::NotFound));
        assert_eq!(bob.superadmin().err(), Some(Denied::Forbidden));
    }

    #[test]
    fn accounts() {
        let bob = person("bob", false, &[]);
        let own = bob.self_or_superadmin(&Login::parse("bob").expect("valid")).expect("self");
        assert!(!own.by_superadmin());
        assert_eq!(bob.self_or_superadmin(&Login::parse("eve").expect("valid")).err(), Some(Denied::Forbidden));
    }
}
