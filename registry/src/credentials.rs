//! Registry credentials from the Docker client configuration.
//!
//! The file is `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`
//! without `DOCKER_CONFIG`. Credentials for a registry come from, in order:
//! the helper named in `credHelpers` for that registry, the helper named in
//! `credsStore`, and the registry's entry in `auths`. A helper is the program
//! `docker-credential-NAME` on `PATH`, spoken to with the `get`, `store` and
//! `erase` commands: `get` and `erase` read the server URL on standard input,
//! `store` reads `{"ServerURL","Username","Secret"}`, and `get` prints the
//! same object. Docker Hub is stored under `https://index.docker.io/v1/`.
//!
//! Writing keeps every key and value of the file that this module does not
//! manage, writes a temporary file with mode 0600 and renames it over the
//! original.
//!
//! NOTE: keys are written in sorted order, because `serde_json` is built
//! without `preserve_order` (enabling it would change the key order of every
//! JSON document the workspace writes).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// The key that Docker uses for Docker Hub in `auths` and with helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The user name a helper returns when the secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// A credential for one registry. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password, sent with HTTP Basic authentication or to
    /// a token service.
    UserPassword {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// An OAuth2 refresh token that a token service exchanges for access
    /// tokens (`identitytoken` in the configuration file).
    IdentityToken {
        /// The user name that goes with the token, possibly empty.
        username: String,
        /// The refresh token.
        token: String,
    },
}

impl Credential {
    /// Returns the user name.
    pub fn username(&self) -> &str {
        match self {
            Credential::UserPassword { username, .. }
            | Credential::IdentityToken { username, .. } => username,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::UserPassword { username, .. } => f
                .debug_struct("UserPassword")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Failures to read, write or look up credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Neither `DOCKER_CONFIG` nor `HOME` is set.
    #[error("cannot locate the Docker configuration: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,

    /// The configuration file could not be read or written.
    #[error("failed to {action} Docker configuration `{path}`")]
    Io {
        /// The failed operation (`read`, `write`, `replace`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The configuration file is not the expected JSON.
    #[error("invalid Docker configuration `{path}`: {reason}; fix or remove the file")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The problem found.
        reason: String,
    },

    /// An `auths` entry is malformed.
    #[error(
        "invalid `auths` entry `{key}` in `{path}`: {reason}; run `forge login` again for that \
         registry"
    )]
    InvalidAuth {
        /// The `auths` key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The problem found.
        reason: &'static str,
    },

    /// A credential helper could not be started.
    #[error(
        "failed to run credential helper `{program}`: {source}; install it or remove it from \
         `credsStore`/`credHelpers` in the Docker configuration"
    )]
    HelperSpawn {
        /// The helper program name.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A credential helper exited with an error.
    #[error("credential helper `{program} {command}` failed for `{server}`: {message}")]
    HelperFailed {
        /// The helper program name.
        program: String,
        /// `get`, `store` or `erase`.
        command: &'static str,
        /// The server URL given to the helper.
        server: String,
        /// The helper's own error message.
        message: String,
    },

    /// A credential helper printed something other than the expected JSON.
    #[error("credential helper `{program} get` returned invalid JSON for `{server}`: {reason}")]
    HelperOutput {
        /// The helper program name.
        program: String,
        /// The server URL given to the helper.
        server: String,
        /// The problem found.
        reason: String,
    },
}

/// Looks up credentials for a registry host; the client asks this for each
/// registry it authenticates to.
pub trait CredentialProvider: Send + Sync {
    /// Returns the credential for `registry` (as named in a reference, such
    /// as `docker.io` or `localhost:5000`), or `None` for anonymous access.
    ///
    /// # Errors
    ///
    /// Returns an error when the credential store cannot be read.
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError>;
}

/// A provider that never has credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialProvider for Anonymous {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(None)
    }
}

/// The Docker client configuration file, loaded for reading and editing.
#[derive(Clone)]
pub struct DockerConfig {
    path: PathBuf,
    /// Every top-level key except `auths`, kept as read.
    root: Map<String, Value>,
    /// The `auths` object.
    auths: Map<String, Value>,
}

