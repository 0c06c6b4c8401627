//! Why a retention step (export, verify, purge) failed: the journal, a file, an export
//! that differs or is incomplete, a day not exported or not covered, or a stop.
//! May import: crate::journal::store.

use std::path::PathBuf;

use super::super::store::StoreError;

/// Why a retention step failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("journal: {0}")]
    Store(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} already exists and is not the same export of business day {day} ({detail}); move it away to export again", path.display())]
    Differs { path: PathBuf, day: String, detail: String },
    #[error("{}: not a complete export of business day {day}: {why}", path.display())]
    BadFile { path: PathBuf, day: String, why: String },
    #[error("business day {day}: not exported (no {}); export it first, or purge with --force", path.display())]
    NotExported { day: String, path: PathBuf },
    #[error("business day {day}: {detail}; its rows are kept")]
    NotCovered { day: String, detail: String },
    #[error("stopped before the end")]
    Stopped,
}
