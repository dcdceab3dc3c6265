//! `RUN --mount=...` specifications: comma-separated `key=value` fields,
//! read as one CSV record.

use serde::Serialize;

use super::suggest::nearest;
use super::values::{has_variable, parse_size};

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A read-only (by default) view of the build context or of another
    /// stage or image; the default type.
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// An empty in-memory file system.
    Tmpfs,
    /// A build secret as a file or an environment variable.
    Secret,
    /// Access to the client's SSH agent socket.
    Ssh,
}

impl MountType {
    const NAMES: [&'static str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

    /// Parses a mount type name (any case).
    ///
    /// # Errors
    ///
    /// Returns a message naming the value, with the nearest known type.
    pub(crate) fn parse(text: &str) -> Result<MountType, (String, Option<String>)> {
        match text.to_ascii_lowercase().as_str() {
            "bind" => Ok(MountType::Bind),
            "cache" => Ok(MountType::Cache),
            "tmpfs" => Ok(MountType::Tmpfs),
            "secret" => Ok(MountType::Secret),
            "ssh" => Ok(MountType::Ssh),
            _ => Err((
                format!("unsupported mount type `{text}`"),
                Some(suggestion(
                    text,
                    &Self::NAMES,
                    "use bind, cache, tmpfs, secret or ssh",
                )),
            )),
        }
    }

    /// Returns the type name in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// Sharing mode of a cache mount between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Several writers use the cache at once; the default.
    Shared,
    /// Each concurrent writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

impl Sharing {
    const NAMES: [&'static str; 3] = ["shared", "private", "locked"];

    fn parse(text: &str) -> Result<Sharing, (String, Option<String>)> {
        match text.to_ascii_lowercase().as_str() {
            "shared" => Ok(Sharing::Shared),
            "private" => Ok(Sharing::Private),
            "locked" => Ok(Sharing::Locked),
            _ => Err((
                format!("unsupported sharing value `{text}`"),
                Some(suggestion(
                    text,
                    &Self::NAMES,
                    "use shared, private or locked",
                )),
            )),
        }
    }
}

/// One `RUN --mount`, typed.
///
/// Path and name fields (`target`, `source`, `from`, `id`, `env`) may still
/// contain build variables for the builder to expand. Defaults that need no
/// build state are filled in:
///
/// - a secret's `id` comes from `source` or the base name of `target`, and
///   its `target` is `/run/secrets/<id>` unless `env` is set;
/// - an SSH mount's `id` is `default`;
/// - a cache mount's `id` is its cleaned target;
/// - `read_only` is true for bind, secret and ssh mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Mount type; `bind` when not given.
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Mount point in the container. A relative path is below the working
    /// directory. It is `None` only for SSH mounts (the builder picks a
    /// socket path) and for secrets exposed only through `env`.
    pub target: Option<String>,
    /// Path inside `from` (or the build context) to mount.
    pub source: Option<String>,
    /// Stage name or image to mount from; the build context when `None`.
    pub from: Option<String>,
    /// Whether the mount is read-only.
    pub read_only: bool,
    /// Cache, secret or SSH identifier.
    pub id: Option<String>,
    /// Sharing mode of a cache mount; `None` for other types.
    pub sharing: Option<Sharing>,
    /// Whether a missing secret or SSH agent fails the step.
    pub required: bool,
    /// Permission bits of the mount point or file. When `uid`, `gid` or
    /// `mode` is given the builder defaults `mode` to 0755 (cache), 0400
    /// (secret) or 0600 (ssh).
    pub mode: Option<u32>,
    /// Owner user ID of the mount point or file.
    pub uid: Option<u32>,
    /// Owner group ID of the mount point or file.
    pub gid: Option<u32>,
    /// Size limit of a tmpfs mount, in bytes.
    pub size: Option<u64>,
    /// Environment variable that receives a secret's value.
    pub env: Option<String>,
}

/// Every key a mount accepts, for suggestions.
const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
];

/// Why a mount specification was rejected: a message and a hint.
type Rejection = (String, Option<String>);

/// A mount specification that the builder could not type after expanding
/// its variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MountError {
    /// Message naming the offending field or value.
    pub message: String,
    /// How to fix it, when there is a likely fix.
    pub hint: Option<String>,
}

