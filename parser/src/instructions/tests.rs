//! Tests of instruction typing and stage grouping from hand-built nodes.

use super::commands::{Typed, type_node};
use super::*;
use crate::{Heredoc, Node, ParseError, Span};

fn node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
    let mut original = keyword.to_ascii_uppercase();
    for word in flags.iter().chain(args) {
        original.push(' ');
        original.push_str(word);
    }
    Node {
        keyword: keyword.to_string(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        json: false,
        heredocs: Vec::new(),
        inner: None,
        original,
        span: Span { start: 1, end: 1 },
        comments: Vec::new(),
    }
}

fn json(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
    Node {
        json: true,
        ..node(keyword, flags, args)
    }
}

fn at(mut node: Node, line: usize) -> Node {
    node.span = Span {
        start: line,
        end: line,
    };
    node
}

fn heredoc(name: &str, content: &str) -> Heredoc {
    Heredoc {
        name: name.to_string(),
        content: content.to_string(),
        expand: true,
        chomp: false,
    }
}

fn kind(node: &Node) -> InstructionKind {
    match type_node(node, '\\') {
        Ok(Typed::Instruction(kind)) => kind,
        Ok(Typed::From(from)) => panic!("{}: typed as FROM {from:?}", node.original),
        Err(problem) => panic!("{}: {}", node.original, problem.message),
    }
}

fn rejection(node: &Node) -> Problem {
    match type_node(node, '\\') {
        Ok(typed) => panic!("{}: accepted as {typed:?}", node.original),
        Err(problem) => problem,
    }
}

fn run(node: &Node) -> Run {
    match kind(node) {
        InstructionKind::Run(run) => run,
        other => panic!("not RUN: {other:?}"),
    }
}

fn copy(node: &Node) -> Copy {
    match kind(node) {
        InstructionKind::Copy(copy) => copy,
        other => panic!("not COPY: {other:?}"),
    }
}

fn add(node: &Node) -> Add {
    match kind(node) {
        InstructionKind::Add(add) => add,
        other => panic!("not ADD: {other:?}"),
    }
}

fn healthcheck(node: &Node) -> HealthcheckCmd {
    match kind(node) {
        InstructionKind::Healthcheck(Healthcheck::Cmd(cmd)) => cmd,
        other => panic!("not HEALTHCHECK CMD: {other:?}"),
    }
}

fn dockerfile(nodes: &[Node]) -> Result<Dockerfile, ParseError> {
    let locator = build::Locator { source: None };
    build::build_with(nodes, Directives::default(), Vec::new(), &locator)
}

// FROM and stages

#[test]
fn from_plain_image() {
    let file = dockerfile(&[node("from", &[], &["alpine:3"])]).unwrap();
    assert_eq!(file.stages.len(), 1);
    assert_eq!(file.stages[0].base, "alpine:3");
    assert_eq!(file.stages[0].name, None);
    assert_eq!(file.stages[0].platform, None);
    assert_eq!(file.stages[0].index, 0);
}

