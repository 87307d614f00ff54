//! One database: a handle to its writer thread, and reads straight from its view.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atek_core::DbId;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::entry::Op;
use crate::error::DbError;
use crate::journal::Journal;
use crate::path::RecordPath;
use crate::table::{Table, TableDef};
use crate::view::{IndexQuery, ListOpts, Stored, View, ViewLocation};

/// The largest record, as JSON.
pub const MAX_RECORD_BYTES: usize = 4 << 20;
/// The most writes one group commit takes.
const MAX_GROUP: usize = 1024;
/// Queued writes before callers wait.
const QUEUE: usize = 4096;
/// How often, at most, the view is made durable while writes go on. The log is durable on
/// every write; the view only saves work on the next open.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A record as clients see it (reference 5.3), plus `valid` for records in a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The last path segment.
    pub key: String,
    /// `/a/b/c`.
    pub path: String,
    /// `hyper://{db}/a/b/c`.
    pub url: String,
    /// The index of the log entry that wrote it.
    pub seq: u64,
    /// The record.
    pub value: Value,
    /// For a record in a table: whether it satisfies the table's current schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
}

/// One change, as the log says it, for [`Changes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The log index of the change.
    pub seq: u64,
    /// What changed.
    pub op: Op,
}

/// What a table definition did.
#[derive(Debug, Clone, PartialEq)]
pub enum Defined {
    /// It was written: the table is now at this definition.
    Written {
        /// The log index of the definition.
        seq: u64,
    },
    /// The table already had this definition, or a greater revision: nothing was written.
    /// Holds the definition in force.
    Unchanged(TableDef),
}

enum Msg {
    Write {
        op: Op,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<u64, DbError>>,
    },
    Batch {
        ops: Vec<Op>,
        bytes: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<std::ops::Range<u64>, DbError>>,
    },
    Define {
        def: TableDef,
        reply: oneshot::Sender<Result<Defined, DbError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), DbError>>,
    },
}

/// A database: cheap to clone; every clone is the same database.
///
/// Writes go through one writer thread that appends them to the log in groups (one durable
/// append for every write waiting) and then applies them to the view; a write returns once it
/// is in the log and in the view. Reads go to the view from the caller's thread.
#[derive(Clone, Debug)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: DbId,
    writable: bool,
    view: Arc<View>,
    journal: Arc<dyn Journal>,
    tx: mpsc::Sender<Msg>,
    applied: watch::Receiver<u64>,
}

