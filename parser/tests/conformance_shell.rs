//! Runs the shell-word expansion cases of `<conformance>/shell-words`:
//! `envVarTest` through [`Lexer::expand_word`] and `wordsTest` through
//! [`Lexer::expand_words`], both with `\` as the escape character.

use std::fs;
use std::path::Path;

use forge_parser::shell::Lexer;

/// One case whose result differs from the expected one.
struct Failure {
    line: usize,
    input: String,
    expected: String,
    actual: String,
}

/// Formats one line per failure: file, line number, input, expected and
/// actual result.
fn report(file: &Path, failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|failure| {
            format!(
                "{}:{}: input {:?}: expected {}, got {}\n",
                file.display(),
                failure.line,
                failure.input,
                failure.expected,
                failure.actual
            )
        })
        .collect()
}

fn read(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    }
}

#[test]
fn env_var_test_rows() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let path = dir.join("shell-words/envVarTest");
    let text = read(&path);

    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let lexer = Lexer::new('\\');

    let mut rows = 0;
    let mut skipped_windows = 0;
    let mut failures = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }

        let fields: Vec<&str> = raw.trim().split('|').map(str::trim).collect();
        let [platform, input, expected] = fields.as_slice() else {
            panic!(
                "{}:{line}: expected 3 fields separated by '|', got {}: {raw:?}",
                path.display(),
                fields.len()
            );
        };
        match *platform {
            "A" | "U" => {}
            "W" => {
                skipped_windows += 1;
                continue;
            }
            other => panic!(
                "{}:{line}: unknown platform {other:?}; expected A, U or W",
                path.display()
            ),
        }
        rows += 1;

        let result = lexer.expand_word(input, &env);
        let passed = match (&result, *expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => expected != "error" && word == expected,
            (Err(_), _) => false,
        };
        if !passed {
            failures.push(Failure {
                line,
                input: input.to_string(),
                expected: format!("{expected:?}"),
                actual: match result {
                    Ok(word) => format!("{word:?}"),
                    Err(error) => format!("error: {error}"),
                },
            });
        }
    }

    assert!(rows > 0, "no rows found in {}", path.display());
    assert!(
        skipped_windows < rows,
        "only Windows rows found in {}",
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {rows} envVarTest rows failed:\n{}",
        failures.len(),
        report(&path, &failures)
    );
}

#[test]
fn words_test_rows() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let path = dir.join("shell-words/wordsTest");
    let text = read(&path);
    let lexer = Lexer::new('\\');

    let mut env: Vec<(String, String)> = Vec::new();
    let mut rows = 0;
    let mut failures = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.starts_with('#') {
            continue;
        }

        // A later entry for the same name wins in the slice environment.
        if let Some(assignment) = raw.strip_prefix("ENV ") {
            let assignment = assignment.trim_start_matches(' ');
            let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((name.to_string(), value.to_string()));
            continue;
        }

        let fields: Vec<&str> = raw.split('|').collect();
        let [input, expected] = fields.as_slice() else {
            panic!(
                "{}:{line}: expected exactly one '|', got {raw:?}",
                path.display()
            );
        };
        let input = input.trim();
        let expected: Vec<String> = expected
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        rows += 1;

        let actual = match lexer.expand_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if actual != expected {
            failures.push(Failure {
                line,
                input: input.to_string(),
                expected: format!("{expected:?}"),
                actual: format!("{actual:?}"),
            });
        }
    }

    assert!(rows > 0, "no rows found in {}", path.display());
    assert!(
        failures.is_empty(),
        "{} of {rows} wordsTest rows failed:\n{}",
        failures.len(),
        report(&path, &failures)
    );
}
