//! Runs the `forge parse` binary as a user would: node form for every
//! Dockerfile of the parser conformance data, JSON output, and the message
//! and exit code for invalid input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn forge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge"))
}

fn parse_stdin(text: &str, extra: &[&str]) -> Output {
    let mut child = forge()
        .arg("parse")
        .args(extra)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("stdin accepts the Dockerfile");
    child.wait_with_output().expect("forge finishes")
}

#[test]
fn parse_prints_node_form_for_conformance_cases() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("dockerfile-parse"))
        .expect("dockerfile-parse folder")
        .map(|entry| entry.expect("folder entry").path())
        .collect();
    cases.sort();

    for case in cases {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let output = forge()
            .arg("parse")
            .arg("-f")
            .arg(case.join("Dockerfile"))
            .output()
            .expect("forge runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);

        if case.join("result").exists() {
            let expected = std::fs::read_to_string(case.join("result")).expect("result file");
            if output.status.code() != Some(0) {
                failures.push(format!(
                    "{name}: exit {:?}, stderr: {stderr}",
                    output.status.code()
                ));
            } else if stdout != expected {
                failures.push(format!(
                    "{name}: output differs\n--- expected\n{expected}--- actual\n{stdout}"
                ));
            }
        } else if case.join("error").exists() {
            if output.status.code() != Some(1) {
                failures.push(format!(
                    "{name}: expected exit 1, got {:?}",
                    output.status.code()
                ));
            } else if !stderr.starts_with("error: ") {
                failures.push(format!("{name}: stderr lacks an error line: {stderr}"));
            }
        } else if output.status.code() != Some(0) {
            failures.push(format!(
                "{name}: exit {:?}, stderr: {stderr}",
                output.status.code()
            ));
        }
        checked += 1;
    }

    assert!(checked > 20, "only {checked} cases found");
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parse_reads_standard_input() {
    let output = parse_stdin(
        "FROM busybox AS base\nCOPY --chown=1000 app /app\nCMD [\"/app/run\"]\n",
        &[],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "(from \"busybox\" \"AS\" \"base\")\n(copy [\"--chown=1000\"] \"app\" \"/app\")\n(cmd \"/app/run\")\n"
    );
}

#[test]
fn parse_unknown_instruction_fails() {
    let output = parse_stdin("FROM busybox\nCOPPY a b\n", &["--format", "json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("<stdin>:2:"),
        "no file and line in: {stderr}"
    );
    assert!(
        stderr.contains("COPPY"),
        "instruction not named in: {stderr}"
    );
    assert!(
        stderr.contains("did you mean"),
        "no suggestion in: {stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout not empty on error");
}

#[test]
fn parse_json_has_stages_and_spans() {
    let output = parse_stdin(
        "ARG V=1\nFROM busybox AS base\nRUN echo \\\n  hi\n",
        &["--format", "json"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let stages = json["stages"].as_array().expect("stages array");
    assert_eq!(stages.len(), 1);
    let text = json.to_string();
    assert!(text.contains("\"base\""), "stage name missing: {text}");
    assert!(
        text.contains("\"start\":3"),
        "RUN start line missing: {text}"
    );
    assert!(text.contains("\"end\":4"), "RUN end line missing: {text}");
}

#[test]
fn parse_missing_file_names_path() {
    let output = forge()
        .args(["parse", "-f", "/nonexistent/forge-test/Dockerfile"])
        .output()
        .expect("forge runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("/nonexistent/forge-test/Dockerfile"),
        "path not named: {stderr}"
    );
}

#[test]
fn parse_bad_flag_is_usage_error() {
    let output = forge()
        .args(["parse", "--no-such-flag"])
        .output()
        .expect("forge runs");
    assert_eq!(output.status.code(), Some(2));
}
