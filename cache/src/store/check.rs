//! `check`: re-hashes every blob and finds leftovers of crashed writes,
//! dangling names, incomplete images and damaged step entries.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Store;
use super::blobs::hash_file;
use super::error::{Result, StoreError};
use super::lock::LockMode;
use super::names::ref_name;
use super::sizes::parse_layer_size;

/// The kind of a problem that `check` finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A blob whose content does not hash to its name.
    CorruptBlob,
    /// A blob that cannot be read.
    UnreadableBlob,
    /// A leftover of an interrupted write or unpack under `forge/tmp/`.
    TempFile,
    /// A file where only blobs, unpacked layers or layer size records
    /// belong, or a layer size record that cannot be parsed.
    StrayFile,
    /// An `index.json` entry whose manifest blob is missing.
    DanglingName,
    /// A named image whose manifest refers to a missing blob.
    MissingBlob,
    /// A named image whose manifest, index or config cannot be parsed.
    BadManifest,
    /// A step-cache file that cannot be parsed.
    BadStepEntry,
    /// A step-cache entry whose layer blob is missing, or whose unpacked
    /// folder is missing for a layer kept only unpacked.
    StepMissingLayer,
}

/// One problem found by `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckProblem {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// The path, name or key that is affected.
    pub subject: String,
    /// Details: the digest involved or the error text.
    pub detail: String,
    /// Whether `check --repair` removed the entry.
    pub repaired: bool,
}

impl fmt::Display for CheckProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.repaired { " (removed)" } else { "" };
        write!(
            formatter,
            "{:?}: {}: {}{state}",
            self.kind, self.subject, self.detail
        )
    }
}

/// The result of `check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Number of blobs re-hashed.
    pub blobs_checked: usize,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Every problem found, in the order checked.
    pub problems: Vec<CheckProblem>,
}

impl CheckReport {
    /// Returns whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Returns the problems of one kind.
    pub fn of_kind(&self, kind: ProblemKind) -> impl Iterator<Item = &CheckProblem> {
        self.problems
            .iter()
            .filter(move |problem| problem.kind == kind)
    }
}

impl Store {
    /// Re-hashes every blob (in parallel) and looks for temporary files,
    /// partial unpacks, stray files, dangling names, images with missing
    /// or unreadable blobs and damaged step entries. With `repair`, removes
    /// each bad entry: the file, the name, or the step entry. Names of
    /// incomplete images are removed; their remaining blobs stay until
    /// `prune`.
    ///
    /// Holds the exclusive store lock throughout, so writers wait.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a folder of the store cannot be listed or an
    /// entry cannot be removed; [`StoreError::Lock`] when the store lock
    /// cannot be taken.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let _store_lock = self.lock_store(LockMode::Exclusive)?;
        let mut report = CheckReport::default();

        // Every writer holds the shared lock, so whatever remains in the
        // temporary folder belongs to no running writer.
        for path in list_dir(&self.tmp_dir())? {
            let repaired = repair && remove_any(&path)?;
            report.problems.push(CheckProblem {
                kind: ProblemKind::TempFile,
                subject: path.display().to_string(),
                detail: "left by an interrupted write or unpack".into(),
                repaired,
            });
        }

        self.check_blobs(repair, &mut report)?;
        self.check_names(repair, &mut report)?;
        self.check_steps(repair, &mut report)?;

        for path in list_dir(&self.unpacked_root())? {
            let valid = path.is_dir() && file_name(&path).is_some_and(is_sha256_hex);
            if !valid {
                let repaired = repair && remove_any(&path)?;
                report.problems.push(CheckProblem {
                    kind: ProblemKind::StrayFile,
                    subject: path.display().to_string(),
                    detail: "not an unpacked layer folder named by a diff id".into(),
                    repaired,
                });
            }
        }
        self.check_layer_sizes(repair, &mut report)?;

