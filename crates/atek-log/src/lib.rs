//! Atek's signed append-only log.
//!
//! A log is a sequence of entries that only its writer can extend and anyone can verify. Its
//! id is the writer's Ed25519 public key. Over the entries sits a Merkle tree with RFC 9162's
//! shape and BLAKE3 as the hash (leaf = `blake3(0x00 ‖ entry)`, node =
//! `blake3(0x01 ‖ left ‖ right)`); the writer signs a [`TreeHead`] (log id, length, root).
//! An [`InclusionProof`] shows that one entry is in a signed tree without the rest; a
//! [`ConsistencyProof`] shows that a newer tree extends an older one. Two validly signed heads
//! that cannot both be true are a fork, kept as [`ForkEvidence`] and never merged.
//!
//! A [`Log`] is the writer's side: a cloneable handle to one writer thread that commits
//! appends in groups (one signed head and one `fdatasync` for all the appends waiting) and
//! answers only once they are durable. Its [`Storage`] is a [`FileStorage`] (an append-only
//! `log` file plus caches, recovered after a crash by truncating a torn tail) or a
//! [`MemoryStorage`].
//!
//! A [`Replica`] holds a log without its key: only the heads and entries it verified (the
//! ranges it asked for, with the nodes that proved them), in the same stores. The [`sync`]
//! module is the replication protocol between a replica and anything holding the log: a
//! versioned, sans-IO state machine over any byte stream, with batched [`RangeProof`]s,
//! pipelined requests and live pushes of new heads and entries. A second history signed
//! by the writer is caught, kept as [`ForkEvidence`] and never merged.
//!
//! The byte layouts, the signing domain, the file layout, the recovery rules and the
//! protocol are written down in `docs/log-format.md` at the root of the repository.
//!
//! ```
//! use atek_core::SecretKey;
//! use atek_log::Log;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("atek-log-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let log = Log::create(&dir, SecretKey::generate()).unwrap();
//! let i = log.append(b"hello".to_vec()).await.unwrap(); // durable when this returns
//! let more = log.append_batch(vec![b"a".to_vec(), b"b".to_vec()]).await.unwrap();
//! assert_eq!((i, more), (0, 1..3));
//!
//! // Anyone with the log id checks an entry against a signed head.
//! let head = log.head();
//! head.verify().unwrap();
//! let proof = log.inclusion_proof(0, head.head.length).await.unwrap();
//! proof.verify(b"hello", &head.head).unwrap();
//! log.close().await.unwrap();
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # });
//! ```
//!
//! The tree and proofs work over any [`NodeSource`]:
//!
//! ```
//! use atek_core::SecretKey;
//! use atek_log::{check_heads, Consistency, ConsistencyProof, Hash, InclusionProof, TreeHead};
//! use std::collections::BTreeMap;
//!
//! // A tree of five entries; the flat-tree nodes in a map stand in for a log's storage.
//! let entries: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
//! let mut nodes = BTreeMap::new();
//! // Leaves are nodes 0, 2, 4, …; node 1 = (0, 2), node 5 = (4, 6), node 3 = (1, 5).
//! for (i, e) in entries.iter().enumerate() {
//!     nodes.insert(2 * i as u64, Hash::leaf(e));
//! }
//! nodes.insert(1, Hash::node(&nodes[&0], &nodes[&2]));
//! nodes.insert(5, Hash::node(&nodes[&4], &nodes[&6]));
//! nodes.insert(3, Hash::node(&nodes[&1], &nodes[&5]));
//!
//! let key = SecretKey::generate();
//! let head_at = |length, root| TreeHead { log_id: key.public(), length, root };
//! let root4 = nodes[&3];
//! let root5 = Hash::node(&nodes[&3], &nodes[&8]);
//! let old = head_at(4, root4).sign(&key).unwrap();
//! let new = head_at(5, root5).sign(&key).unwrap();
//! new.verify().unwrap();
//!
//! let proof = InclusionProof::generate(&nodes, 2, 5).unwrap();
//! proof.verify(b"c", &new.head).unwrap();
//! assert!(proof.verify(b"x", &new.head).is_err());
//!
//! let proof = ConsistencyProof::generate(&nodes, 4, 5).unwrap();
//! proof.verify(&old.head, &new.head).unwrap();
//! assert_eq!(check_heads(&old, &new, Some(&proof)).unwrap(), Consistency::Consistent);
//! ```

mod error;
mod flat;
mod fork;
mod frame;
mod hash;
mod head;
mod proof;
mod range_proof;
mod ranges;
mod replica;
mod storage;
pub mod sync;
mod tree;
mod wire;
mod writer;

pub use error::LogError;
pub use fork::{Consistency, ForkEvidence, check_heads};
pub use hash::Hash;
pub use head::{HEAD_SIGNING_DOMAIN, SignedTreeHead, TreeHead};
pub use proof::{ConsistencyProof, InclusionProof, MAX_PATH};
pub use range_proof::{MAX_SIBLINGS, ProvenNodes, RangeProof};
pub use replica::{CheckedHead, HeadKind, Replica};
pub use storage::{EntryRun, FileStorage, Group, MemoryStorage, Seal, Storage, StorageStats};
pub use tree::{NodeSource, tree_root};
pub use writer::{Log, LogSource};

/// Decodes one frame of a log file (`docs/log-format.md` §6.1) as opening a log does, and
/// returns the number of entries in it. For the fuzz targets; not part of the API.
#[doc(hidden)]
pub fn decode_log_frame(bytes: &[u8]) -> Result<u64, LogError> {
    let torn = |reason: String| LogError::Decode {
        what: "log frame",
        reason,
    };
    let mut header = [0u8; frame::HEADER_LEN];
    header.copy_from_slice(
        bytes
            .get(..frame::HEADER_LEN)
            .ok_or_else(|| torn("shorter than a header".to_owned()))?,
    );
    let body = match frame::body_len(&header) {
        Ok(len) => len,
        Err(frame::FrameError::Torn(reason)) => return Err(torn(reason)),
        Err(frame::FrameError::Bad(e)) => return Err(e),
    };
    if bytes.len() != frame::HEADER_LEN + body + frame::TRAILER_LEN {
        return Err(torn("its length is not the header's".to_owned()));
    }
    match frame::decode(bytes) {
        Ok(decoded) => Ok(decoded.group.entry_count()),
        Err(frame::FrameError::Torn(reason)) => Err(torn(reason)),
        Err(frame::FrameError::Bad(e)) => Err(e),
    }
}

/// The largest entry a log takes, in bytes (4 MiB).
pub const MAX_ENTRY_SIZE: usize = 4 << 20;

/// The most entries a log can hold (2^62), which keeps every flat-tree index and proof path
/// within bounds.
pub const MAX_LENGTH: u64 = 1 << 62;
