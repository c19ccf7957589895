//! Located configuration errors: every error names the file, the line (when known) and
//! the field path, so `gatehouse check` output can be followed straight to the mistake.

use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: PathBuf,
    /// 1-based line, when the problem can be tied to one.
    pub line: Option<u64>,
    /// Field path such as `routes[1].backend`; empty for whole-file problems.
    pub path: String,
    pub message: String,
}

impl Error {
    pub fn new(file: &Path, line: Option<u64>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Error { file: file.to_path_buf(), line, path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, " {}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one load; loading keeps going after the first error so a user
/// fixes them all in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    pub fn push(&mut self, e: Error) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Error> {
        self.0.iter()
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
