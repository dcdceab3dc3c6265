//! `forge run` options and the container record made from them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use forge_cache::store::Store;
use serde_json::Value;

use crate::rootfs::RootView;

use super::RunnerError;
use super::names::{new_id, new_name};
use super::seed::seed_volume;
use super::state::{ContainerState, Containers, Limits, PortMapping, Status, VolumeMount, now};

/// Settings of `forge run`, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Image name, digest or id.
    pub image: String,
    /// Command and arguments after the image; replace the image's CMD.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's ENTRYPOINT and drops its CMD;
    /// an empty value clears the entrypoint.
    pub entrypoint: Option<String>,
    /// `-e NAME=VALUE`, or `-e NAME` to copy the value from forge's own
    /// environment.
    pub env: Vec<String>,
    /// `--env-file` contents: one `NAME=VALUE` per line, `#` comments.
    pub env_files: Vec<String>,
    /// `-w`: working directory.
    pub workdir: Option<String>,
    /// `-u`: user as `name`, `uid`, `name:group` or `uid:gid`.
    pub user: Option<String>,
    /// `--hostname`; the short id when unset.
    pub hostname: Option<String>,
    /// `--name`; a random `adjective_surname` when unset.
    pub name: Option<String>,
    /// `--rm`: remove the container when it exits.
    pub auto_remove: bool,
    /// `-i`: keep standard input open.
    pub interactive: bool,
    /// `-t`: give the command a terminal.
    pub tty: bool,
    /// `-v SOURCE:TARGET[:OPTIONS]` values.
    pub volumes: Vec<String>,
    /// `--network`: `default` (own namespace), `none` or `host`.
    pub network: String,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: publish every EXPOSE port on a random host port.
    pub publish_all: bool,
    /// `--cpuset-cpus`, `--cpus`, `--memory`, `--pids-limit`.
    pub limits: Limits,
}

/// Host folder or named volume of a `-v` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute host path.
    Host(PathBuf),
    /// A named volume under `forge/volumes/NAME`.
    Named(String),
    /// `-v /PATH` alone: a new volume of this container only, removed
    /// with it, as docker makes one.
    Anonymous,
}

/// A parsed `-v` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Host folder or named volume.
    pub source: VolumeSource,
    /// Absolute path in the container.
    pub target: String,
    /// `ro`: the container may only read.
    pub read_only: bool,
    /// `nocopy`: an empty named volume is not seeded with the image's
    /// files at the target.
    pub no_copy: bool,
}

/// Parses `-v SOURCE:TARGET[:OPTIONS]`, where OPTIONS is a comma-separated
/// list of `ro`, `rw` and `nocopy`. A source starting with `/` or `.` is a
/// host path (relative ones are made absolute); any other source is the
/// name of a volume. `-v TARGET` alone is an anonymous volume.
///
/// # Errors
///
/// [`RunnerError::Invalid`] naming the value and the expected form.
pub fn parse_volume(value: &str) -> Result<VolumeSpec, RunnerError> {
    let invalid = |reason: &str| RunnerError::Invalid {
        what: "volume",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = value.split(':').collect();
    if let [target] = parts.as_slice()
        && target.starts_with('/')
    {
        return Ok(VolumeSpec {
            source: VolumeSource::Anonymous,
            target: (*target).to_string(),
            read_only: false,
            no_copy: false,
        });
    }
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => {
            return Err(invalid(
                "expected HOST_PATH:CONTAINER_PATH[:ro], NAME:CONTAINER_PATH[:ro|nocopy] or \
                 an absolute CONTAINER_PATH alone",
            ));
        }
    };
    let mut read_only = None;
    let mut no_copy = false;
    for option in options.split(',').filter(|option| !option.is_empty()) {
        let option_read_only = match option {
            "ro" => true,
            "rw" => false,
            "nocopy" => {
                no_copy = true;
                continue;
            }
            other => {
                return Err(invalid(&format!(
                    "unknown option `{other}`; use `ro`, `rw` or `nocopy`"
                )));
            }
        };
        if read_only.is_some_and(|set| set != option_read_only) {
            return Err(invalid("`ro` and `rw` exclude each other; keep one"));
        }
        read_only = Some(option_read_only);
    }
    let read_only = read_only.unwrap_or(false);
    if !target.starts_with('/') {
        return Err(invalid("the container path must be absolute"));
    }
    if source.is_empty() {
        return Err(invalid("the source is empty"));
    }
    let source = if source.starts_with('/') || source.starts_with('.') {
        let path = Path::new(source);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(&format!("cannot read the current folder: {e}")))?
                .join(path)
        };
        if no_copy {
            return Err(invalid(
                "`nocopy` applies only to named volumes, and a host folder is never filled \
                 from the image; drop `nocopy`",
            ));
        }
        VolumeSource::Host(absolute)
    } else {
        let valid = source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(invalid(
                "a volume name may contain only letters, digits, `_`, `.` and `-`; start host \
                 paths with `/` or `./`",
            ));
        }
        VolumeSource::Named(source.to_string())
    };
    Ok(VolumeSpec {
        source,
        target: target.to_string(),
        read_only,
        no_copy,
    })
}

