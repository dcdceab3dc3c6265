//! Images that containers use: `forge run` keeps one record per container
//! at `forge/containers/<id>/state.json`, whose `image_digest` field names
//! the image manifest. Garbage collection treats these images as roots, so
//! the unpacked layers of an existing container stay in place.

use std::fs;

use oci_spec::image::{Descriptor, Digest, MediaType};

use super::Store;

impl Store {
    /// Returns a root for each image manifest that a container record
    /// names, labelled `container <id>`. Unreadable records are skipped.
    /// The descriptors carry the manifest media type and size 0, so a walk
    /// must read the blob itself to learn its kind and children.
    pub fn container_image_roots(&self) -> Vec<(String, Descriptor)> {
        let dir = self.root.join("forge").join("containers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut roots = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let id = entry.file_name().to_string_lossy().into_owned();
            let Ok(bytes) = fs::read(entry.path().join("state.json")) else {
                continue;
            };
            let digest = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|record| record.get("image_digest")?.as_str().map(str::to_string))
                .and_then(|text| Digest::try_from(text.as_str()).ok());
            match digest {
                Some(digest) => roots.push((
                    format!("container {id}"),
                    Descriptor::new(MediaType::ImageManifest, 0, digest),
                )),
                None => tracing::debug!(%id, "container record names no image digest"),
            }
        }
        roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let containers = dir.path().join("forge").join("containers");
        fs::create_dir_all(containers.join("c1")).unwrap();
        fs::write(
            containers.join("c1").join("state.json"),
            serde_json::json!({ "image_digest": digest }).to_string(),
        )
        .unwrap();
        fs::create_dir_all(containers.join("broken")).unwrap();
        fs::write(containers.join("broken").join("state.json"), "{").unwrap();

        let roots = store.container_image_roots();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].0, "container c1");
        assert_eq!(roots[0].1.digest().to_string(), digest);
    }

    #[test]
    fn no_containers_no_roots() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.container_image_roots().is_empty());
    }
}
