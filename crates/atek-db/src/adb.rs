//! A home's databases: which exist, who owns them, who may read and write them, and the
//! server database that records all of it (reference 5.2 and 5.6).
//!
//! Permissions (the original let anyone who knew a public database's id write to it; here a
//! public database is readable by every caller and writable only by its owner):
//! - the host (`system`) and admins may do anything;
//! - a database's owner is a (user, service) pair; only the owner writes, and reads a
//!   private database;
//! - a database with no record here (a foreign one) is readable by every caller;
//! - the server database is the host's alone.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use atek_core::DbId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::DbError;
use crate::journal::{Journal, MemoryJournal};
use crate::path::RecordPath;
use crate::table::TableDef;
use crate::view::{IndexQuery, ViewLocation};
use crate::{Db, ListOpts};

/// The most databases one user may own: each open database has a writer thread and its
/// log's, so an app looping over `dbCreate` must not be able to take the host down.
pub const MAX_DATABASES_PER_USER: usize = 256;

/// The table of database records in the server database.
pub const DATABASE_TABLE: &str = "atek.cloud/database";

/// Where databases' logs and views are kept.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// A new log with a fresh writer key.
    fn create(&self) -> Result<Arc<dyn Journal>, DbError>;
    /// The log of a database held here, if it is.
    fn open(&self, id: DbId) -> Result<Option<Arc<dyn Journal>>, DbError>;
    /// Where the view of a database lives.
    fn view(&self, id: DbId) -> ViewLocation;
    /// Whether this home holds the writer key of a database, without opening it.
    fn writable(&self, id: DbId) -> bool;
}

/// Logs and views in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    logs: Mutex<HashMap<DbId, MemoryJournal>>,
}

impl Store for MemoryStore {
    fn create(&self) -> Result<Arc<dyn Journal>, DbError> {
        let journal = MemoryJournal::new();
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(journal.id(), journal.clone());
        Ok(Arc::new(journal))
    }

    fn open(&self, id: DbId) -> Result<Option<Arc<dyn Journal>>, DbError> {
        Ok(self
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|j| Arc::new(j.clone()) as Arc<dyn Journal>))
    }

    fn view(&self, _: DbId) -> ViewLocation {
        ViewLocation::Memory
    }

    fn writable(&self, id: DbId) -> bool {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
    }
}

/// Who is calling: the identity the gateway vouches for (reference 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's key, or `system`.
    pub user: String,
    /// The calling service's key, or `system`.
    pub service: String,
    /// Whether the user is an admin.
    pub admin: bool,
}

impl Caller {
    /// The host itself.
    pub fn system() -> Self {
        Self {
            user: "system".into(),
            service: "system".into(),
            admin: true,
        }
    }

    /// The owner of what this caller creates.
    fn as_owner(&self) -> Owner {
        Owner {
            user_key: Some(self.user.clone()),
            service_key: Some(self.service.clone()),
        }
    }

    fn privileged(&self) -> bool {
        self.admin || self.user == "system"
    }

    fn owns(&self, owner: &Owner) -> bool {
        owner.user_key.as_deref() == Some(self.user.as_str())
            && owner.service_key.as_deref() == Some(self.service.as_str())
    }
}

/// A database's owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The owning user's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// The owning service's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_key: Option<String>,
}

/// Who may read a database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Every caller may read it.
    #[default]
    Public,
    /// Only its owner may read it.
    Private,
}

/// `DbConfig` of reference 5.2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbConfig {
    /// A name the owning service can use instead of the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Who may read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// `DbAdminConfig` of reference 5.2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbAdminConfig {
    /// The owner (default: the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// See [`DbConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// See [`DbConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// The record of a database in the server database (`atek.cloud/database`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbRecord {
    /// The id.
    pub db_id: String,
    /// The owner.
    #[serde(default)]
    pub owner: Owner,
    /// Who may read it.
    #[serde(default)]
    pub access: Access,
    /// Its alias for the owning service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// `DbInfo` of reference 5.2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbInfo {
    /// The id.
    pub db_id: String,
    /// Whether this home can write it.
    pub writable: bool,
    /// Whether it is the server database.
    pub is_server_db: bool,
    /// The owner, if known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The alias, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Who may read it, if known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// When it was made, if known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// Why an ADB call failed, as the caller should read it.
