//! `--chmod` values: octal or symbolic modes, applied without a umask.

/// Bits each class of `ugo` may change, with its special bit.
const USER_MASK: u32 = 0o4700;
const GROUP_MASK: u32 = 0o2070;
const OTHER_MASK: u32 = 0o1007;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModeSpec {
    /// Permission bits that replace the source's.
    Octal(u32),
    /// `chmod`-style clauses applied to the source's mode in order.
    Symbolic(Vec<Clause>),
}

/// One comma-separated part of a symbolic mode, such as `go-w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Union of the class masks named before the operators.
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    operator: char,
    permissions: Permissions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Permissions {
    /// Letters from `rwxXst`.
    Letters(String),
    /// The current bits of the class `u`, `g` or `o`.
    CopyOf(char),
}

impl ModeSpec {
    /// Parses an octal mode (up to `7777`) or a symbolic mode such as
    /// `u+x,g-w` or `a=rX`.
    pub(crate) fn parse(text: &str) -> Result<ModeSpec, String> {
        if !text.is_empty() && text.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(ModeSpec::Octal(mode)),
                _ => Err("octal modes go up to 7777".to_string()),
            };
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            clauses.push(parse_clause(part)?);
        }
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// Returns `mode` (permission and special bits) after this change.
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            ModeSpec::Octal(octal) => return *octal,
            ModeSpec::Symbolic(clauses) => clauses,
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for action in &clause.actions {
                let bits = action.permissions.bits(mode, is_dir) & clause.who;
                match action.operator {
                    '+' => mode |= bits,
                    '-' => mode &= !bits,
                    _ => mode = (mode & !clause.who) | bits,
                }
            }
        }
        mode
    }
}

impl Permissions {
    /// Returns the bits named, for all classes, given the current `mode`.
    fn bits(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Permissions::CopyOf(class) => {
                let shift = match class {
                    'u' => 6,
                    'g' => 3,
                    _ => 0,
                };
                ((mode >> shift) & 0o7) * 0o111
            }
            Permissions::Letters(letters) => letters.chars().fold(0, |bits, letter| {
                bits | match letter {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => 0,
                }
            }),
        }
    }
}

fn parse_clause(part: &str) -> Result<Clause, String> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    while let Some(&letter) = chars.peek() {
        who |= match letter {
            'u' => USER_MASK,
            'g' => GROUP_MASK,
            'o' => OTHER_MASK,
            'a' => USER_MASK | GROUP_MASK | OTHER_MASK,
            _ => break,
        };
        chars.next();
    }
    // Without a class, the change applies to all of them. `chmod` would
    // mask it with the umask, but COPY uses none.
    if who == 0 {
        who = USER_MASK | GROUP_MASK | OTHER_MASK;
    }

    let mut actions = Vec::new();
    while let Some(operator) = chars.next() {
        if !matches!(operator, '+' | '-' | '=') {
            return Err(format!(
                "unexpected `{operator}` in `{part}`: expected +, - or = after the classes u, g, o or a"
            ));
        }
        let mut letters = String::new();
        let mut copy_of = None;
        while let Some(&letter) = chars.peek() {
            match letter {
                'r' | 'w' | 'x' | 'X' | 's' | 't' if copy_of.is_none() => letters.push(letter),
                'u' | 'g' | 'o' if letters.is_empty() && copy_of.is_none() => {
                    copy_of = Some(letter)
                }
                '+' | '-' | '=' => break,
                _ => {
                    return Err(format!(
                        "unexpected `{letter}` in `{part}`: permissions are letters from rwxXst or one of u, g, o"
                    ));
                }
            }
            chars.next();
        }
        let permissions = match copy_of {
            Some(class) => Permissions::CopyOf(class),
            None => Permissions::Letters(letters),
        };
        actions.push(Action {
            operator,
            permissions,
        });
    }
    if actions.is_empty() {
        return Err(format!(
            "`{part}` has no operator: write it as in u+x or go-w"
        ));
    }
    Ok(Clause { who, actions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolic_table() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("755", 0o600, false, 0o755),
            ("u+x", 0o644, false, 0o744),
            ("go-w", 0o666, false, 0o644),
            ("a=rX", 0o640, true, 0o555),
            ("a=rX", 0o640, false, 0o444),
            ("a=rX", 0o700, false, 0o555),
            ("+x", 0o644, false, 0o755),
            ("u=rw,g=r,o=", 0o777, false, 0o640),
            ("g=u", 0o750, false, 0o770),
            ("u+s", 0o755, false, 0o4755),
            ("o+t", 0o777, true, 0o1777),
            ("u+rw-x", 0o711, false, 0o611),
        ];
        for (text, before, is_dir, expected) in cases {
            let spec = ModeSpec::parse(text).unwrap();
            assert_eq!(
                spec.apply(*before, *is_dir),
                *expected,
                "{text} on {before:o}"
            );
        }
    }

    #[test]
    fn invalid_modes_rejected() {
        for text in ["", "u", "z+x", "u+q", "10000", "u+x,"] {
            assert!(ModeSpec::parse(text).is_err(), "{text}");
        }
    }
}
