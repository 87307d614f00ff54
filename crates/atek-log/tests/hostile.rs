//! Hostile peers: a server that sends wrong entries, wrong proofs, forged, foreign or
//! forked heads, oversized, garbage or out-of-order frames, or cuts the stream; a reader
//! that floods or babbles. Each is refused, the replica stores nothing from the bad
//! message, and the session ends with a reason (sent to the peer in a `Close` frame).
#![allow(clippy::unwrap_used)]
// Held ranges are compared as `Vec<Range<u64>>`, often of one range.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::ops::Range;

use atek_core::SecretKey;
use atek_log::sync::{
    CloseReason, Frame, FrameDecoder, MAX_FRAME, MAX_QUEUED_WANTS, PROTOCOL_VERSION, ReaderEvent,
    ReaderSession, ReasonCode, Role, ServerEvent, ServerSession,
};
use atek_log::{
    FileStorage, Hash, Log, LogError, MemoryStorage, Replica, SignedTreeHead, Storage, TreeHead,
};
use common::key;
use common::pipe::Link;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn entry(tag: u8, i: u64) -> Vec<u8> {
    let mut e = vec![tag; 40];
    e.extend_from_slice(&i.to_be_bytes());
    e
}

/// A memory log of `key` holding `n` entries tagged `tag`.
fn log_of(rt: &tokio::runtime::Runtime, key: SecretKey, tag: u8, n: u64) -> Log {
    let log = Log::open_memory(key).unwrap();
    let batch: Vec<Vec<u8>> = (0..n).map(|i| entry(tag, i)).collect();
    rt.block_on(log.append_batch(batch)).unwrap();
    log
}

/// The frames an honest server on `log` sends a reader that holds `length` entries and
/// wants `wants`, in order (its hello first).
fn honest_frames(log: &Log, length: u64, wants: &[Range<u64>], batch: usize) -> Vec<Frame> {
    let mut server = ServerSession::new(log.id());
    server.set_batch_bytes(batch);
    let mut input = Frame::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reader,
        log_id: log.id(),
        length,
    }
    .encode();
    for w in wants {
        input.extend(
            Frame::Want {
                start: w.start,
                end: w.end,
            }
            .encode(),
        );
    }
    server.handle_input(&input);
    let source = log.source();
    let mut decoder = FrameDecoder::new();
    while let Some(bytes) = server.poll_transmit(&source) {
        decoder.push(&bytes);
    }
    let mut frames = Vec::new();
    while let Some(f) = decoder.next_frame().unwrap() {
        frames.push(f);
    }
    frames
}

/// What a replica holds, to show that a refused message left no trace.
#[derive(Debug, PartialEq)]
struct Snapshot {
    held: Vec<Range<u64>>,
    head: Option<SignedTreeHead>,
    groups: u64,
    forks: usize,
}

fn snapshot<S: Storage>(r: &Replica<S>) -> Snapshot {
    Snapshot {
        held: r.held(),
        head: r.head(),
        groups: r.storage().stats().groups,
        forks: r.forks().unwrap().len(),
    }
}

/// A reader session fed frames by hand.
struct Probe<S: Storage> {
    replica: Replica<S>,
    reader: ReaderSession,
    sent: Vec<Frame>,
    events: Vec<ReaderEvent>,
}

impl<S: Storage> Probe<S> {
    fn new(replica: Replica<S>, wants: &[Range<u64>]) -> Self {
        let mut reader = ReaderSession::new(&replica);
        for w in wants {
            reader.want(w.clone());
        }
        let mut probe = Self {
            replica,
            reader,
            sent: Vec::new(),
            events: Vec::new(),
        };
        probe.pump();
        probe
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        self.reader.handle_input(bytes, &mut self.replica);
        self.pump();
    }

    fn feed(&mut self, frames: &[Frame]) {
        for f in frames {
            self.feed_bytes(&f.encode());
        }
    }

