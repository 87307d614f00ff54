//! Databases on disk: each one a signed log of `atek-log`, its writer key and its view.
//!
//! ```text
//! {dir}/{db id}/key        the writer's keyfile (JSON, mode 0600), for databases we write
//! {dir}/{db id}/log/       the signed log (atek-log's file storage)
//! {dir}/{db id}/view.redb  the view: derived, rebuilt from the log when lost
//! ```

use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use atek_core::{DbId, Keyfile, SecretKey};
use atek_log::Log;

use crate::adb::Store;
use crate::error::DbError;
use crate::journal::{Journal, JournalError};
use crate::view::ViewLocation;

/// A database's log, as ADB sees it.
#[derive(Clone)]
pub struct LogJournal {
    log: Log,
}

impl LogJournal {
    /// Wraps an open log.
    pub fn new(log: Log) -> Self {
        Self { log }
    }
}

impl fmt::Debug for LogJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogJournal({}, {} entries)", self.id(), self.log.len())
    }
}

fn journal_error(e: atek_log::LogError) -> JournalError {
    JournalError::new(e.to_string())
}

impl Journal for LogJournal {
    fn id(&self) -> DbId {
        DbId::from_public_key(self.log.id())
    }

    fn writable(&self) -> bool {
        true
    }

    fn len(&self) -> u64 {
        self.log.len()
    }

    fn append(&self, entries: Vec<Vec<u8>>) -> Result<Range<u64>, JournalError> {
        wait(self.log.append_batch(entries)).map_err(journal_error)
    }

    fn read(&self, index: u64) -> Result<Vec<u8>, JournalError> {
        wait(self.log.get(index)).map_err(journal_error)
    }

    fn close(&self) -> Result<(), JournalError> {
        wait(self.log.close()).map_err(journal_error)
    }
}

/// Waits for a future of the log's writer thread on this thread.
///
/// `unconstrained`: the log's channels are tokio's, which count against the current task's
/// cooperative budget when this runs on a tokio thread (a database opened or read from a
/// request). `block_on` never yields back to tokio, so a spent budget would make every poll
/// pending forever.
fn wait<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(tokio::task::unconstrained(future))
}

/// Databases in a folder, one subfolder each. A log opened here is locked until it is
/// closed ([`Journal::close`]); opening it again meanwhile fails, so open each database
/// once ([`crate::Adb`] keeps the open ones).
pub struct LogStore {
    dir: PathBuf,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogStore({})", self.dir.display())
    }
}

impl LogStore {
    /// The store in `dir` (made if missing, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, DbError> {
        let dir = dir.into();
        make_private_dir(&dir)?;
        Ok(Self { dir })
    }

    fn db_dir(&self, id: DbId) -> PathBuf {
        self.dir.join(id.to_string())
    }
}

impl Store for LogStore {
    fn create(&self) -> Result<Arc<dyn Journal>, DbError> {
        let key = SecretKey::generate();
        let id = DbId::from_public_key(key.public());
        let dir = self.db_dir(id);
        make_private_dir(&dir)?;
        write_private(
            &dir.join("key"),
            Keyfile::new(key.clone()).to_json().as_bytes(),
        )?;
        let log = Log::create(dir.join("log"), key).map_err(|e| log_failed(&dir, e))?;
        Ok(Arc::new(LogJournal::new(log)))
    }

    fn open(&self, id: DbId) -> Result<Option<Arc<dyn Journal>>, DbError> {
        let dir = self.db_dir(id);
        let key_file = dir.join("key");
        let text = match std::fs::read_to_string(&key_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DbError::Io {
                    path: key_file,
                    source,
                });
            }
        };
        let keyfile = Keyfile::from_json(&text).map_err(|e| DbError::Entry {
            seq: 0,
            reason: format!("{}: {e}", key_file.display()),
        })?;
        let log = Log::open(dir.join("log"), keyfile.into_secret_key())
            .map_err(|e| log_failed(&dir, e))?;
        Ok(Some(Arc::new(LogJournal::new(log))))
    }

    fn view(&self, id: DbId) -> ViewLocation {
        ViewLocation::File(self.db_dir(id).join("view.redb"))
    }

    fn writable(&self, id: DbId) -> bool {
        self.db_dir(id).join("key").exists()
    }
}

fn log_failed(dir: &Path, e: atek_log::LogError) -> DbError {
    DbError::Journal(JournalError::new(format!(
        "the log in {}: {e}",
        dir.display()
    )))
}

fn make_private_dir(dir: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DbError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Writes a file only its owner can read, atomically (temp file, fsync, rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| DbError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}
