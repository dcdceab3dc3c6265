//! `save` and `load`: archives read by skopeo, umoci and podman, round
//! trips through an empty store, several images in one archive, archives
//! written by skopeo, and corrupt or malicious archives.
//!
//! Tests that need a tool skip when it is missing, except when `CI` is
//! set: then they fail.

#![allow(clippy::print_stderr, reason = "a skipped test says why on stderr")]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_cache::archive::{
    ArchiveError, ArchiveFormat, ImportOptions, LoadedImage, import_rootfs, load, save,
    save_to_writer,
};
use forge_cache::store::Store;
use forge_testkit::oci_schema::{self, OciSchemas};

const ALL_FORMATS: [ArchiveFormat; 3] = [
    ArchiveFormat::Oci,
    ArchiveFormat::OciDir,
    ArchiveFormat::Docker,
];

/// Keeps names as they are, adding `:latest` when the name has no tag.
fn normalise(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A store with busybox imported as `busybox:latest`, or `None` to skip.
fn busybox_store(work: &Path) -> Option<Store> {
    if !forge_testkit::require_tool("busybox") {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let tar = work.join("busybox-rootfs.tar");
    run(Command::new("bash").arg(&script).arg(&tar));
    let store = Store::open(&work.join("store")).unwrap();
    let options = ImportOptions {
        name: Some("busybox:latest".into()),
        created: Some(0),
        ..ImportOptions::default()
    };
    import_rootfs(&store, fs::File::open(&tar).unwrap(), &options).unwrap();
    Some(store)
}

/// A small second image with one gzip layer.
fn import_small(store: &Store, name: &str, content: &[u8]) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    builder
        .append_data(&mut header, "etc/message", content)
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let options = ImportOptions {
        name: Some(name.into()),
        created: Some(0),
        ..ImportOptions::default()
    };
    import_rootfs(store, &tar[..], &options).unwrap();
}

fn config_of(store: &Store, image: &LoadedImage) -> serde_json::Value {
    store.get_json(&image.image_id).unwrap()
}

/// Reads one file of a tar archive.
fn tar_file(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return Some(bytes);
        }
    }
    None
}

#[test]
fn save_oci_archive_skopeo_and_schemas() {
    let Some(conformance) = forge_testkit::conformance_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    let archive = work.path().join("busybox-oci.tar");
    save(&store, &["busybox:latest"], ArchiveFormat::Oci, &archive).unwrap();

    let schemas = OciSchemas::load(&conformance.join("oci-schema")).unwrap();
    let index = tar_file(&archive, "index.json").unwrap();
    assert_eq!(schemas.validate(oci_schema::INDEX, &index), Ok(()));
    let layout = tar_file(&archive, "oci-layout").unwrap();
    assert_eq!(schemas.validate(oci_schema::LAYOUT, &layout), Ok(()));
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "busybox:latest"
    );

    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let output = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:busybox:latest", archive.display())));
    let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = store.resolve("busybox:latest").unwrap();
    assert_eq!(inspect["Digest"], manifest.digest().to_string());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
}

#[test]
fn save_oci_dir_umoci_unpack() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    let layout = work.path().join("layout");
    save(&store, &["busybox:latest"], ArchiveFormat::OciDir, &layout).unwrap();
    assert!(layout.join("oci-layout").is_file());
    assert!(layout.join("index.json").is_file());

    if !forge_testkit::require_tool("umoci") {
        return;
    }
    let bundle = work.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:busybox:latest", layout.display()))
        .arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    let passwd = fs::read_to_string(bundle.join("rootfs/etc/passwd")).unwrap();
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"),
        "{passwd}"
    );
}

