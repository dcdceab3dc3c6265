//! Runs `forge build` with `ADD` of Git repositories served by a real
//! `git daemon` on the loopback address. The tests check the files, modes,
//! symlinks and mtimes of a checked-out tag, a subdirectory of a branch,
//! `--keep-git-dir`, and the cache across new commits. They also check the
//! errors for a wrong checksum, an unknown ref and a missing subdirectory.

mod common;

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{failed, free_port, succeeded, text};

/// Committer and author time of every commit of the test repository.
const COMMIT_TIME: i64 = 1_600_000_000;

/// A repository with a tag `v1` and a branch `feature`, served by
/// `git daemon` until dropped.
struct GitServer {
    dir: tempfile::TempDir,
    daemon: Child,
    port: u16,
}

impl GitServer {
    fn start() -> GitServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = dir.path().join("repo.git");
        fs::create_dir_all(repo.join("docs")).expect("repository folder");
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        fs::write(repo.join("README.md"), "hello v1\n").expect("README");
        fs::write(repo.join("run.sh"), "#!/bin/sh\necho hi\n").expect("script");
        fs::set_permissions(repo.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(repo.join("docs/guide.txt"), "guide\n").expect("guide");
        std::os::unix::fs::symlink("../README.md", repo.join("docs/readme-link"))
            .expect("relative symlink");
        std::os::unix::fs::symlink("/etc/passwd", repo.join("passwd-link"))
            .expect("absolute symlink");
        git(&repo, &["add", "--all"]);
        git(&repo, &["commit", "--quiet", "--message", "first"]);
        git(
            &repo,
            &["tag", "--annotate", "v1", "--message", "version 1"],
        );

        git(&repo, &["checkout", "--quiet", "-b", "feature"]);
        fs::write(repo.join("docs/extra.txt"), "extra\n").expect("extra");
        git(&repo, &["add", "--all"]);
        git(&repo, &["commit", "--quiet", "--message", "feature commit"]);
        git(&repo, &["checkout", "--quiet", "main"]);

        // `git daemon` would run `git-daemon` as a child that outlives a
        // kill of `git`, so the daemon is started directly.
        let exec_path = git(dir.path(), &["--exec-path"]);
        let port = free_port();
        let daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--export-all")
            .arg(format!("--base-path={}", dir.path().display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--reuseaddr")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        GitServer { dir, daemon, port }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo.git")
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.port)
    }

    /// Returns the commit id of `revision`.
    fn commit(&self, revision: &str) -> String {
        git(
            &self.repo(),
            &["rev-parse", &format!("{revision}^{{commit}}")],
        )
        .trim()
        .to_string()
    }

    /// Adds a commit with one new file to branch `main`.
    fn commit_on_main(&self, name: &str) {
        fs::write(self.repo().join(name), "new\n").expect("new file");
        git(&self.repo(), &["add", "--all"]);
        git(&self.repo(), &["commit", "--quiet", "--message", name]);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Runs git in `dir` with a fixed identity and commit time, and returns its
/// standard output.
fn git(dir: &Path, args: &[&str]) -> String {
    let date = format!("@{COMMIT_TIME} +0000");
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "forge test")
        .env("GIT_AUTHOR_EMAIL", "test@forge.invalid")
        .env("GIT_COMMITTER_NAME", "forge test")
        .env("GIT_COMMITTER_EMAIL", "test@forge.invalid")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        fs::create_dir_all(workspace.context()).expect("context folder");
        workspace
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("store")
    }

    fn context(&self) -> PathBuf {
        self.path("context")
    }

    fn dockerfile(&self, content: &str) {
        fs::write(self.context().join("Dockerfile"), content).expect("Dockerfile");
    }

    /// Runs `forge build --progress plain EXTRA CONTEXT`.
    fn build(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("--root")
            .arg(self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("SSH_AUTH_SOCK")
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(self.context())
            .output()
            .expect("forge build runs")
    }

    /// Builds with `--output type=local` into folder `name` and returns it.
    fn build_local(&self, name: &str, extra: &[&str]) -> PathBuf {
        let dest = self.path(name);
        let output_flag = format!("type=local,dest={}", dest.display());
        let mut args = vec!["--output", output_flag.as_str()];
        args.extend_from_slice(extra);
        succeeded(&self.build(&args));
        dest
    }

    /// Returns the folders left in the store's `forge/tmp`.
    fn leftover_folders(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.root().join("forge/tmp")) else {
            return Vec::new();
        };
        entries
            .map(|entry| entry.expect("tmp entry").path())
            .filter(|path| path.is_dir())
            .collect()
    }
}

