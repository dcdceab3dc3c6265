//! COPY semantics against a temporary context, image layer and upper folder.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use forge_builder::context::{Context, HashCache};
use forge_builder::copy::{CopyError, CopyPlan, CopyRequest, CopySource, CopyStats};
use forge_builder::rootfs::RootView;

struct Fixture {
    _temp: tempfile::TempDir,
    context: PathBuf,
    image: PathBuf,
    upper: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let temp = tempfile::tempdir().unwrap();
        let context = temp.path().join("context");
        let image = temp.path().join("image");
        let upper = temp.path().join("upper");
        for dir in [&context, &image, &upper] {
            std::fs::create_dir(dir).unwrap();
        }
        Fixture {
            _temp: temp,
            context,
            image,
            upper,
        }
    }

    fn file(&self, path: &str, content: &str) -> PathBuf {
        let host = self.context.join(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, content).unwrap();
        host
    }

    fn image_file(&self, path: &str, content: &str) {
        let host = self.image.join(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, content).unwrap();
    }

    fn view(&self) -> RootView {
        RootView::new(vec![self.image.clone()])
    }

    fn plan(&self, request: &CopyRequest) -> Result<CopyPlan, CopyError> {
        let context = Context::open(&self.context, Some(Path::new("Dockerfile"))).unwrap();
        CopyPlan::new(
            CopySource::Context(&context),
            request,
            &self.view(),
            &HashCache::new(),
        )
    }

    fn copy(&self, request: &CopyRequest) -> Result<CopyStats, CopyError> {
        let plan = self.plan(request)?;
        plan.apply(&self.upper, &self.view())
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.upper.join(path.trim_start_matches('/')))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.upper.join(path.trim_start_matches('/'))).is_ok()
    }

    fn meta(&self, path: &str) -> std::fs::Metadata {
        std::fs::symlink_metadata(self.upper.join(path.trim_start_matches('/'))).unwrap()
    }
}

fn request(sources: &[&str], destination: &str) -> CopyRequest {
    CopyRequest {
        sources: sources.iter().map(|source| source.to_string()).collect(),
        destination: destination.to_string(),
        workdir: "/".to_string(),
        ..CopyRequest::default()
    }
}

/// One COPY case: context files, sources, destination, and the upper paths
/// expected with their content (`None` for a path that must not exist).
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    sources: &'static [&'static str],
    destination: &'static str,
    workdir: &'static str,
    expected: &'static [(&'static str, Option<&'static str>)],
}

#[test]
fn copy_layout_table() {
    let cases = [
        Case {
            name: "file to file",
            files: &[("a.txt", "A")],
            sources: &["a.txt"],
            destination: "/dst/b.txt",
            workdir: "/",
            expected: &[("dst/b.txt", Some("A")), ("dst/a.txt", None)],
        },
        Case {
            name: "file to dir",
            files: &[("a.txt", "A")],
            sources: &["a.txt"],
            destination: "/dst/",
            workdir: "/",
            expected: &[("dst/a.txt", Some("A"))],
        },
        Case {
            name: "relative to workdir",
            files: &[("a.txt", "A")],
            sources: &["a.txt"],
            destination: "sub/",
            workdir: "/app",
            expected: &[("app/sub/a.txt", Some("A"))],
        },
        Case {
            name: "several sources",
            files: &[("a.txt", "A"), ("b.txt", "B")],
            sources: &["a.txt", "b.txt"],
            destination: "/dst",
            workdir: "/",
            expected: &[("dst/a.txt", Some("A")), ("dst/b.txt", Some("B"))],
        },
        Case {
            name: "wildcards",
            files: &[
                ("a.txt", "A"),
                ("b.txt", "B"),
                ("c.md", "C"),
                ("d1/x.txt", "X"),
            ],
            sources: &["*.txt", "d?/*.txt"],
            destination: "/dst/",
            workdir: "/",
            expected: &[
                ("dst/a.txt", Some("A")),
                ("dst/b.txt", Some("B")),
                ("dst/x.txt", Some("X")),
                ("dst/c.md", None),
            ],
        },
        Case {
            name: "character class",
            files: &[("a1", "1"), ("a2", "2"), ("a3", "3")],
            sources: &["a[12]"],
            destination: "/dst/",
            workdir: "/",
            expected: &[
                ("dst/a1", Some("1")),
                ("dst/a2", Some("2")),
                ("dst/a3", None),
            ],
        },
        Case {
            name: "directory contents",
            files: &[("dir/x", "X"), ("dir/sub/y", "Y")],
            sources: &["dir"],
            destination: "/dst",
            workdir: "/",
            expected: &[
                ("dst/x", Some("X")),
                ("dst/sub/y", Some("Y")),
                ("dst/dir", None),
            ],
        },
        Case {
            name: "whole context",
            files: &[("a", "A"), ("d/b", "B")],
            sources: &["."],
            destination: "/srv/",
            workdir: "/",
            expected: &[("srv/a", Some("A")), ("srv/d/b", Some("B"))],
        },
        Case {
            name: "leading slash in source",
            files: &[("a", "A")],
            sources: &["/a"],
            destination: "/b",
            workdir: "/",
            expected: &[("b", Some("A"))],
        },
    ];

    for case in cases {
        let fixture = Fixture::new();
        for (path, content) in case.files {
            fixture.file(path, content);
        }
        let mut request = request(case.sources, case.destination);
        request.workdir = case.workdir.to_string();
        fixture
            .copy(&request)
            .unwrap_or_else(|error| panic!("{}: {error}", case.name));
        for (path, content) in case.expected {
            match content {
                Some(content) => assert_eq!(&fixture.read(path), content, "{}: {path}", case.name),
                None => assert!(
                    !fixture.exists(path),
                    "{}: {path} must not exist",
                    case.name
                ),
            }
        }
    }
}

