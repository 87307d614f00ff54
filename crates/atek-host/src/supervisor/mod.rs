//! The supervisor: starts services, watches them, restarts them when they crash.
//!
//! Each service has an actor task that owns its process; the [`Supervisor`] handle sends it
//! commands. A start spawns the process, then probes `HEAD /` on its socket and port until
//! one answers 200-400 or `readyTimeout` passes (then the service is *failed* and its APIs
//! are never registered). Once ready its exports are registered in the broker. When the
//! process exits on its own, its exports are removed and it is restarted after a delay that
//! doubles on each crash (reset after a stable run); `crashLoopLimit` crashes within
//! `crashLoopWindow` mark it failed.

mod logs;
mod process;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atek_api::services::{Manifest, ServiceStatus};
use atek_core::{BearerToken, ServiceId, ServiceKey, UserKey};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use logs::{REDACTED, ServiceLog, Tag};
pub use process::{SpawnError, describe_exit};

use crate::auth::{Auth, Caller};
use crate::broker::{Broker, Provider, Rank, ServiceExport};
use crate::groups::Groups;
use crate::paths::Paths;
use crate::upstream::{Endpoint, Upstream, probe_head};

/// The longest wait between restarts.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// The longest a Unix socket path may be (sun_path, with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The supervisor's settings (from config.json).
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// `readyTimeout`.
    pub ready_timeout: Duration,
    /// `stopTimeout`.
    pub stop_timeout: Duration,
    /// `restartDelay`.
    pub restart_delay: Duration,
    /// `crashLoopLimit`.
    pub crash_loop_limit: u32,
    /// `crashLoopWindow`.
    pub crash_loop_window: Duration,
    /// `logMaxBytes`.
    pub log_max_bytes: u64,
    /// `logFiles`.
    pub log_files: u32,
    /// `nodePath`.
    pub node_path: PathBuf,
    /// The host's HTTP port, for `ATEK_HOST_PORT`.
    pub host_port: u16,
    /// Scrubbed from every service log.
    pub system_tokens: Vec<BearerToken>,
}

/// What to run for a service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Its id.
    pub id: ServiceId,
    /// Its stable key.
    pub key: ServiceKey,
    /// Its owner.
    pub owner: UserKey,
    /// Whether the owner is an admin (then so is the service's token).
    pub owner_admin: bool,
    /// A core service: its exports win over installed services' (see [`Rank`]).
    pub core: bool,
    /// The package folder.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: Option<Manifest>,
    /// Config vars.
    pub config: BTreeMap<String, String>,
}

/// A service's live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    /// Starting, active, failed or stopped.
    pub status: ServiceStatus,
    /// Why it is failed or restarting.
    pub reason: Option<String>,
    /// How the process last ended.
    pub last_exit: Option<String>,
    /// Restarts after crashes since the last requested start.
    pub restarts: u32,
    /// The process id while running.
    pub pid: Option<u32>,
    /// The assigned TCP port.
    pub port: Option<u16>,
}

impl Default for RunState {
    fn default() -> Self {
        Self {
            status: ServiceStatus::Stopped,
            reason: None,
            last_exit: None,
            restarts: 0,
            pid: None,
            port: None,
        }
    }
}

/// Errors of supervisor commands.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No such service is loaded.
    #[error("no service is loaded under the id {0}")]
    Unknown(ServiceId),
    /// The service's task is gone (the host is shutting down).
    #[error("the host is shutting down")]
    ShuttingDown,
}

enum Cmd {
    /// Start (if not running); the sender fires once it is active, failed or stopped.
    Start(oneshot::Sender<()>),
    /// Stop; the sender fires once it has stopped.
    Stop(oneshot::Sender<()>),
    /// Use this spec from the next spawn on.
    Spec(Box<ServiceSpec>),
}

struct Slot {
    tx: mpsc::Sender<Cmd>,
    state: watch::Receiver<RunState>,
}

struct Shared {
    cfg: SupervisorConfig,
    paths: Paths,
    broker: Arc<Broker>,
    auth: Arc<Auth>,
    tasks: TaskTracker,
    /// The live process groups, for the next start's sweep should the host be killed.
    groups: Groups,
    /// The runtime the supervisor was made on: every actor runs there, whichever thread
    /// asked for the start, so services are forked by (and die with) the host's main thread
    /// and outlive no HTTP thread's shutdown.
    runtime: tokio::runtime::Handle,
}