#[test]
fn save_docker_podman_and_skopeo() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    import_small(&store, "name/app:v1", b"gzip layer\n");
    let archive = work.path().join("docker.tar");
    save(
        &store,
        &["busybox:latest", "name/app:v1"],
        ArchiveFormat::Docker,
        &archive,
    )
    .unwrap();

    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&archive, "manifest.json").unwrap()).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2);
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
    let repositories: serde_json::Value =
        serde_json::from_slice(&tar_file(&archive, "repositories").unwrap()).unwrap();
    assert!(repositories["name/app"]["v1"].is_string(), "{repositories}");

    let busybox_id = store
        .image_id(&store.resolve("busybox:latest").unwrap())
        .unwrap();
    if forge_testkit::require_tool("skopeo") {
        let output = run(Command::new("skopeo")
            .arg("inspect")
            .arg("--config")
            .arg(format!(
                "docker-archive:{}:busybox:latest",
                archive.display()
            )));
        let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let stored: serde_json::Value = store.get_json(&busybox_id).unwrap();
        assert_eq!(config["rootfs"], stored["rootfs"]);
    }

    if !forge_testkit::require_tool("podman") {
        return;
    }
    let podman_root = work.path().join("podman");
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(podman_root.join("root"))
            .arg("--runroot")
            .arg(podman_root.join("runroot"))
            .arg("--runtime")
            .arg("runc")
            .arg("--storage-driver")
            .arg("vfs")
            .args(args);
        run(&mut command)
    };
    podman(&["load", "-i", archive.to_str().unwrap()]);
    let output = podman(&["image", "inspect", busybox_id.digest()]);
    let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tags = inspect[0]["RepoTags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|tag| tag.as_str().unwrap().ends_with("busybox:latest")),
        "{tags:?}"
    );
    let stored: serde_json::Value = store.get_json(&busybox_id).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"], stored["rootfs"]["diff_ids"]);
}

#[test]
fn round_trip_every_format() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    import_small(&store, "localhost:5000/app:v1", b"second image\n");
    let references = ["busybox:latest", "localhost:5000/app:v1"];

    for format in ALL_FORMATS {
        let dest = work.path().join(format!("saved-{format:?}"));
        save(&store, &references, format, &dest).unwrap();

        let target = Store::open(&work.path().join(format!("target-{format:?}"))).unwrap();
        let loaded = load(&target, &dest, &normalise).unwrap();
        assert_eq!(loaded.len(), 2, "{format:?}");

        for reference in references {
            let original = store.resolve(reference).unwrap();
            let copy = target.resolve(reference).unwrap();
            let image = loaded
                .iter()
                .find(|image| image.names.iter().any(|name| name == reference))
                .unwrap();
            assert_eq!(image.manifest.digest(), copy.digest());
            if format == ArchiveFormat::Docker {
                let original_config: serde_json::Value =
                    store.get_json(&store.image_id(&original).unwrap()).unwrap();
                assert_eq!(config_of(&target, image), original_config, "{format:?}");
                assert_eq!(
                    image.image_id,
                    store.image_id(&original).unwrap(),
                    "{format:?}"
                );
            } else {
                assert_eq!(copy.digest(), original.digest(), "{format:?}");
            }
        }
        assert!(target.check(false).unwrap().is_clean(), "{format:?}");
    }
}

#[test]
fn save_to_writer_matches_save() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"stream\n");
    let file = work.path().join("app.tar");
    save(&store, &["app:v1"], ArchiveFormat::Oci, &file).unwrap();
    let mut streamed = Vec::new();
    save_to_writer(&store, &["app:v1"], ArchiveFormat::Oci, &mut streamed).unwrap();
    assert_eq!(fs::read(&file).unwrap(), streamed);

    let error =
        save_to_writer(&store, &["app:v1"], ArchiveFormat::OciDir, &mut Vec::new()).unwrap_err();
    assert!(matches!(error, ArchiveError::Unsupported { .. }), "{error}");
}

/// Makes a character device with the numbers of `/dev/null` (1:3) at
/// `path`; returns false without root, which mknod needs.
fn make_null_device(path: &Path) -> bool {
    if !forge_testkit::require_root("save_into_device_keeps_node") {
        return false;
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    true
}

#[test]
fn save_into_device_keeps_node() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"device\n");
    // A node in the test's own folder replaces /dev/null in this test, so the
    // host's /dev/null is never at risk.
    let node = work.path().join("null");
    if !make_null_device(&node) {
        return;
    }
    for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
        save(&store, &["app:v1"], format, &node).unwrap();
        let metadata = fs::symlink_metadata(&node).unwrap();
        assert!(
            metadata.file_type().is_char_device(),
            "{format:?} replaced the device node with {:?}",
            metadata.file_type()
        );
        assert_eq!(metadata.rdev(), rustix::fs::makedev(1, 3), "{format:?}");
    }
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains("forge-save"))
        .collect();
    assert_eq!(leftovers, Vec::<std::ffi::OsString>::new());
}

#[test]
fn save_through_symlink_keeps_link() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"linked\n");
    let target = work.path().join("target.tar");
    fs::write(&target, b"old content").unwrap();
    let link = work.path().join("link.tar");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    save(&store, &["app:v1"], ArchiveFormat::Oci, &link).unwrap();

    let mut streamed = Vec::new();
    save_to_writer(&store, &["app:v1"], ArchiveFormat::Oci, &mut streamed).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), target);
    assert!(
        fs::read(&target).unwrap() == streamed,
        "target differs from the archive"
    );
}

