//! ADD of Git repositories, as BuildKit's Dockerfile frontend reads them.
//!
//! [`parse`] splits a source such as `https://host/repo.git#v1:docs` into the
//! remote, the ref and the subdirectory. [`resolve`] turns the ref into a
//! commit id with `git ls-remote` while the plan is made, so the step's cache
//! key contains the commit and a cache hit needs no clone. [`checkout`]
//! fetches that commit when the step runs and [`tree_entries`] lists the
//! checked-out files as plan entries.
//!
//! Every `git` command runs on the host without system or global
//! configuration (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`),
//! with `HOME` set to an empty folder and without a terminal prompt
//! (`GIT_TERMINAL_PROMPT=0`). Inherited `GIT_*` variables are removed, except
//! the SSH command. Only the `git`, `http`, `https` and `ssh` transports are
//! allowed (`GIT_ALLOW_PROTOCOL`), so submodule URLs cannot run `ext::`
//! commands. `HOME` needs no exception for SSH: OpenSSH reads `~/.ssh` from
//! the user's passwd entry, not from `HOME`, and the agent comes through
//! `SSH_AUTH_SOCK`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::mode::ModeSpec;
use super::{Content, CopyError, Entry, Kind};

/// Query keys of the `?ref=...&subdir=...` form that forge reads.
const QUERY_KEYS: [&str; 6] = ["ref", "tag", "branch", "subdir", "keep-git-dir", "checksum"];

/// How often a running `git` is checked for its exit and for Ctrl-C.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A folder that is removed with its content when the last reference to it
/// is dropped: the temporary folder of the Git sources of one step.
#[derive(Debug, PartialEq, Eq)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Takes ownership of the existing, empty folder `path`.
    pub fn adopt(path: PathBuf) -> ScratchDir {
        ScratchDir { path }
    }

    /// Returns the folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a folder under the system's temporary folder, for plans made
    /// without a store.
    pub(crate) fn create_in_system_temp() -> Result<ScratchDir, std::io::Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let path = std::env::temp_dir().join(format!(
                "forge-git-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the Git work folder");
        }
    }
}

/// A Git source split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitAddress {
    /// The repository address handed to `git`, without fragment or query.
    pub(crate) remote: String,
    /// The branch, tag, full ref name or commit id; `None` means `HEAD`.
    pub(crate) reference: Option<String>,
    /// The folder of the repository to copy, cleaned, empty for the root.
    pub(crate) subdir: Vec<String>,
    /// `keep-git-dir=true` in the query.
    pub(crate) keep_git_dir: bool,
    /// `checksum=` in the query.
    pub(crate) checksum: Option<String>,
}

impl GitAddress {
    /// Returns the ref for messages.
    pub(crate) fn reference_text(&self) -> &str {
        self.reference.as_deref().unwrap_or("HEAD")
    }
}

/// A ref resolved to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The commit id in lowercase hex.
    pub(crate) commit: String,
    /// The full ref name the commit came from, such as `refs/heads/main`;
    /// `None` when the source named a commit id.
    pub(crate) ref_name: Option<String>,
}

/// The environment of the `git` commands of one source.
#[derive(Debug, Clone)]
pub(crate) struct GitEnv {
    /// Empty folder used as `HOME`.
    pub(crate) home: PathBuf,
    /// The agent socket from `forge build --ssh default`; the environment's
    /// `SSH_AUTH_SOCK` when `None`.
    pub(crate) ssh_auth_sock: Option<PathBuf>,
}

