//! Runs `forge push`, `forge pull`, `forge login` and `forge build` against
//! a real `docker-registry` on a loopback port, and reads the results with
//! skopeo and podman.

mod common;

use std::process::Command;

use common::{
    Fixture, assert_success, pushed_digest, registry_tools_present, start_registry, stderr, stdout,
};
use forge_testkit::registry::{Registry, RegistryOptions};
use serde_json::Value;

fn skopeo_inspect(reference: &str, extra: &[&str]) -> Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert_success(&output, "skopeo inspect");
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// Counts blob uploads that carried data (PUT or PATCH to an upload URL).
fn upload_requests(registry: &Registry) -> usize {
    registry.count_requests("PUT", "/blobs/uploads/")
        + registry.count_requests("PATCH", "/blobs/uploads/")
}

#[test]
fn push_read_by_skopeo_and_pull_back() {
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
    let name = format!("{}/forge/app:v1", registry.host);
    assert_success(&fixture.build_scratch("store", &name, &[]), "forge build");

    let push = fixture.forge("store", &["push", &name]);
    assert_success(&push, "forge push");
    let digest = pushed_digest(&push);
    assert!(
        stdout(&push).starts_with("v1: digest: sha256:"),
        "{}",
        stdout(&push)
    );

    let inspected = skopeo_inspect(&name, &[]);
    assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(1));

    let layout = fixture.path("copied");
    let copy = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:app", layout.display()))
        .output()
        .expect("skopeo runs");
    assert_success(&copy, "skopeo copy");
    assert!(layout.join("index.json").is_file());

    // A fresh store pulls the same digest, and a second pull changes nothing.
    let pull = fixture.forge("other", &["pull", &name]);
    assert_success(&pull, "forge pull");
    let text = stdout(&pull);
    assert!(text.contains(&format!("Digest: {digest}")), "{text}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}")),
        "{text}"
    );
    let again = fixture.forge("other", &["pull", &name]);
    assert_success(&again, "second forge pull");
    assert!(
        stdout(&again).contains(&format!("Status: Image is up to date for {name}")),
        "{}",
        stdout(&again)
    );
    assert!(
        stderr(&again).contains("Already exists"),
        "{}",
        stderr(&again)
    );

    let images = fixture.forge("other", &["images"]);
    assert_success(&images, "forge images");
    assert!(
        stdout(&images).contains(&format!("{}/forge/app", registry.host)),
        "{}",
        stdout(&images)
    );
}

#[test]
fn second_push_uploads_nothing_and_mounts() {
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
    let name = format!("{}/forge/first:v1", registry.host);
    assert_success(&fixture.build_scratch("store", &name, &[]), "forge build");
    assert_success(&fixture.forge("store", &["push", &name]), "first push");
    let uploads = upload_requests(&registry);
    assert!(uploads >= 2, "the first push uploaded {uploads} blobs");

    let again = fixture.forge("store", &["push", &name]);
    assert_success(&again, "second push");
    assert_eq!(
        upload_requests(&registry),
        uploads,
        "the second push uploaded blobs"
    );
    assert!(
        stderr(&again).contains("Layer already exists"),
        "{}",
        stderr(&again)
    );

    let mounts_before = registry.count_requests("POST", "mount=");
    let second = format!("{}/forge/second:v1", registry.host);
    let mounted = fixture.forge("store", &["push", &name, &second]);
    assert_success(&mounted, "push to a second repository");
    assert!(
        registry.count_requests("POST", "mount=") > mounts_before,
        "no mount request in the registry log"
    );
    assert_eq!(
        upload_requests(&registry),
        uploads,
        "blobs were uploaded, not mounted"
    );
    assert!(
        stderr(&mounted).contains("Mounted from forge/first"),
        "{}",
        stderr(&mounted)
    );
    let inspected = skopeo_inspect(&second, &[]);
    assert_eq!(
        inspected["Digest"].as_str(),
        Some(pushed_digest(&mounted).as_str())
    );
}

