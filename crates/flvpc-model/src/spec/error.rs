//! What goes wrong with a cluster spec: every problem names the path of the field it was found at,
//! and all problems are reported together so a person can fix a file in one pass.

use std::fmt;

/// At most this many errors are listed; a hostile file could otherwise produce a megabyte of them.
const MAX_REPORTED: usize = 100;

/// Where in the text a syntax error was found, as the parser reports it (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPosition {
    /// Line number, counting from 1.
    pub line: u64,
    /// Column number, counting from 1.
    pub column: u64,
}

/// One problem with a cluster spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, e.g. `machines[1].spec.portMappings[0].hostPort`.
    /// Empty when the problem concerns the whole document (size, syntax).
    pub path: String,
    /// What is wrong, as a sentence a person can act on.
    pub message: String,
    /// Line and column for syntax errors, when the parser gives them.
    pub position: Option<TextPosition>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A cluster spec was refused. Lists every problem found, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The problems, at most 100 of them.
    pub errors: Vec<FieldError>,
    /// How many further problems were found but not listed.
    pub omitted: usize,
}

impl SpecError {
    /// A refusal with a single problem.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { errors: vec![FieldError { path: path.into(), message: message.into(), position: None }], omitted: 0 }
    }

    /// Whether some problem is reported at exactly `path` (convenient for callers and tests).
    pub fn has_path(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One problem per line: a file with several mistakes stays readable in a terminal.
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n… and {} more problems", self.omitted)?;
        }
        Ok(())
    }
}

/// Collects errors while reading or validating, so that all of them can be reported at once.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<FieldError>,
    omitted: usize,
}

impl Problems {
    /// Records a problem at `path`.
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(FieldError { path: path.to_owned(), message: message.into(), position: None });
        } else {
            self.omitted += 1;
        }
    }

    /// `Ok(value)` when nothing was recorded, otherwise every recorded problem.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, SpecError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(SpecError { errors: self.errors, omitted: self.omitted })
        }
    }
}

/// Collects warnings, capped like errors so that a file full of unknown keys stays readable.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    list: Vec<String>,
    omitted: usize,
}

impl Warnings {
    /// Records a warning about the field at `path`.
    pub(crate) fn warn(&mut self, path: &str, message: impl fmt::Display) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(if path.is_empty() { message.to_string() } else { format!("{path}: {message}") });
        } else {
            self.omitted += 1;
        }
    }

    /// The warnings, with a last line counting those left out.
    pub(crate) fn into_vec(mut self) -> Vec<String> {
        if self.omitted > 0 {
            self.list.push(format!("… and {} more warnings", self.omitted));
        }
        self.list
    }
}

/// Quotes a value from the input for a message: control characters escaped, long values cut,
/// so that a hostile string can neither forge lines in a log nor flood it.
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::from("`");
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('`');
    out
}

/// `base.key`, or `base["key"]` when the key is not a plain word (it came from the input).
pub(crate) fn join(base: &str, key: &str) -> String {
    let plain =
        !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (base.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{base}.{key}"),
        (_, false) => {
            let quoted = shown(key);
            let inner = quoted.trim_matches('`');
            format!("{base}[\"{inner}\"]")
        }
    }
}

/// `base[index]`.
pub(crate) fn at(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}
