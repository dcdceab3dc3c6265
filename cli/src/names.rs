//! Image names as users type them and as the store keeps them.
//!
//! The store keeps each name in Docker's familiar form (`busybox:latest`,
//! `name/app:v1`, `localhost:5000/app:v1`), so every name from the command
//! line goes through [`Reference`] first: `app` and
//! `docker.io/library/app:latest` both become `app:latest`.

use anyhow::Context;
use forge_cache::store::{Store, StoreError};
use forge_registry::{Reference, ReferenceError};
use oci_spec::image::Descriptor;

/// Normalises an image name to the familiar form the store keeps, adding
/// the `latest` tag when the name has none.
///
/// # Errors
/// When `name` is not a valid reference or contains a digest, because a
/// digest cannot be part of a stored name.
pub fn normalise(name: &str) -> anyhow::Result<String> {
    let reference: Reference = name
        .parse()
        .with_context(|| format!("invalid image name `{name}`"))?;
    if reference.digest().is_some() {
        anyhow::bail!(
            "invalid image name `{name}`: a name cannot contain a digest; give NAME[:TAG] instead"
        );
    }
    Ok(reference.familiar())
}

/// Splits a familiar name into repository and tag: `localhost:5000/app:v1`
/// becomes `("localhost:5000/app", "v1")`. A name without a tag returns an
/// empty tag.
pub fn split_name(name: &str) -> (&str, &str) {
    let last_slash = name.rfind('/').map_or(0, |index| index + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => (&name[..last_slash + colon], &name[last_slash + colon + 1..]),
        None => (name, ""),
    }
}

/// Finds the manifest or index that `input` names: an image name (in any
/// form [`Reference`] accepts), `NAME@sha256:HEX`, a full digest of a
/// manifest or image id, or a unique image id prefix. Unnamed images are
/// found by id and digest.
///
/// A name is looked up first, then, when no image has that name and the
/// input is hex, an image id prefix, as Docker does.
///
/// # Errors
/// The store's not-found error, which suggests the closest name, when no
/// image has the name. `no image with id ...` for a full id or digest and
/// `no image id starts with ...` for a prefix that matches nothing. An
/// ambiguity error for an id prefix of several images.
pub fn resolve(store: &Store, input: &str) -> anyhow::Result<Descriptor> {
    if input.starts_with("sha256:") {
        return store.resolve(input).map_err(|error| id_error(input, error));
    }

    let reference = match input.parse::<Reference>() {
        Ok(reference) => reference,
        Err(ReferenceError::ImageId(_)) => {
            return store.resolve(input).map_err(|error| id_error(input, error));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("invalid image reference `{input}`"));
        }
    };

    let name = reference.familiar();
    match store.resolve(&name) {
        Err(StoreError::NameNotFound { .. }) if is_hex(input) => match store.resolve(input) {
            Ok(descriptor) => Ok(descriptor),
            Err(StoreError::NameNotFound { .. }) => Err(anyhow::anyhow!(
                "no image named {name} and no image id starts with {input}; `forge images` lists the images"
            )),
            Err(error) => Err(error.into()),
        },
        result => Ok(result?),
    }
}

/// Rewords the store's not-found error for an input that can only be an
/// image id or digest, because the store words it as a missing name.
fn id_error(input: &str, error: StoreError) -> anyhow::Error {
    let StoreError::NameNotFound { .. } = error else {
        return error.into();
    };
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if hex.len() == 64 {
        anyhow::anyhow!(
            "no image with id {input}; `forge images --no-trunc` lists the ids and `forge images --digests` the manifest digests"
        )
    } else {
        anyhow::anyhow!("no image id starts with {input}; `forge images` lists the ids")
    }
}

/// Returns whether `text` could be an image id prefix.
fn is_hex(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_adds_latest() {
        assert_eq!(normalise("app").unwrap(), "app:latest");
    }

    #[test]
    fn normalise_drops_docker_hub_prefix() {
        assert_eq!(
            normalise("docker.io/library/busybox:1.36").unwrap(),
            "busybox:1.36"
        );
        assert_eq!(normalise("docker.io/team/app").unwrap(), "team/app:latest");
    }

    #[test]
    fn normalise_keeps_registry_host() {
        assert_eq!(
            normalise("localhost:5000/app:v1").unwrap(),
            "localhost:5000/app:v1"
        );
    }

    #[test]
    fn normalise_rejects_digest() {
        let digest = format!("app@sha256:{}", "a".repeat(64));
        let error = normalise(&digest).unwrap_err().to_string();
        assert!(error.contains("digest"), "{error}");
    }

    #[test]
    fn normalise_rejects_uppercase() {
        assert!(normalise("App").is_err());
    }

    #[test]
    fn split_name_separates_tag() {
        assert_eq!(split_name("busybox:latest"), ("busybox", "latest"));
        assert_eq!(
            split_name("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(split_name("localhost:5000/app"), ("localhost:5000/app", ""));
    }

    #[test]
    fn hex_prefixes() {
        assert!(is_hex("0123abc"));
        assert!(!is_hex("busybox"));
        assert!(!is_hex(""));
        assert!(!is_hex(&"a".repeat(65)));
    }
}