#[test]
fn created_parents_are_root_0755() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    fixture.copy(&request(&["a"], "/x/y/z")).unwrap();
    for dir in ["x", "x/y"] {
        let metadata = fixture.meta(dir);
        assert!(metadata.is_dir(), "{dir}");
        assert_eq!(metadata.mode() & 0o7777, 0o755, "{dir}");
        assert_eq!((metadata.uid(), metadata.gid()), (0, 0), "{dir}");
    }
}

#[test]
fn file_mode_and_mtime_kept() {
    let fixture = Fixture::new();
    let host = fixture.file("run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o751)).unwrap();
    let old = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &host, &old, rustix::fs::AtFlags::empty()).unwrap();
    fixture.copy(&request(&["run.sh"], "/bin/")).unwrap();
    let metadata = fixture.meta("bin/run.sh");
    assert_eq!(metadata.mode() & 0o7777, 0o751);
    assert_eq!(metadata.mtime(), 1_000_000);
    assert_eq!((metadata.uid(), metadata.gid()), (0, 0));
}

#[test]
fn existing_dir_keeps_image_metadata() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let opt = fixture.image.join("opt");
    std::fs::create_dir(&opt).unwrap();
    std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o710)).unwrap();
    std::os::unix::fs::chown(&opt, Some(5), Some(6)).unwrap();

    fixture.copy(&request(&["a"], "/opt")).unwrap();

    let metadata = fixture.meta("opt");
    assert!(
        metadata.is_dir(),
        "an existing directory takes the file inside"
    );
    assert_eq!(metadata.mode() & 0o7777, 0o710);
    assert_eq!((metadata.uid(), metadata.gid()), (5, 6));
    assert_eq!(fixture.read("opt/a"), "A");
}

