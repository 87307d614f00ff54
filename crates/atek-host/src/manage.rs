//! Service management: what services-api does, and what start-up does with core services.
//!
//! These operations take a per-service lock (an id being installed, updated or renamed is
//! busy), so two operations never race on the same package folder.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use atek_api::services::{
    ConfigureOpts, InstallOpts, PackageInfo, ServiceInfo, ServiceRecord, ServiceStatus,
    UpdateCheck, UpdateResult,
};
use atek_core::{ServiceId, ServiceKey, UserKey};

use crate::host::HostState;
use crate::installer::{InstallObserver, Source};
use crate::store::StoredService;
use crate::supervisor::{RunState, ServiceLog, ServiceSpec, Tag};

/// Errors of management operations, worded for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No service has this id.
    #[error("No service found with the id {0}")]
    NotFound(String),
    /// The id is taken.
    #[error("App already exists under the ID: {0}")]
    IdTaken(String),
    /// Another operation on this service is under way.
    #[error(
        "{0} is busy with another operation (install, update or rename); try again when it finishes"
    )]
    Busy(ServiceId),
    /// Core services are managed in config.json.
    #[error("{0} is a core service: change coreServices in config.json and restart Atek instead")]
    Core(ServiceId),
    /// Not a valid id.
    #[error("invalid id: {0}")]
    BadId(atek_core::IdError),
    /// `install`'s `user` names nobody.
    #[error("No user found with the username of {0}")]
    NoSuchUser(String),
    /// The installer failed.
    #[error("{0}")]
    Install(#[from] crate::installer::InstallError),
    /// The store could not be written.
    #[error("cannot save the service records: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The host is shutting down.
    #[error("{0}")]
    Supervisor(#[from] crate::supervisor::SupervisorError),
}

/// The set of ids under an operation.
#[derive(Debug, Default)]
pub struct BusyIds(Mutex<HashSet<ServiceId>>);

/// Holds an id busy until dropped.
#[derive(Debug)]
pub struct BusyGuard<'a> {
    set: &'a BusyIds,
    id: ServiceId,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

impl BusyIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ServiceId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, id: &ServiceId) -> bool {
        self.lock().contains(id)
    }
}

/// Writes installer progress into the service's log.
impl InstallObserver for ServiceLog {
    fn stage(&self, message: &str) {
        tracing::info!(log = %self.path().display(), "{message}");
        self.line(Tag::Install, &format!("== {message}"));
    }

    fn output(&self, line: &str) {
        self.line(Tag::Install, line);
    }
}

