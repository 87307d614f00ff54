//! ADB, Atek's document database: every database is a signed append-only log (one writer,
//! id = the log's public key) and everything else is a view of that log.
//!
//! - **Records** are JSON objects at paths like `/example.com/notes/n1` (reference 5.3).
//!   Writing one appends an entry to the log ([`entry`] has the format) and then updates the
//!   view; a write returns once both are done, so a read that follows sees it.
//! - **Tables** are defined in the database itself: a JSON Schema every record of the table
//!   must satisfy, a revision (a definition replaces another only with a greater one), a key
//!   template and indexes. A record at `/example.com/notes/n1` belongs to the table
//!   `example.com/notes`. A write that fails the schema is refused with the failing place;
//!   a read flags records that fail the table's current schema (`valid: false`).
//! - **The view** (records, tables, indexes) lives in redb. It can always be thrown away:
//!   opening a database whose view is missing, outdated or of another format rebuilds it
//!   from the log, with the same answers.
//! - **Changes** stream from any log index on ([`Db::changes`]).
//!
//! The log sits behind the [`Journal`] trait: `atek-log`'s signed log ([`LogStore`] keeps
//! a home's databases on disk), or [`MemoryJournal`] in tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), atek_db::DbError> {
//! use std::sync::Arc;
//! use atek_db::{Db, IndexDef, IndexQuery, ListOpts, MemoryJournal, RecordPath, TableDef, ViewLocation};
//! use serde_json::json;
//!
//! let db = Db::open(Arc::new(MemoryJournal::new()), ViewLocation::Memory)?;
//! db.define_table(TableDef {
//!     id: "example.com/notes".into(),
//!     revision: 1,
//!     json_schema: Some(json!({"type": "object", "required": ["text"],
//!                               "properties": {"text": {"type": "string"}}})),
//!     key_template: None,
//!     indexes: vec![IndexDef { name: "text".into(), path: "/text".into() }],
//! }).await?;
//!
//! let path = RecordPath::parse("/example.com/notes/n1")?;
//! db.put(&path, json!({"text": "hello"})).await?;
//! assert!(db.put(&path, json!({"text": 5})).await.is_err()); // refused: /text is not a string
//!
//! let record = db.get(&path)?.unwrap();
//! assert_eq!(record.url, format!("hyper://{}/example.com/notes/n1", db.id()));
//! // Listing keys are paths below the listed one.
//! assert_eq!(db.list(&RecordPath::parse("/example.com")?, &ListOpts::default())?[0].key, "notes/n1");
//! let found = db.query("example.com/notes", &IndexQuery {
//!     index: "text".into(), eq: Some(json!("hello")), ..Default::default()
//! })?;
//! assert_eq!(found.len(), 1);
//! # Ok(()) }
//! ```

mod adb;
mod db;
pub mod entry;
mod error;
mod journal;
mod path;
mod store;
mod table;
mod view;

pub use adb::{
    Access, Adb, AdbError, Caller, DATABASE_TABLE, DbAdminConfig, DbConfig, DbInfo, DbRecord,
    MAX_DATABASES_PER_USER, MemoryStore, Owner, Store,
};
pub use db::{Change, Changes, Db, Defined, MAX_RECORD_BYTES, Record};
pub use error::DbError;
pub use journal::{Journal, JournalError, MemoryJournal};
pub use path::{MAX_PATH_BYTES, MAX_SEGMENTS, PathError, PathParam, RecordPath};
pub use store::{LogJournal, LogStore};
pub use table::{IndexDef, MAX_INDEXED_BYTES, MAX_INDEXES, Table, TableDef, TableError};
pub use view::{IndexQuery, ListOpts, VIEW_FORMAT, ViewLocation};
