//! A running QEMU process: waiting for it to come up (or fail, with its console's last
//! lines), and stopping it gracefully through QMP with a deadline, then by force.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use super::console::{forward, ConsoleRing};
use super::qemu::{QemuCommand, QemuError};
use super::qmp;

/// Console bytes a [`RunningVm`] keeps when its console is on QEMU's standard output.
const CONSOLE_RING_BYTES: usize = 64 * 1024;

/// How many console lines an error carries: enough for a kernel panic's reason.
pub const TAIL_LINES: usize = 30;

/// What went wrong with a VM process.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The command line was invalid.
    #[error(transparent)]
    Command(#[from] QemuError),
    /// QEMU could not be started.
    #[error("cannot start {program}: {source} (install Debian's qemu-system-x86 package)")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file next to the VM could not be created.
    #[error("cannot create {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU ended before the VM was up: the guest failed to boot (or QEMU refused its options).
    #[error(
        "the VM stopped before it was up ({status}); QEMU said: {stderr_tail}\nlast console lines:\n{serial_tail}"
    )]
    Exited {
        /// QEMU's exit status.
        status: ExitStatus,
        /// The end of the serial console.
        serial_tail: String,
        /// The end of QEMU's own error output.
        stderr_tail: String,
    },
    /// The VM was not up before the deadline (it has been killed).
    #[error("the VM was not up within {deadline:?} (it was stopped); last console lines:\n{serial_tail}")]
    Timeout {
        /// The deadline.
        deadline: Duration,
        /// The end of the serial console.
        serial_tail: String,
    },
}

/// How a VM ended after [`RunningVm::power_down`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerOff {
    /// The guest shut down and QEMU exited on its own.
    Graceful(ExitStatus),
    /// The deadline passed (or QMP failed: the reason): QEMU was killed.
    Killed(String),
}

/// A QEMU child process with its console and QMP socket.
#[derive(Debug)]
pub struct RunningVm {
    child: Child,
    serial_log: PathBuf,
    /// The console's last bytes, when it is on QEMU's standard output.
    console: Option<Arc<ConsoleRing>>,
    stderr_log: PathBuf,
    qmp_socket: Option<PathBuf>,
}

impl RunningVm {
    /// Starts `cmd`. QEMU's own messages go to `SERIAL_LOG.qemu-stderr` beside the console log.
    /// A console on QEMU's standard output is copied to this process's standard output (and
    /// kept in memory for [`Self::serial_tail`]); needs a Tokio runtime.
    pub fn spawn(cmd: &QemuCommand) -> Result<Self, VmError> {
        let stderr_log = sibling(&cmd.serial_log, "qemu-stderr");
        let stderr =
            std::fs::File::create(&stderr_log).map_err(|source| VmError::File { path: stderr_log.clone(), source })?;
        let stdout = if cmd.console_on_stdout { Stdio::piped() } else { Stdio::null() };
        let mut child = cmd
            .command()?
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| VmError::Spawn { program: cmd.program.display().to_string(), source })?;
        let console = child.stdout.take().map(|out| {
            let ring = Arc::new(ConsoleRing::new(CONSOLE_RING_BYTES));
            tokio::spawn(forward(out, Arc::clone(&ring), tokio::io::stdout()));
            ring
        });
        Ok(Self { child, serial_log: cmd.serial_log.clone(), console, stderr_log, qmp_socket: cmd.qmp_socket.clone() })
    }

    /// QEMU's process id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last `n` lines of the guest's serial console.
    pub fn serial_tail(&self, n: usize) -> String {
        match &self.console {
            Some(ring) => ring.tail(n),
            None => tail(&self.serial_log, n),
        }
    }

    /// The exit status if QEMU has ended.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the guest's sshd answers with its banner on `127.0.0.1:port` (a QEMU
    /// host forward accepts connections before the guest listens, so a connect alone proves
    /// nothing). Fails as soon as QEMU exits, or at `deadline` (then QEMU is killed).
    pub async fn wait_ssh_banner(&mut self, port: u16, deadline: Duration) -> Result<(), VmError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exited() {
                return Err(self.exited(status));
            }
            if ssh_banner(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                return Ok(());
            }
            if start.elapsed() >= deadline {
                self.kill().await;
                return Err(VmError::Timeout { deadline, serial_tail: self.serial_tail(TAIL_LINES) });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits for QEMU to end, however long that takes.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Waits for QEMU to end by itself within `deadline` (killing it after). `Ok(status)`
    /// when it ended, `Err` with the console tail when it had to be killed.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus, VmError> {
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            _ => {
                self.kill().await;
                Err(VmError::Timeout { deadline, serial_tail: self.serial_tail(TAIL_LINES) })
            }
        }
    }

    /// Presses the VM's power button (QMP `system_powerdown`), waits up to `deadline` for
    /// the guest to shut down, then kills QEMU. Always returns with QEMU gone.
    pub async fn power_down(&mut self, deadline: Duration) -> PowerOff {
        if let Some(status) = self.try_exited() {
            return PowerOff::Graceful(status);
        }
        let pressed = match &self.qmp_socket {
            Some(socket) => qmp::execute(socket, "system_powerdown").await,
            None => Err("the VM has no QMP socket".to_owned()),
        };
        if let Err(reason) = pressed {
            self.kill().await;
            return PowerOff::Killed(reason);
        }
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(Ok(status)) => PowerOff::Graceful(status),
            Ok(Err(e)) => {
                self.kill().await;
                PowerOff::Killed(format!("cannot wait for QEMU: {e}"))
            }
            Err(_) => {
                self.kill().await;
                PowerOff::Killed(format!("the guest did not shut down within {deadline:?}"))
            }
        }
    }

    /// Kills QEMU and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    fn exited(&self, status: ExitStatus) -> VmError {
        VmError::Exited { status, serial_tail: self.serial_tail(TAIL_LINES), stderr_tail: tail(&self.stderr_log, 5) }
    }
}

/// `true` when something on `address` greets like an SSH server within 2 s.
pub async fn ssh_banner(address: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.ok()?;
        // Say hello back so that sshd does not log a dropped pre-auth connection as an error.
        let _ = stream.write_all(b"SSH-2.0-flvpc-probe\r\n").await;
        Some(&buf == b"SSH-")
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(true)))
}

/// `PATH.suffix`, beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The last `n` lines of a text file (lossy), or a note that it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert!(tail(&dir.path().join("none"), 2).contains("cannot be read"));
        assert_eq!(sibling(&path, "x"), dir.path().join("serial.log.x"));
    }
}