impl HostState {
    fn busy(&self, id: &ServiceId) -> Result<BusyGuard<'_>, ManageError> {
        if !self.busy.lock().insert(id.clone()) {
            return Err(ManageError::Busy(id.clone()));
        }
        Ok(BusyGuard {
            set: &self.busy,
            id: id.clone(),
        })
    }

    fn id_taken(&self, id: &ServiceId) -> bool {
        self.store.contains(id) || self.is_core(id) || self.busy.contains(id)
    }

    /// True for an id of `coreServices`.
    pub fn is_core(&self, id: &ServiceId) -> bool {
        self.core_services().iter().any(|c| &c.record.id == id)
    }

    /// The core services' records (in memory, rebuilt from config.json at start).
    pub fn core_services(&self) -> Vec<StoredService> {
        self.core.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A service's record, core or installed.
    pub fn find(&self, id: &str) -> Result<(StoredService, bool), ManageError> {
        let parsed: ServiceId = id
            .parse()
            .map_err(|_| ManageError::NotFound(id.to_owned()))?;
        if let Some(core) = self
            .core_services()
            .into_iter()
            .find(|c| c.record.id == parsed)
        {
            return Ok((core, true));
        }
        self.store
            .get(&parsed)
            .map(|s| (s, false))
            .ok_or_else(|| ManageError::NotFound(id.to_owned()))
    }

    /// The service a host name points at: `id` as written, else the one whose id matches it
    /// but for case (host names are case-insensitive, ids are not).
    pub fn find_for_host(&self, id: &str) -> Option<StoredService> {
        if let Ok((stored, _)) = self.find(id) {
            return Some(stored);
        }
        self.core_services()
            .into_iter()
            .chain(self.store.list())
            .find(|s| s.record.id.as_str().eq_ignore_ascii_case(id))
    }

    /// The info services-api shows.
    pub fn info(&self, stored: &StoredService, core: bool) -> ServiceInfo {
        let id = &stored.record.id;
        let state = self.supervisor.state(id).unwrap_or_else(|| {
            let failure = self
                .core_failures
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .cloned();
            match failure {
                Some(reason) => RunState {
                    status: ServiceStatus::Failed,
                    reason: Some(reason),
                    ..RunState::default()
                },
                None => RunState::default(),
            }
        });
        ServiceInfo {
            status: state.status,
            key: stored.key.clone(),
            settings: stored.record.clone(),
            status_reason: state.reason,
            last_exit: state.last_exit,
            restarts: state.restarts,
            pid: state.pid,
            port: state.port,
            core,
        }
    }

    /// A service's log, with the system tokens among its secrets (for installer output).
    pub(crate) fn log_for(&self, id: &ServiceId) -> ServiceLog {
        let log = ServiceLog::new(
            self.paths.log(id),
            self.config.log_max_bytes,
            self.config.log_files,
        );
        log.set_secrets(self.config.system_auth_tokens.clone());
        log
    }

    /// What the supervisor runs for a record.
    pub fn spec(&self, stored: &StoredService) -> Result<ServiceSpec, ManageError> {
        let source = Source::parse(&stored.record.source_url)?;
        let dir: PathBuf = match &source {
            Source::Folder(dir) => dir.clone(),
            Source::Git(_) => self.installer.package_dir(stored.record.id.as_str())?,
        };
        Ok(ServiceSpec {
            id: stored.record.id.clone(),
            key: stored.key.clone(),
            owner: stored.record.owning_user_key.clone(),
            owner_admin: self.users.is_admin(&stored.record.owning_user_key),
            core: self.is_core(&stored.record.id),
            dir,
            manifest: stored.record.manifest.clone(),
            config: stored.record.config.clone().unwrap_or_default(),
        })
    }

    /// Picks the id for a new service: the requested one if free, else the source's name,
    /// then `name-2`, `name-3`, … Reserves it.
    fn reserve_id(
        &self,
        requested: Option<&str>,
        source: &Source,
    ) -> Result<BusyGuard<'_>, ManageError> {
        if let Some(requested) = requested {
            let id: ServiceId = requested.parse().map_err(ManageError::BadId)?;
            if self.id_taken(&id) {
                return Err(ManageError::IdTaken(id.to_string()));
            }
            return self
                .busy(&id)
                .map_err(|_| ManageError::IdTaken(id.to_string()));
        }
        let base = source.default_id();
        for n in 1u32.. {
            let candidate = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let Ok(id) = candidate.parse::<ServiceId>() else {
                continue;
            };
            if !self.id_taken(&id)
                && let Ok(guard) = self.busy(&id)
            {
                return Ok(guard);
            }
        }
        unreachable!("an unbounded counter always finds a free id")
    }

    /// Installs a service for `owner` and starts it.
    pub async fn install(
        &self,
        opts: InstallOpts,
        owner: UserKey,
    ) -> Result<ServiceInfo, ManageError> {
        let source = Source::parse(&opts.source_url)?;
        let guard = self.reserve_id(opts.id.as_deref(), &source)?;
        let id = guard.id.clone();
        let log = self.log_for(&id);
        log.line(Tag::Sys, &format!("installing from {}", opts.source_url));
        let desired = opts.desired_version.as_deref().filter(|d| !d.is_empty());
        let package = self
            .installer
            .install(id.as_str(), &source, desired, &log)
            .await?;
        let stored = StoredService {
            key: ServiceKey::generate(),
            record: ServiceRecord {
                id: id.clone(),
                owning_user_key: owner,
                source_url: opts.source_url.clone(),
                desired_version: opts.desired_version.clone(),
                package: PackageInfo {
                    source_type: package.source_type,
                    installed_version: package.installed_version.clone(),
                    title: package.manifest.as_ref().and_then(|m| m.name.clone()),
                },
                manifest: package.manifest.clone(),
                config: opts.config.clone().filter(|c| !c.is_empty()),
            },
            stopped: false,
        };
        self.store.insert(stored.clone())?;
        self.supervisor.ensure(self.spec(&stored)?).await;
        drop(guard);
        self.supervisor.start(&id).await?;
        Ok(self.info(&stored, false))
    }

    /// Stops and removes a service (and its clone, for git sources).
    pub async fn uninstall(&self, id: &str) -> Result<(), ManageError> {
        let (stored, core) = self.find(id)?;
        let id = stored.record.id.clone();
        if core {
            return Err(ManageError::Core(id));
        }
        let _guard = self.busy(&id)?;
        if self.supervisor.state(&id).is_some() {
            self.supervisor.remove(&id).await?;
        }
        self.store.remove(&id)?;
        let source = Source::parse(&stored.record.source_url)?;
        self.installer.remove(id.as_str(), &source).await?;
        tracing::info!(service = %id, "uninstalled");
        Ok(())
    }

    /// Takes the per-id guard, then reads the record (so a concurrent uninstall, update or
    /// rename is either finished or refused, never half-seen), and records whether a person
    /// wants the service stopped, which lasts across host restarts (core services excepted:
    /// config.json decides those).
    fn hold(&self, id: &str, stopped: bool) -> Result<(BusyGuard<'_>, StoredService), ManageError> {
        let guard = self.busy(&self.find(id)?.0.record.id)?;
        let (stored, core) = self.find(id)?;
        if !core {
            self.store
                .update(&stored.record.id, |s| s.stopped = stopped)?;
        }
        Ok((guard, stored))
    }

    /// Starts a service (and remembers that it should run).
    pub async fn start(&self, id: &str) -> Result<(), ManageError> {
        let (_guard, stored) = self.hold(id, false)?;
        let id = stored.record.id.clone();
        if self.supervisor.state(&id).is_none() {
            self.supervisor.ensure(self.spec(&stored)?).await;
        }
        self.supervisor.start(&id).await?;
        Ok(())
    }

    /// Stops a service (it stays stopped across host restarts).
    pub async fn stop(&self, id: &str) -> Result<(), ManageError> {
        let (_guard, stored) = self.hold(id, true)?;
        let id = stored.record.id.clone();
        if self.supervisor.state(&id).is_some() {
            self.supervisor.stop(&id).await?;
        }
        Ok(())
    }

    /// Stops then starts a service, with its latest settings.
    pub async fn restart(&self, id: &str) -> Result<(), ManageError> {
        let (_guard, stored) = self.hold(id, false)?;
        let id = stored.record.id.clone();
        self.supervisor.ensure(self.spec(&stored)?).await;
        self.supervisor.restart(&id).await?;
        Ok(())
    }

    /// Changes a service's id, source, version range or config (merged; `""` removes a
    /// key). A new id restarts the service under it; other changes apply at the next start.
    pub async fn configure(&self, id: &str, opts: ConfigureOpts) -> Result<(), ManageError> {
        let (stored, core) = self.find(id)?;
        let old_id = stored.record.id.clone();
        if core {
            return Err(ManageError::Core(old_id));
        }
        let _guard = self.busy(&old_id)?;
        if let Some(url) = &opts.source_url {
            Source::parse(url)?;
        }
        let new_id = match opts.id.as_deref().filter(|n| *n != old_id.as_str()) {
            Some(new) => {
                let new: ServiceId = new.parse().map_err(ManageError::BadId)?;
                if self.id_taken(&new) {
                    return Err(ManageError::IdTaken(new.to_string()));
                }
                Some(self.busy(&new)?)
            }
            None => None,
        };
        let merge = |record: &mut ServiceRecord| {
            if let Some(url) = &opts.source_url {
                record.source_url = url.clone();
            }
            if let Some(v) = &opts.desired_version {
                record.desired_version = Some(v.clone()).filter(|v| !v.is_empty());
            }
            if let Some(changes) = &opts.config {
                let mut config: BTreeMap<String, String> = record.config.take().unwrap_or_default();
                for (k, v) in changes {
                    if v.is_empty() {
                        config.remove(k);
                    } else {
                        config.insert(k.clone(), v.clone());
                    }
                }
                record.config = Some(config).filter(|c| !c.is_empty());
            }
        };
        let Some(new_guard) = new_id else {
            let updated = self
                .store
                .update(&old_id, |s| merge(&mut s.record))?
                .ok_or_else(|| ManageError::NotFound(old_id.to_string()))?;
            self.supervisor.ensure(self.spec(&updated)?).await;
            return Ok(());
        };
        let new_id = new_guard.id.clone();
        let was_running = self
            .supervisor
            .state(&old_id)
            .is_some_and(|s| matches!(s.status, ServiceStatus::Active | ServiceStatus::Starting));
        if self.supervisor.state(&old_id).is_some() {
            self.supervisor.remove(&old_id).await?;
        }
        let source = Source::parse(&stored.record.source_url)?;
        if let Err(e) = self
            .installer
            .rename(old_id.as_str(), new_id.as_str(), &source)
            .await
        {
            // Nothing changed: put the service back as it was.
            self.supervisor.ensure(self.spec(&stored)?).await;
            if was_running {
                self.supervisor.start(&old_id).await?;
            }
            return Err(e.into());
        }
        let updated = self
            .store
            .update(&old_id, |s| {
                s.record.id = new_id.clone();
                merge(&mut s.record);
            })?
            .ok_or_else(|| ManageError::NotFound(old_id.to_string()))?;
        let _ = std::fs::rename(self.paths.log(&old_id), self.paths.log(&new_id));
        self.supervisor.ensure(self.spec(&updated)?).await;
        tracing::info!(from = %old_id, to = %new_id, "service renamed");
        if was_running && !updated.stopped {
            self.supervisor.start(&new_id).await?;
        }
        Ok(())
    }

    /// Looks for a newer release matching the desired range.
    pub async fn check_for_updates(&self, id: &str) -> Result<UpdateCheck, ManageError> {
        let (stored, _) = self.find(id)?;
        let _guard = self.busy(&stored.record.id)?;
        let source = Source::parse(&stored.record.source_url)?;
        Ok(self
            .installer
            .check_for_updates(
                stored.record.id.as_str(),
                &source,
                stored.record.desired_version.as_deref(),
                stored.record.package.installed_version.as_deref(),
            )
            .await?)
    }

    /// Installs the best matching release; the running process is left alone until the next
    /// (re)start, as in the original.
    pub async fn update_package(&self, id: &str) -> Result<UpdateResult, ManageError> {
        let (stored, core) = self.find(id)?;
        let id = stored.record.id.clone();
        if core {
            return Err(ManageError::Core(id));
        }
        let _guard = self.busy(&id)?;
        let source = Source::parse(&stored.record.source_url)?;
        let log = self.log_for(&id);
        let package = self
            .installer
            .update(
                id.as_str(),
                &source,
                stored.record.desired_version.as_deref(),
                &log,
            )
            .await?;
        let old = stored
            .record
            .package
            .installed_version
            .clone()
            .unwrap_or_default();
        let updated = self
            .store
            .update(&id, |s| {
                s.record.package.installed_version = package.installed_version.clone();
                s.record.package.title = package.manifest.as_ref().and_then(|m| m.name.clone());
                s.record.manifest = package.manifest.clone();
            })?
            .ok_or_else(|| ManageError::NotFound(id.to_string()))?;
        self.supervisor.ensure(self.spec(&updated)?).await;
        Ok(UpdateResult {
            installed_version: package.installed_version.unwrap_or_default(),
            old_version: old,
        })
    }
}
