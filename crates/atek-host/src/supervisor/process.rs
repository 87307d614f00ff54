//! Starting and stopping one service process.
//!
//! The environment is replaced, not inherited (reference §1.5): the service's config vars,
//! the `ATEK_*` vars, and `PATH` so that programs can be found (our one addition: the
//! original passed no `PATH`, so apps could not run `git` or `npm`). Nothing else of the
//! host's environment (which may hold secrets) reaches a service.
//!
//! Each service runs in its own process group, so stopping it also stops what it spawned,
//! and with a parent-death signal, so it dies with the host even when the host is killed
//! with SIGKILL. What it spawned gets no such signal: after a SIGKILLed host, the next start
//! finds it by its group and `Launch::marker` and kills it ([`crate::groups`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use atek_api::services::{Manifest, Runtime};
use atek_core::{BearerToken, ServiceKey};
use tokio::process::{Child, Command};

/// The variable with the service's key; also the marker of its processes.
const SERVICE_KEY_VAR: &str = "ATEK_ASSIGNED_SERVICE_KEY";

/// Everything needed to spawn a service once.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The package folder (also the working directory).
    pub dir: PathBuf,
    /// The manifest, if any.
    pub manifest: Option<Manifest>,
    /// The service's config vars (keys upper-cased here).
    pub config: BTreeMap<String, String>,
    /// The service's key.
    pub key: ServiceKey,
    /// The socket to listen on.
    pub socket: PathBuf,
    /// The TCP port to listen on (loopback).
    pub port: u16,
    /// The host's HTTP port.
    pub host_port: u16,
    /// This process's bearer token.
    pub token: BearerToken,
    /// The node binary for `node` services.
    pub node_path: PathBuf,
}

/// Why a service could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Neither package.json `main` nor `index.js` exists.
    #[error(
        "Package issue: neither package.json \"main\" nor index.js could be found in {dir}; add one, or set \"runtime\": \"exec\" and \"exec\" in atek.json"
    )]
    NoEntryPoint {
        /// The package folder.
        dir: PathBuf,
    },
    /// `runtime: exec` without a program.
    #[error("atek.json sets \"runtime\": \"exec\" but names no program in \"exec\"")]
    NoExec,
    /// The OS refused to start the program.
    #[error("cannot start {program}: {source}")]
    Os {
        /// What was run.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Launch {
    /// The program and arguments.
    pub(crate) fn argv(&self) -> Result<(PathBuf, Vec<String>), SpawnError> {
        let manifest = self.manifest.as_ref();
        let runtime = manifest.and_then(|m| m.runtime).unwrap_or(
            if manifest.is_some_and(|m| m.exec.is_some()) {
                Runtime::Exec
            } else {
                Runtime::Node
            },
        );
        match runtime {
            Runtime::Node => Ok((
                self.node_path.clone(),
                vec![node_entry(&self.dir)?.display().to_string()],
            )),
            Runtime::Exec => {
                let argv = manifest
                    .and_then(|m| m.exec.as_ref())
                    .map(|e| e.argv())
                    .unwrap_or_default();
                let (program, args) = argv.split_first().ok_or(SpawnError::NoExec)?;
                if program.is_empty() {
                    return Err(SpawnError::NoExec);
                }
                // A program with a slash is a path inside the package; a bare name is looked
                // up on PATH, unless the package has a file of that name.
                let local = self.dir.join(program);
                let program = if program.contains('/') || local.is_file() {
                    local
                } else {
                    PathBuf::from(program)
                };
                Ok((program, args.iter().map(|s| (*s).to_owned()).collect()))
            }
        }
    }

    /// The entry of [`Launch::env`] that marks this service's processes, for
    /// [`crate::groups::sweep`]: `ATEK_ASSIGNED_SERVICE_KEY={key}`.
    pub(crate) fn marker(&self) -> String {
        format!("{SERVICE_KEY_VAR}={}", self.key)
    }

    /// The environment, exactly.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .config
            .iter()
            .map(|(k, v)| (k.to_uppercase(), v.clone()))
            .collect();
        env.push((
            "ATEK_ASSIGNED_SOCKET_FILE".into(),
            self.socket.display().to_string(),
        ));
        env.push(("ATEK_ASSIGNED_PORT".into(), self.port.to_string()));
        env.push((SERVICE_KEY_VAR.into(), self.key.to_string()));
        env.push(("ATEK_HOST_PORT".into(), self.host_port.to_string()));
        env.push((
            "ATEK_HOST_BEARER_TOKEN".into(),
            self.token.expose().to_owned(),
        ));
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".into(), path.to_string_lossy().into_owned()));
        }
        env
    }

    /// Spawns the process with piped stdout and stderr.
    pub(crate) fn spawn(&self) -> Result<Child, SpawnError> {
        let (program, args) = self.argv()?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        crate::groups::die_with_parent(&mut cmd);
        cmd.spawn().map_err(|source| SpawnError::Os {
            program: program.display().to_string(),
            source,
        })
    }
}

