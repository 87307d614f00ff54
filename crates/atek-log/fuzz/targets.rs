//! The fuzz targets' bodies, shared by cargo-fuzz (`fuzz_targets/*.rs`, nightly and
//! libFuzzer) and the stable smoke test (`tests/fuzz_smoke.rs`, seeded random inputs).
//!
//! Each must never panic, whatever the input; beyond that they check that nothing false
//! gets through: a replica fed arbitrary bytes stores only the true log's entries and
//! heads, no proof makes two consistent heads look like a fork, and whatever decodes
//! encodes back to the same bytes.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::OnceLock;

use atek_core::SecretKey;
use atek_log::sync::{Frame, FrameDecoder, PROTOCOL_VERSION, ReaderSession, Role, ServerSession};
use atek_log::{
    Consistency, ConsistencyProof, ForkEvidence, Hash, InclusionProof, Log, LogError, LogSource,
    RangeProof, Replica, SignedTreeHead, check_heads,
};

/// A log of 37 entries whose heads at several lengths are known.
pub struct Fixture {
    pub log: Log,
    pub source: LogSource,
    pub entries: Vec<Vec<u8>>,
    /// Heads at lengths 0, 1, 4, 9, 16, 23, 37.
    pub heads: Vec<SignedTreeHead>,
    /// The frames an honest server sends a new reader that wants `0..37` with a tail from 5.
    pub honest: Vec<u8>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let log = Log::open_memory(SecretKey::from_seed([7; 32])).unwrap();
        let mut entries = Vec::new();
        let mut heads = vec![log.head()];
        for len in [1u64, 4, 9, 16, 23, 37] {
            let batch: Vec<Vec<u8>> = (entries.len() as u64..len)
                .map(|i| {
                    let mut e = vec![i as u8; (i % 7) as usize * 9];
                    e.extend_from_slice(&i.to_be_bytes());
                    e
                })
                .collect();
            rt.block_on(log.append_batch(batch.clone())).unwrap();
            entries.extend(batch);
            heads.push(log.head());
        }
        let source = log.source();
        let honest = honest_stream(&log, &source);
        Fixture {
            log,
            source,
            entries,
            heads,
            honest,
        }
    })
}

fn honest_stream(log: &Log, source: &LogSource) -> Vec<u8> {
    let mut server = ServerSession::new(log.id());
    server.set_batch_bytes(64);
    let mut input = reader_hello(log, 0);
    input.extend(Frame::Want { start: 0, end: 37 }.encode());
    input.extend(Frame::Subscribe { tail: Some(5) }.encode());
    server.handle_input(&input);
    let mut out = Vec::new();
    while let Some(bytes) = server.poll_transmit(source) {
        out.extend(bytes);
    }
    out
}

fn reader_hello(log: &Log, length: u64) -> Vec<u8> {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Reader,
        log_id: log.id(),
        length,
    }
    .encode()
}

/// Splits `data` into chunks whose sizes the data's own bytes pick.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = (usize::from(data[i % data.len()]) % 97 + 1).min(rest.len());
        out.push(&rest[..size]);
        rest = &rest[size..];
        i += 1;
    }
    out
}

/// Everything a replica holds is the fixture's.
fn check_true(replica: &Replica<atek_log::MemoryStorage>) {
    let f = fixture();
    if let Some(head) = replica.head() {
        assert!(f.heads.contains(&head), "a head the writer did not sign");
    }
    for r in replica.held() {
        for i in r {
            assert_eq!(replica.get(i).unwrap(), f.entries[i as usize], "entry {i}");
        }
    }
}

/// Frame decoding, and both session state machines fed arbitrary bytes.
pub fn frame(data: &[u8]) {
    let f = fixture();

    // Whatever decodes encodes back to a frame that decodes the same.
    let mut decoder = FrameDecoder::new();
    decoder.push(data);
    while let Ok(Some(frame)) = decoder.next_frame() {
        if !matches!(frame, Frame::Close { .. }) {
            let bytes = frame.encode();
            assert_eq!(Frame::decode(&bytes[4..]).unwrap(), frame);
        }
    }

    // A reader: the bytes alone, or after part of an honest stream (so that they reach
    // the states past the hello), in chunks.
    let mut replica = Replica::memory(f.log.id());
    let mut reader = ReaderSession::new(&replica);
    reader.want(0..20);
    reader.want(30..40);
    reader.subscribe(Some(5));
    let mode = data.first().copied().unwrap_or(0);
    if mode & 1 == 1 {
        let cut = (usize::from(mode) * 37) % (f.honest.len() + 1);
        reader.handle_input(&f.honest[..cut], &mut replica);
    }
    for chunk in chunks(data) {
        reader.handle_input(chunk, &mut replica);
    }
    reader.handle_eof();
    while reader.poll_transmit().is_some() {}
    while reader.poll_event().is_some() {}
    check_true(&replica);

    // A server answering from the log.
    let mut server = ServerSession::new(f.log.id());
    if mode & 2 == 2 {
        server.handle_input(&reader_hello(&f.log, u64::from(mode) % 40));
    }
    for chunk in chunks(data) {
        server.handle_input(chunk);
        for _ in 0..4 {
            if server.poll_transmit(&f.source).is_none() {
                break;
            }
        }
    }
    server.handle_eof();
    for _ in 0..256 {
        if server.poll_transmit(&f.source).is_none() {
            break;
        }
    }
    while server.poll_event().is_some() {}
}

