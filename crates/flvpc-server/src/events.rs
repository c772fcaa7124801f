//! Live events for the panel and API clients (Server-Sent Events), filtered per caller.

use crate::state::AppState;
use axum::response::sse::Event as SseEvent;
use flvpc_model::{NamespaceName, Principal};
use flvpc_store::{Session, Store};
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast;

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
        /// not_created, creating, running, stopped, error, unknown, deleted.
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

/// How often an open stream checks that its credential still holds and re-reads memberships.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `principal` might see `event`, decided from memberships already loaded: events of
/// other namespaces are dropped without any database work.
fn maybe_visible(principal: &Principal, event: &Event) -> Option<NamespaceName> {
    let ns = NamespaceName::parse(event.namespace()).ok()?;
    (principal.is_superadmin() || principal.memberships().contains_key(&ns)).then_some(ns)
}

/// One subscriber's stream: its credential (re-checked), memberships and the event feed.
struct Subscription {
    store: Arc<Store>,
    events: broadcast::Receiver<Event>,
    token_id: i64,
    principal: Principal,
    recheck: tokio::time::Interval,
    ended: bool,
}

impl Subscription {
    /// Reads the credential again; ends the stream when it was revoked or expired.
    async fn refresh(&mut self) {
        match self.store.session_by_id(self.token_id).await {
            Ok(Some(session)) => self.principal = session.principal,
            Ok(None) => self.ended = true,
            // A passing database error does not end the stream; the next check decides.
            Err(err) => tracing::warn!("event stream: cannot re-check its credential: {err}"),
        }
    }

    /// The event as SSE if the subscriber may see it now.
    async fn deliver(&mut self, event: Event) -> Option<SseEvent> {
        let ns = maybe_visible(&self.principal, &event)?;
        // Visible so far: memberships are read again, so a removed member stops seeing events at once.
        self.refresh().await;
        if self.ended {
            return None;
        }
        self.principal.namespace_member(&ns).ok()?;
        serde_json::to_string(&event).ok().map(|data| SseEvent::default().data(data))
    }

    async fn next(&mut self) -> Option<SseEvent> {
        while !self.ended {
            tokio::select! {
                _ = self.recheck.tick() => self.refresh().await,
                received = self.events.recv() => match received {
                    Ok(event) => {
                        if let Some(sse) = self.deliver(event).await {
                            return Some(sse);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!("event stream lagged, {missed} events skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
        None
    }
}

/// The live events `session` may see, ending when the session or token is revoked or expires
/// (checked every few seconds and before each event delivered).
pub fn stream(state: &AppState, session: Session) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let start = tokio::time::Instant::now() + RECHECK_EVERY;
    let mut recheck = tokio::time::interval_at(start, RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let subscription = Subscription {
        store: state.store.clone(),
        events: state.reconciler.subscribe(),
        token_id: session.token_id,
        principal: session.principal,
        recheck,
        ended: false,
    };
    futures::stream::unfold(subscription, |mut sub| async move {
        let event = sub.next().await?;
        Some((Ok(event), sub))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flvpc_model::{Login, Role};
    use std::collections::BTreeMap;

    fn machine_event(ns: &str) -> Event {
        Event::Machine { namespace: ns.into(), name: "n0".into(), state: "running".into(), ip: None, error: None }
    }

    #[test]
    fn other_namespaces_are_dropped_before_any_database_work() {
        let red = NamespaceName::parse("red").expect("name");
        let member =
            Principal::new(2, Login::parse("bob").expect("login"), false, BTreeMap::from([(red.clone(), Role::User)]));
        assert_eq!(maybe_visible(&member, &machine_event("red")), Some(red));
        assert_eq!(maybe_visible(&member, &machine_event("blue")), None);
        assert_eq!(maybe_visible(&member, &machine_event("Not Valid")), None);
        let root = Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new());
        assert!(maybe_visible(&root, &machine_event("blue")).is_some());
    }
}
