//! The file store: its files, recovery from torn tails, refusal of damage, fast opening,
//! and what an append costs in syncs and bytes.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use atek_log::{
    EntryRun, FileStorage, ForkEvidence, Log, LogError, MAX_ENTRY_SIZE, Storage, TreeHead,
};
use common::{Faulty, check_against_model, key, mth};

fn entry(i: u64, size: usize) -> Vec<u8> {
    let mut e = i.to_be_bytes().to_vec();
    e.resize(size.max(8), (i % 251) as u8);
    e
}

/// A copy of the log's files as they are now: what a crash at this instant would leave
/// (every acknowledged write has returned, so it is in the files).
fn crash_image(dir: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to).unwrap();
    for f in fs::read_dir(dir).unwrap() {
        let f = f.unwrap();
        fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    to.to_path_buf()
}

#[tokio::test]
async fn create_open_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    assert_eq!(log.len(), 0);
    let head = log.head();
    head.verify().unwrap();
    assert_eq!(head.head, TreeHead::empty(key(1).public()));

    assert!(matches!(
        Log::open(&dir, key(1)),
        Err(LogError::Locked { .. })
    ));
    log.append(b"one".to_vec()).await.unwrap();
    log.close().await.unwrap();
    assert!(matches!(
        log.append(b"late".to_vec()).await,
        Err(LogError::Closed)
    ));

    assert!(matches!(
        Log::create(&dir, key(1)),
        Err(LogError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Log::open(tmp.path().join("nothing"), key(1)),
        Err(LogError::NotFound { .. })
    ));
    assert!(matches!(
        Log::open(&dir, key(2)),
        Err(LogError::WrongKey { .. })
    ));

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for f in fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }

    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &[b"one".to_vec()]).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn entry_size_limit() {
    let log = Log::open_memory(key(1)).unwrap();
    let err = log.append(vec![0; MAX_ENTRY_SIZE + 1]).await.unwrap_err();
    assert!(
        matches!(err, LogError::EntryTooLarge { size, max } if size == MAX_ENTRY_SIZE + 1 && max == MAX_ENTRY_SIZE)
    );
    assert!(err.to_string().contains("4194304"), "{err}");
    let err = log
        .append_batch(vec![vec![1], vec![0; MAX_ENTRY_SIZE + 1]])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::EntryTooLarge { .. }));
    assert_eq!(log.len(), 0, "a refused batch adds nothing");
    assert_eq!(log.append(vec![7; MAX_ENTRY_SIZE]).await.unwrap(), 0);
}

/// Five acknowledged single appends, then a crash image of the files.
async fn five_and_crash(tmp: &Path) -> (PathBuf, Vec<Vec<u8>>) {
    let dir = tmp.join("live");
    let log = Log::create(&dir, key(1)).unwrap();
    let mut model = Vec::new();
    for i in 0..5 {
        let e = entry(i, 100);
        log.append(e.clone()).await.unwrap();
        model.push(e);
    }
    let image = crash_image(&dir, &tmp.join("image"));
    log.close().await.unwrap();
    // The zeros the log is preallocated with (tested on their own below) would sit
    // between the last frame and whatever these tests do to the file's end.
    let bytes = fs::read(log_file(&image)).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    fs::write(log_file(&image), &bytes[..end]).unwrap();
    (image, model)
}