#[test]
fn save_failure_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"x\n");
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("missing.tar");
    let error = save(&store, &["app:v1", "nope:v1"], ArchiveFormat::Oci, &dest).unwrap_err();
    assert!(error.to_string().contains("nope:v1"), "{error}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);

    // A corrupt layer fails halfway through writing.
    let manifest = store.resolve("app:v1").unwrap();
    let manifest: serde_json::Value = store.get_json(manifest.digest()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_path = store
        .blob_path(&forge_cache::store::parse_digest(layer).unwrap())
        .unwrap();
    let mut bytes = fs::read(&layer_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&layer_path, bytes).unwrap();
    for format in ALL_FORMATS {
        let result = save(&store, &["app:v1"], format, &dest);
        assert!(result.is_err(), "{format:?} saved a corrupt blob");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "{format:?}");
    }
}

#[test]
fn load_docker_archive_written_by_skopeo() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let archive = work.path().join("skopeo-docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:busybox:latest", store.root().display()))
        .arg(format!(
            "docker-archive:{}:busybox:latest",
            archive.display()
        )));

    let target = Store::open(&work.path().join("target")).unwrap();
    let loaded = load(&target, &archive, &normalise).unwrap();
    assert_eq!(loaded.len(), 1);
    assert!(
        loaded[0]
            .names
            .iter()
            .any(|name| name.ends_with("busybox:latest")),
        "{:?}",
        loaded[0].names
    );
    let original = store.resolve("busybox:latest").unwrap();
    let original_config: serde_json::Value =
        store.get_json(&store.image_id(&original).unwrap()).unwrap();
    let config = config_of(&target, &loaded[0]);
    assert_eq!(config["rootfs"], original_config["rootfs"]);
    assert!(target.check(false).unwrap().is_clean());
}

/// Copies `busybox:latest` of `store` into the OCI layout `layout` under
/// the `ref.name` that skopeo writes for `oci:LAYOUT:REFERENCE`.
fn skopeo_oci_layout(store: &Store, layout: &Path, reference: &str) {
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:busybox:latest", store.root().display()))
        .arg(format!("oci:{}:{reference}", layout.display())));
}

#[test]
fn load_bare_tag_ref_name_loads_unnamed() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let layout = work.path().join("layout");
    skopeo_oci_layout(&store, &layout, "1.0");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1.0",
        "skopeo wrote another ref.name"
    );

    let target = Store::open(&work.path().join("target")).unwrap();
    let loaded = load(&target, &layout, &normalise).unwrap();

    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].names.is_empty(), "{:?}", loaded[0].names);
    assert_eq!(loaded[0].bare_tags, ["1.0"]);
    assert!(target.list_names().unwrap().is_empty());
    let unnamed = target.list_unnamed().unwrap();
    assert_eq!(unnamed.len(), 1, "{unnamed:?}");
    assert_eq!(unnamed[0].digest(), loaded[0].manifest.digest());
    let short_id = &loaded[0].image_id.digest()[..12];
    assert_eq!(
        target.resolve(short_id).unwrap().digest(),
        loaded[0].manifest.digest()
    );
    assert!(target.check(false).unwrap().is_clean());
}

#[test]
fn load_full_ref_name_and_containerd_name() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }

    // A full name in ref.name names the image.
    let full = work.path().join("full");
    skopeo_oci_layout(&store, &full, "localhost:5000/team/box:1.0");
    let target = Store::open(&work.path().join("target-full")).unwrap();
    let loaded = load(&target, &full, &normalise).unwrap();
    assert_eq!(loaded[0].names, ["localhost:5000/team/box:1.0"]);
    assert!(loaded[0].bare_tags.is_empty());

    // containerd writes the tag in ref.name and the full name beside it.
    let tagged = work.path().join("tagged");
    skopeo_oci_layout(&store, &tagged, "latest");
    let index_path = tagged.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"]["io.containerd.image.name"] =
        "docker.io/library/box:1.36".into();
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let target = Store::open(&work.path().join("target-tagged")).unwrap();
    let loaded = load(&target, &tagged, &normalise).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/box:1.36"]);
    assert_eq!(loaded[0].bare_tags, ["latest"]);
    assert!(target.list_unnamed().unwrap().is_empty());
}