impl fmt::Debug for DockerConfig {
    /// Shows only the path, because the file contents hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Returns the path of the configuration file: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
///
/// # Errors
///
/// Returns [`CredentialError::NoConfigDir`] when neither variable is set.
pub fn default_config_path() -> Result<PathBuf, CredentialError> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".docker").join("config.json")),
        None => Err(CredentialError::NoConfigDir),
    }
}

/// Returns the key under which `registry` is stored in `auths` and with helpers.
pub fn server_key(registry: &str) -> String {
    if registry == DOCKER_HUB || registry == DOCKER_HUB_API || registry == "index.docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// Reduces an `auths` key such as `https://host:5000/v1/` to `host:5000`.
fn key_host(key: &str) -> &str {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    without_scheme
        .split_once('/')
        .map_or(without_scheme, |(host, _)| host)
}

impl DockerConfig {
    /// Loads the file at [`default_config_path`]; a missing file is an
    /// empty configuration.
    ///
    /// # Errors
    ///
    /// Returns an error when the file cannot be read or is not a JSON object.
    pub fn load() -> Result<Self, CredentialError> {
        Self::load_from(default_config_path()?)
    }

    /// Loads the file at `path`; a missing file is an empty configuration.
    ///
    /// # Errors
    ///
    /// Returns an error when the file cannot be read or is not a JSON object.
    pub fn load_from(path: impl Into<PathBuf>) -> Result<Self, CredentialError> {
        let path = path.into();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path,
                    root: Map::new(),
                    auths: Map::new(),
                });
            }
            Err(source) => {
                return Err(CredentialError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(DockerConfig {
                path,
                root: Map::new(),
                auths: Map::new(),
            });
        }
        let root = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(root)) => root,
            Ok(_) => {
                return Err(CredentialError::InvalidConfig {
                    path,
                    reason: "the top level is not a JSON object".to_owned(),
                });
            }
            Err(error) => {
                return Err(CredentialError::InvalidConfig {
                    path,
                    reason: error.to_string(),
                });
            }
        };
        let mut config = DockerConfig {
            path,
            root,
            auths: Map::new(),
        };
        config.check_shape()?;
        if let Some(Value::Object(auths)) = config.root.remove("auths") {
            config.auths = auths;
        }
        Ok(config)
    }

    /// Returns the file this configuration was loaded from and is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_shape(&self) -> Result<(), CredentialError> {
        for (key, expected) in [
            ("auths", "an object"),
            ("credHelpers", "an object"),
            ("credsStore", "a string"),
        ] {
            let valid = match self.root.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::Object(_)) => expected == "an object",
                Some(Value::String(_)) => expected == "a string",
                Some(_) => false,
            };
            if !valid {
                return Err(CredentialError::InvalidConfig {
                    path: self.path.clone(),
                    reason: format!("`{key}` must be {expected}"),
                });
            }
        }
        Ok(())
    }

    /// The helper that stores credentials for `registry`, if any:
    /// `credHelpers` first, then `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let key = server_key(registry);
        let host = key_host(&key).to_owned();
        if let Some(Value::Object(helpers)) = self.root.get("credHelpers") {
            for candidate in [registry, key.as_str(), host.as_str()] {
                if let Some(Value::String(name)) = helpers.get(candidate)
                    && !name.is_empty()
                {
                    return Some(name.clone());
                }
            }
        }
        match self.root.get("credsStore") {
            Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
            _ => None,
        }
    }

    /// Looks up the credential for `registry` (`docker.io`, `localhost:5000`).
    ///
    /// # Errors
    ///
    /// Returns an error when a helper fails (other than "not found") or an
    /// `auths` entry is malformed.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let key = server_key(registry);
        if let Some(helper) = self.helper_for(registry)
            && let Some(credential) = helper_get(&helper, &key)?
        {
            return Ok(Some(credential));
        }
        self.auths_entry(&key)
    }

    fn find_auths_key(&self, key: &str) -> Option<(String, &Map<String, Value>)> {
        let auths = &self.auths;
        if let Some(Value::Object(entry)) = auths.get(key) {
            return Some((key.to_owned(), entry));
        }
        // Older clients wrote keys with a scheme or path; match on the host.
        let host = key_host(key);
        auths.iter().find_map(|(candidate, entry)| match entry {
            Value::Object(entry) if key_host(candidate) == host => Some((candidate.clone(), entry)),
            _ => None,
        })
    }

    fn auths_entry(&self, key: &str) -> Result<Option<Credential>, CredentialError> {
        let Some((found_key, entry)) = self.find_auths_key(key) else {
            return Ok(None);
        };
        let invalid = |reason| CredentialError::InvalidAuth {
            key: found_key.clone(),
            path: self.path.clone(),
            reason,
        };
        let text = |name: &str| match entry.get(name) {
            Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
            _ => None,
        };

        let (mut username, mut password) = (text("username"), text("password"));
        if let Some(auth) = text("auth") {
            let decoded = BASE64
                .decode(auth.trim())
                .map_err(|_| invalid("`auth` is not valid base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| invalid("`auth` is not UTF-8 text"))?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(invalid("`auth` must encode `user:password`"));
            };
            username = Some(user.to_owned());
            password = Some(pass.to_owned());
        }

        if let Some(token) = text("identitytoken") {
            return Ok(Some(Credential::IdentityToken {
                username: username.unwrap_or_default(),
                token,
            }));
        }
        match (username, password) {
            (Some(username), Some(password)) => {
                Ok(Some(Credential::UserPassword { username, password }))
            }
            _ => Ok(None),
        }
    }

    /// Stores `credential` for `registry`, in its helper when one is
    /// configured, otherwise in `auths`, and saves the file.
    ///
    /// # Errors
    ///
    /// Returns an error when the helper fails or the file cannot be written.
    pub fn store(
        &mut self,
        registry: &str,
        credential: &Credential,
    ) -> Result<(), CredentialError> {
        let key = server_key(registry);
        let mut entry = Map::new();
        if let Some(helper) = self.helper_for(registry) {
            helper_store(&helper, &key, credential)?;
        } else {
            match credential {
                Credential::UserPassword { username, password } => {
                    let auth = BASE64.encode(format!("{username}:{password}"));
                    entry.insert("auth".to_owned(), Value::String(auth));
                }
                Credential::IdentityToken { username, token } => {
                    if !username.is_empty() {
                        let auth = BASE64.encode(format!("{username}:"));
                        entry.insert("auth".to_owned(), Value::String(auth));
                    }
                    entry.insert("identitytoken".to_owned(), Value::String(token.clone()));
                }
            }
        }

        // Drop older spellings of the same host so that the new entry is
        // the one found.
        if let Some((old_key, _)) = self.find_auths_key(&key)
            && old_key != key
        {
            self.auths_mut().remove(&old_key);
        }
        // With a helper the entry stays empty, which records that the
        // registry has a login, as Docker does.
        self.auths_mut().insert(key, Value::Object(entry));
        self.save()
    }

    /// Removes the credential for `registry` from its helper and from
    /// `auths`, and saves the file. Returns whether anything was removed.
    ///
    /// # Errors
    ///
    /// Returns an error when the helper fails or the file cannot be written.
    pub fn erase(&mut self, registry: &str) -> Result<bool, CredentialError> {
        let key = server_key(registry);
        let mut removed = false;
        if let Some(helper) = self.helper_for(registry) {
            removed |= helper_erase(&helper, &key)?;
        }
        while let Some((old_key, _)) = self.find_auths_key(&key) {
            self.auths_mut().remove(&old_key);
            removed = true;
        }
        self.save()?;
        Ok(removed)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.auths
    }

    /// Writes the configuration to its path: a temporary file in the same
    /// directory with mode 0600, synced, then renamed over the original.
    ///
    /// # Errors
    ///
    /// Returns an error when the directory or file cannot be written.
    pub fn save(&self) -> Result<(), CredentialError> {
        let io_error = |action, source| CredentialError::Io {
            action,
            path: self.path.clone(),
            source,
        };

        // Replace the target of a symbolic link, not the link.
        let target = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io_error("create the directory of", e))?;

        let mut root = self.root.clone();
        if !self.auths.is_empty() || !root.is_empty() {
            root.insert("auths".to_owned(), Value::Object(self.auths.clone()));
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(root))
            .map_err(|e| io_error("serialise", io::Error::other(e)))?;
        text.push('\n');

        let file_name = target.file_name().map_or_else(
            || "config.json".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let temp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&temp)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        if let Err(error) = write() {
            let _ = fs::remove_file(&temp);
            return Err(io_error("write", error));
        }
        if let Err(error) = fs::rename(&temp, &target) {
            let _ = fs::remove_file(&temp);
            return Err(io_error("replace", error));
        }
        Ok(())
    }
}

