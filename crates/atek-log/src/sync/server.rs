//! The serving side of a session: answers a reader's wants from a [`Source`].

use std::collections::VecDeque;

use atek_core::PublicKey;

use super::frame::{Frame, FrameDecoder, RefuseReason, Role, encode_entries};
use super::{CloseReason, DEFAULT_BATCH_BYTES, MAX_QUEUED_WANTS, PROTOCOL_VERSION, Source};
use crate::{LogError, SignedTreeHead};

/// What a [`ServerSession`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The session ended; nothing more happens.
    Closed(CloseReason),
}

#[derive(Debug)]
enum State {
    AwaitHello,
    Open,
    Closed,
}

/// A want being answered: the next entry owed and the end.
#[derive(Debug)]
struct Want {
    next: u64,
    end: u64,
}

/// The serving side of a replication session: a state machine over a byte stream (see
/// [the module](super)) that answers from any [`Source`].
///
/// It sends its `Hello` at once. Once the reader's `Hello` is in, each call to
/// [`ServerSession::poll_transmit`] makes the next frame: its head when it has not sent
/// one, when a want needs entries past the head it sent, or (once the reader subscribed)
/// whenever the source has a newer one; then the next batch of the oldest want, then of
/// the live tail. Each head longer than what the reader holds comes with the proof that
/// it extends it. A caller that serves live should call `poll_transmit` again when the
/// source's head changes ([`Log::watch`](crate::Log::watch)).
#[derive(Debug)]
pub struct ServerSession {
    log_id: PublicKey,
    decoder: FrameDecoder,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
    state: State,
    /// The reader's newest accepted length, as far as this session knows.
    reader_len: u64,
    sent_head: Option<SignedTreeHead>,
    wants: VecDeque<Want>,
    subscribed: bool,
    /// The next tail entry to send, once the reader subscribed with a tail.
    tail: Option<u64>,
    batch_bytes: usize,
}

