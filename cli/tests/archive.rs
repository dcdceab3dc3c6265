//! Runs `forge import`, `forge save` and `forge load` on a busybox root
//! file system and reads the results back with `forge images`, skopeo,
//! umoci and podman.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A temporary folder with a busybox root file system tar and a store.
struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
}

impl Fixture {
    /// Writes the busybox root file system tar; `None` when busybox is not
    /// installed and the test should skip.
    fn new() -> Option<Fixture> {
        if !forge_testkit::require_tool("busybox") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let rootfs = dir.path().join("rootfs.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let output = Command::new("bash")
            .arg(script)
            .arg(&rootfs)
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "busybox-rootfs.sh: {}",
            stderr(&output)
        );
        Some(Fixture { dir, rootfs })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `forge --root STORE ARGS...` for the store folder `store`.
    fn forge(&self, store: &str, args: &[&str]) -> Output {
        self.forge_command(store, args)
            .output()
            .expect("forge runs")
    }

    fn forge_command(&self, store: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.path(store))
            .args(args)
            .env_remove("FORGE_ROOT");
        command
    }

    /// Imports the busybox tar into `store` as `name` and returns the
    /// printed image id.
    fn import(&self, store: &str, name: &str) -> String {
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let output = self.forge(
            store,
            &["import", &rootfs, name, "--change", r#"CMD ["sh"]"#],
        );
        assert_eq!(output.status.code(), Some(0), "import: {}", stderr(&output));
        stdout(&output).trim().to_string()
    }

    /// Returns `forge inspect` of one image.
    fn inspect(&self, store: &str, image: &str) -> Value {
        let output = self.forge(store, &["inspect", image]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "inspect: {}",
            stderr(&output)
        );
        let array: Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
        array[0].clone()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run_tool(command: &mut Command) -> Output {
    let output = command.output().expect("tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        stderr(&output)
    );
    output
}

#[test]
fn import_names_image_and_images_lists_it() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let id = fixture.import("store", "busybox");
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(id.len(), 71, "{id}");

    let listed = fixture.forge("store", &["images"]);
    let text = stdout(&listed);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], "busybox");
    assert_eq!(cells[1], "latest");
    assert_eq!(cells[2], &id["sha256:".len().."sha256:".len() + 12]);
    assert!(lines[1].contains("ago"), "{}", lines[1]);

    let image = fixture.inspect("store", "busybox");
    assert_eq!(image["Id"], id);
    assert_eq!(image["Config"]["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(image["Config"]["os"], "linux");
}

#[test]
fn import_without_name_is_usable_by_id() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let rootfs = fixture.rootfs.to_string_lossy().into_owned();
    let output = fixture.forge("store", &["import", &rootfs]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let id = stdout(&output).trim().to_string();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let listed = fixture.forge("store", &["images"]);
    let text = stdout(&listed);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[..3], ["<none>", "<none>", short], "{}", lines[1]);

    assert_eq!(fixture.inspect("store", short)["Id"], id);
    assert_eq!(fixture.inspect("store", &id)["Id"], id);

    let tag = fixture.forge("store", &["tag", short, "box:v1"]);
    assert_eq!(tag.status.code(), Some(0), "{}", stderr(&tag));
    let listed = stdout(&fixture.forge("store", &["images"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("box "), "{listed}");
    assert!(!listed.contains("<none>"), "{listed}");
}

#[test]
fn load_bare_tag_loads_unnamed() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let id = fixture.import("first", "busybox");
    let short = &id["sha256:".len().."sha256:".len() + 12];
    // skopeo writes the reference after the layout path as ref.name: `1.0`.
    let layout = fixture.path("layout");
    run_tool(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!(
                "oci:{}:busybox:latest",
                fixture.path("first").display()
            ))
            .arg(format!("oci:{}:1.0", layout.display())),
    );

    let path = layout.to_string_lossy().into_owned();
    let load = fixture.forge("second", &["load", "-i", &path]);
    assert_eq!(load.status.code(), Some(0), "{}", stderr(&load));
    assert_eq!(stdout(&load), format!("Loaded image ID: {id}\n"));
    let hint = stderr(&load);
    assert!(hint.contains("`1.0`"), "{hint}");
    assert!(
        hint.contains(&format!("forge tag {short} REPOSITORY:1.0")),
        "{hint}"
    );

    let listed = stdout(&fixture.forge("second", &["images"]));
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[1][..3], ["<none>", "<none>", short], "{listed}");
    assert_eq!(fixture.inspect("second", short)["Id"], id);
}

