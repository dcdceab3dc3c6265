//! Layers unpacked alone with `WhiteoutMode::Overlay`, stacked as overlayfs
//! lower directories, and written back as layers.
//!
//! Tests that need root (device nodes, `trusted.*` xattrs, mounts) return
//! early when not run as root, except under `CI`, where they fail.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_cache::layer::{
    Compression, DiffKind, ExtractOptions, MediaType, WhiteoutMode, WriteOptions, extract,
    write_layer,
};
use forge_cache::store::Store;

fn require_root(test: &str) -> bool {
    forge_testkit::require_root(test)
}

fn overlay_options() -> ExtractOptions {
    ExtractOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ExtractOptions::for_current_user()
    }
}

/// One tar entry: a file with content, a directory, or an empty marker file.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
}

fn layer_tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_ustar();
        match item {
            Item::File(name, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data).unwrap();
            }
            Item::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, name, &[][..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn lower_layer() -> Vec<u8> {
    layer_tar(&[
        Item::File("deleted", b"lower"),
        Item::File("kept", b"lower"),
        Item::Dir("opaque/"),
        Item::File("opaque/hidden", b"lower"),
        Item::Dir("opaque/hidden-dir/"),
        Item::File("opaque/hidden-dir/deep", b"lower"),
        Item::Dir("merged/"),
        Item::File("merged/from-lower", b"lower"),
    ])
}

fn upper_layer() -> Vec<u8> {
    layer_tar(&[
        Item::File(".wh.deleted", b""),
        Item::Dir("merged/"),
        Item::File("merged/from-upper", b"upper"),
        Item::Dir("opaque/"),
        Item::File("opaque/.wh..wh..opq", b""),
        Item::File("opaque/new", b"upper"),
    ])
}

fn is_whiteout_device(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(metadata) => metadata.file_type().is_char_device() && metadata.rdev() == 0,
        Err(_) => false,
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut value = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut value) {
        Ok(length) => {
            value.truncate(length);
            Some(value)
        }
        Err(_) => None,
    }
}

/// Returns the sorted relative paths of every entry below `root`.
fn listing(root: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(root.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let child = relative.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                pending.push(child.clone());
            }
            paths.push(child.to_string_lossy().into_owned());
        }
    }
    paths.sort();
    paths
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| String::from_utf8_lossy(&entry.unwrap().path_bytes()).into_owned())
        .collect()
}

