//! Typed instructions parsed from Dockerfile text through both stages.

use forge_parser::instructions::{
    CommandLine, Dockerfile, Expandable, Healthcheck, InstructionKind, MountType, Network, Source,
    parse,
};

fn parsed(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(file) => file,
        Err(error) => panic!("{text:?}: {error}"),
    }
}

fn kinds(file: &Dockerfile, stage: usize) -> Vec<&InstructionKind> {
    file.stages[stage]
        .instructions
        .iter()
        .map(|i| &i.kind)
        .collect()
}

#[test]
fn multi_stage_build() {
    let text = "\
# syntax=docker/dockerfile:1
ARG GO=1.22
ARG BASE=debian:bookworm

FROM golang:${GO} AS build
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/go-build \\
    --mount=type=bind,target=. \\
    go build -o /out/app .

FROM ${BASE}
COPY --from=build --chmod=0755 /out/app /usr/local/bin/app
USER 1000:1000
ENTRYPOINT [\"/usr/local/bin/app\"]
";
    let file = parsed(text);
    assert_eq!(
        file.directives.syntax.as_deref(),
        Some("docker/dockerfile:1")
    );
    assert_eq!(file.global_args.len(), 2);
    assert_eq!(file.stages.len(), 2);

    let build = &file.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, "golang:${GO}");
    assert_eq!(build.span.start, 5);
    assert_eq!(build.span.end, 9);
    let InstructionKind::Run(run) = kinds(&file, 0)[1] else {
        panic!("not RUN");
    };
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(
        run.mounts[0].literal().map(|m| m.kind),
        Some(MountType::Cache)
    );
    assert_eq!(
        run.mounts[1].literal().and_then(|m| m.target.as_deref()),
        Some(".")
    );
    let CommandLine::Shell(script) = &run.command else {
        panic!("not shell form");
    };
    assert!(script.trim_start().starts_with("go build"), "{script}");

    let runtime = &file.stages[1];
    assert_eq!(runtime.index, 1);
    assert_eq!(runtime.name, None);
    let InstructionKind::Copy(copy) = kinds(&file, 1)[0] else {
        panic!("not COPY");
    };
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.sources, [Source::Path("/out/app".into())]);
    assert_eq!(
        kinds(&file, 1)[2],
        &InstructionKind::Entrypoint(CommandLine::Exec(vec!["/usr/local/bin/app".into()]))
    );
}

#[test]
fn unknown_instruction_from_text() {
    let error = parse("FROM alpine\nCOPPY a b\n").unwrap_err();
    assert_eq!(error.line, 2);
    assert_eq!(error.column, 1);
    assert!(error.message.contains("COPPY"), "{}", error.message);
    assert_eq!(error.hint.as_deref(), Some("did you mean COPY?"));
}

#[test]
fn unknown_flag_column_on_continuation_line() {
    let error = parse("FROM alpine\nCOPY --chown=1 \\\n     --lnk a b\n").unwrap_err();
    assert_eq!((error.line, error.column), (3, 6));
    assert!(error.message.contains("--lnk"), "{}", error.message);
    assert!(error.message.contains("COPY"), "{}", error.message);
    assert_eq!(error.hint.as_deref(), Some("did you mean --link?"));
}

#[test]
fn instruction_before_from() {
    let error = parse("ARG A=1\nENV B=2\nFROM alpine\n").unwrap_err();
    assert_eq!(error.line, 2);
    assert!(error.message.contains("ENV"), "{}", error.message);
}

#[test]
fn no_from() {
    let error = parse("ARG A=1\n").unwrap_err();
    assert!(error.message.contains("no FROM"), "{}", error.message);
}

#[test]
fn heredoc_copy_and_run() {
    let text =
        "FROM alpine\nCOPY <<EOF /etc/motd\nhello\nEOF\nRUN <<-SCRIPT\n\techo hi\n\tSCRIPT\n";
    let file = parsed(text);
    let InstructionKind::Copy(copy) = kinds(&file, 0)[0] else {
        panic!("not COPY");
    };
    let Source::Heredoc(heredoc) = &copy.sources[0] else {
        panic!("not a heredoc source: {:?}", copy.sources);
    };
    assert_eq!(heredoc.name, "EOF");
    assert_eq!(heredoc.content, "hello\n");
    assert_eq!(copy.destination, "/etc/motd");
    let InstructionKind::Run(run) = kinds(&file, 0)[1] else {
        panic!("not RUN");
    };
    assert_eq!(run.heredocs.len(), 1);
    assert!(run.heredocs[0].chomp);
    assert_eq!(file.stages[0].span.end, 7);
}