impl CredentialProvider for DockerConfig {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        self.get(registry)
    }
}

/// Output of a helper's `get`, and input of its `store`.
#[derive(serde::Serialize, serde::Deserialize)]
struct HelperCredential {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

struct HelperOutput {
    success: bool,
    stdout: Vec<u8>,
    message: String,
}

fn run_helper(
    helper: &str,
    command: &'static str,
    input: &[u8],
) -> Result<HelperOutput, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CredentialError::HelperSpawn {
            program: program.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input closes the pipe, so
        // the write error is ignored and the exit status decides.
        let _ = stdin.write_all(input);
    }
    let output = child
        .wait_with_output()
        .map_err(|source| CredentialError::HelperSpawn {
            program: program.clone(),
            source,
        })?;
    // Helpers print their error message on standard output; some use
    // standard error.
    let mut message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if message.is_empty() {
        message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    }
    if output.status.success() {
        message.clear();
    }
    Ok(HelperOutput {
        success: output.status.success(),
        stdout: output.stdout,
        message,
    })
}

fn is_not_found(message: &str) -> bool {
    message.contains("credentials not found")
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let output = run_helper(helper, "get", server.as_bytes())?;
    if !output.success {
        if is_not_found(&output.message) {
            return Ok(None);
        }
        return Err(CredentialError::HelperFailed {
            program,
            command: "get",
            server: server.to_owned(),
            message: output.message,
        });
    }
    let parsed: HelperCredential =
        serde_json::from_slice(&output.stdout).map_err(|error| CredentialError::HelperOutput {
            program: program.clone(),
            server: server.to_owned(),
            // serde_json's message names a position, never the content.
            reason: error.to_string(),
        })?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    if parsed.username == TOKEN_USERNAME {
        return Ok(Some(Credential::IdentityToken {
            username: String::new(),
            token: parsed.secret,
        }));
    }
    Ok(Some(Credential::UserPassword {
        username: parsed.username,
        password: parsed.secret,
    }))
}

