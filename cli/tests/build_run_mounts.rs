//! Runs `RUN --mount` steps that take files from a stage or an image
//! through the real `forge build` as root. Each test uses `--root` and
//! `TMPDIR` in a temporary folder and a busybox base made with `forge
//! import`. The tests cover cache mounts seeded with `from` and `source`,
//! and a bind mount from an image that the build pulls from a
//! `docker-registry` on a loopback port.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_testkit::registry::{Registry, RegistryOptions};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates the folder and imports `busybox:latest`. Returns `None` when
    /// the test is not root or busybox is missing, so the test skips.
    fn new(test: &str) -> Option<Workspace> {
        if !forge_testkit::require_root(test) || !forge_testkit::require_tool("busybox") {
            return None;
        }
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        fs::create_dir_all(workspace.context()).expect("context folder");
        fs::create_dir_all(workspace.path("tmp")).expect("TMPDIR");
        let rootfs = workspace.path("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let made = Command::new("bash")
            .arg(&script)
            .arg(&rootfs)
            .output()
            .expect("busybox-rootfs.sh runs");
        assert!(made.status.success(), "{}", text(&made.stderr));
        let imported = workspace.forge(&["import", path_str(&rootfs), "busybox"]);
        succeeded(&imported);
        Some(workspace)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn context(&self) -> PathBuf {
        self.path("context")
    }

    /// Returns the folders of the store's cache mounts, without the lock
    /// files next to them.
    fn cache_folders(&self) -> BTreeSet<PathBuf> {
        let root = self.path("store/forge/cache-mounts");
        let Ok(entries) = fs::read_dir(&root) else {
            return BTreeSet::new();
        };
        entries
            .map(|entry| entry.expect("cache mount entry").path())
            .filter(|path| path.is_dir())
            .collect()
    }

    fn write(&self, name: &str, content: &str) {
        fs::write(self.context().join(name), content).expect("context file");
    }

    fn forge(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("--root")
            .arg(self.path("store"))
            .args(args)
            .env("TMPDIR", self.path("tmp"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env_remove("FORGE_ROOT")
            .env_remove("FORGE_INSECURE_REGISTRIES")
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("forge runs")
    }

    /// Builds `dockerfile` with the context folder and writes the image's
    /// file system to the folder `output`.
    fn build(&self, dockerfile: &str, output: &str, extra: &[&str]) -> Output {
        self.write("Dockerfile", dockerfile);
        let output = self.path(output);
        let context = self.context();
        let mut args = vec!["build", "--progress", "plain", "-o", path_str(&output)];
        args.extend_from_slice(extra);
        args.push(path_str(&context));
        self.forge(&args)
    }

    /// Returns a file that a build wrote to the folder `output`.
    fn read(&self, output: &str, file: &str) -> String {
        let path = self.path(output).join(file);
        fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "forge failed:\n{stderr}");
    stderr
}

/// Returns what a successful forge command printed on standard output.
fn printed(output: &Output) -> String {
    succeeded(output);
    text(&output.stdout)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Returns a stage `stage1` whose `/out` contains a file with an owner and mode, a
/// hard link to it, a symlink to a host path, and a subfolder.
fn stage1(content: &str) -> String {
    format!(
        "FROM busybox AS stage1\n\
         RUN mkdir -p /out/sub && echo {content} > /out/a && echo deep > /out/sub/b \
         && ln /out/a /out/hard && ln -s /etc/passwd /out/link \
         && chown 123:45 /out/a && chmod 640 /out/a && chown 7:8 /out && chmod 750 /out\n"
    )
}

/// Returns a final stage whose RUN lists the cache mount `id` seeded from
/// `stage1:/out`, writes the listing and `a` to the image, then adds a file
/// to the cache and removes one from it. `marker` makes the step's key new.
fn cache_user(id: &str, marker: &str) -> String {
    format!(
        "FROM busybox\n\
         RUN --mount=type=cache,id={id},target=/cache,from=stage1,source=/out \
         echo {marker} && ls /cache > /listing && cat /cache/a > /a.txt \
         && (ls /cache/sub > /sub-listing || true) \
         && echo added > /cache/added && rm -f /cache/sub/b\n"
    )
}

/// Returns the cache folders that `after` has and `before` lacks.
fn new_folders(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    after.difference(before).cloned().collect()
}

#[test]
fn cache_mount_seeded_from_stage() {
    let Some(workspace) = Workspace::new("cache_mount_seeded_from_stage") else {
        return;
    };
    let dockerfile = format!("{}{}", stage1("one"), cache_user("c", "first"));
    succeeded(&workspace.build(&dockerfile, "out1", &[]));

    assert_eq!(
        lines(&workspace.read("out1", "listing")),
        ["a", "hard", "link", "sub"]
    );
    assert_eq!(workspace.read("out1", "a.txt"), "one\n");
    assert_eq!(workspace.read("out1", "sub-listing"), "b\n");

    // The cache folder kept owners, modes, the hard link and the symlink,
    // and the step's own changes.
    let folders = workspace.cache_folders();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let cache = folders.first().expect("one cache folder");
    let root = fs::metadata(cache).expect("cache folder");
    assert_eq!((root.uid(), root.gid()), (7, 8));
    assert_eq!(root.mode() & 0o7777, 0o750);
    let a = fs::metadata(cache.join("a")).expect("a");
    assert_eq!((a.uid(), a.gid()), (123, 45));
    assert_eq!(a.mode() & 0o7777, 0o640);
    let hard = fs::metadata(cache.join("hard")).expect("hard");
    assert_eq!(hard.ino(), a.ino());
    let link = fs::symlink_metadata(cache.join("link")).expect("link");
    assert!(link.file_type().is_symlink());
    assert_eq!(
        fs::read_link(cache.join("link")).expect("read link"),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_to_string(cache.join("added")).expect("added"),
        "added\n"
    );
    assert!(!cache.join("sub/b").exists());
}

#[test]
fn cache_mount_seeded_only_when_new() {
    let Some(workspace) = Workspace::new("cache_mount_seeded_only_when_new") else {
        return;
    };
    let first = format!("{}{}", stage1("one"), cache_user("c", "first"));
    succeeded(&workspace.build(&first, "out1", &[]));
    let after_first = workspace.cache_folders();
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    let seeded = after_first.first().expect("cache folder").clone();

    // Same stage, new step: the cache keeps the step's changes and is not
    // seeded again.
    let again = format!("{}{}", stage1("one"), cache_user("c", "again"));
    succeeded(&workspace.build(&again, "out2", &[]));
    assert_eq!(workspace.cache_folders(), after_first);
    assert_eq!(
        lines(&workspace.read("out2", "listing")),
        ["a", "added", "hard", "link", "sub"]
    );
    assert_eq!(workspace.read("out2", "sub-listing"), "");

    // Changed stage content: as in BuildKit, whose cache identity is the id
    // and the snapshot of `from`, the step gets a new cache seeded with the
    // new content, and the existing cache is left as it is.
    let changed = format!("{}{}", stage1("two"), cache_user("c", "changed"));
    succeeded(&workspace.build(&changed, "out3", &[]));
    let after_changed = workspace.cache_folders();
    assert_eq!(new_folders(&after_first, &after_changed).len(), 1);
    assert_eq!(
        lines(&workspace.read("out3", "listing")),
        ["a", "hard", "link", "sub"]
    );
    assert_eq!(workspace.read("out3", "a.txt"), "two\n");
    assert_eq!(
        fs::read_to_string(seeded.join("a")).expect("a in the first cache"),
        "one\n"
    );
    assert!(seeded.join("added").exists());
    assert!(!seeded.join("sub/b").exists());

    // A new id with the first stage content is a new cache, seeded again.
    let new_id = format!("{}{}", stage1("one"), cache_user("c2", "new-id"));
    succeeded(&workspace.build(&new_id, "out4", &[]));
    let after_new_id = workspace.cache_folders();
    assert_eq!(new_folders(&after_changed, &after_new_id).len(), 1);
    assert_eq!(
        lines(&workspace.read("out4", "listing")),
        ["a", "hard", "link", "sub"]
    );
    assert_eq!(workspace.read("out4", "a.txt"), "one\n");
    assert_eq!(workspace.read("out4", "sub-listing"), "b\n");
}

#[test]
fn cache_mount_missing_source_fails() {
    let Some(workspace) = Workspace::new("cache_mount_missing_source_fails") else {
        return;
    };
    let dockerfile = format!(
        "{}FROM busybox\n\
         RUN --mount=type=cache,id=c,target=/cache,from=stage1,source=/missing ls /cache\n",
        stage1("one")
    );
    let output = workspace.build(&dockerfile, "out", &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cache mount source `/missing` does not exist in `stage1`"),
        "{stderr}"
    );
    assert!(workspace.cache_folders().is_empty());
}

#[test]
fn bind_mount_pulls_missing_image() {
    let Some(workspace) = Workspace::new("bind_mount_pulls_missing_image") else {
        return;
    };
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let image = format!("{}/forge/bind-source:v1", registry.host);
    let insecure = format!("--insecure-registry={}", registry.host);

    // Push an image with /data/hello.txt, then remove it from the store.
    workspace.write("hello.txt", "hello from the registry\n");
    succeeded(&workspace.build(
        "FROM scratch\nCOPY hello.txt /data/hello.txt\n",
        "pushed",
        &["-t", &image],
    ));
    succeeded(&workspace.forge(&["push", &insecure, &image]));
    succeeded(&workspace.forge(&["rmi", &image]));
    let inspect = workspace.forge(&["inspect", &image]);
    assert!(!inspect.status.success(), "{}", text(&inspect.stdout));

    let dockerfile = format!(
        "FROM busybox\n\
         RUN --mount=type=bind,from={image},source=/data,target=/mnt cat /mnt/hello.txt > /copied\n"
    );
    let stderr = succeeded(&workspace.build(&dockerfile, "out", &[&insecure]));
    assert!(stderr.contains(&format!("pulling {image}")), "{stderr}");
    assert_eq!(workspace.read("out", "copied"), "hello from the registry\n");
    succeeded(&workspace.forge(&["inspect", &image]));
}

#[test]
fn prune_all_empties_cache_mounts() {
    let Some(workspace) = Workspace::new("prune_all_empties_cache_mounts") else {
        return;
    };
    let dockerfile = |marker: &str| {
        format!(
            "FROM busybox\n\
             RUN --mount=type=cache,id=keep,target=/cache \
             echo {marker} && ls /cache > /listing && echo kept > /cache/file\n"
        )
    };
    succeeded(&workspace.build(&dockerfile("one"), "one", &[]));
    succeeded(&workspace.build(&dockerfile("two"), "two", &[]));
    assert_eq!(
        workspace.read("two", "listing"),
        "file\n",
        "the cache kept the file"
    );
    assert_eq!(workspace.cache_folders().len(), 1);

    // A plain prune keeps the cache; `--all` removes its folder and lock.
    let plain = printed(&workspace.forge(&["prune"]));
    assert!(plain.contains("0 cache mounts"), "{plain}");
    assert_eq!(workspace.cache_folders().len(), 1);
    let dry = printed(&workspace.forge(&["prune", "--all", "--dry-run"]));
    assert!(
        dry.contains("Would remove") && dry.contains("1 cache mounts"),
        "{dry}"
    );
    assert_eq!(workspace.cache_folders().len(), 1);
    let all = printed(&workspace.forge(&["prune", "--all"]));
    assert!(all.contains("1 cache mounts"), "{all}");
    assert!(workspace.cache_folders().is_empty());
    let left: Vec<_> = fs::read_dir(workspace.path("store/forge/cache-mounts"))
        .expect("cache mount root")
        .collect();
    assert!(left.is_empty(), "lock files are removed too: {left:?}");

    succeeded(&workspace.build(&dockerfile("three"), "three", &[]));
    assert_eq!(
        workspace.read("three", "listing"),
        "",
        "the cache starts empty"
    );
}

#[test]
fn bind_mount_from_stage_merges_layers() {
    let Some(workspace) = Workspace::new("bind_mount_from_stage_merges_layers") else {
        return;
    };
    // Three layers add to /d, the second deletes a file of the first, and
    // a stage on top of them adds another layer.
    let dockerfile = "FROM busybox AS a\n\
         RUN mkdir /d && echo one > /d/one && echo gone > /d/gone\n\
         RUN echo two > /d/two && rm /d/gone\n\
         FROM a AS b\n\
         RUN echo three > /d/three\n\
         FROM busybox\n\
         RUN --mount=from=b,target=/m ls /m/d > /ro && cat /m/d/one /m/d/two /m/d/three > /ro-content\n\
         RUN --mount=from=b,source=/d,target=/m,rw echo four > /m/four && ls /m > /rw\n\
         RUN --mount=from=b,target=/m ls /m/d > /after\n";
    succeeded(&workspace.build(dockerfile, "out", &[]));
    assert_eq!(workspace.read("out", "ro"), "one\nthree\ntwo\n");
    assert_eq!(workspace.read("out", "ro-content"), "one\ntwo\nthree\n");
    assert_eq!(workspace.read("out", "rw"), "four\none\nthree\ntwo\n");
    assert_eq!(
        workspace.read("out", "after"),
        "one\nthree\ntwo\n",
        "writes are discarded"
    );
}
