//! The composition root: builds every part from the config and runs the host.
//!
//! Start-up (reference §1.4, changed where noted):
//! 0. lock the config dir, then kill what a killed previous run left in its process groups
//!    ([`crate::groups`]);
//! 1. load config.json, generate a system token if there is none and write it back;
//! 2. create the folders; open the services store;
//! 3. listen (so the gateway is up before anything is loaded) and write `run.json`;
//! 4. load the core services in order, each installed, started and awaited; one that fails
//!    is reported and skipped (the original stopped there);
//! 5. register the host's own APIs: from here `inspect-api.isReady` answers `true`;
//! 6. start the installed services that were not stopped by a person, all at once.
//!
//! Shutdown (SIGINT/SIGTERM, or [`Host::shutdown`]): stop accepting requests, stop every
//! service at once (SIGTERM, then SIGKILL after `stopTimeout`), remove `run.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use atek_api::services::Transport;
use atek_core::{ApiId, ServiceId, UserKey};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::broker::{Broker, HostApi, Provider};
use crate::config::{Config, ConfigError};
use crate::groups::Groups;
use crate::installer::{InstallLimits, Installer, Source};
use crate::manage::BusyIds;
use crate::paths::Paths;
use crate::store::{Store, StoreError, StoredService};
use crate::supervisor::{ServiceSpec, Supervisor, SupervisorConfig};

/// How long open connections (WebSockets, slow calls) may hold up shutdown.
const DRAIN: Duration = Duration::from_secs(2);

/// What `atek run` was asked for: the config dir and the flags that override config.json.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The config dir.
    pub config_dir: PathBuf,
    /// `--port`.
    pub port: Option<u16>,
    /// `--domain`.
    pub domain: Option<String>,
    /// `--bind`.
    pub bind_address: Option<std::net::IpAddr>,
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// config.json is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state store is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The built-in ADB, which holds the host's own records, could not open.
    #[error("ADB could not open the server database in {dir}: {reason}")]
    Adb {
        /// Its folder.
        dir: PathBuf,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// A folder could not be made.
    #[error("cannot create {path}: {source}")]
    Dirs {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another host runs on this config dir.
    #[error(
        "Atek is already running with the config dir {dir}{pid}. Stop it first, or use another --config-dir"
    )]
    AlreadyRunning {
        /// The config dir.
        dir: PathBuf,
        /// " (pid N)" when run.json names it.
        pid: String,
    },
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}. {hint}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The p2p node (`p2p` in config.json) could not start.
    #[error("cannot start p2p: {reason}. Fix `p2p` in config.json, or set p2p.enabled to false")]
    P2p {
        /// What went wrong.
        reason: String,
    },
}

/// `run.json`: how the CLI finds a running host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The host's process id.
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    /// Its base URL on loopback.
    pub url: String,
    /// Its version.
    pub version: String,
}

/// Everything the request handlers and operations share.
#[derive(Debug)]
pub struct HostState {
    /// The effective config (file plus flags).
    pub config: Config,
    /// The config dir's layout.
    pub paths: Paths,
    /// The port the host listens on.
    pub port: u16,
    /// Installed services.
    pub store: Store,
    /// API routing.
    pub broker: Arc<Broker>,
    /// Tokens.
    pub auth: Arc<Auth>,
    /// Processes.
    pub supervisor: Supervisor,
    /// Packages.
    pub installer: Installer,
    /// Core services' records.
    pub(crate) core: RwLock<Vec<StoredService>>,
    /// Core services that could not be loaded (install or manifest errors), with the reason:
    /// listed as failed rather than missing.
    pub(crate) core_failures: RwLock<std::collections::HashMap<ServiceId, String>>,
    /// Ids under an operation.
    pub(crate) busy: BusyIds,
    /// Accounts.
    pub users: crate::users::Users,
    /// Browser logins.
    pub sessions: crate::users::Sessions,
    /// The built-in ADB: the home's databases, among them the server database that holds
    /// the host's own records.
    pub adb: Arc<atek_db::Adb>,
    /// Login attempts.
    pub(crate) limiter: crate::users::LoginLimiter,
    /// The first-admin link's token, while there are no users.
    pub(crate) setup_token: std::sync::Mutex<Option<String>>,
    /// Bind tokens waiting for the browser they were minted for.
    pub(crate) pending_binds: crate::web::apps::PendingBinds,
    /// This state itself, for work that outlives a request (installing a new user's main
    /// service).
    me: std::sync::Weak<HostState>,
    ready: AtomicBool,
}

