//! Golden tests for what a person reads when config.json is wrong: each
//! `golden/config/NAME.json` must fail with exactly the text of `NAME.txt`.
//! `UPDATE_GOLDEN=1 cargo test --test config_golden` rewrites the .txt files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the right failure in a test

use std::path::Path;

use atek_host::config::Config;

#[test]
fn config_errors_name_the_field_and_the_fix() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "golden cases missing in {}",
        dir.display()
    );
    let mut mismatches = Vec::new();
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let name = case.file_name().unwrap().to_str().unwrap();
        let err =
            Config::parse(Path::new(name), &text).expect_err(&format!("{name} should be rejected"));
        let actual = format!("{err}\n");
        let golden = case.with_extension("txt");
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if actual != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_error_says_what_to_do() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "txt") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.contains("\nfix: "),
                "{} has no fix line",
                path.display()
            );
        }
    }
}
