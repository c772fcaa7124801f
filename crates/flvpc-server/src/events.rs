//! Live events for the panel and API clients (Server-Sent Events), filtered per caller.

use serde::Serialize;

/// Something that changed.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A machine's observed state changed.
    Machine {
        /// Namespace.
        namespace: String,
        /// Machine name.
        name: String,
        /// not_created, creating, running, stopped, error, deleted.
        state: String,
        /// Address on the namespace network.
        ip: Option<String>,
        /// Last error.
        error: Option<String>,
    },
    /// An operation progressed or ended.
    Operation {
        /// Namespace.
        namespace: String,
        /// Operation id.
        id: String,
        /// Kind, e.g. cluster.create.
        kind: String,
        /// pending, running, succeeded, failed.
        state: String,
        /// Targets done.
        done: i64,
        /// Targets in all.
        total: i64,
        /// Why it failed.
        error: Option<String>,
    },
}

impl Event {
    /// The namespace the event belongs to (visibility is per namespace).
    pub fn namespace(&self) -> &str {
        match self {
            Event::Machine { namespace, .. } | Event::Operation { namespace, .. } => namespace,
        }
    }
}
