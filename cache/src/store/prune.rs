//! `prune`: removes unnamed images, and the blobs, unpacked layers, layer
//! size records and step-cache entries that no name or digest reference
//! reaches.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use oci_spec::image::Descriptor;

use super::Store;
use super::blobs::sha256_hex;
use super::check::{file_name, is_sha256_hex, list_dir, remove_any};
use super::error::Result;
use super::lock::LockMode;
use super::names::{digest_repository, ref_name};
use super::steps::StepRecord;

/// Options of `prune`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Drop every step-cache entry and every cache mount folder, so only
    /// what names reach is kept.
    pub all: bool,
    /// Drop the least recently used step-cache entries until the bytes
    /// kept only by the step cache (layer blobs and unpacked layers that
    /// no name reaches) are at most this many.
    pub keep_storage: Option<u64>,
    /// Count what would be removed without removing it.
    pub dry_run: bool,
}

/// Counts of what `prune` removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Unnamed (dangling) images whose `index.json` entries were removed.
    pub unnamed_removed: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Unpacked layer folders removed.
    pub unpacked_removed: usize,
    /// Layer size records under `forge/layer-sizes/` removed.
    pub layer_sizes_removed: usize,
    /// Step-cache entries removed.
    pub steps_removed: usize,
    /// Folders of `RUN --mount=type=cache` removed, which only
    /// [`PruneOptions::all`] does.
    pub cache_mounts_removed: usize,
    /// Leftovers of interrupted writes removed from `forge/tmp/`.
    pub temp_removed: usize,
    /// Bytes freed, counting file sizes.
    pub bytes_freed: u64,
}

/// A step entry that prune may drop, with the storage it keeps alive.
struct StepCandidate<'a> {
    record: &'a StepRecord,
    blob: Option<String>,
    diff_id: Option<String>,
}

impl Store {
    /// Removes what no name reaches: the unnamed images of `index.json`
    /// (docker's dangling images), blobs outside the graph of the names and
    /// digest references in `index.json` (index -> manifests -> configs and
    /// layers, and the index that
    /// [`SOURCE_INDEX_ANNOTATION`](super::SOURCE_INDEX_ANNOTATION) records), unpacked
    /// layers and layer size records whose diff id no named config or kept
    /// step lists, step-cache entries chosen by `options` or whose layer is
    /// gone, and leftovers in `forge/tmp/`. Step entries keep their layer blobs and unpacked
    /// layers while they exist.
    ///
    /// Holds the exclusive store lock throughout, so it never removes a blob
    /// that a running writer is adding.
    ///
    /// # Errors
    /// [`StoreError::BadManifest`](super::StoreError::BadManifest), [`StoreError::BlobCorrupt`](super::StoreError::BlobCorrupt) and the like
    /// when a named manifest cannot be read, because its children could
    /// not be distinguished from garbage (run `check --repair` first);
    /// [`StoreError::Io`](super::StoreError::Io) when an entry cannot be removed.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        let _store_lock = self.lock_store(LockMode::Exclusive)?;
        let mut report = PruneReport::default();
        let remove = |path: &Path| -> Result<u64> {
            let size = disk_size(path);
            if !options.dry_run {
                remove_any(path)?;
            }
            Ok(size)
        };

        for path in list_dir(&self.tmp_dir())? {
            report.bytes_freed += remove(&path)?;
            report.temp_removed += 1;
        }

        // Builds hold a shared lease on the store, so no build uses a cache
        // mount while this exclusive lock is held.
        if options.all {
            for path in list_dir(&self.cache_mounts_dir())? {
                if path.is_dir() {
                    report.cache_mounts_removed += 1;
                }
                report.bytes_freed += remove(&path)?;
            }
        }

        // Unnamed images go first, so only what the names and digest
        // references reach stays. Docker's prune keeps images pulled by
        // digest too.
        let kept =
            |entry: &Descriptor| ref_name(entry).is_some() || digest_repository(entry).is_some();
        report.unnamed_removed = if options.dry_run {
            let index = self.read_index()?;
            let unnamed = index.manifests().iter();
            unnamed.filter(|entry| !kept(entry)).count()
        } else {
            self.update_index(|manifests| {
                let before = manifests.len();
                manifests.retain(kept);
                Ok(before - manifests.len())
            })?
        };

        // What the names, the digest references and the containers' images
        // reach is never removed.
        let mut roots: Vec<(String, Descriptor)> = self
            .list_names()?
            .into_iter()
            .map(|(name, descriptor)| (format!("image name {name}"), descriptor))
            .collect();
        roots.extend(
            self.list_digest_references()?
                .into_iter()
                .map(|(repository, descriptor)| {
                    (
                        format!("digest reference {repository}@{}", descriptor.digest()),
                        descriptor,
                    )
                }),
        );
        roots.extend(self.container_image_roots());
        let mut reach = self.walk(roots);
        if let Some(error) = reach.unreadable.pop() {
            return Err(error);
        }

        // Step entries that are damaged or lost their layer are useless.
        let (records, damaged) = self.scan_steps()?;
        for (path, error) in damaged {
            tracing::debug!(path = %path.display(), %error, "removing damaged step cache entry");
            report.bytes_freed += remove(&path)?;
            report.steps_removed += 1;
        }
        let mut candidates = Vec::new();
        for record in &records {
            let blob = match &record.entry.layer {
                Some(layer) if !self.has_blob(layer.digest()) => {
                    report.bytes_freed += remove(&record.path)?;
                    report.steps_removed += 1;
                    continue;
                }
                Some(layer) => sha256_hex(layer.digest()).ok().map(str::to_string),
                None if record.entry.is_pending() && !self.has_pending_layer(&record.entry) => {
                    report.bytes_freed += remove(&record.path)?;
                    report.steps_removed += 1;
                    continue;
                }
                None => None,
            };
            let diff_id = record
                .entry
                .diff_id
                .as_ref()
                .and_then(|id| sha256_hex(id).ok().map(str::to_string));
            candidates.push(StepCandidate {
                record,
                blob,
                diff_id,
            });
        }

