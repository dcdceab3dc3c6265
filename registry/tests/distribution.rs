//! The client against a real `docker-registry` (distribution 2.8) started
//! on a loopback port, with `skopeo` as an independent reader.

mod common;

use std::process::Command;

use common::{Blob, StaticCredentials, TestImage, make_image};
use forge_registry::client::{OCI_INDEX, OCI_MANIFEST, sha256_digest};
use forge_registry::{
    BlobPush, Client, ClientConfig, ClientError, Credential, DockerConfig, Platform, Reference,
};
use forge_testkit::registry::{Registry, RegistryOptions};

fn reference(host: &str, name: &str) -> Reference {
    format!("{host}/{name}")
        .parse()
        .unwrap_or_else(|e| panic!("bad test reference: {e}"))
}

fn anonymous_client() -> Client {
    Client::new(ClientConfig::default(), Box::new(StaticCredentials(None)))
        .unwrap_or_else(|e| panic!("client: {e}"))
}

fn push_blob(client: &Client, target: &Reference, blob: &Blob) -> BlobPush {
    client
        .push_blob(
            target,
            &blob.digest,
            blob.size(),
            &mut blob.bytes.as_slice(),
        )
        .unwrap_or_else(|e| panic!("push blob {}: {e}", blob.digest))
}

/// Pushes layer, config and manifest; returns the manifest digest.
fn push_image(client: &Client, target: &Reference, image: &TestImage) -> String {
    push_blob(client, target, &image.layer);
    push_blob(client, target, &image.config);
    client
        .push_manifest(target, &image.manifest, OCI_MANIFEST)
        .unwrap_or_else(|e| panic!("push manifest: {e}"))
        .to_string()
}

fn skopeo_inspect(image: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{image}"))
        .output()
        .unwrap_or_else(|e| panic!("run skopeo: {e}"));
    assert!(
        output.status.success(),
        "skopeo inspect {image} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("skopeo JSON: {e}"))
}

#[test]
fn push_then_read_with_skopeo_and_client() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let client = anonymous_client();
    let target = reference(&registry.host, "test/app:v1");
    let image = make_image(b"hello from forge\n");
    let digest = push_image(&client, &target, &image);

    let inspected = skopeo_inspect(&format!("{}/test/app:v1", registry.host), &[]);
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(
        inspected["Layers"][0],
        image.layer.digest.to_string().as_str()
    );
    assert_eq!(inspected["Architecture"], "amd64");

    let manifest = client
        .get_manifest(&target)
        .unwrap_or_else(|e| panic!("get manifest: {e}"));
    assert_eq!(manifest.bytes, image.manifest);
    assert_eq!(manifest.media_type, OCI_MANIFEST);
    assert_eq!(manifest.digest.to_string(), digest);

    let mut layer = Vec::new();
    let written = client
        .pull_blob(
            &target,
            &image.layer.digest,
            Some(image.layer.size()),
            &mut layer,
        )
        .unwrap_or_else(|e| panic!("pull layer: {e}"));
    assert_eq!(written, image.layer.size());
    assert_eq!(layer, image.layer.bytes);

    // By digest, the bytes are verified against the reference.
    let by_digest = target.with_digest(manifest.digest.clone());
    let again = client
        .get_manifest(&by_digest)
        .unwrap_or_else(|e| panic!("get by digest: {e}"));
    assert_eq!(again.bytes, image.manifest);
}

#[test]
fn index_selects_platform() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let client = anonymous_client();
    let target = reference(&registry.host, "multi/app:v1");
    let image = make_image(b"amd64 content\n");
    push_blob(&client, &target, &image.layer);
    push_blob(&client, &target, &image.config);
    let untagged = target.with_digest(sha256_digest(&image.manifest));
    let manifest_digest = client
        .push_manifest(&untagged, &image.manifest, OCI_MANIFEST)
        .unwrap_or_else(|e| panic!("push manifest by digest: {e}"));

    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": image.manifest.len(),
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    });
    let index = serde_json::to_vec(&index).unwrap_or_else(|e| panic!("{e}"));
    let index_digest = client
        .push_manifest(&target, &index, OCI_INDEX)
        .unwrap_or_else(|e| panic!("push index: {e}"));

    let resolved = client
        .get_image_manifest(&target, &Platform::default())
        .unwrap_or_else(|e| panic!("resolve: {e}"));
    assert_eq!(resolved.manifest.digest, manifest_digest);
    assert_eq!(resolved.manifest.bytes, image.manifest);
    assert_eq!(resolved.index.map(|i| i.digest), Some(index_digest));

    let arm64: Platform = "linux/arm64".parse().unwrap_or_else(|e| panic!("{e}"));
    let missing = client.get_image_manifest(&target, &arm64);
    let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("no manifest for platform linux/arm64"),
        "{message}"
    );
    assert!(message.contains("linux/amd64"), "{message}");
}

