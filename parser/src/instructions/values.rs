//! Value types of instruction arguments and flags, and the checks that
//! type them: durations, sizes, file modes, ports, signals, checksums, and
//! words with their quotes removed.

use serde::Serialize;

/// A value that is typed now, or kept as written because it contains a
/// build variable that only the builder can expand.
///
/// The builder expands an [`Expandable::Unexpanded`] value and then types
/// it with the check the parser uses: `FileMode::parse`, `PortRange::parse`,
/// `Network::parse`, `Security::parse` or `Mount::parse_expanded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    /// The value, checked and typed.
    Literal(T),
    /// The text as written, with at least one `$` expansion in it.
    Unexpanded(String),
}

impl<T> Expandable<T> {
    /// Types `text` with `check` unless it contains a build variable, in
    /// which case it is kept as written.
    pub(crate) fn parse<E>(
        text: &str,
        check: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Self, E> {
        if has_variable(text) {
            return Ok(Expandable::Unexpanded(text.to_string()));
        }
        check(text).map(Expandable::Literal)
    }

    /// Returns the typed value, or `None` while it is unexpanded.
    pub fn literal(&self) -> Option<&T> {
        match self {
            Expandable::Literal(value) => Some(value),
            Expandable::Unexpanded(_) => None,
        }
    }
}

/// Reports whether `text` contains a `$` that can start a variable
/// expansion. A `$` as the last character is literal, as in BuildKit.
pub fn has_variable(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some() {
            return true;
        }
    }
    false
}

/// A shell word as written and with its quotes removed.
///
/// `value` is the final value when `has_variables` is false. When it is
/// true, the builder expands `raw` with the shell-word rules instead, which
/// also remove the quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// Text as written in the Dockerfile, quotes and escapes included.
    pub raw: String,
    /// Text with quotes and escape characters removed and no variable
    /// expanded.
    pub value: String,
    /// Whether `raw` contains a `$` expansion outside single quotes.
    pub has_variables: bool,
}

impl Word {
    /// Removes the quotes of `raw` as the shell-word rules do, with
    /// `escape` as the escape character (`\` or a backtick).
    ///
    /// # Errors
    ///
    /// Returns a message naming the quote character when a quote is not
    /// closed.
    pub fn parse(raw: &str, escape: char) -> Result<Word, String> {
        let mut value = String::with_capacity(raw.len());
        let mut has_variables = false;
        let mut chars = raw.chars().peekable();

        while let Some(c) = chars.next() {
            if c == escape {
                // An escape character escapes the next character, whatever
                // it is; at the end of the text it stays as written.
                match chars.next() {
                    Some(next) => value.push(next),
                    None => value.push(c),
                }
                continue;
            }
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => value.push(inner),
                        None => return Err(unterminated("'", raw)),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(inner) if inner == escape => match chars.peek() {
                            Some(&next) if next == '$' || next == '"' || next == escape => {
                                value.push(next);
                                chars.next();
                            }
                            _ => value.push(inner),
                        },
                        Some('$') => {
                            has_variables |= chars.peek().is_some_and(|&n| n != '"');
                            value.push('$');
                        }
                        Some(inner) => value.push(inner),
                        None => return Err(unterminated("\"", raw)),
                    }
                },
                '$' => {
                    has_variables |= chars.peek().is_some();
                    value.push('$');
                }
                _ => value.push(c),
            }
        }

        Ok(Word {
            raw: raw.to_string(),
            value,
            has_variables,
        })
    }
}

fn unterminated(quote: &str, raw: &str) -> String {
    format!("missing closing {quote} quote in `{raw}`")
}

