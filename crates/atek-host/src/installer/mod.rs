//! Installs packages from folders and git repositories.
//!
//! A folder is run in place and never modified. A git repository is cloned to
//! `packages/{id}`, the release (git tag) best matching the desired npm version range is
//! checked out, and npm installs its dependencies and runs its build script.
//!
//! Every git and npm command runs in a process group of its own, with a parent-death signal,
//! under a time limit ([`InstallLimits`], config.json's `gitTimeout` and `npmTimeout`): a
//! step that runs out of time has its whole group killed and fails the install with an
//! error naming the step, the limit and what to do, so a git server that never answers or a
//! build that hangs cannot hold up the host's start or a services-api call forever.
//!
//! Callers must not run two operations on the same id at once; the host serialises them.

mod error;
mod git;
mod manifest;
mod npm;
mod process;
mod source;
mod version;

use std::path::{Path, PathBuf};
use std::time::Duration;

use atek_api::services::{Manifest, SourceType, UpdateCheck};

pub use error::InstallError;
pub use manifest::{MANIFEST_FILE, ManifestError, parse_manifest, read_manifest};
pub use source::Source;
pub use version::{coerce, pick, releases};

/// Hears what an install is doing, for progress output.
pub trait InstallObserver: Send + Sync {
    /// A stage starts: "cloning https://…", "checking out v1.1.0", "npm install", "npm run build".
    fn stage(&self, message: &str);
    /// One line of output of git/npm (stdout or stderr).
    fn output(&self, line: &str);
}

/// An observer that sends everything to `tracing` at debug level, for callers with nobody
/// watching.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingObserver;

impl InstallObserver for TracingObserver {
    fn stage(&self, message: &str) {
        tracing::debug!(target: "atek_host::installer", "{message}");
    }

    fn output(&self, line: &str) {
        tracing::debug!(target: "atek_host::installer", "  {line}");
    }
}

/// An installed package, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// Where to run it: the folder itself, or `packages/{id}`.
    pub dir: PathBuf,
    /// Folder or git.
    pub source_type: SourceType,
    /// The git tag checked out; `None` for folders.
    pub installed_version: Option<String>,
    /// The package's `atek.json`, if it has one.
    pub manifest: Option<Manifest>,
}

/// How long each command of an install may run before it is killed, with everything it
/// started, and the install fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallLimits {
    /// Each git command: clone, fetch, ls-remote, and the local ones. Default 5 minutes.
    pub git: Duration,
    /// `npm install`, and `npm run build`, each. Default 10 minutes.
    pub npm: Duration,
}

impl Default for InstallLimits {
    fn default() -> Self {
        Self {
            git: Duration::from_secs(5 * 60),
            npm: Duration::from_secs(10 * 60),
        }
    }
}

/// Installs, updates and removes packages under one `packages/` folder.
#[derive(Debug, Clone)]
pub struct Installer {
    packages_dir: PathBuf,
    runner: process::Runner,
}

impl Installer {
    /// An installer keeping git clones in `packages_dir` (created when first needed), with
    /// the default [`InstallLimits`].
    pub fn new(packages_dir: PathBuf) -> Self {
        Self {
            packages_dir,
            runner: process::Runner::default(),
        }
    }

    /// The same installer with other time limits.
    pub fn with_limits(mut self, limits: InstallLimits) -> Self {
        self.runner.limits = limits;
        self
    }

    /// The same installer, listing the process group of each command in `groups` while it
    /// runs (for the sweep after a killed host).
    pub fn with_groups(mut self, groups: crate::groups::Groups) -> Self {
        self.runner.groups = groups;
        self
    }

