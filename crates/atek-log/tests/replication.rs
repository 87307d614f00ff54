//! Replication between stores over an in-memory pipe: random interleavings of appends,
//! wants (sparse), subscriptions and partial reads converge; a replica restarts mid-sync
//! and resumes; a replica serves another; the live tail follows appends.
#![allow(clippy::unwrap_used)]
// Held ranges are compared as `Vec<Range<u64>>`, often of one range.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use atek_log::sync::{CloseReason, ReaderEvent, RefuseReason};
use atek_log::{FileStorage, Log, LogError, Replica, SignedTreeHead, Storage};
use common::key;
use common::pipe::Link;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The writer's side of a test: a log and what it should hold.
struct Writer {
    rt: tokio::runtime::Runtime,
    log: Log,
    model: Vec<Vec<u8>>,
    /// Every head the log signed, by length.
    heads: BTreeMap<u64, SignedTreeHead>,
}

impl Writer {
    fn new(seed: u8) -> Self {
        let rt = runtime();
        let log = Log::open_memory(key(seed)).unwrap();
        let mut heads = BTreeMap::new();
        heads.insert(0, log.head());
        Self {
            rt,
            log,
            model: Vec::new(),
            heads,
        }
    }

    fn append(&mut self, batch: Vec<Vec<u8>>) {
        let r = self
            .rt
            .block_on(self.log.append_batch(batch.clone()))
            .unwrap();
        assert_eq!(r.start, self.model.len() as u64);
        self.model.extend(batch);
        let head = self.log.head();
        self.heads.insert(head.head.length, head);
    }

    fn len(&self) -> u64 {
        self.model.len() as u64
    }
}

/// Everything a replica holds is the writer's: its head is one the writer signed, and
/// every entry it holds is the writer's entry, provable against its head.
fn check_replica<S: Storage>(replica: &Replica<S>, w: &Writer) {
    let Some(head) = replica.head() else {
        assert!(replica.held().is_empty());
        return;
    };
    assert_eq!(
        Some(&head),
        w.heads.get(&head.head.length),
        "a head the writer signed"
    );
    for r in replica.held() {
        assert!(r.end <= head.head.length, "held {r:?} past the head");
        for i in r {
            assert_eq!(replica.get(i).unwrap(), w.model[i as usize], "entry {i}");
        }
    }
    // The replica proves what it holds against its own head.
    if let Some(r) = replica.held().first() {
        let p = replica.inclusion_proof(r.start, head.head.length).unwrap();
        p.verify(&w.model[r.start as usize], &head.head).unwrap();
    }
}

/// Asks for everything missing and settles: afterwards the replica holds the whole log.
fn converge<S: Storage>(link: &mut Link, w: &Writer, replica: &mut Replica<S>) {
    let source = w.log.source();
    link.settle(&source, replica);
    for gap in replica.missing(0..w.len()) {
        link.reader.want(gap);
    }
    link.settle(&source, replica);
    assert_eq!(link.reader_closed(), None, "events: {:?}", link.events);
    let all: Vec<Range<u64>> = if w.len() == 0 {
        vec![]
    } else {
        vec![0..w.len()]
    };
    assert_eq!(replica.held(), all);
    if w.len() > 0 {
        assert_eq!(replica.head(), Some(w.log.head()));
    }
    check_replica(replica, w);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Want(f64, f64),
    Subscribe(Option<f64>),
    ToServer(usize),
    ServerOut(usize),
    ToReader(usize),
    /// Restart the replica, closing it first (a checkpoint) or not (as after a crash).
    Restart(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..8)
            .prop_map(Op::Append),
        3 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| Op::Want(a, b)),
        1 => prop::option::of(0.0f64..1.0).prop_map(Op::Subscribe),
        3 => (1usize..400).prop_map(Op::ToServer),
        4 => (1usize..8).prop_map(Op::ServerOut),
        5 => (1usize..5000).prop_map(Op::ToReader),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

