//! "Did you mean" suggestions by edit distance.

/// Returns the edit distance between `a` and `b`: insertions, deletions,
/// substitutions and swaps of two adjacent characters each count one
/// (optimal string alignment). Characters are compared without regard to
/// ASCII case.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();

    // `rows[i][j]` is the distance between the first `i` characters of `a`
    // and the first `j` characters of `b`.
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Returns the candidate nearest to `value`, if it is close enough to be a
/// likely typo: at most one edit for words of up to four characters, two
/// for up to eight, three beyond that. Ties go to the earlier candidate.
pub(crate) fn nearest<'a>(value: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let length = value.chars().count();
    let limit = match length {
        0 => return None,
        1..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(&'a str, usize)> = None;
    for &candidate in candidates {
        let distance = edit_distance(value, candidate);
        if distance > limit {
            continue;
        }
        if best.is_none_or(|(_, d)| distance < d) {
            best = Some((candidate, distance));
        }
    }
    best.map(|(candidate, _)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("copy", "copy"), 0);
        assert_eq!(edit_distance("coppy", "copy"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn distance_counts_swap_as_one() {
        assert_eq!(edit_distance("form", "from"), 1);
        assert_eq!(edit_distance("hots", "host"), 1);
    }

    #[test]
    fn distance_ignores_ascii_case() {
        assert_eq!(edit_distance("COPPY", "copy"), 1);
    }

    #[test]
    fn distance_counts_characters_not_bytes() {
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn nearest_finds_typo() {
        assert_eq!(nearest("coppy", &["run", "copy", "cmd"]), Some("copy"));
        assert_eq!(
            nearest("entrypont", &["entrypoint", "env"]),
            Some("entrypoint")
        );
    }

    #[test]
    fn nearest_rejects_far_words() {
        assert_eq!(nearest("banana", &["run", "copy"]), None);
        assert_eq!(nearest("", &["run"]), None);
    }

    #[test]
    fn nearest_prefers_smaller_distance() {
        assert_eq!(nearest("chmon", &["chmod", "chown"]), Some("chmod"));
        assert_eq!(nearest("chowm", &["chmod", "chown"]), Some("chown"));
    }
}
