//! Build secrets and SSH agent sockets that `forge build --secret` and
//! `--ssh` hand to `RUN --mount=type=secret` and `RUN --mount=type=ssh`.
//!
//! A secret's bytes reach only the sandbox's private tmpfs (or the step's
//! environment with `env=`). They never enter a layer, the cache key, the
//! history, a progress event or a log: [`Secrets`] prints ids only, and the
//! cache key records a secret mount's id and target, never its content.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::sandbox::SecretData;

/// Largest secret accepted, in bytes (500 KiB, BuildKit's limit).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// A `--secret` or `--ssh` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The value is malformed.
    #[error("invalid {flag} `{spec}`: {reason}")]
    Invalid {
        /// The flag, `--secret` or `--ssh`.
        flag: &'static str,
        /// The value as given.
        spec: String,
        /// The problem and how to write the value.
        reason: String,
    },

    /// The secret's file cannot be read.
    #[error("cannot read secret `{id}` from `{path}`; check that the file exists and is readable")]
    File {
        /// The secret id.
        id: String,
        /// The file named by `src`.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The secret is larger than [`MAX_SECRET_SIZE`].
    #[error(
        "secret `{id}` is {size} bytes, more than the limit of {MAX_SECRET_SIZE} bytes; pass a smaller secret"
    )]
    TooLarge {
        /// The secret id.
        id: String,
        /// Its size in bytes.
        size: u64,
    },

    /// The environment variable of an `env` secret is not set.
    #[error(
        "secret `{id}` reads the environment variable `{variable}`, which is not set; set it or pass src=FILE"
    )]
    MissingVariable {
        /// The secret id.
        id: String,
        /// The variable name.
        variable: String,
    },

    /// `--ssh default` without `SSH_AUTH_SOCK`.
    #[error(
        "--ssh `{id}` names no socket and SSH_AUTH_SOCK is not set; start an SSH agent or write --ssh {id}=/path/to/agent.sock"
    )]
    NoAgent {
        /// The SSH id.
        id: String,
    },
}

/// The source of a secret's bytes.
#[derive(Clone, PartialEq, Eq)]
enum SecretSource {
    /// A file read when a step mounts the secret.
    File(PathBuf),
    /// The value of an environment variable, read when the flag is parsed.
    Value(Vec<u8>),
}

/// The secrets of one build, by id.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    entries: BTreeMap<String, SecretSource>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the ids: values and paths stay out of logs.
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

impl Secrets {
    /// Adds the secret that a `--secret` value describes, reading
    /// environment variables through `env`.
    ///
    /// The value is a comma-separated list of `id=ID`, `src=FILE` (or
    /// `source=FILE`), `env=VAR` and `type=file|env`. With `type=env` a
    /// `src` names the variable. Without `src` and `env`, the variable
    /// `ID` is read when it is set and the file `ID` otherwise. Without
    /// `id`, the id is the base name of the file or the variable name. A
    /// later secret with the same id replaces an earlier one.
    ///
    /// # Errors
    ///
    /// [`SecretError::Invalid`] for a malformed value,
    /// [`SecretError::File`] for a file that does not exist,
    /// [`SecretError::TooLarge`] and [`SecretError::MissingVariable`].
    pub fn add(
        &mut self,
        spec: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), SecretError> {
        let invalid = |reason: String| SecretError::Invalid {
            flag: "--secret",
            spec: spec.to_string(),
            reason,
        };
        let mut id = None;
        let mut file = None;
        let mut variable = None;
        let mut kind = None;
        for field in spec.split(',').filter(|field| !field.is_empty()) {
            let Some((key, value)) = field.split_once('=') else {
                return Err(invalid(format!(
                    "field `{field}` is not KEY=VALUE; write id=ID,src=FILE or id=ID,env=VAR"
                )));
            };
            match key.to_ascii_lowercase().as_str() {
                "id" => id = Some(value.to_string()),
                "src" | "source" => file = Some(value.to_string()),
                "env" => variable = Some(value.to_string()),
                "type" if value == "file" || value == "env" => kind = Some(value.to_string()),
                "type" => {
                    return Err(invalid(format!(
                        "unknown secret type `{value}`; use type=file or type=env"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key `{other}`; use id, src, env or type"
                    )));
                }
            }
        }
        if kind.as_deref() == Some("env") && variable.is_none() {
            variable = file.take();
        }
        if file.is_some() && variable.is_some() {
            return Err(invalid("give src or env, not both".to_string()));
        }

        let id = match (id, &file, &variable) {
            (Some(id), _, _) if !id.is_empty() => id,
            (Some(_), _, _) => return Err(invalid("the id is empty".to_string())),
            (None, Some(file), _) => base_name(file)
                .ok_or_else(|| invalid(format!("cannot take an id from `{file}`; add id=ID")))?,
            (None, None, Some(variable)) => variable.clone(),
            (None, None, None) => {
                return Err(invalid(
                    "it names no secret; write id=ID,src=FILE or id=ID,env=VAR".to_string(),
                ));
            }
        };
        if file.is_none() && variable.is_none() {
            if env(&id).is_some() {
                variable = Some(id.clone());
            } else {
                file = Some(id.clone());
            }
        }

        let source = match (file, variable) {
            (Some(file), _) => SecretSource::File(checked_file(&id, Path::new(&file))?),
            (None, Some(variable)) if !variable.is_empty() => {
                let value = env(&variable).ok_or_else(|| SecretError::MissingVariable {
                    id: id.clone(),
                    variable: variable.clone(),
                })?;
                let size = u64::try_from(value.len()).unwrap_or(u64::MAX);
                if size > MAX_SECRET_SIZE {
                    return Err(SecretError::TooLarge { id, size });
                }
                SecretSource::Value(value.into_bytes())
            }
            _ => {
                return Err(invalid(
                    "the environment variable name is empty".to_string(),
                ));
            }
        };
        self.entries.insert(id, source);
        Ok(())
    }