/// The outcome of reading a mount at parse time.
pub(crate) enum ParsedMount {
    /// Every value that needs a type was literal.
    Typed(Mount),
    /// A value that needs a type (such as `uid=$UID`) has a build variable.
    Deferred,
}

impl Mount {
    /// Types a mount specification whose variables were already expanded,
    /// such as `type=cache,target=/root/.cache,sharing=locked`. The builder
    /// calls this for a mount the parser kept unexpanded; `expand` receives
    /// each field value and returns it expanded.
    ///
    /// # Errors
    ///
    /// Returns the message and hint for an invalid field, value or
    /// combination.
    pub fn parse_expanded(
        spec: &str,
        expand: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<Mount, MountError> {
        match read(spec, Some(expand)) {
            Ok(ParsedMount::Typed(mount)) => Ok(mount),
            Ok(ParsedMount::Deferred) => Err(MountError {
                message: format!("mount `{spec}` still has unexpanded variables"),
                hint: None,
            }),
            Err((message, hint)) => Err(MountError { message, hint }),
        }
    }

    /// Reads a mount at parse time: values with build variables are kept
    /// as written where a string is expected, and make the whole mount
    /// [`ParsedMount::Deferred`] where a typed value is expected.
    pub(crate) fn parse_literal(spec: &str) -> Result<ParsedMount, Rejection> {
        read(spec, None)
    }
}

#[derive(Default)]
struct Fields {
    kind: Option<MountType>,
    target: Option<String>,
    source: Option<String>,
    from: Option<String>,
    read_only: Option<bool>,
    id: Option<String>,
    sharing: Option<Sharing>,
    required: Option<bool>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    env: Option<String>,
}

type Expander<'a> = Option<&'a mut dyn FnMut(&str) -> Result<String, String>>;

fn read(spec: &str, mut expand: Expander<'_>) -> Result<ParsedMount, Rejection> {
    let mut fields = Fields::default();
    let mut deferred = false;

    if spec.trim().is_empty() {
        return Err((
            "the mount specification is empty".to_string(),
            Some("write --mount=type=TYPE,target=/path".to_string()),
        ));
    }
    for field in split_csv(spec)? {
        if field.is_empty() {
            return Err((
                format!("invalid mount `{spec}`: empty field"),
                Some("remove the extra comma".to_string()),
            ));
        }
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_ascii_lowercase(), value.to_string()),
            None => {
                let key = field.to_ascii_lowercase();
                match key.as_str() {
                    "readonly" | "ro" => fields.read_only = Some(true),
                    "readwrite" | "rw" => fields.read_only = Some(false),
                    "required" => fields.required = Some(true),
                    _ if KEYS.contains(&key.as_str()) => {
                        return Err((
                            format!("mount field `{field}` needs a value"),
                            Some(format!("write {key}=VALUE")),
                        ));
                    }
                    _ => return Err(unknown_key(&key, &field)),
                }
                continue;
            }
        };

        if key == "from" && expand.is_none() && has_variable(&value) {
            return Err((
                format!("mount option `from={value}` does not support variable expansion"),
                Some(
                    "define a stage for the image (FROM image AS name) and use from=name"
                        .to_string(),
                ),
            ));
        }
        let value = match expand.as_mut() {
            Some(expand) => expand(&value).map_err(|message| (message, None))?,
            None => value,
        };
        let typed = !matches!(
            key.as_str(),
            "from" | "source" | "src" | "target" | "dst" | "destination" | "id" | "env"
        );
        if typed && expand.is_none() && has_variable(&value) {
            deferred = true;
            continue;
        }