/// Decoding of heads, proofs, fork evidence, log-file frames and protocol frames.
pub fn decode(data: &[u8]) {
    if let Ok(head) = SignedTreeHead::decode(data) {
        let _ = head.verify();
        assert_eq!(head.encode()[..], data[..]);
    }
    if let Ok(p) = InclusionProof::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(p) = ConsistencyProof::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(p) = RangeProof::decode(data) {
        assert_eq!(p.encode(), data);
    }
    if let Ok(e) = ForkEvidence::decode(data) {
        // Only the fixture's key could sign both; none of its heads fork.
        let _ = e.verify();
        assert_eq!(e.encode(), data);
    }
    let _ = atek_log::decode_log_frame(data);
    let _ = Frame::decode(data);
}

/// Proof verification: arbitrary proofs against the fixture's true heads and entries.
pub fn proofs(data: &[u8]) {
    let f = fixture();
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let heads = &f.heads;
    let old = heads[usize::from(pick) % heads.len()];
    let new = heads[usize::from(pick / 8) % heads.len()];
    let n = new.head.length;

    if let Ok(p) = InclusionProof::decode(rest) {
        let i = p.index % 64;
        let entry = f.entries.get(i as usize).cloned().unwrap_or_default();
        if p.verify(&entry, &new.head).is_ok() {
            assert!(p.index < n && p.tree_size == n);
        }
    }

    if let Ok(p) = ConsistencyProof::decode(rest) {
        let _ = p.verify(&old.head, &new.head);
        // The fixture's heads are consistent: no path can show them forked.
        match check_heads(&old, &new, Some(&p)) {
            Ok(Consistency::Fork(_)) => panic!("a fork between consistent heads"),
            Ok(Consistency::Consistent) | Err(_) => {}
        }
    }

    if let Ok(p) = RangeProof::decode(rest) {
        // The true entries of its range (if it is one), and leaves taken from the data.
        if p.start <= p.end && p.end <= 37 && p.end - p.start <= 37 {
            let leaves: Vec<Hash> = f.entries[p.start as usize..p.end as usize]
                .iter()
                .map(|e| Hash::leaf(e))
                .collect();
            if let Ok(proven) = p.verify_leaves(&leaves, n, &new.head.root) {
                assert!(p.end <= n);
                let _ = p.prefix_root(&proven);
            }
            let fake: Vec<Hash> = (0..leaves.len())
                .map(|i| Hash::leaf(&[pick, i as u8]))
                .collect();
            if p.verify_leaves(&fake, n, &new.head.root).is_ok() {
                assert_eq!(fake, leaves, "leaves that are not the log's verified");
            }
        }

        // A replica at `old` checks `new` with it: never a fork, and only true heads.
        let mut replica = Replica::memory(f.log.id());
        let start = RangeProof::generate(&f.source_nodes(), 0, 0, old.head.length);
        if let Ok(start) = start
            && replica.check_head(&old, Some(&start)).is_ok()
        {
            match replica.check_head(&new, Some(&p)) {
                Err(LogError::ForkDetected(_)) => panic!("a fork between consistent heads"),
                _ => check_true(&replica),
            }
        }
    }
}

impl Fixture {
    /// The fixture's tree nodes, for building true proofs.
    pub fn source_nodes(&self) -> std::collections::BTreeMap<u64, Hash> {
        // Every perfect node of the 37-entry tree, built from the entries.
        let mut nodes = std::collections::BTreeMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            nodes.insert(2 * i as u64, Hash::leaf(e));
        }
        let mut h = 1u32;
        while (1u64 << h) <= self.entries.len() as u64 {
            let mut o = 0u64;
            while (o + 1) << h <= self.entries.len() as u64 {
                let x = (o << (h + 1)) | ((1u64 << h) - 1);
                let half = 1u64 << (h - 1);
                let node = Hash::node(&nodes[&(x - half)], &nodes[&(x + half)]);
                nodes.insert(x, node);
                o += 1;
            }
            h += 1;
        }
        nodes
    }
}