/// Parses a Go duration such as `30s`, `1m30s`, `1.5h` or `500ms` into
/// nanoseconds. Units are `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`; a
/// bare `0` is zero. A leading `-` gives a negative duration.
///
/// # Errors
///
/// Returns a message naming the text when it is not a duration or when it
/// does not fit in 64 bits of nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: expected a number with a unit, such as 30s, 1m30s or 500ms"
        )
    };
    let (negative, body) = match (text.strip_prefix('-'), text.strip_prefix('+')) {
        (Some(body), _) => (true, body),
        (_, Some(body)) => (false, body),
        _ => (false, text),
    };
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err(invalid());
    }

    let mut total: i128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        // Number: digits, then an optional fraction.
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(tail) => {
                let len = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }

        // Unit: everything up to the next digit or dot.
        let unit_len = after
            .char_indices()
            .find(|&(_, c)| c.is_ascii_digit() || c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, tail) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit (ns, us, ms, s, m or h)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}`; use ns, us, ms, s, m or h"
                ));
            }
        };

        let mut part: i128 = 0;
        for digit in whole.bytes() {
            part = part * 10 + i128::from(digit - b'0');
            if part > i128::from(i64::MAX) {
                return Err(overflow(text));
            }
        }
        part *= scale;
        // The fraction is truncated to whole nanoseconds; digits past the
        // 19th cannot change the result and are skipped.
        let mut divisor: i128 = 1;
        let mut numerator: i128 = 0;
        for digit in fraction.bytes().take(19) {
            numerator = numerator * 10 + i128::from(digit - b'0');
            divisor *= 10;
        }
        part += numerator * scale / divisor;

        total += part;
        if total > i128::from(i64::MAX) + 1 {
            return Err(overflow(text));
        }
        rest = tail;
    }

    let signed = if negative { -total } else { total };
    i64::try_from(signed).map_err(|_| overflow(text))
}

fn overflow(text: &str) -> String {
    format!("invalid duration `{text}`: too long; the maximum is about 2562047h")
}

/// Formats a nanosecond count the way Go prints durations, for messages.
pub(crate) fn format_duration(nanos: i64) -> String {
    match nanos {
        n if n % 3_600_000_000_000 == 0 && n != 0 => format!("{}h", n / 3_600_000_000_000),
        n if n % 60_000_000_000 == 0 && n != 0 => format!("{}m", n / 60_000_000_000),
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// Parses a memory size such as `64m`, `1.5g`, `512k` or `1024` into
/// bytes. Suffixes `k`, `m`, `g`, `t` and `p` (any case, optionally
/// followed by `i` and/or `b`) are powers of 1024, as in Docker's
/// `RAMInBytes`.
///
/// # Errors
///
/// Returns a message naming the text when it is not a size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid size `{text}`: expected a number of bytes with an optional unit, such as 64m or 1g"
        )
    };
    let number_len = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_len);

    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(invalid());
    }

    // An optional space, a unit letter, then an optional `i` and `b`.
    let suffix = suffix
        .strip_prefix(' ')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let mut unit_chars = suffix.chars();
    let (multiplier, rest): (u64, &str) = match unit_chars.next() {
        None => (1, ""),
        Some('k') => (1 << 10, unit_chars.as_str()),
        Some('m') => (1 << 20, unit_chars.as_str()),
        Some('g') => (1 << 30, unit_chars.as_str()),
        Some('t') => (1 << 40, unit_chars.as_str()),
        Some('p') => (1 << 50, unit_chars.as_str()),
        Some(_) => (1, suffix.as_str()),
    };
    if !matches!(rest, "" | "i" | "b" | "ib") {
        return Err(invalid());
    }

    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(format!("invalid size `{text}`: too large"));
    }
    // Truncation to whole bytes is intended.
    Ok(bytes as u64)
}

/// A file mode for `--chmod`: octal such as `0755`, or symbolic such as
/// `u+x,go-w`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Permission bits given in octal, at most `0o7777`.
    Octal(u32),
    /// A symbolic mode as `chmod` takes it, kept as written.
    Symbolic(String),
}

impl FileMode {
    /// Parses an octal or symbolic file mode.
    ///
    /// # Errors
    ///
    /// Returns a message naming the text when it is neither.
    pub fn parse(text: &str) -> Result<FileMode, String> {
        if !text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(FileMode::Octal(mode)),
                _ => Err(format!(
                    "invalid file mode `{text}`: octal modes go up to 7777"
                )),
            };
        }
        if is_symbolic_mode(text) {
            return Ok(FileMode::Symbolic(text.to_string()));
        }
        Err(format!(
            "invalid file mode `{text}`: expected an octal mode such as 0755 or a symbolic mode such as u+x"
        ))
    }
}

/// Checks the `chmod` symbolic form: comma-separated clauses of optional
/// `ugoa` letters, then one or more operations `+`, `-` or `=` each followed
/// by `rwxXst` letters or one of `ugo`.
fn is_symbolic_mode(text: &str) -> bool {
    if text.is_empty() {
        return false;
    }
    text.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        if ops.is_empty() {
            return false;
        }
        let mut chars = ops.chars().peekable();
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return false;
            }
            if matches!(chars.peek(), Some('u' | 'g' | 'o')) {
                chars.next();
                continue;
            }
            while chars
                .next_if(|c| matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't'))
                .is_some()
            {}
        }
        true
    })
}

/// A transport protocol of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, the default.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Returns the protocol name in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A port or inclusive port range with its protocol, from `EXPOSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port; equal to `start` for a single port.
    pub end: u16,
    /// Protocol; `tcp` when none is written.
    pub protocol: Protocol,
}

