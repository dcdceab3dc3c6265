//! Opening a store root, its default location, and the atomic-write helpers
//! that every index uses.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Store;
use super::error::{Result, StoreError};
use super::lock::{FileLock, LockMode, StoreLease};

/// The content of `oci-layout`.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` of an empty store.
const EMPTY_INDEX: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Returns the store root used when the caller gives none: `$FORGE_ROOT`,
/// else `$XDG_DATA_HOME/forge`, else `/var/lib/forge` when running as root
/// (effective uid 0), else `~/.local/share/forge`.
///
/// Empty variables count as unset, and a relative `XDG_DATA_HOME` is
/// ignored as the XDG base directory specification requires. Without a
/// usable `HOME` the root falls back to `/var/lib/forge`.
pub fn default_root() -> PathBuf {
    let is_root = rustix::process::geteuid().is_root();
    default_root_from(|name| std::env::var_os(name), is_root)
}

fn default_root_from(var: impl Fn(&str) -> Option<OsString>, is_root: bool) -> PathBuf {
    let non_empty = |name: &str| var(name).filter(|value| !value.is_empty());

    if let Some(root) = non_empty("FORGE_ROOT") {
        return PathBuf::from(root);
    }
    if let Some(data) = non_empty("XDG_DATA_HOME").map(PathBuf::from)
        && data.is_absolute()
    {
        return data.join("forge");
    }
    if is_root {
        return PathBuf::from("/var/lib/forge");
    }
    match non_empty("HOME") {
        Some(home) => PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("forge"),
        None => PathBuf::from("/var/lib/forge"),
    }
}

impl Store {
    /// Opens the store at `root`, creating the folder and an empty OCI image
    /// layout on first use.
    ///
    /// # Errors
    /// [`StoreError::CreateRoot`] when the folder cannot be created or
    /// written; [`StoreError::InvalidLayout`] when `root` is a file, a
    /// non-empty folder that is not an OCI layout, or a layout of another
    /// version.
    pub fn open(root: &Path) -> Result<Store> {
        let create_error = |source| StoreError::CreateRoot {
            path: root.to_path_buf(),
            source,
        };

        if root.exists() && !root.is_dir() {
            return Err(StoreError::InvalidLayout {
                path: root.to_path_buf(),
                reason: "it is not a folder; pick a folder with --root or FORGE_ROOT".into(),
            });
        }
        fs::create_dir_all(root).map_err(create_error)?;
        let store = Store {
            root: root.to_path_buf(),
        };

        // A folder with other content and no layout marker is most likely a
        // mistyped --root, so refuse to scatter files into it.
        let layout_path = root.join("oci-layout");
        if !layout_path.exists() {
            let stray = fs::read_dir(root)
                .map_err(create_error)?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name())
                .find(|name| !is_layout_entry(name));
            if let Some(name) = stray {
                return Err(StoreError::InvalidLayout {
                    path: root.to_path_buf(),
                    reason: format!(
                        "the folder is not empty (it contains {:?}) and has no oci-layout file; \
                         pick an empty or new folder",
                        name
                    ),
                });
            }
        }

        for dir in [
            store.blobs_dir(),
            store.tmp_dir(),
            store.locks_dir(),
            store.steps_dir(),
            store.unpacked_root(),
            store.layer_sizes_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(create_error)?;
        }

        if layout_path.exists() {
            check_layout_file(&layout_path)?;
        } else {
            store.write_atomic(&layout_path, OCI_LAYOUT)?;
        }

        // Two processes may open a new root at once; the index lock keeps
        // the second from replacing an index that the first already changed.
        let index_path = store.index_path();
        if !index_path.exists() {
            let _lock = store.lock_index()?;
            if !index_path.exists() {
                store.write_atomic(&index_path, EMPTY_INDEX)?;
            }
        }

