//! What one log entry of a database says: format version 1.
//!
//! Every entry is a JSON object whose first field is the format version `v`:
//!
//! ```json
//! {"v":1,"op":"put","path":["example.com","notes","n1"],"value":{"text":"hi"}}
//! {"v":1,"op":"delete","path":["example.com","notes","n1"]}
//! {"v":1,"op":"defineTable","table":{"id":"example.com/notes","revision":1,…}}
//! ```
//!
//! The log is the truth; everything else (records, tables, indexes) is a view computed by
//! applying entries in order, so applying must depend on nothing but the entries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::RecordPath;
use crate::table::TableDef;

/// The entry format this code writes and reads.
pub const ENTRY_VERSION: u32 = 1;

/// One change to a database.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Write a record.
    Put {
        /// Where.
        path: RecordPath,
        /// The record, a JSON object.
        value: Value,
    },
    /// Remove a record (a no-op if there is none).
    Delete {
        /// Where.
        path: RecordPath,
    },
    /// Define a table, or replace its definition with a greater revision.
    DefineTable(TableDef),
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not JSON, or not the shape of an entry.
    #[error("not an ADB entry: {0}")]
    Malformed(String),
    /// Written by a newer format.
    #[error(
        "entry format version {0} is newer than this ADB understands ({ENTRY_VERSION}); update Atek"
    )]
    Version(u32),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    #[serde(flatten)]
    op: WireOp,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum WireOp {
    Put { path: Vec<String>, value: Value },
    Delete { path: Vec<String> },
    DefineTable { table: TableDef },
}

impl Op {
    /// The entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let op = match self {
            Op::Put { path, value } => WireOp::Put {
                path: path.segments().to_vec(),
                value: value.clone(),
            },
            Op::Delete { path } => WireOp::Delete {
                path: path.segments().to_vec(),
            },
            Op::DefineTable(def) => WireOp::DefineTable { table: def.clone() },
        };
        // Serializing a tree of serde_json values to a Vec cannot fail.
        serde_json::to_vec(&Wire {
            v: ENTRY_VERSION,
            op,
        })
        .unwrap_or_default()
    }

    /// Reads an entry, checking its version first.
    pub fn decode(bytes: &[u8]) -> Result<Op, EntryError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if version.v != ENTRY_VERSION {
            return Err(EntryError::Version(version.v));
        }
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        let path = |segments: Vec<String>| {
            RecordPath::from_segments(segments).map_err(|e| EntryError::Malformed(e.to_string()))
        };
        Ok(match wire.op {
            WireOp::Put { path: p, value } => Op::Put {
                path: path(p)?,
                value,
            },
            WireOp::Delete { path: p } => Op::Delete { path: path(p)? },
            WireOp::DefineTable { table } => Op::DefineTable(table),
        })
    }

    /// The record path the entry touches, if any.
    pub fn path(&self) -> Option<&RecordPath> {
        match self {
            Op::Put { path, .. } | Op::Delete { path } => Some(path),
            Op::DefineTable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_round_trip_and_start_with_their_version() {
        let put = Op::Put {
            path: RecordPath::parse("/a/b").unwrap(),
            value: json!({"x": 1}),
        };
        let bytes = put.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"op":"put","path":["a","b"],"value":{"x":1}}"#
        );
        assert_eq!(Op::decode(&bytes).unwrap(), put);
        let del = Op::Delete {
            path: RecordPath::parse("/a").unwrap(),
        };
        assert_eq!(Op::decode(&del.encode()).unwrap(), del);
    }

    #[test]
    fn newer_and_garbage_entries_are_refused() {
        assert!(matches!(
            Op::decode(br#"{"v":2,"op":"put"}"#),
            Err(EntryError::Version(2))
        ));
        assert!(matches!(
            Op::decode(b"garbage"),
            Err(EntryError::Malformed(_))
        ));
        assert!(matches!(
            Op::decode(br#"{"v":1,"op":"put","path":["a\u0000b"],"value":{}}"#),
            Err(EntryError::Malformed(_))
        ));
    }
}
