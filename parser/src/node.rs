//! The syntax tree that the first parsing stage produces: one [`Node`] per
//! instruction, with its flags and arguments split but not yet typed.
//!
//! The node form printed by [`Node::render`] is the one-line form that
//! BuildKit's parser tests use, for example
//! `(copy ["--from=build"] "/app" "/usr/bin/")`.

use serde::Serialize;

/// The lines an instruction occupies, 1-based and inclusive.
///
/// Continuation lines count; comment and blank lines before the instruction
/// do not. Heredoc bodies belong to the instruction that opens them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First line of the instruction.
    pub start: usize,
    /// Last line of the instruction.
    pub end: usize,
}

/// A here-document attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// Delimiter word, without quotes or the `<<`/`<<-` prefix.
    pub name: String,
    /// Body text up to (not including) the delimiter line. It ends with a
    /// newline unless the body is empty.
    pub content: String,
    /// Whether variables in the body are expanded (`false` when the
    /// delimiter was quoted).
    pub expand: bool,
    /// Whether leading tabs were stripped from each body line (`<<-`).
    pub chomp: bool,
}

/// One instruction as written, before its arguments are typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Keyword in lower case, such as `run` or `copy`.
    pub keyword: String,
    /// Flags before the arguments (`--from=build`), with shell quotes and
    /// escapes removed as BuildKit does. A lone `--` that ends the flags is
    /// not kept.
    pub flags: Vec<String>,
    /// Arguments, split by the rule of the keyword: exec-form elements,
    /// whitespace-separated words, one rest-of-line string, or
    /// key/value/separator triples for ENV and LABEL.
    pub args: Vec<String>,
    /// Whether the arguments came from a JSON array (exec form).
    pub json: bool,
    /// Here-documents opened on the instruction line, in order.
    pub heredocs: Vec<Heredoc>,
    /// For ONBUILD: the instruction it wraps.
    pub inner: Option<Box<Node>>,
    /// The logical line as written, continuations joined, without heredoc
    /// bodies.
    pub original: String,
    /// Lines the instruction occupies.
    pub span: Span,
    /// Comment lines since the previous instruction, without the `#`. Blank
    /// lines do not reset them; an empty `#` line does.
    pub comments: Vec<String>,
}

impl Node {
    /// Renders the node in the one-line form used by the parser conformance
    /// data: `(keyword ["flag" ...] "arg" ...)`, with Go string quoting.
    pub fn render(&self) -> String {
        let mut out = String::from("(");
        out.push_str(&self.keyword);
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&go_quote(flag));
            }
            out.push(']');
        }
        if let Some(inner) = &self.inner {
            out.push(' ');
            out.push_str(&inner.render());
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.push(')');
        out
    }
}

/// Quotes `text` as Go's `strconv.Quote` does.
///
/// Go keeps every character that `unicode.IsPrint` accepts. The standard
/// library of Rust has no Unicode category table, so this treats control
/// characters, whitespace other than the ASCII space and the common
/// zero-width format characters as not printable.
// NOTE: other format (Cf) and unassigned code points are kept as they are,
// where Go would escape them.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        c,
        '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
        Node {
            keyword: keyword.to_string(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            json: false,
            heredocs: Vec::new(),
            inner: None,
            original: String::new(),
            span: Span { start: 1, end: 1 },
            comments: Vec::new(),
        }
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("plain"), r#""plain""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            go_quote("\n\t\r\u{7}\u{8}\u{c}\u{b}"),
            r#""\n\t\r\a\b\f\v""#
        );
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("\u{a0}\u{feff}"), r#""\u00a0\ufeff""#);
        assert_eq!(go_quote("한국어 é"), "\"한국어 é\"");
    }

    #[test]
    fn render_flags_and_args() {
        let n = node("copy", &["--from=build"], &["/app", "/usr/bin/"]);
        assert_eq!(n.render(), r#"(copy ["--from=build"] "/app" "/usr/bin/")"#);
    }

    #[test]
    fn render_without_args() {
        assert_eq!(node("cmd", &[], &[]).render(), "(cmd)");
    }

    #[test]
    fn render_onbuild_nests_inner() {
        let mut outer = node("onbuild", &[], &[]);
        outer.inner = Some(Box::new(node("run", &[], &["echo", "test"])));
        assert_eq!(outer.render(), r#"(onbuild (run "echo" "test"))"#);
    }
}
