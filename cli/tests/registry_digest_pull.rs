//! Pulls by digest and of multi-platform indexes against a real
//! `docker-registry` on a loopback port. The tests check the digest
//! references and index blobs that such pulls keep, `prune` and
//! `store check` after them, and the images that `FROM` and `COPY --from`
//! pull.

use std::path::PathBuf;
use std::process::{Command, Output};

use forge_registry::client::{OCI_INDEX, sha256_digest};
use forge_registry::{
    Client, ClientConfig, Credential, CredentialError, CredentialProvider, Reference,
};
use forge_testkit::registry::{Registry, RegistryOptions};

/// A temporary folder with stores, a Docker configuration folder and a
/// build context.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        let context = fixture.path("context");
        std::fs::create_dir_all(&context).expect("context folder");
        std::fs::write(context.join("hello.txt"), "hello from forge\n").expect("context file");
        std::fs::create_dir_all(fixture.path("docker")).expect("docker config folder");
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn forge(&self, store: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("--root")
            .arg(self.path(store))
            .args(args)
            .env_remove("FORGE_ROOT")
            .env_remove("FORGE_INSECURE_REGISTRIES")
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("HOME", self.dir.path())
            .output()
            .expect("forge runs")
    }

    /// Runs `forge` and fails the test when it fails.
    fn forge_ok(&self, store: &str, args: &[&str]) -> Output {
        let output = self.forge(store, args);
        assert_success(&output, &format!("forge {}", args.join(" ")));
        output
    }

    /// Builds `FROM scratch` + `COPY hello.txt /` and pushes it as `name`.
    /// Returns the pushed manifest digest.
    fn build_and_push(&self, name: &str, extra: &[&str]) -> String {
        std::fs::write(
            self.path("context/Dockerfile"),
            "FROM scratch\nCOPY hello.txt /\n",
        )
        .expect("Dockerfile");
        let context = self.path("context");
        let mut args = vec!["build", "--progress", "plain", "-t", name];
        args.extend_from_slice(extra);
        args.push(context.to_str().expect("UTF-8 path"));
        self.forge_ok("source", &args);
        let push = self.forge_ok("source", &["push", name]);
        let text = stdout(&push);
        text.lines()
            .find_map(|line| line.split(": digest: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no digest line in push output:\n{text}"))
    }

    /// Builds `dockerfile` in `store` with the context folder.
    fn build(&self, store: &str, dockerfile: &str, extra: &[&str]) -> Output {
        let file = self.path("context/Dockerfile.test");
        std::fs::write(&file, dockerfile).expect("Dockerfile");
        let context = self.path("context");
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "-f",
            file.to_str().expect("UTF-8 path"),
        ];
        args.extend_from_slice(extra);
        args.push(context.to_str().expect("UTF-8 path"));
        self.forge(store, &args)
    }

    fn blob_exists(&self, store: &str, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.path(store).join("blobs/sha256").join(hex).is_file()
    }

    /// Runs `forge store check` and fails the test unless it is clean.
    fn assert_check_clean(&self, store: &str) {
        let check = self.forge(store, &["store", "check"]);
        assert_success(&check, "forge store check");
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Returns the rows of `forge images --digests` as cells.
fn image_rows(fixture: &Fixture, store: &str) -> Vec<Vec<String>> {
    let output = fixture.forge_ok(store, &["images", "--digests"]);
    stdout(&output)
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn tools_present() -> bool {
    forge_testkit::require_tool("docker-registry") && forge_testkit::require_tool("skopeo")
}

/// A credential provider for a registry without authentication.
struct NoCredentials;

impl CredentialProvider for NoCredentials {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(None)
    }
}

/// Reads the manifest bytes of `reference` with skopeo.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert_success(&output, "skopeo inspect --raw");
    output.stdout
}