    fn pump(&mut self) {
        let mut d = FrameDecoder::new();
        while let Some(bytes) = self.reader.poll_transmit() {
            d.push(&bytes);
        }
        while let Ok(Some(f)) = d.next_frame() {
            self.sent.push(f);
        }
        while let Some(e) = self.reader.poll_event() {
            self.events.push(e);
        }
    }

    fn closed(&self) -> CloseReason {
        self.reader
            .closed()
            .cloned()
            .expect("the session is closed")
    }

    /// The code of the `Close` frame the reader sent.
    fn sent_close(&self) -> ReasonCode {
        match self.sent.last() {
            Some(Frame::Close { code, .. }) => *code,
            other => panic!("no close frame sent, last was {other:?}"),
        }
    }
}

/// A replica that already holds `0..n` of `log` (and its head).
fn synced(log: &Log, n: u64) -> Replica<MemoryStorage> {
    let mut r = Replica::memory(log.id());
    let mut link = Link::new(&r);
    link.reader.want(0..n);
    link.settle(&log.source(), &mut r);
    assert_eq!(r.held(), vec![0..n]);
    r
}

#[test]
fn wrong_entries_are_refused_and_nothing_is_stored() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 20);
    let frames = honest_frames(&log, 0, &[0..20], 200);
    assert!(matches!(frames[1], Frame::Head { .. }));
    assert!(matches!(frames[2], Frame::Entries { .. }));

    // One byte of one entry changed.
    let mut bad = frames.clone();
    if let Frame::Entries { entries, .. } = &mut bad[2] {
        entries[1][0] ^= 1;
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[0..20]);
    p.feed(&bad[..2]);
    let before = snapshot(&p.replica);
    assert!(before.head.is_some(), "the head itself was fine");
    p.feed(&bad[2..3]);
    assert!(matches!(p.closed(), CloseReason::BadProof { .. }));
    assert_eq!(p.sent_close(), ReasonCode::BadProof);
    assert_eq!(snapshot(&p.replica), before);

    // An entry left out (the proof is for one more).
    let mut bad = frames.clone();
    if let Frame::Entries { entries, proof, .. } = &mut bad[2] {
        entries.pop();
        proof.end -= 1;
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[0..20]);
    p.feed(&bad[..2]);
    let before = snapshot(&p.replica);
    p.feed(&bad[2..3]);
    assert!(matches!(p.closed(), CloseReason::BadProof { .. }));
    assert_eq!(snapshot(&p.replica), before);

    // Entries of another log with the same indexes.
    let other = log_of(&rt, key(1), 2, 20);
    let theirs = honest_frames(&other, 0, &[0..20], 200);
    let mut bad = frames.clone();
    if let (Frame::Entries { entries, .. }, Frame::Entries { entries: e2, .. }) =
        (&mut bad[2], &theirs[2])
    {
        *entries = e2.clone();
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[0..20]);
    p.feed(&bad[..3]);
    assert!(matches!(p.closed(), CloseReason::BadProof { .. }));
    assert_eq!(p.replica.held(), Vec::<Range<u64>>::new());

    // The honest stream stores everything.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..20]);
    p.feed(&frames);
    assert_eq!(p.reader.closed(), None);
    assert_eq!(p.replica.held(), vec![0..20]);
}

