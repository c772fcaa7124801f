//! How many browser terminals are open, per user and in all. A place is a slot given back when
//! it is dropped, so a terminal's place is free as soon as its session ends, however it ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The open terminals' counts.
#[derive(Clone)]
pub struct Terminals {
    counts: Arc<Mutex<Counts>>,
    max_per_user: usize,
    max_total: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_user: HashMap<i64, usize>,
}

/// Why no terminal can be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The user has this many open already.
    User(usize),
    /// The server has this many open already.
    Server(usize),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(max) => write!(f, "you have {max} terminals open already: close one, then reload this page"),
            Self::Server(max) => {
                write!(f, "the server has {max} terminals open already: try again later, or use SSH")
            }
        }
    }
}

/// One open terminal's place; given back on drop.
pub struct TerminalSlot {
    counts: Arc<Mutex<Counts>>,
    user: i64,
}

impl Drop for TerminalSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_user.remove(&self.user);
            }
        }
    }
}

impl Terminals {
    /// Counts with these caps.
    pub fn new(max_per_user: usize, max_total: usize) -> Self {
        Self { counts: Arc::default(), max_per_user, max_total }
    }

    /// A place for one more terminal of `user`, or which cap is reached.
    pub fn try_enter(&self, user: i64) -> Result<TerminalSlot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Full::Server(self.max_total));
        }
        let mine = counts.per_user.get(&user).copied().unwrap_or(0);
        if mine >= self.max_per_user {
            return Err(Full::User(self.max_per_user));
        }
        counts.total += 1;
        counts.per_user.insert(user, mine + 1);
        Ok(TerminalSlot { counts: self.counts.clone(), user })
    }

    /// Terminals open now, all users together.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Default for Terminals {
    fn default() -> Self {
        Self::new(super::MAX_PER_USER, super::MAX_TOTAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_total_caps_and_places_given_back_on_drop() {
        let terminals = Terminals::new(2, 3);
        let a1 = terminals.try_enter(1).expect("first");
        let _a2 = terminals.try_enter(1).expect("second");
        assert_eq!(terminals.try_enter(1).err(), Some(Full::User(2)));
        let _b1 = terminals.try_enter(2).expect("another user");
        assert_eq!(terminals.try_enter(3).err(), Some(Full::Server(3)));
        assert_eq!(terminals.open(), 3);
        drop(a1);
        assert_eq!(terminals.open(), 2);
        let _a3 = terminals.try_enter(1).expect("a place again after a close");
        assert!(Full::User(4).to_string().contains("4 terminals open"));
    }
}
