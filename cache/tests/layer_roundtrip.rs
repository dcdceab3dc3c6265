//! Layer writing and extraction against real trees, the system `tar`,
//! `gzip` and `zstd`, hostile tar streams and a real overlay mount.
//!
//! Tests that need root (devices, owners, `trusted.*` xattrs, mounts) return
//! early when not run as root, except under `CI`, where they fail.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_cache::layer::{
    Compression, DiffKind, ExtractOptions, LayerError, WriteOptions, decompress, extract,
    layer_diff_id, write_layer, write_layer_threaded,
};
use sha2::{Digest as _, Sha256};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn require_root(test: &str) -> bool {
    forge_testkit::require_root(test)
}

fn sha256_text(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, seconds: i64) {
    let time = rustix::fs::Timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Builds a tree with every entry type the layer format carries.
fn build_tree(root: &Path) {
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/file"), b"hello layer\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("big"), pseudo_random(3 * 1024 * 1024 + 17, 42)).unwrap();

    fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(root.join("shared")).unwrap();
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();

    fs::hard_link(root.join("dir/file"), root.join("hardlink")).unwrap();
    symlink("dir/file", root.join("symlink")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    symlink("t".repeat(150), root.join("long-target")).unwrap();

    let long_dir = root.join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(200)), b"long name").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name").unwrap();
    fs::write(root.join("caf\u{e9}-utf8"), b"utf-8 name").unwrap();

    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();

    set_xattr(
        &root.join("dir/file"),
        "user.forge.note",
        b"value with spaces",
    );
    set_xattr(&root.join("dir"), "user.forge.dir", b"d");

    if is_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("loop"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 0),
        )
        .unwrap();
        // A version 2 file capability granting CAP_NET_BIND_SERVICE.
        let mut capability = vec![0u8; 20];
        capability[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        capability[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
        set_xattr(&root.join("setuid"), "trusted.forge", b"t");
        std::os::unix::fs::lchown(root.join("empty"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("dangling"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::chown(root.join("big"), Some(3_000_000), Some(3_000_001)).unwrap();
        // The capability goes last because chown clears it.
        fs::write(root.join("capable"), b"binary").unwrap();
        set_xattr(&root.join("capable"), "security.capability", &capability);
    }

    for (index, path) in walk(root).iter().enumerate() {
        set_mtime(path, 1_600_000_000 + index as i64);
    }
    set_mtime(root, 1_500_000_000);
}

/// Returns every path below `root`, children before their directory, so
/// that setting mtimes in this order leaves directories' mtimes in place.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}

/// Everything extraction must reproduce about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Option<String>,
    target: Option<Vec<u8>>,
    rdev: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first path (in sorted order) sharing this inode.
    link_group: Vec<u8>,
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let length = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    names.truncate(length);
    let mut xattrs = Vec::new();
    for name in names
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
    {
        let mut value = vec![0u8; 4096];
        let length = rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..]).unwrap();
        value.truncate(length);
        xattrs.push((name.to_vec(), value));
    }
    xattrs.sort();
    xattrs
}

fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut paths = walk(root);
    paths.sort();
    for path in paths {
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let metadata = fs::symlink_metadata(&path).unwrap();
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            "dir"
        } else if file_type.is_file() {
            "file"
        } else if file_type.is_symlink() {
            "symlink"
        } else if file_type.is_char_device() {
            "char"
        } else if file_type.is_block_device() {
            "block"
        } else if file_type.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let link_group = if file_type.is_file() {
            inodes
                .entry(metadata.ino())
                .or_insert_with(|| relative.clone())
                .clone()
        } else {
            relative.clone()
        };
        nodes.insert(
            relative,
            Node {
                kind,
                mode: metadata.mode() & 0o7777,
                uid: metadata.uid(),
                gid: metadata.gid(),
                mtime: metadata.mtime(),
                content: file_type
                    .is_file()
                    .then(|| sha256_text(&fs::read(&path).unwrap())),
                target: file_type.is_symlink().then(|| {
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                }),
                rdev: metadata.rdev(),
                xattrs: if file_type.is_symlink() {
                    Vec::new()
                } else {
                    read_xattrs(&path)
                },
                link_group,
            },
        );
    }
    nodes
}

