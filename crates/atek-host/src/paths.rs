//! The config dir's layout (reference §1.3, plus `state/` and `run.json`).

use std::path::{Path, PathBuf};

use atek_core::ServiceId;

/// Where everything lives under the config dir.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The layout under `root` (default `~/.atek`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The config dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `run.json`: written while the host runs (pid, port, url), removed when it stops.
    pub fn run_file(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// `groups.json`: the process groups of running services and install steps, while the
    /// host runs; the next start kills what a killed host left in them
    /// ([`crate::groups`]).
    pub fn groups_file(&self) -> PathBuf {
        self.root.join("groups.json")
    }

    /// `packages/`: git clones of installed services.
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// `sockets/`: one Unix socket per service.
    pub fn sockets(&self) -> PathBuf {
        self.root.join("sockets")
    }

    /// `logs/`: one log per service.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `state/`: the host's own records (installed services).
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `node.key`: the home's p2p key (the keyfile JSON, mode 0600).
    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// `adb/`: the built-in ADB's databases, one folder each.
    pub fn adb(&self) -> PathBuf {
        self.root.join("adb")
    }

    /// `sockets/{id}.sock`.
    pub fn socket(&self, id: &ServiceId) -> PathBuf {
        self.sockets().join(format!("{id}.sock"))
    }

    /// `logs/{id}.log`.
    pub fn log(&self, id: &ServiceId) -> PathBuf {
        self.logs().join(format!("{id}.log"))
    }

    /// Creates the folders, private to the owner (they hold sockets and logs).
    pub fn create_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [
            self.root.clone(),
            self.packages(),
            self.sockets(),
            self.logs(),
            self.state(),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        Ok(())
    }
}

/// The default config dir: `$HOME/.atek`.
pub fn default_config_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".atek"))
}
