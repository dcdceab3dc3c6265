//! The image config of an imported root file system and the changes
//! (`--change`) that an import applies to it.

use std::fmt;

use serde_json::{Map, Value, json};

use super::error::{ArchiveError, Result};

/// One Dockerfile instruction applied to the config of an imported image,
/// as `docker import --change` does. The caller parses the instruction;
/// the values here are final (shell-form commands already wrapped in the
/// shell, variables already expanded).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigChange {
    /// `CMD`: the default arguments, in exec form.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`: the command, in exec form.
    Entrypoint(Vec<String>),
    /// `ENV`: variables to set; a later value of a name replaces the earlier one.
    Env(Vec<(String, String)>),
    /// `WORKDIR`: the working directory; a relative path is joined to the
    /// current one.
    Workdir(String),
    /// `USER`: the user, and optionally `:group`, that runs the command.
    User(String),
    /// `EXPOSE`: ports as `PORT`, `PORT/PROTOCOL` or `FIRST-LAST/PROTOCOL`;
    /// the protocol defaults to `tcp`.
    Expose(Vec<String>),
    /// `LABEL`: labels to set.
    Label(Vec<(String, String)>),
    /// `VOLUME`: mount points.
    Volume(Vec<String>),
    /// `STOPSIGNAL`: the signal that stops a container, such as `SIGTERM` or `15`.
    StopSignal(String),
    /// `ONBUILD`: an instruction, as its Dockerfile text, that runs in a
    /// build that starts from this image.
    OnBuild(String),
}

impl fmt::Display for ConfigChange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigChange::Cmd(args) => write!(formatter, "CMD {args:?}"),
            ConfigChange::Entrypoint(args) => write!(formatter, "ENTRYPOINT {args:?}"),
            ConfigChange::Env(pairs) => write!(formatter, "ENV {}", pairs_text(pairs)),
            ConfigChange::Workdir(dir) => write!(formatter, "WORKDIR {dir}"),
            ConfigChange::User(user) => write!(formatter, "USER {user}"),
            ConfigChange::Expose(ports) => write!(formatter, "EXPOSE {}", ports.join(" ")),
            ConfigChange::Label(pairs) => write!(formatter, "LABEL {}", pairs_text(pairs)),
            ConfigChange::Volume(paths) => write!(formatter, "VOLUME {paths:?}"),
            ConfigChange::StopSignal(signal) => write!(formatter, "STOPSIGNAL {signal}"),
            ConfigChange::OnBuild(text) => write!(formatter, "ONBUILD {text}"),
        }
    }
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The platform an imported image declares in its config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, as Go's `GOOS` names it (`linux`).
    pub os: String,
    /// CPU architecture, as Go's `GOARCH` names it (`amd64`, `arm64`).
    pub architecture: String,
    /// Architecture variant, such as `v8` for `arm64`.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// Returns `linux/amd64`.
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

/// Applies `changes` in order to the `config` object of an image config.
pub(crate) fn apply_changes(
    config: &mut Map<String, Value>,
    changes: &[ConfigChange],
) -> Result<()> {
    for change in changes {
        apply_change(config, change)?;
    }
    Ok(())
}