#[test]
fn env_and_label_values() {
    let file =
        parsed("FROM alpine\nENV A=\"one two\" B='$x' C=$HOME\nLABEL \"org.example\"=\"v 1\"\n");
    let InstructionKind::Env(env) = kinds(&file, 0)[0] else {
        panic!("not ENV");
    };
    assert_eq!(env.len(), 3);
    assert_eq!(env[0].value.value, "one two");
    assert_eq!(env[1].value.value, "$x");
    assert!(!env[1].value.has_variables);
    assert!(env[2].value.has_variables);
    let InstructionKind::Label(labels) = kinds(&file, 0)[1] else {
        panic!("not LABEL");
    };
    assert_eq!(labels[0].key, "org.example");
    assert_eq!(labels[0].value.value, "v 1");
}

#[test]
fn backtick_escape_directive() {
    let file = parsed("# escape=`\nFROM alpine\nENV P=\"C:\\dir\" Q=a`\"b\n");
    let InstructionKind::Env(env) = kinds(&file, 0)[0] else {
        panic!("not ENV");
    };
    assert_eq!(env[0].value.value, "C:\\dir");
    assert_eq!(env[1].value.value, "a\"b");
}

#[test]
fn healthcheck_from_text() {
    let file = parsed("FROM alpine\nHEALTHCHECK --interval=30s --retries=3 CMD [\"/check\"]\n");
    let InstructionKind::Healthcheck(Healthcheck::Cmd(check)) = kinds(&file, 0)[0] else {
        panic!("not HEALTHCHECK CMD");
    };
    assert_eq!(check.interval_ns, Some(30_000_000_000));
    assert_eq!(check.retries, Some(3));
    assert_eq!(check.command, CommandLine::Exec(vec!["/check".into()]));
}

#[test]
fn onbuild_from_text() {
    let file = parsed("FROM alpine\nONBUILD RUN --network=none make\n");
    let InstructionKind::Onbuild(trigger) = kinds(&file, 0)[0] else {
        panic!("not ONBUILD");
    };
    let InstructionKind::Run(run) = &trigger.kind else {
        panic!("trigger not RUN");
    };
    assert_eq!(run.network, Some(Expandable::Literal(Network::None)));
}

#[test]
fn mount_error_column() {
    let error =
        parse("FROM alpine\nRUN --mount=type=cache,target=/c,sharing=lockd true\n").unwrap_err();
    assert_eq!((error.line, error.column), (2, 5));
    assert!(error.message.contains("`lockd`"), "{}", error.message);
    assert_eq!(error.hint.as_deref(), Some("did you mean locked?"));
}

#[test]
fn syntax_warnings_are_kept() {
    let file = parsed("FROM alpine\nMAINTAINER me\n");
    assert!(
        file.warnings
            .iter()
            .any(|w| w.line == 2 && w.message.contains("MAINTAINER"))
    );
}

/// Every conformance Dockerfile parses through both stages without a
/// panic; each success has a stage and each failure names a line.
#[test]
fn conformance_files_never_panic() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let cases = std::fs::read_dir(dir.join("dockerfile-parse")).unwrap();
    let mut checked = 0;
    for case in cases {
        let path = case.unwrap().path().join("Dockerfile");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        match parse(&text) {
            Ok(file) => assert!(!file.stages.is_empty(), "{}", path.display()),
            Err(error) => assert!(error.line >= 1, "{}: {error}", path.display()),
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} cases found");
}

/// Prefixes and mutations of a realistic Dockerfile never panic.
#[test]
fn truncated_input_never_panics() {
    let text = "# escape=\\\nARG A=1\nFROM --platform=$P a AS b\nRUN --mount=type=secret,id=x,env=Y <<EOF\necho\nEOF\nCOPY --chmod=u+x <<A <<B /d/\nx\nA\ny\nB\nHEALTHCHECK --interval=1s CMD [\"x\"]\nONBUILD ADD --checksum=sha256:ab a b\n";
    for end in 0..=text.len() {
        let Some(prefix) = text.get(..end) else {
            continue;
        };
        if let Err(error) = parse(prefix) {
            assert!(error.line >= 1, "{prefix:?}: {error}");
        }
    }
}