        tracing::debug!(root = %root.display(), "store opened");
        Ok(store)
    }

    /// Takes a shared hold on the store that keeps `prune` and `check` from
    /// deleting until it is dropped. See [`StoreLease`].
    ///
    /// # Errors
    /// [`StoreError::Lock`] when the lock file cannot be opened or locked.
    pub fn lease(&self) -> Result<StoreLease> {
        Ok(StoreLease::new(self.lock_store(LockMode::Shared)?))
    }

    pub(crate) fn lock_store(&self, mode: LockMode) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join("store.lock"), mode)
    }

    pub(crate) fn lock_index(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join("index.lock"), LockMode::Exclusive)
    }

    /// Creates a new empty file under `forge/tmp/` whose name starts with
    /// `prefix`, and returns it open for writing.
    pub(crate) fn create_temp_file(&self, prefix: &str) -> Result<(File, PathBuf)> {
        let dir = self.tmp_dir();
        loop {
            let path = dir.join(unique_name(prefix));
            match OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok((file, path)),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(StoreError::io("create temporary file", path, source)),
            }
        }
    }

    /// Creates a new empty folder under `forge/tmp/` whose name starts with
    /// `prefix`.
    pub(crate) fn create_temp_dir(&self, prefix: &str) -> Result<PathBuf> {
        let dir = self.tmp_dir();
        loop {
            let path = dir.join(unique_name(prefix));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(path),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(StoreError::io("create temporary folder", path, source));
                }
            }
        }
    }

    /// Replaces `path` with `bytes` so that readers see either the old or
    /// the new content: write a temporary file, fsync it, rename it over
    /// `path` and fsync the folder.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let (mut file, temp) = self.create_temp_file("write")?;
        let result = (|| {
            file.write_all(bytes)
                .map_err(|source| StoreError::io("write", &temp, source))?;
            file.sync_all()
                .map_err(|source| StoreError::io("sync", &temp, source))?;
            fs::rename(&temp, path)
                .map_err(|source| StoreError::io("rename into place", path, source))?;
            sync_parent(path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// Fsyncs the folder that contains `path`, so that a rename into it survives
/// a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    sync_dir(parent)
}

/// Fsyncs a folder.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| StoreError::io("sync folder", dir, source))
}

/// Returns a name that no other thread or process of this machine picks at
/// the same time: the prefix, the process id, the time and a counter.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:09}-{count}", std::process::id())
}

/// Entries that an OCI layout, a half-created forge store or a freshly
/// formatted file system root (`lost+found`) may contain.
fn is_layout_entry(name: &std::ffi::OsStr) -> bool {
    matches!(
        name.to_str(),
        Some("oci-layout" | "index.json" | "blobs" | "forge" | "lost+found")
    )
}

fn check_layout_file(path: &Path) -> Result<()> {
    let bytes = fs::read(path).map_err(|source| StoreError::io("read", path, source))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::DecodeJson {
            what: "oci-layout".into(),
            path: path.to_path_buf(),
            source,
        })?;
    match value
        .get("imageLayoutVersion")
        .and_then(|version| version.as_str())
    {
        Some("1.0.0") => Ok(()),
        Some(other) => Err(StoreError::InvalidLayout {
            path: path.to_path_buf(),
            reason: format!("image layout version {other:?} is not supported; forge reads 1.0.0"),
        }),
        None => Err(StoreError::InvalidLayout {
            path: path.to_path_buf(),
            reason: "oci-layout has no imageLayoutVersion".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn root_with(vars: &[(&str, &str)], is_root: bool) -> PathBuf {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), OsString::from(value)))
            .collect();
        default_root_from(|name| vars.get(name).cloned(), is_root)
    }

    #[test]
    fn default_root_prefers_forge_root() {
        let root = root_with(
            &[("FORGE_ROOT", "/x/store"), ("XDG_DATA_HOME", "/data")],
            true,
        );
        assert_eq!(root, PathBuf::from("/x/store"));
    }

    #[test]
    fn default_root_uses_xdg_data_home() {
        let root = root_with(&[("XDG_DATA_HOME", "/data"), ("HOME", "/home/u")], false);
        assert_eq!(root, PathBuf::from("/data/forge"));
    }

    #[test]
    fn default_root_ignores_relative_xdg() {
        let root = root_with(&[("XDG_DATA_HOME", "data"), ("HOME", "/home/u")], false);
        assert_eq!(root, PathBuf::from("/home/u/.local/share/forge"));
    }

    #[test]
    fn default_root_for_root_user() {
        let root = root_with(&[("HOME", "/root")], true);
        assert_eq!(root, PathBuf::from("/var/lib/forge"));
    }

    #[test]
    fn default_root_ignores_empty_forge_root() {
        let root = root_with(&[("FORGE_ROOT", ""), ("HOME", "/home/u")], false);
        assert_eq!(root, PathBuf::from("/home/u/.local/share/forge"));
    }

    #[test]
    fn open_rejects_foreign_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("notes.txt"), "{message}");
        assert!(!dir.path().join("oci-layout").exists());
    }

    #[test]
    fn open_rejects_other_layout_version() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StoreError::InvalidLayout { .. }), "{error}");
        assert!(error.to_string().contains("2.0.0"), "{error}");
    }

    #[test]
    fn open_names_root_that_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let error = Store::open(&file).unwrap_err();
        assert!(
            error.to_string().contains(&*file.to_string_lossy()),
            "{error}"
        );
    }

    #[test]
    fn write_atomic_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let target = dir.path().join("forge").join("value");
        store.write_atomic(&target, b"one").unwrap();
        store.write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }
}