impl ServerSession {
    /// A session serving log `log_id`, with its `Hello` queued.
    pub fn new(log_id: PublicKey) -> Self {
        let mut session = Self {
            log_id,
            decoder: FrameDecoder::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            state: State::AwaitHello,
            reader_len: 0,
            sent_head: None,
            wants: VecDeque::new(),
            subscribed: false,
            tail: None,
            batch_bytes: DEFAULT_BATCH_BYTES,
        };
        session.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Server,
            log_id,
            length: 0,
        });
        session
    }

    /// Sets the entry bytes per `Entries` frame (1 MiB by default; at least one entry goes
    /// in each whatever its size, and a frame stays under the size limit).
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        self.batch_bytes = bytes.clamp(1, super::MAX_FRAME / 2);
    }

    /// Takes bytes received from the reader.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.decoder.push(bytes);
        while !self.is_closed() {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => self.on_frame(frame),
                Ok(None) => break,
                Err(e) => self.close_with(CloseReason::from_frame_error(e)),
            }
        }
    }

    /// The stream from the reader ended. Unless the session was closed, this closes it
    /// ([`CloseReason::Truncated`]).
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            let buffered = self.decoder.buffered();
            self.close_with(CloseReason::Truncated { buffered });
        }
    }

    /// Ends the session cleanly: a `Close` frame is queued.
    pub fn close(&mut self) {
        if !self.is_closed() {
            self.close_with(CloseReason::Done);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True when the reader has subscribed to new heads.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// The next frame to send, made now from `source`; `None` when there is nothing to
    /// send until more input comes or the source's head changes.
    pub fn poll_transmit(&mut self, source: &impl Source) -> Option<Vec<u8>> {
        if let Some(frame) = self.out.pop_front() {
            return Some(frame);
        }
        if !matches!(self.state, State::Open) {
            return None;
        }
        if let Err(reason) = self.make_next(source) {
            self.close_with(reason);
        }
        self.out.pop_front()
    }

    fn send(&mut self, frame: &Frame) {
        self.out.push_back(frame.encode());
    }

    fn close_with(&mut self, reason: CloseReason) {
        if !matches!(reason, CloseReason::Remote { .. }) {
            self.send(&Frame::Close {
                code: reason.code(),
                detail: reason.to_string(),
            });
        }
        self.state = State::Closed;
        self.events.push_back(ServerEvent::Closed(reason));
    }

    fn on_frame(&mut self, frame: Frame) {
        if let Frame::Close { code, detail } = frame {
            return self.close_with(CloseReason::Remote { code, detail });
        }
        if matches!(self.state, State::AwaitHello) {
            match frame {
                Frame::Hello {
                    role,
                    log_id,
                    length,
                    ..
                } => {
                    if role != Role::Reader {
                        return self.out_of_order("the peer is not a reader");
                    }
                    if log_id != self.log_id {
                        return self.close_with(CloseReason::WrongLog {
                            expected: self.log_id,
                            found: log_id,
                        });
                    }
                    self.reader_len = length;
                    self.state = State::Open;
                }
                other => self.out_of_order(format!("{} before hello", other.name())),
            }
            return;
        }
        match frame {
            Frame::Want { start, end } => {
                if self.wants.len() >= MAX_QUEUED_WANTS {
                    return self.close_with(CloseReason::TooManyWants {
                        max: MAX_QUEUED_WANTS,
                    });
                }
                self.wants.push_back(Want { next: start, end });
            }
            Frame::Subscribe { tail } => {
                if self.subscribed {
                    return self.out_of_order("a second subscribe");
                }
                self.subscribed = true;
                self.tail = tail;
            }
            other => self.out_of_order(format!("{} from a reader", other.name())),
        }
    }

    fn out_of_order(&mut self, detail: impl Into<String>) {
        self.close_with(CloseReason::OutOfOrder {
            detail: detail.into(),
        });
    }

    /// Queues the next frame, if there is one to send.
    fn make_next(&mut self, source: &impl Source) -> Result<(), CloseReason> {
        let current = source.head().map_err(storage)?;
        if let Some(current) = current
            && Some(current) != self.sent_head
            && self.head_wanted()
        {
            let n = current.head.length;
            let proof = if n > self.reader_len {
                Some(source.extension(self.reader_len, n).map_err(|e| match e {
                    LogError::MissingNode { .. } => CloseReason::CannotProve {
                        detail: format!(
                            "the nodes to prove length {n} from length {} are not held",
                            self.reader_len
                        ),
                    },
                    e => storage(e),
                })?)
            } else {
                None
            };
            // The reader accepts a longer head or ends the session.
            self.reader_len = self.reader_len.max(n);
            self.sent_head = Some(current);
            self.send(&Frame::Head {
                head: current,
                proof,
            });
            return Ok(());
        }
        let n = self.sent_head.map_or(0, |h| h.head.length);
        if let Some(want) = self.wants.front() {
            let (next, end) = (want.next, want.end);
            let done = self.serve(source, false, next, end, n)?;
            let want = self
                .wants
                .front_mut()
                .ok_or_else(|| storage(LogError::Closed))?;
            want.next = done;
            if done == end {
                self.wants.pop_front();
            }
            return Ok(());
        }
        if let Some(next) = self.tail
            && next < n
        {
            let done = self.serve(source, true, next, n, n)?;
            self.tail = Some(done);
        }
        Ok(())
    }

    /// Whether to send the source's newer head now.
    fn head_wanted(&self) -> bool {
        let Some(sent) = self.sent_head else {
            return true;
        };
        self.subscribed
            || self
                .wants
                .front()
                .is_some_and(|w| w.next >= sent.head.length)
    }

    /// Queues one frame towards `next..end` on a tree of `n` entries: a batch of entries
    /// from `next`, or a refusal of what is not held or is past the head. Returns where the
    /// range now stands.
    fn serve(
        &mut self,
        source: &impl Source,
        tail: bool,
        next: u64,
        end: u64,
        n: u64,
    ) -> Result<u64, CloseReason> {
        if next >= n {
            self.send(&Frame::Refuse {
                tail,
                start: next,
                end,
                reason: RefuseReason::BeyondHead,
            });
            return Ok(end);
        }
        let limit = end.min(n);
        let held = source.next_held(next).map_err(storage)?;
        match held {
            Some(r) if r.start == next => {
                let stop = limit.min(r.end);
                let (entries, proof) = source
                    .read(next, stop, self.batch_bytes, n)
                    .map_err(storage)?;
                if entries.is_empty() {
                    return Err(storage(LogError::MissingEntry { index: next }));
                }
                let done = proof.end;
                self.out.push_back(encode_entries(tail, &entries, &proof));
                Ok(done)
            }
            other => {
                let stop = other.map_or(limit, |r| r.start.min(limit));
                self.send(&Frame::Refuse {
                    tail,
                    start: next,
                    end: stop,
                    reason: RefuseReason::NotHeld,
                });
                Ok(stop)
            }
        }
    }
}

fn storage(e: LogError) -> CloseReason {
    CloseReason::Storage {
        detail: e.to_string(),
    }
}
