//! The fuzz targets of `fuzz/` run on stable, over a seeded corpus: valid inputs (honest
//! streams, frames, heads, proofs, evidence) and their mutations (bit flips, cuts,
//! splices, changed lengths), plus random bytes. A smoke run of what `cargo fuzz` explores
//! for longer; `scripts/fuzz-smoke` runs both.
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/targets.rs"]
mod targets;

use atek_log::sync::{Frame, FrameDecoder};
use atek_log::{ConsistencyProof, ForkEvidence, InclusionProof, RangeProof};

/// xorshift64*: deterministic, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// A mutation of `seed`: flips, cuts, splices, insertions, changed length prefixes.
    fn mutate(&mut self, seed: &[u8], other: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(7) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                2 => v.truncate(self.below(v.len() + 1)),
                3 => {
                    let at = self.below(v.len() + 1);
                    let n = self.below(16);
                    let junk = self.bytes(n);
                    v.splice(at..at, junk);
                }
                4 if !other.is_empty() => {
                    let at = self.below(v.len() + 1);
                    let from = self.below(other.len());
                    let to = from + self.below(other.len() - from + 1);
                    v.splice(at..at, other[from..to].iter().copied());
                }
                5 if v.len() >= 4 => {
                    // A length prefix that lies.
                    let len = match self.below(3) {
                        0 => u32::MAX,
                        1 => 0,
                        _ => self.next() as u32 % 4096,
                    };
                    v[..4].copy_from_slice(&len.to_be_bytes());
                }
                _ => {
                    let at = self.below(v.len() + 1);
                    v.insert(at, self.next() as u8);
                }
            }
        }
        v
    }
}

/// The fixture's honest stream cut into its frames, each with its length prefix.
fn honest_frames() -> Vec<Vec<u8>> {
    let f = targets::fixture();
    let mut d = FrameDecoder::new();
    d.push(&f.honest);
    let mut out = Vec::new();
    while let Some(frame) = d.next_frame().unwrap() {
        out.push(frame.encode());
    }
    out
}

const ROUNDS: usize = 5000;

#[test]
fn frame_target_never_panics() {
    let f = targets::fixture();
    let frames = honest_frames();
    assert!(frames.len() > 5);
    let mut rng = Rng(0x5eed_0001);
    targets::frame(&[]);
    targets::frame(&f.honest);
    for round in 0..ROUNDS {
        let input = match round % 4 {
            0 => {
                let n = rng.below(300);
                rng.bytes(n)
            }
            1 => {
                let seed = &frames[rng.below(frames.len())];
                let other = &frames[rng.below(frames.len())];
                rng.mutate(seed, other)
            }
            2 => {
                // A run of honest frames with one mutated.
                let from = rng.below(frames.len());
                let to = from + rng.below(frames.len() - from);
                let mut v = Vec::new();
                for (i, frame) in frames[from..to].iter().enumerate() {
                    if i == 0 {
                        v.extend(rng.mutate(frame, &f.honest));
                    } else {
                        v.extend_from_slice(frame);
                    }
                }
                v
            }
            _ => {
                let other = &frames[rng.below(frames.len())];
                rng.mutate(&f.honest, other)
            }
        };
        targets::frame(&input);
    }
}

#[test]
fn decode_target_never_panics() {
    let f = targets::fixture();
    let head = f.heads[4];
    let mut seeds: Vec<Vec<u8>> = vec![
        head.encode().to_vec(),
        InclusionProof {
            index: 3,
            tree_size: 9,
            path: vec![head.head.root; 4],
        }
        .encode(),
        ConsistencyProof {
            old_size: 4,
            new_size: 9,
            path: vec![head.head.root; 3],
        }
        .encode(),
        RangeProof {
            start: 2,
            end: 5,
            tree_size: 9,
            siblings: vec![head.head.root; 5],
        }
        .encode(),
        ForkEvidence {
            a: f.heads[2],
            b: f.heads[3],
            proof: None,
        }
        .encode(),
    ];
    let frames = honest_frames();
    seeds.extend(frames.iter().map(|fr| fr[4..].to_vec()));
    let mut rng = Rng(0x5eed_0002);
    for seed in &seeds {
        targets::decode(seed);
    }
    for round in 0..ROUNDS * 2 {
        let input = if round % 5 == 0 {
            let n = rng.below(200);
            rng.bytes(n)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            rng.mutate(seed, other)
        };
        targets::decode(&input);
    }
    // Frames of the log file too: a real one from a file log, mutated.
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log =
        atek_log::Log::create(dir.path().join("log"), atek_core::SecretKey::generate()).unwrap();
    rt.block_on(log.append_batch(vec![b"one".to_vec(), b"two".to_vec()]))
        .unwrap();
    rt.block_on(log.close()).unwrap();
    let bytes = std::fs::read(dir.path().join("log/log")).unwrap();
    // The second frame (the first holds the empty head).
    let first = 10 + u32::from_be_bytes(bytes[6..10].try_into().unwrap()) as usize + 32;
    let frame = &bytes[first..];
    assert_eq!(atek_log::decode_log_frame(frame).unwrap(), 2);
    for _ in 0..ROUNDS {
        let input = rng.mutate(frame, &bytes);
        targets::decode(&input);
    }
}

#[test]
fn proofs_target_never_panics() {
    let f = targets::fixture();
    let mut rng = Rng(0x5eed_0003);
    let mut seeds = Vec::new();
    for (i, head) in f.heads.iter().enumerate() {
        let n = head.head.length;
        for pick in [i as u8, (i * 8) as u8, (i * 9) as u8] {
            let mut s = vec![pick];
            s.extend(
                RangeProof {
                    start: n / 3,
                    end: n / 2,
                    tree_size: n,
                    siblings: vec![head.head.root; 3],
                }
                .encode(),
            );
            seeds.push(s);
            let mut s = vec![pick];
            s.extend(
                ConsistencyProof {
                    old_size: n / 2,
                    new_size: n,
                    path: vec![head.head.root; 2],
                }
                .encode(),
            );
            seeds.push(s);
        }
    }
    // True proofs too, so that mutations start from paths that verify.
    let nodes = f.source_nodes();
    for (i, old) in f.heads.iter().enumerate() {
        for new in &f.heads[i..] {
            let (m, n) = (old.head.length, new.head.length);
            let pick = (i + 8 * f.heads.iter().position(|h| h == new).unwrap()) as u8;
            for proof in [
                RangeProof::generate(&nodes, m, m, n).unwrap().encode(),
                RangeProof::generate(&nodes, m / 2, m, n).unwrap().encode(),
                ConsistencyProof::generate_seeded(&nodes, m, n)
                    .unwrap()
                    .encode(),
            ] {
                let mut s = vec![pick];
                s.extend(proof);
                seeds.push(s);
            }
        }
    }
    for seed in &seeds {
        targets::proofs(seed);
    }
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        targets::proofs(&rng.mutate(seed, other));
    }
    // A frame the decoder takes whole is what the encoder writes.
    let frames = honest_frames();
    for fr in &frames {
        assert_eq!(&Frame::decode(&fr[4..]).unwrap().encode(), fr);
    }
}