fn write(dir: &Path, compression: Compression) -> (forge_cache::layer::LayerDescriptor, Vec<u8>) {
    let options = WriteOptions {
        compression,
        ..WriteOptions::default()
    };
    let mut blob = Vec::new();
    let descriptor = write_layer(dir, &options, &mut blob).unwrap();
    (descriptor, blob)
}

fn decompressed(blob: &[u8]) -> Vec<u8> {
    let mut reader = decompress(Box::new(Cursor::new(blob.to_vec()))).unwrap();
    let mut tar = Vec::new();
    reader.read_to_end(&mut tar).unwrap();
    tar
}

fn tar_names(tar: &[u8]) -> Vec<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path_bytes().into_owned())
        .collect()
}

fn run(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn roundtrip(compression: Compression) {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    let (descriptor, blob) = write(source.path(), compression);

    assert_eq!(descriptor.digest.to_string(), sha256_text(&blob));
    assert_eq!(descriptor.size, blob.len() as u64);
    let tar = decompressed(&blob);
    assert_eq!(descriptor.diff_id.to_string(), sha256_text(&tar));

    let names = tar_names(&tar);
    assert!(
        !names.iter().any(|name| name == b"socket"),
        "sockets are skipped"
    );
    let position = |name: &[u8]| names.iter().position(|entry| entry == name).unwrap();
    assert!(position(b"dir/") < position(b"dir/file"));
    assert!(names.contains(&b"caf\xe9".to_vec()));

    let dest = tempfile::tempdir().unwrap();
    let summary = extract(&tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(summary.entries as usize, names.len());
    assert_eq!(summary.whiteouts, 0);

    let mut expected = snapshot(source.path());
    expected.remove(b"socket".as_slice());
    let actual = snapshot(dest.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected {
        assert_eq!(
            Some(node),
            actual.get(path),
            "{}",
            String::from_utf8_lossy(path)
        );
    }
}

#[test]
fn roundtrip_gzip_every_entry_type() {
    roundtrip(Compression::Gzip);
}

#[test]
fn roundtrip_zstd_every_entry_type() {
    roundtrip(Compression::Zstd);
}

#[test]
fn roundtrip_uncompressed() {
    roundtrip(Compression::None);
}

#[test]
fn threaded_writer_gives_same_blob() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    // Enough data for several pipe chunks and gzip blocks.
    fs::write(source.path().join("large"), pseudo_random(3 << 20, 17)).unwrap();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (serial, serial_blob) = write(source.path(), compression);
        let options = WriteOptions {
            compression,
            ..WriteOptions::default()
        };
        let mut threaded_blob = Vec::new();
        let threaded = write_layer_threaded(source.path(), &options, &mut threaded_blob).unwrap();
        assert_eq!(threaded, serial, "{compression}");
        assert!(threaded_blob == serial_blob, "{compression}: blobs differ");
        assert_eq!(threaded.digest.to_string(), sha256_text(&threaded_blob));
    }
}

#[test]
fn threaded_writer_reports_sink_error() {
    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("large"), pseudo_random(2 << 20, 3)).unwrap();
    let error =
        write_layer_threaded(source.path(), &WriteOptions::default(), &mut Failing).unwrap_err();
    assert!(matches!(error, LayerError::Write { .. }), "{error:?}");
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("disk full"), "{error:?}");
}

#[test]
fn system_tools_accept_gzip_layer() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    let (_, blob) = write(source.path(), Compression::Gzip);
    let work = tempfile::tempdir().unwrap();
    let blob_path = work.path().join("layer.tar.gz");
    fs::write(&blob_path, &blob).unwrap();

    run(Command::new("gzip").arg("-t").arg(&blob_path));
    let listing = run(Command::new("tar").arg("-tvzf").arg(&blob_path));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("dir/file"));
    assert!(listing.contains(&"f".repeat(200)));
    assert!(listing.contains("hardlink link to dir/file"));

    let unpacked = work.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&blob_path)
        .arg("-C")
        .arg(&unpacked));
    assert_eq!(
        fs::read(unpacked.join("dir/file")).unwrap(),
        b"hello layer\n"
    );
    assert_eq!(
        fs::read(unpacked.join("big")).unwrap(),
        fs::read(source.path().join("big")).unwrap()
    );
}

