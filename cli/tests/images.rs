//! Runs the image commands of the `forge` binary (`images`, `inspect`,
//! `history`, `tag`, `rmi`, `prune`, `store check`) against stores made in
//! temporary folders, and checks their output, exit codes and the files
//! left in the store. One test reads the result back with skopeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_cache::store::Store;
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{Value, json};

/// A store in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
}

/// What `add_image` wrote.
struct Added {
    manifest: Descriptor,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().join("store");
        let store = Store::open(&root).expect("store opens");
        Fixture { dir, root, store }
    }

    /// Runs `forge --root ROOT ARGS...`.
    fn forge(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("FORGE_ROOT")
            .output()
            .expect("forge runs")
    }

    /// Stores an image whose layers are tars of one file each, with the
    /// given history and creation time, and names it `name`.
    fn add_image(&self, name: &str, created: &str, files: &[&str], history: Value) -> Added {
        let added = self.store_image(created, files, history);
        self.store
            .set_name(name, &added.manifest)
            .expect("name set");
        added
    }

    /// Stores an image like [`Fixture::add_image`] and keeps it unnamed, as
    /// a build without `-t` does.
    fn add_unnamed_image(&self, created: &str, files: &[&str]) -> Added {
        let added = self.store_image(created, files, json!([]));
        let kept = self.store.add_unnamed(&added.manifest);
        assert!(kept.expect("unnamed image kept"), "an entry existed before");
        added
    }

    /// Stores an image's blobs without listing it in `index.json`.
    fn store_image(&self, created: &str, files: &[&str], history: Value) -> Added {
        let mut layers = Vec::new();
        for (index, content) in files.iter().enumerate() {
            let tar = tar_of_file(&format!("file{index}"), content);
            let info = self.store.put_blob(&tar).expect("layer stored");
            layers.push(info.descriptor(MediaType::ImageLayer));
        }
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|layer| layer.digest().to_string())
            .collect();
        let config = json!({
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        let config = self
            .store
            .put_json(&config, MediaType::ImageConfig)
            .expect("config stored");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        });
        let manifest = self
            .store
            .put_json(&manifest, MediaType::ImageManifest)
            .expect("manifest stored");
        Added {
            manifest,
            config,
            layers,
        }
    }

    fn blob_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(descriptor.digest().digest())
    }
}

