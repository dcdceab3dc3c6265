//! Docker configuration files and credential helpers, with a temporary
//! `DOCKER_CONFIG` and a shell-script helper on `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use forge_registry::credentials::{DOCKER_HUB_KEY, default_config_path};
use forge_registry::{Credential, CredentialError, DockerConfig};
use serde_json::{Value, json};

/// Every test here changes or reads process-wide environment variables
/// (`PATH`, `DOCKER_CONFIG`, `HOME`), so they run one at a time.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Holds the environment lock and restores the variables it changed.
struct EnvGuard {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn new() -> EnvGuard {
        EnvGuard {
            saved: Vec::new(),
            _lock: ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    // Changing the environment is `unsafe` since Rust 2024.
    #[allow(unsafe_code)]
    fn set(&mut self, name: &'static str, value: Option<&std::ffi::OsStr>) {
        self.saved.push((name, std::env::var_os(name)));
        // SAFETY: every test in this binary locks ENV_LOCK while it touches
        // the environment or spawns processes, so no other thread reads the
        // environment during this call.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

impl Drop for EnvGuard {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for (name, value) in self.saved.drain(..).rev() {
            // SAFETY: as in `set`, the lock is still held.
            unsafe {
                match value {
                    Some(value) => std::env::set_var(name, value),
                    None => std::env::remove_var(name),
                }
            }
        }
    }
}

fn write_config(dir: &Path, value: &Value) -> PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap_or_default())
        .unwrap_or_else(|e| panic!("write config: {e}"));
    path
}

fn load(path: &Path) -> DockerConfig {
    DockerConfig::load_from(path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

fn basic(user_password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(user_password)
}

fn user_password(username: &str, password: &str) -> Credential {
    Credential::UserPassword {
        username: username.into(),
        password: password.into(),
    }
}

/// Writes `docker-credential-NAME` into `bin`: it keeps one file per server
/// in `store` and replies as Docker's helpers do.
fn install_helper(bin: &Path, name: &str, store: &Path) {
    let script = format!(
        r#"#!/bin/sh
store='{store}'
key() {{ printf %s "$1" | od -An -tx1 | tr -d ' \n'; }}
case "$1" in
  get)
    server=$(cat)
    f="$store/$(key "$server")"
    if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store)
    input=$(cat)
    server=$(printf %s "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf %s "$input" > "$store/$(key "$server")"
    echo "$1" >> "$store/calls" ;;
  erase)
    server=$(cat)
    f="$store/$(key "$server")"
    echo "$1" >> "$store/calls"
    if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) echo "unknown command $1"; exit 1 ;;
esac
"#,
        store = store.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("write helper: {e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod helper: {e}"));
    }
}

/// Puts a fresh helper directory first on PATH; returns (bin, store).
fn helper_on_path(env: &mut EnvGuard, root: &Path, name: &str) -> (PathBuf, PathBuf) {
    let bin = root.join("bin");
    let store = root.join("store");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&store).unwrap_or_else(|e| panic!("{e}"));
    install_helper(&bin, name, &store);
    let mut paths = vec![bin.clone()];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    let joined = std::env::join_paths(paths).unwrap_or_else(|e| panic!("{e}"));
    env.set("PATH", Some(&joined));
    (bin, store)
}

#[test]
fn auths_entries_are_read() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(
        dir.path(),
        &json!({
            "auths": {
                "localhost:5000": {"auth": basic("alice:pa:ss")},
                "fields.example": {"username": "bob", "password": "pw"},
                "token.example": {"auth": basic("carol:"), "identitytoken": "refresh-1"},
                DOCKER_HUB_KEY: {"auth": basic("hubuser:hubpass")},
                "http://legacy.example:5000/v1/": {"auth": basic("dave:old")},
                "empty.example": {},
            }
        }),
    );

    let config = load(&path);
    let get = |registry: &str| {
        config
            .get(registry)
            .unwrap_or_else(|e| panic!("get {registry}: {e}"))
    };

    assert_eq!(get("localhost:5000"), Some(user_password("alice", "pa:ss")));
    assert_eq!(get("fields.example"), Some(user_password("bob", "pw")));
    assert_eq!(
        get("token.example"),
        Some(Credential::IdentityToken {
            username: "carol".into(),
            token: "refresh-1".into()
        })
    );
    assert_eq!(get("docker.io"), Some(user_password("hubuser", "hubpass")));
    assert_eq!(
        get("legacy.example:5000"),
        Some(user_password("dave", "old"))
    );
    assert_eq!(get("empty.example"), None);
    assert_eq!(get("unknown.example"), None);
}

