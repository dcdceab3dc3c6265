//! Extended attributes and file capabilities through COPY: read from the
//! context or a stage, written to the layer folder, and part of the plan's
//! digest. File capabilities need root, so those tests skip without it.

// The tests print on standard error why they skip.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_builder::context::{Context, HashCache};
use forge_builder::copy::{CopyError, CopyPlan, CopyRequest, CopySource};
use forge_builder::rootfs::RootView;
use rustix::fs::XattrFlags;

/// A value with bytes that are not text, to show values are copied as bytes.
const BINARY: &[u8] = b"\x00\xff\x01bin\n\x7f";

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

    fn copy(&self, request: &CopyRequest) {
        let plan = self.plan(request).unwrap();
        plan.apply(&self.upper, &self.view()).unwrap();
    }

    fn upper(&self, path: &str) -> PathBuf {
        self.upper.join(path)
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

/// Sets an xattr, or returns `false` when the file system rejects user
/// xattrs so the test can skip.
fn set(path: &Path, name: &str, value: &[u8]) -> bool {
    match rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()) {
        Ok(()) => true,
        Err(rustix::io::Errno::NOTSUP) => {
            eprintln!("skipping: {} has no user xattrs", path.display());
            false
        }
        Err(error) => panic!("setting {name} on {}: {error}", path.display()),
    }
}

/// Returns an xattr's value, `None` when it is not set.
fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buffer[..]) {
        Ok(length) => {
            buffer.truncate(length);
            Some(buffer)
        }
        Err(rustix::io::Errno::NODATA) => None,
        Err(error) => panic!("reading {name} of {}: {error}", path.display()),
    }
}

/// Runs `setcap cap_net_raw+ep` on `path`; `false` when the test should
/// skip because it does not run as root or setcap is missing.
fn setcap(path: &Path, test: &str) -> bool {
    if !forge_testkit::require_root(test) || !forge_testkit::require_tool("setcap") {
        return false;
    }
    let output = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(path)
        .output()
        .expect("setcap runs");
    assert!(
        output.status.success(),
        "setcap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

fn getcap(path: &Path) -> String {
    let output = Command::new("getcap")
        .arg(path)
        .output()
        .expect("getcap runs");
    assert!(output.status.success(), "getcap failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn capability_and_binary_xattr_copied() {
    let fixture = Fixture::new();
    let ping = fixture.file("ping", "#!/bin/sh\n");
    if !set(&ping, "user.test", BINARY) || !setcap(&ping, "capability_and_binary_xattr_copied") {
        return;
    }
    let source_capability = get(&ping, "security.capability");
    assert!(source_capability.is_some(), "setcap set no capability");

    fixture.copy(&request(&["ping"], "/bin/"));

    let copied = fixture.upper("bin/ping");
    assert_eq!(get(&copied, "user.test").as_deref(), Some(BINARY));
    assert_eq!(get(&copied, "security.capability"), source_capability);
    let listed = getcap(&copied);
    assert!(listed.contains("cap_net_raw"), "getcap: {listed}");
}

#[test]
fn capability_survives_chown() {
    let fixture = Fixture::new();
    let ping = fixture.file("ping", "#!/bin/sh\n");
    if !setcap(&ping, "capability_survives_chown") {
        return;
    }
    let mut request = request(&["ping"], "/ping");
    request.chown = Some("7:8".to_string());
    fixture.copy(&request);
    let copied = fixture.upper("ping");
    assert_eq!(
        get(&copied, "security.capability"),
        get(&ping, "security.capability")
    );
    let metadata = std::fs::metadata(&copied).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&metadata), 7);
}

#[test]
fn changed_xattr_changes_digest() {
    let fixture = Fixture::new();
    let file = fixture.file("f", "same content");
    let plain = fixture.plan(&request(&["f"], "/f")).unwrap().digest();

    if !set(&file, "user.test", BINARY) {
        return;
    }
    let with_xattr = fixture.plan(&request(&["f"], "/f")).unwrap();
    assert_ne!(plain, with_xattr.digest());
    let summary = with_xattr.summary();
    assert!(
        summary
            .iter()
            .any(|(path, line)| path == "/f" && line.contains("user.test=")),
        "{summary:?}"
    );

    assert!(set(&file, "user.test", b"\x00\xff\x02"));
    let changed = fixture.plan(&request(&["f"], "/f")).unwrap().digest();
    assert_ne!(with_xattr.digest(), changed);

    assert!(set(&file, "user.test", BINARY));
    let restored = fixture.plan(&request(&["f"], "/f")).unwrap().digest();
    assert_eq!(with_xattr.digest(), restored);

    rustix::fs::lremovexattr(&file, "user.test").unwrap();
    let removed = fixture.plan(&request(&["f"], "/f")).unwrap().digest();
    assert_eq!(plain, removed);
}

#[test]
fn directory_xattrs_copied() {
    let fixture = Fixture::new();
    fixture.file("d/inner/file", "x");
    if !set(&fixture.context.join("d/inner"), "user.dir", BINARY) {
        return;
    }
    fixture.copy(&request(&["d"], "/out"));
    assert_eq!(
        get(&fixture.upper("out/inner"), "user.dir").as_deref(),
        Some(BINARY)
    );
    assert_eq!(get(&fixture.upper("out/inner/file"), "user.dir"), None);
}

#[test]
fn overlay_xattrs_not_copied_from_stage() {
    let fixture = Fixture::new();
    let stage = fixture.image.parent().unwrap().join("stage");
    std::fs::create_dir_all(stage.join("app")).unwrap();
    std::fs::write(stage.join("app/file"), "x").unwrap();
    let app = stage.join("app");
    if !set(&app, "user.keep", b"1") {
        return;
    }
    assert!(set(&app, "user.overlay.opaque", b"y"));
    let stage_view = RootView::new(vec![stage]);

    let plan = CopyPlan::new(
        CopySource::Root(&stage_view),
        &request(&["/app"], "/copied"),
        &fixture.view(),
        &HashCache::new(),
    )
    .unwrap();
    plan.apply(&fixture.upper, &fixture.view()).unwrap();

    let copied = fixture.upper("copied");
    assert_eq!(get(&copied, "user.keep").as_deref(), Some(&b"1"[..]));
    assert_eq!(get(&copied, "user.overlay.opaque"), None);
}

#[test]
fn existing_image_dir_keeps_xattrs() {
    let fixture = Fixture::new();
    fixture.file("a", "A");
    let srv = fixture.image.join("srv");
    std::fs::create_dir(&srv).unwrap();
    if !set(&srv, "user.image", b"kept") {
        return;
    }
    fixture.copy(&request(&["a"], "/srv/"));
    assert_eq!(
        get(&fixture.upper("srv"), "user.image").as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(get(&fixture.upper("srv/a"), "user.image"), None);
}
