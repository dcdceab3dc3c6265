//! Runs the first parsing stage over the `dockerfile-parse` conformance
//! cases: each folder contains a `Dockerfile` and one of `result` (the rendered
//! nodes), `error` (parsing must fail) or `lines` (the line spans).

#![allow(
    clippy::print_stdout,
    reason = "the test prints a summary of the cases"
)]

use std::fmt::Write as _;
use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use forge_parser::Node;
use forge_parser::syntax::parse;

/// Cases this parser treats differently from the expectation file, with
/// the reason. Each is still parsed, and must not panic.
const DIFFERENT: &[(&str, &str)] = &[];

/// Returns the case folders in name order, or `None` when the conformance
/// data is missing and the test may skip.
fn case_folders() -> Option<Vec<PathBuf>> {
    let root = forge_testkit::conformance_dir()?.join("dockerfile-parse");
    let entries = fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", root.display()));
    let mut folders: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    assert!(!folders.is_empty(), "no cases in {}", root.display());
    Some(folders)
}

fn case_name(folder: &Path) -> String {
    folder
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_dockerfile(folder: &Path) -> String {
    let path = folder.join("Dockerfile");
    let bytes =
        fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    String::from_utf8(bytes)
        .unwrap_or_else(|error| panic!("{} is not UTF-8: {error}", path.display()))
}

/// Compares two texts line by line and marks the lines that differ.
fn diff(expected: &str, actual: &str) -> String {
    let expected_lines: Vec<&str> = expected.split('\n').collect();
    let actual_lines: Vec<&str> = actual.split('\n').collect();
    let mut out = String::new();
    for index in 0..expected_lines.len().max(actual_lines.len()) {
        let want = expected_lines.get(index);
        let got = actual_lines.get(index);
        if want == got {
            let _ = writeln!(out, "    {}", want.copied().unwrap_or_default());
            continue;
        }
        if let Some(want) = want {
            let _ = writeln!(out, "  - {want}");
        }
        if let Some(got) = got {
            let _ = writeln!(out, "  + {got}");
        }
    }
    out
}

/// Checks one case and returns a description of the failure, if any.
fn check_case(folder: &Path) -> Option<String> {
    let text = read_dockerfile(folder);
    let parsed = parse(&text);

    let result = folder.join("result");
    if result.is_file() {
        let expected = fs::read_to_string(&result).expect("read result file");
        return match parsed {
            Err(error) => Some(format!("parse failed: {error}")),
            Ok(tree) => {
                let mut actual = tree
                    .nodes
                    .iter()
                    .map(Node::render)
                    .collect::<Vec<_>>()
                    .join("\n");
                actual.push('\n');
                (actual != expected).then(|| {
                    format!(
                        "rendered nodes differ (- expected, + actual):\n{}",
                        diff(&expected, &actual)
                    )
                })
            }
        };
    }

    if folder.join("error").is_file() {
        return match parsed {
            Err(_) => None,
            Ok(tree) => Some(format!(
                "parse succeeded but must fail; nodes:\n{}",
                tree.nodes
                    .iter()
                    .map(Node::render)
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        };
    }

    let lines = folder.join("lines");
    if lines.is_file() {
        let expected = fs::read_to_string(&lines).expect("read lines file");
        return match parsed {
            Err(error) => Some(format!("parse failed: {error}")),
            Ok(tree) => {
                let mut actual = format!("{} {}\n", tree.span.start, tree.span.end);
                for node in &tree.nodes {
                    let _ = writeln!(actual, "{} {}", node.span.start, node.span.end);
                }
                (actual != expected).then(|| {
                    format!(
                        "spans differ (- expected, + actual):\n{}",
                        diff(&expected, &actual)
                    )
                })
            }
        };
    }

    Some("no result, error or lines file".to_string())
}

#[test]
fn dockerfile_parse_cases() {
    let Some(folders) = case_folders() else {
        return;
    };

    let mut failures = Vec::new();
    let mut passed = 0;
    for folder in &folders {
        let name = case_name(folder);
        let failure = check_case(folder);
        match (DIFFERENT.iter().find(|(case, _)| *case == name), failure) {
            (Some((_, reason)), _) => println!("{name}: deliberately different: {reason}"),
            (None, None) => passed += 1,
            (None, Some(failure)) => failures.push(format!("case `{name}`: {failure}")),
        }
    }
    println!("{passed} of {} cases passed", folders.len());
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn different_cases_exist() {
    let Some(folders) = case_folders() else {
        return;
    };
    let names: Vec<String> = folders.iter().map(|folder| case_name(folder)).collect();
    for (case, _) in DIFFERENT {
        assert!(
            names.iter().any(|name| name == case),
            "listed case `{case}` is not in the data"
        );
    }
}

/// Parses `text` and returns a description when the parser panics.
fn panics(text: &str) -> Option<String> {
    let owned = text.to_string();
    let outcome = panic::catch_unwind(move || {
        if let Ok(tree) = parse(&owned) {
            for node in &tree.nodes {
                let _ = node.render();
            }
        }
    });
    outcome
        .err()
        .map(|_| format!("parser panicked on {text:?}"))
}

#[test]
fn prefixes_of_cases_never_panic() {
    let Some(folders) = case_folders() else {
        return;
    };
    let mut failures = Vec::new();
    for folder in &folders {
        let text = read_dockerfile(folder);
        for (index, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let prefix = text.get(..index).unwrap_or_default();
            if let Some(failure) = panics(prefix) {
                failures.push(format!("case `{}`: {failure}", case_name(folder)));
            }
            let suffix = text.get(index..).unwrap_or_default();
            if let Some(failure) = panics(suffix) {
                failures.push(format!("case `{}`: {failure}", case_name(folder)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pieces that exercise every rule of the parser when strung together.
const PIECES: &[&str] = &[
    "RUN ",
    "run ",
    "COPY ",
    "ADD ",
    "ENV ",
    "LABEL ",
    "ARG ",
    "CMD ",
    "FROM ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "USER ",
    "EXPOSE ",
    "VOLUME ",
    "SHELL ",
    "NONE ",
    "X ",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "\\",
    "`",
    "\\\n",
    "`\n",
    "#",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=a\n",
    "# check=b\n",
    "[",
    "]",
    "\"",
    "'",
    ",",
    "1",
    "true",
    "{",
    "}",
    "=",
    "a",
    "EOF",
    "<<",
    "<<-",
    "<<EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "\tEOF",
    "$",
    "${",
    "${a:-",
    "--",
    "--mount=",
    "é",
    "\u{a0}",
    "\u{feff}",
    "\u{0}",
    "\\u",
    "\\ud800",
];

/// A small xorshift generator, so the garbage is the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn generated_garbage_never_panics() {
    let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    for _ in 0..20_000 {
        let length = (random.next() % 24) as usize;
        let mut text = String::new();
        for _ in 0..length {
            let index = (random.next() % PIECES.len() as u64) as usize;
            text.push_str(PIECES.get(index).copied().unwrap_or_default());
        }
        if let Some(failure) = panics(&text) {
            failures.push(failure);
        }
    }

    // Arbitrary bytes, read the way a caller reads a file that may not be
    // UTF-8.
    for _ in 0..5_000 {
        let length = (random.next() % 64) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| (random.next() % 256) as u8).collect();
        if let Some(failure) = panics(&String::from_utf8_lossy(&bytes)) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