#[test]
fn load_docker_archive_without_repo_tags_keeps_unnamed() {
    let work = tempfile::tempdir().unwrap();
    let Some(store) = busybox_store(work.path()) else {
        return;
    };
    // Saved by digest, the archive names no image.
    let digest = store
        .resolve("busybox:latest")
        .unwrap()
        .digest()
        .to_string();
    let archive = work.path().join("unnamed.tar");
    save(&store, &[&digest], ArchiveFormat::Docker, &archive).unwrap();

    let target = Store::open(&work.path().join("target")).unwrap();
    let loaded = load(&target, &archive, &normalise).unwrap();

    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].names.is_empty(), "{:?}", loaded[0].names);
    let unnamed = target.list_unnamed().unwrap();
    assert_eq!(unnamed.len(), 1, "{unnamed:?}");
    let by_id = target.resolve(loaded[0].image_id.as_ref()).unwrap();
    assert_eq!(by_id.digest(), loaded[0].manifest.digest());
}

#[test]
fn load_rejects_tampered_blob() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"original\n");
    let layout = work.path().join("layout");
    save(&store, &["app:v1"], ArchiveFormat::OciDir, &layout).unwrap();
    let manifest = store.resolve("app:v1").unwrap();
    let manifest: serde_json::Value = store.get_json(manifest.digest()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&path).unwrap();
    bytes.push(0);
    fs::write(&path, bytes).unwrap();

    let target = Store::open(&work.path().join("target")).unwrap();
    let error = load(&target, &layout, &normalise).unwrap_err();
    assert!(
        matches!(error, ArchiveError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(layer), "{error}");
    assert!(target.list_names().unwrap().is_empty());
}

/// Builds a docker-archive by hand with a config whose diff id is wrong.
#[test]
fn load_rejects_wrong_diff_id() {
    let work = tempfile::tempdir().unwrap();
    let layer = {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "abc", &b"abc"[..])
            .unwrap();
        builder.into_inner().unwrap()
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "config.json", "RepoTags": ["bad:v1"], "Layers": ["layer/layer.tar"]}
    ]))
    .unwrap();
    let archive = work.path().join("bad.tar");
    let mut builder = tar::Builder::new(fs::File::create(&archive).unwrap());
    for (name, bytes) in [
        ("config.json", &config),
        ("layer/layer.tar", &layer),
        ("manifest.json", &manifest),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    builder.finish().unwrap();

    let target = Store::open(&work.path().join("target")).unwrap();
    let error = load(&target, &archive, &normalise).unwrap_err();
    assert!(
        matches!(error, ArchiveError::DiffIdMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("layer/layer.tar"), "{error}");
    assert!(target.list_names().unwrap().is_empty());
}

#[test]
fn load_rejects_unknown_format() {
    let work = tempfile::tempdir().unwrap();
    let target = Store::open(&work.path().join("target")).unwrap();
    let path = work.path().join("notes.tar");
    let mut builder = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut header = tar::Header::new_ustar();
    header.set_size(2);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "notes.txt", &b"hi"[..])
        .unwrap();
    builder.finish().unwrap();
    let error = load(&target, &path, &normalise).unwrap_err();
    assert!(
        matches!(error, ArchiveError::UnknownFormat { .. }),
        "{error}"
    );
}

#[test]
fn load_rejects_invalid_name() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"x\n");
    let archive = work.path().join("app.tar");
    save(&store, &["app:v1"], ArchiveFormat::Docker, &archive).unwrap();
    let target = Store::open(&work.path().join("target")).unwrap();
    let refuse = |name: &str| -> Result<String, String> { Err(format!("{name} is not allowed")) };
    let error = load(&target, &archive, &refuse).unwrap_err();
    assert!(matches!(error, ArchiveError::InvalidName { .. }), "{error}");
    assert!(error.to_string().contains("app:v1"), "{error}");
    assert!(target.list_names().unwrap().is_empty());
}

