//! The crate's error type.

use std::path::PathBuf;

use atek_core::PublicKey;

/// What went wrong with a log operation, a proof or a decoded structure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// Bytes that are not a valid encoding of `what`.
    #[error("malformed {what}: {reason}")]
    Decode {
        /// What was being decoded (`"inclusion proof"`, `"signed tree head"`, …).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An encoding whose version byte this code does not know.
    #[error("{what} has format version {version}, this build reads version {supported}")]
    UnsupportedVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A tree head whose signature does not verify under its log id.
    #[error("the tree head of length {length} is not signed by log {log_id}")]
    BadSignature {
        /// The log the head claims to be of.
        log_id: PublicKey,
        /// The head's length.
        length: u64,
    },
    /// A head of length 0 whose root is not the empty tree's.
    #[error("the tree head of length 0 of log {log_id} has a root other than the empty tree's")]
    BadEmptyHead {
        /// The log.
        log_id: PublicKey,
    },
    /// Two heads, or a head and a key, of different logs.
    #[error("expected log {expected}, found log {found}")]
    WrongLog {
        /// The log that was meant.
        expected: PublicKey,
        /// The log that was found.
        found: PublicKey,
    },
    /// A proof that does not verify. Not evidence of anything: proofs are not signed.
    #[error("bad {what}: {reason}")]
    BadProof {
        /// `"inclusion proof"` or `"consistency proof"`.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A node a proof or the tree needs is not in the store.
    #[error("tree node {flat_index} is missing from the store")]
    MissingNode {
        /// Its flat-tree index.
        flat_index: u64,
    },
    /// An entry index or tree size beyond what the log (or the request) holds.
    #[error("index {index} is out of range for a log of length {length}")]
    OutOfRange {
        /// The index or size asked for.
        index: u64,
        /// The length it must stay under (or at).
        length: u64,
    },
    /// An entry that the store should hold but does not.
    #[error("entry {index} is missing from the store")]
    MissingEntry {
        /// Its index.
        index: u64,
    },
    /// An entry larger than [`MAX_ENTRY_SIZE`](crate::MAX_ENTRY_SIZE).
    #[error("entry of {size} bytes is larger than the limit of {max} bytes")]
    EntryTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A group or batch that would take the log past its length limit.
    #[error("the log cannot grow past {max} entries")]
    LogFull {
        /// The limit.
        max: u64,
    },
    /// The secret key given is not the log's.
    #[error("the secret key given is the key of {key}, not of log {log_id}")]
    WrongKey {
        /// The log.
        log_id: PublicKey,
        /// The public key of the secret key given.
        key: PublicKey,
    },
    /// Creating a log where one exists.
    #[error("a log already exists at {path}")]
    AlreadyExists {
        /// Its directory.
        path: PathBuf,
    },
    /// Another process (or another open log in this one) holds the log's lock.
    #[error("the log at {path} is open elsewhere")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The group holding this append could not be made durable; it was not acknowledged.
    #[error("the group holding this append was not written: {source}")]
    GroupFailed {
        /// Why (shared by every append of the group).
        #[source]
        source: std::sync::Arc<LogError>,
    },
    /// Opening a log where there is none.
    #[error("no log at {path}")]
    NotFound {
        /// The directory.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"fdatasync"`, `"read"`, …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Durable data that does not verify: a store that was changed behind the log's back,
    /// or a bug. The log refuses to open rather than serve it.
    #[error("log data at {path} is corrupt: {reason}")]
    Corrupt {
        /// The file or directory.
        path: PathBuf,
        /// What does not add up.
        reason: String,
    },
    /// An earlier write failed, so the writer stopped accepting appends; reopen the log.
    #[error("the log's writer stopped after a failed write; reopen the log")]
    Poisoned,
    /// The writer thread is gone (the log was closed, or it panicked).
    #[error("the log is closed")]
    Closed,
    /// An entry a replica does not hold: it did not ask for it, or it does not exist yet.
    #[error("entry {index} is not held by this replica (its newest head has length {length})")]
    NotHeld {
        /// The entry's index.
        index: u64,
        /// The length of the replica's newest head.
        length: u64,
    },
    /// A head shorter than a replica's newest, which the nodes it holds cannot check.
    #[error(
        "a head of length {length} cannot be checked against the accepted head of length \
         {accepted} with the nodes held"
    )]
    CannotCheck {
        /// The head's length.
        length: u64,
        /// The length of the newest head accepted.
        accepted: u64,
    },
    /// The log's writer signed two histories; the evidence is kept.
    #[error(
        "log {} forked: heads of lengths {} and {} cannot both be true",
        .0.a.head.log_id,
        .0.a.head.length,
        .0.b.head.length
    )]
    ForkDetected(Box<crate::ForkEvidence>),
    /// A replica that holds fork evidence for its log accepts nothing more from it.
    #[error("log {log_id} forked earlier; nothing more is accepted from it")]
    Forked {
        /// The log.
        log_id: PublicKey,
    },
    /// The storage behind the log failed in a way it described itself.
    #[error("storage failed: {reason}")]
    Storage {
        /// Its explanation.
        reason: String,
    },
}
