//! The view: records, tables and indexes materialised in redb from the log.
//!
//! Layout (format [`VIEW_FORMAT`]):
//! - `meta`: `format` (u32 BE), `db` (the log id), `applied` (u64 BE: how many log entries
//!   the view reflects);
//! - `records`: the record's storage key (segments joined with NUL) → seq (u64 BE) ‖ JSON;
//! - `tables`: table id → its definition (JSON);
//! - `index`: table id ‖ 0 ‖ index name ‖ 0 ‖ encoded value ‖ record storage key → the
//!   record's storage key.
//!
//! The view can always be thrown away: opening one that is missing, of another format, of
//! another database or ahead of its log rebuilds it from the log.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::entry::Op;
use crate::error::DbError;
use crate::journal::Journal;
use crate::path::RecordPath;
use crate::table::{Table, TableDef, encode_index_value};

/// The view's layout version; a view of another version is rebuilt.
pub const VIEW_FORMAT: u32 = 2;

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const RECORDS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records");
const TABLES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tables");
const INDEX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("index");

/// How many log entries one write transaction applies when catching up.
const REPLAY_CHUNK: u64 = 4096;

pub(crate) fn view_error(e: impl Into<redb::Error>) -> DbError {
    DbError::View {
        source: Box::new(e.into()),
    }
}

/// Compiled table definitions, shared by the writer and readers.
pub(crate) type Tables = Arc<RwLock<HashMap<String, Arc<Table>>>>;

/// A record as stored: the seq of the entry that wrote it, and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub(crate) path: RecordPath,
    pub(crate) seq: u64,
    pub(crate) value: Value,
}

pub(crate) struct View {
    db: redb::Database,
    pub(crate) tables: Tables,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("View")
    }
}

/// Where a view lives.
#[derive(Debug, Clone)]
pub enum ViewLocation {
    /// In this file (created if missing).
    File(std::path::PathBuf),
    /// In memory.
    Memory,
}

impl View {
    /// Opens (or makes) the view and brings it up to the log's length. Returns the view and
    /// how many entries it reflects.
    pub(crate) fn open(at: &ViewLocation, journal: &dyn Journal) -> Result<(View, u64), DbError> {
        let db = create(at)?;
        let id = journal.id();
        let meta = read_meta(&db)?;
        let (db, applied) = match meta {
            Some((format, db_id, applied))
                if format == VIEW_FORMAT
                    && db_id == id.public_key().as_bytes()[..]
                    && applied <= journal.len() =>
            {
                (db, applied)
            }
            other => {
                if other.is_some() {
                    tracing::warn!(db = %id, "the view is of another format or database, or ahead of its log: rebuilding it from the log");
                }
                drop(db);
                if let ViewLocation::File(path) = at {
                    remove(path)?;
                }
                let db = create(at)?;
                init(&db, id)?;
                (db, 0)
            }
        };
        let view = View {
            db,
            tables: Arc::default(),
        };
        view.load_tables()?;
        let mut applied = applied;
        let len = journal.len();
        if applied < len {
            tracing::info!(db = %id, from = applied, to = len, "bringing the view up to date with the log");
        }
        while applied < len {
            let end = (applied + REPLAY_CHUNK).min(len);
            let mut ops = Vec::new();
            for seq in applied..end {
                let bytes = journal.read(seq).map_err(DbError::Journal)?;
                let op = Op::decode(&bytes).map_err(|e| DbError::Entry {
                    seq,
                    reason: e.to_string(),
                })?;
                ops.push((seq, op));
            }
            view.apply(&ops, end, redb::Durability::None)?;
            applied = end;
        }
        view.sync(applied)?;
        Ok((view, applied))
    }

