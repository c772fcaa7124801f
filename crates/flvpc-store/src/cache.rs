//! The store's read cache: the answers of the two reads every panel and API request makes
//! (who is calling, and a namespace's machine list) kept in memory between writes.
//!
//! Why: on SQLite through sqlx each query crosses to a worker thread and back, and under 20
//! concurrent clients that hand-off, not SQLite, set the p99 (issue 9: 33 ms for a 100-machine
//! list, 85-220 ms for 200 running machines, against a 10 ms target).
//!
//! Invariant: a cached answer is never older than the last write this process committed, nor
//! older than [`MAX_AGE`]. Every write transaction of the store ends in `WriteTx::commit`,
//! which bumps the [`ReadCache::generation`] *after* the commit; a reader takes the generation
//! *before* it queries and files its answer under that generation, so an answer that raced a
//! write is filed under an old generation and never served. [`MAX_AGE`] bounds what another
//! process's writes (an `flvpc admin` command, a second server on one PostgreSQL) can hide.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a cached answer is served, whatever this process wrote.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Entries per map at most: a map that would grow past it starts afresh (the answers are
/// refilled on demand), so no caller can grow the server's memory without bound.
const MAX_ENTRIES: usize = 4096;

/// The generation a reader read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// The store's cached answers and the generation of its writes.
#[derive(Debug, Default)]
pub struct ReadCache {
    generation: AtomicU64,
}

impl ReadCache {
    /// The current generation: take it before the query whose answer is to be filed.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// A write committed: every answer filed before now is stale.
    pub fn written(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// One map of answers, by key, each filed under the generation it was read in.
#[derive(Debug)]
pub struct Answers<K, V> {
    entries: Mutex<HashMap<K, Filed<V>>>,
}

#[derive(Debug)]
struct Filed<V> {
    generation: Generation,
    at: Instant,
    value: V,
}

impl<K, V> Default for Answers<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash, V: Clone> Answers<K, V> {
    /// The answer for `key` if it was read in generation `now` less than [`MAX_AGE`] ago.
    pub fn get(&self, key: &K, now: Generation) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let filed = entries.get(key)?;
        (filed.generation == now && filed.at.elapsed() < MAX_AGE).then(|| filed.value.clone())
    }

    /// Files `value`, read in generation `read_in`, for `key`.
    pub fn put(&self, key: K, read_in: Generation, value: V) {
        // A poisoned lock only means another thread panicked mid-insert: the map is still a
        // map, and an answer not filed is merely read again.
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, Filed { generation: read_in, at: Instant::now(), value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_makes_every_earlier_answer_stale() {
        let cache = ReadCache::default();
        let answers: Answers<&str, u32> = Answers::default();
        let read_in = cache.generation();
        answers.put("a", read_in, 1);
        assert_eq!(answers.get(&"a", cache.generation()), Some(1));
        cache.written();
        assert_eq!(answers.get(&"a", cache.generation()), None);
    }

    #[test]
    fn an_answer_that_raced_a_write_is_never_served() {
        let cache = ReadCache::default();
        let answers: Answers<&str, u32> = Answers::default();
        let read_in = cache.generation();
        cache.written(); // committed while the query ran
        answers.put("a", read_in, 1);
        assert_eq!(answers.get(&"a", cache.generation()), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let cache = ReadCache::default();
        let answers: Answers<usize, usize> = Answers::default();
        for i in 0..MAX_ENTRIES * 2 {
            answers.put(i, cache.generation(), i);
        }
        assert!(answers.entries.lock().expect("lock").len() <= MAX_ENTRIES);
        assert_eq!(answers.get(&(MAX_ENTRIES * 2 - 1), cache.generation()), Some(MAX_ENTRIES * 2 - 1));
    }
}