impl HostState {
    /// True once the host serves its own APIs.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A strong handle on this state (None while the host is being dropped).
    pub(crate) fn me(&self) -> Option<Arc<HostState>> {
        self.me.upgrade()
    }

    /// config.json as persisted (what `inspect-api.getConfig` returns).
    pub fn persisted_config(&self) -> std::io::Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.paths.config_file())?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

/// A running host.
#[derive(Debug)]
pub struct Host {
    state: Arc<HostState>,
    /// Held while the host runs: one host per config dir.
    _lock: std::fs::File,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    boot: tokio::task::JoinHandle<()>,
    /// The p2p node answering HTTP on the home's key, when `p2p.enabled`.
    node: Option<atek_net::Node>,
}

impl Host {
    /// Starts the host: listens, then loads services in the background. Returns once the
    /// port is bound; `state().is_ready()` turns true when the core services are loaded.
    pub async fn start(opts: HostOptions) -> Result<Self, HostError> {
        // Absolute: services run in their own folders, and their socket paths come from here.
        let config_dir =
            std::path::absolute(&opts.config_dir).map_err(|source| HostError::Dirs {
                path: opts.config_dir.clone(),
                source,
            })?;
        let paths = Paths::new(&config_dir);
        paths.create_dirs().map_err(|source| HostError::Dirs {
            path: paths.root().to_owned(),
            source,
        })?;
        let lock = lock_config_dir(&paths)?;
        // Holding the lock, before anything starts: what a killed host left running goes.
        sweep_leftovers(&paths).await;
        let config_file = paths.config_file();
        let mut config = Config::load(&config_file)?;
        if config.ensure_system_token() {
            config.save(&config_file)?;
            tracing::info!(file = %config_file.display(), "generated a system token");
        }
        // Before flags apply: it may write serverDbId back to the file.
        let adb = open_adb(&paths, &mut config, &config_file).await?;
        if let Some(port) = opts.port {
            config.port = port;
        }
        if let Some(domain) = opts.domain {
            crate::config::check_domain(&domain).map_err(|problem| {
                ConfigError::Invalid(crate::config::Invalid {
                    path: "--domain".into(),
                    field: String::new(),
                    problem,
                    fix: crate::config::DOMAIN_FIX.to_owned(),
                })
            })?;
            config.domain = domain;
        }
        // Host names are matched without case (requests' are lowercased).
        config.domain.make_ascii_lowercase();
        if let Some(bind) = opts.bind_address {
            config.bind_address = bind;
        }

        let addr = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| HostError::Listen {
            addr,
            hint: match source.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "Another program (or another Atek) uses that port: stop it, or pick another with --port"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "Ports below 1024 need root: pick a higher one with --port"
                }
                _ => "Check bindAddress and port in config.json",
            },
            source,
        })?;
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(config.port);

        let (store, users, sessions) = {
            let (server, state, ttl) = (adb.server().clone(), paths.state(), config.session_ttl);
            tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                Ok((
                    Store::open_in(&server, &state)?,
                    crate::users::Users::open_in(&server, &state)?,
                    crate::users::Sessions::open_in(&server, &state, ttl)?,
                ))
            })
            .await
            .map_err(|e| HostError::Adb {
                dir: paths.adb(),
                reason: e.to_string(),
            })??
        };
        let broker = Arc::new(Broker::new());
        let auth = Arc::new(Auth::new(&config.system_auth_tokens));
        let groups = Groups::new(paths.groups_file());
        let supervisor = Supervisor::new(
            SupervisorConfig {
                ready_timeout: config.ready_timeout,
                stop_timeout: config.stop_timeout,
                restart_delay: config.restart_delay,
                crash_loop_limit: config.crash_loop_limit,
                crash_loop_window: config.crash_loop_window,
                log_max_bytes: config.log_max_bytes,
                log_files: config.log_files,
                node_path: config.node_path.clone(),
                host_port: port,
                system_tokens: config.system_auth_tokens.clone(),
            },
            paths.clone(),
            broker.clone(),
            auth.clone(),
            groups.clone(),
        );
        let installer = Installer::new(paths.packages())
            .with_limits(InstallLimits {
                git: config.git_timeout,
                npm: config.npm_timeout,
            })
            .with_groups(groups);
        let state = Arc::new_cyclic(|me| HostState {
            config,
            paths,
            port,
            store,
            broker,
            auth,
            supervisor,
            installer,
            core: RwLock::new(Vec::new()),
            core_failures: RwLock::new(std::collections::HashMap::new()),
            busy: BusyIds::default(),
            users,
            sessions,
            adb,
            limiter: crate::users::LoginLimiter::new(),
            setup_token: std::sync::Mutex::new(None),
            pending_binds: Default::default(),
            me: me.clone(),
            ready: AtomicBool::new(false),
        });

        let cancel = CancellationToken::new();
        let site = crate::server::site(state.clone());
        let p2p_site = site.clone();
        let server = tokio::spawn({
            let cancel = cancel.clone();
            let threads = state.config.http_loops();
            async move { crate::server::serve(listener, site, cancel, threads).await }
        });
        let node = start_p2p(&state, p2p_site).await?;
        write_run_file(&state);
        tracing::info!(url = %format!("http://{}:{port}", state.config.bind_address), "Atek listening");

        let boot = tokio::spawn(boot(state.clone()));
        Ok(Self {
            state,
            _lock: lock,
            cancel,
            server,
            boot,
            node,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<HostState> {
        &self.state
    }

    /// The port the host listens on.
    pub fn port(&self) -> u16 {
        self.state.port
    }

    /// Stops everything, in order, within bounds.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.boot.abort();
        self.cancel.cancel();
        if let Some(node) = &self.node {
            node.close().await;
        }
        let mut server = self.server;
        if tokio::time::timeout(DRAIN, &mut server).await.is_err() {
            server.abort();
        }
        self.state.supervisor.shutdown().await;
        let _ = std::fs::remove_file(self.state.paths.run_file());
        tracing::info!("stopped");
    }
}