/// Splits a Git source into remote, ref, subdirectory and query options.
///
/// The ref and subdirectory come from a `#REF:SUBDIR` fragment or from the
/// query keys `ref`, `tag`, `branch` and `subdir`. The query may also set
/// `keep-git-dir` and `checksum`. A plain `http://` remote is accepted
/// only for a loopback host or a host in `plain_http_hosts`.
pub(crate) fn parse(source: &str, plain_http_hosts: &[String]) -> Result<GitAddress, CopyError> {
    let invalid = |reason: String| CopyError::Git {
        url: redact(source),
        reference: "HEAD".to_string(),
        reason,
    };
    let (base, fragment) = match source.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (source, None),
    };
    let (remote, query) = match base.split_once('?') {
        Some((remote, query)) => (remote, Some(query)),
        None => (base, None),
    };
    if remote.is_empty() || remote.starts_with('-') {
        return Err(invalid(
            "the repository address is empty or starts with `-`".into(),
        ));
    }

    let mut reference = None;
    let mut subdir = None;
    if let Some(fragment) = fragment {
        let (name, folder) = match fragment.split_once(':') {
            Some((name, folder)) => (name, Some(folder)),
            None => (fragment, None),
        };
        if !name.is_empty() {
            reference = Some(name.to_string());
        }
        subdir = folder.map(str::to_string);
    }

    let mut keep_git_dir = false;
    let mut checksum = None;
    if let Some(query) = query {
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !QUERY_KEYS.contains(&key) {
                return Err(invalid(format!(
                    "unknown query key `{key}`; use {}",
                    QUERY_KEYS.join(", ")
                )));
            }
            if values.insert(key, value).is_some() {
                return Err(invalid(format!("the query sets `{key}` twice")));
            }
        }
        let query_refs: Vec<String> = [
            values.get("ref").map(|name| (*name).to_string()),
            values.get("tag").map(|name| format!("refs/tags/{name}")),
            values
                .get("branch")
                .map(|name| format!("refs/heads/{name}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if query_refs.len() + usize::from(reference.is_some()) > 1 {
            return Err(invalid(
                "the ref is given more than once; use one of `#REF`, `ref=`, `tag=` or `branch=`"
                    .into(),
            ));
        }
        if let Some(name) = query_refs.into_iter().next() {
            reference = Some(name);
        }
        if let Some(folder) = values.get("subdir") {
            if subdir.is_some() {
                return Err(invalid(
                    "the subdirectory is given both in `#REF:SUBDIR` and in `subdir=`".into(),
                ));
            }
            subdir = Some((*folder).to_string());
        }
        keep_git_dir = match values.get("keep-git-dir").copied() {
            None | Some("false") => false,
            Some("" | "true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "invalid keep-git-dir value `{other}`; use true or false"
                )));
            }
        };
        checksum = values.get("checksum").map(|value| (*value).to_string());
    }
    if let Some(name) = &reference
        && (name.starts_with('-')
            || name
                .chars()
                .any(|letter| letter.is_control() || letter == ' '))
    {
        return Err(invalid(format!(
            "invalid ref `{name}`: a ref cannot start with `-` or contain spaces"
        )));
    }

    if let Some(rest) = remote.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        if !is_loopback_host(host) && !plain_http_hosts.iter().any(|allowed| allowed == host) {
            return Err(invalid(format!(
                "plain http:// is allowed only for loopback hosts; use https://, or pass \
                 --insecure-registry {host} to allow `{host}`"
            )));
        }
    }

    Ok(GitAddress {
        remote: remote.to_string(),
        reference,
        subdir: subdir
            .map(|folder| super::plan::clean(&folder))
            .unwrap_or_default(),
        keep_git_dir,
        checksum,
    })
}

/// Checks whether `host` (with or without a port) is `localhost`, a name
/// below `.localhost`, or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(address, _)| address),
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Returns `source` with the password of a `scheme://user:password@` part
/// replaced by `xxxxx`, for messages.
pub(crate) fn redact(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://") else {
        return source.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:xxxxx@{host}{path}")
        }
        _ => source.to_string(),
    }
}

