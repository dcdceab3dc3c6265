//! Instruction flags (`--name`, `--name=value`): reading them against the
//! list an instruction accepts.

use super::Problem;
use super::suggest::nearest;

/// Value syntax of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name`, `--name=true` or `--name=false` (any case); at most once.
    Bool,
    /// `--name=value`; at most once.
    Text,
    /// `--name=value`, repeatable.
    Texts,
}

/// One flag as given on the instruction.
#[derive(Debug, Clone)]
pub(crate) struct UsedFlag {
    /// Flag name without the leading `--`.
    pub name: &'static str,
    /// Value after `=`, or `true`/`false` for a boolean flag.
    pub value: String,
    /// The flag as written, for locating it in the source.
    pub raw: String,
}

/// The flags of one instruction, checked against what it accepts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    used: Vec<UsedFlag>,
}

impl Flags {
    /// Reads `flags` (as the first stage kept them, `--name[=value]`) for
    /// `instruction`, which accepts `allowed`.
    pub(crate) fn parse(
        instruction: &str,
        flags: &[String],
        allowed: &[(&'static str, FlagKind)],
    ) -> Result<Flags, Problem> {
        let mut used: Vec<UsedFlag> = Vec::with_capacity(flags.len());
        for raw in flags {
            let Some(body) = raw.strip_prefix("--") else {
                return Err(Problem::at(
                    format!("invalid flag `{raw}` for {instruction}: flags start with --"),
                    raw,
                ));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };

            let Some(&(known, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(unknown_flag(instruction, name, raw, allowed));
            };
            if kind != FlagKind::Texts && used.iter().any(|u| u.name == known) {
                return Err(Problem::at(
                    format!("flag `--{name}` is given more than once in {instruction}"),
                    raw,
                )
                .with_hint(format!("keep one --{name}")));
            }

            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(value)) => match value.to_ascii_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(Problem::at(
                            format!("invalid value `{value}` for flag `--{name}` of {instruction}: expected true or false"),
                            raw,
                        )
                        .with_hint(format!("write --{name}, --{name}=true or --{name}=false")));
                    }
                },
                (_, None) => {
                    return Err(Problem::at(
                        format!("flag `--{name}` of {instruction} is missing a value"),
                        raw,
                    )
                    .with_hint(format!("write --{name}=VALUE")));
                }
                (_, Some(value)) => value.to_string(),
            };
            used.push(UsedFlag {
                name: known,
                value,
                raw: raw.clone(),
            });
        }
        Ok(Flags { used })
    }

    /// Returns the value of a boolean flag; `false` when it is absent.
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|flag| flag.value == "true")
    }

    /// Returns a boolean flag's value, or `None` when it is absent.
    pub(crate) fn optional_bool(&self, name: &str) -> Option<bool> {
        self.get(name).map(|flag| flag.value == "true")
    }

    /// Returns a flag that may be given once.
    pub(crate) fn get(&self, name: &str) -> Option<&UsedFlag> {
        self.used.iter().find(|flag| flag.name == name)
    }

    /// Returns every use of a repeatable flag, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a UsedFlag> + 'a {
        self.used.iter().filter(move |flag| flag.name == name)
    }
}

fn unknown_flag(
    instruction: &str,
    name: &str,
    raw: &str,
    allowed: &[(&'static str, FlagKind)],
) -> Problem {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    let problem = Problem::at(format!("unknown flag `--{name}` for {instruction}"), raw);
    if let Some(near) = nearest(name, &names) {
        return problem.with_hint(format!("did you mean --{near}?"));
    }
    if names.is_empty() {
        return problem.with_hint(format!("{instruction} takes no flags"));
    }
    let list: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
    problem.with_hint(format!("{instruction} accepts {}", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, FlagKind)] = &[
        ("from", FlagKind::Text),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::Texts),
    ];

    fn flags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_text_bool_and_repeated() {
        let parsed = Flags::parse(
            "COPY",
            &flags(&["--from=build", "--link", "--exclude=a", "--exclude=b"]),
            COPY,
        )
        .unwrap();
        assert_eq!(parsed.get("from").map(|f| f.value.as_str()), Some("build"));
        assert!(parsed.bool("link"));
        let excludes: Vec<&str> = parsed.all("exclude").map(|f| f.value.as_str()).collect();
        assert_eq!(excludes, ["a", "b"]);
    }

    #[test]
    fn bool_accepts_explicit_values() {
        let parsed = Flags::parse("COPY", &flags(&["--link=FALSE"]), COPY).unwrap();
        assert!(!parsed.bool("link"));
        assert_eq!(parsed.optional_bool("link"), Some(false));
        let parsed = Flags::parse("COPY", &flags(&["--link=True"]), COPY).unwrap();
        assert!(parsed.bool("link"));
        let parsed = Flags::parse("COPY", &[], COPY).unwrap();
        assert_eq!(parsed.optional_bool("link"), None);
    }

    #[test]
    fn bool_rejects_other_values() {
        let problem = Flags::parse("COPY", &flags(&["--link=yes"]), COPY).unwrap_err();
        assert!(problem.message.contains("`yes`"), "{}", problem.message);
        assert!(problem.message.contains("--link"), "{}", problem.message);
        let problem = Flags::parse("COPY", &flags(&["--link="]), COPY).unwrap_err();
        assert!(problem.message.contains("--link"), "{}", problem.message);
    }

    #[test]
    fn text_needs_value() {
        let problem = Flags::parse("COPY", &flags(&["--from"]), COPY).unwrap_err();
        assert!(
            problem.message.contains("missing a value"),
            "{}",
            problem.message
        );
        assert_eq!(problem.hint.as_deref(), Some("write --from=VALUE"));
    }

    #[test]
    fn text_accepts_empty_value() {
        let parsed = Flags::parse("COPY", &flags(&["--from="]), COPY).unwrap();
        assert_eq!(parsed.get("from").map(|f| f.value.as_str()), Some(""));
    }

    #[test]
    fn rejects_duplicates() {
        let problem = Flags::parse("COPY", &flags(&["--from=a", "--from=b"]), COPY).unwrap_err();
        assert!(
            problem.message.contains("more than once"),
            "{}",
            problem.message
        );
        assert_eq!(problem.needle.as_deref(), Some("--from=b"));
    }

    #[test]
    fn unknown_flag_suggests_nearest() {
        let problem = Flags::parse("COPY", &flags(&["--form=a"]), COPY).unwrap_err();
        assert!(problem.message.contains("`--form`"), "{}", problem.message);
        assert!(problem.message.contains("COPY"), "{}", problem.message);
        assert_eq!(problem.hint.as_deref(), Some("did you mean --from?"));
    }

    #[test]
    fn unknown_flag_lists_accepted() {
        let problem = Flags::parse("COPY", &flags(&["--platform=x"]), COPY).unwrap_err();
        assert_eq!(
            problem.hint.as_deref(),
            Some("COPY accepts --from, --link, --exclude")
        );
        let problem = Flags::parse("USER", &flags(&["--x"]), &[]).unwrap_err();
        assert_eq!(problem.hint.as_deref(), Some("USER takes no flags"));
    }
}
