//! Running the host's image tools (debootstrap, mkfs.ext4, qemu-img, systemctl --root):
//! argv lists only, output captured, failures named with the tool's last words and the
//! package that provides it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

/// What went wrong building VM files.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A tool is not installed.
    #[error("{program} is not installed: install Debian's {package} package (scripts/dev.sh does)")]
    ProgramMissing {
        /// The program.
        program: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A tool failed.
    #[error("{program} failed ({status}): {output_tail}")]
    ProgramFailed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed.
        output_tail: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was tried.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No mirror was given and none is in the apt configuration.
    #[error("no Debian {suite} mirror found in /etc/apt: pass one explicitly (ArtifactOptions::mirror)")]
    MirrorNotFound {
        /// The suite looked for.
        suite: &'static str,
    },
    /// The mirror URL is not usable.
    #[error("mirror {0:?} is not a usable URL: give an http://, https:// or file:/ URL without spaces")]
    InvalidMirror(String),
    /// The built tree or directory is not what the recipe expects.
    #[error("{0}")]
    Layout(String),
    /// A value for the guest is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for an I/O error mapper.
pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.into();
    move |source| ArtifactError::Io { action, path, source }
}

/// Runs `program args…` to completion; `package` names where it comes from for the error.
pub async fn run<I, S>(program: &str, package: &'static str, args: I) -> Result<String, ArtifactError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ArtifactError::ProgramMissing { program: program.to_owned(), package }
        } else {
            ArtifactError::Io { action: "start", path: PathBuf::from(program), source: e }
        }
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        let lines: Vec<&str> = text.lines().collect();
        let output_tail = lines[lines.len().saturating_sub(15)..].join("\n");
        Err(ArtifactError::ProgramFailed { program: program.to_owned(), status: out.status, output_tail })
    }
}