/// Runs `ops` between a memory writer and a replica (on file storage in `dir`, or in
/// memory), then converges.
fn run(ops: Vec<Op>, dir: Option<&Path>) {
    let mut w = Writer::new(1);
    let log_id = w.log.id();
    let store: Box<dyn Storage> = match dir {
        Some(d) => Box::new(FileStorage::create(d).unwrap()),
        None => Box::new(atek_log::MemoryStorage::new()),
    };
    let mut replica = Replica::with_storage(store, log_id).unwrap();
    let mut link = Link::new(&replica);
    // Small batches, so that wants take several frames.
    link.server.set_batch_bytes(300);
    let mut subscribed = false;
    for op in ops {
        let source = w.log.source();
        match op {
            Op::Append(batch) => w.append(batch),
            Op::Want(a, b) => {
                // Sparse ranges, sometimes past the end.
                let n = w.len() + 3;
                let (a, b) = ((a * n as f64) as u64, (b * n as f64) as u64);
                link.reader.want(a.min(b)..a.max(b));
            }
            Op::Subscribe(tail) => {
                if !subscribed {
                    subscribed = true;
                    link.reader
                        .subscribe(tail.map(|f| (f * w.len() as f64) as u64));
                }
            }
            Op::ToServer(n) => {
                link.deliver_to_server(n);
            }
            Op::ServerOut(n) => {
                link.server_out(&source, n);
            }
            Op::ToReader(n) => {
                link.deliver_to_reader(n, &mut replica);
            }
            Op::Restart(clean) => {
                // The session ends mid-stream; the replica (re)opens and a new one starts.
                if let Some(d) = dir {
                    let held = replica.held();
                    if clean {
                        drop(replica.close().unwrap());
                    } else {
                        drop(replica);
                    }
                    replica = Replica::with_storage(
                        Box::new(FileStorage::open(d).unwrap()) as Box<dyn Storage>,
                        log_id,
                    )
                    .unwrap();
                    assert_eq!(replica.held(), held);
                }
                link = Link::new(&replica);
                link.server.set_batch_bytes(300);
                subscribed = false;
            }
        }
        // What the reader has to say goes into the pipe at once, as a driver would do;
        // when it crosses is up to the ops.
        link.reader_out();
        assert_eq!(link.reader_closed(), None, "events: {:?}", link.events);
        check_replica(&replica, &w);
    }
    converge(&mut link, &w, &mut replica);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_replica_converges(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, None);
    }

    #[test]
    fn file_replica_converges_across_restarts(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, Some(&dir.path().join("replica")));
    }
}

/// A replica serves a second replica what it holds; the rest is refused, and comes once the
/// first has it.
#[derive(Debug, Clone)]
enum ChainOp {
    Append(Vec<Vec<u8>>),
    WantA(f64, f64),
    WantB(f64, f64),
    SettleA,
    SettleB,
}

fn chain_op() -> impl Strategy<Value = ChainOp> {
    prop_oneof![
        3 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..10)
            .prop_map(ChainOp::Append),
        3 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| ChainOp::WantA(a, b)),
        3 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| ChainOp::WantB(a, b)),
        2 => Just(ChainOp::SettleA),
        2 => Just(ChainOp::SettleB),
    ]
}