        match key.as_str() {
            "type" => fields.kind = Some(MountType::parse(&value)?),
            "from" => fields.from = Some(value),
            "source" | "src" => fields.source = Some(value),
            "target" | "dst" | "destination" => fields.target = Some(value),
            "readonly" | "ro" => fields.read_only = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => fields.read_only = Some(!parse_bool(&key, &value)?),
            "required" => fields.required = Some(parse_bool(&key, &value)?),
            "id" => fields.id = Some(value),
            "sharing" => fields.sharing = Some(Sharing::parse(&value)?),
            "mode" => fields.mode = Some(parse_mode(&value)?),
            "uid" => fields.uid = Some(parse_id("uid", &value)?),
            "gid" => fields.gid = Some(parse_id("gid", &value)?),
            "size" => fields.size = Some(parse_size(&value).map_err(|message| (message, None))?),
            "env" => fields.env = Some(value),
            _ => return Err(unknown_key(&key, &field)),
        }
    }

    if deferred {
        return Ok(ParsedMount::Deferred);
    }
    finish(fields).map(ParsedMount::Typed)
}

/// Checks the combination of fields and fills in the defaults.
fn finish(fields: Fields) -> Result<Mount, Rejection> {
    let kind = fields.kind.unwrap_or(MountType::Bind);
    let name = kind.as_str();
    let not_for = |key: &str| {
        (
            format!("mount option `{key}` is not allowed for {name} mounts"),
            None,
        )
    };

    if !matches!(kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (key, given) in [
            ("mode", fields.mode.is_some()),
            ("uid", fields.uid.is_some()),
            ("gid", fields.gid.is_some()),
        ] {
            if given {
                return Err(not_for(key));
            }
        }
    }
    if fields.sharing.is_some() && kind != MountType::Cache {
        return Err(not_for("sharing"));
    }
    if fields.required.is_some() && !matches!(kind, MountType::Secret | MountType::Ssh) {
        return Err(not_for("required"));
    }
    if fields.size.is_some() && kind != MountType::Tmpfs {
        return Err(not_for("size"));
    }
    if fields.env.is_some() && kind != MountType::Secret {
        return Err(not_for("env"));
    }

    let mut mount = Mount {
        kind,
        target: fields.target,
        source: fields.source,
        from: fields.from,
        read_only: fields
            .read_only
            .unwrap_or(!matches!(kind, MountType::Cache | MountType::Tmpfs)),
        id: fields.id,
        sharing: fields.sharing,
        required: fields.required.unwrap_or(false),
        mode: fields.mode,
        uid: fields.uid,
        gid: fields.gid,
        size: fields.size,
        env: fields.env,
    };

    match kind {
        MountType::Bind | MountType::Tmpfs => {
            if mount.target.as_deref().is_none_or(str::is_empty) {
                return Err(missing_target(name));
            }
        }
        MountType::Cache => {
            let Some(target) = mount.target.as_deref().filter(|t| !t.is_empty()) else {
                return Err(missing_target(name));
            };
            if mount.id.is_none() {
                mount.id = Some(clean_path(target));
            }
            mount.sharing = Some(mount.sharing.unwrap_or(Sharing::Shared));
        }
        MountType::Secret => {
            if mount.from.is_some() {
                return Err(not_for("from"));
            }
            if mount.source.is_some() && mount.id.is_some() {
                return Err((
                    "a secret mount takes `id` or `source`, not both".to_string(),
                    Some("keep id=NAME".to_string()),
                ));
            }
            let id = mount
                .id
                .take()
                .or_else(|| mount.source.clone())
                .or_else(|| mount.target.as_deref().map(base_name));
            let Some(id) = id.filter(|id| !id.is_empty()) else {
                return Err((
                    "a secret mount needs an id or a target".to_string(),
                    Some("write type=secret,id=NAME".to_string()),
                ));
            };
            if mount.target.is_none() && mount.env.is_none() {
                mount.target = Some(format!("/run/secrets/{}", base_name(&id)));
            }
            mount.id = Some(id);
        }
        MountType::Ssh => {
            if mount.source.is_some() {
                return Err(not_for("source"));
            }
            if mount.id.is_none() {
                mount.id = Some("default".to_string());
            }
        }
    }
    Ok(mount)
}

