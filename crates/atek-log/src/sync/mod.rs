//! The replication protocol: a reader asks a holder of a log for ranges of entries and
//! verifies everything it gets before storing it.
//!
//! Both sides are state machines over a byte stream, with no I/O of their own (like
//! `quinn-proto`): the caller feeds the bytes it receives to `handle_input`, sends what
//! `poll_transmit` gives, reports the end of the stream with `handle_eof`, and reads what
//! happened from `poll_event`. Any transport that carries bytes in order works: a TCP or
//! QUIC stream, a pipe, a `Vec` in a test.
//!
//! - A [`ReaderSession`] drives a [`Replica`]: it sends
//!   [`want`](ReaderSession::want)s (several in flight, answered in order, each in batches
//!   with one range proof per batch) and an optional [`subscribe`](ReaderSession::subscribe)
//!   to the live head and tail, and checks every head and batch against the replica
//!   ([`Replica::check_head`],
//!   [`Replica::add_entries`]) before it is stored.
//! - A [`ServerSession`] answers from any [`Source`]: a writer's [`Log`](crate::Log)
//!   (through [`Log::source`](crate::Log::source)) or a [`Replica`]. It
//!   reads from the source only when the caller asks for the next frame, so a slow
//!   stream holds back the work, not memory.
//!
//! Any failed check, malformed, oversized or out-of-order frame, or a stream cut off ends
//! the session: the side that saw it sends a `Close` frame with a [`ReasonCode`] and
//! reports [`CloseReason`]. Nothing from a message that fails a check is stored.
//! `docs/log-format.md` §9 describes the frames and the state machines byte by byte.
//!
//! ```
//! use atek_core::SecretKey;
//! use atek_log::sync::{ReaderEvent, ReaderSession, ServerSession};
//! use atek_log::{Log, Replica};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let log = Log::open_memory(SecretKey::generate()).unwrap();
//! log.append_batch((0..100u32).map(|i| i.to_be_bytes().to_vec()).collect()).await.unwrap();
//!
//! let mut replica = Replica::memory(log.id());
//! let mut reader = ReaderSession::new(&replica);
//! let mut server = ServerSession::new(log.id());
//! let source = log.source();
//! reader.want(10..20);
//!
//! // The "network": move bytes both ways until neither side has anything to say.
//! loop {
//!     let mut moved = false;
//!     while let Some(bytes) = reader.poll_transmit() {
//!         server.handle_input(&bytes);
//!         moved = true;
//!     }
//!     while let Some(bytes) = server.poll_transmit(&source) {
//!         reader.handle_input(&bytes, &mut replica);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! let mut done = false;
//! while let Some(event) = reader.poll_event() {
//!     done |= event == ReaderEvent::WantDone(10..20);
//! }
//! assert!(done);
//! assert_eq!(replica.held(), vec![10..20]);
//! assert_eq!(replica.get(15).unwrap(), 15u32.to_be_bytes());
//! assert!(replica.get(25).is_err()); // never asked for
//! # });
//! ```

mod frame;
mod reader;
mod server;

use std::fmt;
use std::ops::Range;

use atek_core::PublicKey;

pub use frame::{Frame, FrameDecoder, FrameError, RefuseReason, Role};
pub use reader::{ReaderEvent, ReaderSession};
pub use server::{ServerEvent, ServerSession};

use crate::{ForkEvidence, LogError, LogSource, RangeProof, Replica, SignedTreeHead, Storage};

/// The protocol version this build speaks, sent first in each side's `Hello`.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest frame, after its 4-byte length prefix: 8 MiB. An entry is at most 4 MiB, so
/// a frame always has room for one.
pub const MAX_FRAME: usize = 8 << 20;

/// Entry bytes a server puts in one `Entries` frame, by default (1 MiB; at least one entry
/// whatever its size).
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;

/// Wants a server keeps queued, at most; a reader that sends more is cut off.
pub const MAX_QUEUED_WANTS: usize = 4096;

/// What a [`ServerSession`] serves from: the durable state of a log's writer or of a
/// replica. Calls are synchronous and may block on storage.
pub trait Source {
    /// The log's id.
    fn log_id(&self) -> PublicKey;

