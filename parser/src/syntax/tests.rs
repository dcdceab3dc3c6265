use super::*;

fn tree(text: &str) -> SyntaxTree {
    match parse(text) {
        Ok(tree) => tree,
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}

fn parse_error(text: &str) -> ParseError {
    match parse(text) {
        Ok(tree) => panic!("{text:?} should fail, got {:?}", tree.nodes),
        Err(error) => error,
    }
}

fn rendered(text: &str) -> Vec<String> {
    tree(text).nodes.iter().map(Node::render).collect()
}

fn spans(text: &str) -> Vec<(usize, usize)> {
    tree(text)
        .nodes
        .iter()
        .map(|node| (node.span.start, node.span.end))
        .collect()
}

#[test]
fn directives_are_read() {
    let parsed = tree("# syntax=docker/dockerfile:1\n# escape=`\n# check=error=true\nFROM a\n");
    assert_eq!(
        parsed.directives.syntax.as_deref(),
        Some("docker/dockerfile:1")
    );
    assert_eq!(parsed.directives.escape, '`');
    assert_eq!(parsed.directives.check.as_deref(), Some("error=true"));
}

#[test]
fn directives_default_without_any() {
    assert_eq!(tree("FROM a").directives, Directives::default());
}

#[test]
fn directive_with_indent_and_case() {
    let parsed = tree("  #  ESCAPE = `\nFROM a `\n  b\n");
    assert_eq!(parsed.directives.escape, '`');
    assert_eq!(
        rendered("  #  ESCAPE = `\nFROM a `\n  b\n"),
        vec![r#"(from "a" "b")"#]
    );
}

#[test]
fn directive_after_comment_is_a_comment() {
    let parsed = tree("# hello\n# escape=`\nFROM a\n");
    assert_eq!(parsed.directives.escape, '\\');
    assert_eq!(parsed.nodes[0].comments, vec!["hello", "escape=`"]);
}

#[test]
fn directive_after_blank_line_is_a_comment() {
    let parsed = tree("\n# escape=`\nFROM a\n");
    assert_eq!(parsed.directives.escape, '\\');
}

#[test]
fn directive_after_instruction_is_a_comment() {
    let parsed = tree("FROM a\n# syntax=b\nRUN c\n");
    assert_eq!(parsed.directives.syntax, None);
    assert_eq!(parsed.nodes[1].comments, vec!["syntax=b"]);
}

#[test]
fn directive_twice_is_an_error() {
    let error = parse_error("# escape=\\\n# escape=`\nFROM a\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.column, 1);
    assert!(error.message.contains("escape"), "{}", error.message);
}

#[test]
fn invalid_escape_is_an_error() {
    let error = parse_error("# escape=!\nFROM a\n");
    assert_eq!(error.line, 1);
    assert_eq!(error.column, 10);
    assert!(error.message.contains("`!`"), "{}", error.message);
}

#[test]
fn directives_are_not_comments_of_the_first_node() {
    let parsed = tree("# syntax=a\n# about FROM\nFROM a\n");
    assert_eq!(parsed.nodes[0].comments, vec!["about FROM"]);
}

#[test]
fn bom_is_dropped() {
    let parsed = tree("\u{feff}# escape=`\nFROM a\n");
    assert_eq!(parsed.directives.escape, '`');
    assert_eq!(rendered("\u{feff}FROM a"), vec![r#"(from "a")"#]);
}

#[test]
fn keywords_in_any_case() {
    assert_eq!(
        rendered("from a\nRuN b\nCMD c"),
        vec![r#"(from "a")"#, r#"(run "b")"#, r#"(cmd "c")"#]
    );
}

#[test]
fn crlf_line_ends() {
    let text = "FROM a\r\nRUN b \\\r\n  c\r\nENV k v\r\n";
    assert_eq!(
        rendered(text),
        vec![r#"(from "a")"#, r#"(run "b   c")"#, r#"(env "k" "v" "")"#]
    );
    assert_eq!(spans(text), vec![(1, 1), (2, 3), (4, 4)]);
}

#[test]
fn continuation_joins_lines() {
    assert_eq!(
        rendered("RUN a \\\n  b \\\n\tc"),
        vec!["(run \"a   b \\tc\")"]
    );
}

#[test]
fn continuation_allows_trailing_whitespace() {
    assert_eq!(rendered("RUN a \\ \t\nb"), vec![r#"(run "a b")"#]);
}

#[test]
fn escaped_escape_does_not_continue() {
    assert_eq!(
        rendered("RUN a \\\\\nCMD b"),
        vec![r#"(run "a \\\\")"#, r#"(cmd "b")"#]
    );
}

#[test]
fn backtick_continuation() {
    let text = "# escape=`\nRUN a `\n  b\nENV p C:\\x\n";
    assert_eq!(
        rendered(text),
        vec![r#"(run "a   b")"#, r#"(env "p" "C:\\x" "")"#]
    );
}

#[test]
fn backslash_does_not_continue_with_backtick_escape() {
    assert_eq!(
        rendered("# escape=`\nRUN a \\\nCMD b"),
        vec![r#"(run "a \\")"#, r#"(cmd "b")"#]
    );
}

#[test]
fn comments_and_blanks_inside_continuation_are_dropped() {
    let text = "RUN a \\\n# inside\n   # indented\n\n  \nb\nCMD c";
    assert_eq!(rendered(text), vec![r#"(run "a b")"#, r#"(cmd "c")"#]);
    assert_eq!(spans(text), vec![(1, 6), (7, 7)]);
}

#[test]
fn empty_continuation_line_warns() {
    let parsed = tree("FROM a\nRUN a \\\n\nb\n");
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(parsed.warnings[0].line, 3);
    assert!(
        parsed.warnings[0].message.contains("RUN a b"),
        "{}",
        parsed.warnings[0].message
    );
}

#[test]
fn comment_inside_continuation_does_not_warn() {
    assert!(tree("RUN a \\\n# c\nb\n").warnings.is_empty());
}

#[test]
fn escape_at_end_of_file_ends_the_instruction() {
    let text = "FROM a\nRUN b \\";
    assert_eq!(rendered(text), vec![r#"(from "a")"#, r#"(run "b")"#]);
    assert_eq!(spans(text), vec![(1, 1), (2, 2)]);
    assert_eq!(
        rendered("FROM a\nRUN b \\\n\n"),
        vec![r#"(from "a")"#, r#"(run "b")"#]
    );
}

#[test]
fn lone_escape_line_starts_a_continuation() {
    assert_eq!(rendered("\\\nRUN a"), vec![r#"(run "a")"#]);
}

#[test]
fn escapes_joining_only_blank_text_give_no_node() {
    assert_eq!(rendered("FROM a\n\\\n \\\n"), vec![r#"(from "a")"#]);
    assert!(parse("\\\n  \\").is_err());
}

#[test]
fn leading_whitespace_of_the_first_line_is_dropped() {
    let parsed = tree("   RUN a\n");
    assert_eq!(parsed.nodes[0].original, "RUN a");
}

#[test]
fn original_is_the_joined_line() {
    let parsed = tree("RUN a \\\n  b\n");
    assert_eq!(parsed.nodes[0].original, "RUN a   b");
}

#[test]
fn comments_above_instruction_are_kept() {
    let parsed = tree("FROM a\n# one\n\n#   two  \nRUN b\nRUN c\n");
    assert_eq!(parsed.nodes[1].comments, vec!["one", "two"]);
    assert!(parsed.nodes[2].comments.is_empty());
}

#[test]
fn empty_comment_clears_comments() {
    let parsed = tree("# one\n#\n# two\nFROM a\n");
    assert_eq!(parsed.nodes[0].comments, vec!["two"]);
}

#[test]
fn spans_and_document_span() {
    let text = "# c\n\nFROM a\n\nRUN b \\\n  c\n\n";
    let parsed = tree(text);
    assert_eq!(spans(text), vec![(3, 3), (5, 6)]);
    assert_eq!(parsed.span, Span { start: 3, end: 6 });
}

#[test]
fn empty_file_is_an_error() {
    let error = parse_error("");
    assert_eq!(error.line, 1);
    assert_eq!(error.column, 1);
    assert!(
        error.message.contains("no instructions"),
        "{}",
        error.message
    );
    assert!(error.hint.is_some());
}

#[test]
fn comments_only_is_an_error() {
    let error = parse_error("# a\n\n# b\n\n");
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("no instructions"),
        "{}",
        error.message
    );
}

#[test]
fn error_position_on_a_continuation_line() {
    let error = parse_error("FROM a\nENV a=b \\\n  c=d \\\n    e\n");
    assert_eq!(error.line, 4);
    assert_eq!(error.column, 5);
    let error = parse_error("FROM a\nCMD \\\n  [\"x\", 1]\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.column, 9);
}

#[test]
fn error_column_counts_indent_and_characters() {
    let error = parse_error("  ENV é=1 x\n");
    assert_eq!(error.line, 1);
    assert_eq!(error.column, 11);
    assert!(error.message.contains("`x`"), "{}", error.message);
}

#[test]
fn env_without_value_error_position() {
    let error = parse_error("FROM busybox\n\nENV PATH\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.column, 5);
}

#[test]
fn onbuild_nests_the_instruction() {
    let parsed = tree("ONBUILD RUN echo test\n");
    let node = &parsed.nodes[0];
    assert_eq!(node.render(), r#"(onbuild (run "echo test"))"#);
    let inner = node.inner.as_deref().expect("inner node");
    assert_eq!(inner.span, node.span);
}

#[test]
fn onbuild_errors_point_at_the_trigger() {
    let error = parse_error("FROM a\nONBUILD  FROM b\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.column, 10);
}

#[test]
fn heredoc_body_follows_the_line() {
    let text = "FROM a\nRUN <<EOF\necho hi\n  echo there\nEOF\nCMD x\n";
    let parsed = tree(text);
    let run = &parsed.nodes[1];
    assert_eq!(run.args, vec!["<<EOF"]);
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.heredocs[0].content, "echo hi\n  echo there\n");
    assert!(run.heredocs[0].expand);
    assert!(!run.heredocs[0].chomp);
    assert_eq!(run.original, "RUN <<EOF");
    assert_eq!(spans(text), vec![(1, 1), (2, 5), (6, 6)]);
}

#[test]
fn heredoc_empty_body() {
    let parsed = tree("RUN <<EOF\nEOF");
    assert_eq!(parsed.nodes[0].heredocs[0].content, "");
    assert_eq!(parsed.span, Span { start: 1, end: 2 });
}

#[test]
fn heredoc_body_is_not_parsed() {
    let parsed = tree("RUN <<EOF\n# not a comment\nFROM x \\\nEOF\n");
    assert_eq!(parsed.nodes.len(), 1);
    assert_eq!(
        parsed.nodes[0].heredocs[0].content,
        "# not a comment\nFROM x \\\n"
    );
}

#[test]
fn heredoc_chomp_strips_leading_tabs() {
    let parsed = tree("RUN <<-EOF\n\techo a\n\t\t  echo b\n\tEOF\n");
    let heredoc = &parsed.nodes[0].heredocs[0];
    assert!(heredoc.chomp);
    assert_eq!(heredoc.content, "echo a\n  echo b\n");
}

#[test]
fn heredoc_without_chomp_keeps_tabs_and_needs_exact_delimiter() {
    let parsed = tree("RUN <<EOF\n\ta\n\tEOF\nEOF\n");
    assert_eq!(parsed.nodes[0].heredocs[0].content, "\ta\n\tEOF\n");
}

#[test]
fn heredoc_quoted_delimiter_does_not_expand() {
    let parsed = tree("RUN <<'EOF'\n$HOME\nEOF\nRUN <<\"END\"\nx\nEND\n");
    assert!(!parsed.nodes[0].heredocs[0].expand);
    assert_eq!(parsed.nodes[0].heredocs[0].name, "EOF");
    assert!(!parsed.nodes[1].heredocs[0].expand);
    assert_eq!(parsed.nodes[1].heredocs[0].name, "END");
}

#[test]
fn several_heredocs_on_one_line() {
    let text = "COPY <<FILE1 <<FILE2 /dest/\ncontent 1\nFILE1\ncontent 2\nFILE2\nRUN x\n";
    let parsed = tree(text);
    let copy = &parsed.nodes[0];
    assert_eq!(copy.args, vec!["<<FILE1", "<<FILE2", "/dest/"]);
    let names: Vec<&str> = copy.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, vec!["FILE1", "FILE2"]);
    assert_eq!(copy.heredocs[0].content, "content 1\n");
    assert_eq!(copy.heredocs[1].content, "content 2\n");
    assert_eq!(spans(text), vec![(1, 5), (6, 6)]);
}

#[test]
fn crossed_heredoc_delimiters_read_in_order() {
    let parsed = tree("COPY <<X <<Y /dest\nY\nX\nX\nY\n");
    assert_eq!(parsed.nodes[0].heredocs[0].content, "Y\n");
    assert_eq!(parsed.nodes[0].heredocs[1].content, "X\n");
}

#[test]
fn heredoc_after_continuation() {
    let text = "RUN --mount=type=cache,target=/x \\\n  <<EOF\nls\nEOF\n";
    let parsed = tree(text);
    assert_eq!(parsed.nodes[0].flags, vec!["--mount=type=cache,target=/x"]);
    assert_eq!(parsed.nodes[0].heredocs[0].content, "ls\n");
    assert_eq!(spans(text), vec![(1, 4)]);
}

#[test]
fn heredoc_keeps_crlf_in_body() {
    let parsed = tree("RUN <<EOF\r\necho a\r\nEOF\r\nCMD b\r\n");
    assert_eq!(parsed.nodes[0].heredocs[0].content, "echo a\r\n");
    assert_eq!(parsed.nodes[1].args, vec!["b"]);
}

#[test]
fn heredoc_in_exec_form_is_not_a_heredoc() {
    let parsed = tree("RUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\nCMD x\n");
    assert_eq!(parsed.nodes.len(), 3);
    assert!(parsed.nodes.iter().all(|node| node.heredocs.is_empty()));
}

#[test]
fn heredoc_in_quotes_is_not_a_heredoc() {
    let parsed = tree("RUN echo \"<<EOF\"\nRUN echo '<<EOF'\nCMD x\n");
    assert_eq!(parsed.nodes.len(), 3);
    assert!(parsed.nodes.iter().all(|node| node.heredocs.is_empty()));
}

#[test]
fn heredoc_only_for_run_copy_and_add() {
    let parsed = tree("USER <<INVALID\nINVALID\nADD <<A /a\nx\nA\n");
    assert_eq!(
        rendered("USER <<INVALID\nINVALID\n"),
        vec![r#"(user "<<INVALID")"#, "(invalid)"]
    );
    assert!(parsed.nodes[0].heredocs.is_empty());
    assert_eq!(parsed.nodes[2].heredocs[0].content, "x\n");
}

#[test]
fn heredoc_in_onbuild() {
    let parsed = tree("ONBUILD RUN <<EOF\necho a\nEOF\nFROM b\n");
    let node = &parsed.nodes[0];
    assert_eq!(node.heredocs.len(), 1);
    assert_eq!(node.span, Span { start: 1, end: 3 });
    let inner = node.inner.as_deref().expect("inner node");
    assert_eq!(inner.heredocs, node.heredocs);
}

#[test]
fn not_heredoc_openers() {
    let parsed = tree("RUN cat << EOF\nRUN cat <<<EOF\nRUN echo a<<b\n");
    assert_eq!(parsed.nodes.len(), 3);
    assert!(parsed.nodes.iter().all(|node| node.heredocs.is_empty()));
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let error = parse_error("FROM a\nRUN  cat <<EOF\necho hi\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.column, 10);
    assert!(error.message.contains("`EOF`"), "{}", error.message);
    assert!(error.message.contains("line 2"), "{}", error.message);
    assert!(error.hint.is_some());
}

#[test]
fn unterminated_second_heredoc_names_it() {
    let error = parse_error("COPY <<A <<B /\nA\nb\n");
    assert_eq!(error.line, 1);
    assert_eq!(error.column, 10);
    assert!(error.message.contains("`B`"), "{}", error.message);
}

#[test]
fn invalid_heredoc_delimiter_is_an_error() {
    let error = parse_error("RUN cat <<${X:-a b}\n");
    assert_eq!(error.line, 1);
    assert!(error.message.contains("<<${X:-a"), "{}", error.message);
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "\u{feff}",
        "\\",
        "`",
        "#",
        "# escape=",
        "# escape=\u{a0}",
        "RUN [",
        "RUN [\"\\ud800\"]",
        "CMD [\"a\", [[[[[[[[",
        "ENV \"",
        "ENV a=\"",
        "LABEL '",
        "ARG \\",
        "HEALTHCHECK \u{a0}",
        "ONBUILD",
        "ONBUILD ONBUILD",
        "ONBUILD RUN <<",
        "RUN <<",
        "RUN <<-",
        "RUN 9999999999999999999999<<EOF\nEOF",
        "RUN <<\"\n",
        "COPY --\"",
        "COPY --a\\",
        "COPY --'a\\",
        "RUN ${",
        "RUN <<${",
        "RUN <<$",
        "RUN <<é\né",
        "\r\r\r\n\r",
        "RUN a \\\r",
        "\u{0}\u{1}\u{7f}",
    ];
    for sample in samples {
        let _ = parse(sample);
        for (index, _) in sample.char_indices() {
            if let Some(prefix) = sample.get(..index) {
                let _ = parse(prefix);
            }
        }
    }
}
