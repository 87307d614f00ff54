//! Random sequences of puts, deletes and lists against a `BTreeMap` model, on a view in
//! memory and on a view in a file that is closed and reopened (or thrown away) at random.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use atek_db::{Db, ListOpts, MemoryJournal, RecordPath, ViewLocation};
use proptest::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<String>, i64),
    Delete(Vec<String>),
    List(Vec<String>, ListOpts),
    /// Close and reopen; `true` also deletes the view file first.
    Reopen(bool),
}

fn segment() -> impl Strategy<Value = String> + Clone {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("b b")].prop_map(String::from)
}

fn bound() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop_oneof![Just(""), Just("a"), Just("b"), Just("b\0c"), Just("c")].prop_map(String::from),
    )
}

fn step() -> impl Strategy<Value = Step> {
    let path = prop::collection::vec(segment(), 1..=3);
    prop_oneof![
        5 => (path.clone(), any::<i64>()).prop_map(|(p, v)| Step::Put(p, v)),
        2 => path.clone().prop_map(Step::Delete),
        3 => (
            prop::collection::vec(segment(), 0..=2),
            bound(), bound(), bound(), bound(),
            prop::option::of(0usize..5),
            any::<bool>(),
        )
            .prop_map(|(p, gt, gte, lt, lte, limit, reverse)| {
                Step::List(p, ListOpts { gt, gte, lt, lte, limit, reverse })
            }),
        1 => any::<bool>().prop_map(Step::Reopen),
    ]
}

/// What the model says `list` returns: (path, value) pairs.
fn model_list(
    model: &BTreeMap<Vec<u8>, (Vec<String>, Value)>,
    prefix: &[String],
    opts: &ListOpts,
) -> Vec<(String, Value)> {
    let mut p = prefix.join("\0").into_bytes();
    if !p.is_empty() {
        p.push(0);
    }
    let with = |s: &String| [p.as_slice(), s.as_bytes()].concat();
    let mut out: Vec<(String, Value)> = model
        .iter()
        .filter(|(k, _)| k.starts_with(&p))
        .filter(|(k, _)| match (&opts.gt, &opts.gte) {
            (Some(gt), _) => **k > with(gt),
            (None, Some(gte)) => **k >= with(gte),
            _ => true,
        })
        .filter(|(k, _)| match (&opts.lt, &opts.lte) {
            (Some(lt), _) => **k < with(lt),
            (None, Some(lte)) => **k <= with(lte),
            _ => true,
        })
        .map(|(_, (segs, v))| (format!("/{}", segs.join("/")), v.clone()))
        .collect();
    if opts.reverse {
        out.reverse();
    }
    if let Some(limit) = opts.limit {
        out.truncate(limit);
    }
    out
}

fn run(steps: Vec<Step>, on_file: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let view_file = dir.path().join("view.redb");
        let at = || {
            if on_file {
                ViewLocation::File(view_file.clone())
            } else {
                ViewLocation::Memory
            }
        };
        let journal = MemoryJournal::new();
        let mut db = Db::open(Arc::new(journal.clone()), at()).unwrap();
        let mut model: BTreeMap<Vec<u8>, (Vec<String>, Value)> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Put(segs, n) => {
                    let path = RecordPath::from_segments(segs.clone()).unwrap();
                    let value = json!({ "n": n });
                    let record = db.put(&path, value.clone()).await.unwrap();
                    assert_eq!(record.path, path.to_string());
                    model.insert(path.storage_key(), (segs, value));
                }
                Step::Delete(segs) => {
                    let path = RecordPath::from_segments(segs).unwrap();
                    db.delete(&path).await.unwrap();
                    model.remove(&path.storage_key());
                }
                Step::List(segs, opts) => {
                    let path = RecordPath::from_segments(segs.clone()).unwrap();
                    let got: Vec<(String, Value)> = db
                        .list(&path, &opts)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.path, r.value))
                        .collect();
                    assert_eq!(
                        got,
                        model_list(&model, &segs, &opts),
                        "list {segs:?} {opts:?}"
                    );
                }
                Step::Reopen(forget_view) => {
                    if !on_file {
                        continue;
                    }
                    db.close().await.unwrap();
                    drop(db);
                    if forget_view {
                        std::fs::remove_file(&view_file).unwrap();
                    }
                    db = Db::open(Arc::new(journal.clone()), at()).unwrap();
                }
            }
            // Every record reads back as the model has it.
            for (key, (segs, value)) in &model {
                let path = RecordPath::from_segments(segs.clone()).unwrap();
                assert_eq!(path.storage_key(), *key);
                assert_eq!(
                    db.get(&path).unwrap().map(|r| r.value).as_ref(),
                    Some(value)
                );
            }
        }
        let all = db.list(&RecordPath::root(), &ListOpts::default()).unwrap();
        assert_eq!(all.len(), model.len());
        db.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_view_matches_a_btreemap(steps in prop::collection::vec(step(), 1..60)) {
        run(steps, false);
    }

    #[test]
    fn file_view_matches_a_btreemap_across_reopens(steps in prop::collection::vec(step(), 1..40)) {
        run(steps, true);
    }
}