fn scaled(a: f64, b: f64, n: u64) -> Range<u64> {
    let (a, b) = ((a * n as f64) as u64, (b * n as f64) as u64);
    a.min(b)..a.max(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_replica_serves_another(ops in prop::collection::vec(chain_op(), 1..60)) {
        let mut w = Writer::new(2);
        let mut a = Replica::memory(w.log.id());
        let mut b = Replica::memory(w.log.id());
        let mut wa = Link::new(&a);
        let mut ab = Link::new(&b);
        for op in ops {
            match op {
                ChainOp::Append(batch) => w.append(batch),
                ChainOp::WantA(x, y) => wa.reader.want(scaled(x, y, w.len() + 1)),
                ChainOp::WantB(x, y) => ab.reader.want(scaled(x, y, w.len() + 1)),
                ChainOp::SettleA => wa.settle(&w.log.source(), &mut a),
                ChainOp::SettleB => {
                    // The server side reads from `a`; the reader side writes to `b`.
                    let a_ref = &a;
                    ab.settle(&a_ref, &mut b);
                }
            }
            prop_assert_eq!(wa.reader_closed(), None);
            prop_assert_eq!(ab.reader_closed(), None, "{:?}", ab.events);
            check_replica(&a, &w);
            check_replica(&b, &w);
            // `b` holds nothing that `a` did not hold.
            for r in b.held() {
                for i in r {
                    prop_assert!(a.holds(i));
                }
            }
        }
        converge(&mut wa, &w, &mut a);
        let all = if w.len() == 0 { vec![] } else { vec![0..w.len()] };
        for gap in b.missing(0..w.len()) {
            ab.reader.want(gap);
        }
        let a_ref = &a;
        ab.settle(&a_ref, &mut b);
        prop_assert_eq!(b.held(), all);
        check_replica(&b, &w);
    }
}

#[test]
fn wants_past_the_head_and_not_held_are_refused() {
    let mut w = Writer::new(3);
    w.append((0..10u8).map(|i| vec![i]).collect());
    let mut a = Replica::memory(w.log.id());
    let mut link = Link::new(&a);
    link.reader.want(2..4);
    link.reader.want(8..15);
    link.settle(&w.log.source(), &mut a);
    assert_eq!(a.held(), vec![2..4, 8..10]);
    assert!(link.events.contains(&ReaderEvent::Refused {
        range: 10..15,
        reason: RefuseReason::BeyondHead,
        tail: false
    }));
    assert!(link.events.contains(&ReaderEvent::WantDone(8..15)));
    assert!(matches!(a.get(5), Err(LogError::NotHeld { index: 5, .. })));

    // A second replica asks `a` for more than it holds.
    let mut b = Replica::memory(w.log.id());
    let mut link = Link::new(&b);
    link.reader.want(0..10);
    let a_ref = &a;
    link.settle(&a_ref, &mut b);
    assert_eq!(b.held(), vec![2..4, 8..10]);
    let refused: Vec<Range<u64>> = link
        .events
        .iter()
        .filter_map(|e| match e {
            ReaderEvent::Refused {
                range,
                reason: RefuseReason::NotHeld,
                ..
            } => Some(range.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![0..2, 4..8]);
}

#[test]
fn live_heads_and_tail_follow_appends() {
    let mut w = Writer::new(4);
    w.append(vec![b"a".to_vec(), b"b".to_vec()]);
    let mut r = Replica::memory(w.log.id());
    let mut link = Link::new(&r);
    link.reader.subscribe(Some(1));
    link.settle(&w.log.source(), &mut r);
    assert_eq!(r.held(), vec![1..2]);
    for i in 0..20u8 {
        w.append(vec![vec![i; 100]; (i % 3 + 1) as usize]);
        // What a driver does when `Log::watch` says the head changed.
        link.settle(&w.log.source(), &mut r);
        assert_eq!(r.head(), Some(w.log.head()));
        assert_eq!(r.held(), vec![1..w.len()]);
    }
    check_replica(&r, &w);
    let heads = link
        .events
        .iter()
        .filter(|e| matches!(e, ReaderEvent::Head(_)))
        .count();
    assert_eq!(heads, 21);

    // Heads only: no entries come with them.
    let mut h = Replica::memory(w.log.id());
    let mut link = Link::new(&h);
    link.reader.subscribe(None);
    link.settle(&w.log.source(), &mut h);
    w.append(vec![b"z".to_vec()]);
    link.settle(&w.log.source(), &mut h);
    assert_eq!(h.head(), Some(w.log.head()));
    assert!(h.held().is_empty());

    // A clean close reaches the other side.
    link.reader.close();
    link.settle(&w.log.source(), &mut h);
    assert_eq!(link.reader_closed(), Some(&CloseReason::Done));
    assert!(matches!(
        link.server_events.last(),
        Some(atek_log::sync::ServerEvent::Closed(
            CloseReason::Remote { .. }
        ))
    ));
}

#[test]
fn a_replica_restarted_mid_sync_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let mut w = Writer::new(5);
    for i in 0..40u32 {
        w.append(vec![vec![i as u8; 4000]; 5]);
    }
    let n = w.len();
    let source = w.log.source();
    let mut r = Replica::create(&dir, w.log.id()).unwrap();
    let mut link = Link::new(&r);
    link.server.set_batch_bytes(16 << 10);
    link.reader.want(0..n);
    // Part of the way: some batches arrive, then the process "dies" mid-frame.
    link.reader_out();
    link.deliver_to_server(usize::MAX);
    link.server_out(&source, 6);
    let sent = link.to_reader.len();
    link.deliver_to_reader(sent - 1000, &mut r);
    let held_before = r.held();
    assert!(
        !held_before.is_empty() && held_before != vec![0..n],
        "{held_before:?}"
    );
    drop(link);
    drop(r);

    let mut r = Replica::open(&dir, w.log.id()).unwrap();
    assert_eq!(r.held(), held_before);
    assert_eq!(r.head(), Some(w.log.head()));
    let mut link = Link::new(&r);
    for gap in r.missing(0..n) {
        link.reader.want(gap);
    }
    link.settle(&source, &mut r);
    assert_eq!(r.held(), vec![0..n]);
    check_replica(&r, &w);
    // Only the missing part crossed the second time.
    let stored: u64 = link
        .events
        .iter()
        .filter_map(|e| match e {
            ReaderEvent::Stored { range, .. } => Some(range.end - range.start),
            _ => None,
        })
        .sum();
    let before: u64 = held_before.iter().map(|r| r.end - r.start).sum();
    assert_eq!(stored, n - before);
    r.close().unwrap();
    let r = Replica::open(&dir, w.log.id()).unwrap();
    check_replica(&r, &w);
}

#[test]
fn a_file_log_serves_a_file_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = Log::create(tmp.path().join("log"), key(6)).unwrap();
    let mut model = Vec::new();
    for i in 0..30u32 {
        let batch: Vec<Vec<u8>> = (0..7)
            .map(|j| (i * 7 + j).to_be_bytes().repeat(50))
            .collect();
        rt.block_on(log.append_batch(batch.clone())).unwrap();
        model.extend(batch);
    }
    let mut r = Replica::create(tmp.path().join("replica"), log.id()).unwrap();
    let mut link = Link::new(&r);
    link.server.set_batch_bytes(5000);
    link.reader.want(0..model.len() as u64);
    link.settle(&log.source(), &mut r);
    assert_eq!(r.held(), vec![0..model.len() as u64]);
    for (i, e) in model.iter().enumerate() {
        assert_eq!(&r.get(i as u64).unwrap(), e);
    }
    // A closed log's source refuses to serve; the session ends with a reason.
    rt.block_on(log.close()).unwrap();
    let mut link = Link::new(&r);
    link.settle(&log.source(), &mut r);
    assert!(matches!(
        link.server_events.last(),
        Some(atek_log::sync::ServerEvent::Closed(
            CloseReason::Storage { .. }
        ))
    ));
}

#[test]
fn a_sparse_replica_reopens_from_its_checkpoint_or_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica");
    let mut w = Writer::new(7);
    w.append((0..100u32).map(|i| i.to_be_bytes().repeat(20)).collect());
    let mut r = Replica::create(&dir, w.log.id()).unwrap();
    let mut link = Link::new(&r);
    link.server.set_batch_bytes(200);
    link.reader.want(10..20);
    link.reader.want(50..61);
    link.reader.want(99..100);
    link.settle(&w.log.source(), &mut r);
    let held = vec![10..20, 50..61, 99..100];
    assert_eq!(r.held(), held);
    r.close().unwrap();
    assert_eq!(
        &std::fs::read(dir.join("checkpoint")).unwrap()[..5],
        b"ACKP\x02"
    );

    let reopen = |dir: &Path| -> Replica<FileStorage> {
        let r = Replica::open(dir, w.log.id()).unwrap();
        assert_eq!(r.held(), held);
        assert_eq!(r.head(), Some(w.log.head()));
        check_replica(&r, &w);
        r
    };
    let r = reopen(&dir);

    // It serves what it holds to another replica, with proofs from the nodes it kept.
    let mut other = Replica::memory(w.log.id());
    let mut link = Link::new(&other);
    link.reader.want(0..100);
    let source = &r;
    link.settle(&source, &mut other);
    assert_eq!(other.held(), held);
    check_replica(&other, &w);
    drop(r);

    // Its checkpoint is trusted: with it, damage to the first frame goes unread; without
    // it, the whole log is read again and the damage refused.
    let log_path = dir.join("log");
    let mut bytes = std::fs::read(&log_path).unwrap();
    let first = 10 + u32::from_be_bytes(bytes[6..10].try_into().unwrap()) as usize + 32;
    bytes[first - 1] ^= 1;
    std::fs::write(&log_path, &bytes).unwrap();
    drop(reopen(&dir));
    bytes[first - 1] ^= 1;
    std::fs::write(&log_path, &bytes).unwrap();
    std::fs::remove_file(dir.join("checkpoint")).unwrap();
    drop(reopen(&dir));
    bytes[first - 1] ^= 1;
    std::fs::write(&log_path, &bytes).unwrap();
    std::fs::remove_file(dir.join("checkpoint")).ok();
    assert!(matches!(
        Replica::open(&dir, w.log.id()),
        Err(LogError::Corrupt { .. })
    ));
}