#[test]
fn copied_dir_merges_into_existing() {
    let fixture = Fixture::new();
    fixture.file("etc/app.conf", "conf");
    std::fs::set_permissions(
        fixture.context.join("etc"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fixture.image_file("etc/hostname", "host");
    std::fs::set_permissions(
        fixture.image.join("etc"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    fixture.copy(&request(&["."], "/")).unwrap();

    assert_eq!(fixture.meta("etc").mode() & 0o7777, 0o755);
    assert_eq!(fixture.read("etc/app.conf"), "conf");
}

#[test]
fn link_ignores_image_dirs() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let opt = fixture.image.join("opt");
    std::fs::create_dir(&opt).unwrap();
    std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut request = request(&["a"], "/opt/");
    request.link = true;
    fixture.copy(&request).unwrap();
    assert_eq!(fixture.meta("opt").mode() & 0o7777, 0o755);
}

#[test]
fn chown_by_name_from_image() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    fixture.image_file(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    );
    fixture.image_file("etc/group", "root:x:0:\nweb:x:33:\n");

    let mut by_user = request(&["a"], "/new/dir/a");
    by_user.chown = Some("app".to_string());
    fixture.copy(&by_user).unwrap();
    let file = fixture.meta("new/dir/a");
    assert_eq!((file.uid(), file.gid()), (1000, 1001));
    let parent = fixture.meta("new/dir");
    assert_eq!((parent.uid(), parent.gid()), (1000, 1001));

    let mut with_group = request(&["a"], "/b");
    with_group.chown = Some("app:web".to_string());
    fixture.copy(&with_group).unwrap();
    let file = fixture.meta("b");
    assert_eq!((file.uid(), file.gid()), (1000, 33));
}

#[test]
fn chown_unknown_user_fails() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let mut request = request(&["a"], "/b");
    request.chown = Some("ghost".to_string());
    let message = fixture.plan(&request).unwrap_err().to_string();
    assert!(message.contains("ghost"), "{message}");
    assert!(message.contains("/etc/passwd"), "{message}");
}

#[test]
fn chmod_octal_and_symbolic() {
    let cases: &[(&str, u32, u32, u32)] = &[
        // (chmod, source file mode, expected file mode, expected dir mode)
        ("0640", 0o644, 0o640, 0o640),
        ("u+x,go-r", 0o644, 0o700, 0o711),
        ("a=rX", 0o600, 0o444, 0o555),
    ];
    for (chmod, source_mode, file_mode, dir_mode) in cases {
        let fixture = Fixture::new();
        let host = fixture.file("d/f", "F");
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(*source_mode)).unwrap();
        std::fs::set_permissions(
            fixture.context.join("d"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let mut request = request(&["d"], "/out");
        request.chmod = Some(chmod.to_string());
        fixture.copy(&request).unwrap();
        assert_eq!(
            fixture.meta("out/f").mode() & 0o7777,
            *file_mode,
            "{chmod} file"
        );
        assert_eq!(
            fixture.meta("out").mode() & 0o7777,
            *dir_mode,
            "{chmod} dir"
        );
    }
}

#[test]
fn parents_keep_source_path() {
    let fixture = Fixture::new();
    fixture.file("a/b/c.txt", "C");
    fixture.file("x/y.txt", "Y");
    let mut request = request(&["a/b/c.txt", "x/*.txt"], "/dst/");
    request.parents = true;
    fixture.copy(&request).unwrap();
    assert_eq!(fixture.read("dst/a/b/c.txt"), "C");
    assert_eq!(fixture.read("dst/x/y.txt"), "Y");
    assert!(!fixture.exists("dst/c.txt"));
}

#[test]
fn exclude_patterns() {
    let fixture = Fixture::new();
    fixture.file("src/main.rs", "main");
    fixture.file("src/debug.log", "log");
    fixture.file("src/deep/trace.log", "log");
    fixture.file("notes.log", "log");
    let mut request = request(&["src", "notes.log"], "/app/");
    request.exclude = vec!["*.log".to_string(), "**/*.log".to_string()];
    fixture.copy(&request).unwrap();
    assert_eq!(fixture.read("app/main.rs"), "main");
    assert!(!fixture.exists("app/debug.log"));
    assert!(!fixture.exists("app/deep/trace.log"));
    assert!(!fixture.exists("app/notes.log"));
}

#[test]
fn heredoc_sources() {
    let fixture = Fixture::new();
    let mut request = request(&[], "/etc/");
    request.heredocs = vec![
        ("motd".to_string(), "hello\n".to_string()),
        ("issue".to_string(), "forge\n".to_string()),
    ];
    fixture.copy(&request).unwrap();
    assert_eq!(fixture.read("etc/motd"), "hello\n");
    assert_eq!(fixture.read("etc/issue"), "forge\n");
    assert_eq!(fixture.meta("etc/motd").mode() & 0o7777, 0o644);

    let mut single = self::request(&[], "/greeting.txt");
    single.heredocs = vec![("EOF".to_string(), "hi".to_string())];
    fixture.copy(&single).unwrap();
    assert_eq!(fixture.read("greeting.txt"), "hi");
}

#[test]
fn hard_links_kept() {
    let fixture = Fixture::new();
    let first = fixture.file("d/one", "same inode");
    std::fs::hard_link(&first, fixture.context.join("d/two")).unwrap();
    fixture.file("d/three", "other");
    fixture.copy(&request(&["d"], "/out")).unwrap();
    let one = fixture.meta("out/one");
    let two = fixture.meta("out/two");
    let three = fixture.meta("out/three");
    assert_eq!(one.ino(), two.ino());
    assert_ne!(one.ino(), three.ino());
    assert_eq!(fixture.read("out/two"), "same inode");
}

#[test]
fn symlinks_kept_not_followed() {
    let fixture = Fixture::new();
    fixture.file("d/target", "T");
    std::os::unix::fs::symlink("target", fixture.context.join("d/rel")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", fixture.context.join("d/abs")).unwrap();
    std::os::unix::fs::symlink("../../../outside", fixture.context.join("d/up")).unwrap();
    fixture.copy(&request(&["d"], "/out")).unwrap();
    for (name, target) in [
        ("rel", "target"),
        ("abs", "/etc/shadow"),
        ("up", "../../../outside"),
    ] {
        let path = fixture.upper.join("out").join(name);
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_symlink(), "{name}");
        assert_eq!(
            std::fs::read_link(&path).unwrap(),
            Path::new(target),
            "{name}"
        );
    }
}

#[test]
fn named_symlink_followed_inside_context() {
    let fixture = Fixture::new();
    fixture.file("real/file", "R");
    std::os::unix::fs::symlink("real", fixture.context.join("alias")).unwrap();
    fixture.copy(&request(&["alias/file"], "/f")).unwrap();
    assert_eq!(fixture.read("f"), "R");
}

#[test]
fn source_paths_stay_in_context() {
    let fixture = Fixture::new();
    fixture.file("g", "context g");
    fixture.file("secret", "context secret");
    fixture.file("etc/passwd", "context passwd");
    std::fs::write(
        fixture.context.parent().unwrap().join("secret"),
        "host secret",
    )
    .unwrap();
    std::os::unix::fs::symlink("/g", fixture.context.join("abslink")).unwrap();
    std::os::unix::fs::symlink("../secret", fixture.context.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc", fixture.context.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../../..", fixture.context.join("up")).unwrap();

    // Each source resolves as inside a chroot at the context root.
    let cases: &[(&str, &str)] = &[
        ("abslink", "context g"),
        ("escape", "context secret"),
        ("../secret", "context secret"),
        ("../../secret", "context secret"),
        ("/secret", "context secret"),
        ("etc-link/passwd", "context passwd"),
        ("up/g", "context g"),
    ];
    for (index, (source, expected)) in cases.iter().enumerate() {
        let destination = format!("/out{index}");
        fixture
            .copy(&request(&[source], &destination))
            .unwrap_or_else(|error| panic!("{source}: {error}"));
        assert_eq!(&fixture.read(&destination), expected, "{source}");
    }
}

#[test]
fn missing_parent_path_explains_root() {
    let fixture = Fixture::new();
    std::fs::write(fixture.context.parent().unwrap().join("only-outside"), "x").unwrap();
    let error = fixture
        .plan(&request(&["../only-outside"], "/x"))
        .unwrap_err();
    assert!(matches!(error, CopyError::NoMatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("`../only-outside`"), "{message}");
    assert!(message.contains("`..` cannot climb above"), "{message}");
    assert_eq!(message.matches("build context").count(), 1, "{message}");
}

#[test]
fn missing_absolute_link_target_not_found() {
    let fixture = Fixture::new();
    std::os::unix::fs::symlink("/g", fixture.context.join("abslink")).unwrap();
    let error = fixture.plan(&request(&["abslink"], "/a")).unwrap_err();
    assert!(matches!(error, CopyError::NoMatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("`abslink`"), "{message}");
    assert!(!message.contains("outside"), "{message}");
    assert_eq!(message.matches("build context").count(), 1, "{message}");
}

#[test]
fn empty_wildcard_is_skipped() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    fixture
        .copy(&request(&["*.none", "a", "nope/*.txt"], "/d/"))
        .unwrap();
    assert_eq!(fixture.read("d/a"), "A");
    let names: Vec<_> = std::fs::read_dir(fixture.upper.join("d"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("a")]);
}

#[test]
fn only_empty_wildcards_write_nothing() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let stats = fixture.copy(&request(&["*.none"], "/x/y/")).unwrap();
    assert_eq!(stats, CopyStats::default());
    assert!(!fixture.exists("x"));
}

#[test]
fn missing_plain_source_beside_wildcard_fails() {
    let fixture = Fixture::new();
    fixture.file("a.txt", "A");
    let error = fixture
        .plan(&request(&["*.txt", "missing"], "/d/"))
        .unwrap_err();
    assert!(matches!(error, CopyError::NoMatch { .. }), "{error}");
    assert!(error.to_string().contains("`missing`"), "{error}");
}

#[test]
fn missing_source_error_text() {
    let fixture = Fixture::new();
    let error = fixture.plan(&request(&["nope/a.txt"], "/x")).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("COPY failed"), "{message}");
    assert!(message.contains("`nope/a.txt`"), "{message}");
    let root = std::fs::canonicalize(&fixture.context).unwrap();
    assert!(message.contains(&root.display().to_string()), "{message}");
    assert!(!message.contains("cannot climb"), "{message}");

    let empty = fixture.plan(&request(&[], "/x")).unwrap_err();
    assert!(matches!(empty, CopyError::NoSources), "{empty}");
}

#[test]
fn dockerignore_applied() {
    let fixture = Fixture::new();
    fixture.file("keep.txt", "K");
    fixture.file("secret.env", "S");
    fixture.file("logs/a.log", "L");
    fixture.file("logs/important.log", "I");
    fixture.file("Dockerfile", "FROM scratch\n");
    fixture.file(
        ".dockerignore",
        "*.env\nlogs\n!logs/important.log\nDockerfile\n.dockerignore\n",
    );

    fixture.copy(&request(&["."], "/app/")).unwrap();

    assert_eq!(fixture.read("app/keep.txt"), "K");
    assert!(!fixture.exists("app/secret.env"));
    assert!(!fixture.exists("app/logs/a.log"));
    assert_eq!(fixture.read("app/logs/important.log"), "I");
    assert!(!fixture.exists("app/Dockerfile"));
    assert!(!fixture.exists("app/.dockerignore"));

    let error = fixture.plan(&request(&["secret.env"], "/x")).unwrap_err();
    assert!(matches!(error, CopyError::Excluded { .. }), "{error}");
    assert!(error.to_string().contains(".dockerignore"), "{error}");
}

#[test]
fn dockerfile_dockerignore_preferred() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    fixture.file("b", "B");
    fixture.file(".dockerignore", "a\n");
    fixture.file("Dockerfile.dockerignore", "b\n");
    fixture.copy(&request(&["."], "/out/")).unwrap();
    assert_eq!(fixture.read("out/a"), "A");
    assert!(!fixture.exists("out/b"));
}

