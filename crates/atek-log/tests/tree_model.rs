//! The tree, proofs and fork checks against a naive RFC 9162 implementation written here
//! from the RFC's definitions, over a `Vec` of entries.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use atek_core::SecretKey;
use atek_log::{
    Consistency, ConsistencyProof, ForkEvidence, Hash, InclusionProof, LogError, MAX_PATH,
    SignedTreeHead, TreeHead, check_heads, tree_root,
};
use proptest::prelude::*;

// ---- RFC 9162 §2.1, by the letter ----

fn k_of(n: usize) -> usize {
    // The largest power of two smaller than n.
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => Hash::empty_root(),
        1 => Hash::leaf(&d[0]),
        n => {
            let k = k_of(n);
            Hash::node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return Vec::new();
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) for 0 < m < n.
fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    subproof(m, d, true)
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// Every perfect subtree's root at its flat-tree index, computed with `mth`.
fn nodes_of(d: &[Vec<u8>]) -> BTreeMap<u64, Hash> {
    let mut nodes = BTreeMap::new();
    let mut h = 0u32;
    while (1usize << h) <= d.len() {
        let size = 1usize << h;
        for o in 0..d.len() / size {
            let x = ((o as u64) << (h + 1)) | ((1u64 << h) - 1);
            nodes.insert(x, mth(&d[o * size..(o + 1) * size]));
        }
        h += 1;
    }
    nodes
}

/// `n` distinct entries: the index, then some seeded bytes.
fn entries(n: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = (i as u64).to_be_bytes().to_vec();
            let extra = (seed.wrapping_mul(31).wrapping_add(i as u64 * 7)) % 5;
            e.extend((0..extra).map(|j| (seed as u8).wrapping_add(j as u8)));
            e
        })
        .collect()
}

fn key() -> &'static SecretKey {
    static KEY: std::sync::OnceLock<SecretKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed([7; 32]))
}

fn head(d: &[Vec<u8>], n: usize) -> TreeHead {
    TreeHead {
        log_id: key().public(),
        length: n as u64,
        root: mth(&d[..n]),
    }
}

fn signed(d: &[Vec<u8>], n: usize) -> SignedTreeHead {
    head(d, n).sign(key()).unwrap()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = *h.as_bytes();
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    Hash::from_bytes(b)
}

// ---- roots ----

