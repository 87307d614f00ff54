//! The frames of the `log` file: one per durable group.
//!
//! ```text
//! header   magic "ALOG" (4) | version = 1 (1) | flags = 0 (1) | body length (u32 BE)
//! body     run count (u32 BE)
//!          per run: first index (u64 BE) | entry count (u32 BE)
//!                   per entry: length (u32 BE) | bytes
//!          extra node count (u32 BE) | per node: flat index (u64 BE) | hash (32)
//!          head flag (u8: 0 or 1) | signed tree head (137 bytes, when the flag is 1)
//! trailer  blake3(header ‖ body) (32)
//! ```

use crate::storage::{EntryRun, Group};
use crate::wire::{Reader, Writer};
use crate::{Hash, LogError, MAX_ENTRY_SIZE, SignedTreeHead};

pub(crate) const MAGIC: &[u8; 4] = b"ALOG";
pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 10;
pub(crate) const TRAILER_LEN: usize = 32;
/// The largest body a frame may have (a group is cut well below this).
pub(crate) const MAX_BODY: usize = 1 << 30;

/// A frame as encoded, with where each entry's bytes sit inside it.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    /// Per entry, in group order: (offset of its bytes in `bytes`, length).
    pub(crate) entry_spans: Vec<(usize, u32)>,
}

/// The size of a group's frame, worked out apart from the encoder (the tests check one
/// against the other).
#[cfg(test)]
fn encoded_len(group: &Group) -> usize {
    let entries: usize = group
        .runs
        .iter()
        .map(|r| 12 + r.entries.iter().map(|e| 4 + e.len()).sum::<usize>())
        .sum();
    HEADER_LEN + 4 + entries + 4 + 40 * group.extra_nodes.len() + 1 + 137 + TRAILER_LEN
}

/// Encodes `group` (its derived nodes are left out: they are computed from the entries).
pub(crate) fn encode(group: &Group) -> Result<Encoded, LogError> {
    let mut frame = encode_prefix(&group.runs, group.extra_nodes.len(), group.head.is_some())?;
    let tail = encode_tail(&group.extra_nodes, group.head.as_ref());
    frame.bytes.extend_from_slice(&tail);
    let sum = blake3::hash(&frame.bytes);
    frame.bytes.extend_from_slice(sum.as_bytes());
    Ok(frame)
}

/// The first part of a frame: its header and its runs of entries, which can be written
/// before the rest is known. The rest is `extra_nodes` nodes and, if `has_head`, a head
/// ([`encode_tail`]), then the trailer over both parts.
pub(crate) fn encode_prefix(
    runs: &[EntryRun],
    extra_nodes: usize,
    has_head: bool,
) -> Result<Encoded, LogError> {
    let entries: usize = runs
        .iter()
        .map(|r| 12 + r.entries.iter().map(|e| 4 + e.len()).sum::<usize>())
        .sum();
    let tail = tail_len(extra_nodes, has_head);
    let mut w = Writer::with_capacity(HEADER_LEN + 4 + entries + tail + TRAILER_LEN);
    w.bytes(MAGIC);
    w.u8(VERSION);
    w.u8(0);
    w.u32(0); // body length, patched below
    let mut entry_spans = Vec::new();
    w.u32(count(runs.len())?);
    for run in runs {
        w.u64(run.first_index);
        w.u32(count(run.entries.len())?);
        for e in &run.entries {
            let len = count(e.len())?;
            w.u32(len);
            entry_spans.push((w.len(), len));
            w.bytes(e);
        }
    }
    let mut bytes = w.into_vec();
    let body = bytes.len() - HEADER_LEN + tail;
    if body > MAX_BODY {
        return Err(LogError::Storage {
            reason: format!("a group of {body} bytes is larger than a frame may be"),
        });
    }
    bytes[6..10].copy_from_slice(&count(body)?.to_be_bytes());
    Ok(Encoded { bytes, entry_spans })
}

/// The bytes of a frame's body after its runs (without the trailer).
pub(crate) fn tail_len(extra_nodes: usize, has_head: bool) -> usize {
    4 + 40 * extra_nodes
        + 1
        + if has_head {
            SignedTreeHead::ENCODED_LEN
        } else {
            0
        }
}

/// The rest of a frame's body after [`encode_prefix`]: the extra nodes and the head.
pub(crate) fn encode_tail(extra_nodes: &[(u64, Hash)], head: Option<&SignedTreeHead>) -> Vec<u8> {
    let mut w = Writer::with_capacity(tail_len(extra_nodes.len(), head.is_some()));
    // The count fits: the prefix refused bodies over `MAX_BODY`.
    w.u32(extra_nodes.len() as u32);
    for (x, h) in extra_nodes {
        w.u64(*x);
        w.bytes(h.as_bytes());
    }
    match head {
        None => w.u8(0),
        Some(head) => {
            w.u8(1);
            head.encode_into(&mut w);
        }
    }
    w.into_vec()
}