impl PortRange {
    /// Parses `80`, `80/udp` or `8000-8010/tcp`.
    ///
    /// # Errors
    ///
    /// Returns a message naming the text when it is not a port, a range, or
    /// a known protocol.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let (ports, protocol) = match text.split_once('/') {
            Some((ports, protocol)) => (ports, protocol),
            None => (text, "tcp"),
        };
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => {
                return Err(format!(
                    "invalid protocol `{protocol}` in port `{text}`: use tcp, udp or sctp"
                ));
            }
        };
        if ports.contains(':') {
            return Err(format!(
                "invalid port `{text}`: EXPOSE takes only container ports; publish host ports when running the container"
            ));
        }
        let port = |part: &str| {
            part.parse::<u16>()
                .map_err(|_| format!("invalid port `{text}`: expected a number from 0 to 65535, or a range such as 8000-8010"))
        };
        let (start, end) = match ports.split_once('-') {
            Some((start, end)) => (port(start)?, port(end)?),
            None => {
                let single = port(ports)?;
                (single, single)
            }
        };
        if start > end {
            return Err(format!(
                "invalid port range `{text}`: the first port is above the last"
            ));
        }
        Ok(PortRange {
            start,
            end,
            protocol,
        })
    }
}

/// Linux signal names, without the `SIG` prefix.
const SIGNAL_NAMES: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN",
    "RTMAX",
];