    fn load_tables(&self) -> Result<(), DbError> {
        let txn = self.db.begin_read().map_err(view_error)?;
        let table = txn.open_table(TABLES).map_err(view_error)?;
        let mut map = HashMap::new();
        for row in table.iter().map_err(view_error)? {
            let (id, def) = row.map_err(view_error)?;
            let def: TableDef =
                serde_json::from_slice(def.value()).map_err(|e| DbError::Entry {
                    seq: 0,
                    reason: format!("table {} in the view: {e}", id.value()),
                })?;
            if let Ok(t) = Table::compile(def) {
                map.insert(id.value().to_owned(), Arc::new(t));
            }
        }
        *self.tables.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Applies entries (in log order, ending at `applied`) in one transaction.
    pub(crate) fn apply(
        &self,
        ops: &[(u64, Op)],
        applied: u64,
        durability: redb::Durability,
    ) -> Result<(), DbError> {
        // Definitions made by these entries: seen by the later entries at once, by readers
        // only once the transaction is committed.
        let mut defined: HashMap<String, Arc<Table>> = HashMap::new();
        let table_of = |defined: &HashMap<String, Arc<Table>>, path: &RecordPath| {
            let id = path.table_id()?;
            defined.get(&id).cloned().or_else(|| self.table(&id))
        };
        let mut txn = self.db.begin_write().map_err(view_error)?;
        txn.set_durability(durability).map_err(view_error)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(view_error)?;
            let mut tables = txn.open_table(TABLES).map_err(view_error)?;
            let mut index = txn.open_table(INDEX).map_err(view_error)?;
            let mut meta = txn.open_table(META).map_err(view_error)?;
            for (seq, op) in ops {
                match op {
                    Op::Put { path, value } => {
                        let key = path.storage_key();
                        let old = records
                            .get(key.as_slice())
                            .map_err(view_error)?
                            .map(|g| g.value().to_vec());
                        let table = table_of(&defined, path);
                        if let Some(table) = &table {
                            if let Some(old) = old.as_deref().and_then(|o| decode(o).ok()) {
                                unindex(&mut index, table, &key, &old.1)?;
                            }
                            reindex(&mut index, table, &key, value)?;
                        }
                        records
                            .insert(key.as_slice(), encode(*seq, value).as_slice())
                            .map_err(view_error)?;
                    }
                    Op::Delete { path } => {
                        let key = path.storage_key();
                        let old = records
                            .remove(key.as_slice())
                            .map_err(view_error)?
                            .map(|g| g.value().to_vec());
                        if let (Some(table), Some(old)) = (
                            self.table_of(path),
                            old.as_deref().and_then(|o| decode(o).ok()),
                        ) {
                            unindex(&mut index, &table, &key, &old.1)?;
                        }
                    }
                    Op::DefineTable(def) => {
                        let current = defined
                            .get(&def.id)
                            .cloned()
                            .or_else(|| self.table(&def.id));
                        if current
                            .as_ref()
                            .is_some_and(|c| c.def().revision >= def.revision)
                        {
                            continue;
                        }
                        let table = match Table::compile(def.clone()) {
                            Ok(t) => Arc::new(t),
                            Err(e) => {
                                // Only a log written elsewhere can hold one: ours checks first.
                                tracing::warn!(seq, error = %e, "skipping a table definition that does not compile");
                                continue;
                            }
                        };
                        let json = serde_json::to_vec(def).unwrap_or_default();
                        tables
                            .insert(def.id.as_str(), json.as_slice())
                            .map_err(view_error)?;
                        if current
                            .as_ref()
                            .is_none_or(|c| c.def().indexes != def.indexes)
                        {
                            rebuild_indexes(&records, &mut index, &table)?;
                        }
                        defined.insert(def.id.clone(), table);
                    }
                }
            }
            meta.insert("applied", applied.to_be_bytes().as_slice())
                .map_err(view_error)?;
        }
        txn.commit().map_err(view_error)?;
        if !defined.is_empty() {
            self.tables
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(defined);
        }
        Ok(())
    }

    /// Makes everything applied so far durable.
    pub(crate) fn sync(&self, applied: u64) -> Result<(), DbError> {
        self.apply(&[], applied, redb::Durability::Immediate)
    }