#[test]
fn from_named_stage_lower_cased() {
    let file = dockerfile(&[node(
        "from",
        &["--platform=$BUILDPLATFORM"],
        &["golang", "AS", "Build"],
    )])
    .unwrap();
    let stage = &file.stages[0];
    assert_eq!(stage.name.as_deref(), Some("build"));
    assert_eq!(stage.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert!(file.warnings.iter().any(|w| w.message.contains("`Build`")));
}

#[test]
fn from_as_casing_warns() {
    let file = dockerfile(&[node("from", &[], &["golang", "as", "build"])]).unwrap();
    assert!(file.warnings.iter().any(|w| w.message.contains("casing")));
    let file = dockerfile(&[node("from", &[], &["golang", "AS", "build"])]).unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
}

#[test]
fn from_rejects_bad_stage_names() {
    for name in ["1st", "a/b", "bad name", "-x", "é"] {
        let problem = rejection(&node("from", &[], &["alpine", "AS", name]));
        assert!(
            problem.message.contains(&format!("`{name}`")),
            "{name}: {}",
            problem.message
        );
    }
    for name in ["a", "a1", "build-stage", "x_y.z"] {
        assert!(
            type_node(&node("from", &[], &["alpine", "as", name]), '\\').is_ok(),
            "{name}"
        );
    }
}

#[test]
fn from_rejects_argument_counts() {
    assert!(
        rejection(&node("from", &[], &[]))
            .message
            .contains("base image")
    );
    assert!(
        rejection(&node("from", &[], &["a", "b"]))
            .message
            .contains("one or three")
    );
    assert!(
        rejection(&node("from", &[], &["a", "TO", "b"]))
            .message
            .contains("`TO`")
    );
    assert!(
        rejection(&node("from", &[], &["a", "as", "b", "c"]))
            .message
            .contains("one or three")
    );
}

#[test]
fn from_flags() {
    let problem = rejection(&node("from", &["--platfrom=linux/amd64"], &["alpine"]));
    assert!(
        problem.message.contains("--platfrom"),
        "{}",
        problem.message
    );
    assert!(problem.message.contains("FROM"), "{}", problem.message);
    assert_eq!(problem.hint.as_deref(), Some("did you mean --platform?"));
    assert!(
        super::commands::type_node(&node("from", &["--platform="], &["alpine"]), '\\').is_err()
    );
}

#[test]
fn stages_group_instructions() {
    let file = dockerfile(&[
        at(node("arg", &[], &["BASE=alpine"]), 1),
        at(node("from", &[], &["$BASE", "AS", "build"]), 2),
        at(node("run", &[], &["make"]), 3),
        at(node("from", &[], &["scratch"]), 5),
        at(json("copy", &["--from=build"], &["/out", "/"]), 6),
        at(node("cmd", &[], &["/out"]), 7),
    ])
    .unwrap();
    assert_eq!(file.global_args.len(), 1);
    assert_eq!(file.global_args[0].arg.args[0].name, "BASE");
    assert_eq!(file.stages.len(), 2);
    assert_eq!(file.stages[0].name.as_deref(), Some("build"));
    assert_eq!(file.stages[0].instructions.len(), 1);
    assert_eq!(file.stages[0].span, Span { start: 2, end: 3 });
    assert_eq!(file.stages[1].index, 1);
    assert_eq!(file.stages[1].instructions.len(), 2);
    assert_eq!(file.stages[1].span, Span { start: 5, end: 7 });
    assert_eq!(file.stages[1].instructions[0].span.start, 6);
}

#[test]
fn arg_inside_stage_is_instruction() {
    let file = dockerfile(&[node("from", &[], &["alpine"]), node("arg", &[], &["X"])]).unwrap();
    assert!(file.global_args.is_empty());
    assert!(matches!(
        file.stages[0].instructions[0].kind,
        InstructionKind::Arg(_)
    ));
}

#[test]
fn instruction_before_from_is_error() {
    let error = dockerfile(&[
        at(node("arg", &[], &["A"]), 1),
        at(node("run", &[], &["x"]), 3),
    ])
    .unwrap_err();
    assert_eq!(error.line, 3);
    assert!(error.message.contains("RUN"), "{}", error.message);
    assert!(
        error.message.contains("before the first FROM"),
        "{}",
        error.message
    );
    assert!(error.hint.is_some_and(|h| h.contains("only ARG")));
}

#[test]
fn missing_from_is_error() {
    let error = dockerfile(&[at(node("arg", &[], &["A"]), 2)]).unwrap_err();
    assert!(error.message.contains("no FROM"), "{}", error.message);
    assert!(error.hint.is_some_and(|h| h.contains("FROM scratch")));
    assert!(dockerfile(&[]).is_err());
}

#[test]
fn duplicate_stage_name_is_error() {
    let error = dockerfile(&[
        at(node("from", &[], &["a", "AS", "x"]), 1),
        at(node("from", &[], &["b", "AS", "X"]), 4),
    ])
    .unwrap_err();
    assert_eq!(error.line, 4);
    assert!(error.message.contains("`x`"), "{}", error.message);
    assert!(error.message.contains("line 1"), "{}", error.message);
}

#[test]
fn error_column_points_at_flag() {
    let error = dockerfile(&[
        node("from", &[], &["a"]),
        node("copy", &["--chown=1", "--form=x"], &["a", "b"]),
    ])
    .unwrap_err();
    // "COPY --chown=1 --form=x a b": the bad flag starts at column 16.
    assert_eq!(error.column, 16);
    assert_eq!(error.hint.as_deref(), Some("did you mean --from?"));
}

#[test]
fn error_column_from_source_text() {
    let text = "FROM a\nRUN --mount=type=cache,target=/c \\\n    --network=nope true\n";
    let nodes = [
        at(node("from", &[], &["a"]), 1),
        Node {
            span: Span { start: 2, end: 3 },
            ..node(
                "run",
                &["--mount=type=cache,target=/c", "--network=nope"],
                &["true"],
            )
        },
    ];
    let locator = build::Locator { source: Some(text) };
    let error = build::build_with(&nodes, Directives::default(), Vec::new(), &locator).unwrap_err();
    assert_eq!((error.line, error.column), (3, 5));
}

#[test]
fn unknown_instruction_suggests() {
    let problem = rejection(&node("coppy", &[], &["a", "b"]));
    assert!(problem.message.contains("`COPPY`"), "{}", problem.message);
    assert_eq!(problem.hint.as_deref(), Some("did you mean COPY?"));
    let problem = rejection(&node("frobnicate", &[], &["a"]));
    assert!(problem.hint.is_some_and(|h| !h.contains("did you mean")));
}

// RUN

#[test]
fn run_shell_and_exec() {
    assert_eq!(
        run(&node("run", &[], &["echo hi"])).command,
        CommandLine::Shell("echo hi".into())
    );
    assert_eq!(
        run(&json("run", &[], &["echo", "hi"])).command,
        CommandLine::Exec(vec!["echo".into(), "hi".into()])
    );
}

#[test]
fn run_needs_command() {
    assert!(
        rejection(&node("run", &[], &[]))
            .message
            .contains("RUN requires a command")
    );
    assert!(rejection(&json("run", &[], &[])).message.contains("empty"));
}

#[test]
fn run_keeps_heredocs() {
    let mut n = node("run", &[], &["<<EOF"]);
    n.heredocs.push(heredoc("EOF", "echo hi\n"));
    let run = run(&n);
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].content, "echo hi\n");
}

