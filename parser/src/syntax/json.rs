//! The exec-form test: whether an instruction's arguments are a JSON array
//! of strings.
//!
//! BuildKit decodes the arguments with Go's `encoding/json` into a list of
//! arbitrary values: text that is not one complete JSON array is shell form,
//! and a complete array with an element that is not a string is an error.
//! This module follows Go's decoder. JSON whitespace is only space, tab, CR
//! and LF, and nothing but whitespace may follow the array. A lone UTF-16
//! surrogate in a `\u` escape decodes to U+FFFD. Nesting deeper than 10,000
//! levels is a syntax error.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while_m_n, take_while1};
use nom::character::complete::{char, digit0, digit1, one_of};
use nom::combinator::{map, map_opt, opt, recognize, value};
use nom::multi::fold_many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Nesting limit of Go's JSON decoder; deeper input is a syntax error there.
const MAX_DEPTH: usize = 10_000;

/// Result of reading an instruction's arguments as exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExecForm {
    /// Not a complete JSON array: the arguments are shell form.
    Shell,
    /// A JSON array whose elements are all strings, decoded.
    Strings(Vec<String>),
    /// A JSON array with an element that is not a string.
    NonString {
        /// Zero-based position of the first such element.
        index: usize,
        /// Byte offset of that element in the text given to
        /// [`parse_exec_form`].
        offset: usize,
        /// JSON type of the element, such as `number`.
        kind: &'static str,
        /// The element as written.
        text: String,
    },
}

/// Reads `text` as the exec form of an instruction.
///
/// Leading Unicode whitespace is skipped, as BuildKit does before it checks
/// for the opening `[`.
pub(super) fn parse_exec_form(text: &str) -> ExecForm {
    let input = text.trim_start();
    let Some(mut rest) = input.strip_prefix('[') else {
        return ExecForm::Shell;
    };

    let mut strings = Vec::new();
    let mut first_non_string: Option<(usize, usize, &'static str, String)> = None;
    let mut index = 0;
    rest = skip_whitespace(rest);
    if let Some(after) = rest.strip_prefix(']') {
        rest = after;
    } else {
        loop {
            rest = skip_whitespace(rest);
            let offset = text.len() - rest.len();
            if rest.starts_with('"') {
                let Ok((after, decoded)) = json_string(rest) else {
                    return ExecForm::Shell;
                };
                strings.push(decoded);
                rest = after;
            } else {
                let Some((after, kind)) = skip_value(rest, 1) else {
                    return ExecForm::Shell;
                };
                if first_non_string.is_none() {
                    let written = rest.get(..rest.len() - after.len()).unwrap_or_default();
                    first_non_string = Some((index, offset, kind, written.to_string()));
                }
                rest = after;
            }
            index += 1;

            rest = skip_whitespace(rest);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if let Some(after) = rest.strip_prefix(']') {
                rest = after;
                break;
            } else {
                return ExecForm::Shell;
            }
        }
    }

    if !skip_whitespace(rest).is_empty() {
        return ExecForm::Shell;
    }
    match first_non_string {
        Some((index, offset, kind, text)) => ExecForm::NonString {
            index,
            offset,
            kind,
            text,
        },
        None => ExecForm::Strings(strings),
    }
}

fn skip_whitespace(input: &str) -> &str {
    input.trim_start_matches([' ', '\t', '\n', '\r'])
}

/// Next token that the validator accepts inside nested arrays and objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ValueOrClose,
    Key,
    KeyOrClose,
    Colon,
    CommaOrClose,
}