    /// Returns the content of secret `id` for a sandbox mount, or `None`
    /// when no `--secret` gave it.
    pub fn get(&self, id: &str) -> Option<SecretData> {
        self.entries.get(id).map(|source| match source {
            SecretSource::File(path) => SecretData::File(path.clone()),
            SecretSource::Value(bytes) => SecretData::Bytes(bytes.clone()),
        })
    }

    /// Returns the ids of the secrets, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Returns whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Returns the last component of `path`, if it has one.
fn base_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
}

/// Checks that a secret file exists and is small enough, and returns its
/// absolute path.
fn checked_file(id: &str, path: &Path) -> Result<PathBuf, SecretError> {
    let file_error = |source| SecretError::File {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(file_error)?;
    if metadata.len() > MAX_SECRET_SIZE {
        return Err(SecretError::TooLarge {
            id: id.to_string(),
            size: metadata.len(),
        });
    }
    std::fs::canonicalize(path).map_err(file_error)
}

/// The SSH agent sockets of one build, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshAgents {
    entries: BTreeMap<String, PathBuf>,
}

impl SshAgents {
    /// Adds the agent socket that an `--ssh` value describes: `ID` alone
    /// (usually `default`) takes the socket from `agent_socket`, the value
    /// of `SSH_AUTH_SOCK`, and `ID=SOCKET` names it. Only one socket per id
    /// is supported, so `ID=A,B` is rejected.
    ///
    /// # Errors
    ///
    /// [`SecretError::Invalid`] for a malformed value or a missing socket,
    /// and [`SecretError::NoAgent`] for `ID` alone without an agent.
    pub fn add(&mut self, spec: &str, agent_socket: Option<&str>) -> Result<(), SecretError> {
        let invalid = |reason: String| SecretError::Invalid {
            flag: "--ssh",
            spec: spec.to_string(),
            reason,
        };
        let (id, socket) = match spec.split_once('=') {
            Some((id, paths)) => (id, Some(paths)),
            None => (spec, None),
        };
        if id.is_empty() {
            return Err(invalid(
                "the id is empty; write default or ID=SOCKET".to_string(),
            ));
        }
        let socket = match socket {
            Some(paths) if paths.contains(',') => {
                return Err(invalid(
                    "only one socket per id is supported; give one agent socket path".to_string(),
                ));
            }
            Some("") => return Err(invalid("the socket path is empty".to_string())),
            Some(path) => path,
            None => agent_socket
                .filter(|socket| !socket.is_empty())
                .ok_or_else(|| SecretError::NoAgent { id: id.to_string() })?,
        };
        let socket = std::fs::canonicalize(socket).map_err(|error| {
            invalid(format!(
                "cannot find the agent socket `{socket}` ({error}); check the path"
            ))
        })?;
        self.entries.insert(id.to_string(), socket);
        Ok(())
    }

    /// Returns the agent socket of `id`, or `None` when no `--ssh` gave it.
    pub fn get(&self, id: &str) -> Option<&Path> {
        self.entries.get(id).map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn secret_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn bytes(secrets: &Secrets, id: &str) -> Vec<u8> {
        match secrets.get(id) {
            Some(SecretData::Bytes(bytes)) => bytes,
            Some(SecretData::File(path)) => std::fs::read(path).unwrap(),
            None => panic!("secret `{id}` missing"),
        }
    }

    #[test]
    fn file_secret_with_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = secret_file(dir.path(), "token.txt", b"abc");
        let mut secrets = Secrets::default();
        secrets
            .add(&format!("id=tok,src={}", file.display()), &no_env)
            .unwrap();
        assert_eq!(bytes(&secrets, "tok"), b"abc");
        assert!(matches!(secrets.get("tok"), Some(SecretData::File(_))));
        assert!(secrets.get("token.txt").is_none());
    }