#[test]
fn import_applies_changes_and_message() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let rootfs = fixture.rootfs.to_string_lossy().into_owned();
    let output = fixture.forge(
        "store",
        &[
            "import",
            &rootfs,
            "localhost:5000/base:v1",
            "-c",
            "ENV PATH=/bin:/sbin",
            "-c",
            "WORKDIR /srv",
            "-c",
            "EXPOSE 8080",
            "-c",
            "ENTRYPOINT /bin/sh",
            "-m",
            "imported by a test",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let image = fixture.inspect("store", "localhost:5000/base:v1");
    let config = &image["Config"]["config"];
    assert_eq!(config["Env"], serde_json::json!(["PATH=/bin:/sbin"]));
    assert_eq!(config["WorkingDir"], "/srv");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "/bin/sh"])
    );

    let history = fixture.forge("store", &["history", "localhost:5000/base:v1"]);
    assert!(
        stdout(&history).contains("imported by a test"),
        "{}",
        stdout(&history)
    );
}

#[test]
fn import_rejects_bad_change_and_names_nothing() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let rootfs = fixture.rootfs.to_string_lossy().into_owned();
    let output = fixture.forge("store", &["import", &rootfs, "bad", "--change", "RUN make"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("RUN is not allowed in --change"),
        "{}",
        stderr(&output)
    );

    let listed = fixture.forge("store", &["images", "-q"]);
    assert_eq!(stdout(&listed), "");

    let missing = fixture.forge("store", &["import", "/nonexistent/rootfs.tar", "x"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/nonexistent/rootfs.tar"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn import_reads_standard_input() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let mut child = fixture
        .forge_command("store", &["import", "-", "piped:v1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge starts");
    let tar = std::fs::read(&fixture.rootfs).expect("rootfs tar");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&tar)
        .expect("tar sent");
    let output = child.wait_with_output().expect("forge finishes");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // The same tar gives the same layer as an import from a file.
    fixture.import("store", "from-file");
    let piped = fixture.inspect("store", "piped:v1");
    let from_file = fixture.inspect("store", "from-file");
    assert_eq!(piped["Manifest"]["layers"], from_file["Manifest"]["layers"]);
}

#[test]
fn save_and_load_keep_digest() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    fixture.import("first", "busybox");
    let original = fixture.inspect("first", "busybox");

    for (format, file) in [("oci", "busybox.tar"), ("oci-dir", "layout")] {
        let path = fixture.path(file).to_string_lossy().into_owned();
        let save = fixture.forge(
            "first",
            &["save", "busybox", "--format", format, "-o", &path],
        );
        assert_eq!(
            save.status.code(),
            Some(0),
            "save {format}: {}",
            stderr(&save)
        );

        let store = format!("second-{format}");
        let load = fixture.forge(&store, &["load", "-i", &path]);
        assert_eq!(
            load.status.code(),
            Some(0),
            "load {format}: {}",
            stderr(&load)
        );
        assert_eq!(stdout(&load), "Loaded image: busybox:latest\n");

        let loaded = fixture.inspect(&store, "busybox");
        assert_eq!(loaded["Digest"], original["Digest"], "{format}");
        assert_eq!(loaded["Id"], original["Id"], "{format}");
    }
}

#[test]
fn load_reads_standard_input() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    fixture.import("first", "busybox");
    let archive = fixture.path("busybox.tar");
    let path = archive.to_string_lossy().into_owned();
    let save = fixture.forge("first", &["save", "busybox", "-o", &path]);
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    let output = fixture
        .forge_command("second", &["load"])
        .stdin(std::fs::File::open(&archive).expect("archive opens"))
        .output()
        .expect("forge runs");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "Loaded image: busybox:latest\n");

    // The copy of standard input does not stay in the store.
    let tmp = fixture.path("second").join("forge/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp folder").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn save_to_standard_output_is_an_oci_archive() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    fixture.import("store", "busybox:v2");
    let archive = fixture.path("piped.tar");
    let output = fixture
        .forge_command("store", &["save", "busybox:v2"])
        .stdout(std::fs::File::create(&archive).expect("archive file"))
        .output()
        .expect("forge runs");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let inspected = run_tool(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let theirs: Value = serde_json::from_slice(&inspected.stdout).expect("skopeo JSON");
    assert_eq!(
        theirs["Digest"],
        fixture.inspect("store", "busybox:v2")["Digest"]
    );
}

#[test]
fn save_missing_image_fails_and_writes_nothing() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    fixture.import("store", "busybox");
    let path = fixture.path("out.tar");
    let output = fixture.forge(
        "store",
        &["save", "busybox", "busybx", "-o", &path.to_string_lossy()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no image named busybx:latest; did you mean busybox:latest?"),
        "{}",
        stderr(&output)
    );
    assert!(!path.exists(), "a failed save left {}", path.display());
}

