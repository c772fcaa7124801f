//! flvpc's domain: the names people type, roles, SSH public keys and the
//! permission policy that decides who may do what.
//!
//! Architecture Invariant: this crate does no IO. It knows nothing of SQL,
//! HTTP, SSH transports or Docker; it only says what is valid and what is allowed.

pub mod hosts;
pub mod machine;
pub mod names;
pub mod password;
pub mod placement;
pub mod policy;
pub mod quota;
pub mod role;
pub mod spec;
pub mod sshkey;

pub use hosts::EngineEndpoint;
pub use machine::{MachineKey, MachineName, Observed, OperationState};
pub use names::{KeyName, Login, NamespaceName, TokenName};
pub use placement::{EngineKind, HostName, Placement};
pub use policy::{Denied, NamespaceAdminGrant, NamespaceGrant, Principal, SuperadminGrant, SystemGrant, UserGrant};
pub use role::Role;
pub use sshkey::PublicKey;

/// A value a person typed was refused. `field` names the input, `message` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The name of the input that was refused (`login`, `public_key`, ...).
    pub field: &'static str,
    /// What is wrong with it, as a sentence a person can act on.
    pub message: String,
}

impl Invalid {
    /// A refusal of `field` with `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