#[test]
fn run_mounts() {
    let run = run(&node(
        "run",
        &[
            "--mount=type=cache,target=/c",
            "--mount=type=secret,id=s",
            "--mount=type=cache,target=/d,uid=$UID",
        ],
        &["true"],
    ));
    assert_eq!(run.mounts.len(), 3);
    let first = run.mounts[0].literal().unwrap();
    assert_eq!(first.kind, MountType::Cache);
    let second = run.mounts[1].literal().unwrap();
    assert_eq!(second.target.as_deref(), Some("/run/secrets/s"));
    assert_eq!(
        run.mounts[2],
        Expandable::Unexpanded("type=cache,target=/d,uid=$UID".into())
    );
}

#[test]
fn run_mount_errors_name_value() {
    let problem = rejection(&node(
        "run",
        &["--mount=type=cache,target=/c,sharing=sometimes"],
        &["true"],
    ));
    assert!(
        problem.message.contains("`sometimes`"),
        "{}",
        problem.message
    );
    assert!(
        problem.message.contains("RUN --mount"),
        "{}",
        problem.message
    );
    assert_eq!(
        problem.needle.as_deref(),
        Some("--mount=type=cache,target=/c,sharing=sometimes")
    );
    assert!(problem.hint.is_some());
}

#[test]
fn run_network() {
    assert_eq!(
        run(&node("run", &["--network=none"], &["x"])).network,
        Some(Expandable::Literal(Network::None))
    );
    assert_eq!(
        run(&node("run", &["--network=host"], &["x"])).network,
        Some(Expandable::Literal(Network::Host))
    );
    assert_eq!(
        run(&node("run", &["--network=default"], &["x"])).network,
        Some(Expandable::Literal(Network::Default))
    );
    assert_eq!(
        run(&node("run", &["--network=$NET"], &["x"])).network,
        Some(Expandable::Unexpanded("$NET".into()))
    );
    assert_eq!(run(&node("run", &[], &["x"])).network, None);
    let problem = rejection(&node("run", &["--network=hots"], &["x"]));
    assert!(problem.message.contains("`hots`"), "{}", problem.message);
    assert_eq!(problem.hint.as_deref(), Some("did you mean host?"));
}