        let dropped =
            self.choose_dropped_steps(&candidates, &reach.blobs, &reach.diff_ids, options);
        let mut keep_blobs = std::mem::take(&mut reach.blobs);
        let mut keep_diff_ids = std::mem::take(&mut reach.diff_ids);
        for (position, candidate) in candidates.iter().enumerate() {
            if dropped.contains(&position) {
                report.bytes_freed += remove(&candidate.record.path)?;
                report.steps_removed += 1;
                continue;
            }
            keep_blobs.extend(candidate.blob.clone());
            keep_diff_ids.extend(candidate.diff_id.clone());
        }

        for path in list_dir(&self.blobs_dir())? {
            let Some(name) = file_name(&path).filter(|name| is_sha256_hex(name)) else {
                continue;
            };
            if !keep_blobs.contains(name) && path.is_file() {
                report.bytes_freed += remove(&path)?;
                report.blobs_removed += 1;
            }
        }

        for path in list_dir(&self.unpacked_root())? {
            let Some(name) = file_name(&path).filter(|name| is_sha256_hex(name)) else {
                continue;
            };
            if !keep_diff_ids.contains(name) {
                report.bytes_freed += remove(&path)?;
                report.unpacked_removed += 1;
            }
        }

        // A size record is kept while its layer may still be shown or
        // unpacked. Entries with other names are left to `check --repair`.
        for path in list_dir(&self.layer_sizes_dir())? {
            let Some(name) = file_name(&path).filter(|name| is_sha256_hex(name)) else {
                continue;
            };
            if !keep_diff_ids.contains(name) {
                report.bytes_freed += remove(&path)?;
                report.layer_sizes_removed += 1;
            }
        }

        // No one holds an unpack lock without the shared store lock, so the
        // lock files of layers that are not unpacked can go.
        if !options.dry_run {
            for path in list_dir(&self.locks_dir())? {
                let layer = file_name(&path)
                    .and_then(|name| name.strip_prefix("unpack-"))
                    .and_then(|name| name.strip_suffix(".lock"));
                if let Some(hex) = layer
                    && !self.unpacked_root().join(hex).is_dir()
                {
                    remove_any(&path)?;
                }
            }
        }

        tracing::info!(
            unnamed = report.unnamed_removed,
            blobs = report.blobs_removed,
            unpacked = report.unpacked_removed,
            layer_sizes = report.layer_sizes_removed,
            steps = report.steps_removed,
            temp = report.temp_removed,
            bytes = report.bytes_freed,
            dry_run = options.dry_run,
            "store pruned"
        );
        Ok(report)
    }

    /// Picks the step entries to drop (positions in `candidates`, which is
    /// sorted by last use, oldest first).
    fn choose_dropped_steps(
        &self,
        candidates: &[StepCandidate<'_>],
        named_blobs: &HashSet<String>,
        named_diff_ids: &HashSet<String>,
        options: &PruneOptions,
    ) -> HashSet<usize> {
        if options.all {
            return (0..candidates.len()).collect();
        }
        let Some(limit) = options.keep_storage else {
            return HashSet::new();
        };

        // How many kept entries share each blob and unpacked layer that no
        // name reaches, and how large each is.
        let mut blob_users: HashMap<&str, usize> = HashMap::new();
        let mut layer_users: HashMap<&str, usize> = HashMap::new();
        for candidate in candidates {
            if let Some(blob) = candidate
                .blob
                .as_deref()
                .filter(|blob| !named_blobs.contains(*blob))
            {
                *blob_users.entry(blob).or_default() += 1;
            }
            if let Some(id) = candidate
                .diff_id
                .as_deref()
                .filter(|id| !named_diff_ids.contains(*id))
            {
                *layer_users.entry(id).or_default() += 1;
            }
        }
        let blob_size = |hex: &str| disk_size(&self.blobs_dir().join(hex));
        let layer_size = |hex: &str| disk_size(&self.unpacked_root().join(hex));
        let mut usage: u64 = blob_users.keys().map(|hex| blob_size(hex)).sum::<u64>()
            + layer_users.keys().map(|hex| layer_size(hex)).sum::<u64>();

        let mut dropped = HashSet::new();
        for (position, candidate) in candidates.iter().enumerate() {
            if usage <= limit {
                break;
            }
            dropped.insert(position);
            if let Some(blob) = candidate.blob.as_deref()
                && let Some(users) = blob_users.get_mut(blob)
            {
                *users -= 1;
                if *users == 0 {
                    usage = usage.saturating_sub(blob_size(blob));
                }
            }
            if let Some(id) = candidate.diff_id.as_deref()
                && let Some(users) = layer_users.get_mut(id)
            {
                *users -= 1;
                if *users == 0 {
                    usage = usage.saturating_sub(layer_size(id));
                }
            }
        }
        dropped
    }
}

/// Returns the sum of file sizes in a file or folder tree. A file with
/// several hard links counts once per link, so for trees this is an upper
/// estimate.
fn disk_size(path: &Path) -> u64 {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    let Ok(listing) = fs::read_dir(path) else {
        return 0;
    };
    listing
        .filter_map(|item| item.ok())
        .map(|item| disk_size(&item.path()))
        .sum()
}