/// Unmounts the overlay when the test ends, even on failure.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn overlay_mode_keeps_whiteout_as_device() {
    if !require_root("overlay_mode_keeps_whiteout_as_device") {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let summary = extract(&upper_layer()[..], dest.path(), &overlay_options()).unwrap();

    assert_eq!(summary.whiteouts, 2);
    assert!(is_whiteout_device(&dest.path().join("deleted")));
    assert!(!dest.path().join(".wh.deleted").exists());
    assert!(!dest.path().join("opaque/.wh..wh..opq").exists());
    assert_eq!(
        xattr(&dest.path().join("opaque"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr(&dest.path().join("merged"), "trusted.overlay.opaque"),
        None
    );
}

#[test]
fn overlay_mode_creates_missing_parents() {
    if !require_root("overlay_mode_creates_missing_parents") {
        return;
    }
    let tar = layer_tar(&[
        Item::File("a/b/.wh.gone", b""),
        Item::File("c/d/.wh..wh..opq", b""),
    ]);
    let dest = tempfile::tempdir().unwrap();
    extract(&tar[..], dest.path(), &overlay_options()).unwrap();

    assert!(is_whiteout_device(&dest.path().join("a/b/gone")));
    assert!(dest.path().join("c/d").is_dir());
    assert_eq!(
        xattr(&dest.path().join("c/d"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
}

#[test]
fn overlay_mode_directory_over_whiteout_is_opaque() {
    if !require_root("overlay_mode_directory_over_whiteout_is_opaque") {
        return;
    }
    // The layer deletes the lower `d` and creates a new directory there.
    let tar = layer_tar(&[
        Item::File(".wh.d", b""),
        Item::Dir("d/"),
        Item::File("d/f", b"new"),
    ]);
    let dest = tempfile::tempdir().unwrap();
    extract(&tar[..], dest.path(), &overlay_options()).unwrap();

    assert!(dest.path().join("d").is_dir());
    assert_eq!(
        xattr(&dest.path().join("d"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(dest.path().join("d/f")).unwrap(), b"new");
}

#[test]
fn whiteout_never_hides_same_layer_entry() {
    let tar = layer_tar(&[Item::File("f", b"same layer"), Item::File(".wh.f", b"")]);
    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let options = ExtractOptions {
            whiteouts,
            ..ExtractOptions::for_current_user()
        };
        let dest = tempfile::tempdir().unwrap();
        let summary = extract(&tar[..], dest.path(), &options).unwrap();
        assert_eq!(
            fs::read(dest.path().join("f")).unwrap(),
            b"same layer",
            "{whiteouts:?}"
        );
        assert_eq!(summary.whiteouts, 0, "{whiteouts:?}");
        assert_eq!(summary.skipped, 1, "{whiteouts:?}");
    }
}

#[test]
fn apply_mode_creates_no_marker() {
    let dest = tempfile::tempdir().unwrap();
    extract(
        &upper_layer()[..],
        dest.path(),
        &ExtractOptions::for_current_user(),
    )
    .unwrap();
    assert!(!dest.path().join("deleted").exists());
    assert!(fs::symlink_metadata(dest.path().join("deleted")).is_err());
    assert_eq!(
        xattr(&dest.path().join("opaque"), "trusted.overlay.opaque"),
        None
    );
    assert_eq!(
        xattr(&dest.path().join("opaque"), "user.overlay.opaque"),
        None
    );
}

#[test]
fn overlay_lowers_show_deletions() {
    if !require_root("overlay_lowers_show_deletions") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let [lower, upper, merged] = ["lower", "upper", "merged"].map(|name| work.path().join(name));
    for dir in [&lower, &upper, &merged] {
        fs::create_dir(dir).unwrap();
    }
    extract(&lower_layer()[..], &lower, &overlay_options()).unwrap();
    extract(&upper_layer()[..], &upper, &overlay_options()).unwrap();

    // Two lower directories and no upper one give a read-only overlay.
    let options = format!("lowerdir={}:{}", upper.display(), lower.display());
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mount -o {options} failed");
    let _mount = Mount(merged.clone());

    assert_eq!(
        listing(&merged),
        [
            "kept",
            "merged",
            "merged/from-lower",
            "merged/from-upper",
            "opaque",
            "opaque/new",
        ]
    );
    assert_eq!(fs::read(merged.join("kept")).unwrap(), b"lower");
    assert_eq!(fs::read(merged.join("opaque/new")).unwrap(), b"upper");
    assert_eq!(
        fs::read(merged.join("merged/from-upper")).unwrap(),
        b"upper"
    );
}

#[test]
fn overlay_unpacked_writes_back_whiteouts() {
    if !require_root("overlay_unpacked_writes_back_whiteouts") {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    extract(&upper_layer()[..], dest.path(), &overlay_options()).unwrap();

    let options = WriteOptions {
        compression: Compression::None,
        kind: DiffKind::Overlay,
        ..WriteOptions::default()
    };
    let mut blob = Vec::new();
    write_layer(dest.path(), &options, &mut blob).unwrap();
    let names = tar_names(&blob);
    assert_eq!(
        names,
        [
            ".wh.deleted",
            "merged/",
            "merged/from-upper",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/new",
        ]
    );

    // Unpacking the written layer again gives the same markers.
    let again = tempfile::tempdir().unwrap();
    extract(&blob[..], again.path(), &overlay_options()).unwrap();
    assert!(is_whiteout_device(&again.path().join("deleted")));
    assert_eq!(
        xattr(&again.path().join("opaque"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
}

#[test]
fn store_unpacks_layer_with_markers() {
    if !require_root("store_unpacks_layer_with_markers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = upper_layer();
    let blob = store.put_blob(&tar).unwrap();
    let descriptor = blob.descriptor(MediaType::ImageLayer);

    let path = store.ensure_unpacked(&descriptor, &blob.digest).unwrap();
    assert!(is_whiteout_device(&path.join("deleted")));
    assert_eq!(
        xattr(&path.join("opaque"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(path.join("opaque/new")).unwrap(), b"upper");
}
