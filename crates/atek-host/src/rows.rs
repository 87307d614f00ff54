//! The host's records as rows of tables in the server database, where the original kept
//! them (reference 5.6; the rows hold our records' shapes, not the original's): one record
//! per service, user or session, at `/{table}/{key}`, so they are signed, replicable and
//! browsable like any ADB data.
//!
//! A store keeps its records in memory and hands [`Rows::save`] the whole list after each
//! change; only rows that changed are written, all in one batch (one durable log append).
//! Each row is `{"pos": n, "item": …}`: `pos` keeps the store's order.
//!
//! The stores block on these writes, as they blocked on their files before: ADB's writer is
//! a thread of its own and never waits for the caller's runtime.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use atek_db::entry::Op;
use atek_db::{Db, ListOpts, RecordPath};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::store::StoreError;

/// A table of the host's records in the server database.
pub(crate) struct Rows {
    db: Db,
    table: &'static str,
    /// What the database holds, as last written or read: key → row.
    saved: Mutex<BTreeMap<String, Value>>,
}

impl std::fmt::Debug for Rows {
    /// The table and a count: rows hold password hashes and session hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.saved.try_lock().map(|s| s.len()).ok();
        f.debug_struct("Rows")
            .field("table", &self.table)
            .field("rows", &rows)
            .finish()
    }
}

impl Rows {
    /// The rows of `table` (like `atek.cloud/service`), read once.
    pub(crate) fn open(db: &Db, table: &'static str) -> Result<Self, StoreError> {
        let prefix = RecordPath::parse(table).map_err(|e| failed(table, e))?;
        let records = db
            .list(&prefix, &ListOpts::default())
            .map_err(|e| failed(table, e))?;
        let saved = records
            .into_iter()
            .filter(|r| !r.key.contains('/'))
            .map(|r| (r.key, r.value))
            .collect();
        Ok(Self {
            db: db.clone(),
            table,
            saved: Mutex::new(saved),
        })
    }