/// Checks whether `text` is a full commit id (SHA-1 or SHA-256, in hex).
pub(crate) fn is_commit_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Resolves the ref of `address` to a commit with `git ls-remote`. A full
/// commit id is taken as it is, since servers do not list commits.
///
/// A name is looked up in git's order: the full name as given, then
/// `refs/tags/NAME`, then `refs/heads/NAME`. An annotated tag resolves to
/// the commit it points to.
pub(crate) fn resolve(address: &GitAddress, env: &GitEnv) -> Result<Resolved, CopyError> {
    let failed = |reason: String| CopyError::Git {
        url: redact(&address.remote),
        reference: address.reference_text().to_string(),
        reason,
    };
    if let Some(name) = &address.reference
        && is_commit_id(name)
    {
        return Ok(Resolved {
            commit: name.to_ascii_lowercase(),
            ref_name: None,
        });
    }

    let name = address.reference_text();
    let peeled = format!("{name}^{{}}");
    let output = run_git(
        &env.home,
        env,
        &["ls-remote", "--", &address.remote, name, &peeled],
    )
    .map_err(|error| failed(format!("cannot list the refs of the repository: {error}")))?;
    let listed: BTreeMap<&str, &str> = output
        .lines()
        .filter_map(|line| {
            let (commit, ref_name) = line.split_once('\t')?;
            Some((ref_name.trim(), commit.trim()))
        })
        .collect();

    let candidates: Vec<String> = if name == "HEAD" || name.starts_with("refs/") {
        vec![name.to_string()]
    } else {
        vec![format!("refs/tags/{name}"), format!("refs/heads/{name}")]
    };
    for candidate in candidates {
        let commit = listed
            .get(format!("{candidate}^{{}}").as_str())
            .or_else(|| listed.get(candidate.as_str()));
        if let Some(commit) = commit {
            return Ok(Resolved {
                commit: commit.to_ascii_lowercase(),
                ref_name: Some(candidate),
            });
        }
    }
    Err(failed(
        "the repository has no such branch or tag; give a branch, a tag, a full ref name or a \
         full commit id"
            .into(),
    ))
}

/// Checks a `--checksum` value against the resolved commit. A Git source
/// takes a full commit id as its checksum.
pub(crate) fn check_commit(
    address: &GitAddress,
    checksum: &str,
    commit: &str,
) -> Result<(), CopyError> {
    if !is_commit_id(checksum) {
        return Err(CopyError::Git {
            url: redact(&address.remote),
            reference: address.reference_text().to_string(),
            reason: format!(
                "invalid --checksum value `{checksum}`: a Git source takes the full commit id"
            ),
        });
    }
    if !checksum.eq_ignore_ascii_case(commit) {
        return Err(CopyError::GitChecksumMismatch {
            url: redact(&address.remote),
            reference: address.reference_text().to_string(),
            expected: checksum.to_string(),
            actual: commit.to_string(),
        });
    }
    Ok(())
}

/// A checked-out commit.
pub(crate) struct Checkout {
    /// The work tree; `.git` is inside it.
    pub(crate) root: PathBuf,
    /// Commit time in seconds since the epoch.
    pub(crate) commit_time: i64,
}

