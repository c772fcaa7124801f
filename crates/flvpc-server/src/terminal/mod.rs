//! The browser terminal's machine side, shared by the panel (which serves the page and the
//! WebSocket) and the server's start-up (which makes the key): a root shell in a running machine,
//! reached the way a member's own SSH client reaches it.
//!
//! The server signs in to the machine's sshd with a key of its own ([`TerminalKey`], made once in
//! the data dir), which the reconciler appends to every machine's authorized_keys. The session
//! goes to the machine's address on its namespace's network, port 22, so containers and microVMs
//! are served alike. [`Terminals`] holds the caps (per user and in all).

mod caps;
mod key;
mod ssh;

pub use caps::{Full, TerminalSlot, Terminals};
pub use key::{TerminalKey, KEY_COMMENT, KEY_FILE};
pub use ssh::{open_shell, Connection, Shell};

use std::time::Duration;

/// Terminals open at once per user.
pub const MAX_PER_USER: usize = 4;
/// Terminals open at once, all users together.
pub const MAX_TOTAL: usize = 64;
/// Largest WebSocket frame or message either way (the browser's and the machine's data alike).
pub const MAX_FRAME: usize = 64 * 1024;
/// A terminal with no input and no output for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long connecting and signing in to the machine's sshd may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest terminal width or height a resize may ask for.
pub const MAX_SIZE: u32 = 500;

/// A terminal size asked for by the browser, when both sides are in 1..=[`MAX_SIZE`].
pub fn valid_size(cols: u64, rows: u64) -> Option<(u32, u32)> {
    let fits = |n: u64| u32::try_from(n).ok().filter(|n| (1..=MAX_SIZE).contains(n));
    Some((fits(cols)?, fits(rows)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_outside_one_to_five_hundred_are_ignored() {
        assert_eq!(valid_size(80, 24), Some((80, 24)));
        assert_eq!(valid_size(1, 500), Some((1, 500)));
        assert_eq!(valid_size(0, 24), None);
        assert_eq!(valid_size(80, 501), None);
        assert_eq!(valid_size(u64::MAX, 24), None);
    }
}
