//! The host's record of installed services, kept in the server database as the original
//! did (reference 5.6): table `atek.cloud/service`, one row per service, and
//! `atek.cloud/core-service-key` for the stable keys of core services.
//!
//! Without a server database (unit tests) it is the versioned JSON file
//! `state/services.json`, replaced atomically on every change; a host that finds that file
//! and an empty table moves the file's records into the table and renames the file
//! `services.json.migrated`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use atek_api::services::ServiceRecord;
use atek_core::{ServiceId, ServiceKey};
use serde::{Deserialize, Serialize};

/// The file format's version, read first.
const VERSION: u32 = 1;

/// One installed service as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredService {
    /// Its stable key.
    pub key: ServiceKey,
    /// Its record, as services-api shows it.
    pub record: ServiceRecord,
    /// True when a person stopped it: it stays stopped across host restarts.
    #[serde(default)]
    pub stopped: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    version: u32,
    services: Vec<StoredService>,
    /// Keys of core services by id, so a core service keeps its key across restarts and
    /// reorderings of `coreServices` (the original numbered them by position).
    #[serde(default)]
    core_keys: BTreeMap<ServiceId, ServiceKey>,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged or from a newer version.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The server database refused or failed a read or write of the host's records.
    #[error("the server database's table {table}: {message}")]
    Database {
        /// The table (`atek.cloud/service`).
        table: String,
        /// What went wrong.
        message: String,
    },
}

/// The services store. Cheap to share behind an `Arc`; every change is written through.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    state: Mutex<StateFile>,
    /// The server database's tables; None: the file.
    rows: Option<(crate::rows::Rows, crate::rows::Rows)>,
}

/// The server database's table of services.
pub const SERVICE_TABLE: &str = "atek.cloud/service";
/// The server database's table of core services' keys.
pub const CORE_KEY_TABLE: &str = "atek.cloud/core-service-key";

impl Store {
    /// Opens (or creates, empty) `state/services.json` under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("services.json");
        let state = read_file(&path)?;
        Ok(Self {
            path,
            state: Mutex::new(state),
            rows: None,
        })
    }

    /// Opens the records in the server database `db`, moving those of an older
    /// `state/services.json` under `dir` there first.
    pub fn open_in(db: &atek_db::Db, dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("services.json");
        let services = crate::rows::Rows::open(db, SERVICE_TABLE)?;
        let keys = crate::rows::Rows::open(db, CORE_KEY_TABLE)?;
        let store = if services.is_empty() && keys.is_empty() && path.exists() {
            let state = read_file(&path)?;
            let store = Self {
                path: path.clone(),
                state: Mutex::new(state),
                rows: Some((services, keys)),
            };
            store.write(&store.lock())?;
            crate::rows::retire(&path)?;
            tracing::info!(file = %path.display(), "moved the services' records into the server database");
            store
        } else {
            #[derive(Deserialize)]
            struct CoreKey {
                id: ServiceId,
                key: ServiceKey,
            }
            let state = StateFile {
                version: VERSION,
                services: services.load()?,
                core_keys: keys
                    .load::<CoreKey>()?
                    .into_iter()
                    .map(|k| (k.id, k.key))
                    .collect(),
            };
            Self {
                path,
                state: Mutex::new(state),
                rows: Some((services, keys)),
            }
        };
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        // A panic while holding the lock cannot leave the in-memory copy half-written in a
        // way that matters (each change is one assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored service, in install order.
    pub fn list(&self) -> Vec<StoredService> {
        self.lock().services.clone()
    }

    /// One service by id.
    pub fn get(&self, id: &ServiceId) -> Option<StoredService> {
        self.lock()
            .services
            .iter()
            .find(|s| &s.record.id == id)
            .cloned()
    }

    /// True when a stored service has this id.
    pub fn contains(&self, id: &ServiceId) -> bool {
        self.lock().services.iter().any(|s| &s.record.id == id)
    }

    /// Adds a service.
    pub fn insert(&self, service: StoredService) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.services.push(service);
        self.write(&state)
    }

    /// Changes the service `id` with `f`, then writes. Returns the new value, or None when no
    /// service has that id.
    pub fn update(
        &self,
        id: &ServiceId,
        f: impl FnOnce(&mut StoredService),
    ) -> Result<Option<StoredService>, StoreError> {
        let mut state = self.lock();
        let Some(entry) = state.services.iter_mut().find(|s| &s.record.id == id) else {
            return Ok(None);
        };
        f(entry);
        let updated = entry.clone();
        self.write(&state)?;
        Ok(Some(updated))
    }

    /// Removes the service `id`; returns it.
    pub fn remove(&self, id: &ServiceId) -> Result<Option<StoredService>, StoreError> {
        let mut state = self.lock();
        let Some(pos) = state.services.iter().position(|s| &s.record.id == id) else {
            return Ok(None);
        };
        let removed = state.services.remove(pos);
        self.write(&state)?;
        Ok(Some(removed))
    }

    /// The stable key of core service `id`, made and stored on first use.
    pub fn core_key(&self, id: &ServiceId) -> Result<ServiceKey, StoreError> {
        let mut state = self.lock();
        if let Some(key) = state.core_keys.get(id) {
            return Ok(key.clone());
        }
        let key = ServiceKey::generate();
        state.core_keys.insert(id.clone(), key.clone());
        self.write(&state)?;
        Ok(key)
    }

    fn write(&self, state: &StateFile) -> Result<(), StoreError> {
        if let Some((services, keys)) = &self.rows {
            #[derive(Serialize)]
            struct CoreKey<'a> {
                id: &'a ServiceId,
                key: &'a ServiceKey,
            }
            let core: Vec<(String, CoreKey<'_>)> = state
                .core_keys
                .iter()
                .map(|(id, key)| (id.to_string(), CoreKey { id, key }))
                .collect();
            // One batch for both tables: a migration never lands half.
            return crate::rows::write(vec![
                services.plan(
                    state
                        .services
                        .iter()
                        .map(|s| (s.key.as_str().to_owned(), s)),
                )?,
                keys.plan(core.iter().map(|(k, v)| (k.clone(), v)))?,
            ]);
        }
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| io(e.into()))?;
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(io)
    }
}