fn apply_change(config: &mut Map<String, Value>, change: &ConfigChange) -> Result<()> {
    let invalid = |reason: &str| ArchiveError::InvalidChange {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    match change {
        ConfigChange::Cmd(args) => {
            config.insert("Cmd".into(), json!(args));
        }
        ConfigChange::Entrypoint(args) => {
            config.insert("Entrypoint".into(), json!(args));
        }
        ConfigChange::Env(pairs) => {
            let mut env: Vec<String> = string_list(config.get("Env"));
            for (key, value) in pairs {
                if key.is_empty() || key.contains('=') {
                    return Err(invalid(
                        "a variable name must be non-empty and contain no `=`",
                    ));
                }
                let prefix = format!("{key}=");
                env.retain(|entry| !entry.starts_with(&prefix));
                env.push(format!("{key}={value}"));
            }
            config.insert("Env".into(), json!(env));
        }
        ConfigChange::Workdir(dir) => {
            if dir.is_empty() {
                return Err(invalid("the directory is empty; give a path such as /app"));
            }
            let dir = if dir.starts_with('/') {
                dir.clone()
            } else {
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|current| !current.is_empty())
                    .unwrap_or("/");
                format!("{}/{dir}", current.trim_end_matches('/'))
            };
            config.insert("WorkingDir".into(), json!(dir));
        }
        ConfigChange::User(user) => {
            if user.is_empty() {
                return Err(invalid("the user is empty; give a name or uid"));
            }
            config.insert("User".into(), json!(user));
        }
        ConfigChange::Expose(ports) => {
            let exposed = object_entry(config, "ExposedPorts");
            for port in ports {
                for key in expand_port(port).map_err(|reason| invalid(&reason))? {
                    exposed.insert(key, json!({}));
                }
            }
        }
        ConfigChange::Label(pairs) => {
            let labels = object_entry(config, "Labels");
            for (key, value) in pairs {
                if key.is_empty() {
                    return Err(invalid("a label key must be non-empty"));
                }
                labels.insert(key.clone(), json!(value));
            }
        }
        ConfigChange::Volume(paths) => {
            let volumes = object_entry(config, "Volumes");
            for path in paths {
                if path.is_empty() {
                    return Err(invalid("a volume path is empty"));
                }
                volumes.insert(path.clone(), json!({}));
            }
        }
        ConfigChange::StopSignal(signal) => {
            if signal.is_empty() || signal.contains(char::is_whitespace) {
                return Err(invalid(
                    "give one signal name or number, such as SIGTERM or 15",
                ));
            }
            config.insert("StopSignal".into(), json!(signal));
        }
        ConfigChange::OnBuild(text) => {
            let first = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            if matches!(first.as_str(), "" | "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(invalid(
                    "ONBUILD takes one instruction other than ONBUILD, FROM or MAINTAINER",
                ));
            }
            let mut triggers = string_list(config.get("OnBuild"));
            triggers.push(text.clone());
            config.insert("OnBuild".into(), json!(triggers));
        }
    }
    Ok(())
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Returns the object under `key`, replacing any other value there.
fn object_entry<'c>(config: &'c mut Map<String, Value>, key: &str) -> &'c mut Map<String, Value> {
    let entry = config
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(map) => map,
        // The entry was made an object just above.
        _ => unreachable!("config entry {key} is an object"),
    }
}

/// Turns `80`, `53/udp` or `8000-8002/tcp` into `ExposedPorts` keys.
fn expand_port(text: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, protocol)) => (ports, protocol.to_ascii_lowercase()),
        None => (text, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "unknown protocol `{protocol}` in `{text}`; use tcp, udp or sctp"
        ));
    }
    let parse = |value: &str| {
        value
            .parse::<u16>()
            .map_err(|_| format!("`{value}` in `{text}` is not a port number from 0 to 65535"))
    };
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (parse(first)?, parse(last)?),
        None => {
            let port = parse(ports)?;
            (port, port)
        }
    };
    if first > last {
        return Err(format!("the range `{ports}` ends before it starts"));
    }
    Ok((first..=last)
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time.
pub(crate) fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);

    // Civil date from a day count, after Howard Hinnant's `civil_from_days`.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);

    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn env_change_replaces_earlier_value() {
        let mut config = Map::new();
        let first = ConfigChange::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
        let second = ConfigChange::Env(vec![("A".into(), "3".into())]);
        apply_changes(&mut config, &[first, second]).unwrap();
        assert_eq!(config["Env"], json!(["B=2", "A=3"]));
    }

    #[test]
    fn expose_change_expands_ranges() {
        let mut config = Map::new();
        let change = ConfigChange::Expose(vec!["80".into(), "53/UDP".into(), "8000-8001".into()]);
        apply_changes(&mut config, &[change]).unwrap();
        let keys: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    }

    #[test]
    fn expose_change_rejects_bad_port() {
        let mut config = Map::new();
        let error =
            apply_changes(&mut config, &[ConfigChange::Expose(vec!["http".into()])]).unwrap_err();
        assert!(error.to_string().contains("`http`"), "{error}");
    }

    #[test]
    fn workdir_change_joins_relative_path() {
        let mut config = Map::new();
        let changes = [
            ConfigChange::Workdir("/srv".into()),
            ConfigChange::Workdir("app".into()),
        ];
        apply_changes(&mut config, &changes).unwrap();
        assert_eq!(config["WorkingDir"], json!("/srv/app"));
    }

    #[test]
    fn onbuild_change_rejects_from() {
        let mut config = Map::new();
        let error = apply_changes(&mut config, &[ConfigChange::OnBuild("FROM x".into())]);
        assert!(error.is_err());
        assert!(!config.contains_key("OnBuild"));
    }

    #[test]
    fn label_and_volume_changes_fill_objects() {
        let mut config = Map::new();
        let changes = [
            ConfigChange::Label(vec![("org.example".into(), "yes".into())]),
            ConfigChange::Volume(vec!["/data".into()]),
            ConfigChange::StopSignal("SIGINT".into()),
        ];
        apply_changes(&mut config, &changes).unwrap();
        assert_eq!(config["Labels"], json!({"org.example": "yes"}));
        assert_eq!(config["Volumes"], json!({"/data": {}}));
        assert_eq!(config["StopSignal"], json!("SIGINT"));
    }
}
