//! Random append/get/proof sequences against a `Vec<Vec<u8>>` model, on memory and file
//! storage; the file log is closed and reopened at random points.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use atek_log::{Consistency, Log, LogError, SignedTreeHead, check_heads};
use common::{check_against_model, key};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Concurrent(Vec<Vec<u8>>),
    Get(f64),
    Inclusion(f64, f64),
    Consistency(f64, f64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Op::Append),
        2 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20)
            .prop_map(Op::Batch),
        1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..12)
            .prop_map(Op::Concurrent),
        2 => (0.0f64..1.0).prop_map(Op::Get),
        2 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| Op::Inclusion(a, b)),
        2 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(a, b)| Op::Consistency(a, b)),
        1 => Just(Op::Reopen),
    ]
}

fn pick<T: Copy>(items: &[T], frac: f64) -> T {
    items[((items.len() as f64 * frac) as usize).min(items.len() - 1)]
}

async fn run(ops: Vec<Op>, dir: Option<&Path>) {
    let mut log = match dir {
        Some(d) => Log::create(d, key(1)).unwrap(),
        None => Log::open_memory(key(1)).unwrap(),
    };
    let mut model: Vec<Vec<u8>> = Vec::new();
    // Every head the log has shown, by length (signatures are deterministic, so a length
    // maps to one head).
    let mut heads: BTreeMap<u64, SignedTreeHead> = BTreeMap::new();
    heads.insert(0, log.head());
    for op in ops {
        match op {
            Op::Append(e) => {
                let i = log.append(e.clone()).await.unwrap();
                assert_eq!(i, model.len() as u64);
                model.push(e);
            }
            Op::Batch(b) => {
                let r = log.append_batch(b.clone()).await.unwrap();
                assert_eq!(r, model.len() as u64..(model.len() + b.len()) as u64);
                model.extend(b);
            }
            Op::Concurrent(entries) => {
                let mut set = tokio::task::JoinSet::new();
                for e in entries.clone() {
                    let log = log.clone();
                    set.spawn(async move { (log.append(e.clone()).await.unwrap(), e) });
                }
                let start = model.len();
                model.resize(start + entries.len(), Vec::new());
                let mut seen = vec![false; entries.len()];
                while let Some(r) = set.join_next().await {
                    let (i, e) = r.unwrap();
                    let slot = i as usize - start;
                    assert!(!seen[slot], "index {i} given twice");
                    seen[slot] = true;
                    model[i as usize] = e;
                }
            }
            Op::Get(f) => {
                if !model.is_empty() {
                    let i = ((model.len() as f64 * f) as usize).min(model.len() - 1);
                    assert_eq!(log.get(i as u64).await.unwrap(), model[i]);
                }
            }
            Op::Inclusion(fi, fs) => {
                let sizes: Vec<u64> = heads.keys().copied().filter(|&s| s > 0).collect();
                if !sizes.is_empty() {
                    let size = pick(&sizes, fs);
                    let i = ((size as f64 * fi) as u64).min(size - 1);
                    let p = log.inclusion_proof(i, size).await.unwrap();
                    p.verify(&model[i as usize], &heads[&size].head).unwrap();
                }
            }
            Op::Consistency(fa, fb) => {
                let sizes: Vec<u64> = heads.keys().copied().collect();
                let (a, b) = (pick(&sizes, fa), pick(&sizes, fb));
                let (m, n) = (a.min(b), a.max(b));
                let p = log.consistency_proof(m, n).await.unwrap();
                p.verify(&heads[&m].head, &heads[&n].head).unwrap();
                assert_eq!(
                    check_heads(&heads[&m], &heads[&n], Some(&p)).unwrap(),
                    Consistency::Consistent
                );
            }
            Op::Reopen => {
                if let Some(d) = dir {
                    let before = log.head();
                    log.close().await.unwrap();
                    assert!(matches!(log.get(0).await, Err(LogError::Closed)));
                    log = Log::open(d, key(1)).unwrap();
                    assert_eq!(log.head(), before);
                }
            }
        }
        let head = log.head();
        assert_eq!(head.head.length, model.len() as u64);
        heads.insert(head.head.length, head);
    }
    check_against_model(&log, &model).await;
    // A proof beyond the log is refused.
    let n = model.len() as u64;
    assert!(matches!(
        log.inclusion_proof(0, n + 1).await,
        Err(LogError::OutOfRange { .. })
    ));
    assert!(matches!(
        log.consistency_proof(0, n + 1).await,
        Err(LogError::OutOfRange { .. })
    ));
    if let Some(d) = dir {
        log.close().await.unwrap();
        let log = Log::open(d, key(1)).unwrap();
        check_against_model(&log, &model).await;
        log.close().await.unwrap();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        block_on(run(ops, None));
    }

    #[test]
    fn file_log_matches_model_across_reopens(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        block_on(run(ops, Some(&dir.path().join("log"))));
    }
}