/// Pushes an OCI index of two platforms, arm64 first, as
/// `HOST/multi/app:latest`. Returns the index digest and the manifest
/// digests of amd64 and arm64.
fn push_two_platform_index(fixture: &Fixture, registry: &Registry) -> (String, String, String) {
    let amd64 = format!("{}/multi/app:amd64", registry.host);
    let arm64 = format!("{}/multi/app:arm64", registry.host);
    let amd64_digest = fixture.build_and_push(&amd64, &["--label", "platform=amd64"]);
    let arm64_digest = fixture.build_and_push(&arm64, &["--label", "platform=arm64"]);
    let entry = |reference: &str, digest: &str, architecture: &str| {
        let bytes = raw_manifest(reference);
        assert_eq!(sha256_digest(&bytes).to_string(), digest, "{reference}");
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "platform": {"architecture": architecture, "os": "linux"},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            entry(&arm64, &arm64_digest, "arm64"),
            entry(&amd64, &amd64_digest, "amd64"),
        ],
    });
    let bytes = serde_json::to_vec(&index).expect("index JSON");
    let config = ClientConfig {
        insecure_registries: vec![registry.host.clone()],
        ..ClientConfig::default()
    };
    let client = Client::new(config, Box::new(NoCredentials)).expect("registry client");
    let reference: Reference = format!("{}/multi/app:latest", registry.host)
        .parse()
        .expect("reference");
    let pushed = client
        .push_manifest(&reference, &bytes, OCI_INDEX)
        .expect("push the index");
    (pushed.to_string(), amd64_digest, arm64_digest)
}

#[test]
fn pull_by_digest_keeps_digest_reference() {
    if !tools_present() {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let fixture = Fixture::new();
    let repository = format!("{}/forge/app", registry.host);
    let digest = fixture.build_and_push(&format!("{repository}:v1"), &[]);
    let by_digest = format!("{repository}@{digest}");
    let insecure = format!("--insecure-registry={}", registry.host);

    let pull = fixture.forge_ok("store", &["pull", &insecure, &by_digest]);
    assert!(
        stdout(&pull).contains(&format!("Digest: {digest}")),
        "{}",
        stdout(&pull)
    );
    assert!(
        stdout(&pull).contains(&format!("Downloaded newer image for {by_digest}")),
        "{}",
        stdout(&pull)
    );

    // Listed with the repository, the tag <none> and the digest.
    let rows = image_rows(&fixture, "store");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], repository);
    assert_eq!(rows[0][1], "<none>");
    assert_eq!(rows[0][2], digest);

    // A second pull finds it, and prune keeps it as docker does.
    let again = fixture.forge_ok("store", &["pull", &insecure, &by_digest]);
    assert!(
        stdout(&again).contains("Image is up to date"),
        "{}",
        stdout(&again)
    );
    fixture.forge_ok("store", &["prune"]);
    assert_eq!(image_rows(&fixture, "store").len(), 1);
    fixture.assert_check_clean("store");
    fixture.forge_ok("store", &["inspect", &by_digest]);

    // FROM NAME@DIGEST uses the stored image without a request.
    let manifests_before = registry.count_requests("GET", "/manifests/");
    let build = fixture.build(
        "store",
        &format!("FROM {by_digest}\nCOPY hello.txt /again.txt\n"),
        &[&insecure, "-t", "child:1"],
    );
    assert_success(&build, "build FROM NAME@DIGEST from the store");
    assert!(!stderr(&build).contains("pulling"), "{}", stderr(&build));
    assert_eq!(
        registry.count_requests("GET", "/manifests/"),
        manifests_before
    );

    // In a fresh store the build pulls the base by digest.
    let fresh = fixture.build(
        "fresh",
        &format!("FROM {by_digest}\nCOPY hello.txt /again.txt\n"),
        &[&insecure, "-t", "child:1"],
    );
    assert_success(&fresh, "build FROM NAME@DIGEST with a pull");
    assert!(
        stderr(&fresh).contains(&format!("pulling {by_digest}")),
        "{}",
        stderr(&fresh)
    );
    let rows = image_rows(&fixture, "fresh");
    assert!(
        rows.iter()
            .any(|row| row[0] == repository && row[1] == "<none>" && row[2] == digest),
        "{rows:?}"
    );
}

#[test]
fn pull_tag_and_digest_ignores_tag() {
    if !tools_present() {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let fixture = Fixture::new();
    let repository = format!("{}/forge/app", registry.host);
    let digest = fixture.build_and_push(&format!("{repository}:v1"), &[]);
    let insecure = format!("--insecure-registry={}", registry.host);

    // The registry has no tag `other`: the digest is what is fetched.
    let pull = fixture.forge_ok(
        "store",
        &["pull", &insecure, &format!("{repository}:other@{digest}")],
    );
    assert!(
        stdout(&pull).contains(&format!("Digest: {digest}")),
        "{}",
        stdout(&pull)
    );
    let rows = image_rows(&fixture, "store");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "<none>", "{rows:?}");
    let tagged = fixture.forge("store", &["inspect", &format!("{repository}:other")]);
    assert!(!tagged.status.success(), "the tag must not be set");
}