#[test]
fn digest_ignores_mtime_only() {
    let fixture = Fixture::new();
    let host = fixture.file("a", "A");
    let before = fixture.plan(&request(&["a"], "/a")).unwrap().digest();

    let old = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &host, &old, rustix::fs::AtFlags::empty()).unwrap();
    let touched = fixture.plan(&request(&["a"], "/a")).unwrap().digest();
    assert_eq!(before, touched);

    let mut chmod = request(&["a"], "/a");
    chmod.chmod = Some("600".to_string());
    assert_ne!(before, fixture.plan(&chmod).unwrap().digest());

    let mut chown = request(&["a"], "/a");
    chown.chown = Some("7".to_string());
    assert_ne!(before, fixture.plan(&chown).unwrap().digest());

    assert_ne!(
        before,
        fixture.plan(&request(&["a"], "/b")).unwrap().digest()
    );

    std::fs::write(&host, "B").unwrap();
    let changed = fixture.plan(&request(&["a"], "/a")).unwrap();
    assert_ne!(before, changed.digest());
    let summary = changed.summary();
    assert!(summary.iter().any(|(path, _)| path == "/a"), "{summary:?}");
}

#[test]
fn copy_from_root_view_keeps_owners() {
    let fixture = Fixture::new();
    let stage = fixture.image.parent().unwrap().join("stage");
    std::fs::create_dir_all(stage.join("app/bin")).unwrap();
    std::fs::write(stage.join("app/bin/tool"), "tool").unwrap();
    std::os::unix::fs::chown(stage.join("app/bin/tool"), Some(11), Some(12)).unwrap();
    std::os::unix::fs::symlink("/app/bin", stage.join("bin-link")).unwrap();
    let stage_view = RootView::new(vec![stage]);

    let plan = CopyPlan::new(
        CopySource::Root(&stage_view),
        &request(&["/bin-link/tool"], "/usr/local/bin/"),
        &fixture.view(),
        &HashCache::new(),
    )
    .unwrap();
    plan.apply(&fixture.upper, &fixture.view()).unwrap();

    let metadata = fixture.meta("usr/local/bin/tool");
    assert_eq!((metadata.uid(), metadata.gid()), (11, 12));
    assert_eq!(fixture.read("usr/local/bin/tool"), "tool");
}

