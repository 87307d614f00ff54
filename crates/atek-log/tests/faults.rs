//! A failed write or sync fails every append of its group, poisons the writer, and leaves
//! nothing acknowledged that is not durable.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use atek_log::{FileStorage, Log, LogError, MemoryStorage, Storage};
use common::{Fault, Faulty, check_against_model, key};

/// Group 1 is the empty head, group 2 holds "a" (held at the gate while b, c and d queue),
/// group 3 holds b, c and d and fails.
async fn failed_group<S: Storage>(inner: S, fault: Fault) -> Vec<Vec<u8>> {
    let mut store = Faulty::new(inner);
    let (gate_tx, gate_rx) = mpsc::channel();
    *store.control.gate.lock().unwrap() = Some(gate_rx);
    store.gate_at = Some(2);
    store.fail_at = Some((3, fault));
    let control = store.control.clone();
    let log = Log::with_storage(store, key(1)).unwrap();

    let first = tokio::spawn({
        let log = log.clone();
        async move { log.append(b"a".to_vec()).await }
    });
    control.entered.notified().await;
    // The writer is inside group 2. Queue three appends, then let it go on: they form
    // group 3, which fails.
    let (b, c, d, ()) = tokio::join!(
        log.append(b"b".to_vec()),
        log.append(b"c".to_vec()),
        log.append_batch(vec![b"d1".to_vec(), b"d2".to_vec()]),
        async {
            gate_tx.send(()).unwrap();
        }
    );
    assert_eq!(first.await.unwrap().unwrap(), 0);
    let sources: Vec<_> = [b.map(|_| ()), c.map(|_| ()), d.map(|_| ())]
        .into_iter()
        .map(|r| match r {
            Err(LogError::GroupFailed { source }) => source,
            other => panic!("expected GroupFailed, got {other:?}"),
        })
        .collect();
    // One failure, shared by every waiter of the group.
    assert!(std::sync::Arc::ptr_eq(&sources[0], &sources[1]));
    assert!(std::sync::Arc::ptr_eq(&sources[0], &sources[2]));
    assert_eq!(control.appends.load(Ordering::SeqCst), 3);

    // Nothing of the failed group is visible, and the writer takes no more appends.
    let model = vec![b"a".to_vec()];
    check_against_model(&log, &model).await;
    assert!(matches!(
        log.append(b"e".to_vec()).await,
        Err(LogError::Poisoned)
    ));
    assert_eq!(
        control.appends.load(Ordering::SeqCst),
        3,
        "no write after poison"
    );
    log.close().await.unwrap();
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_write_failure() {
    failed_group(MemoryStorage::new(), Fault::BeforeWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_sync_failure() {
    failed_group(MemoryStorage::new(), Fault::AfterWrite).await;
}

async fn file_case(dir: &Path, fault: Fault) {
    let model = failed_group(FileStorage::create(dir).unwrap(), fault).await;
    // Reopened, the log verifies and holds every acknowledged entry. After a failed sync
    // the unacknowledged group may be there too (it reached the file); after a failed
    // write it is not.
    let log = Log::open(dir, key(1)).unwrap();
    let len = log.len();
    match fault {
        Fault::BeforeWrite => assert_eq!(len, 1),
        Fault::AfterWrite => assert_eq!(len, 5),
    }
    assert_eq!(log.get(0).await.unwrap(), model[0]);
    log.head().verify().unwrap();
    let p = log.inclusion_proof(0, len).await.unwrap();
    p.verify(&model[0], &log.head().head).unwrap();
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_write_failure() {
    let tmp = tempfile::tempdir().unwrap();
    file_case(&tmp.path().join("db"), Fault::BeforeWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_sync_failure() {
    let tmp = tempfile::tempdir().unwrap();
    file_case(&tmp.path().join("db"), Fault::AfterWrite).await;
}

#[tokio::test]
async fn a_failed_first_head_fails_creation() {
    let mut store = Faulty::new(MemoryStorage::new());
    store.fail_at = Some((1, Fault::BeforeWrite));
    assert!(matches!(
        Log::with_storage(store, key(1)),
        Err(LogError::Io { .. })
    ));
}
