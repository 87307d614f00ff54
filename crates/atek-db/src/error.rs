//! What can go wrong in a database.

use std::path::PathBuf;

use crate::journal::JournalError;
use crate::path::PathError;
use crate::table::TableError;

/// An error of a database operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A bad path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A record or table definition refused by a table.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A record that is not a JSON object.
    #[error("a record is a JSON object, not {found}")]
    NotAnObject {
        /// What was given (`an array`, `a string`, ...).
        found: &'static str,
    },
    /// A record over the size limit.
    #[error("the record is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size as JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A table definition with a revision that is not greater but different.
    #[error(
        "table {table} is already at revision {current}; a changed definition needs a greater revision than {current}"
    )]
    RevisionConflict {
        /// The table.
        table: String,
        /// Its current revision.
        current: u32,
    },
    /// An index query on a table or index that does not exist, or with bad bounds.
    #[error("bad query: {reason}")]
    BadQuery {
        /// What is wrong.
        reason: String,
    },
    /// This node does not hold the database's writer key.
    #[error("this database is read-only here: only its writer can change it")]
    ReadOnly,
    /// The log under the database failed.
    #[error("the database's log failed: {0}")]
    Journal(#[source] JournalError),
    /// The view store (redb) failed.
    #[error("the database's view store failed: {source}")]
    View {
        /// The redb error.
        source: Box<redb::Error>,
    },
    /// An entry of the log, or a record of the view, that cannot be read.
    #[error("entry {seq} cannot be read: {reason}")]
    Entry {
        /// Its index (0 when it came from the view).
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database stopped taking writes after its view failed (see the reason).
    #[error("this database takes no more writes: {reason}")]
    Broken {
        /// What failed, and that nothing acknowledged is lost.
        reason: String,
    },
    /// The store of databases is missing something it needs (see the reason).
    #[error("{reason}")]
    Store {
        /// What, and what to do.
        reason: String,
    },
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
}