#[test]
fn oci_dir_unpacks_with_umoci() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    if !forge_testkit::require_tool("umoci") {
        return;
    }
    fixture.import("store", "busybox");
    let layout = fixture.path("layout");
    let save = fixture.forge(
        "store",
        &[
            "save",
            "busybox",
            "--format",
            "oci-dir",
            "-o",
            &layout.to_string_lossy(),
        ],
    );
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    let bundle = fixture.path("bundle");
    run_tool(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:busybox:latest", layout.display()))
            .arg(&bundle),
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    let passwd = std::fs::read_to_string(bundle.join("rootfs/etc/passwd")).expect("passwd");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
}

#[test]
fn docker_archive_loads_in_podman() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    if !forge_testkit::require_tool("podman") || !forge_testkit::require_root("podman load") {
        return;
    }
    let id = fixture.import("store", "busybox");
    let archive = fixture.path("docker.tar");
    let save = fixture.forge(
        "store",
        &[
            "save",
            "busybox",
            "--format",
            "docker",
            "-o",
            &archive.to_string_lossy(),
        ],
    );
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .args(["--runtime", "runc", "--storage-driver", "vfs", "--root"])
            .arg(fixture.path("podman/root"))
            .arg("--runroot")
            .arg(fixture.path("podman/run"))
            .args(args);
        command
    };
    let loaded = run_tool(podman(&["load", "-i", &archive.to_string_lossy()]).arg("-q"));
    assert!(
        stdout(&loaded).contains("busybox:latest"),
        "{}",
        stdout(&loaded)
    );

    let inspected = run_tool(&mut podman(&["image", "inspect", "busybox:latest"]));
    let theirs: Value = serde_json::from_slice(&inspected.stdout).expect("podman JSON");
    assert_eq!(theirs[0]["Id"], id["sha256:".len()..]);
    assert_eq!(theirs[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
}

/// Returns the manifest that `name` has in the store folder `store`, read
/// from the store's `index.json` and blobs.
fn stored_manifest(fixture: &Fixture, store: &str, name: &str) -> Value {
    let root = fixture.path(store);
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("index.json"))
            .expect("index JSON");
    let entry = index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .find(|entry| entry["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no index entry for {name}: {index}"))
        .clone();
    serde_json::from_slice(&std::fs::read(blob_path(&root, &entry["digest"])).expect("manifest"))
        .expect("manifest JSON")
}

fn blob_path(root: &Path, digest: &Value) -> PathBuf {
    let digest = digest.as_str().expect("digest string");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    root.join("blobs/sha256").join(hex)
}

#[test]
fn docker_archive_load_gzips_layers() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    if !forge_testkit::require_tool("gzip") || !forge_testkit::require_tool("sha256sum") {
        return;
    }
    let id = fixture.import("first", "busybox");
    let archive = fixture.path("docker.tar").to_string_lossy().into_owned();
    let save = fixture.forge(
        "first",
        &["save", "busybox", "--format", "docker", "-o", &archive],
    );
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    let load = fixture.forge("second", &["load", "-i", &archive]);
    assert_eq!(load.status.code(), Some(0), "{}", stderr(&load));
    assert_eq!(stdout(&load), "Loaded image: busybox:latest\n");
    // The load records the size of the layer it hashed.
    let records = std::fs::read_dir(fixture.path("second").join("forge/layer-sizes"))
        .expect("layer size folder")
        .count();
    assert_eq!(records, 1);

    let loaded = fixture.inspect("second", "busybox");
    assert_eq!(loaded["Id"], id);
    // `forge import` writes gzip at the default level with the same
    // encoder, so the layer blob and the manifest come back byte for byte.
    let original = fixture.inspect("first", "busybox");
    assert_eq!(loaded["Digest"], original["Digest"]);

    let manifest = stored_manifest(&fixture, "second", "busybox:latest");
    let layers = manifest["layers"].as_array().expect("layers array");
    let diff_ids = loaded["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids array");
    assert!(!layers.is_empty(), "{manifest}");
    assert_eq!(layers.len(), diff_ids.len(), "{manifest}");
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{manifest}"
        );
        // The gzip blob unpacks to the tar that the diff id names.
        let blob = blob_path(&fixture.path("second"), &layer["digest"]);
        let hashed = run_tool(
            Command::new("sh")
                .arg("-c")
                .arg("gzip -dc \"$1\" | sha256sum")
                .arg("sh")
                .arg(&blob),
        );
        let hex = stdout(&hashed);
        let hex = hex.split_whitespace().next().unwrap_or_default();
        assert_eq!(
            format!("sha256:{hex}"),
            diff_id.as_str().unwrap_or_default()
        );
    }

    // `forge images` shows the uncompressed size: the import recorded it
    // when it wrote the layer, and the load when it hashed the tar.
    let size_of = |store: &str| {
        let listed = fixture.forge(store, &["images"]);
        assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
        let text = stdout(&listed);
        let row = text.lines().nth(1).unwrap_or_default().to_string();
        row.split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(size_of("second"), size_of("first"));
}