#[test]
fn run_security() {
    assert_eq!(
        run(&node("run", &["--security=insecure"], &["x"])).security,
        Some(Expandable::Literal(Security::Insecure))
    );
    assert_eq!(
        run(&node("run", &["--security=sandbox"], &["x"])).security,
        Some(Expandable::Literal(Security::Sandbox))
    );
    let problem = rejection(&node("run", &["--security=root"], &["x"]));
    assert!(problem.message.contains("`root`"), "{}", problem.message);
    assert!(
        problem
            .hint
            .is_some_and(|h| h.contains("sandbox, insecure"))
    );
}

#[test]
fn run_unknown_flag() {
    let problem = rejection(&node("run", &["--mout=type=bind"], &["x"]));
    assert!(problem.message.contains("`--mout`"), "{}", problem.message);
    assert!(problem.message.contains("RUN"), "{}", problem.message);
    assert_eq!(problem.hint.as_deref(), Some("did you mean --mount?"));
}

// CMD, ENTRYPOINT, SHELL

#[test]
fn cmd_forms() {
    assert_eq!(
        kind(&node("cmd", &[], &["nginx -g x"])),
        InstructionKind::Cmd(CommandLine::Shell("nginx -g x".into()))
    );
    assert_eq!(
        kind(&json("cmd", &[], &[])),
        InstructionKind::Cmd(CommandLine::Exec(Vec::new()))
    );
    let problem = rejection(&node("cmd", &[], &[]));
    assert!(problem.hint.is_some_and(|h| h.contains("CMD []")));
}

#[test]
fn entrypoint_forms() {
    assert_eq!(
        kind(&json("entrypoint", &[], &["/bin/app", "--x"])),
        InstructionKind::Entrypoint(CommandLine::Exec(vec!["/bin/app".into(), "--x".into()]))
    );
    assert_eq!(
        kind(&json("entrypoint", &[], &[])),
        InstructionKind::Entrypoint(CommandLine::Exec(Vec::new()))
    );
    assert!(
        rejection(&node("entrypoint", &["--x"], &["a"]))
            .message
            .contains("ENTRYPOINT")
    );
}

#[test]
fn shell_requires_json() {
    assert_eq!(
        kind(&json("shell", &[], &["/bin/bash", "-c"])),
        InstructionKind::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    let problem = rejection(&node("shell", &[], &["/bin/bash -c"]));
    assert!(problem.message.contains("JSON"), "{}", problem.message);
    assert!(problem.hint.is_some());
    assert!(problem_of_empty_shell().message.contains("at least one"));
}

fn problem_of_empty_shell() -> Problem {
    rejection(&json("shell", &[], &[]))
}

// ENV, LABEL, ARG

#[test]
fn env_pairs_unquoted() {
    let InstructionKind::Env(pairs) = kind(&node(
        "env",
        &[],
        &["A", "\"x y\"", "=", "B", "$HOME/bin", "="],
    )) else {
        panic!("not ENV");
    };
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].key, "A");
    assert_eq!(pairs[0].value.value, "x y");
    assert_eq!(pairs[0].value.raw, "\"x y\"");
    assert!(!pairs[0].value.has_variables);
    assert!(pairs[1].value.has_variables);
}

#[test]
fn env_legacy_form_warns() {
    let file = dockerfile(&[
        node("from", &[], &["a"]),
        node("env", &[], &["PATH", "/x y", ""]),
    ])
    .unwrap();
    assert!(
        file.warnings
            .iter()
            .any(|w| w.message.contains("ENV key=value"))
    );
}

#[test]
fn env_rejects_bad_arguments() {
    assert!(
        rejection(&node("env", &[], &[]))
            .message
            .contains("at least one")
    );
    assert!(
        rejection(&node("env", &[], &["", "v", "="]))
            .message
            .contains("blank")
    );
    assert!(
        rejection(&node("env", &[], &["A", "v"]))
            .message
            .contains("pairs")
    );
    assert!(
        rejection(&node("env", &[], &["A", "\"open", "="]))
            .message
            .contains("\"open")
    );
}

