//! Checks the OCI schema validator that other tests use against the
//! image-spec's example documents, so that a validator that accepts
//! everything cannot pass.

use forge_testkit::oci_schema;

use sha2::{Digest, Sha256};

/// Docker media types are renamed to their OCI twins before validation.
const DOCKER_TO_OCI: &[(&str, &str)] = &[
    (
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ),
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    (
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.oci.image.config.v1+json",
    ),
];

#[test]
fn schema_examples_match_expectations() {
    let Some(dir) = forge_testkit::conformance_dir() else {
        return;
    };
    let dir = dir.join("oci-schema");
    let schemas = oci_schema::OciSchemas::load(&dir).expect("schemas load");
    let index = std::fs::read_to_string(dir.join("examples/index.tsv")).expect("index.tsv");

    let mut failures = Vec::new();
    let mut rows = 0;
    for (number, line) in index.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        let [file, media_type, expect, flavour, sha256, ..] = columns[..] else {
            failures.push(format!("index.tsv line {}: too few columns", number + 1));
            continue;
        };
        rows += 1;

        let bytes = std::fs::read(dir.join("examples").join(file)).expect("example file");
        if sha256 != "-" {
            let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
            if actual != sha256 {
                failures.push(format!("{file}: sha256 {actual}, expected {sha256}"));
            }
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if flavour == "docker" {
            for (docker, oci) in DOCKER_TO_OCI {
                text = text.replace(docker, oci);
            }
        }

        let result = schemas.validate(media_type, text.as_bytes());
        match (expect, &result) {
            ("valid", Ok(())) | ("invalid", Err(_)) => {}
            ("valid", Err(problems)) => {
                failures.push(format!("{file}: expected valid, got {problems:?}"));
            }
            ("invalid", Ok(())) => failures.push(format!("{file}: expected invalid, got valid")),
            (other, _) => failures.push(format!("{file}: unknown expectation {other:?}")),
        }
    }

    assert!(rows > 0, "no example rows read from index.tsv");
    assert!(
        failures.is_empty(),
        "{} of {rows} examples failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
