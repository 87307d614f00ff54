//! The protocol's frames: their encoding, and an incremental decoder over a byte stream.
//!
//! ```text
//! frame   length (u32 BE, of type and body; 1 ..= MAX_FRAME) | type (u8) | body
//! ```

use atek_core::PublicKey;

use super::{MAX_FRAME, PROTOCOL_VERSION, ReasonCode};
use crate::range_proof::decode_siblings;
use crate::wire::{Reader, Writer};
use crate::{LogError, MAX_ENTRY_SIZE, RangeProof, SignedTreeHead};

/// The first bytes of a `Hello` body.
pub(crate) const MAGIC: &[u8; 4] = b"ALSY";
/// The longest detail text a `Close` frame carries, in bytes.
pub(crate) const MAX_DETAIL: usize = 1024;

const HELLO: u8 = 0x01;
const WANT: u8 = 0x02;
const SUBSCRIBE: u8 = 0x03;
const HEAD: u8 = 0x10;
const ENTRIES: u8 = 0x11;
const REFUSE: u8 = 0x12;
const CLOSE: u8 = 0x7f;

/// Which side of a session a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Asks for entries and verifies them.
    Reader,
    /// Holds the log and answers.
    Server,
}

/// Why a server does not send (part of) a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The server does not hold those entries (a sparse replica).
    NotHeld,
    /// Those entries are beyond the server's newest head.
    BeyondHead,
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first frame of each side.
    Hello {
        /// The protocol version the sender speaks.
        version: u8,
        /// The sender's side.
        role: Role,
        /// The log the session is about.
        log_id: PublicKey,
        /// A reader's newest accepted length (0 before any head); 0 from a server.
        length: u64,
    },
    /// Reader: send entries `start..end` (pipelined; answered in order).
    Want {
        /// The first entry.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// Reader: push every new head from now on and, with `tail`, every entry from that
    /// index on.
    Subscribe {
        /// Where the live tail of entries starts, if wanted.
        tail: Option<u64>,
    },
    /// Server: its newest signed head, with the empty-range proof at the reader's accepted
    /// length when the head is longer.
    Head {
        /// The head.
        head: SignedTreeHead,
        /// `start = end =` the reader's length, `tree_size =` the head's length.
        proof: Option<RangeProof>,
    },
    /// Server: consecutive entries with their proof against the last head it sent.
    Entries {
        /// For the live tail (else for the oldest open want).
        tail: bool,
        /// The entries, `proof.start..proof.end`.
        entries: Vec<Vec<u8>>,
        /// Their range proof.
        proof: RangeProof,
    },
    /// Server: entries `start..end` of the oldest open want (or of the tail) will not come.
    Refuse {
        /// For the live tail.
        tail: bool,
        /// The first entry refused.
        start: u64,
        /// One past the last.
        end: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// Either side: the session ends, with a reason.
    Close {
        /// Why.
        code: ReasonCode,
        /// Words for a person (at most 1 KiB).
        detail: String,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not a frame of this protocol: unknown type, bad field, wrong size.
    Garbage(String),
    /// A length prefix over [`MAX_FRAME`].
    Oversized(u64),
    /// A `Hello` of another protocol version.
    UnsupportedVersion(u8),
}

impl From<LogError> for FrameError {
    fn from(e: LogError) -> Self {
        Self::Garbage(e.to_string())
    }
}

impl Frame {
    /// The frame's name, for reasons and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Want { .. } => "want",
            Frame::Subscribe { .. } => "subscribe",
            Frame::Head { .. } => "head",
            Frame::Entries { .. } => "entries",
            Frame::Refuse { .. } => "refuse",
            Frame::Close { .. } => "close",
        }
    }

    /// The frame on the wire: length prefix, type, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.u32(0); // patched below
        match self {
            Frame::Hello {
                version,
                role,
                log_id,
                length,
            } => {
                w.u8(HELLO);
                w.bytes(MAGIC);
                w.u8(*version);
                w.u8(match role {
                    Role::Reader => 0,
                    Role::Server => 1,
                });
                w.bytes(log_id.as_bytes());
                w.u64(*length);
            }
            Frame::Want { start, end } => {
                w.u8(WANT);
                w.u64(*start);
                w.u64(*end);
            }
            Frame::Subscribe { tail } => {
                w.u8(SUBSCRIBE);
                w.u8(u8::from(tail.is_some()));
                w.u64(tail.unwrap_or(0));
            }
            Frame::Head { head, proof } => {
                w.u8(HEAD);
                head.encode_into(&mut w);
                match proof {
                    None => w.u8(0),
                    Some(p) => {
                        w.u8(1);
                        w.u64(p.start);
                        p.encode_siblings(&mut w);
                    }
                }
            }
            Frame::Entries {
                tail,
                entries,
                proof,
            } => {
                return encode_entries(*tail, entries, proof);
            }
            Frame::Refuse {
                tail,
                start,
                end,
                reason,
            } => {
                w.u8(REFUSE);
                w.u8(u8::from(*tail));
                w.u64(*start);
                w.u64(*end);
                w.u8(match reason {
                    RefuseReason::NotHeld => 1,
                    RefuseReason::BeyondHead => 2,
                });
            }
            Frame::Close { code, detail } => {
                w.u8(CLOSE);
                w.u8(code.to_u8());
                let mut cut = detail.len().min(MAX_DETAIL);
                while !detail.is_char_boundary(cut) {
                    cut -= 1;
                }
                w.u16(cut as u16);
                w.bytes(&detail.as_bytes()[..cut]);
            }
        }
        let mut bytes = w.into_vec();
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        bytes
    }

    /// Reads one frame from its type byte and body (the bytes after the length prefix).
    pub fn decode(frame: &[u8]) -> Result<Frame, FrameError> {
        let (&ty, body) = frame
            .split_first()
            .ok_or_else(|| FrameError::Garbage("an empty frame".to_owned()))?;
        let mut r = Reader::new("protocol frame", body);
        let frame = match ty {
            HELLO => {
                if r.take(4)? != MAGIC {
                    return Err(FrameError::Garbage("a hello without the magic".to_owned()));
                }
                let version = r.u8()?;
                if version != PROTOCOL_VERSION {
                    return Err(FrameError::UnsupportedVersion(version));
                }
                let role = match r.u8()? {
                    0 => Role::Reader,
                    1 => Role::Server,
                    other => return Err(FrameError::Garbage(format!("role {other}"))),
                };
                let log_id = r.public_key()?;
                let length = r.u64()?;
                Frame::Hello {
                    version,
                    role,
                    log_id,
                    length,
                }
            }
            WANT => {
                let (start, end) = (r.u64()?, r.u64()?);
                if start >= end {
                    return Err(FrameError::Garbage(format!("want of {start}..{end}")));
                }
                Frame::Want { start, end }
            }
            SUBSCRIBE => {
                let flag = r.u8()?;
                let from = r.u64()?;
                let tail = match flag {
                    0 => None,
                    1 => Some(from),
                    other => return Err(FrameError::Garbage(format!("tail flag {other}"))),
                };
                Frame::Subscribe { tail }
            }
            HEAD => {
                let head = SignedTreeHead::decode_from(&mut r)?;
                let proof = match r.u8()? {
                    0 => None,
                    1 => {
                        let at = r.u64()?;
                        let siblings = decode_siblings(&mut r)?;
                        Some(RangeProof {
                            start: at,
                            end: at,
                            tree_size: head.head.length,
                            siblings,
                        })
                    }
                    other => return Err(FrameError::Garbage(format!("proof flag {other}"))),
                };
                Frame::Head { head, proof }
            }
            ENTRIES => {
                let tail = flag(&mut r)?;
                let tree_size = r.u64()?;
                let start = r.u64()?;
                let count = r.u32()?;
                // Each entry takes at least its 4-byte length: a count the body cannot
                // hold is refused before anything is allocated for it.
                if count == 0 || count as usize > r.remaining() / 4 {
                    return Err(FrameError::Garbage(format!("an entry count of {count}")));
                }
                let end = start
                    .checked_add(u64::from(count))
                    .filter(|&e| e <= tree_size)
                    .ok_or_else(|| {
                        FrameError::Garbage("entries beyond their tree size".to_owned())
                    })?;
                let mut entries = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let len = r.u32()? as usize;
                    if len > MAX_ENTRY_SIZE {
                        return Err(FrameError::Garbage(format!(
                            "an entry of {len} bytes, over the limit of {MAX_ENTRY_SIZE}"
                        )));
                    }
                    entries.push(r.take(len)?.to_vec());
                }
                let siblings = decode_siblings(&mut r)?;
                Frame::Entries {
                    tail,
                    entries,
                    proof: RangeProof {
                        start,
                        end,
                        tree_size,
                        siblings,
                    },
                }
            }
            REFUSE => {
                let tail = flag(&mut r)?;
                let (start, end) = (r.u64()?, r.u64()?);
                if start >= end {
                    return Err(FrameError::Garbage(format!("refusal of {start}..{end}")));
                }
                let reason = match r.u8()? {
                    1 => RefuseReason::NotHeld,
                    2 => RefuseReason::BeyondHead,
                    other => return Err(FrameError::Garbage(format!("refusal reason {other}"))),
                };
                Frame::Refuse {
                    tail,
                    start,
                    end,
                    reason,
                }
            }
            CLOSE => {
                let code = ReasonCode::from_u8(r.u8()?);
                let len = usize::from(r.u16()?);
                if len > MAX_DETAIL {
                    return Err(FrameError::Garbage(format!(
                        "a close detail of {len} bytes"
                    )));
                }
                let detail = String::from_utf8_lossy(r.take(len)?).into_owned();
                Frame::Close { code, detail }
            }
            other => {
                return Err(FrameError::Garbage(format!(
                    "unknown frame type {other:#04x}"
                )));
            }
        };
        r.finish()?;
        Ok(frame)
    }
}

