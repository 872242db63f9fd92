//! Problems with a cluster or cell spec that the schema cannot catch. They surface as a
//! `Ready=False` condition with the variant's reason, and the object is retried with backoff.

use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "the {what} would be named {name:?} ({len} characters, at most {max}); shorten the name of the {owner}"
    )]
    NameTooLong {
        what: String,
        name: String,
        len: usize,
        max: usize,
        owner: &'static str,
    },

    #[error("cell {0:?} is listed more than once in spec.cells")]
    DuplicateCell(String),

    #[error("the object has no uid or namespace yet")]
    NotStored,
}

impl SpecError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NameTooLong { .. } => "NameTooLong",
            Self::DuplicateCell(_) => "DuplicateCell",
            Self::NotStored => "NotStored",
        }
    }
}

/// Fails when `name` is longer than `max`.
pub fn check_len(what: &str, name: &str, max: usize, owner: &'static str) -> Result<(), SpecError> {
    if name.len() > max {
        return Err(SpecError::NameTooLong {
            what: what.to_string(),
            name: name.to_string(),
            len: name.len(),
            max,
            owner,
        });
    }
    Ok(())
}