/// The handle to every service's actor.
pub struct Supervisor {
    shared: Arc<Shared>,
    slots: Mutex<HashMap<ServiceId, Slot>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no services. Must be called within the runtime its actors are to
    /// run on. Each service's process group is listed in `groups` while it runs.
    pub fn new(
        cfg: SupervisorConfig,
        paths: Paths,
        broker: Arc<Broker>,
        auth: Arc<Auth>,
        groups: Groups,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                cfg,
                paths,
                broker,
                auth,
                tasks: TaskTracker::new(),
                groups,
                runtime: tokio::runtime::Handle::current(),
            }),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<ServiceId, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sender(&self, id: &ServiceId) -> Result<mpsc::Sender<Cmd>, SupervisorError> {
        self.slots()
            .get(id)
            .map(|s| s.tx.clone())
            .ok_or_else(|| SupervisorError::Unknown(id.clone()))
    }

    /// Loads a service (stopped), or gives a loaded one a new spec for its next start.
    pub async fn ensure(&self, spec: ServiceSpec) {
        let existing = self.slots().get(&spec.id).map(|s| s.tx.clone());
        if let Some(tx) = existing {
            let _ = tx.send(Cmd::Spec(Box::new(spec))).await;
            return;
        }
        let (tx, rx) = mpsc::channel(16);
        let (state_tx, state_rx) = watch::channel(RunState::default());
        let log = ServiceLog::new(
            self.shared.paths.log(&spec.id),
            self.shared.cfg.log_max_bytes,
            self.shared.cfg.log_files,
        );
        let actor = Actor {
            shared: self.shared.clone(),
            spec: spec.clone(),
            state: state_tx,
            rx,
            log,
            port: None,
            waiters: Vec::new(),
        };
        self.shared
            .tasks
            .spawn_on(actor.run(), &self.shared.runtime);
        self.slots().insert(
            spec.id,
            Slot {
                tx,
                state: state_rx,
            },
        );
    }

    /// Starts a service and waits until it is active, failed or stopped.
    pub async fn start(&self, id: &ServiceId) -> Result<RunState, SupervisorError> {
        let tx = self.sender(id)?;
        let (done, wait) = oneshot::channel();
        tx.send(Cmd::Start(done))
            .await
            .map_err(|_| SupervisorError::ShuttingDown)?;
        wait.await.map_err(|_| SupervisorError::ShuttingDown)?;
        self.state(id)
            .ok_or_else(|| SupervisorError::Unknown(id.clone()))
    }

    /// Stops a service and waits until its process is gone.
    pub async fn stop(&self, id: &ServiceId) -> Result<(), SupervisorError> {
        let tx = self.sender(id)?;
        let (done, wait) = oneshot::channel();
        tx.send(Cmd::Stop(done))
            .await
            .map_err(|_| SupervisorError::ShuttingDown)?;
        wait.await.map_err(|_| SupervisorError::ShuttingDown)
    }

    /// Stops then starts a service.
    pub async fn restart(&self, id: &ServiceId) -> Result<RunState, SupervisorError> {
        self.stop(id).await?;
        self.start(id).await
    }

    /// Stops a service and forgets it.
    pub async fn remove(&self, id: &ServiceId) -> Result<(), SupervisorError> {
        self.stop(id).await?;
        self.slots().remove(id);
        Ok(())
    }

    /// The live state of a loaded service.
    pub fn state(&self, id: &ServiceId) -> Option<RunState> {
        self.slots().get(id).map(|s| s.state.borrow().clone())
    }

    /// Stops every service at once, each with its grace period, then waits for the actors.
    pub async fn shutdown(&self) {
        let senders: Vec<_> = self.slots().drain().map(|(_, s)| s.tx).collect();
        let stops = senders.into_iter().map(|tx| async move {
            let (done, wait) = oneshot::channel();
            if tx.send(Cmd::Stop(done)).await.is_ok() {
                let _ = wait.await;
            }
        });
        futures_util::future::join_all(stops).await;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// How one run of a process ended.
enum Outcome {
    /// Stopped by request (acknowledged already).
    Stopped,
    /// Gave up, with the reason.
    Failed(String),
    /// Exited on its own.
    Crashed { exit: String, ran_for: Duration },
}

/// The wait after `delay` has been waited: twice as long, up to [`MAX_RESTART_DELAY`]. A
/// `restartDelay` longer than that ceiling is kept as it is: capping only the doubled
/// delays made such a setting's second wait shorter than its first. Saturating, so that no
/// setting can overflow it.
fn next_restart_delay(delay: Duration, restart_delay: Duration) -> Duration {
    delay
        .saturating_mul(2)
        .min(MAX_RESTART_DELAY.max(restart_delay))
}

/// A command that arrived while a process runs, after the actor dealt with what it could.
enum Interrupt {
    /// Stop now; acknowledge with this (None when the supervisor itself is gone).
    Stop(Option<oneshot::Sender<()>>),
}

/// What one round of readiness probes found.
enum Probe {
    /// This endpoint answered `HEAD /` with 200-400.
    Ready(Endpoint),
    /// Something answered, with another status.
    Answered(http::StatusCode),
    /// Nothing answered.
    Nothing,
}

/// Probes the socket, then the TCP port, but the port only while the service has made no
/// socket: a port is released for the service to take, so another program could in theory
/// hold it, while the socket is in the host's private folder.
async fn probe_candidates(candidates: &[Endpoint; 2]) -> Probe {
    let mut answered = None;
    for endpoint in candidates {
        if let Endpoint::Tcp(_) = endpoint
            && let Endpoint::Unix(socket) = &candidates[0]
            && socket.exists()
        {
            continue;
        }
        match probe_head(endpoint).await {
            Some(status) if (200..=400).contains(&status.as_u16()) => {
                return Probe::Ready(endpoint.clone());
            }
            Some(status) => answered = Some(status),
            None => {}
        }
    }
    answered.map_or(Probe::Nothing, Probe::Answered)
}

struct Actor {
    shared: Arc<Shared>,
    spec: ServiceSpec,
    state: watch::Sender<RunState>,
    rx: mpsc::Receiver<Cmd>,
    log: ServiceLog,
    port: Option<u16>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Actor {
    async fn run(mut self) {
        while let Some(cmd) = self.rx.recv().await {
            match cmd {
                Cmd::Start(done) => {
                    self.waiters.push(done);
                    self.state.send_modify(|s| s.restarts = 0);
                    self.supervise().await;
                }
                Cmd::Stop(done) => {
                    let _ = done.send(());
                }
                Cmd::Spec(spec) => self.spec = *spec,
            }
        }
    }

    fn notify_waiters(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn settle(&mut self, status: ServiceStatus, reason: Option<String>) {
        self.state.send_modify(|s| {
            s.status = status;
            s.reason = reason;
            if status != ServiceStatus::Active {
                s.pid = None;
            }
        });
        self.notify_waiters();
    }

    /// Handles a command while running; returns Some when the process must stop.
    fn on_command(&mut self, cmd: Option<Cmd>, active: bool) -> Option<Interrupt> {
        match cmd {
            None => Some(Interrupt::Stop(None)),
            Some(Cmd::Stop(done)) => Some(Interrupt::Stop(Some(done))),
            Some(Cmd::Start(done)) => {
                if active {
                    let _ = done.send(());
                } else {
                    self.waiters.push(done);
                }
                None
            }
            Some(Cmd::Spec(spec)) => {
                self.spec = *spec;
                None
            }
        }
    }

    async fn supervise(&mut self) {
        let cfg = self.shared.cfg.clone();
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let mut delay = cfg.restart_delay;
        loop {
            let (exit, ran_for) = match self.run_once().await {
                Outcome::Stopped => return,
                Outcome::Failed(reason) => {
                    self.log.line(Tag::Sys, &format!("failed: {reason}"));
                    tracing::warn!(service = %self.spec.id, %reason, "service failed");
                    self.settle(ServiceStatus::Failed, Some(reason));
                    return;
                }
                Outcome::Crashed { exit, ran_for } => (exit, ran_for),
            };
            let now = Instant::now();
            crashes.push_back(now);
            while crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > cfg.crash_loop_window)
            {
                crashes.pop_front();
            }
            if ran_for > cfg.crash_loop_window {
                delay = cfg.restart_delay;
            }
            if crashes.len() >= cfg.crash_loop_limit as usize {
                let reason = format!(
                    "crashed {} times within {}; last: {exit}. Fix the service, then start it again",
                    crashes.len(),
                    humantime::format_duration(cfg.crash_loop_window)
                );
                self.log.line(Tag::Sys, &reason);
                tracing::warn!(service = %self.spec.id, "crash loop: giving up");
                self.settle(ServiceStatus::Failed, Some(reason));
                return;
            }
            let reason = format!(
                "restarting in {} after it ended ({exit})",
                humantime::format_duration(delay)
            );
            self.log.line(Tag::Sys, &reason);
            tracing::info!(service = %self.spec.id, %exit, "service ended; restarting");
            self.state.send_modify(|s| {
                s.status = ServiceStatus::Starting;
                s.reason = Some(reason);
                s.restarts += 1;
                s.pid = None;
            });
            // Whoever waits for this start learns now that it crashed and is being retried,
            // rather than waiting for an outcome that may never come.
            self.notify_waiters();
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.rx.recv() => {
                        if let Some(Interrupt::Stop(done)) = self.on_command(cmd, false) {
                            self.settle(ServiceStatus::Stopped, None);
                            if let Some(done) = done { let _ = done.send(()); }
                            return;
                        }
                    }
                }
            }
            delay = next_restart_delay(delay, cfg.restart_delay);
        }
    }

    async fn run_once(&mut self) -> Outcome {
        let cfg = self.shared.cfg.clone();
        let id = self.spec.id.clone();
        self.state.send_modify(|s| {
            s.status = ServiceStatus::Starting;
            s.pid = None;
        });

        let socket = self.shared.paths.socket(&id);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Outcome::Failed(format!(
                "its socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --config-dir",
                socket.display()
            ));
        }
        let _ = std::fs::remove_file(&socket);
        let port = match self.port {
            Some(p) => p,
            None => match process::free_port() {
                Ok(p) => p,
                Err(e) => return Outcome::Failed(format!("no free TCP port for it: {e}")),
            },
        };
        self.port = Some(port);
        let token = BearerToken::generate();
        let launch = process::Launch {
            dir: self.spec.dir.clone(),
            manifest: self.spec.manifest.clone(),
            config: self.spec.config.clone(),
            key: self.spec.key.clone(),
            socket: socket.clone(),
            port,
            host_port: cfg.host_port,
            token: token.clone(),
            node_path: cfg.node_path.clone(),
        };
        let mut secrets = cfg.system_tokens.clone();
        secrets.push(token.clone());
        self.log.set_secrets(secrets);

        // Admitted before the process exists, so its first call is never refused.
        let caller = Caller {
            user: self.spec.owner.clone(),
            service: self.spec.key.clone(),
            admin: self.spec.owner_admin,
            session: false,
        };
        self.shared.auth.add(&token, caller);
        let mut child = match launch.spawn() {
            Ok(child) => child,
            Err(e) => {
                self.shared.auth.remove(&token);
                return Outcome::Failed(e.to_string());
            }
        };
        let pid = child.id();
        if let Ok((program, args)) = launch.argv() {
            self.log.line(
                Tag::Sys,
                &format!(
                    "started pid {} : {} {}",
                    pid.unwrap_or(0),
                    program.display(),
                    args.join(" ")
                ),
            );
        }
        tracing::info!(service = %id, pid, "service started");
        if let Some(out) = child.stdout.take() {
            self.shared
                .tasks
                .spawn(self.log.clone().pump(out, Tag::Out));
        }
        if let Some(err) = child.stderr.take() {
            self.shared
                .tasks
                .spawn(self.log.clone().pump(err, Tag::Err));
        }
        self.state.send_modify(|s| {
            s.pid = pid;
            s.port = Some(port);
        });
        let pgid = process::group_of(pid);
        // Listed while it runs: if the host is killed, the next start kills what is left.
        let tracked = self
            .shared
            .groups
            .track(pgid, launch.marker(), format!("service {id}"));
        let outcome = self.watch(&mut child, socket, port).await;
        // Whatever the service started in its process group goes with it, crash or stop.
        process::kill_group(pgid);
        drop(tracked);
        self.shared.auth.remove(&token);
        self.shared.broker.unregister_service(&id);
        outcome
    }

    /// Waits for readiness, registers exports, then waits for an exit or a stop.
    async fn watch(
        &mut self,
        child: &mut tokio::process::Child,
        socket: PathBuf,
        port: u16,
    ) -> Outcome {
        let cfg = self.shared.cfg.clone();
        let started = Instant::now();
        let deadline = started + cfg.ready_timeout;
        let candidates = [
            Endpoint::Unix(socket),
            Endpoint::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        ];
        let mut last_answer: Option<http::StatusCode> = None;
        let mut pause = Duration::from_millis(5);
        let endpoint = loop {
            let now = Instant::now();
            if now >= deadline {
                process::terminate(child, cfg.stop_timeout).await;
                let answer = match last_answer {
                    Some(s) => format!("it answered HEAD / with {s}"),
                    None => "nothing answered HEAD / on its socket or port".to_owned(),
                };
                return Outcome::Failed(format!(
                    "not ready within {} ({answer})",
                    humantime::format_duration(cfg.ready_timeout)
                ));
            }
            // One probe never waits longer than a second nor past the deadline: a service
            // that accepts connections and never answers must not stall its supervisor.
            let patience = (deadline - now).min(Duration::from_secs(1));
            let probe = async {
                tokio::time::sleep(pause).await;
                tokio::time::timeout(patience, probe_candidates(&candidates)).await
            };
            tokio::select! {
                status = child.wait() => {
                    let exit = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    self.state.send_modify(|s| s.last_exit = Some(exit.clone()));
                    self.log.line(Tag::Sys, &format!("ended before it was ready: {exit}"));
                    return Outcome::Crashed { exit, ran_for: started.elapsed() };
                }
                cmd = self.rx.recv() => {
                    if let Some(Interrupt::Stop(done)) = self.on_command(cmd, false) {
                        return self.stop_now(child, done).await;
                    }
                }
                probed = probe => match probed {
                    Ok(Probe::Ready(endpoint)) => break endpoint,
                    Ok(Probe::Answered(status)) => last_answer = Some(status),
                    Ok(Probe::Nothing) | Err(_) => {}
                },
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        };

        self.register(&endpoint);
        self.log.line(Tag::Sys, &format!("ready on {endpoint}"));
        tracing::info!(service = %self.spec.id, %endpoint, "service ready");
        self.settle(ServiceStatus::Active, None);
        let active_since = Instant::now();
        loop {
            tokio::select! {
                status = child.wait() => {
                    let exit = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    self.shared.broker.unregister_service(&self.spec.id);
                    self.state.send_modify(|s| s.last_exit = Some(exit.clone()));
                    self.log.line(Tag::Sys, &format!("ended: {exit}"));
                    return Outcome::Crashed { exit, ran_for: active_since.elapsed() };
                }
                cmd = self.rx.recv() => {
                    if let Some(Interrupt::Stop(done)) = self.on_command(cmd, true) {
                        return self.stop_now(child, done).await;
                    }
                }
            }
        }
    }

    async fn stop_now(
        &mut self,
        child: &mut tokio::process::Child,
        done: Option<oneshot::Sender<()>>,
    ) -> Outcome {
        // Unregister first, so no new call is routed to a process that is going away.
        self.shared.broker.unregister_service(&self.spec.id);
        let status = process::terminate(child, self.shared.cfg.stop_timeout).await;
        let exit = status.map(describe_exit);
        self.log.line(
            Tag::Sys,
            &format!("stopped ({})", exit.as_deref().unwrap_or("already gone")),
        );
        self.state.send_modify(|s| s.last_exit = exit.clone());
        self.settle(ServiceStatus::Stopped, None);
        if let Some(done) = done {
            let _ = done.send(());
        }
        Outcome::Stopped
    }

    fn register(&self, endpoint: &Endpoint) {
        let upstream = Upstream::new(endpoint.clone());
        self.shared.broker.register_app(crate::broker::AppRoute {
            id: self.spec.id.clone(),
            key: self.spec.key.clone(),
            owner: self.spec.owner.clone(),
            upstream: upstream.clone(),
        });
        let Some(manifest) = &self.spec.manifest else {
            return;
        };
        let entries = manifest.exports.iter().filter_map(|export| {
            let path = match export.path().parse::<http::Uri>() {
                Ok(path) if path.scheme().is_none() && path.path().starts_with('/') => path,
                _ => {
                    let message = format!(
                        "export {} has an invalid path {:?}; not registered",
                        export.api,
                        export.path()
                    );
                    self.log.line(Tag::Sys, &message);
                    return None;
                }
            };
            let provider = Provider::Service(Arc::new(ServiceExport {
                id: self.spec.id.clone(),
                key: self.spec.key.clone(),
                path,
                upstream: upstream.clone(),
            }));
            Some((export.api.clone(), export.transport(), provider))
        });
        let rank = if self.spec.core {
            Rank::Core
        } else {
            Rank::User
        };
        self.shared.broker.register(rank, entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(restart_delay: Duration, n: usize) -> Vec<Duration> {
        std::iter::successors(Some(restart_delay), |d| {
            Some(next_restart_delay(*d, restart_delay))
        })
        .take(n)
        .collect()
    }

    #[test]
    fn restart_delays_double_up_to_the_ceiling() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        assert_eq!(
            schedule(ms(500), 8),
            [ms(500), s(1), s(2), s(4), s(8), s(16), s(30), s(30)]
        );
    }

    #[test]
    fn a_restart_delay_above_the_ceiling_is_kept_not_shortened() {
        let s = Duration::from_secs;
        assert_eq!(schedule(s(45), 3), [s(45), s(45), s(45)]);
        assert_eq!(schedule(Duration::MAX, 2), [Duration::MAX, Duration::MAX]);
    }
}