/// Fetches `resolved.commit` into `work/repo` and checks it out, with its
/// submodules.
///
/// The commit is fetched alone at depth 1 first. Servers that reject a
/// commit id in a fetch get the ref at depth 1, and when the ref moved
/// since it was resolved, every branch and tag is fetched in full.
pub(crate) fn checkout(
    address: &GitAddress,
    resolved: &Resolved,
    env: &GitEnv,
    work: &Path,
) -> Result<Checkout, CopyError> {
    let failed = |reason: String| CopyError::Git {
        url: redact(&address.remote),
        reference: address.reference_text().to_string(),
        reason,
    };
    let root = work.join("repo");
    let root_text = root.to_string_lossy().into_owned();
    let commit = resolved.commit.as_str();
    std::fs::create_dir_all(work).map_err(|error| {
        failed(format!(
            "cannot create the folder `{}`: {error}",
            work.display()
        ))
    })?;
    run_git(work, env, &["init", "--quiet", &root_text])
        .map_err(|error| failed(format!("cannot create a repository: {error}")))?;
    let in_repo = |args: &[&str]| {
        let mut full = vec!["-C", root_text.as_str()];
        full.extend_from_slice(args);
        run_git(work, env, &full)
    };
    in_repo(&["remote", "add", "origin", &address.remote])
        .map_err(|error| failed(format!("cannot add the remote: {error}")))?;

    let has_commit = || in_repo(&["cat-file", "-e", &format!("{commit}^{{commit}}")]).is_ok();
    let shallow = in_repo(&[
        "fetch",
        "--quiet",
        "--depth=1",
        "--no-tags",
        "origin",
        commit,
    ]);
    if let Err(error) = &shallow {
        if error.interrupted {
            return Err(failed(error.to_string()));
        }
        tracing::debug!(%error, commit, "the server rejects a fetch by commit id");
    }
    if !has_commit()
        && let Some(ref_name) = &resolved.ref_name
    {
        let result = in_repo(&[
            "fetch",
            "--quiet",
            "--depth=1",
            "--no-tags",
            "origin",
            ref_name,
        ]);
        if let Err(error) = result {
            if error.interrupted {
                return Err(failed(error.to_string()));
            }
            tracing::debug!(%error, ref_name, "the shallow fetch of the ref failed");
        }
    }
    if !has_commit() {
        in_repo(&[
            "fetch",
            "--quiet",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ])
        .map_err(|error| failed(format!("cannot fetch the repository: {error}")))?;
        if !has_commit() {
            return Err(failed(format!(
                "commit {commit} is not in the repository; check the commit id"
            )));
        }
    }

    // A branch is checked out under its own name, so `git branch` in a kept
    // `.git` shows it; anything else is a detached HEAD.
    let branch = resolved
        .ref_name
        .as_deref()
        .and_then(|name| name.strip_prefix("refs/heads/"));
    let result = match branch {
        Some(branch) => in_repo(&["checkout", "--quiet", "-B", branch, commit]),
        None => in_repo(&["checkout", "--quiet", "--detach", commit]),
    };
    result.map_err(|error| failed(format!("cannot check out commit {commit}: {error}")))?;

    if root.join(".gitmodules").exists() {
        update_submodules(&in_repo).map_err(failed)?;
    }

    let time = in_repo(&["show", "--no-patch", "--format=%ct", commit])
        .map_err(|error| failed(format!("cannot read the commit time: {error}")))?;
    let commit_time = time.trim().parse::<i64>().map_err(|_| {
        failed(format!(
            "cannot read the commit time: git printed `{}`",
            time.trim()
        ))
    })?;
    Ok(Checkout { root, commit_time })
}

/// Clones the submodules recursively; a failure names the submodules.
fn update_submodules(
    in_repo: &dyn Fn(&[&str]) -> Result<String, GitFailure>,
) -> Result<(), String> {
    let update = in_repo(&["submodule", "update", "--init", "--recursive", "--depth=1"]);
    let Err(error) = update else {
        return Ok(());
    };
    let paths = in_repo(&[
        "config",
        "--file",
        ".gitmodules",
        "--get-regexp",
        r"^submodule\..*\.path$",
    ])
    .unwrap_or_default();
    let names: Vec<&str> = paths
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, path)| path))
        .collect();
    Err(format!(
        "cannot clone the submodules ({}): {error}",
        names.join(", ")
    ))
}

/// Metadata that the copied files of a Git source get.
pub(crate) struct TreeMetadata<'a> {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) chmod: Option<&'a ModeSpec>,
    /// Seconds and nanoseconds since the epoch.
    pub(crate) mtime: (i64, i64),
    pub(crate) keep_git_dir: bool,
}