    /// The newest signed head it serves, if it has one.
    fn head(&self) -> Result<Option<SignedTreeHead>, LogError>;

    /// The first range of entries held at or after `from`, starting at `from` if that
    /// entry is held.
    fn next_held(&self, from: u64) -> Result<Option<Range<u64>>, LogError>;

    /// Up to `max_bytes` of consecutive held entries from `start` (at least one, below
    /// `end`), with their range proof in the tree of `tree_size` entries.
    fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
        tree_size: u64,
    ) -> Result<(Vec<Vec<u8>>, RangeProof), LogError>;

    /// The range proof of the empty range at `old` in the tree of `new` entries: how a
    /// reader that accepted `old` entries checks a head of `new`.
    fn extension(&self, old: u64, new: u64) -> Result<RangeProof, LogError>;
}

impl<T: Source + ?Sized> Source for &T {
    fn log_id(&self) -> PublicKey {
        (**self).log_id()
    }
    fn head(&self) -> Result<Option<SignedTreeHead>, LogError> {
        (**self).head()
    }
    fn next_held(&self, from: u64) -> Result<Option<Range<u64>>, LogError> {
        (**self).next_held(from)
    }
    fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
        tree_size: u64,
    ) -> Result<(Vec<Vec<u8>>, RangeProof), LogError> {
        (**self).read(start, end, max_bytes, tree_size)
    }
    fn extension(&self, old: u64, new: u64) -> Result<RangeProof, LogError> {
        (**self).extension(old, new)
    }
}

impl Source for LogSource {
    fn log_id(&self) -> PublicKey {
        self.id()
    }

    fn head(&self) -> Result<Option<SignedTreeHead>, LogError> {
        // The published head is durable; the store never holds less.
        self.with_store(|_| Ok(()))?;
        Ok(Some(LogSource::head(self)))
    }

    fn next_held(&self, from: u64) -> Result<Option<Range<u64>>, LogError> {
        let len = LogSource::head(self).head.length;
        Ok((from < len).then_some(from..len))
    }

    fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
        tree_size: u64,
    ) -> Result<(Vec<Vec<u8>>, RangeProof), LogError> {
        self.with_store(|store| {
            let entries = store.entries(start, end.min(tree_size), max_bytes)?;
            let proof =
                RangeProof::generate(&store, start, start + entries.len() as u64, tree_size)?;
            Ok((entries, proof))
        })
    }

    fn extension(&self, old: u64, new: u64) -> Result<RangeProof, LogError> {
        self.with_store(|store| RangeProof::generate(&store, old, old, new))
    }
}

impl<S: Storage> Source for Replica<S> {
    fn log_id(&self) -> PublicKey {
        Replica::log_id(self)
    }

    fn head(&self) -> Result<Option<SignedTreeHead>, LogError> {
        Ok(self.served_head())
    }

    fn next_held(&self, from: u64) -> Result<Option<Range<u64>>, LogError> {
        Ok(Replica::next_held(self, from))
    }

    fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
        tree_size: u64,
    ) -> Result<(Vec<Vec<u8>>, RangeProof), LogError> {
        self.read_range(start, end.min(tree_size), max_bytes, tree_size)
    }

    fn extension(&self, old: u64, new: u64) -> Result<RangeProof, LogError> {
        Replica::extension(self, old, new)
    }
}

/// The reason codes of `Close` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// A normal end.
    Done,
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// Bytes that are not a frame.
    Garbage,
    /// A frame over the size limit.
    Oversized,
    /// A frame that the session's state does not allow.
    OutOfOrder,
    /// A session about another log.
    WrongLog,
    /// A head that its log did not sign.
    ForgedHead,
    /// Entries or a proof that do not verify.
    BadProof,
    /// The writer signed two histories; evidence was kept.
    Fork,
    /// The log forked earlier; nothing more is accepted.
    Forked,
    /// The server's head is older than the reader's and cannot be checked.
    PeerBehind,
    /// The server lacks the nodes to prove its head to this reader.
    CannotProve,
    /// The reader queued more wants than the server takes.
    TooManyWants,
    /// The stream ended inside a frame, or without a `Close`.
    Truncated,
    /// A local storage failure.
    Storage,
    /// The reader's replica changed under the session (another session wrote to it).
    ReplicaChanged,
    /// A code this build does not know.
    Other(u8),
}