/// Skips one JSON value of any type and returns the rest of the input and
/// the value's JSON type, or `None` when the input is not valid JSON.
///
/// Arrays and objects are checked with an explicit stack, so deep nesting
/// cannot overflow the call stack. `depth` is the nesting level of the value.
fn skip_value(input: &str, depth: usize) -> Option<(&str, &'static str)> {
    let kind = match input.chars().next()? {
        '[' => "array",
        '{' => "object",
        '"' => "string",
        't' | 'f' => "boolean",
        'n' => "null",
        _ => "number",
    };

    let mut stack: Vec<char> = Vec::new();
    let mut rest = input;
    let mut expect = Expect::Value;
    loop {
        rest = skip_whitespace(rest);
        let next = rest.chars().next()?;
        let mut closed_value = false;
        match expect {
            Expect::Value | Expect::ValueOrClose => {
                if expect == Expect::ValueOrClose && next == ']' {
                    stack.pop();
                    rest = rest.get(1..)?;
                    closed_value = true;
                } else if next == '[' || next == '{' {
                    if depth + stack.len() >= MAX_DEPTH {
                        return None;
                    }
                    stack.push(next);
                    rest = rest.get(1..)?;
                    expect = if next == '[' {
                        Expect::ValueOrClose
                    } else {
                        Expect::KeyOrClose
                    };
                } else if next == '"' {
                    rest = json_string(rest).ok()?.0;
                    closed_value = true;
                } else {
                    rest = scalar(rest).ok()?.0;
                    closed_value = true;
                }
            }
            Expect::Key | Expect::KeyOrClose => {
                if expect == Expect::KeyOrClose && next == '}' {
                    stack.pop();
                    rest = rest.get(1..)?;
                    closed_value = true;
                } else {
                    rest = json_string(rest).ok()?.0;
                    expect = Expect::Colon;
                }
            }
            Expect::Colon => {
                rest = rest.strip_prefix(':')?;
                expect = Expect::Value;
            }
            Expect::CommaOrClose => {
                let open = *stack.last()?;
                let close = if open == '[' { ']' } else { '}' };
                if next == ',' {
                    rest = rest.get(1..)?;
                    expect = if open == '[' {
                        Expect::Value
                    } else {
                        Expect::Key
                    };
                } else if next == close {
                    stack.pop();
                    rest = rest.get(1..)?;
                    closed_value = true;
                } else {
                    return None;
                }
            }
        }

        if closed_value {
            if stack.is_empty() {
                return Some((rest, kind));
            }
            expect = Expect::CommaOrClose;
        }
    }
}

/// Parses a number, `true`, `false` or `null`.
fn scalar(input: &str) -> IResult<&str, &str> {
    let integer = alt((tag("0"), recognize((one_of("123456789"), digit0))));
    let fraction = (char('.'), digit1);
    let exponent = (one_of("eE"), opt(one_of("+-")), digit1);
    let number = recognize((opt(char('-')), integer, opt(fraction), opt(exponent)));
    alt((tag("true"), tag("false"), tag("null"), number)).parse(input)
}

/// One decoded piece of a JSON string.
#[derive(Debug, Clone)]
enum Piece<'a> {
    Text(&'a str),
    Char(char),
}

/// Parses and decodes a JSON string literal.
fn json_string(input: &str) -> IResult<&str, String> {
    let plain = map(
        take_while1(|c: char| c != '"' && c != '\\' && c >= '\u{20}'),
        Piece::Text,
    );
    let escaped = map(preceded(char('\\'), escape), Piece::Char);
    let body = fold_many0(alt((plain, escaped)), String::new, |mut text, piece| {
        match piece {
            Piece::Text(part) => text.push_str(part),
            Piece::Char(c) => text.push(c),
        }
        text
    });
    let (rest, (_, decoded, _)) = (char('"'), body, char('"')).parse(input)?;
    Ok((rest, decoded))
}

/// Parses the part of an escape sequence after the backslash.
fn escape(input: &str) -> IResult<&str, char> {
    alt((
        value('"', char('"')),
        value('\\', char('\\')),
        value('/', char('/')),
        value('\u{8}', char('b')),
        value('\u{c}', char('f')),
        value('\n', char('n')),
        value('\r', char('r')),
        value('\t', char('t')),
        preceded(char('u'), unicode_escape),
    ))
    .parse(input)
}

