//! Where a package comes from: a folder run in place, or a git repository cloned under
//! `packages/`.

use std::fmt;
use std::path::{Path, PathBuf};

use atek_api::services::SourceType;

use super::InstallError;

/// The longest service id (see [`atek_core::ServiceId`]).
const MAX_ID_LEN: usize = 63;

/// A parsed source URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder with a work tree: run in place, never modified.
    Folder(PathBuf),
    /// Anything git can clone, exactly as git should be given it.
    Git(String),
}

impl Source {
    /// Parses a source URL: `file:///abs/path` or `/abs/path` (a folder, or a bare repository),
    /// `git+<url>`, `http(s)://`, `ssh://`, `git://` and scp-like `user@host:path`.
    ///
    /// Looks at the file system to tell a bare repository from a folder.
    pub fn parse(source_url: &str) -> Result<Source, InstallError> {
        let bad = |reason: &str| InstallError::BadSource {
            source_url: source_url.to_owned(),
            reason: reason.to_owned(),
        };
        let s = source_url.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let lower = s.to_ascii_lowercase();

        if lower.starts_with("file:") {
            // The URL parser would read `file:app` as `/app`; that is surely a relative path.
            if !lower.starts_with("file://") {
                return Err(bad("a file URL must look like file:///absolute/path"));
            }
            let url = url::Url::parse(s).map_err(|e| bad(&format!("not a valid URL ({e})")))?;
            let path = url.to_file_path().map_err(|()| {
                bad("a file:// URL must name a local absolute path, like file:///home/me/app")
            })?;
            return Ok(local_path(path));
        }
        if let Some(rest) = lower.strip_prefix("git+") {
            // Slice the original, not `lower`: paths and URLs may be case-sensitive.
            let url = &s[s.len() - rest.len()..];
            if !url.contains("://") {
                return Err(bad(
                    "git+ must be followed by a URL, like git+https://host/repo",
                ));
            }
            return Ok(Source::Git(npm_ssh_to_scp(url).unwrap_or(url).to_owned()));
        }
        if ["http://", "https://", "ssh://", "git://"]
            .iter()
            .any(|scheme| lower.starts_with(scheme))
        {
            return Ok(Source::Git(s.to_owned()));
        }
        if s.contains("://") {
            return Err(bad("that URL scheme is not supported"));
        }
        if s.starts_with('/') {
            return Ok(local_path(PathBuf::from(s)));
        }
        if is_scp_like(s) {
            return Ok(Source::Git(s.to_owned()));
        }
        Err(bad(
            "it looks like a relative path; make it absolute (e.g. with $PWD/…) before installing",
        ))
    }