/// Parses `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`. Without an IP
/// the host side listens on 127.0.0.1; without a host port it gets a
/// random free port (shown as 0 until the container starts).
///
/// # Errors
///
/// [`RunnerError::Invalid`] naming the value and the expected form.
pub fn parse_port(value: &str) -> Result<PortMapping, RunnerError> {
    let invalid = |reason: &str| RunnerError::Invalid {
        what: "port mapping",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (ports, protocol) = match value.rsplit_once('/') {
        Some((ports, protocol)) => (ports, protocol.to_ascii_lowercase()),
        None => (value, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(invalid("the protocol must be `tcp` or `udp`"));
    }
    let port = |text: &str| -> Result<u16, RunnerError> {
        text.parse::<u16>()
            .map_err(|_| invalid(&format!("`{text}` is not a port number from 0 to 65535")))
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [container] => ("127.0.0.1", 0, port(container)?),
        [host, container] => ("127.0.0.1", port(host)?, port(container)?),
        [ip, host, container] => {
            let host = if host.is_empty() { 0 } else { port(host)? };
            (*ip, host, port(container)?)
        }
        _ => {
            return Err(invalid(
                "expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]",
            ));
        }
    };
    if container_port == 0 {
        return Err(invalid("the container port must not be 0"));
    }
    if host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(&format!("`{host_ip}` is not an IP address")));
    }
    Ok(PortMapping {
        host_ip: host_ip.to_string(),
        host_port,
        container_port,
        protocol,
    })
}