#[derive(Debug, thiserror::Error)]
pub enum AdbError {
    /// The caller may not do this.
    #[error("Not authorized")]
    NotAuthorized,
    /// No such database here.
    #[error("Database not found: {0}")]
    NoDatabase(String),
    /// A database id or alias that is not usable.
    #[error("{0}")]
    BadInput(String),
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The databases of a home.
#[derive(Debug)]
pub struct Adb {
    store: Arc<dyn Store>,
    server: Db,
    open: Mutex<HashMap<DbId, Db>>,
    /// Held while an alias is looked up and a database made for it, so two concurrent
    /// `dbGetOrCreate` calls get one database.
    creating: tokio::sync::Mutex<()>,
}

impl Adb {
    /// Opens the home's databases, with the server database `server` (made if `None`).
    /// Blocks while views catch up with their logs.
    pub fn open(store: Arc<dyn Store>, server: Option<DbId>) -> Result<Adb, DbError> {
        let journal = match server {
            Some(id) => store.open(id)?.ok_or_else(|| DbError::Store {
                reason: format!(
                    "the server database {id} (serverDbId) is not stored here; restore the adb folder, or the config.json that goes with it"
                ),
            })?,
            None => store.create()?,
        };
        let view = store.view(journal.id());
        let server = Db::open(journal, view)?;
        Ok(Adb {
            store,
            server,
            open: Mutex::default(),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// Defines the server database's tables. Call once after [`Adb::open`].
    pub async fn init(&self) -> Result<(), DbError> {
        self.server
            .define_table(TableDef {
                id: DATABASE_TABLE.into(),
                revision: 1,
                json_schema: Some(json!({
                    "type": "object",
                    "required": ["dbId", "createdAt"],
                    "properties": {
                        "dbId": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "owner": {"type": "object", "properties": {
                            "userKey": {"type": "string"}, "serviceKey": {"type": "string"}}},
                        "access": {"enum": ["public", "private"]},
                        "alias": {"type": "string"},
                        "createdAt": {"type": "string"}
                    }
                })),
                key_template: Some("{{/dbId}}".into()),
                indexes: vec![crate::IndexDef {
                    name: "ownerService".into(),
                    path: "/owner/serviceKey".into(),
                }],
            })
            .await?;
        Ok(())
    }

    /// The server database.
    pub fn server(&self) -> &Db {
        &self.server
    }

    /// A database by id, opened if it is held here.
    pub fn db(&self, id: DbId) -> Result<Option<Db>, DbError> {
        if id == self.server.id() {
            return Ok(Some(self.server.clone()));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = open.get(&id) {
            return Ok(Some(db.clone()));
        }
        let Some(journal) = self.store.open(id)? else {
            return Ok(None);
        };
        let db = Db::open(journal, self.store.view(id))?;
        open.insert(id, db.clone());
        Ok(Some(db))
    }

    /// The record of a database, if this home has one.
    pub fn record(&self, id: DbId) -> Result<Option<DbRecord>, DbError> {
        let Some(r) = self.server.get(&record_path(id))? else {
            return Ok(None);
        };
        serde_json::from_value(r.value)
            .map(Some)
            .map_err(|e| DbError::Entry {
                seq: r.seq,
                reason: format!("database record {id}: {e}"),
            })
    }

    /// `dbCreate`: a new database owned by the caller.
    pub async fn create(&self, caller: &Caller, config: DbConfig) -> Result<DbInfo, AdbError> {
        let owner = caller.as_owner();
        self.create_owned(owner, config.alias, config.access.unwrap_or_default())
            .await
    }

    /// `adminCreateDb`: a new database for an owner the caller may assign.
    pub async fn admin_create(
        &self,
        caller: &Caller,
        config: DbAdminConfig,
    ) -> Result<DbInfo, AdbError> {
        let owner = config.owner.unwrap_or_else(|| caller.as_owner());
        if !caller.privileged() && !caller.owns(&owner) {
            // Only the host knows which services a user owns: a user gives a database only
            // to themselves through the service they call with.
            return Err(AdbError::NotAuthorized);
        }
        self.create_owned(owner, config.alias, config.access.unwrap_or_default())
            .await
    }

    async fn create_owned(
        &self,
        owner: Owner,
        alias: Option<String>,
        access: Access,
    ) -> Result<DbInfo, AdbError> {
        let _creating = self.creating.lock().await;
        if let Some(user) = owner.user_key.as_deref().filter(|u| *u != "system") {
            let owned = self
                .server
                .list(
                    &RecordPath::parse(DATABASE_TABLE).map_err(DbError::from)?,
                    &ListOpts::default(),
                )?
                .into_iter()
                .filter(|r| r.value["owner"]["userKey"] == user)
                .count();
            if owned >= MAX_DATABASES_PER_USER {
                return Err(AdbError::BadInput(format!(
                    "this user already has {owned} databases, the most one user may have; delete some (adminDeleteDb) before making more"
                )));
            }
        }
        if let Some(alias) = &alias {
            check_alias(alias)?;
            if self.find_alias(&owner, alias)?.is_some() {
                return Err(AdbError::BadInput(format!(
                    "the alias {alias:?} is already used by another database of this owner"
                )));
            }
        }
        let journal = self.store.create()?;
        let id = journal.id();
        let db = Db::open(journal, self.store.view(id))?;
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, db);
        let record = DbRecord {
            db_id: id.to_string(),
            owner,
            access,
            alias,
            created_at: now(),
        };
        self.save(&record).await?;
        Ok(self.info(None, id, Some(record)))
    }

    /// `dbGetOrCreate`: the caller's database with this alias, made if missing.
    pub async fn get_or_create(
        &self,
        caller: &Caller,
        alias: &str,
        config: DbConfig,
    ) -> Result<DbInfo, AdbError> {
        check_alias(alias)?;
        let owner = caller.as_owner();
        {
            let _creating = self.creating.lock().await;
            if let Some(record) = self.find_alias(&owner, alias)? {
                let id = parse_id(&record.db_id)?;
                return Ok(self.info(Some(caller), id, Some(record)));
            }
        }
        // Another call may have made it between the lock above and the one in
        // create_owned; that one reports the alias as taken, so look again.
        match self
            .create_owned(
                owner.clone(),
                Some(alias.to_owned()),
                config.access.unwrap_or_default(),
            )
            .await
        {
            Err(AdbError::BadInput(_)) => {
                let record = self
                    .find_alias(&owner, alias)?
                    .ok_or_else(|| AdbError::NoDatabase(alias.to_owned()))?;
                let id = parse_id(&record.db_id)?;
                Ok(self.info(Some(caller), id, Some(record)))
            }
            other => other.map(|info| DbInfo {
                writable: true,
                ..info
            }),
        }
    }

    /// The database an id (64 hex, or `hyper://` URL) or an alias of the caller's service
    /// names.
    pub fn resolve(&self, caller: &Caller, id_or_alias: &str) -> Result<DbId, AdbError> {
        let text = id_or_alias
            .strip_prefix("hyper://")
            .map_or(id_or_alias, |rest| rest.trim_end_matches('/'));
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_id(text);
        }
        match self.find_alias(&caller.as_owner(), id_or_alias)? {
            Some(record) => parse_id(&record.db_id),
            None => Err(AdbError::NoDatabase(id_or_alias.to_owned())),
        }
    }

    /// `dbDescribe`.
    pub fn describe(&self, caller: &Caller, id: DbId) -> Result<DbInfo, AdbError> {
        let record = self.record(id)?;
        if !self.can_read(caller, id, record.as_ref()) {
            return Err(AdbError::NotAuthorized);
        }
        Ok(self.info(Some(caller), id, record))
    }

    /// `dbConfigure` / `adminEditDbConfig`: changes alias, access or owner.
    pub async fn configure(
        &self,
        caller: &Caller,
        id: DbId,
        config: DbAdminConfig,
    ) -> Result<(), AdbError> {
        let mut record = self
            .record(id)?
            .ok_or_else(|| AdbError::NoDatabase(id.to_string()))?;
        if !(caller.privileged() || caller.owns(&record.owner)) {
            return Err(AdbError::NotAuthorized);
        }
        if let Some(owner) = config.owner {
            if !caller.privileged() && !caller.owns(&owner) {
                return Err(AdbError::NotAuthorized);
            }
            record.owner = owner;
        }
        let _creating = self.creating.lock().await;
        if let Some(alias) = config.alias {
            check_alias(&alias)?;
            if self
                .find_alias(&record.owner, &alias)?
                .is_some_and(|other| other.db_id != record.db_id)
            {
                return Err(AdbError::BadInput(format!(
                    "the alias {alias:?} is already used by another database of this owner"
                )));
            }
            record.alias = Some(alias);
        }
        if let Some(access) = config.access {
            record.access = access;
        }
        self.save(&record).await
    }

    /// `adminDeleteDb`: forgets the database's record (its log stays).
    pub async fn forget(&self, caller: &Caller, id: DbId) -> Result<(), AdbError> {
        let record = self
            .record(id)?
            .ok_or_else(|| AdbError::NoDatabase(id.to_string()))?;
        if !(caller.privileged() || caller.owns(&record.owner)) {
            return Err(AdbError::NotAuthorized);
        }
        self.server.delete(&record_path(id)).await?;
        Ok(())
    }

    /// `dbList`: the databases of the caller's service.
    pub fn list_for_service(&self, caller: &Caller) -> Result<Vec<DbInfo>, AdbError> {
        let records = self.server.query(
            DATABASE_TABLE,
            &IndexQuery {
                index: "ownerService".into(),
                eq: Some(Value::String(caller.service.clone())),
                ..Default::default()
            },
        )?;
        self.infos(caller, records.into_iter().map(|r| r.value), |r| {
            r.owner.user_key.as_deref() == Some(caller.user.as_str())
        })
    }

    /// `adminListDbsByOwningUser`: the databases of a user (the server database first for
    /// `system`).
    pub fn list_for_user(&self, caller: &Caller, user: &str) -> Result<Vec<DbInfo>, AdbError> {
        if !(caller.privileged() || caller.user == user) {
            return Err(AdbError::NotAuthorized);
        }
        let mut out = Vec::new();
        if user == "system" {
            out.push(self.info(Some(caller), self.server.id(), None));
        }
        let all = self.server.list(
            &RecordPath::parse(DATABASE_TABLE).map_err(DbError::from)?,
            &ListOpts::default(),
        )?;
        out.extend(self.infos(caller, all.into_iter().map(|r| r.value), |r| {
            r.owner.user_key.as_deref() == Some(user)
        })?);
        Ok(out)
    }

    /// A database the caller may read.
    pub fn for_read(&self, caller: &Caller, id: DbId) -> Result<Db, AdbError> {
        let record = self.record(id)?;
        if !self.can_read(caller, id, record.as_ref()) {
            return Err(AdbError::NotAuthorized);
        }
        self.db(id)?
            .ok_or_else(|| AdbError::NoDatabase(id.to_string()))
    }

    /// A database the caller may write. Nobody writes the server database through here:
    /// it holds the host's own records, which only the host changes.
    pub fn for_write(&self, caller: &Caller, id: DbId) -> Result<Db, AdbError> {
        if id == self.server.id() {
            return Err(if caller.privileged() {
                AdbError::BadInput(
                    "the server database holds the host's own records (services, users, sessions); only the host writes it".into(),
                )
            } else {
                AdbError::NotAuthorized
            });
        }
        let record = self.record(id)?;
        if !self.can_write(caller, id, record.as_ref()) {
            return Err(AdbError::NotAuthorized);
        }
        self.db(id)?
            .ok_or_else(|| AdbError::NoDatabase(id.to_string()))
    }

    /// A database this home holds without a record (one whose record was deleted) is the
    /// host's and admins' alone, as the server database is.
    fn can_read(&self, caller: &Caller, id: DbId, record: Option<&DbRecord>) -> bool {
        if caller.privileged() {
            return true;
        }
        if id == self.server.id() {
            return false;
        }
        record.is_some_and(|r| r.access == Access::Public || caller.owns(&r.owner))
    }

    fn can_write(&self, caller: &Caller, id: DbId, record: Option<&DbRecord>) -> bool {
        if id == self.server.id() {
            return false;
        }
        caller.privileged() || record.is_some_and(|r| caller.owns(&r.owner))
    }

    /// What `caller` (None: the owner, just now) is told of a database: `writable` says
    /// whether they may write it here.
    fn info(&self, caller: Option<&Caller>, id: DbId, record: Option<DbRecord>) -> DbInfo {
        // Asked of the store, not of an opened database: listing databases must not open
        // every one of them (each open one keeps two threads).
        let writable = caller.is_none_or(|c| self.can_write(c, id, record.as_ref()))
            && (id == self.server.id() || self.store.writable(id));
        DbInfo {
            db_id: id.to_string(),
            writable,
            is_server_db: id == self.server.id(),
            owner: record.as_ref().map(|r| r.owner.clone()),
            alias: record.as_ref().and_then(|r| r.alias.clone()),
            access: record.as_ref().map(|r| r.access),
            created_at: record.map(|r| r.created_at),
        }
    }

    fn infos(
        &self,
        caller: &Caller,
        values: impl Iterator<Item = Value>,
        keep: impl Fn(&DbRecord) -> bool,
    ) -> Result<Vec<DbInfo>, AdbError> {
        let mut out = Vec::new();
        for value in values {
            let Ok(record) = serde_json::from_value::<DbRecord>(value) else {
                continue;
            };
            if !keep(&record) {
                continue;
            }
            let id = parse_id(&record.db_id)?;
            out.push(self.info(Some(caller), id, Some(record)));
        }
        Ok(out)
    }

    /// The database of `owner` (user and service) with this alias.
    fn find_alias(&self, owner: &Owner, alias: &str) -> Result<Option<DbRecord>, AdbError> {
        let Some(service) = &owner.service_key else {
            return Ok(None);
        };
        let records = self.server.query(
            DATABASE_TABLE,
            &IndexQuery {
                index: "ownerService".into(),
                eq: Some(Value::String(service.clone())),
                ..Default::default()
            },
        )?;
        Ok(records
            .into_iter()
            .filter_map(|r| serde_json::from_value::<DbRecord>(r.value).ok())
            .find(|r| r.owner == *owner && r.alias.as_deref() == Some(alias)))
    }

    async fn save(&self, record: &DbRecord) -> Result<(), AdbError> {
        let id = parse_id(&record.db_id)?;
        let value = serde_json::to_value(record).map_err(|e| AdbError::BadInput(e.to_string()))?;
        self.server.put(&record_path(id), value).await?;
        Ok(())
    }
}

fn record_path(id: DbId) -> RecordPath {
    // A table id and a hex key are always a valid path.
    RecordPath::parse(&format!("{DATABASE_TABLE}/{id}")).unwrap_or_else(|_| RecordPath::root())
}

fn parse_id(text: &str) -> Result<DbId, AdbError> {
    text.parse()
        .map_err(|_| AdbError::BadInput(format!("{text:?} is not a database id (64 hex digits)")))
}

fn check_alias(alias: &str) -> Result<(), AdbError> {
    let hex_like = alias.len() == 64 && alias.bytes().all(|b| b.is_ascii_hexdigit());
    if alias.is_empty() || alias.len() > 128 || hex_like || alias.contains('\0') {
        return Err(AdbError::BadInput(format!(
            "{alias:?} cannot be an alias: use 1 to 128 characters that are not a database id"
        )));
    }
    Ok(())
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
