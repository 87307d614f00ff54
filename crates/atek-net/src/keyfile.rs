//! A node's key on disk: the keyfile JSON of the original (`{"publicKey", "secretKey"}` in
//! lowercase base32), created on first use with mode 0600.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use atek_core::{Keyfile, SecretKey};

/// Whether [`load_or_create`] found the file or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file was there and parsed.
    Loaded,
    /// There was no file: a new key was made and written.
    Created,
}

/// Why a keyfile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyfileError {
    /// Reading or writing it failed.
    #[error("cannot {what} the keyfile {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It is there but is not a keyfile.
    #[error("failed to parse the keyfile {}: {reason}; move it away to have a new key made, or fix it", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The key in `path`, made and written (mode 0600, never over an existing file) if there is
/// no file yet.
pub fn load_or_create(path: &Path) -> Result<(SecretKey, Origin), KeyfileError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let keyfile = Keyfile::from_json(&text).map_err(|e| KeyfileError::Parse {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            Ok((keyfile.into_secret_key(), Origin::Loaded))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let keyfile = Keyfile::generate();
            let io = |what, source| KeyfileError::Io {
                what,
                path: path.to_owned(),
                source,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| io("create the folder of", e))?;
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("create", e))?;
            file.write_all(keyfile.to_json().as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|e| io("write", e))?;
            Ok((keyfile.into_secret_key(), Origin::Created))
        }
        Err(e) => Err(KeyfileError::Io {
            what: "read",
            path: path.to_owned(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_then_loaded_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/node.key");
        let (made, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::Created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (loaded, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(loaded.public(), made.public());

        fs::write(&path, "{not json").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("failed to parse the keyfile"), "{err}");
        // Nothing was written over the bad file.
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
    }
}
