//! The installer against real git repositories and npm, all local: each test builds its own
//! repositories in a temporary folder.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atek_api::services::{Runtime, SourceType};
use atek_host::installer::{
    InstallError, InstallLimits, InstallObserver, Installer, ManifestError, Source, coerce, pick,
    read_manifest,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A fixed identity and no signing, whatever the machine's configuration says.
const GIT_CONFIG: [&str; 10] = [
    "-c",
    "user.name=Atek Test",
    "-c",
    "user.email=test@example.invalid",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
];

/// Runs git for a fixture, without the machine's configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(GIT_CONFIG)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A work repository and the bare repository it publishes to.
struct Repo {
    tmp: TempDir,
}

impl Repo {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        std::fs::create_dir(tmp.path().join("work")).unwrap();
        git(&tmp.path().join("work"), &["init", "--quiet"]);
        git(tmp.path(), &["init", "--quiet", "--bare", "app.git"]);
        Self { tmp }
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    fn bare(&self) -> PathBuf {
        self.tmp.path().join("app.git")
    }

    fn source(&self) -> Source {
        Source::parse(self.bare().to_str().unwrap()).unwrap()
    }

    /// Commits `files` (plus `version.txt` = tag), tags the commit and publishes both.
    fn release(&self, tag: &str, files: &[(&str, &str)]) {
        let work = self.work();
        std::fs::write(work.join("version.txt"), tag).unwrap();
        for (name, content) in files {
            std::fs::write(work.join(name), content).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", tag]);
        git(&work, &["tag", tag]);
        let bare = self.bare();
        git(
            &work,
            &["push", "--quiet", bare.to_str().unwrap(), "main", "--tags"],
        );
    }
}

fn repo_with(tags: &[&str]) -> Repo {
    let repo = Repo::new();
    for tag in tags {
        repo.release(tag, &[]);
    }
    repo
}

#[derive(Default)]
struct Recorder {
    stages: Mutex<Vec<String>>,
    lines: Mutex<Vec<String>>,
}

impl InstallObserver for Recorder {
    fn stage(&self, message: &str) {
        self.stages.lock().unwrap().push(message.to_owned());
    }
    fn output(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_owned());
    }
}

impl Recorder {
    fn stages(&self) -> Vec<String> {
        self.stages.lock().unwrap().clone()
    }
}

fn new_installer() -> (TempDir, Installer) {
    let tmp = TempDir::new().unwrap();
    let installer = Installer::new(tmp.path().join("packages"));
    (tmp, installer)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// Sources, versions

/// The file-system half of source parsing: real bare repositories are cloned, work trees are
/// run in place. (The URL forms are covered by the unit tests.)
#[test]
fn bare_repositories_are_git_sources() {
    let repo = Repo::new();
    git(
        repo.tmp.path(),
        &["init", "--quiet", "--bare", "plain-bare"],
    );
    let bare = repo.bare().to_str().unwrap().to_owned();
    let plain_bare = repo
        .tmp
        .path()
        .join("plain-bare")
        .to_str()
        .unwrap()
        .to_owned();
    let work = repo.work().to_str().unwrap().to_owned();

    for (input, want) in [
        (bare.clone(), Source::Git(bare.clone())),
        (format!("file://{bare}"), Source::Git(bare.clone())),
        (plain_bare.clone(), Source::Git(plain_bare.clone())),
        (
            format!("file://{plain_bare}"),
            Source::Git(plain_bare.clone()),
        ),
        (work.clone(), Source::Folder(work.clone().into())),
        (
            format!("file://{work}"),
            Source::Folder(work.clone().into()),
        ),
    ] {
        assert_eq!(Source::parse(&input).unwrap(), want, "{input:?}");
    }
    assert_eq!(Source::Git(plain_bare).source_type(), SourceType::Git);
    assert_eq!(repo.source().default_id(), "app");
}

#[test]
fn versions_from_tags() {
    assert_eq!(coerce("release-1.2").unwrap().to_string(), "1.2.0");
    let tags = strings(&["v1.0.0", "v1.1.0", "v2.0.0"]);
    let picked = |desired| pick(&tags, desired).unwrap().map(|(tag, _)| tag);
    assert_eq!(picked(Some("^1")).as_deref(), Some("v1.1.0"));
    assert_eq!(picked(Some("2.0.0")).as_deref(), Some("v2.0.0"));
    assert_eq!(picked(Some("latest")).as_deref(), Some("v2.0.0"));
    assert_eq!(picked(Some("^3")), None);
    assert!(matches!(
        pick(&tags, Some("not a range!")),
        Err(InstallError::BadVersionRange { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// Each `golden/manifest/NAME.json` must be rejected with exactly the text in `NAME.txt`.
/// `UPDATE_GOLDEN=1` rewrites the `.txt` files.
#[test]
fn manifest_errors_match_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/manifest");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 8,
        "golden cases missing in {}",
        golden.display()
    );

    let mut mismatches = Vec::new();
    for input in &inputs {
        let pkg = TempDir::new().unwrap();
        std::fs::copy(input, pkg.path().join("atek.json")).unwrap();
        let err: ManifestError = match read_manifest(pkg.path()) {
            Ok(m) => panic!("{} was accepted: {m:?}", input.display()),
            Err(e) => e,
        };
        let text = err
            .to_string()
            .replace(pkg.path().to_str().unwrap(), "$PKG")
            + "\n";
        let expected_file = input.with_extension("txt");
        if update {
            std::fs::write(&expected_file, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if expected != text {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{text}",
                input.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "run with UPDATE_GOLDEN=1 to accept:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn manifest_defaults_and_absence() {
    let pkg = TempDir::new().unwrap();
    assert_eq!(read_manifest(pkg.path()).unwrap(), None);
    std::fs::write(
        pkg.path().join("atek.json"),
        r#"{"name": "Srv", "exec": ["./server.py", "--port", "0"], "exports": [{"api": "a.example/x"}]}"#,
    )
    .unwrap();
    let m = read_manifest(pkg.path()).unwrap().unwrap();
    assert_eq!(m.name.as_deref(), Some("Srv"));
    assert_eq!(m.runtime, None);
    assert_eq!(m.exports[0].path(), "/");
}

// ---------------------------------------------------------------------------------------------
// Installing from git

#[tokio::test]
async fn install_update_and_remove_from_a_bare_repo() {
    let repo = repo_with(&["v1.0.0", "v1.1.0", "v2.0.0"]);
    let (tmp, installer) = new_installer();
    let source = repo.source();
    let rec = Recorder::default();

    let pkg = installer
        .install("app", &source, Some("^1"), &rec)
        .await
        .unwrap();
    let dir = tmp.path().join("packages/app");
    assert_eq!(pkg.dir, dir);
    assert_eq!(pkg.source_type, SourceType::Git);
    assert_eq!(pkg.installed_version.as_deref(), Some("v1.1.0"));
    assert_eq!(pkg.manifest, None);
    assert_eq!(
        std::fs::read_to_string(dir.join("version.txt")).unwrap(),
        "v1.1.0"
    );
    let stages = rec.stages();
    assert!(stages[0].starts_with("cloning "), "{stages:?}");
    assert!(
        stages.contains(&"checking out v1.1.0".to_owned()),
        "{stages:?}"
    );

    let check = installer
        .check_for_updates("app", &source, Some("^1"), Some("v1.1.0"))
        .await
        .unwrap();
    assert!(!check.has_update, "{check:?}");
    assert_eq!(check.latest_version, "v1.1.0");

    repo.release(
        "v1.2.0",
        &[("atek.json", r#"{"runtime": "exec", "exec": "bin/server"}"#)],
    );
    let check = installer
        .check_for_updates("app", &source, Some("^1"), Some("v1.1.0"))
        .await
        .unwrap();
    assert!(check.has_update);
    assert_eq!(check.installed_version, "v1.1.0");
    assert_eq!(check.latest_version, "v1.2.0");

    let rec = Recorder::default();
    let pkg = installer
        .update("app", &source, Some("^1"), &rec)
        .await
        .unwrap();
    assert_eq!(pkg.installed_version.as_deref(), Some("v1.2.0"));
    assert_eq!(
        std::fs::read_to_string(dir.join("version.txt")).unwrap(),
        "v1.2.0"
    );
    assert_eq!(pkg.manifest.unwrap().runtime, Some(Runtime::Exec));
    assert!(
        !rec.stages().iter().any(|s| s.starts_with("cloning")),
        "an update of a good clone fetches: {:?}",
        rec.stages()
    );

    // Without a desired range the newest release wins.
    let pkg = installer
        .update("app", &source, None, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(pkg.installed_version.as_deref(), Some("v2.0.0"));

    installer.rename("app", "app2", &source).await.unwrap();
    assert!(!dir.exists());
    let moved = tmp.path().join("packages/app2");
    assert!(moved.join("version.txt").exists());

    installer.remove("app2", &source).await.unwrap();
    assert!(!moved.exists());
    installer.remove("app2", &source).await.unwrap();
}

#[tokio::test]
async fn check_without_a_clone_asks_the_remote() {
    let repo = repo_with(&["v1.0.0", "v1.3.0"]);
    let (_tmp, installer) = new_installer();
    let check = installer
        .check_for_updates("never-installed", &repo.source(), None, Some("v1.0.0"))
        .await
        .unwrap();
    assert!(check.has_update);
    assert_eq!(check.latest_version, "v1.3.0");
}

#[tokio::test]
async fn git_plus_file_urls_and_reinstall_over_a_clone() {
    let repo = repo_with(&["1.0.0"]);
    let (tmp, installer) = new_installer();
    let source = Source::parse(&format!("git+file://{}", repo.bare().display())).unwrap();
    let first = installer
        .install("x", &source, None, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(first.installed_version.as_deref(), Some("1.0.0"));

    // A leftover file proves the existing clone is reused rather than cloned again.
    let marker = tmp.path().join("packages/x/node_modules-marker");
    std::fs::write(&marker, "").unwrap();
    repo.release("1.0.1", &[]);
    let second = installer
        .install("x", &source, None, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(second.installed_version.as_deref(), Some("1.0.1"));
    assert!(marker.exists());
}

#[tokio::test]
async fn a_folder_in_the_way_is_replaced() {
    let repo = repo_with(&["v1.0.0"]);
    let (tmp, installer) = new_installer();
    let dir = tmp.path().join("packages/app");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("junk"), "").unwrap();
    installer
        .install("app", &repo.source(), None, &Recorder::default())
        .await
        .unwrap();
    assert!(!dir.join("junk").exists());
    assert!(dir.join("version.txt").exists());
}

#[tokio::test]
async fn npm_build_runs() {
    let repo = Repo::new();
    let package_json = r#"{
        "name": "built-app",
        "version": "1.0.0",
        "scripts": {"build": "node -e \"require('fs').writeFileSync('built.txt','ok')\""}
    }"#;
    repo.release("v1.0.0", &[("package.json", package_json)]);
    let (tmp, installer) = new_installer();
    let rec = Recorder::default();
    installer
        .install("built", &repo.source(), None, &rec)
        .await
        .unwrap();
    let built = tmp.path().join("packages/built/built.txt");
    assert_eq!(std::fs::read_to_string(&built).unwrap(), "ok");
    let stages = rec.stages();
    assert!(stages.contains(&"npm run build".to_owned()), "{stages:?}");
    assert!(
        !stages.contains(&"npm install".to_owned()),
        "no dependencies: {stages:?}"
    );

    // Updating always builds again, even at the same release.
    std::fs::remove_file(&built).unwrap();
    installer
        .update("built", &repo.source(), None, &Recorder::default())
        .await
        .unwrap();
    assert!(built.exists());
}

#[tokio::test]
async fn npm_build_failure_removes_the_fresh_clone() {
    let repo = Repo::new();
    let package_json =
        r#"{"scripts": {"build": "node -e \"console.error('boom'); process.exit(3)\""}}"#;
    repo.release("v1.0.0", &[("package.json", package_json)]);
    let (tmp, installer) = new_installer();
    let rec = Recorder::default();
    let err = installer
        .install("broken", &repo.source(), None, &rec)
        .await
        .unwrap_err();
    match &err {
        InstallError::Npm { step, tail, .. } => {
            assert_eq!(step, "run build");
            assert!(tail.contains("boom"), "{tail}");
        }
        other => panic!("expected an npm error, got {other:?}"),
    }
    assert!(err.to_string().contains("npm run build"), "{err}");
    assert!(rec.lines.lock().unwrap().iter().any(|l| l.contains("boom")));
    assert!(!tmp.path().join("packages/broken").exists());
}

/// True while a process with this pid exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

#[tokio::test]
async fn a_build_that_hangs_is_killed_at_the_limit_and_fails_the_install() {
    let repo = Repo::new();
    let pid_file = repo.tmp.path().join("build.pid");
    // The build hangs in a grandchild of npm (npm → sh → sleep), which also holds npm's
    // output open, as a dev server started by a build would.
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let package_json = serde_json::json!({"scripts": {"build": script}}).to_string();
    repo.release("v1.0.0", &[("package.json", &package_json)]);
    let (tmp, installer) = new_installer();
    let limits = InstallLimits {
        npm: Duration::from_secs(3),
        ..InstallLimits::default()
    };
    let installer = installer.with_limits(limits);

    let started = Instant::now();
    let err = installer
        .install("hung", &repo.source(), None, &Recorder::default())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    match &err {
        InstallError::TimedOut {
            program,
            step,
            limit,
            ..
        } => {
            assert_eq!((*program, step.as_str()), ("npm", "run build"));
            assert_eq!(*limit, Duration::from_secs(3));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(
            "`npm run build` did not finish within 3s, so it was stopped, with everything it started"
        ),
        "{message}"
    );
    assert!(
        message.contains("\nfix: run `npm run build` in ") && message.contains("`npmTimeout`"),
        "{message}"
    );

    let hung: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !alive(hung)).await,
        "the hung build process {hung} survived"
    );
    assert!(!tmp.path().join("packages/hung").exists());
}

#[tokio::test]
async fn a_git_server_that_never_answers_fails_the_clone_at_the_limit() {
    // Connections are accepted (by the kernel's backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("git://{}/app.git", silent.local_addr().unwrap());
    let (tmp, installer) = new_installer();
    let installer = installer.with_limits(InstallLimits {
        git: Duration::from_secs(1),
        ..InstallLimits::default()
    });

    let started = Instant::now();
    let err = installer
        .install(
            "silent",
            &Source::Git(url.clone()),
            None,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, InstallError::TimedOut { program: "git", step, .. } if step == &format!("clone {url}")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("`git clone {url}` did not finish within 1s")),
        "{message}"
    );
    assert!(
        message.contains("its server answers") && message.contains("`gitTimeout`"),
        "{message}"
    );
    assert!(!tmp.path().join("packages/silent").exists());
}

#[tokio::test]
async fn release_errors() {
    let (tmp, installer) = new_installer();

    let untagged = Repo::new();
    untagged.release("v0", &[]);
    git(&untagged.work(), &["tag", "-d", "v0"]);
    git(&untagged.bare(), &["tag", "-d", "v0"]);
    let err = installer
        .install("untagged", &untagged.source(), None, &Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::NoReleases { .. }), "{err:?}");
    assert!(err.to_string().contains("git tag v1.0.0"), "{err}");
    assert!(!tmp.path().join("packages/untagged").exists());

    let repo = repo_with(&["v2.0.0", "v1.0.0", "v1.1.0"]);
    let err = installer
        .install("app", &repo.source(), Some("^5"), &Recorder::default())
        .await
        .unwrap_err();
    match &err {
        InstallError::NoMatchingRelease {
            id,
            range,
            available,
        } => {
            assert_eq!((id.as_str(), range.as_str()), ("app", "^5"));
            assert_eq!(available, &strings(&["v1.0.0", "v1.1.0", "v2.0.0"]));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("No release (git tag) available for app which matches the desired version of ^5; available: v1.0.0, v1.1.0, v2.0.0"),
        "{err}"
    );
    assert!(!tmp.path().join("packages/app").exists());

    let (fresh_tmp, fresh) = new_installer();
    let err = fresh
        .install("app", &repo.source(), Some("^^"), &Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, InstallError::BadVersionRange { .. }),
        "{err:?}"
    );
    assert!(
        !fresh_tmp.path().join("packages").exists(),
        "nothing is cloned for a bad range"
    );

    let err = installer
        .install("../escape", &repo.source(), None, &Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::BadId { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_repository_is_a_git_error() {
    let (tmp, installer) = new_installer();
    let source = Source::Git(format!("file://{}/missing.git", tmp.path().display()));
    let err = installer
        .install("gone", &source, None, &Recorder::default())
        .await
        .unwrap_err();
    match &err {
        InstallError::Git { step, stderr, .. } => {
            assert!(step.starts_with("clone "), "{step}");
            assert!(!stderr.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("packages/gone").exists());
}

// ---------------------------------------------------------------------------------------------
// Folders

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let content = std::fs::read(&path).unwrap();
            (path, content)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn folder_install_reads_the_manifest_and_leaves_the_folder_alone() {
    let folder = TempDir::new().unwrap();
    std::fs::write(
        folder.path().join("atek.json"),
        r#"{"name": "Local", "exports": [{"api": "example.com/local", "transport": "proxy"}]}"#,
    )
    .unwrap();
    // A build script that must not run for folders: they run in place, as they are.
    std::fs::write(
        folder.path().join("package.json"),
        r#"{"dependencies": {"left-pad": "1"}, "scripts": {"build": "node -e \"require('fs').writeFileSync('built.txt','')\""}}"#,
    )
    .unwrap();
    let before = snapshot(folder.path());

    let (tmp, installer) = new_installer();
    let source = Source::parse(&format!("file://{}", folder.path().display())).unwrap();
    let rec = Recorder::default();
    let pkg = installer
        .install("local", &source, None, &rec)
        .await
        .unwrap();
    assert_eq!(pkg.dir, folder.path());
    assert_eq!(pkg.source_type, SourceType::File);
    assert_eq!(pkg.installed_version, None);
    assert_eq!(pkg.manifest.unwrap().name.as_deref(), Some("Local"));
    assert_eq!(snapshot(folder.path()), before);
    assert!(!tmp.path().join("packages/local").exists());

    let err = installer
        .check_for_updates("local", &source, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::NotGit { .. }), "{err:?}");

    let pkg = installer
        .update("local", &source, None, &rec)
        .await
        .unwrap();
    assert_eq!(pkg.installed_version, None);

    installer.remove("local", &source).await.unwrap();
    installer.rename("local", "other", &source).await.unwrap();
    assert_eq!(snapshot(folder.path()), before);
}

#[tokio::test]
async fn folder_errors() {
    let (tmp, installer) = new_installer();
    let missing = Source::Folder(tmp.path().join("nope"));
    let err = installer
        .install("x", &missing, None, &Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::FolderMissing { .. }), "{err:?}");

    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = installer
        .install("x", &Source::Folder(file), None, &Recorder::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::NotAFolder { .. }), "{err:?}");

    std::fs::write(tmp.path().join("atek.json"), r#"{"frame": "yes"}"#).unwrap();
    let err = installer
        .install(
            "x",
            &Source::Folder(tmp.path().into()),
            None,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Manifest(_)), "{err:?}");
    assert!(err.to_string().contains("frame"), "{err}");
}

#[test]
fn install_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let installer = Installer::new(PathBuf::from("/nonexistent"));
    let source = Source::Git("https://h.example/x".to_owned());
    let rec = Recorder::default();
    assert_send(&installer.install("x", &source, None, &rec));
    assert_send(&installer.update("x", &source, None, &rec));
    assert_send(&installer.check_for_updates("x", &source, None, None));
    assert_send(&installer.remove("x", &source));
    assert_send(&installer.rename("x", "y", &source));
}

#[tokio::test]
async fn current_reads_what_is_installed_without_fetching() {
    let repo = repo_with(&["v1.0.0", "v1.1.0", "v2.0.0"]);
    let (_tmp, installer) = new_installer();
    let source = repo.source();
    assert_eq!(
        installer.current("app", &source).await.unwrap(),
        None,
        "no clone yet"
    );

    let installed = installer
        .install("app", &source, Some("^1"), &Recorder::default())
        .await
        .unwrap();
    // A newer release in the remote changes nothing: current() does not fetch.
    repo.release("v1.2.0", &[]);
    let current = installer.current("app", &source).await.unwrap();
    assert_eq!(current, Some(installed));

    // An update cut short (here a build that fails) leaves a clone that is not installed: the
    // next start must not run it unbuilt.
    let failing = r#"{"scripts": {"build": "exit 3"}}"#;
    repo.release("v1.3.0", &[("package.json", failing)]);
    installer
        .update("app", &source, Some("^1"), &Recorder::default())
        .await
        .unwrap_err();
    let current = installer.current("app", &source).await.unwrap().unwrap();
    assert_eq!(current.installed_version, None);

    // A clone of another remote is not this source's package.
    let other = repo_with(&["v9.0.0"]);
    assert_eq!(
        installer.current("app", &other.source()).await.unwrap(),
        None
    );

    // A folder is read as install reads it.
    let folder = TempDir::new().unwrap();
    let as_current = installer
        .current("f", &Source::Folder(folder.path().to_owned()))
        .await
        .unwrap();
    let as_installed = installer
        .install(
            "f",
            &Source::Folder(folder.path().to_owned()),
            None,
            &Recorder::default(),
        )
        .await
        .unwrap();
    assert_eq!(as_current, Some(as_installed));
}