    /// The id a service gets when none is given: the source's last path segment without
    /// `.git`, reduced to the characters a service id allows. `service` when nothing is left.
    pub fn default_id(&self) -> String {
        let raw = match self {
            Source::Folder(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Source::Git(url) => last_url_segment(url).to_owned(),
        };
        let id = sanitise_id(&raw);
        if id.is_empty() {
            "service".to_owned()
        } else {
            id
        }
    }

    /// How the package is stored: in place (`file`) or cloned (`git`).
    pub fn source_type(&self) -> SourceType {
        match self {
            Source::Folder(_) => SourceType::File,
            Source::Git(_) => SourceType::Git,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Folder(path) => write!(f, "{}", path.display()),
            Source::Git(url) => f.write_str(url),
        }
    }
}

/// A local path is a folder to run in place unless it is a bare repository, which has no
/// files to run and must be cloned.
fn local_path(path: PathBuf) -> Source {
    if is_bare_repo(&path) {
        Source::Git(path.to_string_lossy().into_owned())
    } else {
        Source::Folder(path)
    }
}

fn is_bare_repo(path: &Path) -> bool {
    let trimmed = path.to_string_lossy();
    if trimmed.trim_end_matches('/').ends_with(".git") {
        return true;
    }
    path.join("HEAD").is_file()
        && path.join("objects").is_dir()
        && path.join("refs").is_dir()
        && !path.join(".git").exists()
}

/// git's scp-like syntax, `user@host:path`. A `/` before the `:` means it is a path instead.
fn is_scp_like(s: &str) -> bool {
    let Some((host_part, path_part)) = s.split_once(':') else {
        return false;
    };
    let Some((user, host)) = host_part.split_once('@') else {
        return false;
    };
    !host_part.contains('/') && !user.is_empty() && !host.is_empty() && !path_part.is_empty()
}

/// npm writes `git+ssh://git@host:user/repo`, which git would read as a port named `user`;
/// the scp-like form after `ssh://` is what is meant.
fn npm_ssh_to_scp(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("ssh://")?;
    let authority = rest.split('/').next()?;
    let (_, port) = authority.rsplit_once(':')?;
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (!is_port && is_scp_like(rest)).then_some(rest)
}

fn last_url_segment(url: &str) -> &str {
    // npm-style `#semver:^1` fragments and query strings are not part of the name.
    let url = url.split(['#', '?']).next().unwrap_or(url);
    let url = url.trim_end_matches('/');
    let url = url
        .strip_suffix(".git")
        .unwrap_or(url)
        .trim_end_matches('/');
    url.rsplit(['/', ':']).next().unwrap_or(url)
}

/// Maps `raw` into the service id alphabet so the result always passes
/// [`atek_core::ServiceId`]'s checks (or is empty).
fn sanitise_id(raw: &str) -> String {
    let raw = raw.strip_suffix(".git").unwrap_or(raw);
    let mut out = String::with_capacity(raw.len().min(MAX_ID_LEN));
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            c
        } else {
            '-'
        };
        // Ids may not contain "..", and runs of replaced characters read badly.
        if (c == '.' || c == '-') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let mut id = out.trim_start_matches(['.', '-']).to_owned();
    id.truncate(MAX_ID_LEN);
    id.trim_end_matches(['.', '-']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_are_valid_service_ids() {
        let cases = [
            (
                Source::Git("https://github.com/me/my-app.git".into()),
                "my-app",
            ),
            (
                Source::Git("https://github.com/me/my-app/".into()),
                "my-app",
            ),
            (Source::Git("git@github.com:me/repo.git".into()), "repo"),
            (Source::Git("git@host:repo.git".into()), "repo"),
            (Source::Git("https://h/x/app.git#semver:^1".into()), "app"),
            (Source::Git("/srv/git/tool.git/".into()), "tool"),
            (
                Source::parse("file:///home/me/my%20app/").unwrap(),
                "my-app",
            ),
            (
                Source::Folder("/home/me/My App (copy)".into()),
                "My-App-copy",
            ),
            (
                Source::Folder("/home/me/.hidden..thing.".into()),
                "hidden.thing",
            ),
            (Source::Folder("/".into()), "service"),
            (Source::Folder("/x/ü".into()), "service"),
            (
                Source::Folder(format!("/x/{}", "a".repeat(80)).into()),
                &"a".repeat(63),
            ),
        ];
        for (source, want) in cases {
            let id = source.default_id();
            assert_eq!(id, want, "{source:?}");
            assert!(id.parse::<atek_core::ServiceId>().is_ok(), "{id}");
        }
    }

    #[test]
    fn parsing_table() {
        // Enough of a bare repository's layout for the check; no git needed.
        let tmp = tempfile::TempDir::new().unwrap();
        let bare = tmp.path().join("bare");
        std::fs::create_dir_all(bare.join("objects")).unwrap();
        std::fs::create_dir_all(bare.join("refs")).unwrap();
        std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let bare = bare.to_str().unwrap().to_owned();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(work.join(".git/objects")).unwrap();
        let work = work.to_str().unwrap().to_owned();

        let git = |s: &str| Source::Git(s.to_owned());
        let folder = |s: &str| Source::Folder(PathBuf::from(s));
        let cases = [
            (bare.clone(), git(&bare)),
            (format!("file://{bare}"), git(&bare)),
            (work.clone(), folder(&work)),
            (format!("file://{work}/"), folder(&format!("{work}/"))),
            ("file:///tmp/some%20dir".to_owned(), folder("/tmp/some dir")),
            ("/srv/apps/tool".to_owned(), folder("/srv/apps/tool")),
            (
                "/srv/git/not-yet.git".to_owned(),
                git("/srv/git/not-yet.git"),
            ),
            ("git+file:///tmp/repo".to_owned(), git("file:///tmp/repo")),
            (
                "git+https://h.example/a/b.git".to_owned(),
                git("https://h.example/a/b.git"),
            ),
            (
                "GIT+ssh://git@h.example/A/B".to_owned(),
                git("ssh://git@h.example/A/B"),
            ),
            (
                "git+ssh://git@h.example:me/r.git".to_owned(),
                git("git@h.example:me/r.git"),
            ),
            (
                "git+ssh://git@h.example:22/r.git".to_owned(),
                git("ssh://git@h.example:22/r.git"),
            ),
            (
                "https://github.com/a/b".to_owned(),
                git("https://github.com/a/b"),
            ),
            (
                "HTTPS://github.com/a/b".to_owned(),
                git("HTTPS://github.com/a/b"),
            ),
            (
                "http://h.example/a/b".to_owned(),
                git("http://h.example/a/b"),
            ),
            (
                "ssh://git@h.example/x.git".to_owned(),
                git("ssh://git@h.example/x.git"),
            ),
            ("git://h.example/x".to_owned(), git("git://h.example/x")),
            (
                "git@github.com:a/b.git".to_owned(),
                git("git@github.com:a/b.git"),
            ),
            (
                "  https://h.example/x \n".to_owned(),
                git("https://h.example/x"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Source::parse(&input).unwrap(), want, "{input:?}");
        }

        for bad in [
            "",
            "   ",
            "relative/path",
            "./app",
            "app",
            "~/app",
            "ftp://h.example/x",
            "git+",
            "git+relative",
            "file://remote.example/x",
            "file:relative",
            "mailto:someone",
        ] {
            let err = Source::parse(bad).unwrap_err();
            assert!(
                matches!(&err, InstallError::BadSource { source_url, .. } if source_url == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("accepted:"), "{err}");
        }
        let relative = Source::parse("my-app").unwrap_err().to_string();
        assert!(relative.contains("make it absolute"), "{relative}");
    }

    #[test]
    fn types() {
        assert_eq!(Source::Git("x".into()).source_type(), SourceType::Git);
        assert_eq!(Source::Folder("/x".into()).source_type(), SourceType::File);
    }

    #[test]
    fn scp_like() {
        assert!(is_scp_like("git@github.com:me/repo.git"));
        assert!(!is_scp_like("dir/user@host:x"));
        assert!(!is_scp_like("host:path"));
        assert!(!is_scp_like("@host:path"));
    }
}
