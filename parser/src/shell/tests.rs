use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;

/// Builds the environment of the BuildKit expansion cases plus a few values
/// for the pattern operators.
fn sample_env() -> Vec<(String, String)> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("NULL", ""),
        ("SPACE", "  a  b "),
        ("PATH_VALUE", "/usr/local/bin/tool.tar.gz"),
        ("STARS", "xx**"),
        ("KOREAN", "한국어"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

fn word(text: &str) -> String {
    word_with(&Lexer::default(), text)
}

fn word_with(lexer: &Lexer, text: &str) -> String {
    match lexer.expand_word(text, &sample_env()) {
        Ok(word) => word,
        Err(error) => panic!("expanding {text:?} failed: {error}"),
    }
}

fn words(text: &str) -> Vec<String> {
    match Lexer::default().expand_words(text, &sample_env()) {
        Ok(words) => words,
        Err(error) => panic!("splitting {text:?} failed: {error}"),
    }
}

fn error(text: &str) -> ExpandError {
    error_with(&Lexer::default(), text)
}

fn error_with(lexer: &Lexer, text: &str) -> ExpandError {
    match lexer.expand_word(text, &sample_env()) {
        Ok(word) => panic!("expanding {text:?} succeeded with {word:?}, expected an error"),
        Err(error) => error,
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

#[test]
fn plain_variable_forms() {
    assert_eq!(word("$PWD"), "/home");
    assert_eq!(word("${PWD}"), "/home");
    assert_eq!(word("a${PWD}b"), "a/homeb");
    assert_eq!(word("$PWD.x"), "/home.x");
    assert_eq!(word("$UNSET"), "");
    assert_eq!(word("${UNSET}x"), "x");
    assert_eq!(word("$KOREAN!"), "한국어!");
}

#[test]
fn default_operators() {
    assert_eq!(word("${UNSET:-d}"), "d");
    assert_eq!(word("${NULL:-d}"), "d");
    assert_eq!(word("${PWD:-d}"), "/home");
    assert_eq!(word("${UNSET-d}"), "d");
    assert_eq!(word("${NULL-d}"), "");
    assert_eq!(word("${PWD-d}"), "/home");
}

#[test]
fn alternative_operators() {
    assert_eq!(word("${UNSET:+a}"), "");
    assert_eq!(word("${NULL:+a}"), "");
    assert_eq!(word("${PWD:+a}"), "a");
    assert_eq!(word("${UNSET+a}"), "");
    assert_eq!(word("${NULL+a}"), "a");
    assert_eq!(word("${PWD+a}"), "a");
}

#[test]
fn required_operators_pass() {
    assert_eq!(word("${PWD:?msg}"), "/home");
    assert_eq!(word("${PWD?msg}"), "/home");
    assert_eq!(word("${NULL?msg}"), "");
}

#[test]
fn required_operators_fail() {
    let unset = error("x${UNSET?}");
    assert_eq!(
        unset,
        ExpandError::Required {
            text: "x${UNSET?}".to_string(),
            position: 2,
            name: "UNSET".to_string(),
            message: "is not allowed to be unset".to_string(),
        }
    );
    assert!(
        unset
            .to_string()
            .starts_with("UNSET: is not allowed to be unset")
    );

    let empty = error("${NULL:?}");
    let ExpandError::Required { message, .. } = &empty else {
        panic!("expected a Required error, got {empty:?}");
    };
    assert_eq!(message, "is not allowed to be empty");

    let custom = error("${UNSET:?set it with $SHELL}");
    let ExpandError::Required { name, message, .. } = &custom else {
        panic!("expected a Required error, got {custom:?}");
    };
    assert_eq!(name, "UNSET");
    assert_eq!(message, "set it with bash");
}

#[test]
fn nested_operator_words() {
    assert_eq!(word("${UNSET:-${ALSO:-deep}}"), "deep");
    assert_eq!(word("${UNSET:-$PWD/x}"), "/home/x");
    assert_eq!(word("${PWD:+${PWD}:}"), "/home:");
    assert_eq!(word("${UNSET:-'a}b'}"), "a}b");
    assert_eq!(word("${UNSET:-\"$SHELL}\"}"), "bash}");
    assert_eq!(word("${UNSET:-\\}}"), "}");
}

#[test]
fn operator_word_expanded_even_unused() {
    let failure = error("${PWD:-${UNSET:?needed}}");
    assert!(
        matches!(failure, ExpandError::Required { ref name, .. } if name == "UNSET"),
        "got {failure:?}"
    );
}

#[test]
fn prefix_removal() {
    assert_eq!(word("${PATH_VALUE#*/}"), "usr/local/bin/tool.tar.gz");
    assert_eq!(word("${PATH_VALUE##*/}"), "tool.tar.gz");
    assert_eq!(word("${PATH_VALUE#/usr}"), "/local/bin/tool.tar.gz");
    assert_eq!(word("${PATH_VALUE#nomatch}"), "/usr/local/bin/tool.tar.gz");
    assert_eq!(word("${PWD#}"), "/home");
    assert_eq!(word("${UNSET#*}"), "");
}

#[test]
fn suffix_removal() {
    assert_eq!(word("${PATH_VALUE%.*}"), "/usr/local/bin/tool.tar");
    assert_eq!(word("${PATH_VALUE%%.*}"), "/usr/local/bin/tool");
    assert_eq!(word("${PATH_VALUE%/*}"), "/usr/local/bin");
    assert_eq!(word("${PATH_VALUE%%/*}"), "");
    assert_eq!(word("${PWD%}"), "/home");
}

#[test]
fn pattern_wildcards() {
    assert_eq!(word("${SHELL#?}"), "ash");
    assert_eq!(word("${SHELL#??}"), "sh");
    assert_eq!(word("${SHELL#[a-c]}"), "ash");
    assert_eq!(word("${SHELL#[!b]}"), "bash");
    assert_eq!(word("${SHELL%[a-z]}"), "bas");
    assert_eq!(word("${SHELL%%[a-z]*}"), "");
}

#[test]
fn pattern_escapes() {
    assert_eq!(word("${STARS%%\\**}"), "xx");
    assert_eq!(word("${STARS%\\*}"), "xx*");
    assert_eq!(word("${PATH_VALUE#\\/usr\\/}"), "local/bin/tool.tar.gz");
    assert!(matches!(
        error("${PWD#\\h}"),
        ExpandError::InvalidPattern {
            source: PatternError::InvalidEscape { character: 'h', .. },
            ..
        }
    ));
}

#[test]
fn pattern_from_variable() {
    let env = [("VALUE", "a.b.c"), ("DOT", ".*"), ("EMPTY", "")];
    let lexer = Lexer::default();
    assert_eq!(
        lexer.expand_word("${VALUE%$DOT}", &env),
        Ok("a.b".to_string())
    );
    assert_eq!(
        lexer.expand_word("${VALUE%%$DOT}", &env),
        Ok("a".to_string())
    );
    assert_eq!(
        lexer.expand_word("${VALUE#$EMPTY}", &env),
        Ok("a.b.c".to_string())
    );
}

#[test]
fn colon_pattern_operators_unsupported() {
    assert_eq!(
        error("${PWD:#x}"),
        ExpandError::UnsupportedModifier {
            text: "${PWD:#x}".to_string(),
            position: 6,
            modifier: ":#".to_string(),
        }
    );
    assert!(matches!(
        error("${PWD:%x}"),
        ExpandError::UnsupportedModifier { ref modifier, .. } if modifier == ":%"
    ));
}

#[test]
fn replace_first_and_all() {
    let env = [("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
    let lexer = Lexer::default();
    assert_eq!(
        lexer.expand_word("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", &env),
        Ok("/tmp/bar.txt - /bar.txt".to_string())
    );
    assert_eq!(
        lexer.expand_word("${FOO/tmp/x}", &env),
        Ok("/x/tmp/bar.txt".to_string())
    );
    assert_eq!(
        lexer.expand_word("${FOO//t?p/x}", &env),
        Ok("/x/x/bar.txt".to_string())
    );
    assert_eq!(lexer.expand_word("${FOO/*/x}", &env), Ok("x".to_string()));
    assert_eq!(
        lexer.expand_word("${FOO///}", &env),
        Ok("/tmp/tmp/bar.txt".to_string())
    );
}

#[test]
fn replace_keeps_escapes_in_replacement() {
    let env = [("FOO", "/tmp/foo.txt")];
    assert_eq!(
        Lexer::default().expand_word("${FOO//\\//\\/}", &env),
        Ok("\\/tmp\\/foo.txt".to_string())
    );
}

#[test]
fn replace_missing_slash() {
    assert_eq!(
        error("a${PWD//home}"),
        ExpandError::MissingSlash {
            text: "a${PWD//home}".to_string(),
            position: 2,
        }
    );
    assert!(matches!(
        error("${PWD//}"),
        ExpandError::MissingSlash { .. }
    ));
    assert!(matches!(
        error("${PWD/a/b"),
        ExpandError::MissingBrace { position: 1, .. }
    ));
}

#[test]
fn single_quotes_literal() {
    assert_eq!(word("'$PWD'"), "$PWD");
    assert_eq!(word("'a\\tb'"), "a\\tb");
    assert_eq!(word("'\"x\"'"), "\"x\"");
    assert_eq!(word("he'll'o"), "hello");
}

#[test]
fn double_quote_escapes() {
    assert_eq!(word("\"$PWD\""), "/home");
    assert_eq!(word("\"\\$PWD\""), "$PWD");
    assert_eq!(word("\"\\\"\""), "\"");
    assert_eq!(word("\"\\\\\""), "\\");
    assert_eq!(word("\"\\t\""), "\\t");
    assert_eq!(word("\"'\""), "'");
    assert_eq!(word("\"a\\\nb\""), "a\\\nb");
}

#[test]
fn unquoted_escapes() {
    assert_eq!(word("\\$PWD"), "$PWD");
    assert_eq!(word("a\\tb"), "atb");
    assert_eq!(word("\\'x"), "'x");
    assert_eq!(word("x\\"), "x");
    assert_eq!(word("x\\\\"), "x\\");
    assert_eq!(word("\\${}"), "${}");
}

#[test]
fn escaped_newline_kept() {
    assert_eq!(word("a\\\nb"), "a\nb");
    assert_eq!(words("a\\\nb c"), ["a\nb", "c"]);
}

#[test]
fn backtick_escape() {
    let lexer = Lexer::new('`');
    assert_eq!(lexer.escape(), '`');
    assert_eq!(word_with(&lexer, "C:\\dir\\$SHELL"), "C:\\dir\\bash");
    assert_eq!(word_with(&lexer, "`$SHELL"), "$SHELL");
    assert_eq!(word_with(&lexer, "\"a`\"b\""), "a\"b");
    assert_eq!(word_with(&lexer, "\"a``b\""), "a`b");
    assert_eq!(word_with(&lexer, "\"a\\b\""), "a\\b");
    assert_eq!(word_with(&lexer, "x`"), "x");
    assert_eq!(word_with(&lexer, "${STARS%%`**}"), "xx");
}

#[test]
fn dollar_without_name_literal() {
    assert_eq!(word("$"), "$");
    assert_eq!(word("a$"), "a$");
    assert_eq!(word("$."), "$.");
    assert_eq!(word("$ x"), "$ x");
    assert_eq!(word("\"$\""), "$");
    assert_eq!(word("$/"), "$/");
}

#[test]
fn positional_and_special_parameters_empty() {
    for text in [
        "$1", "${1}", "$10", "${001}", "$@", "$*", "$#", "$?", "$-", "$$", "$!", "$0",
    ] {
        assert_eq!(word(text), "", "{text}");
    }
    assert_eq!(word("$1x"), "x");
    assert_eq!(word("${1:-d}"), "d");
    assert_eq!(word("${@:+a}"), "");
    assert_eq!(word("${#:-d}"), "d");
    assert!(matches!(error("${1?}"), ExpandError::Required { ref name, .. } if name == "1"));
}

#[test]
fn positional_parameters_never_read() {
    let env = [("1", "one"), ("@", "all")];
    assert_eq!(
        Lexer::default().expand_word("$1${@}", &env),
        Ok(String::new())
    );
}

#[test]
fn unterminated_quotes_errors() {
    assert_eq!(
        error("ab'cd"),
        ExpandError::UnterminatedQuote {
            text: "ab'cd".to_string(),
            position: 3,
            quote: '\'',
        }
    );
    assert_eq!(
        error("한\"x"),
        ExpandError::UnterminatedQuote {
            text: "한\"x".to_string(),
            position: 2,
            quote: '"',
        }
    );
    assert!(matches!(
        error("\"a\\\""),
        ExpandError::UnterminatedQuote { position: 1, .. }
    ));
}

#[test]
fn unterminated_brace_errors() {
    assert_eq!(
        error("he${PWD"),
        ExpandError::MissingBrace {
            text: "he${PWD".to_string(),
            position: 3,
        }
    );
    assert!(matches!(
        error("${"),
        ExpandError::MissingBrace { position: 1, .. }
    ));
    assert!(matches!(
        error("${a:-bbb"),
        ExpandError::MissingBrace { position: 1, .. }
    ));
    assert!(matches!(
        error("${a:-'bbb}"),
        ExpandError::MissingBrace { position: 1, .. }
    ));
    assert!(matches!(
        error("x${a:-${b:-c}"),
        ExpandError::MissingBrace { position: 2, .. }
    ));
}

#[test]
fn bad_substitution_errors() {
    for text in ["${}", "${{a}", "${:}", "${:-a}"] {
        assert!(
            matches!(
                error(text),
                ExpandError::BadSubstitution { position: 1, .. }
            ),
            "{text}"
        );
    }
    assert_eq!(word("${aaa:-bbb}}"), "bbb}");
}

#[test]
fn unsupported_modifier_errors() {
    assert_eq!(
        error("a${PWD:=x}"),
        ExpandError::UnsupportedModifier {
            text: "a${PWD:=x}".to_string(),
            position: 7,
            modifier: ":=".to_string(),
        }
    );
    assert!(matches!(
        error("${PWD=x}"),
        ExpandError::UnsupportedModifier { ref modifier, position: 6, .. } if modifier == "="
    ));
    assert!(matches!(
        error("${.}"),
        ExpandError::UnsupportedModifier { ref modifier, .. } if modifier == "."
    ));
    assert!(matches!(
        error("${XXX:YYY}"),
        ExpandError::UnsupportedModifier { ref modifier, .. } if modifier == ":Y"
    ));
}

#[test]
fn error_accessors_and_message() {
    let failure = error("ok ${PWD");
    assert_eq!(failure.text(), "ok ${PWD");
    assert_eq!(failure.position(), 4);
    let message = failure.to_string();
    assert!(message.contains("position 4"), "{message}");
    assert!(message.contains("\"ok ${PWD\""), "{message}");
}

#[test]
fn words_split_on_whitespace() {
    assert_eq!(words("a b\tc"), ["a", "b", "c"]);
    assert_eq!(words("  a  "), ["a"]);
    assert_eq!(words("a\\ b"), ["a b"]);
    assert_eq!(words("a' 'b"), ["a b"]);
    assert!(words("").is_empty());
}

#[test]
fn words_split_unquoted_expansion() {
    assert_eq!(words("x${SPACE}y"), ["x", "a", "b", "y"]);
    assert_eq!(words("x\"${SPACE}\"y"), ["x  a  b y"]);
    assert_eq!(words("$SPACE"), ["a", "b"]);
    assert_eq!(words("${UNSET:-\"p q\"}"), ["p", "q"]);
}

#[test]
fn words_drop_empty_quotes() {
    assert!(words("\"\"").is_empty());
    assert_eq!(words("a \"\" b"), ["a", "b"]);
    assert_eq!(words("a\"\"b"), ["ab"]);
    assert!(words("$NULL").is_empty());
}

#[test]
fn words_report_errors() {
    let failure = Lexer::default().expand_words("a 'b", &sample_env());
    assert!(matches!(
        failure,
        Err(ExpandError::UnterminatedQuote { position: 3, .. })
    ));
}

#[test]
fn names_matched_and_unmatched() {
    let lexer = Lexer::default();
    let env = sample_env();
    let (value, read) = match lexer.expand_word_with_names("$PWD ${NOPE:-$SHELL} $1 $$", &env) {
        Ok(result) => result,
        Err(error) => panic!("expansion failed: {error}"),
    };
    assert_eq!(value, "/home bash  ");
    assert_eq!(read, names(&["NOPE", "PWD", "SHELL"]));

    let expansion = match lexer.expand("${PWD:+$OTHER}${NULL}", &env) {
        Ok(expansion) => expansion,
        Err(error) => panic!("expansion failed: {error}"),
    };
    assert_eq!(expansion.matched, names(&["NULL", "PWD"]));
    assert_eq!(expansion.unmatched, names(&["OTHER"]));
    assert_eq!(expansion.names(), names(&["NULL", "OTHER", "PWD"]));
}

#[test]
fn names_unused_operator_word_recorded() {
    let lexer = Lexer::default();
    let read = lexer.expand_word_with_names("${PWD:-$UNUSED}", &sample_env());
    assert_eq!(read, Ok(("/home".to_string(), names(&["PWD", "UNUSED"]))));
}

#[test]
fn names_skip_quoted_and_escaped() {
    let lexer = Lexer::default();
    let read = lexer.expand_word_with_names("'$A' \\$B \"$C\"", &sample_env());
    assert_eq!(read, Ok(("$A $B ".to_string(), names(&["C"]))));
}

#[test]
fn names_in_patterns_recorded() {
    let lexer = Lexer::default();
    let read = lexer.expand_word_with_names("${PWD#$P}${PWD/$Q/$R}", &sample_env());
    assert_eq!(
        read,
        Ok(("/home/home".to_string(), names(&["P", "PWD", "Q", "R"])))
    );
}

#[test]
fn environment_implementations() {
    let lexer = Lexer::default();

    let hash: HashMap<String, String> = HashMap::from([("A".to_string(), "h".to_string())]);
    assert_eq!(lexer.expand_word("$A", &hash), Ok("h".to_string()));

    let tree: BTreeMap<String, String> = BTreeMap::from([("A".to_string(), "t".to_string())]);
    assert_eq!(lexer.expand_word("$A", &tree), Ok("t".to_string()));

    let list = vec![
        ("A".to_string(), "first".to_string()),
        ("A".to_string(), "last".to_string()),
    ];
    assert_eq!(lexer.expand_word("$A", &list), Ok("last".to_string()));
    assert_eq!(
        lexer.expand_word("$A", &list.as_slice()),
        Ok("last".to_string())
    );
    assert_eq!(Environment::get(list.as_slice(), "B"), None);
}

#[test]
fn names_are_case_sensitive() {
    let env = [("path", "lower")];
    assert_eq!(
        Lexer::default().expand_word("$PATH$path", &env),
        Ok("lower".to_string())
    );
}

#[test]
fn raw_quotes_kept() {
    let lexer = Lexer::default().with_raw_quotes(true);
    assert_eq!(
        word_with(&lexer, "'a $PWD' \"$SHELL\""),
        "'a $PWD' \"bash\""
    );
}

#[test]
fn raw_escapes_kept() {
    let lexer = Lexer::default().with_raw_escapes(true);
    assert_eq!(word_with(&lexer, "a\\$PWD"), "a\\$PWD");
    assert_eq!(word_with(&lexer, "\"\\$x\""), "\\$x");
}

#[test]
fn skip_quotes_treats_quotes_literally() {
    let lexer = Lexer::default().with_skip_quotes(true);
    assert_eq!(word_with(&lexer, "'$SHELL' \"$PWD\""), "'bash' \"/home\"");
    assert_eq!(word_with(&lexer, "it's"), "it's");
}

#[test]
fn default_lexer_uses_backslash() {
    assert_eq!(Lexer::default(), Lexer::new('\\'));
    assert_eq!(Lexer::default().escape(), '\\');
}
