//! Login throttling: every guess is counted before its password is checked.
//!
//! **Reservation.** [`LoginThrottle::begin`] admits an attempt and counts it as *in flight*
//! under one lock, before any argon2 work. The attempt then ends as a failure (counted), a
//! success (forgiven) or is cancelled when no password was checked (the server was busy).
//! An attempt dropped unfinished (the client hung up) counts as a failure, so aborting a
//! request does not hide a guess. While guesses are in flight, only as many are admitted as
//! the free failures left: with N free failures exactly N parallel guesses reach the
//! password check, however many arrive at once. After that, one guess at a time is admitted
//! per lock-out delay, and the delay doubles with each failure (up to `MAX_DELAY`).
//!
//! **Keys.** Three budgets are kept, and an attempt must pass all three:
//! - login + source address: the tight one (`pair` limits). The owner's own typos and a
//!   guesser at one address are stopped here.
//! - source address: one source spraying many logins (`addr` limits).
//! - login, from every address together: a botnet guessing one login. This budget is much
//!   larger (`global` limits) and it does **not** apply to an address the login signed in
//!   from before (remembered in memory for `KNOWN_FOR`; a restart forgets, which only puts
//!   the owner back on the global budget). So strangers elsewhere can exhaust only the
//!   global budget, which never keeps the owner out of an address they used. Two costs are
//!   accepted: someone behind the owner's NAT address shares the owner's pair budget, and the
//!   owner on a brand-new address shares the global budget while strangers exhaust it.
//!
//! IPv6 sources are keyed by their /64 (one subscriber usually holds the whole prefix, so
//! counting single addresses would give an attacker 2^64 budgets).
//!
//! **Memory.** Each table holds at most `max_entries` keys. When it is full, only entries with
//! nothing to remember (no failure in the window, no lock, nothing in flight) are dropped:
//! an entry that counts against someone is never evicted in favour of a newcomer. A newcomer
//! that finds no room is refused (429) — except a login from a remembered address, which
//! passes without being recorded in the full table — so a junk flood cannot reset a real
//! target's count, and the address budget bounds how fast any one source fills the tables.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default bound on the keys of each table.
const MAX_ENTRIES: usize = 20_000;
/// Failures older than this are forgotten (when no lock is pending).
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest lock-out.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// How long a successful sign-in from an address exempts that address from the global budget.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// A full table is swept for forgettable entries at most this often (a sweep is O(n)).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Logins are clipped so that hostile 1 MB "logins" cannot fill memory.
const MAX_LOGIN_KEY: usize = 64;

/// Thresholds for one kind of key.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures allowed in the window before delays start.
    pub free_failures: u32,
    /// The first delay once the free failures are used up.
    pub base_delay: Duration,
}

/// The source of an attempt as the throttle counts it: IPv4, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(Option<IpAddr>);