#[test]
fn label_quoted_keys() {
    let InstructionKind::Label(pairs) = kind(&node(
        "label",
        &[],
        &["\"com.example.vendor\"", "'ACME Inc'", "="],
    )) else {
        panic!("not LABEL");
    };
    assert_eq!(pairs[0].key, "com.example.vendor");
    assert_eq!(pairs[0].value.value, "ACME Inc");
}

#[test]
fn arg_several_definitions() {
    let InstructionKind::Arg(arg) = kind(&node("arg", &[], &["A", "B=1", "C=\"x y\"", "D="]))
    else {
        panic!("not ARG");
    };
    let names: Vec<&str> = arg.args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
    assert_eq!(arg.args[0].default, None);
    assert_eq!(
        arg.args[1].default.as_ref().map(|w| w.value.as_str()),
        Some("1")
    );
    assert_eq!(
        arg.args[2].default.as_ref().map(|w| w.value.as_str()),
        Some("x y")
    );
    assert_eq!(
        arg.args[3].default.as_ref().map(|w| w.value.as_str()),
        Some("")
    );
}

#[test]
fn arg_rejects_blank_name() {
    let problem = rejection(&node("arg", &[], &["=x"]));
    assert!(problem.message.contains("blank"), "{}", problem.message);
    assert!(
        rejection(&node("arg", &[], &[]))
            .message
            .contains("at least one")
    );
}

// COPY and ADD

#[test]
fn copy_sources_and_flags() {
    let copy = copy(&node(
        "copy",
        &[
            "--from=build",
            "--chown=app:app",
            "--chmod=0755",
            "--link",
            "--parents=true",
            "--exclude=*.md",
            "--exclude=tmp",
        ],
        &["a", "b", "/dst/"],
    ));
    assert_eq!(
        copy.sources,
        [Source::Path("a".into()), Source::Path("b".into())]
    );
    assert_eq!(copy.destination, "/dst/");
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("app:app"));
    assert_eq!(
        copy.chmod,
        Some(Expandable::Literal(FileMode::Octal(0o755)))
    );
    assert!(copy.link);
    assert!(copy.parents);
    assert_eq!(copy.exclude, ["*.md", "tmp"]);
}

#[test]
fn copy_defaults() {
    let copy = copy(&node("copy", &["--link=false"], &["a", "b"]));
    assert_eq!(copy.from, None);
    assert!(!copy.link);
    assert!(!copy.parents);
    assert!(copy.exclude.is_empty());
}

#[test]
fn copy_variables_stay() {
    let copy = copy(&node(
        "copy",
        &["--from=$STAGE", "--chmod=$MODE", "--chown=${U}"],
        &["a", "b"],
    ));
    assert_eq!(copy.from.as_deref(), Some("$STAGE"));
    assert_eq!(copy.chmod, Some(Expandable::Unexpanded("$MODE".into())));
    assert_eq!(copy.chown.as_deref(), Some("${U}"));
}

#[test]
fn copy_rejects_bad_flags() {
    let problem = rejection(&node("copy", &["--chmod=999"], &["a", "b"]));
    assert!(problem.message.contains("`999`"), "{}", problem.message);
    assert!(
        rejection(&node("copy", &["--from="], &["a", "b"]))
            .message
            .contains("--from")
    );
    assert!(
        rejection(&node("copy", &["--chown="], &["a", "b"]))
            .message
            .contains("--chown")
    );
    let problem = rejection(&node("copy", &["--checksum=sha256:00"], &["a", "b"]));
    assert!(
        problem.message.contains("`--checksum`"),
        "{}",
        problem.message
    );
    assert!(
        rejection(&node("copy", &["--link=yes"], &["a", "b"]))
            .message
            .contains("`yes`")
    );
}

#[test]
fn copy_needs_destination() {
    let problem = rejection(&node("copy", &[], &["a"]));
    assert!(
        problem.message.contains("at least two arguments"),
        "{}",
        problem.message
    );
    assert!(problem.hint.is_some());
}