#[test]
fn wrong_proofs_are_refused() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 20);
    let frames = honest_frames(&log, 0, &[3..20], 200);

    // A sibling of a batch changed, removed, or one added.
    for tamper in 0..3 {
        let mut bad = frames.clone();
        if let Frame::Entries { proof, .. } = &mut bad[2] {
            match tamper {
                0 => proof.siblings[0] = Hash::leaf(b"nope"),
                1 => {
                    proof.siblings.pop();
                }
                _ => proof.siblings.push(Hash::leaf(b"extra")),
            }
        }
        let mut p = Probe::new(Replica::memory(log.id()), &[3..20]);
        p.feed(&bad[..2]);
        let before = snapshot(&p.replica);
        p.feed(&bad[2..3]);
        assert!(
            matches!(p.closed(), CloseReason::BadProof { .. }),
            "{tamper}"
        );
        assert_eq!(snapshot(&p.replica), before);
    }

    // The head's own proof changed, or missing: the head is not accepted.
    let mut bad = frames.clone();
    if let Frame::Head {
        proof: Some(proof), ..
    } = &mut bad[1]
    {
        proof.siblings[0] = Hash::leaf(b"nope");
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&bad[..2]);
    assert!(matches!(p.closed(), CloseReason::BadProof { .. }));
    assert_eq!(p.replica.head(), None);
    let mut bad = frames.clone();
    if let Frame::Head { proof, .. } = &mut bad[1] {
        *proof = None;
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&bad[..2]);
    assert!(matches!(p.closed(), CloseReason::BadProof { .. }));
    assert_eq!(snapshot(&p.replica).groups, 0);
}

#[test]
fn forged_and_foreign_heads_are_refused() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 8);
    let frames = honest_frames(&log, 0, &[], 200);

    // A head whose root was changed after signing.
    let mut bad = frames.clone();
    if let Frame::Head { head, .. } = &mut bad[1] {
        head.head.root = Hash::leaf(b"forged");
    }
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&bad);
    assert_eq!(p.closed(), CloseReason::ForgedHead { length: 8 });
    assert_eq!(p.sent_close(), ReasonCode::ForgedHead);
    assert_eq!(snapshot(&p.replica).groups, 0);

    // An empty head with a root other than the empty tree's, validly signed.
    let bogus = TreeHead {
        log_id: log.id(),
        length: 0,
        root: Hash::leaf(b"x"),
    }
    .sign(&key(1))
    .unwrap();
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&[
        frames[0].clone(),
        Frame::Head {
            head: bogus,
            proof: None,
        },
    ]);
    assert_eq!(p.closed(), CloseReason::ForgedHead { length: 0 });

    // A head of another log, validly signed by it.
    let other = log_of(&rt, key(9), 1, 8);
    let theirs = honest_frames(&other, 0, &[], 200);
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&[frames[0].clone(), theirs[1].clone()]);
    assert_eq!(
        p.closed(),
        CloseReason::WrongLog {
            expected: log.id(),
            found: other.id()
        }
    );
    assert_eq!(snapshot(&p.replica).groups, 0);

    // A server of another log says so in its hello.
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&theirs[..1]);
    assert!(matches!(p.closed(), CloseReason::WrongLog { .. }));
    assert_eq!(p.sent_close(), ReasonCode::WrongLog);
}

/// The writer's key signs a second history: `forked` has other entries from `at` on.
fn fork_of(rt: &tokio::runtime::Runtime, at: u64, n: u64) -> Log {
    let log = Log::open_memory(key(1)).unwrap();
    let batch: Vec<Vec<u8>> = (0..n)
        .map(|i| entry(if i < at { 1 } else { 2 }, i))
        .collect();
    rt.block_on(log.append_batch(batch)).unwrap();
    log
}