#[test]
fn system_tools_accept_zstd_layer() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    let (_, blob) = write(source.path(), Compression::Zstd);
    let work = tempfile::tempdir().unwrap();
    let blob_path = work.path().join("layer.tar.zst");
    fs::write(&blob_path, &blob).unwrap();

    run(Command::new("zstd").arg("-t").arg("-q").arg(&blob_path));
    let listing = run(Command::new("tar")
        .arg("--zstd")
        .arg("-tvf")
        .arg(&blob_path));
    assert!(String::from_utf8_lossy(&listing.stdout).contains("dir/file"));
}

#[test]
fn same_input_gives_same_bytes() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (first_descriptor, first) = write(source.path(), compression);
        let (second_descriptor, second) = write(source.path(), compression);
        assert_eq!(first_descriptor, second_descriptor, "{compression}");
        assert!(first == second, "{compression} output differs between runs");
    }
}

#[test]
fn copied_tree_gives_same_digest() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    let copy = tempfile::tempdir().unwrap();
    let tar = decompressed(&write(source.path(), Compression::None).1);
    extract(&tar[..], copy.path(), &ExtractOptions::default()).unwrap();
    let (original, _) = write(source.path(), Compression::Gzip);
    let (copied, _) = write(copy.path(), Compression::Gzip);
    assert_eq!(original.diff_id, copied.diff_id);
    assert_eq!(original.digest, copied.digest);
}

// ---- hostile tar streams ----

/// A tar entry with a raw name that the tar crate's setters would refuse.
enum Raw<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    HardLink(&'a [u8], &'a [u8]),
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut output = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let (name, link, data, kind): (&[u8], &[u8], &[u8], tar::EntryType) = match entry {
            Raw::File(name, data) => (name, b"", data, tar::EntryType::Regular),
            Raw::Dir(name) => (name, b"", b"", tar::EntryType::Directory),
            Raw::Symlink(name, target) => (name, target, b"", tar::EntryType::Symlink),
            Raw::HardLink(name, target) => (name, target, b"", tar::EntryType::Link),
        };
        header.as_mut_bytes()[..name.len()].copy_from_slice(name);
        header.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        output.extend_from_slice(header.as_bytes());
        output.extend_from_slice(data);
        output.resize(output.len().div_ceil(512) * 512, 0);
    }
    output.extend_from_slice(&[0u8; 1024]);
    output
}

/// A destination inside a sandbox directory, so escapes land where the test can see them.
struct Sandbox {
    _root: tempfile::TempDir,
    outside: PathBuf,
    dest: PathBuf,
}

fn sandbox() -> Sandbox {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    let dest = root.path().join("dest");
    fs::create_dir(&outside).unwrap();
    fs::create_dir(&dest).unwrap();
    Sandbox {
        _root: root,
        outside,
        dest,
    }
}

fn outside_is_empty(sandbox: &Sandbox) -> bool {
    fs::read_dir(&sandbox.outside).unwrap().next().is_none()
        && fs::read_dir(sandbox.outside.parent().unwrap())
            .unwrap()
            .count()
            == 2
}

#[test]
fn malicious_dotdot_name_rejected() {
    let sandbox = sandbox();
    let tar = raw_tar(&[Raw::File(b"../x", b"escape")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::UnsafeEntry { ref entry, .. }) if entry == "../x"));
    assert!(outside_is_empty(&sandbox));
}

#[test]
fn malicious_nested_dotdot_rejected() {
    let sandbox = sandbox();
    let tar = raw_tar(&[Raw::File(b"a/../../outside/x", b"escape")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::UnsafeEntry { .. })));
    assert!(outside_is_empty(&sandbox));
}