#[test]
fn copy_heredoc_sources() {
    let mut n = node("copy", &[], &["<<EOF", "<<-\"CONF\"", "plain", "/dst/"]);
    n.heredocs = vec![heredoc("EOF", "one\n"), heredoc("CONF", "two\n")];
    let copy = copy(&n);
    assert_eq!(copy.sources.len(), 3);
    assert_eq!(copy.sources[0], Source::Heredoc(heredoc("EOF", "one\n")));
    assert_eq!(copy.sources[1], Source::Heredoc(heredoc("CONF", "two\n")));
    assert_eq!(copy.sources[2], Source::Path("plain".into()));
}

#[test]
fn copy_heredoc_destination_is_error() {
    let mut n = node("copy", &[], &["a", "<<EOF"]);
    n.heredocs = vec![heredoc("EOF", "x\n")];
    let problem = rejection(&n);
    assert!(
        problem.message.contains("destination"),
        "{}",
        problem.message
    );
}

#[test]
fn copy_json_keeps_heredoc_words_as_paths() {
    let copy = copy(&json("copy", &[], &["<<EOF", "/dst"]));
    assert_eq!(copy.sources, [Source::Path("<<EOF".into())]);
}

#[test]
fn add_flags() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let add = add(&node(
        "add",
        &[
            &format!("--checksum={digest}"),
            "--keep-git-dir",
            "--unpack=false",
            "--chmod=u+x",
            "--exclude=x",
        ],
        &["https://example.com/a.tgz", "/a"],
    ));
    assert_eq!(add.checksum.as_deref(), Some(digest.as_str()));
    assert!(add.keep_git_dir);
    assert_eq!(add.unpack, Some(false));
    assert_eq!(
        add.chmod,
        Some(Expandable::Literal(FileMode::Symbolic("u+x".into())))
    );
    assert_eq!(add.exclude, ["x"]);
    assert!(!add.link);
}

#[test]
fn add_defaults() {
    let add = add(&node("add", &[], &["a", "b"]));
    assert_eq!(add.unpack, None);
    assert_eq!(add.checksum, None);
    assert!(!add.keep_git_dir);
}

#[test]
fn add_rejects_bad_checksum() {
    let problem = rejection(&node("add", &["--checksum=md5:00"], &["a", "b"]));
    assert!(problem.message.contains("md5"), "{}", problem.message);
    let digest = format!("--checksum=sha256:{}", "a".repeat(64));
    assert!(
        rejection(&node("add", &[&digest], &["a", "b", "c"]))
            .message
            .contains("one source")
    );
    assert!(type_node(&node("add", &["--checksum=$SUM"], &["a", "b"]), '\\').is_ok());
    assert!(
        rejection(&node("add", &["--from=x"], &["a", "b"]))
            .message
            .contains("`--from`")
    );
}

// Other instructions

#[test]
fn expose_ports() {
    let InstructionKind::Expose(ports) = kind(&node("expose", &[], &["80", "53/udp", "$PORT"]))
    else {
        panic!("not EXPOSE");
    };
    assert_eq!(
        ports[0],
        Expandable::Literal(PortRange {
            start: 80,
            end: 80,
            protocol: Protocol::Tcp
        })
    );
    assert_eq!(
        ports[1],
        Expandable::Literal(PortRange {
            start: 53,
            end: 53,
            protocol: Protocol::Udp
        })
    );
    assert_eq!(ports[2], Expandable::Unexpanded("$PORT".into()));
    let problem = rejection(&node("expose", &[], &["80/xyz"]));
    assert!(problem.message.contains("`xyz`"), "{}", problem.message);
    assert!(
        rejection(&node("expose", &[], &[]))
            .message
            .contains("at least one")
    );
}

#[test]
fn user_and_group() {
    assert_eq!(
        kind(&node("user", &[], &["app:staff"])),
        InstructionKind::User(User {
            user: "app".into(),
            group: Some("staff".into())
        })
    );
    assert_eq!(
        kind(&node("user", &[], &["1000"])),
        InstructionKind::User(User {
            user: "1000".into(),
            group: None
        })
    );
    assert!(
        rejection(&node("user", &[], &[":x"]))
            .message
            .contains("`:x`")
    );
    assert!(
        rejection(&node("user", &[], &[]))
            .message
            .contains("exactly one")
    );
}

