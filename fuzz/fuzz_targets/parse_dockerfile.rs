//! Feeds arbitrary text to both parsing stages, the shell-word expander and
//! the `.dockerignore` reader. Any panic is a bug: the parser must return
//! an error for every input it cannot accept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tree) = forge_parser::syntax::parse(text) {
        for node in &tree.nodes {
            let _ = node.render();
        }
    }
    let _ = forge_parser::instructions::parse(text);

    let env: Vec<(String, String)> = vec![
        ("A".to_string(), "value with spaces".to_string()),
        ("EMPTY".to_string(), String::new()),
    ];
    for escape in ['\\', '`'] {
        let lexer = forge_parser::shell::Lexer::new(escape);
        let _ = lexer.expand_word(text, &env);
        let _ = lexer.expand_words(text, &env);
    }

    if let Ok(matcher) = forge_parser::dockerignore::Matcher::from_text(text) {
        let _ = matcher.is_excluded("a/b/c.txt");
        let _ = matcher.can_skip_dir("a");
    }
});