/// Starts the server and a workspace; `None` when the test is skipped.
fn setup(test: &str) -> Option<(GitServer, Workspace)> {
    if !forge_testkit::require_root(test) || !forge_testkit::require_tool("git") {
        return None;
    }
    Some((GitServer::start(), Workspace::new()))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn tag_copies_files_modes_symlinks() {
    let Some((server, workspace)) = setup("tag_copies_files_modes_symlinks") else {
        return;
    };
    workspace.dockerfile(&format!("FROM scratch\nADD {}#v1 /src\n", server.url()));
    let epoch = (COMMIT_TIME + 1000).to_string();
    let out = workspace.build_local("out", &["--source-date-epoch", &epoch]);
    let src = out.join("src");

    assert_eq!(
        fs::read_to_string(src.join("README.md")).unwrap(),
        "hello v1\n"
    );
    assert_eq!(
        fs::read_to_string(src.join("docs/guide.txt")).unwrap(),
        "guide\n"
    );
    assert!(
        !src.join("docs/extra.txt").exists(),
        "file of another branch copied"
    );
    assert!(
        !src.join(".git").exists(),
        ".git kept without --keep-git-dir"
    );

    assert_eq!(mode(&src.join("README.md")), 0o644);
    assert_eq!(mode(&src.join("run.sh")), 0o755);
    assert_eq!(mode(&src.join("docs")), 0o755);

    let link = fs::read_link(src.join("docs/readme-link")).expect("relative symlink kept");
    assert_eq!(link, Path::new("../README.md"));
    let absolute = fs::read_link(src.join("passwd-link")).expect("absolute symlink kept");
    assert_eq!(absolute, Path::new("/etc/passwd"));

    let metadata = fs::symlink_metadata(src.join("README.md")).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (0, 0));
    // With SOURCE_DATE_EPOCH set, files get the commit time.
    assert_eq!(metadata.mtime(), COMMIT_TIME);
    assert!(
        workspace.leftover_folders().is_empty(),
        "{:?}",
        workspace.leftover_folders()
    );
}

#[test]
fn branch_subdir_copies_folder_contents() {
    let Some((server, workspace)) = setup("branch_subdir_copies_folder_contents") else {
        return;
    };
    workspace.dockerfile(&format!(
        "FROM scratch\nADD --chown=1000:1000 {}#feature:docs /docs\n",
        server.url()
    ));
    let out = workspace.build_local("out", &[]);
    let docs = out.join("docs");

    assert_eq!(
        fs::read_to_string(docs.join("extra.txt")).unwrap(),
        "extra\n"
    );
    assert_eq!(
        fs::read_to_string(docs.join("guide.txt")).unwrap(),
        "guide\n"
    );
    assert!(
        !docs.join("README.md").exists(),
        "file outside the subdirectory"
    );
    assert!(
        !docs.join("docs").exists(),
        "the subdirectory itself was copied"
    );
    let metadata = fs::symlink_metadata(docs.join("extra.txt")).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (1000, 1000));
    assert_eq!(
        fs::read_link(docs.join("readme-link")).unwrap(),
        Path::new("../README.md")
    );
}

#[test]
fn query_form_selects_branch() {
    let Some((server, workspace)) = setup("query_form_selects_branch") else {
        return;
    };
    workspace.dockerfile(&format!(
        "FROM scratch\nADD {}?branch=feature&subdir=docs /docs\n",
        server.url()
    ));
    let out = workspace.build_local("out", &[]);
    assert_eq!(
        fs::read_to_string(out.join("docs/extra.txt")).unwrap(),
        "extra\n"
    );
}

#[test]
fn keep_git_dir_keeps_working_repository() {
    let Some((server, workspace)) = setup("keep_git_dir_keeps_working_repository") else {
        return;
    };
    workspace.dockerfile(&format!(
        "FROM scratch\nADD --keep-git-dir=true {}#feature /src\n",
        server.url()
    ));
    let out = workspace.build_local("out", &[]);
    let src = out.join("src");
    assert!(
        src.join(".git").is_dir(),
        ".git missing with --keep-git-dir"
    );

    let log = git(&src, &["log", "-1", "--format=%s"]);
    assert_eq!(log.trim(), "feature commit");
    let head = git(&src, &["rev-parse", "HEAD"]);
    assert_eq!(head.trim(), server.commit("feature"));
    let status = git(&src, &["status", "--porcelain"]);
    assert_eq!(status, "", "the exported work tree differs from its commit");
}

