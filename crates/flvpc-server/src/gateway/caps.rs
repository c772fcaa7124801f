//! The gateway's counters and the slots that hold a place in them.
//!
//! Every place is taken by a slot value and given back when the slot is dropped, so no
//! path (an error, a panic in a task, a client that vanishes) can forget to give it back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Connection and channel counts, shared by all connections of one gateway.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    total: AtomicUsize,
    unauthenticated: Mutex<Unauthenticated>,
    per_user: Mutex<HashMap<i64, usize>>,
    forwards_per_user: Mutex<HashMap<i64, usize>>,
}

/// Connections that have not authenticated yet, in all and per source address.
#[derive(Debug, Default)]
struct Unauthenticated {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Why a new connection was closed before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The gateway holds its maximum of connections.
    Full,
    /// The gateway holds its maximum of connections that have not authenticated yet.
    TooManyUnauthenticated,
    /// This source address holds its maximum of connections that have not authenticated yet.
    TooManyFromAddress,
}

/// Locks a counter map; a panic elsewhere while it was held leaves plain numbers behind,
/// which are still right, so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes one place for `key` in `map` unless it already holds `max`.
fn enter(map: &mut HashMap<i64, usize>, key: i64, max: usize) -> bool {
    let n = map.entry(key).or_insert(0);
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

/// Gives back one place of `key`; empty entries are removed so the map only holds who is here.
fn leave<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Counters {
    /// Admits a new connection from `ip`: a place among all connections and, until it
    /// authenticates, one among the unauthenticated ones of its address. Checked before
    /// the handshake, so a refused connection costs nothing but its accept.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &super::GatewayConfig,
    ) -> Result<(ConnectionSlot, UnauthenticatedSlot), Refusal> {
        let address = address_key(ip);
        let mut unauth = lock(&self.unauthenticated);
        if unauth.per_address.get(&address).copied().unwrap_or(0) >= limits.max_unauthenticated_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        if unauth.total >= limits.max_unauthenticated {
            return Err(Refusal::TooManyUnauthenticated);
        }
        let max = limits.max_connections;
        if self.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_err() {
            return Err(Refusal::Full);
        }
        unauth.total += 1;
        *unauth.per_address.entry(address).or_insert(0) += 1;
        Ok((ConnectionSlot(self.clone()), UnauthenticatedSlot { counters: self.clone(), address }))
    }

    /// Takes one of `user`'s connection places, unless they hold `max` already.
    pub(crate) fn try_enter_user(self: &Arc<Self>, user: i64, max: usize) -> Option<UserSlot> {
        enter(&mut lock(&self.per_user), user, max).then(|| UserSlot { counters: self.clone(), user })
    }

    /// Takes one of `user`'s forwarded-channel places (across all their connections).
    pub(crate) fn try_enter_forward(self: &Arc<Self>, user: i64, max: usize) -> Option<ForwardSlot> {
        enter(&mut lock(&self.forwards_per_user), user, max).then(|| ForwardSlot { counters: self.clone(), user })
    }

    /// Connections open now, authenticated or not.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Forwarded channels `user` holds open now.
    #[cfg(test)]
    fn forwards_of(&self, user: i64) -> usize {
        lock(&self.forwards_per_user).get(&user).copied().unwrap_or(0)
    }
}

/// The key of the per-address cap: the IPv4 address, or the /64 of an IPv6 address (one
/// host usually owns a whole /64, so single IPv6 addresses would be no cap at all).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// A place among all connections.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<Counters>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place among the connections that have not authenticated yet. Dropped when the
/// connection authenticates or ends, whichever comes first.
#[derive(Debug)]
pub(crate) struct UnauthenticatedSlot {
    counters: Arc<Counters>,
    address: IpAddr,
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        let mut unauth = lock(&self.counters.unauthenticated);
        unauth.total = unauth.total.saturating_sub(1);
        leave(&mut unauth.per_address, &self.address);
    }
}

/// One of a user's connection places.
#[derive(Debug)]
pub(crate) struct UserSlot {
    counters: Arc<Counters>,
    user: i64,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        leave(&mut lock(&self.counters.per_user), &self.user);
    }
}

/// One of a user's forwarded-channel places, held by the channel's relay task.
#[derive(Debug)]
pub(crate) struct ForwardSlot {
    counters: Arc<Counters>,
    user: i64,
}