#[test]
fn push_by_digest_prints_digest() {
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
    let name = format!("{}/forge/bydigest:v1", registry.host);
    assert_success(&fixture.build_scratch("store", &name, &[]), "forge build");
    let tagged = fixture.forge("store", &["push", &name]);
    assert_success(&tagged, "push by tag");
    let digest = pushed_digest(&tagged);
    let destination = format!("{}/forge/bydigest@{digest}", registry.host);
    let by_digest = fixture.forge("store", &["push", &name, &destination]);
    assert_success(&by_digest, "push by digest");
    assert_eq!(stdout(&by_digest).trim(), digest);
}

#[test]
fn build_pulls_base_pushed_by_skopeo() {
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
    assert_success(
        &fixture.build_scratch("store", "base:1", &[]),
        "forge build",
    );
    let layout = fixture.path("layout");
    let save = fixture.forge(
        "store",
        &[
            "save",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().expect("UTF-8 path"),
            "base:1",
        ],
    );
    assert_success(&save, "forge save");
    let base = format!("{}/skopeo/base:1", registry.host);
    let copy = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("docker://{base}"))
        .output()
        .expect("skopeo runs");
    assert_success(&copy, "skopeo copy to the registry");

    // A fresh store has no base: the build pulls it.
    let dockerfile = fixture.path("context/Dockerfile.from");
    std::fs::write(
        &dockerfile,
        format!("FROM {base}\nCOPY hello.txt /again.txt\n"),
    )
    .expect("Dockerfile");
    let context = fixture.path("context");
    let build = |store: &str| {
        fixture.forge(
            store,
            &[
                "build",
                "--progress",
                "plain",
                "-f",
                dockerfile.to_str().expect("UTF-8 path"),
                "-t",
                "child:1",
                context.to_str().expect("UTF-8 path"),
            ],
        )
    };
    let first = build("fresh");
    assert_success(&first, "build from a registry base");
    assert!(
        stderr(&first).contains(&format!("pulling {base}")),
        "{}",
        stderr(&first)
    );
    let images = fixture.forge("fresh", &["images"]);
    assert!(
        stdout(&images).contains(&format!("{}/skopeo/base", registry.host)),
        "{}",
        stdout(&images)
    );

    // The second build finds the base in the store and hits the cache.
    let manifests_before = registry.count_requests("GET", "/manifests/");
    let second = build("fresh");
    assert_success(&second, "second build");
    assert!(!stderr(&second).contains("pulling"), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("Using cache"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        registry.count_requests("GET", "/manifests/"),
        manifests_before
    );

    // `--pull` resolves the base in the registry again, and the unchanged
    // base keeps the cache.
    let pulled = fixture.forge(
        "fresh",
        &[
            "build",
            "--pull",
            "--progress",
            "plain",
            "-f",
            dockerfile.to_str().expect("UTF-8 path"),
            "-t",
            "child:1",
            context.to_str().expect("UTF-8 path"),
        ],
    );
    assert_success(&pulled, "build with --pull");
    assert!(
        stderr(&pulled).contains(&format!("pulling {base}")),
        "{}",
        stderr(&pulled)
    );
    assert!(
        stderr(&pulled).contains("Using cache"),
        "{}",
        stderr(&pulled)
    );
    assert!(registry.count_requests("GET", "/manifests/") > manifests_before);
}

