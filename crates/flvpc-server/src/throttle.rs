//! Failed-login throttling, per login and per source address.
//!
//! After a few failures within a window, further attempts are refused for a
//! delay that doubles with each failure, up to a cap. Counting happens before the
//! password is checked, so a locked-out attacker costs no argon2 work. Memory is
//! bounded: the tables hold at most `MAX_ENTRIES` keys each and forget stale ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// Thresholds for one kind of key.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures allowed in the window before delays start.
    pub free_failures: u32,
    /// The first delay once the free failures are used up.
    pub base_delay: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Throttles failed logins by login name and by source address.
#[derive(Debug)]
pub struct LoginThrottle {
    by_login: Mutex<HashMap<String, Record>>,
    by_addr: Mutex<HashMap<IpAddr, Record>>,
    login_limits: Limits,
    addr_limits: Limits,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(
            Limits { free_failures: 5, base_delay: Duration::from_secs(2) },
            Limits { free_failures: 20, base_delay: Duration::from_secs(2) },
        )
    }
}

fn wait_left<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Record>>, key: &K, now: Instant) -> Option<Duration> {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    let until = map.get(key)?.locked_until?;
    (until > now).then(|| until - now)
}

fn fail<K: std::hash::Hash + Eq + Clone>(map: &Mutex<HashMap<K, Record>>, key: K, limits: Limits, now: Instant) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, r| now.duration_since(r.last_failure) < WINDOW);
        if map.len() >= MAX_ENTRIES {
            // Still full of fresh entries: drop an arbitrary half rather than grow without bound.
            let keep: Vec<K> = map.keys().take(MAX_ENTRIES / 2).cloned().collect();
            map.retain(|k, _| keep.contains(k));
        }
    }
    let record = map.entry(key).or_insert(Record { failures: 0, last_failure: now, locked_until: None });
    if now.duration_since(record.last_failure) >= WINDOW {
        *record = Record { failures: 0, last_failure: now, locked_until: None };
    }
    record.failures += 1;
    record.last_failure = now;
    if record.failures > limits.free_failures {
        let doublings = (record.failures - limits.free_failures - 1).min(16);
        let delay = limits.base_delay.saturating_mul(1 << doublings).min(MAX_DELAY);
        record.locked_until = Some(now + delay);
    }
}

impl LoginThrottle {
    /// A throttle with explicit limits (tests use small ones).
    pub fn new(login_limits: Limits, addr_limits: Limits) -> Self {
        Self { by_login: Mutex::default(), by_addr: Mutex::default(), login_limits, addr_limits }
    }

    /// How long the caller must wait before trying `login` from `addr`, if at all.
    pub fn check(&self, login: &str, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let by_login = wait_left(&self.by_login, &login.to_owned(), now);
        let by_addr = addr.and_then(|a| wait_left(&self.by_addr, &a, now));
        by_login.max(by_addr)
    }

    /// Records a failed attempt.
    pub fn failed(&self, login: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        // Logins are clipped so that hostile 1 MB "logins" cannot fill memory.
        let key: String = login.chars().take(64).collect();
        fail(&self.by_login, key, self.login_limits, now);
        if let Some(addr) = addr {
            fail(&self.by_addr, addr, self.addr_limits, now);
        }
    }

    /// Forgets the failures of `login` after it signed in.
    pub fn succeeded(&self, login: &str) {
        self.by_login.lock().unwrap_or_else(|p| p.into_inner()).remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_per_address() {
        let t = LoginThrottle::new(
            Limits { free_failures: 2, base_delay: Duration::from_secs(10) },
            Limits { free_failures: 3, base_delay: Duration::from_secs(10) },
        );
        let addr: IpAddr = [127, 0, 0, 1].into();
        t.failed("bob", Some(addr));
        t.failed("bob", Some(addr));
        assert!(t.check("bob", Some(addr)).is_none());
        t.failed("bob", Some(addr));
        assert!(t.check("bob", None).is_some(), "login locked");
        assert!(t.check("alice", None).is_none(), "other logins are not");
        t.failed("carol", Some(addr));
        assert!(t.check("alice", Some(addr)).is_some(), "the address is locked after 4 failures");
        t.succeeded("bob");
        assert!(t.check("bob", None).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::default();
        for i in 0..(MAX_ENTRIES + 10) {
            t.failed(&format!("user{i}"), None);
        }
        assert!(t.by_login.lock().map(|m| m.len()).unwrap_or(usize::MAX) <= MAX_ENTRIES);
    }
}