impl Drop for ForwardSlot {
    fn drop(&mut self) {
        leave(&mut lock(&self.counters.forwards_per_user), &self.user);
    }
}

/// Logs a refusal at most once per interval: a flood of refused connections must not
/// become a flood of log lines. Counts what it kept quiet about.
#[derive(Debug)]
pub(crate) struct QuietLog {
    started: Instant,
    interval: Duration,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl QuietLog {
    pub(crate) fn new(interval: Duration) -> Self {
        Self { started: Instant::now(), interval, last_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Whether to log now; `Some(n)` with the number of refusals not logged since the last line.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let last = self.last_ms.load(Ordering::Acquire);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due && self.last_ms.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::GatewayConfig;

    fn limits(total: usize, unauth: usize, per_address: usize) -> GatewayConfig {
        GatewayConfig {
            max_connections: total,
            max_unauthenticated: unauth,
            max_unauthenticated_per_address: per_address,
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn one_address_cannot_take_more_than_its_unauthenticated_places() {
        let counters = Arc::new(Counters::default());
        let config = limits(100, 50, 3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let held: Vec<_> = (0..3).map(|_| counters.admit(a, &config).expect("admitted")).collect();
        assert_eq!(counters.admit(a, &config).err(), Some(Refusal::TooManyFromAddress));
        let other = counters.admit(b, &config).expect("another address still gets in");
        assert_eq!(counters.connections(), 4);
        drop(other);
        // Authenticating gives the unauthenticated place back and keeps the connection's.
        let mut held = held;
        let (connection, unauth) = held.remove(0);
        drop(unauth);
        let again = counters.admit(a, &config).expect("a place of the address is free again");
        assert_eq!(counters.connections(), 4);
        drop((connection, again, held));
        assert_eq!(counters.connections(), 0);
        assert!(lock(&counters.unauthenticated).per_address.is_empty(), "no empty entries are kept");
    }

    #[test]
    fn unauthenticated_connections_leave_room_for_signed_in_ones() {
        let counters = Arc::new(Counters::default());
        let config = limits(4, 2, 10);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let first = counters.admit(ip(1), &config).expect("1");
        let _second = counters.admit(ip(2), &config).expect("2");
        assert_eq!(counters.admit(ip(3), &config).err(), Some(Refusal::TooManyUnauthenticated));
        // A signed-in connection keeps its connection place only.
        let (_kept, unauth) = first;
        drop(unauth);
        let _third = counters.admit(ip(3), &config).expect("3");
        assert_eq!(counters.admit(ip(4), &config).err(), Some(Refusal::TooManyUnauthenticated));
        assert_eq!(counters.connections(), 3);
    }

    #[test]
    fn the_total_cap_still_holds() {
        let counters = Arc::new(Counters::default());
        let config = limits(2, 10, 10);
        let a = counters.admit(IpAddr::from([10, 0, 0, 1]), &config).expect("1");
        let b = counters.admit(IpAddr::from([10, 0, 0, 2]), &config).expect("2");
        assert_eq!(counters.admit(IpAddr::from([10, 0, 0, 3]), &config).err(), Some(Refusal::Full));
        assert!(!lock(&counters.unauthenticated).per_address.contains_key(&IpAddr::from([10, 0, 0, 3])));
        drop((a, b));
        assert_eq!(counters.connections(), 0);
    }

    #[test]
    fn ipv6_addresses_are_capped_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn user_and_forward_places_are_given_back_on_drop() {
        let counters = Arc::new(Counters::default());
        let slots: Vec<_> = (0..3).map(|_| counters.try_enter_forward(7, 3).expect("place")).collect();
        assert!(counters.try_enter_forward(7, 3).is_none());
        assert!(counters.try_enter_forward(8, 3).is_some(), "another user has their own places");
        assert_eq!(counters.forwards_of(7), 3);
        drop(slots);
        assert_eq!(counters.forwards_of(7), 0);
        let user = counters.try_enter_user(7, 1).expect("place");
        assert!(counters.try_enter_user(7, 1).is_none());
        drop(user);
        assert!(counters.try_enter_user(7, 1).is_some());
    }

    #[test]
    fn quiet_log_speaks_once_per_interval_and_counts_the_rest() {
        let log = QuietLog::new(Duration::from_secs(3600));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        let log = QuietLog::new(Duration::ZERO);
        assert_eq!(log.allow(), Some(0));
    }
}