fn count(n: usize) -> Result<u32, LogError> {
    u32::try_from(n).map_err(|_| LogError::Storage {
        reason: format!("{n} does not fit a frame's 32-bit count"),
    })
}

/// Why bytes in the log are not a frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// What a write cut short (or never began) looks like: the log ends here.
    Torn(String),
    /// A complete frame this code cannot accept: never truncated away.
    Bad(LogError),
}

/// Reads a frame header: the body length, or why these bytes do not start a frame.
pub(crate) fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if &header[..4] != MAGIC {
        return Err(FrameError::Torn("no frame magic".to_owned()));
    }
    if header[4] != VERSION {
        return Err(FrameError::Bad(LogError::UnsupportedVersion {
            what: "log frame",
            version: header[4],
            supported: VERSION,
        }));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[6..10]);
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY {
        return Err(FrameError::Torn(format!(
            "frame body length {len} is over the limit"
        )));
    }
    Ok(len)
}

/// A decoded frame: the group, and per entry the offset of its bytes within the frame.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) group: Group,
    pub(crate) entry_spans: Vec<(usize, u32)>,
}

/// Decodes a whole frame (header, body, trailer), checking the checksum first.
pub(crate) fn decode(frame: &[u8]) -> Result<Decoded, FrameError> {
    if frame.len() < HEADER_LEN + TRAILER_LEN {
        return Err(FrameError::Torn("shorter than a frame".to_owned()));
    }
    let (data, sum) = frame.split_at(frame.len() - TRAILER_LEN);
    if blake3::hash(data).as_bytes()[..] != sum[..] {
        return Err(FrameError::Torn("checksum mismatch".to_owned()));
    }
    let mut r = Reader::new("frame", &data[HEADER_LEN..]);
    let parse = |r: &mut Reader<'_>| -> Result<Decoded, LogError> {
        let mut runs = Vec::new();
        let mut entry_spans = Vec::new();
        for _ in 0..r.u32()? {
            let first_index = r.u64()?;
            let n = r.u32()?;
            let mut entries = Vec::new();
            for _ in 0..n {
                let len = r.u32()?;
                if len as usize > MAX_ENTRY_SIZE {
                    return Err(r.error(format!("entry of {len} bytes is over the limit")));
                }
                entry_spans.push((HEADER_LEN + r.position(), len));
                entries.push(r.take(len as usize)?.to_vec());
            }
            runs.push(EntryRun {
                first_index,
                entries,
            });
        }
        let mut extra_nodes = Vec::new();
        for _ in 0..r.u32()? {
            let x = r.u64()?;
            extra_nodes.push((x, r.hash()?));
        }
        let head = match r.u8()? {
            0 => None,
            1 => Some(SignedTreeHead::decode_from(r)?),
            f => return Err(r.error(format!("head flag {f}"))),
        };
        r.finish()?;
        Ok(Decoded {
            group: Group {
                runs,
                derived_nodes: Vec::<(u64, Hash)>::new(),
                extra_nodes,
                head,
            },
            entry_spans,
        })
    };
    parse(&mut r).map_err(FrameError::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atek_core::SecretKey;

    #[test]
    fn round_trip_and_damage() {
        let key = SecretKey::from_seed([1; 32]);
        let head = crate::TreeHead::empty(key.public()).sign(&key).unwrap();
        let group = Group {
            runs: vec![EntryRun {
                first_index: 0,
                entries: vec![b"one".to_vec(), Vec::new(), b"three".to_vec()],
            }],
            derived_nodes: vec![(0, Hash::leaf(b"one"))],
            extra_nodes: vec![(7, Hash::leaf(b"x"))],
            head: Some(head),
        };
        let enc = encode(&group).unwrap();
        assert_eq!(enc.bytes.len(), encoded_len(&group));
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&enc.bytes[..HEADER_LEN]);
        assert_eq!(
            body_len(&header).unwrap(),
            enc.bytes.len() - HEADER_LEN - TRAILER_LEN
        );
        let dec = decode(&enc.bytes).unwrap();
        assert_eq!(dec.group.runs, group.runs);
        assert_eq!(dec.group.extra_nodes, group.extra_nodes);
        assert_eq!(dec.group.head, group.head);
        assert!(dec.group.derived_nodes.is_empty());
        assert_eq!(dec.entry_spans, enc.entry_spans);
        let (off, len) = dec.entry_spans[2];
        assert_eq!(&enc.bytes[off..off + len as usize], b"three");
        for i in 0..enc.bytes.len() {
            let mut b = enc.bytes.clone();
            b[i] ^= 4;
            assert!(decode(&b).is_err(), "byte {i}");
        }
        assert!(decode(&enc.bytes[..enc.bytes.len() - 1]).is_err());
    }
}