#[test]
fn workdir_and_maintainer() {
    assert_eq!(
        kind(&node("workdir", &[], &["/app"])),
        InstructionKind::Workdir("/app".into())
    );
    assert!(
        rejection(&node("workdir", &[], &[]))
            .message
            .contains("exactly one")
    );
    assert_eq!(
        kind(&node("maintainer", &[], &["me <me@x>"])),
        InstructionKind::Maintainer("me <me@x>".into())
    );
    let file = dockerfile(&[node("from", &[], &["a"]), node("maintainer", &[], &["me"])]).unwrap();
    assert!(
        file.warnings
            .iter()
            .any(|w| w.message.contains("deprecated"))
    );
}

#[test]
fn volume_paths() {
    assert_eq!(
        kind(&json("volume", &[], &["/a", " /b "])),
        InstructionKind::Volume(vec!["/a".into(), "/b".into()])
    );
    assert!(
        rejection(&json("volume", &[], &[" "]))
            .message
            .contains("empty")
    );
    assert!(
        rejection(&node("volume", &[], &[]))
            .message
            .contains("at least one")
    );
}

#[test]
fn stopsignal_values() {
    assert_eq!(
        kind(&node("stopsignal", &[], &["SIGTERM"])),
        InstructionKind::Stopsignal("SIGTERM".into())
    );
    assert_eq!(
        kind(&node("stopsignal", &[], &["9"])),
        InstructionKind::Stopsignal("9".into())
    );
    assert_eq!(
        kind(&node("stopsignal", &[], &["$SIG"])),
        InstructionKind::Stopsignal("$SIG".into())
    );
    assert!(
        rejection(&node("stopsignal", &[], &["SIGNOPE"]))
            .message
            .contains("`SIGNOPE`")
    );
}

#[test]
fn healthcheck_none() {
    assert_eq!(
        kind(&node("healthcheck", &[], &["NONE"])),
        InstructionKind::Healthcheck(Healthcheck::None)
    );
    assert!(
        rejection(&node("healthcheck", &[], &["NONE", "x"]))
            .message
            .contains("no arguments")
    );
    assert!(
        rejection(&node("healthcheck", &["--interval=1s"], &["none"]))
            .message
            .contains("--interval")
    );
}

#[test]
fn healthcheck_cmd_flags() {
    let check = healthcheck(&node(
        "healthcheck",
        &[
            "--interval=1m30s",
            "--timeout=500ms",
            "--start-period=0s",
            "--start-interval=2s",
            "--retries=5",
        ],
        &["CMD", "curl -f localhost"],
    ));
    assert_eq!(
        check.command,
        CommandLine::Shell("curl -f localhost".into())
    );
    assert_eq!(check.interval_ns, Some(90_000_000_000));
    assert_eq!(check.timeout_ns, Some(500_000_000));
    assert_eq!(check.start_period_ns, None);
    assert_eq!(check.start_interval_ns, Some(2_000_000_000));
    assert_eq!(check.retries, Some(5));
}

#[test]
fn healthcheck_exec_form() {
    let check = healthcheck(&json("healthcheck", &[], &["cmd", "/bin/check", "-q"]));
    assert_eq!(
        check.command,
        CommandLine::Exec(vec!["/bin/check".into(), "-q".into()])
    );
    assert_eq!(check.retries, None);
}

#[test]
fn healthcheck_rejects_bad_values() {
    let short = rejection(&node("healthcheck", &["--interval=500us"], &["CMD", "x"]));
    assert!(short.message.contains("1ms"), "{}", short.message);
    assert!(short.message.contains("500us"), "{}", short.message);
    let negative = rejection(&node("healthcheck", &["--timeout=-5s"], &["CMD", "x"]));
    assert!(negative.message.contains("-5s"), "{}", negative.message);
    let unit = rejection(&node("healthcheck", &["--interval=30"], &["CMD", "x"]));
    assert!(unit.message.contains("missing unit"), "{}", unit.message);
    let retries = rejection(&node("healthcheck", &["--retries=-1"], &["CMD", "x"]));
    assert!(retries.message.contains("negative"), "{}", retries.message);
    let retries = rejection(&node("healthcheck", &["--retries=many"], &["CMD", "x"]));
    assert!(retries.message.contains("`many`"), "{}", retries.message);
    let kind = rejection(&node("healthcheck", &[], &["RUN", "x"]));
    assert!(kind.message.contains("`RUN`"), "{}", kind.message);
    assert!(
        rejection(&node("healthcheck", &[], &["CMD"]))
            .message
            .contains("requires a command")
    );
    assert!(
        rejection(&node("healthcheck", &[], &[]))
            .message
            .contains("at least one")
    );
    let flag = rejection(&node("healthcheck", &["--intervall=1s"], &["CMD", "x"]));
    assert_eq!(flag.hint.as_deref(), Some("did you mean --interval?"));
}