/// Makes the home's node key on first run and, when `p2p.enabled`, starts the node that
/// answers HTTP on it. A key that cannot be made is only a warning while p2p is off.
async fn start_p2p(
    state: &Arc<HostState>,
    site: crate::server::Site,
) -> Result<Option<atek_net::Node>, HostError> {
    let path = state.paths.node_key();
    let key = match crate::p2p::node_key(&path) {
        Ok(key) => key,
        Err(e) if !state.config.p2p.enabled => {
            tracing::warn!(error = %e, "no p2p key for this home");
            return Ok(None);
        }
        Err(e) => {
            return Err(HostError::P2p {
                reason: e.to_string(),
            });
        }
    };
    if !state.config.p2p.enabled {
        return Ok(None);
    }
    let node = crate::p2p::bind(&key, &state.config)
        .await
        .map_err(|e| HostError::P2p {
            reason: e.to_string(),
        })?;
    tracing::info!(key = %node.key(), "answering HTTP over p2p on this home's key");
    let serving = node.clone();
    tokio::spawn(async move {
        let home = serving.key();
        let serve =
            move |peer, stream| crate::server::serve_p2p_stream(site.clone(), home, peer, stream);
        if let Err(e) = atek_net::bind::serve_streams(&serving, serve, None).await {
            tracing::error!(error = %e, "p2p serving stopped");
        }
    });
    Ok(Some(node))
}

