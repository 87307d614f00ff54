//! Reading and checking a package's `atek.json`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use atek_api::services::{ExecCommand, Manifest, Runtime, Transport};

/// The manifest's file name inside a package.
pub const MANIFEST_FILE: &str = "atek.json";

/// Why a package's `atek.json` was rejected. `Display` gives the whole text for a person:
/// the file, the field, the problem, and a `fix:` line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file exists but could not be read.
    #[error("{}: cannot read it: {source}\nfix: check the file's permissions", file.display())]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not JSON at all.
    #[error(
        "{}:{line}:{column}: not valid JSON: {message}\nfix: atek.json must hold one JSON object; \
         look for a missing comma, quote or brace near line {line}",
        file.display()
    )]
    Syntax {
        /// The manifest file.
        file: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's complaint.
        message: String,
    },
    /// A field has the wrong type or value.
    #[error("{}:{line}:{column}: {field}: {message}\nfix: {fix}", file.display())]
    Field {
        /// The manifest file.
        file: PathBuf,
        /// The JSON path of the field, e.g. `exports[0].transport`.
        field: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's complaint.
        message: String,
        /// What to change.
        fix: String,
    },
    /// The fields parse but do not make sense together.
    #[error("{}: {field}: {message}\nfix: {fix}", file.display())]
    Invalid {
        /// The manifest file.
        file: PathBuf,
        /// The JSON path of the field, e.g. `exports[1].path`.
        field: String,
        /// What is wrong.
        message: String,
        /// What to change.
        fix: String,
    },
}

const TOP_LEVEL_FIX: &str = "atek.json must hold one JSON object, like {\"name\": \"My app\"}";

/// Reads `dir/atek.json`. A package without one is fine (`Ok(None)`): it runs with defaults.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
    let file = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ManifestError::Read { file, source }),
    };
    parse_manifest(&file, &text).map(Some)
}

/// Parses and checks manifest text; `file` only names the file in errors.
pub fn parse_manifest(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    not_an_object(file, text)?;
    let de = &mut serde_json::Deserializer::from_str(text);
    let manifest: Manifest =
        serde_path_to_error::deserialize(&mut *de).map_err(|e| shape_error(file, e))?;
    de.end().map_err(|e| ManifestError::Syntax {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: plain_message(&e),
    })?;
    validate(&manifest).map_err(|(field, message, fix)| ManifestError::Invalid {
        file: file.to_owned(),
        field,
        message,
        fix,
    })?;
    Ok(manifest)
}

fn shape_error(file: &Path, e: serde_path_to_error::Error<serde_json::Error>) -> ManifestError {
    let field = e.path().to_string();
    let inner = e.into_inner();
    let (line, column) = (inner.line(), inner.column());
    let message = plain_message(&inner);
    match inner.classify() {
        serde_json::error::Category::Data if field != "." => {
            let fix = fix_for(&field, &message);
            ManifestError::Field {
                file: file.to_owned(),
                field,
                line,
                column,
                message,
                fix,
            }
        }
        serde_json::error::Category::Data => ManifestError::Field {
            file: file.to_owned(),
            field: "(top level)".to_owned(),
            line,
            column,
            message,
            fix: TOP_LEVEL_FIX.to_owned(),
        },
        _ => ManifestError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message,
        },
    }
}

/// serde would read a JSON array into the manifest struct field by field, silently giving
/// odd values; an array (or any non-object) is a mistake to report instead.
fn not_an_object(file: &Path, text: &str) -> Result<(), ManifestError> {
    let top_level = |line, column, message: String, fix: &str| ManifestError::Field {
        file: file.to_owned(),
        field: "(top level)".to_owned(),
        line,
        column,
        message,
        fix: fix.to_owned(),
    };
    let Some((at, first)) = text.char_indices().find(|(_, c)| !c.is_whitespace()) else {
        return Err(top_level(
            1,
            1,
            "the file is empty".to_owned(),
            "write {} for a package without settings, or delete atek.json",
        ));
    };
    if first == '{' {
        return Ok(());
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(top_level(
        line,
        column,
        format!("expected a JSON object, found {first:?}"),
        TOP_LEVEL_FIX,
    ))
}

/// serde_json's message, reworded for people who write JSON: without its " at line L column
/// C" suffix (the position is printed first), with JSON quotes instead of backticks, and
/// without Rust type names.
fn plain_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let bare = full.strip_suffix(&suffix).unwrap_or(&full);
    if bare.contains("untagged enum") {
        // Only `exec` is untagged: a string or a list of strings.
        return "expected a string or a list of strings".to_owned();
    }
    if bare.starts_with("invalid type: ") && !bare.starts_with("invalid type: string") {
        // `integer `5`` would become `integer "5"`, which reads as a string; show it bare.
        return bare.replace('`', "");
    }
    bare.replace('`', "\"")
}