#[test]
fn repeated_cmd_warns() {
    let file = dockerfile(&[
        at(node("from", &[], &["a"]), 1),
        at(node("cmd", &[], &["a"]), 2),
        at(node("cmd", &[], &["b"]), 3),
    ])
    .unwrap();
    let warning = file.warnings.iter().find(|w| w.line == 3).unwrap();
    assert!(warning.message.contains("line 2"), "{}", warning.message);
}

// ONBUILD

fn onbuild(inner: Node) -> Node {
    let mut outer = node("onbuild", &[], &[]);
    outer.original = format!("ONBUILD {}", inner.original);
    outer.inner = Some(Box::new(inner));
    outer
}

#[test]
fn onbuild_types_trigger() {
    let file = dockerfile(&[
        node("from", &[], &["a"]),
        onbuild(node("run", &["--network=none"], &["make"])),
    ])
    .unwrap();
    let InstructionKind::Onbuild(trigger) = &file.stages[0].instructions[0].kind else {
        panic!("not ONBUILD");
    };
    let InstructionKind::Run(run) = &trigger.kind else {
        panic!("trigger is not RUN");
    };
    assert_eq!(run.command, CommandLine::Shell("make".into()));
    assert_eq!(run.network, Some(Expandable::Literal(Network::None)));
    assert_eq!(trigger.original, "RUN --network=none make");
}

#[test]
fn onbuild_rejects_triggers() {
    for (inner, text) in [
        (node("onbuild", &[], &[]), "ONBUILD ONBUILD"),
        (node("from", &[], &["a"]), "FROM isn't allowed"),
        (node("maintainer", &[], &["me"]), "MAINTAINER isn't allowed"),
    ] {
        let error = dockerfile(&[node("from", &[], &["a"]), onbuild(inner)]).unwrap_err();
        assert!(error.message.contains(text), "{}", error.message);
    }
}

#[test]
fn onbuild_trigger_errors_propagate() {
    let error = dockerfile(&[
        node("from", &[], &["a"]),
        onbuild(node("copy", &["--form=x"], &["a", "b"])),
    ])
    .unwrap_err();
    assert!(error.message.contains("--form"), "{}", error.message);
    let mut empty = node("onbuild", &[], &[]);
    empty.inner = None;
    let error = dockerfile(&[node("from", &[], &["a"]), empty]).unwrap_err();
    assert!(
        error.message.contains("requires an instruction"),
        "{}",
        error.message
    );
}

// No flags where none are accepted

#[test]
fn flags_rejected_where_not_accepted() {
    for keyword in [
        "env",
        "label",
        "expose",
        "volume",
        "user",
        "workdir",
        "arg",
        "stopsignal",
        "maintainer",
        "cmd",
    ] {
        let args: &[&str] = if matches!(keyword, "env" | "label") {
            &["a", "b", "="]
        } else {
            &["x"]
        };
        let problem = rejection(&node(keyword, &["--x=1"], args));
        assert!(
            problem.message.contains(&keyword.to_ascii_uppercase()),
            "{}",
            problem.message
        );
        assert!(problem.message.contains("--x"), "{}", problem.message);
    }
}

#[test]
fn serializes_to_json() {
    let file = dockerfile(&[
        node("from", &[], &["a"]),
        node("run", &["--mount=type=tmpfs,target=/t"], &["x"]),
    ])
    .unwrap();
    let text = serde_json::to_string(&file).unwrap();
    assert!(text.contains("\"instruction\":\"run\""), "{text}");
    assert!(text.contains("\"type\":\"tmpfs\""), "{text}");
}