    #[test]
    fn id_defaults_to_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = secret_file(dir.path(), "npmrc", b"x");
        let mut secrets = Secrets::default();
        secrets
            .add(&format!("source={}", file.display()), &no_env)
            .unwrap();
        assert_eq!(secrets.ids().collect::<Vec<_>>(), ["npmrc"]);
    }

    #[test]
    fn env_secret_forms() {
        let env = |name: &str| (name == "TOKEN").then(|| "from-env".to_string());
        for spec in [
            "id=t,env=TOKEN",
            "id=t,type=env,src=TOKEN",
            "type=env,id=t,source=TOKEN",
        ] {
            let mut secrets = Secrets::default();
            secrets.add(spec, &env).unwrap();
            assert_eq!(bytes(&secrets, "t"), b"from-env", "{spec}");
        }
        let mut secrets = Secrets::default();
        secrets.add("env=TOKEN", &env).unwrap();
        assert_eq!(bytes(&secrets, "TOKEN"), b"from-env");
    }

    #[test]
    fn bare_id_prefers_variable_then_file() {
        let env = |name: &str| (name == "TOKEN").then(|| "v".to_string());
        let mut secrets = Secrets::default();
        secrets.add("id=TOKEN", &env).unwrap();
        assert!(matches!(secrets.get("TOKEN"), Some(SecretData::Bytes(_))));

        let dir = tempfile::tempdir().unwrap();
        let file = secret_file(dir.path(), "key", b"k");
        let spec = format!("id={}", file.display());
        secrets.add(&spec, &no_env).unwrap();
        assert!(matches!(
            secrets.get(&file.display().to_string()),
            Some(SecretData::File(_))
        ));
    }

    #[test]
    fn rejects_bad_values() {
        let mut secrets = Secrets::default();
        let cases = [
            (
                "id=a,src=/nonexistent/forge-secret",
                "cannot read secret `a`",
            ),
            ("id=a,env=FORGE_UNSET_VARIABLE", "FORGE_UNSET_VARIABLE"),
            ("id=a,type=ssh", "unknown secret type `ssh`"),
            ("id=a,colour=red", "unknown key `colour`"),
            ("id=a,src", "field `src` is not KEY=VALUE"),
            ("id=a,src=f,env=E", "not both"),
            ("id=,env=E", "the id is empty"),
            ("", "names no secret"),
        ];
        for (spec, expected) in cases {
            let error = secrets.add(spec, &no_env).unwrap_err().to_string();
            assert!(error.contains(expected), "{spec}: {error}");
        }
        assert!(secrets.is_empty());
    }

    #[test]
    fn rejects_large_secret() {
        let dir = tempfile::tempdir().unwrap();
        let size = usize::try_from(MAX_SECRET_SIZE).unwrap() + 1;
        let file = secret_file(dir.path(), "big", &vec![b'x'; size]);
        let error = Secrets::default()
            .add(&format!("id=big,src={}", file.display()), &no_env)
            .unwrap_err();
        assert!(matches!(error, SecretError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn debug_shows_ids_only() {
        let env = |_: &str| Some("hunter2-value".to_string());
        let mut secrets = Secrets::default();
        secrets.add("id=pw,env=PASSWORD", &env).unwrap();
        let text = format!("{secrets:?}");
        assert!(text.contains("pw"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn ssh_default_and_named_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = secret_file(dir.path(), "agent.sock", b"");
        let socket_text = socket.display().to_string();
        let mut agents = SshAgents::default();
        agents.add("default", Some(&socket_text)).unwrap();
        agents.add(&format!("work={socket_text}"), None).unwrap();
        let expected = std::fs::canonicalize(&socket).unwrap();
        assert_eq!(agents.get("default"), Some(expected.as_path()));
        assert_eq!(agents.get("work"), Some(expected.as_path()));
        assert_eq!(agents.get("other"), None);
    }

    #[test]
    fn ssh_rejects_bad_values() {
        let mut agents = SshAgents::default();
        let no_agent = agents.add("default", None).unwrap_err();
        assert!(
            matches!(no_agent, SecretError::NoAgent { .. }),
            "{no_agent}"
        );
        let cases = [
            ("=/tmp/a", "the id is empty"),
            ("a=/tmp/x,/tmp/y", "only one socket"),
            ("a=", "the socket path is empty"),
            (
                "a=/nonexistent/forge-agent.sock",
                "cannot find the agent socket",
            ),
        ];
        for (spec, expected) in cases {
            let error = agents.add(spec, None).unwrap_err().to_string();
            assert!(error.contains(expected), "{spec}: {error}");
        }
    }
}