/// Kills what the previous run of the host left running, if it was killed (see
/// [`crate::groups`]).
async fn sweep_leftovers(paths: &Paths) {
    let file = paths.groups_file();
    match tokio::task::spawn_blocking(move || crate::groups::sweep(&file)).await {
        Ok(killed) if !killed.is_empty() => {
            tracing::warn!(
                count = killed.len(),
                "the previous run of the host was killed; stopped what its services and installs had left running"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "the sweep of the previous run's processes failed"),
    }
}

/// Takes `{config dir}/lock` exclusively (released by the OS when the host exits, however
/// it exits): two hosts on one config dir would share its store, run.json and sockets.
fn lock_config_dir(paths: &Paths) -> Result<std::fs::File, HostError> {
    let path = paths.root().join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| HostError::Dirs {
            path: path.clone(),
            source,
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(_) => {
            let pid = std::fs::read(paths.run_file())
                .ok()
                .and_then(|b| serde_json::from_slice::<RunInfo>(&b).ok())
                .map(|info| format!(" (pid {})", info.pid))
                .unwrap_or_default();
            Err(HostError::AlreadyRunning {
                dir: paths.root().to_owned(),
                pid,
            })
        }
    }
}

fn write_run_file(state: &HostState) {
    let info = RunInfo {
        pid: std::process::id(),
        port: state.port,
        url: format!("http://127.0.0.1:{}", state.port),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let path = state.paths.run_file();
    let result = serde_json::to_vec_pretty(&info)
        .map_err(std::io::Error::other)
        .and_then(|bytes| crate::fsutil::write_atomic(&path, &bytes, 0o600));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot write run.json; the CLI will fall back to config.json's port");
    }
}

/// Steps 4-6 of start-up.
async fn boot(state: Arc<HostState>) {
    for (index, core) in state.config.core_services.iter().enumerate() {
        let id = match core_id(core) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(index, source = %core.source_url, error = %e, "core service has no usable id; skipped");
                continue;
            }
        };
        if let Err(e) = load_core(&state, core, &id).await {
            tracing::error!(service = %id, source = %core.source_url, error = %e, "core service failed to load; continuing without it");
            record_core_failure(&state, core, &id, e);
        }
    }
    state.broker.register(
        crate::broker::Rank::Host,
        [
            (
                api("atek.cloud/inspect-api"),
                Transport::Rpc,
                Provider::Host(HostApi::Inspect),
            ),
            (
                api("atek.cloud/services-api"),
                Transport::Rpc,
                Provider::Host(HostApi::Services),
            ),
            (
                api(atek_api::users::ID),
                Transport::Rpc,
                Provider::Host(HostApi::Users),
            ),
            (
                api(atek_api::users::SESSIONS_ID),
                Transport::Rpc,
                Provider::Host(HostApi::Sessions),
            ),
            (
                api("atek.cloud/adb-api"),
                Transport::Rpc,
                Provider::Host(HostApi::Adb),
            ),
        ],
    );
    state.ready.store(true, Ordering::Release);
    tracing::info!("ready");
    crate::web::setup::offer_first_admin(&state);

    let starts = state
        .store
        .list()
        .into_iter()
        .filter(|s| !s.stopped)
        .map(|stored| {
            let state = state.clone();
            async move {
                let id = stored.record.id.clone();
                let result = match state.spec(&stored) {
                    Ok(spec) => {
                        state.supervisor.ensure(spec).await;
                        state
                            .supervisor
                            .start(&id)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    tracing::error!(service = %id, error = %e, "cannot start service");
                }
            }
        });
    futures_util::future::join_all(starts).await;
}

fn api(id: &'static str) -> ApiId {
    id.parse()
        .unwrap_or_else(|_| unreachable!("host API ids are valid"))
}

/// A core service's id: configured, or `core.{name of the source}`.
fn core_id(core: &crate::config::CoreService) -> Result<ServiceId, String> {
    match &core.id {
        Some(id) => id.parse().map_err(|e: atek_core::IdError| e.to_string()),
        None => {
            let source = Source::parse(&core.source_url).map_err(|e| e.to_string())?;
            format!("core.{}", source.default_id())
                .parse()
                .map_err(|e: atek_core::IdError| e.to_string())
        }
    }
}

/// Lists a core service that could not be loaded as failed, with why.
fn record_core_failure(
    state: &HostState,
    core: &crate::config::CoreService,
    id: &ServiceId,
    reason: String,
) {
    state
        .core_failures
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), reason);
    if state.is_core(id) {
        return;
    }
    let Ok(key) = state.store.core_key(id) else {
        return;
    };
    let source_type = Source::parse(&core.source_url)
        .map(|s| s.source_type())
        .unwrap_or(atek_api::services::SourceType::File);
    push_core(state, core_record(core, id, key, source_type, None));
}

/// The record of a core service as services-api shows it (core services live in memory,
/// rebuilt from config.json at each start).
fn core_record(
    core: &crate::config::CoreService,
    id: &ServiceId,
    key: atek_core::ServiceKey,
    source_type: atek_api::services::SourceType,
    package: Option<&crate::installer::Package>,
) -> StoredService {
    let manifest = package.and_then(|p| p.manifest.clone());
    StoredService {
        key,
        record: atek_api::services::ServiceRecord {
            id: id.clone(),
            owning_user_key: UserKey::system(),
            source_url: core.source_url.clone(),
            desired_version: core.desired_version.clone(),
            package: atek_api::services::PackageInfo {
                source_type,
                installed_version: package.and_then(|p| p.installed_version.clone()),
                title: manifest.as_ref().and_then(|m| m.name.clone()),
            },
            manifest,
            config: Some(core.config.clone()).filter(|c| !c.is_empty()),
        },
        stopped: false,
    }
}

fn push_core(state: &HostState, stored: StoredService) {
    state
        .core
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(stored);
}

