//! `atek.cloud/services-api`: installing, configuring and running services (reference §4.2).
//!
//! Field names are the original's, so the original `@atek-cloud/services-api` client and its
//! validators accept what this host sends. Fields marked *extension* are ours; the original
//! schemas allow extra fields.

use std::collections::BTreeMap;

use atek_core::{ServiceId, ServiceKey, UserKey};
use serde::{Deserialize, Serialize};

/// The API id.
pub const ID: &str = "atek.cloud/services-api";

/// A service's state in the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Spawned (or waiting to be restarted) and not ready yet.
    Starting,
    /// Ready: answered `HEAD /`, its APIs are registered.
    Active,
    /// Gave up: never got ready, or crashed too often. See `statusReason`.
    Failed,
    /// Not running, by request or because it was never started.
    Stopped,
}

impl ServiceStatus {
    /// The word the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// What `list` and `get` return for each service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// `active` once ready; see [`ServiceStatus`].
    pub status: ServiceStatus,
    /// The service's stable key.
    pub key: ServiceKey,
    /// The stored record.
    pub settings: ServiceRecord,
    /// *Extension*: why the service is failed or was restarted, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// *Extension*: how the process last ended (`exit code 1`, `killed by SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// *Extension*: restarts after crashes since the service was last started by request.
    #[serde(default)]
    pub restarts: u32,
    /// *Extension*: the OS process id while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// *Extension*: the TCP port assigned to it (`ATEK_ASSIGNED_PORT`), once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// *Extension*: true for the host's core services (from `coreServices` in config.json).
    #[serde(default)]
    pub core: bool,
}

/// The stored description of an installed service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// The service's id.
    pub id: ServiceId,
    /// Who installed it (`system` for the host and system tokens).
    pub owning_user_key: UserKey,
    /// Where it came from: a `file://` URL or a git URL.
    pub source_url: String,
    /// The semver range the installer follows (`latest` or absent: the highest tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// What was installed.
    pub package: PackageInfo,
    /// The package's `atek.json`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// Environment variables for the service (keys are upper-cased when it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// Where a package came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// A folder, run in place.
    File,
    /// A git repository cloned under `packages/{id}`.
    Git,
}

/// The installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageInfo {
    /// Folder or git.
    pub source_type: SourceType,
    /// The git tag checked out (git sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    /// A display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A package's `atek.json`. Every field is optional; a package without one gets the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// License.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// GUI hint: open the app in a frame. The host ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<bool>,
    /// APIs the service provides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Export>,
    /// *Extension*: how to run the service: `node` (default) or `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// *Extension*: for `runtime: "exec"`, the program and its arguments. The program is a path
    /// inside the package (`bin/server`, `./server.py`) or a command found on `PATH`
    /// (`python3`). A single string is a program with no arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCommand>,
}

/// How a service is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `node {main}`: package.json's `main`, else `index.js`.
    Node,
    /// The program named by the manifest's `exec`.
    Exec,
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExecCommand {
    /// Just the program.
    Program(String),
    /// Program then arguments.
    WithArgs(Vec<String>),
}

impl ExecCommand {
    /// The program and its arguments, in order.
    pub fn argv(&self) -> Vec<&str> {
        match self {
            Self::Program(p) => vec![p.as_str()],
            Self::WithArgs(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One exported API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The API id, e.g. `example.com/my-api`.
    pub api: atek_core::ApiId,
    /// The HTTP path on the service (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `rpc` (default) or `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

impl Export {
    /// The path, defaulting to `/`.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    /// The transport, defaulting to `rpc`.
    pub fn transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Rpc)
    }
}

/// How the gateway reaches an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// JSON-RPC over HTTP POST.
    Rpc,
    /// A WebSocket piped byte for byte.
    Proxy,
}

impl Transport {
    /// `rpc` or `proxy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpc => "rpc",
            Self::Proxy => "proxy",
        }
    }
}

/// Params of `install`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallOpts {
    /// A `file://` URL or path of a folder, or any URL git can clone (`git+file://` for a
    /// local repository).
    pub source_url: String,
    /// The id to install under; default: the last segment of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A semver range of git tags to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// Ignored (kept for the original client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<f64>,
    /// Install for this user (a username; admins only). `system` installs for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment variables for the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// Params of `configure`. Every field is optional; `config` is merged into the existing map
/// (a key set to `""` is removed: *extension*).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigureOpts {
    /// A new id (must be free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A new source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// A new version range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// Ignored (kept for the original client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<f64>,
    /// Environment variables to merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// Result of `checkForPackageUpdates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCheck {
    /// True when a newer tag matches the desired range.
    pub has_update: bool,
    /// The tag installed now.
    pub installed_version: String,
    /// The best tag available.
    pub latest_version: String,
}

/// Result of `updatePackage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateResult {
    /// The tag installed now.
    pub installed_version: String,
    /// The tag installed before.
    pub old_version: String,
}

/// Result of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    /// Every service the caller may see.
    pub services: Vec<ServiceInfo>,
}