fn flag(r: &mut Reader<'_>) -> Result<bool, FrameError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(FrameError::Garbage(format!("flag {other}"))),
    }
}

/// An `Entries` frame, written in one buffer of its final size.
pub(crate) fn encode_entries(tail: bool, entries: &[Vec<u8>], proof: &RangeProof) -> Vec<u8> {
    let size = entries_frame_len(entries, proof.siblings.len());
    let mut w = Writer::with_capacity(size);
    w.u32((size - 4) as u32);
    w.u8(ENTRIES);
    w.u8(u8::from(tail));
    w.u64(proof.tree_size);
    w.u64(proof.start);
    w.u32(entries.len() as u32);
    for e in entries {
        w.u32(e.len() as u32);
        w.bytes(e);
    }
    proof.encode_siblings(&mut w);
    w.into_vec()
}

/// The encoded size of an `Entries` frame, length prefix included.
pub(crate) fn entries_frame_len(entries: &[Vec<u8>], siblings: usize) -> usize {
    4 + 1 + 1 + 8 + 8 + 4 + entries.iter().map(|e| 4 + e.len()).sum::<usize>() + 2 + 32 * siblings
}

/// Collects bytes from a stream and cuts them into frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` if more bytes are needed. A length prefix over
    /// [`MAX_FRAME`] is an error as soon as it is read, before its body comes.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.pos..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Garbage("a frame of length 0".to_owned()));
        }
        if len > MAX_FRAME {
            return Err(FrameError::Oversized(len as u64));
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let frame = Frame::decode(&rest[4..4 + len]);
        self.pos += 4 + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        frame.map(Some)
    }

    /// Bytes received and not yet taken as frames: a partial frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }
}