/// package.json `main` if that file exists, else `index.js` (reference §1.5).
fn node_entry(dir: &Path) -> Result<PathBuf, SpawnError> {
    let main = std::fs::read(dir.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("main").and_then(|m| m.as_str()).map(|m| dir.join(m)));
    if let Some(main) = main.filter(|m| m.is_file()) {
        return Ok(main);
    }
    let index = dir.join("index.js");
    if index.is_file() {
        Ok(index)
    } else {
        Err(SpawnError::NoEntryPoint {
            dir: dir.to_owned(),
        })
    }
}

/// Stops a process group: SIGTERM to the whole group, then SIGKILL to the group once the
/// main process has exited or after `grace`. Returns how the main process ended.
pub(crate) async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    // Read before waiting: tokio forgets the id once the child is reaped.
    let pgid = group_of(child.id());
    if let Ok(Some(status)) = child.try_wait() {
        kill_group(pgid);
        return Some(status);
    }
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            kill_group(pgid);
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    // What the main process left behind in its group does not outlive it.
    kill_group(pgid);
    status
}

/// The process group a child leads (it leads its own, see `Launch::spawn`), from its pid.
pub(crate) fn group_of(pid: Option<u32>) -> Option<rustix::process::Pid> {
    pid.and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?))
}

/// SIGKILL to a whole process group; nothing if it is gone.
pub(crate) fn kill_group(pgid: Option<rustix::process::Pid>) {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// `exit code 3`, `killed by SIGKILL`.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(signal) = status.signal() {
        let name = match signal {
            1 => "SIGHUP",
            2 => "SIGINT",
            6 => "SIGABRT",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            15 => "SIGTERM",
            _ => "",
        };
        if name.is_empty() {
            format!("killed by signal {signal}")
        } else {
            format!("killed by {name}")
        }
    } else {
        "ended".to_owned()
    }
}

/// A free TCP port on loopback, for `ATEK_ASSIGNED_PORT`.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use atek_api::services::ExecCommand;

    fn launch(dir: &Path, manifest: Option<Manifest>) -> Launch {
        Launch {
            dir: dir.to_owned(),
            manifest,
            config: BTreeMap::from([("my_var".into(), "1".into())]),
            key: ServiceKey::generate(),
            socket: dir.join("s.sock"),
            port: 1234,
            host_port: 8480,
            token: BearerToken::generate(),
            node_path: "node".into(),
        }
    }

    #[test]
    fn env_is_exactly_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), None);
        let env = l.env();
        let marker = l.marker();
        assert!(
            env.iter().any(|(k, v)| format!("{k}={v}") == marker),
            "the marker is an entry of the environment"
        );
        let names: Vec<String> = env.into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "MY_VAR",
                "ATEK_ASSIGNED_SOCKET_FILE",
                "ATEK_ASSIGNED_PORT",
                "ATEK_ASSIGNED_SERVICE_KEY",
                "ATEK_HOST_PORT",
                "ATEK_HOST_BEARER_TOKEN",
                "PATH"
            ]
        );
    }

    #[test]
    fn node_entry_prefers_main_then_index() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), None);
        assert!(matches!(l.argv(), Err(SpawnError::NoEntryPoint { .. })));
        std::fs::write(dir.path().join("index.js"), "").unwrap();
        assert!(l.argv().unwrap().1[0].ends_with("index.js"));
        std::fs::write(dir.path().join("package.json"), r#"{"main":"srv.js"}"#).unwrap();
        assert!(
            l.argv().unwrap().1[0].ends_with("index.js"),
            "main must exist to count"
        );
        std::fs::write(dir.path().join("srv.js"), "").unwrap();
        assert!(l.argv().unwrap().1[0].ends_with("srv.js"));
    }

    #[test]
    fn exec_resolves_package_paths_and_path_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let exec = |e: ExecCommand| Manifest {
            exec: Some(e),
            ..Manifest::default()
        };
        let l = launch(
            dir.path(),
            Some(exec(ExecCommand::WithArgs(vec![
                "python3".into(),
                "app.py".into(),
            ]))),
        );
        assert_eq!(
            l.argv().unwrap(),
            (PathBuf::from("python3"), vec!["app.py".to_owned()])
        );
        let l = launch(
            dir.path(),
            Some(exec(ExecCommand::Program("./bin/srv".into()))),
        );
        assert_eq!(l.argv().unwrap().0, dir.path().join("./bin/srv"));
        let l = launch(
            dir.path(),
            Some(Manifest {
                runtime: Some(Runtime::Exec),
                ..Manifest::default()
            }),
        );
        assert!(matches!(l.argv(), Err(SpawnError::NoExec)));
    }

    #[tokio::test]
    async fn terminate_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; echo up; sleep 30"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        // Wait until the trap is installed before signalling.
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .unwrap();
        let status = terminate(&mut child, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(describe_exit(status), "killed by SIGKILL");
    }
}
