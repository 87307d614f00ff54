//! The reader's side of a session: asks for ranges, verifies, stores into a replica.

use std::collections::VecDeque;
use std::ops::Range;

use atek_core::PublicKey;

use super::frame::{Frame, FrameDecoder, RefuseReason, Role};
use super::{CloseReason, PROTOCOL_VERSION};
use crate::{CheckedHead, HeadKind, RangeProof, Replica, SignedTreeHead, Storage};

/// Wants sent and not yet answered in full, at most, by default.
const DEFAULT_IN_FLIGHT: usize = 64;

/// What a [`ReaderSession`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    /// A newer head was verified and is now the replica's newest.
    Head(SignedTreeHead),
    /// Entries were verified and stored (those already held were verified too).
    Stored {
        /// Which.
        range: Range<u64>,
        /// From the live tail rather than a want.
        tail: bool,
    },
    /// The server will not send these entries.
    Refused {
        /// Which.
        range: Range<u64>,
        /// Why.
        reason: RefuseReason,
        /// From the live tail rather than a want.
        tail: bool,
    },
    /// Every entry of a want was stored or refused.
    WantDone(Range<u64>),
    /// The session ended; nothing more happens.
    Closed(CloseReason),
}

#[derive(Debug)]
enum State {
    AwaitHello,
    Open,
    Closed(CloseReason),
}

/// A want sent: its range and the next entry expected.
#[derive(Debug)]
struct InFlight {
    range: Range<u64>,
    next: u64,
}

/// The reader's side of a replication session, driving a [`Replica`]: a state machine
/// over a byte stream (see [the module](super)).
///
/// It sends its `Hello` (its version, the log id and the replica's newest length) at once.
/// Wants are sent as they come, up to 64 in flight; the server answers them in order.
/// Every head the server sends goes through [`Replica::check_head`] and every batch of
/// entries through [`Replica::add_entries`] against the last head the server sent, so
/// nothing is stored before it verifies. A replica must be driven by one session at a time.
#[derive(Debug)]
pub struct ReaderSession {
    log_id: PublicKey,
    decoder: FrameDecoder,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ReaderEvent>,
    state: State,
    /// The replica's newest length as the server knows it.
    known_len: u64,
    /// The last head the server sent, as checked.
    head: Option<CheckedHead>,
    queued: VecDeque<Range<u64>>,
    in_flight: VecDeque<InFlight>,
    max_in_flight: usize,
    /// The next tail entry expected, once subscribed with a tail.
    tail: Option<u64>,
    subscribed: bool,
}