#[test]
fn roots_for_every_size_up_to_130() {
    let d = entries(130, 1);
    let nodes = nodes_of(&d);
    for n in 0..=130 {
        assert_eq!(
            tree_root(&nodes, n as u64).unwrap(),
            mth(&d[..n]),
            "n = {n}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn roots_for_random_larger_sizes(n in 131usize..3000, seed in any::<u64>()) {
        let d = entries(n, seed);
        let nodes = nodes_of(&d);
        prop_assert_eq!(tree_root(&nodes, n as u64).unwrap(), mth(&d));
        // The longer tree's nodes serve every prefix.
        let m = (seed as usize) % n;
        prop_assert_eq!(tree_root(&nodes, m as u64).unwrap(), mth(&d[..m]));
    }
}

// ---- inclusion ----

fn check_inclusion(d: &[Vec<u8>], nodes: &BTreeMap<u64, Hash>, i: usize, n: usize) {
    let h = head(d, n);
    let p = InclusionProof::generate(nodes, i as u64, n as u64).unwrap();
    assert_eq!(p.path, path(i, &d[..n]), "i = {i}, n = {n}");
    p.verify(&d[i], &h).unwrap();
    assert_eq!(InclusionProof::decode(&p.encode()).unwrap(), p);

    let rejected = |q: &InclusionProof, what: &str| {
        assert!(
            matches!(q.verify(&d[i], &h), Err(LogError::BadProof { .. })),
            "{what}: i = {i}, n = {n}"
        );
    };
    // Another entry.
    assert!(p.verify(b"not an entry", &h).is_err());
    if i + 1 < n {
        assert!(p.verify(&d[i + 1], &h).is_err());
    }
    // Flipped bits.
    for (j, bit) in [(0usize, 0usize), (1, 77), (2, 255)] {
        if j < p.path.len() {
            let mut q = p.clone();
            q.path[j] = flip(&q.path[j], bit);
            rejected(&q, "flipped bit");
        }
    }
    // Wrong index.
    for other in [i.wrapping_sub(1), i + 1, i ^ 1, n, usize::MAX >> 2] {
        if other != i {
            let mut q = p.clone();
            q.index = other as u64;
            rejected(&q, "wrong index");
        }
    }
    // Wrong size.
    for size in [n - 1, n + 1, 2 * n] {
        let mut q = p.clone();
        q.tree_size = size as u64;
        rejected(&q, "wrong size");
    }
    // A head of another size.
    if n > 1 && i < n - 1 {
        assert!(p.verify(&d[i], &head(d, n - 1)).is_err());
    }
    // Truncated and extended.
    if !p.path.is_empty() {
        let mut q = p.clone();
        q.path.pop();
        rejected(&q, "truncated");
        let mut q = p.clone();
        q.path.remove(0);
        rejected(&q, "first hash dropped");
    }
    let mut q = p.clone();
    q.path.push(Hash::leaf(b"extra"));
    rejected(&q, "extended");
    let mut q = p.clone();
    q.path.insert(0, Hash::leaf(&d[i]));
    rejected(&q, "extended at the front");
}

#[test]
fn inclusion_exhaustive_small() {
    let d = entries(40, 2);
    let nodes = nodes_of(&d);
    for n in 1..=40 {
        for i in 0..n {
            check_inclusion(&d, &nodes, i, n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn inclusion_random(n in 1usize..2500, i_frac in 0.0f64..1.0, seed in any::<u64>()) {
        let i = ((n as f64) * i_frac) as usize % n;
        let d = entries(n, seed);
        let nodes = nodes_of(&d);
        check_inclusion(&d, &nodes, i, n);
    }
}

// ---- consistency ----

fn check_consistency(d: &[Vec<u8>], nodes: &BTreeMap<u64, Hash>, m: usize, n: usize) {
    let (old, new) = (head(d, m), head(d, n));
    let p = ConsistencyProof::generate(nodes, m as u64, n as u64).unwrap();
    let expected = if m == 0 || m == n {
        Vec::new()
    } else {
        proof(m, &d[..n])
    };
    assert_eq!(p.path, expected, "m = {m}, n = {n}");
    p.verify(&old, &new).unwrap();
    assert_eq!(ConsistencyProof::decode(&p.encode()).unwrap(), p);
    let seeded = ConsistencyProof::generate_seeded(nodes, m as u64, n as u64).unwrap();
    seeded.verify(&old, &new).unwrap();
    let (so, sn) = (signed(d, m), signed(d, n));
    assert_eq!(
        check_heads(&so, &sn, Some(&p)).unwrap(),
        Consistency::Consistent
    );
    assert_eq!(
        check_heads(&sn, &so, Some(&seeded)).unwrap(),
        Consistency::Consistent
    );

    let rejected = |q: &ConsistencyProof, what: &str| {
        assert!(
            matches!(q.verify(&old, &new), Err(LogError::BadProof { .. })),
            "{what}: m = {m}, n = {n}"
        );
    };
    for (j, bit) in [(0usize, 3usize), (1, 100), (2, 200)] {
        for base in [&p, &seeded] {
            if j < base.path.len() {
                let mut q = base.clone();
                q.path[j] = flip(&q.path[j], bit);
                rejected(&q, "flipped bit");
            }
        }
    }
    for size in [m.wrapping_sub(1), m + 1] {
        if size != m && size <= n {
            let mut q = p.clone();
            q.old_size = size as u64;
            rejected(&q, "wrong old size");
        }
    }
    for size in [n - 1, n + 1] {
        let mut q = p.clone();
        q.new_size = size as u64;
        rejected(&q, "wrong new size");
    }
    // Heads of other sizes.
    if m < n {
        assert!(p.verify(&old, &head(d, n - 1)).is_err());
    }
    if !p.path.is_empty() {
        let mut q = p.clone();
        q.path.pop();
        rejected(&q, "truncated");
        let mut q = p.clone();
        q.path.remove(0);
        rejected(&q, "first hash dropped");
    }
    let mut q = p.clone();
    q.path.push(Hash::leaf(b"extra"));
    rejected(&q, "extended");
    let mut q = p.clone();
    q.path.insert(0, Hash::leaf(b"extra"));
    rejected(&q, "extended at the front");
    let mut q = seeded.clone();
    q.path.push(Hash::leaf(b"extra"));
    rejected(&q, "seeded, extended");
}

#[test]
fn consistency_exhaustive_small() {
    let d = entries(40, 3);
    let nodes = nodes_of(&d);
    for n in 1..=40 {
        for m in 0..=n {
            check_consistency(&d, &nodes, m, n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn consistency_random(n in 1usize..2500, m_frac in 0.0f64..=1.0, seed in any::<u64>()) {
        let m = (((n as f64) * m_frac) as usize).min(n);
        let d = entries(n, seed);
        let nodes = nodes_of(&d);
        check_consistency(&d, &nodes, m, n);
    }
}

// ---- forks ----

/// Two histories of one writer: equal up to `j`, different from there on.
fn fork_pair(n: usize, j: usize, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let a = entries(n, seed);
    let mut b = a.clone();
    for e in &mut b[j..] {
        e.push(0xff);
    }
    (a, b)
}

fn check_fork(m: usize, n: usize, j: usize, seed: u64) {
    // History `a` signed at m; history `b` (differing from entry j < m) signed at n ≥ m.
    let (a, b) = fork_pair(n, j, seed);
    let (ha, hb) = (signed(&a, m), signed(&b, n));
    let nodes_b = nodes_of(&b);
    let seeded = ConsistencyProof::generate_seeded(&nodes_b, m as u64, n as u64).unwrap();
    let plain = ConsistencyProof::generate(&nodes_b, m as u64, n as u64).unwrap();
    let proof = (m != n).then_some(&seeded);
    let Consistency::Fork(evidence) = check_heads(&ha, &hb, proof).unwrap() else {
        panic!("no fork found: m = {m}, n = {n}, j = {j}");
    };
    evidence.verify().unwrap();
    let back = ForkEvidence::decode(&evidence.encode()).unwrap();
    assert_eq!(back, *evidence);
    back.verify().unwrap();

    // The unseeded path shows it too unless m is a power of two (then it is only a bad
    // proof: nothing in it comes from the newer tree's view of the first m entries).
    if m != n {
        let r = check_heads(&ha, &hb, Some(&plain));
        if m.is_power_of_two() {
            assert!(matches!(r, Err(LogError::BadProof { .. })), "{r:?}");
        } else {
            assert!(matches!(r, Ok(Consistency::Fork(_))), "{r:?}");
        }
        // A proof that is not the newer tree's is no evidence.
        let mut bad = seeded.clone();
        bad.path[0] = flip(&bad.path[0], 1);
        assert!(matches!(
            check_heads(&ha, &hb, Some(&bad)),
            Err(LogError::BadProof { .. })
        ));
        // Nor is one that comes from history a (it fails against b's root).
        let nodes_a = nodes_of(&a);
        let from_a = ConsistencyProof::generate_seeded(&nodes_a, m as u64, n as u64).unwrap();
        assert!(matches!(
            check_heads(&ha, &hb, Some(&from_a)),
            Err(LogError::BadProof { .. })
        ));
        // And no proof at all is an error, not a verdict.
        assert!(check_heads(&ha, &hb, None).is_err());
    }
}

#[test]
fn forks_exhaustive_small() {
    for n in 1..=12 {
        for m in 1..=n {
            for j in 0..m {
                check_fork(m, n, j, 5);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn forks_random(n in 1usize..600, mf in 0.0f64..1.0, jf in 0.0f64..1.0, seed in any::<u64>()) {
        let m = 1 + ((n as f64 * mf) as usize) % n;
        let j = ((m as f64 * jf) as usize) % m;
        check_fork(m, n, j, seed);
    }
}

#[test]
fn heads_must_be_signed_and_of_one_log() {
    let d = entries(10, 9);
    let (h5, h9) = (signed(&d, 5), signed(&d, 9));
    let nodes = nodes_of(&d);
    let p = ConsistencyProof::generate(&nodes, 5, 9).unwrap();
    let mut forged = h9;
    forged.head.root = Hash::leaf(b"forged");
    assert!(matches!(
        check_heads(&h5, &forged, Some(&p)),
        Err(LogError::BadSignature { .. })
    ));
    let other = SecretKey::from_seed([8; 32]);
    let foreign = TreeHead {
        log_id: other.public(),
        ..h9.head
    }
    .sign(&other)
    .unwrap();
    assert!(matches!(
        check_heads(&h5, &foreign, Some(&p)),
        Err(LogError::WrongLog { .. })
    ));
    // Same length, different roots: a fork with no proof needed.
    let (a, b) = fork_pair(10, 4, 1);
    let Consistency::Fork(e) = check_heads(&signed(&a, 7), &signed(&b, 7), None).unwrap() else {
        panic!("same-length fork not found");
    };
    assert!(e.proof.is_none());
    e.verify().unwrap();
    // Evidence of two consistent heads does not verify.
    let fake = ForkEvidence {
        a: h5,
        b: h9,
        proof: Some(p),
    };
    assert!(fake.verify().is_err());
}

#[test]
fn proof_decoding_limits() {
    let p = InclusionProof {
        index: 3,
        tree_size: 9,
        path: vec![Hash::leaf(b"x"); 4],
    };
    let bytes = p.encode();
    assert_eq!(bytes.len(), 18 + 4 * 32);
    for cut in 0..bytes.len() {
        assert!(InclusionProof::decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(InclusionProof::decode(&long).is_err());
    let mut too_many = bytes.clone();
    too_many[17] = (MAX_PATH + 1) as u8;
    too_many.extend(vec![0u8; 32 * (MAX_PATH + 1 - 4)]);
    assert!(matches!(
        InclusionProof::decode(&too_many),
        Err(LogError::Decode { .. })
    ));
    let mut v9 = bytes;
    v9[0] = 9;
    assert!(matches!(
        InclusionProof::decode(&v9),
        Err(LogError::UnsupportedVersion { version: 9, .. })
    ));
    let c = ConsistencyProof {
        old_size: 2,
        new_size: 5,
        path: vec![Hash::leaf(b"y"); 3],
    };
    let bytes = c.encode();
    assert_eq!(ConsistencyProof::decode(&bytes).unwrap(), c);
    assert!(ConsistencyProof::decode(&bytes[..bytes.len() - 1]).is_err());
    let e = ForkEvidence {
        a: signed(&entries(3, 0), 2),
        b: signed(&entries(3, 0), 3),
        proof: Some(c),
    };
    let bytes = e.encode();
    assert_eq!(ForkEvidence::decode(&bytes).unwrap(), e);
    for cut in 0..bytes.len() {
        assert!(ForkEvidence::decode(&bytes[..cut]).is_err(), "cut {cut}");
    }
}