#[test]
fn invalid_auth_names_entry() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(
        dir.path(),
        &json!({"auths": {"bad.example": {"auth": "%%%not-base64"}}}),
    );
    let error = load(&path).get("bad.example").err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("`bad.example`"), "{message}");
    assert!(message.contains("not valid base64"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn malformed_file_is_reported() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{not json").unwrap_or_else(|e| panic!("{e}"));
    let error = DockerConfig::load_from(&path).err();
    assert!(
        matches!(error, Some(CredentialError::InvalidConfig { .. })),
        "{error:?}"
    );
    let path = write_config(dir.path(), &json!({"auths": []}));
    let message = DockerConfig::load_from(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("`auths` must be an object"), "{message}");
}

#[test]
fn missing_file_is_empty() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = load(&dir.path().join("absent").join("config.json"));
    assert_eq!(config.get("docker.io").ok().flatten(), None);
}

#[test]
fn config_path_follows_environment() {
    let mut env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    env.set("DOCKER_CONFIG", Some(dir.path().as_os_str()));
    assert_eq!(
        default_config_path().ok(),
        Some(dir.path().join("config.json"))
    );

    write_config(
        dir.path(),
        &json!({"auths": {"r.example": {"auth": basic("u:p")}}}),
    );
    let config = DockerConfig::load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.get("r.example").ok().flatten(),
        Some(user_password("u", "p"))
    );

    env.set("DOCKER_CONFIG", None);
    env.set("HOME", Some(dir.path().as_os_str()));
    assert_eq!(
        default_config_path().ok(),
        Some(dir.path().join(".docker").join("config.json"))
    );
    env.set("HOME", None);
    assert!(matches!(
        default_config_path(),
        Err(CredentialError::NoConfigDir)
    ));
}

#[test]
fn store_keeps_other_keys() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let original = json!({
        "auths": {"other.example": {"auth": basic("x:y")}},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "experimental": "enabled",
    });
    let path = write_config(dir.path(), &original);

    let mut config = load(&path);
    config
        .store("localhost:5000", &user_password("alice", "secret"))
        .unwrap_or_else(|e| panic!("store: {e}"));

    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("written JSON: {e}"));
    assert_eq!(written["psFormat"], original["psFormat"]);
    assert_eq!(written["proxies"], original["proxies"]);
    assert_eq!(written["experimental"], original["experimental"]);
    assert_eq!(
        written["auths"]["other.example"],
        original["auths"]["other.example"]
    );
    assert_eq!(
        written["auths"]["localhost:5000"]["auth"],
        basic("alice:secret").as_str()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        leftovers,
        vec![OsString::from("config.json")],
        "no temporary file is left"
    );

    let reloaded = load(&path);
    assert_eq!(
        reloaded.get("localhost:5000").ok().flatten(),
        Some(user_password("alice", "secret"))
    );

    let mut reloaded = reloaded;
    let removed = reloaded
        .erase("localhost:5000")
        .unwrap_or_else(|e| panic!("erase: {e}"));
    assert!(removed);
    let after = load(&path);
    assert_eq!(after.get("localhost:5000").ok().flatten(), None);
    assert_eq!(
        after.get("other.example").ok().flatten(),
        Some(user_password("x", "y"))
    );
    let erased_again = load(&path)
        .erase("localhost:5000")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!erased_again);
}

