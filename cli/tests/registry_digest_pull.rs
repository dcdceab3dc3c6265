//! Pulls by digest and of multi-platform indexes against a real
//! `docker-registry` on a loopback port. The tests check the digest
//! references and index blobs that such pulls keep, `prune` and
//! `store check` after them, and the images that `FROM` and `COPY --from`
//! pull.

mod common;

use std::process::{Command, Output};

use common::{Fixture, assert_success, pushed_digest, start_registry, stderr, stdout};
use forge_registry::client::{OCI_INDEX, sha256_digest};
use forge_registry::{
    Client, ClientConfig, Credential, CredentialError, CredentialProvider, Reference,
};
use forge_testkit::registry::Registry;

/// Methods that only this file uses.
impl Fixture {
    /// Runs `forge` and fails the test when it fails.
    fn forge_ok(&self, store: &str, args: &[&str]) -> Output {
        let output = self.forge(store, args);
        assert_success(&output, &format!("forge {}", args.join(" ")));
        output
    }

    /// Builds `FROM scratch` + `COPY hello.txt /` and pushes it as `name`.
    /// Returns the pushed manifest digest.
    fn build_and_push(&self, name: &str, extra: &[&str]) -> String {
        let build = self.build_scratch("source", name, extra);
        assert_success(&build, &format!("forge build -t {name}"));
        let push = self.forge_ok("source", &["push", name]);
        pushed_digest(&push)
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

/// Returns the rows of `forge images --digests` as cells.
fn image_rows(fixture: &Fixture, store: &str) -> Vec<Vec<String>> {
    let output = fixture.forge_ok(store, &["images", "--digests"]);
    stdout(&output)
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Builds `dockerfile` in the store folder `store` and asserts that the build
/// succeeds with the images from the store, without a pull and without a
/// manifest request to `registry`. Returns the number of manifest requests
/// that the registry has served.
fn build_from_store(
    fixture: &Fixture,
    registry: &Registry,
    dockerfile: &str,
    extra: &[&str],
    what: &str,
) -> usize {
    let manifests_before = registry.count_requests("GET", "/manifests/");
    let build = fixture.build("store", dockerfile, extra);
    assert_success(&build, what);
    assert!(!stderr(&build).contains("pulling"), "{}", stderr(&build));
    let manifests_after = registry.count_requests("GET", "/manifests/");
    assert_eq!(manifests_after, manifests_before);
    manifests_after
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
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
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
    build_from_store(
        &fixture,
        &registry,
        &format!("FROM {by_digest}\nCOPY hello.txt /again.txt\n"),
        &[&insecure, "-t", "child:1"],
        "build FROM NAME@DIGEST from the store",
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
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
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
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
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
    let repository = format!("{}/multi/app", registry.host);
    build_from_store(
        &fixture,
        &registry,
        &format!("FROM {repository}@{index}\nCOPY hello.txt /again.txt\n"),
        &[&insecure, "-t", "child:1"],
        "build FROM NAME@INDEX",
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
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
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
    let manifests_before = build_from_store(
        &fixture,
        &registry,
        &dockerfile,
        &[&insecure, "-t", "copied:1"],
        "second build",
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