#[test]
fn a_fork_is_kept_as_evidence_reported_and_never_merged() {
    let rt = runtime();
    // (length the replica holds, fork point, length of the second history)
    for (held, at, theirs) in [
        (5, 2, 8),
        (4, 0, 7),
        (4, 3, 9),
        (5, 3, 5),
        (8, 1, 3),
        (6, 4, 6),
    ] {
        let log = log_of(&rt, key(1), 1, held);
        let forked = fork_of(&rt, at, theirs);
        let replica = synced(&log, held);
        let before = snapshot(&replica);
        let mut p = Probe::new(replica, &[0..theirs]);
        p.feed(&honest_frames(&forked, held, &[0..theirs], 200));
        let CloseReason::Fork(evidence) = p.closed() else {
            panic!("{held} {at} {theirs}: {:?}", p.closed());
        };
        assert_eq!(p.sent_close(), ReasonCode::Fork);
        evidence.verify().unwrap();
        let lengths = [evidence.a.head.length, evidence.b.head.length];
        assert_eq!(lengths, [held.min(theirs), held.max(theirs)]);
        // Kept by the replica; nothing of the second history merged.
        let after = snapshot(&p.replica);
        assert_eq!(after.forks, 1);
        assert_eq!((after.head, &after.held), (before.head, &before.held));
        assert!(p.replica.is_forked());
        for i in 0..held {
            assert_eq!(p.replica.get(i).unwrap(), entry(1, i));
        }
        // Nothing more is accepted from this log, even the true history.
        let mut again = Probe::new(p.replica, &[0..held]);
        assert_eq!(again.closed(), CloseReason::Forked);
        assert_eq!(again.sent_close(), ReasonCode::Forked);
        let grown = log_of(&rt, key(1), 1, held + 3);
        let f = honest_frames(&grown, held, &[], 200);
        again.feed(&f);
        assert_eq!(snapshot(&again.replica).head, before.head);
    }
}

#[test]
fn fork_evidence_survives_a_restart() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let log = log_of(&rt, key(1), 1, 6);
    let mut r = Replica::create(&dir, log.id()).unwrap();
    let mut link = Link::new(&r);
    link.reader.want(0..6);
    link.settle(&log.source(), &mut r);
    let forked = fork_of(&rt, 3, 10);
    let mut link = Link::new(&r);
    link.settle(&forked.source(), &mut r);
    assert!(matches!(link.reader_closed(), Some(CloseReason::Fork(_))));
    drop(r);
    let r: Replica<FileStorage> = Replica::open(&dir, log.id()).unwrap();
    assert!(r.is_forked());
    assert_eq!(r.forks().unwrap().len(), 1);
    assert_eq!(r.head(), Some(log.head()));
    let mut r = r;
    assert!(matches!(
        r.check_head(&log.head(), None),
        Err(LogError::Forked { .. })
    ));
}

#[test]
fn an_older_server_head_is_checked_or_refused() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 12);
    // A replica holding all 12 entries checks a head of 7 from its own nodes.
    let old = log_of(&rt, key(1), 1, 7);
    let mut p = Probe::new(synced(&log, 12), &[2..5]);
    p.feed(&honest_frames(&old, 12, &[2..5], 200));
    assert_eq!(p.reader.closed(), None);
    assert!(p.events.contains(&ReaderEvent::WantDone(2..5)));
    assert_eq!(p.replica.head(), Some(log.head()));

    // A replica that holds only the head of 12 cannot: the server is behind.
    let mut bare = Replica::memory(log.id());
    let mut link = Link::new(&bare);
    link.settle(&log.source(), &mut bare);
    assert_eq!(bare.head(), Some(log.head()));
    let mut p = Probe::new(bare, &[]);
    p.feed(&honest_frames(&old, 12, &[], 200));
    assert_eq!(
        p.closed(),
        CloseReason::PeerBehind {
            theirs: 7,
            ours: 12
        }
    );
    assert_eq!(p.sent_close(), ReasonCode::PeerBehind);
}

