//! The machine list as JSON, kept between requests while nothing in it changed.
//!
//! Why: the list is what the panel polls and scripts watch, and rendering it (a view per
//! machine, then 50-75 KB of JSON for 100-200 machines) was most of its cost once the store
//! served the records from memory (issue 9: p99 under 10 ms with 20 clients).
//!
//! Invariant: a kept body is served only while the store hands out the very same machine list
//! (`MachineList::same_as`: the store answers anew after any write) and the usage sampler has
//! not finished a round since, for the same caller name and server address (both are in the SSH
//! commands of the body). The memory is bounded: past [`MAX_BYTES`] everything is dropped.

use crate::core::machines::MachineList;
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bodies kept at most, in bytes (a client choosing Host headers cannot grow it further).
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// What a body was rendered for: the namespace, the caller's login and the server's address.
pub type ListKey = (String, String, String);

struct Rendered {
    list: MachineList,
    usage_version: u64,
    body: Bytes,
}

/// The kept bodies.
#[derive(Default)]
pub struct RenderedLists {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    bodies: HashMap<ListKey, Rendered>,
    bytes: usize,
}

impl RenderedLists {
    /// The body rendered for `key` from this very `list` at this `usage_version`, if kept.
    pub fn get(&self, key: &ListKey, list: &MachineList, usage_version: u64) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        let kept = inner.bodies.get(key)?;
        (kept.list.same_as(list) && kept.usage_version == usage_version).then(|| kept.body.clone())
    }

    /// Keeps `body`, rendered for `key` from `list` at `usage_version`.
    pub fn put(&self, key: ListKey, list: MachineList, usage_version: u64, body: Bytes) {
        // A poisoned lock: a body not kept is only rendered again.
        let Ok(mut inner) = self.inner.lock() else { return };
        if let Some(old) = inner.bodies.remove(&key) {
            inner.bytes -= old.body.len();
        }
        if inner.bytes + body.len() > MAX_BYTES {
            inner.bodies.clear();
            inner.bytes = 0;
        }
        inner.bytes += body.len();
        inner.bodies.insert(key, Rendered { list, usage_version, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str) -> ListKey {
        ("team1".into(), "alice".into(), host.into())
    }

    #[test]
    fn a_body_is_served_only_for_the_same_list_and_samples() {
        let kept = RenderedLists::default();
        let list = MachineList::default();
        kept.put(key("h"), list.clone(), 1, Bytes::from_static(b"[]"));
        assert_eq!(kept.get(&key("h"), &list, 1).as_deref(), Some(&b"[]"[..]));
        assert!(kept.get(&key("h"), &list, 2).is_none(), "a sampler round makes it stale");
        assert!(kept.get(&key("h"), &MachineList::default(), 1).is_none(), "a new answer of the store too");
        assert!(kept.get(&key("other"), &list, 1).is_none(), "another address is another body");
    }

    #[test]
    fn the_memory_is_bounded() {
        let kept = RenderedLists::default();
        let list = MachineList::default();
        let body = Bytes::from(vec![b' '; 1024 * 1024]);
        for i in 0..40 {
            kept.put(key(&i.to_string()), list.clone(), 1, body.clone());
        }
        let inner = kept.inner.lock().expect("lock");
        assert!(inner.bytes <= MAX_BYTES);
        assert_eq!(inner.bytes, inner.bodies.values().map(|r| r.body.len()).sum::<usize>());
    }
}