/// Returns an uncompressed tar archive that contains one file.
fn tar_of_file(name: &str, content: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join(name), content).expect("file written");
    let output = Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(dir.path())
        .args(["-cf", "-", name])
        .output()
        .expect("tar runs");
    assert!(output.status.success(), "tar failed: {}", stderr(&output));
    output.stdout
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Splits table output into rows of cells separated by three or more
/// spaces.
fn table(output: &Output) -> Vec<Vec<String>> {
    stdout(output)
        .lines()
        .map(|line| {
            line.split("   ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn short_id(descriptor: &Descriptor) -> String {
    descriptor.digest().digest()[..12].to_string()
}

fn history_of(steps: &[(&str, bool)]) -> Value {
    Value::Array(
        steps
            .iter()
            .map(|(created_by, empty)| {
                let mut entry =
                    json!({"created": "2020-01-01T00:00:00Z", "created_by": created_by});
                if *empty {
                    entry["empty_layer"] = json!(true);
                }
                entry
            })
            .collect(),
    )
}

/// Two images: `busybox:latest` (also named `busybox:1.36`) with two
/// layers, and `localhost:5000/app:v1` with one.
fn two_images(fixture: &Fixture) -> (Added, Added) {
    let busybox = fixture.add_image(
        "busybox:latest",
        "2020-01-01T00:00:00Z",
        &["a", "bb"],
        history_of(&[("ADD rootfs.tar /", false), ("RUN make", false)]),
    );
    fixture
        .store
        .set_name("busybox:1.36", &busybox.manifest)
        .expect("second name");
    let app = fixture.add_image(
        "localhost:5000/app:v1",
        "2021-06-01T00:00:00Z",
        &["app"],
        history_of(&[("COPY app /", false)]),
    );
    (busybox, app)
}

#[test]
fn images_lists_every_name() {
    let fixture = Fixture::new();
    let (busybox, app) = two_images(&fixture);

    let output = fixture.forge(&["images"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = table(&output);
    assert_eq!(
        rows[0],
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    );
    assert_eq!(rows.len(), 4, "{rows:?}");

    // The newer image comes first.
    assert_eq!(rows[1][0], "localhost:5000/app");
    assert_eq!(rows[1][1], "v1");
    assert_eq!(rows[1][2], short_id(&app.config));
    assert!(rows[1][3].ends_with("years ago"), "{:?}", rows[1]);
    // Each layer is a tar of one small file: 10240 bytes, tar's default
    // record size.
    assert_eq!(app.layers[0].size(), 10240);
    assert_eq!(rows[1][4], "10.2kB");

    assert_eq!(rows[2][0], "busybox");
    assert_eq!(rows[2][1], "1.36");
    assert_eq!(rows[3][1], "latest");
    assert_eq!(rows[3][2], short_id(&busybox.config));
    assert_eq!(rows[3][4], "20.5kB");
}

#[test]
fn images_filters_by_repository_and_tag() {
    let fixture = Fixture::new();
    two_images(&fixture);

    let by_repository = table(&fixture.forge(&["images", "docker.io/library/busybox"]));
    let tags: Vec<&str> = by_repository[1..]
        .iter()
        .map(|row| row[1].as_str())
        .collect();
    assert_eq!(tags, ["1.36", "latest"]);

    let by_tag = table(&fixture.forge(&["images", "busybox:1.36"]));
    assert_eq!(by_tag.len(), 2, "{by_tag:?}");
    assert_eq!(by_tag[1][1], "1.36");

    let with_port = table(&fixture.forge(&["images", "localhost:5000/app"]));
    assert_eq!(with_port.len(), 2, "{with_port:?}");
    assert_eq!(with_port[1][0], "localhost:5000/app");

    let none = table(&fixture.forge(&["images", "nothing"]));
    assert_eq!(none.len(), 1, "{none:?}");
}

#[test]
fn images_quiet_prints_unique_ids() {
    let fixture = Fixture::new();
    let (busybox, app) = two_images(&fixture);

    let output = fixture.forge(&["images", "-q"]);
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    assert_eq!(lines, [short_id(&app.config), short_id(&busybox.config)]);

    let full = fixture.forge(&["images", "-q", "--no-trunc", "busybox"]);
    assert_eq!(stdout(&full).trim(), busybox.config.digest().to_string());
}

#[test]
fn images_digests_column() {
    let fixture = Fixture::new();
    let (_, app) = two_images(&fixture);

    let rows = table(&fixture.forge(&["images", "--digests", "localhost:5000/app"]));
    assert_eq!(rows[0][2], "DIGEST");
    assert_eq!(rows[1][2], app.manifest.digest().to_string());
    assert_eq!(rows[1][3], short_id(&app.config));
}

#[test]
fn images_json_has_one_object_per_line() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);

    let output = fixture.forge(&["images", "--format", "json", "busybox:latest"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 1);
    let object = &lines[0];
    assert_eq!(object["Repository"], "busybox");
    assert_eq!(object["Tag"], "latest");
    assert_eq!(object["ID"], short_id(&busybox.config));
    assert_eq!(object["Digest"], busybox.manifest.digest().to_string());
    assert_eq!(object["CreatedAt"], "2020-01-01 00:00:00 +0000 UTC");
    assert!(
        object["CreatedSince"]
            .as_str()
            .is_some_and(|text| text.ends_with("ago")),
        "{object}"
    );
    assert!(object["Size"].is_string(), "{object}");
}

#[test]
fn images_on_empty_store_prints_header() {
    let fixture = Fixture::new();
    let output = fixture.forge(&["images", "-a"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        table(&output),
        [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    );
}

#[test]
fn images_skips_unreadable_image() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);
    std::fs::remove_file(fixture.blob_path(&busybox.config)).expect("config removed");

    let output = fixture.forge(&["images"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = table(&output);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][0], "localhost:5000/app");
    assert!(
        stderr(&output).contains("skipping busybox:latest"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("forge store check"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn images_rejects_invalid_filter() {
    let fixture = Fixture::new();
    let output = fixture.forge(&["images", "Bad Name"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("`Bad Name`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inspect_prints_documents() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);

    let output = fixture.forge(&["inspect", "busybox"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let array: Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    let images = array.as_array().expect("a JSON array");
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image["Id"], busybox.config.digest().to_string());
    assert_eq!(image["Digest"], busybox.manifest.digest().to_string());
    assert_eq!(image["RepoTags"], json!(["busybox:1.36", "busybox:latest"]));
    assert_eq!(
        image["RepoDigests"],
        json!([format!("busybox@{}", busybox.manifest.digest())])
    );
    // The layers are plain tars, so each uncompressed size is the blob size.
    let size: u64 = busybox.layers.iter().map(Descriptor::size).sum();
    assert_eq!(image["Size"], json!(size));
    assert_eq!(image["VirtualSize"], json!(size));
    assert_eq!(
        image["Manifest"]["layers"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(image["Config"]["history"][1]["created_by"], "RUN make");
    assert_eq!(image["Os"], "linux");
}

#[test]
fn inspect_accepts_ids_and_digests() {
    let fixture = Fixture::new();
    let (busybox, app) = two_images(&fixture);
    let manifest = busybox.manifest.digest().to_string();
    let by_name_and_digest = format!("busybox@{manifest}");
    let short = short_id(&app.config);

    for (input, expected) in [
        (short.as_str(), &app),
        (manifest.as_str(), &busybox),
        (by_name_and_digest.as_str(), &busybox),
        ("docker.io/library/busybox:1.36", &busybox),
    ] {
        let output = fixture.forge(&["inspect", input]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{input}: {}",
            stderr(&output)
        );
        let array: Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
        assert_eq!(
            array[0]["Digest"],
            expected.manifest.digest().to_string(),
            "{input}"
        );
    }
}

#[test]
fn inspect_missing_name_suggests_closest() {
    let fixture = Fixture::new();
    fixture.add_image("foo:latest", "2020-01-01T00:00:00Z", &["x"], json!([]));

    let output = fixture.forge(&["inspect", "foo:lates"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "error: no image named foo:lates; did you mean foo:latest?"
    );
    assert_eq!(stdout(&output).trim(), "[]");
}

#[test]
fn inspect_prints_found_images_and_fails() {
    let fixture = Fixture::new();
    two_images(&fixture);

    let output = fixture.forge(&["inspect", "busybox", "missing"]);
    assert_eq!(output.status.code(), Some(1));
    let array: Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
    assert_eq!(array.as_array().map(Vec::len), Some(1));
    assert!(
        stderr(&output).contains("no image named missing:latest"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn history_pairs_steps_with_layers() {
    let fixture = Fixture::new();
    let image = fixture.add_image(
        "app:v2",
        "2020-01-01T00:00:00Z",
        &["base", "built"],
        history_of(&[
            ("ADD rootfs.tar /", false),
            ("ENV PATH=/bin", true),
            (
                "RUN /bin/sh -c make && make install && rm -rf /tmp/build-cache",
                false,
            ),
            ("CMD [\"sh\"]", true),
        ]),
    );

    let output = fixture.forge(&["history", "app:v2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = table(&output);
    assert_eq!(
        rows[0],
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    );
    assert_eq!(rows.len(), 5, "{rows:?}");

    let ids: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        ids,
        [
            short_id(&image.config).as_str(),
            "<missing>",
            "<missing>",
            "<missing>"
        ]
    );
    let created_by: Vec<&str> = rows[1..].iter().map(|row| row[2].as_str()).collect();
    assert_eq!(created_by[0], "CMD [\"sh\"]");
    assert!(created_by[1].ends_with('…'), "{created_by:?}");
    assert_eq!(created_by[1].chars().count(), 45);
    assert_eq!(created_by[3], "ADD rootfs.tar /");
    assert!(image.layers.iter().all(|layer| layer.size() == 10240));
    let sizes: Vec<String> = rows[1..].iter().map(|row| row[3].clone()).collect();
    assert_eq!(
        sizes,
        [
            "0B".to_string(),
            "10.2kB".to_string(),
            "0B".to_string(),
            "10.2kB".to_string(),
        ]
    );
}

#[test]
fn history_no_trunc_and_quiet() {
    let fixture = Fixture::new();
    let long = "RUN /bin/sh -c make && make install && rm -rf /tmp/build-cache";
    let image = fixture.add_image(
        "app:v2",
        "2020-01-01T00:00:00Z",
        &["base"],
        history_of(&[(long, false)]),
    );

    let full = fixture.forge(&["history", "--no-trunc", "app:v2"]);
    assert!(stdout(&full).contains(long), "{}", stdout(&full));
    assert!(
        stdout(&full).contains(&image.config.digest().to_string()),
        "{}",
        stdout(&full)
    );

    let quiet = fixture.forge(&["history", "-q", "app:v2"]);
    assert_eq!(stdout(&quiet).trim(), short_id(&image.config));
}

#[test]
fn history_missing_image_fails() {
    let fixture = Fixture::new();
    let output = fixture.forge(&["history", "nothing"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no image named nothing:latest"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn tag_adds_normalised_name() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);

    let output = fixture.forge(&["tag", "busybox", "docker.io/team/tool"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "");
    let descriptor = fixture.store.resolve("team/tool:latest").expect("new name");
    assert_eq!(descriptor.digest(), busybox.manifest.digest());

    let by_id = fixture.forge(&["tag", &short_id(&busybox.config), "tool:v1"]);
    assert_eq!(by_id.status.code(), Some(0), "{}", stderr(&by_id));
    let descriptor = fixture.store.resolve("tool:v1").expect("name from id");
    assert_eq!(descriptor.digest(), busybox.manifest.digest());
}

#[test]
fn tag_moves_existing_name() {
    let fixture = Fixture::new();
    let (_, app) = two_images(&fixture);

    let output = fixture.forge(&["tag", "localhost:5000/app:v1", "busybox"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let descriptor = fixture.store.resolve("busybox:latest").expect("moved name");
    assert_eq!(descriptor.digest(), app.manifest.digest());
}

#[test]
fn tag_rejects_bad_target_and_missing_source() {
    let fixture = Fixture::new();
    two_images(&fixture);
    let digest_target = format!("app@sha256:{}", "a".repeat(64));

    let with_digest = fixture.forge(&["tag", "busybox", &digest_target]);
    assert_eq!(with_digest.status.code(), Some(1));
    assert!(
        stderr(&with_digest).contains("digest"),
        "{}",
        stderr(&with_digest)
    );

    let uppercase = fixture.forge(&["tag", "busybox", "App"]);
    assert_eq!(uppercase.status.code(), Some(1));
    assert!(
        stderr(&uppercase).contains("`App`"),
        "{}",
        stderr(&uppercase)
    );

    let missing = fixture.forge(&["tag", "busybox:1.3", "x"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("did you mean busybox:1.36?"),
        "{}",
        stderr(&missing)
    );

    let usage = fixture.forge(&["tag", "busybox"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn rmi_by_name_untags_then_deletes() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);

    let first = fixture.forge(&["rmi", "busybox:1.36"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(stdout(&first), "Untagged: busybox:1.36\n");

    let last = fixture.forge(&["rmi", "busybox"]);
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    assert_eq!(
        stdout(&last),
        format!(
            "Untagged: busybox:latest\nDeleted: {}\n",
            busybox.config.digest()
        )
    );

    let names: Vec<String> = fixture
        .store
        .list_names()
        .expect("names")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["localhost:5000/app:v1"]);
    assert!(
        fixture.blob_path(&busybox.manifest).exists(),
        "blobs stay until prune"
    );
}

#[test]
fn rmi_by_id_needs_force_for_several_names() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);
    let id = short_id(&busybox.config);

    let refused = fixture.forge(&["rmi", &id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("busybox:1.36, busybox:latest"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("-f"), "{}", stderr(&refused));
    assert_eq!(fixture.store.list_names().expect("names").len(), 3);

    let forced = fixture.forge(&["rmi", "-f", &id]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_eq!(
        stdout(&forced),
        format!(
            "Untagged: busybox:1.36\nUntagged: busybox:latest\nDeleted: {}\n",
            busybox.config.digest()
        )
    );
    assert_eq!(fixture.store.list_names().expect("names").len(), 1);
}

#[test]
fn rmi_goes_on_after_missing_image() {
    let fixture = Fixture::new();
    two_images(&fixture);

    let output = fixture.forge(&["rmi", "missing", "localhost:5000/app:v1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("Untagged: localhost:5000/app:v1"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("no image named missing:latest"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn rmi_then_prune_frees_blobs() {
    let fixture = Fixture::new();
    let (busybox, app) = two_images(&fixture);
    let busybox_blobs: Vec<PathBuf> = [&busybox.manifest, &busybox.config]
        .into_iter()
        .chain(&busybox.layers)
        .map(|descriptor| fixture.blob_path(descriptor))
        .collect();

    let nothing = fixture.forge(&["prune"]);
    assert_eq!(nothing.status.code(), Some(0), "{}", stderr(&nothing));
    assert!(
        stdout(&nothing).contains("Removed 0 unnamed images, 0 blobs"),
        "{}",
        stdout(&nothing)
    );

    let rmi = fixture.forge(&["rmi", "-f", &short_id(&busybox.config)]);
    assert_eq!(rmi.status.code(), Some(0), "{}", stderr(&rmi));
    for path in &busybox_blobs {
        assert!(path.exists(), "{} removed before prune", path.display());
    }

    let dry_run = fixture.forge(&["prune", "--dry-run"]);
    assert!(
        stdout(&dry_run).contains(" 4 blobs"),
        "{}",
        stdout(&dry_run)
    );
    assert!(busybox_blobs.iter().all(|path| path.exists()));

    let prune = fixture.forge(&["prune", "--all"]);
    assert_eq!(prune.status.code(), Some(0), "{}", stderr(&prune));
    assert!(stdout(&prune).contains(" 4 blobs"), "{}", stdout(&prune));
    assert!(
        stdout(&prune).contains("Total reclaimed space: "),
        "{}",
        stdout(&prune)
    );
    for path in &busybox_blobs {
        assert!(!path.exists(), "{} left after prune", path.display());
    }
    assert!(
        fixture.blob_path(&app.manifest).exists(),
        "named image pruned"
    );
}

#[test]
fn inspect_unnamed_image_by_id() {
    let fixture = Fixture::new();
    let unnamed = fixture.add_unnamed_image("2022-01-01T00:00:00Z", &["u"]);
    let id = unnamed.config.digest().to_string();
    let hex = unnamed.config.digest().digest().to_string();

    for input in [short_id(&unnamed.config), id.clone(), hex] {
        let output = fixture.forge(&["inspect", &input]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{input}: {}",
            stderr(&output)
        );
        let array: Value = serde_json::from_str(&stdout(&output)).expect("JSON output");
        assert_eq!(array[0]["Id"], id, "{input}");
        assert_eq!(array[0]["RepoTags"], json!([]), "{input}");
    }

    let history = fixture.forge(&["history", "-q", &short_id(&unnamed.config)]);
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
}

#[test]
fn build_without_tag_is_usable_by_id() {
    let fixture = Fixture::new();
    let context = fixture.dir.path().join("context");
    std::fs::create_dir_all(&context).expect("context folder");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY f.txt /f.txt\n",
    )
    .expect("Dockerfile");
    std::fs::write(context.join("f.txt"), "f\n").expect("context file");

    let build = fixture.forge(&["build", "-q", &context.to_string_lossy()]);
    assert_eq!(build.status.code(), Some(0), "{}", stderr(&build));
    let id = stdout(&build).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let inspect = fixture.forge(&["inspect", short]);
    assert_eq!(inspect.status.code(), Some(0), "{}", stderr(&inspect));
    let array: Value = serde_json::from_str(&stdout(&inspect)).expect("JSON output");
    assert_eq!(array[0]["Id"], id);

    let rows = table(&fixture.forge(&["images"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][..3], ["<none>", "<none>", short], "{rows:?}");
}

#[test]
fn images_lists_unnamed_image_as_none() {
    let fixture = Fixture::new();
    let (busybox, app) = two_images(&fixture);
    let unnamed = fixture.add_unnamed_image("2022-01-01T00:00:00Z", &["u"]);

    for args in [&["images"][..], &["images", "-a"][..]] {
        let rows = table(&fixture.forge(args));
        assert_eq!(rows.len(), 5, "{args:?}: {rows:?}");
        // The unnamed image is the newest.
        assert_eq!(
            rows[1],
            [
                "<none>",
                "<none>",
                &short_id(&unnamed.config),
                &rows[1][3],
                "10.2kB"
            ],
            "{args:?}"
        );
    }

    let filtered = table(&fixture.forge(&["images", "busybox"]));
    assert_eq!(filtered.len(), 3, "{filtered:?}");
    assert!(
        filtered.iter().all(|row| row[0] != "<none>"),
        "{filtered:?}"
    );

    let quiet = fixture.forge(&["images", "-q"]);
    let ids: Vec<String> = stdout(&quiet).lines().map(str::to_string).collect();
    assert_eq!(
        ids,
        [
            short_id(&unnamed.config),
            short_id(&app.config),
            short_id(&busybox.config)
        ]
    );

    let json_output = fixture.forge(&["images", "--format", "json"]);
    let first: Value = stdout(&json_output)
        .lines()
        .next()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .expect("a line");
    assert_eq!(first["Repository"], "<none>");
    assert_eq!(first["Tag"], "<none>");
    assert_eq!(first["Digest"], unnamed.manifest.digest().to_string());
}

#[test]
fn tag_names_unnamed_image() {
    let fixture = Fixture::new();
    let unnamed = fixture.add_unnamed_image("2022-01-01T00:00:00Z", &["u"]);

    let output = fixture.forge(&["tag", &short_id(&unnamed.config), "app:v2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let rows = table(&fixture.forge(&["images"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][0], "app");
    assert_eq!(rows[1][1], "v2");
    assert!(fixture.store.list_unnamed().expect("unnamed").is_empty());
}

#[test]
fn tag_moving_name_leaves_old_image_unnamed() {
    let fixture = Fixture::new();
    let old = fixture.add_image("app:latest", "2020-01-01T00:00:00Z", &["old"], json!([]));
    fixture.add_image("app:next", "2021-01-01T00:00:00Z", &["new"], json!([]));

    let output = fixture.forge(&["tag", "app:next", "app:latest"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let rows = table(&fixture.forge(&["images"]));
    assert_eq!(rows.len(), 4, "{rows:?}");
    let none_row = rows.iter().find(|row| row[0] == "<none>");
    let none_row = none_row.unwrap_or_else(|| panic!("no <none> row in {rows:?}"));
    assert_eq!(none_row[2], short_id(&old.config));
}

#[test]
fn rmi_removes_unnamed_image() {
    let fixture = Fixture::new();
    let unnamed = fixture.add_unnamed_image("2022-01-01T00:00:00Z", &["u"]);

    let output = fixture.forge(&["rmi", &short_id(&unnamed.config)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("Deleted: {}\n", unnamed.config.digest())
    );
    assert!(fixture.store.list_unnamed().expect("unnamed").is_empty());
    assert_eq!(table(&fixture.forge(&["images"])).len(), 1);

    let again = fixture.forge(&["rmi", &short_id(&unnamed.config)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("no image id starts with"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn prune_removes_unnamed_image_and_check_accepts_it() {
    let fixture = Fixture::new();
    let unnamed = fixture.add_unnamed_image("2022-01-01T00:00:00Z", &["u"]);
    let named = fixture.add_image("app:latest", "2020-01-01T00:00:00Z", &["a"], json!([]));

    let check = fixture.forge(&["store", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(fixture.blob_path(&unnamed.manifest).exists());

    let prune = fixture.forge(&["prune"]);
    assert_eq!(prune.status.code(), Some(0), "{}", stderr(&prune));
    for descriptor in [&unnamed.manifest, &unnamed.config, &unnamed.layers[0]] {
        assert!(
            !fixture.blob_path(descriptor).exists(),
            "{} kept",
            descriptor.digest()
        );
    }
    assert!(
        fixture.blob_path(&named.manifest).exists(),
        "named image pruned"
    );
    assert!(fixture.store.list_unnamed().expect("unnamed").is_empty());
}

#[test]
fn inspect_config_digest_is_not_an_image() {
    let fixture = Fixture::new();
    // Blobs that `index.json` does not list, as a build that crashed
    // before naming its image leaves them.
    let orphan = fixture.store_image("2022-01-01T00:00:00Z", &["o"], json!([]));
    let config = orphan.config.digest().to_string();

    let output = fixture.forge(&["inspect", &config]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!("error: no image with id {config}")),
        "{message}"
    );
    assert!(!message.contains("cannot be read"), "{message}");

    let layer = orphan.layers[0].digest().to_string();
    let output = fixture.forge(&["inspect", &layer]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("no image with id {layer}")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn short_id_matches_image_ids_only() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);
    let manifest_prefix = &busybox.manifest.digest().digest()[..12];

    let output = fixture.forge(&["inspect", manifest_prefix]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("no image id starts with {manifest_prefix}")),
        "{}",
        stderr(&output)
    );

    let full = busybox.manifest.digest().to_string();
    let output = fixture.forge(&["inspect", &full]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn missing_image_gets_no_distant_suggestion() {
    let fixture = Fixture::new();
    fixture.add_image("scr:latest", "2020-01-01T00:00:00Z", &["s"], json!([]));
    fixture.add_image("n1:latest", "2020-01-01T00:00:00Z", &["n"], json!([]));

    for args in [["rmi", "nosuch"], ["inspect", "5"], ["inspect", "n"]] {
        let output = fixture.forge(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains("no image named"), "{args:?}: {message}");
        assert!(!message.contains("did you mean"), "{args:?}: {message}");
    }

    let close = fixture.forge(&["inspect", "n1:lates"]);
    assert!(
        stderr(&close).contains("did you mean n1:latest?"),
        "{}",
        stderr(&close)
    );
}

#[test]
fn prune_rejects_bad_size() {
    let fixture = Fixture::new();
    let bad = fixture.forge(&["prune", "--keep-storage", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("lots"), "{}", stderr(&bad));

    let good = fixture.forge(&["prune", "--keep-storage", "500MiB"]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
}

#[test]
fn store_check_finds_and_repairs_corrupt_blob() {
    let fixture = Fixture::new();
    let (busybox, _) = two_images(&fixture);

    let clean = fixture.forge(&["store", "check"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("0 problems"), "{}", stdout(&clean));

    let layer = fixture.blob_path(&busybox.layers[0]);
    std::fs::write(&layer, b"not the layer").expect("blob overwritten");

    let found = fixture.forge(&["store", "check"]);
    assert_eq!(found.status.code(), Some(1));
    assert!(
        stdout(&found).contains("corrupt blob"),
        "{}",
        stdout(&found)
    );
    assert!(stderr(&found).contains("--repair"), "{}", stderr(&found));
    assert!(layer.exists(), "check without --repair removed the blob");

    let repaired = fixture.forge(&["store", "check", "--repair"]);
    assert_eq!(repaired.status.code(), Some(0), "{}", stderr(&repaired));
    assert!(
        stdout(&repaired).contains("(removed)"),
        "{}",
        stdout(&repaired)
    );
    assert!(!layer.exists(), "corrupt blob kept");

    let after = fixture.forge(&["store", "check"]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}{}",
        stdout(&after),
        stderr(&after)
    );
}

/// Builds a busybox image with umoci and copies it into the store with
/// skopeo under `name`, as a store that another tool filled. Returns false
/// when a tool is missing and the test should skip.
fn copy_busybox_in(fixture: &Fixture, name: &str) -> bool {
    if !forge_testkit::require_tool("umoci") || !forge_testkit::require_tool("skopeo") {
        return false;
    }
    let work = fixture.dir.path().join("umoci");
    let rootfs = work.join("rootfs.tar");
    std::fs::create_dir_all(&work).expect("work folder");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    run(Command::new("bash").arg(&script).arg(&rootfs));
    let layout = work.join("oci");
    let image = format!("{}:busybox", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .args(["--history.created", "2020-01-01T00:00:00Z"])
        .args(["--history.created_by", "busybox-rootfs.sh"])
        .arg(&rootfs));
    run(Command::new("umoci")
        .args(["config", "--image", &image, "--config.cmd", "sh"])
        .args(["--created", "2020-01-01T00:00:00Z"]));
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci:{image}"),
        &format!("oci:{}:{name}", fixture.root.display()),
    ]));
    true
}

fn run(command: &mut Command) {
    let output = command.output().expect("tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        stderr(&output)
    );
}

#[test]
fn tagged_image_is_readable_by_skopeo() {
    let fixture = Fixture::new();
    if !copy_busybox_in(&fixture, "busybox:latest") {
        return;
    }

    let listed = table(&fixture.forge(&["images", "busybox"]));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[1][1], "latest");

    let tag = fixture.forge(&["tag", "busybox", "localhost:5000/tools/busybox:v1"]);
    assert_eq!(tag.status.code(), Some(0), "{}", stderr(&tag));

    let inspect = fixture.forge(&["inspect", "localhost:5000/tools/busybox:v1"]);
    let ours: Value = serde_json::from_str(&stdout(&inspect)).expect("JSON output");
    let output = Command::new("skopeo")
        .arg("inspect")
        .arg(format!(
            "oci:{}:localhost:5000/tools/busybox:v1",
            fixture.root.display()
        ))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect: {}",
        stderr(&output)
    );
    let theirs: Value = serde_json::from_slice(&output.stdout).expect("skopeo JSON");
    assert_eq!(theirs["Digest"], ours[0]["Digest"]);
    assert_eq!(theirs["Layers"].as_array().map(Vec::len), Some(1));

    let history = fixture.forge(&["history", "busybox"]);
    assert!(
        stdout(&history).contains("busybox-rootfs.sh"),
        "{}",
        stdout(&history)
    );
}

/// Stores an image named `name` whose one layer is `tar` compressed with
/// gzip, with a COPY step and a CMD step in its history, and returns the
/// layer descriptor and the diff id.
fn add_gzip_image(fixture: &Fixture, name: &str, tar: &[u8]) -> (Descriptor, String) {
    let mut blob = Vec::new();
    forge_cache::layer::compress(
        &mut &tar[..],
        forge_cache::layer::Compression::Gzip,
        None,
        &mut blob,
    )
    .expect("layer compressed");
    let layer = fixture
        .store
        .put_blob(&blob)
        .expect("layer stored")
        .descriptor(MediaType::ImageLayerGzip);
    let diff_id = fixture
        .store
        .put_blob(tar)
        .expect("tar stored to learn its digest")
        .digest
        .to_string();
    let config = json!({
        "created": "2020-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": history_of(&[("COPY zeros /", false), ("CMD [\"sh\"]", true)]),
    });
    let config = fixture
        .store
        .put_json(&config, MediaType::ImageConfig)
        .expect("config stored");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let manifest = fixture
        .store
        .put_json(&manifest, MediaType::ImageManifest)
        .expect("manifest stored");
    fixture.store.set_name(name, &manifest).expect("name set");
    (layer, diff_id)
}

/// Returns the tar of one file of 3,000,000 `0` characters, which gzip
/// compresses to a few kilobytes.
fn compressible_tar() -> Vec<u8> {
    let tar = tar_of_file("zeros", &"0".repeat(3_000_000));
    // A 512-byte header, the content padded to 512 bytes, two end blocks,
    // and the whole padded to tar's 10240-byte record.
    assert_eq!(tar.len(), 3_010_560);
    tar
}

#[test]
fn image_commands_show_uncompressed_size() {
    let fixture = Fixture::new();
    let (layer, diff_id) = add_gzip_image(&fixture, "zeros:v1", &compressible_tar());
    assert!(layer.size() < 100_000, "{}", layer.size());

    let images = fixture.forge(&["images"]);
    assert_eq!(images.status.code(), Some(0), "{}", stderr(&images));
    let rows = table(&images);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][0], "zeros");
    assert_eq!(rows[1][4], "3.01MB");

    let json_output = fixture.forge(&["images", "--format", "json"]);
    assert_eq!(
        json_output.status.code(),
        Some(0),
        "{}",
        stderr(&json_output)
    );
    let object: Value = serde_json::from_str(stdout(&json_output).trim()).expect("JSON line");
    assert_eq!(object["Size"], "3.01MB");
    assert_eq!(object["VirtualSize"], "3.01MB");

    let history = fixture.forge(&["history", "zeros:v1"]);
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let sizes: Vec<String> = table(&history)[1..]
        .iter()
        .map(|row| row[3].clone())
        .collect();
    assert_eq!(sizes, ["0B", "3.01MB"]);

    let inspect = fixture.forge(&["inspect", "zeros:v1"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", stderr(&inspect));
    let array: Value = serde_json::from_str(&stdout(&inspect)).expect("JSON output");
    assert_eq!(array[0]["Size"], json!(3_010_560));
    assert_eq!(array[0]["VirtualSize"], json!(3_010_560));

    let record = fixture
        .root
        .join("forge/layer-sizes")
        .join(diff_id.trim_start_matches("sha256:"));
    assert_eq!(
        std::fs::read_to_string(&record).expect("size recorded"),
        "3010560\n"
    );
}

#[test]
fn images_reuses_recorded_size() {
    let fixture = Fixture::new();
    let (layer, _) = add_gzip_image(&fixture, "zeros:v1", &compressible_tar());
    let first = fixture.forge(&["images"]);
    assert_eq!(table(&first)[1][4], "3.01MB");

    // The size comes from its record, so the layer blob is not read again.
    std::fs::remove_file(fixture.blob_path(&layer)).expect("layer removed");
    let second = fixture.forge(&["images"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(stderr(&second), "");
    assert_eq!(table(&second)[1][4], "3.01MB");
}

#[test]
fn images_skips_image_without_layer_size() {
    let fixture = Fixture::new();
    let (layer, _) = add_gzip_image(&fixture, "zeros:v1", &compressible_tar());
    std::fs::remove_file(fixture.blob_path(&layer)).expect("layer removed");

    let output = fixture.forge(&["images"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(table(&output).len(), 1, "{}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("skipping zeros:v1"), "{message}");
    assert!(
        message.contains(&format!(
            "cannot measure the uncompressed size of layer {}",
            layer.digest()
        )),
        "{message}"
    );
    assert!(message.contains("forge store check"), "{message}");
}

#[test]
fn built_copy_layer_shows_content_size() {
    let fixture = Fixture::new();
    let context = fixture.dir.path().join("context");
    std::fs::create_dir_all(&context).expect("context folder");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY big.txt /big.txt\nENV A=1\n",
    )
    .expect("Dockerfile");
    std::fs::write(context.join("big.txt"), "forge ".repeat(500_000)).expect("context file");

    let build = fixture.forge(&["build", "-q", "-t", "big:v1", &context.to_string_lossy()]);
    assert_eq!(build.status.code(), Some(0), "{}", stderr(&build));

    // The build records the size when it writes the layer.
    let records: Vec<PathBuf> = std::fs::read_dir(fixture.root.join("forge/layer-sizes"))
        .expect("layer size folder")
        .map(|entry| entry.expect("folder entry").path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let recorded: u64 = std::fs::read_to_string(&records[0])
        .expect("size record")
        .trim()
        .parse()
        .expect("a number");
    assert!(recorded > 3_000_000, "{recorded}");
    assert!(recorded < 3_004_096, "{recorded}");

    let inspect = fixture.forge(&["inspect", "big:v1"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", stderr(&inspect));
    let array: Value = serde_json::from_str(&stdout(&inspect)).expect("JSON output");
    let image = &array[0];
    assert_eq!(image["Size"], json!(recorded));
    let blob_size = image["Manifest"]["layers"][0]["size"]
        .as_u64()
        .expect("layer size");
    assert!(blob_size < 100_000, "{blob_size}");

    let rows = table(&fixture.forge(&["images", "big"]));
    assert_eq!(rows[1][4], "3MB", "{rows:?}");
    let history = table(&fixture.forge(&["history", "big:v1"]));
    let sizes: Vec<&str> = history[1..].iter().map(|row| row[3].as_str()).collect();
    assert_eq!(sizes, ["0B", "3MB"], "{history:?}");
}
