//! Validates JSON documents against the OCI image-spec JSON Schemas, plus
//! the checks that the image-spec's own Go validator makes beyond the
//! schemas (environment entries, digest encodings, `uri` and `date-time`
//! formats, base64 `data`).

use std::path::Path;

use serde_json::Value;

/// Image config media type.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Descriptor media type.
pub const DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";
/// `oci-layout` file media type.
pub const LAYOUT: &str = "application/vnd.oci.layout.header.v1+json";

/// The schema files and the URLs their `$ref`s use for them.
const SCHEMAS: &[(&str, &[&str])] = &[
    (
        "config-schema.json",
        &["https://opencontainers.org/schema/image/config"],
    ),
    (
        "content-descriptor.json",
        &[
            "https://opencontainers.org/schema/descriptor",
            "https://opencontainers.org/schema/image/content-descriptor.json",
        ],
    ),
    (
        "defs-descriptor.json",
        &[
            "https://opencontainers.org/schema/image/descriptor/mediaType",
            "https://opencontainers.org/schema/defs-descriptor.json",
            "https://opencontainers.org/schema/image/defs-descriptor.json",
        ],
    ),
    (
        "defs.json",
        &[
            "https://opencontainers.org/schema/defs.json",
            "https://opencontainers.org/schema/image/defs.json",
            "https://opencontainers.org/schema/image/descriptor/defs.json",
        ],
    ),
    (
        "image-index-schema.json",
        &["https://opencontainers.org/schema/image/index"],
    ),
    (
        "image-layout-schema.json",
        &["https://opencontainers.org/schema/image/layout"],
    ),
    (
        "image-manifest-schema.json",
        &["https://opencontainers.org/schema/image/manifest"],
    ),
];

/// Validators for each media type, built once from a schema folder.
pub struct OciSchemas {
    validators: Vec<(&'static str, jsonschema::Validator)>,
}

impl OciSchemas {
    /// Loads the schemas from `dir` (the `oci-schema` conformance folder).
    pub fn load(dir: &Path) -> Result<OciSchemas, String> {
        let mut documents = Vec::new();
        let mut registry = jsonschema::Registry::new();
        for (file, urls) in SCHEMAS {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read schema {}: {e}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("schema {} is not JSON: {e}", path.display()))?;
            for url in *urls {
                registry = registry
                    .add(*url, value.clone())
                    .map_err(|e| format!("cannot register {url}: {e}"))?;
            }
            documents.push((*file, value));
        }
        let registry = registry
            .prepare()
            .map_err(|e| format!("schema registry: {e}"))?;

        let roots = [
            (CONFIG, "config-schema.json"),
            (DESCRIPTOR, "content-descriptor.json"),
            (INDEX, "image-index-schema.json"),
            (LAYOUT, "image-layout-schema.json"),
            (MANIFEST, "image-manifest-schema.json"),
        ];
        let mut validators = Vec::new();
        for (media_type, file) in roots {
            let schema = documents
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, value)| value)
                .ok_or_else(|| format!("schema {file} missing"))?;
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(schema)
                .map_err(|e| format!("cannot build validator for {file}: {e}"))?;
            validators.push((media_type, validator));
        }
        Ok(OciSchemas { validators })
    }

    /// Checks `text` as a document of `media_type`; returns every problem found.
    pub fn validate(&self, media_type: &str, text: &[u8]) -> Result<(), Vec<String>> {
        let value: Value =
            serde_json::from_slice(text).map_err(|e| vec![format!("not valid JSON: {e}")])?;
        let Some((_, validator)) = self.validators.iter().find(|(m, _)| *m == media_type) else {
            return Err(vec![format!("no schema for media type {media_type}")]);
        };

        let mut problems: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        check_extra_rules(media_type, &value, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Checks the rules of the image-spec validator that the schemas do not express.
fn check_extra_rules(media_type: &str, value: &Value, problems: &mut Vec<String>) {
    if media_type == CONFIG {
        if let Some(env) = value.pointer("/config/Env").and_then(Value::as_array) {
            for entry in env {
                let valid = entry
                    .as_str()
                    .is_some_and(|s| s.find('=').is_some_and(|at| at > 0));
                if !valid {
                    problems.push(format!("config.Env entry {entry} is not NAME=VALUE"));
                }
            }
        }
        if let Some(ids) = value.pointer("/rootfs/diff_ids").and_then(Value::as_array) {
            for id in ids {
                check_digest(id, problems);
            }
        }
    }
    walk_descriptors(value, problems);
}

/// Applies the digest and `data` rules to every object that has a `digest`.
fn walk_descriptors(value: &Value, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(digest) = map.get("digest") {
                check_digest(digest, problems);
                if let Some(data) = map.get("data").and_then(Value::as_str) {
                    if !is_padded_base64(data) {
                        problems.push(format!("descriptor data {data:?} is not padded base64"));
                    }
                }
            }
            for child in map.values() {
                walk_descriptors(child, problems);
            }
        }
        Value::Array(items) => {
            for child in items {
                walk_descriptors(child, problems);
            }
        }
        _ => {}
    }
}

/// Checks that a digest of a registered algorithm has exactly its hex length in lower case.
fn check_digest(digest: &Value, problems: &mut Vec<String>) {
    let Some(text) = digest.as_str() else {
        return;
    };
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return,
    };
    let lower_hex = encoded
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if encoded.len() != length || !lower_hex {
        problems.push(format!(
            "digest {text} is not {length} lower-case hex characters"
        ));
    }
}

/// Standard base64 alphabet with `=` padding to a multiple of four.
fn is_padded_base64(data: &str) -> bool {
    let bytes = data.as_bytes();
    if bytes.len() % 4 != 0 {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return false;
    }
    bytes[..bytes.len() - padding]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}