#[test]
fn oversized_garbage_and_truncated_streams_end_the_session() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 30);
    let frames = honest_frames(&log, 0, &[0..30], 100);

    // A length prefix over the limit is refused as soon as it is read.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&frames[..2]);
    let before = snapshot(&p.replica);
    p.feed_bytes(&((MAX_FRAME + 1) as u32).to_be_bytes());
    assert_eq!(
        p.closed(),
        CloseReason::Oversized {
            size: MAX_FRAME as u64 + 1,
            max: MAX_FRAME as u64
        }
    );
    assert_eq!(p.sent_close(), ReasonCode::Oversized);
    assert_eq!(snapshot(&p.replica), before);

    // Unknown frame types, empty frames, bodies that do not parse, trailing bytes.
    let head_bytes = frames[1].encode();
    let mut trailing = head_bytes.clone();
    trailing.push(0);
    let len = (trailing.len() - 4) as u32;
    trailing[..4].copy_from_slice(&len.to_be_bytes());
    for garbage in [
        vec![0, 0, 0, 3, 0x55, 1, 2],
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 2, 0x11, 7],
        trailing,
    ] {
        let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
        p.feed(&frames[..1]);
        p.feed_bytes(&garbage);
        assert!(
            matches!(p.closed(), CloseReason::Garbage { .. }),
            "{garbage:?}: {:?}",
            p.closed()
        );
        assert_eq!(p.sent_close(), ReasonCode::Garbage);
        assert_eq!(snapshot(&p.replica).groups, 0);
    }

    // Random bytes instead of a hello.
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed_bytes(&[0, 0, 0, 9, 1, b'X', b'X', b'X', b'X', 1, 0, 0, 0]);
    assert!(matches!(p.closed(), CloseReason::Garbage { .. }));

    // The stream ends inside a frame: what came whole is kept, the partial batch is not.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    let mut bytes = Vec::new();
    for f in &frames[..4] {
        bytes.extend(f.encode());
    }
    p.feed_bytes(&bytes[..bytes.len() - 10]);
    let before = snapshot(&p.replica);
    p.reader.handle_eof();
    p.pump();
    let Frame::Entries { proof, .. } = &frames[2] else {
        panic!()
    };
    assert_eq!(before.held, vec![0..proof.end]);
    assert!(matches!(p.closed(), CloseReason::Truncated { buffered } if buffered > 0));
    assert_eq!(snapshot(&p.replica), before);
}

#[test]
fn frames_out_of_order_end_the_session() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 30);
    let frames = honest_frames(&log, 0, &[0..30], 100);
    let n = frames.len();
    let out_of_order = |p: &Probe<MemoryStorage>| {
        assert!(
            matches!(p.closed(), CloseReason::OutOfOrder { .. }),
            "{:?}",
            p.closed()
        );
        assert_eq!(p.sent_close(), ReasonCode::OutOfOrder);
    };

    // A head before the hello.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&frames[1..2]);
    out_of_order(&p);
    assert_eq!(snapshot(&p.replica).groups, 0);

    // Entries before any head.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&[frames[0].clone(), frames[2].clone()]);
    out_of_order(&p);
    assert_eq!(snapshot(&p.replica).groups, 0);

    // A batch skipped: the next one is not what is owed.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&frames[..2]);
    let before = snapshot(&p.replica);
    p.feed(&frames[3..4]);
    out_of_order(&p);
    assert_eq!(snapshot(&p.replica), before);

    // Entries nobody asked for.
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&frames[..3]);
    out_of_order(&p);
    assert_eq!(p.replica.held(), Vec::<Range<u64>>::new());

    // A second hello; a reader's frame from the server.
    for extra in [
        frames[0].clone(),
        Frame::Want { start: 0, end: 1 },
        Frame::Subscribe { tail: None },
    ] {
        let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
        p.feed(&frames[..2]);
        p.feed(&[extra]);
        out_of_order(&p);
    }

    // A server that says it is a reader.
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&[Frame::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reader,
        log_id: log.id(),
        length: 0,
    }]);
    out_of_order(&p);

    // Entries proven against a tree other than the last head sent.
    let longer = log_of(&rt, key(1), 1, 40);
    let other = honest_frames(&longer, 0, &[0..30], 100);
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&frames[..2]);
    p.feed(&other[2..3]);
    out_of_order(&p);

    // The whole honest stream, for contrast.
    let mut p = Probe::new(Replica::memory(log.id()), &[0..30]);
    p.feed(&frames[..n]);
    assert_eq!(p.reader.closed(), None);
    assert_eq!(p.replica.held(), vec![0..30]);
}

