//! Databases on atek-log's file log, used from tokio tasks as the host uses them.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use atek_db::{Db, ListOpts, LogStore, RecordPath, Store};
use serde_json::json;

/// Runs `f` on a single-threaded runtime on its own thread, failing (instead of hanging the
/// test run) if it has not finished within a minute.
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    wait.recv_timeout(Duration::from_secs(60))
        .expect("hung: a blocking wait inside a tokio task never returned");
}

/// Hundreds of log reads from one tokio task (a change feed, a view replayed when a
/// request opens a database) must not exhaust tokio's cooperative budget: the reads wait
/// on the log's thread with `block_on`, which never yields back to tokio.
#[test]
fn many_log_reads_inside_one_tokio_task_finish() {
    within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = LogStore::new(dir.path()).unwrap();
            let journal = store.create().unwrap();
            let id = journal.id();
            let db = Db::open(journal, store.view(id)).unwrap();
            for i in 0..400 {
                db.put(
                    &RecordPath::parse(&format!("/t/{i:04}")).unwrap(),
                    json!({ "i": i }),
                )
                .await
                .unwrap();
            }
            let mut changes = db.changes(0);
            for seq in 0..400 {
                assert_eq!(changes.next().await.unwrap().seq, seq);
            }
            db.close().await.unwrap();
            drop((db, changes));

            // A lost view, replayed from a request's task.
            let atek_db::ViewLocation::File(view) = store.view(id) else {
                panic!("a file store keeps views in files")
            };
            std::fs::remove_file(view).unwrap();
            let reopened = LogStore::new(dir.path()).unwrap();
            let journal = reopened.open(id).unwrap().unwrap();
            let db = Db::open(journal, reopened.view(id)).unwrap();
            let all = db.list(&RecordPath::root(), &ListOpts::default()).unwrap();
            assert_eq!(all.len(), 400);
            db.close().await.unwrap();
        });
    });
}

#[test]
fn a_database_reopens_with_its_writer_key() {
    within_a_minute(|| {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store: Arc<dyn Store> = Arc::new(LogStore::new(dir.path()).unwrap());
            let journal = store.create().unwrap();
            let id = journal.id();
            let key_file = dir.path().join(id.to_string()).join("key");
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let db = Db::open(journal, store.view(id)).unwrap();
            db.put(&RecordPath::parse("/a/b").unwrap(), json!({"x": 1}))
                .await
                .unwrap();
            db.close().await.unwrap();
            drop((db, store));
            let store = LogStore::new(dir.path()).unwrap();
            let journal = store.open(id).unwrap().unwrap();
            assert!(journal.writable());
            let db = Db::open(journal, store.view(id)).unwrap();
            db.put(&RecordPath::parse("/a/c").unwrap(), json!({"x": 2}))
                .await
                .unwrap();
            assert_eq!(db.len(), 2);
            assert!(
                store
                    .open(atek_core::DbId::from_public_key(
                        atek_core::SecretKey::generate().public()
                    ))
                    .unwrap()
                    .is_none()
            );
            db.close().await.unwrap();
        });
    });
}