fn helper_store(
    helper: &str,
    server: &str,
    credential: &Credential,
) -> Result<(), CredentialError> {
    let (username, secret) = match credential {
        Credential::UserPassword { username, password } => (username.clone(), password.clone()),
        Credential::IdentityToken { token, .. } => (TOKEN_USERNAME.to_owned(), token.clone()),
    };
    let input = HelperCredential {
        server_url: server.to_owned(),
        username,
        secret,
    };
    let input = serde_json::to_vec(&input).map_err(|error| CredentialError::HelperOutput {
        program: format!("docker-credential-{helper}"),
        server: server.to_owned(),
        reason: error.to_string(),
    })?;
    let output = run_helper(helper, "store", &input)?;
    if !output.success {
        return Err(CredentialError::HelperFailed {
            program: format!("docker-credential-{helper}"),
            command: "store",
            server: server.to_owned(),
            message: output.message,
        });
    }
    Ok(())
}

fn helper_erase(helper: &str, server: &str) -> Result<bool, CredentialError> {
    let output = run_helper(helper, "erase", server.as_bytes())?;
    if output.success {
        return Ok(true);
    }
    if is_not_found(&output.message) {
        return Ok(false);
    }
    Err(CredentialError::HelperFailed {
        program: format!("docker-credential-{helper}"),
        command: "erase",
        server: server.to_owned(),
        message: output.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_key_maps_docker_hub() {
        assert_eq!(server_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(server_key("registry-1.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn key_host_strips_scheme_and_path() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(key_host("http://h:5000"), "h:5000");
        assert_eq!(key_host("h:5000"), "h:5000");
    }

    #[test]
    fn debug_hides_secrets() {
        let credential = Credential::UserPassword {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let token = Credential::IdentityToken {
            username: String::new(),
            token: "refresh-abc".into(),
        };
        let shown = format!("{credential:?} {token:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("refresh-abc"));
    }
}