/// Checks a stop signal: a name such as `SIGTERM` or `TERM` (any case),
/// `SIGRTMIN+3`, `SIGRTMAX-2`, or a number from 1 to 64.
///
/// # Errors
///
/// Returns a message naming the text when it is not a Linux signal.
pub fn check_signal(text: &str) -> Result<(), String> {
    let invalid = || {
        format!("invalid signal `{text}`: expected a name such as SIGTERM or a number from 1 to 64")
    };
    if let Ok(number) = text.parse::<u32>() {
        return if (1..=64).contains(&number) {
            Ok(())
        } else {
            Err(invalid())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNAL_NAMES.contains(&name) {
        return Ok(());
    }
    // Real-time signals: RTMIN+1 to RTMIN+15 and RTMAX-14 to RTMAX-1.
    let offset = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
    };
    let valid = match (offset("RTMIN+"), offset("RTMAX-")) {
        (Some(n), _) => (1..=15).contains(&n),
        (_, Some(n)) => (1..=14).contains(&n),
        _ => false,
    };
    if valid { Ok(()) } else { Err(invalid()) }
}

/// Checks an `ADD --checksum` value: a digest `sha256:<64 hex>`,
/// `sha384:<96 hex>` or `sha512:<128 hex>`, or a Git commit of 40 or 64 hex
/// characters for Git sources.
///
/// # Errors
///
/// Returns a message naming the text when it is neither.
pub fn check_checksum(text: &str) -> Result<(), String> {
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match text.split_once(':') {
        Some((algorithm, hex)) => {
            let expected = match algorithm {
                "sha256" => 64,
                "sha384" => 96,
                "sha512" => 128,
                _ => {
                    return Err(format!(
                        "invalid checksum `{text}`: unsupported algorithm `{algorithm}`; use sha256, sha384 or sha512"
                    ));
                }
            };
            if hex.len() == expected && is_hex(hex) {
                Ok(())
            } else {
                Err(format!(
                    "invalid checksum `{text}`: a {algorithm} digest has {expected} lower-case hex characters"
                ))
            }
        }
        None if (text.len() == 40 || text.len() == 64) && is_hex(text) => Ok(()),
        None => Err(format!(
            "invalid checksum `{text}`: expected a digest such as sha256:<64 hex characters> or a Git commit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_variable_finds_dollar() {
        assert!(has_variable("$A"));
        assert!(has_variable("a${B}c"));
        assert!(!has_variable("plain"));
        assert!(!has_variable("price$"));
    }

    #[test]
    fn expandable_keeps_variables() {
        let kept: Result<Expandable<u32>, String> =
            Expandable::parse("$UID", |_| Err("not called".into()));
        assert_eq!(kept, Ok(Expandable::Unexpanded("$UID".into())));
        let typed: Result<Expandable<u32>, String> =
            Expandable::parse("12", |t| t.parse().map_err(|_| String::new()));
        assert_eq!(typed, Ok(Expandable::Literal(12)));
        assert_eq!(typed.ok().and_then(|t| t.literal().copied()), Some(12));
    }

    #[test]
    fn word_removes_double_quotes() {
        let word = Word::parse("\"hello world\"", '\\').unwrap();
        assert_eq!(word.value, "hello world");
        assert_eq!(word.raw, "\"hello world\"");
        assert!(!word.has_variables);
    }

    #[test]
    fn word_keeps_single_quoted_dollar() {
        let word = Word::parse("'$HOME'", '\\').unwrap();
        assert_eq!(word.value, "$HOME");
        assert!(!word.has_variables);
    }

    #[test]
    fn word_sees_variables() {
        assert!(Word::parse("$HOME/bin", '\\').unwrap().has_variables);
        assert!(Word::parse("\"${A}\"", '\\').unwrap().has_variables);
        assert!(!Word::parse("\\$HOME", '\\').unwrap().has_variables);
        assert_eq!(Word::parse("\\$HOME", '\\').unwrap().value, "$HOME");
    }

    #[test]
    fn word_escapes_inside_double_quotes() {
        let word = Word::parse(r#""a\"b\\c\d""#, '\\').unwrap();
        assert_eq!(word.value, r#"a"b\c\d"#);
    }

    #[test]
    fn word_uses_backtick_escape() {
        let word = Word::parse("a`\"b", '`').unwrap();
        assert_eq!(word.value, "a\"b");
        let word = Word::parse("C:\\dir", '`').unwrap();
        assert_eq!(word.value, "C:\\dir");
    }

    #[test]
    fn word_rejects_open_quote() {
        let error = Word::parse("\"open", '\\').unwrap_err();
        assert!(error.contains("\"open"), "{error}");
        assert!(Word::parse("'open", '\\').is_err());
    }

    #[test]
    fn duration_parses_units() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("10us"), Ok(10_000));
        assert_eq!(parse_duration("10µs"), Ok(10_000));
        assert_eq!(parse_duration("7ns"), Ok(7));
        assert_eq!(parse_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-2s"), Ok(-2_000_000_000));
    }

    #[test]
    fn duration_rejects_bad_text() {
        for text in ["", "10", "s", "1x", "1.s.", "-", "1 s", "abc", "1h2"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(&format!("`{text}`")), "{text}: {error}");
        }
    }

    #[test]
    fn duration_rejects_overflow() {
        assert!(parse_duration("9999999999999h").is_err());
        assert!(parse_duration("2562047h").is_ok());
    }

    #[test]
    fn duration_formats_like_go() {
        assert_eq!(format_duration(1_000_000), "1ms");
        assert_eq!(format_duration(90_000_000_000), "90s");
        assert_eq!(format_duration(3_600_000_000_000), "1h");
    }

    #[test]
    fn size_parses_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("2 g"), Ok(2 << 30));
        assert_eq!(parse_size("10b"), Ok(10));
    }

    #[test]
    fn size_rejects_bad_text() {
        for text in ["", "m", "-1m", "1x", "1.2.3m", "1mm", "1.m"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn file_mode_parses_octal_and_symbolic() {
        assert_eq!(FileMode::parse("0755"), Ok(FileMode::Octal(0o755)));
        assert_eq!(FileMode::parse("644"), Ok(FileMode::Octal(0o644)));
        assert_eq!(
            FileMode::parse("u+x,go-w"),
            Ok(FileMode::Symbolic("u+x,go-w".into()))
        );
        assert_eq!(
            FileMode::parse("a=rX"),
            Ok(FileMode::Symbolic("a=rX".into()))
        );
    }

    #[test]
    fn file_mode_rejects_bad_text() {
        for text in ["", "0789", "17777", "rwx", "u+q", "u", "x+"] {
            let error = FileMode::parse(text).unwrap_err();
            assert!(error.contains(&format!("`{text}`")), "{text}: {error}");
        }
    }

    #[test]
    fn port_parses_forms() {
        assert_eq!(
            PortRange::parse("80"),
            Ok(PortRange {
                start: 80,
                end: 80,
                protocol: Protocol::Tcp
            })
        );
        assert_eq!(
            PortRange::parse("53/UDP"),
            Ok(PortRange {
                start: 53,
                end: 53,
                protocol: Protocol::Udp
            })
        );
        assert_eq!(
            PortRange::parse("8000-8010/sctp"),
            Ok(PortRange {
                start: 8000,
                end: 8010,
                protocol: Protocol::Sctp
            })
        );
    }

    #[test]
    fn port_rejects_bad_text() {
        assert!(PortRange::parse("80/icmp").unwrap_err().contains("icmp"));
        assert!(PortRange::parse("70000").unwrap_err().contains("70000"));
        assert!(PortRange::parse("90-80").unwrap_err().contains("90-80"));
        assert!(
            PortRange::parse("8080:80")
                .unwrap_err()
                .contains("host ports")
        );
        assert!(PortRange::parse("").is_err());
    }

    #[test]
    fn signal_accepts_names_and_numbers() {
        for text in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-2", "sigusr1"] {
            assert_eq!(check_signal(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn signal_rejects_unknown() {
        for text in ["SIGFOO", "0", "65", "RTMIN+16", ""] {
            let error = check_signal(text).unwrap_err();
            assert!(error.contains(&format!("`{text}`")), "{text}: {error}");
        }
    }

    #[test]
    fn checksum_accepts_digests() {
        let hex = "a".repeat(64);
        assert_eq!(check_checksum(&format!("sha256:{hex}")), Ok(()));
        assert_eq!(check_checksum(&"b".repeat(40)), Ok(()));
    }

    #[test]
    fn checksum_rejects_bad_text() {
        assert!(check_checksum("md5:abc").unwrap_err().contains("md5"));
        assert!(check_checksum("sha256:abc").unwrap_err().contains("64"));
        assert!(check_checksum("xyz").is_err());
    }
}