impl Db {
    /// Opens the database of a log, with its view at `view` (rebuilt from the log if it is
    /// missing or out of date). Blocks while the view catches up.
    pub fn open(journal: Arc<dyn Journal>, view: ViewLocation) -> Result<Db, DbError> {
        let (view, applied) = View::open(&view, journal.as_ref())?;
        let view = Arc::new(view);
        let (tx, rx) = mpsc::channel(QUEUE);
        let (applied_tx, applied_rx) = watch::channel(applied);
        let writer = Writer {
            view: view.clone(),
            journal: journal.clone(),
            applied,
            broken: None,
            applied_tx,
            synced: applied,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name(format!("adb-{}", &journal.id().to_string()[..8]))
            .spawn(move || writer.run(rx))
            .map_err(|e| DbError::Io {
                path: "adb writer thread".into(),
                source: e,
            })?;
        Ok(Db {
            inner: Arc::new(Inner {
                id: journal.id(),
                writable: journal.writable(),
                view,
                journal,
                tx,
                applied: applied_rx,
            }),
        })
    }

    /// The database's id.
    pub fn id(&self) -> DbId {
        self.inner.id
    }

    /// Whether this node can write to it.
    pub fn writable(&self) -> bool {
        self.inner.writable
    }

    /// How many log entries the view reflects.
    pub fn len(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes a record; returns it as stored.
    pub async fn put(&self, path: &RecordPath, value: Value) -> Result<Record, DbError> {
        self.check_put(path, &value)?;
        let op = Op::Put {
            path: path.clone(),
            value,
        };
        let bytes = op.encode();
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DbError::TooLarge {
                size: bytes.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        let seq = self.write(op.clone(), bytes).await?;
        let Op::Put { value, .. } = op else {
            unreachable!("built as a put above")
        };
        Ok(self.record(Stored {
            path: path.clone(),
            seq,
            value,
        }))
    }

    /// Removes a record (nothing happens if there is none); returns the seq of the delete.
    pub async fn delete(&self, path: &RecordPath) -> Result<u64, DbError> {
        if path.is_root() {
            return Err(crate::path::PathError::Empty.into());
        }
        let op = Op::Delete { path: path.clone() };
        let bytes = op.encode();
        self.write(op, bytes).await
    }

    /// Writes several puts and deletes at once: one log append, all or nothing. Returns the
    /// log indexes they got, in order. Each is checked as [`Db::put`] and [`Db::delete`]
    /// check theirs; table definitions go through [`Db::define_table`].
    pub async fn write_batch(&self, ops: Vec<Op>) -> Result<std::ops::Range<u64>, DbError> {
        let mut bytes = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                Op::Put { path, value } => self.check_put(path, value)?,
                Op::Delete { path } if path.is_root() => {
                    return Err(crate::path::PathError::Empty.into());
                }
                Op::Delete { .. } => {}
                Op::DefineTable(def) => {
                    return Err(DbError::BadQuery {
                        reason: format!(
                            "table {} can only be defined with define_table, not in a batch",
                            def.id
                        ),
                    });
                }
            }
            let encoded = op.encode();
            if encoded.len() > MAX_RECORD_BYTES {
                return Err(DbError::TooLarge {
                    size: encoded.len(),
                    limit: MAX_RECORD_BYTES,
                });
            }
            bytes.push(encoded);
        }
        if ops.is_empty() {
            let len = self.len();
            return Ok(len..len);
        }
        if !self.inner.writable {
            return Err(DbError::ReadOnly);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Batch { ops, bytes, reply }).await?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    fn check_put(&self, path: &RecordPath, value: &Value) -> Result<(), DbError> {
        if path.is_root() {
            return Err(crate::path::PathError::Empty.into());
        }
        if !value.is_object() {
            return Err(DbError::NotAnObject { found: kind(value) });
        }
        if let Some(table) = self.inner.view.table_of(path) {
            table.validate(value)?;
            table.check_key(path.key(), value)?;
        }
        Ok(())
    }

    /// Defines a table, or replaces its definition with a greater revision. Defining the
    /// same definition again, or an older revision, changes nothing (apps define their
    /// tables each time they start); a different definition with the same revision is an
    /// error.
    pub async fn define_table(&self, def: TableDef) -> Result<Defined, DbError> {
        Table::compile(def.clone())?;
        if !self.inner.writable {
            return Err(DbError::ReadOnly);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Define { def, reply }).await?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    /// A record.
    pub fn get(&self, path: &RecordPath) -> Result<Option<Record>, DbError> {
        Ok(self.inner.view.get(path)?.map(|s| self.record(s)))
    }

    /// The records under `path` (all of them, at any depth), in key order. Each record's
    /// `key` is its path below `path`, joined with `/` (reference 5.3: a listing of `/`
    /// gives keys like `my/stuff/1`).
    pub fn list(&self, path: &RecordPath, opts: &ListOpts) -> Result<Vec<Record>, DbError> {
        let depth = path.segments().len();
        Ok(self
            .inner
            .view
            .list(path, opts)?
            .into_iter()
            .map(|s| {
                let key = s.path.segments()[depth..].join("/");
                Record {
                    key,
                    ..self.record(s)
                }
            })
            .collect())
    }

    /// The records of a table found through one of its indexes, in index order.
    pub fn query(&self, table: &str, query: &IndexQuery) -> Result<Vec<Record>, DbError> {
        let t = self
            .inner
            .view
            .table(table)
            .ok_or_else(|| DbError::BadQuery {
                reason: format!("there is no table {table:?} in this database"),
            })?;
        if !t.def().indexes.iter().any(|i| i.name == query.index) {
            return Err(DbError::BadQuery {
                reason: format!("table {table} has no index {:?}", query.index),
            });
        }
        Ok(self
            .inner
            .view
            .query(&t, query)?
            .into_iter()
            .map(|s| self.record(s))
            .collect())
    }

    /// A table's definition.
    pub fn table(&self, id: &str) -> Option<TableDef> {
        self.inner.view.table(id).map(|t| t.def().clone())
    }

    /// Every table's definition, by id.
    pub fn tables(&self) -> Vec<TableDef> {
        self.inner
            .view
            .tables()
            .iter()
            .map(|t| t.def().clone())
            .collect()
    }

    /// The changes from log index `since` on: first those already written, then each new
    /// one as it is applied.
    pub fn changes(&self, since: u64) -> Changes {
        Changes {
            journal: self.inner.journal.clone(),
            applied: self.inner.applied.clone(),
            next: since,
        }
    }

    /// Stops the writer once the writes queued before are done, and makes the view durable.
    pub async fn close(&self) -> Result<(), DbError> {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Close { reply }).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    async fn write(&self, op: Op, bytes: Vec<u8>) -> Result<u64, DbError> {
        if !self.inner.writable {
            return Err(DbError::ReadOnly);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Write { op, bytes, reply }).await?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    async fn send(&self, msg: Msg) -> Result<(), DbError> {
        self.inner.tx.send(msg).await.map_err(|_| DbError::Closed)
    }

    fn record(&self, stored: Stored) -> Record {
        let valid = self
            .inner
            .view
            .table_of(&stored.path)
            .map(|t| t.is_valid(&stored.value));
        Record {
            key: stored.path.key().to_owned(),
            path: stored.path.to_string(),
            url: stored.path.url(&self.inner.id),
            seq: stored.seq,
            value: stored.value,
            valid,
        }
    }
}

/// The changes of a database from some log index on; see [`Db::changes`].
#[derive(Debug)]
pub struct Changes {
    journal: Arc<dyn Journal>,
    applied: watch::Receiver<u64>,
    next: u64,
}

impl Changes {
    /// The next change, waiting for it if need be. Fails once the database is closed.
    pub async fn next(&mut self) -> Result<Change, DbError> {
        loop {
            let applied = *self.applied.borrow_and_update();
            if self.next < applied {
                let seq = self.next;
                let bytes = self.journal.read(seq).map_err(DbError::Journal)?;
                let op = Op::decode(&bytes).map_err(|e| DbError::Entry {
                    seq,
                    reason: e.to_string(),
                })?;
                self.next += 1;
                return Ok(Change { seq, op });
            }
            self.applied.changed().await.map_err(|_| DbError::Closed)?;
        }
    }

    /// The log index of the next change.
    pub fn position(&self) -> u64 {
        self.next
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The writer thread.
struct Writer {
    view: Arc<View>,
    journal: Arc<dyn Journal>,
    applied: u64,
    /// Set when the view could not take what the log holds: writes are refused from then
    /// on (the log is the truth; the view catches up on the next open).
    broken: Option<String>,
    applied_tx: watch::Sender<u64>,
    synced: u64,
    last_sync: Instant,
}

type Pending = Vec<(Op, Vec<u8>, oneshot::Sender<Result<u64, DbError>>)>;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let mut msgs = vec![first];
            while msgs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            let mut pending: Pending = Vec::new();
            for msg in msgs {
                match msg {
                    Msg::Write { op, bytes, reply } => pending.push((op, bytes, reply)),
                    Msg::Batch { ops, bytes, reply } => {
                        self.flush(std::mem::take(&mut pending));
                        let result = self.commit(ops, bytes).map(|start| {
                            let end = self.applied;
                            start..end
                        });
                        let _ = reply.send(result);
                    }
                    Msg::Define { def, reply } => {
                        self.flush(std::mem::take(&mut pending));
                        let _ = reply.send(self.define(def));
                    }
                    Msg::Close { reply } => {
                        self.flush(std::mem::take(&mut pending));
                        let result = self
                            .view
                            .sync(self.applied)
                            .and_then(|()| self.journal.close().map_err(DbError::Journal));
                        drop(self);
                        let _ = reply.send(result);
                        return;
                    }
                }
            }
            self.flush(pending);
            if self.synced < self.applied && self.last_sync.elapsed() >= SYNC_EVERY {
                self.sync();
            }
        }
        if self.synced < self.applied {
            self.sync();
        }
    }

    fn sync(&mut self) {
        match self.view.sync(self.applied) {
            Ok(()) => self.synced = self.applied,
            Err(e) => {
                tracing::warn!(error = %e, "could not make the view durable; it will catch up from the log on the next open")
            }
        }
        self.last_sync = Instant::now();
    }

    /// Appends the group to the log, applies it to the view, answers every writer.
    fn flush(&mut self, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        let mut ops = Vec::with_capacity(pending.len());
        let mut entries = Vec::with_capacity(pending.len());
        let mut replies = Vec::with_capacity(pending.len());
        for (op, bytes, reply) in pending {
            ops.push(op);
            entries.push(bytes);
            replies.push(reply);
        }
        match self.commit(ops, entries) {
            Ok(start) => {
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(start + i as u64));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a group of writes failed");
                for reply in replies {
                    let each = match &e {
                        DbError::Broken { reason } => DbError::Broken {
                            reason: reason.clone(),
                        },
                        other => {
                            DbError::Journal(crate::journal::JournalError::new(other.to_string()))
                        }
                    };
                    let _ = reply.send(Err(each));
                }
            }
        }
    }

    fn commit(&mut self, ops: Vec<Op>, entries: Vec<Vec<u8>>) -> Result<u64, DbError> {
        if let Some(reason) = &self.broken {
            return Err(DbError::Broken {
                reason: reason.clone(),
            });
        }
        // Never append behind a view that lags the log: the answers would be wrong.
        if self.journal.len() != self.applied {
            self.catch_up()?;
        }
        let range = self.journal.append(entries).map_err(DbError::Journal)?;
        let numbered: Vec<(u64, Op)> = range.clone().zip(ops).collect();
        let applied = if range.start == self.applied {
            self.view
                .apply(&numbered, range.end, redb::Durability::None)
        } else {
            Err(DbError::Entry {
                seq: range.start,
                reason: format!(
                    "the log grew elsewhere (ADB expected index {})",
                    self.applied
                ),
            })
        };
        if let Err(e) = applied {
            // The entries are durable in the log, so the writes happened: only the view
            // failed. Try once to bring it up to the log; failing that, refuse writes.
            if self.catch_up().is_err() {
                let reason = format!(
                    "its view could not take entries {}..{} that are safe in its log ({e}); they show after the host restarts",
                    range.start, range.end
                );
                tracing::error!(reason, "ADB database stopped taking writes");
                self.broken = Some(reason.clone());
                return Err(DbError::Broken { reason });
            }
        }
        self.applied = range.end;
        self.applied_tx.send_replace(range.end);
        Ok(range.start)
    }

    /// Applies what the log holds beyond the view.
    fn catch_up(&mut self) -> Result<(), DbError> {
        let len = self.journal.len();
        let mut ops = Vec::new();
        for seq in self.applied..len {
            let bytes = self.journal.read(seq).map_err(DbError::Journal)?;
            let op = Op::decode(&bytes).map_err(|e| DbError::Entry {
                seq,
                reason: e.to_string(),
            })?;
            ops.push((seq, op));
        }
        self.view.apply(&ops, len, redb::Durability::None)?;
        self.applied = len;
        self.applied_tx.send_replace(len);
        Ok(())
    }

    fn define(&mut self, def: TableDef) -> Result<Defined, DbError> {
        if let Some(current) = self.view.table(&def.id) {
            let current = current.def();
            if *current == def || current.revision > def.revision {
                return Ok(Defined::Unchanged(current.clone()));
            }
            if current.revision == def.revision {
                return Err(DbError::RevisionConflict {
                    table: def.id,
                    current: current.revision,
                });
            }
        }
        let op = Op::DefineTable(def);
        let bytes = op.encode();
        let seq = self.commit(vec![op], vec![bytes])?;
        Ok(Defined::Written { seq })
    }
}