fn missing_target(name: &str) -> Rejection {
    (
        format!("a {name} mount needs a target"),
        Some(format!("write type={name},target=/path/in/container")),
    )
}

fn unknown_key(key: &str, field: &str) -> Rejection {
    (
        format!("unknown mount option `{key}` in `{field}`"),
        Some(suggestion(key, KEYS, "see the RUN --mount options")),
    )
}

fn suggestion(value: &str, candidates: &[&str], otherwise: &str) -> String {
    match nearest(value, candidates) {
        Some(near) => format!("did you mean {near}?"),
        None => otherwise.to_string(),
    }
}

/// Parses a boolean as Go's `strconv.ParseBool` does.
fn parse_bool(key: &str, value: &str) -> Result<bool, Rejection> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err((
            format!("invalid value `{value}` for mount option `{key}`: expected true or false"),
            None,
        )),
    }
}

fn parse_mode(value: &str) -> Result<u32, Rejection> {
    let valid = !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    valid
        .then(|| u32::from_str_radix(value, 8).ok())
        .flatten()
        .ok_or_else(|| {
            (
                format!("invalid value `{value}` for mount option `mode`: expected an octal mode such as 0755"),
                None,
            )
        })
}

fn parse_id(key: &str, value: &str) -> Result<u32, Rejection> {
    value.parse::<u32>().map_err(|_| {
        (
            format!("invalid value `{value}` for mount option `{key}`: expected a number from 0 to 4294967295"),
            None,
        )
    })
}

/// Splits one CSV record as Go's `encoding/csv` reads it: fields separated
/// by commas, a field that starts with `"` is quoted and `""` inside it is
/// one quote.
fn split_csv(spec: &str) -> Result<Vec<String>, Rejection> {
    let invalid = |why: &str| {
        (
            format!("invalid mount `{spec}`: {why}"),
            Some("quote a field that contains commas as \"key=a,b\"".to_string()),
        )
    };
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(invalid("a quoted field is not closed")),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(invalid("text after a closing quote"));
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != ',') {
                if c == '"' {
                    return Err(invalid("a quote inside an unquoted field"));
                }
                field.push(c);
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            break;
        }
    }
    Ok(fields)
}

/// Returns the last element of a `/`-separated path, as Go's `path.Base`.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() {
            ".".to_string()
        } else {
            "/".to_string()
        };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// Cleans a `/`-separated path lexically, as Go's `path.Clean`.