#[test]
fn repush_sends_no_blob_bodies() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let client = anonymous_client();
    let target = reference(&registry.host, "test/repush:v1");
    let image = make_image(b"pushed twice\n");
    push_image(&client, &target, &image);
    let uploads_before = registry.count_requests("PUT", "/blobs/uploads/");
    let posts_before = registry.count_requests("POST", "/blobs/uploads/");
    assert_eq!(uploads_before, 2, "first push uploads layer and config");

    let second = make_image(b"pushed twice\n");
    assert_eq!(
        push_blob(&client, &target, &second.layer),
        BlobPush::AlreadyExists
    );
    assert_eq!(
        push_blob(&client, &target, &second.config),
        BlobPush::AlreadyExists
    );
    client
        .push_manifest(&target, &second.manifest, OCI_MANIFEST)
        .unwrap_or_else(|e| panic!("re-push manifest: {e}"));

    assert_eq!(
        registry.count_requests("PUT", "/blobs/uploads/"),
        uploads_before
    );
    assert_eq!(
        registry.count_requests("POST", "/blobs/uploads/"),
        posts_before
    );
    assert_eq!(registry.count_requests("PATCH", "/blobs/uploads/"), 0);
    assert!(registry.count_requests("HEAD", "/blobs/sha256:") >= 4);
}

#[test]
fn mount_across_repositories() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let client = anonymous_client();
    let source = reference(&registry.host, "team/base:v1");
    let target = reference(&registry.host, "team/derived:v1");
    let image = make_image(b"shared layer\n");
    push_blob(&client, &source, &image.layer);

    let before = client
        .blob_exists(&target, &image.layer.digest)
        .unwrap_or_else(|e| panic!("exists: {e}"));
    assert_eq!(before, None);
    let mounted = client
        .mount_blob(&target, &source, &image.layer.digest)
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(mounted);
    let after = client
        .blob_exists(&target, &image.layer.digest)
        .unwrap_or_else(|e| panic!("exists: {e}"));
    assert_eq!(after, Some(image.layer.size()));

    // A blob the source lacks is not mounted, and no upload is left open.
    let absent = sha256_digest(b"never pushed");
    let not_mounted = client
        .mount_blob(&target, &source, &absent)
        .unwrap_or_else(|e| panic!("mount absent: {e}"));
    assert!(!not_mounted);
    assert_eq!(registry.count_requests("DELETE", "/blobs/uploads/"), 1);
}

#[test]
fn mismatched_blob_is_rejected() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let client = anonymous_client();
    let target = reference(&registry.host, "test/bad:v1");
    let claimed = sha256_digest(b"the real content");
    let wrong = b"other content!!!".to_vec();

    let result = client.push_blob(&target, &claimed, wrong.len() as u64, &mut wrong.as_slice());
    match result {
        Err(ClientError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, claimed.to_string());
            assert_eq!(actual, sha256_digest(&wrong).to_string());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    let stored = client
        .blob_exists(&target, &claimed)
        .unwrap_or_else(|e| panic!("exists: {e}"));
    assert_eq!(stored, None);
    assert_eq!(registry.count_requests("PUT", "/blobs/uploads/"), 0);

    // The registry itself rejects a manifest whose blobs are missing, and
    // the error carries its message.
    let image = make_image(b"blobs never uploaded\n");
    let error = client
        .push_manifest(&target, &image.manifest, OCI_MANIFEST)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("HTTP 400"), "{error}");
    assert!(error.contains("MANIFEST_BLOB_UNKNOWN"), "{error}");
    assert!(error.contains("/v2/test/bad/manifests/v1"), "{error}");
}

#[test]
fn missing_manifest_error_names_url() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let client = anonymous_client();
    let target = reference(&registry.host, "test/none:v9");
    let error = client
        .get_manifest(&target)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(error.contains("/v2/test/none/manifests/v9"), "{error}");
    assert!(
        error.contains("MANIFEST_UNKNOWN") || error.contains("NAME_UNKNOWN"),
        "{error}"
    );
}