    /// Whether the table has no rows (a first start, or state still in the old files).
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The items, in the order they were saved.
    pub(crate) fn load<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let saved = self.lock();
        let mut rows: Vec<(u64, T)> = Vec::with_capacity(saved.len());
        for (key, row) in saved.iter() {
            let pos = row.get("pos").and_then(Value::as_u64).unwrap_or(u64::MAX);
            let item = row.get("item").cloned().unwrap_or(Value::Null);
            match serde_json::from_value(item) {
                Ok(item) => rows.push((pos, item)),
                // One damaged row must not keep the host from starting (it could then not
                // be repaired through the host): it is skipped, and dropped on the next save.
                Err(e) => tracing::error!(
                    table = self.table,
                    key,
                    error = %e,
                    "skipping a damaged row of the host's records"
                ),
            }
        }
        rows.sort_by_key(|(pos, _)| *pos);
        Ok(rows.into_iter().map(|(_, item)| item).collect())
    }

    /// Makes the table hold exactly `items` (key, item), in this order.
    pub(crate) fn save<'a, T: Serialize + 'a>(
        &self,
        items: impl IntoIterator<Item = (String, &'a T)>,
    ) -> Result<(), StoreError> {
        write(vec![self.plan(items)?])
    }

    /// What [`Rows::save`] would write, to write it together with other tables' ([`write`]).
    pub(crate) fn plan<'a, T: Serialize + 'a>(
        &self,
        items: impl IntoIterator<Item = (String, &'a T)>,
    ) -> Result<Plan<'_>, StoreError> {
        let mut next = BTreeMap::new();
        for (pos, (key, item)) in items.into_iter().enumerate() {
            let item = serde_json::to_value(item).map_err(|e| failed(self.table, e))?;
            next.insert(key, json!({ "pos": pos, "item": item }));
        }
        let saved = self.lock();
        let mut ops = Vec::new();
        for (key, row) in &next {
            if saved.get(key) != Some(row) {
                ops.push(Op::Put {
                    path: self.path(key)?,
                    value: row.clone(),
                });
            }
        }
        for key in saved.keys().filter(|k| !next.contains_key(*k)) {
            ops.push(Op::Delete {
                path: self.path(key)?,
            });
        }
        Ok(Plan {
            rows: self,
            ops,
            next,
        })
    }

    fn path(&self, key: &str) -> Result<RecordPath, StoreError> {
        RecordPath::parse(&format!("{}/{key}", self.table)).map_err(|e| failed(self.table, e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The rows one table will hold, and the writes that get it there.
pub(crate) struct Plan<'a> {
    rows: &'a Rows,
    ops: Vec<Op>,
    next: BTreeMap<String, Value>,
}

/// Writes the plans of one or more tables of one database in one batch: all or nothing.
pub(crate) fn write(plans: Vec<Plan<'_>>) -> Result<(), StoreError> {
    let Some(first) = plans.first() else {
        return Ok(());
    };
    let (db, table) = (first.rows.db.clone(), first.rows.table);
    let ops: Vec<Op> = plans.iter().flat_map(|p| p.ops.iter().cloned()).collect();
    if !ops.is_empty() {
        // `unconstrained`: ADB's channels are tokio's and count against the calling task's
        // budget, which `block_on` never lets tokio refill.
        futures_executor::block_on(tokio::task::unconstrained(db.write_batch(ops)))
            .map_err(|e| failed(table, e))?;
    }
    for plan in plans {
        *plan.rows.lock() = plan.next;
    }
    Ok(())
}

fn failed(table: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

/// A state file that was moved into the server database is kept beside, renamed, so a
/// person can still read it (or roll back to an older Atek).
pub(crate) fn retire(path: &std::path::Path) -> Result<(), StoreError> {
    let to = path.with_extension("json.migrated");
    std::fs::rename(path, &to).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atek_db::{MemoryJournal, ViewLocation};
    use std::sync::Arc;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Item {
        name: String,
    }

    fn item(name: &str) -> (String, Item) {
        (name.to_owned(), Item { name: name.into() })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn rows_keep_order_and_write_only_what_changed() {
        let journal = MemoryJournal::new();
        let db = Db::open(Arc::new(journal.clone()), ViewLocation::Memory).expect("open");
        let rows = Rows::open(&db, "atek.cloud/thing").expect("rows");
        assert!(rows.is_empty());
        let items = [item("b"), item("a"), item("c")];
        rows.save(items.iter().map(|(k, v)| (k.clone(), v)))
            .expect("save");
        assert_eq!(db.len(), 3);
        // Unchanged rows are not written again; a removed one is deleted.
        rows.save(items[..2].iter().map(|(k, v)| (k.clone(), v)))
            .expect("save");
        assert_eq!(db.len(), 4);
        let again = Rows::open(&db, "atek.cloud/thing").expect("rows");
        let loaded: Vec<Item> = again.load().expect("load");
        assert_eq!(
            loaded,
            vec![items[0].1.clone_item(), items[1].1.clone_item()]
        );
    }

    impl Item {
        fn clone_item(&self) -> Item {
            Item {
                name: self.name.clone(),
            }
        }
    }
}

/// The host's stores on the server database: an older config dir's files move in once, and
/// everything reopens from the database alone.
#[cfg(test)]
mod migration {
    use std::sync::Arc;

    use atek_api::users::NewUser;
    use atek_db::{Db, MemoryJournal, ViewLocation};

    use crate::store::Store;
    use crate::users::{Scope, Sessions, Users};

    fn db(journal: &MemoryJournal) -> Db {
        Db::open(Arc::new(journal.clone()), ViewLocation::Memory).expect("open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn state_files_move_into_the_server_database_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hour = std::time::Duration::from_secs(3600);
        // An older host's files.
        let (alice, token) = {
            let users = Users::open(dir.path()).expect("users");
            let alice = users
                .create(NewUser {
                    username: "alice".into(),
                    password: "alice-password".into(),
                    role: Some("admin".into()),
                })
                .await
                .expect("create");
            let sessions = Sessions::open(dir.path(), hour).expect("sessions");
            let token = sessions.create(&alice.key).expect("session");
            let store = Store::open(dir.path()).expect("store");
            store
                .core_key(&"core.x".parse().expect("id"))
                .expect("core key");
            (alice, token)
        };
        let core_key = Store::open(dir.path())
            .expect("store")
            .core_key(&"core.x".parse().expect("id"))
            .expect("core key");

        let journal = MemoryJournal::new();
        for round in 0..2 {
            let server = db(&journal);
            let users = Users::open_in(&server, dir.path()).expect("users");
            let sessions = Sessions::open_in(&server, dir.path(), hour).expect("sessions");
            let store = Store::open_in(&server, dir.path()).expect("store");
            assert_eq!(
                users.get(&alice.key).map(|u| u.username),
                Some("alice".into()),
                "round {round}"
            );
            assert!(
                users.verify("alice", "alice-password").await.is_some(),
                "round {round}"
            );
            assert_eq!(
                sessions.resolve(token.expose(), &Scope::Host),
                Some(alice.key.clone()),
                "round {round}"
            );
            assert_eq!(
                store.core_key(&"core.x".parse().expect("id")).expect("key"),
                core_key,
                "round {round}"
            );
            for file in ["users.json", "sessions.json", "services.json"] {
                assert!(!dir.path().join(file).exists(), "{file} moved away");
                assert!(
                    dir.path().join(format!("{file}.migrated")).exists(),
                    "{file} kept, renamed"
                );
            }
            server.close().await.expect("close");
        }
    }
}
