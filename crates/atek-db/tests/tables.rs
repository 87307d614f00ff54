//! Tables (schemas, revisions, key templates, indexes), views rebuilt from the log, change
//! streams and group commit.
#![allow(clippy::unwrap_used)]

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use atek_core::DbId;
use atek_db::entry::Op;
use atek_db::{
    Db, DbError, Defined, IndexDef, IndexQuery, Journal, JournalError, ListOpts, MemoryJournal,
    RecordPath, TableDef, TableError, ViewLocation,
};
use serde_json::{Value, json};

fn path(p: &str) -> RecordPath {
    RecordPath::parse(p).unwrap()
}

fn memory() -> Db {
    Db::open(Arc::new(MemoryJournal::new()), ViewLocation::Memory).unwrap()
}

fn posts(revision: u32, schema: Value, indexes: &[(&str, &str)]) -> TableDef {
    TableDef {
        id: "example.com/posts".into(),
        revision,
        json_schema: Some(schema),
        key_template: None,
        indexes: indexes
            .iter()
            .map(|(name, path)| IndexDef {
                name: (*name).into(),
                path: (*path).into(),
            })
            .collect(),
    }
}

fn v1_schema() -> Value {
    json!({
        "type": "object",
        "required": ["title"],
        "properties": {"title": {"type": "string"}, "votes": {"type": "integer"}}
    })
}