impl ReaderSession {
    /// A session for `replica`, with its `Hello` queued. A replica that holds fork
    /// evidence for its log starts closed ([`CloseReason::Forked`]).
    pub fn new<S: Storage>(replica: &Replica<S>) -> Self {
        let log_id = replica.log_id();
        let known_len = replica.len();
        let mut session = Self {
            log_id,
            decoder: FrameDecoder::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            state: State::AwaitHello,
            known_len,
            head: None,
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            max_in_flight: DEFAULT_IN_FLIGHT,
            tail: None,
            subscribed: false,
        };
        session.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Reader,
            log_id,
            length: known_len,
        });
        if replica.is_forked() {
            session.close_with(CloseReason::Forked);
        }
        session
    }

    /// Sets how many wants may be in flight (at least 1; 64 by default).
    pub fn set_max_in_flight(&mut self, n: usize) {
        self.max_in_flight = n.max(1);
        self.flush_wants();
    }

    /// Asks for entries `range` (nothing for an empty range). The server answers each want
    /// in order with `Entries` batches and `Refuse`s that cover it exactly.
    pub fn want(&mut self, range: Range<u64>) {
        if range.start < range.end && !self.is_closed() {
            self.queued.push_back(range);
            self.flush_wants();
        }
    }

    /// Asks the server to push every new head from now on, and with `tail`, every entry
    /// from that index on as appends land. Only the first call counts.
    pub fn subscribe(&mut self, tail: Option<u64>) {
        if self.subscribed || self.is_closed() {
            return;
        }
        self.subscribed = true;
        self.tail = tail;
        self.send(&Frame::Subscribe { tail });
    }

    /// Ends the session cleanly: a `Close` frame is queued.
    pub fn close(&mut self) {
        if !self.is_closed() {
            self.close_with(CloseReason::Done);
        }
    }

    /// Takes bytes received from the server, checking and storing what they complete.
    pub fn handle_input<S: Storage>(&mut self, bytes: &[u8], replica: &mut Replica<S>) {
        if self.is_closed() {
            return;
        }
        self.decoder.push(bytes);
        while !self.is_closed() {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => self.on_frame(frame, replica),
                Ok(None) => break,
                Err(e) => self.close_with(CloseReason::from_frame_error(e)),
            }
        }
    }

    /// The stream from the server ended. Unless the session was closed, this closes it
    /// ([`CloseReason::Truncated`]).
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            let buffered = self.decoder.buffered();
            self.close_with(CloseReason::Truncated { buffered });
        }
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ReaderEvent> {
        self.events.pop_front()
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&CloseReason> {
        match &self.state {
            State::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// True when no want is waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.in_flight.is_empty()
    }

    /// The last head the server sent, as checked against the replica.
    pub fn server_head(&self) -> Option<&SignedTreeHead> {
        self.head.as_ref().map(CheckedHead::head)
    }

    fn send(&mut self, frame: &Frame) {
        self.out.push_back(frame.encode());
    }

    fn flush_wants(&mut self) {
        while self.in_flight.len() < self.max_in_flight && !self.is_closed() {
            let Some(range) = self.queued.pop_front() else {
                break;
            };
            self.send(&Frame::Want {
                start: range.start,
                end: range.end,
            });
            self.in_flight.push_back(InFlight {
                next: range.start,
                range,
            });
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        if !matches!(reason, CloseReason::Remote { .. }) {
            self.send(&Frame::Close {
                code: reason.code(),
                detail: reason.to_string(),
            });
        }
        self.state = State::Closed(reason.clone());
        self.events.push_back(ReaderEvent::Closed(reason));
    }

    fn out_of_order(&mut self, detail: impl Into<String>) {
        self.close_with(CloseReason::OutOfOrder {
            detail: detail.into(),
        });
    }

    fn on_frame<S: Storage>(&mut self, frame: Frame, replica: &mut Replica<S>) {
        if let Frame::Close { code, detail } = frame {
            self.close_with(CloseReason::Remote { code, detail });
            return;
        }
        if matches!(self.state, State::AwaitHello) {
            match frame {
                Frame::Hello { role, log_id, .. } => {
                    if role != Role::Server {
                        return self.out_of_order("the peer is not a server");
                    }
                    if log_id != self.log_id {
                        return self.close_with(CloseReason::WrongLog {
                            expected: self.log_id,
                            found: log_id,
                        });
                    }
                    self.state = State::Open;
                }
                other => self.out_of_order(format!("{} before hello", other.name())),
            }
            return;
        }
        match frame {
            Frame::Head { head, proof } => self.on_head(head, proof, replica),
            Frame::Entries {
                tail,
                entries,
                proof,
            } => self.on_entries(tail, entries, proof, replica),
            Frame::Refuse {
                tail,
                start,
                end,
                reason,
            } => {
                if !self.expect(tail, start, end) {
                    return;
                }
                self.events.push_back(ReaderEvent::Refused {
                    range: start..end,
                    reason,
                    tail,
                });
                self.advance(tail, end);
            }
            other => self.out_of_order(format!("{} from a server", other.name())),
        }
    }

    fn on_head<S: Storage>(
        &mut self,
        head: SignedTreeHead,
        proof: Option<RangeProof>,
        replica: &mut Replica<S>,
    ) {
        let found = replica.len();
        if found != self.known_len {
            return self.close_with(CloseReason::ReplicaChanged {
                expected: self.known_len,
                found,
            });
        }
        match replica.check_head(&head, proof.as_ref()) {
            Ok(checked) => {
                match checked.kind() {
                    HeadKind::Newer => {
                        self.known_len = head.head.length;
                        self.events.push_back(ReaderEvent::Head(head));
                    }
                    HeadKind::Same | HeadKind::Older => {}
                }
                self.head = Some(checked);
            }
            Err(e) => self.close_with(CloseReason::from_log_error(e)),
        }
    }

    /// Checks that `start..end` is what the server owes next (of the oldest want, or of
    /// the tail); closes the session if not.
    fn expect(&mut self, tail: bool, start: u64, end: u64) -> bool {
        let ok = if tail {
            self.tail == Some(start)
        } else {
            self.in_flight
                .front()
                .is_some_and(|w| w.next == start && end <= w.range.end)
        };
        if !ok {
            self.out_of_order(format!(
                "{start}..{end} is not the next range owed{}",
                if tail { " on the tail" } else { "" }
            ));
        }
        ok
    }

    /// Moves past `end` on the tail or the oldest want.
    fn advance(&mut self, tail: bool, end: u64) {
        if tail {
            self.tail = Some(end);
            return;
        }
        if let Some(w) = self.in_flight.front_mut() {
            w.next = end;
            if w.next == w.range.end {
                let range = w.range.clone();
                self.in_flight.pop_front();
                self.events.push_back(ReaderEvent::WantDone(range));
                self.flush_wants();
            }
        }
    }

    fn on_entries<S: Storage>(
        &mut self,
        tail: bool,
        entries: Vec<Vec<u8>>,
        proof: RangeProof,
        replica: &mut Replica<S>,
    ) {
        let Some(head) = self.head else {
            return self.out_of_order("entries before any head");
        };
        if proof.tree_size != head.head().head.length {
            return self.out_of_order(format!(
                "entries proven against a tree of {} entries, the last head sent has {}",
                proof.tree_size,
                head.head().head.length
            ));
        }
        let (start, end) = (proof.start, proof.end);
        if !self.expect(tail, start, end) {
            return;
        }
        match replica.add_entries(&head, start, entries, &proof) {
            Ok(range) => {
                self.events.push_back(ReaderEvent::Stored { range, tail });
                self.advance(tail, end);
            }
            Err(e) => self.close_with(CloseReason::from_log_error(e)),
        }
    }
}