#[test]
fn destination_through_image_symlink() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    std::fs::create_dir_all(fixture.image.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", fixture.image.join("lib")).unwrap();
    fixture.copy(&request(&["a"], "/lib/")).unwrap();
    assert_eq!(fixture.read("usr/lib/a"), "A");
    assert!(fixture.meta("usr/lib").is_dir());
}

#[test]
fn destination_through_absolute_image_symlink() {
    // Destination, workdir, and where the file lands in the layer.
    let cases: &[(&str, &str, &str)] = &[
        ("/link/", "/", "opt/real/f"),
        ("/link", "/", "opt/real/f"),
        ("/link/sub/g", "/", "opt/real/sub/g"),
        ("f2", "/link/wd", "opt/real/wd/f2"),
        (".", "/link", "opt/real/f"),
        ("../top", "/link", "top"),
    ];
    for (destination, workdir, expected) in cases {
        let fixture = Fixture::new();
        fixture.file("f", "F");
        std::fs::create_dir_all(fixture.image.join("opt/real")).unwrap();
        std::os::unix::fs::symlink("/opt/real", fixture.image.join("link")).unwrap();
        let mut request = request(&["f"], destination);
        request.workdir = workdir.to_string();
        fixture
            .copy(&request)
            .unwrap_or_else(|error| panic!("{destination}: {error}"));
        assert_eq!(fixture.read(expected), "F", "{destination} in {workdir}");
        assert!(
            !fixture.exists("link"),
            "{destination} in {workdir}: /link written"
        );
    }
}