pub(crate) fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(spec: &str) -> Mount {
        match Mount::parse_literal(spec) {
            Ok(ParsedMount::Typed(mount)) => mount,
            Ok(ParsedMount::Deferred) => panic!("{spec}: deferred"),
            Err((message, _)) => panic!("{spec}: {message}"),
        }
    }

    fn error(spec: &str) -> Rejection {
        match Mount::parse_literal(spec) {
            Ok(_) => panic!("{spec}: accepted"),
            Err(error) => error,
        }
    }

    #[test]
    fn bind_defaults() {
        let mount = typed("target=/src");
        assert_eq!(mount.kind, MountType::Bind);
        assert_eq!(mount.target.as_deref(), Some("/src"));
        assert!(mount.read_only);
        assert_eq!(mount.sharing, None);
    }

    #[test]
    fn bind_options() {
        let mount = typed("type=bind,source=app,from=build,dst=/app,rw");
        assert_eq!(mount.source.as_deref(), Some("app"));
        assert_eq!(mount.from.as_deref(), Some("build"));
        assert_eq!(mount.target.as_deref(), Some("/app"));
        assert!(!mount.read_only);
        assert!(typed("type=bind,target=/a,readwrite=false").read_only);
        assert!(!typed("type=bind,target=/a,ro=false").read_only);
        assert!(typed("type=bind,target=/a,readonly").read_only);
        assert!(!typed("type=BIND,target=/a,readonly=0").read_only);
    }

    #[test]
    fn cache_defaults() {
        let mount = typed("type=cache,target=/root/.cache/");
        assert_eq!(mount.kind, MountType::Cache);
        assert!(!mount.read_only);
        assert_eq!(mount.id.as_deref(), Some("/root/.cache"));
        assert_eq!(mount.sharing, Some(Sharing::Shared));
    }

    #[test]
    fn cache_options() {
        let mount = typed(
            "type=cache,id=apt,target=/var/cache/apt,sharing=LOCKED,mode=0700,uid=1000,gid=100,ro,from=base,source=/c",
        );
        assert_eq!(mount.id.as_deref(), Some("apt"));
        assert_eq!(mount.sharing, Some(Sharing::Locked));
        assert_eq!(mount.mode, Some(0o700));
        assert_eq!(mount.uid, Some(1000));
        assert_eq!(mount.gid, Some(100));
        assert!(mount.read_only);
        assert_eq!(mount.from.as_deref(), Some("base"));
        assert_eq!(mount.source.as_deref(), Some("/c"));
        assert_eq!(
            typed("type=cache,target=/c,sharing=private").sharing,
            Some(Sharing::Private)
        );
    }

    #[test]
    fn cache_rejects_bad_values() {
        let (message, hint) = error("type=cache,target=/c,sharing=lockd");
        assert!(message.contains("`lockd`"), "{message}");
        assert_eq!(hint.as_deref(), Some("did you mean locked?"));
        assert!(error("type=cache,target=/c,mode=0789").0.contains("`0789`"));
        assert!(error("type=cache,target=/c,mode=").0.contains("mode"));
        assert!(error("type=cache,target=/c,uid=-1").0.contains("`-1`"));
        assert!(error("type=cache,target=/c,gid=x").0.contains("`x`"));
        assert!(
            error("type=cache,target=/c,uid=4294967296")
                .0
                .contains("uid")
        );
        assert!(error("type=cache").0.contains("needs a target"));
    }

    #[test]
    fn tmpfs_size() {
        let mount = typed("type=tmpfs,target=/tmp,size=64m");
        assert_eq!(mount.kind, MountType::Tmpfs);
        assert_eq!(mount.size, Some(64 << 20));
        assert!(!mount.read_only);
        assert!(
            error("type=tmpfs,target=/tmp,size=lots")
                .0
                .contains("`lots`")
        );
        assert!(error("type=bind,target=/tmp,size=1m").0.contains("`size`"));
        assert!(error("type=tmpfs,target=/tmp,uid=1").0.contains("`uid`"));
    }

    #[test]
    fn secret_default_target() {
        let mount = typed("type=secret,id=aws");
        assert_eq!(mount.id.as_deref(), Some("aws"));
        assert_eq!(mount.target.as_deref(), Some("/run/secrets/aws"));
        assert!(mount.read_only);
        assert!(!mount.required);
    }

    #[test]
    fn secret_id_from_target_or_source() {
        let mount = typed("type=secret,target=/root/.npmrc,required");
        assert_eq!(mount.id.as_deref(), Some(".npmrc"));
        assert!(mount.required);
        let mount = typed("type=secret,source=token");
        assert_eq!(mount.id.as_deref(), Some("token"));
        assert_eq!(mount.target.as_deref(), Some("/run/secrets/token"));
    }

    #[test]
    fn secret_env_only() {
        let mount = typed("type=secret,id=token,env=TOKEN,required=true,mode=0440,uid=1,gid=2");
        assert_eq!(mount.env.as_deref(), Some("TOKEN"));
        assert_eq!(mount.target, None);
        assert_eq!(mount.mode, Some(0o440));
        assert!(mount.required);
    }

    #[test]
    fn secret_rejects_bad_combinations() {
        assert!(error("type=secret").0.contains("needs an id"));
        assert!(error("type=secret,id=a,source=b").0.contains("not both"));
        assert!(error("type=secret,id=a,from=b").0.contains("`from`"));
        assert!(
            error("type=secret,id=a,sharing=locked")
                .0
                .contains("`sharing`")
        );
        assert!(
            error("type=secret,id=a,required=maybe")
                .0
                .contains("`maybe`")
        );
        assert!(error("type=bind,target=/a,env=X").0.contains("`env`"));
    }

    #[test]
    fn ssh_defaults() {
        let mount = typed("type=ssh");
        assert_eq!(mount.id.as_deref(), Some("default"));
        assert_eq!(mount.target, None);
        let mount = typed("type=ssh,id=github,target=/agent.sock,required,mode=0600,uid=1000");
        assert_eq!(mount.id.as_deref(), Some("github"));
        assert_eq!(mount.target.as_deref(), Some("/agent.sock"));
        assert!(mount.required);
        assert_eq!(mount.mode, Some(0o600));
        assert!(error("type=ssh,source=x").0.contains("`source`"));
    }

    #[test]
    fn required_only_for_secret_and_ssh() {
        assert!(
            error("type=bind,target=/a,required")
                .0
                .contains("`required`")
        );
    }

    #[test]
    fn unknown_type_suggests() {
        let (message, hint) = error("type=cach,target=/a");
        assert!(message.contains("`cach`"), "{message}");
        assert_eq!(hint.as_deref(), Some("did you mean cache?"));
        let (_, hint) = error("type=volume,target=/a");
        assert_eq!(
            hint.as_deref(),
            Some("use bind, cache, tmpfs, secret or ssh")
        );
    }

    #[test]
    fn unknown_key_suggests() {
        let (message, hint) = error("type=cache,traget=/a");
        assert!(message.contains("`traget`"), "{message}");
        assert_eq!(hint.as_deref(), Some("did you mean target?"));
    }

    #[test]
    fn empty_spec_and_fields() {
        assert!(error("").0.contains("empty"));
        let (message, hint) = error("type=cache,target=/a,");
        assert!(message.contains("empty field"), "{message}");
        assert_eq!(hint.as_deref(), Some("remove the extra comma"));
    }

    #[test]
    fn bare_key_needs_value() {
        assert!(error("type=cache,target").0.contains("needs a value"));
    }

    #[test]
    fn variables_in_strings_stay() {
        let mount = typed("type=cache,id=$ID,target=${DIR}/cache");
        assert_eq!(mount.id.as_deref(), Some("$ID"));
        assert_eq!(mount.target.as_deref(), Some("${DIR}/cache"));
    }

    #[test]
    fn variables_in_typed_values_defer() {
        for spec in [
            "type=$T,target=/a",
            "type=cache,target=/a,uid=$UID",
            "type=cache,target=/a,sharing=${S}",
        ] {
            assert!(
                matches!(Mount::parse_literal(spec), Ok(ParsedMount::Deferred)),
                "{spec}"
            );
        }
    }

    #[test]
    fn from_rejects_variables() {
        let (message, hint) = error("type=bind,from=$IMAGE,target=/a");
        assert!(message.contains("from=$IMAGE"), "{message}");
        assert!(hint.is_some_and(|h| h.contains("AS name")));
    }

    #[test]
    fn parse_expanded_types_everything() {
        let mut expand = |value: &str| Ok(value.replace("$UID", "1000"));
        let mount = Mount::parse_expanded("type=cache,target=/a,uid=$UID", &mut expand).unwrap();
        assert_eq!(mount.uid, Some(1000));
        let mut fail = |_: &str| Err("boom".to_string());
        assert_eq!(
            Mount::parse_expanded("type=cache", &mut fail)
                .unwrap_err()
                .message,
            "boom"
        );
    }

    #[test]
    fn csv_quoting() {
        let mount = typed("type=bind,\"target=/a,b\",\"source=say \"\"hi\"\"\"");
        assert_eq!(mount.target.as_deref(), Some("/a,b"));
        assert_eq!(mount.source.as_deref(), Some("say \"hi\""));
        assert!(error("type=bind,target=/a\"b").0.contains("quote"));
        assert!(error("\"type=bind").0.contains("not closed"));
    }

    #[test]
    fn paths_clean() {
        assert_eq!(clean_path("/a/b/../c/"), "/a/c");
        assert_eq!(clean_path("a/./b"), "a/b");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path(""), ".");
        assert_eq!(base_name("/root/.npmrc"), ".npmrc");
        assert_eq!(base_name("dir/"), "dir");
    }
}