/// Lists the files of `subdir` of the checkout as entries below
/// `destination`: the folder's contents, not the folder itself.
///
/// Modes are git's: 0755 for folders and executable files, 0644 for other
/// files, before `--chmod`. Symlinks are listed as symlinks and never
/// followed. `.git` entries are left out unless `keep_git_dir` is set.
pub(crate) fn tree_entries(
    address: &GitAddress,
    checkout: &Checkout,
    destination: &[String],
    metadata: &TreeMetadata<'_>,
) -> Result<Vec<(Vec<String>, Entry)>, CopyError> {
    let failed = |reason: String| CopyError::Git {
        url: redact(&address.remote),
        reference: address.reference_text().to_string(),
        reason,
    };
    let mut start = checkout.root.clone();
    start.extend(&address.subdir);
    let subdir_text = address.subdir.join("/");
    // NOTE: a subdirectory reached through a symlink must stay inside the
    // work tree after the host resolves it. An absolute symlink target is
    // therefore rejected rather than read relative to the repository root.
    let resolved = std::fs::canonicalize(&start).map_err(|error| {
        failed(format!(
            "the subdirectory `{subdir_text}` is not in the commit ({error}); check the path after `:`"
        ))
    })?;
    let root = std::fs::canonicalize(&checkout.root)
        .map_err(|error| failed(format!("cannot read the checkout: {error}")))?;
    if !resolved.starts_with(&root) || !resolved.is_dir() {
        return Err(failed(format!(
            "the subdirectory `{subdir_text}` is not a folder inside the repository; check the path after `:`"
        )));
    }

    let mut entries = Vec::new();
    walk(&resolved, destination, metadata, &mut entries)
        .map_err(|error| failed(format!("cannot read the checked-out files: {error}")))?;
    Ok(entries)
}

fn walk(
    folder: &Path,
    target: &[String],
    metadata: &TreeMetadata<'_>,
    entries: &mut Vec<(Vec<String>, Entry)>,
) -> std::io::Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(folder)?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        if name == ".git" && !metadata.keep_git_dir {
            continue;
        }
        let Some(text) = name.to_str() else {
            // NOTE: names that are not UTF-8 are skipped, as for context
            // files.
            tracing::warn!(?name, "skipping a file name that is not UTF-8");
            continue;
        };
        let host = folder.join(&name);
        let mut child = target.to_vec();
        child.push(text.to_string());
        let file_metadata = std::fs::symlink_metadata(&host)?;
        let file_type = file_metadata.file_type();
        let (kind, git_mode) = if file_type.is_dir() {
            (Kind::Dir, 0o755)
        } else if file_type.is_symlink() {
            let link = std::fs::read_link(&host)?;
            let kind = Kind::Symlink {
                target: link.to_string_lossy().into_owned(),
            };
            (kind, 0o777)
        } else if file_type.is_file() {
            let mode = if file_metadata.mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let kind = Kind::File {
                content: Content::Host(host.clone()),
                digest: String::new(),
                size: file_metadata.len(),
            };
            (kind, mode)
        } else {
            continue;
        };
        let mode = match (&kind, metadata.chmod) {
            (Kind::Symlink { .. }, _) | (_, None) => git_mode,
            (_, Some(spec)) => spec.apply(git_mode, file_type.is_dir()),
        };
        let is_dir = file_type.is_dir();
        entries.push((
            child.clone(),
            Entry {
                kind,
                mode,
                uid: metadata.uid,
                gid: metadata.gid,
                mtime: metadata.mtime,
                xattrs: Vec::new(),
            },
        ));
        if is_dir {
            walk(&host, &child, metadata, entries)?;
        }
    }
    Ok(())
}

/// A `git` command that failed.
#[derive(Debug)]
pub(crate) struct GitFailure {
    message: String,
    /// Ctrl-C (SIGINT) or SIGTERM stopped the command.
    pub(crate) interrupted: bool,
}

impl std::fmt::Display for GitFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

