//! Progress of long commands (image build, cluster operations) on stderr.
//!
//! On a terminal: indicatif bars, one per step, each left on screen when its step ends.
//! Anywhere else (a pipe, a log file, CI): plain lines, one when a step starts, its status
//! changes or it passes a tenth of its work, so logs stay readable and hold no escape codes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Bar for a step whose amount of work is known.
const BAR: &str = "{prefix} [{bar:30}] {pos}/{len} ({percent}%) {msg} [{elapsed}]";
/// Spinner for a step whose amount of work is not known (yet).
const SPINNER: &str = "{spinner} {prefix} {pos} {msg} [{elapsed}]";

/// Where a step stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Update<'a> {
    /// The step, e.g. `Downloading packages` or `create`; a new step starts a new bar or line.
    pub step: &'a str,
    /// Units done in this step, when countable.
    pub done: Option<u64>,
    /// Units in this step, when known.
    pub total: Option<u64>,
    /// A short state (`running`, `succeeded`): a change prints a plain line.
    pub status: &'a str,
    /// Free text (the current package); shown on the bar, and on plain lines that are printed anyway.
    pub detail: &'a str,
}

/// The progress display of one command.
pub struct Progress {
    mode: Mode,
    started: Instant,
    /// The step, status and tenth of the work last shown, to print plain lines only when one changes.
    shown: Option<(String, String, Option<u64>)>,
}

enum Mode {
    Bars {
        bar: Option<ProgressBar>,
        known_total: bool,
    },
    /// Plain lines to `out` (stderr, or a buffer in tests).
    Plain {
        out: Box<dyn Write + Send>,
    },
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn on_stderr() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    fn new(terminal: bool) -> Self {
        if terminal {
            Self::with_mode(Mode::Bars { bar: None, known_total: false })
        } else {
            Self::with_mode(Mode::Plain { out: Box::new(std::io::stderr()) })
        }
    }

    fn with_mode(mode: Mode) -> Self {
        Self { mode, started: Instant::now(), shown: None }
    }

    /// Shows `update`.
    pub fn update(&mut self, update: Update<'_>) {
        let tenth = match (update.done, update.total) {
            (Some(done), Some(total)) if total > 0 => Some(done.min(total) * 10 / total),
            _ => None,
        };
        let key = (update.step.to_owned(), update.status.to_owned(), tenth);
        let new_step = self.shown.as_ref().is_none_or(|(step, _, _)| step != update.step);
        let changed = self.shown.as_ref() != Some(&key);
        self.shown = Some(key);
        match &mut self.mode {
            Mode::Plain { out } => {
                if changed {
                    let line = plain_line(self.started.elapsed().as_secs_f64(), &update);
                    // Progress is a courtesy: a closed stderr must not stop the command.
                    let _ = writeln!(out, "{line}");
                }
            }
            Mode::Bars { bar, known_total } => {
                if new_step {
                    if let Some(old) = bar.take() {
                        old.finish();
                    }
                }
                let bar = bar.get_or_insert_with(|| {
                    *known_total = false;
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                    bar.set_style(style(SPINNER));
                    bar.set_prefix(update.step.to_owned());
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bar
                });
                if let Some(total) = update.total {
                    if !*known_total {
                        *known_total = true;
                        bar.disable_steady_tick();
                        bar.set_style(style(BAR));
                    }
                    bar.set_length(total);
                }
                if let Some(done) = update.done {
                    bar.set_position(done);
                }
                let message = match (update.status.is_empty(), update.detail.is_empty()) {
                    (false, false) => format!("{} {}", update.status, update.detail),
                    (false, true) => update.status.to_owned(),
                    _ => update.detail.to_owned(),
                };
                bar.set_message(message.chars().take(60).collect::<String>());
            }
        }
    }

    /// Ends the display: the last bar stays on screen, as it was.
    pub fn finish(&mut self) {
        if let Mode::Bars { bar, .. } = &mut self.mode {
            if let Some(bar) = bar.take() {
                bar.finish();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error return must not leave a spinner ticking over the error message.
        if let Mode::Bars { bar: Some(bar), .. } = &self.mode {
            bar.abandon();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants checked by the unit test below; the default style is a safe fallback.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("#>-")
}

/// One plain line: `[  12.3s] Downloading packages 60/240 (25%) running libc6`.
fn plain_line(elapsed_secs: f64, update: &Update<'_>) -> String {
    let mut line = format!("[{elapsed_secs:>6.1}s] {}", update.step);
    match (update.done, update.total) {
        (Some(done), Some(total)) if total > 0 => line.push_str(&format!(" {done}/{total} ({}%)", done * 100 / total)),
        (Some(done), Some(total)) => line.push_str(&format!(" {done}/{total}")),
        (Some(done), None) => line.push_str(&format!(" {done}")),
        _ => {}
    }
    for part in [update.status, update.detail] {
        if !part.is_empty() {
            line.push(' ');
            line.extend(part.chars().filter(|c| !c.is_control()).take(60));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_valid() {
        assert!(ProgressStyle::with_template(BAR).is_ok());
        assert!(ProgressStyle::with_template(SPINNER).is_ok());
    }

    #[test]
    fn plain_lines_have_no_escape_codes() {
        let update = Update {
            step: "Downloading packages",
            done: Some(60),
            total: Some(240),
            status: "",
            detail: "libc6\x1b[2K",
        };
        let line = plain_line(12.34, &update);
        assert_eq!(line, "[  12.3s] Downloading packages 60/240 (25%) libc6[2K");
    }

    /// A plain-mode sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_mode_prints_steps_not_every_update() {
        let sink = Sink::default();
        let mut progress = Progress::with_mode(Mode::Plain { out: Box::new(sink.clone()) });
        progress.update(Update {
            step: "Resolving mirror",
            detail: "reading the apt configuration",
            ..Update::default()
        });
        progress.update(Update { step: "Resolving mirror", detail: "using a mirror", ..Update::default() });
        for done in 0..=100 {
            progress.update(Update {
                step: "Downloading packages",
                done: Some(done),
                total: Some(100),
                ..Update::default()
            });
        }
        for status in ["queued", "running", "running", "succeeded"] {
            progress.update(Update { step: "create", done: Some(0), total: Some(0), status, detail: "" });
        }
        progress.finish();
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        // One line for the first step (its detail changing alone prints nothing), one per tenth of the
        // download (0..=10), one per status of the operation.
        assert_eq!(lines.len(), 1 + 11 + 3, "{text}");
        assert!(lines[0].ends_with("] Resolving mirror reading the apt configuration"), "{}", lines[0]);
        assert!(lines[6].ends_with("] Downloading packages 50/100 (50%)"), "{}", lines[6]);
        assert!(lines[14].ends_with("] create 0/0 succeeded"), "{}", lines[14]);
    }
}