#[tokio::test]
async fn writes_that_fail_the_schema_are_refused_with_the_failing_place() {
    let db = memory();
    db.define_table(posts(1, v1_schema(), &[])).await.unwrap();
    let err = db
        .put(
            &path("/example.com/posts/p1"),
            json!({"title": "x", "votes": "many"}),
        )
        .await
        .unwrap_err();
    match &err {
        DbError::Table(TableError::Schema { table, at, .. }) => {
            assert_eq!(table, "example.com/posts");
            assert_eq!(at, "/votes");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/votes"), "{err}");
    // Nothing was written: the log holds only the definition.
    assert_eq!(db.len(), 1);
    assert!(db.get(&path("/example.com/posts/p1")).unwrap().is_none());
    // Records outside the table are free-form; records must be objects.
    db.put(&path("/example.com/other/x"), json!({"any": 1}))
        .await
        .unwrap();
    assert!(matches!(
        db.put(&path("/example.com/other/y"), json!([1])).await,
        Err(DbError::NotAnObject { .. })
    ));
}

#[tokio::test]
async fn revisions_only_grow_and_redefining_is_idempotent() {
    let db = memory();
    assert!(matches!(
        db.define_table(posts(2, v1_schema(), &[])).await.unwrap(),
        Defined::Written { .. }
    ));
    // The same definition again (an app starting twice): nothing written.
    let len = db.len();
    assert!(matches!(
        db.define_table(posts(2, v1_schema(), &[])).await.unwrap(),
        Defined::Unchanged(_)
    ));
    // An older revision (an old version of the app): the newer definition stays.
    match db.define_table(posts(1, json!({}), &[])).await.unwrap() {
        Defined::Unchanged(current) => assert_eq!(current.revision, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.len(), len);
    // A different definition under the same revision: refused.
    assert!(matches!(
        db.define_table(posts(2, json!({}), &[])).await,
        Err(DbError::RevisionConflict { current: 2, .. })
    ));
    // A broken one: refused before anything is written.
    assert!(matches!(
        db.define_table(posts(3, json!({"type": 7}), &[])).await,
        Err(DbError::Table(TableError::Definition { .. }))
    ));
    assert_eq!(db.table("example.com/posts").unwrap().revision, 2);
}

/// Tables never break old records: a new revision carries the old shape and the new one
/// with `oneOf`, so records written under revision 1 stay valid under revision 2.
#[tokio::test]
async fn one_of_carries_old_and_new_shapes_across_revisions() {
    let db = memory();
    db.define_table(posts(1, v1_schema(), &[])).await.unwrap();
    db.put(&path("/example.com/posts/old"), json!({"title": "first"}))
        .await
        .unwrap();
    let v2 = json!({
        "oneOf": [
            v1_schema(),
            {
                "type": "object",
                "required": ["schemaVersion", "heading"],
                "properties": {
                    "schemaVersion": {"const": 2},
                    "heading": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }
            }
        ]
    });
    db.define_table(posts(2, v2, &[])).await.unwrap();
    db.put(
        &path("/example.com/posts/new"),
        json!({"schemaVersion": 2, "heading": "second", "tags": ["a"]}),
    )
    .await
    .unwrap();
    let all = db
        .list(&path("/example.com/posts"), &ListOpts::default())
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r.valid == Some(true)), "{all:?}");
    // A revision that drops the old shape would flag old records on read.
    db.define_table(posts(
        3,
        json!({"type": "object", "required": ["heading"]}),
        &[],
    ))
    .await
    .unwrap();
    let old = db.get(&path("/example.com/posts/old")).unwrap().unwrap();
    assert_eq!(old.valid, Some(false));
}

#[tokio::test]
async fn key_templates_bind_keys_to_values() {
    let db = memory();
    let mut def = posts(1, json!({}), &[]);
    def.key_template = Some("{{/author}}-{{/n}}".into());
    db.define_table(def).await.unwrap();
    db.put(
        &path("/example.com/posts/ann-1"),
        json!({"author": "ann", "n": 1}),
    )
    .await
    .unwrap();
    assert!(matches!(
        db.put(
            &path("/example.com/posts/ann-2"),
            json!({"author": "ann", "n": 1})
        )
        .await,
        Err(DbError::Table(TableError::Key { .. }))
    ));
}

#[tokio::test]
async fn index_lookups_and_ranges() {
    let db = memory();
    db.define_table(posts(
        1,
        v1_schema(),
        &[("votes", "/votes"), ("title", "/title"), ("tags", "/tags")],
    ))
    .await
    .unwrap();
    for (key, title, votes, tags) in [
        ("a", "zebra", 5, json!(["x"])),
        ("b", "apple", -3, json!(["x", "y"])),
        ("c", "mango", 10, json!([])),
        ("d", "apple", 7, json!(["y"])),
    ] {
        db.put(
            &path(&format!("/example.com/posts/{key}")),
            json!({"title": title, "votes": votes, "tags": tags}),
        )
        .await
        .unwrap();
    }
    let keys = |q: IndexQuery| -> Vec<String> {
        db.query("example.com/posts", &q)
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect()
    };
    let q = |index: &str| IndexQuery {
        index: index.into(),
        ..Default::default()
    };
    assert_eq!(keys(q("votes")), ["b", "a", "d", "c"]);
    assert_eq!(
        keys(IndexQuery {
            reverse: true,
            limit: Some(2),
            ..q("votes")
        }),
        ["c", "d"]
    );
    assert_eq!(
        keys(IndexQuery {
            gt: Some(json!(5)),
            ..q("votes")
        }),
        ["d", "c"]
    );
    assert_eq!(
        keys(IndexQuery {
            gte: Some(json!(5)),
            lt: Some(json!(10)),
            ..q("votes")
        }),
        ["a", "d"]
    );
    assert_eq!(
        keys(IndexQuery {
            lte: Some(json!(5)),
            ..q("votes")
        }),
        ["b", "a"]
    );
    assert_eq!(
        keys(IndexQuery {
            eq: Some(json!("apple")),
            ..q("title")
        }),
        ["b", "d"]
    );
    assert_eq!(
        keys(IndexQuery {
            eq: Some(json!("y")),
            ..q("tags")
        }),
        ["b", "d"]
    );
    // Updates and deletes move and drop index entries.
    db.put(
        &path("/example.com/posts/b"),
        json!({"title": "kiwi", "votes": 100}),
    )
    .await
    .unwrap();
    db.delete(&path("/example.com/posts/d")).await.unwrap();
    assert!(
        keys(IndexQuery {
            eq: Some(json!("apple")),
            ..q("title")
        })
        .is_empty()
    );
    assert_eq!(keys(q("votes")), ["a", "c", "b"]);
    // Unknown tables and indexes, and values that cannot be indexed, are clear errors.
    assert!(matches!(
        db.query("nope/t", &q("votes")),
        Err(DbError::BadQuery { .. })
    ));
    assert!(matches!(
        db.query("example.com/posts", &q("nope")),
        Err(DbError::BadQuery { .. })
    ));
    assert!(matches!(
        db.query(
            "example.com/posts",
            &IndexQuery {
                eq: Some(json!({"a": 1})),
                ..q("title")
            }
        ),
        Err(DbError::BadQuery { .. })
    ));
    // A new revision that declares a new index files existing records under it.
    db.define_table(posts(2, v1_schema(), &[("len", "/title")]))
        .await
        .unwrap();
    assert_eq!(keys(q("len")), ["b", "c", "a"]);
}

/// Everything a client can ask, as one comparable value.
fn answers(db: &Db) -> Value {
    let list = |p: &str, opts: ListOpts| -> Value {
        serde_json::to_value(db.list(&path(p), &opts).unwrap()).unwrap()
    };
    json!({
        "all": list("/", ListOpts::default()),
        "range": list("/example.com/posts", ListOpts { gt: Some("b".into()), limit: Some(5), reverse: true, ..Default::default() }),
        "tables": serde_json::to_value(db.tables()).unwrap(),
        "byVotes": serde_json::to_value(db.query("example.com/posts", &IndexQuery { index: "votes".into(), ..Default::default() }).unwrap()).unwrap(),
        "len": db.len(),
    })
}

async fn fill(db: &Db) {
    db.define_table(posts(1, v1_schema(), &[("votes", "/votes")]))
        .await
        .unwrap();
    for i in 0..200 {
        db.put(
            &path(&format!("/example.com/posts/p{i:03}")),
            json!({"title": format!("post {i}"), "votes": (i * 37) % 101}),
        )
        .await
        .unwrap();
        if i % 7 == 0 {
            db.delete(&path(&format!("/example.com/posts/p{:03}", i / 2)))
                .await
                .unwrap();
        }
    }
    db.put(&path("/elsewhere/x"), json!({"free": true}))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_outdated_or_foreign_view_is_rebuilt_with_identical_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("view.redb");
    let journal = MemoryJournal::new();
    let open = || Db::open(Arc::new(journal.clone()), ViewLocation::File(file.clone())).unwrap();

    let db = open();
    fill(&db).await;
    let expected = answers(&db);
    db.close().await.unwrap();
    drop(db);

    // Reopened as is.
    let db = open();
    assert_eq!(answers(&db), expected);
    db.close().await.unwrap();
    drop(db);

    // Lost.
    std::fs::remove_file(&file).unwrap();
    let db = open();
    assert_eq!(answers(&db), expected);
    db.close().await.unwrap();
    drop(db);

    // Of another format: mark it so, as an older or newer Atek would have left it.
    {
        let view = redb::Database::create(&file).unwrap();
        let txn = view.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("format", 999u32.to_be_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let db = open();
    assert_eq!(answers(&db), expected);
    db.close().await.unwrap();
    drop(db);

    // Of another database: a view file moved between databases.
    let other = MemoryJournal::new();
    let db = Db::open(Arc::new(other.clone()), ViewLocation::File(file.clone())).unwrap();
    assert_eq!(db.len(), 0);
    assert!(
        db.list(&RecordPath::root(), &ListOpts::default())
            .unwrap()
            .is_empty()
    );
    db.close().await.unwrap();
    drop(db);
    let db = open();
    assert_eq!(answers(&db), expected);
    db.close().await.unwrap();
    drop(db);

    // Behind its log (the process died before the view caught up): it catches up.
    let db = open();
    db.close().await.unwrap();
    drop(db);
    // The same log, grown by a run whose view never caught up:
    journal
        .append(vec![
            Op::Put {
                path: path("/elsewhere/late"),
                value: json!({"late": 1}),
            }
            .encode(),
        ])
        .unwrap();
    let db = open();
    assert_eq!(
        db.get(&path("/elsewhere/late")).unwrap().unwrap().value,
        json!({"late": 1})
    );
    db.close().await.unwrap();
    drop(db);

    // Ahead of its log (the log lost an unacknowledged tail): rebuilt to what the log says.
    journal.truncate(journal.len() - 1);
    let db = open();
    assert_eq!(answers(&db), expected);
    db.close().await.unwrap();
}

#[tokio::test]
async fn changes_stream_from_any_point_then_live() {
    let db = memory();
    db.put(&path("/a/1"), json!({"n": 1})).await.unwrap();
    db.delete(&path("/a/1")).await.unwrap();
    let mut changes = db.changes(0);
    let first = changes.next().await.unwrap();
    assert_eq!(first.seq, 0);
    assert!(matches!(first.op, Op::Put { .. }));
    assert!(matches!(
        changes.next().await.unwrap().op,
        Op::Delete { .. }
    ));
    let mut late = db.changes(1);
    assert_eq!(late.next().await.unwrap().seq, 1);

    let writer = db.clone();
    let live = tokio::spawn(async move { changes.next().await.unwrap() });
    tokio::task::yield_now().await;
    writer.put(&path("/a/2"), json!({"n": 2})).await.unwrap();
    let change = live.await.unwrap();
    assert_eq!(change.seq, 2);
    assert_eq!(change.op.path(), Some(&path("/a/2")));
}

/// Counts appends, to show that concurrent writers share them.
#[derive(Debug)]
struct Counting {
    inner: MemoryJournal,
    appends: AtomicUsize,
}

impl Journal for Counting {
    fn id(&self) -> DbId {
        self.inner.id()
    }
    fn writable(&self) -> bool {
        true
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn append(&self, entries: Vec<Vec<u8>>) -> Result<Range<u64>, JournalError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        // Slow, as an fsync is: writes queue up meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.inner.append(entries)
    }
    fn read(&self, index: u64) -> Result<Vec<u8>, JournalError> {
        self.inner.read(index)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_appends() {
    let journal = Arc::new(Counting {
        inner: MemoryJournal::new(),
        appends: AtomicUsize::new(0),
    });
    let db = Db::open(journal.clone(), ViewLocation::Memory).unwrap();
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    db.put(&path(&format!("/w{w}/{i}")), json!({"i": i}))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(db.len(), 640);
    let appends = journal.appends.load(Ordering::SeqCst);
    assert!(appends < 640 / 4, "{appends} appends for 640 writes");
    assert_eq!(
        db.list(&RecordPath::root(), &ListOpts::default())
            .unwrap()
            .len(),
        640
    );
}

#[tokio::test]
async fn a_failing_log_fails_the_write_and_stores_nothing() {
    #[derive(Debug)]
    struct Broken(MemoryJournal);
    impl Journal for Broken {
        fn id(&self) -> DbId {
            self.0.id()
        }
        fn writable(&self) -> bool {
            true
        }
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn append(&self, _: Vec<Vec<u8>>) -> Result<Range<u64>, JournalError> {
            Err(JournalError::new("disk full"))
        }
        fn read(&self, index: u64) -> Result<Vec<u8>, JournalError> {
            self.0.read(index)
        }
    }
    let db = Db::open(Arc::new(Broken(MemoryJournal::new())), ViewLocation::Memory).unwrap();
    let err = db.put(&path("/a/b"), json!({})).await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(db.get(&path("/a/b")).unwrap().is_none());
    assert_eq!(db.len(), 0);
}

#[tokio::test]
async fn batches_are_one_append_and_checked_like_single_writes() {
    let journal = Arc::new(Counting {
        inner: MemoryJournal::new(),
        appends: AtomicUsize::new(0),
    });
    let db = Db::open(journal.clone(), ViewLocation::Memory).unwrap();
    db.define_table(posts(1, v1_schema(), &[])).await.unwrap();
    let before = journal.appends.load(Ordering::SeqCst);
    let range = db
        .write_batch(vec![
            Op::Put {
                path: path("/example.com/posts/a"),
                value: json!({"title": "a"}),
            },
            Op::Put {
                path: path("/free/b"),
                value: json!({"any": true}),
            },
            Op::Delete {
                path: path("/example.com/posts/a"),
            },
        ])
        .await
        .unwrap();
    assert_eq!(range, 1..4);
    assert_eq!(journal.appends.load(Ordering::SeqCst), before + 1);
    assert!(db.get(&path("/example.com/posts/a")).unwrap().is_none());
    assert!(db.get(&path("/free/b")).unwrap().is_some());
    // One bad write refuses the whole batch, before anything is appended.
    let err = db
        .write_batch(vec![
            Op::Put {
                path: path("/free/c"),
                value: json!({}),
            },
            Op::Put {
                path: path("/example.com/posts/x"),
                value: json!({"title": 1}),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Table(TableError::Schema { .. })));
    assert!(db.get(&path("/free/c")).unwrap().is_none());
    assert_eq!(db.len(), 4);
}

/// A log that grew behind the view's back (written by another process, or a view that
/// fell behind after an error) is applied before the next write, never skipped.
#[tokio::test]
async fn a_view_behind_its_log_catches_up_before_writing() {
    let journal = MemoryJournal::new();
    let db = Db::open(Arc::new(journal.clone()), ViewLocation::Memory).unwrap();
    db.put(&path("/a/1"), json!({"n": 1})).await.unwrap();
    journal
        .append(vec![
            Op::Put {
                path: path("/a/2"),
                value: json!({"n": 2}),
            }
            .encode(),
        ])
        .unwrap();
    let record = db.put(&path("/a/3"), json!({"n": 3})).await.unwrap();
    assert_eq!(record.seq, 2);
    let all: Vec<String> = db
        .list(&path("/a"), &ListOpts::default())
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(all, ["1", "2", "3"]);
    assert_eq!(db.len(), 3);
}

/// Equality lookups return exactly the records with that value: not a string that merely
/// starts with it and a NUL, not a different integer beyond 2^53.
#[tokio::test]
async fn index_lookups_are_exact() {
    let db = memory();
    db.define_table(posts(1, json!({}), &[("name", "/name"), ("n", "/n")]))
        .await
        .unwrap();
    db.put(
        &path("/example.com/posts/a"),
        json!({"name": "alice", "n": 9007199254740992u64}),
    )
    .await
    .unwrap();
    db.put(
        &path("/example.com/posts/b"),
        json!({"name": "alice\u{0}evil", "n": 9007199254740993u64}),
    )
    .await
    .unwrap();
    let keys = |index: &str, eq: Value| -> Vec<String> {
        db.query(
            "example.com/posts",
            &IndexQuery {
                index: index.into(),
                eq: Some(eq),
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect()
    };
    assert_eq!(keys("name", json!("alice")), ["a"]);
    assert_eq!(keys("name", json!("alice\u{0}evil")), ["b"]);
    assert_eq!(keys("n", json!(9007199254740992u64)), ["a"]);
    assert_eq!(keys("n", json!(9007199254740993u64)), ["b"]);
}