impl Source {
    fn of(addr: Option<IpAddr>) -> Self {
        Source(addr.map(|a| match a {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
                }
            },
            v4 => v4,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Failures in the window.
    failures: u32,
    /// Admitted attempts whose password check has not ended yet.
    in_flight: u32,
    /// The last failure (or the first reservation).
    last: Instant,
    /// No attempt is admitted before this.
    locked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Self {
        Record { failures: 0, in_flight: 0, last: now, locked_until: None }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Forgets old failures once the window has passed and nothing is pending.
    fn age(&mut self, now: Instant) {
        if self.in_flight == 0 && self.locked(now).is_none() && now.duration_since(self.last) >= WINDOW {
            self.failures = 0;
            self.locked_until = None;
        }
    }

    /// Whether forgetting this entry would help someone guess.
    fn worth_keeping(&self, now: Instant) -> bool {
        self.in_flight > 0
            || self.locked(now).is_some()
            || (self.failures > 0 && now.duration_since(self.last) < WINDOW)
    }

    /// How long a new attempt must wait, if at all.
    fn wait(&self, limits: Limits, now: Instant) -> Option<Duration> {
        if let Some(left) = self.locked(now) {
            return Some(left);
        }
        // Free failures left cover every guess in flight plus this one; past them, one at a time.
        let covered = self.failures.saturating_add(self.in_flight) < limits.free_failures;
        (self.in_flight > 0 && !covered).then_some(limits.base_delay.max(Duration::from_secs(1)))
    }

    fn fail(&mut self, limits: Limits, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        if self.failures >= limits.free_failures {
            let doublings = (self.failures - limits.free_failures).min(16);
            let delay = limits.base_delay.saturating_mul(1 << doublings).min(MAX_DELAY);
            self.locked_until = Some(now + delay);
        }
    }
}

/// One budget: records by key, bounded.
#[derive(Debug)]
struct Table<K> {
    records: HashMap<K, Record>,
    limits: Limits,
    max_entries: usize,
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limits: Limits, max_entries: usize) -> Self {
        Table { records: HashMap::new(), limits, max_entries, last_sweep: None }
    }

    fn wait(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let record = self.records.get_mut(key)?;
        record.age(now);
        record.wait(self.limits, now)
    }

    /// Whether `key` has (or can get) a record, dropping only forgettable entries for room.
    fn has_room(&mut self, key: &K, now: Instant) -> bool {
        if self.records.len() < self.max_entries || self.records.contains_key(key) {
            return true;
        }
        if self.last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            self.last_sweep = Some(now);
            self.records.retain(|_, r| r.worth_keeping(now));
        }
        self.records.len() < self.max_entries
    }

    fn reserve(&mut self, key: K, now: Instant) {
        self.records.entry(key).or_insert_with(|| Record::new(now)).in_flight += 1;
    }

    /// Counts a failure; a record forgotten meanwhile (after a success) starts again, if there is room.
    fn fail(&mut self, key: &K, now: Instant) {
        if !self.has_room(key, now) {
            return;
        }
        let limits = self.limits;
        self.records.entry(key.clone()).or_insert_with(|| Record::new(now)).fail(limits, now);
    }

    /// Ends an attempt without counting it.
    fn release(&mut self, key: &K) {
        if let Some(record) = self.records.get_mut(key) {
            record.in_flight = record.in_flight.saturating_sub(1);
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

#[derive(Debug)]
struct Tables {
    pair: Table<(String, Source)>,
    addr: Table<Source>,
    global: Table<String>,
    /// (login, source) → last successful sign-in.
    known: HashMap<(String, Source), Instant>,
    max_known: usize,
}

impl Tables {
    fn is_known(&self, pair: &(String, Source), now: Instant) -> bool {
        self.known.get(pair).is_some_and(|at| now.duration_since(*at) < KNOWN_FOR)
    }

    fn remember(&mut self, pair: (String, Source), now: Instant) {
        if self.known.len() >= self.max_known && !self.known.contains_key(&pair) {
            // Losing a remembered address only puts its owner back on the global budget.
            self.known.retain(|_, at| now.duration_since(*at) < KNOWN_FOR);
            if self.known.len() >= self.max_known {
                if let Some(oldest) = self.known.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) {
                    self.known.remove(&oldest);
                }
            }
        }
        self.known.insert(pair, now);
    }
}

/// Throttles sign-in attempts; see the module documentation for the design.
#[derive(Debug)]
pub struct LoginThrottle {
    tables: Mutex<Tables>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(
            Limits { free_failures: 5, base_delay: Duration::from_secs(2) },
            Limits { free_failures: 20, base_delay: Duration::from_secs(2) },
        )
    }
}

/// Which tables hold a reservation of an attempt.
#[derive(Debug, Clone, Copy, Default)]
struct Reserved {
    pair: bool,
    addr: bool,
    global: bool,
}

/// An admitted sign-in attempt. End it with [`Attempt::failed`], [`Attempt::succeeded`] or
/// [`Attempt::cancel`]; dropped unfinished, it counts as a failure.
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    pair: (String, Source),
    reserved: Reserved,
    finished: bool,
}

impl Attempt<'_> {
    /// The password was wrong: the guess stays counted.
    pub fn failed(mut self) {
        self.finished = true;
        self.throttle.finish(&self.pair, self.reserved, Outcome::Failed);
    }

    /// The password was right: this attempt is forgiven, the login+address's failures are
    /// forgotten, and the address is remembered for this login.
    pub fn succeeded(mut self) {
        self.finished = true;
        self.throttle.finish(&self.pair, self.reserved, Outcome::Succeeded);
    }

