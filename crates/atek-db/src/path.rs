//! Record paths: `/a/b/c` or `["a", "b", "c"]`, as ADB clients send them (reference 5.3).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most segments one path may have.
pub const MAX_SEGMENTS: usize = 32;
/// The most bytes one path may have, separators included.
pub const MAX_PATH_BYTES: usize = 1024;

/// A record's place in a database: one or more non-empty segments.
///
/// Stored as the segments joined with NUL bytes, as the original's Hyperbee sub-databases
/// were, so that listing a path is a prefix scan and range bounds compare the same bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPath {
    segments: Vec<String>,
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// No segments where a record path was needed.
    #[error("the path is empty; give a path such as \"/my-table/key\"")]
    Empty,
    /// A segment with a NUL byte (the storage separator) or a `/` (in an array path).
    #[error("path segment {segment:?} may not contain a NUL byte or '/'")]
    BadSegment {
        /// The segment, as given.
        segment: String,
    },
    /// Too many segments or bytes.
    #[error(
        "the path is too long ({segments} segments, {bytes} bytes); the limits are {MAX_SEGMENTS} segments and {MAX_PATH_BYTES} bytes"
    )]
    TooLong {
        /// Segments given.
        segments: usize,
        /// Bytes given.
        bytes: usize,
    },
}

impl RecordPath {
    /// Parses `/a/b/c` (leading, trailing and doubled slashes are ignored). The root `/`
    /// gives an empty path, which only listing accepts.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        Self::from_segments(text.split('/').filter(|s| !s.is_empty()).map(str::to_owned))
    }

    /// Builds a path from segments as given in an array path. Empty segments are dropped,
    /// as the original did.
    pub fn from_segments(segments: impl IntoIterator<Item = String>) -> Result<Self, PathError> {
        let segments: Vec<String> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        if let Some(bad) = segments.iter().find(|s| s.contains(['\0', '/'])) {
            return Err(PathError::BadSegment {
                segment: bad.clone(),
            });
        }
        let bytes = segments.iter().map(|s| s.len() + 1).sum::<usize>();
        if segments.len() > MAX_SEGMENTS || bytes > MAX_PATH_BYTES {
            return Err(PathError::TooLong {
                segments: segments.len(),
                bytes,
            });
        }
        Ok(Self { segments })
    }

    /// The root: every record is under it.
    pub fn root() -> Self {
        Self {
            segments: Vec::new(),
        }
    }

    /// Decodes a storage key made by [`RecordPath::storage_key`].
    pub fn from_storage_key(key: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(key).ok()?;
        Some(Self {
            segments: text.split('\0').map(str::to_owned).collect(),
        })
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The record's key: its last segment.
    pub fn key(&self) -> &str {
        self.segments.last().map_or("", String::as_str)
    }

    /// The path without its last segment: for a record, its table's id segments.
    pub fn parent(&self) -> Option<RecordPath> {
        let (_, parent) = self.segments.split_last()?;
        Some(Self {
            segments: parent.to_vec(),
        })
    }

    /// The id of the table a record at this path belongs to (`example.com/my-table` for
    /// `/example.com/my-table/key`), if it has a parent.
    pub fn table_id(&self) -> Option<String> {
        let (_, parent) = self.segments.split_last()?;
        (!parent.is_empty()).then(|| parent.join("/"))
    }

    /// Appends a segment.
    pub fn child(&self, segment: &str) -> Result<RecordPath, PathError> {
        Self::from_segments(self.segments.iter().cloned().chain([segment.to_owned()]))
    }

    /// The bytes records are stored under: segments joined with NUL.
    pub fn storage_key(&self) -> Vec<u8> {
        self.segments.join("\0").into_bytes()
    }

    /// The prefix every record under this path is stored with (empty for the root).
    pub fn storage_prefix(&self) -> Vec<u8> {
        let mut key = self.storage_key();
        if !key.is_empty() {
            key.push(0);
        }
        key
    }

    /// `hyper://{db}/a/b/c`, the record URL of reference 5.3.
    pub fn url(&self, db: &atek_core::DbId) -> String {
        format!("hyper://{db}{self}")
    }
}

impl fmt::Display for RecordPath {
    /// `/a/b/c` (`/` for the root).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RecordPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordPath({self})")
    }
}

/// A path as clients send it: a string or an array of segments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PathParam {
    /// `"/a/b/c"`
    Text(String),
    /// `["a", "b", "c"]`
    Segments(Vec<String>),
}

impl TryFrom<PathParam> for RecordPath {
    type Error = PathError;

    fn try_from(param: PathParam) -> Result<Self, PathError> {
        match param {
            PathParam::Text(text) => RecordPath::parse(&text),
            PathParam::Segments(segments) => RecordPath::from_segments(segments),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strings_and_arrays_agree() {
        let a = RecordPath::parse("/example.com/test/record1").unwrap();
        let b = RecordPath::from_segments(["example.com", "test", "record1"].map(String::from))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "/example.com/test/record1");
        assert_eq!(a.key(), "record1");
        assert_eq!(a.table_id().as_deref(), Some("example.com/test"));
        assert_eq!(RecordPath::parse("//a//b/").unwrap().segments(), ["a", "b"]);
    }

    #[test]
    fn storage_keys_round_trip_and_nest() {
        let p = RecordPath::parse("/a/b").unwrap();
        assert_eq!(p.storage_key(), b"a\0b");
        assert_eq!(p.storage_prefix(), b"a\0b\0");
        assert_eq!(RecordPath::from_storage_key(b"a\0b").unwrap(), p);
        assert!(RecordPath::root().storage_prefix().is_empty());
        assert_eq!(RecordPath::root().to_string(), "/");
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(matches!(
            RecordPath::from_segments(["a/b".to_owned()]),
            Err(PathError::BadSegment { .. })
        ));
        assert!(matches!(
            RecordPath::parse("/a\0b"),
            Err(PathError::BadSegment { .. })
        ));
        let long = "/x".repeat(MAX_SEGMENTS + 1);
        assert!(matches!(
            RecordPath::parse(&long),
            Err(PathError::TooLong { .. })
        ));
    }
}