#[test]
fn an_unknown_version_is_refused_with_a_reason() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 3);
    let hello = Frame::Hello {
        version: 2,
        role: Role::Server,
        log_id: log.id(),
        length: 0,
    };
    let mut p = Probe::new(Replica::memory(log.id()), &[]);
    p.feed(&[hello]);
    assert_eq!(
        p.closed(),
        CloseReason::UnsupportedVersion {
            theirs: 2,
            ours: PROTOCOL_VERSION
        }
    );
    assert_eq!(p.sent_close(), ReasonCode::UnsupportedVersion);
    // The first bytes of a hello: length, type, magic, then the version.
    let bytes = Frame::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reader,
        log_id: log.id(),
        length: 0,
    }
    .encode();
    assert_eq!(&bytes[4..9], b"\x01ALSY");
    assert_eq!(bytes[9], PROTOCOL_VERSION);

    // The server side refuses it too.
    let mut server = ServerSession::new(log.id());
    let mut bytes = bytes;
    bytes[9] = 7;
    server.handle_input(&bytes);
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::Closed(CloseReason::UnsupportedVersion {
            theirs: 7,
            ours: PROTOCOL_VERSION
        }))
    );
}

/// A reader that misbehaves: the server closes with a reason and stops serving.
#[test]
fn a_hostile_reader_is_cut_off() {
    let rt = runtime();
    let log = log_of(&rt, key(1), 1, 10);
    let source = log.source();
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reader,
        log_id: log.id(),
        length: 0,
    }
    .encode();
    let closed = |server: &mut ServerSession| -> CloseReason {
        let mut last = None;
        while let Some(bytes) = server.poll_transmit(&source) {
            last = Some(bytes);
        }
        let mut d = FrameDecoder::new();
        d.push(&last.unwrap());
        assert!(matches!(d.next_frame(), Ok(Some(Frame::Close { .. }))));
        match server.poll_event() {
            Some(ServerEvent::Closed(reason)) => reason,
            None => panic!("not closed"),
        }
    };

    let mut s = ServerSession::new(log.id());
    s.handle_input(&hello);
    s.handle_input(&((MAX_FRAME as u32) + 1).to_be_bytes());
    assert!(matches!(closed(&mut s), CloseReason::Oversized { .. }));

    let mut s = ServerSession::new(log.id());
    s.handle_input(&hello);
    s.handle_input(&[0, 0, 0, 2, 0xee, 0]);
    assert!(matches!(closed(&mut s), CloseReason::Garbage { .. }));

    let mut s = ServerSession::new(log.id());
    s.handle_input(&hello);
    let head = honest_frames(&log, 0, &[], 100).remove(1);
    s.handle_input(&head.encode());
    assert!(matches!(closed(&mut s), CloseReason::OutOfOrder { .. }));

    let mut s = ServerSession::new(log.id());
    s.handle_input(&Frame::Want { start: 0, end: 1 }.encode());
    assert!(matches!(closed(&mut s), CloseReason::OutOfOrder { .. }));

    let mut s = ServerSession::new(log.id());
    s.handle_input(&hello);
    let want = Frame::Want { start: 0, end: 1 }.encode();
    for _ in 0..=MAX_QUEUED_WANTS {
        s.handle_input(&want);
    }
    assert_eq!(
        closed(&mut s),
        CloseReason::TooManyWants {
            max: MAX_QUEUED_WANTS
        }
    );

    let mut s = ServerSession::new(log.id());
    s.handle_input(&hello[..hello.len() - 3]);
    s.handle_eof();
    assert!(matches!(
        s.poll_event(),
        Some(ServerEvent::Closed(CloseReason::Truncated { buffered })) if buffered > 0
    ));
}