#[test]
fn source_cleaned_before_symlinks() {
    let fixture = Fixture::new();
    fixture.file("top", "top");
    fixture.file("a/b/top", "deep");
    std::os::unix::fs::symlink("a/b", fixture.context.join("link")).unwrap();
    fixture.copy(&request(&["link/../top"], "/t")).unwrap();
    assert_eq!(fixture.read("t"), "top");
}

#[test]
fn excluded_dir_with_exception() {
    let fixture = Fixture::new();
    fixture.file("docs/a.md", "A");
    fixture.file("docs/keep.md", "K");
    fixture.file(".dockerignore", "docs\n!docs/keep.md\n");
    fixture.copy(&request(&["docs"], "/d/")).unwrap();
    assert_eq!(fixture.read("d/keep.md"), "K");
    assert!(!fixture.exists("d/a.md"));
}

#[test]
fn copy_into_root_keeps_root() {
    let fixture = Fixture::new();
    fixture.file("etc/motd", "hi");
    std::fs::set_permissions(&fixture.context, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&fixture.upper, std::fs::Permissions::from_mode(0o755)).unwrap();
    fixture.copy(&request(&["."], "/")).unwrap();
    assert_eq!(fixture.read("etc/motd"), "hi");
    let root = std::fs::metadata(&fixture.upper).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o755);
}

#[test]
fn invalid_exclude_pattern_named() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let mut request = request(&["a"], "/b");
    request.exclude = vec!["[oops".to_string()];
    let error = fixture.plan(&request).unwrap_err();
    assert!(matches!(error, CopyError::InvalidExclude { .. }), "{error}");
    assert!(error.to_string().contains("[oops"), "{error}");
}
