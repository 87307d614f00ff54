//! `atek.cloud/adb-api` (reference 5.2), served by the host's built-in ADB: the methods of
//! ADB 2.0.0 with their shapes, plus tables and index queries (our extension, documented in
//! the README). A core service that exports `atek.cloud/adb-api` replaces it.
//!
//! Who may do what is [`atek_db::Adb`]'s business; this module turns params into calls and
//! errors into the original's messages (`Not authorized`, `Not found: a,b,c`).

use atek_api::jsonrpc::RpcError;
use atek_core::DbId;
use atek_db::{
    AdbError, Caller, DbAdminConfig, DbConfig, DbError, Defined, IndexQuery, ListOpts, PathParam,
    RecordPath, TableDef,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Params, to_value};
use crate::host::HostState;

fn failed(e: AdbError) -> RpcError {
    match e {
        AdbError::NotAuthorized => RpcError::not_authorized(),
        AdbError::Db(DbError::View { .. } | DbError::Journal(_) | DbError::Io { .. }) => {
            tracing::error!(error = %e, "ADB failed");
            RpcError::general(format!("ADB could not complete the call: {e}"))
        }
        e => RpcError::general(e.to_string()),
    }
}

fn db_failed(e: DbError) -> RpcError {
    failed(AdbError::Db(e))
}

/// The identity ADB sees: the gateway's, as the identity headers would carry it.
fn identity(caller: &crate::auth::Caller) -> Caller {
    Caller {
        user: caller.user.as_str().to_owned(),
        service: caller.service.as_str().to_owned(),
        admin: caller.admin,
    }
}

/// `{dbId, writable}`, the answer of the create methods.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    db_id: String,
    writable: bool,
}

fn path_param(params: &Params, i: usize) -> Result<RecordPath, RpcError> {
    let value = params.value(i).cloned().unwrap_or(Value::Null);
    let param: PathParam = serde_json::from_value(value)
        .map_err(|_| RpcError::param(i, "must be a path string or an array of strings"))?;
    RecordPath::try_from(param).map_err(|e| RpcError::param(i, e))
}

pub(super) async fn call(
    host: &HostState,
    caller: &crate::auth::Caller,
    method: &str,
    params: &Params,
) -> Result<Value, RpcError> {
    let adb = host.adb.as_ref();
    let who = identity(caller);
    let db_id = |i: usize| -> Result<DbId, RpcError> {
        adb.resolve(&who, params.string(i)?).map_err(failed)
    };
    match method {
        "init" => {
            if !caller.user.is_system() {
                return Err(RpcError::not_authorized());
            }
            Err(RpcError::general("ADB has already been initialized"))
        }
        "getConfig" => {
            if !caller.user.is_system() {
                return Err(RpcError::not_authorized());
            }
            Ok(json!({ "serverDbId": adb.server().id().to_string() }))
        }
        "adminListDbsByOwningUser" => {
            let user = match params.value(0) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => who.user.clone(),
            };
            to_value(adb.list_for_user(&who, &user).map_err(failed)?)
        }
        "adminCreateDb" => {
            let config: DbAdminConfig = params.optional_object(0)?.unwrap_or_default();
            created(adb.admin_create(&who, config).await.map_err(failed)?)
        }
        "adminEditDbConfig" => {
            let id = db_id(0)?;
            let config: DbAdminConfig = params.optional_object(1)?.unwrap_or_default();
            adb.configure(&who, id, config).await.map_err(failed)?;
            Ok(Value::Null)
        }
        "adminDeleteDb" => {
            adb.forget(&who, db_id(0)?).await.map_err(failed)?;
            Ok(Value::Null)
        }
        "dbCreate" => {
            let config: DbConfig = params.optional_object(0)?.unwrap_or_default();
            created(adb.create(&who, config).await.map_err(failed)?)
        }
        "dbGetOrCreate" => {
            let alias = params.string(0)?;
            let config: DbConfig = params.optional_object(1)?.unwrap_or_default();
            created(
                adb.get_or_create(&who, alias, config)
                    .await
                    .map_err(failed)?,
            )
        }
        "dbConfigure" => {
            let id = db_id(0)?;
            let config: DbConfig = params.optional_object(1)?.unwrap_or_default();
            let config = DbAdminConfig {
                owner: None,
                alias: config.alias,
                access: config.access,
            };
            adb.configure(&who, id, config).await.map_err(failed)?;
            Ok(Value::Null)
        }
        "dbGetConfig" => {
            let info = adb.describe(&who, db_id(0)?).map_err(failed)?;
            Ok(json!({ "alias": info.alias, "access": info.access }))
        }
        "dbList" => to_value(adb.list_for_service(&who).map_err(failed)?),
        "dbDescribe" => to_value(adb.describe(&who, db_id(0)?).map_err(failed)?),
        "recordList" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            let path = match params.value(1) {
                None | Some(Value::Null) => RecordPath::root(),
                Some(_) => path_param(params, 1)?,
            };
            let mut opts: ListOpts = params.optional_object(2)?.unwrap_or_default();
            let asked = opts.limit;
            opts.limit = Some(asked.unwrap_or(usize::MAX).min(MAX_RECORDS + 1));
            let shown = path.to_string();
            let records = read(move || db.list(&path, &opts)).await?;
            too_many(records.len(), asked, &shown)?;
            Ok(json!({ "records": records }))
        }
        "recordGet" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            let path = path_param(params, 1)?;
            match db.get(&path).map_err(db_failed)? {
                Some(record) => to_value(record),
                None => Err(RpcError::general(format!(
                    "Not found: {}",
                    path.segments().join(",")
                ))),
            }
        }
        "recordPut" => {
            let db = adb.for_write(&who, db_id(0)?).map_err(failed)?;
            let path = path_param(params, 1)?;
            let value = params.value(2).cloned().unwrap_or(Value::Null);
            to_value(db.put(&path, value).await.map_err(db_failed)?)
        }
        "recordDelete" => {
            let db = adb.for_write(&who, db_id(0)?).map_err(failed)?;
            db.delete(&path_param(params, 1)?)
                .await
                .map_err(db_failed)?;
            Ok(Value::Null)
        }
        // Our extension: tables kept by the database (reference 5.5 describes the original's).
        "tableDefine" => {
            let db = adb.for_write(&who, db_id(0)?).map_err(failed)?;
            let def: TableDef = params.object(1)?;
            let answer = match db.define_table(def).await.map_err(db_failed)? {
                Defined::Written { seq } => json!({ "written": true, "seq": seq }),
                Defined::Unchanged(current) => {
                    json!({ "written": false, "revision": current.revision })
                }
            };
            Ok(answer)
        }
        "tableGet" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            let id = params.string(1)?;
            match db.table(id) {
                Some(def) => to_value(def),
                None => Err(RpcError::general(format!("Table not found: {id}"))),
            }
        }
        "tableList" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            Ok(json!({ "tables": db.tables() }))
        }
        "recordQuery" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            let table = params.string(1)?.to_owned();
            let mut query: IndexQuery = params.object(2)?;
            let asked = query.limit;
            query.limit = Some(asked.unwrap_or(usize::MAX).min(MAX_RECORDS + 1));
            let shown = format!("{table} by {}", query.index);
            let records = read(move || db.query(&table, &query)).await?;
            too_many(records.len(), asked, &shown)?;
            Ok(json!({ "records": records }))
        }
        // Our extension: the changes after a log index, waiting up to `wait` ms for one.
        "recordChanges" => {
            let db = adb.for_read(&who, db_id(0)?).map_err(failed)?;
            let opts: ChangesOpts = params.optional_object(1)?.unwrap_or_default();
            changes(db, opts).await
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// The most records one `recordList` or `recordQuery` answer carries: a listing that would
/// hold more is refused, so that no call can make the host build an answer of any size.
const MAX_RECORDS: usize = 100_000;

fn too_many(found: usize, asked: Option<usize>, what: &str) -> Result<(), RpcError> {
    if found > MAX_RECORDS && asked.is_none_or(|l| l > MAX_RECORDS) {
        return Err(RpcError::general(format!(
            "{what} holds more than {MAX_RECORDS} records, more than one answer carries; page through them with limit and gt"
        )));
    }
    Ok(())
}

fn created(info: atek_db::DbInfo) -> Result<Value, RpcError> {
    to_value(Created {
        db_id: info.db_id,
        writable: info.writable,
    })
}

/// Runs a read that may scan many records off the event loop.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RpcError::general(format!("ADB read failed: {e}")))?
        .map_err(db_failed)
}