/// A hint for a field that failed to parse, from the field's name.
fn fix_for(field: &str, message: &str) -> String {
    let last = field
        .rsplit(['.', '['])
        .next()
        .unwrap_or(field)
        .trim_end_matches(']');
    let export_item =
        || field.starts_with("exports[") && !field.contains('.') && message.contains("missing");
    match last {
        _ if export_item() => "every export needs an \"api\", like \
            {\"api\": \"example.com/my-api\", \"path\": \"/\", \"transport\": \"rpc\"}"
            .to_owned(),
        "transport" => "use \"rpc\" (JSON-RPC, the default) or \"proxy\" (a WebSocket piped \
            through), or leave it out"
            .to_owned(),
        "api" => "an API id is a string of printable ASCII without spaces, like \
            \"example.com/my-api\""
            .to_owned(),
        "path" => "use a string path on the service, like \"/\" or \"/rpc\"".to_owned(),
        "runtime" => "use \"node\" (the default) or \"exec\"".to_owned(),
        "exec" => "use a program, like \"bin/server\", or a program and its arguments, like \
            [\"python3\", \"server.py\"]"
            .to_owned(),
        "exports" => "use a list of exports, like [{\"api\": \"example.com/my-api\"}]".to_owned(),
        "frame" => "use true or false".to_owned(),
        "name" | "description" | "author" | "license" => {
            format!("\"{last}\" must be a string (in quotes)")
        }
        _ => format!("correct \"{field}\" or remove it; every field of atek.json is optional"),
    }
}

type Problem = (String, String, String);

/// Checks what the types alone do not: paths, the exec command and duplicate exports.
fn validate(m: &Manifest) -> Result<(), Problem> {
    let mut seen: HashMap<(&str, Transport), usize> = HashMap::new();
    for (i, export) in m.exports.iter().enumerate() {
        if let Some(path) = &export.path
            && !path.starts_with('/')
        {
            return Err((
                format!("exports[{i}].path"),
                format!("{path:?} does not start with \"/\""),
                format!("write it as \"/{path}\""),
            ));
        }
        let key = (export.api.as_str(), export.transport());
        if let Some(first) = seen.insert(key, i) {
            return Err((
                format!("exports[{i}]"),
                format!(
                    "api {:?} with transport {:?} is already exported by exports[{first}]",
                    key.0,
                    key.1.as_str()
                ),
                "remove one of the two, or give them different transports".to_owned(),
            ));
        }
    }
    match (&m.exec, m.runtime) {
        (None, Some(Runtime::Exec)) => Err((
            "runtime".to_owned(),
            "is \"exec\", but there is no \"exec\" command to run".to_owned(),
            "add e.g. \"exec\": \"bin/server\" or \"exec\": [\"python3\", \"server.py\"]"
                .to_owned(),
        )),
        (Some(exec), _) if exec_program_is_empty(exec) => Err((
            "exec".to_owned(),
            "the program to run is empty".to_owned(),
            "name a program, e.g. \"exec\": \"bin/server\" or \"exec\": [\"python3\", \
             \"server.py\"]"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

fn exec_program_is_empty(exec: &ExecCommand) -> bool {
    exec.argv().first().is_none_or(|p| p.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        parse_manifest(Path::new("atek.json"), text)
    }

    #[test]
    fn accepts_full_and_empty_manifests() {
        assert_eq!(parse("{}").ok(), Some(Manifest::default()));
        let m = parse(
            r#"{"name": "App", "frame": true, "runtime": "exec", "exec": ["python3", "s.py"],
                "exports": [{"api": "example.com/a", "path": "/rpc"},
                            {"api": "example.com/a", "transport": "proxy"}],
                "somethingElse": 1}"#,
        );
        let m = m.unwrap();
        assert_eq!(m.exports.len(), 2);
        assert_eq!(m.exec.unwrap().argv(), ["python3", "s.py"]);
    }

    #[test]
    fn exec_without_runtime_is_fine() {
        assert!(parse(r#"{"exec": "bin/server"}"#).is_ok());
    }

    #[test]
    fn empty_exec_program() {
        for exec in [r#""""#, "[]", r#"["  ", "x"]"#] {
            let err = parse(&format!(r#"{{"exec": {exec}}}"#)).unwrap_err();
            assert!(matches!(&err, ManifestError::Invalid { field, .. } if field == "exec"));
        }
    }

    #[test]
    fn trailing_garbage_is_a_syntax_error() {
        let err = parse("{} x").unwrap_err();
        assert!(
            matches!(err, ManifestError::Syntax { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn top_level_must_be_an_object() {
        let err = parse("[1]").unwrap_err().to_string();
        assert!(err.contains("(top level)"), "{err}");
    }

    #[test]
    fn missing_file_is_none() {
        let dir = std::env::temp_dir().join("atek-manifest-test-definitely-missing");
        assert!(read_manifest(&dir).unwrap().is_none());
    }
}
