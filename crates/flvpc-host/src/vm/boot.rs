//! Whether a VM has booted, as its runner tells the engine: a small file in the runner's
//! volume (`/vm/boot`) that the runner rewrites (atomically) when the guest first answers SSH
//! or when it gives up, and that the engine reads through Docker's archive API while the VM
//! boots. A file, not a log line: a guest flooding its console rotates the runner's log.
//!
//! Format: the state's word on the first line (`booting`, `ready`, `failed`), then, for
//! `failed`, the message (why, and the console's last lines).

use std::path::Path;

/// The boot state file, in the runner's state directory.
pub const BOOT_FILE: &str = "boot";
/// The largest boot file the engine reads (a failure carries 30 console lines, cut short).
pub const BOOT_FILE_MAX_BYTES: usize = 16 * 1024;
/// A console line in a failure message is cut to this many characters.
const LINE_CHARS: usize = 240;

/// Where a VM's boot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootState {
    /// QEMU runs; the guest has not answered SSH yet.
    Booting,
    /// The guest answered SSH (once: later restarts of sshd inside do not change this).
    Ready,
    /// The guest did not boot (deadline passed, or QEMU ended while booting): QEMU is gone and
    /// the runner waits to be stopped or restarted. The message says why.
    Failed(String),
}

impl BootState {
    /// The file's text.
    pub fn render(&self) -> String {
        match self {
            BootState::Booting => "booting\n".to_owned(),
            BootState::Ready => "ready\n".to_owned(),
            BootState::Failed(why) => {
                let lines: Vec<String> = why.lines().map(|l| l.chars().take(LINE_CHARS).collect()).collect();
                let mut text = format!("failed\n{}\n", lines.join("\n"));
                if text.len() > BOOT_FILE_MAX_BYTES {
                    let mut cut = BOOT_FILE_MAX_BYTES;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                }
                text
            }
        }
    }

    /// Reads the file's text; `None` for text this version does not understand.
    pub fn parse(text: &str) -> Option<Self> {
        let (word, rest) = text.split_once('\n').unwrap_or((text, ""));
        match word.trim() {
            "booting" => Some(BootState::Booting),
            "ready" => Some(BootState::Ready),
            "failed" => Some(BootState::Failed(rest.trim_end().to_owned())),
            _ => None,
        }
    }

    /// Ready and failed stay so until the runner restarts.
    pub fn is_final(&self) -> bool {
        !matches!(self, BootState::Booting)
    }
}

/// Writes `state` to `path` through a file beside it and a rename: a reader sees the old or
/// the new state, never half of one.
pub fn write_state(path: &Path, state: &BootState) -> std::io::Result<()> {
    let part = path.with_extension("part");
    std::fs::write(&part, state.render())?;
    std::fs::rename(&part, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for state in
            [BootState::Booting, BootState::Ready, BootState::Failed("no SSH within 300 s\n[ 1.0] panic".into())]
        {
            assert_eq!(BootState::parse(&state.render()), Some(state.clone()));
        }
        assert_eq!(BootState::parse("rebooting\n"), None);
        assert!(BootState::Ready.is_final() && !BootState::Booting.is_final());
    }

    #[test]
    fn a_failure_stays_small_whatever_the_console_printed() {
        let flood = format!("{}\n", "x".repeat(10_000)).repeat(100);
        let text = BootState::Failed(flood).render();
        assert!(text.len() <= BOOT_FILE_MAX_BYTES, "{}", text.len());
        assert!(text.lines().skip(1).all(|l| l.chars().count() <= LINE_CHARS));
        assert!(matches!(BootState::parse(&text), Some(BootState::Failed(_))));
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(BOOT_FILE);
        write_state(&path, &BootState::Booting).expect("write");
        write_state(&path, &BootState::Ready).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "ready\n");
        assert!(!path.with_extension("part").exists());
    }
}