/// Parses four hex digits, and for a high surrogate the `\uXXXX` low
/// surrogate that completes it. A surrogate without its partner decodes to U+FFFD, as in
/// Go.
fn unicode_escape(input: &str) -> IResult<&str, char> {
    let (rest, unit) = hex4(input)?;
    if (0xD800..0xDC00).contains(&unit) {
        if let Ok((after, low)) = preceded(tag("\\u"), hex4).parse(rest) {
            if (0xDC00..0xE000).contains(&low) {
                let combined = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Ok((after, char::from_u32(combined).unwrap_or('\u{fffd}')));
            }
        }
    }
    Ok((rest, char::from_u32(unit).unwrap_or('\u{fffd}')))
}

fn hex4(input: &str) -> IResult<&str, u32> {
    map_opt(
        take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()),
        |digits: &str| u32::from_str_radix(digits, 16).ok(),
    )
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(text: &str) -> Vec<String> {
        match parse_exec_form(text) {
            ExecForm::Strings(values) => values,
            other => panic!("{text:?} should be a string array, got {other:?}"),
        }
    }

    #[test]
    fn string_arrays_decode() {
        assert_eq!(strings("[]"), Vec::<String>::new());
        assert_eq!(strings(r#"[""]"#), vec![""]);
        assert_eq!(strings(r#"["a","b"]"#), vec!["a", "b"]);
        assert_eq!(strings("[ \"a\" ,\t\"b\" ]"), vec!["a", "b"]);
        assert_eq!(strings(" \t[\t\"a\"]\t "), vec!["a"]);
        assert_eq!(strings(r#"["♥", "☃"]"#), vec!["♥", "☃"]);
    }

    #[test]
    fn string_escapes_decode() {
        let decoded = strings(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u00e9"]"#);
        assert_eq!(decoded, vec!["\" \\ / \u{8} \u{c} \n \r \t \u{0} é"]);
    }

    #[test]
    fn surrogates_decode_like_go() {
        assert_eq!(strings(r#"["\ud83d\ude00"]"#), vec!["😀"]);
        assert_eq!(strings(r#"["\ud800"]"#), vec!["\u{fffd}"]);
        assert_eq!(strings(r#"["\ud800\u0041"]"#), vec!["\u{fffd}A"]);
        assert_eq!(strings(r#"["\udc00x"]"#), vec!["\u{fffd}x"]);
    }

    #[test]
    fn invalid_json_is_shell_form() {
        for text in [
            "echo hi",
            "['a']",
            r#"["a""#,
            r#"["a",]"#,
            r#"["a"] extra"#,
            r#"["a" "b"]"#,
            r#"["\x"]"#,
            "[\"tab\there\"]",
            "[\u{a0}\"a\"]",
            "[01]",
            "[-]",
            "[1.]",
            "[tru]",
            r#"["a", {"k" 1}]"#,
            r#"["a", {1: 2}]"#,
            "[[[",
            "",
        ] {
            assert_eq!(parse_exec_form(text), ExecForm::Shell, "{text:?}");
        }
    }

    #[test]
    fn non_string_elements_are_reported() {
        let cases = [
            (r#"["a",42,"b"]"#, 1, 5, "number", "42"),
            (r#"["a",123.456e-7,"b"]"#, 1, 5, "number", "123.456e-7"),
            (r#"["a",{},"b"]"#, 1, 5, "object", "{}"),
            (
                r#"["a",{"c": ["d"]},"b"]"#,
                1,
                5,
                "object",
                r#"{"c": ["d"]}"#,
            ),
            (r#"["a",["c"],"b"]"#, 1, 5, "array", r#"["c"]"#),
            (r#"[true]"#, 0, 1, "boolean", "true"),
            (r#"["a", false]"#, 1, 6, "boolean", "false"),
            (r#"["a",null,"b"]"#, 1, 5, "null", "null"),
            (r#"[-1, 2]"#, 0, 1, "number", "-1"),
        ];
        for (text, index, offset, kind, written) in cases {
            let expected = ExecForm::NonString {
                index,
                offset,
                kind,
                text: written.to_string(),
            };
            assert_eq!(parse_exec_form(text), expected, "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("[{}{}]", "[".repeat(50_000), "]".repeat(50_000));
        assert_eq!(parse_exec_form(&deep), ExecForm::Shell);
        let allowed = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            parse_exec_form(&allowed),
            ExecForm::NonString { kind: "array", .. }
        ));
    }
}