#[test]
fn rebuild_hits_cache_until_new_commit() {
    let Some((server, workspace)) = setup("rebuild_hits_cache_until_new_commit") else {
        return;
    };
    workspace.dockerfile(&format!("FROM scratch\nADD {}#main /src\n", server.url()));

    let first = succeeded(&workspace.build(&["-t", "git-cache"]));
    assert!(!first.contains("Using cache"), "{first}");

    let second = succeeded(&workspace.build(&["-t", "git-cache"]));
    assert!(second.contains(" ---> Using cache"), "{second}");

    server.commit_on_main("new.txt");
    let out = workspace.build_local("out", &["-t", "git-cache"]);
    assert_eq!(
        fs::read_to_string(out.join("src/new.txt")).unwrap(),
        "new\n"
    );
    assert!(
        workspace.leftover_folders().is_empty(),
        "{:?}",
        workspace.leftover_folders()
    );
}

#[test]
fn new_commit_misses_cache() {
    let Some((server, workspace)) = setup("new_commit_misses_cache") else {
        return;
    };
    workspace.dockerfile(&format!("FROM scratch\nADD {}#main /src\n", server.url()));
    succeeded(&workspace.build(&["-t", "git-miss"]));
    server.commit_on_main("later.txt");

    let stderr = succeeded(&workspace.build(&["-t", "git-miss"]));
    assert!(!stderr.contains("Using cache"), "{stderr}");
    assert!(stderr.contains(&server.commit("main")), "{stderr}");
}

#[test]
fn checksum_mismatch_names_both_commits() {
    let Some((server, workspace)) = setup("checksum_mismatch_names_both_commits") else {
        return;
    };
    let wrong = "0".repeat(40);
    workspace.dockerfile(&format!(
        "FROM scratch\nADD --checksum={wrong} {}#v1 /src\n",
        server.url()
    ));
    let stderr = failed(&workspace.build(&[]));
    assert!(stderr.contains(&wrong), "{stderr}");
    assert!(stderr.contains(&server.commit("v1")), "{stderr}");

    let right = server.commit("v1");
    workspace.dockerfile(&format!(
        "FROM scratch\nADD --checksum={right} {}#v1 /src\n",
        server.url()
    ));
    succeeded(&workspace.build(&[]));
}

#[test]
fn unknown_ref_names_url_and_ref() {
    let Some((server, workspace)) = setup("unknown_ref_names_url_and_ref") else {
        return;
    };
    workspace.dockerfile(&format!(
        "FROM scratch\nADD {}#no-such-ref /src\n",
        server.url()
    ));
    let stderr = failed(&workspace.build(&[]));
    assert!(stderr.contains(&server.url()), "{stderr}");
    assert!(stderr.contains("no-such-ref"), "{stderr}");
    assert!(
        workspace.leftover_folders().is_empty(),
        "{:?}",
        workspace.leftover_folders()
    );
}

#[test]
fn missing_subdir_names_url_and_ref() {
    let Some((server, workspace)) = setup("missing_subdir_names_url_and_ref") else {
        return;
    };
    workspace.dockerfile(&format!(
        "FROM scratch\nADD {}#v1:no-such-dir /src\n",
        server.url()
    ));
    let stderr = failed(&workspace.build(&[]));
    assert!(stderr.contains(&server.url()), "{stderr}");
    assert!(stderr.contains("`v1`"), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "{stderr}");
    assert!(
        workspace.leftover_folders().is_empty(),
        "{:?}",
        workspace.leftover_folders()
    );
}

#[test]
fn unreachable_repository_fails() {
    let Some((_server, workspace)) = setup("unreachable_repository_fails") else {
        return;
    };
    let url = format!("git://127.0.0.1:{}/repo.git", free_port());
    workspace.dockerfile(&format!("FROM scratch\nADD {url}#v1 /src\n"));
    let stderr = failed(&workspace.build(&[]));
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("`v1`"), "{stderr}");
}