/// Runs `git ARGS` in `dir` with the controlled environment and returns its
/// standard output. SIGINT or SIGTERM kills the command and fails it, so
/// the caller can remove its folders before forge exits.
fn run_git(dir: &Path, env: &GitEnv, args: &[&str]) -> Result<String, GitFailure> {
    let failure = |message: String| GitFailure {
        message,
        interrupted: false,
    };
    std::fs::create_dir_all(&env.home)
        .map_err(|error| failure(format!("cannot create `{}`: {error}", env.home.display())))?;
    let capture = |name: &str| {
        tempfile_in(&env.home, name)
            .map_err(|error| failure(format!("cannot create an output file: {error}")))
    };
    let (stdout_path, stdout) = capture("stdout")?;
    let (stderr_path, stderr) = capture("stderr")?;

    let mut command = Command::new("git");
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        let keep = ["GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT"];
        if name.to_string_lossy().starts_with("GIT_")
            && !keep.iter().any(|kept| name == std::ffi::OsStr::new(kept))
        {
            command.env_remove(&name);
        }
    }
    command
        .env("HOME", &env.home)
        .env("XDG_CONFIG_HOME", env.home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("GIT_ALLOW_PROTOCOL", "git:http:https:ssh")
        .env("LC_ALL", "C")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    if let Some(socket) = &env.ssh_auth_sock {
        command.env("SSH_AUTH_SOCK", socket);
    }

    let watch = crate::sandbox::InterruptWatch::new()
        .map_err(|error| failure(format!("cannot watch for Ctrl-C: {error}")))?;
    let mut child = command.spawn().map_err(|error| {
        failure(format!(
            "cannot run `git`: {error}; install git (Debian package `git`)"
        ))
    })?;
    let status = loop {
        if let Some(signal) = watch.take() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GitFailure {
                message: format!("interrupted by signal {signal}"),
                interrupted: true,
            });
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(error) => return Err(failure(format!("cannot wait for `git`: {error}"))),
        }
    };
    drop(watch);

    let output = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stdout_path);
    let _ = std::fs::remove_file(&stderr_path);
    if !status.success() {
        let errors = errors.trim();
        let detail = if errors.is_empty() {
            String::new()
        } else {
            format!(": {}", errors.lines().collect::<Vec<_>>().join(" "))
        };
        return Err(failure(format!(
            "`git {}` failed with {status}{detail}",
            args.first().copied().unwrap_or_default()
        )));
    }
    Ok(output)
}