#[test]
fn absolute_name_stays_inside() {
    let sandbox = sandbox();
    let name = b"/etc/forge-layer-test-absolute";
    let tar = raw_tar(&[Raw::File(name, b"inside")]);
    extract(&tar[..], &sandbox.dest, &ExtractOptions::default()).unwrap();
    assert!(!Path::new("/etc/forge-layer-test-absolute").exists());
    assert_eq!(
        fs::read(sandbox.dest.join("etc/forge-layer-test-absolute")).unwrap(),
        b"inside"
    );
}

#[test]
fn symlink_to_outside_not_followed() {
    let sandbox = sandbox();
    let outside = sandbox.outside.as_os_str().as_bytes().to_vec();
    let tar = raw_tar(&[Raw::Symlink(b"a", &outside), Raw::File(b"a/b", b"escape")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(
        result.is_err(),
        "a/b must not be created through the symlink"
    );
    assert!(outside_is_empty(&sandbox));
    assert!(
        fs::symlink_metadata(sandbox.dest.join("a"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn symlink_from_lower_layer_not_followed() {
    let sandbox = sandbox();
    symlink(&sandbox.outside, sandbox.dest.join("lower")).unwrap();
    let tar = raw_tar(&[Raw::File(b"lower/b", b"escape")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(result.is_err());
    assert!(outside_is_empty(&sandbox));
}

#[test]
fn symlink_dotdot_chain_clamped_to_root() {
    let sandbox = sandbox();
    let tar = raw_tar(&[
        Raw::Symlink(b"l1", b".."),
        Raw::Symlink(b"l2", b"l1/../../.."),
        Raw::Dir(b"l2/outside/"),
        Raw::File(b"l2/outside/escape", b"clamped"),
    ]);
    extract(&tar[..], &sandbox.dest, &ExtractOptions::default()).unwrap();
    assert!(outside_is_empty(&sandbox));
    assert_eq!(
        fs::read(sandbox.dest.join("outside/escape")).unwrap(),
        b"clamped"
    );
}

#[test]
fn file_replaces_symlink_without_following() {
    let sandbox = sandbox();
    let victim = sandbox.outside.join("victim");
    fs::write(&victim, b"original").unwrap();
    let target = victim.as_os_str().as_bytes().to_vec();
    let tar = raw_tar(&[Raw::Symlink(b"p", &target), Raw::File(b"p", b"replaced")]);
    extract(&tar[..], &sandbox.dest, &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    assert_eq!(fs::read(sandbox.dest.join("p")).unwrap(), b"replaced");
    assert!(
        fs::symlink_metadata(sandbox.dest.join("p"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn hard_link_to_host_file_rejected() {
    let sandbox = sandbox();
    let links_before = fs::metadata("/etc/passwd").unwrap().nlink();
    let tar = raw_tar(&[Raw::HardLink(b"h", b"/etc/passwd")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::MissingLinkTarget { .. })));
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), links_before);
    assert!(!sandbox.dest.join("h").exists());
}

#[test]
fn hard_link_dotdot_target_rejected() {
    let sandbox = sandbox();
    fs::write(sandbox.outside.join("secret"), b"secret").unwrap();
    let tar = raw_tar(&[Raw::HardLink(b"h", b"../outside/secret")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::UnsafeEntry { .. })));
    assert_eq!(
        fs::metadata(sandbox.outside.join("secret"))
            .unwrap()
            .nlink(),
        1
    );
}

#[test]
fn hard_link_through_symlink_stays_inside() {
    let sandbox = sandbox();
    fs::write(sandbox.outside.join("secret"), b"secret").unwrap();
    let outside = sandbox.outside.as_os_str().as_bytes().to_vec();
    let tar = raw_tar(&[
        Raw::Symlink(b"s", &outside),
        Raw::HardLink(b"h", b"s/secret"),
    ]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::MissingLinkTarget { .. })));
    assert_eq!(
        fs::metadata(sandbox.outside.join("secret"))
            .unwrap()
            .nlink(),
        1
    );
}

#[test]
fn whiteout_naming_parent_rejected() {
    let sandbox = sandbox();
    let tar = raw_tar(&[Raw::File(b"dir/.wh...", b"")]);
    let result = extract(&tar[..], &sandbox.dest, &ExtractOptions::default());
    assert!(matches!(result, Err(LayerError::UnsafeEntry { .. })));
}

#[test]
fn overlay_xattrs_in_layer_not_set() {
    if !require_root("overlay_xattrs_in_layer_not_set") {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    fs::create_dir(source.path().join("d")).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice()),
            ("SCHILY.xattr.user.kept", b"1".as_slice()),
        ])
        .unwrap();
    builder.append_data(&mut header, "d/", &[][..]).unwrap();
    let tar = builder.into_inner().unwrap();

    let dest = tempfile::tempdir().unwrap();
    extract(&tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    let xattrs = read_xattrs(&dest.path().join("d"));
    assert_eq!(xattrs, vec![(b"user.kept".to_vec(), b"1".to_vec())]);
}

// ---- whiteouts over a lower tree ----

fn layer_tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        match data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, name, &[][..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn lower_tree() -> tempfile::TempDir {
    let lower = tempfile::tempdir().unwrap();
    let root = lower.path();
    fs::write(root.join("gone"), b"lower").unwrap();
    fs::create_dir_all(root.join("gone-dir/deep")).unwrap();
    fs::write(root.join("gone-dir/deep/file"), b"lower").unwrap();
    fs::create_dir_all(root.join("opaque/sub")).unwrap();
    fs::write(root.join("opaque/old"), b"lower").unwrap();
    fs::write(root.join("opaque/sub/old"), b"lower").unwrap();
    fs::write(root.join("kept"), b"lower").unwrap();
    fs::write(root.join("was-file"), b"lower").unwrap();
    fs::create_dir_all(root.join("was-dir/inner")).unwrap();
    lower
}

#[test]
fn whiteout_removes_lower_file_and_dir() {
    let lower = lower_tree();
    let tar = layer_tar(&[(".wh.gone", Some(b"")), (".wh.gone-dir", Some(b""))]);
    let summary = extract(&tar[..], lower.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(summary.whiteouts, 2);
    assert!(!lower.path().join("gone").exists());
    assert!(!lower.path().join("gone-dir").exists());
    assert!(!lower.path().join(".wh.gone").exists());
    assert!(lower.path().join("kept").exists());
}

#[test]
fn whiteout_of_missing_path_ignored() {
    let lower = lower_tree();
    let tar = layer_tar(&[("nowhere/.wh.x", Some(b"")), (".wh.absent", Some(b""))]);
    extract(&tar[..], lower.path(), &ExtractOptions::default()).unwrap();
    assert!(!lower.path().join("nowhere").exists());
}

#[test]
fn opaque_hides_lower_keeps_layer() {
    let lower = lower_tree();
    let tar = layer_tar(&[
        ("opaque/", None),
        ("opaque/.wh..wh..opq", Some(b"")),
        ("opaque/new", Some(b"upper")),
    ]);
    extract(&tar[..], lower.path(), &ExtractOptions::default()).unwrap();
    let mut names: Vec<_> = fs::read_dir(lower.path().join("opaque"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["new"]);
    assert!(lower.path().join("kept").exists());
}

#[test]
fn opaque_after_entries_keeps_them() {
    let lower = lower_tree();
    let tar = layer_tar(&[
        ("opaque/", None),
        ("opaque/sub/", None),
        ("opaque/sub/new", Some(b"upper")),
        ("opaque/.wh..wh..opq", Some(b"")),
    ]);
    extract(&tar[..], lower.path(), &ExtractOptions::default()).unwrap();
    assert!(lower.path().join("opaque/sub/new").exists());
    assert!(!lower.path().join("opaque/sub/old").exists());
    assert!(!lower.path().join("opaque/old").exists());
}

#[test]
fn directory_replaces_file_and_file_replaces_directory() {
    let lower = lower_tree();
    let tar = layer_tar(&[
        ("was-dir", Some(b"now a file")),
        ("was-file/", None),
        ("was-file/child", Some(b"c")),
    ]);
    extract(&tar[..], lower.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(
        fs::read(lower.path().join("was-dir")).unwrap(),
        b"now a file"
    );
    assert!(lower.path().join("was-file").is_dir());
    assert_eq!(fs::read(lower.path().join("was-file/child")).unwrap(), b"c");
}

#[test]
fn missing_parents_created() {
    let dest = tempfile::tempdir().unwrap();
    let tar = layer_tar(&[("a/b/c", Some(b"deep"))]);
    extract(&tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dest.path().join("a/b/c")).unwrap(), b"deep");
    assert_eq!(
        fs::metadata(dest.path().join("a")).unwrap().mode() & 0o7777,
        0o755
    );
}

// ---- robustness ----

#[test]
fn truncated_and_random_tar_never_panics() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    let tar = decompressed(&write(source.path(), Compression::None).1);
    // Only the first 64 KiB, so the loop stays fast; it covers many headers.
    let prefix = &tar[..tar.len().min(64 * 1024)];

    let mut cuts: Vec<usize> = (0..prefix.len()).step_by(509).collect();
    cuts.push(prefix.len());
    for cut in cuts {
        let dest = tempfile::tempdir().unwrap();
        let _ = extract(&prefix[..cut], dest.path(), &ExtractOptions::default());
    }

    for seed in 0..64u64 {
        let mut data = prefix[..prefix.len().min(8 * 1024)].to_vec();
        let noise = pseudo_random(64, seed);
        for (index, byte) in noise.iter().enumerate() {
            let position =
                (usize::from(*byte) * 131 + index * 977 + seed as usize * 13) % data.len();
            data[position] ^= noise[(index + 1) % noise.len()] | 1;
        }
        let dest = tempfile::tempdir().unwrap();
        let _ = extract(&data[..], dest.path(), &ExtractOptions::default());

        let random = pseudo_random(4096, seed + 1000);
        let dest = tempfile::tempdir().unwrap();
        let _ = extract(&random[..], dest.path(), &ExtractOptions::default());
    }
}

#[test]
fn decompress_rejects_corrupt_gzip_on_read() {
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("f"), pseudo_random(100_000, 3)).unwrap();
    let (_, mut blob) = write(source.path(), Compression::Gzip);
    let middle = blob.len() / 2;
    blob[middle] ^= 0xff;
    let mut reader = decompress(Box::new(Cursor::new(blob))).unwrap();
    let mut output = Vec::new();
    assert!(reader.read_to_end(&mut output).is_err());
}

// ---- a real overlay mount ----

/// Unmounts the overlay when the test ends, even on failure.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn overlay_upper_dir_becomes_layer() {
    if !require_root("overlay_upper_dir_becomes_layer") {
        return;
    }
    let work_root = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|name| work_root.path().join(name));
    for dir in [&lower, &upper, &work, &merged] {
        fs::create_dir(dir).unwrap();
    }
    fs::write(lower.join("deleted"), b"lower").unwrap();
    fs::write(lower.join("kept"), b"lower").unwrap();
    fs::create_dir_all(lower.join("replaced/inner")).unwrap();
    fs::write(lower.join("replaced/old"), b"lower").unwrap();
    fs::create_dir(lower.join("changed")).unwrap();
    fs::write(lower.join("changed/a"), b"lower").unwrap();
    fs::write(lower.join("changed/b"), b"lower").unwrap();

    let options = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged));
    let mount = Mount(merged.clone());

    fs::remove_file(merged.join("deleted")).unwrap();
    fs::remove_dir_all(merged.join("replaced")).unwrap();
    fs::create_dir(merged.join("replaced")).unwrap();
    fs::write(merged.join("replaced/new"), b"upper").unwrap();
    fs::remove_file(merged.join("changed/a")).unwrap();
    fs::write(merged.join("changed/c"), b"upper").unwrap();
    fs::write(merged.join("added"), b"upper").unwrap();
    let expected = snapshot(&merged);
    drop(mount);

    let options = WriteOptions {
        compression: Compression::Gzip,
        kind: DiffKind::Overlay,
        ..WriteOptions::default()
    };
    let mut blob = Vec::new();
    write_layer(&upper, &options, &mut blob).unwrap();
    let tar = decompressed(&blob);
    let names: Vec<String> = tar_names(&tar)
        .iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    assert!(names.contains(&".wh.deleted".to_string()), "{names:?}");
    assert!(names.contains(&"changed/.wh.a".to_string()), "{names:?}");
    assert!(
        names.contains(&"replaced/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"added".to_string()), "{names:?}");
    assert!(!names.contains(&"kept".to_string()), "{names:?}");
    let opaque = names
        .iter()
        .position(|name| name == "replaced/.wh..wh..opq")
        .unwrap();
    let directory = names.iter().position(|name| name == "replaced/").unwrap();
    assert_eq!(opaque, directory + 1);

    // Applying the layer over a copy of the lower tree gives the merged view.
    let applied = tempfile::tempdir().unwrap();
    let lower_tar = decompressed(&write(&lower, Compression::None).1);
    extract(&lower_tar[..], applied.path(), &ExtractOptions::default()).unwrap();
    extract(&tar[..], applied.path(), &ExtractOptions::default()).unwrap();
    let actual = snapshot(applied.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected {
        let actual_node = actual.get(path).unwrap();
        assert_eq!(node.kind, actual_node.kind);
        assert_eq!(node.content, actual_node.content);
        assert_eq!(node.mode, actual_node.mode);
    }
}

// ---- xattr values with newline and NUL bytes ----

/// A `user.test` value with the bytes that newline-splitting PAX readers lose.
const BINARY_VALUE: &[u8] = b"line one\nline two\0after nul\n\n=x\n";

/// Gives `path` a `security.capability` value with a newline byte: the
/// capability set 0x0a (`CAP_DAC_OVERRIDE` and `CAP_FOWNER`) is byte 10.
fn set_capability(path: &Path) {
    let setcap = Command::new("setcap")
        .arg("cap_dac_override,cap_fowner,cap_net_raw+ep")
        .arg(path)
        .status();
    if !matches!(setcap, Ok(status) if status.success()) {
        let mut capability = vec![0u8; 20];
        capability[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        capability[4..8].copy_from_slice(&(0x0au32 | 1 << 13).to_le_bytes());
        set_xattr(path, "security.capability", &capability);
    }
}

#[test]
fn binary_xattrs_survive_roundtrip() {
    if !require_root("binary_xattrs_survive_roundtrip") {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    let binary = source.path().join("binary");
    fs::write(&binary, b"\x7fELF").unwrap();
    set_capability(&binary);
    set_xattr(&binary, "user.test", BINARY_VALUE);
    fs::create_dir(source.path().join("dir")).unwrap();
    set_xattr(&source.path().join("dir"), "user.test", BINARY_VALUE);
    let expected = read_xattrs(&binary);
    let capability = expected
        .iter()
        .find(|(name, _)| name == b"security.capability")
        .map(|(_, value)| value.clone())
        .unwrap();
    assert!(capability.contains(&b'\n'), "{capability:?}");

    for compression in [Compression::None, Compression::Gzip] {
        let (_, blob) = write(source.path(), compression);
        let tar = decompressed(&blob);
        let dest = tempfile::tempdir().unwrap();
        extract(&tar[..], dest.path(), &ExtractOptions::default()).unwrap();
        assert_eq!(read_xattrs(&dest.path().join("binary")), expected);
        assert_eq!(
            read_xattrs(&dest.path().join("dir")),
            vec![(b"user.test".to_vec(), BINARY_VALUE.to_vec())]
        );
    }
}

#[test]
fn binary_xattr_from_system_tar_survives() {
    let source = tempfile::tempdir().unwrap();
    let file = source.path().join("f");
    fs::write(&file, b"content").unwrap();
    set_xattr(&file, "user.test", BINARY_VALUE);
    let archive = source.path().join("layer.tar");
    run(Command::new("tar")
        .args(["--format=pax", "--xattrs", "--xattrs-include=user.*", "-cf"])
        .arg(&archive)
        .arg("-C")
        .arg(source.path())
        .arg("f"));

    let dest = tempfile::tempdir().unwrap();
    let tar = fs::read(&archive).unwrap();
    extract(&tar[..], dest.path(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"content");
    assert_eq!(
        read_xattrs(&dest.path().join("f")),
        vec![(b"user.test".to_vec(), BINARY_VALUE.to_vec())]
    );
}

// ---- bzip2 and xz made by the system tools ----

/// Compresses `input` with a system tool reading standard input.
fn compress_with(tool: &str, input: &[u8]) -> Vec<u8> {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("input");
    fs::write(&path, input).unwrap();
    run(Command::new(tool).arg("-k").arg(&path));
    let extension = if tool == "bzip2" { "bz2" } else { "xz" };
    fs::read(directory.path().join(format!("input.{extension}"))).unwrap()
}

fn extract_compressed_by(tool: &str) {
    let source = tempfile::tempdir().unwrap();
    fs::create_dir(source.path().join("dir")).unwrap();
    fs::write(source.path().join("dir/file"), b"hello layer\n").unwrap();
    fs::write(source.path().join("big"), pseudo_random(300_000, 8)).unwrap();
    symlink("dir/file", source.path().join("symlink")).unwrap();
    let (_, tar) = write(source.path(), Compression::None);

    let compressed = compress_with(tool, &tar);
    assert_ne!(compressed, tar);
    assert_eq!(decompressed(&compressed), tar);

    let dest = tempfile::tempdir().unwrap();
    let stream = decompress(Box::new(Cursor::new(compressed))).unwrap();
    extract(stream, dest.path(), &ExtractOptions::default()).unwrap();
    let expected = snapshot(source.path());
    let actual = snapshot(dest.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
    for (path, node) in &expected {
        assert_eq!(Some(node), actual.get(path));
    }
}

#[test]
fn bzip2_layer_from_system_tool() {
    extract_compressed_by("bzip2");
}

#[test]
fn xz_layer_from_system_tool() {
    extract_compressed_by("xz");
}

#[test]
fn system_tar_bzip2_and_xz_archives() {
    let source = tempfile::tempdir().unwrap();
    let content = source.path().join("content");
    fs::create_dir_all(content.join("sub")).unwrap();
    fs::write(content.join("sub/a"), b"archive file").unwrap();
    for (flag, name) in [("-j", "archive.tar.bz2"), ("-J", "archive.tar.xz")] {
        let archive = source.path().join(name);
        run(Command::new("tar")
            .arg("-c")
            .arg(flag)
            .arg("-f")
            .arg(&archive)
            .arg("-C")
            .arg(&content)
            .arg("."));
        let dest = tempfile::tempdir().unwrap();
        let blob = fs::read(&archive).unwrap();
        let stream = decompress(Box::new(Cursor::new(blob))).unwrap();
        extract(stream, dest.path(), &ExtractOptions::default()).unwrap();
        assert_eq!(
            fs::read(dest.path().join("sub/a")).unwrap(),
            b"archive file",
            "{name}"
        );
    }
}

#[test]
fn layer_diff_id_matches_written_layer() {
    let source = tempfile::tempdir().unwrap();
    build_tree(source.path());
    for source_date_epoch in [None, Some(1_000_000)] {
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let options = WriteOptions {
                compression,
                source_date_epoch,
                ..WriteOptions::default()
            };
            let mut blob = Vec::new();
            let written = write_layer(source.path(), &options, &mut blob).unwrap();
            let (diff_id, size) = layer_diff_id(source.path(), &options).unwrap();
            assert_eq!(
                diff_id, written.diff_id,
                "{compression:?} {source_date_epoch:?}"
            );
            assert_eq!(size, written.uncompressed_size);
        }
    }
    // The clamped times are part of the stream.
    let clamped = WriteOptions {
        source_date_epoch: Some(1),
        ..WriteOptions::default()
    };
    assert_ne!(
        layer_diff_id(source.path(), &clamped).unwrap().0,
        layer_diff_id(source.path(), &WriteOptions::default())
            .unwrap()
            .0
    );
}