#[test]
fn chunked_upload_of_large_blob() {
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let config = ClientConfig {
        monolithic_max_bytes: 1024,
        chunk_bytes: 4096,
        ..ClientConfig::default()
    };
    let client = Client::new(config, Box::new(StaticCredentials(None)))
        .unwrap_or_else(|e| panic!("client: {e}"));
    let target = reference(&registry.host, "test/big:v1");
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let blob = Blob::new(bytes, "application/octet-stream");

    assert_eq!(push_blob(&client, &target, &blob), BlobPush::Uploaded);
    assert_eq!(registry.count_requests("PATCH", "/blobs/uploads/"), 5);
    assert_eq!(registry.count_requests("PUT", "/blobs/uploads/"), 1);

    let mut pulled = Vec::new();
    client
        .pull_blob(&target, &blob.digest, Some(blob.size()), &mut pulled)
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(pulled, blob.bytes);

    // A chunked upload whose data is shorter than announced is cancelled.
    let short = Blob::new(vec![7u8; 3000], "application/octet-stream");
    let result = client.push_blob(&target, &short.digest, 5000, &mut short.bytes.as_slice());
    assert!(
        matches!(
            result,
            Err(ClientError::SizeMismatch {
                expected: 5000,
                actual: 3000,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn basic_auth_over_tls() {
    let options = RegistryOptions {
        basic_auth: Some(("forge".to_owned(), "s3cret-pass".to_owned())),
        tls: true,
        ..RegistryOptions::default()
    };
    let Some(registry) = Registry::start(options) else {
        return;
    };
    let certificate = registry.certificate.clone().unwrap_or_default();
    let config = ClientConfig {
        root_certificates_pem: vec![certificate],
        ..ClientConfig::default()
    };

    // Credentials go through a Docker configuration file, as `forge login`
    // would write it.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut docker =
        DockerConfig::load_from(dir.path().join("config.json")).unwrap_or_else(|e| panic!("{e}"));
    let credential = Credential::UserPassword {
        username: "forge".into(),
        password: "s3cret-pass".into(),
    };
    docker
        .store(&registry.host, &credential)
        .unwrap_or_else(|e| panic!("store: {e}"));
    let docker =
        DockerConfig::load_from(dir.path().join("config.json")).unwrap_or_else(|e| panic!("{e}"));

    let client = Client::new(config.clone(), Box::new(docker)).unwrap_or_else(|e| panic!("{e}"));
    let target = reference(&registry.host, "secure/app:v1");
    let image = make_image(b"over tls\n");
    let digest = push_image(&client, &target, &image);
    let manifest = client
        .get_manifest(&target)
        .unwrap_or_else(|e| panic!("get manifest: {e}"));
    assert_eq!(manifest.digest.to_string(), digest);

    if forge_testkit::require_tool("skopeo") {
        let inspected = skopeo_inspect(
            &format!("{}/secure/app:v1", registry.host),
            &["--creds", "forge:s3cret-pass"],
        );
        assert_eq!(inspected["Digest"], digest.as_str());
    }

    // A wrong password is rejected, and the error does not show it.
    let wrong = StaticCredentials(Some(Credential::UserPassword {
        username: "forge".into(),
        password: "wrong-password".into(),
    }));
    let client = Client::new(config.clone(), Box::new(wrong)).unwrap_or_else(|e| panic!("{e}"));
    let error = client.get_manifest(&target).err();
    let message = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        matches!(error, Some(ClientError::Unauthorized { status: 401, .. })),
        "{message}"
    );
    assert!(message.contains(&registry.host), "{message}");
    assert!(message.contains("repository:secure/app:pull"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    assert!(!format!("{error:?}").contains("wrong-password"));

    // Without credentials, access is denied too.
    let client = Client::new(config.clone(), Box::new(StaticCredentials(None)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        client.get_manifest(&target),
        Err(ClientError::Unauthorized { .. })
    ));

    // Without the certificate, verification fails. The client then tries
    // plain HTTP, which loopback hosts may use, and this HTTPS-only
    // registry answers that with HTTP 400.
    let client = Client::new(ClientConfig::default(), Box::new(StaticCredentials(None)))
        .unwrap_or_else(|e| panic!("{e}"));
    let message = client
        .get_manifest(&target)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("HTTP 400"), "{message}");
}
