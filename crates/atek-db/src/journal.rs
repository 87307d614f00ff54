//! The log a database is a view of, seen from ADB: numbered entries, appended durably.
//!
//! The signed log of `atek-log` implements this; [`MemoryJournal`] is the one for tests and
//! for databases that need not survive the process.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use atek_core::DbId;

/// A failure of the log under a database.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JournalError {
    /// What went wrong, for a person.
    pub message: String,
}

impl JournalError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// An append-only sequence of entries, numbered from 0.
///
/// Calls block: ADB makes them from its own thread, never from the async executor.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// The database id: the log's public key.
    fn id(&self) -> DbId;
    /// Whether this node can append (it holds the writer key).
    fn writable(&self) -> bool;
    /// How many entries there are.
    fn len(&self) -> u64;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends entries; returns their indexes once they are durable.
    fn append(&self, entries: Vec<Vec<u8>>) -> Result<Range<u64>, JournalError>;
    /// Entry `index`.
    fn read(&self, index: u64) -> Result<Vec<u8>, JournalError>;
    /// Releases the log (its files and lock), once the database is closed.
    fn close(&self) -> Result<(), JournalError> {
        Ok(())
    }
}

/// A journal in memory: entries vanish with the process.
#[derive(Clone)]
pub struct MemoryJournal {
    id: DbId,
    entries: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MemoryJournal {
    /// An empty journal with a fresh id.
    pub fn new() -> Self {
        Self::with_id(DbId::from_public_key(
            atek_core::SecretKey::generate().public(),
        ))
    }

    /// An empty journal with this id.
    pub fn with_id(id: DbId) -> Self {
        Self {
            id,
            entries: Arc::default(),
        }
    }

    /// Drops entries from `len` on, as a crash of a log that never acknowledged them would.
    pub fn truncate(&self, len: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.truncate(usize::try_from(len).unwrap_or(usize::MAX));
    }
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryJournal({}, {} entries)", self.id, self.len())
    }
}

impl Journal for MemoryJournal {
    fn id(&self) -> DbId {
        self.id
    }

    fn writable(&self) -> bool {
        true
    }

    fn len(&self) -> u64 {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }

    fn append(&self, new: Vec<Vec<u8>>) -> Result<Range<u64>, JournalError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let start = entries.len() as u64;
        entries.extend(new);
        Ok(start..entries.len() as u64)
    }

    fn read(&self, index: u64) -> Result<Vec<u8>, JournalError> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        usize::try_from(index)
            .ok()
            .and_then(|i| entries.get(i))
            .cloned()
            .ok_or_else(|| JournalError::new(format!("entry {index} is not in the log")))
    }
}