impl ReasonCode {
    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::UnsupportedVersion => 1,
            Self::Garbage => 2,
            Self::Oversized => 3,
            Self::OutOfOrder => 4,
            Self::WrongLog => 5,
            Self::ForgedHead => 6,
            Self::BadProof => 7,
            Self::Fork => 8,
            Self::Forked => 9,
            Self::PeerBehind => 10,
            Self::CannotProve => 11,
            Self::TooManyWants => 12,
            Self::Truncated => 13,
            Self::Storage => 14,
            Self::ReplicaChanged => 15,
            Self::Other(b) => b,
        }
    }

    /// The code a byte stands for.
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Done,
            1 => Self::UnsupportedVersion,
            2 => Self::Garbage,
            3 => Self::Oversized,
            4 => Self::OutOfOrder,
            5 => Self::WrongLog,
            6 => Self::ForgedHead,
            7 => Self::BadProof,
            8 => Self::Fork,
            9 => Self::Forked,
            10 => Self::PeerBehind,
            11 => Self::CannotProve,
            12 => Self::TooManyWants,
            13 => Self::Truncated,
            14 => Self::Storage,
            15 => Self::ReplicaChanged,
            b => Self::Other(b),
        }
    }
}

/// Why a session ended, as the side that reports it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side ended it ([`ReaderSession::close`], [`ServerSession::close`]).
    Done,
    /// The peer ended it, for its reason.
    Remote {
        /// The peer's reason.
        code: ReasonCode,
        /// The peer's words.
        detail: String,
    },
    /// The peer's `Hello` is of another protocol version.
    UnsupportedVersion {
        /// The peer's version.
        theirs: u8,
        /// Ours.
        ours: u8,
    },
    /// Bytes that are not a frame of this protocol.
    Garbage {
        /// What is wrong.
        detail: String,
    },
    /// A frame whose length is over [`MAX_FRAME`].
    Oversized {
        /// Its length.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A frame the session's state does not allow (a second hello, entries before a
    /// head, entries that are not the next of the oldest want, frames of the other role).
    OutOfOrder {
        /// What was wrong.
        detail: String,
    },
    /// The peer is about another log.
    WrongLog {
        /// This side's log.
        expected: PublicKey,
        /// The peer's.
        found: PublicKey,
    },
    /// A head whose signature does not verify under the log id (or an empty head with a
    /// root other than the empty tree's).
    ForgedHead {
        /// The head's length.
        length: u64,
    },
    /// Entries or proofs that do not lead to the signed root.
    BadProof {
        /// What did not verify.
        detail: String,
    },
    /// The writer signed two histories: the evidence, now kept by the replica.
    Fork(Box<ForkEvidence>),
    /// The replica holds fork evidence for this log already and accepts nothing more.
    Forked,
    /// The server's head is shorter than the replica's and the nodes the replica holds
    /// cannot check it.
    PeerBehind {
        /// The server's head length.
        theirs: u64,
        /// The replica's.
        ours: u64,
    },
    /// The server cannot prove its head to this reader (a replica lacking the nodes).
    CannotProve {
        /// Why.
        detail: String,
    },
    /// The reader queued more than [`MAX_QUEUED_WANTS`] wants.
    TooManyWants {
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame, or without a `Close` frame.
    Truncated {
        /// The bytes of the partial frame.
        buffered: usize,
    },
    /// This side's storage failed.
    Storage {
        /// The error.
        detail: String,
    },
    /// The replica's newest head changed under this session (another session accepted
    /// one), so the server's proofs no longer start where the replica is.
    ReplicaChanged {
        /// The length the session told the server.
        expected: u64,
        /// The replica's.
        found: u64,
    },
}

impl CloseReason {
    /// The code sent in the `Close` frame.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::Done => ReasonCode::Done,
            Self::Remote { code, .. } => *code,
            Self::UnsupportedVersion { .. } => ReasonCode::UnsupportedVersion,
            Self::Garbage { .. } => ReasonCode::Garbage,
            Self::Oversized { .. } => ReasonCode::Oversized,
            Self::OutOfOrder { .. } => ReasonCode::OutOfOrder,
            Self::WrongLog { .. } => ReasonCode::WrongLog,
            Self::ForgedHead { .. } => ReasonCode::ForgedHead,
            Self::BadProof { .. } => ReasonCode::BadProof,
            Self::Fork(_) => ReasonCode::Fork,
            Self::Forked => ReasonCode::Forked,
            Self::PeerBehind { .. } => ReasonCode::PeerBehind,
            Self::CannotProve { .. } => ReasonCode::CannotProve,
            Self::TooManyWants { .. } => ReasonCode::TooManyWants,
            Self::Truncated { .. } => ReasonCode::Truncated,
            Self::Storage { .. } => ReasonCode::Storage,
            Self::ReplicaChanged { .. } => ReasonCode::ReplicaChanged,
        }
    }

    /// The reason for a frame the decoder refused.
    pub(crate) fn from_frame_error(e: FrameError) -> Self {
        match e {
            FrameError::Garbage(detail) => Self::Garbage { detail },
            FrameError::Oversized(size) => Self::Oversized {
                size,
                max: MAX_FRAME as u64,
            },
            FrameError::UnsupportedVersion(theirs) => Self::UnsupportedVersion {
                theirs,
                ours: PROTOCOL_VERSION,
            },
        }
    }

    /// The reason for a failed check of what a peer sent, or a local failure.
    pub(crate) fn from_log_error(e: LogError) -> Self {
        match e {
            LogError::BadSignature { length, .. } => Self::ForgedHead { length },
            LogError::BadEmptyHead { .. } => Self::ForgedHead { length: 0 },
            LogError::WrongLog { expected, found } => Self::WrongLog { expected, found },
            e @ LogError::BadProof { .. } => Self::BadProof {
                detail: e.to_string(),
            },
            e @ (LogError::EntryTooLarge { .. } | LogError::Decode { .. }) => Self::Garbage {
                detail: e.to_string(),
            },
            LogError::ForkDetected(evidence) => Self::Fork(evidence),
            LogError::Forked { .. } => Self::Forked,
            LogError::CannotCheck { length, accepted } => Self::PeerBehind {
                theirs: length,
                ours: accepted,
            },
            e => Self::Storage {
                detail: e.to_string(),
            },
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Done => f.write_str("done"),
            Self::Remote { code, detail } => write!(f, "the peer closed ({code:?}): {detail}"),
            Self::UnsupportedVersion { theirs, ours } => write!(
                f,
                "the peer speaks protocol version {theirs}, this side version {ours}"
            ),
            Self::Garbage { detail } => write!(f, "malformed frame: {detail}"),
            Self::Oversized { size, max } => {
                write!(f, "a frame of {size} bytes is over the limit of {max}")
            }
            Self::OutOfOrder { detail } => write!(f, "frame out of order: {detail}"),
            Self::WrongLog { expected, found } => {
                write!(f, "expected log {expected}, the peer is about log {found}")
            }
            Self::ForgedHead { length } => {
                write!(f, "the head of length {length} is not signed by the log")
            }
            Self::BadProof { detail } => f.write_str(detail),
            Self::Fork(e) => write!(
                f,
                "the log forked: heads of lengths {} and {} cannot both be true",
                e.a.head.length, e.b.head.length
            ),
            Self::Forked => f.write_str("the log forked earlier; nothing more is accepted"),
            Self::PeerBehind { theirs, ours } => write!(
                f,
                "the server's head of length {theirs} is older than ours ({ours}) and cannot \
                 be checked with the nodes held"
            ),
            Self::CannotProve { detail } => write!(f, "cannot prove the head: {detail}"),
            Self::TooManyWants { max } => write!(f, "more than {max} wants queued"),
            Self::Truncated { buffered } => write!(
                f,
                "the stream ended without a close ({buffered} bytes of a frame buffered)"
            ),
            Self::Storage { detail } => write!(f, "storage failed: {detail}"),
            Self::ReplicaChanged { expected, found } => write!(
                f,
                "the replica's head changed under the session (length {expected} expected, \
                 {found} found)"
            ),
        }
    }
}