/// A crash leaves the log's preallocated zeros after its last frame: opening takes them
/// for the end (quietly: they are not damage) and a clean close gives them back.
#[tokio::test]
async fn a_crash_leaves_preallocated_zeros_that_opening_takes_for_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let log = Log::create(&dir, key(1)).unwrap();
    let mut model = Vec::new();
    for i in 0..5 {
        let e = entry(i, 100);
        log.append(e.clone()).await.unwrap();
        model.push(e);
    }
    let image = crash_image(&dir, &tmp.path().join("image"));
    log.close().await.unwrap();
    let crashed = fs::read(log_file(&image)).unwrap();
    let end = crashed.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        crashed.len() > end + 4096,
        "the log is preallocated ahead of its end"
    );
    // A clean close trims it.
    assert_eq!(
        fs::metadata(log_file(&dir)).unwrap().len() as usize,
        end,
        "closed cleanly, the log holds no zeros"
    );
    let log = Log::open(&image, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.append(entry(5, 100)).await.unwrap();
    model.push(entry(5, 100));
    log.close().await.unwrap();
    let log = Log::open(&image, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

/// A writer's group whose seal fails (its entries already written to the file, as a large
/// group's are before it is sealed) leaves the store refusing appends, and the log opens
/// again at its last durable group, the unsealed entries cut as a torn frame.
#[tokio::test]
async fn a_group_whose_seal_fails_is_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let log = Log::create(&dir, key(1)).unwrap();
    let model: Vec<Vec<u8>> = (0..3).map(|i| entry(i, 100)).collect();
    log.append_batch(model.clone()).await.unwrap();
    log.close().await.unwrap();

    let mut store = FileStorage::open(&dir).unwrap();
    let big: Vec<Vec<u8>> = (3..103).map(|i| entry(i, 1024)).collect();
    let runs = vec![EntryRun {
        first_index: 3,
        entries: big,
    }];
    let mut sealed = false;
    let result = store.append_sealed(runs, &mut |runs: &[EntryRun]| {
        sealed = true;
        assert_eq!(runs[0].entries.len(), 100);
        Err(LogError::Storage {
            reason: "no signature today".to_owned(),
        })
    });
    assert!(sealed);
    assert!(matches!(result, Err(LogError::Storage { .. })));
    assert!(matches!(
        store.append_sealed(Vec::new(), &mut |_: &[EntryRun]| unreachable!()),
        Err(LogError::Poisoned)
    ));
    assert_eq!(store.len(), 3);
    drop(store);

    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join("log")
}

#[tokio::test]
async fn a_torn_last_frame_is_cut_and_the_rest_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, mut model) = five_and_crash(tmp.path()).await;
    assert!(!image.join("checkpoint").exists(), "no checkpoint yet");

    // Cut the last frame short.
    let len = fs::metadata(log_file(&image)).unwrap().len();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(log_file(&image))
        .unwrap();
    f.set_len(len - 40).unwrap();
    drop(f);
    let log = Log::open(&image, key(1)).unwrap();
    model.pop();
    check_against_model(&log, &model).await;
    // It goes on from there.
    log.append(b"after".to_vec()).await.unwrap();
    model.push(b"after".to_vec());
    log.close().await.unwrap();
    let log = Log::open(&image, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn garbage_after_the_last_frame_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, model) = five_and_crash(tmp.path()).await;
    let mut bytes = fs::read(log_file(&image)).unwrap();
    let len = bytes.len() as u64;
    bytes.extend_from_slice(b"ALOG\x01\x00\x00\x00\x00\x05partial");
    fs::write(log_file(&image), &bytes).unwrap();
    let log = Log::open(&image, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
    assert_eq!(fs::metadata(log_file(&image)).unwrap().len(), len);
}