fn read_file(path: &Path) -> Result<StateFile, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => parse(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile {
            version: VERSION,
            ..StateFile::default()
        }),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<StateFile, StoreError> {
    parse_versioned(
        path,
        bytes,
        &Versioned {
            what: "services",
            version: VERSION,
            remedy: "restore it from a backup or move it away to start empty",
        },
    )
}

/// What [`parse_versioned`] reads: one of the host's versioned state files.
pub(crate) struct Versioned {
    /// What the file holds (`users`), for messages.
    pub(crate) what: &'static str,
    /// The newest format version this build reads.
    pub(crate) version: u32,
    /// What a person can do about a damaged file.
    pub(crate) remedy: &'static str,
}

/// Parses a versioned state file (`{"version": N, …}`): one from a newer Atek is refused with
/// a message saying so, a damaged one with what to do about it.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    file: &Versioned,
) -> Result<T, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    let head: Head = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not a {} file ({e}); {}", file.what, file.remedy)))?;
    if head.version > file.version {
        return Err(corrupt(format!(
            "written by a newer Atek (format version {}, this one reads up to {}); upgrade Atek, or {}",
            head.version, file.version, file.remedy
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("damaged ({e}); {}", file.remedy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use atek_api::services::{PackageInfo, SourceType};
    use atek_core::UserKey;

    fn service(id: &str) -> StoredService {
        StoredService {
            key: ServiceKey::generate(),
            record: ServiceRecord {
                id: id.parse().unwrap(),
                owning_user_key: UserKey::system(),
                source_url: "file:///x".into(),
                desired_version: None,
                package: PackageInfo {
                    source_type: SourceType::File,
                    installed_version: None,
                    title: None,
                },
                manifest: None,
                config: None,
            },
            stopped: false,
        }
    }

    #[test]
    fn changes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = service("a");
        store.insert(a.clone()).unwrap();
        store.insert(service("b")).unwrap();
        store
            .update(&"a".parse().unwrap(), |s| s.stopped = true)
            .unwrap();
        store.remove(&"b".parse().unwrap()).unwrap();
        let core = store.core_key(&"core.x".parse().unwrap()).unwrap();

        let store = Store::open(dir.path()).unwrap();
        let list = store.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].key, a.key);
        assert!(list[0].stopped);
        assert_eq!(store.core_key(&"core.x".parse().unwrap()).unwrap(), core);
    }

    #[test]
    fn newer_versions_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("services.json"),
            r#"{"version":99,"services":[]}"#,
        )
        .unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("newer Atek"), "{err}");
    }
}
