//! Preparing a cloned package with npm: installing dependencies and running its build.

use std::path::Path;

use serde_json::Value;
use tokio::process::Command;

use super::process::{self, Runner, Step};
use super::{InstallError, InstallObserver};

/// What `package.json` asks of the installer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Needs {
    install: bool,
    build: bool,
}

/// Runs `npm install` when the package has dependencies and `npm run build` when it has a
/// build script. A package without `package.json` needs neither.
pub(crate) async fn setup(
    runner: &Runner,
    dir: &Path,
    observer: &dyn InstallObserver,
) -> Result<(), InstallError> {
    let path = dir.join("package.json");
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(InstallError::io(path)(e)),
    };
    let needs = needs(&text).map_err(|reason| InstallError::BadPackageJson {
        path: path.clone(),
        reason,
    })?;
    if needs.install {
        observer.stage("npm install");
        npm(
            runner,
            dir,
            &["install", "--no-audit", "--no-fund"],
            "install",
            observer,
        )
        .await?;
    }
    if needs.build {
        observer.stage("npm run build");
        npm(runner, dir, &["run", "build"], "run build", observer).await?;
    }
    Ok(())
}

fn needs(package_json: &str) -> Result<Needs, String> {
    let value: Value = serde_json::from_str(package_json).map_err(|e| e.to_string())?;
    let Value::Object(pkg) = value else {
        return Err("it must hold a JSON object".to_owned());
    };
    let non_empty = |key: &str| {
        pkg.get(key)
            .and_then(Value::as_object)
            .is_some_and(|deps| !deps.is_empty())
    };
    let build = pkg
        .get("scripts")
        .and_then(|s| s.get("build"))
        .is_some_and(|b| !b.is_null());
    Ok(Needs {
        install: non_empty("dependencies") || non_empty("devDependencies"),
        build,
    })
}

async fn npm(
    runner: &Runner,
    dir: &Path,
    args: &[&str],
    step: &str,
    observer: &dyn InstallObserver,
) -> Result<(), InstallError> {
    let mut cmd = Command::new("npm");
    cmd.args(args)
        .current_dir(dir)
        // The update notifier would talk to the registry and print noise after every run.
        .env("npm_config_update_notifier", "false")
        .env("npm_config_progress", "false");
    let step = Step {
        program: "npm",
        name: step.to_owned(),
        limit: runner.limits.npm,
        fix: format!(
            "run `npm {step}` in {} to see where it stops (a script waiting for input, or a \
             server the build starts and never stops?); if it only needs longer, raise \
             `npmTimeout` in config.json",
            dir.display()
        ),
    };
    let name = step.name.clone();
    let done = process::run(runner, cmd, step, Some(observer), false).await?;
    if done.status.success() {
        return Ok(());
    }
    Err(InstallError::Npm {
        step: name,
        code: done.status.code(),
        tail: done.tail,
        dir: dir.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_needs() {
        let n = |s: &str| needs(s).unwrap();
        assert_eq!(n("{}"), Needs::default());
        assert_eq!(
            n(r#"{"dependencies": {}, "devDependencies": {}}"#),
            Needs::default()
        );
        assert!(n(r#"{"dependencies": {"x": "1"}}"#).install);
        assert!(n(r#"{"devDependencies": {"x": "1"}}"#).install);
        assert!(n(r#"{"scripts": {"build": "tsc"}}"#).build);
        assert!(!n(r#"{"scripts": {"start": "node ."}}"#).build);
        assert!(needs("[]").is_err());
        assert!(needs("{").is_err());
    }
}