#[tokio::test]
async fn a_damaged_last_frame_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, mut model) = five_and_crash(tmp.path()).await;
    let mut bytes = fs::read(log_file(&image)).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    fs::write(log_file(&image), &bytes).unwrap();
    let log = Log::open(&image, key(1)).unwrap();
    model.pop();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn damage_before_the_last_frame_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = five_and_crash(tmp.path()).await;
    let mut bytes = fs::read(log_file(&image)).unwrap();
    // Inside the second frame (the first holds the empty head).
    bytes[260] ^= 1;
    fs::write(log_file(&image), &bytes).unwrap();
    assert!(matches!(
        Log::open(&image, key(1)),
        Err(LogError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_frame_of_a_newer_version_is_refused_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = five_and_crash(tmp.path()).await;
    let mut bytes = fs::read(log_file(&image)).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(b"ALOG\x02\x00\x00\x00\x00\x00");
    bytes.extend_from_slice(&[0; 32]);
    fs::write(log_file(&image), &bytes).unwrap();
    assert!(matches!(
        Log::open(&image, key(1)),
        Err(LogError::Corrupt { .. })
    ));
    assert_eq!(fs::read(log_file(&image)).unwrap().len(), len + 42);
}

#[tokio::test]
async fn lost_or_damaged_caches_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    let model: Vec<Vec<u8>> = (0..300).map(|i| entry(i, 50)).collect();
    log.append_batch(model[..150].to_vec()).await.unwrap();
    for e in &model[150..] {
        log.append(e.clone()).await.unwrap();
    }
    log.close().await.unwrap();

    // Caches shorter than the checkpoint says: rebuilt from the whole log.
    fs::write(dir.join("tree"), b"").unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();

    // A wrong peak (node 255 roots leaves 0-255): the checkpoint's head does not match the
    // cached tree, which is rebuilt. (Other cached nodes are trusted up to the checkpoint.)
    let mut tree = fs::read(dir.join("tree")).unwrap();
    tree[32 * 255] ^= 1;
    fs::write(dir.join("tree"), &tree).unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();

    // No checkpoint at all.
    fs::remove_file(dir.join("checkpoint")).unwrap();
    fs::remove_file(dir.join("index")).unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn opening_reads_only_the_tail_after_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    for i in 0..100 {
        log.append(entry(i, 200)).await.unwrap();
    }
    log.close().await.unwrap();
    // Overwrite entry bytes in the middle of the log: a full scan would find the damage.
    let mut bytes = fs::read(log_file(&dir)).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b = 0xee;
    }
    fs::write(log_file(&dir), &bytes).unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    assert_eq!(log.len(), 100);
    log.head().verify().unwrap();
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_entries_open_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    const N: u64 = 1_000_000;
    const BATCH: u64 = 50_000;
    for b in 0..N / BATCH {
        let batch = (b * BATCH..(b + 1) * BATCH).map(|i| entry(i, 8)).collect();
        log.append_batch(batch).await.unwrap();
    }
    let head = log.head();
    log.close().await.unwrap();

    let started = Instant::now();
    let log = Log::open(&dir, key(1)).unwrap();
    let took = started.elapsed();
    eprintln!("opened a log of {N} entries in {took:?}");
    assert_eq!(log.head(), head);
    // Generous for a debug build on a busy machine; it reads a checkpoint and 20 peaks.
    assert!(took < Duration::from_millis(500), "open took {took:?}");
    assert_eq!(log.get(N - 1).await.unwrap(), entry(N - 1, 8));
    let p = log.inclusion_proof(123_456, N).await.unwrap();
    p.verify(&entry(123_456, 8), &head.head).unwrap();
    log.close().await.unwrap();
}

/// Appends of every kind of hashing in one log, some at once so that groups mix them:
/// small ones (hashed by their callers), a few large entries (by the writer), and large
/// batches of many entries (by the caller and the writer together). The tree is the one
/// of the entries in order, before and after reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_hashing_gives_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    let batches: Vec<Vec<Vec<u8>>> = (0..24u64)
        .map(|b| match b % 4 {
            0 => vec![entry(b, 100)],
            1 => (0..3).map(|i| entry(b * 1000 + i, 40 << 10)).collect(),
            2 => (0..100).map(|i| entry(b * 1000 + i, 1024)).collect(),
            _ => (0..9).map(|i| entry(b * 1000 + i, 2048)).collect(),
        })
        .collect();
    let mut model = Vec::new();
    for round in batches.chunks(4) {
        // Four at once; their order in the log is the order their ranges say.
        let results = futures_join(&log, round).await;
        let mut placed: Vec<_> = results.into_iter().zip(round).collect();
        placed.sort_by_key(|(range, _)| range.start);
        for (range, batch) in placed {
            assert_eq!(range.start, model.len() as u64);
            model.extend(batch.iter().cloned());
        }
    }
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