        tracing::info!(
            blobs = report.blobs_checked,
            problems = report.problems.len(),
            repair,
            "store check finished"
        );
        Ok(report)
    }

    fn check_blobs(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        let mut blobs = Vec::new();
        for path in list_dir(&self.blobs_dir())? {
            match file_name(&path) {
                Some(name) if is_sha256_hex(name) && path.is_file() => {
                    blobs.push((name.to_string(), path));
                }
                _ => {
                    let repaired = repair && remove_any(&path)?;
                    report.problems.push(CheckProblem {
                        kind: ProblemKind::StrayFile,
                        subject: path.display().to_string(),
                        detail: "not a blob named by its sha256".into(),
                        repaired,
                    });
                }
            }
        }

        // Each blob's expected hex name and path, with its actual hex
        // digest and size or the read error.
        type Hashed = (String, PathBuf, io::Result<(String, u64)>);
        let results: Vec<Hashed> = blobs
            .into_par_iter()
            .map(|(name, path)| {
                let result =
                    hash_file(&path).map(|(digest, size)| (digest.digest().to_string(), size));
                (name, path, result)
            })
            .collect();

        for (name, path, result) in results {
            report.blobs_checked += 1;
            match result {
                Ok((actual, size)) => {
                    report.bytes_checked += size;
                    if actual != name {
                        let repaired = repair && remove_any(&path)?;
                        report.problems.push(CheckProblem {
                            kind: ProblemKind::CorruptBlob,
                            subject: path.display().to_string(),
                            detail: format!("content of {size} bytes hashes to sha256:{actual}"),
                            repaired,
                        });
                    }
                }
                Err(error) => report.problems.push(CheckProblem {
                    kind: ProblemKind::UnreadableBlob,
                    subject: path.display().to_string(),
                    detail: error.to_string(),
                    repaired: false,
                }),
            }
        }
        Ok(())
    }

    fn check_names(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        let index = self.read_index()?;
        let mut bad_entries = Vec::new();

        for (position, descriptor) in index.manifests().iter().enumerate() {
            // An entry without a name is an unnamed image, which is valid;
            // only a missing or unreadable blob makes it a problem.
            let subject = match ref_name(descriptor) {
                Some(name) => format!("image name {name}"),
                None => format!(
                    "unnamed image {} (index.json entry {position})",
                    descriptor.digest()
                ),
            };
            if !self.has_blob(descriptor.digest()) {
                report.problems.push(CheckProblem {
                    kind: ProblemKind::DanglingName,
                    subject,
                    detail: format!("manifest {} is missing", descriptor.digest()),
                    repaired: repair,
                });
                bad_entries.push(descriptor.clone());
                continue;
            }

            let reach = self.walk(vec![(subject.clone(), descriptor.clone())]);
            let mut broken = false;
            for missing in &reach.missing {
                broken = true;
                report.problems.push(CheckProblem {
                    kind: ProblemKind::MissingBlob,
                    subject: subject.clone(),
                    detail: format!(
                        "{} refers to missing blob {}",
                        missing.referrer, missing.digest
                    ),
                    repaired: repair,
                });
            }
            for error in &reach.unreadable {
                broken = true;
                report.problems.push(CheckProblem {
                    kind: ProblemKind::BadManifest,
                    subject: subject.clone(),
                    detail: error.to_string(),
                    repaired: repair,
                });
            }
            if broken {
                bad_entries.push(descriptor.clone());
            }
        }

        if repair && !bad_entries.is_empty() {
            self.update_index(|manifests| {
                manifests.retain(|entry| !bad_entries.contains(entry));
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Reports entries of `forge/layer-sizes/` that are not a size record
    /// named by a diff id. A record of a layer the store no longer has is
    /// valid, and `prune` removes it.
    fn check_layer_sizes(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        for path in list_dir(&self.layer_sizes_dir())? {
            let named = path.is_file() && file_name(&path).is_some_and(is_sha256_hex);
            let detail = if !named {
                "not a layer size file named by a diff id"
            } else if fs::read_to_string(&path)
                .ok()
                .and_then(|text| parse_layer_size(&text))
                .is_none()
            {
                "does not contain a size in bytes, so the size is measured again from the layer blob"
            } else {
                continue;
            };
            let repaired = repair && remove_any(&path)?;
            report.problems.push(CheckProblem {
                kind: ProblemKind::StrayFile,
                subject: path.display().to_string(),
                detail: detail.into(),
                repaired,
            });
        }
        Ok(())
    }

    fn check_steps(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        let (records, damaged) = self.scan_steps()?;
        for (path, error) in damaged {
            let repaired = repair && remove_any(&path)?;
            report.problems.push(CheckProblem {
                kind: ProblemKind::BadStepEntry,
                subject: path.display().to_string(),
                detail: error.to_string(),
                repaired,
            });
        }
        for record in records {
            let detail = match &record.entry.layer {
                Some(layer) if !self.has_blob(layer.digest()) => {
                    format!("layer {} is missing", layer.digest())
                }
                None if record.entry.is_pending() && !self.has_pending_layer(&record.entry) => {
                    let diff_id = record
                        .entry
                        .diff_id
                        .as_ref()
                        .map_or_else(|| "(no diff id)".to_string(), ToString::to_string);
                    format!("the unpacked layer {diff_id} is missing")
                }
                _ => continue,
            };
            let repaired = repair && remove_any(&record.path)?;
            report.problems.push(CheckProblem {
                kind: ProblemKind::StepMissingLayer,
                subject: format!("step cache entry {}", record.key),
                detail,
                repaired,
            });
        }
        Ok(())
    }
}

/// Lists the entries of a folder; a missing folder has none.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(StoreError::io("list", dir, source)),
    };
    let mut paths = Vec::new();
    for item in listing {
        let item = item.map_err(|source| StoreError::io("list", dir, source))?;
        paths.push(item.path());
    }
    paths.sort();
    Ok(paths)
}

/// Removes a file or a whole folder; returns `true` once it is gone.
pub(crate) fn remove_any(path: &Path) -> Result<bool> {
    let is_dir = fs::symlink_metadata(path)
        .map(|metadata| metadata.is_dir())
        .unwrap_or(false);
    let result = if is_dir {
        remove_tree(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(StoreError::io("remove", path, source)),
    }
}

pub(crate) fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|name| name.to_str())
}

pub(crate) fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Removes the folder `path` with everything below it. A folder without
/// write or search permission for its owner, such as the `work` folder
/// that overlayfs leaves with mode 000 in a user namespace, gets them
/// first when the caller owns it.
///
/// # Errors
/// The error of the removal when the tree cannot be removed even so.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            open_folders(path);
            fs::remove_dir_all(path)
        }
        result => result,
    }
}

/// Gives the owner read, write and search permission on every folder
/// below `path` that lacks them, as far as the owner may change them.
fn open_folders(path: &Path) {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    if !metadata.is_dir() {
        return;
    }
    let mode = metadata.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(listing) = fs::read_dir(path) {
        for item in listing.flatten() {
            open_folders(&item.path());
        }
    }
}