    pub(crate) fn table_of(&self, path: &RecordPath) -> Option<Arc<Table>> {
        let id = path.table_id()?;
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    pub(crate) fn table(&self, id: &str) -> Option<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every table, by id.
    pub(crate) fn tables(&self) -> Vec<Arc<Table>> {
        let mut all: Vec<_> = self
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    pub(crate) fn get(&self, path: &RecordPath) -> Result<Option<Stored>, DbError> {
        let txn = self.db.begin_read().map_err(view_error)?;
        let records = txn.open_table(RECORDS).map_err(view_error)?;
        let Some(found) = records
            .get(path.storage_key().as_slice())
            .map_err(view_error)?
        else {
            return Ok(None);
        };
        let (seq, value) = decode(found.value())?;
        Ok(Some(Stored {
            path: path.clone(),
            seq,
            value,
        }))
    }

    /// Records under `path`, with range bounds on the key below it.
    pub(crate) fn list(&self, path: &RecordPath, opts: &ListOpts) -> Result<Vec<Stored>, DbError> {
        let prefix = path.storage_prefix();
        let with = |s: &str| [prefix.as_slice(), s.as_bytes()].concat();
        let lower = match (&opts.gt, &opts.gte) {
            (Some(gt), _) => Bound::Excluded(with(gt)),
            (None, Some(gte)) => Bound::Included(with(gte)),
            (None, None) => Bound::Included(prefix.clone()),
        };
        let upper = match (&opts.lt, &opts.lte) {
            (Some(lt), _) => Bound::Excluded(with(lt)),
            (None, Some(lte)) => Bound::Included(with(lte)),
            (None, None) => successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let upper = clamp_upper(upper, &prefix);
        self.scan(
            RECORDS,
            lower,
            upper,
            opts.limit,
            opts.reverse,
            |key, value| {
                let path = RecordPath::from_storage_key(key).ok_or_else(|| DbError::Entry {
                    seq: 0,
                    reason: "a record key in the view is not UTF-8".into(),
                })?;
                let (seq, value) = decode(value)?;
                Ok(Some(Stored { path, seq, value }))
            },
        )
    }

    /// Records of `table` whose `index` value is in the range.
    pub(crate) fn query(&self, table: &Table, q: &IndexQuery) -> Result<Vec<Stored>, DbError> {
        let mut base = table.id().as_bytes().to_vec();
        base.push(0);
        base.extend_from_slice(q.index.as_bytes());
        base.push(0);
        let enc = |v: &Value| {
            encode_index_value(v).ok_or_else(|| DbError::BadQuery {
                reason: format!(
                    "{v} cannot be looked up: index values are strings, numbers and booleans"
                ),
            })
        };
        let cat = |v: &[u8]| [base.as_slice(), v].concat();
        let (lower, upper) = if let Some(eq) = &q.eq {
            let p = cat(&enc(eq)?);
            let upper = successor(&p).map_or(Bound::Unbounded, Bound::Excluded);
            (Bound::Included(p), upper)
        } else {
            let lower = match (&q.gt, &q.gte) {
                (Some(v), _) => successor(&cat(&enc(v)?)).map_or(Bound::Unbounded, Bound::Included),
                (None, Some(v)) => Bound::Included(cat(&enc(v)?)),
                (None, None) => Bound::Included(base.clone()),
            };
            let upper = match (&q.lt, &q.lte) {
                (Some(v), _) => Bound::Excluded(cat(&enc(v)?)),
                (None, Some(v)) => {
                    successor(&cat(&enc(v)?)).map_or(Bound::Unbounded, Bound::Excluded)
                }
                (None, None) => successor(&base).map_or(Bound::Unbounded, Bound::Excluded),
            };
            (lower, clamp_upper(upper, &base))
        };
        let txn = self.db.begin_read().map_err(view_error)?;
        let records = txn.open_table(RECORDS).map_err(view_error)?;
        self.scan(INDEX, lower, upper, q.limit, q.reverse, |_, record_key| {
            let Some(found) = records.get(record_key).map_err(view_error)? else {
                return Ok(None);
            };
            let path = RecordPath::from_storage_key(record_key).ok_or_else(|| DbError::Entry {
                seq: 0,
                reason: "a record key in the index is not UTF-8".into(),
            })?;
            let (seq, value) = decode(found.value())?;
            // Numbers compare as doubles in the index: make sure an equality hit really is.
            if let Some(eq) = &q.eq {
                let def = table.def().indexes.iter().find(|i| i.name == q.index);
                let matches = def.is_some_and(|d| match value.pointer(&d.path) {
                    Some(Value::Array(items)) => items.contains(eq),
                    Some(v) => v == eq,
                    None => false,
                });
                if !matches {
                    return Ok(None);
                }
            }
            Ok(Some(Stored { path, seq, value }))
        })
    }

    /// Rows of `table` in a key range (at most `limit`, last first if `reverse`), each
    /// turned into a record by `each` (None: skip it).
    fn scan(
        &self,
        table: TableDefinition<'_, &[u8], &[u8]>,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        limit: Option<usize>,
        reverse: bool,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<Option<Stored>, DbError>,
    ) -> Result<Vec<Stored>, DbError> {
        let txn = self.db.begin_read().map_err(view_error)?;
        let rows = txn.open_table(table).map_err(view_error)?;
        let mut out = Vec::new();
        if limit == Some(0) || empty_range(&lower, &upper) {
            return Ok(out);
        }
        let range = rows
            .range::<&[u8]>((as_ref(&lower), as_ref(&upper)))
            .map_err(view_error)?;
        let limit = limit.unwrap_or(usize::MAX);
        let rows: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for row in rows {
            let (k, v) = row.map_err(view_error)?;
            if let Some(s) = each(k.value(), v.value())? {
                out.push(s);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// Range options of `recordList` (reference 5.2): bounds on the key below the listed path.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ListOpts {
    /// Keys after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<String>,
    /// Keys from this one on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<String>,
    /// Keys before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<String>,
    /// Keys up to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<String>,
    /// At most this many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Last key first.
    #[serde(default)]
    pub reverse: bool,
}

/// A lookup or range on a table's index.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IndexQuery {
    /// The index's name.
    pub index: String,
    /// Records whose value equals this (the range bounds are then ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Value>,
    /// Values greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<Value>,
    /// Values from this on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<Value>,
    /// Values less than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<Value>,
    /// Values up to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<Value>,
    /// At most this many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Greatest value first.
    #[serde(default)]
    pub reverse: bool,
}

fn create(at: &ViewLocation) -> Result<redb::Database, DbError> {
    match at {
        ViewLocation::File(path) => redb::Database::create(path).map_err(view_error),
        ViewLocation::Memory => redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(view_error),
    }
}

fn remove(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DbError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn read_meta(db: &redb::Database) -> Result<Option<(u32, Vec<u8>, u64)>, DbError> {
    let txn = db.begin_read().map_err(view_error)?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(view_error(e)),
    };
    let get = |k: &str| -> Result<Option<Vec<u8>>, DbError> {
        Ok(meta.get(k).map_err(view_error)?.map(|g| g.value().to_vec()))
    };
    let (Some(format), Some(id), Some(applied)) = (get("format")?, get("db")?, get("applied")?)
    else {
        return Ok(None);
    };
    let (Ok(format), Ok(applied)) = (<[u8; 4]>::try_from(format), <[u8; 8]>::try_from(applied))
    else {
        return Ok(None);
    };
    Ok(Some((
        u32::from_be_bytes(format),
        id,
        u64::from_be_bytes(applied),
    )))
}

fn init(db: &redb::Database, id: atek_core::DbId) -> Result<(), DbError> {
    let txn = db.begin_write().map_err(view_error)?;
    {
        let mut meta = txn.open_table(META).map_err(view_error)?;
        meta.insert("format", VIEW_FORMAT.to_be_bytes().as_slice())
            .map_err(view_error)?;
        meta.insert("db", id.public_key().as_bytes().as_slice())
            .map_err(view_error)?;
        meta.insert("applied", 0u64.to_be_bytes().as_slice())
            .map_err(view_error)?;
        txn.open_table(RECORDS).map_err(view_error)?;
        txn.open_table(TABLES).map_err(view_error)?;
        txn.open_table(INDEX).map_err(view_error)?;
    }
    txn.commit().map_err(view_error)
}

fn encode(seq: u64, value: &Value) -> Vec<u8> {
    let mut out = seq.to_be_bytes().to_vec();
    // Writing a serde_json value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out
}

fn decode(bytes: &[u8]) -> Result<(u64, Value), DbError> {
    let bad = |reason: String| DbError::Entry { seq: 0, reason };
    let (seq, json) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("a record in the view is truncated".into()))?;
    let value =
        serde_json::from_slice(json).map_err(|e| bad(format!("a record in the view: {e}")))?;
    Ok((u64::from_be_bytes(*seq), value))
}

fn index_key(table: &Table, name: &str, value: &[u8], record: &[u8]) -> Vec<u8> {
    let mut key =
        Vec::with_capacity(table.id().len() + name.len() + value.len() + record.len() + 2);
    key.extend_from_slice(table.id().as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(value);
    key.extend_from_slice(record);
    key
}

fn reindex(
    index: &mut redb::Table<'_, &[u8], &[u8]>,
    table: &Table,
    record: &[u8],
    value: &Value,
) -> Result<(), DbError> {
    for def in &table.def().indexes {
        for v in table.index_values(def, value) {
            index
                .insert(index_key(table, &def.name, &v, record).as_slice(), record)
                .map_err(view_error)?;
        }
    }
    Ok(())
}

fn unindex(
    index: &mut redb::Table<'_, &[u8], &[u8]>,
    table: &Table,
    record: &[u8],
    value: &Value,
) -> Result<(), DbError> {
    for def in &table.def().indexes {
        for v in table.index_values(def, value) {
            index
                .remove(index_key(table, &def.name, &v, record).as_slice())
                .map_err(view_error)?;
        }
    }
    Ok(())
}

/// Drops a table's index entries and files its records again.
fn rebuild_indexes(
    records: &redb::Table<'_, &[u8], &[u8]>,
    index: &mut redb::Table<'_, &[u8], &[u8]>,
    table: &Table,
) -> Result<(), DbError> {
    let mut prefix = table.id().as_bytes().to_vec();
    prefix.push(0);
    let upper = successor(&prefix);
    let range = (
        Bound::Included(prefix.as_slice()),
        upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
    );
    index
        .retain_in::<&[u8], _>(range, |_, _| false)
        .map_err(view_error)?;
    if table.def().indexes.is_empty() {
        return Ok(());
    }
    let path_prefix = RecordPath::parse(table.id())
        .map(|p| p.storage_prefix())
        .unwrap_or_default();
    let upper = successor(&path_prefix);
    let range = (
        Bound::Included(path_prefix.as_slice()),
        upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
    );
    for row in records.range::<&[u8]>(range).map_err(view_error)? {
        let (k, v) = row.map_err(view_error)?;
        let key = k.value();
        // Only the table's own records: direct children of its path.
        if key[path_prefix.len()..].contains(&0) {
            continue;
        }
        let (_, value) = decode(v.value())?;
        reindex(index, table, key, &value)?;
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix` (None: there is none).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Keeps an upper bound within the prefix's range.
fn clamp_upper(upper: Bound<Vec<u8>>, prefix: &[u8]) -> Bound<Vec<u8>> {
    let Some(end) = successor(prefix) else {
        return upper;
    };
    match &upper {
        Bound::Included(u) | Bound::Excluded(u) if *u < end => upper,
        _ => Bound::Excluded(end),
    }
}

fn empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