async fn futures_join(log: &Log, batches: &[Vec<Vec<u8>>]) -> Vec<std::ops::Range<u64>> {
    let tasks: Vec<_> = batches
        .iter()
        .map(|b| {
            let (log, b) = (log.clone(), b.clone());
            tokio::spawn(async move { log.append_batch(b).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn one_awaited_append_is_one_sync_and_under_1_3_kib_per_kib() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path().join("db"), key(1)).unwrap();
    let before = log.storage_stats().await.unwrap();
    const N: u64 = 200;
    for i in 0..N {
        log.append(entry(i, 1024)).await.unwrap();
    }
    let after = log.storage_stats().await.unwrap();
    assert_eq!(
        after.syncs - before.syncs,
        N,
        "one fdatasync per awaited append"
    );
    let bytes = (after.log_bytes - before.log_bytes) + (after.cache_bytes - before.cache_bytes);
    let per_entry = bytes as f64 / N as f64;
    eprintln!("{per_entry:.0} bytes written per 1 KiB entry, one at a time");
    assert!(per_entry <= 1.3 * 1024.0, "{per_entry} bytes per entry");

    // Batches of 100 cost a small fraction of that in overhead.
    let before = after;
    let batch: Vec<Vec<u8>> = (0..100).map(|i| entry(i, 1024)).collect();
    log.append_batch(batch).await.unwrap();
    let after = log.storage_stats().await.unwrap();
    assert_eq!(after.syncs - before.syncs, 1);
    let bytes = (after.log_bytes - before.log_bytes) + (after.cache_bytes - before.cache_bytes);
    assert!(
        bytes as f64 / 100.0 <= 1.1 * 1024.0,
        "{bytes} bytes for 100 entries"
    );
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    // Counted twice: by the store's own sync counter and by a counting wrapper around it.
    let store = Faulty::new(FileStorage::create(&dir).unwrap());
    let control = store.control.clone();
    let log = Log::with_storage(store, key(1)).unwrap();
    let before = log.storage_stats().await.unwrap();
    let groups_before = control.appends.load(Ordering::SeqCst);
    const WRITERS: u64 = 32;
    const EACH: u64 = 20;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let log = log.clone();
        set.spawn(async move {
            let mut got = Vec::new();
            for s in 0..EACH {
                let e = entry(w * 1000 + s, 64);
                got.push((log.append(e.clone()).await.unwrap(), e));
            }
            got
        });
    }
    let mut model = vec![Vec::new(); (WRITERS * EACH) as usize];
    while let Some(r) = set.join_next().await {
        for (i, e) in r.unwrap() {
            model[i as usize] = e;
        }
    }
    let after = log.storage_stats().await.unwrap();
    let syncs = after.syncs - before.syncs;
    eprintln!(
        "{} appends by {WRITERS} writers took {syncs} syncs",
        WRITERS * EACH
    );
    let groups = control.appends.load(Ordering::SeqCst) - groups_before;
    assert_eq!(groups, syncs, "one sync per group");
    assert!(syncs < WRITERS * EACH, "{syncs} syncs");
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn fork_evidence_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let log = Log::create(&dir, key(1)).unwrap();
    log.append(b"a".to_vec()).await.unwrap();
    let a = log.head();
    log.close().await.unwrap();
    let forged = TreeHead {
        root: mth(&[b"b".to_vec()]),
        ..a.head
    }
    .sign(&key(1))
    .unwrap();
    let evidence = ForkEvidence {
        a,
        b: forged,
        proof: None,
    };
    evidence.verify().unwrap();

    let mut store = FileStorage::open(&dir).unwrap();
    assert!(store.forks().unwrap().is_empty());
    store.record_fork(&evidence).unwrap();
    drop(store);
    let store = FileStorage::open(&dir).unwrap();
    assert_eq!(store.forks().unwrap(), vec![evidence]);
}

/// A log written by the first version of the store (a version 1 checkpoint, before sparse
/// stores): 40 groups, 79 entries `entry {i}.{j}`, key seed 1, closed cleanly. Kept to show
/// that logs written then still open, and that their checkpoint is still trusted.
fn v1_fixture(to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-log");
    crash_image(&from, to)
}

fn v1_entries() -> Vec<Vec<u8>> {
    (0..40u32)
        .flat_map(|i| (0..(i % 3 + 1)).map(move |j| format!("entry {i}.{j}").into_bytes()))
        .collect()
}

#[tokio::test]
async fn a_log_of_the_first_version_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = v1_fixture(&tmp.path().join("a"));
    assert_eq!(&fs::read(dir.join("checkpoint")).unwrap()[..5], b"ACKP\x01");
    let mut model = v1_entries();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.append(b"new".to_vec()).await.unwrap();
    model.push(b"new".to_vec());
    log.close().await.unwrap();
    // Closing wrote a checkpoint of the current version.
    assert_eq!(&fs::read(dir.join("checkpoint")).unwrap()[..5], b"ACKP\x02");
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &model).await;
    log.close().await.unwrap();

    // The version 1 checkpoint is trusted: the frames it covers are not read again. A
    // damaged checksum in the first frame goes unnoticed with it, and is refused without.
    let dir = v1_fixture(&tmp.path().join("b"));
    let mut bytes = fs::read(log_file(&dir)).unwrap();
    bytes[187] ^= 1; // the last byte of the first frame (the empty head's)
    fs::write(log_file(&dir), &bytes).unwrap();
    let log = Log::open(&dir, key(1)).unwrap();
    check_against_model(&log, &v1_entries()).await;
    log.close().await.unwrap();
    fs::remove_file(dir.join("checkpoint")).unwrap();
    assert!(matches!(
        Log::open(&dir, key(1)),
        Err(LogError::Corrupt { .. })
    ));
}
