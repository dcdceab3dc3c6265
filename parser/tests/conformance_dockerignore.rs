//! Checks `.dockerignore` reading and matching against the rows of the
//! conformance tables `dockerignore/cases.tsv` and
//! `dockerignore/normalize.tsv`.

use std::fs;
use std::path::Path;

use forge_parser::dockerignore::{Matcher, read_patterns};

/// One data row of a table: its 1-based line number in the file and its
/// tab-separated columns.
struct Row {
    line: usize,
    columns: Vec<String>,
}

/// Reads the rows of a table after its `#` header line.
fn read_table(path: &Path, columns: usize) -> Vec<Row> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => panic!("cannot read {}: {error}", path.display()),
    };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, line)| line).unwrap_or_default();
    assert!(
        header.starts_with('#'),
        "{}: the first line should be a `#` header, found {header:?}",
        path.display()
    );

    lines
        .filter(|(_, line)| !line.is_empty())
        .map(|(index, line)| {
            let fields: Vec<String> = line.splitn(columns, '\t').map(str::to_owned).collect();
            assert_eq!(
                fields.len(),
                columns,
                "{}:{}: expected {columns} tab-separated columns in {line:?}",
                path.display(),
                index + 1
            );
            Row {
                line: index + 1,
                columns: fields,
            }
        })
        .collect()
}

fn column(row: &Row, index: usize) -> &str {
    row.columns
        .get(index)
        .map(String::as_str)
        .unwrap_or_default()
}

fn parse_json<T: serde::de::DeserializeOwned>(file: &str, row: &Row, index: usize) -> T {
    let text = column(row, index);
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => panic!(
            "{file}:{}: column {} is not the expected JSON ({error}): {text}",
            row.line,
            index + 1
        ),
    }
}

#[test]
fn dockerignore_cases() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let rows = read_table(&dir.join("dockerignore/cases.tsv"), 4);
    assert!(!rows.is_empty(), "cases.tsv has no rows");

    let mut failures = Vec::new();
    for row in &rows {
        let patterns: Vec<String> = parse_json("cases.tsv", row, 0);
        let path: String = parse_json("cases.tsv", row, 1);
        let expect = column(row, 2);
        let note = column(row, 3);
        let text = patterns.join("\n");
        let describe = |outcome: String| {
            format!(
                "cases.tsv:{}: patterns {patterns:?}, path {path:?}: expected {expect}, got {outcome} (note: {note})",
                row.line
            )
        };

        let from_text = Matcher::from_text(&text);
        let from_read = Matcher::new(&read_patterns(&text));
        match (expect, from_text, from_read) {
            ("error", Err(_), Err(_)) => {}
            ("error", Ok(_), _) => failures.push(describe("a matcher from from_text".to_owned())),
            ("error", _, Ok(_)) => failures.push(describe("a matcher from new".to_owned())),
            ("excluded" | "included", Ok(matcher), Ok(same)) => {
                let want = expect == "excluded";
                let excluded = matcher.is_excluded(&path);
                if excluded != want {
                    failures.push(describe(format!("excluded = {excluded}")));
                }
                if same.is_excluded(&path) != excluded {
                    failures.push(describe("a different answer from new".to_owned()));
                }
            }
            ("excluded" | "included", Err(error), _) | ("excluded" | "included", _, Err(error)) => {
                failures.push(describe(format!("error: {error}")));
            }
            (other, _, _) => failures.push(describe(format!("an unknown expectation {other:?}"))),
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn dockerignore_normalize() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let rows = read_table(&dir.join("dockerignore/normalize.tsv"), 3);
    assert!(!rows.is_empty(), "normalize.tsv has no rows");

    let mut failures = Vec::new();
    for row in &rows {
        let line: String = parse_json("normalize.tsv", row, 0);
        let expected: Option<String> = parse_json("normalize.tsv", row, 1);
        let note = column(row, 2);

        let patterns = read_patterns(&line);
        let want: Vec<String> = expected.into_iter().collect();
        if patterns != want {
            failures.push(format!(
                "normalize.tsv:{}: line {line:?}: expected {want:?}, got {patterns:?} (note: {note})",
                row.line
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