#[test]
fn store_replaces_legacy_key() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(
        dir.path(),
        &json!({"auths": {"https://reg.example/v1/": {"auth": basic("old:old")}}}),
    );
    let mut config = load(&path);
    config
        .store("reg.example", &user_password("new", "new"))
        .unwrap_or_else(|e| panic!("{e}"));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(written["auths"].get("https://reg.example/v1/").is_none());
    assert_eq!(
        load(&path).get("reg.example").ok().flatten(),
        Some(user_password("new", "new"))
    );
}

#[test]
fn cred_helper_per_registry() {
    let mut env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_bin, store) = helper_on_path(&mut env, dir.path(), "forgetest");
    let path = write_config(
        dir.path(),
        &json!({
            "credHelpers": {"helped.example:5000": "forgetest"},
            "auths": {"plain.example": {"auth": basic("p:q")}},
        }),
    );

    let mut config = load(&path);
    assert_eq!(
        config.helper_for("helped.example:5000").as_deref(),
        Some("forgetest")
    );
    assert_eq!(config.helper_for("plain.example"), None);
    assert_eq!(config.get("helped.example:5000").ok().flatten(), None);

    config
        .store(
            "helped.example:5000",
            &user_password("helen", "from-helper"),
        )
        .unwrap_or_else(|e| panic!("store: {e}"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        !text.contains("from-helper"),
        "the secret stays in the helper: {text}"
    );
    let written: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written["auths"]["helped.example:5000"], json!({}));
    assert_eq!(written["credHelpers"]["helped.example:5000"], "forgetest");

    let config = load(&path);
    assert_eq!(
        config.get("helped.example:5000").ok().flatten(),
        Some(user_password("helen", "from-helper"))
    );
    assert_eq!(
        config.get("plain.example").ok().flatten(),
        Some(user_password("p", "q"))
    );

    let mut config = config;
    assert!(
        config
            .erase("helped.example:5000")
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(load(&path).get("helped.example:5000").ok().flatten(), None);
    let calls = std::fs::read_to_string(store.join("calls")).unwrap_or_default();
    assert_eq!(calls.lines().collect::<Vec<_>>(), vec!["store", "erase"]);
}

#[test]
fn creds_store_serves_docker_hub() {
    let mut env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_bin, store) = helper_on_path(&mut env, dir.path(), "forgestore");
    let path = write_config(dir.path(), &json!({"credsStore": "forgestore"}));

    // A token stored through the helper uses the `<token>` user name.
    let mut config = load(&path);
    let token = Credential::IdentityToken {
        username: String::new(),
        token: "refresh-xyz".into(),
    };
    config
        .store("docker.io", &token)
        .unwrap_or_else(|e| panic!("store: {e}"));
    let stored: Vec<String> = std::fs::read_dir(&store)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name() != "calls")
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].contains(r#""ServerURL":"https://index.docker.io/v1/""#),
        "{}",
        stored[0]
    );
    assert!(
        stored[0].contains(r#""Username":"<token>""#),
        "{}",
        stored[0]
    );

    assert_eq!(load(&path).get("docker.io").ok().flatten(), Some(token));
}

#[test]
fn missing_helper_is_reported() {
    let mut env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    env.set("PATH", Some(dir.path().as_os_str()));
    let path = write_config(dir.path(), &json!({"credsStore": "forge-absent"}));
    let error = load(&path).get("docker.io").err();
    let message = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(error, Some(CredentialError::HelperSpawn { .. })),
        "{message}"
    );
    assert!(
        message.contains("docker-credential-forge-absent"),
        "{message}"
    );
    assert!(message.contains("credsStore"), "{message}");
}

#[test]
fn config_debug_hides_secrets() {
    let _env = EnvGuard::new();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(
        dir.path(),
        &json!({"auths": {"r.example": {"auth": basic("u:topsecret")}}}),
    );
    let config = load(&path);
    let shown = format!("{config:?} {:?}", config.get("r.example").ok().flatten());
    assert!(!shown.contains("topsecret"), "{shown}");
    assert!(!shown.contains(&basic("u:topsecret")), "{shown}");
}