/// Installs (when needed) and starts one core service; it is owned by `system`.
async fn load_core(
    state: &HostState,
    core: &crate::config::CoreService,
    id: &ServiceId,
) -> Result<(), String> {
    let source = Source::parse(&core.source_url).map_err(|e| e.to_string())?;
    let id = id.clone();
    let log = state.log_for(&id);
    let desired = core.desired_version.as_deref();
    let error = |e: crate::installer::InstallError| e.to_string();
    // A git core service is fetched and rebuilt only when the best release changed.
    let current = match &source {
        Source::Git(_) => state
            .installer
            .current(id.as_str(), &source)
            .await
            .map_err(error)?,
        Source::Folder(_) => None,
    };
    let up_to_date = match current
        .as_ref()
        .and_then(|p| p.installed_version.as_deref())
    {
        Some(installed) => state
            .installer
            .check_for_updates(id.as_str(), &source, desired, Some(installed))
            .await
            .is_ok_and(|check| !check.has_update),
        None => false,
    };
    let package = match current {
        Some(package) if up_to_date => package,
        Some(_) => state
            .installer
            .update(id.as_str(), &source, desired, &log)
            .await
            .map_err(error)?,
        None => state
            .installer
            .install(id.as_str(), &source, desired, &log)
            .await
            .map_err(error)?,
    };
    let key = state.store.core_key(&id).map_err(|e| e.to_string())?;
    push_core(
        state,
        core_record(core, &id, key.clone(), package.source_type, Some(&package)),
    );
    state
        .supervisor
        .ensure(ServiceSpec {
            id: id.clone(),
            key,
            owner: UserKey::system(),
            owner_admin: true,
            core: true,
            dir: package.dir,
            manifest: package.manifest,
            config: core.config.clone(),
        })
        .await;
    let run = state
        .supervisor
        .start(&id)
        .await
        .map_err(|e| e.to_string())?;
    if run.status == atek_api::services::ServiceStatus::Active {
        Ok(())
    } else {
        Err(run
            .reason
            .unwrap_or_else(|| format!("it is {}", run.status.as_str())))
    }
}

/// Runs a host until SIGINT or SIGTERM.
pub async fn run(opts: HostOptions) -> Result<(), HostError> {
    let host = Host::start(opts).await?;
    wait_for_signal().await;
    eprintln!("Shutting down, this may take a moment...");
    host.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the host can only be killed; children still die with it.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Opens the built-in ADB's databases in `adb/`. On a first start it creates the server
/// database and records its id in config.json (`serverDbId`), as the original did. The host
/// keeps its own records there, so it cannot start without it.
async fn open_adb(
    paths: &Paths,
    config: &mut Config,
    config_file: &Path,
) -> Result<Arc<atek_db::Adb>, HostError> {
    let dir = paths.adb();
    let fail = |reason: String| HostError::Adb {
        dir: dir.clone(),
        reason,
    };
    let configured = match config
        .server_db_id
        .as_deref()
        .map(str::parse::<atek_core::DbId>)
    {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return Err(fail(
                "serverDbId in config.json is not a database id (64 hex digits); restore it from a backup of config.json".into(),
            ));
        }
    };
    // The id is also kept beside the databases, so a config.json that lost it (replaced,
    // edited by hand) does not start an empty server database: no users, no services.
    let marker = dir.join("server-db");
    let recorded = match std::fs::read_to_string(&marker) {
        Ok(text) => Some(text.trim().parse::<atek_core::DbId>().map_err(|_| {
            fail(format!(
                "{} is damaged: it should hold the server database's id (64 hex digits, the name of one of the folders beside it)",
                marker.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(format!("{}: {e}", marker.display()))),
    };
    let server = match (configured, recorded) {
        (Some(c), Some(r)) if c != r => {
            return Err(fail(format!(
                "serverDbId in config.json ({c}) is not this folder's server database ({r}); restore the config.json that goes with it, or set serverDbId to {r}"
            )));
        }
        (Some(id), _) | (None, Some(id)) => Some(id),
        (None, None) => None,
    };
    let opened = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            let store: Arc<dyn atek_db::Store> = Arc::new(atek_db::LogStore::new(dir)?);
            atek_db::Adb::open(store, server)
        }
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(e.to_string()))?;
    let id = opened.server().id();
    if recorded.is_none() {
        crate::fsutil::write_atomic(&marker, format!("{id}\n").as_bytes(), 0o600)
            .map_err(|e| fail(format!("{}: {e}", marker.display())))?;
    }
    if config.server_db_id.is_none() {
        config.server_db_id = Some(id.to_string());
        config.save(config_file)?;
        if server.is_none() {
            tracing::info!(%id, "created the server database");
        } else {
            tracing::info!(%id, "serverDbId was missing from config.json: restored it from adb/server-db");
        }
    }
    opened.init().await.map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(opened))
}