/// A tar entry written with raw name bytes, so `..` and absolute names survive.
fn raw_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// A raw archive entry: name, type, link target and content.
type Extra<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// An OCI archive of `app:v1` with extra raw entries placed before its own.
fn oci_archive_with(work: &Path, extra: &[Extra<'_>]) -> PathBuf {
    let store = Store::open(&work.join("source-store")).unwrap();
    import_small(&store, "app:v1", b"x\n");
    let clean = work.join("clean.tar");
    save(&store, &["app:v1"], ArchiveFormat::Oci, &clean).unwrap();

    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in extra {
        raw_entry(&mut builder, name, *kind, link, data);
    }
    let mut archive = tar::Archive::new(fs::File::open(&clean).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        builder.append(&header, &bytes[..]).unwrap();
    }
    let path = work.join("evil.tar");
    fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn load_rejects_malicious_entries() {
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<Extra<'_>>)> = vec![
        ("../x", vec![("../x", tar::EntryType::Regular, "", b"evil")]),
        (
            "/etc/x",
            vec![("/etc/forge-archive-x", tar::EntryType::Regular, "", b"evil")],
        ),
        (
            "link",
            vec![("link", tar::EntryType::Symlink, &outside_path, b"")],
        ),
        ("up", vec![("up", tar::EntryType::Symlink, "../../..", b"")]),
        (
            "dir/evil",
            vec![
                ("dir", tar::EntryType::Symlink, "blobs", b""),
                ("dir/evil", tar::EntryType::Regular, "", b"evil"),
            ],
        ),
        (
            "hard",
            vec![("hard", tar::EntryType::Link, "/etc/passwd", b"")],
        ),
        (
            "hard2",
            vec![("hard2", tar::EntryType::Link, "oci-layout-missing", b"")],
        ),
        ("dev", vec![("dev", tar::EntryType::Char, "", b"")]),
    ];
    for (entry, extra) in cases {
        let work = tempfile::tempdir().unwrap();
        let archive = oci_archive_with(work.path(), &extra);
        let target = Store::open(&work.path().join("target")).unwrap();
        let error = load(&target, &archive, &normalise).unwrap_err();
        let message = error_chain(&error);
        assert!(
            matches!(error, ArchiveError::UnsafeEntry { .. }),
            "{entry}: {message}"
        );
        let first = extra[extra.len() - 1].0;
        assert!(message.contains(first), "{entry}: {message}");
        assert!(target.list_names().unwrap().is_empty(), "{entry}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{entry}");
        assert!(!work.path().join("x").exists(), "{entry}");
        assert!(!Path::new("/etc/forge-archive-x").exists(), "{entry}");
    }
}

#[test]
fn load_rejects_layout_symlink_outside() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"x\n");
    let layout = work.path().join("layout");
    save(&store, &["app:v1"], ArchiveFormat::OciDir, &layout).unwrap();

    // Point the manifest blob at a copy outside the layout.
    let manifest = store.resolve("app:v1").unwrap();
    let blob = layout.join("blobs/sha256").join(manifest.digest().digest());
    let outside = work.path().join("outside-manifest");
    fs::copy(&blob, &outside).unwrap();
    fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&outside, &blob).unwrap();

    let target = Store::open(&work.path().join("target")).unwrap();
    let error = load(&target, &layout, &normalise).unwrap_err();
    assert!(
        matches!(error, ArchiveError::UnsafeEntry { .. }),
        "{}",
        error_chain(&error)
    );
    assert!(target.list_names().unwrap().is_empty());
}

#[test]
fn load_accepts_relative_symlink_inside() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    import_small(&store, "app:v1", b"linked\n");
    let archive = work.path().join("app.tar");
    save(&store, &["app:v1"], ArchiveFormat::Docker, &archive).unwrap();

    // Rewrite the archive so that the layer is reached through a symlink,
    // as `docker save` does for layers it stores under blobs/.
    let mut builder = tar::Builder::new(Vec::new());
    let mut source = tar::Archive::new(fs::File::open(&archive).unwrap());
    let mut manifest: serde_json::Value = serde_json::Value::Null;
    for entry in source.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let mut header = entry.header().clone();
        if name.ends_with("/layer.tar") {
            builder
                .append_data(&mut header, "real/layer.tar", &bytes[..])
                .unwrap();
            let folder = name.trim_end_matches("/layer.tar");
            raw_entry(
                &mut builder,
                &format!("{folder}/layer.tar"),
                tar::EntryType::Symlink,
                "../real/layer.tar",
                b"",
            );
        } else if name == "manifest.json" {
            manifest = serde_json::from_slice(&bytes).unwrap();
            builder.append_data(&mut header, &name, &bytes[..]).unwrap();
        } else {
            builder.append_data(&mut header, &name, &bytes[..]).unwrap();
        }
    }
    let rewritten = work.path().join("linked.tar");
    fs::write(&rewritten, builder.into_inner().unwrap()).unwrap();
    assert!(manifest.is_array());

    let target = Store::open(&work.path().join("target")).unwrap();
    let loaded = load(&target, &rewritten, &normalise).unwrap();
    assert_eq!(loaded[0].names, ["app:v1"]);
    assert!(target.check(false).unwrap().is_clean());
}