#[test]
fn build_push_sends_every_tag() {
    let Some((registry, fixture)) = start_registry() else {
        return;
    };
    let name = format!("{}/forge/built:v2", registry.host);
    let build = fixture.build_scratch("store", &name, &["--push"]);
    assert_success(&build, "forge build --push");
    assert!(
        stderr(&build).contains("v2: digest: sha256:"),
        "{}",
        stderr(&build)
    );
    let inspected = skopeo_inspect(&name, &[]);
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn podman_pulls_forge_push() {
    if !registry_tools_present() || !forge_testkit::require_tool("podman") {
        return;
    }
    if !forge_testkit::require_root("podman_pulls_forge_push") {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let fixture = Fixture::new();
    let name = format!("{}/forge/podman:v1", registry.host);
    assert_success(&fixture.build_scratch("store", &name, &[]), "forge build");
    let push = fixture.forge("store", &["push", &name]);
    assert_success(&push, "forge push");
    let digest = pushed_digest(&push);

    let podman_root = fixture.path("podman-root");
    let podman_runroot = fixture.path("podman-runroot");
    let podman = |args: &[&str]| {
        Command::new("podman")
            .args(["--runtime", "runc", "--storage-driver", "vfs", "--root"])
            .arg(&podman_root)
            .arg("--runroot")
            .arg(&podman_runroot)
            .args(args)
            .output()
            .expect("podman runs")
    };
    let pull = podman(&["pull", "--tls-verify=false", &name]);
    assert_success(&pull, "podman pull");
    let inspect = podman(&["image", "inspect", "--format", "{{.Digest}}", &name]);
    assert_success(&inspect, "podman image inspect");
    assert_eq!(stdout(&inspect).trim(), digest);
}

#[test]
fn login_basic_auth_over_tls() {
    if !registry_tools_present()
        || !forge_testkit::require_tool("htpasswd")
        || !forge_testkit::require_tool("openssl")
    {
        return;
    }
    let password = "s3cret-Pass-981";
    let Some(registry) = Registry::start(RegistryOptions {
        basic_auth: Some(("forge".into(), password.into())),
        tls: true,
        ..RegistryOptions::default()
    }) else {
        return;
    };
    let certificate = registry
        .certificate_path
        .clone()
        .expect("a TLS registry has a certificate");
    let ca = certificate.to_str().expect("UTF-8 path");
    let fixture = Fixture::new();

    let wrong = fixture.forge_with_stdin(
        "store",
        &[
            "login",
            "-u",
            "forge",
            "--password-stdin",
            "--ca-cert",
            ca,
            &registry.host,
        ],
        "wrong-Pass-123\n",
    );
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(stderr(&wrong).contains("rejected"), "{}", stderr(&wrong));
    assert!(
        !stderr(&wrong).contains("wrong-Pass-123"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        !stdout(&wrong).contains("wrong-Pass-123"),
        "{}",
        stdout(&wrong)
    );

    let login = fixture.forge_with_stdin(
        "store",
        &[
            "login",
            "-u",
            "forge",
            "--password-stdin",
            "--ca-cert",
            ca,
            &registry.host,
        ],
        &format!("{password}\n"),
    );
    assert_success(&login, "forge login");
    assert!(
        stdout(&login).contains("Login Succeeded"),
        "{}",
        stdout(&login)
    );
    assert!(!stdout(&login).contains(password));
    assert!(!stderr(&login).contains(password));
    let config = std::fs::read_to_string(fixture.path("docker/config.json"))
        .expect("login writes config.json");
    assert!(config.contains(&registry.host), "{config}");

    let name = format!("{}/forge/secure:v1", registry.host);
    assert_success(&fixture.build_scratch("store", &name, &[]), "forge build");
    let push = fixture.forge("store", &["push", "--ca-cert", ca, &name]);
    assert_success(&push, "push with stored credentials");
    assert!(!stdout(&push).contains(password));
    assert!(!stderr(&push).contains(password));

    // Without the CA the certificate is not trusted.
    let untrusted = fixture.forge("store", &["push", &name]);
    assert!(!untrusted.status.success(), "push without the CA succeeded");

    let logout = fixture.forge("store", &["logout", &registry.host]);
    assert_success(&logout, "forge logout");
    let config = std::fs::read_to_string(fixture.path("docker/config.json")).unwrap_or_default();
    assert!(!config.contains(&registry.host), "{config}");
    let anonymous = fixture.forge("other", &["pull", "--ca-cert", ca, &name]);
    assert!(
        !anonymous.status.success(),
        "pull without credentials succeeded"
    );
}