    /// `packages/{id}`, after checking `id` cannot point anywhere else.
    pub fn package_dir(&self, id: &str) -> Result<PathBuf, InstallError> {
        id.parse::<atek_core::ServiceId>()
            .map_err(|e| InstallError::BadId {
                id: id.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(self.packages_dir.join(id))
    }

    /// Folder: checks it exists and is a directory and reads the manifest; nothing is run or
    /// changed. Git: clones into `packages/{id}` (or fetches, when a clone of the same remote
    /// is already there), checks out the best tag for `desired`, runs npm's install and build
    /// as `package.json` asks, and reads the manifest. A failed fresh clone is removed.
    pub async fn install(
        &self,
        id: &str,
        source: &Source,
        desired: Option<&str>,
        observer: &dyn InstallObserver,
    ) -> Result<Package, InstallError> {
        match source {
            Source::Folder(path) => folder_package(path).await,
            Source::Git(url) => self.sync_git(id, url, desired, observer).await,
        }
    }

    /// Looks for a newer release: fetches tags into the clone (or, without a clone of this
    /// source, lists the remote's tags) and picks the best for `desired`. `has_update` is true
    /// whenever that tag differs from `installed`, since [`Installer::update`] would switch
    /// to it; that includes a lower tag after the desired range changed.
    pub async fn check_for_updates(
        &self,
        id: &str,
        source: &Source,
        desired: Option<&str>,
        installed: Option<&str>,
    ) -> Result<UpdateCheck, InstallError> {
        let Source::Git(url) = source else {
            return Err(InstallError::NotGit { id: id.to_owned() });
        };
        let dir = self.package_dir(id)?;
        version::pick(&[], desired)?;
        let tags = if self.is_clone_of(&dir, url).await? {
            git::fetch(&self.runner, &dir, &TracingObserver).await?;
            git::tags(&self.runner, &dir).await?
        } else {
            git::remote_tags(&self.runner, url).await?
        };
        let latest = select_tag(id, url, &tags, desired)?;
        Ok(UpdateCheck {
            has_update: installed != Some(latest.as_str()),
            installed_version: installed.unwrap_or_default().to_owned(),
            latest_version: latest,
        })
    }

    /// Git: fetches, checks out the best tag for `desired`, re-runs npm's install and build,
    /// and re-reads the manifest; clones afresh when the clone is missing or of another
    /// remote. Folder: re-reads the manifest.
    pub async fn update(
        &self,
        id: &str,
        source: &Source,
        desired: Option<&str>,
        observer: &dyn InstallObserver,
    ) -> Result<Package, InstallError> {
        // Installing over an existing clone already is an update.
        self.install(id, source, desired, observer).await
    }

    /// Removes `packages/{id}` of a git source; a missing folder is fine. A folder source is
    /// never touched.
    pub async fn remove(&self, id: &str, source: &Source) -> Result<(), InstallError> {
        if let Source::Git(_) = source {
            remove_dir(&self.package_dir(id)?).await?;
        }
        Ok(())
    }

    /// Moves `packages/{old}` to `packages/{new}` for a git source, when a service's id
    /// changes. Nothing to move is fine (the next update clones); an existing
    /// `packages/{new}` is not overwritten.
    pub async fn rename(&self, old: &str, new: &str, source: &Source) -> Result<(), InstallError> {
        if let Source::Folder(_) = source {
            return Ok(());
        }
        let (from, to) = (self.package_dir(old)?, self.package_dir(new)?);
        if from == to || !exists(&from).await? {
            return Ok(());
        }
        if exists(&to).await? {
            return Err(InstallError::AlreadyExists { path: to });
        }
        tokio::fs::rename(&from, &to)
            .await
            .map_err(InstallError::io(&from))
    }

    async fn sync_git(
        &self,
        id: &str,
        url: &str,
        desired: Option<&str>,
        observer: &dyn InstallObserver,
    ) -> Result<Package, InstallError> {
        let dir = self.package_dir(id)?;
        // A bad range should not cost a clone.
        version::pick(&[], desired)?;
        if self.is_clone_of(&dir, url).await? {
            observer.stage(&format!("fetching {url}"));
            git::fetch(&self.runner, &dir, observer).await?;
            let tag = select_tag(id, url, &git::tags(&self.runner, &dir).await?, desired)?;
            observer.stage(&format!("checking out {tag}"));
            match git::checkout(&self.runner, &dir, &tag, observer).await {
                Ok(()) => return finish_git(&self.runner, &dir, tag, observer).await,
                Err(e) => {
                    let dir = dir.display();
                    tracing::warn!(%dir, error = %e, "checkout failed; cloning again");
                    observer.stage("the existing clone could not be checked out; cloning again");
                }
            }
        }
        self.fresh_clone(id, url, &dir, desired, observer).await
    }

    async fn fresh_clone(
        &self,
        id: &str,
        url: &str,
        dir: &Path,
        desired: Option<&str>,
        observer: &dyn InstallObserver,
    ) -> Result<Package, InstallError> {
        remove_dir(dir).await?;
        tokio::fs::create_dir_all(&self.packages_dir)
            .await
            .map_err(InstallError::io(&self.packages_dir))?;
        let mut guard = RemoveOnDrop(Some(dir.to_owned()));
        let result = async {
            observer.stage(&format!("cloning {url}"));
            git::clone(&self.runner, url, dir, observer).await?;
            let tag = select_tag(id, url, &git::tags(&self.runner, dir).await?, desired)?;
            observer.stage(&format!("checking out {tag}"));
            git::checkout(&self.runner, dir, &tag, observer).await?;
            finish_git(&self.runner, dir, tag, observer).await
        }
        .await;
        guard.0 = None;
        if result.is_err()
            && let Err(e) = remove_dir(dir).await
        {
            tracing::warn!(error = %e, "could not remove a failed install");
        }
        result
    }

    /// The package as it stands, fetching and building nothing: a folder as [`Installer::install`]
    /// reads it; for git, the clone with the release (tag) checked out now, or `None` when
    /// there is no clone of this source. A clone whose last install or update did not finish
    /// (its build failed or ran out of time, or the host was killed meanwhile) has no
    /// `installed_version`: it has to be installed again.
    pub async fn current(
        &self,
        id: &str,
        source: &Source,
    ) -> Result<Option<Package>, InstallError> {
        let url = match source {
            Source::Folder(path) => return folder_package(path).await.map(Some),
            Source::Git(url) => url,
        };
        let dir = self.package_dir(id)?;
        if !self.is_clone_of(&dir, url).await? {
            return Ok(None);
        }
        let at_head = git::tags_at_head(&self.runner, &dir).await?;
        let finished = finished_tag(&dir).await;
        let installed_version = version::pick(&at_head, None)?
            .map(|(tag, _)| tag)
            .filter(|tag| finished.as_deref() == Some(tag.as_str()));
        Ok(Some(Package {
            manifest: read_manifest(&dir)?,
            dir,
            source_type: SourceType::Git,
            installed_version,
        }))
    }

    async fn is_clone_of(&self, dir: &Path, url: &str) -> Result<bool, InstallError> {
        Ok(git::is_clone(dir) && git::origin_url(&self.runner, dir).await?.as_deref() == Some(url))
    }
}

/// Removes a half-made clone if the install is cancelled (its future dropped) midway.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // Blocking, but only on cancellation, and leaving the clone would be worse.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn select_tag(
    id: &str,
    url: &str,
    tags: &[String],
    desired: Option<&str>,
) -> Result<String, InstallError> {
    if tags.is_empty() {
        return Err(InstallError::NoReleases {
            source_url: url.to_owned(),
        });
    }
    match version::pick(tags, desired)? {
        Some((tag, _)) => Ok(tag),
        None => Err(InstallError::NoMatchingRelease {
            id: id.to_owned(),
            range: desired
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .unwrap_or("latest")
                .to_owned(),
            available: version::releases(tags),
        }),
    }
}

/// Kept in a clone's `.git` (out of the work tree): the tag whose install last finished,
/// written only after its build succeeded, so a clone checked out but never built is not
/// taken for installed.
const FINISHED_FILE: &str = "atek-installed";

/// The tag of the last finished install of the clone at `dir`.
async fn finished_tag(dir: &Path) -> Option<String> {
    let text = tokio::fs::read_to_string(dir.join(".git").join(FINISHED_FILE))
        .await
        .ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

async fn finish_git(
    runner: &process::Runner,
    dir: &Path,
    tag: String,
    observer: &dyn InstallObserver,
) -> Result<Package, InstallError> {
    let finished = dir.join(".git").join(FINISHED_FILE);
    if let Err(e) = tokio::fs::remove_file(&finished).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(InstallError::io(&finished)(e));
    }
    npm::setup(runner, dir, observer).await?;
    tokio::fs::write(&finished, format!("{tag}\n"))
        .await
        .map_err(InstallError::io(&finished))?;
    Ok(Package {
        dir: dir.to_owned(),
        source_type: SourceType::Git,
        installed_version: Some(tag),
        manifest: read_manifest(dir)?,
    })
}

async fn folder_package(path: &Path) -> Result<Package, InstallError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(InstallError::NotAFolder { path: path.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::FolderMissing { path: path.into() });
        }
        Err(e) => return Err(InstallError::io(path)(e)),
    }
    Ok(Package {
        dir: path.to_owned(),
        source_type: SourceType::File,
        installed_version: None,
        manifest: read_manifest(path)?,
    })
}

/// Removes whatever is at `path`; nothing there is fine. A symlink is removed, not followed.
async fn remove_dir(path: &Path) -> Result<(), InstallError> {
    let result = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(InstallError::io(path)(e)),
        _ => Ok(()),
    }
}

async fn exists(path: &Path) -> Result<bool, InstallError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(InstallError::io(path))
}