/// The options of `recordChanges`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesOpts {
    /// The first log index wanted (default 0).
    #[serde(default)]
    since: u64,
    /// At most this many changes (default and ceiling [`MAX_CHANGES`]).
    #[serde(default)]
    limit: Option<usize>,
    /// How long to wait for a change when there is none yet, in ms (default 0, at most
    /// [`MAX_WAIT_MS`]).
    #[serde(default)]
    wait: u64,
}

/// The most changes one `recordChanges` answer carries.
const MAX_CHANGES: usize = 1000;
/// Roughly the most bytes of records one `recordChanges` answer carries.
const MAX_CHANGE_BYTES: usize = 8 << 20;

fn change_size(change: &atek_db::Change) -> usize {
    match &change.op {
        atek_db::entry::Op::Put { value, .. } => value.to_string().len(),
        _ => 64,
    }
}

/// The longest `recordChanges` waits for a first change.
const MAX_WAIT_MS: u64 = 30_000;

/// `{changes: [{seq, type, path?, value?, table?}], next}`: `next` is the `since` of the
/// following call.
async fn changes(db: atek_db::Db, opts: ChangesOpts) -> Result<Value, RpcError> {
    let limit = opts.limit.unwrap_or(MAX_CHANGES).clamp(1, MAX_CHANGES);
    let mut stream = db.changes(opts.since);
    let mut out = Vec::new();
    let wait = std::time::Duration::from_millis(opts.wait.min(MAX_WAIT_MS));
    if opts.since >= db.len() && !wait.is_zero() {
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(change) => out.push(change.map_err(db_failed)?),
            Err(_) => return Ok(json!({ "changes": [], "next": opts.since })),
        }
    }
    // At most MAX_CHANGE_BYTES of entries per answer (always at least one change).
    let mut bytes = out.iter().map(change_size).sum::<usize>();
    while out.len() < limit && stream.position() < db.len() && bytes < MAX_CHANGE_BYTES {
        let change = stream.next().await.map_err(db_failed)?;
        bytes += change_size(&change);
        out.push(change);
    }
    let next = stream.position();
    let changes: Vec<Value> = out.into_iter().map(change_json).collect();
    Ok(json!({ "changes": changes, "next": next }))
}

fn change_json(change: atek_db::Change) -> Value {
    use atek_db::entry::Op;
    match change.op {
        Op::Put { path, value } => {
            json!({"seq": change.seq, "type": "put", "path": path.to_string(), "value": value})
        }
        Op::Delete { path } => {
            json!({"seq": change.seq, "type": "delete", "path": path.to_string()})
        }
        Op::DefineTable(def) => json!({"seq": change.seq, "type": "defineTable", "table": def}),
    }
}
