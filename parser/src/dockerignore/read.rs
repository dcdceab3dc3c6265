//! Reads the lines of a `.dockerignore` file into patterns, as `docker
//! build` reads them.

/// Yields each pattern of `.dockerignore` text with its 1-based line number.
///
/// A UTF-8 byte order mark at the start of the text is dropped. A line
/// whose first character is `#` is a comment. Every other line is trimmed
/// of whitespace, and a leading `!` is split off and the whitespace after
/// it trimmed. The rest is path-cleaned (see [`clean`]) and loses a leading
/// `/` unless it is only `/`. Lines that end up empty yield nothing, but a
/// lone `!` is kept for the matcher to reject.
pub(super) fn numbered_patterns(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| read_line(line).map(|pattern| (index + 1, pattern)))
}

fn read_line(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let line = line.trim();
    if line.is_empty() {
        return None;
    }

    let (exception, path) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, line),
    };
    let mut pattern = String::with_capacity(line.len());
    if exception {
        pattern.push('!');
    }
    if !path.is_empty() {
        let cleaned = clean(path);
        let relative = match cleaned.strip_prefix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => cleaned.as_str(),
        };
        pattern.push_str(relative);
    }
    Some(pattern)
}

/// Returns the shortest path that names the same file as `path`, by
/// lexical rules only, as Go's `path.Clean` does.
///
/// Runs of `/` become one and `.` elements go. A `..` removes the element
/// before it, and at the root it goes away. A trailing `/` goes, and an
/// empty result is `.`.
pub(super) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut elements: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => match elements.last() {
                Some(&last) if last != ".." => {
                    elements.pop();
                }
                _ if rooted => {}
                _ => elements.push(".."),
            },
            _ => elements.push(element),
        }
    }

    let joined = elements.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(usize, String)> {
        numbered_patterns(text).collect()
    }

    #[test]
    fn clean_collapses_slashes_and_dots() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("a/b/../c"), "a/c");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn clean_keeps_leading_parent_elements() {
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("a/../../x"), "../x");
        assert_eq!(clean(".."), "..");
    }

    #[test]
    fn clean_drops_parent_elements_at_root() {
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("//a//"), "/a");
    }

    #[test]
    fn lines_keep_their_numbers() {
        let text = "# header\n\nfoo\n  bar/  \n";
        assert_eq!(
            read(text),
            vec![(3, "foo".to_owned()), (4, "bar".to_owned())]
        );
    }

    #[test]
    fn crlf_line_endings_are_read() {
        assert_eq!(
            read("a\r\n!b\r\n"),
            vec![(1, "a".to_owned()), (2, "!b".to_owned())]
        );
    }

    #[test]
    fn comment_needs_hash_in_first_column() {
        assert_eq!(read("#x"), Vec::new());
        assert_eq!(read("  #x"), vec![(1, "#x".to_owned())]);
    }

    #[test]
    fn byte_order_mark_dropped_first_line_only() {
        assert_eq!(read("\u{feff}#c"), Vec::new());
        assert_eq!(read("\u{feff}a"), vec![(1, "a".to_owned())]);
        assert_eq!(
            read("a\n\u{feff}b"),
            vec![(1, "a".to_owned()), (2, "\u{feff}b".to_owned())]
        );
    }

    #[test]
    fn exception_is_trimmed_and_cleaned() {
        assert_eq!(read("!  /a/./b/"), vec![(1, "!a/b".to_owned())]);
    }

    #[test]
    fn lone_exception_mark_is_kept() {
        assert_eq!(read("!"), vec![(1, "!".to_owned())]);
        assert_eq!(read("!   "), vec![(1, "!".to_owned())]);
    }

    #[test]
    fn lone_slash_is_kept() {
        assert_eq!(read("/"), vec![(1, "/".to_owned())]);
        assert_eq!(read("!/"), vec![(1, "!/".to_owned())]);
    }
}