    /// No password was checked (e.g. the server was busy): the attempt does not count.
    pub fn cancel(mut self) {
        self.finished = true;
        self.throttle.finish(&self.pair, self.reserved, Outcome::Cancelled);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.throttle.finish(&self.pair, self.reserved, Outcome::Failed);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    Cancelled,
}

impl LoginThrottle {
    /// A throttle with explicit per-login+address and per-address limits; the global
    /// per-login budget is ten times the per-login+address one.
    pub fn new(pair: Limits, addr: Limits) -> Self {
        let global = Limits { free_failures: pair.free_failures.saturating_mul(10), base_delay: pair.base_delay };
        Self::with_limits(pair, addr, global, MAX_ENTRIES)
    }

    /// A throttle with every limit explicit, including the bound on each table (tests use small ones).
    pub fn with_limits(pair: Limits, addr: Limits, global: Limits, max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        Self {
            tables: Mutex::new(Tables {
                pair: Table::new(pair, max_entries),
                addr: Table::new(addr, max_entries),
                global: Table::new(global, max_entries),
                known: HashMap::new(),
                max_known: max_entries,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits an attempt to sign in as `login` from `addr`, counting it now, or says how
    /// long to wait.
    pub fn begin(&self, login: &str, addr: Option<IpAddr>) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let login: String = login.chars().take(MAX_LOGIN_KEY).collect();
        let source = Source::of(addr);
        let pair = (login.clone(), source);
        let mut t = self.lock();
        let known = t.is_known(&pair, now);
        let waits =
            [t.pair.wait(&pair, now), t.addr.wait(&source, now), if known { None } else { t.global.wait(&login, now) }];
        if let Some(wait) = waits.into_iter().flatten().max() {
            return Err(wait);
        }
        let room = Reserved {
            pair: t.pair.has_room(&pair, now),
            addr: t.addr.has_room(&source, now),
            global: t.global.has_room(&login, now),
        };
        let has_room = room.pair && room.addr && room.global;
        if !has_room && !known {
            // Full of entries that count against someone: refuse the newcomer, forget no one.
            return Err(t.pair.limits.base_delay.max(Duration::from_secs(1)));
        }
        if room.pair {
            t.pair.reserve(pair.clone(), now);
        }
        if room.addr {
            t.addr.reserve(source, now);
        }
        if room.global {
            t.global.reserve(login, now);
        }
        Ok(Attempt { throttle: self, pair, reserved: room, finished: false })
    }

    fn finish(&self, pair: &(String, Source), reserved: Reserved, outcome: Outcome) {
        let now = Instant::now();
        let mut t = self.lock();
        match outcome {
            Outcome::Failed => {
                if reserved.pair {
                    t.pair.fail(pair, now);
                }
                if reserved.addr {
                    t.addr.fail(&pair.1, now);
                }
                if reserved.global {
                    t.global.fail(&pair.0, now);
                }
            }
            Outcome::Succeeded | Outcome::Cancelled => {
                if reserved.pair {
                    t.pair.release(pair);
                }
                if reserved.addr {
                    t.addr.release(&pair.1);
                }
                if reserved.global {
                    t.global.release(&pair.0);
                }
                if outcome == Outcome::Succeeded {
                    // The owner's own earlier typos from here are forgiven; strangers' are not.
                    if t.pair.records.get(pair).is_some_and(|r| r.in_flight == 0) {
                        t.pair.records.remove(pair);
                    }
                    t.remember(pair.clone(), now);
                }
            }
        }
    }

    /// How many keys each table holds: login+address, address, login (for tests of the bound).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let t = self.lock();
        (t.pair.len(), t.addr.len(), t.global.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(free: u32) -> Limits {
        Limits { free_failures: free, base_delay: Duration::from_secs(10) }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    fn fail(t: &LoginThrottle, login: &str, addr: Option<IpAddr>) -> bool {
        match t.begin(login, addr) {
            Ok(attempt) => {
                attempt.failed();
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn exactly_the_free_failures_are_admitted_in_parallel() {
        let t = LoginThrottle::new(limits(5), limits(100));
        let admitted: Vec<Attempt<'_>> = (0..40).filter_map(|_| t.begin("bob", ip(1)).ok()).collect();
        assert_eq!(admitted.len(), 5, "reserved before any password check");
        for attempt in admitted {
            attempt.failed();
        }
        assert!(t.begin("bob", ip(1)).is_err(), "locked after the free failures");
    }

    #[test]
    fn in_flight_guesses_are_admitted_one_at_a_time_after_the_free_ones() {
        let t = LoginThrottle::new(limits(2), limits(100));
        let first = t.begin("bob", ip(1)).expect("free");
        let second = t.begin("bob", ip(1)).expect("free");
        assert!(t.begin("bob", ip(1)).is_err(), "no third while two are in flight");
        second.cancel();
        let third = t.begin("bob", ip(1)).expect("a cancelled attempt does not count");
        drop(third);
        first.failed();
        assert!(t.begin("bob", ip(1)).is_err(), "a dropped attempt counts as a failure");
    }

    #[test]
    fn success_forgives_the_pair_but_not_strangers() {
        let t = LoginThrottle::new(limits(3), limits(100));
        for _ in 0..2 {
            assert!(fail(&t, "bob", ip(1)));
        }
        t.begin("bob", ip(1)).expect("third").succeeded();
        for _ in 0..3 {
            assert!(fail(&t, "bob", ip(1)), "the owner's typos are forgotten after a success");
        }
        assert!(t.begin("bob", ip(1)).is_err());
    }

    #[test]
    fn strangers_cannot_lock_the_owner_out_of_a_known_address() {
        // Global budget: 4 failures from anywhere.
        let t = LoginThrottle::with_limits(limits(2), limits(100), limits(4), 1000);
        t.begin("bob", ip(1)).expect("owner").succeeded();
        for stranger in 10..40 {
            fail(&t, "bob", ip(stranger));
        }
        assert!(t.begin("bob", ip(99)).is_err(), "the global budget stops new addresses");
        t.begin("bob", ip(1)).expect("the owner's address passes").succeeded();
        assert!(t.begin("alice", ip(99)).is_ok(), "other logins are not affected");
    }

    #[test]
    fn an_address_is_locked_across_logins() {
        let t = LoginThrottle::new(limits(100), limits(3));
        for login in ["a", "b", "c"] {
            assert!(fail(&t, login, ip(1)));
        }
        assert!(t.begin("d", ip(1)).is_err());
        assert!(t.begin("d", ip(2)).is_ok());
    }

    #[test]
    fn ipv6_is_counted_by_its_64_prefix() {
        let t = LoginThrottle::new(limits(100), limits(2));
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2::ffff".parse().expect("ip");
        assert!(fail(&t, "x", Some(a)));
        assert!(fail(&t, "y", Some(b)));
        assert!(t.begin("z", Some("2001:db8:1:2::7".parse().expect("ip"))).is_err());
        assert!(t.begin("z", Some("2001:db8:1:3::7".parse().expect("ip"))).is_ok());
    }

    #[test]
    fn junk_cannot_flush_a_target_and_memory_is_bounded() {
        let t = LoginThrottle::with_limits(limits(3), limits(1_000_000), limits(1_000_000), 100);
        for _ in 0..3 {
            assert!(fail(&t, "target", ip(1)));
        }
        let mut refused = 0;
        for i in 0..1000 {
            if !fail(&t, &format!("junk{i}"), ip(2)) {
                refused += 1;
            }
        }
        let (pair, addr, global) = t.sizes();
        assert!(pair <= 100 && addr <= 100 && global <= 100, "bounded: {pair} {addr} {global}");
        assert!(refused > 0, "newcomers are refused when the table is full");
        assert!(t.begin("target", ip(1)).is_err(), "the target is still locked");
    }

    #[test]
    fn known_owner_passes_a_full_table() {
        let t = LoginThrottle::with_limits(limits(3), limits(1_000_000), limits(1_000_000), 50);
        t.begin("owner", ip(1)).expect("owner").succeeded();
        for i in 0..200 {
            fail(&t, &format!("junk{i}"), ip(2));
        }
        t.begin("owner", ip(1)).expect("a remembered pair passes a full table").succeeded();
    }
}
