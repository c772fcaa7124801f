//! Running debootstrap and turning its output into progress reports.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::recipe::DEBIAN12_SUITE;
use super::scratch::ScratchDir;
use super::{io_err, spawn_error, ImageError, Phase, Progress};

/// What one debootstrap output line means for progress.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Retrieved(String),
    Installing(String),
    Other,
}

fn classify(line: &str) -> Step {
    let Some(rest) = line.strip_prefix("I: ") else { return Step::Other };
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        // `Validating <package> <version>` follows each package's download; index files
        // (`Retrieving Packages`) have no version and are not counted.
        ["Validating", package, _version] => Step::Retrieved((*package).to_owned()),
        [first, ..] if matches!(*first, "Extracting" | "Unpacking" | "Configuring" | "Installing") => {
            Step::Installing(rest.trim().to_owned())
        }
        _ => Step::Other,
    }
}

fn debootstrap_args(print_debs: bool, packages: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if print_debs {
        args.push("--print-debs".to_owned());
    }
    args.push("--variant=minbase".to_owned());
    args.push(format!("--include={}", packages.join(",")));
    args.push(DEBIAN12_SUITE.to_owned());
    args
}
const DEBOOTSTRAP_HINT: &str = "install it with `apt-get install -y --no-install-recommends debootstrap`";

pub(super) async fn debootstrap(
    target: &Path,
    mirror: &str,
    work_dir: &Path,
    packages: &'static [&'static str],
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<(), ImageError> {
    // debootstrap never prints how many packages it will fetch. `--print-debs` does, at the
    // cost of resolving dependencies again (~9 s of CPU): run it alongside the real run, on
    // the second core, so the total shows up without making the build longer.
    let count_dir = ScratchDir::new(work_dir)?;
    let count_target = count_dir.path().to_owned();
    let mirror_owned = mirror.to_owned();
    let counter = tokio::spawn(async move {
        let _keep = count_dir;
        let out = Command::new("debootstrap")
            .args(debootstrap_args(true, packages))
            .arg(&count_target)
            .arg(&mirror_owned)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .ok()?;
        // Required packages one per line, then the base packages on one line.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let packages: std::collections::BTreeSet<&str> = stdout.split_whitespace().collect();
        (out.status.success() && !packages.is_empty()).then_some(packages.len() as u64)
    });

    let mut child = Command::new("debootstrap")
        .args(debootstrap_args(false, packages))
        .arg(target)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error("debootstrap", DEBOOTSTRAP_HINT))?;

    // stdout and stderr merged line by line, in arrival order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);

    progress(Progress::new(Phase::Downloading, Some(0), None, "fetching the package indices"));
    let mut counter = Some(counter);
    let mut total: Option<u64> = None;
    let mut retrieved: u64 = 0;
    let mut installed: u64 = 0;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(30);
    while let Some(line) = rx.recv().await {
        if total.is_none() && counter.as_ref().is_some_and(|c| c.is_finished()) {
            if let Some(c) = counter.take() {
                total = c.await.ok().flatten();
            }
        }
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        match classify(&line) {
            Step::Retrieved(package) => {
                retrieved += 1;
                // Never report more done than total, should the two runs disagree.
                let total = total.map(|t| t.max(retrieved));
                progress(Progress::new(Phase::Downloading, Some(retrieved), total, package));
            }
            Step::Installing(what) => {
                installed += 1;
                progress(Progress::new(Phase::Installing, Some(installed), None, what));
            }
            Step::Other => {}
        }
    }
    if let Some(c) = counter {
        c.abort();
    }
    let status = child.wait().await.map_err(io_err("wait for", Path::new("debootstrap")))?;
    if status.success() {
        return Ok(());
    }
    let log = work_dir.join("flvpc-debootstrap.log");
    let saved = fs::copy(target.join("debootstrap/debootstrap.log"), &log).is_ok();
    Err(ImageError::Debootstrap {
        status: status.to_string(),
        log: if saved { log.display().to_string() } else { "(no log: debootstrap stopped before writing one)".into() },
        tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_lines() {
        assert_eq!(classify("I: Validating libacl1 2.3.1-3"), Step::Retrieved("libacl1".into()));
        assert_eq!(classify("I: Retrieving libacl1 2.3.1-3"), Step::Other);
        assert_eq!(classify("I: Validating Packages "), Step::Other);
        assert_eq!(classify("I: Unpacking libc6:amd64..."), Step::Installing("Unpacking libc6:amd64...".into()));
        assert_eq!(
            classify("I: Configuring the base system..."),
            Step::Installing("Configuring the base system...".into())
        );
        assert_eq!(classify("gpgv: Good signature"), Step::Other);
    }
}