/// Asserts that the store folder `store` has no blob named by any of the
/// layer diff ids of image `name`, and that `forge store check` finds no
/// problem.
fn assert_no_plain_layer_blob(fixture: &Fixture, store: &str, name: &str) {
    let loaded = fixture.inspect(store, name);
    let diff_ids = loaded["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids array");
    assert!(!diff_ids.is_empty(), "{loaded}");
    for diff_id in diff_ids {
        let plain = blob_path(&fixture.path(store), diff_id);
        assert!(
            !plain.exists(),
            "uncompressed layer blob {} stored",
            plain.display()
        );
    }
    let check = fixture.forge(store, &["store", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check).contains(": 0 problems"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn docker_archive_load_stores_no_plain_layer() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let id = fixture.import("first", "busybox");
    let archive = fixture.path("docker.tar");
    let archive_text = archive.to_string_lossy().into_owned();
    let save = fixture.forge(
        "first",
        &["save", "busybox", "--format", "docker", "-o", &archive_text],
    );
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    // From the tar.
    let load = fixture.forge("from-tar", &["load", "-i", &archive_text]);
    assert_eq!(load.status.code(), Some(0), "{}", stderr(&load));
    assert_eq!(fixture.inspect("from-tar", "busybox")["Id"], id);
    assert_no_plain_layer_blob(&fixture, "from-tar", "busybox");

    // From the same archive unpacked into a folder.
    let folder = fixture.path("docker-folder");
    std::fs::create_dir_all(&folder).expect("archive folder");
    run_tool(
        Command::new("tar")
            .arg("-C")
            .arg(&folder)
            .arg("-xf")
            .arg(&archive),
    );
    let folder_text = folder.to_string_lossy().into_owned();
    let load = fixture.forge("from-folder", &["load", "-i", &folder_text]);
    assert_eq!(load.status.code(), Some(0), "{}", stderr(&load));
    assert_eq!(fixture.inspect("from-folder", "busybox")["Id"], id);
    assert_no_plain_layer_blob(&fixture, "from-folder", "busybox");
    assert_eq!(
        fixture.inspect("from-folder", "busybox")["Digest"],
        fixture.inspect("from-tar", "busybox")["Digest"]
    );
}

#[test]
fn oci_archive_with_plain_layers_loads() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let context = fixture.path("context");
    std::fs::create_dir_all(&context).expect("context folder");
    std::fs::write(context.join("data.txt"), "plain layer\n").expect("context file");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY data.txt /data.txt\n",
    )
    .expect("Dockerfile");
    let context_text = context.to_string_lossy().into_owned();
    let build = fixture.forge(
        "first",
        &[
            "build",
            "--progress",
            "plain",
            "--compression",
            "uncompressed",
            "-t",
            "plain:v1",
            &context_text,
        ],
    );
    assert_eq!(build.status.code(), Some(0), "{}", stderr(&build));
    let archive = fixture.path("plain-oci.tar").to_string_lossy().into_owned();
    let save = fixture.forge(
        "first",
        &["save", "plain:v1", "--format", "oci", "-o", &archive],
    );
    assert_eq!(save.status.code(), Some(0), "{}", stderr(&save));

    // The OCI manifest names the plain layer by its digest, so the load
    // stores it as it is.
    let load = fixture.forge("second", &["load", "-i", &archive]);
    assert_eq!(load.status.code(), Some(0), "{}", stderr(&load));
    let original = fixture.inspect("first", "plain:v1");
    let loaded = fixture.inspect("second", "plain:v1");
    assert_eq!(loaded["Digest"], original["Digest"]);
    let layers = loaded["Manifest"]["layers"]
        .as_array()
        .expect("layers array");
    assert_eq!(layers.len(), 1, "{loaded}");
    let layer = layers.first().expect("one layer");
    assert_eq!(
        layer["mediaType"], "application/vnd.oci.image.layer.v1.tar",
        "{loaded}"
    );
    assert!(blob_path(&fixture.path("second"), &layer["digest"]).is_file());
    let check = fixture.forge("second", &["store", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        stdout(&check).contains(": 0 problems"),
        "{}",
        stdout(&check)
    );
}