/// Parses a `--memory` value: bytes with an optional `b`, `k`, `m` or `g`
/// suffix (powers of 1024).
///
/// # Errors
///
/// [`RunnerError::Invalid`] naming the value.
pub fn parse_memory(value: &str) -> Result<u64, RunnerError> {
    let lower = value.trim().to_ascii_lowercase();
    let (digits, factor) = match lower.char_indices().last() {
        Some((at, 'b')) => (&lower[..at], 1u64),
        Some((at, 'k')) => (&lower[..at], 1 << 10),
        Some((at, 'm')) => (&lower[..at], 1 << 20),
        Some((at, 'g')) => (&lower[..at], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(factor))
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| RunnerError::Invalid {
            what: "--memory",
            value: value.to_string(),
            reason: "expected a positive size such as 64m, 1g or 500000 (bytes)".to_string(),
        })
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Merges `NAME=VALUE` (or `NAME`, copied from forge's environment) into
/// `env`, replacing an earlier value of the same name.
fn set_env(env: &mut Vec<(String, String)>, entry: &str) {
    let (name, value) = match entry.split_once('=') {
        Some((name, value)) => (name.to_string(), value.to_string()),
        None => match std::env::var(entry) {
            Ok(value) => (entry.to_string(), value),
            Err(_) => return,
        },
    };
    match env.iter_mut().find(|(existing, _)| *existing == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Loads the image, unpacks its layers and writes a new container record
/// with status [`Status::Created`], its upper and work folders and its
/// volumes.
///
/// # Errors
///
/// [`RunnerError::Image`] when the image is missing or cannot be unpacked,
/// [`RunnerError::Invalid`] for an invalid option, [`RunnerError::NameInUse`]
/// when `--name` is taken, [`RunnerError::Io`] when a folder cannot be made.
pub fn create(store: &Store, options: &RunOptions) -> Result<ContainerState, RunnerError> {
    let image_error = |source: crate::BuildError| RunnerError::Image {
        image: options.image.clone(),
        source: Box::new(source),
    };
    let image = crate::image::load_image(store, &options.image).map_err(image_error)?;
    let mut lowers: Vec<PathBuf> = Vec::new();
    for layer in image.state.layers.iter().rev() {
        let path = crate::sandbox::unpack_layer_ref(store, layer).map_err(image_error)?;
        let path = fs::canonicalize(&path)
            .map_err(|source| RunnerError::io("resolve the path", &path, source))?;
        if !lowers.contains(&path) {
            lowers.push(path);
        }
    }
    let config = &image.state.config.config;

    // ENTRYPOINT and CMD as docker combines them.
    let (entrypoint, default_cmd) = match &options.entrypoint {
        Some(entrypoint) if entrypoint.is_empty() => (Vec::new(), Vec::new()),
        Some(entrypoint) => (vec![entrypoint.clone()], Vec::new()),
        None => (
            strings(config.get("Entrypoint")),
            strings(config.get("Cmd")),
        ),
    };
    let mut argv = entrypoint;
    if options.command.is_empty() {
        argv.extend(default_cmd);
    } else {
        argv.extend(options.command.iter().cloned());
    }
    if argv.is_empty() {
        return Err(RunnerError::Invalid {
            what: "command",
            value: String::new(),
            reason: format!(
                "image `{}` has no ENTRYPOINT or CMD; give a command after the image name",
                options.image
            ),
        });
    }

    let containers = Containers::new(store.root());
    let existing = containers.list()?;
    let taken: Vec<String> = existing.iter().map(|state| state.name.clone()).collect();
    let name = match &options.name {
        Some(name) => {
            if !valid_name(name) {
                return Err(RunnerError::Invalid {
                    what: "--name",
                    value: name.clone(),
                    reason: "use letters, digits, `_`, `.` and `-`, starting with a letter or \
                             digit"
                        .to_string(),
                });
            }
            if let Some(other) = existing.iter().find(|state| state.name == *name) {
                return Err(RunnerError::NameInUse {
                    name: name.clone(),
                    id: other.short_id().to_string(),
                });
            }
            name.clone()
        }
        None => new_name(&taken),
    };
    let id = new_id();
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());

    let mut env: Vec<(String, String)> = Vec::new();
    for entry in strings(config.get("Env")) {
        set_env(&mut env, &entry);
    }
    if !env.iter().any(|(name, _)| name == "HOSTNAME") {
        env.push(("HOSTNAME".to_string(), hostname.clone()));
    }
    for file in &options.env_files {
        for line in file.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                set_env(&mut env, line);
            }
        }
    }
    for entry in &options.env {
        set_env(&mut env, entry);
    }
    // Docker sets TERM for `-t` unless the image or the options set it.
    if options.tty && !env.iter().any(|(name, _)| name == "TERM") {
        env.push(("TERM".to_string(), "xterm".to_string()));
    }

    let network = match options.network.as_str() {
        "" | "default" | "bridge" => "default",
        "none" => "none",
        "host" => "host",
        other => {
            return Err(RunnerError::Invalid {
                what: "--network",
                value: other.to_string(),
                reason: "use `default`, `none` or `host`".to_string(),
            });
        }
    };
    let mut ports = options
        .publish
        .iter()
        .map(|value| parse_port(value))
        .collect::<Result<Vec<_>, _>>()?;
    if options.publish_all {
        if let Some(exposed) = config.get("ExposedPorts").and_then(Value::as_object) {
            for key in exposed.keys() {
                let mapping = parse_port(key)?;
                if !ports.iter().any(|p| {
                    p.container_port == mapping.container_port && p.protocol == mapping.protocol
                }) {
                    ports.push(mapping);
                }
            }
        }
    }
    if !ports.is_empty() && network != "default" {
        return Err(RunnerError::Invalid {
            what: "--network",
            value: network.to_string(),
            reason: "published ports need the container's own network; drop -p/-P or use \
                     --network default"
                .to_string(),
        });
    }

    let dir = containers.dir(&id);
    let mut volumes = Vec::new();
    // Whether each volume gets the image's files at its target when empty.
    let mut seeded = Vec::new();
    for (index, value) in options.volumes.iter().enumerate() {
        let spec = parse_volume(value)?;
        let (source, seed) = match spec.source {
            VolumeSource::Host(path) => (path, false),
            // Named apart from the image's anonymous volumes (`volumes/N`),
            // and created with the container like them.
            VolumeSource::Anonymous => (dir.join("volumes").join(format!("v{index}")), true),
            VolumeSource::Named(name) => {
                let path = containers.volume_dir(&name);
                fs::create_dir_all(&path)
                    .map_err(|source| RunnerError::io("create volume", &path, source))?;
                (path, !spec.no_copy)
            }
        };
        volumes.push(VolumeMount {
            source,
            target: spec.target,
            read_only: spec.read_only,
        });
        seeded.push(seed);
    }
    if let Some(paths) = config.get("Volumes").and_then(Value::as_object) {
        for (index, target) in paths.keys().enumerate() {
            if volumes.iter().any(|volume| volume.target == *target) {
                continue;
            }
            volumes.push(VolumeMount {
                source: dir.join("volumes").join(index.to_string()),
                target: target.clone(),
                read_only: false,
            });
            seeded.push(true);
        }
    }

    let state = ContainerState {
        id: id.clone(),
        name,
        image: options.image.clone(),
        image_digest: image.manifest_digest.clone(),
        created: now(),
        argv,
        env,
        workdir: options.workdir.clone().unwrap_or_else(|| {
            config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .filter(|dir| !dir.is_empty())
                .unwrap_or("/")
                .to_string()
        }),
        user: options.user.clone().unwrap_or_else(|| {
            config
                .get("User")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        }),
        hostname,
        stop_signal: config
            .get("StopSignal")
            .and_then(Value::as_str)
            .unwrap_or("SIGTERM")
            .to_string(),
        network: network.to_string(),
        ports,
        volumes,
        lowers,
        limits: options.limits.clone(),
        auto_remove: options.auto_remove,
        tty: options.tty,
        interactive: options.interactive,
        status: Status::Created,
        supervisor: None,
        init_pid: None,
        started_at: None,
        finished_at: None,
        exit_code: None,
        error: None,
        cgroups: Vec::new(),
    };

    for folder in [dir.join("upper"), dir.join("work")] {
        fs::create_dir_all(&folder).map_err(|source| RunnerError::io("create", &folder, source))?;
    }
    for volume in &state.volumes {
        if volume.source.starts_with(&dir) {
            fs::create_dir_all(&volume.source)
                .map_err(|source| RunnerError::io("create volume", &volume.source, source))?;
            fs::set_permissions(&volume.source, fs::Permissions::from_mode(0o755))
                .map_err(|source| RunnerError::io("set the mode of", &volume.source, source))?;
        }
    }
    let image_root = RootView::new(state.lowers.clone());
    for (volume, seed) in state.volumes.iter().zip(seeded) {
        if !seed {
            continue;
        }
        if let Err(error) = seed_volume(&image_root, &volume.target, &volume.source) {
            if let Err(cleanup) = fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %cleanup, "failed to remove the container folder");
            }
            return Err(error);
        }
    }
    containers.save(&state)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_forms() {
        let spec = parse_volume("/data:/srv:ro").unwrap();
        assert_eq!(spec.source, VolumeSource::Host(PathBuf::from("/data")));
        assert_eq!(spec.target, "/srv");
        assert!(spec.read_only);
        assert!(!spec.no_copy);
        let spec = parse_volume("cache:/var/cache").unwrap();
        assert_eq!(spec.source, VolumeSource::Named("cache".to_string()));
        assert!(!spec.read_only);
        let spec = parse_volume("./here:/x").unwrap();
        assert!(matches!(spec.source, VolumeSource::Host(path) if path.is_absolute()));
        let spec = parse_volume("/scratch").unwrap();
        assert_eq!(spec.source, VolumeSource::Anonymous);
        assert_eq!(spec.target, "/scratch");
        assert!(!spec.read_only);
    }

    #[test]
    fn volume_nocopy_option() {
        let spec = parse_volume("cache:/var/cache:nocopy").unwrap();
        assert!(spec.no_copy);
        assert!(!spec.read_only);
        let spec = parse_volume("cache:/var/cache:ro,nocopy").unwrap();
        assert!(spec.no_copy);
        assert!(spec.read_only);
        let error = parse_volume("/host:/x:nocopy").unwrap_err().to_string();
        assert!(error.contains("only to named volumes"), "{error}");
    }

    #[test]
    fn volume_errors_name_the_value() {
        for value in [
            "rel",
            "/a:rel",
            "/a:/b:rx",
            "/a:/b:ro,rw",
            "bad name:/x",
            ":/x",
        ] {
            let error = parse_volume(value).unwrap_err().to_string();
            assert!(error.contains(&format!("`{value}`")), "{error}");
        }
    }

    #[test]
    fn port_forms() {
        let mapping = parse_port("8080:80").unwrap();
        assert_eq!(mapping.display(), "127.0.0.1:8080->80/tcp");
        let mapping = parse_port("0.0.0.0:9000:90/udp").unwrap();
        assert_eq!(mapping.display(), "0.0.0.0:9000->90/udp");
        let mapping = parse_port("53").unwrap();
        assert_eq!(mapping.host_port, 0);
        let mapping = parse_port("127.0.0.1::80").unwrap();
        assert_eq!(mapping.host_port, 0);
        assert_eq!(mapping.container_port, 80);
    }

    #[test]
    fn port_errors() {
        for value in ["80/sctp", "x:80", "1:2:3:4", "8080:0", "host:80:80"] {
            assert!(parse_port(value).is_err(), "{value}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert_eq!(parse_memory("10k").unwrap(), 10 << 10);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("0").is_err());
    }

    #[test]
    fn env_merge_replaces() {
        let mut env = vec![("A".to_string(), "1".to_string())];
        set_env(&mut env, "A=2");
        set_env(&mut env, "B=x=y");
        assert_eq!(
            env,
            vec![
                ("A".to_string(), "2".to_string()),
                ("B".to_string(), "x=y".to_string())
            ]
        );
    }
}