#[test]
fn pull_multi_platform_keeps_index() {
    if !tools_present() {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let fixture = Fixture::new();
    let (index, amd64, arm64) = push_two_platform_index(&fixture, &registry);
    let name = format!("{}/multi/app:latest", registry.host);
    let insecure = format!("--insecure-registry={}", registry.host);

    let pull = fixture.forge_ok("store", &["pull", &insecure, &name]);
    assert!(
        stdout(&pull).contains(&format!("Digest: {index}")),
        "{}",
        stdout(&pull)
    );
    assert!(fixture.blob_exists("store", &index));
    assert!(fixture.blob_exists("store", &amd64));
    assert!(!fixture.blob_exists("store", &arm64));
    fixture.assert_check_clean("store");

    // The name points at the amd64 manifest, and prune keeps the index.
    let inspect = fixture.forge_ok("store", &["inspect", &name]);
    let inspected: serde_json::Value =
        serde_json::from_slice(&inspect.stdout).expect("inspect prints JSON");
    assert_eq!(inspected[0]["Digest"], amd64, "{inspected}");
    let rows = image_rows(&fixture, "store");
    assert_eq!(rows[0][2], index, "the listing shows the index digest");
    fixture.forge_ok("store", &["prune"]);
    assert!(
        fixture.blob_exists("store", &index),
        "prune removed the index"
    );
    assert!(fixture.blob_exists("store", &amd64));
    fixture.assert_check_clean("store");
    fixture.forge_ok("store", &["inspect", &name]);

    // NAME@INDEX finds the pulled platform without a request.
    let manifests_before = registry.count_requests("GET", "/manifests/");
    let repository = format!("{}/multi/app", registry.host);
    let build = fixture.build(
        "store",
        &format!("FROM {repository}@{index}\nCOPY hello.txt /again.txt\n"),
        &[&insecure, "-t", "child:1"],
    );
    assert_success(&build, "build FROM NAME@INDEX");
    assert!(!stderr(&build).contains("pulling"), "{}", stderr(&build));
    assert_eq!(
        registry.count_requests("GET", "/manifests/"),
        manifests_before
    );

    // A pull by the index digest keeps a digest reference with the index.
    let by_digest = format!("{repository}@{index}");
    fixture.forge_ok("digest", &["pull", &insecure, &by_digest]);
    fixture.forge_ok("digest", &["prune"]);
    assert!(fixture.blob_exists("digest", &index));
    fixture.assert_check_clean("digest");
    let rows = image_rows(&fixture, "digest");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "<none>");
    assert_eq!(rows[0][2], index);
}

#[test]
fn copy_from_image_pulls_it() {
    if !tools_present() {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let fixture = Fixture::new();
    let image = format!("{}/forge/files:v1", registry.host);
    fixture.build_and_push(&image, &[]);
    let insecure = format!("--insecure-registry={}", registry.host);
    let dockerfile = format!("FROM scratch\nCOPY --from={image} /hello.txt /copied.txt\n");

    let first = fixture.build("store", &dockerfile, &[&insecure, "-t", "copied:1"]);
    assert_success(&first, "COPY --from an image missing from the store");
    assert!(
        stderr(&first).contains(&format!("pulling {image}")),
        "{}",
        stderr(&first)
    );
    fixture.forge_ok("store", &["inspect", &image]);

    // The stored image is used without a request, and `--pull` resolves
    // it again.
    let manifests_before = registry.count_requests("GET", "/manifests/");
    let second = fixture.build("store", &dockerfile, &[&insecure, "-t", "copied:1"]);
    assert_success(&second, "second build");
    assert!(!stderr(&second).contains("pulling"), "{}", stderr(&second));
    assert_eq!(
        registry.count_requests("GET", "/manifests/"),
        manifests_before
    );
    let pulled = fixture.build(
        "store",
        &dockerfile,
        &[&insecure, "--pull", "-t", "copied:1"],
    );
    assert_success(&pulled, "build with --pull");
    assert!(
        stderr(&pulled).contains(&format!("pulling {image}")),
        "{}",
        stderr(&pulled)
    );
    assert!(registry.count_requests("GET", "/manifests/") > manifests_before);
}