/// Creates a new file named after `name` in `dir`.
fn tempfile_in(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let path = dir.join(format!(
            ".{name}-{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Returns the current time as seconds and nanoseconds since the epoch.
pub(crate) fn now() -> (i64, i64) {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| {
            (
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
                i64::from(elapsed.subsec_nanos()),
            )
        })
        .unwrap_or((0, 0))
}

/// A Git source of a plan, resolved and ready to fetch.
#[derive(Debug, Clone)]
pub(crate) struct GitCopy {
    pub(crate) address: GitAddress,
    pub(crate) resolved: Resolved,
    pub(crate) keep_git_dir: bool,
    /// The absolute image folder the files go into.
    pub(crate) destination: Vec<String>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) chmod: Option<ModeSpec>,
    /// The `--chmod` text, for the cache key.
    pub(crate) chmod_text: Option<String>,
    /// Files get the commit time as mtime; otherwise the checkout time.
    pub(crate) commit_mtime: bool,
    pub(crate) env: GitEnv,
    /// The temporary folder of the clone, removed when the plan is dropped.
    pub(crate) scratch: Arc<ScratchDir>,
}

impl GitCopy {
    /// Returns the line that enters the plan's digest and summary.
    pub(crate) fn describe(&self) -> String {
        format!(
            "git {} commit {} subdir /{} keep-git-dir {} owner {}:{} chmod {}",
            redact(&self.address.remote),
            self.resolved.commit,
            self.address.subdir.join("/"),
            self.keep_git_dir,
            self.uid,
            self.gid,
            self.chmod_text.as_deref().unwrap_or("-")
        )
    }

    /// Fetches the commit and lists its files as plan entries.
    pub(crate) fn entries(&self) -> Result<Vec<(Vec<String>, Entry)>, CopyError> {
        let work = self
            .scratch
            .path()
            .join(format!("checkout-{}", &self.resolved.commit));
        let checkout = checkout(&self.address, &self.resolved, &self.env, &work)?;
        // BuildKit's git source gives files the checkout time, and the commit
        // time when the Dockerfile frontend has SOURCE_DATE_EPOCH (its
        // `git.mtime` attribute).
        let mtime = if self.commit_mtime {
            (checkout.commit_time, 0)
        } else {
            now()
        };
        let metadata = TreeMetadata {
            uid: self.uid,
            gid: self.gid,
            chmod: self.chmod.as_ref(),
            mtime,
            keep_git_dir: self.keep_git_dir,
        };
        tree_entries(&self.address, &checkout, &self.destination, &metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::super::remote::is_git;
    use super::*;

    #[test]
    fn git_sources_detected() {
        assert!(is_git("https://github.com/a/b.git"));
        assert!(is_git("https://github.com/a/b.git#v1:docs"));
        assert!(is_git("https://github.com/a/b.git?ref=v1"));
        assert!(is_git("git@github.com:a/b.git"));
        assert!(is_git("git://127.0.0.1:9418/repo"));
        assert!(is_git("ssh://git@host/repo"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(!is_git("dir/file.git"));
    }

    #[test]
    fn fragment_ref_and_subdir() {
        let address = parse("git://127.0.0.1/repo.git#main:docs/./api", &[]).unwrap();
        assert_eq!(address.remote, "git://127.0.0.1/repo.git");
        assert_eq!(address.reference.as_deref(), Some("main"));
        assert_eq!(address.subdir, vec!["docs", "api"]);

        let address = parse("git@host:owner/repo.git#:sub", &[]).unwrap();
        assert_eq!(address.remote, "git@host:owner/repo.git");
        assert_eq!(address.reference, None);
        assert_eq!(address.subdir, vec!["sub"]);
    }

    #[test]
    fn query_form() {
        let address = parse(
            "https://host/repo.git?tag=v1&subdir=a/b&keep-git-dir=true",
            &[],
        )
        .unwrap();
        assert_eq!(address.remote, "https://host/repo.git");
        assert_eq!(address.reference.as_deref(), Some("refs/tags/v1"));
        assert_eq!(address.subdir, vec!["a", "b"]);
        assert!(address.keep_git_dir);

        let error = parse("https://host/repo.git?ref=a#b", &[]).unwrap_err();
        assert!(error.to_string().contains("more than once"), "{error}");
        let error = parse("https://host/repo.git?depth=1", &[]).unwrap_err();
        assert!(error.to_string().contains("`depth`"), "{error}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(parse("http://127.0.0.1:8080/repo.git", &[]).is_ok());
        assert!(parse("http://localhost/repo.git", &[]).is_ok());
        let error = parse("http://example.com/repo.git", &[]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--insecure-registry example.com"),
            "{error}"
        );
        assert!(parse("http://example.com/repo.git", &["example.com".to_string()]).is_ok());
    }

    #[test]
    fn option_like_ref_rejected() {
        let error = parse("git://host/repo#--upload-pack=x", &[]).unwrap_err();
        assert!(
            error.to_string().contains("cannot start with `-`"),
            "{error}"
        );
    }

    #[test]
    fn password_redacted() {
        assert_eq!(
            redact("https://user:secret@host/repo.git"),
            "https://user:xxxxx@host/repo.git"
        );
        assert_eq!(redact("git@host:repo.git"), "git@host:repo.git");
    }
}
