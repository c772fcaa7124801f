//! The process's own resource limits: the number of open files flvpc may hold.
//!
//! Every gateway connection and every forwarded channel is a socket. Distributions start
//! services with a soft limit of 1024 open files while allowing far more (the hard
//! limit), so flvpc raises its soft limit to the hard one at start, as servers do.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// The open-file limit of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// What applies now.
    pub soft: u64,
    /// The most the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// Why the open-file limit could not be read or raised.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// getrlimit failed.
    #[error("cannot read the open-file limit (RLIMIT_NOFILE): {0}")]
    Read(nix::Error),
    /// setrlimit failed.
    #[error("cannot raise the open-file limit (RLIMIT_NOFILE) from {from} to {to}: {source}")]
    Raise {
        /// The soft limit before.
        from: u64,
        /// The soft limit asked for.
        to: u64,
        /// The kernel's answer.
        source: nix::Error,
    },
}

/// The open-file limit of this process now.
pub fn fd_limit() -> Result<FdLimit, LimitError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(LimitError::Read)?;
    Ok(FdLimit { soft, hard })
}

/// Raises the soft open-file limit to the hard limit and returns the limit that applies
/// afterwards. An unlimited hard limit is taken as the kernel's ceiling (fs.nr_open),
/// since Linux refuses an unlimited number of open files.
pub fn raise_fd_limit() -> Result<FdLimit, LimitError> {
    let before = fd_limit()?;
    let target = if before.hard == RLIM_INFINITY { nr_open().unwrap_or(before.soft) } else { before.hard };
    if target <= before.soft {
        return Ok(before);
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, before.hard).map_err(|source| LimitError::Raise {
        from: before.soft,
        to: target,
        source,
    })?;
    fd_limit()
}

/// The kernel's ceiling on open files per process.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_a_second_raise_changes_nothing() {
        let before = fd_limit().expect("read the limit");
        assert!(before.soft <= before.hard);
        let raised = raise_fd_limit().expect("raise the limit");
        assert_eq!(raised.hard, before.hard, "the hard limit is left alone");
        if before.hard != RLIM_INFINITY {
            assert_eq!(raised.soft, before.hard, "the soft limit is the hard one now");
        }
        assert!(raised.soft >= before.soft);
        assert_eq!(raise_fd_limit().expect("raise again"), raised);
    }
}
