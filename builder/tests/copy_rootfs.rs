//! RootView overlay rules: whiteouts and opaque directories.

use std::path::{Path, PathBuf};

use forge_builder::rootfs::RootView;
use rustix::fs::{FileType, Mode};

fn layer(root: &Path, name: &str, files: &[&str]) -> PathBuf {
    let path = root.join(name);
    for file in files {
        let host = path.join(file);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, *file).unwrap();
    }
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn whiteout(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0),
        0,
    )
    .unwrap();
}

#[test]
fn whiteout_hides_lower_path() {
    let temp = tempfile::tempdir().unwrap();
    let lower = layer(temp.path(), "lower", &["etc/a", "etc/b", "var/x"]);
    let upper = layer(temp.path(), "upper", &[]);
    whiteout(&upper.join("etc/a"));
    whiteout(&upper.join("var"));
    let view = RootView::new(vec![upper, lower]);

    assert!(view.lstat("/etc/a").unwrap().is_none());
    assert!(view.read_file("/etc/a").unwrap().is_none());
    assert!(view.lstat("/etc/b").unwrap().is_some());
    assert!(view.lstat("/var").unwrap().is_none());
    assert!(view.lstat("/var/x").unwrap().is_none());
    assert_eq!(view.read_dir("/etc").unwrap(), vec!["b"]);
    assert_eq!(view.read_dir("/").unwrap(), vec!["etc"]);
}

#[test]
fn opaque_dir_hides_lower_contents() {
    let mut tested = 0;
    for xattr in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let temp = tempfile::tempdir().unwrap();
        let lower = layer(temp.path(), "lower", &["data/old", "keep/k"]);
        let upper = layer(temp.path(), "upper", &["data/new"]);
        match rustix::fs::setxattr(
            upper.join("data"),
            xattr,
            b"y",
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            // tmpfs before Linux 6.6 has no user xattrs.
            Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => continue,
            Err(error) => panic!("{xattr}: {error}"),
        }
        let view = RootView::new(vec![upper, lower]);

        assert_eq!(view.read_dir("/data").unwrap(), vec!["new"], "{xattr}");
        assert!(view.lstat("/data/old").unwrap().is_none(), "{xattr}");
        assert!(view.lstat("/data/new").unwrap().is_some(), "{xattr}");
        assert!(view.lstat("/keep/k").unwrap().is_some(), "{xattr}");
        tested += 1;
    }
    assert!(tested > 0, "the file system took neither opaque xattr");
}

#[test]
fn recreated_after_whiteout_in_higher_layer() {
    let temp = tempfile::tempdir().unwrap();
    let bottom = layer(temp.path(), "bottom", &["f"]);
    let middle = layer(temp.path(), "middle", &[]);
    whiteout(&middle.join("f"));
    let top = layer(temp.path(), "top", &[]);
    std::fs::write(top.join("f"), "again").unwrap();
    let view = RootView::new(vec![top, middle, bottom]);
    assert_eq!(
        view.read_file("/f").unwrap().as_deref(),
        Some(&b"again"[..])
    );
}
